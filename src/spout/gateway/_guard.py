"""Who may call the gateway, and how much: API keys, rate limits, CORS, the access log.

* **Keys** (``--keys FILE``, :mod:`._keys`): a client sends its key the way its SDK does,
  ``Authorization: Bearer <key>`` (OpenAI) or ``x-api-key: <key>`` (Anthropic); the gateway
  hashes it and compares the hash with each one in the file. No key, or an unknown one: 401.
  Without a keys file everyone is admitted (the server then only listens on loopback) and a
  caller is its client address.
* **Rate limits** (``[limits]``, or per key in the keys file, :mod:`._ratelimit`): requests
  and output tokens per caller per sliding minute, counted in memory or, with ``--redis``,
  in Redis shared by every replica. Over either: 429 with ``Retry-After``.
* **Spend limits** (``max_spend=USD`` on a key's line, :mod:`._spend`): what each key's
  responses cost is added up, beside the keys file or in Redis; a key whose spend reached its
  limit is refused (429 ``insufficient_quota``, as OpenAI refuses an exhausted quota).
* **CORS** (``--cors-origin``): the listed browser origins may call the API with the
  headers the SDKs send; other origins get no CORS headers at all.
* **Access log**: one line per request on the ``spout.gateway`` logger: method, path,
  status, caller name, stream id, duration. Never a key; a prompt only with ``--log-prompts``
  (the last user message, cut to :data:`PROMPT_LOG_CHARS`). Control characters in anything
  the logger writes are escaped (:class:`._hygiene.PrintableFilter`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from .. import ConfigurationError
from ._hygiene import AllowedHosts, HostCheck, install_filter

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from ._config import GatewayConfig
    from ._ratelimit import Counters
    from ._spend import Ledger
    from ._wire import Request

__all__ = ["Denied", "Guard", "Identity", "middleware"]

log = logging.getLogger("spout.gateway")
# What the gateway logs from a request (a path, a model name, a prompt) stays on its line.
install_filter(log)

#: How much of a prompt ``--log-prompts`` logs.
PROMPT_LOG_CHARS = 200
#: What the access log reads from the ASGI scope (set by the guard and the gateway).
_IDENTITY = "spout.identity"
_PROMPT = "spout.prompt"


class Denied(Exception):
    """A request refused: ``status`` (401, 413, 429, 503), a message, ``retry_after``
    seconds for 429 and 503, and ``kind`` ("authentication", "too_large", "rate_limit",
    "insufficient_quota", "unavailable")."""

    def __init__(
        self, message: str, *, status: int, kind: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: a key's name (``keyed``), or the client's address without keys; the
    limits that apply to it (0: none), and the USD the key may spend (None: no limit)."""

    name: str
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    keyed: bool = False
    max_spend: float | None = None


class Guard:
    """Admits or refuses each request, and counts what callers use.

    Example::

        guard = Guard(config)
        identity = await guard.admit(http_request)    # Denied: 401, 429 (or 503)
        ...                                           # answer the request
        await guard.charge(identity, output_tokens)
        await guard.spend(identity, response.cost)
    """

    def __init__(self, config: GatewayConfig, *, window: float = 60.0) -> None:
        from ._keys import KeysFile

        self.config = config
        #: Seconds over which the per-minute limits count (60; tests shorten it).
        self.window = window
        self.keys = KeysFile(config.keys_file) if config.keys_file is not None else None
        self._counters: Counters | None = None
        self._ledger: Ledger | None = None

    def share_counters(self, counters: Counters) -> None:
        """Count in ``counters`` (a worker of ``spout serve --workers N``: the workers'
        shared :class:`~spout.gateway._ratelimit.SqliteCounters`), not this process's."""
        self._counters = counters

    @property
    def counters(self) -> Counters:
        """The counters backend, made on first use (in Redis with ``config.redis_url``)."""
        if self._counters is None:
            from ._ratelimit import MemoryCounters, RedisCounters

            if self.config.redis_url:
                self._counters = RedisCounters(self.config.redis_url, window=self.window)
            else:
                self._counters = MemoryCounters(self.window)
        return self._counters

    @property
    def ledger(self) -> Ledger | None:
        """Where keys' spend is kept (None without keys): in Redis with ``config.redis_url``,
        else in a SQLite file beside the keys file (made on first use)."""
        if self._ledger is None and self.config.keys_file is not None:
            from ._spend import FileLedger, RedisLedger, spend_path

            if self.config.redis_url:
                self._ledger = RedisLedger(self.config.redis_url)
            else:
                self._ledger = FileLedger(spend_path(self.config.keys_file))
        return self._ledger

    async def identify(self, connection: HTTPConnection) -> Identity:
        """The caller, from its key (:class:`Denied` 401 without a valid one), or from its
        address without keys. Counts nothing: :meth:`admit` does."""
        limits = self.config.limits
        if self.keys is None:
            client = connection.client
            identity = Identity(
                client.host if client else "unknown",
                limits.requests_per_minute,
                limits.tokens_per_minute,
            )
        else:
            key = presented_key(connection.headers)
            if not key:
                raise Denied(
                    "no API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                    status=401,
                    kind="authentication",
                )
            try:
                self.keys.refresh()
            except ConfigurationError as exc:
                log.error("%s; keeping the keys read before", exc)
            entry = self.keys.find(key)
            if entry is None:
                raise Denied("the API key is not valid", status=401, kind="authentication")
            identity = Identity(
                entry.name,
                _pick(entry.requests_per_minute, limits.requests_per_minute),
                _pick(entry.tokens_per_minute, limits.tokens_per_minute),
                keyed=True,
                max_spend=entry.max_spend,
            )
        connection.scope[_IDENTITY] = identity.name
        return identity

    async def admit(self, connection: HTTPConnection) -> Identity:
        """The caller, if admitted now (and counted); :class:`Denied` otherwise."""
        identity = await self.identify(connection)
        if identity.max_spend is not None:
            await self._check_spend(identity, identity.max_spend)
        if not (identity.requests_per_minute or identity.tokens_per_minute):
            return identity
        try:
            refusal = await self.counters.admit(
                identity.name, identity.requests_per_minute, identity.tokens_per_minute
            )
        except Exception as exc:
            log.warning("rate limit counters unavailable: %s: %s", type(exc).__name__, exc)
            raise Denied(
                "the gateway cannot count requests right now; try again",
                status=503,
                kind="unavailable",
                retry_after=1,
            ) from None
        if refusal is None:
            return identity
        if refusal.limit == "requests":
            what = f"{identity.requests_per_minute} requests"
        else:
            what = f"{identity.tokens_per_minute} output tokens"
        raise Denied(
            f"rate limit: {what} per minute for {identity.name!r}; "
            f"retry in {max(1, int(refusal.retry_after + 0.999))} s",
            status=429,
            kind="rate_limit",
            retry_after=refusal.retry_after,
        )

    async def _check_spend(self, identity: Identity, limit: float) -> None:
        from ._keys import format_usd
        from ._spend import to_nano

        ledger = self.ledger
        assert ledger is not None  # a key has a spend limit only with a keys file
        try:
            spent = await ledger.spent(identity.name)
        except Exception as exc:
            log.warning("spend ledger unavailable: %s: %s", type(exc).__name__, exc)
            raise Denied(
                "the gateway cannot read what this key has spent right now; try again",
                status=503,
                kind="unavailable",
                retry_after=1,
            ) from None
        if to_nano(spent) >= to_nano(limit):  # in whole nano-dollars, as the ledger keeps them
            raise Denied(
                f"the key {identity.name!r} has spent ${spent:.6f} of its "
                f"${format_usd(limit)} limit (max_spend): ask the gateway's operator to raise it",
                status=429,
                kind="insufficient_quota",
            )

    async def spend(self, identity: Identity, usd: float | None) -> None:
        """Add ``usd`` (a response's cost; None: not known) to a key's spend. Never raises:
        the response it comes after was already answered."""
        if not identity.keyed or not usd or usd <= 0:
            return
        ledger = self.ledger
        if ledger is None:
            return
        try:
            await ledger.add(identity.name, usd)
        except Exception as exc:
            log.error(
                "could not add $%.9f to the spend of %r: %s: %s",
                usd,
                identity.name,
                type(exc).__name__,
                exc,
            )

    async def charge(self, identity: Identity, tokens: int) -> None:
        """Count ``tokens`` against the caller's token rate (never raises: the response it
        comes after was already answered)."""
        if not identity.tokens_per_minute or tokens <= 0:
            return
        try:
            await self.counters.charge(identity.name, tokens)
        except Exception as exc:
            log.warning(
                "could not count %d tokens for %r: %s: %s",
                tokens,
                identity.name,
                type(exc).__name__,
                exc,
            )

    def note_prompt(self, connection: HTTPConnection, request: Request) -> None:
        """With ``log_prompts``, keep the last user message for the access log line."""
        if self.config.log_prompts:
            connection.scope[_PROMPT] = last_user_text(request.messages)[:PROMPT_LOG_CHARS]

    async def aclose(self) -> None:
        if self._counters is not None:
            await self._counters.aclose()
        if self._ledger is not None:
            await self._ledger.aclose()


def _pick(own: int | None, default: int) -> int:
    return default if own is None else own


def presented_key(headers: Headers) -> str | None:
    """The key a client sent: ``x-api-key`` (Anthropic's SDK), else an ``Authorization``
    bearer token (OpenAI's; also Anthropic's ``auth_token``)."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message (its text parts joined), or ``""``."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        return ""
    return ""


# -- middleware ---------------------------------------------------------------------------------

#: Request headers the official SDKs send (besides ``x-stainless-*``, allowed by prefix).
CORS_HEADERS = (
    "authorization",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "content-type",
    "last-event-id",
    "idempotency-key",
)
CORS_METHODS = ("GET", "POST", "DELETE", "OPTIONS")


def middleware(config: GatewayConfig) -> list[Middleware]:
    """The gateway's ASGI middleware, outermost first: the access log, the Host check
    (:class:`._hygiene.HostCheck`), then CORS (only with ``config.cors_origins``)."""
    stack = [
        Middleware(AccessLog, log_prompts=config.log_prompts),
        Middleware(HostCheck, allowed=AllowedHosts.of(config)),
    ]
    if config.cors_origins:
        stack.append(
            Middleware(
                AllowListCORS,
                allow_origins=config.cors_origins,
                allow_methods=CORS_METHODS,
                allow_headers=CORS_HEADERS,
                expose_headers=("x-spout-stream-id", "retry-after"),
                max_age=600,
            )
        )
    return stack


class AllowListCORS(CORSMiddleware):
    """Starlette's CORS middleware, but a request from an origin not on the list passes
    through untouched (no CORS header at all, so the browser refuses the answer), and a
    preflight may ask for any ``x-stainless-*`` header (the SDKs send several, and more
    with each release)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = Headers(scope=scope).get("origin")
            if origin is None or not self.is_allowed_origin(origin):
                await self.app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        asked = [
            name.strip().lower()
            for name in request_headers.get("access-control-request-headers", "").split(",")
            if name.strip()
        ]
        stainless = [name for name in asked if name.startswith("x-stainless-")]
        if not stainless:
            return super().preflight_response(request_headers)
        raw = [
            (name, value)
            for name, value in request_headers.raw
            if name != b"access-control-request-headers"
        ]
        others = ", ".join(name for name in asked if name not in stainless)
        if others:
            raw.append((b"access-control-request-headers", others.encode("latin-1")))
        response = super().preflight_response(Headers(raw=raw))
        if response.status_code == 200:
            allowed = response.headers.get("access-control-allow-headers", "")
            response.headers["access-control-allow-headers"] = ", ".join(
                [*filter(None, [allowed]), *stainless]
            )
        return response


class AccessLog:
    """One ``spout.gateway`` log line per HTTP request once its response ends::

        POST /v1/chat/completions 200 identity=alice stream=st_8f3e... 1.204s

    The fields are also on the record (``method``, ``path``, ``status``, ``identity``,
    ``stream_id``, ``duration``, and ``prompt`` with ``log_prompts``) for structured
    handlers. The path is logged without its query string.
    """

    def __init__(self, app: ASGIApp, *, log_prompts: bool = False) -> None:
        self.app = app
        self.log_prompts = log_prompts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        seen: dict[str, Any] = {"status": 500, "stream_id": None}

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-spout-stream-id":
                        seen["stream_id"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            fields = {
                "method": scope["method"],
                "path": scope["path"],
                "status": seen["status"],
                "identity": scope.get(_IDENTITY) or "-",
                "stream_id": seen["stream_id"],
                "duration": time.monotonic() - started,
            }
            line = "%(method)s %(path)s %(status)d identity=%(identity)s"
            if fields["stream_id"]:
                line += " stream=%(stream_id)s"
            line += " %(duration).3fs"
            if self.log_prompts and scope.get(_PROMPT) is not None:
                fields["prompt"] = scope[_PROMPT]
                line += " prompt=%(prompt)r"
            log.info(line, fields, extra=fields)
