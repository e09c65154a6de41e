"""``GET /v1/ws``: several streamed requests on one WebSocket, spout's typed events as JSON.

Client to server (JSON text messages)::

    {"type": "request", "id": "r1", "model": "smol", "messages": [...], "tools": [...], ...}
    {"type": "cancel", "id": "r1"}

A ``request`` is an OpenAI chat request (the fields of ``POST /v1/chat/completions``) with an
``id`` the client picks, unique among its running requests. Server to client::

    {"type": "start", "id": "r1", "stream_id": "st_..."}
    {"type": "event", "id": "r1", "n": 2, "event": {"type": "text", "text": "Hel"}}
    {"type": "done", "id": "r1", "n": 9, "response": {"text": ..., "tool_calls": [...], ...}}
    {"type": "error", "id": "r1", "error": {"type": "cancelled", "message": ..., "status": 499}}
    {"type": "rejected", "id": "r1", "error": {"type": "invalid_message", "message": ...}}

Every request ends with exactly one ``done`` or ``error``; ``rejected`` answers a message the
gateway did not act on (not JSON, an unknown type, an id already running, a cancel for no
running request) and changes no request. Each request is a stream of the hub like an HTTP one
(the ``spout`` protocol of :mod:`._spout_wire`; ``n`` is its event number), so it can be
followed or resumed with ``GET /v1/streams/{stream_id}``; a cancel goes through the hub; a
closed connection leaves its streams to the resume window, like a dropped HTTP reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from .. import SpoutError
from . import _spout_wire
from ._guard import Denied, Identity
from ._hub import EventsExpired, StreamNotFound
from ._hygiene import AllowedHosts, check_depth
from ._wire import Request, RequestError, StreamCancelled

if TYPE_CHECKING:
    from .. import LLM
    from ._app import Gateway
    from ._config import GatewayConfig, Route

__all__ = ["MAX_RUNNING", "endpoint"]

log = logging.getLogger("spout.gateway")

PATH = "/v1/ws"
#: Requests one connection may have running at once; one more is rejected.
MAX_RUNNING = 64
MAX_ID_LENGTH = 128

_DONE = b'{"type":"done",'
_ERROR = b'{"type":"error",'
# What a send to a connection that is gone raises (starlette wraps uvicorn's OSError).
_GONE = (WebSocketDisconnect, WebSocketDisconnected, OSError)


def endpoint(gateway: Gateway) -> Callable[[WebSocket], Awaitable[None]]:
    """The ASGI WebSocket endpoint of ``gateway``."""

    async def serve(websocket: WebSocket) -> None:
        await Connection(gateway, websocket).serve()

    return serve


@dataclass(slots=True)
class _Running:
    task: asyncio.Task[None] | None = None
    stream_id: str | None = None
    #: The client asked to cancel it (its end is then "cancelled", not an error to raise).
    cancelled: bool = False


class Connection:
    """One client's WebSocket: reads its messages, runs its requests, writes their events."""

    def __init__(self, gateway: Gateway, websocket: WebSocket) -> None:
        self.gateway = gateway
        self.websocket = websocket
        self.running: dict[str, _Running] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()

    async def serve(self) -> None:
        gateway, websocket = self.gateway, self.websocket
        try:
            # The key is checked once, here; each request message is then counted as a
            # request against the caller's rate (Guard.admit).
            await gateway.guard.identify(websocket)
            _check_origin(websocket, gateway.config)
        except Denied as exc:
            gateway.metrics.request(PATH, exc.status)
            await websocket.accept()
            with contextlib.suppress(*_GONE):
                await self._send({"type": "rejected", "id": None, "error": _denied(exc)})
                await websocket.close(code=1008, reason=_reason(exc.message))
            return
        gateway.metrics.request(PATH, 101)
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                await self._handle(text if text is not None else message.get("bytes") or b"")
        except _GONE:
            pass
        finally:
            # Followers stop here: each stream then has the resume window (or is cancelled,
            # if it had not started: nobody knows its id to come back for it).
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- messages in -----------------------------------------------------------------------------

    async def _handle(self, raw: str | bytes) -> None:
        limit = self.gateway.config.limits.max_body_bytes
        if len(raw) > limit:
            await self._reject(None, f"the message is over the limit of {limit} bytes", "too_large")
            return
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await self._reject(None, f"the message is not JSON: {exc}")
            return
        if not isinstance(message, dict):
            await self._reject(None, "a message must be a JSON object with a 'type'")
            return
        kind = message.get("type")
        request_id = message.get("id")
        if kind not in ("request", "cancel"):
            await self._reject(
                request_id if isinstance(request_id, str) else None,
                f"unknown message type {kind!r:.40}: send 'request' or 'cancel'",
            )
            return
        if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_ID_LENGTH:
            await self._reject(
                None, f"a {kind} needs an 'id': a string of 1 to {MAX_ID_LENGTH} characters"
            )
            return
        if kind == "cancel":
            await self._cancel(request_id)
        else:
            await self._request(request_id, message)

    async def _request(self, request_id: str, message: dict[str, Any]) -> None:
        gateway = self.gateway
        if request_id in self.running:
            await self._reject(
                request_id, f"request {request_id!r} is still running: use another id"
            )
            return
        if len(self.running) >= MAX_RUNNING:
            await self._reject(
                request_id, f"{MAX_RUNNING} requests are running on this connection: wait for one"
            )
            return
        body = {key: value for key, value in message.items() if key not in ("type", "id")}
        try:
            identity = await gateway.guard.admit(self.websocket)
            check_depth(body)  # a 400 naming the field, not a RecursionError in the store
            request = _spout_wire.PROTOCOL.parse(body)
            route = gateway.resolve(request)
            llm = gateway.llm(route)
        except Denied as exc:
            await self._send({"type": "error", "id": request_id, "error": _denied(exc)})
            return
        except Exception as exc:
            await self._send({"type": "error", "id": request_id, "error": self._error(exc)})
            return
        running = _Running()
        self.running[request_id] = running
        task = asyncio.create_task(self._run(request_id, running, request, route, llm, identity))
        running.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel(self, request_id: str) -> None:
        running = self.running.get(request_id)
        if running is None:
            await self._reject(request_id, f"no running request {request_id!r} to cancel")
            return
        running.cancelled = True
        if running.stream_id is not None:
            await self.gateway.hub.cancel(running.stream_id)
        elif running.task is not None:
            # Not started yet (waiting for the first event): stopping the task cancels the
            # stream it is opening (Gateway.open_stream).
            running.task.cancel()

    # -- one request -----------------------------------------------------------------------------

    async def _run(
        self,
        request_id: str,
        running: _Running,
        request: Request,
        route: Route,
        llm: LLM,
        identity: Identity,
    ) -> None:
        gateway = self.gateway
        try:
            try:
                stream_id = await gateway.open_stream(
                    _spout_wire.PROTOCOL, request, route, llm, identity
                )
            except asyncio.CancelledError:
                if not running.cancelled:
                    raise
                await self._end(request_id, running, {"error": self._error(StreamCancelled())})
                return
            except Exception as exc:
                await self._end(request_id, running, {"error": self._error(exc)})
                return
            running.stream_id = stream_id
            await self._send({"type": "start", "id": request_id, "stream_id": stream_id})
            await self._follow(request_id, running, stream_id)
        except _GONE:
            return  # the connection is gone: the stream has its resume window

    async def _follow(self, request_id: str, running: _Running, stream_id: str) -> None:
        head = b'{"type":"event","id":' + orjson.dumps(request_id) + b',"n":'
        try:
            frames = self.gateway.hub.follow(stream_id, 0, creator=True)
            try:
                async for number, frame in frames:
                    data = _frame_data(frame)
                    if data.startswith(_DONE) or data.startswith(_ERROR):
                        end = orjson.loads(data)
                        del end["type"]
                        await self._end(request_id, running, {"n": number, **end})
                        return
                    # The event's JSON as the encoder wrote it, spliced in, not parsed again.
                    await self._send(head + str(number).encode() + b',"event":' + data + b"}")
            finally:
                # At once, not when collected: the hub counts this reader out now.
                aclose = getattr(frames, "aclose", None)
                if aclose is not None:
                    await aclose()
        except (EventsExpired, StreamNotFound) as exc:
            await self._end(request_id, running, {"error": self._error(exc)})
            return
        except _GONE:
            raise
        except Exception as exc:
            # The hub failed (Redis went away): the request ends with an error, the
            # connection and its other requests go on.
            log.warning("stream %s: a WebSocket reader's hub failed: %s", stream_id, exc)
            lost = RequestError(
                "the gateway lost this stream's events (its store failed)", status=503
            )
            await self._end(request_id, running, {"error": self._error(lost)})
            return
        error = RequestError("the stream ended without its last event", status=502)
        await self._end(request_id, running, {"error": self._error(error)})

    async def _end(self, request_id: str, running: _Running, fields: dict[str, Any]) -> None:
        """The request's last message: ``done`` with the response, or ``error``."""
        # The id is free again before the client can see the end and reuse it.
        if self.running.get(request_id) is running:
            del self.running[request_id]
        kind = "done" if "response" in fields else "error"
        await self._send({"type": kind, "id": request_id, **fields})

    # -- messages out ----------------------------------------------------------------------------

    def _error(self, exc: BaseException) -> dict[str, Any]:
        if isinstance(exc, SpoutError):
            self.gateway.metrics.upstream_error(type(exc).__name__)
        elif not isinstance(exc, RequestError | EventsExpired | StreamNotFound):
            log.exception("WebSocket request failed", exc_info=exc)
        _, error = _spout_wire.error_to_dict(exc)
        if isinstance(exc, RequestError) and exc.param:
            error["param"] = exc.param
        return error

    async def _reject(
        self, request_id: str | None, message: str, kind: str = "invalid_message"
    ) -> None:
        error = {"type": kind, "message": message}
        await self._send({"type": "rejected", "id": request_id, "error": error})

    async def _send(self, message: dict[str, Any] | bytes) -> None:
        text = (message if isinstance(message, bytes) else orjson.dumps(message)).decode()
        # One writer at a time; a slow client makes every request's follower wait here
        # (the hub keeps the events, bounded) rather than buffering without end.
        async with self._send_lock:
            await self.websocket.send({"type": "websocket.send", "text": text})


def _frame_data(frame: bytes) -> bytes:
    """The JSON of a ``spout`` frame (``data: {...}\\n\\n``, made by one ``sse_frame``)."""
    return frame[len(b"data: ") : -2] if frame.startswith(b"data: ") else frame.strip()


def _check_origin(websocket: WebSocket, config: GatewayConfig) -> None:
    """A browser page may open a WebSocket to any site (CORS does not apply): one from
    another origin than the gateway's own (its chat page) or the ``--cors-origin`` list is
    refused, so no web page the user visits can spend the gateway's upstream. The gateway's
    own origin is the one its ``Host`` names, and only if that is a name it serves (a page
    whose name was made to resolve to the gateway's address names itself in both). Clients
    that are not browsers send no ``Origin``."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in config.cors_origins:
        return
    netloc = urlsplit(origin).netloc
    if netloc == websocket.headers.get("host") and AllowedHosts.of(config).allows(netloc):
        return
    raise Denied(
        f"the origin {origin!r:.80} may not open a WebSocket here", status=403, kind="permission"
    )


def _denied(exc: Denied) -> dict[str, Any]:
    error: dict[str, Any] = {"type": exc.kind, "message": exc.message, "status": exc.status}
    if exc.retry_after is not None:
        error["retry_after"] = exc.retry_after
    return error


def _reason(message: str) -> str:
    """A close reason: at most 123 bytes of UTF-8 (RFC 6455, 5.5)."""
    return message.encode()[:123].decode(errors="ignore")
