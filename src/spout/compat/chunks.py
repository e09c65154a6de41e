"""spout's events as ``chat.completion.chunk`` objects: one encoder, for compat and the gateway."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from .. import _events as ev
from .._context import estimate_tokens
from ._objects import (
    ChatCompletionDeltaToolCall,
    Delta,
    Function,
    ModelResponseStream,
    OpenAIObject,
    StreamingChoices,
    Usage,
    _wrap,
)

__all__ = ["ChunkEncoder", "arguments_text", "finish_reason", "usage_object"]

# spout's event classes, bound once: the chunk loop compares types on every event.
_TextDelta = ev.TextDelta
_ReasoningDelta = ev.ReasoningDelta
_RefusalDelta = ev.RefusalDelta
_ToolCallStart = ev.ToolCallStart
_ToolCallDelta = ev.ToolCallDelta
_ToolCallEnd = ev.ToolCallEnd
_Usage = ev.Usage
_Finish = ev.Finish
_ResponseStart = ev.ResponseStart


# spout's finish reasons as chat completions names them. A refusal with its text (OpenAI's, from
# chat completions or the Responses API) is "stop", as OpenAI ends one: the text is in
# delta.refusal, then message.refusal, never in the content. A refusal marked only by a stop
# reason (Anthropic's) is "content_filter", as litellm maps it. "error" is what OpenRouter's
# chat completions sends for a generation that failed: passed on as it came.
_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
}


def finish_reason(finish: ev.Finish, *, refused: bool = False, tool_calls: bool = False) -> str:
    """A spout :class:`~spout.Finish` as chat completions' ``finish_reason``.

    ``refused``: a refusal's text came; ``tool_calls``: the answer made tool calls, so a plain
    stop is ``"tool_calls"`` (as OpenAI ends such an answer, and Gemini does not).
    """
    if finish.reason == "refusal":
        return "stop" if refused or finish.raw_reason == "stop" else "content_filter"
    reason = _FINISH.get(finish.reason, "stop")
    if reason == "stop" and tool_calls:
        return "tool_calls"
    return reason


def _new_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def _estimated_completion(chars: int) -> int:
    """Output tokens counted from text, where the provider reported none: 4 characters each."""
    return -(-chars // 4)


def usage_object(
    usage: ev.Usage | None, messages: Sequence[Mapping[str, Any]] | None, chars: int
) -> Usage:
    """Usage as chat completions reports it; a count the provider did not report is estimated
    (the prompt by :func:`spout._context.estimate_tokens`, the output at 4 characters a token)."""
    prompt = usage.input_tokens if usage is not None else None
    completion = usage.output_tokens if usage is not None else None
    if prompt is None:
        prompt = estimate_tokens(messages) if messages else 0  # type: ignore[arg-type]
    if completion is None:
        completion = _estimated_completion(chars)
    result = Usage(
        completion_tokens=completion, prompt_tokens=prompt, total_tokens=prompt + completion
    )
    if usage is None:
        return result
    extras = usage.extras
    # What OpenAI-compatible providers report beside the counts, under the same names.
    for key in ("prompt_tokens_details", "completion_tokens_details"):
        if isinstance(extras.get(key), Mapping):
            result[key] = _wrap(extras[key])
    # Every provider's cache and reasoning counts where litellm puts them: prompt_tokens is
    # the whole input, prompt_tokens_details.cached_tokens the part read from the cache and
    # cache_creation_tokens the part written to it; a provider that reports writes
    # (Anthropic, Bedrock) also gets litellm's top-level cache_read_input_tokens and
    # cache_creation_input_tokens.
    read, write = usage.cache_read_tokens, usage.cache_write_tokens
    if read is not None or write is not None:
        details = result.get("prompt_tokens_details") or OpenAIObject()
        details["cached_tokens"] = read or 0
        if write is not None:
            details["cache_creation_tokens"] = write
            result["cache_read_input_tokens"] = read or 0
            result["cache_creation_input_tokens"] = write
        result["prompt_tokens_details"] = details
    if usage.reasoning_tokens is not None:
        details = result.get("completion_tokens_details") or OpenAIObject()
        details["reasoning_tokens"] = usage.reasoning_tokens
        result["completion_tokens_details"] = details
    return result


def arguments_text(call: ev.ToolCall) -> str:
    """A finished call's arguments as JSON text: as the provider sent them, if it sent text.

    None at all (no text, or an empty one, as Anthropic streams a call without arguments) is
    ``{}``: chat completions always carries JSON there (OpenAI's models write ``{}``), and a
    client's ``json.loads`` of an empty string fails.
    """
    if call.arguments_raw:
        return call.arguments_raw
    return orjson.dumps(call.arguments).decode()


#: Stands for the text in the template of a text chunk (no real text or model name holds it).
_TEXT_MARK = "\x00spout-text\x00"


class ChunkEncoder:
    """spout's events as ``chat.completion.chunk`` objects, one event at a time, no I/O: the one
    encoder behind ``completion(..., stream=True)`` and the gateway's chat completions wire.

    What it decides, for both:

    - the role goes on the first chunk (:meth:`start` makes one that holds nothing else, as
      OpenAI's stream opens);
    - an event with nothing in it (empty text, empty argument text) makes no chunk;
    - tool calls are numbered 0, 1... in the order they start, whatever index the provider
      gave them; the id and name go on a call's first chunk only (the SDKs' accumulators
      concatenate every string they see twice), and argument text as it streams; a call
      whose arguments never streamed (sent whole, by Ollama or Gemini) gets them at its end as
      one piece, :func:`arguments_text`; argument text for a call that never started waits for
      its end, which names it;
    - the finish is held until the events end, so the usage can go with it: the reason by
      :func:`finish_reason`, the usage by :func:`usage_object` (estimated where the provider
      reported none); with ``include_usage`` every chunk has ``usage: null`` and one last chunk
      with empty ``choices`` carries it, as OpenAI sends it.

    ``litellm`` shapes the chunks as litellm's objects are (compat): every delta has
    ``content``, ``role``, ``function_call`` and ``tool_calls``, every tool call its ``id``,
    ``type`` and name; Anthropic's thinking signature is ``thinking_blocks`` and Gemini's
    thought signature the call's ``provider_specific_fields``, so they go back on the next
    request; without ``include_usage`` the finish chunk carries the usage. Without it they are
    as OpenAI's wire has them: only the fields that say something. A ``response_id`` names the
    response for good; without one a :class:`~spout.ResponseStart` before the first chunk does.

    Example::

        encoder = ChunkEncoder("gpt-4o-mini", include_usage=True)
        chunks = [c for e in events if (c := encoder.event(e)) is not None] + encoder.end()
    """

    __slots__ = (
        "_chars",
        "_created",
        "_finish",
        "_id",
        "_include_usage",
        "_litellm",
        "_messages",
        "_model",
        "_named",
        "_refused",
        "_role",
        "_text_template",
        "_tools",
        "_usage",
    )

    def __init__(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]] | None = None,
        include_usage: bool = False,
        *,
        response_id: str | None = None,
        litellm: bool = True,
    ) -> None:
        self._id = response_id or _new_id()
        self._named = response_id is not None
        self._created = int(time.time())
        self._model = model
        self._messages = messages
        self._include_usage = include_usage
        self._litellm = litellm
        #: the role goes on the first chunk only
        self._role: str | None = "assistant"
        #: spout's index of a started call -> [its chat completions index, whether arguments went out]
        self._tools: dict[int, list[Any]] = {}
        self._finish: ev.Finish | None = None
        self._usage: ev.Usage | None = None
        #: characters of output, to estimate the usage where the provider reports none
        self._chars = 0
        #: whether a refusal's text came (delta.refusal)
        self._refused = False
        #: a text chunk's JSON before and after its text (made by text_json on first use)
        self._text_template: tuple[bytes, bytes] | None = None

    def start(self) -> ModelResponseStream:
        """The chunk that opens the stream: the role, and nothing said yet."""
        role, self._role = self._role, None
        if self._litellm:
            delta = Delta(content=None, role=role, function_call=None, tool_calls=None)
        else:
            delta = Delta(role=role, content=None, refusal=None)
        return self._chunk(delta)

    def text(self, text: str) -> ModelResponseStream | None:
        """The chunk for a piece of text (the hot path: one call, four small dicts)."""
        if not text:
            return None
        self._chars += len(text)
        if not self._litellm:
            return self._chunk(Delta(content=text))
        role = self._role
        if role is not None:
            self._role = None
        # Literals copied into the classes: cheaper than keyword arguments.
        chunk = ModelResponseStream(
            {
                "id": self._id,
                "created": self._created,
                "model": self._model,
                "object": "chat.completion.chunk",
                "system_fingerprint": None,
                "choices": [
                    StreamingChoices(
                        {
                            "index": 0,
                            "delta": Delta(
                                {
                                    "content": text,
                                    "role": role,
                                    "function_call": None,
                                    "tool_calls": None,
                                }
                            ),
                            "finish_reason": None,
                            "logprobs": None,
                        }
                    )
                ],
            }
        )
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def text_json(self, text: str) -> bytes | None:
        """``orjson.dumps(self.text(text))``, the same bytes, made from a template once the
        first chunk went out: a gateway relaying text spends no dicts on it."""
        if self._litellm or self._role is not None or not text:
            chunk = self.text(text)
            return None if chunk is None else orjson.dumps(chunk)
        self._chars += len(text)
        template = self._text_template
        if template is None:
            probe = orjson.dumps(self._chunk(Delta(content=_TEXT_MARK)))
            head, found, tail = probe.partition(orjson.dumps(_TEXT_MARK))
            assert found, "a text chunk holds its text"
            template = self._text_template = (head, tail)
        return template[0] + orjson.dumps(text) + template[1]

    def _delta(self, **fields: Any) -> Delta:
        if self._litellm:
            return Delta(
                {"content": None, "role": None, "function_call": None, "tool_calls": None, **fields}
            )
        return Delta(fields)

    def _chunk(self, delta: Delta, finish_reason: str | None = None) -> ModelResponseStream:
        if self._role is not None:
            delta["role"] = self._role
            self._role = None
        if self._litellm:
            choice = StreamingChoices(
                index=0, delta=delta, finish_reason=finish_reason, logprobs=None
            )
            chunk = ModelResponseStream(
                id=self._id,
                created=self._created,
                model=self._model,
                object="chat.completion.chunk",
                system_fingerprint=None,
                choices=[choice],
            )
        else:
            choice = StreamingChoices(
                index=0, delta=delta, logprobs=None, finish_reason=finish_reason
            )
            chunk = ModelResponseStream(
                id=self._id,
                object="chat.completion.chunk",
                created=self._created,
                model=self._model,
                choices=[choice],
            )
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def fields(self, **fields: Any) -> ModelResponseStream:
        """A chunk whose delta holds ``fields``: what the gateway adds to OpenAI's shape (a
        file's ``audio`` or ``images``, citations' ``annotations``; see docs/gateway.md)."""
        return self._chunk(self._delta(**fields))

    def _tool_chunk(
        self, index: int, call_id: str | None, name: str | None, arguments: str
    ) -> ModelResponseStream:
        if call_id is None and not self._litellm:
            # OpenAI's later argument pieces carry only the index and the text.
            call = ChatCompletionDeltaToolCall(index=index, function=Function(arguments=arguments))
        else:
            call = ChatCompletionDeltaToolCall(
                index=index,
                id=call_id,
                type="function",
                function=Function(name=name, arguments=arguments),
            )
        return self._chunk(self._delta(tool_calls=[call]))

    def event(self, event: Any) -> ModelResponseStream | None:
        """The chunk for an event, or None for those that make none by themselves."""
        kind = type(event)
        if kind is _TextDelta:
            return self.text(event.text)
        if kind is _ToolCallDelta:
            state = self._tools.get(event.index)
            if state is None or not event.arguments:
                return None
            state[1] = True
            self._chars += len(event.arguments)
            return self._tool_chunk(state[0], None, None, event.arguments)
        if kind is _ReasoningDelta:
            signature = event.signature if self._litellm else None
            if not event.text and signature is None:
                return None
            delta = self._delta()
            if event.text:
                self._chars += len(event.text)
                delta["reasoning_content"] = event.text
            if signature is not None:
                # litellm's shape for Anthropic's thinking signature; it goes back on the
                # assistant message (see _spout_messages).
                delta["thinking_blocks"] = [
                    OpenAIObject(type="thinking", thinking="", signature=signature)
                ]
            return self._chunk(delta)
        if kind is _RefusalDelta:
            if not event.text:
                return None
            # OpenAI's delta.refusal: apart from the content, which stays None.
            self._refused = True
            self._chars += len(event.text)
            return self._chunk(self._delta(refusal=event.text))
        if kind is _ToolCallStart:
            index = len(self._tools)
            self._tools[event.index] = [index, False]
            self._chars += len(event.name)
            return self._tool_chunk(index, event.id, event.name, "")
        if kind is _ToolCallEnd:
            return self._tool_end(event)
        if kind is _Usage:
            self._usage = event
        elif kind is _Finish:
            self._finish = event
        elif kind is _ResponseStart and self._role is not None and not self._named:
            # Before the first chunk, it names the whole response.
            if event.id:
                self._id = event.id
            if event.model:
                self._model = event.model
        return None

    def _tool_end(self, event: ev.ToolCallEnd) -> ModelResponseStream | None:
        call = event.tool_call
        state = self._tools.get(event.index)
        call_id: str | None = None
        name: str | None = None
        if state is None:
            # Never started: its id, name and arguments in one chunk.
            state = self._tools[event.index] = [len(self._tools), False]
            call_id, name = call.id, call.name
            self._chars += len(call.name)
        signature = call.signature if self._litellm else None
        arguments = ""
        if not state[1]:
            # The provider sent the call whole (Ollama, Gemini): its arguments go out now.
            state[1] = True
            arguments = arguments_text(call)
            self._chars += len(arguments)
        elif signature is None:
            return None
        chunk = self._tool_chunk(state[0], call_id, name, arguments)
        if signature is not None:
            # Gemini's thought signature, where litellm keeps it; it goes back with the call.
            tool_call = chunk["choices"][0]["delta"]["tool_calls"][0]
            tool_call["provider_specific_fields"] = OpenAIObject(thought_signature=signature)
        return chunk

    def end(self, usage: ev.Usage | None = None) -> list[ModelResponseStream]:
        """The chunks that close the stream, once its events ended: the finish, the usage.

        ``usage``: the whole answer's (a :class:`~spout.Response`'s), in place of the last
        :class:`~spout.Usage` event seen. None if the events ended with no finish (an error
        was raised, or the stream was closed).
        """
        finish = self._finish
        if finish is None:
            return []  # cut short: an error was raised, or the stream was closed
        last = self._chunk(
            self._delta(),
            finish_reason(finish, refused=self._refused, tool_calls=bool(self._tools)),
        )
        if not self._include_usage and not self._litellm:
            return [last]  # no usage asked for: not estimated over the prompt for nothing
        usage_block = usage_object(usage or self._usage, self._messages, self._chars)
        if not self._include_usage:
            last["usage"] = usage_block
            return [last]
        closing = self._chunk(self._delta())
        del closing["choices"][0]
        closing["usage"] = usage_block
        return [last, closing]


def _sync_chunks(events: Iterable[Any], maker: ChunkEncoder) -> Iterator[ModelResponseStream]:
    text, other = maker.text, maker.event
    for event in events:
        chunk = text(event.text) if type(event) is _TextDelta else other(event)
        if chunk is not None:
            yield chunk
    yield from maker.end()


async def _async_chunks(
    events: AsyncIterator[Any], maker: ChunkEncoder
) -> AsyncGenerator[ModelResponseStream, None]:
    text, other = maker.text, maker.event
    async for event in events:
        chunk = text(event.text) if type(event) is _TextDelta else other(event)
        if chunk is not None:
            yield chunk
    for chunk in maker.end():
        yield chunk
