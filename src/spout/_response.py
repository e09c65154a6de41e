"""The final Response, and the Accumulator that folds a stream's events into it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._cost import FREE, UNKNOWN, Priced, Pricing, with_tokens
from ._errors import ProtocolError, ToolCallParseError
from ._events import (
    Citation,
    Event,
    FileEnd,
    FileStart,
    Finish,
    FinishReason,
    RawEvent,
    ReasoningDelta,
    RefusalDelta,
    ResponseStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)
from ._files import File
from ._limits import DEFAULT_LIMITS, over_limit
from ._stats import StreamStats, estimate_output_tokens, make_stats

if TYPE_CHECKING:
    from ._output_format import OutputFormat

__all__ = ["Accumulator", "Response"]

_NO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Response:
    """A complete answer, streamed or not.

    ``usage`` is always a :class:`Usage`; its counts are None when the provider reported none.
    Timings are in seconds from the moment the request was sent. ``retries`` counts the
    requests retried before the first token; ``resumed`` counts the times a cut stream was
    continued in a new request (``resume=True``), whose usage is then added in.

    ``refusal`` is the model's refusal, when it declined to answer (OpenAI's
    ``message.refusal``): kept apart from ``text``, which then holds only what the model
    answered (usually nothing), and ``finish_reason`` is ``"refusal"``. A provider that
    marks a refusal only in its stop reason (Anthropic's ``stop_reason: "refusal"``) sets
    ``finish_reason`` and leaves ``refusal`` None.

    Example::

        response = llm.generate("Count from 1 to 5")
        print(response.text, response.finish_reason, response.usage.output_tokens)
        if response.refusal is not None:
            print("refused:", response.refusal)
    """

    text: str = ""
    reasoning: str = ""
    reasoning_signature: str | None = None
    #: The reasoning block by block, in order, as the provider needs it back: each
    #: ``{"text": ..., "signature": ...}``, ``{"redacted": ...}`` (encrypted reasoning) or,
    #: for a provider that gives reasoning as items, ``{"text": ..., "item": {...}}``.
    reasoning_blocks: tuple[dict[str, Any], ...] = ()
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
    retries: int = 0
    resumed: int = 0
    #: With ``response_format``: the answer's JSON, validated (a pydantic model, a dataclass,
    #: or a dict for a JSON Schema); None without one, and before the stream ends.
    parsed: Any = None
    #: The model's refusal (:class:`RefusalDelta` joined), or None when it did not refuse.
    #: Never part of ``text``.
    refusal: str | None = None
    #: Files the model answered with (images, audio), each complete (:class:`FileEnd`).
    files: tuple[File, ...] = ()
    #: The sources the answer cites, in the order they arrived (:class:`Citation`).
    citations: tuple[Citation, ...] = ()
    #: Content spout did not recognise, as the provider sent it (:class:`RawEvent`).
    raw_events: tuple[RawEvent, ...] = ()
    #: Chunks, characters, output tokens (the provider's, or an estimate), time to first
    #: token and tokens per second (:class:`StreamStats`); None for a Response built by hand.
    stats: StreamStats | None = field(default=None, compare=False, repr=False)
    _priced: Priced | None = field(default=None, compare=False, repr=False)

    @property
    def cost(self) -> float | None:
        """What the call cost in US dollars, from the model's public price list (or the
        ``prices=`` given to :func:`create_llm`); 0.0 for a model run locally, None for a
        model with no known price. A stream cut short costs what it used (see
        :attr:`cost_estimated`). Worked out when first read.

        Example::

            response = create_llm("openai:gpt-4o-mini").generate("Hi")
            print(f"${response.cost:.6f}")
        """
        return None if self._priced is None else self._priced.value[0]

    @property
    def cost_estimated(self) -> bool:
        """Whether :attr:`cost` rests on spout's estimate of some tokens rather than the
        provider's own counts: a stream cut (an error, ``break``, cancellation) before the
        provider reported its usage, or a provider that reports none."""
        return False if self._priced is None else self._priced.value[1]

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
        "_carried",
        "_carried_cost",
        "_citations",
        "_count_tokens",
        "_counted",
        "_ended_at",
        "_files",
        "_finish",
        "_first_token_at",
        "_id",
        "_input_tokens",
        "_max_tool_arguments",
        "_merged",
        "_model",
        "_open_calls",
        "_output_base",
        "_parsed",
        "_pricing",
        "_provider",
        "_raw",
        "_reasoning",
        "_reasoning_blocks",
        "_refusal",
        "_resumed",
        "_retries",
        "_signature",
        "_spent",
        "_started_at",
        "_strict",
        "_text",
        "_tool_calls",
        "_usage",
        "estimate_input",
        "output_format",
    )

    def __init__(
        self,
        *,
        model: str | None = None,
        provider: str | None = None,
        started_at: float | None = None,
        strict_tool_arguments: bool = True,
        count_tokens: Callable[[str], int | None] | None = None,
        pricing: Pricing | None = None,
        max_tool_arguments: int = DEFAULT_LIMITS.max_tool_arguments,
    ) -> None:
        self._strict = strict_tool_arguments
        # Characters one streamed call's arguments may reach (ResponseLimits).
        self._max_tool_arguments = max_tool_arguments
        # How the call is priced (None: no provider known, no cost), and the cost of the
        # requests before a resumed one; see cost().
        self._pricing = pricing
        self._carried_cost: Priced | None = None
        #: The input's tokens as spout estimates them (a callable, set with the call): the
        #: cost of a stream cut before the provider reported its usage counts them.
        self.estimate_input: Callable[[], int] | None = None
        self._input_tokens: int | None = None
        # Output that is not text (reasoning, refusals, tool arguments), in characters, and
        # the output before the current request (a resumed one): the estimate of its tokens.
        self._spent = 0
        self._output_base = 0
        # The model's tokenizer, for live stats before usage arrives, and its last count as
        # (characters, tokens): reading the stats again without new text costs nothing.
        self._count_tokens = count_tokens
        self._counted = (-1, 0)
        self._carried: Usage | None = None
        self._retries = 0
        self._resumed = 0
        # index -> a call still streaming:
        # [id, name, argument parts, partial parser, parts fed, characters so far]
        self._open_calls: dict[int, list[Any]] = {}
        self._started_at = time.perf_counter() if started_at is None else started_at
        self._first_token_at: float | None = None
        self._ended_at: float | None = None
        self._text: list[str] = []
        # Text parts joined into one by ``text``: with len(_text), the chunk count, so
        # counting chunks costs the hot path nothing.
        self._merged = 0
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._signature: str | None = None
        # Each reasoning block, in order: a signature or an encrypted block ends one.
        self._reasoning_blocks: list[dict[str, Any]] = []
        self._tool_calls: list[ToolCall] = []
        self._files: list[File] = []
        self._citations: list[Citation] = []
        self._raw: list[RawEvent] = []
        self._usage = _NO_USAGE
        self._finish: Finish | None = None
        self._id: str | None = None
        self._model = model
        self._provider = provider
        #: What ``response_format`` asked for (:class:`spout._output_format.OutputFormat`): the
        #: text is parsed and validated when the Finish event arrives.
        self.output_format: OutputFormat | None = None
        self._parsed: Any = None

    def restart_clock(self) -> None:
        """Count timings from now: for a request sent later than the accumulator was made."""
        self._started_at = time.perf_counter()

    def add(self, event: Event) -> bool | None:
        """Fold one event in.

        Returns True only for a :class:`Finish` the answer's content changes: a ``"stop"``
        after nothing but :class:`RawEvent` content finishes ``"unrecognized"``, and the
        stream then passes on :attr:`finish` in its place.
        """
        if type(event) is TextDelta:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            self._text.append(event.text)
        elif type(event) is ReasoningDelta:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            blocks = self._reasoning_blocks
            if event.text:
                self._reasoning.append(event.text)
                self._spent += len(event.text)
                if not blocks or "text" not in blocks[-1] or "signature" in blocks[-1]:
                    blocks.append({"text": ""})
                blocks[-1]["text"] += event.text
            if event.signature is not None:
                # A signature comes whole, one per thinking block: the latest replaces.
                self._signature = event.signature
                if not blocks or "text" not in blocks[-1] or "signature" in blocks[-1]:
                    blocks.append({"text": ""})
                blocks[-1]["signature"] = event.signature
            if event.redacted is not None:
                blocks.append({"redacted": event.redacted})
            if event.item is not None:
                # The whole item ends the block its text (a summary) began.
                if not blocks or set(blocks[-1]) != {"text"}:
                    blocks.append({"text": ""})
                blocks[-1]["item"] = event.item
        elif type(event) is ToolCallDelta:
            call = self._open_calls.get(event.index)
            if call is not None:
                call[2].append(event.arguments)
                call[5] += len(event.arguments)
                if call[5] > self._max_tool_arguments:
                    raise ProtocolError(
                        over_limit(
                            f"the arguments of tool call {call[1]!r} ({call[0]})",
                            self._max_tool_arguments,
                            "max_tool_arguments",
                            "characters",
                        ),
                        data="".join(call[2])[:200],
                    )
        elif type(event) is ToolCallStart:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            self._open_calls[event.index] = [event.id, event.name, [], None, 0, 0]
        elif type(event) is ToolCallEnd:
            self._open_calls.pop(event.index, None)
            tool_call = event.tool_call
            self._tool_calls.append(tool_call)
            self._spent += len(tool_call.arguments_raw or "")
            if self._strict and tool_call.error is not None and tool_call.result is None:
                raise ToolCallParseError(
                    f"the model's call to tool {tool_call.name!r} ({tool_call.id}) is unusable: "
                    f"{tool_call.error}; its text is kept on .raw",
                    tool_name=tool_call.name,
                    raw=tool_call.arguments_raw or "",
                    tool_call_id=tool_call.id,
                )
        elif type(event) is Usage:
            self._usage = event
        elif type(event) is Finish:
            changed = None
            if event.reason == "stop" and self._raw and not self._recognized():
                event = Finish("unrecognized", event.raw_reason)
                changed = True
            self._finish = event
            self._ended_at = time.perf_counter()
            if self.output_format is not None:
                # Raises StructuredOutputError (with the text) when the answer does not
                # validate; the stream adds the response as .partial.
                self._parsed = self.output_format.parse(self.text, event)
            return changed
        elif type(event) is ResponseStart:
            if event.id is not None:
                self._id = event.id
            if event.model is not None:
                self._model = event.model
        elif type(event) is RefusalDelta:
            # Content like text (it ends the wait for a first token), but never text.
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            self._refusal.append(event.text)
            self._spent += len(event.text)
        elif type(event) is ToolResult:
            pass  # the tool loop keeps results; a single response has none
        elif type(event) is FileEnd:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            self._files.append(event.file)
        elif type(event) is FileStart:
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
        elif type(event) is Citation:
            self._citations.append(event)
        elif type(event) is RawEvent:
            # Content all the same: it ends the wait for a first token.
            if self._first_token_at is None:
                self._first_token_at = time.perf_counter()
            self._raw.append(event)
        else:
            raise TypeError(f"not a spout event: {event!r}")
        return None

    def _recognized(self) -> bool:
        """Whether any content spout knows arrived (text, reasoning, a refusal, a call, a
        file)."""
        return bool(
            self.text or self._reasoning or self._refusal or self._tool_calls or self._files
        )

    @property
    def finish(self) -> Finish | None:
        """The :class:`Finish` the stream ended with, as the response reports it."""
        return self._finish

    @property
    def text(self) -> str:
        """The text so far."""
        parts = self._text
        if len(parts) > 1:
            self._merged += len(parts) - 1
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    @property
    def refusal(self) -> str | None:
        """The refusal so far, or None when none arrived."""
        return "".join(self._refusal) if self._refusal else None

    @property
    def started(self) -> bool:
        """Whether content (text, reasoning, a refusal or a tool call) arrived."""
        return self._first_token_at is not None

    @property
    def has_tool_calls(self) -> bool:
        """Whether a tool call began, finished or not."""
        return bool(self._tool_calls or self._open_calls)

    def note_retry(self) -> None:
        self._retries += 1

    def note_resume(self) -> None:
        """A new request continues this response: its usage will add to what came so far."""
        self._resumed += 1
        # Each request is priced on its own (a price tier is per request), the cut one as
        # far as it went.
        self._carried_cost = self.cost()
        self._output_base = self._output_chars()
        self._carried = add_usage(self._carried, self._usage)
        self._usage = _NO_USAGE

    def set_origin(
        self,
        provider: str,
        model: str | None,
        count_tokens: Callable[[str], int | None] | None = None,
        pricing: Pricing | None = None,
    ) -> None:
        """The provider and model that answer, after a fallback, its tokenizer if any, and
        how it prices a call."""
        self._provider = provider
        self._model = model
        self._pricing = pricing
        self._count_tokens = count_tokens
        self._counted = (-1, 0)

    @property
    def finished(self) -> bool:
        """Whether a :class:`Finish` event arrived."""
        return self._finish is not None

    def _calls_in_progress(self) -> list[ToolCall]:
        """Calls still streaming, their arguments parsed as far as they arrived.

        Each call's parser is fed only the text that came since the last snapshot, so taking
        a snapshot on every delta costs time linear in the arguments, not quadratic.
        """
        from ._partial_json import PartialJSON

        calls = []
        for index in sorted(self._open_calls):
            state = self._open_calls[index]
            call_id, name, parts, parser, fed, _ = state
            if parser is None:
                parser = state[3] = PartialJSON()
            for piece in parts[fed:]:
                parser.feed(piece)
            state[4] = len(parts)
            value = parser.value()
            arguments = value if isinstance(value, dict) else {}
            calls.append(ToolCall(call_id, name, arguments, "".join(parts)))
        return calls

    def stats(self) -> StreamStats:
        """The stream's numbers as they stand (see :class:`StreamStats`)."""
        now = time.perf_counter() if self._ended_at is None else self._ended_at
        first = self._first_token_at
        text = self.text
        characters = len(text)
        # A refusal is output but not text: not in the chunks and characters, but in the
        # estimate of output tokens.
        refused = sum(map(len, self._refusal)) if self._refusal else 0
        usage = self._usage if self._carried is None else add_usage(self._carried, self._usage)
        cost = self.cost()
        counted = None
        if usage.output_tokens is None and self._count_tokens is not None:
            # Counted here, when the stats are read, never per chunk on the hot path.
            if self._counted[0] != characters:
                tokens = self._count_tokens(text) if text else 0
                if tokens is None:
                    return make_stats(
                        None if first is None else first - self._started_at,
                        now - self._started_at,
                        self._merged + len(self._text),
                        characters,
                        None,
                        refused=refused,
                        cost=cost,
                    )
                self._counted = (characters, tokens)
            counted = self._counted[1]
        return make_stats(
            None if first is None else first - self._started_at,
            now - self._started_at,
            self._merged + len(self._text),
            characters,
            usage.output_tokens,
            counted,
            refused=refused,
            cost=cost,
        )

    def cost(self) -> Priced:
        """What the call cost so far in US dollars, and whether that rests on an estimate.

        The provider's usage, priced (:class:`~spout._cost.Pricing`). Where it is not all
        there (a stream cut, or still going, before the provider reported it), spout's
        estimates fill in: the input as :func:`~spout._context.estimate_tokens` counts it,
        and the output as one token per four characters of what arrived (text, reasoning, a
        refusal, tool arguments), which also stands for an output count the stream was cut
        before finishing (Anthropic's first count is 1). A call that received nothing and
        reported nothing costs 0: a refused request is not billed. None with no pricing or
        an unknown price. Worked out when read: the :class:`~spout._cost.Priced` holds what
        it needs as it stands now.
        """
        if self._pricing is None:
            return UNKNOWN
        current = self._request_cost(self._pricing)
        if self._carried_cost is None:
            return current
        return Priced.total([self._carried_cost, current])

    def _request_cost(self, pricing: Pricing) -> Priced:
        """The cost of the current request (see :meth:`cost`)."""
        usage = self._usage
        produced = self._output_chars() - self._output_base
        if (pricing.free and pricing.prices is None) or (
            usage.input_tokens is None and usage.output_tokens is None and not produced
        ):
            return FREE
        finished = self._finish is not None
        model = self._model
        base = self._output_base
        estimate_input = self._estimated_input

        def work() -> tuple[float | None, bool]:
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
            guessed = estimate_output_tokens(produced)
            estimated = False
            if input_tokens is None:
                input_tokens = estimate_input(base)
                estimated = True
            if output_tokens is None or (not finished and output_tokens < guessed):
                output_tokens = max(output_tokens or 0, guessed)
                estimated = True
            priced = with_tokens(usage, input_tokens, output_tokens) if estimated else usage
            return pricing.cost(priced, model), estimated

        return Priced(work)

    def _output_chars(self) -> int:
        """Characters of output so far: text, reasoning, refusals, tool arguments."""
        chars = len(self.text) + self._spent
        for call in self._open_calls.values():
            chars += call[5]
        return chars

    def _estimated_input(self, before: int) -> int:
        """The input's tokens as spout estimates them; a resumed request's input holds the
        ``before`` characters of output that came before it too."""
        if self._input_tokens is None:
            estimate = self.estimate_input
            self._input_tokens = estimate() if estimate is not None else 0
        return self._input_tokens + estimate_output_tokens(before)

    def response(self) -> Response:
        """The response as it stands: final once the stream ended, a snapshot before.

        In a snapshot, ``tool_calls`` ends with the calls still streaming, their
        ``arguments`` the best-effort object parsed from the JSON text so far.
        """
        now = time.perf_counter() if self._ended_at is None else self._ended_at
        started = self._started_at
        finish = self._finish
        tool_calls = self._tool_calls
        if self._open_calls:
            tool_calls = tool_calls + self._calls_in_progress()
        stats = self.stats()
        return Response(
            text=self.text,
            reasoning="".join(self._reasoning),
            reasoning_signature=self._signature,
            reasoning_blocks=tuple(dict(block) for block in self._reasoning_blocks),
            tool_calls=tuple(tool_calls),
            usage=self._usage if self._carried is None else add_usage(self._carried, self._usage),
            finish_reason=finish.reason if finish else None,
            raw_finish_reason=finish.raw_reason if finish else None,
            model=self._model,
            id=self._id,
            time_to_first_token=(
                None if self._first_token_at is None else self._first_token_at - started
            ),
            duration=now - started,
            provider=self._provider,
            retries=self._retries,
            resumed=self._resumed,
            parsed=self._parsed,
            refusal="".join(self._refusal) if self._refusal else None,
            files=tuple(self._files),
            citations=tuple(self._citations),
            raw_events=tuple(self._raw),
            stats=stats,
            _priced=stats._priced,
        )


def add_usage(a: Usage | None, b: Usage) -> Usage:
    """Two requests' usage as one: counts added (a count neither reported stays unknown),
    numeric extras added, other extras the later one's."""
    if a is None:
        return b
    if b is _NO_USAGE:
        return a

    def add(x: int | None, y: int | None) -> int | None:
        return None if x is None and y is None else (x or 0) + (y or 0)

    extras = dict(a.extras)
    for key, value in b.extras.items():
        before = extras.get(key)
        numeric = isinstance(value, (int, float)) and isinstance(before, (int, float))
        extras[key] = before + value if numeric else value
    return Usage(
        add(a.input_tokens, b.input_tokens),
        add(a.output_tokens, b.output_tokens),
        extras,
        cache_read_tokens=add(a.cache_read_tokens, b.cache_read_tokens),
        cache_write_tokens=add(a.cache_write_tokens, b.cache_write_tokens),
        reasoning_tokens=add(a.reasoning_tokens, b.reasoning_tokens),
    )
