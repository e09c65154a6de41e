"""litellm's exception names, as extra bases of spout's errors (re-exported by spout.compat).

Code written against litellm catches ``litellm.RateLimitError``, ``litellm.Timeout`` and so
on. Each spout error also subclasses the class of the same meaning here, so that code keeps
working with ``from spout.compat import RateLimitError`` (see docs/migrating-from-litellm.md).
The classes hold no behaviour of their own beyond litellm's ``llm_provider`` name; spout's
errors keep theirs. The relationships among them are litellm's: ``ContextWindowExceededError``
is a ``BadRequestError``; ``Timeout`` and ``APIConnectionError`` are apart.
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ContextWindowExceededError",
    "InternalServerError",
    "LiteLLMStyleError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "Timeout",
]


class LiteLLMStyleError(Exception):
    """The root of the litellm-named classes (litellm itself has none of its own)."""

    @property
    def llm_provider(self) -> str | None:
        """The provider that raised, under litellm's name for it (spout's is ``provider``)."""
        provider = getattr(self, "provider", None)
        return provider if isinstance(provider, str) else None


class APIError(LiteLLMStyleError):
    """litellm's ``APIError``: the provider answered with an error (spout's ProviderError)."""


class AuthenticationError(LiteLLMStyleError):
    """litellm's ``AuthenticationError`` (401)."""


class PermissionDeniedError(LiteLLMStyleError):
    """litellm's ``PermissionDeniedError`` (403)."""


class NotFoundError(LiteLLMStyleError):
    """litellm's ``NotFoundError`` (404)."""


class BadRequestError(LiteLLMStyleError):
    """litellm's ``BadRequestError`` (400)."""


class ContextWindowExceededError(BadRequestError):
    """litellm's ``ContextWindowExceededError``, a ``BadRequestError`` there as here."""


class RateLimitError(LiteLLMStyleError):
    """litellm's ``RateLimitError`` (429)."""


class ServiceUnavailableError(LiteLLMStyleError):
    """litellm's ``ServiceUnavailableError`` (503)."""


class InternalServerError(LiteLLMStyleError):
    """litellm's ``InternalServerError`` (500)."""


class APIConnectionError(LiteLLMStyleError):
    """litellm's ``APIConnectionError``: no usable answer came over the connection."""


class Timeout(LiteLLMStyleError):
    """litellm's ``Timeout`` (408): a time limit ran out."""
