"""The final Response, and the Accumulator that folds a stream's events into it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ._events import (
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    ResponseStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)

__all__ = ["Accumulator", "Response"]

_NO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Response:
    """A complete answer, streamed or not.

    ``usage`` is always a :class:`Usage`; its counts are None when the provider reported none.
    Timings are in seconds from the moment the request was sent.

    Example::

        response = llm.generate("Count from 1 to 5")
        print(response.text, response.finish_reason, response.usage.output_tokens)
    """

    text: str = ""
    reasoning: str = ""
    reasoning_signature: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = _NO_USAGE
    finish_reason: FinishReason | None = None
    raw_finish_reason: str | None = None
    model: str | None = None
    id: str | None = None
    time_to_first_token: float | None = None
    duration: float | None = None
    provider: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def output_tokens_per_second(self) -> float | None:
        """Output tokens over the time from the first token to the end, when both are known."""
        tokens = self.usage.output_tokens
        if not tokens or self.duration is None or self.time_to_first_token is None:
            return None
        generating = self.duration - self.time_to_first_token
        return tokens / generating if generating > 0 else None


class Accumulator:
    """Folds events into a :class:`Response`, in time linear in the length of the stream.

    Every stream and every non-streamed call runs through one, so both always agree::

        acc = Accumulator()
        for event in events:
            acc.add(event)
        response = acc.response()
    """

    __slots__ = (
        "_ended_at",
        "_finish",
        "_first_token_at",
        "_id",
        "_model",
        "_provider",
        "_reasoning",
        "_signature",
        "_started_at",
        "_text",
        "_tool_calls",
        "_usage",
    )

    def __init__(
        self,
        *,
        model: str | None = None,
        provider: str | None = None,
        started_at: float | None = None,
    ) -> None:
        self._started_at = time.perf_counter() if started_at is None else started_at
        self._first_token_at: float | None = None
        self._ended_at: float | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._signature: str | None = None
        self._tool_calls: list[ToolCall] = []
        self._usage = _NO_USAGE
        self._finish: Finish | None = None
        self._id: str | None = None
        self._model = model
        self._provider = provider

    def restart_clock(self) -> None:
        """Count timings from now: for a request sent later than the accumulator was made."""
        self._started_at = time.perf_counter()

    def add(self, event: Event) -> None:
        """Fold one event in."""
        if type(event) is TextDelta:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            self._text.append(event.text)
        elif type(event) is ReasoningDelta:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            if event.text:
                self._reasoning.append(event.text)
            if event.signature is not None:
                # A signature comes whole, one per thinking block: the latest replaces.
                self._signature = event.signature
        elif type(event) is ToolCallStart or type(event) is ToolCallDelta:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
        elif type(event) is ToolCallEnd:
            self._tool_calls.append(event.tool_call)
        elif type(event) is Usage:
            self._usage = event
        elif type(event) is Finish:
            self._finish = event
            self._ended_at = time.perf_counter()
        elif type(event) is ResponseStart:
            if event.id is not None:
                self._id = event.id
            if event.model is not None:
                self._model = event.model
        else:
            raise TypeError(f"not a spout event: {event!r}")

    @property
    def text(self) -> str:
        """The text so far."""
        parts = self._text
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    @property
    def finished(self) -> bool:
        """Whether a :class:`Finish` event arrived."""
        return self._finish is not None

    def response(self) -> Response:
        """The response as it stands: final once the stream ended, a snapshot before."""
        now = time.perf_counter() if self._ended_at is None else self._ended_at
        started = self._started_at
        finish = self._finish
        return Response(
            text=self.text,
            reasoning="".join(self._reasoning),
            reasoning_signature=self._signature,
            tool_calls=tuple(self._tool_calls),
            usage=self._usage,
            finish_reason=finish.reason if finish else None,
            raw_finish_reason=finish.raw_reason if finish else None,
            model=self._model,
            id=self._id,
            time_to_first_token=(
                None if self._first_token_at is None else self._first_token_at - started
            ),
            duration=now - started,
            provider=self._provider,
        )
