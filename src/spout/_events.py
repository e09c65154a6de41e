"""The typed events every provider's stream is turned into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ._files import File

__all__ = [
    "Citation",
    "Event",
    "FileEnd",
    "FileStart",
    "Finish",
    "FinishReason",
    "RawEvent",
    "ReasoningDelta",
    "RefusalDelta",
    "ResponseStart",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolResult",
    "Usage",
]

#: Why a model stopped, the same for every provider. ``"unrecognized"``: the answer held
#: only content spout does not know (each piece came as a :class:`RawEvent`), where a
#: ``"stop"`` would pass for an answer that is empty.
FinishReason = Literal[
    "stop", "length", "tool_calls", "refusal", "content_filter", "error", "unrecognized"
]


@dataclass(frozen=True, slots=True)
class ResponseStart:
    """The provider named the response and the model that produces it.

    Sent once, before any content, by providers whose stream carries an id or a model name.
    """

    id: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text.

    >>> TextDelta("Hel").text
    'Hel'
    """

    text: str


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    """A piece of the model's refusal: why it declines to answer, kept apart from the text.

    OpenAI streams it as ``delta.refusal`` (chat completions) and ``response.refusal.delta``
    (the Responses API), as its API keeps ``message.refusal`` apart from ``message.content``.
    It folds into :attr:`Response.refusal`, never into ``text``; iterating a stream for text
    leaves it out, and the response's ``finish_reason`` is ``"refusal"``.

    >>> RefusalDelta("I can't help with that.").text
    "I can't help with that."
    """

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning (thinking) text, or of its signature, or a block of
    reasoning the provider sent encrypted (``redacted``: Anthropic's ``redacted_thinking``
    data, Bedrock's ``redactedContent``), whole and unreadable; it must go back as it came;
    or a whole reasoning item (``item``).

    Example::

        for event in llm.generate_stream("Why is the sky blue?", thinking=True):
            if isinstance(event, ReasoningDelta) and event.text:
                print(event.text, end="")
    """

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    #: A reasoning item whole, as the provider must get it back on the next round (OpenAI
    #: Responses' ``reasoning`` item: its id, summary and ``encrypted_content``).
    item: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call: what the model asked to run, with its arguments parsed.

    ``arguments_raw`` is the JSON text as the provider sent it (None when the provider sent an
    object rather than text). ``signature`` is an opaque token some providers attach to a call
    and require back with its result (Gemini's thought signatures).

    In the tool loop (:meth:`LLM.generate_stream_with_tools`) a call comes back after it ran:
    ``result`` holds what the function returned, or ``error`` says why it did not run or what
    it raised. ``error`` is also set, with empty ``arguments``, when the model's arguments
    are not valid JSON.

    Example::

        for item in llm.generate_stream_with_tools("Weather in Oslo?", tools=[get_weather]):
            if isinstance(item, ToolCall):
                print(item.name, item.arguments, "->", item.error or item.result)
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    arguments_raw: str | None = None
    signature: str | None = None
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """The model began a tool call; ``index`` tells calls apart within one response."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call's JSON arguments."""

    index: int
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    """A tool call is complete."""

    index: int
    tool_call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The tool loop ran a call (or refused to): ``tool_call`` carries its result or error.

    ``content`` is the text sent back to the model as the call's result.
    """

    tool_call: ToolCall
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts. ``extras`` keeps what else the provider reported.

    ``input_tokens`` is the whole input, cached or not; ``cache_read_tokens`` and
    ``cache_write_tokens`` say how much of it was read from, and written to, the provider's
    prompt cache (None where the provider does not say). ``output_tokens`` includes
    ``reasoning_tokens``, the part spent thinking, where the provider counts it apart.

    A later ``Usage`` event in the same stream replaces an earlier one: providers report totals.

    >>> Usage(8000, 50, cache_read_tokens=5000).cache_read_tokens
    5000
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


@dataclass(frozen=True, slots=True)
class Finish:
    """Why the model stopped: ``reason`` normalized across providers, ``raw_reason`` as sent."""

    reason: FinishReason
    raw_reason: str | None = None


@dataclass(frozen=True, slots=True)
class FileStart:
    """The model began answering with a file (an image, audio): it arrives whole in the
    :class:`FileEnd` of the same ``index``."""

    index: int
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class FileEnd:
    """A file the model answered with, complete: Gemini's ``inlineData``, OpenAI's audio,
    the Responses API's generated image. Each file is given once, here."""

    index: int
    file: File


@dataclass(frozen=True, slots=True)
class Citation:
    """A source the answer cites, sent as it arrives (and kept in :attr:`Response.citations`).

    ``text`` is the text cited (the source's words where the provider quotes them, else the
    span of the answer it supports); ``start`` and ``end`` place that span in the answer's
    text, in characters, where the provider says. ``url`` and ``title`` name the source (a
    web page, a document); ``raw`` is the provider's own citation object.

    Example::

        for event in llm.generate_stream(prompt, files=[File(path="report.pdf")]).events():
            if isinstance(event, Citation):
                print(f"[{event.title or event.url}] {event.text}")
    """

    text: str | None = None
    url: str | None = None
    title: str | None = None
    start: int | None = None
    end: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class RawEvent:
    """Content the provider sent that spout does not recognise (a new block type, a server
    tool's result), kept as the provider's own JSON so that nothing vanishes. ``type`` is the
    provider's name for it.

    A stream that held only such content finishes ``"unrecognized"``, never a quiet
    ``"stop"`` with no text.
    """

    type: str
    data: Any = None


Event = (
    ResponseStart
    | TextDelta
    | ReasoningDelta
    | RefusalDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | ToolResult
    | Usage
    | Finish
    | FileStart
    | FileEnd
    | Citation
    | RawEvent
)
