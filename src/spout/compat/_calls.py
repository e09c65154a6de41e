"""``completion()`` and ``acompletion()``: litellm's calls, served by spout."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from ._builder import _model_response
from ._llms import _async_llm, _sync_llm
from ._mock import _mock_chunks, _mock_response, _raise_mock_error
from ._objects import ModelResponse, ModelResponseStream
from ._request import _Request
from ._streams import AsyncCompletionStream, CompletionStream
from .chunks import ChunkEncoder, _async_chunks, _sync_chunks

if TYPE_CHECKING:
    from .._response import Response
    from .._stream import AsyncStream, Stream

# The overloads are the signature callers and type checkers see: `stream=True` gives the
# stream, `stream=False` or none the chat.completion, a `bool` known only at run time either.
# The implementations take the settings as one mapping, which _Request sorts.


@overload
def completion(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    stream: Literal[True],
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
) -> CompletionStream: ...


@overload
def completion(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    stream: Literal[False] | None = None,
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
) -> ModelResponse: ...


@overload
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
) -> ModelResponse | CompletionStream: ...


def completion(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    stream: bool | None = None,
    **settings: Any,
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
    request = _request(model, messages, settings)
    if request.mock is not None:
        if request.mock_delay:
            time.sleep(request.mock_delay)
        if stream:
            return CompletionStream(iter(_mock_chunks(request)), _nothing, model)
        return _mock_response(request)
    llm = _sync_llm(request)
    params = request.call_params(llm)
    if stream:
        spout_stream: Stream = llm.generate_stream(messages=request.messages, **params)
        chunks = _sync_chunks(spout_stream.events(), _encoder(request))
        return CompletionStream(chunks, spout_stream.close, model)
    return _answer(request, llm.generate(messages=request.messages, **params))


@overload
async def acompletion(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    stream: Literal[True],
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
) -> AsyncCompletionStream: ...


@overload
async def acompletion(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    stream: Literal[False] | None = None,
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
) -> ModelResponse: ...


@overload
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
) -> ModelResponse | AsyncCompletionStream: ...


async def acompletion(
    model: str,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    stream: bool | None = None,
    **settings: Any,
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
    request = _request(model, messages, settings)
    if request.mock is not None:
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
        chunks = _async_chunks(spout_stream.events(), _encoder(request))
        return AsyncCompletionStream(chunks, spout_stream.aclose, model)
    return _answer(request, await llm.generate_async(messages=request.messages, **params))


# What the two calls share, all but the I/O.


def _request(model: str, messages: Any, settings: dict[str, Any]) -> _Request:
    """The call's settings sorted; a mocked error raises here, before any wait."""
    request = _Request(model, messages, settings)
    if request.mock is not None:
        _raise_mock_error(request)
    return request


def _encoder(request: _Request) -> ChunkEncoder:
    return ChunkEncoder(
        request.model or request.shown_model, request.messages, request.include_usage
    )


def _answer(request: _Request, response: Response) -> ModelResponse:
    return _model_response(response, request.model or request.shown_model, request.messages)


def _nothing() -> None:
    pass


async def _anothing() -> None:
    pass


async def _aiter(chunks: list[ModelResponseStream]) -> AsyncGenerator[ModelResponseStream, None]:
    for chunk in chunks:
        yield chunk
