"""spout's events as ``chat.completion.chunk`` objects, one event at a time, no I/O."""

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
# reason (Anthropic's) is "content_filter", as litellm maps it.
_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
}


def _finish_reason(finish: ev.Finish, refused: bool = False) -> str:
    if finish.reason == "refusal":
        return "stop" if refused or finish.raw_reason == "stop" else "content_filter"
    return _FINISH.get(finish.reason, "stop")


def _new_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def _estimated_completion(chars: int) -> int:
    """Output tokens counted from text, where the provider reported none: 4 characters each."""
    return -(-chars // 4)


def _usage_object(
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
    extras = usage.extras if usage is not None else None
    if extras:
        # What OpenAI-compatible providers report beside the counts, under the same names.
        for key in ("prompt_tokens_details", "completion_tokens_details"):
            if isinstance(extras.get(key), Mapping):
                result[key] = _wrap(extras[key])
        cached = extras.get("cache_read_input_tokens", extras.get("cachedContentTokenCount"))
        if isinstance(cached, int) and "prompt_tokens_details" not in result:
            result["prompt_tokens_details"] = OpenAIObject(cached_tokens=cached)
        thoughts = extras.get("thoughtsTokenCount")
        if isinstance(thoughts, int) and "completion_tokens_details" not in result:
            result["completion_tokens_details"] = OpenAIObject(reasoning_tokens=thoughts)
    return result


def _arguments_text(call: ev.ToolCall) -> str:
    """A finished call's arguments as JSON text: as the provider sent them, if it sent text
    (none at all is ``{}``, as chat completions writes a call without arguments)."""
    if call.arguments_raw:
        return call.arguments_raw
    return orjson.dumps(call.arguments).decode()


class _ChunkMaker:
    """Turns spout's events into ``chat.completion.chunk`` objects, one event at a time, no I/O.

    Text events take the fast path (:meth:`text`); the rest go through :meth:`event`. Tool
    calls are numbered 0, 1... in the order they start, whatever index the provider gave
    them. The finish is held until the events end, so the usage can go with it: on the finish
    chunk, or (``include_usage``, as OpenAI sends it) on a last chunk with empty ``choices``.
    """

    __slots__ = (
        "_chars",
        "_created",
        "_finish",
        "_id",
        "_include_usage",
        "_messages",
        "_model",
        "_refused",
        "_role",
        "_tools",
        "_usage",
    )

    def __init__(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]] | None,
        include_usage: bool,
    ) -> None:
        self._id = _new_id()
        self._created = int(time.time())
        self._model = model
        self._messages = messages
        self._include_usage = include_usage
        #: the role goes on the first chunk only
        self._role: str | None = "assistant"
        #: spout's index of a call -> [its chat completions index, whether arguments went out]
        self._tools: dict[int, list[Any]] = {}
        self._finish: ev.Finish | None = None
        self._usage: ev.Usage | None = None
        #: characters of output, to estimate the usage where the provider reports none
        self._chars = 0
        #: whether a refusal's text came (delta.refusal)
        self._refused = False

    def text(self, text: str) -> ModelResponseStream:
        """The chunk for a piece of text (the hot path: one call, four small dicts)."""
        self._chars += len(text)
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

    def _chunk(self, delta: Delta, finish_reason: str | None = None) -> ModelResponseStream:
        if self._role is not None:
            delta["role"] = self._role
            self._role = None
        chunk = ModelResponseStream(
            id=self._id,
            created=self._created,
            model=self._model,
            object="chat.completion.chunk",
            system_fingerprint=None,
            choices=[
                StreamingChoices(index=0, delta=delta, finish_reason=finish_reason, logprobs=None)
            ],
        )
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def _tool_chunk(self, tool_call: ChatCompletionDeltaToolCall) -> ModelResponseStream:
        return self._chunk(
            Delta(content=None, role=None, function_call=None, tool_calls=[tool_call])
        )

    def _tool_index(self, index: int) -> list[Any]:
        state = self._tools.get(index)
        if state is None:
            state = self._tools[index] = [len(self._tools), False]
        return state

    def event(self, event: Any) -> ModelResponseStream | None:
        """The chunk for any other event, or None for those that make none by themselves."""
        kind = type(event)
        if kind is _ToolCallDelta:
            state = self._tool_index(event.index)
            state[1] = True
            self._chars += len(event.arguments)
            return self._tool_chunk(
                ChatCompletionDeltaToolCall(
                    index=state[0],
                    id=None,
                    type="function",
                    function=Function(name=None, arguments=event.arguments),
                )
            )
        if kind is _ReasoningDelta:
            if not event.text and event.signature is None:
                return None
            delta = Delta(content=None, role=None, function_call=None, tool_calls=None)
            if event.text:
                self._chars += len(event.text)
                delta["reasoning_content"] = event.text
            if event.signature is not None:
                # litellm's shape for Anthropic's thinking signature; it goes back on the
                # assistant message (see _spout_messages).
                delta["thinking_blocks"] = [
                    OpenAIObject(type="thinking", thinking="", signature=event.signature)
                ]
            return self._chunk(delta)
        if kind is _RefusalDelta:
            if not event.text:
                return None
            # OpenAI's delta.refusal: apart from the content, which stays None.
            self._refused = True
            self._chars += len(event.text)
            return self._chunk(
                Delta(
                    content=None,
                    role=None,
                    function_call=None,
                    tool_calls=None,
                    refusal=event.text,
                )
            )
        if kind is _ToolCallStart:
            state = self._tool_index(event.index)
            self._chars += len(event.name)
            return self._tool_chunk(
                ChatCompletionDeltaToolCall(
                    index=state[0],
                    id=event.id,
                    type="function",
                    function=Function(name=event.name, arguments=""),
                )
            )
        if kind is _ToolCallEnd:
            return self._tool_end(event)
        if kind is _Usage:
            self._usage = event
        elif kind is _Finish:
            self._finish = event
        elif kind is _ResponseStart and self._role is not None:
            # Before the first chunk, it names the whole response.
            if event.id:
                self._id = event.id
            if event.model:
                self._model = event.model
        return None

    def _tool_end(self, event: ev.ToolCallEnd) -> ModelResponseStream | None:
        call = event.tool_call
        state = self._tools.get(event.index)
        started = state is not None
        if state is None:
            state = self._tool_index(event.index)
        tool_call = ChatCompletionDeltaToolCall(
            index=state[0],
            id=None if started else call.id,
            type="function",
            function=Function(name=None if started else call.name, arguments=""),
        )
        if not started:
            self._chars += len(call.name)
        if not state[1]:
            # The provider sent the call whole (Ollama, Anthropic's non-streamed shape): its
            # arguments go out now, as one piece.
            state[1] = True
            arguments = _arguments_text(call)
            tool_call["function"]["arguments"] = arguments
            self._chars += len(arguments)
        elif call.signature is None:
            return None
        if call.signature is not None:
            # Gemini's thought signature, where litellm keeps it; it goes back with the call.
            tool_call["provider_specific_fields"] = OpenAIObject(thought_signature=call.signature)
        return self._tool_chunk(tool_call)

    def end(self) -> list[ModelResponseStream]:
        """The chunks that close the stream, once its events ended: the finish, the usage."""
        finish = self._finish
        if finish is None:
            return []  # cut short: an error was raised, or the stream was closed
        usage = _usage_object(self._usage, self._messages, self._chars)
        last = self._chunk(
            Delta(content=None, role=None, function_call=None, tool_calls=None),
            _finish_reason(finish, self._refused),
        )
        if not self._include_usage:
            last["usage"] = usage
            return [last]
        return [
            last,
            ModelResponseStream(
                id=self._id,
                created=self._created,
                model=self._model,
                object="chat.completion.chunk",
                system_fingerprint=None,
                choices=[],
                usage=usage,
            ),
        ]


def _sync_chunks(events: Iterable[Any], maker: _ChunkMaker) -> Iterator[ModelResponseStream]:
    text, other = maker.text, maker.event
    for event in events:
        if type(event) is _TextDelta:
            yield text(event.text)
        else:
            chunk = other(event)
            if chunk is not None:
                yield chunk
    yield from maker.end()


async def _async_chunks(
    events: AsyncIterator[Any], maker: _ChunkMaker
) -> AsyncGenerator[ModelResponseStream, None]:
    text, other = maker.text, maker.event
    async for event in events:
        if type(event) is _TextDelta:
            yield text(event.text)
        else:
            chunk = other(event)
            if chunk is not None:
                yield chunk
    for chunk in maker.end():
        yield chunk
