"""Complete ``chat.completion`` objects: from a list of chunks, or from a spout Response."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import _events as ev
from .._response import Response
from ._objects import (
    ChatCompletionMessageToolCall,
    Choices,
    Function,
    Message,
    ModelResponse,
    OpenAIObject,
    Usage,
    _as_dict,
    _dict_get,
    _wrap,
)
from .chunks import _new_id, arguments_text, finish_reason, usage_object


class _ChoiceParts:
    """What the chunks of one choice said so far, kept as lists until the end (linear time)."""

    __slots__ = (
        "content",
        "finish_reason",
        "function_call",
        "reasoning",
        "refusal",
        "role",
        "signature",
        "tools",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.signature: str | None = None
        #: index -> [id, type, name, argument parts, provider_specific_fields]
        self.tools: dict[int, list[Any]] = {}
        self.function_call: list[Any] | None = None
        self.finish_reason: str | None = None

    def add(self, delta: dict[str, Any]) -> None:
        get = _dict_get
        content = get(delta, "content")
        if content:
            self.content.append(content)
        role = get(delta, "role")
        if role and self.role is None:
            self.role = role
        reasoning = get(delta, "reasoning_content") or get(delta, "reasoning")
        if reasoning and isinstance(reasoning, str):
            self.reasoning.append(reasoning)
        refusal = get(delta, "refusal")
        if refusal:
            self.refusal.append(refusal)
        for block in get(delta, "thinking_blocks") or ():
            block = _as_dict(block)
            if get(block, "signature"):
                self.signature = block["signature"]
        tool_calls = get(delta, "tool_calls")
        if tool_calls:
            for tool_call in tool_calls:
                self._add_tool_call(_as_dict(tool_call))
        function_call = get(delta, "function_call")
        if function_call:
            function_call = _as_dict(function_call)
            if self.function_call is None:
                self.function_call = [None, []]
            if get(function_call, "name") and self.function_call[0] is None:
                self.function_call[0] = function_call["name"]
            if get(function_call, "arguments"):
                self.function_call[1].append(function_call["arguments"])

    def _add_tool_call(self, tool_call: dict[str, Any]) -> None:
        get = _dict_get
        tools = self.tools
        index = get(tool_call, "index")
        call_id = get(tool_call, "id")
        if not isinstance(index, int):
            # No index (some servers): a new id starts a new call, else the last one goes on.
            last = max(tools) if tools else None
            if last is None or (call_id and call_id != tools[last][0]):
                index = 0 if last is None else last + 1
            else:
                index = last
        state = tools.get(index)
        if state is None:
            state = tools[index] = [None, None, None, [], None]
        if call_id and state[0] is None:
            state[0] = call_id
        kind = get(tool_call, "type")
        if kind and state[1] is None:
            state[1] = kind
        function = get(tool_call, "function")
        if function:
            function = _as_dict(function)
            # The name comes whole on a call's first delta; servers that repeat it on every
            # delta (llama.cpp's) must not get it concatenated.
            name = get(function, "name")
            if name and state[2] is None:
                state[2] = name
            arguments = get(function, "arguments")
            if arguments:
                state[3].append(arguments)
        fields = get(tool_call, "provider_specific_fields")
        if fields:
            state[4] = {**(state[4] or {}), **_as_dict(fields)}

    def message(self) -> tuple[Message, int]:
        """The rebuilt message, and how many characters of output it holds."""
        content = "".join(self.content)
        reasoning = "".join(self.reasoning)
        refusal = "".join(self.refusal)
        chars = len(content) + len(reasoning) + len(refusal)
        tool_calls = None
        if self.tools:
            tool_calls = []
            for index in sorted(self.tools):
                call_id, kind, name, parts, fields = self.tools[index]
                arguments = "".join(parts)
                chars += len(name or "") + len(arguments)
                call = ChatCompletionMessageToolCall(
                    id=call_id,
                    type=kind or "function",
                    function=Function(name=name, arguments=arguments),
                )
                if fields:
                    call["provider_specific_fields"] = _wrap(fields)
                tool_calls.append(call)
        function_call = None
        if self.function_call is not None:
            arguments = "".join(self.function_call[1])
            chars += len(self.function_call[0] or "") + len(arguments)
            function_call = Function(name=self.function_call[0], arguments=arguments)
        message = Message(
            content=content or None,
            role=self.role or "assistant",
            tool_calls=tool_calls,
            function_call=function_call,
        )
        if reasoning:
            message["reasoning_content"] = reasoning
        if self.signature is not None:
            message["thinking_blocks"] = [
                OpenAIObject(type="thinking", thinking=reasoning, signature=self.signature)
            ]
        if refusal:
            message["refusal"] = refusal
        return message, chars


def stream_chunk_builder(
    chunks: Iterable[Any], messages: Sequence[Mapping[str, Any]] | None = None
) -> ModelResponse:
    """The complete response that a list of ``chat.completion.chunk`` objects makes.

    Takes spout's chunks or OpenAI-format chunks from anywhere (dicts, or objects with
    ``model_dump``). Text, reasoning and refusal are joined; tool calls are gathered per
    ``index`` with their arguments concatenated (a name sent again is not); the last finish
    reason holds; usage is the last one a chunk carried, else counted (the prompt from
    ``messages``, estimated as in :func:`spout._context.estimate_tokens`; the output at four
    characters a token). Time is linear in the number of chunks.

    Example::

        chunks = list(completion(model="local/smollm2", messages=messages, stream=True))
        response = stream_chunk_builder(chunks, messages=messages)
        print(response.choices[0].message.content, response.usage.total_tokens)
    """
    get = _dict_get
    first: dict[str, Any] | None = None
    fingerprint = None
    usage: Any = None
    choices: dict[int, _ChoiceParts] = {}
    for chunk in chunks:
        if not isinstance(chunk, dict):
            chunk = _as_dict(chunk)
        if first is None:
            first = chunk
        if get(chunk, "usage"):
            usage = chunk["usage"]
        if get(chunk, "system_fingerprint"):
            fingerprint = chunk["system_fingerprint"]
        for choice in get(chunk, "choices") or ():
            if not isinstance(choice, dict):
                choice = _as_dict(choice)
            index = get(choice, "index") or 0
            parts = choices.get(index)
            if parts is None:
                parts = choices[index] = _ChoiceParts()
            delta = get(choice, "delta")
            if delta:
                parts.add(delta if isinstance(delta, dict) else _as_dict(delta))
            finish = get(choice, "finish_reason")
            if finish:
                parts.finish_reason = finish
    if first is None:
        raise ValueError("stream_chunk_builder needs at least one chunk")
    built: list[Choices] = []
    chars = 0
    for index in sorted(choices) or [0]:
        parts = choices.get(index) or _ChoiceParts()
        message, counted = parts.message()
        chars += counted
        built.append(Choices(finish_reason=parts.finish_reason, index=index, message=message))
    if usage:
        usage_block = _wrap(_as_dict(usage), Usage)
        if get(usage_block, "total_tokens") is None:
            usage_block["total_tokens"] = (get(usage_block, "prompt_tokens") or 0) + (
                get(usage_block, "completion_tokens") or 0
            )
    else:
        usage_block = usage_object(None, messages, chars)
    return ModelResponse(
        id=get(first, "id"),
        created=get(first, "created"),
        model=get(first, "model"),
        object="chat.completion",
        system_fingerprint=fingerprint,
        choices=built,
        usage=usage_block,
    )


def _model_response(
    response: Response, model: str, messages: Sequence[Mapping[str, Any]] | None
) -> ModelResponse:
    """A spout :class:`Response` as a ``chat.completion``, shaped as the builder shapes one."""
    chars = len(response.text) + len(response.reasoning) + len(response.refusal or "")
    tool_calls = None
    if response.tool_calls:
        tool_calls = []
        for call in response.tool_calls:
            arguments = arguments_text(call)
            chars += len(call.name) + len(arguments)
            item = ChatCompletionMessageToolCall(
                id=call.id, type="function", function=Function(name=call.name, arguments=arguments)
            )
            if call.signature is not None:
                item["provider_specific_fields"] = OpenAIObject(thought_signature=call.signature)
            tool_calls.append(item)
    message = Message(
        content=response.text or None, role="assistant", tool_calls=tool_calls, function_call=None
    )
    if response.reasoning:
        message["reasoning_content"] = response.reasoning
    if response.reasoning_signature is not None:
        message["thinking_blocks"] = [
            OpenAIObject(
                type="thinking", thinking=response.reasoning, signature=response.reasoning_signature
            )
        ]
    if response.refusal is not None:
        message["refusal"] = response.refusal  # as stream_chunk_builder keeps it
    finish = response.finish_reason
    reason = finish_reason(
        ev.Finish(finish or "stop", response.raw_finish_reason),
        refused=response.refusal is not None,
        tool_calls=bool(response.tool_calls),
    )
    return ModelResponse(
        id=response.id or _new_id(),
        created=int(time.time()),
        model=response.model or model,
        object="chat.completion",
        system_fingerprint=None,
        choices=[Choices(finish_reason=reason, index=0, message=message)],
        usage=usage_object(response.usage, messages, chars),
    )
