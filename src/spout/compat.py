"""litellm's completion(), acompletion() and stream_chunk_builder(), on spout's engine.

Code written against litellm switches by changing one import::

    from spout import completion, acompletion, stream_chunk_builder

    response = completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    print(response.choices[0].message.content)            # attribute access
    print(response["choices"][0]["message"]["content"])   # and item access

    chunks = []
    for chunk in completion(model="anthropic/claude-sonnet-4-5", messages=messages, stream=True):
        chunks.append(chunk)
        print(chunk.choices[0].delta.content or "", end="", flush=True)
    full = stream_chunk_builder(chunks, messages=messages)

Whatever the provider, streams come out as OpenAI ``chat.completion.chunk`` objects, built from
spout's typed events (one chunk per event, about two microseconds each) and non-streamed calls as
an OpenAI ``chat.completion``. Errors are spout's, and each is also the litellm-named class
exported here (``RateLimitError``, ``Timeout``...). What differs from litellm is listed in
docs/migrating-from-litellm.md.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from . import _errors as errors
from . import _events as ev
from ._context import estimate_tokens
from ._errors import ConfigurationError
from ._litellm_errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)
from ._llm import _PROVIDERS, LLM, _provider_class, create_llm, is_provider
from ._policy import Timeout as Limits
from ._response import Accumulator, Response

if TYPE_CHECKING:
    from ._stream import AsyncStream, Stream

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncCompletionStream",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletionDeltaToolCall",
    "ChatCompletionMessageToolCall",
    "Choices",
    "CompletionStream",
    "ContextWindowExceededError",
    "Delta",
    "Function",
    "InternalServerError",
    "Message",
    "ModelResponse",
    "ModelResponseStream",
    "NotFoundError",
    "OpenAIObject",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "StreamingChoices",
    "Timeout",
    "Usage",
    "acompletion",
    "completion",
    "stream_chunk_builder",
]

JSONDict = dict[str, Any]

_dict_get = dict.get
_object_getattribute = object.__getattribute__
_MISSING: Any = object()

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


# -- objects with attribute and item access ------------------------------------------------------


class OpenAIObject(dict[str, Any]):
    """A JSON object with attribute access: ``obj.choices[0].delta.content`` or
    ``obj["choices"][0]["delta"]["content"]``.

    A ``dict`` underneath, so building one costs what building a dict costs, ``json.dumps``
    takes it as it is, and it compares equal to the plain dict it holds. A missing key is an
    ``AttributeError`` to attribute access (so ``getattr(delta, "reasoning_content", None)``
    and ``hasattr(chunk, "usage")`` work as with litellm) and a ``KeyError`` to item access.

    Example::

        response = completion(model="local/smollm2", messages=[{"role": "user", "content": "Hi"}])
        response.choices[0].message.content == response["choices"][0]["message"]["content"]
        response.model_dump()  # plain dicts and lists, all the way down
    """

    __slots__ = ()

    # Keys first, then the class's own attributes (its methods): a key is found without an
    # exception raised and caught, at a fifth of what __getattr__ would cost, and a miss is
    # the AttributeError that hasattr() and getattr(obj, name, default) expect.
    def __getattribute__(self, name: str) -> Any:
        value = _dict_get(self, name, _MISSING)
        if value is _MISSING:
            return _object_getattribute(self, name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def model_dump(self, *, exclude_none: bool = False) -> JSONDict:
        """The object as plain ``dict``, ``list`` and JSON scalars (pydantic's name for it)."""
        dumped: JSONDict = _plain(self, exclude_none)
        return dumped

    def dict(self, *, exclude_none: bool = False) -> JSONDict:
        """The same as :meth:`model_dump` (pydantic v1's name, which litellm objects keep)."""
        return self.model_dump(exclude_none=exclude_none)

    def model_dump_json(self, *, indent: int | None = None, exclude_none: bool = False) -> str:
        """The object as JSON text."""
        if indent is None and not exclude_none:
            return orjson.dumps(self).decode()
        return json.dumps(self.model_dump(exclude_none=exclude_none), indent=indent)

    def json(self, *, indent: int | None = None, exclude_none: bool = False) -> str:
        """The same as :meth:`model_dump_json`."""
        return self.model_dump_json(indent=indent, exclude_none=exclude_none)

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.items())
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> Any:
        return (type(self), (dict(self),))


class ModelResponse(OpenAIObject):
    """A complete ``chat.completion``: what a non-streamed call and the chunk builder return."""

    __slots__ = ()


class ModelResponseStream(OpenAIObject):
    """One ``chat.completion.chunk`` of a stream."""

    __slots__ = ()


class Choices(OpenAIObject):
    """A choice of a complete response: ``index``, ``message``, ``finish_reason``."""

    __slots__ = ()


class StreamingChoices(OpenAIObject):
    """A choice of a chunk: ``index``, ``delta``, ``finish_reason``."""

    __slots__ = ()


class Message(OpenAIObject):
    """The assistant's message: ``content``, ``role``, ``tool_calls`` (and reasoning, if any)."""

    __slots__ = ()


class Delta(OpenAIObject):
    """What a chunk adds to the message: ``content``, ``role``, ``tool_calls``..."""

    __slots__ = ()


class Function(OpenAIObject):
    """A tool call's ``name`` and JSON ``arguments`` text."""

    __slots__ = ()


class ChatCompletionMessageToolCall(OpenAIObject):
    """A complete tool call: ``id``, ``type``, ``function``."""

    __slots__ = ()


class ChatCompletionDeltaToolCall(OpenAIObject):
    """A piece of a tool call in a chunk, keyed by ``index``."""

    __slots__ = ()


class Usage(OpenAIObject):
    """Token counts: ``prompt_tokens``, ``completion_tokens``, ``total_tokens``."""

    __slots__ = ()


def _plain(value: Any, exclude_none: bool) -> Any:
    if isinstance(value, dict):
        return {
            key: _plain(item, exclude_none)
            for key, item in value.items()
            if not (exclude_none and item is None)
        }
    if isinstance(value, (list, tuple)):
        return [_plain(item, exclude_none) for item in value]
    return value


def _wrap(value: Any, cls: type[OpenAIObject] = OpenAIObject) -> Any:
    """Plain JSON (or an object with ``model_dump``) as :class:`OpenAIObject` all the way down."""
    if not isinstance(value, Mapping) and hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, Mapping):
        return cls({key: _wrap(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return [_wrap(item) for item in value]
    return value


# -- events to chunks ------------------------------------------------------------------------------

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


# -- the stream objects ----------------------------------------------------------------------------


class CompletionStream:
    """What ``completion(..., stream=True)`` returns: iterate it for :class:`ModelResponseStream`
    chunks (litellm's ``CustomStreamWrapper``).

    A ``for`` loop that stops early closes the connection, as do :meth:`close` and leaving a
    ``with`` block. An error after the stream began (a dropped connection, an error event)
    raises from the loop, never ends it quietly.

    Example::

        for chunk in completion(model="local/smollm2", messages=messages, stream=True):
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    """

    __slots__ = ("__weakref__", "_chunks", "_close", "model")

    def __init__(
        self, chunks: Iterator[ModelResponseStream], close: Callable[[], None], model: str
    ) -> None:
        self._chunks = chunks
        self._close = close
        #: the model as asked for
        self.model = model

    def __iter__(self) -> Iterator[ModelResponseStream]:
        return self._iterate()

    def _iterate(self) -> Generator[ModelResponseStream, None, None]:
        done = False
        try:
            yield from self._chunks
            done = True
        finally:
            if not done:
                self.close()

    def __next__(self) -> ModelResponseStream:
        return next(self._chunks)

    def close(self) -> None:
        """Stop the stream and release its connection now."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._close()

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<spout.compat.CompletionStream model={self.model!r}>"


class AsyncCompletionStream:
    """What ``await acompletion(..., stream=True)`` returns: ``async for`` gives the chunks.

    The request was sent before the await returned. A loop that stops early, :meth:`aclose`,
    leaving an ``async with`` block or cancelling the reading task closes the connection.

    Example::

        async for chunk in await acompletion(model="local/smollm2", messages=m, stream=True):
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    """

    __slots__ = ("__weakref__", "_aclose", "_chunks", "model")

    def __init__(
        self,
        chunks: AsyncGenerator[ModelResponseStream, None],
        aclose: Callable[[], Any],
        model: str,
    ) -> None:
        self._chunks = chunks
        self._aclose = aclose
        #: the model as asked for
        self.model = model

    def __aiter__(self) -> AsyncIterator[ModelResponseStream]:
        return self._iterate()

    async def _iterate(self) -> AsyncGenerator[ModelResponseStream, None]:
        done = False
        try:
            async for chunk in self._chunks:
                yield chunk
            done = True
        finally:
            if not done:
                await self.aclose()

    async def __anext__(self) -> ModelResponseStream:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and release its connection now."""
        await self._chunks.aclose()
        await self._aclose()

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<spout.compat.AsyncCompletionStream model={self.model!r}>"


# -- stream_chunk_builder -------------------------------------------------------------------------


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


def _mapping(value: Any) -> Mapping[str, Any]:
    """A chunk or a part of one as a mapping: mappings as they are, pydantic objects dumped."""
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        dumped: Mapping[str, Any] = dump()
        return dumped
    raise TypeError(f"not a chat.completion.chunk: {value!r:.80}")


def _as_dict(value: Any) -> dict[str, Any]:
    """A chunk or a part of one as a dict, read with ``dict.get`` (no attribute hook)."""
    return value if isinstance(value, dict) else dict(_mapping(value))


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
        usage_object = _wrap(_as_dict(usage), Usage)
        if get(usage_object, "total_tokens") is None:
            usage_object["total_tokens"] = (get(usage_object, "prompt_tokens") or 0) + (
                get(usage_object, "completion_tokens") or 0
            )
    else:
        usage_object = _usage_object(None, messages, chars)
    return ModelResponse(
        id=get(first, "id"),
        created=get(first, "created"),
        model=get(first, "model"),
        object="chat.completion",
        system_fingerprint=fingerprint,
        choices=built,
        usage=usage_object,
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
            arguments = _arguments_text(call)
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
    reason = (
        _finish_reason(ev.Finish(finish, response.raw_finish_reason), response.refusal is not None)
        if finish
        else "stop"
    )
    return ModelResponse(
        id=response.id or _new_id(),
        created=int(time.time()),
        model=response.model or model,
        object="chat.completion",
        system_fingerprint=None,
        choices=[Choices(finish_reason=reason, index=0, message=message)],
        usage=_usage_object(response.usage, messages, chars),
    )


# -- what a call asks for ----------------------------------------------------------------------------

# litellm's provider prefixes that spout knows under another name.
_ALIASES = {
    "together_ai": "together",
    "hosted_vllm": "vllm",
    "lm_studio": "lmstudio",
    "ollama_chat": "ollama",
    "llamafile": "llamacpp",
    "openai_like": "openai",
    "text-completion-openai": "openai",
}

# A bare model name (no prefix) of these families names its provider, as in litellm.
_FAMILIES = (
    (("gpt-", "o1", "o3", "o4", "chatgpt-", "ft:gpt-"), "openai"),
    (("claude-",), "anthropic"),
    (("gemini-",), "gemini"),
)

# Providers that run the model in process, with no endpoint or key.
_IN_PROCESS = frozenset(("local", "transformers"))

# litellm's own settings (logging, caching, its proxy): never sent to a provider.
_LITELLM_ONLY = frozenset(
    (
        "drop_params",
        "caching",
        "cache",
        "logger_fn",
        "metadata",
        "litellm_metadata",
        "litellm_call_id",
        "litellm_logging_obj",
        "proxy_server_request",
        "model_info",
        "preset_cache_key",
        "no-log",
        "input_cost_per_token",
        "output_cost_per_token",
        "mock_timeout",
        "api_version",
    )
)

# The mock_response strings litellm turns into its errors, for testing error handling.
_MOCK_ERRORS: dict[str, tuple[type[errors.ProviderError], str, int]] = {
    "litellm.RateLimitError": (errors.RateLimitError, "this is a mock rate limit error", 429),
    "litellm.ContextWindowExceededError": (
        errors.ContextWindowExceededError,
        "this is a mock context window exceeded error",
        400,
    ),
    "litellm.InternalServerError": (
        errors.InternalServerError,
        "this is a mock internal server error",
        500,
    ),
}


def _route(model: str, custom_llm_provider: str | None) -> tuple[str, str | None]:
    """The spout provider and model a litellm model string names."""
    if not isinstance(model, str) or not model:
        raise TypeError(
            f"model must be a non-empty str such as 'openai/gpt-4o-mini', not {model!r}"
        )
    if custom_llm_provider:
        name = _ALIASES.get(custom_llm_provider, custom_llm_provider)
        prefix = f"{custom_llm_provider}/"
        return name, model[len(prefix) :] if model.startswith(prefix) else model
    head, slash, rest = model.partition("/")
    name = _ALIASES.get(head, head)
    if slash and is_provider(name):
        return name, rest or None
    if not slash and is_provider(name):
        return name, None  # "local": the provider's default model
    for prefixes, provider in _FAMILIES:
        if model.startswith(prefixes):
            return provider, model
    known = ", ".join(sorted({*_PROVIDERS, *_ALIASES}))
    raise ConfigurationError(
        f"cannot tell the provider of model {model!r}: prefix it with one, as in "
        f"'openai/{model}' (known prefixes: {known})"
    )


def _limits(timeout: Any) -> Limits | None:
    """litellm's ``timeout`` as spout's limits.

    A number is what httpx (and so litellm) makes of it: the limit on connecting and on each
    wait for data, so a long stream that keeps arriving is not cut by it.
    """
    if timeout is None or isinstance(timeout, Limits):
        return timeout
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return Limits(connect=timeout, first_token=timeout, idle=timeout)
    read = getattr(timeout, "read", None)  # an httpx.Timeout
    if read is not None or getattr(timeout, "connect", None) is not None:
        return Limits(connect=getattr(timeout, "connect", None), first_token=read, idle=read)
    raise TypeError(f"timeout must be a number of seconds or a spout.Timeout, not {timeout!r}")


def _spout_messages(messages: Any) -> list[dict[str, Any]]:
    """litellm-style messages as spout sends them.

    Most pass as they are. An assistant message taken from a response carries litellm's
    names for what spout's adapters read under their own: ``reasoning_content`` and
    ``thinking_blocks`` become ``reasoning`` and ``reasoning_signature``, a tool call's
    ``provider_specific_fields.thought_signature`` its ``signature``; empty fields go.
    """
    if messages is None:
        return []
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of dicts, not {type(messages).__name__}")
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, Mapping):
            message = _mapping(message)
        if message.get("role") != "assistant":
            out.append(message if isinstance(message, dict) else dict(message))
            continue
        converted: dict[str, Any] = {
            key: value
            for key, value in message.items()
            if value is not None and key not in ("reasoning_content", "thinking_blocks")
        }
        converted.setdefault("content", None)
        reasoning = message.get("reasoning_content")
        blocks = message.get("thinking_blocks") or ()
        if reasoning is None and blocks:
            reasoning = "".join(b.get("thinking") or "" for b in blocks if isinstance(b, Mapping))
        if reasoning and "reasoning" not in converted:
            converted["reasoning"] = reasoning
        signatures = [
            b["signature"] for b in blocks if isinstance(b, Mapping) and b.get("signature")
        ]
        if signatures and "reasoning_signature" not in converted:
            converted["reasoning_signature"] = signatures[-1]
        if converted.get("tool_calls"):
            calls = []
            for call in converted["tool_calls"]:
                call = {k: v for k, v in _mapping(call).items() if v is not None}
                fields = call.pop("provider_specific_fields", None)
                if isinstance(fields, Mapping) and fields.get("thought_signature"):
                    call.setdefault("signature", fields["thought_signature"])
                calls.append(call)
            converted["tool_calls"] = calls
            if converted["content"] is None:
                # Chat completions allows null beside tool calls, but llama.cpp's server does not.
                converted["content"] = ""
        out.append(converted)
    return out


class _Request:
    """One call's settings, sorted: where to connect, what to send, how to answer."""

    __slots__ = (
        "config",
        "include_usage",
        "messages",
        "mock",
        "mock_delay",
        "mock_tool_calls",
        "model",
        "params",
        "provider",
        "shown_model",
    )

    def __init__(self, model: str, messages: Any, settings: dict[str, Any]) -> None:
        given = {key: value for key, value in settings.items() if value is not None}
        self.shown_model = model
        self.messages = _spout_messages(messages)
        self.mock = given.pop("mock_response", None)
        self.mock_tool_calls = given.pop("mock_tool_calls", None)
        self.mock_delay = given.pop("mock_delay", None)
        stream_options = given.pop("stream_options", None) or {}
        self.include_usage = bool(_mapping(stream_options).get("include_usage"))
        given.pop("stream", None)
        for key in _LITELLM_ONLY:
            given.pop(key, None)
        n = given.pop("n", None)
        if n not in (None, 1):
            raise ConfigurationError(
                f"n={n!r}: spout returns one choice per call; make {n} calls instead"
            )
        # Where to connect: part of which LLM serves the call.
        config: dict[str, Any] = {}
        api_key = given.pop("api_key", None)
        base_url: str | None = given.pop("api_base", None) or given.pop("base_url", None)
        given.pop("base_url", None)
        headers = given.pop("extra_headers", None) or given.pop("headers", None)
        given.pop("headers", None)
        custom = given.pop("custom_llm_provider", None)
        # How the call behaves when it fails or stalls.
        limits = _limits(given.pop("timeout", None) or given.pop("request_timeout", None))
        given.pop("request_timeout", None)
        retries = given.pop("num_retries", None)
        if retries is None:
            retries = given.pop("max_retries", None)
        given.pop("max_retries", None)
        self.provider: str = "mock"
        self.model: str | None = model
        if self.mock is None:
            self.provider, self.model = _route(model, custom)
            if self.provider == "openai" and self.model and self.model.startswith("responses/"):
                # litellm's "openai/responses/<model>": OpenAI's Responses API.
                self.model = self.model.removeprefix("responses/")
                config["api"] = "responses"
            if self.provider in _IN_PROCESS:
                # A model run in process has no endpoint: litellm ignores such settings too.
                api_key = base_url = headers = None
            if api_key is not None:
                config["api_key"] = api_key
            if base_url is not None:
                if self.provider == "anthropic":
                    # litellm takes Anthropic's endpoint whole; spout its base, as the SDK does.
                    base_url = base_url.rstrip("/").removesuffix("/v1/messages")
                config["base_url"] = base_url
            if headers:
                config["headers"] = dict(headers)
        self.config = config
        if limits is not None:
            given["timeout"] = limits
        if retries is not None:
            given["max_retries"] = retries
        choice = given.get("tool_choice")
        if isinstance(choice, Mapping) and choice.get("type") == "function":
            # OpenAI's way to name a tool; spout names it by its name, for every provider.
            name = (_mapping(choice.get("function") or {})).get("name")
            if name:
                given["tool_choice"] = name
        self.params = given

    def cache_key(self) -> tuple[Any, ...]:
        """What tells one LLM from another: provider, model, endpoint, key, headers, and the
        environment variables the provider reads them from."""
        cls = _provider_class(self.provider)
        names = (*getattr(cls, "base_url_env", ()), *getattr(cls, "api_key_env", ()))
        if self.provider == "ollama":
            names = ("OLLAMA_HOST",)
        env = tuple(os.environ.get(name) for name in names)
        config = tuple(
            sorted(
                (key, tuple(sorted(value.items())) if isinstance(value, dict) else value)
                for key, value in self.config.items()
            )
        )
        return (self.provider, self.model, config, env)

    def make_llm(self) -> LLM:
        return create_llm(self.provider, model=self.model, **self.config)

    def call_params(self, llm: LLM) -> dict[str, Any]:
        """The call's settings in spout's terms, where litellm's differ."""
        from .providers.openai import OpenAIProvider

        params = dict(self.params)
        if "max_completion_tokens" in params and not isinstance(llm.provider, OpenAIProvider):
            # OpenAI's newer name (its reasoning models take no other): kept for OpenAI-
            # compatible servers, spout's max_tokens for every other provider.
            params.setdefault("max_tokens", params.pop("max_completion_tokens"))
        response_format = params.get("response_format")
        if isinstance(response_format, Mapping):
            # spout sends response_format in each provider's own terms (docs/structured-output.md);
            # OpenAI's default, plain text, is no format at all.
            if response_format.get("type") == "text":
                del params["response_format"]
            else:
                params["response_format"] = _plain(response_format, False)
        return params


# -- the LLMs that serve calls ------------------------------------------------------------------------

_MAX_LLMS = 64

# Sync calls share one LLM per endpoint, key and model, so connections are pooled across calls.
# An LLM dropped from the cache is not closed here: a stream may still read from it, and it
# closes its connections when the last stream lets it go.
_sync_llms: OrderedDict[tuple[Any, ...], LLM] = OrderedDict()
_sync_lock = threading.Lock()


def _sync_llm(request: _Request) -> LLM:
    key = request.cache_key()
    with _sync_lock:
        llm = _sync_llms.get(key)
        if llm is not None:
            _sync_llms.move_to_end(key)
            return llm
    llm = request.make_llm()
    with _sync_lock:
        if not _sync_llms:
            # Closed while the interpreter is whole: at its teardown, sockets can no longer be.
            atexit.register(_close_sync_llms)
        llm = _sync_llms.setdefault(key, llm)
        while len(_sync_llms) > _MAX_LLMS:
            _sync_llms.popitem(last=False)
    return llm


def _close_sync_llms() -> None:
    """Close the LLMs sync calls share (at exit; tests call it between tests)."""
    with _sync_lock:
        llms = list(_sync_llms.values())
        _sync_llms.clear()
        atexit.unregister(_close_sync_llms)
    for llm in llms:
        with contextlib.suppress(Exception):
            llm.close()


class _LoopLLMs:
    """The LLMs async calls use on one event loop: connections belong to the loop that opened
    them. They are closed when the loop shuts down (see :func:`_close_at_loop_end`)."""

    __slots__ = ("closed", "keeper", "llms", "retired")

    def __init__(self) -> None:
        self.llms: OrderedDict[tuple[Any, ...], LLM] = OrderedDict()
        self.retired: list[LLM] = []
        self.keeper: AsyncGenerator[None, None] | None = None
        self.closed = False


_loop_llms: weakref.WeakKeyDictionary[Any, _LoopLLMs] = weakref.WeakKeyDictionary()
_loop_lock = threading.Lock()


async def _close_at_loop_end(loop: Any, cache: _LoopLLMs) -> AsyncGenerator[None, None]:
    """Suspended for the loop's life; resumed by its ``shutdown_asyncgens()``.

    ``asyncio.run``, ``asyncio.Runner`` and pytest-asyncio call ``shutdown_asyncgens()`` before
    they close a loop: that is the last moment the loop's connections can be closed on it, and
    an async generator it knows of is the only thing it calls then.
    """
    try:
        yield
    finally:
        cache.closed = True
        cache.keeper = None
        with _loop_lock:
            if _loop_llms.get(loop) is cache:
                del _loop_llms[loop]
        for llm in [*cache.llms.values(), *cache.retired]:
            with contextlib.suppress(Exception):
                await llm.aclose()
        cache.llms.clear()
        cache.retired.clear()


async def _async_llm(request: _Request) -> LLM:
    import asyncio

    loop = asyncio.get_running_loop()
    with _loop_lock:
        cache = _loop_llms.get(loop)
        fresh = cache is None or cache.closed
        if fresh:
            cache = _loop_llms[loop] = _LoopLLMs()
    assert cache is not None
    if fresh:
        keeper = _close_at_loop_end(loop, cache)
        await keeper.asend(None)  # now the loop knows of it (its first-iteration hook ran)
        cache.keeper = keeper
    key = request.cache_key()
    llm = cache.llms.get(key)
    if llm is not None:
        cache.llms.move_to_end(key)
        return llm
    llm = cache.llms[key] = request.make_llm()
    while len(cache.llms) > _MAX_LLMS:
        # Not closed now (a stream may still read from it): at the loop's end.
        cache.retired.append(cache.llms.popitem(last=False)[1])
    return llm


# -- mock_response ------------------------------------------------------------------------------------

# Token-sized pieces: a word's first four characters with the space before it, then the rest.
_PIECE = re.compile(r"\s*\S{1,4}|\s+")


def _raise_mock_error(request: _Request) -> None:
    mock = request.mock
    if isinstance(mock, BaseException) or (
        isinstance(mock, type) and issubclass(mock, BaseException)
    ):
        raise mock
    if isinstance(mock, str) and mock in _MOCK_ERRORS:
        cls, message, status = _MOCK_ERRORS[mock]
        raise cls(message, provider="mock", model=request.shown_model, status_code=status)


def _mock_events(request: _Request) -> list[ev.Event]:
    """The events of a mocked answer: its text in token-sized pieces, its tool calls, usage."""
    mock = request.mock
    tool_calls = list(request.mock_tool_calls or ())
    if isinstance(mock, str):
        text = mock
    else:
        message = _mapping(_mapping(mock)["choices"][0]).get("message") or {}
        message = _mapping(message)
        text = message.get("content") or ""
        tool_calls += list(message.get("tool_calls") or ())
    from .providers._base import tool_call_from_json

    events: list[ev.Event] = [ev.ResponseStart(_new_id(), request.shown_model)]
    chars = 0
    for piece in _PIECE.findall(text):
        events.append(ev.TextDelta(piece))
        chars += len(piece)
    for index, call in enumerate(tool_calls):
        call = _mapping(call)
        function = _mapping(call.get("function") or {})
        call_id = call.get("id") or f"call_{index}"
        name = function.get("name") or ""
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        events.append(ev.ToolCallStart(index, call_id, name))
        events += [
            ev.ToolCallDelta(index, arguments[i : i + 8]) for i in range(0, len(arguments), 8)
        ]
        events.append(ev.ToolCallEnd(index, tool_call_from_json(call_id, name, arguments)))
        chars += len(name) + len(arguments)
    prompt = estimate_tokens(request.messages) if request.messages else 0
    events.append(ev.Usage(prompt, _estimated_completion(chars)))
    events.append(ev.Finish("tool_calls" if tool_calls else "stop"))
    return events


def _mock_response(request: _Request) -> ModelResponse:
    mock = request.mock
    if not isinstance(mock, str) and request.mock_tool_calls is None:
        return _wrap(_mapping(mock), ModelResponse)  # type: ignore[no-any-return]
    accumulator = Accumulator(model=request.shown_model, provider="mock")
    for event in _mock_events(request):
        accumulator.add(event)
    return _model_response(accumulator.response(), request.shown_model, request.messages)


def _mock_chunks(request: _Request) -> list[ModelResponseStream]:
    """A mocked answer's chunks, made as a real stream's are. The finish goes on the last text
    chunk, as some providers send it, so every chunk of a mocked text has text."""
    maker = _ChunkMaker(request.shown_model, request.messages, request.include_usage)
    chunks = list(_sync_chunks(_mock_events(request), maker))
    end = 1 if request.include_usage else 0
    finish = chunks[-1 - end]
    before = chunks[-2 - end] if len(chunks) > 1 + end else None
    if before is not None and before["choices"][0]["delta"]["content"]:
        before["choices"][0]["finish_reason"] = finish["choices"][0]["finish_reason"]
        if "usage" in finish:
            before["usage"] = finish["usage"]
        chunks.remove(finish)
    return chunks


# -- completion and acompletion -----------------------------------------------------------------------


def completion(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    stream: bool | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    max_completion_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    tools: Sequence[Any] | None = None,
    tool_choice: Any = None,
    response_format: Any = None,
    stream_options: Mapping[str, Any] | None = None,
    api_key: str | None = None,
    api_base: str | None = None,
    base_url: str | None = None,
    timeout: Any = None,
    num_retries: int | None = None,
    mock_response: Any = None,
    **kwargs: Any,
) -> ModelResponse | CompletionStream:
    """litellm's ``completion()``: a ``chat.completion``, or with ``stream=True`` its chunks.

    ``model`` names the provider by its prefix, as litellm does (``"openai/gpt-4o-mini"``,
    ``"anthropic/claude-sonnet-4-5"``, ``"gemini/gemini-2.5-flash"``, ``"ollama/llama3"``,
    ``"local/smollm2"`` for the bundled model...; a bare ``gpt-``, ``claude-`` or ``gemini-``
    name needs none). ``api_base`` (or ``base_url``) and ``api_key`` say where and as whom;
    ``timeout`` (seconds, or a :class:`spout.Timeout`) and ``num_retries`` how long to wait
    and how often to retry before the first token. Any other keyword goes to the provider's
    request as it is. ``mock_response="text"`` streams that text with no network;
    ``mock_response=SomeError(...)`` raises it.

    Example::

        response = completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
        print(response.choices[0].message.content, response.usage.total_tokens)

        for chunk in completion(model="ollama/llama3", messages=messages, stream=True):
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    """
    request = _Request(
        model,
        messages,
        {
            **kwargs,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "max_completion_tokens": max_completion_tokens,
            "stop": stop,
            "seed": seed,
            "tools": tools,
            "tool_choice": tool_choice,
            "response_format": response_format,
            "stream_options": stream_options,
            "api_key": api_key,
            "api_base": api_base,
            "base_url": base_url,
            "timeout": timeout,
            "num_retries": num_retries,
            "mock_response": mock_response,
        },
    )
    if request.mock is not None:
        _raise_mock_error(request)
        if request.mock_delay:
            time.sleep(request.mock_delay)
        if stream:
            return CompletionStream(iter(_mock_chunks(request)), _nothing, model)
        return _mock_response(request)
    llm = _sync_llm(request)
    params = request.call_params(llm)
    if stream:
        spout_stream: Stream = llm.generate_stream(messages=request.messages, **params)
        maker = _ChunkMaker(request.model or model, request.messages, request.include_usage)
        return CompletionStream(
            _sync_chunks(spout_stream.events(), maker), spout_stream.close, model
        )
    response = llm.generate(messages=request.messages, **params)
    return _model_response(response, request.model or model, request.messages)


async def acompletion(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    stream: bool | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    max_completion_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    tools: Sequence[Any] | None = None,
    tool_choice: Any = None,
    response_format: Any = None,
    stream_options: Mapping[str, Any] | None = None,
    api_key: str | None = None,
    api_base: str | None = None,
    base_url: str | None = None,
    timeout: Any = None,
    num_retries: int | None = None,
    mock_response: Any = None,
    **kwargs: Any,
) -> ModelResponse | AsyncCompletionStream:
    """litellm's ``acompletion()``: :func:`completion` without blocking the event loop.

    With ``stream=True`` the request is sent before the await returns (connection and HTTP
    errors raise there); ``async for`` over the result gives the chunks. Connections are
    pooled per event loop and closed when the loop shuts down (``asyncio.run`` does that).

    Example::

        response = await acompletion(model="anthropic/claude-sonnet-4-5", messages=messages)
        async for chunk in await acompletion(model="ollama/llama3", messages=messages, stream=True):
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    """
    request = _Request(
        model,
        messages,
        {
            **kwargs,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "max_completion_tokens": max_completion_tokens,
            "stop": stop,
            "seed": seed,
            "tools": tools,
            "tool_choice": tool_choice,
            "response_format": response_format,
            "stream_options": stream_options,
            "api_key": api_key,
            "api_base": api_base,
            "base_url": base_url,
            "timeout": timeout,
            "num_retries": num_retries,
            "mock_response": mock_response,
        },
    )
    if request.mock is not None:
        _raise_mock_error(request)
        if request.mock_delay:
            import asyncio

            await asyncio.sleep(request.mock_delay)
        if stream:
            return AsyncCompletionStream(_aiter(_mock_chunks(request)), _anothing, model)
        return _mock_response(request)
    llm = await _async_llm(request)
    params = request.call_params(llm)
    if stream:
        spout_stream: AsyncStream = await llm.generate_async(
            messages=request.messages, stream=True, **params
        )
        maker = _ChunkMaker(request.model or model, request.messages, request.include_usage)
        return AsyncCompletionStream(
            _async_chunks(spout_stream.events(), maker), spout_stream.aclose, model
        )
    response = await llm.generate_async(messages=request.messages, **params)
    return _model_response(response, request.model or model, request.messages)


def _nothing() -> None:
    pass


async def _anothing() -> None:
    pass


async def _aiter(chunks: list[ModelResponseStream]) -> AsyncGenerator[ModelResponseStream, None]:
    for chunk in chunks:
        yield chunk
