"""Stream and AsyncStream: the two thin loops that drive a provider's events to the caller."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from ._events import Event
from ._response import Accumulator
from ._stream_base import AsyncStreamBase, SyncStreamBase, partial_on_error

if TYPE_CHECKING:
    from ._otel import CallSpan
    from ._watch import Watch
    from .providers._base import AsyncSource, SyncSource

__all__ = ["AsyncStream", "Stream"]


class Stream(SyncStreamBase[str]):
    """A response being streamed: iterate it for text, or :meth:`events` for typed events.

    Example::

        with llm.generate_stream("Count from 1 to 5") as stream:
            for chunk in stream:
                print(chunk, end="", flush=True)
        print(stream.response.usage.output_tokens)

    A ``for`` loop that stops early (``break``, ``return``, an exception) closes the stream and
    its connection at once; so do :meth:`close`, leaving a ``with`` block, and garbage
    collection. :attr:`response` is then the response as far as it arrived.
    """

    def __init__(
        self,
        source: SyncSource,
        accumulator: Accumulator,
        owner: object = None,
        watch: Watch | None = None,
        span: CallSpan | None = None,
    ) -> None:
        # The owner (the LLM) holds the connection pool this stream reads from: keep it alive
        # while the stream is, as in ``for chunk in create_llm().generate_stream(...)``.
        self._owner = owner
        # With spout.instrument(): the call's span, already started; the pump ends it.
        self._span = span
        events, self._release = source
        self._accumulator = self._tally = accumulator
        # The pump must not refer back to the Stream: a cycle would delay collection, and an
        # abandoned stream must close its connection as soon as nothing refers to it.
        self._ended = _Flag()
        reader = None
        if watch is not None and watch.debounce is not None:
            # A timer for debounce: the events are read on a thread of their own, which then
            # owns the source and its release (see spout._watch.Reader).
            from ._watch import Reader

            reader = Reader(events, self._release, getattr(self._release, "wake", None))
            events, self._release = reader, reader.close
        self._pump = _pump(events, self._release, accumulator, self._ended, span)
        if watch is not None:  # shaping and callbacks, after the accumulator
            from ._watch import watch_sync

            self._pump = watch_sync(self._pump, watch, accumulator.response, reader)

    def partial_objects(self) -> Iterator[Any]:
        """With ``response_format``: the answer's JSON as it streams, progressively completed.

        Yields a new dict (or list) each time the value parsed so far changes, reading the
        stream to its end; a stream already partly read starts from its text so far. Code
        fences and prose before the JSON are skipped. The validated object is
        ``stream.response.parsed``; if the answer does not validate, the loop ends by
        raising :class:`StructuredOutputError`.

        Example::

            stream = llm.generate_stream("A city and its country", response_format=Place)
            for place in stream.partial_objects():
                print(place)                 # {}, {'city': 'Os'}, {'city': 'Oslo'}, ...
            print(stream.response.parsed)    # Place(city='Oslo', country='Norway')
        """
        from ._structured import partial_objects

        return partial_objects(self, self._accumulator.output_format)

    @property
    def closed(self) -> bool:
        """Whether the stream ended or was closed."""
        return self._closed or self._ended.set

    def close(self) -> None:
        """Stop the stream and release its connection (or its local generation) now.

        Safe from another thread than the one reading: a read blocked on the network is
        woken, and that reader's loop ends quietly.
        """
        if not self._closed:
            self._closed = True
            try:
                self._pump.close()
            except ValueError:  # "generator already executing": another thread reads it now
                abort = getattr(self._release, "abort", None)
                (abort or self._release)()
                return
            self._release()
            if self._span is not None:  # a pump never started has no finally to end it
                self._span.end(closed=True)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class PendingAsyncStream:
    """What ``llm.generate_async(..., stream=True)`` returns: await it, or iterate it.

    Example::

        stream = await llm.generate_async("Tell me a story", stream=True)  # request sent
        async for chunk in stream: ...

        async for chunk in llm.generate_async("Tell me a story", stream=True): ...

    Awaiting sends the request and gives the :class:`AsyncStream`; ``async for`` straight
    over the call does the same on its first step. Neither form makes a coroutine that could
    be left un-awaited.
    """

    __slots__ = ("stream",)

    def __init__(self, stream: AsyncStream) -> None:
        #: The stream itself, not yet started.
        self.stream = stream

    def __await__(self) -> Generator[Any, None, AsyncStream]:
        return self.stream.start().__await__()

    def __aiter__(self) -> AsyncIterator[str]:
        return self.stream.__aiter__()

    def __repr__(self) -> str:
        return f"<PendingAsyncStream {self.stream!r}>"


class AsyncStream(AsyncStreamBase[str]):
    """A response being streamed asynchronously: ``async for`` gives text chunks.

    Example::

        async with llm.agenerate_stream("Count from 1 to 5") as stream:
            async for chunk in stream:
                print(chunk, end="", flush=True)
        print((await stream.get_response()).usage.output_tokens)

    The request is sent on first use (iteration, ``async with``, or awaiting
    :meth:`LLM.generate_async` with ``stream=True``). Cancelling the task that reads it, a loop
    that stops early, or :meth:`aclose` closes the connection.
    """

    def __init__(
        self,
        opener: Callable[[], Awaitable[AsyncSource]],
        accumulator: Accumulator,
        owner: object = None,
        watch: Watch | None = None,
        span: CallSpan | None = None,
    ) -> None:
        self._owner = owner
        self._watch = watch
        # With spout.instrument(): the call's span, started with the request in start().
        self._span = span
        self._opener: Callable[[], Awaitable[AsyncSource]] | None = opener
        self._release: Callable[[], Awaitable[None]] | None = None
        self._accumulator = self._tally = accumulator
        self._pump = None
        self._ended = _Flag()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    async def start(self) -> AsyncStream:
        """Send the request now (it is otherwise sent on first use); returns the stream."""
        if self._opener is not None:
            opener, self._opener = self._opener, None
            self._accumulator.restart_clock()
            span = self._span
            if span is not None:
                span.start()
            try:
                events, self._release = await opener()
            except BaseException as exc:
                self._closed = True
                if span is not None:
                    span.end(exc)
                raise
            self._pump = _apump(events, self._release, self._accumulator, self._ended, span)
            if self._watch is not None:  # shaping and callbacks, after the accumulator
                from ._watch import watch_async

                self._pump = watch_async(self._pump, self._watch, self._accumulator.response)
            # Dropped after the request went out but before it was read to its end, the stream
            # still holds a connection (or the local model): release it on its own loop.
            import asyncio

            self._finalizer = weakref.finalize(
                self,
                _release_abandoned,
                asyncio.get_running_loop(),
                self._release,
                self._ended,
                span,
            )
        return self

    async def _started(self) -> AsyncIterator[Event]:
        await self.start()
        if self._pump is None:
            return _closed_apump()
        return self._pump

    def partial_objects(self) -> AsyncIterator[Any]:
        """With ``response_format``: the answer's JSON as it streams (``async for``).

        As :meth:`Stream.partial_objects`; the validated object is
        ``(await stream.get_response()).parsed``.
        """
        from ._structured import apartial_objects

        return apartial_objects(self, self._accumulator.output_format)

    @property
    def closed(self) -> bool:
        """Whether the stream ended or was closed."""
        return self._closed or self._ended.set

    async def aclose(self) -> None:
        """Stop the stream and release its connection (or its local generation) now."""
        if not self._closed:
            self._opener = None
            if self._finalizer is not None:
                self._finalizer.detach()
            await super().aclose()
            release, self._release = self._release, None
            if release is not None:
                await release()
            if self._span is not None:  # a pump never started has no finally to end it
                self._span.end(closed=True)

    def abandon(self) -> None:
        """Release the connection (or the local generation) on the stream's own loop, now."""
        if self._finalizer is not None:
            self._finalizer()

    async def __aenter__(self) -> AsyncStream:
        return await self.start()


_abandoned: set[Any] = set()  # release tasks of dropped streams, kept until they finish


def _release_abandoned(
    loop: Any, release: Callable[[], Awaitable[None]], ended: _Flag, span: CallSpan | None
) -> None:
    if span is not None:
        span.end(closed=True)  # dropped unread: its span ends now, not when the loop gets to it
    if ended.set or loop.is_closed():
        return

    def schedule() -> None:
        task = loop.create_task(release())
        _abandoned.add(task)
        task.add_done_callback(_abandoned.discard)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(schedule)


class _Flag:
    """Set by a pump when its events end, however they end; shared without a cycle."""

    __slots__ = ("set",)

    def __init__(self) -> None:
        self.set = False


def _pump(
    events: Iterator[Event],
    release: Callable[[], None],
    accumulator: Accumulator,
    ended: _Flag,
    span: CallSpan | None = None,
) -> Generator[Event, None, None]:
    add = accumulator.add
    try:
        with partial_on_error(accumulator.response):
            for event in events:
                if add(event):  # a Finish the answer's content changed (Accumulator.add)
                    event = accumulator.finish  # type: ignore[assignment]
                yield event
    except BaseException as exc:  # GeneratorExit too: a break, close() or the collector
        if span is not None:
            span.fail(exc)
        raise
    finally:
        ended.set = True
        try:
            release()
        finally:
            if span is not None:
                span.end()


async def _apump(
    events: AsyncIterator[Event],
    release: Callable[[], Awaitable[None]],
    accumulator: Accumulator,
    ended: _Flag,
    span: CallSpan | None = None,
) -> AsyncGenerator[Event, None]:
    add = accumulator.add
    try:
        with partial_on_error(accumulator.response):
            async for event in events:
                if add(event):
                    event = accumulator.finish  # type: ignore[assignment]
                yield event
    except BaseException as exc:  # GeneratorExit and cancellation too
        if span is not None:
            span.fail(exc)
        raise
    finally:
        ended.set = True
        try:
            await release()
        finally:
            if span is not None:
                span.end()


async def _closed_apump() -> AsyncGenerator[Event, None]:
    return
    yield  # pragma: no cover - makes this an async generator
