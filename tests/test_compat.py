"""spout.compat: litellm's completion(), acompletion() and stream_chunk_builder() on spout.

Against replayed provider transcripts over loopback HTTP, the bundled model in process and a
real llama_cpp.server; every streaming test runs sync and async.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
import pickle
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

import spout
from helpers import Runner
from replay_server import WIRE, ReplayServer, Reply, cut_mid_line, transcript
from scripted_turns import anthropic_thinking_call_turn, openai_call_turn, openai_chunk, openai_sse
from spout import compat
from spout.compat import acompletion, completion, stream_chunk_builder

MESSAGES = [{"role": "user", "content": "What is the weather in Oslo?"}]


@pytest.fixture(autouse=True)
def fresh_llms() -> Iterator[None]:
    # Sync calls share LLMs across calls (as litellm shares clients); each test starts afresh.
    yield
    compat._close_sync_llms()


def stream_chunks(runner: Runner, **kwargs: Any) -> list[Any]:
    """``completion(stream=True)`` read to its end, or ``acompletion``'s."""
    return runner.list(runner.call(completion, acompletion, stream=True, **kwargs))


def complete(runner: Runner, **kwargs: Any) -> Any:
    return runner.call(completion, acompletion, **kwargs)


def without_ids(response: Any) -> dict[str, Any]:
    """A response to compare with another request's: its id and creation time left out."""
    data: dict[str, Any] = response.model_dump()
    del data["id"], data["created"]
    return data


# -- the OpenAI schema ----------------------------------------------------------------------------

FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call"}
CHUNK_KEYS = {
    "id",
    "object",
    "created",
    "model",
    "choices",
    "system_fingerprint",
    "usage",
    "service_tier",
}
DELTA_KEYS = {
    "content",
    "role",
    "tool_calls",
    "function_call",
    "refusal",
    "reasoning_content",
    "thinking_blocks",
}


def check_usage(usage: Any) -> None:
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(usage[key], int) and usage[key] >= 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def check_chunk(chunk: Any) -> None:
    """One chunk against chat completions' ``chat.completion.chunk`` (API reference)."""
    assert type(chunk) is compat.ModelResponseStream
    data = chunk.model_dump()
    assert json.loads(json.dumps(data)) == data == chunk  # plain JSON underneath
    assert set(data) <= CHUNK_KEYS
    assert isinstance(data["id"], str) and data["id"]
    assert data["object"] == "chat.completion.chunk"
    assert isinstance(data["created"], int)
    assert isinstance(data["model"], str) and data["model"]
    assert data.get("system_fingerprint") is None or isinstance(data["system_fingerprint"], str)
    if data.get("usage") is not None:
        check_usage(data["usage"])
    assert isinstance(data["choices"], list)
    for choice in data["choices"]:
        assert set(choice) <= {"index", "delta", "finish_reason", "logprobs"}
        assert choice["index"] == 0
        assert choice["finish_reason"] is None or choice["finish_reason"] in FINISH_REASONS
        delta = choice["delta"]
        assert set(delta) <= DELTA_KEYS
        assert delta.get("content") is None or isinstance(delta["content"], str)
        assert delta.get("role") in (None, "assistant")
        assert delta.get("reasoning_content") is None or isinstance(delta["reasoning_content"], str)
        for call in delta.get("tool_calls") or ():
            assert set(call) <= {"index", "id", "type", "function", "provider_specific_fields"}
            assert isinstance(call["index"], int)
            assert call["id"] is None or isinstance(call["id"], str)
            assert call["type"] in (None, "function")
            assert call["function"]["name"] is None or isinstance(call["function"]["name"], str)
            assert isinstance(call["function"]["arguments"], str)
    with contextlib.suppress(ImportError):  # the OpenAI SDK's own types, where installed
        from openai.types.chat import ChatCompletionChunk

        ChatCompletionChunk.model_validate(data)


def check_stream(chunks: list[Any], *, include_usage: bool) -> None:
    """A whole stream: one id, the role first, one finish, the usage once at the end, and
    each tool call at its own index, numbered in order, its id and name on its first delta."""
    assert chunks
    for chunk in chunks:
        check_chunk(chunk)
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in with_choices[1:])
    finishes = [c.choices[0].finish_reason for c in with_choices]
    assert finishes[-1] is not None and finishes.count(None) == len(finishes) - 1
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.choices for c in chunks)
        assert [hasattr(c, "usage") for c in chunks].count(True) == 1 and chunks[-1].usage
    seen: dict[int, str] = {}
    for chunk in with_choices:
        for call in chunk.choices[0].delta.tool_calls or ():
            if call.index not in seen:
                assert call.index == len(seen), "tool calls are numbered 0, 1... as they start"
                assert call.id and call.function.name
                seen[call.index] = call.id
    assert len(set(seen.values())) == len(seen), "each call keeps its own index and id"


def check_completion(response: Any) -> None:
    """A whole response against chat completions' ``chat.completion``."""
    assert type(response) is compat.ModelResponse
    data = response.model_dump()
    assert json.loads(json.dumps(data)) == data
    assert data["object"] == "chat.completion" and isinstance(data["created"], int)
    for choice in data["choices"]:
        assert choice["finish_reason"] in FINISH_REASONS
        message = choice["message"]
        assert message["role"] == "assistant"
        assert message["content"] is None or isinstance(message["content"], str)
        for call in message["tool_calls"] or ():
            assert call["type"] == "function" and isinstance(call["id"], str)
            assert isinstance(call["function"]["arguments"], str)
    check_usage(data["usage"])
    with contextlib.suppress(ImportError):
        from openai.types.chat import ChatCompletion

        ChatCompletion.model_validate(data)


# -- objects -------------------------------------------------------------------------------------


def test_objects_have_attribute_and_item_access_and_dump_to_plain_json() -> None:
    response = completion(model="openai/gpt-4o-mini", messages=MESSAGES, mock_response="Sunny.")
    check_completion(response)
    assert response.choices[0].message.content == "Sunny."
    assert response["choices"][0]["message"]["content"] == "Sunny."
    assert response.choices[0]["message"].role == "assistant"
    assert response.usage.total_tokens == response["usage"]["total_tokens"] > 0
    message = response.choices[0].message
    assert getattr(message, "reasoning_content", None) is None and not hasattr(message, "x")
    with pytest.raises(AttributeError):
        _ = message.reasoning_content
    with pytest.raises(KeyError):
        _ = message["reasoning_content"]
    message.content = "Rainy."  # attribute writes are item writes
    assert message["content"] == "Rainy."
    for dumped in (response.model_dump(), response.dict()):
        assert type(dumped) is dict and type(dumped["choices"][0]["message"]) is dict
        assert type(dumped["choices"]) is list
        assert dumped == response
    assert json.loads(response.json()) == json.loads(response.model_dump_json(indent=2)) == response
    assert "function_call" not in response.model_dump(exclude_none=True)["choices"][0]["message"]
    for copied in (pickle.loads(pickle.dumps(response)), copy.deepcopy(response)):
        assert copied == response and type(copied) is compat.ModelResponse
        assert copied.choices[0].message.content == "Rainy."
    assert repr(response).startswith("ModelResponse(id=")


# -- the types a caller sees ---------------------------------------------------------------------
# mypy checks this file: these calls are written as users write them, with the result's type
# annotated where `stream=` decides it, so a return type that ignores `stream` fails there.


def test_the_result_is_typed_by_what_stream_says() -> None:
    call: dict[str, Any] = {"model": "m", "messages": MESSAGES, "mock_response": "Sunny."}
    text = ""
    for chunk in completion(model="m", messages=MESSAGES, stream=True, mock_response="Sunny."):
        text += chunk.choices[0].delta.content or ""
    stream: compat.CompletionStream = completion(**call, stream=True)
    stream.close()
    response: compat.ModelResponse = completion(
        model="m", messages=MESSAGES, mock_response="Sunny."
    )
    assert response.choices[0].message.content == text == "Sunny."
    assert completion(**call, stream=False).usage.total_tokens > 0
    streamed = bool(time.time())  # known only at run time: either kind
    either: compat.ModelResponse | compat.CompletionStream = completion(**call, stream=streamed)
    assert isinstance(either, compat.CompletionStream)

    async def both() -> tuple[str, Any]:
        text = ""
        async for chunk in await acompletion(
            model="m", messages=MESSAGES, stream=True, mock_response="Sunny."
        ):
            text += chunk.choices[0].delta.content or ""
        response = await acompletion(model="m", messages=MESSAGES, mock_response="Sunny.")
        return text, response.choices[0].message.content

    assert asyncio.run(both()) == ("Sunny.", "Sunny.")


def test_a_caught_litellm_error_has_what_litellm_users_read() -> None:
    with pytest.raises(compat.RateLimitError) as limited:
        completion(model="m", messages=MESSAGES, mock_response="litellm.RateLimitError")
    status: int | None = limited.value.status_code
    model: str | None = limited.value.model
    assert (limited.value.message, status, model, limited.value.llm_provider) == (
        "this is a mock rate limit error",
        429,
        "m",
        "mock",
    )
    with pytest.raises(compat.Timeout) as late:
        completion(model="m", messages=MESSAGES, mock_response=spout.IdleTimeout("quiet"))
    message: str = late.value.message
    assert message == "quiet" and late.value.llm_provider is None


# -- mock_response ---------------------------------------------------------------------------------


def test_mock_response_streams_in_token_sized_chunks(runner: Runner) -> None:
    text = "It's simple to use and easy to get started, with no network at all."
    chunks = stream_chunks(runner, model="gpt-3.5-turbo", messages=MESSAGES, mock_response=text)
    check_stream(chunks, include_usage=False)
    pieces = [c.choices[0].delta.content for c in chunks]
    assert "".join(pieces) == text
    # Realistic pieces: several per word at most four letters long, every one with text (the
    # finish rides on the last), so `+= chunk["choices"][0]["delta"]["content"]` works.
    assert len(pieces) >= len(text.split()) and all(pieces)
    assert all(len(piece.strip()) <= 4 for piece in pieces)
    built = stream_chunk_builder(chunks, messages=MESSAGES)
    direct = complete(runner, model="gpt-3.5-turbo", messages=MESSAGES, mock_response=text)
    check_completion(built)
    assert without_ids(built) == without_ids(direct)
    assert built.model == "gpt-3.5-turbo" and built.usage.completion_tokens > 0


def test_mock_tool_calls_and_usage_chunk(runner: Runner) -> None:
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_time", "arguments": {"zone": "Europe/Oslo"}},
        },
    ]
    chunks = stream_chunks(
        runner,
        model="m",
        messages=MESSAGES,
        mock_response="",
        mock_tool_calls=calls,
        stream_options={"include_usage": True},
    )
    check_stream(chunks, include_usage=True)
    message = stream_chunk_builder(chunks).choices[0].message
    assert message.content is None
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls
    ] == [
        ("call_a", "get_weather", {"city": "Oslo"}),
        ("call_b", "get_time", {"zone": "Europe/Oslo"}),
    ]
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


def test_mock_exceptions_raise(runner: Runner) -> None:
    with pytest.raises(ValueError, match="boom"):
        complete(runner, model="m", messages=MESSAGES, mock_response=ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        stream_chunks(runner, model="m", messages=MESSAGES, mock_response=ValueError("boom"))
    with pytest.raises(compat.RateLimitError) as caught:
        complete(runner, model="m", messages=MESSAGES, mock_response="litellm.RateLimitError")
    assert isinstance(caught.value, spout.RateLimitError) and caught.value.status_code == 429
    with pytest.raises(compat.ContextWindowExceededError) as exceeded:
        complete(
            runner, model="m", messages=MESSAGES, mock_response="litellm.ContextWindowExceededError"
        )
    assert isinstance(exceeded.value, compat.BadRequestError)


# -- litellm's documented examples, with only the import changed ----------------------------------

# From docs.litellm.ai/docs/completion/stream and /completion/mock_requests, as published. They
# use `chunks`, `complete_response` and `litellm` without defining or importing them; the test
# gives them, and `import spout as litellm` is the one change a user makes.
DOCUMENTED_STREAMING = """
from litellm import completion
messages = [{"role": "user", "content": "Hey, how's it going?"}]
response = completion(model="gpt-3.5-turbo", messages=messages, stream=True)
for part in response:
    print(part.choices[0].delta.content or "")
"""
DOCUMENTED_HELPER = """
from litellm import completion
messages = [{"role": "user", "content": "Hey, how's it going?"}]
response = completion(model="gpt-3.5-turbo", messages=messages, stream=True)

for chunk in response:
    chunks.append(chunk)

print(litellm.stream_chunk_builder(chunks, messages=messages))
"""
DOCUMENTED_ASYNC = """
from litellm import acompletion
import asyncio

async def test_get_response():
    user_message = "Hello, how are you?"
    messages = [{"content": user_message, "role": "user"}]
    response = await acompletion(model="gpt-3.5-turbo", messages=messages)
    return response

response = asyncio.run(test_get_response())
print(response)
"""
DOCUMENTED_ASYNC_STREAMING = """
from litellm import acompletion
import asyncio, os, traceback

async def completion_call():
    try:
        print("test acompletion + streaming")
        response = await acompletion(
            model="gpt-3.5-turbo",
            messages=[{"content": "Hello, how are you?", "role": "user"}],
            stream=True
        )
        print(f"response: {response}")
        async for chunk in response:
            print(chunk)
    except:
        print(f"error occurred: {traceback.format_exc()}")
        pass

asyncio.run(completion_call())
"""
DOCUMENTED_MOCK = """
from litellm import completion
model = "gpt-3.5-turbo"
messages = [{"role": "user", "content": "Hey, I'm a mock request"}]
response = completion(model=model, messages=messages, stream=True, mock_response="It's simple to use and easy to get started")
for chunk in response:
    print(chunk) # {'choices': [{'delta': {'role': 'assistant', 'content': 'Thi'}, 'finish_reason': None}]}
    complete_response += chunk["choices"][0]["delta"]["content"]
print(complete_response)
"""


def run_documented(
    snippet: str, model: str | None = None, max_tokens: int | None = None
) -> tuple[str, dict[str, Any]]:
    """Run a documented example as litellm's users have it, importing spout instead.

    ``model`` replaces the example's model; ``max_tokens`` bounds its calls, for a small
    model that may otherwise write until its context window is full.
    """
    code = snippet.replace("from litellm import", "from spout import")
    if model is not None:
        code = code.replace('"gpt-3.5-turbo"', repr(model))
    if max_tokens is not None:
        code = re.sub(r"stream=True\b", f"stream=True, max_tokens={max_tokens}", code)
    namespace: dict[str, Any] = {"litellm": spout, "chunks": [], "complete_response": ""}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<litellm docs>", "exec"), namespace)
    return out.getvalue(), namespace


def openai_json(content: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-doc",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-3.5-turbo",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {"prompt_tokens": 13, "completion_tokens": 4, "total_tokens": 17},
        }
    ).encode()


def test_documented_examples_run_against_replayed_transcripts(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "gpt-3.5-turbo" goes to OpenAI's API, found as litellm (and the OpenAI SDK) find it.
    monkeypatch.setenv("OPENAI_BASE_URL", f"{replay.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    body, expected = transcript("openai_chat", "text")
    replay.replies = [Reply(chunks=cut_mid_line(body))]
    out, _ = run_documented(DOCUMENTED_STREAMING)
    assert out.replace("\n", "") == expected["text"]
    out, namespace = run_documented(DOCUMENTED_HELPER)
    assert len(namespace["chunks"]) > 3
    assert out.startswith("ModelResponse(") and repr(expected["text"]) in out
    assert replay.requests[-1].json()["model"] == "gpt-3.5-turbo"

    replay.replies = [
        Reply(
            chunks=[openai_json("I am well, thanks.")], headers={"Content-Type": "application/json"}
        )
    ]
    out, namespace = run_documented(DOCUMENTED_ASYNC)
    assert namespace["response"].choices[0].message.content == "I am well, thanks."
    assert "I am well, thanks." in out

    replay.replies = [Reply(chunks=cut_mid_line(body))]
    out, _ = run_documented(DOCUMENTED_ASYNC_STREAMING)
    assert "error occurred" not in out
    assert out.count("ModelResponseStream(") >= 4 and "finish_reason='stop'" in out

    out, namespace = run_documented(DOCUMENTED_MOCK)
    assert namespace["complete_response"] == "It's simple to use and easy to get started"
    assert len(replay.requests) == 4  # the mocked call sent nothing


# The examples set no max_tokens; the small model is given one, or a rambling answer could run
# to the end of its context window (minutes on a CI machine).


@pytest.mark.model
def test_documented_examples_run_against_the_bundled_model() -> None:
    out, namespace = run_documented(DOCUMENTED_HELPER, model="local/smollm2", max_tokens=24)
    check_stream(namespace["chunks"], include_usage=False)
    built = spout.stream_chunk_builder(namespace["chunks"])
    assert built.choices[0].message.content and built.choices[0].finish_reason in ("stop", "length")
    assert out.startswith("ModelResponse(")
    out, _ = run_documented(DOCUMENTED_ASYNC_STREAMING, model="local/smollm2", max_tokens=24)
    assert "error occurred" not in out and "finish_reason=" in out


@pytest.mark.model
def test_documented_examples_run_against_llama_cpp_server(
    llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llama_server)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    out, namespace = run_documented(DOCUMENTED_HELPER, max_tokens=24)
    check_stream(namespace["chunks"], include_usage=False)
    built = spout.stream_chunk_builder(namespace["chunks"])
    assert built.choices[0].message.content and out.startswith("ModelResponse(")


# -- every provider's stream as OpenAI chunks ------------------------------------------------------

# Each transcript folder: the litellm model string that reaches it, and the path under the server.
ROUTES = {
    "openai_chat": ("openai/gpt-4o-mini", "/v1"),
    "openai_responses": ("openai/responses/gpt-4.1", "/v1"),
    "openrouter": ("openrouter/openai/gpt-4o-mini", "/api/v1"),
    "anthropic": ("anthropic/claude-sonnet-4-5", ""),
    "gemini": ("gemini/gemini-2.5-flash", ""),
    "ollama": ("ollama/llama3.2", ""),
    "tgi": ("huggingface/tgi", ""),
}
TRANSCRIPTS = sorted(
    (folder, path.name.removesuffix(".expected.json"))
    for folder in ROUTES
    for path in (WIRE / folder).glob("*.expected.json")
)


@pytest.mark.parametrize(("folder", "case"), TRANSCRIPTS, ids=[f"{f}/{c}" for f, c in TRANSCRIPTS])
def test_transcripts_stream_as_openai_chunks(
    replay: ReplayServer, runner: Runner, folder: str, case: str
) -> None:
    body, expected = transcript(folder, case)
    content_type = "application/x-ndjson" if folder == "ollama" else "text/event-stream"
    replay.replies = [Reply(chunks=cut_mid_line(body), headers={"Content-Type": content_type})]
    model, path = ROUTES[folder]
    settings: dict[str, Any] = {
        "model": model,
        "messages": MESSAGES,
        "api_base": replay.url + path,
        "api_key": "sk-test",
        "num_retries": 0,
        "stream_options": {"include_usage": True},
    }
    if expected["error"] is not None:
        # An error inside the stream raises from the loop: never a shorter, quiet success.
        received: list[Any] = []
        with pytest.raises(spout.ProviderError) as caught:
            chunks = runner.call(completion, acompletion, stream=True, **settings)
            runner.list(chunks, each=received.append)
        assert isinstance(caught.value, compat.APIError)
        assert all(chunk.choices[0].finish_reason is None for chunk in received)
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in received)
        assert caught.value.partial is not None and caught.value.partial.text == streamed
        return

    chunks = stream_chunks(runner, **settings)
    check_stream(chunks, include_usage=True)
    # Parallel calls, interleaved ones included, each at its own index.
    indexes = {
        call.index for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()
    }
    assert indexes == set(range(len(expected["tool_calls"])))
    built = stream_chunk_builder(chunks, messages=MESSAGES)
    check_completion(built)
    message = built.choices[0].message
    assert message.content == (expected["text"] or None)
    # A refusal stays apart from the content, as OpenAI's message.refusal.
    assert getattr(message, "refusal", None) == expected.get("refusal")
    refused = "".join(c.choices[0].delta.get("refusal") or "" for c in chunks if c.choices)
    assert refused == expected.get("refusal", "")
    assert [
        {"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments or "{}")}
        for c in message.tool_calls or ()
    ] == [
        {"id": c["id"], "name": c["name"], "arguments": c["arguments"]}
        for c in expected["tool_calls"]
    ]
    # Chat completions has no "refusal" finish: OpenAI ends a refusal with "stop"; nor an
    # "unrecognized" one (an answer of content spout does not know), a "stop" there too.
    unnamed = ("refusal", "unrecognized")
    finish = "stop" if expected["finish_reason"] in unnamed else expected["finish_reason"]
    assert built.choices[0].finish_reason == finish
    assert getattr(message, "reasoning_content", "") == expected.get("reasoning", "")
    if expected.get("reasoning_signature"):
        assert message.thinking_blocks[-1].signature == expected["reasoning_signature"]
    if expected["usage"] is not None:
        assert built.usage.prompt_tokens == expected["usage"]["input_tokens"]
        assert built.usage.completion_tokens == expected["usage"]["output_tokens"]
        assert litellm_details(chunks[-1].usage) == litellm_details(built.usage)
        assert litellm_details(built.usage) == expected_details(expected["usage"])
    else:  # the server sent none: counted, as litellm counts
        assert built.usage.prompt_tokens > 0 and built.usage.completion_tokens > 0


def litellm_details(usage: Any) -> dict[str, Any]:
    """The cache and reasoning counts of a chat completions usage, where litellm puts them."""
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return {
        "cached_tokens": prompt.get("cached_tokens"),
        "cache_creation_tokens": prompt.get("cache_creation_tokens"),
        "cache_read_input_tokens": usage.get("cache_read_input_tokens"),
        "cache_creation_input_tokens": usage.get("cache_creation_input_tokens"),
        "reasoning_tokens": completion.get("reasoning_tokens"),
    }


def expected_details(usage: dict[str, Any]) -> dict[str, Any]:
    """What :func:`litellm_details` gives for a transcript's expected usage: the cache reads
    as cached_tokens (0 where only writes are said), writes as cache_creation_tokens and, as
    litellm gives a provider that counts writes, the two at the top level too."""
    read, write = usage.get("cache_read_tokens"), usage.get("cache_write_tokens")
    cached = None if read is None and write is None else read or 0
    return {
        "cached_tokens": cached,
        "cache_creation_tokens": write,
        "cache_read_input_tokens": None if write is None else cached,
        "cache_creation_input_tokens": write,
        "reasoning_tokens": usage.get("reasoning_tokens"),
    }


@pytest.mark.parametrize("folder", ["anthropic", "openai_chat", "gemini"])
def test_cached_tokens_not_streamed_as_litellm_gives_them(
    replay: ReplayServer, runner: Runner, folder: str
) -> None:
    # The prompt_cache transcripts' answers, whole, as each API answers a call not streamed.
    body, expected = transcript(folder, "prompt_cache")
    lines = body.decode().splitlines()
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    text = expected["text"]
    whole: dict[str, Any]
    if folder == "anthropic":
        whole = {
            **events[0]["message"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": expected["usage_raw"],
        }
    elif folder == "openai_chat":
        message = {"role": "assistant", "content": text, "refusal": None}
        whole = {
            **events[-1],
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
    else:
        part = {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}
        whole = {**events[-1], "candidates": [part]}
    replay.replies = [
        Reply(chunks=[json.dumps(whole).encode()], headers={"Content-Type": "application/json"})
    ]
    model, path = ROUTES[folder]
    settings = {"model": model, "messages": MESSAGES, "api_base": replay.url + path}
    response = runner.call(completion, acompletion, stream=False, api_key="sk-test", **settings)
    assert response.usage.prompt_tokens == expected["usage"]["input_tokens"]
    assert response.usage.completion_tokens == expected["usage"]["output_tokens"]
    assert litellm_details(response.usage) == expected_details(expected["usage"])
    if folder == "anthropic":  # the case: 1,000 + 5,000 read + 2,000 written
        assert response.usage.prompt_tokens_details.cached_tokens == 5000
        assert response.usage.cache_creation_input_tokens == 2000


# -- a stream rebuilt equals the response not streamed --------------------------------------------


def openai_call_json() -> bytes:
    """The answer `openai_call_turn()` streams, as chat completions sends it whole."""
    return json.dumps(
        {
            "id": "chatcmpl-loop",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "Let me check.",
                        "tool_calls": [
                            {
                                "id": "call_calc",
                                "type": "function",
                                "function": {
                                    "name": "calculator",
                                    "arguments": '{"expression": "123 * 456"}',
                                },
                            },
                            {
                                "id": "call_wx",
                                "type": "function",
                                "function": {
                                    "name": "get_weather",
                                    "arguments": '{"city": "Oslo \\u00e9\\""}',
                                },
                            },
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        }
    ).encode()


def anthropic_call_json() -> bytes:
    """The answer `anthropic_thinking_call_turn()` streams, as the Messages API sends it whole."""
    return json.dumps(
        {
            "id": "msg_loop1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [
                {
                    "type": "thinking",
                    "thinking": "The user wants weather.",
                    "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h",
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01Wx",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 40, "output_tokens": 30},
        }
    ).encode()


def parsed_arguments(response: dict[str, Any]) -> dict[str, Any]:
    # One provider sends arguments as text when streaming and as an object when not: compare
    # what they say, not how they are spaced.
    for call in response["choices"][0]["message"]["tool_calls"] or ():
        call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return response


@pytest.mark.parametrize(
    ("model", "path", "streamed", "whole"),
    [
        ("openai/gpt-4o-mini", "/v1", openai_call_turn(), openai_call_json()),
        ("anthropic/claude-sonnet-4-5", "", anthropic_thinking_call_turn(), anthropic_call_json()),
    ],
    ids=["openai", "anthropic"],
)
def test_round_trip_of_replayed_calls(
    replay: ReplayServer, runner: Runner, model: str, path: str, streamed: bytes, whole: bytes
) -> None:
    settings: dict[str, Any] = {
        "model": model,
        "messages": MESSAGES,
        "num_retries": 0,
        "api_base": replay.url + path,
        "api_key": "sk-test",
    }
    replay.replies = [Reply(chunks=cut_mid_line(streamed))]
    chunks = stream_chunks(runner, **settings)
    check_stream(chunks, include_usage=False)
    replay.replies = [Reply(chunks=[whole], headers={"Content-Type": "application/json"})]
    direct = complete(runner, **settings)
    check_completion(direct)
    built = stream_chunk_builder(chunks)
    assert parsed_arguments(without_ids(built)) == parsed_arguments(without_ids(direct))
    assert len(built.choices[0].message.tool_calls or []) >= 1


@pytest.mark.model
def test_round_trip_of_the_bundled_model(runner: Runner) -> None:
    settings: dict[str, Any] = {
        "model": "local/smollm2",
        "messages": MESSAGES,
        "max_tokens": 24,
        "seed": 3,
        "temperature": 0,
    }
    chunks = stream_chunks(runner, **settings)
    check_stream(chunks, include_usage=False)
    built = stream_chunk_builder(chunks, messages=MESSAGES)
    assert without_ids(built) == without_ids(complete(runner, **settings))
    assert built.choices[0].message.content and built.usage.prompt_tokens > 5


# -- a real OpenAI-compatible server: llama_cpp.server ------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.model
def test_forced_tool_call_streams_from_llama_cpp_server(llama_server: str, runner: Runner) -> None:
    settings: dict[str, Any] = {
        "model": "openai/smollm2",
        "messages": MESSAGES,
        "api_base": llama_server,
        "api_key": "x",
        "max_tokens": 60,
        "temperature": 0,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    chunks = stream_chunks(runner, **settings)
    check_stream(chunks, include_usage=False)
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert len(deltas) > 2 and {call.index for call in deltas} == {0}  # arguments streamed
    built = stream_chunk_builder(chunks, messages=MESSAGES)
    (call,) = built.choices[0].message.tool_calls
    # The server repeats the id and name on every delta: they arrive once, not concatenated.
    assert call.function.name == "get_weather" and call.id.count("call_") == 1
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    assert built.choices[0].finish_reason == "tool_calls"
    if runner.is_async:
        return  # the same request not streamed, once (async non-streamed calls are replayed)
    direct = complete(runner, **settings)
    check_completion(direct)
    (whole,) = direct.choices[0].message.tool_calls
    assert (whole.function.name, json.loads(whole.function.arguments)) == (
        call.function.name,
        json.loads(call.function.arguments),
    )


# -- errors --------------------------------------------------------------------------------------

ERRORS = [
    (401, "Incorrect API key provided", spout.AuthenticationError, compat.AuthenticationError),
    (403, "Not allowed", spout.PermissionDeniedError, compat.PermissionDeniedError),
    (404, "The model `gpt-8` does not exist", spout.NotFoundError, compat.NotFoundError),
    (400, "Invalid 'messages'", spout.BadRequestError, compat.BadRequestError),
    (
        400,
        "This model's maximum context length is 128000 tokens",
        spout.ContextWindowExceededError,
        compat.ContextWindowExceededError,
    ),
    (429, "Rate limit reached", spout.RateLimitError, compat.RateLimitError),
    (
        503,
        "The engine is overloaded",
        spout.ServiceUnavailableError,
        compat.ServiceUnavailableError,
    ),
    (500, "The server had an error", spout.InternalServerError, compat.InternalServerError),
]


@pytest.mark.parametrize(
    ("status", "message", "spout_error", "litellm_error"),
    ERRORS,
    ids=[f"{e[0]}-{e[2].__name__}" for e in ERRORS],
)
def test_errors_are_spouts_and_litellms(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    message: str,
    spout_error: type[Exception],
    litellm_error: type[Exception],
) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
    replay.replies = [
        Reply(status=status, chunks=[body], headers={"Content-Type": "application/json"})
    ]
    settings: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": f"{replay.url}/v1",
        "api_key": "sk",
        "num_retries": 0,
    }
    for stream in (False, True):
        with pytest.raises(litellm_error) as caught:
            if stream:
                stream_chunks(runner, **settings)
            else:
                complete(runner, **settings)
        error = caught.value
        assert isinstance(error, spout_error) and isinstance(error, compat.APIError)
        assert error.status_code == status and error.llm_provider == "openai"
    if litellm_error is compat.ContextWindowExceededError:
        assert issubclass(litellm_error, compat.BadRequestError)


def test_transport_errors_are_litellms_too(replay: ReplayServer, runner: Runner) -> None:
    from helpers import free_port

    settings: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_key": "sk",
        "num_retries": 0,
    }
    with pytest.raises(compat.APIConnectionError) as refused:
        complete(runner, api_base=f"http://127.0.0.1:{free_port()}/v1", **settings)
    assert isinstance(refused.value, spout.ConnectionError)

    replay.replies = [
        Reply(chunks=[b"", openai_sse(openai_chunk({"content": "late"}, "stop"))], delay=0.6)
    ]
    with pytest.raises(compat.Timeout) as late:
        stream_chunks(runner, api_base=f"{replay.url}/v1", timeout=0.2, **settings)
    assert isinstance(late.value, spout.TimeoutError)

    # The connection drops mid-stream: the text so far came as chunks, then the error.
    body = openai_sse(
        openai_chunk({"role": "assistant", "content": "Half an"}),
        openai_chunk({"content": " answer"}),
    )
    replay.replies = [Reply(chunks=[body[: body.index(b"data: [DONE]")]], abort=True)]
    received: list[Any] = []
    with pytest.raises(compat.APIConnectionError) as cut:
        stream = runner.call(
            completion, acompletion, stream=True, api_base=f"{replay.url}/v1", **settings
        )
        runner.list(stream, each=received.append)
    assert isinstance(cut.value, spout.StreamInterruptedError)
    assert "".join(c.choices[0].delta.content for c in received) == "Half an answer"


def test_spout_errors_keep_their_own_tree() -> None:
    assert issubclass(spout.TimeoutError, spout.TransportError)
    assert issubclass(spout.IdleTimeout, compat.Timeout)
    assert not issubclass(spout.TimeoutError, compat.APIConnectionError)  # apart, as in litellm
    assert issubclass(spout.OverloadedError, compat.ServiceUnavailableError)
    assert not issubclass(spout.ConfigurationError, compat.APIError)
    assert spout.ConnectionError("x").llm_provider is None


# -- what a call sends -----------------------------------------------------------------------------


def test_litellm_parameters_reach_each_provider_in_its_terms(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[anthropic_thinking_call_turn()])]
    list(
        completion(
            model="anthropic/claude-sonnet-4-5",
            messages=MESSAGES,
            stream=True,
            api_base=f"{replay.url}/v1/messages",
            api_key="sk-ant-x",
            max_completion_tokens=77,
            stop="END",
            tools=[WEATHER_TOOL],
            stream_options={"include_usage": True},
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            top_k=5,
            extra_headers={"x-trace": "t1"},
            metadata={"litellm": "only"},
            num_retries=0,
        )
    )
    request = replay.requests[-1]
    sent = request.json()
    assert request.path == "/v1/messages"  # litellm's whole endpoint taken as the base
    assert request.headers["x-api-key"] == "sk-ant-x" and request.headers["x-trace"] == "t1"
    assert sent["max_tokens"] == 77 and sent["stop_sequences"] == ["END"]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert sent["tools"][0]["name"] == "get_weather" and sent["top_k"] == 5  # passed through
    assert (
        "stream_options" not in sent
        and "metadata" not in sent
        and "max_completion_tokens" not in sent
    )

    replay.replies = [Reply(chunks=[openai_sse(openai_chunk({"content": "{}"}, "stop"))])]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    list(
        completion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            num_retries=0,
            api_base=f"{replay.url}/v1",
            api_key="sk",
            max_completion_tokens=9,
            response_format=response_format,
            presence_penalty=0.5,
            user="u1",
        )
    )
    sent = replay.requests[-1].json()
    assert sent["max_completion_tokens"] == 9 and "max_tokens" not in sent  # OpenAI's own name
    assert sent["response_format"] == response_format and sent["presence_penalty"] == 0.5
    assert sent["user"] == "u1" and sent["stream_options"] == {"include_usage": True}

    # response_format goes in each provider's own terms, and the answer is checked against it:
    # these transcripts answer in prose, which spout refuses as the JSON asked for.
    body, _ = transcript("ollama", "chat_text")
    replay.replies = [Reply(chunks=[body], headers={"Content-Type": "application/x-ndjson"})]
    with pytest.raises(spout.StructuredOutputError):
        list(
            completion(
                model="ollama_chat/llama3.2",
                messages=MESSAGES,
                stream=True,
                api_base=replay.url,
                response_format=response_format,
                num_retries=0,
            )
        )
    sent = replay.requests[-1].json()
    assert sent["format"] == schema and sent["model"] == "llama3.2"

    body, _ = transcript("gemini", "text")
    replay.replies = [Reply(chunks=[body])]
    with pytest.raises(spout.StructuredOutputError):
        list(
            completion(
                model="gemini/gemini-2.5-flash",
                messages=MESSAGES,
                stream=True,
                api_base=replay.url,
                api_key="AIza-x",
                num_retries=0,
                response_format={"type": "json_object"},
                temperature=0.1,
            )
        )
    config = replay.requests[-1].json()["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["temperature"] == 0.1

    # OpenAI's default format, plain text, is no format at all.
    body, _ = transcript("gemini", "text")
    replay.replies = [Reply(chunks=[body])]
    list(
        completion(
            model="gemini/gemini-2.5-flash",
            messages=MESSAGES,
            stream=True,
            api_base=replay.url,
            api_key="AIza-x",
            num_retries=0,
            response_format={"type": "text"},
        )
    )
    assert "responseMimeType" not in replay.requests[-1].json().get("generationConfig", {})


def test_assistant_messages_go_back_as_each_provider_needs(replay: ReplayServer) -> None:
    settings: dict[str, Any] = {
        "model": "anthropic/claude-sonnet-4-5",
        "api_base": replay.url,
        "api_key": "sk-ant-x",
        "num_retries": 0,
    }
    replay.replies = [Reply(chunks=[anthropic_thinking_call_turn()])]
    first = stream_chunk_builder(list(completion(messages=MESSAGES, stream=True, **settings)))
    message = first.choices[0].message
    (call,) = message.tool_calls
    history = [
        *MESSAGES,
        message,  # as litellm users append it: reasoning and signature on litellm's names
        {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"},
    ]
    replay.replies = [Reply(chunks=[anthropic_thinking_call_turn()])]
    completion(messages=history, stream=True, **settings).close()
    turn = replay.requests[-1].json()["messages"][1]
    assert turn["role"] == "assistant"
    thinking = next(block for block in turn["content"] if block["type"] == "thinking")
    assert thinking == {
        "type": "thinking",
        "thinking": "The user wants weather.",
        "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h",
    }
    assert any(block["type"] == "tool_use" and block["id"] == call.id for block in turn["content"])


def test_gemini_thought_signatures_go_back_with_their_calls(replay: ReplayServer) -> None:
    settings: dict[str, Any] = {
        "model": "gemini/gemini-2.5-flash",
        "api_base": replay.url,
        "api_key": "AIza-x",
        "num_retries": 0,
    }
    body, _ = transcript("gemini", "function_call")
    replay.replies = [Reply(chunks=[body])]
    message = (
        stream_chunk_builder(list(completion(messages=MESSAGES, stream=True, **settings)))
        .choices[0]
        .message
    )
    signature = "CiQB0e2Kb7WIREfakeThoughtSignature0000000000000000AAAA"
    first, second = message.tool_calls
    assert first.provider_specific_fields.thought_signature == signature  # where litellm keeps it
    assert not hasattr(second, "provider_specific_fields")
    history = [
        *MESSAGES,
        message,
        *({"role": "tool", "tool_call_id": c.id, "content": "mild"} for c in message.tool_calls),
    ]
    replay.replies = [Reply(chunks=[body])]
    completion(messages=history, stream=True, **settings).close()
    parts = replay.requests[-1].json()["contents"][1]["parts"]
    assert parts[0] == {"text": "I'll check both cities."}
    assert [part.get("thoughtSignature") for part in parts[1:]] == [signature, None]


def test_a_refusal_is_kept_apart_from_the_content(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openai_chat", "refusal")
    settings: dict[str, Any] = {
        "model": "openai/gpt-4o",
        "messages": MESSAGES,
        "api_base": f"{replay.url}/v1",
        "api_key": "sk",
        "num_retries": 0,
    }
    replay.replies = [Reply(chunks=cut_mid_line(body))]
    chunks = stream_chunks(runner, **settings)
    check_stream(chunks, include_usage=False)
    assert all(c.choices[0].delta.content is None for c in chunks)
    built = stream_chunk_builder(chunks, messages=MESSAGES)
    check_completion(built)
    message = built.choices[0].message
    assert (message.content, message.refusal) == (None, expected["refusal"])
    assert built.choices[0].finish_reason == "stop"  # as OpenAI ends a refusal

    # Not streamed: the same message, as OpenAI's non-streamed body has it.
    completed = {
        "id": "chatcmpl-r",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": None, "refusal": expected["refusal"]},
            }
        ],
    }
    replay.replies = [
        Reply(chunks=[json.dumps(completed).encode()], headers={"Content-Type": "application/json"})
    ]
    response = complete(runner, **settings)
    check_completion(response)
    assert (response.choices[0].message.content, response.choices[0].message.refusal) == (
        None,
        expected["refusal"],
    )
    assert response.choices[0].finish_reason == "stop"

    # Sent back, as litellm users append the message: a server that is not OpenAI's own
    # (this one) gets it as the assistant's text, the key that Groq would refuse dropped.
    body, _ = transcript("openai_chat", "text")
    replay.replies = [Reply(chunks=[body])]
    history = [*MESSAGES, response.choices[0].message, {"role": "user", "content": "Why?"}]
    stream_chunks(runner, **{**settings, "messages": history})
    assert replay.requests[-1].json()["messages"][1] == {
        "role": "assistant",
        "content": expected["refusal"],
    }


def test_retries_and_refusals(replay: ReplayServer, runner: Runner) -> None:
    busy = Reply(
        status=503,
        chunks=[b'{"error": {"message": "busy"}}'],
        headers={"Content-Type": "application/json"},
    )
    ok = Reply(chunks=[openai_sse(openai_chunk({"content": "fine"}, "stop"))])
    settings: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": f"{replay.url}/v1",
        "api_key": "sk",
    }
    replay.replies = [busy, ok]
    chunks = stream_chunks(runner, num_retries=1, **settings)
    assert stream_chunk_builder(chunks).choices[0].message.content == "fine"
    replay.replies = [busy, ok]
    with pytest.raises(compat.ServiceUnavailableError):
        complete(runner, num_retries=0, **settings)
    with pytest.raises(spout.ConfigurationError, match="one choice"):
        complete(runner, n=2, **settings)
    with pytest.raises(spout.ConfigurationError, match="prefix it"):
        complete(runner, model="mystery-model", messages=MESSAGES)


def test_tool_arguments_that_are_not_json_raise(replay: ReplayServer, runner: Runner) -> None:
    body = openai_sse(
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_x",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": '},
                    }
                ]
            }
        ),
        openai_chunk({}, "tool_calls"),
    )
    replay.replies = [Reply(chunks=[body])]
    with pytest.raises(spout.ToolCallParseError) as caught:
        stream_chunks(
            runner,
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            api_key="sk",
            api_base=f"{replay.url}/v1",
            num_retries=0,
        )
    assert caught.value.raw == '{"a": '


def test_a_loop_that_stops_early_closes_the_connection(
    replay: ReplayServer, runner: Runner
) -> None:
    pieces = [openai_chunk({"content": f"{i} "}) for i in range(200)]
    body = openai_sse(*pieces, openai_chunk({}, "stop"))
    replay.replies = [Reply(chunks=cut_mid_line(body), delay=0.005)]
    settings: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": f"{replay.url}/v1",
        "api_key": "sk",
        "stream": True,
    }
    (chunk,) = runner.list(runner.call(completion, acompletion, **settings), stop_after=1)
    assert chunk.choices[0].delta.content == "0 "
    sent = replay.wait_for_disconnect()
    assert sent is not None and sent < len(cut_mid_line(body)) // 2


# -- stream_chunk_builder on chunks from elsewhere ----------------------------------------------


def test_builder_takes_openai_dicts_from_anywhere() -> None:
    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-x",
            "object": "chat.completion.chunk",
            "created": 7,
            "model": "gpt-4o",
            "system_fingerprint": "fp_1",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        }

    chunks = [
        chunk(0, {"role": "assistant", "content": "Hel"}),
        chunk(1, {"role": "assistant", "content": "Bon"}),  # n=2: a second choice
        chunk(0, {"content": "lo"}),
        chunk(1, {"content": "jour"}),
        # llama.cpp's server repeats the id and name on every delta; one sends no index
        chunk(
            0,
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":'},
                    }
                ]
            },
        ),
        chunk(
            0,
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": " 1}"},
                    }
                ]
            },
        ),
        chunk(0, {"tool_calls": [{"id": "call_2", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk(0, {"reasoning_content": "hmm"}),
        chunk(0, {}, "tool_calls"),
        chunk(1, {}, "stop"),
    ]
    built = stream_chunk_builder(chunks, messages=[{"role": "user", "content": "Say hello"}])
    check_completion(built)
    first, second = built.choices
    assert (built.id, built.created, built.model, built.system_fingerprint) == (
        "chatcmpl-x",
        7,
        "gpt-4o",
        "fp_1",
    )
    assert first.message.content == "Hello" and second.message.content == "Bonjour"
    assert [(c.id, c.function.name, c.function.arguments) for c in first.message.tool_calls] == [
        ("call_1", "f", '{"a": 1}'),
        ("call_2", "g", "{}"),
    ]
    assert first.message.reasoning_content == "hmm"
    assert (first.finish_reason, second.finish_reason) == ("tool_calls", "stop")
    # No usage came: counted (the prompt as spout estimates it; four characters a token).
    assert built.usage.prompt_tokens == spout._context.estimate_tokens(
        [{"role": "user", "content": "Say hello"}]
    )
    assert built.usage.completion_tokens > 0
    with pytest.raises(ValueError, match="at least one chunk"):
        stream_chunk_builder([])


def test_builder_time_is_linear_in_the_chunks() -> None:
    def chunks(n: int) -> list[dict[str, Any]]:
        text = [{"choices": [{"index": 0, "delta": {"content": "x"}}], "id": "c"}] * n
        args = [
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1,"}}]},
                    }
                ]
            }
        ] * n
        return [*text, *args]

    def cost(n: int) -> float:
        # CPU time of this process, best of three: other work on a busy machine (another
        # test worker, a build) neither adds to it nor makes one run look quadratic.
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            built = stream_chunk_builder(chunks(n))
            best = min(best, time.process_time() - start)
        assert len(built.choices[0].message.content) == n
        return best

    small, large = cost(5_000), cost(40_000)
    assert large < small * 8 * 2.5  # eight times the chunks: about eight times the time
