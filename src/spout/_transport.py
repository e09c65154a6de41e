"""Sync and async HTTP for every provider; the only place the HTTP libraries are called.

Sync requests go through httpx; async ones through aiohttp, which costs about a third of
httpx's async stack per socket read (measured in ``docs/benchmarks.md``) and is imported on
first async use only. Their exceptions are translated into spout's here, and never escape.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import (
    ConnectionError,
    ConnectTimeout,
    FirstTokenTimeout,
    IdleTimeout,
    ProtocolError,
    ProviderError,
    SpoutError,
    StreamInterruptedError,
    TimeoutError,
    TransportError,
)

if TYPE_CHECKING:
    import asyncio

    import aiohttp
    import httpx

__all__ = ["HTTPRequest", "Transport"]

DEFAULT_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Builds the provider's error from a failed response: (status, headers, body) -> error.
ErrorMapper = Callable[[int, Mapping[str, str], bytes], ProviderError]


@dataclass(slots=True)
class HTTPRequest:
    """A request as a provider adapter builds it, before anything touches a socket."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


def _translate(exc: httpx.HTTPError, *, streaming: bool) -> SpoutError:
    """One httpx exception as the spout error it means; ``streaming`` once the body began."""
    import httpx

    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimeout(f"could not connect in time: {detail}")
    if isinstance(exc, httpx.ReadTimeout):
        if streaming:
            return IdleTimeout(f"the stream sent nothing for too long: {detail}")
        return FirstTokenTimeout(f"the server did not answer in time: {detail}")
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError(f"timed out: {detail}")
    if isinstance(exc, httpx.DecodingError):
        return ProtocolError(f"the response body could not be decoded: {detail}")
    if streaming and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError)):
        return StreamInterruptedError(f"the connection was lost mid-stream: {detail}")
    if isinstance(
        exc, (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
    ):
        return ConnectionError(f"connection failed: {detail}")
    return TransportError(f"HTTP transport failed: {detail}")


def _atranslate(exc: BaseException, *, streaming: bool) -> SpoutError:
    """One aiohttp (or asyncio timeout) exception as the spout error it means."""
    import asyncio

    import aiohttp

    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(f"could not connect in time: {detail}")
    if isinstance(exc, (aiohttp.SocketTimeoutError, asyncio.TimeoutError)):
        if streaming:
            return IdleTimeout(f"the stream sent nothing for too long: {detail}")
        return FirstTokenTimeout(f"the server did not answer in time: {detail}")
    if streaming and isinstance(
        exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
    ):
        return StreamInterruptedError(f"the connection was lost mid-stream: {detail}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProtocolError(f"the response body could not be read: {detail}")
    if isinstance(exc, aiohttp.ClientConnectionError):
        return ConnectionError(f"connection failed: {detail}")
    return TransportError(f"HTTP transport failed: {detail}")


def _aiohttp_errors() -> tuple[type[BaseException], ...]:
    import asyncio

    import aiohttp

    return (aiohttp.ClientError, asyncio.TimeoutError)


class Transport:
    """Owns the connection pools (one sync client, one async client per event loop)."""

    def __init__(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        headers: dict[str, str] | None = None,
        max_connections: int | None = None,
    ) -> None:
        self._timeout_s = timeout
        self._connect_timeout_s = connect_timeout
        self._headers = headers or {}
        # No cap by default: a thousand concurrent streams must not queue behind a pool limit.
        self._max_connections = max_connections
        self._client: httpx.Client | None = None
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, aiohttp.ClientSession
        ] = weakref.WeakKeyDictionary()

    # -- clients -------------------------------------------------------------------------------

    def _sync_client(self) -> httpx.Client:
        if self._client is None:
            # Imported on first sync use: an async-only program never loads httpx.
            import httpx

            self._client = httpx.Client(
                timeout=httpx.Timeout(self._timeout_s, connect=self._connect_timeout_s),
                headers=self._headers,
                limits=httpx.Limits(
                    max_connections=self._max_connections, max_keepalive_connections=20
                ),
            )
        return self._client

    def _session(self) -> aiohttp.ClientSession:
        # A session's connections belong to the event loop that opened them.
        import asyncio

        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            import aiohttp

            session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._max_connections or 0),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self._connect_timeout_s, sock_read=self._timeout_s
                ),
                # spout's providers serialize their own JSON bodies and read raw bytes.
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[loop] = session
        return session

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __del__(self) -> None:
        # An LLM dropped without close() must not leave its pooled sockets to the collector.
        with contextlib.suppress(Exception):
            self.close()

    async def aclose(self) -> None:
        import asyncio

        self.close()
        loop = asyncio.get_running_loop()
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()

    # -- sync ----------------------------------------------------------------------------------

    def request(self, request: HTTPRequest, on_error: ErrorMapper) -> bytes:
        """Send a request and return the body of a successful response."""
        import httpx

        client = self._sync_client()
        try:
            response = client.request(
                request.method, request.url, headers=request.headers, content=_exact(request.body)
            )
        except httpx.HTTPError as exc:
            raise _translate(exc, streaming=False) from exc
        if response.status_code >= 400:
            raise on_error(response.status_code, response.headers, response.content)
        return response.content

    def stream(
        self, request: HTTPRequest, on_error: ErrorMapper
    ) -> tuple[Iterator[bytes], Callable[[], None]]:
        """Send a request; returns the body's chunks as they arrive and how to close it.

        The request is sent before this returns, so a refused connection or an error status
        raises here, not on the first read.
        """
        import httpx

        client = self._sync_client()
        try:
            response = client.send(
                client.build_request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    content=_exact(request.body),
                ),
                stream=True,
            )
        except httpx.HTTPError as exc:
            raise _translate(exc, streaming=False) from exc
        if response.status_code >= 400:
            try:
                body = response.read()
            except httpx.HTTPError:
                body = b""
            finally:
                response.close()
            raise on_error(response.status_code, response.headers, body)
        return _chunks(response), response.close

    # -- async ---------------------------------------------------------------------------------

    async def arequest(self, request: HTTPRequest, on_error: ErrorMapper) -> bytes:
        """Send a request and return the body of a successful response."""
        session = self._session()
        try:
            async with session.request(
                request.method, request.url, headers=request.headers, data=_exact(request.body)
            ) as response:
                body = await response.read()
                if response.status >= 400:
                    raise on_error(response.status, response.headers, body)
                return body
        except _aiohttp_errors() as exc:
            raise _atranslate(exc, streaming=False) from exc

    async def astream(
        self, request: HTTPRequest, on_error: ErrorMapper
    ) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        """Send a request; returns the body's chunks as they arrive and how to close it."""
        session = self._session()
        try:
            response = await session.request(
                request.method, request.url, headers=request.headers, data=_exact(request.body)
            )
        except _aiohttp_errors() as exc:
            raise _atranslate(exc, streaming=False) from exc
        if response.status >= 400:
            try:
                body = await response.read()
            except _aiohttp_errors():
                body = b""
            finally:
                response.release()
            raise on_error(response.status, response.headers, body)

        async def close() -> None:
            # Read to the end, the connection goes back to the pool; stopped early, it is
            # closed, so the server sees the client go and stops generating.
            if response.content.at_eof():
                response.release()
            else:
                response.close()

        return _achunks(response), close


def _exact(body: bytes | None) -> bytes | None:
    """The body in an allocation of its own size.

    orjson returns small outputs in a 4 KiB buffer, and the HTTP library keeps the body for
    the life of the response: 1,000 concurrent streams would hold 4 MB of slack.
    """
    if body is not None and len(body) < 4096:
        return bytes(memoryview(body))
    return body


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    import httpx

    try:
        yield from response.iter_bytes()
    except httpx.HTTPError as exc:
        raise _translate(exc, streaming=True) from exc


async def _achunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    errors = _aiohttp_errors()
    read = response.content.readany
    try:
        while True:
            chunk = await read()
            if not chunk:
                return
            yield chunk
    except errors as exc:
        raise _atranslate(exc, streaming=True) from exc


def header_value(headers: Any, *names: str) -> str | None:
    """The first of several headers that is present (request ids go by many names)."""
    for name in names:
        value = headers.get(name)
        if value:
            return str(value)
    return None
