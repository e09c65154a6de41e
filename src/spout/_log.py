"""Keeping secrets out of sight: redacted debug logs of HTTP traffic, reprs and errors.

spout logs to the ``"spout"`` logger. At DEBUG, each HTTP request is logged with its method,
URL and headers, and each response with its status; the body is not logged (it holds the
user's prompts), only its size. Credentials never appear: a header whose name looks like one
(``Authorization``, ``x-api-key``, ``x-goog-api-key``, anything with *key*, *token*,
*secret*, *auth*...) and a URL's password or ``key=``-like query parameter are shown as
``[redacted]``, or as ``[redacted ...abcd]`` (the last four characters) for a value long
enough that four characters give nothing away, which tells which key was used.

The callers check ``logger.isEnabledFor(DEBUG)`` before calling in: with DEBUG off,
logging costs one cached lookup per request.

Errors are scrubbed too (:func:`scrub_error`, called by the HTTP providers' drivers): a
server may echo the key it was sent. And a key is checked before it goes into a header
(:func:`checked_key`), so that the HTTP library never refuses it with an error quoting it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._request import HTTPRequest

__all__ = [
    "DEBUG",
    "checked_key",
    "log_request",
    "log_response",
    "logger",
    "mask",
    "redact_headers",
    "redact_url",
    "request_repr",
    "scrub_error",
    "secrets_in",
]

logger = logging.getLogger("spout")
DEBUG = logging.DEBUG

#: Header and query parameter names that carry credentials.
_SENSITIVE = re.compile(
    r"key|token|secret|auth|passw|cookie|credential|signature|^sig$", re.IGNORECASE
)
#: An HTTP auth scheme in front of a credential ("Bearer sk-...", "Basic dXNl...").
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9_-]*) +(\S.*)", re.DOTALL)
#: A query parameter (``?key=...``) and the password in a URL's userinfo (``//user:pw@``).
_QUERY_PARAM = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")
_USERINFO = re.compile(r"(//[^/@:?#]*:)([^/@?#]*)@")
#: Four characters of a secret shorter than this would give too much of it away.
_SHOW_TAIL_FROM = 20
#: Strings shorter than this are not hunted for in error text: replacing them would mangle
#: ordinary words, and no provider issues keys that short.
_MIN_SECRET = 8


def mask(secret: str) -> str:
    """A secret as it may be shown: ``[redacted ...abcd]`` if long, else ``[redacted]``.

    >>> mask("sk-test-SECRET-0123456789")
    '[redacted ...6789]'
    """
    if len(secret) >= _SHOW_TAIL_FROM:
        return f"[redacted ...{secret[-4:]}]"
    return "[redacted]"


def _mask_header_value(value: str) -> str:
    scheme = _SCHEME.fullmatch(value)
    if scheme:
        return f"{scheme.group(1)} {mask(scheme.group(2))}"
    return mask(value)


def redact_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """The headers with every credential redacted, ready to log.

    >>> redact_headers({"Authorization": "Bearer sk-test-SECRET-0123456789", "Accept": "*/*"})
    {'Authorization': 'Bearer [redacted ...6789]', 'Accept': '*/*'}
    """
    return {
        str(name): _mask_header_value(str(value)) if _SENSITIVE.search(str(name)) else str(value)
        for name, value in headers.items()
    }


def redact_url(url: str) -> str:
    """The URL with its password and credential-like query parameters redacted.

    >>> redact_url("https://user:pw@host/v1?alt=sse&key=AIza-SECRET")
    'https://user:[redacted]@host/v1?alt=sse&key=[redacted]'
    """
    if "@" in url:
        url = _USERINFO.sub(r"\1[redacted]@", url, count=1)
    if "=" in url:
        url = _QUERY_PARAM.sub(_redact_param, url)
    return url


def _redact_param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    if value and _SENSITIVE.search(name):
        value = "[redacted]"
    return f"{sep}{name}={value}"


def request_repr(request: HTTPRequest) -> str:
    """``repr`` of an :class:`HTTPRequest`: its credentials redacted, its body as a size."""
    body = "None" if request.body is None else f"<{len(request.body)} bytes>"
    return (
        f"HTTPRequest(method={request.method!r}, url={redact_url(request.url)!r}, "
        f"headers={redact_headers(request.headers)!r}, body={body})"
    )


def log_request(request: HTTPRequest, default_headers: Mapping[str, str] | None = None) -> None:
    """Log a request about to be sent (at DEBUG); ``default_headers`` are the client's own."""
    headers = {**default_headers, **request.headers} if default_headers else request.headers
    size = 0 if request.body is None else len(request.body)
    logger.debug(
        "HTTP request: %s %s headers=%s body=%d bytes",
        request.method,
        redact_url(request.url),
        redact_headers(headers),
        size,
    )


def log_response(request: HTTPRequest, status: int) -> None:
    """Log the status a request was answered with (at DEBUG)."""
    logger.debug("HTTP response: %s %s -> %d", request.method, redact_url(request.url), status)


# -- keys ------------------------------------------------------------------------------------


def checked_key(provider: str, value: Any) -> str | None:
    """An API key as it can be sent: surrounding whitespace dropped, never echoed in errors.

    A key read from a file or a ``.env`` often ends in a newline (or ``\\r``), which the
    HTTP library would refuse with an error quoting the whole header; other characters a
    header cannot carry are refused here, naming their position, not the key.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(
            f"provider {provider!r}: api_key must be a str, not {type(value).__name__}"
        )
    key = value.strip()
    for position, char in enumerate(key):
        if not " " <= char <= "~":
            raise ConfigurationError(
                f"provider {provider!r}: the API key has a character an HTTP header cannot "
                f"carry at position {position} (U+{ord(char):04X}); check where the key came from"
            )
    return key or None


# -- errors ------------------------------------------------------------------------------------


def secrets_in(*headers: Mapping[str, Any] | None, extra: Iterable[str | None] = ()) -> set[str]:
    """The credentials in some headers (without their auth scheme), and any ``extra`` ones.

    These are the strings :func:`scrub_error` removes from an error a server wrote: some
    servers echo the key they were sent ("Incorrect API key provided: sk-...").
    """
    found: set[str] = set()
    for mapping in headers:
        for name, value in (mapping or {}).items():
            if isinstance(value, str) and _SENSITIVE.search(str(name)):
                scheme = _SCHEME.fullmatch(value)
                found.add(scheme.group(2) if scheme else value)
    found.update(value for value in extra if isinstance(value, str))
    return {secret.strip() for secret in found if len(secret.strip()) >= _MIN_SECRET}


def scrub_error(exc: BaseException, secrets: Collection[str]) -> None:
    """Remove ``secrets`` from an error and every error chained to it, in place.

    Strings, bytes and the dicts and lists in an exception's arguments and attributes (a
    ProviderError's message and body, a ProtocolError's data) are rewritten. A chained
    exception that still shows a secret afterwards (one whose text is not made from its
    arguments) is cut from the chain, so a traceback cannot print it.
    """
    if not secrets:
        return
    ordered = sorted(secrets, key=len, reverse=True)  # a secret inside another goes last
    seen: set[int] = set()
    current: BaseException | None = exc
    previous: BaseException | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        _scrub_one(current, ordered)
        if previous is not None and _shows(current, ordered):
            previous.__cause__ = None
            previous.__context__ = None
            previous.__suppress_context__ = True
            break
        previous, current = current, current.__cause__ or current.__context__


def _scrub_one(exc: BaseException, secrets: list[str]) -> None:
    with contextlib.suppress(AttributeError, TypeError):  # an exception refusing new args
        exc.args = tuple(_scrubbed(arg, secrets) for arg in exc.args)
    attributes = getattr(exc, "__dict__", None)
    if attributes:
        for name, value in list(attributes.items()):
            attributes[name] = _scrubbed(value, secrets)


def _scrubbed(value: Any, secrets: list[str]) -> Any:
    """``value`` with the secrets replaced, in strings, bytes, dicts, lists and tuples."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, mask(secret))
        return value
    if isinstance(value, (bytes, bytearray)):
        for secret in secrets:
            raw = secret.encode()
            if raw in value:
                value = bytes(value).replace(raw, mask(secret).encode())
        return value
    if type(value) is dict:
        return {_scrubbed(k, secrets): _scrubbed(v, secrets) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_scrubbed(item, secrets) for item in value)
    return value


def _shows(exc: BaseException, secrets: list[str]) -> bool:
    try:
        text = f"{exc}{exc!r}"
    except Exception:  # pragma: no cover - a broken __str__ shows nothing
        return False
    return any(secret in text for secret in secrets)
