"""``mock_response``: answers and errors made up with no network, shaped as real ones."""

from __future__ import annotations

import re

import orjson

from .. import _errors as errors
from .. import _events as ev
from .._context import estimate_tokens
from .._response import Accumulator
from ._builder import _model_response
from ._objects import ModelResponse, ModelResponseStream, _mapping, _wrap
from ._request import _Request
from .chunks import ChunkEncoder, _estimated_completion, _new_id, _sync_chunks

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
    from ..providers._base import tool_call_from_json

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
    maker = ChunkEncoder(request.shown_model, request.messages, request.include_usage)
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
