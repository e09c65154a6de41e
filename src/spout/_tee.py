"""Several readers of one live stream: a fan-out with a bounded buffer, sync and async.

Readers pull: whichever reader needs an event nobody has read yet reads it from the stream
(under a lock, so one read is in flight at a time) and leaves it in a buffer shared by all;
an event is dropped once every reader is past it. A reader more than ``max_lag`` events
behind the one in front is dropped from the group, so the buffer stays bounded, and its next
read raises :class:`~spout.StreamError` saying so. Closing the last reader closes the stream.
No thread is started: sync readers in several threads read in turn, async readers in several
tasks likewise.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING

from ._closing import AsyncClosing, Closing
from ._errors import StreamError
from ._events import Event, TextDelta

if TYPE_CHECKING:
    from ._response import Response

__all__ = ["DEFAULT_MAX_LAG", "AsyncStreamReader", "StreamReader"]

#: Events a reader may fall behind the one in front before it is dropped.
DEFAULT_MAX_LAG = 10_000


def check_lag(max_lag: object) -> int:
    if isinstance(max_lag, bool) or not isinstance(max_lag, int) or max_lag < 1:
        raise ValueError(f"max_lag must be a positive int, not {max_lag!r}")
    return max_lag


class _Cursor:
    __slots__ = ("max_lag", "overrun", "pos")

    def __init__(self, max_lag: int) -> None:
        self.max_lag = max_lag
        self.pos = 0
        self.overrun = False


class _Buffer:
    """The events read so far that some reader still needs, and who is where."""

    def __init__(self, snapshot: Callable[[], Response]) -> None:
        self.snapshot = snapshot
        self.events: list[Event] = []
        self.base = 0  # the absolute position of events[0]
        self.cursors: list[_Cursor] = []
        self.done = False
        self.error: BaseException | None = None

    def join(self, max_lag: int) -> _Cursor:
        if self.base:
            raise RuntimeError(
                "subscribe() comes before the readers move on: events already dropped could "
                "not be read from the first; call tee(n) or subscribe() before reading"
            )
        cursor = _Cursor(check_lag(max_lag))
        self.cursors.append(cursor)
        return cursor

    def take(self, cursor: _Cursor) -> tuple[bool, Event | None]:
        """(True, event) for the next buffered event, (True, None) at the end, or (False,
        None) when the next event must be read from the stream first."""
        if cursor.overrun:
            error = StreamError(
                f"this reader fell more than max_lag={cursor.max_lag} events behind the reader "
                "in front and was dropped; read it faster, or raise max_lag"
            )
            error.partial = self.snapshot()
            raise error
        index = cursor.pos - self.base
        if index < len(self.events):
            cursor.pos += 1
            self._trim()
            return True, self.events[index]
        if self.done:
            if self.error is not None:
                raise self.error
            return True, None
        return False, None

    def has_next(self, cursor: _Cursor) -> bool:
        return cursor.overrun or self.done or cursor.pos - self.base < len(self.events)

    def add(self, event: Event) -> None:
        self.events.append(event)
        head = self.base + len(self.events)
        for cursor in [c for c in self.cursors if head - c.pos > c.max_lag]:
            cursor.overrun = True
            self.cursors.remove(cursor)
        self._trim()

    def end(self, error: BaseException | None) -> None:
        self.done = True
        self.error = error

    def leave(self, cursor: _Cursor) -> bool:
        """Drop a reader; True when it was the last one and the stream is still open."""
        if cursor in self.cursors:
            self.cursors.remove(cursor)
            self._trim()
            return not self.cursors and not self.done
        return False

    def _trim(self) -> None:
        low = min((c.pos for c in self.cursors), default=self.base + len(self.events))
        drop = low - self.base
        # Dropped in batches: deleting from the front of a list costs its length.
        if drop > 32 and drop * 2 >= len(self.events):
            del self.events[:drop]
            self.base = low


class Fanout:
    """The sync fan-out over a stream's events."""

    def __init__(
        self,
        source: Iterator[Event],
        close: Callable[[], None],
        snapshot: Callable[[], Response],
    ) -> None:
        self._source = source
        self._close = close
        self._buffer = _Buffer(snapshot)
        self._state = threading.Lock()
        self._reading = threading.Lock()

    def reader(self, max_lag: int) -> StreamReader:
        with self._state:
            return StreamReader(self, self._buffer.join(max_lag))

    def next(self, cursor: _Cursor) -> Event | None:
        buffer = self._buffer
        while True:
            with self._state:
                ready, event = buffer.take(cursor)
            if ready:
                return event
            with self._reading:
                with self._state:
                    if buffer.has_next(cursor):
                        continue  # another reader read it meanwhile
                self._read_one()

    def _read_one(self) -> None:
        try:
            event = next(self._source)
        except StopIteration:
            with self._state:
                self._buffer.end(None)
        except BaseException as exc:
            with self._state:
                self._buffer.end(exc)
            raise
        else:
            with self._state:
                self._buffer.add(event)

    def drain(self) -> None:
        """Read the stream to its end into the readers' buffers (for ``stream.response``)."""
        while not self._buffer.done:
            with self._reading:
                if not self._buffer.done:
                    self._read_one()

    def leave(self, cursor: _Cursor) -> None:
        with self._state:
            last = self._buffer.leave(cursor)
        if last:
            self._close()


class _Reader:
    """One reader's place in a fan-out; the sync and async readers add how they read."""

    def __init__(self, fanout: Fanout | AsyncFanout, cursor: _Cursor) -> None:
        self._fanout = fanout
        self._cursor = cursor
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed


class StreamReader(_Reader, Closing):
    """One reader of a stream split by :meth:`Stream.tee` or :meth:`Stream.subscribe`.

    Iterate it for text, or :meth:`events` for typed events, each from the first event. A
    ``for`` loop that stops early closes this reader; closing the last one closes the stream.
    """

    _fanout: Fanout

    def __iter__(self) -> Iterator[str]:
        return self._run(True)  # type: ignore[return-value]

    def events(self) -> Iterator[Event]:
        """Every event of the stream, from the first."""
        return self._run(False)  # type: ignore[return-value]

    def _run(self, text: bool) -> Generator[str | Event, None, None]:
        # One generator a reader, the choice made once: a tee'd stream costs each reader one
        # generator step an event, as an untee'd one does.
        fanout, cursor = self._fanout, self._cursor
        done = False
        try:
            if text:
                while (event := fanout.next(cursor)) is not None:
                    if type(event) is TextDelta:
                        yield event.text
            else:
                while (event := fanout.next(cursor)) is not None:
                    yield event
            done = True
        finally:
            if not done:
                self.close()

    def close(self) -> None:
        """Stop reading; the last reader to close closes the stream."""
        if not self._closed:
            self._closed = True
            self._fanout.leave(self._cursor)


class AsyncFanout:
    """The async fan-out: one task reads from the stream at a time."""

    def __init__(
        self,
        source: Callable[[], Awaitable[AsyncIterator[Event]]],
        close: Callable[[], Awaitable[None]],
        snapshot: Callable[[], Response],
    ) -> None:
        self._open = source
        self._source: AsyncIterator[Event] | None = None
        self._close = close
        self._buffer = _Buffer(snapshot)
        import asyncio  # here: `import spout` stays light

        self._reading = asyncio.Lock()

    def reader(self, max_lag: int) -> AsyncStreamReader:
        return AsyncStreamReader(self, self._buffer.join(max_lag))

    async def next(self, cursor: _Cursor) -> Event | None:
        buffer = self._buffer
        while True:
            ready, event = buffer.take(cursor)
            if ready:
                return event
            async with self._reading:
                if not buffer.has_next(cursor):
                    await self._read_one()

    async def _read_one(self) -> None:
        try:
            if self._source is None:
                self._source = await self._open()
            event = await self._source.__anext__()
        except StopAsyncIteration:
            self._buffer.end(None)
        except BaseException as exc:
            self._buffer.end(exc)
            raise
        else:
            self._buffer.add(event)

    async def drain(self) -> None:
        while not self._buffer.done:
            async with self._reading:
                if not self._buffer.done:
                    await self._read_one()

    async def leave(self, cursor: _Cursor) -> None:
        if self._buffer.leave(cursor):
            await self._close()


class AsyncStreamReader(_Reader, AsyncClosing):
    """One reader of an async stream split by :meth:`AsyncStream.tee` or ``subscribe()``:
    ``async for`` gives its text, :meth:`events` its typed events, each from the first."""

    _fanout: AsyncFanout

    def __aiter__(self) -> AsyncIterator[str]:
        return self._run(True)  # type: ignore[return-value]

    def events(self) -> AsyncIterator[Event]:
        """Every event of the stream, from the first."""
        return self._run(False)  # type: ignore[return-value]

    async def _run(self, text: bool) -> AsyncGenerator[str | Event, None]:
        fanout, cursor = self._fanout, self._cursor
        done = False
        try:
            if text:
                while (event := await fanout.next(cursor)) is not None:
                    if type(event) is TextDelta:
                        yield event.text
            else:
                while (event := await fanout.next(cursor)) is not None:
                    yield event
            done = True
        finally:
            if not done:
                await self.aclose()

    async def aclose(self) -> None:
        """Stop reading; the last reader to close closes the stream."""
        if not self._closed:
            self._closed = True
            await self._fanout.leave(self._cursor)
