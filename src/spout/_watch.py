"""Shaping and callbacks on a stream: the options a call takes, and the two loops that apply them.

A call's shaping options (``buffer_size``, ``min_chunk_size``, ``debounce``, ``smooth``,
``delay``) and callbacks (``on_start``, ``on_chunk``, ``on_event``, ``on_error``,
``on_complete``) become a :class:`Watch`. A stream given one wraps its events in
:func:`watch_sync` or :func:`watch_async`; a stream given none runs exactly as before, so
the hot path pays nothing for these features when they are not used.

The loops sit after the accumulator: it folds the provider's own events, so ``stream.text``
and the final response are the same with or without shaping. Text events are re-chunked by
a :class:`~spout.shaping.Shaper`; any other event flushes the text it holds first, so order
is kept. Time comes only from here: ``debounce`` reads ``time.monotonic()`` as each chunk
arrives, and ``delay`` sleeps (``time.sleep``, or ``asyncio.sleep`` in async streams)
between the pieces released from one chunk.

``debounce`` also needs a timer: held text must come out when its window passes even if the
provider pauses. The loops wait for the next event only until :meth:`Shaper.deadline`, then
hand the consumer :meth:`Shaper.tick`. The async loop keeps one task reading the next event
and waits on it with a timeout (cancelling it would end the upstream generator). A sync
``next()`` cannot time out, so a sync stream with ``debounce`` (and only such a stream)
reads its provider's events on a daemon thread of its own, the :class:`Reader`, into a small
bounded queue. The events are still folded and the callbacks still run in the consumer's
thread; the thread only reads.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import CallbackError
from ._events import Event, TextDelta
from .shaping import Boundary, Shaper

if TYPE_CHECKING:
    from ._response import Response

__all__ = [
    "HOOKS",
    "SHAPING",
    "WATCH_PARAMS",
    "Reader",
    "Watch",
    "take_watch",
    "watch_async",
    "watch_sync",
]

SHAPING = ("buffer_size", "min_chunk_size", "debounce", "smooth", "delay")
HOOKS = ("on_start", "on_chunk", "on_event", "on_error", "on_complete")
WATCH_PARAMS = SHAPING + HOOKS


@dataclass(frozen=True, slots=True)
class Watch:
    """What a call asked for: how to shape its text, and whom to tell what happens."""

    buffer_size: int | None = None
    min_chunk_size: int | None = None
    debounce: float | None = None
    smooth: Boundary | None = None
    delay: float = 0.0
    on_start: Callable[[], Any] | None = None
    on_chunk: Callable[[str], Any] | None = None
    on_event: Callable[[Event], Any] | None = None
    on_error: Callable[[BaseException], Any] | None = None
    on_complete: Callable[[Response], Any] | None = None

    @property
    def shapes(self) -> bool:
        return not (
            self.buffer_size is None
            and self.min_chunk_size is None
            and self.debounce is None
            and self.smooth is None
        )

    def shaper(self) -> Shaper | None:
        if not self.shapes:
            return None
        return Shaper(
            buffer_size=self.buffer_size,
            min_chunk_size=self.min_chunk_size,
            debounce=self.debounce,
            smooth=self.smooth,
        )


def take_watch(
    params: dict[str, Any], *, asynchronous: bool, streaming: bool = True
) -> Watch | None:
    """Take the shaping options and callbacks out of a call's ``params`` (so they are never
    sent to a provider) and check them; None when the call gave none."""
    given = {name: params.pop(name) for name in WATCH_PARAMS if name in params}
    given = {name: value for name, value in given.items() if value is not None}
    if not given:
        return None
    if not streaming:
        shaping = [name for name in SHAPING if name in given]
        if shaping:
            raise ValueError(
                f"{shaping[0]} shapes a stream: pass it to generate_stream (or stream=True); "
                "a call that is not streamed takes only the callbacks"
            )
    delay = given.get("delay", 0.0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise TypeError(f"delay must be a number of seconds, not {delay!r}")
    if not 0 <= delay < float("inf"):
        raise ValueError(f"delay must be a number of seconds >= 0, not {delay!r}")
    for name in HOOKS:
        hook = given.get(name)
        if hook is None:
            continue
        if not callable(hook):
            raise TypeError(f"{name} must be a function, not {type(hook).__name__}")
        if not asynchronous and inspect.iscoroutinefunction(hook):
            raise TypeError(
                f"{name} is an async function: pass it to an async stream (agenerate_stream, "
                "generate_async), or pass a plain function"
            )
    watch = Watch(**given)
    watch.shaper()  # checks the shaping options now, before anything is sent
    return watch


_END: Any = object()  # the end of the events, as a task's result

#: How long closing a sync stream with ``debounce`` waits for its reading thread to finish.
_JOIN_TIMEOUT = 1.0


class Reader:
    """A sync stream's events, read ahead on a daemon thread so that the consumer can wait
    for the next one with a timeout (:meth:`wait`): what ``debounce`` needs in a sync stream.

    The thread owns the source: it is the only one that calls ``next`` on it, closes it and
    releases the connection, when the events end or when told to stop. It reads at most
    ``size`` events ahead. Iterating the reader gives the events in order, and raises the
    source's exception in the consumer's thread. :meth:`close` (the stream's release) stops
    the thread: it wakes a read blocked on the network when ``wake`` can (it shuts the
    connection's socket down), and waits up to a second for the thread to end; a source that
    cannot be woken (a local model between two tokens) is closed by its thread when its next
    event arrives.
    """

    __slots__ = (
        "_cond",
        "_events",
        "_failure",
        "_items",
        "_reading",
        "_release",
        "_size",
        "_stopped",
        "_thread",
        "_wake",
    )

    def __init__(
        self,
        events: Iterator[Event],
        release: Callable[[], None],
        wake: Callable[[], None] | None = None,
        size: int = 16,
    ) -> None:
        self._events = events
        self._release: Callable[[], None] | None = release
        self._wake = wake
        self._size = size
        self._items: deque[tuple[bool, Any]] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._reading = False
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def _start(self) -> None:
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="spout-debounce", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        cond, items, events = self._cond, self._items, self._events
        try:
            while True:
                with cond:
                    if self._stopped:
                        return
                    self._reading = True
                try:
                    item: tuple[bool, Any] = (True, next(events))
                except StopIteration:
                    item = (False, None)
                except BaseException as exc:
                    item = (False, exc)
                with cond:
                    self._reading = False
                    while len(items) >= self._size and not self._stopped:
                        cond.wait()
                    if self._stopped:
                        return
                    items.append(item)
                    cond.notify_all()
                if not item[0]:
                    return
        finally:
            self._finish()

    def _finish(self) -> None:
        """Close the source and release it, in the thread that owns it."""
        release, self._release = self._release, None
        if release is None:
            return
        try:
            close = getattr(self._events, "close", None)
            try:
                if close is not None:
                    close()
            finally:
                release()
        except BaseException as exc:  # raised to the consumer by close()
            self._failure = exc

    def __iter__(self) -> Reader:
        return self

    def __next__(self) -> Event:
        self._start()
        with self._cond:
            while not self._items and not self._stopped:
                self._cond.wait()
            if not self._items:
                raise StopIteration  # closed (from another thread)
            ok, value = self._items.popleft()
            self._cond.notify_all()
        if ok:
            return value  # type: ignore[no-any-return]
        if value is None:
            raise StopIteration
        raise value

    def wait(self, timeout: float) -> bool:
        """Whether the next event (or the end) is at hand within ``timeout`` seconds."""
        self._start()
        with self._cond:
            return self._cond.wait_for(
                lambda: bool(self._items) or self._stopped, max(timeout, 0.0)
            )

    def close(self) -> None:
        """Stop reading and release the source (see the class docstring); safe to repeat."""
        with self._cond:
            first = not self._stopped
            self._stopped = True
            self._items.clear()
            self._cond.notify_all()
            if first and self._reading and self._wake is not None:
                self._wake()  # while the thread still reads: the connection is still its own
        thread = self._thread
        if thread is None:
            self._finish()  # never started: nothing else touches the source
        elif thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure


def _failed(name: str, exc: Exception, response: Callable[[], Response]) -> CallbackError:
    error = CallbackError(
        f"the {name} callback raised {type(exc).__name__}: {exc}; the stream was stopped "
        "(what arrived is on .partial)",
        callback=name,
    )
    error.partial = response()
    return error


def _call(
    name: str, hook: Callable[..., Any], response: Callable[[], Response], *args: Any
) -> None:
    try:
        result = hook(*args)
    except Exception as exc:
        raise _failed(name, exc, response) from exc
    if result is not None and inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: say so here, not in a RuntimeWarning
        raise _failed(
            name,
            TypeError("it returned an awaitable in a sync stream; pass a plain function"),
            response,
        )


def watch_sync(
    events: Generator[Event, None, None],
    watch: Watch,
    response: Callable[[], Response],
    reader: Reader | None = None,
) -> Generator[Event, None, None]:
    """``events`` shaped and reported as ``watch`` asks; closing this closes ``events``.

    ``on_start`` runs once before the first event is waited for; ``on_event`` with each
    event the consumer gets (shaped text included), then ``on_chunk`` with its text;
    ``on_error`` once if the stream fails (then the error is raised); ``on_complete`` once
    with the final response when it ends. A stream left early (``break``, ``close``) calls
    neither of the last two. A callback that raises stops the stream: :class:`CallbackError`.

    With ``debounce``, ``reader`` is the :class:`Reader` that ``events`` reads from: text
    held past its window is released while the next event is still on its way.
    """
    shaper = watch.shaper()
    on_event, on_chunk, delay = watch.on_event, watch.on_chunk, watch.delay

    def deliver(pieces: Iterable[str]) -> Generator[Event, None, None]:
        first = True
        for piece in pieces:
            if delay and not first:
                time.sleep(delay)
            first = False
            out = TextDelta(piece)
            if on_event is not None:
                _call("on_event", on_event, response, out)
            if on_chunk is not None:
                _call("on_chunk", on_chunk, response, piece)
            yield out

    try:
        if watch.on_start is not None:
            _call("on_start", watch.on_start, response)
        timed = shaper if reader is not None and watch.debounce is not None else None
        while True:
            if timed is not None:
                due = timed.deadline()
                if due is not None and not reader.wait(due - time.monotonic()):  # type: ignore[union-attr]
                    yield from deliver(timed.tick(time.monotonic()))
                    continue
            try:
                event = next(events)
            except StopIteration:
                break
            except CallbackError:
                raise
            except Exception as exc:
                if shaper is not None:
                    yield from deliver(shaper.flush())
                if watch.on_error is not None:
                    _call("on_error", watch.on_error, response, exc)
                raise
            if type(event) is TextDelta:
                if shaper is not None:
                    yield from deliver(shaper.feed(event.text, time.monotonic()))
                    continue
                if on_event is not None:
                    _call("on_event", on_event, response, event)
                if on_chunk is not None:
                    _call("on_chunk", on_chunk, response, event.text)
                yield event
                continue
            if shaper is not None:
                yield from deliver(shaper.flush())
            if on_event is not None:
                _call("on_event", on_event, response, event)
            yield event
        if shaper is not None:
            yield from deliver(shaper.flush())
        if watch.on_complete is not None:
            _call("on_complete", watch.on_complete, response, response())
    finally:
        events.close()


async def _acall(
    name: str, hook: Callable[..., Any], response: Callable[[], Response], *args: Any
) -> None:
    try:
        result = hook(*args)
        if result is not None and inspect.isawaitable(result):
            await result
    except Exception as exc:
        raise _failed(name, exc, response) from exc


async def watch_async(
    events: AsyncGenerator[Event, None],
    watch: Watch,
    response: Callable[[], Response],
) -> AsyncGenerator[Event, None]:
    """:func:`watch_sync` for async streams: callbacks may be plain or async functions."""
    import asyncio  # on first use: `import spout` stays light

    shaper = watch.shaper()
    on_event, on_chunk, delay = watch.on_event, watch.on_chunk, watch.delay

    async def deliver(pieces: Iterable[str]) -> AsyncGenerator[Event, None]:
        first = True
        for piece in pieces:
            if delay and not first:
                await asyncio.sleep(delay)
            first = False
            out = TextDelta(piece)
            if on_event is not None:
                await _acall("on_event", on_event, response, out)
            if on_chunk is not None:
                await _acall("on_chunk", on_chunk, response, piece)
            yield out

    # With debounce, one task reads the next event; the loop waits on it no longer than the
    # held text's deadline, and waits on the same task again after a tick.
    timed = shaper if watch.debounce is not None else None
    reading: asyncio.Task[Any] | None = None

    async def step() -> Any:
        try:
            return await events.__anext__()
        except StopAsyncIteration:  # a task cannot end by raising this
            return _END

    try:
        if watch.on_start is not None:
            await _acall("on_start", watch.on_start, response)
        while True:
            try:
                if timed is None:
                    event = await events.__anext__()
                else:
                    if reading is None:
                        reading = asyncio.ensure_future(step())
                    due = timed.deadline()
                    if due is not None:
                        done, _ = await asyncio.wait({reading}, timeout=due - time.monotonic())
                        if not done:
                            async for out in deliver(timed.tick(time.monotonic())):
                                yield out
                            continue
                    event = await reading
                    reading = None
                    if event is _END:
                        break
            except StopAsyncIteration:
                break
            except CallbackError:
                raise
            except Exception as exc:
                if shaper is not None:
                    async for out in deliver(shaper.flush()):
                        yield out
                if watch.on_error is not None:
                    await _acall("on_error", watch.on_error, response, exc)
                raise
            if type(event) is TextDelta:
                if shaper is not None:
                    async for out in deliver(shaper.feed(event.text, time.monotonic())):
                        yield out
                    continue
                if on_event is not None:
                    await _acall("on_event", on_event, response, event)
                if on_chunk is not None:
                    await _acall("on_chunk", on_chunk, response, event.text)
                yield event
                continue
            if shaper is not None:
                async for out in deliver(shaper.flush()):
                    yield out
            if on_event is not None:
                await _acall("on_event", on_event, response, event)
            yield event
        if shaper is not None:
            async for out in deliver(shaper.flush()):
                yield out
        if watch.on_complete is not None:
            await _acall("on_complete", watch.on_complete, response, response())
    finally:
        if reading is not None:
            # Left while a read is under way (a break, aclose, a cancelled consumer): end it
            # and wait for it, so the generator is not running when it is closed.
            reading.cancel()
            await asyncio.wait({reading})
            if not reading.cancelled():
                reading.exception()  # retrieved: the stream was left, its error is moot
        await events.aclose()
