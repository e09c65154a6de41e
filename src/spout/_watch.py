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
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import CallbackError
from ._events import Event, TextDelta
from .shaping import Boundary, Shaper

if TYPE_CHECKING:
    from ._response import Response

__all__ = ["HOOKS", "SHAPING", "WATCH_PARAMS", "Watch", "take_watch", "watch_async", "watch_sync"]

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


def _failed(name: str, exc: Exception, response: Callable[[], Response]) -> CallbackError:
    error = CallbackError(
        f"the {name} callback raised {type(exc).__name__}: {exc}; the stream was stopped "
        "(what arrived is on .partial)",
        callback=name,
    )
    error.partial = response()
    return error


def _call(name: str, hook: Callable[..., Any], response: Callable[[], Response], *args: Any) -> None:
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
) -> Generator[Event, None, None]:
    """``events`` shaped and reported as ``watch`` asks; closing this closes ``events``.

    ``on_start`` runs once before the first event is waited for; ``on_event`` with each
    event the consumer gets (shaped text included), then ``on_chunk`` with its text;
    ``on_error`` once if the stream fails (then the error is raised); ``on_complete`` once
    with the final response when it ends. A stream left early (``break``, ``close``) calls
    neither of the last two. A callback that raises stops the stream: :class:`CallbackError`.
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
        while True:
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

    try:
        if watch.on_start is not None:
            await _acall("on_start", watch.on_start, response)
        while True:
            try:
                event = await events.__anext__()
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
        await events.aclose()
