"""The uvicorn server ``spout serve`` runs: its connection deadlines and its connection limit.

uvicorn alone never cuts off a client that sends its request headers one byte at a time, nor
one that connects and sends nothing, nor one that never reads what it is sent (its response
waits, and holds what it would write, for as long as the connection stays open). The protocol
classes here add three deadlines to uvicorn's own (HTTP/1.1 through httptools, and WebSockets):

* ``header_timeout``: the request line and headers must be complete this many seconds after
  the connection opens, or after the first byte of the next request on a kept-alive
  connection; else the connection is closed (with a ``408`` if part of a request came).
* ``idle_timeout``: a kept-alive connection with no new request is closed after it (uvicorn's
  ``timeout_keep_alive``).
* ``write_timeout``: a connection whose writes make no progress for this long (the client
  reads nothing while the server has more to send: its transport stays paused, its buffer
  past uvicorn's 64 KiB high-water mark and not drained to the 16 KiB low one) is dropped. The response's reader then
  sees the client gone, as for any disconnect: the stream it followed gets its resume window.

``max_connections`` is uvicorn's ``limit_concurrency``: a request arriving while that many
connections (or requests) are open is answered ``503`` and its connection closed. Forwarded
headers (``X-Forwarded-For``) are believed only from ``trusted_proxies``.

Example::

    server = uvicorn.Server(server_config(create_app(config), config))
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._config import GatewayConfig

__all__ = ["ServerConfig", "server_config"]

log = logging.getLogger("spout.gateway")

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 48\r\nconnection: close\r\n\r\n"
    b"the request headers did not arrive in time (408)"
)


class ServerConfig(uvicorn.Config):
    """uvicorn's settings, and the deadlines spout's protocol classes read from it."""

    def __init__(
        self, app: Any, *, header_timeout: float, write_timeout: float, **settings: Any
    ) -> None:
        super().__init__(app, **settings)
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout


def server_config(app: Any, config: GatewayConfig, **settings: Any) -> ServerConfig:
    """The uvicorn settings serving ``app`` with ``config``'s deadlines and connection limit;
    ``settings`` are more of uvicorn's (``log_level``...)."""
    return ServerConfig(
        app,
        host=config.host,
        port=config.port,
        http=_HTTPToolsDeadlines,
        ws=_websocket_protocol() or "none",
        timeout_keep_alive=config.idle_timeout,  # uvicorn says int; a float works (call_later)
        limit_concurrency=config.max_connections or None,
        header_timeout=config.header_timeout,
        write_timeout=config.write_timeout,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: any local process could
        # then pick the address a keyless gateway counts its requests under.
        proxy_headers=bool(config.trusted_proxies),
        forwarded_allow_ips=list(config.trusted_proxies),
        **settings,
    )


class _WriteDeadline:
    """Drops a connection whose transport stays paused for writing (its buffer over the high
    water mark, the client not reading) for ``write_timeout`` seconds."""

    config: Any
    transport: asyncio.Transport
    _write_timer: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        seconds = getattr(self.config, "write_timeout", 0)
        if seconds and self._write_timer is None:
            self._write_timer = asyncio.get_running_loop().call_later(seconds, self._stalled)

    def resume_writing(self) -> None:
        self._cancel_write_timer()
        super().resume_writing()  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_write_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _stalled(self) -> None:
        self._write_timer = None
        log.info(
            "dropped a connection that read nothing for %s s (write_timeout)",
            self.config.write_timeout,
        )
        # abort, not close: close would wait for a buffer that never drains.
        self.transport.abort()


class _HeaderDeadline(_WriteDeadline):
    """Closes a connection whose request headers are not complete ``header_timeout`` seconds
    after it opened, or after the first byte of a request on a kept-alive connection (before
    that byte, uvicorn's keep-alive timeout applies)."""

    _header_timer: asyncio.TimerHandle | None = None
    _request_bytes = False  # bytes of the awaited request came

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if not self._answering():
            self._request_bytes = True
            if self._header_timer is None:
                self._arm_header_timer()  # the first byte of the next request
        super().data_received(data)  # type: ignore[misc]

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._cancel_header_timer()  # the WebSocket protocol takes the transport over
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _headers_complete(self) -> None:
        self._cancel_header_timer()
        self._request_bytes = False

    def _answering(self) -> bool:
        """Whether a request's headers are in (it is being answered, or waits its turn)."""
        cycle = getattr(self, "cycle", None)
        return (cycle is not None and not cycle.response_complete) or bool(
            getattr(self, "pipeline", None)
        )

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        seconds = getattr(self.config, "header_timeout", 0)
        if seconds:
            self._header_timer = asyncio.get_running_loop().call_later(
                seconds, self._header_timeout
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._answering() or self.transport.is_closing():
            return  # the headers did come in time
        log.info(
            "closed a connection whose request headers took over %s s (header_timeout)",
            self.config.header_timeout,
        )
        if self._request_bytes:  # a client that said nothing is not answered either
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


class _HTTPToolsDeadlines(_HeaderDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol with spout's deadlines."""

    def on_headers_complete(self) -> None:
        self._headers_complete()
        super().on_headers_complete()


def when_started(server: uvicorn.Server, then: Any) -> None:
    """Call ``then(server)`` once ``server`` has started: it listens, and its app's startup
    ran (uvicorn has no hook for it, so its ``startup`` is wrapped)."""
    startup = server.startup

    async def started(sockets: Any = None) -> None:
        await startup(sockets)
        then(server)

    server.startup = started  # type: ignore[method-assign]


def _websocket_protocol() -> type[asyncio.Protocol] | None:
    """uvicorn's WebSocket protocol (the one it would pick itself), dropping a client that
    reads nothing; None when no WebSocket library is installed."""
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    if not isinstance(AutoWebSocketsProtocol, type):
        return None
    return type("WebSocketDeadlines", (_WriteDeadline, AutoWebSocketsProtocol), {})
