"""One call's requests: retries before the first token, fallbacks, and resuming a cut stream.

The rules are pure (:class:`Attempts` decides what to do about an error); the sync and async
drivers below are two short loops that apply them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, SpoutError, TotalTimeout
from ._events import Event, ResponseStart, TextDelta
from ._policy import CONTENT, CallPolicy, resumable, retryable
from ._response import Accumulator
from .providers._base import refusals_as_text, text_token_counter

if TYPE_CHECKING:
    from ._otel import CallSpan
    from .providers._base import AsyncSource, Call, Provider, SyncSource

__all__ = ["Attempts", "CallPolicy"]

#: Sent after the cut text when the provider cannot continue an assistant turn (no prefill).
CONTINUE = (
    "Your previous message was cut off. Continue it exactly where it stopped, without "
    "repeating anything already written and without any preamble."
)


class Seam:
    """Joins a resumed stream's text to the text before the cut, dropping what it repeats.

    The start of the new text is held back until it is as long as ``before`` (or the stream
    ends); then the longest start of it that ``before`` already ends with, if at least
    ``min_overlap`` long, is dropped.
    """

    __slots__ = ("_before", "_buffer", "_decided", "_min")

    def __init__(self, before: str, min_overlap: int) -> None:
        self._before = before
        self._min = min_overlap
        self._buffer: list[str] = []
        self._decided = not before

    def feed(self, text: str) -> str:
        if self._decided:
            return text
        self._buffer.append(text)
        joined = "".join(self._buffer)
        return self._decide(joined) if len(joined) >= len(self._before) else ""

    def flush(self) -> str:
        return "" if self._decided else self._decide("".join(self._buffer))

    def _decide(self, joined: str) -> str:
        self._decided = True
        self._buffer.clear()
        before = self._before
        for k in range(min(len(before), len(joined)), self._min - 1, -1):
            if k and before.endswith(joined[:k]):
                return joined[k:]
        return joined


class Attempts:
    """The state of one call across its requests; decides what an error leads to.

    ``on_error`` answers with a delay before the next request (a retry, or 0 for a fallback),
    or raises the error; ``resume_call`` gives the request that continues a cut stream.
    """

    def __init__(
        self,
        provider: Provider,
        call: Call,
        accumulator: Accumulator,
        policy: CallPolicy,
        fallbacks: Sequence[Callable[[], Provider]] = (),
    ) -> None:
        #: The provider the next request goes to: the model asked for, then each fallback.
        self.provider = provider
        self.call = call
        self.accumulator = accumulator
        self.policy = policy
        self.deadline = policy.deadline
        self.retries = 0  # retries of the current model
        self.resumes = 0
        # Each makes its fallback's provider on first use (the caller keeps what it made).
        self._fallbacks = list(fallbacks)
        self.seam: Seam | None = None
        self.release_current: Callable[[], Any] | None = None
        #: With spout.instrument(): the call's span, told of each retry and fallback.
        self.span: CallSpan | None = None

    def shaped(self, call: Call) -> Call:
        """The call as this attempt's provider takes it: a ``response_format`` in its shape,
        a refusal in the history as text where it has no field for one (a fallback may speak
        another wire format than the model first tried)."""
        provider = self.provider
        if not provider.takes_refusal():
            messages = refusals_as_text(call.messages)
            if messages is not call.messages:
                call = replace(call, messages=messages)
        if call.output_format is None:
            return call
        from ._structured import request_for

        return request_for(provider, call)

    def new_attempt(self) -> None:
        if self.deadline is not None:
            self.deadline.new_attempt()

    def on_error(self, error: BaseException) -> float:
        """The wait before trying again (a retry, or a fallback at 0); raises if nothing is left."""
        if not isinstance(error, SpoutError) or isinstance(error, TotalTimeout):
            raise error
        retry = self.policy.retry
        if retryable(error) and self.retries < retry.max_retries:
            delay = retry.delay(self.retries, getattr(error, "retry_after", None))
            left = None if self.deadline is None else self.deadline.total_left()
            if delay is not None and (left is None or delay < left):
                self.retries += 1
                self.accumulator.note_retry()
                if self.span is not None:
                    self.span.retry(error, delay)
                return delay
        while self._fallbacks:
            candidate = self._fallback(self._fallbacks.pop(0), error)
            if candidate is not None:
                self.provider = candidate
                self.retries = 0
                self.accumulator.set_origin(
                    candidate.name,
                    candidate.model,
                    text_token_counter(candidate),
                    candidate.pricing(),
                )
                if self.span is not None:
                    self.span.fallback(candidate, error)
                return 0.0
        raise error

    def _fallback(self, make: Callable[[], Provider], error: SpoutError) -> Provider | None:
        from ._capabilities import ModelCapability, has_capability

        try:
            candidate = make()
        except ConfigurationError:
            return None  # e.g. no key for it here: the next one may do
        if self.call.tools and not has_capability(candidate.capabilities(), ModelCapability.TOOLS):
            return None
        return candidate

    def resume_call(self, error: BaseException) -> Call | None:
        """The request that continues the text cut by ``error``, or None when it may not."""
        if not (self.policy.resume and isinstance(error, SpoutError) and resumable(error)):
            return None
        accumulator = self.accumulator
        text = accumulator.text
        # A refusal is not continued: a request for the rest of one would only ask again.
        if (
            not text
            or accumulator.has_tool_calls
            or accumulator.refusal is not None
            or self.resumes >= max(1, self.policy.retry.max_retries)
        ):
            return None
        self.resumes += 1
        accumulator.note_resume()
        if self.span is not None:
            self.span.resume(error)
        call = self.call
        kept = text.rstrip()
        if self.provider.can_prefill(call):
            # The model continues its own turn; an API may refuse trailing whitespace there
            # (Anthropic does), so it is cut and matched against what comes back.
            messages = [*call.messages, {"role": "assistant", "content": kept}]
            self.seam = Seam(text[len(kept) :], 1)
        else:
            messages = [
                *call.messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": CONTINUE},
            ]
            self.seam = Seam(text[-200:], 6)
        return replace(call, messages=messages)

    def release(self) -> None:
        release, self.release_current = self.release_current, None
        if release is not None:
            release()

    __call__ = release

    def abort(self) -> None:
        """Wake a thread blocked reading the current response (see ``_transport._Release``)."""
        abort = getattr(self.release_current, "abort", None)
        if abort is not None:
            abort()
        else:
            self.release()

    def wake(self) -> None:
        """Wake a thread blocked reading the current response if the transport can (an HTTP
        response's socket is shut down), and do nothing otherwise: the reader is left to
        close what it reads."""
        abort = getattr(self.release_current, "abort", None)
        if abort is not None:
            abort()

    async def arelease(self) -> None:
        release, self.release_current = self.release_current, None
        if release is not None:
            await release()


# -- sync -------------------------------------------------------------------------------------


def open_sync(attempts: Attempts) -> SyncSource:
    """Send the request (retrying, falling back) and return its events, made resilient."""
    events = _open(attempts, attempts.call)
    return _sync_events(attempts, events), attempts


def _open(attempts: Attempts, call: Call) -> Iterator[Event]:
    while True:
        attempts.new_attempt()
        try:
            events, attempts.release_current = attempts.provider.open_stream(attempts.shaped(call))
            return events
        except BaseException as exc:
            delay = attempts.on_error(exc)
        if delay:
            time.sleep(delay)


def _sync_events(attempts: Attempts, events: Iterator[Event]) -> Generator[Event, None, None]:
    deadline = attempts.deadline
    resumed = False
    while True:
        held: list[Event] = []  # what came before the first content, dropped if it fails
        try:
            for event in events:
                if type(event) in CONTENT:
                    if deadline is not None:
                        deadline.content()
                    if not resumed:
                        yield from held
                        yield event
                    else:
                        yield from _seamed(attempts, event)
                    break
                held.append(event)
            else:
                if not resumed:
                    yield from held
                else:
                    yield from _seamed_tail(attempts, held)
                return
            # Content flows: from here every event passes straight through.
            if resumed:
                for event in events:
                    yield from _seamed(attempts, event)
            elif deadline is not None and deadline.tracks_content:
                content, check = deadline.content, deadline.check
                for event in events:
                    if type(event) in CONTENT:
                        content()
                    check()
                    yield event
            else:
                yield from events
            return
        except BaseException as exc:
            attempts.release()
            started = attempts.accumulator.started
            if not started:
                delay = attempts.on_error(exc)
                if delay:
                    time.sleep(delay)
                events = _open(attempts, attempts.call)
                continue
            call = attempts.resume_call(exc)
            if call is None:
                raise
            resumed = True
            events = _open(attempts, call)


def _seamed(attempts: Attempts, event: Event) -> Iterator[Event]:
    """A resumed request's event, joined at the seam: its own start is not a new response."""
    if type(event) is TextDelta:
        seam = attempts.seam
        text = event.text if seam is None else seam.feed(event.text)
        if text:
            yield TextDelta(text)
    elif type(event) is not ResponseStart:
        if attempts.seam is not None:
            rest = attempts.seam.flush()
            if rest:
                yield TextDelta(rest)
        yield event


def _seamed_tail(attempts: Attempts, held: list[Event]) -> Iterator[Event]:
    for event in held:
        yield from _seamed(attempts, event)


def complete_sync(attempts: Attempts) -> list[Event]:
    """A whole, unstreamed answer, with retries and fallbacks."""
    while True:
        attempts.new_attempt()
        try:
            return list(attempts.provider.complete(attempts.shaped(attempts.call)))
        except BaseException as exc:
            delay = attempts.on_error(exc)
        if delay:
            time.sleep(delay)


# -- async ------------------------------------------------------------------------------------


async def open_async(attempts: Attempts) -> AsyncSource:
    events = await _aopen(attempts, attempts.call)
    return _async_events(attempts, events), attempts.arelease


async def _aopen(attempts: Attempts, call: Call) -> AsyncIterator[Event]:
    import asyncio

    while True:
        attempts.new_attempt()
        try:
            events, attempts.release_current = await attempts.provider.aopen_stream(
                attempts.shaped(call)
            )
            return events
        except BaseException as exc:
            delay = attempts.on_error(exc)
        if delay:
            await asyncio.sleep(delay)


async def _async_events(
    attempts: Attempts, events: AsyncIterator[Event]
) -> AsyncGenerator[Event, None]:
    import asyncio

    deadline = attempts.deadline
    resumed = False
    while True:
        held: list[Event] = []
        try:
            started = False
            async for event in events:
                if type(event) in CONTENT:
                    if deadline is not None:
                        deadline.content()
                    if not resumed:
                        for early in held:
                            yield early
                        yield event
                    else:
                        for out in _seamed(attempts, event):
                            yield out
                    started = True
                    break
                held.append(event)
            if not started:
                for event in held if not resumed else list(_seamed_tail(attempts, held)):
                    yield event
                return
            tracks = deadline is not None and deadline.tracks_content
            async for event in events:
                if resumed:
                    for out in _seamed(attempts, event):
                        yield out
                    continue
                if tracks:
                    if type(event) in CONTENT:
                        deadline.content()  # type: ignore[union-attr]
                    deadline.check()  # type: ignore[union-attr]
                yield event
            return
        except BaseException as exc:
            await attempts.arelease()
            if not attempts.accumulator.started:
                delay = attempts.on_error(exc)
                if delay:
                    await asyncio.sleep(delay)
                events = await _aopen(attempts, attempts.call)
                continue
            call = attempts.resume_call(exc)
            if call is None:
                raise
            resumed = True
            events = await _aopen(attempts, call)


async def complete_async(attempts: Attempts) -> list[Event]:
    import asyncio

    while True:
        attempts.new_attempt()
        try:
            return list(await attempts.provider.acomplete(attempts.shaped(attempts.call)))
        except BaseException as exc:
            delay = attempts.on_error(exc)
        if delay:
            await asyncio.sleep(delay)
