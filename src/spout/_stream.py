"""Stream and AsyncStream: the two thin loops that drive a provider's events to the caller."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._errors import SpoutError
from ._events import Event, TextDelta
from ._response import Accumulator, Response
from ._stats import StreamStats

if TYPE_CHECKING:
    from ._tee import AsyncFanout, AsyncStreamReader, Fanout, StreamReader
    from ._watch import Watch

__all__ = ["AsyncStream", "Stream"]

#: What a provider hands a Stream: its events, and how to release what it holds.
SyncSource = tuple[Iterator[Event], Callable[[], None]]
AsyncSource = tuple[AsyncIterator[Event], Callable[[], Awaitable[None]]]


class Stream:
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
    ) -> None:
        # The owner (the LLM) holds the connection pool this stream reads from: keep it alive
        # while the stream is, as in ``for chunk in create_llm().generate_stream(...)``.
        self._owner = owner
        events, self._release = source
        self._accumulator = accumulator
        self._closed = False
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
        self._pump = _pump(events, self._release, accumulator, self._ended)
        if watch is not None:  # shaping and callbacks, after the accumulator
            from ._watch import watch_sync

            self._pump = watch_sync(self._pump, watch, accumulator.response, reader)
        self._fanout: weakref.ref[Fanout] | None = None
        self._read = False

    def __iter__(self) -> Iterator[str]:
        """The text, chunk by chunk as it arrives (a refusal is not text: see :meth:`events`)."""
        return self._texts()

    def _texts(self) -> Generator[str, None, None]:
        self._check_whole()
        done = False
        try:
            for event in self._pump:
                if type(event) is TextDelta:
                    yield event.text
            done = True
        except SpoutError:
            if not self._closed:
                raise
            done = True  # closed from another thread: the read it woke ends here, quietly
        finally:
            if not done:
                self.close()

    def events(self) -> Iterator[Event]:
        """The typed events: text, reasoning, a refusal, tool-call deltas, usage, finish."""
        return self._events()

    def _events(self) -> Generator[Event, None, None]:
        self._check_whole()
        done = False
        try:
            yield from self._pump
            done = True
        except SpoutError:
            if not self._closed:
                raise
            done = True  # closed from another thread
        finally:
            if not done:
                self.close()

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

        return partial_objects(self)

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._accumulator.text

    @property
    def snapshot(self) -> Response:
        """The response as it stands now, without reading further."""
        return self._accumulator.response()

    @property
    def response(self) -> Response:
        """The final response, reading the rest of the stream first if it is still open."""
        fanout = self._fanout() if self._fanout is not None else None
        if fanout is not None:
            fanout.drain()  # read on behalf of the readers, who still get every event
        elif not self._closed:
            for _ in self._pump:
                pass
        return self._accumulator.response()

    @property
    def stats(self) -> StreamStats:
        """Live numbers: time to first token, elapsed, chunks, characters, output tokens
        (the provider's once reported, an estimate until then), tokens per second."""
        return self._accumulator.stats()

    def tee(self, n: int = 2, *, max_lag: int = 10_000) -> tuple[StreamReader, ...]:
        """``n`` independent readers of this stream, each from the first event.

        Read the readers, not the stream, from then on. Memory is bounded: a reader more
        than ``max_lag`` events behind the reader in front is dropped, and its next read
        raises :class:`StreamError`. Closing the last reader closes the stream.

        Example::

            display, log = llm.generate_stream("hi").tee(2)
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, not {n!r}")
        fanout = self._split()
        return tuple(fanout.reader(max_lag) for _ in range(n))

    def subscribe(self, *, max_lag: int = 10_000) -> StreamReader:
        """One more independent reader of this stream, from the first event (see :meth:`tee`)."""
        return self._split().reader(max_lag)

    def _split(self) -> Fanout:
        fanout = self._fanout() if self._fanout is not None else None
        if fanout is None:
            if self._fanout is not None or self._read:
                raise RuntimeError(
                    "tee() and subscribe() come before the stream is read: the readers each "
                    "start from the first event"
                )
            from ._tee import Fanout

            fanout = Fanout(self._pump, self.close, self._accumulator.response)
            self._fanout = weakref.ref(fanout)
        return fanout

    def _check_whole(self) -> None:
        self._read = True
        if self._fanout is not None:
            raise RuntimeError(
                "this stream was split by tee() or subscribe(): read it through its readers"
            )

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

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<spout.Stream {state} text={self.text[:40]!r}>"


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


class AsyncStream:
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
    ) -> None:
        self._owner = owner
        self._watch = watch
        self._fanout: AsyncFanout | None = None
        self._opener: Callable[[], Awaitable[AsyncSource]] | None = opener
        self._source: AsyncIterator[Event] | None = None
        self._release: Callable[[], Awaitable[None]] | None = None
        self._accumulator = accumulator
        self._closed = False
        self._pump: AsyncGenerator[Event, None] | None = None
        self._ended = _Flag()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    async def start(self) -> AsyncStream:
        """Send the request now (it is otherwise sent on first use); returns the stream."""
        if self._opener is not None:
            opener, self._opener = self._opener, None
            self._accumulator.restart_clock()
            try:
                events, self._release = await opener()
            except BaseException:
                self._closed = True
                raise
            self._pump = _apump(events, self._release, self._accumulator, self._ended)
            if self._watch is not None:  # shaping and callbacks, after the accumulator
                from ._watch import watch_async

                self._pump = watch_async(self._pump, self._watch, self._accumulator.response)
            # Dropped after the request went out but before it was read to its end, the stream
            # still holds a connection (or the local model): release it on its own loop.
            import asyncio

            self._finalizer = weakref.finalize(
                self, _release_abandoned, asyncio.get_running_loop(), self._release, self._ended
            )
        return self

    async def _started_pump(self) -> AsyncGenerator[Event, None]:
        await self.start()
        if self._pump is None:
            return _closed_apump()
        return self._pump

    async def _release_now(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            await release()

    def __aiter__(self) -> AsyncIterator[str]:
        """The text, chunk by chunk as it arrives (a refusal is not text: see :meth:`events`)."""
        return self._texts()

    async def _texts(self) -> AsyncGenerator[str, None]:
        self._check_whole()
        done = False
        try:
            async for event in await self._started_pump():
                if type(event) is TextDelta:
                    yield event.text
            done = True
        finally:
            if not done:
                await self.aclose()

    def events(self) -> AsyncIterator[Event]:
        """The typed events: text, reasoning, a refusal, tool-call deltas, usage, finish."""
        return self._events()

    async def _events(self) -> AsyncGenerator[Event, None]:
        self._check_whole()
        done = False
        try:
            async for event in await self._started_pump():
                yield event
            done = True
        finally:
            if not done:
                await self.aclose()

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._accumulator.text

    @property
    def snapshot(self) -> Response:
        """The response as it stands now, without reading further."""
        return self._accumulator.response()

    def partial_objects(self) -> AsyncIterator[Any]:
        """With ``response_format``: the answer's JSON as it streams (``async for``).

        As :meth:`Stream.partial_objects`; the validated object is
        ``(await stream.get_response()).parsed``.
        """
        from ._structured import apartial_objects

        return apartial_objects(self)

    async def get_response(self) -> Response:
        """The final response, reading the rest of the stream first if it is still open."""
        if self._fanout is not None:
            await self._fanout.drain()  # read on behalf of the readers
        elif not self._closed:
            async for _ in await self._started_pump():
                pass
        return self._accumulator.response()

    @property
    def stats(self) -> StreamStats:
        """Live numbers, as :attr:`Stream.stats`."""
        return self._accumulator.stats()

    def tee(self, n: int = 2, *, max_lag: int = 10_000) -> tuple[AsyncStreamReader, ...]:
        """``n`` independent readers, each from the first event (see :meth:`Stream.tee`).

        Example::

            a, b = llm.agenerate_stream("hi").tee(2)
            await asyncio.gather(show(a), log(b))
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, not {n!r}")
        fanout = self._split()
        return tuple(fanout.reader(max_lag) for _ in range(n))

    def subscribe(self, *, max_lag: int = 10_000) -> AsyncStreamReader:
        """One more independent reader of this stream, from the first event."""
        return self._split().reader(max_lag)

    def _split(self) -> AsyncFanout:
        if self._fanout is None:
            if self._read:
                raise RuntimeError(
                    "tee() and subscribe() come before the stream is read: the readers each "
                    "start from the first event"
                )
            from ._tee import AsyncFanout

            self._fanout = AsyncFanout(self._started_pump, self.aclose, self._accumulator.response)
        return self._fanout

    _read = False

    def _check_whole(self) -> None:
        self._read = True
        if self._fanout is not None:
            raise RuntimeError(
                "this stream was split by tee() or subscribe(): read it through its readers"
            )

    @property
    def response(self) -> Response:
        """The response so far; once the stream has ended, the final one.

        To read the rest of an open stream first, ``await stream.get_response()``.
        """
        return self._accumulator.response()

    @property
    def closed(self) -> bool:
        """Whether the stream ended or was closed."""
        return self._closed or self._ended.set

    async def aclose(self) -> None:
        """Stop the stream and release its connection (or its local generation) now."""
        if not self._closed:
            self._closed = True
            self._opener = None
            if self._finalizer is not None:
                self._finalizer.detach()
            if self._pump is not None:
                await self._pump.aclose()
            await self._release_now()

    async def __aenter__(self) -> AsyncStream:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<spout.AsyncStream {state} text={self.text[:40]!r}>"


_abandoned: set[Any] = set()  # release tasks of dropped streams, kept until they finish


def _release_abandoned(loop: Any, release: Callable[[], Awaitable[None]], ended: _Flag) -> None:
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
) -> Generator[Event, None, None]:
    add = accumulator.add
    try:
        for event in events:
            add(event)
            yield event
    except SpoutError as exc:
        if exc.partial is None:
            exc.partial = accumulator.response()
        raise
    finally:
        ended.set = True
        release()


async def _apump(
    events: AsyncIterator[Event],
    release: Callable[[], Awaitable[None]],
    accumulator: Accumulator,
    ended: _Flag,
) -> AsyncGenerator[Event, None]:
    add = accumulator.add
    try:
        async for event in events:
            add(event)
            yield event
    except SpoutError as exc:
        if exc.partial is None:
            exc.partial = accumulator.response()
        raise
    finally:
        ended.set = True
        await release()


async def _closed_apump() -> AsyncGenerator[Event, None]:
    return
    yield  # pragma: no cover - makes this an async generator
