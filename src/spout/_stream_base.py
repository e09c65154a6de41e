"""What every stream is but the loop that reads it; the sync and async classes add only the I/O.

As httpx's ``BaseClient`` under ``Client`` and ``AsyncClient``: :class:`StreamView` shows what
arrived (text, snapshot, live numbers, repr); :class:`BaseStream` adds splitting for several
readers; :class:`SyncStreamBase` and :class:`AsyncStreamBase` read the events, close the stream
when a loop stops early, and end a ``with`` block.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._closing import AsyncClosing, Closing
from ._errors import SpoutError
from ._events import Event, TextDelta, ToolResult

if TYPE_CHECKING:
    from ._response import Response
    from ._stats import StreamStats

    # The tee machinery loads on the first tee(), not with `import spout`: the readers are
    # named as strings in the base classes below, which ruff does not read as uses.
    from ._tee import AsyncFanout, AsyncStreamReader, Fanout, StreamReader  # noqa: F401

__all__ = [
    "AsyncStreamBase",
    "BaseStream",
    "StreamView",
    "SyncStreamBase",
    "Tally",
    "partial_on_error",
]


@contextlib.contextmanager
def partial_on_error(
    snapshot: Callable[[], Response], *, replace: bool = False
) -> Generator[None, None, None]:
    """A :class:`SpoutError` raised inside carries the response as far as it arrived
    (``.partial``); one that already carries a narrower one keeps it unless ``replace``."""
    try:
        yield
    except SpoutError as exc:
        if replace or exc.partial is None:
            exc.partial = snapshot()
        raise


class Tally(Protocol):
    """What a stream has seen so far: one response's accumulator, or a tool loop's rounds."""

    @property
    def text(self) -> str: ...

    def response(self) -> Response: ...

    def stats(self) -> StreamStats: ...


class StreamView:
    """The text, response and numbers of a stream as they stand, without reading further."""

    _tally: Tally
    _closed: bool = False

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._tally.text

    @property
    def snapshot(self) -> Response:
        """The response as it stands now, without reading further."""
        return self._tally.response()

    @property
    def stats(self) -> StreamStats:
        """Live numbers: time to first token, elapsed, chunks, characters, output tokens
        (the provider's once reported, an estimate until then), tokens per second."""
        return self._tally.stats()

    def _label(self) -> str:
        return "closed" if self._closed else "open"

    def __repr__(self) -> str:
        return f"<spout.{type(self).__name__} {self._label()} text={self.text[:40]!r}>"


_Reader = TypeVar("_Reader")
_Item = TypeVar("_Item")  # what iterating gives: text chunks (and each tool call once it ran)


_Reader_co = TypeVar("_Reader_co", covariant=True)


class _Fanout(Protocol[_Reader_co]):
    def reader(self, max_lag: int) -> _Reader_co: ...


class BaseStream(StreamView, Generic[_Reader]):
    """A stream of events that several readers may share (:meth:`tee`, :meth:`subscribe`)."""

    _read = False

    def tee(self, n: int = 2, *, max_lag: int = 10_000) -> tuple[_Reader, ...]:
        """``n`` independent readers of this stream, each from the first event.

        Read the readers, not the stream, from then on. Memory is bounded: a reader more
        than ``max_lag`` events behind the reader in front is dropped, and its next read
        raises :class:`StreamError`. Closing the last reader closes the stream.

        Example::

            display, log = llm.generate_stream("hi").tee(2)

            a, b = llm.agenerate_stream("hi").tee(2)
            await asyncio.gather(show(a), log(b))
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, not {n!r}")
        fanout = self._split()
        return tuple(fanout.reader(max_lag) for _ in range(n))

    def subscribe(self, *, max_lag: int = 10_000) -> _Reader:
        """One more independent reader of this stream, from the first event (see :meth:`tee`)."""
        return self._split().reader(max_lag)

    def _split(self) -> _Fanout[_Reader]:
        fanout = self._live_fanout()
        if fanout is None:
            if self._was_split() or self._read:
                raise RuntimeError(
                    "tee() and subscribe() come before the stream is read: the readers each "
                    "start from the first event"
                )
            fanout = self._new_fanout()
        return fanout

    def _check_whole(self) -> None:
        self._read = True
        if self._was_split():
            raise RuntimeError(
                "this stream was split by tee() or subscribe(): read it through its readers"
            )

    def _live_fanout(self) -> _Fanout[_Reader] | None:
        raise NotImplementedError

    def _new_fanout(self) -> _Fanout[_Reader]:
        raise NotImplementedError

    def _was_split(self) -> bool:
        raise NotImplementedError


class SyncStreamBase(BaseStream["StreamReader"], Closing, Generic[_Item]):
    """A stream read by ``for``: text chunks (and each tool call once it ran), or events.

    A ``for`` loop that stops early (``break``, ``return``, an exception) closes the stream.
    """

    _pump: Generator[Event, None, None]
    # A weak reference: the fan-out refers to this stream (to close it), and the stream must
    # not keep its readers' machinery alive in a cycle, which would delay closing it.
    _fanout: weakref.ref[Fanout] | None = None

    def __iter__(self) -> Iterator[_Item]:
        """The text, chunk by chunk as it arrives (a refusal is not text: see :meth:`events`)."""
        return self._run(True)

    def events(self) -> Iterator[Event]:
        """The typed events: text, reasoning, a refusal, tool-call deltas, usage, finish."""
        return self._run(False)

    def _run(self, texts: bool) -> Generator[Any, None, None]:
        self._check_whole()
        done = False
        try:
            if texts:
                for event in self._pump:
                    if type(event) is TextDelta:
                        yield event.text
                    elif type(event) is ToolResult:
                        yield event.tool_call
            else:
                yield from self._pump
            done = True
        except SpoutError:
            if not self._closed:
                raise
            done = True  # closed from another thread: the read it woke ends here, quietly
        finally:
            if not done:
                self.close()

    @property
    def response(self) -> Response:
        """The final response, reading the rest of the stream first if it is still open."""
        fanout = self._live_fanout()
        if fanout is not None:
            fanout.drain()  # read on behalf of the readers, who still get every event
        elif not self._closed:
            for _ in self._pump:
                pass
        return self._tally.response()

    def close(self) -> None:
        """Stop the stream now."""
        if not self._closed:
            self._closed = True
            self._pump.close()

    def _live_fanout(self) -> Fanout | None:
        return self._fanout() if self._fanout is not None else None

    def _new_fanout(self) -> Fanout:
        from ._tee import Fanout

        fanout = Fanout(self._pump, self.close, self._tally.response)
        self._fanout = weakref.ref(fanout)
        return fanout

    def _was_split(self) -> bool:
        return self._fanout is not None


class AsyncStreamBase(BaseStream["AsyncStreamReader"], AsyncClosing, Generic[_Item]):
    """A stream read by ``async for``: text chunks (and each tool call once it ran), or events.

    A loop that stops early, or cancelling the task that reads, closes the stream.
    """

    _pump: AsyncGenerator[Event, None] | None
    _fanout: AsyncFanout | None = None

    def __aiter__(self) -> AsyncIterator[_Item]:
        """The text, chunk by chunk as it arrives (a refusal is not text: see :meth:`events`)."""
        return self._run(True)

    def events(self) -> AsyncIterator[Event]:
        """The typed events: text, reasoning, a refusal, tool-call deltas, usage, finish."""
        return self._run(False)

    async def _run(self, texts: bool) -> AsyncGenerator[Any, None]:
        self._check_whole()
        done = False
        try:
            events = await self._started()
            if texts:
                async for event in events:
                    if type(event) is TextDelta:
                        yield event.text
                    elif type(event) is ToolResult:
                        yield event.tool_call
            else:
                async for event in events:
                    yield event
            done = True
        finally:
            if not done:
                await self.aclose()

    async def _started(self) -> AsyncIterator[Event]:
        """The events, the request sent first where it is sent on first use."""
        assert self._pump is not None
        return self._pump

    @property
    def response(self) -> Response:
        """The response so far; once the stream has ended, the final one.

        To read the rest of an open stream first, ``await stream.get_response()``.
        """
        return self._tally.response()

    async def get_response(self) -> Response:
        """The final response, reading the rest of the stream first if it is still open."""
        if self._fanout is not None:
            await self._fanout.drain()  # read on behalf of the readers
        elif not self._closed:
            async for _ in await self._started():
                pass
        return self._tally.response()

    async def aclose(self) -> None:
        """Stop the stream now."""
        if not self._closed:
            self._closed = True
            if self._pump is not None:
                await self._pump.aclose()

    def abandon(self) -> None:
        """Let the stream go from code that cannot await it (a sync caller that stops reading):
        what it holds is released on its own event loop, as when it is garbage-collected.
        Nothing to do here; a stream that holds a connection says how."""

    def _live_fanout(self) -> AsyncFanout | None:
        return self._fanout

    def _new_fanout(self) -> AsyncFanout:
        from ._tee import AsyncFanout

        self._fanout = AsyncFanout(self._started, self.aclose, self._tally.response)
        return self._fanout

    def _was_split(self) -> bool:
        return self._fanout is not None
