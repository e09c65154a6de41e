"""What the gateway takes from a request it does not trust yet, and how it repeats it.

* **Host names** (:class:`HostCheck`): a browser sends the name it looked up in ``Host``, so
  a page whose own name was made to resolve to 127.0.0.1 (DNS rebinding) names itself there.
  Only loopback names are served (``localhost``, ``127.0.0.1``, ``[::1]``, any port), the
  ``--host`` the gateway listens on, and ``allowed_hosts`` (``--allowed-host``); a gateway on
  a wildcard address (``0.0.0.0``, ``::``, which needs keys) with no ``allowed_hosts``
  serves any. Another name: 421, and a WebSocket is refused before its handshake.
* **JSON bodies only** (:func:`require_json`): a page on another site may POST ``text/plain``
  with ``mode: "no-cors"`` and no preflight; a POST route refuses any body that does not say
  ``application/json`` (415), which a browser sends across origins only after a preflight
  the CORS allow-list decides.
* **Depth** (:func:`check_depth`): a request body may nest :data:`MAX_JSON_DEPTH` levels of
  objects and arrays; a deeper one is refused (400) naming the field, before anything is
  stored (the store and the JSON encoders recurse, and fail near 1,000 levels) or sent.
* **Logging** (:class:`PrintableFilter`): what the ``spout.gateway`` logger writes from a
  request (a path, a model name, a prompt, an error message) has its control characters
  escaped, so a ``%0a`` in a path cannot write a log line of its own.
* **Metrics labels** (:func:`route_template`): a request is counted under its route's
  template (``/v1/conversations/{conversation_id}``), never under the path it sent.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers
from starlette.routing import Match

from ._wire import RequestError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from ._config import GatewayConfig

__all__ = [
    "LOOPBACK_NAMES",
    "MAX_JSON_DEPTH",
    "AllowedHosts",
    "HostCheck",
    "PrintableFilter",
    "check_depth",
    "printable",
    "require_json",
    "route_template",
]

#: Levels of objects and arrays a request body may nest (the body itself is the first).
MAX_JSON_DEPTH = 64
#: The Host names a gateway always answers to (any port).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Addresses that listen on every interface: the name a client uses is not known.
_WILDCARDS = ("0.0.0.0", "::", "")

# -- what is logged ------------------------------------------------------------------------------

# C0, DEL and C1 (NEL, U+0085, is a line break to some readers), the Unicode line and paragraph
# separators, and the bidirectional controls (which reorder what a reader of the log sees).
_ESCAPED = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0x200E, 0x200F]
_ESCAPED += [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in _ESCAPED}


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x0a``, ``\\u2028``):
    one line, nothing a terminal or a log reader acts on. Applying it twice changes nothing.

    >>> printable("GET /a\\nINFO: forged\\x00")
    'GET /a\\\\x0aINFO: forged\\\\x00'
    """
    return text.translate(_ESCAPES)


class _Printed:
    """An object logged with ``%s`` or ``%r``, its text escaped (a number keeps ``%d``)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return printable(str(self.value))

    def __repr__(self) -> str:
        return printable(repr(self.value))


def _printed(value: Any) -> Any:
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return printable(value)
    return _Printed(value)


#: What every LogRecord has; the rest of a record's attributes came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class PrintableFilter(logging.Filter):
    """Escapes control characters in what a record says (its message, its arguments, its
    ``extra`` fields, the messages of the exceptions in its traceback), keeping the message's
    template and the arguments' formats: a request's path, model name or prompt is logged on
    the line it belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # Formatters use exc_text when it is set: the traceback's own lines stay lines.
            record.exc_text = _traceback(record.exc_info[1])
        if isinstance(record.msg, str):
            record.msg = printable(record.msg)
        if isinstance(record.args, dict):
            record.args = {key: _printed(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_printed(value) for value in record.args)
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name not in _RECORD_FIELDS:
                setattr(record, name, printable(value))
        return True


#: The parts of a formatted traceback that are the interpreter's, not an exception's message.
_TRACEBACK_LINES = ("Traceback (most recent call last):", "  File ", "  [Previous line", "\n")


def _traceback(exc: BaseException) -> str:
    """``exc``'s traceback as ``logging`` writes it, each exception's message escaped (it
    may quote a request: a newline in it would start a line of its own)."""
    chunks = traceback.TracebackException.from_exception(exc).format()
    text = "".join(
        chunk if chunk.startswith(_TRACEBACK_LINES) else printable(chunk.rstrip("\n")) + "\n"
        for chunk in chunks
    )
    return text.removesuffix("\n")


def install_filter(logger: logging.Logger) -> None:
    """Add :class:`PrintableFilter` to ``logger``, once."""
    if not any(isinstance(existing, PrintableFilter) for existing in logger.filters):
        logger.addFilter(PrintableFilter())


# -- what is counted -----------------------------------------------------------------------------


def route_template(scope: Scope) -> str:
    """The path template of the route a request matched (``/v1/streams/{stream_id}``), or
    ``"unmatched"``: a metrics label from a fixed set, whatever path a client sends."""
    router = scope.get("router")
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                return path
    return "unmatched"


# -- what is read --------------------------------------------------------------------------------


def require_json(headers: Headers) -> None:
    """:class:`RequestError` 415 unless the body is declared ``application/json`` (parameters
    such as ``charset`` are fine)."""
    declared = headers.get("content-type", "")
    media_type = declared.partition(";")[0].strip().lower()
    if media_type != "application/json":
        shown = f"{printable(declared)!r:.80}" if declared else "none"
        raise RequestError(
            f"the request body must be JSON sent as 'Content-Type: application/json' "
            f"(this one says {shown})",
            status=415,
        )


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: How many steps of a too-deep value's path its error names: enough for a field
#: (``tools[0].function.parameters``, ``messages[2].content[0]``), not the whole descent.
_NAMED_STEPS = 4


def _field(path: list[str | int]) -> str:
    text = ""
    for step in path[:_NAMED_STEPS]:
        if isinstance(step, int):
            text += f"[{step}]"
        elif _IDENTIFIER.match(step):
            text += f".{step}" if text else step
        else:
            text += f"[{printable(step)[:40]!r}]"
    return text or "the request body"


def check_depth(body: Any, *, limit: int = MAX_JSON_DEPTH, where: str = "") -> None:
    """:class:`RequestError` 400 naming the field if ``body`` nests objects and arrays more
    than ``limit`` levels deep (``body`` itself is level 1). ``where`` prefixes the field.

    >>> check_depth({"tools": [{"function": {"parameters": [[[[1]]]]}}]}, limit=5)
    Traceback (most recent call last):
    ...
    spout.gateway._wire.RequestError: tools[0].function.parameters is nested too deeply: \
a request's JSON may nest at most 5 levels of objects and arrays
    """
    path: list[str | int] = []

    def walk(value: Any, depth: int) -> None:
        items: Any
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            return
        if depth > limit:
            field = where + _field(path)
            raise RequestError(
                f"{field} is nested too deeply: a request's JSON may nest at most {limit} "
                "levels of objects and arrays",
                param=field,
            )
        for key, item in items:
            if isinstance(item, dict | list):
                path.append(key)
                walk(item, depth + 1)
                path.pop()

    walk(body, 1)


# -- who is served -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllowedHosts:
    """The Host names a gateway answers to: ``names`` exactly, any name ending in one of
    ``suffixes`` (from ``*.example.com``), or any at all (``anything``)."""

    names: frozenset[str]
    suffixes: tuple[str, ...] = ()
    anything: bool = False

    @classmethod
    def of(cls, config: GatewayConfig) -> AllowedHosts:
        """The names ``config`` serves (see the module's docstring)."""
        listed = [name.strip().strip("[]").lower().rstrip(".") for name in config.allowed_hosts]
        names = {*LOOPBACK_NAMES, *(name for name in listed if not name.startswith("*"))}
        host = config.host.strip("[]").lower()
        if host not in _WILDCARDS:
            names.add(host)
        suffixes = tuple(name[1:] for name in listed if name.startswith("*."))
        anything = "*" in listed or (host in _WILDCARDS and not listed)
        return cls(frozenset(names), suffixes, anything)

    def allows(self, host: str) -> bool:
        """Whether a ``Host`` header's value (``name[:port]``, ``[v6][:port]``) is served."""
        name = host_name(host)
        if name is None:
            return False
        if self.anything or name in self.names:
            return True
        return any(name.endswith(suffix) for suffix in self.suffixes)


def host_name(host: str) -> str | None:
    """The name in a ``Host`` header, lower case, without its port or a final dot; None if
    it is not one (a port that is not a number, an IPv6 address without brackets...)."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        port = rest[1:]
    else:
        name, _, port = host.partition(":")
        if ":" in port:
            return None
    if port and not port.isdigit():
        return None
    name = name.rstrip(".")
    return name or None


def _is_host_name(name: str) -> bool:
    name = name.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if ":" in name:
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return False
        return True
    return bool(name) and "/" not in name and " " not in name


def setting_problem(config: GatewayConfig) -> str | None:
    """What is wrong with ``allowed_hosts`` and ``trusted_proxies``, or None."""
    for name in config.allowed_hosts:
        if not isinstance(name, str) or not _is_host_name(name):
            return (
                f"allowed_hosts: {name!r} is not a host name (no scheme or port: "
                "'gw.example.com', '*.example.com', '[fd00::1]' or '*')"
            )
    for proxy in config.trusted_proxies:
        try:
            if proxy != "*":
                ipaddress.ip_network(proxy, strict=False)
        except (TypeError, ValueError):
            return (
                f"trusted_proxies: {proxy!r} is not an IP address or network "
                "(e.g. '10.0.0.5', '10.0.0.0/8', or '*' for every peer)"
            )
    return None


class HostCheck:
    """ASGI middleware: a request (or WebSocket) whose ``Host`` is not served is refused
    before anything reads it; a request with no ``Host`` (HTTP/1.0, not a browser) passes."""

    def __init__(self, app: ASGIApp, *, allowed: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if host is None or self.allowed.allows(host):
            await self.app(scope, receive, send)
            return
        message = (
            f"this gateway does not answer to the host name {printable(host)!r:.80}: "
            "its operator can add it with --allowed-host (allowed_hosts)"
        )
        if scope["type"] == "websocket":
            await receive()  # websocket.connect; a close now refuses the handshake (403)
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        from starlette.responses import JSONResponse

        # The shape both SDKs read: Anthropic's, whose "error" is also OpenAI's.
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
        await JSONResponse(body, status_code=421)(scope, receive, send)
