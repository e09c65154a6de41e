"""Sync and async HTTP for every provider; the only place the HTTP libraries are called.

Sync requests go through httpx; async ones through aiohttp, which costs about a third of
httpx's async stack per socket read (measured in ``docs/benchmarks.md``) and is imported on
first async use only. Their exceptions are translated into spout's here, and never escape.

Bodies are read raw and inflated here (:class:`_Inflater`), not by the HTTP libraries: they
inflate a compressed read whole, and a gzip bomb's 64 KiB read is 44 MB. Here a body is
inflated in pieces of at most 64 KiB and counted against ``ResponseLimits.max_body_bytes``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
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
from ._limits import DEFAULT_LIMITS, ResponseLimits, over_limit
from ._log import DEBUG, log_request, log_response, logger
from ._request import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    ErrorMapper,
    HTTPRequest,
    header_value,
)

if TYPE_CHECKING:
    import asyncio

    import aiohttp
    import httpx

    from ._policy import Deadline

__all__ = ["Transport"]

#: The most bytes one inflate step makes: what a compressed read can cost at once.
_PIECE = 64 * 1024
#: What spout asks for and can inflate itself (both clients would add others they know).
_ACCEPT_ENCODING = "gzip, deflate"
#: An error body is read only to name the error: this much of it is enough.
_MAX_ERROR_BODY = 1024 * 1024


class _Inflater:
    """Undoes a body's ``Content-Encoding`` in bounded pieces and counts the bytes it gives.

    Past ``limit`` bytes (after inflating) :meth:`feed` returns the bytes up to the limit and
    sets ``error``, a :class:`ProtocolError` naming ``ResponseLimits.max_body_bytes``, for the
    caller to raise once it passed them on (the partial response then holds all it could);
    an encoding it does not know raises at once (it was not asked for).
    """

    __slots__ = ("_inflate", "_mode", "error", "limit", "size")

    def __init__(self, encoding: str | None, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.error: ProtocolError | None = None
        codings = [c.strip().lower() for c in (encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        self._mode = codings[0] if len(codings) == 1 else ""
        if len(codings) > 1 or (codings and self._mode not in ("gzip", "x-gzip", "deflate")):
            shown = "".join(char if " " <= char <= "~" else "?" for char in (encoding or "")[:80])
            raise ProtocolError(
                f"the response is compressed as {shown!r}, which spout did not ask for "
                f"(Accept-Encoding: {_ACCEPT_ENCODING}) and does not inflate"
            )
        self._inflate: Any = self._new() if codings else None

    def _new(self) -> Any:
        # gzip: 16 + window bits; deflate is zlib-wrapped as the standard says (32 + 15
        # takes either header), a raw deflate stream is tried when that fails.
        return zlib.decompressobj(31 if self._mode != "deflate" else 47)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The bytes ``data`` inflates to, in pieces of at most 64 KiB, up to the limit.

        A generator: a piece is inflated only when the one before it was taken, so a bomb's
        read never sits in memory whole, and a caller can check its clock between pieces.
        """
        if self.error is not None:
            return
        inflate = self._inflate
        if inflate is None:
            self.size += len(data)
            if self.size > self.limit:
                yield self._over(data)
            elif data:
                yield data
            return
        while data:
            try:
                piece = inflate.decompress(data, _PIECE)
            except zlib.error as exc:
                if self._mode == "deflate" and self.size == 0:
                    self._inflate = inflate = zlib.decompressobj(-15)
                    self._mode = "raw"
                    continue
                raise ProtocolError(
                    f"the response body could not be inflated ({self._mode}): {exc}"
                ) from None
            if piece:
                self.size += len(piece)
                if self.size > self.limit:
                    yield self._over(piece)
                    return
                yield piece
            if inflate.eof:
                # gzip allows members one after another; anything else after the end is junk.
                data = inflate.unused_data
                if data and self._mode in ("gzip", "x-gzip"):
                    self._inflate = inflate = self._new()
                    continue
                return
            data = inflate.unconsumed_tail

    def _over(self, piece: bytes) -> bytes:
        """The piece cut to the limit; ``error`` is set, and nothing more is inflated."""
        kept = piece[: len(piece) - (self.size - self.limit)]
        self.size = self.limit
        self._inflate = None
        self.error = ProtocolError(
            over_limit("the response body (inflated)", self.limit, "max_body_bytes")
        )
        return kept


def _status_error(
    on_error: ErrorMapper, status: int, headers: Mapping[str, str], body: bytes
) -> ProviderError:
    """The error for a response that is not a success: the provider's own for 4xx and 5xx.

    A redirect (3xx) is an error too: an API call follows none, sync or async, so a key in a
    header of the provider's own (``x-api-key``, ``api-key``, which HTTP libraries keep on a
    cross-origin redirect) never reaches another address. The error names the status and
    where the server pointed (cut short: it comes from the network).
    """
    if status >= 400:
        return on_error(status, headers, body)
    named = on_error(status, headers, b"")
    location = header_value(headers, "location") or "nowhere (no Location header)"
    shown = "".join(char if " " <= char <= "~" else "?" for char in location[:200])
    return ProviderError(
        f"the server answered HTTP {status}, a redirect to {shown!r}; spout follows no "
        "redirect for an API call, so the key goes nowhere else: set base_url to the API's "
        "own address",
        provider=named.provider,
        model=named.model,
        status_code=status,
        request_id=named.request_id,
        error_type="redirect",
    )


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


def _aiohttp_url(url: str) -> Any:
    """The URL for aiohttp, sent as the provider wrote it.

    A URL with percent-escapes was encoded by the provider that built it, and goes out byte for
    byte, as httpx sends it: yarl would otherwise decode the escapes it deems safe in a path
    (``%3A`` becomes ``:``), and a signature over the path (Bedrock's SigV4, whose model ids
    hold ``:``) would no longer match what arrives.
    """
    if "%" not in url:
        return url
    import yarl

    return yarl.URL(url, encoded=True)


def _aiohttp_errors() -> tuple[type[BaseException], ...]:
    import asyncio

    import aiohttp

    return (aiohttp.ClientError, asyncio.TimeoutError)


class _LoopSessions:
    """The aiohttp sessions opened on one event loop, to be closed on that loop.

    A session's connections belong to its loop, so it can only be closed there, while the
    loop runs. ``aclose()`` does that; but an LLM made in a coroutine and never closed (every
    async example of the seeds spout was made from) would leave its session to the collector,
    which warns ``Unclosed client session`` and drops its sockets in no order. So a transport
    dropped with a session open hands it here, to be closed on its loop at once; and what is
    still open when the loop shuts down (``asyncio.run`` returning, say) is closed then.
    """

    __slots__ = ("closed", "closing", "keeper", "open", "tasks")

    def __init__(self) -> None:
        self.open: weakref.WeakSet[aiohttp.ClientSession] = weakref.WeakSet()
        #: Sessions of dropped transports until they are closed: nothing else holds them.
        self.closing: set[aiohttp.ClientSession] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.keeper: AsyncGenerator[None, None] | None = None
        self.closed = False


_loop_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSessions] = (
    weakref.WeakKeyDictionary()
)
_loop_sessions_lock = threading.Lock()


async def _close_at_loop_end(sessions: _LoopSessions) -> AsyncGenerator[None, None]:
    """Suspended for the loop's life; resumed by its ``shutdown_asyncgens()``.

    ``asyncio.run``, ``asyncio.Runner`` and pytest-asyncio call it before they close a loop:
    the last moment its sessions can be closed on it (compat's LLM cache uses the same hook).
    """
    try:
        yield
    finally:
        sessions.closed = True
        sessions.keeper = None
        for session in [*sessions.open, *sessions.closing]:
            with contextlib.suppress(Exception):
                await session.close()
        sessions.closing.clear()


def _sessions_on(loop: asyncio.AbstractEventLoop) -> _LoopSessions:
    """The running loop's sessions; made on first use with the keeper that closes them."""
    with _loop_sessions_lock:
        sessions = _loop_sessions.get(loop)
        if sessions is not None and not sessions.closed:
            return sessions
        sessions = _loop_sessions[loop] = _LoopSessions()
    keeper = _close_at_loop_end(sessions)
    # Run to its first yield, as `await keeper.asend(None)` would (this is sync code on the
    # loop's thread): asend() calls the loop's first-iteration hook, which registers it.
    with contextlib.suppress(StopIteration):
        keeper.asend(None).send(None)
    sessions.keeper = keeper
    return sessions


def _close_soon(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
    """Close a dropped transport's session on its loop, from any thread (the collector's)."""
    if session.closed or loop.is_closed():
        return
    with _loop_sessions_lock:
        sessions = _loop_sessions.get(loop)
    if sessions is None or sessions.closed:
        return
    sessions.closing.add(session)
    loop.call_soon_threadsafe(_start_closing, sessions, session)


def _start_closing(sessions: _LoopSessions, session: aiohttp.ClientSession) -> None:
    import asyncio

    async def close() -> None:
        try:
            await session.close()
        finally:
            sessions.closing.discard(session)

    # If the loop stops before this task runs, the keeper closes the session instead.
    task = asyncio.ensure_future(close())
    sessions.tasks.add(task)
    task.add_done_callback(sessions.tasks.discard)


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
        #: What one response may make this transport hold (``max_body_bytes`` is read here);
        #: an LLM sets its own.
        self.limits: ResponseLimits = DEFAULT_LIMITS
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
                headers={"Accept-Encoding": _ACCEPT_ENCODING, **self._headers},
                limits=httpx.Limits(
                    max_connections=self._max_connections, max_keepalive_connections=20
                ),
            )
            _install_deadlines(self._client)
        return self._client

    def _session(self) -> aiohttp.ClientSession:
        # A session's connections belong to the event loop that opened them.
        import asyncio

        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            import aiohttp

            session = aiohttp.ClientSession(
                headers={"Accept-Encoding": _ACCEPT_ENCODING, **self._headers},
                # Bodies are inflated by _Inflater, in bounded pieces (see the module).
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=self._max_connections or 0),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self._connect_timeout_s, sock_read=self._timeout_s
                ),
                # spout's providers serialize their own JSON bodies and read raw bytes.
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[loop] = session
            _sessions_on(loop).open.add(session)
        return session

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __del__(self) -> None:
        # An LLM dropped without close() must not leave its pooled sockets to the collector.
        with contextlib.suppress(Exception):
            self.close()
        for loop, session in list(self._sessions.items()):
            with contextlib.suppress(Exception):
                _close_soon(loop, session)

    async def aclose(self) -> None:
        import asyncio

        self.close()
        loop = asyncio.get_running_loop()
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()

    # -- sync ----------------------------------------------------------------------------------

    def request(
        self, request: HTTPRequest, on_error: ErrorMapper, deadline: Deadline | None = None
    ) -> bytes:
        """Send a request and return the body of a successful response."""
        response = self._send(request, deadline, stream=True)
        try:
            if response.status_code >= 300:
                body = _error_body(response, deadline)
                raise _status_error(on_error, response.status_code, response.headers, body)
            limit = self.limits.max_body_bytes
            return b"".join(_body_chunks(response, deadline, limit, streaming=False))
        finally:
            response.close()

    def stream(
        self, request: HTTPRequest, on_error: ErrorMapper, deadline: Deadline | None = None
    ) -> tuple[Iterator[bytes], Callable[[], None], Mapping[str, str]]:
        """Send a request; returns the body's chunks as they arrive and how to close it.

        The request is sent before this returns, so a refused connection or an error status
        raises here, not on the first read. With a ``deadline``, no wait (connecting, the
        headers, each read) goes past it.
        """

        response = self._send(request, deadline, stream=True)
        if response.status_code >= 300:
            try:
                body = _error_body(response, deadline)
            finally:
                response.close()
            raise _status_error(on_error, response.status_code, response.headers, body)
        try:
            chunks = _body_chunks(response, deadline, self.limits.max_body_bytes)
        except ProtocolError:
            response.close()
            raise
        return chunks, _Release(response), response.headers

    def _send(
        self, request: HTTPRequest, deadline: Deadline | None, *, stream: bool
    ) -> httpx.Response:
        """Send a request; the response is read whole unless ``stream``, its body then unread.

        (spout's own calls all stream: :func:`_body_chunks` reads the body, bounded.)
        """
        import httpx

        client = self._sync_client()
        if logger.isEnabledFor(DEBUG):
            log_request(request, self._headers)
        _local.deadline = deadline
        try:
            # What client.request() does, with stream= (reading the body inside, as it does).
            response = client.send(
                client.build_request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    content=request.body,
                    timeout=self._timeouts(deadline),
                ),
                stream=stream,
            )
        except httpx.HTTPError as exc:
            raise _deadline_error(deadline) or _translate(exc, streaming=False) from exc
        finally:
            _local.deadline = None
        if logger.isEnabledFor(DEBUG):
            log_response(request, response.status_code)
        return response

    def _timeouts(self, deadline: Deadline | None) -> Any:
        import httpx

        if deadline is None:
            return httpx.USE_CLIENT_DEFAULT
        return httpx.Timeout(
            self._timeout_s, connect=deadline.connect_timeout(self._connect_timeout_s)
        )

    def _aiohttp_timeout(self, deadline: Deadline | None) -> Any:
        import aiohttp

        if deadline is None:
            return aiohttp.helpers.sentinel
        return aiohttp.ClientTimeout(
            total=None,
            connect=deadline.connect_timeout(self._connect_timeout_s),
            sock_read=self._timeout_s,
        )

    # -- async ---------------------------------------------------------------------------------

    async def arequest(
        self, request: HTTPRequest, on_error: ErrorMapper, deadline: Deadline | None = None
    ) -> bytes:
        """Send a request and return the body of a successful response."""
        session = self._session()
        if logger.isEnabledFor(DEBUG):
            log_request(request, self._headers)
        try:
            async with (
                _within(deadline),
                session.request(
                    request.method,
                    _aiohttp_url(request.url),
                    headers=request.headers,
                    data=request.body,
                    timeout=self._aiohttp_timeout(deadline),
                    allow_redirects=False,  # see _status_error
                ) as response,
            ):
                if logger.isEnabledFor(DEBUG):
                    log_response(request, response.status)
                if response.status >= 300:
                    body = await _aerror_body(response)
                    raise _status_error(on_error, response.status, response.headers, body)
                limit = self.limits.max_body_bytes
                inflater = _Inflater(response.headers.get("Content-Encoding"), limit)
                parts: list[bytes] = []
                async for chunk in response.content.iter_any():
                    parts += inflater.feed(chunk)
                    if inflater.error is not None:
                        raise inflater.error
                    if deadline is not None and (expired := _expired(deadline)):
                        raise expired
                return b"".join(parts)
        except _aiohttp_errors() as exc:
            raise _deadline_error(deadline) or _atranslate(exc, streaming=False) from exc

    async def astream(
        self, request: HTTPRequest, on_error: ErrorMapper, deadline: Deadline | None = None
    ) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]], Mapping[str, str]]:
        """Send a request; returns the body's chunks as they arrive and how to close it."""
        session = self._session()
        if logger.isEnabledFor(DEBUG):
            log_request(request, self._headers)
        try:
            async with _within(deadline):
                response = await session.request(
                    request.method,
                    _aiohttp_url(request.url),
                    headers=request.headers,
                    data=request.body,
                    timeout=self._aiohttp_timeout(deadline),
                    allow_redirects=False,  # see _status_error
                )
        except _aiohttp_errors() as exc:
            raise _deadline_error(deadline) or _atranslate(exc, streaming=False) from exc
        if logger.isEnabledFor(DEBUG):
            log_response(request, response.status)
        if response.status >= 300:
            try:
                body = await _aerror_body(response)
            finally:
                response.release()
            raise _status_error(on_error, response.status, response.headers, body)
        try:
            inflater = _Inflater(
                response.headers.get("Content-Encoding"), self.limits.max_body_bytes
            )
        except ProtocolError:
            response.close()
            raise

        async def close() -> None:
            # Read to the end, the connection goes back to the pool; stopped early, it is
            # closed, so the server sees the client go and stops generating.
            if response.content.at_eof():
                response.release()
            else:
                response.close()

        return _achunks(response, inflater, deadline), close, response.headers


class _Release:
    """Closes a sync streamed response: ``release()`` as usual, ``abort()`` from another thread.

    A thread blocked reading the socket is not woken by closing it on Linux; shutting it down
    does, so ``abort`` does that first (the reader then sees the connection end).
    """

    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    def __call__(self) -> None:
        self._response.close()

    def abort(self) -> None:
        import socket

        if self._response.is_closed:
            return  # its connection may be back in the pool, serving another request
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _body_chunks(
    response: httpx.Response, deadline: Deadline | None, limit: int, *, streaming: bool = True
) -> Iterator[bytes]:
    """The body, inflated in bounded pieces, within ``limit`` bytes and the deadline.

    The deadline is checked after every read as well as on it: a server that sends fast
    never makes a read wait, and ``total`` must still end the call on time. The encoding is
    checked before the first read (an unknown one raises here, not on iteration).
    """
    inflater = _Inflater(response.headers.get("Content-Encoding"), limit)
    return _inflated(response, inflater, deadline, streaming)


def _inflated(
    response: httpx.Response, inflater: _Inflater, deadline: Deadline | None, streaming: bool
) -> Iterator[bytes]:
    import httpx

    raw = response.iter_raw()
    try:
        while True:
            _local.deadline = deadline
            try:
                chunk = next(raw, None)
            finally:
                _local.deadline = None
            if chunk is None:
                return
            if deadline is None:
                yield from inflater.feed(chunk)
            else:
                for piece in inflater.feed(chunk):
                    yield piece
                    if expired := _expired(deadline):
                        raise expired
            if inflater.error is not None:
                raise inflater.error
    except httpx.HTTPError as exc:
        raise _deadline_error(deadline) or _translate(exc, streaming=streaming) from exc


def _error_body(response: httpx.Response, deadline: Deadline | None) -> bytes:
    """An error response's body, to name the error: at most 1 MiB of it, never an error."""
    inflater = _Inflater(None, _MAX_ERROR_BODY)
    with contextlib.suppress(ProtocolError):
        inflater = _Inflater(response.headers.get("Content-Encoding"), _MAX_ERROR_BODY)
    parts: list[bytes] = []
    with contextlib.suppress(SpoutError):  # ProtocolError past the limit included
        for piece in _inflated(response, inflater, deadline, False):
            parts.append(piece)
    return b"".join(parts)


async def _aerror_body(response: aiohttp.ClientResponse) -> bytes:
    """As :func:`_error_body`, async (the caller's deadline bounds the whole request)."""
    inflater = _Inflater(None, _MAX_ERROR_BODY)
    with contextlib.suppress(ProtocolError):
        inflater = _Inflater(response.headers.get("Content-Encoding"), _MAX_ERROR_BODY)
    parts: list[bytes] = []
    with contextlib.suppress(ProtocolError, *_aiohttp_errors()):
        async for chunk in response.content.iter_any():
            parts += inflater.feed(chunk)
            if inflater.error is not None:
                break
    return b"".join(parts)


async def _achunks(
    response: aiohttp.ClientResponse, inflater: _Inflater, deadline: Deadline | None = None
) -> AsyncIterator[bytes]:
    errors = _aiohttp_errors()
    read = response.content.readany
    feed = inflater.feed
    try:
        while True:
            if deadline is None:
                chunk = await read()
                if not chunk:
                    return
                for piece in feed(chunk):
                    yield piece
            else:
                async with _within(deadline):
                    chunk = await read()
                if not chunk:
                    return
                # A read that found bytes waiting never suspends, so asyncio's deadline never
                # fires while a server sends fast: the clock is read here too.
                for piece in feed(chunk):
                    if expired := _expired(deadline):
                        raise expired
                    yield piece
            if inflater.error is not None:
                raise inflater.error
    except errors as exc:
        timed_out = _deadline_error(deadline)
        left = b"" if timed_out else _left_in_buffer(response)
        if left:
            for piece in feed(left):
                yield piece
        raise timed_out or _atranslate(exc, streaming=True) from exc


def _left_in_buffer(response: aiohttp.ClientResponse) -> bytes:
    """Bytes that arrived before the connection broke, which aiohttp holds but will not give.

    ``StreamReader.readany`` raises a stored error before returning its buffer, so a reader
    slower than the network would lose text that did arrive. Its private buffer is read here,
    and only here, and only once the stream has failed.
    """
    content = response.content
    try:
        return b"".join(bytes(piece) for piece in content._buffer)
    except (AttributeError, TypeError):  # another aiohttp: nothing to recover
        return b""


# -- deadlines --------------------------------------------------------------------------------
#
# httpx fixes a request's read timeout when its body starts, and keep-alive pings reset it: it
# cannot say "no content for 10 s". So the sync client's network streams take each read's
# limit from the deadline of the call being read in this thread (set around every read), and
# async reads run under asyncio's own deadline.

_local = threading.local()


def _expired(deadline: Deadline) -> SpoutError | None:
    """The timeout error if a limit of ``deadline`` has run out by now (checked between
    reads; unlike :func:`_deadline_error`, no margin for a timer that fired early)."""
    at = deadline.next()
    if at is None or time.monotonic() < at:
        return None
    return deadline.expired_error()


def _deadline_error(deadline: Deadline | None) -> SpoutError | None:
    """The timeout error of ``deadline`` if one of its limits ran out, else None."""
    if deadline is None:
        return None
    at = deadline.next()
    if at is None or time.monotonic() < at - 0.002:
        return None
    return deadline.expired_error()


def _install_deadlines(client: httpx.Client) -> None:
    """Wrap the network backend of the client's connection pools (httpcore's public
    ``NetworkBackend`` interface, set on the pool's private attribute: httpx takes no backend)."""
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]


def _limited(timeout: float | None) -> float | None:
    """A read's timeout, shortened to the deadline of the call read in this thread."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    at = deadline.next()
    if at is None:
        return timeout
    remaining = at - time.monotonic()
    if remaining <= 0:
        import httpcore

        raise httpcore.ReadTimeout("the call's deadline passed")
    return remaining if timeout is None or remaining < timeout else timeout


def _deadline_backend_classes() -> tuple[type[Any], type[Any]]:
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return bytes(self._inner.read(max_bytes, _limited(timeout)))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, timeout)

        def close(self) -> None:
            self._inner.close()

        def start_tls(
            self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
        ) -> Any:
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> Any:
            return DeadlineStream(
                self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
            )

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> Any:
            return DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    return DeadlineStream, DeadlineBackend


class _DeadlineBackend:
    """Made on first use (httpcore is imported lazily): see :func:`_deadline_backend_classes`."""

    def __new__(cls, inner: Any) -> Any:
        global _DeadlineBackend
        _, backend = _deadline_backend_classes()
        _DeadlineBackend = backend  # type: ignore[misc]
        return backend(inner)


def _within(deadline: Deadline | None) -> Any:
    """An async context that ends its body at ``deadline``'s next limit (or never)."""
    import asyncio

    at = None if deadline is None else deadline.next()
    if at is None:
        return contextlib.nullcontext()
    when = asyncio.get_running_loop().time() + (at - time.monotonic())
    timeout_at = getattr(asyncio, "timeout_at", None)  # Python 3.11+
    if timeout_at is None:
        import async_timeout  # type: ignore[import-not-found]  # aiohttp needs it before 3.11

        timeout_at = async_timeout.timeout_at
    return timeout_at(when)
