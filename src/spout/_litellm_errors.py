"""litellm's exception names, as extra bases of spout's errors (re-exported by spout.compat).

Code written against litellm catches ``litellm.RateLimitError``, ``litellm.Timeout`` and so
on. Each spout error also subclasses the class of the same meaning here, so that code keeps
working with ``from spout.compat import RateLimitError`` (see docs/migrating-from-litellm.md).
The classes hold no behaviour of their own beyond litellm's ``llm_provider`` name; spout's
errors keep theirs. The relationships among them are litellm's: ``ContextWindowExceededError``
is a ``BadRequestError``; ``Timeout`` and ``APIConnectionError`` are apart.

The attributes litellm users read on a caught error are declared here, for type checkers, where
every spout error of that class sets them: ``message`` on all, ``status_code`` and ``model`` on
the classes of an error the provider answered with (spout's ``ProviderError`` and below). A
class built directly, not raised by spout, has only what ``Exception`` has.
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

    #: what went wrong, without the provider and status that ``str()`` may add
    message: str

    @property
    def llm_provider(self) -> str | None:
        """The provider that raised, under litellm's name for it (spout's is ``provider``)."""
        provider = getattr(self, "provider", None)
        return provider if isinstance(provider, str) else None


class _ProviderAnswer(LiteLLMStyleError):
    """The classes of an error the provider answered with: spout's ``ProviderError`` and below."""

    #: the HTTP status, or None for an error event inside a stream that named none
    status_code: int | None
    #: the model the call asked the provider for, where known
    model: str | None


class APIError(_ProviderAnswer):
    """litellm's ``APIError``: the provider answered with an error (spout's ProviderError)."""


class AuthenticationError(_ProviderAnswer):
    """litellm's ``AuthenticationError`` (401)."""


class PermissionDeniedError(_ProviderAnswer):
    """litellm's ``PermissionDeniedError`` (403)."""


class NotFoundError(_ProviderAnswer):
    """litellm's ``NotFoundError`` (404)."""


class BadRequestError(_ProviderAnswer):
    """litellm's ``BadRequestError`` (400)."""


class ContextWindowExceededError(BadRequestError):
    """litellm's ``ContextWindowExceededError``, a ``BadRequestError`` there as here."""


class RateLimitError(_ProviderAnswer):
    """litellm's ``RateLimitError`` (429)."""


class ServiceUnavailableError(_ProviderAnswer):
    """litellm's ``ServiceUnavailableError`` (503)."""


class InternalServerError(_ProviderAnswer):
    """litellm's ``InternalServerError`` (500)."""


class APIConnectionError(LiteLLMStyleError):
    """litellm's ``APIConnectionError``: no usable answer came over the connection."""


class Timeout(LiteLLMStyleError):
    """litellm's ``Timeout`` (408): a time limit ran out."""
