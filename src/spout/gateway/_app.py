"""The gateway as an ASGI app: routes, producers, followers.

A streamed request starts a *producer*: a task that reads the upstream spout stream, turns
each event into frames of the client's protocol and appends them to the hub. The HTTP
response (and any later reader of ``GET /v1/streams/{id}``) *follows* the hub. So the
upstream is read once, at its own pace, whoever reads and however many; and it stops when
the hub says so (a cancel, or no reader for the resume window), which closes its connection.

Errors before the first event come out as an HTTP status and an error body in the client's
protocol; after it, as the protocol's error frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route as HTTPRoute
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send

from .. import (
    LLM,
    ConfigurationError,
    ProviderError,
    ResponseStart,
    SpoutError,
    StreamError,
    TransportError,
    continue_trace,
    create_llm,
)
from . import _openai, _ws
from ._config import GatewayConfig, Route
from ._conversations import HEADER as CONVERSATION_HEADER
from ._conversations import Conversations, Recording, conversation_routes, owner_of
from ._direct import SERVER_SEND, DirectWriter, server_cycle
from ._guard import Denied, Guard, Identity, middleware
from ._hub import EventsExpired, Hub, MemoryHub, StreamNotFound
from ._hygiene import check_depth, require_json, route_template
from ._metrics import Metrics
from ._page import page_routes
from ._wire import Encoder, QuotaExceeded, Request, RequestError, StreamCancelled, WireProtocol

if TYPE_CHECKING:
    from .. import Event
    from .. import Response as SpoutResponse

__all__ = ["Gateway", "create_app"]

log = logging.getLogger("spout.gateway")

#: Seconds a producer may run without giving the event loop a turn.
_BUSY = 0.01
#: Events between two looks at the clock for _BUSY. The clock counts the upstream's waits
#: too, so looked at after every event it made a paced stream (one event per 10 ms) give a
#: turn after nearly every event: a task step more per token, for nothing. A burst of
#: events parsed at once still gives a turn within _BUSY and this many events more.
_BUSY_EVENTS = 32

#: Protocol name -> the module that speaks it (imported on first use).
_PROTOCOL_MODULES = {
    "openai": "_openai",
    "anthropic": "_anthropic",
    "responses": "_responses",
    "spout": "_spout_wire",
}


def wire_protocol(name: str) -> WireProtocol | None:
    """The wire protocol called ``name``, or None."""
    module = _PROTOCOL_MODULES.get(name)
    if module is None:
        return None
    import importlib

    return importlib.import_module(f".{module}", __package__).PROTOCOL  # type: ignore[no-any-return]


class Gateway:
    """The gateway's state: routes and their LLMs, the hub, producers, guard, metrics."""

    def __init__(self, config: GatewayConfig, *, hub: Hub | None = None) -> None:
        config.check()
        self.config = config
        self.hub: Hub = hub if hub is not None else _default_hub(config)
        self.guard = Guard(config)
        self.metrics = Metrics()
        self.conversations = Conversations(config)
        self._llms: dict[str, LLM] = {}
        self._producers: set[asyncio.Task[None]] = set()
        #: Under ``spout serve --workers N``: this worker's index, the count and its pid.
        self.worker: dict[str, int] | None = None

    # -- routes to LLMs ------------------------------------------------------------------------

    def llm(self, route: Route) -> LLM:
        """The LLM answering ``route`` (made on first use, with its fallbacks)."""
        llm = self._llms.get(route.name)
        if llm is None:
            fallbacks = [self.llm(self.config.routes[name]) for name in route.fallbacks]
            llm = create_llm(
                route.provider, model=route.model, fallbacks=fallbacks, **route.llm_config()
            )
            self._llms[route.name] = llm
        return llm

    def resolve(self, request: Request) -> Route:
        route = self.config.route(request.model)
        if route is None:
            raise RequestError(
                f"model {request.model!r} is not served here; models: "
                + ", ".join(sorted(self.config.routes)),
                status=404,
                param="model",
            )
        return route

    # -- requests ------------------------------------------------------------------------------

    async def handle(self, protocol: WireProtocol, http: HTTPRequest) -> Response:
        recording: Recording | None = None
        try:
            # Before anything is counted: a browser sends another site's page's text/plain
            # POST without asking first (no CORS preflight); a JSON one only if CORS allows.
            require_json(http.headers)
            identity = await self.guard.admit(http)
            body = await _json_body(http, self.config.limits.max_body_bytes)
            request = protocol.parse(body)
            self.guard.note_prompt(http, request)
            route = self.resolve(request)
            llm = self.llm(route)
            recording = await self.conversations.recording(
                http, request, route, llm, owner=owner_of(identity)
            )
            job = _Job(protocol, request, route, llm, identity, recording)
            if request.stream:
                response = await self._start_stream(http, job)
            else:
                response = await self._answer(http, job)
        except Denied as exc:
            response = _denied(protocol, exc)
        except Exception as exc:
            response = self._error(protocol, exc)
        if recording is not None:
            response.headers[CONVERSATION_HEADER] = recording.conversation_id
        self.metrics.request(route_template(http.scope), response.status_code)
        return response

    def _error(self, protocol: WireProtocol, exc: Exception) -> Response:
        if isinstance(exc, ProviderError | TransportError | StreamError):
            self.metrics.upstream_error(type(exc).__name__)
            _log_upstream(exc)
        elif not isinstance(exc, RequestError | ConfigurationError):
            log.exception("unexpected error")
        status, body = protocol.error_body(exc)
        headers = {}
        retry_after = _retry_after(getattr(exc, "retry_after", None))
        if status == 429 and retry_after is not None:
            headers["retry-after"] = retry_after
        return JSONResponse(body, status_code=status, headers=headers)

    async def _answer(self, http: HTTPRequest, job: _Job) -> Response:
        # A client that leaves before the answer is whole stops it: nobody would read it.
        call = asyncio.ensure_future(job.llm.generate_async(**_call_args(job.request, job.llm)))
        gone = asyncio.ensure_future(_disconnected(http))
        try:
            await asyncio.wait({call, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not call.done():
                self.metrics.stopped("disconnected")
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
                raise StreamCancelled("the client disconnected before the answer was whole")
            response = call.result()
        except BaseException as exc:
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
            if job.recording is not None:
                await job.recording.keep(getattr(exc, "partial", None), exc)
            await self._account(job, getattr(exc, "partial", None))
            raise
        finally:
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
        if job.recording is not None:
            await job.recording.keep(response, None)
        await self._account(job, response)
        response_id = new_stream_id()
        body = job.protocol.body(
            job.request, response, response_id=response_id, model=job.route.name
        )
        return JSONResponse(body, headers={"x-spout-stream-id": response_id})

    async def _start_stream(self, http: HTTPRequest, job: _Job) -> Response:
        # Until the first event the client has no response to read, so nothing else notices
        # it leave: an upstream sending only keep-alives would be read for nobody, for ever.
        opening = asyncio.ensure_future(self._open_stream(job))
        gone = asyncio.ensure_future(_disconnected(http))
        try:
            await asyncio.wait({opening, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not opening.done():
                self.metrics.stopped("disconnected")
                raise StreamCancelled("the client disconnected before the stream's first event")
            stream_id = opening.result()
        finally:
            if not opening.done():  # cancelled with its hub stream, which stops the producer
                opening.cancel()
                await asyncio.gather(opening, return_exceptions=True)
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
        if isinstance(self.hub, MemoryHub):  # the creator's response can be the hub's sink
            return CreatorStream(self, stream_id, job.protocol)
        # The creator's follow starts here, not when the response body does: a client gone
        # before that still leaves (EventStream closes it), and the stream is not kept for it.
        frames = self.follow(stream_id, 0, creator=True, protocol=job.protocol)
        first = await anext(frames, None)
        return EventStream(frames, stream_id, first=first)

    async def open_stream(
        self,
        protocol: WireProtocol,
        request: Request,
        route: Route,
        llm: LLM,
        identity: Identity,
        *,
        recording: Recording | None = None,
    ) -> str:
        """Start a producer for ``request``; its stream id once the first event is in the hub.

        The caller then follows the stream as its creator (``hub.follow(..., creator=True)``).
        An error before the first event is raised; cancelled meanwhile, the stream is too.
        """
        return await self._open_stream(_Job(protocol, request, route, llm, identity, recording))

    async def _open_stream(self, job: _Job) -> str:
        stream_id = new_stream_id()
        name = job.route.name
        encoder = job.protocol.encoder(job.request, response_id=stream_id, model=name)
        meta = {"protocol": job.protocol.name, "model": name}
        owner = owner_of(job.identity)
        if owner is not None:  # in the hub's meta, so that every replica sharing it agrees
            meta[_STREAM_OWNER] = owner
        try:
            await self.hub.create(stream_id, meta)
        except Exception as exc:  # Redis went away: a 503, the cause in the log
            log.warning("stream %s: the hub failed: %s", stream_id, exc)
            raise RequestError(
                "the gateway cannot start a stream now (its store failed)", status=503
            ) from None
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        producer = asyncio.create_task(self._produce(stream_id, job, encoder, started))
        self._producers.add(producer)
        producer.add_done_callback(self._producers.discard)
        self.hub.on_stop(stream_id, lambda reason: self._stop(producer, reason))
        try:
            await asyncio.shield(started)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                await self.hub.cancel(stream_id)
            with contextlib.suppress(BaseException):
                await producer
            raise
        return stream_id

    async def _account(self, job: _Job, response: SpoutResponse | None) -> None:
        """Count what a response used, whole or cut short (its tokens in the metrics and
        the caller's token rate, its cost in the metrics and the key's spend). Never raises:
        the response was already answered."""
        if response is None:
            return
        usage = response.usage
        cost = response.cost
        try:
            self.metrics.usage(
                job.route.name,
                job.identity.name if job.identity.keyed else "",
                usage,
                cost,
            )
            if usage.output_tokens:
                await self.guard.charge(job.identity, usage.output_tokens)
            await self.guard.spend(job.identity, cost)
        except Exception:
            log.exception("could not count the usage of a response")

    def _stop(self, producer: asyncio.Task[None], reason: str) -> None:
        if not producer.done():
            self.metrics.stopped(reason)
            producer.cancel(reason)

    async def _produce(
        self, stream_id: str, job: _Job, encoder: Encoder, started: asyncio.Future[None]
    ) -> None:
        """Read the upstream into the hub until it ends, fails, or is stopped."""
        hub = self.hub
        status = "failed"
        stream = None
        failure: BaseException | None = None
        accounted = False
        sent = time.monotonic()
        try:
            stream = await job.llm.generate_async(stream=True, **_call_args(job.request, job.llm))
            events: AsyncIterator[Event] = stream.events().__aiter__()
            # The events up to the first that is not a ResponseStart go to the encoder
            # before start(): Anthropic's message_start then carries the input tokens when
            # the upstream reported them first (spout's providers give a response's start,
            # then its usage, both from Anthropic's message_start).
            first: Event | None = None
            fed: list[bytes] = []
            while first is None or type(first) is ResponseStart:
                try:
                    first = await events.__anext__()
                except StopAsyncIteration:
                    break
                fed += encoder.feed(first)
            frames = [*encoder.start(), *fed]
            started.set_result(None)
            self.metrics.first_token(time.monotonic() - sent)
            await self._append(stream_id, frames)
            paused = time.monotonic()
            # The relay's hot loop: the hub's append and the encoder's feed looked up once,
            # and no _append coroutine per event (its _HubFailed wrapping is inlined).
            append = hub.append
            feed = encoder.feed
            count = 0
            async for event in events:
                frames = feed(event)
                if frames:
                    try:
                        await append(stream_id, frames)
                    except Exception as exc:
                        raise _HubFailed from exc
                count += 1
                if count >= _BUSY_EVENTS:
                    count = 0
                    if time.monotonic() - paused > _BUSY:
                        # Events that come without a wait (a huge buffer parsed at once)
                        # never let the loop run: other requests, and the stop a cancel or
                        # a gone client asks for, would wait until the upstream ends.
                        await asyncio.sleep(0)
                        paused = time.monotonic()
            response = stream.response
            # Counted before the client sees the end: its next request finds the spend.
            accounted = True
            await self._account(job, response)
            await self._append(stream_id, encoder.end(response))
            status = "done"
            stats = response.stats
            self.metrics.stream_done(
                response.usage.output_tokens, stats.tokens_per_second if stats else None
            )
        except asyncio.CancelledError as exc:
            status = "cancelled"
            failure = exc
            why = StreamCancelled(_stop_message(exc.args[0] if exc.args else None))
            if not started.done():
                started.set_exception(why)
            else:
                accounted = True
                await self._account(job, stream.snapshot if stream is not None else None)
                with contextlib.suppress(_HubFailed):  # a reader's own hub error tells it
                    await self._append(stream_id, encoder.error(why))
        except _HubFailed as exc:
            # The frames cannot be kept (Redis went away): the upstream stops here, and
            # each follower, which reads the same hub, ends its response with an error.
            failure = exc.__cause__ or exc
            log.warning("stream %s stopped: the hub failed: %s", stream_id, failure)
            if not started.done():
                started.set_exception(_hub_lost())
            else:
                accounted = True
                await self._account(job, stream.snapshot if stream is not None else None)
        except Exception as exc:
            failure = exc
            if isinstance(exc, SpoutError):
                self.metrics.upstream_error(type(exc).__name__)
                _log_upstream(exc, stream_id)
            else:
                log.exception("stream %s failed", stream_id)
            if not started.done():
                started.set_exception(exc)
            else:
                accounted = True
                await self._account(job, stream.snapshot if stream is not None else None)
                with contextlib.suppress(_HubFailed):  # a reader's own hub error tells it
                    await self._append(stream_id, encoder.error(exc))
        finally:
            if stream is not None:
                await stream.aclose()
                if not accounted:  # what a stream that failed before its first event used
                    await self._account(job, stream.snapshot)
            if job.recording is not None:  # kept before the end: a reader that sees it finds it
                await job.recording.keep(stream.snapshot if stream is not None else None, failure)
            try:
                await hub.finish(stream_id, status)
            except Exception as exc:  # the hub failed; its keys expire by themselves
                log.warning("stream %s: the hub could not record its end: %s", stream_id, exc)

    async def _append(self, stream_id: str, frames: list[bytes]) -> None:
        """Add a producer's frames to the hub; its failure is a :class:`_HubFailed`."""
        try:
            await self.hub.append(stream_id, frames)
        except Exception as exc:
            raise _HubFailed from exc

    async def follow(
        self,
        stream_id: str,
        after: int,
        *,
        creator: bool,
        protocol: WireProtocol | None,
        started: bool = False,
    ) -> AsyncIterator[bytes]:
        """A stream's frames after ``after``, each with its ``id:``, to send as they come.
        ``started``: the response has begun, so a failure is an error frame, never raised."""
        sent = started
        frames = self.hub.follow_batches(stream_id, after, creator=creator)
        try:
            # Every frame there is goes out in one write: a reader that fell behind (or a
            # gateway under load) catches up with one send, not one per frame.
            async for batch in frames:
                if len(batch) == 1:  # the usual batch, under a paced upstream
                    number, frame = batch[0]
                    yield b"id: %d\n%s" % (number, frame)
                else:
                    yield b"".join([b"id: %d\n%s" % (number, frame) for number, frame in batch])
                sent = True
        except EventsExpired as exc:
            if not sent:
                raise
            expired = RequestError(str(exc), status=410)
            if protocol is not None:
                for frame in protocol.encoder(
                    Request(model="", messages=[]), response_id=stream_id, model=""
                ).error(expired):
                    yield frame
        except StreamNotFound:
            raise
        except Exception as exc:
            # The hub failed (Redis went away): the response ends with the protocol's error
            # frame, whole, rather than cut off (and logged as a crash).
            log.warning("stream %s: a reader's hub failed: %s", stream_id, exc)
            if not sent:
                raise _hub_lost() from None
            if protocol is not None:
                for frame in protocol.encoder(
                    Request(model="", messages=[]), response_id=stream_id, model=""
                ).error(_hub_lost()):
                    yield frame
        finally:
            # Closed now, not whenever the garbage collector gets to it: the hub counts this
            # reader until then (and the upstream of a stream nobody reads keeps running).
            await _aclose(frames)

    # -- other routes ----------------------------------------------------------------------------

    async def _owned_meta(self, http: HTTPRequest, stream_id: str) -> dict[str, str] | None:
        """The stream's meta; None for an unknown stream and, with keys, for one another key
        made (both a 404: whether another key's stream exists is not told)."""
        try:
            meta = await self.hub.meta(stream_id)
        except Exception as exc:
            log.warning("stream %s: the hub failed: %s", stream_id, exc)
            raise _hub_lost() from None
        if meta is None or self.guard.keys is None:
            return meta
        identity = await self.guard.identify(http)  # admitted already (keyed): cheap, no count
        return meta if meta.get(_STREAM_OWNER) == owner_of(identity) else None

    async def resume(self, http: HTTPRequest) -> Response:
        stream_id = http.path_params["stream_id"]
        meta = await self._owned_meta(http, stream_id)
        if meta is None:
            return _not_found(stream_id)
        after_text = http.headers.get("last-event-id") or http.query_params.get("after") or "0"
        try:
            after = int(after_text)
            if after < 0:
                raise ValueError
        except ValueError:
            return JSONResponse(
                {
                    "error": {
                        "message": f"Last-Event-ID / after must be an event number >= 0, "
                        f"not {after_text!r}",
                        "type": "invalid_request_error",
                    }
                },
                status_code=400,
            )
        protocol = wire_protocol(meta.get("protocol", ""))
        try:
            frames = self.follow(stream_id, after, creator=False, protocol=protocol)
            first = await anext(frames, None)
        except StreamNotFound:
            return _not_found(stream_id)
        except EventsExpired as exc:
            return JSONResponse(
                {"error": {"message": str(exc), "type": "events_expired"}}, status_code=410
            )
        except RequestError as exc:  # the hub failed (follow said so and logged it)
            return _hub_unavailable(exc)
        return EventStream(frames, stream_id, first=first)

    async def cancel(self, http: HTTPRequest) -> Response:
        stream_id = http.path_params["stream_id"]
        meta = await self._owned_meta(http, stream_id)
        if meta is None:
            return _not_found(stream_id)
        try:
            cancelled = await self.hub.cancel(stream_id)
        except Exception as exc:
            log.warning("stream %s: the hub failed: %s", stream_id, exc)
            return _hub_unavailable(_hub_lost())
        return JSONResponse({"id": stream_id, "cancelled": cancelled, "status": meta["status"]})

    async def models(self, http: HTTPRequest) -> Response:
        return JSONResponse(_openai.models_body(sorted(self.config.routes)))

    def warm(self) -> None:
        """Import at start what the first requests would otherwise import while clients wait
        (each worker its own): the wire modules, aiohttp (the upstream client) and the price
        list. Measured: about 7% of a worker's CPU in its first seconds under load."""
        for name in _PROTOCOL_MODULES:
            wire_protocol(name)
        import aiohttp  # noqa: F401

        from .._cost import _price_list

        _price_list()

    async def aclose(self) -> None:
        """Stop what still runs, release connections."""
        for producer in list(self._producers):
            producer.cancel("shutdown")
        if self._producers:
            await asyncio.gather(*self._producers, return_exceptions=True)
        for llm in self._llms.values():
            await llm.aclose()
        await self.guard.aclose()
        await self.hub.aclose()
        await self.conversations.aclose()


def _default_hub(config: GatewayConfig) -> Hub:
    if config.redis_url:
        import importlib

        redis_hub = importlib.import_module("._redis_hub", __package__)
        return redis_hub.RedisHub(  # type: ignore[no-any-return]
            config.redis_url,
            resume_window=config.resume_window,
            retention=config.retention,
            max_events=config.max_stream_events,
            max_bytes=config.max_stream_bytes,
        )
    return MemoryHub(
        resume_window=config.resume_window,
        retention=config.retention,
        max_events=config.max_stream_events,
        max_bytes=config.max_stream_bytes,
        max_total_bytes=config.max_hub_bytes,
    )


class _HubFailed(Exception):
    """The hub failed to keep a producer's frames (its cause says why)."""


def _hub_lost() -> RequestError:
    """What a client is told when the hub failed under its stream (the cause is logged)."""
    return RequestError("the gateway lost this stream's events (its store failed)", status=503)


def _stop_message(reason: object) -> str:
    if reason == "abandoned":
        return "the stream was cancelled: no reader came back within the resume window"
    if reason == "shutdown":
        return "the stream was cancelled: the gateway is shutting down"
    return "the stream was cancelled"


def new_stream_id() -> str:
    return "st_" + secrets.token_hex(12)


#: The hub meta field naming the key that made a stream (absent without keys): only that key
#: may follow or cancel it.
_STREAM_OWNER = "key"


@dataclass(frozen=True, slots=True)
class _Job:
    """One request the gateway answers: what was asked and in which protocol, the route and
    LLM that answer, who asked (charged for the output), and where the conversation is kept
    (None: it is not)."""

    protocol: WireProtocol
    request: Request
    route: Route
    llm: LLM
    identity: Identity
    recording: Recording | None = None


def _call_args(request: Request, llm: LLM) -> dict[str, Any]:
    args: dict[str, Any] = {"messages": request.messages, **request.params}
    if "prompt_cache_key" in args and not llm.provider.takes_prompt_cache_key():
        del args["prompt_cache_key"]  # OpenAI's; another upstream refuses the unknown key
    if request.tools:
        args["tools"] = request.tools
    return args


async def _json_body(http: HTTPRequest, limit: int) -> Any:
    import orjson

    declared = http.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Denied(
            f"the request body is {declared} bytes; the limit is {limit}",
            status=413,
            kind="too_large",
        )
    chunks = []
    size = 0
    async for chunk in http.stream():
        size += len(chunk)
        if size > limit:
            raise Denied(
                f"the request body is over the limit of {limit} bytes",
                status=413,
                kind="too_large",
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise RequestError("the request has no body: send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the request body is not JSON: {exc}") from None
    check_depth(body)  # a 400 naming the field, not a RecursionError in the store
    return body


async def _disconnected(http: HTTPRequest) -> None:
    """Returns when the client has gone (its body already read: nothing else comes)."""
    while True:
        message = await http.receive()
        if message["type"] == "http.disconnect":
            return


def _denied(protocol: WireProtocol, exc: Denied) -> Response:
    error: RequestError
    headers = {}
    if exc.kind == "insufficient_quota":
        error = QuotaExceeded(exc.message)
        # Waiting does not help: the SDKs, which retry a 429, obey this header.
        headers["x-should-retry"] = "false"
    else:
        error = RequestError(exc.message, status=exc.status)
    status, body = protocol.error_body(error)
    retry_after = _retry_after(exc.retry_after)
    if retry_after is not None:
        headers["retry-after"] = retry_after
    return JSONResponse(body, status_code=status, headers=headers)


#: The longest ``retry-after`` the gateway sends (the library caps an upstream's so too).
_DAY = 86_400


def _retry_after(seconds: object) -> str | None:
    """A ``retry-after`` header's value: whole seconds, at least 1, at most a day; None for
    none, or for one that is no finite number (an upstream's ``nan``, ``inf``, which made a
    plain-text 500 of the answer)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    if not math.isfinite(seconds):
        return None
    return str(min(_DAY, max(1, math.ceil(seconds))))


def _log_upstream(exc: BaseException, stream_id: str | None = None) -> None:
    """An upstream's failure as the operator needs it: in full, with the upstream's address
    (a connection error's). The client's answer names only the kind of failure
    (:func:`~spout.gateway._openai.classify_error`). The text is already scrubbed of keys
    (the providers do it where it is raised); ``%r`` keeps an upstream's line breaks out of
    the log's lines."""
    where = f" (stream {stream_id})" if stream_id else ""
    log.warning("upstream error%s: %s: %r", where, type(exc).__name__, str(exc))


def _hub_unavailable(exc: RequestError) -> Response:
    return JSONResponse(
        {"error": {"message": exc.message, "type": "service_unavailable"}}, status_code=503
    )


def _hub_guarded(
    endpoint: Callable[[HTTPRequest], Awaitable[Response]],
) -> Callable[[HTTPRequest], Awaitable[Response]]:
    """``endpoint``, answering 503 when the hub failed under it (the cause is logged)."""

    async def guarded(http: HTTPRequest) -> Response:
        try:
            return await endpoint(http)
        except RequestError as exc:
            if exc.status != 503:
                raise
            return _hub_unavailable(exc)

    return guarded


def _not_found(stream_id: str) -> Response:
    return JSONResponse(
        {
            "error": {
                "message": f"no stream {stream_id} (unknown, or expired)",
                "type": "not_found_error",
            }
        },
        status_code=404,
    )


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


class _GatewayApp(Starlette):
    """Starlette, keeping the server's ``send`` in the scope for :class:`EventStream`: the
    middleware between (Starlette's error and exception handlers, the access log, CORS) look
    at a response's start only, and a frame sent through them paid three calls each."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


class EventStream(Response):
    """A ``text/event-stream`` response that stops reading its frames as soon as the client
    disconnects (not only when the next write fails), so the hub knows the reader left.

    ``first``: a frame already read from ``frames`` (an iterator already started), sent
    before the rest; ``frames`` is closed with the response even if nothing was sent."""

    media_type = "text/event-stream"

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        stream_id: str,
        *,
        first: bytes | None = None,
    ) -> None:
        # Not Response.__init__: that would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-spout-stream-id", stream_id.encode()),
        ]
        self.frames = frames
        # Sent here rather than through a generator prepending it: one layer less for
        # every frame of the stream to pass through.
        self.first = first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def write() -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            # The start went through the middleware; the frames go straight to the server.
            await self._body(scope, scope.get(SERVER_SEND, send))
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def disconnected() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        writer = asyncio.ensure_future(write())
        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({writer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, watcher):
                task.cancel()
            await asyncio.gather(writer, watcher, return_exceptions=True)
            await _aclose(self.frames)  # `async for` does not close what it iterates
            self._closed()
        if writer.done() and not writer.cancelled() and writer.exception() is not None:
            exc = writer.exception()
            if not isinstance(exc, OSError):
                raise exc  # type: ignore[misc]

    async def _body(self, scope: Scope, body: Send) -> None:
        """Send the frames (the response has started; its end is sent after)."""
        if self.first is not None:
            await body({"type": "http.response.body", "body": self.first, "more_body": True})
        async for frame in self.frames:
            await body({"type": "http.response.body", "body": frame, "more_body": True})

    def _closed(self) -> None:
        """The response is over, however it ended."""


class CreatorStream(EventStream):
    """The response of the client that asked for a stream of a :class:`MemoryHub`: its frames
    are written by the producer as it appends them (:mod:`._direct`) while the client keeps
    up, and by the usual follower from the frame it reached otherwise."""

    def __init__(self, gateway: Gateway, stream_id: str, protocol: WireProtocol) -> None:
        super().__init__(_no_frames(), stream_id)
        self._gateway = gateway
        self._stream_id = stream_id
        self._protocol = protocol
        self._writer: DirectWriter | None = None  # attached, holding the creator's count

    async def _body(self, scope: Scope, body: Send) -> None:
        hub = self._gateway.hub
        assert isinstance(hub, MemoryHub)
        after = 0
        cycle = server_cycle(scope)
        if cycle is not None:
            writer = DirectWriter(cycle)
            if writer.usable() and hub.attach(self._stream_id, writer):
                self._writer = writer
                if await writer.done:  # the stream ended, every frame written
                    return
                # The client fell behind (or the connection is going): the follower goes on
                # from the last frame written, and counts the creator as a reader from now.
                self._writer = None
                after = writer.after
        self.frames = self._gateway.follow(
            self._stream_id, after, creator=True, protocol=self._protocol, started=True
        )
        await super()._body(scope, body)

    def _closed(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            hub = self._gateway.hub
            assert isinstance(hub, MemoryHub)
            hub.detach(self._stream_id, writer)


async def _no_frames() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - an async generator with nothing in it


def create_app(config: GatewayConfig, *, hub: Hub | None = None) -> Starlette:
    """The gateway's ASGI app for ``config`` (``app.state.gateway`` is the :class:`Gateway`)."""
    gateway = Gateway(config, hub=hub)

    def protocol_endpoint(name: str) -> Callable[[HTTPRequest], Awaitable[Response]]:
        async def endpoint(http: HTTPRequest) -> Response:
            wire = wire_protocol(name)
            assert wire is not None
            # With spout.instrument(), the calls made for this request (in the producer task
            # too, which copies this context) are spans of the client's W3C trace.
            with continue_trace(http.headers):
                return await gateway.handle(wire, http)

        return endpoint

    def keyed(
        endpoint: Callable[[HTTPRequest], Awaitable[Response]],
    ) -> Callable[[HTTPRequest], Awaitable[Response]]:
        """``endpoint`` for callers with a valid key (when there are keys); counts nothing."""

        async def checked(http: HTTPRequest) -> Response:
            try:
                await gateway.guard.identify(http)
            except Denied as exc:
                return _denied(_openai.PROTOCOL, exc)
            return await endpoint(http)

        return checked

    async def healthz(http: HTTPRequest) -> Response:
        health: dict[str, object] = {"status": "ok", "active_streams": await gateway.hub.active()}
        if gateway.worker is not None:  # the figures are this worker's
            health["worker"] = gateway.worker
        return JSONResponse(health)

    async def metrics(http: HTTPRequest) -> Response:
        text = gateway.metrics.render(active_streams=await gateway.hub.active())
        if gateway.worker is not None:
            worker = gateway.worker
            text = (
                f"# spout worker {worker['index']} of {worker['workers']} "
                f"(pid {worker['pid']}): its own figures\n{text}"
            )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway.warm()
        try:
            yield
        finally:
            await gateway.aclose()

    routes = [
        HTTPRoute("/healthz", healthz, methods=["GET"]),
        HTTPRoute("/metrics", metrics, methods=["GET"]),
        HTTPRoute("/v1/models", keyed(gateway.models), methods=["GET"]),
        HTTPRoute("/v1/chat/completions", protocol_endpoint("openai"), methods=["POST"]),
        HTTPRoute("/v1/messages", protocol_endpoint("anthropic"), methods=["POST"]),
        HTTPRoute("/v1/responses", protocol_endpoint("responses"), methods=["POST"]),
        HTTPRoute("/v1/streams/{stream_id}", keyed(_hub_guarded(gateway.resume)), methods=["GET"]),
        HTTPRoute(
            "/v1/streams/{stream_id}", keyed(_hub_guarded(gateway.cancel)), methods=["DELETE"]
        ),
        HTTPRoute("/v1/spout/stream", protocol_endpoint("spout"), methods=["POST"]),
        WebSocketRoute("/v1/ws", _ws.endpoint(gateway)),
    ]
    routes += conversation_routes(gateway) + page_routes()
    app = _GatewayApp(routes=routes, lifespan=lifespan, middleware=middleware(config))
    app.state.gateway = gateway
    return app
