"""The official SDKs as real clients of a real gateway, over real sockets.

``openai`` (chat completions, its ``stream()`` helper, the Responses API) and ``anthropic``
(messages, its ``stream()`` helper), each sync and async, talk to ``spout serve``'s app under
uvicorn on loopback. Behind it is either a loopback upstream replaying recorded streams
(tests/fault_server.py, the bytes of ``tests/fixtures/wire/``), in OpenAI's format or
Anthropic's whatever the client speaks, or the bundled model.

What the wire-protocol tests (test_wire_*.py) check frame by frame through mock transports,
these check end to end: request bodies through the gateway to the upstream, streams through
the hub and uvicorn back to the SDKs' decoders and accumulators, errors to the SDKs'
exception classes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import openai
import pytest
from gateway_server import RunningGateway, run_gateway

from fault_server import Reply, anthropic_stream, error_reply, openai_chat_stream
from replay_server import transcript
from spout.gateway import GatewayConfig, Route

T = TypeVar("T")

USER = [{"role": "user", "content": "What is the weather in Lisbon, and the time there?"}]

#: Strict, as the openai SDK's stream helper wants function tools to be (it parses them).
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "note": {"type": "string"},
                },
                "required": ["city", "unit", "note"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a timezone",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}, "format": {"type": "string"}},
                "required": ["timezone", "format"],
                "additionalProperties": False,
            },
        },
    },
]
ANTHROPIC_TOOLS: list[Any] = [
    {
        "name": tool["function"]["name"],
        "description": tool["function"]["description"],
        "input_schema": tool["function"]["parameters"],
    }
    for tool in OPENAI_TOOLS
]
RESPONSES_TOOLS: list[Any] = [{"type": "function", **tool["function"]} for tool in OPENAI_TOOLS]


# -- the upstream ----------------------------------------------------------------------------


def recorded(folder: str, case: str) -> tuple[Reply, dict[str, Any]]:
    """A recorded stream replayed event by event, and what a client must rebuild from it."""
    body, expected = transcript(folder, case)
    events = [event + b"\n\n" for event in body.split(b"\n\n") if event.strip()]
    reply = Reply(headers={"Content-Type": "text/event-stream; charset=utf-8"}, body=events)
    return reply, expected


def json_reply(body: dict[str, Any]) -> Reply:
    return Reply(body=[json.dumps(body).encode()], framing="length")


def openai_completion(expected: dict[str, Any]) -> dict[str, Any]:
    """The non-streamed chat completion holding what a recording holds."""
    message: dict[str, Any] = {"role": "assistant", "content": expected["text"] or None}
    if expected["tool_calls"]:
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments_raw"]},
            }
            for call in expected["tool_calls"]
        ]
    usage = expected["usage"] or {"input_tokens": 9, "output_tokens": 9}
    return {
        "id": "chatcmpl-WIREjson",
        "object": "chat.completion",
        "created": 1735689600,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": expected["finish_reason_raw"],
            }
        ],
        "usage": {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["input_tokens"] + usage["output_tokens"],
        },
    }


def anthropic_message(expected: dict[str, Any]) -> dict[str, Any]:
    """The non-streamed Anthropic message holding what a recording holds."""
    content: list[dict[str, Any]] = []
    if expected["text"]:
        content.append({"type": "text", "text": expected["text"]})
    for call in expected["tool_calls"]:
        content.append(
            {"type": "tool_use", "id": call["id"], "name": call["name"], "input": call["arguments"]}
        )
    return {
        "id": "msg_WIREjson",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": expected["finish_reason_raw"],
        "stop_sequence": None,
        # The recording's own usage, as Anthropic counts it (its input less the cache's parts).
        "usage": expected.get("usage_raw")
        or {key: expected["usage"][key] for key in ("input_tokens", "output_tokens")},
    }


def calls_of(expected: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(call["id"], call["name"], call["arguments"]) for call in expected["tool_calls"]]


@pytest.fixture
def gateway(faults: Any) -> Iterator[RunningGateway]:
    """The gateway serving ``gpt`` (an OpenAI upstream), ``gpt-responses`` (the same, over the
    Responses API) and ``claude`` (an Anthropic one), all the fault server: it answers what
    each test scripts."""
    options = {"api_key": "sk-test", "max_retries": 0}
    routes = {
        "gpt": Route(
            name="gpt",
            provider="openai",
            model="gpt-4o-mini",
            base_url=f"{faults.url}/v1",
            options=options,
        ),
        "gpt-responses": Route(
            name="gpt-responses",
            provider="openai",
            model="gpt-4.1",
            base_url=f"{faults.url}/v1",
            options={**options, "api": "responses"},
        ),
        "claude": Route(
            name="claude",
            provider="anthropic",
            model="claude-sonnet-4-5",
            base_url=faults.url,
            options=options,
        ),
    }
    with run_gateway(GatewayConfig(routes=routes, default="gpt")) as running:
        yield running


# -- the clients -----------------------------------------------------------------------------


class SDK:
    """One SDK, sync or async, pointed at the gateway. Each method makes one call and reads
    it to the end; ``seen`` keeps what a stream gave before it ended or raised."""

    def __init__(self, url: str, mode: str) -> None:
        self.url = url
        self.mode = mode
        self.seen: list[Any] = []

    def run(self, sync: Callable[[Any], T], async_: Callable[[Any], Awaitable[T]]) -> T:
        self.seen = []
        if self.mode == "sync":
            with self.sync_client() as client:
                return sync(client)

        async def main() -> T:
            async with self.async_client() as client:
                return await async_(client)

        return asyncio.run(main())

    def sync_client(self) -> Any:
        raise NotImplementedError

    def async_client(self) -> Any:
        raise NotImplementedError


class OpenAISDK(SDK):
    def sync_client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="sk-client", max_retries=0)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="sk-client", max_retries=0)

    def chunks(self, **params: Any) -> list[Any]:
        """``chat.completions.create(stream=True)``: every chunk."""

        def sync(client: openai.OpenAI) -> list[Any]:
            with client.chat.completions.create(stream=True, **params) as stream:
                self.seen.extend(stream)
            return self.seen

        async def async_(client: openai.AsyncOpenAI) -> list[Any]:
            async with await client.chat.completions.create(stream=True, **params) as stream:
                async for chunk in stream:
                    self.seen.append(chunk)
            return self.seen

        return self.run(sync, async_)

    def helper(self, **params: Any) -> Any:
        """``chat.completions.stream()``: its events in ``seen``, its final completion."""

        def sync(client: openai.OpenAI) -> Any:
            with client.chat.completions.stream(**params) as stream:
                self.seen.extend(stream)
                return stream.get_final_completion()

        async def async_(client: openai.AsyncOpenAI) -> Any:
            async with client.chat.completions.stream(**params) as stream:
                async for event in stream:
                    self.seen.append(event)
                return await stream.get_final_completion()

        return self.run(sync, async_)

    def completion(self, **params: Any) -> Any:
        """``chat.completions.create()``, not streamed."""
        return self.run(
            lambda client: client.chat.completions.create(**params),
            lambda client: client.chat.completions.create(**params),
        )

    def response_events(self, **params: Any) -> list[Any]:
        """``responses.create(stream=True)``: every event."""

        def sync(client: openai.OpenAI) -> list[Any]:
            with client.responses.create(stream=True, **params) as stream:
                self.seen.extend(stream)
            return self.seen

        async def async_(client: openai.AsyncOpenAI) -> list[Any]:
            async with await client.responses.create(stream=True, **params) as stream:
                async for event in stream:
                    self.seen.append(event)
            return self.seen

        return self.run(sync, async_)

    def response_helper(self, **params: Any) -> Any:
        """``responses.stream()``: its events in ``seen``, its final response."""

        def sync(client: openai.OpenAI) -> Any:
            with client.responses.stream(**params) as stream:
                self.seen.extend(stream)
                return stream.get_final_response()

        async def async_(client: openai.AsyncOpenAI) -> Any:
            async with client.responses.stream(**params) as stream:
                async for event in stream:
                    self.seen.append(event)
                return await stream.get_final_response()

        return self.run(sync, async_)


class AnthropicSDK(SDK):
    def sync_client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key="sk-client", max_retries=0)

    def async_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.url, api_key="sk-client", max_retries=0)

    def events(self, **params: Any) -> list[Any]:
        """``messages.create(stream=True)``: every event."""

        def sync(client: anthropic.Anthropic) -> list[Any]:
            with client.messages.create(stream=True, **params) as stream:
                self.seen.extend(stream)
            return self.seen

        async def async_(client: anthropic.AsyncAnthropic) -> list[Any]:
            async with await client.messages.create(stream=True, **params) as stream:
                async for event in stream:
                    self.seen.append(event)
            return self.seen

        return self.run(sync, async_)

    def helper(self, **params: Any) -> Any:
        """``messages.stream()``: its ``text_stream`` pieces in ``seen``, its final message."""

        def sync(client: anthropic.Anthropic) -> Any:
            with client.messages.stream(**params) as stream:
                self.seen.extend(stream.text_stream)
                return stream.get_final_message()

        async def async_(client: anthropic.AsyncAnthropic) -> Any:
            async with client.messages.stream(**params) as stream:
                async for text in stream.text_stream:
                    self.seen.append(text)
                return await stream.get_final_message()

        return self.run(sync, async_)

    def message(self, **params: Any) -> Any:
        """``messages.create()``, not streamed."""
        return self.run(
            lambda client: client.messages.create(**params),
            lambda client: client.messages.create(**params),
        )


@pytest.fixture
def openai_sdk(gateway: RunningGateway, mode: str) -> OpenAISDK:
    return OpenAISDK(gateway.url, mode)


@pytest.fixture
def anthropic_sdk(gateway: RunningGateway, mode: str) -> AnthropicSDK:
    return AnthropicSDK(gateway.url, mode)


def chunk_text(chunks: list[Any]) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def finish_reasons(chunks: list[Any]) -> list[str]:
    return [
        chunk.choices[0].finish_reason
        for chunk in chunks
        if chunk.choices and chunk.choices[0].finish_reason
    ]


def tool_calls_of(completion: Any) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (call.id, call.function.name, json.loads(call.function.arguments))
        for call in completion.choices[0].message.tool_calls or []
    ]


def tool_uses_of(message: Any) -> list[tuple[str, str, dict[str, Any]]]:
    return [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


# -- openai SDK, chat completions ------------------------------------------------------------


def test_openai_stream_of_a_recorded_text(faults: Any, openai_sdk: OpenAISDK) -> None:
    reply, expected = recorded("openai_chat", "text")
    faults.script(reply)
    chunks = openai_sdk.chunks(model="gpt", messages=USER)
    assert chunk_text(chunks) == expected["text"]
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({chunk.id for chunk in chunks}) == 1
    assert all(chunk.model == "gpt" for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)  # not asked for
    upstream = faults.requests[-1].json()
    assert upstream["stream"] is True
    assert upstream["messages"] == USER


def test_openai_stream_helper(faults: Any, openai_sdk: OpenAISDK) -> None:
    reply, expected = recorded("openai_chat", "text")
    faults.script(reply)
    completion = openai_sdk.helper(model="gpt", messages=USER)
    deltas = [event.delta for event in openai_sdk.seen if event.type == "content.delta"]
    assert "".join(deltas) == expected["text"]
    assert completion.choices[0].message.content == expected["text"]
    assert completion.choices[0].finish_reason == "stop"


def test_openai_not_streamed(faults: Any, openai_sdk: OpenAISDK) -> None:
    _, expected = recorded("openai_chat", "parallel_tool_calls")
    faults.script(json_reply(openai_completion(expected)))
    completion = openai_sdk.completion(model="gpt", messages=USER, tools=OPENAI_TOOLS)
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "tool_calls"
    assert tool_calls_of(completion) == calls_of(expected)
    assert completion.usage.prompt_tokens == 142
    assert completion.usage.completion_tokens == 58
    assert faults.requests[-1].json().get("stream") in (None, False)


def test_openai_usage_chunk_when_asked(faults: Any, openai_sdk: OpenAISDK) -> None:
    reply, expected = recorded("openai_chat", "parallel_tool_calls")
    faults.script(reply)
    chunks = openai_sdk.chunks(
        model="gpt", messages=USER, tools=OPENAI_TOOLS, stream_options={"include_usage": True}
    )
    last = chunks[-1]
    assert last.choices == []
    usage = expected["usage_raw"]
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (142, 58)
    assert last.usage.total_tokens == usage["total_tokens"] == 200
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_openai_parallel_tool_calls(faults: Any, openai_sdk: OpenAISDK) -> None:
    reply, expected = recorded("openai_chat", "parallel_tool_calls")
    faults.script(reply)
    completion = openai_sdk.helper(model="gpt", messages=USER, tools=OPENAI_TOOLS)
    assert completion.choices[0].finish_reason == "tool_calls"
    calls = completion.choices[0].message.tool_calls
    assert tool_calls_of(completion) == calls_of(expected)
    # the helper parsed the strict tools' arguments itself
    assert [call.function.parsed_arguments for call in calls] == [
        call["arguments"] for call in expected["tool_calls"]
    ]
    done = [
        event.name
        for event in openai_sdk.seen
        if event.type == "tool_calls.function.arguments.done"
    ]
    assert done == ["get_weather", "get_time"]
    upstream = faults.requests[-1].json()
    assert [tool["function"]["name"] for tool in upstream["tools"]] == ["get_weather", "get_time"]


def test_openai_error_inside_the_stream_raises_after_the_text(
    faults: Any, openai_sdk: OpenAISDK
) -> None:
    s = openai_chat_stream(["Hel", "lo", " there"])
    faults.script(s.reply([*s.upto(2), s.error()]))
    with pytest.raises(openai.APIError) as caught:
        openai_sdk.chunks(model="gpt", messages=USER)
    assert not isinstance(caught.value, openai.APIStatusError)  # it came inside a 200
    assert chunk_text(openai_sdk.seen) == "Hello"
    assert finish_reasons(openai_sdk.seen) == []


@pytest.mark.parametrize(
    ("reply", "error", "status"),
    [
        (error_reply("openai", 429, retry_after=7), openai.RateLimitError, 429),
        (error_reply("openai", 500), openai.InternalServerError, 502),
    ],
    ids=["429", "500"],
)
def test_openai_upstream_http_errors(
    faults: Any,
    openai_sdk: OpenAISDK,
    reply: Reply,
    error: type[openai.APIStatusError],
    status: int,
) -> None:
    faults.script(reply)
    with pytest.raises(error) as caught:
        openai_sdk.chunks(model="gpt", messages=USER)
    assert caught.value.status_code == status
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "7"
    assert len(faults.requests) == 1


# -- anthropic SDK, messages -----------------------------------------------------------------

MAX = {"max_tokens": 256}


def test_anthropic_stream_events(faults: Any, anthropic_sdk: AnthropicSDK) -> None:
    reply, expected = recorded("anthropic", "text_and_tool_use")
    faults.script(reply)
    events = anthropic_sdk.events(model="claude", messages=USER, tools=ANTHROPIC_TOOLS, **MAX)
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    starts = [event.content_block for event in events if event.type == "content_block_start"]
    assert [block.type for block in starts] == ["text", "tool_use"]
    assert (starts[1].id, starts[1].name) == calls_of(expected)[0][:2]
    deltas = [event.delta for event in events if event.type == "content_block_delta"]
    assert "".join(d.text for d in deltas if d.type == "text_delta") == expected["text"]
    arguments = "".join(d.partial_json for d in deltas if d.type == "input_json_delta")
    assert json.loads(arguments) == expected["tool_calls"][0]["arguments"]
    assert events[0].message.usage.input_tokens == 472
    assert events[-2].delta.stop_reason == "tool_use"
    assert events[-2].usage.output_tokens == 89
    upstream = faults.requests[-1].json()
    assert upstream["stream"] is True
    assert upstream["max_tokens"] == 256


def test_anthropic_stream_helper(faults: Any, anthropic_sdk: AnthropicSDK) -> None:
    reply, expected = recorded("anthropic", "text_and_tool_use")
    faults.script(reply)
    message = anthropic_sdk.helper(model="claude", messages=USER, tools=ANTHROPIC_TOOLS, **MAX)
    assert "".join(anthropic_sdk.seen) == expected["text"]
    assert text_of(message) == expected["text"]
    assert tool_uses_of(message) == calls_of(expected)
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (472, 89)
    assert message.model == "claude"


def test_anthropic_not_streamed(faults: Any, anthropic_sdk: AnthropicSDK) -> None:
    _, expected = recorded("anthropic", "text_and_tool_use")
    faults.script(json_reply(anthropic_message(expected)))
    message = anthropic_sdk.message(model="claude", messages=USER, tools=ANTHROPIC_TOOLS, **MAX)
    assert message.type == "message"
    assert text_of(message) == expected["text"]
    assert tool_uses_of(message) == calls_of(expected)
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (472, 89)
    assert faults.requests[-1].json().get("stream") in (None, False)


def test_anthropic_tools_reach_the_upstream(faults: Any, anthropic_sdk: AnthropicSDK) -> None:
    reply, _ = recorded("anthropic", "text_and_tool_use")
    faults.script(reply)
    anthropic_sdk.helper(
        model="claude",
        messages=USER,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "tool", "name": "get_weather"},
        system="Be brief.",
        **MAX,
    )
    upstream = faults.requests[-1].json()
    assert [(t["name"], t["input_schema"]) for t in upstream["tools"]] == [
        (t["name"], t["input_schema"]) for t in ANTHROPIC_TOOLS
    ]
    assert upstream["tool_choice"]["type"] == "tool"
    assert upstream["tool_choice"]["name"] == "get_weather"
    system = upstream["system"]
    assert (system if isinstance(system, str) else system[0]["text"]) == "Be brief."


def test_anthropic_error_inside_the_stream_raises_after_the_text(
    faults: Any, anthropic_sdk: AnthropicSDK
) -> None:
    s = anthropic_stream(["Hel", "lo", " there"])
    faults.script(s.reply([*s.upto(2), s.error()]))
    with pytest.raises(anthropic.APIError):
        anthropic_sdk.helper(model="claude", messages=USER, **MAX)
    assert "".join(anthropic_sdk.seen) == "Hello"


@pytest.mark.parametrize(
    ("reply", "error", "status"),
    [
        (error_reply("anthropic", 429, retry_after=7), anthropic.RateLimitError, 429),
        (error_reply("anthropic", 500), anthropic.InternalServerError, 502),
    ],
    ids=["429", "500"],
)
def test_anthropic_upstream_http_errors(
    faults: Any,
    anthropic_sdk: AnthropicSDK,
    reply: Reply,
    error: type[anthropic.APIStatusError],
    status: int,
) -> None:
    faults.script(reply)
    with pytest.raises(error) as caught:
        anthropic_sdk.helper(model="claude", messages=USER, **MAX)
    assert caught.value.status_code == status
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "7"
    assert len(faults.requests) == 1


# -- across protocols ------------------------------------------------------------------------


def test_anthropic_upstream_to_the_openai_sdk(faults: Any, openai_sdk: OpenAISDK) -> None:
    reply, expected = recorded("anthropic", "text_and_tool_use")
    faults.script(reply)
    completion = openai_sdk.helper(
        model="claude", messages=USER, tools=OPENAI_TOOLS, stream_options={"include_usage": True}
    )
    message = completion.choices[0].message
    assert message.content == expected["text"]
    assert tool_calls_of(completion) == calls_of(expected)
    assert completion.choices[0].finish_reason == "tool_calls"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (472, 89)
    upstream = faults.requests[-1]
    assert upstream.path == "/v1/messages"
    assert [t["name"] for t in upstream.json()["tools"]] == ["get_weather", "get_time"]


def test_openai_upstream_to_the_anthropic_sdk(faults: Any, anthropic_sdk: AnthropicSDK) -> None:
    reply, expected = recorded("openai_chat", "parallel_tool_calls")
    faults.script(reply)
    message = anthropic_sdk.helper(model="gpt", messages=USER, tools=ANTHROPIC_TOOLS, **MAX)
    assert [block.type for block in message.content] == ["tool_use", "tool_use"]
    assert tool_uses_of(message) == calls_of(expected)
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (142, 58)
    upstream = faults.requests[-1]
    assert upstream.path == "/v1/chat/completions"
    assert [t["function"]["name"] for t in upstream.json()["tools"]] == ["get_weather", "get_time"]


# -- openai SDK, Responses API ---------------------------------------------------------------


def test_responses_stream_of_a_recorded_text(faults: Any, openai_sdk: OpenAISDK) -> None:
    reply, expected = recorded("openai_chat", "text")
    faults.script(reply)
    events = openai_sdk.response_events(model="gpt", input="Hello", instructions="Be kind.")
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == expected["text"]
    assert events[-1].response.output_text == expected["text"]
    assert events[-1].response.status == "completed"
    upstream = faults.requests[-1].json()
    assert upstream["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hello"},
    ]


def test_responses_stream_helper_with_a_function_call(faults: Any, openai_sdk: OpenAISDK) -> None:
    reply, expected = recorded("anthropic", "text_and_tool_use")
    faults.script(reply)
    response = openai_sdk.response_helper(model="claude", input="Weather?", tools=RESPONSES_TOOLS)
    assert response.output_text == expected["text"]
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == calls_of(expected)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (472, 89)
    deltas = [
        e.delta for e in openai_sdk.seen if e.type == "response.function_call_arguments.delta"
    ]
    assert json.loads("".join(deltas)) == expected["tool_calls"][0]["arguments"]


# -- a refusal: not text, in each protocol's own place ---------------------------------------

#: Each upstream's recorded refusal: OpenAI chat completions and the Responses API.
REFUSALS = {"gpt": ("openai_chat", "refusal"), "gpt-responses": ("openai_responses", "refusal")}
LOCKPICK = [{"role": "user", "content": "How do I pick my neighbour's lock?"}]


@pytest.mark.parametrize("upstream", sorted(REFUSALS))
def test_openai_chat_clients_get_a_refusal_as_delta_refusal(
    faults: Any, openai_sdk: OpenAISDK, upstream: str
) -> None:
    reply, expected = recorded(*REFUSALS[upstream])
    faults.script(reply)
    chunks = openai_sdk.chunks(model=upstream, messages=LOCKPICK)
    refused = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert refused == expected["refusal"] and chunk_text(chunks) == ""
    assert finish_reasons(chunks) == ["stop"]  # as OpenAI ends a refusal

    # The SDK's stream helper: refusal events, and message.refusal with no content.
    faults.script(reply)
    completion = openai_sdk.helper(model=upstream, messages=LOCKPICK)
    message = completion.choices[0].message
    assert (message.content, message.refusal) == (None, expected["refusal"])
    kinds = {event.type for event in openai_sdk.seen}
    assert {"refusal.delta", "refusal.done"} <= kinds and "content.delta" not in kinds
    done = [e.refusal for e in openai_sdk.seen if e.type == "refusal.done"]
    assert done == [expected["refusal"]]


def test_openai_chat_clients_get_message_refusal_not_streamed(
    faults: Any, openai_sdk: OpenAISDK
) -> None:
    _, expected = recorded("openai_chat", "refusal")
    body = openai_completion(expected)
    body["choices"][0]["message"]["refusal"] = expected["refusal"]
    faults.script(json_reply(body))
    completion = openai_sdk.completion(model="gpt", messages=LOCKPICK)
    message = completion.choices[0].message
    assert (message.content, message.refusal) == (None, expected["refusal"])
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("upstream", ["gpt", "claude"])
def test_a_refusal_sent_back_by_an_openai_client(
    faults: Any, openai_sdk: OpenAISDK, upstream: str
) -> None:
    # As the SDK hands the message back. Neither loopback upstream is OpenAI's own API, which
    # alone takes the refusal field: both get the refusal as the assistant's text.
    _, expected = recorded("openai_chat", "refusal")
    answer = (openai_chat_stream if upstream == "gpt" else anthropic_stream)(["Sorry."]).reply()
    faults.script(answer)
    refused = {"role": "assistant", "content": None, "refusal": expected["refusal"]}
    openai_sdk.chunks(model=upstream, messages=[*LOCKPICK, refused, *USER], max_tokens=50)
    sent = faults.requests[-1].json()["messages"]
    assert sent[1] == {"role": "assistant", "content": expected["refusal"]}


@pytest.mark.parametrize("upstream", sorted(REFUSALS))
def test_responses_clients_get_refusal_events(
    faults: Any, openai_sdk: OpenAISDK, upstream: str
) -> None:
    reply, expected = recorded(*REFUSALS[upstream])
    faults.script(reply)
    events = openai_sdk.response_events(model=upstream, input=LOCKPICK)
    kinds = [event.type for event in events]
    assert "response.output_text.delta" not in kinds
    deltas = [e.delta for e in events if e.type == "response.refusal.delta"]
    assert "".join(deltas) == expected["refusal"]
    assert [e.refusal for e in events if e.type == "response.refusal.done"] == [expected["refusal"]]
    assert kinds[-1] == "response.completed"

    faults.script(reply)
    response = openai_sdk.response_helper(model=upstream, input=LOCKPICK)
    (item,) = response.output
    assert item.type == "message" and response.output_text == ""
    assert [(part.type, part.refusal) for part in item.content] == [
        ("refusal", expected["refusal"])
    ]
    assert response.status == "completed"

    # Handed back as the SDK gives it (the output item itself): kept a refusal, and sent to
    # this upstream as the assistant's text.
    faults.script(openai_chat_stream(["Sorry."]).reply())
    again = [*LOCKPICK, item.model_dump(exclude_none=True), {"role": "user", "content": "Why?"}]
    openai_sdk.response_events(model="gpt", input=again)
    sent = faults.requests[-1].json()["messages"]
    assert sent[1] == {"role": "assistant", "content": expected["refusal"]}


def test_responses_clients_get_a_refusal_part_not_streamed(
    faults: Any, openai_sdk: OpenAISDK
) -> None:
    _, expected = recorded("openai_chat", "refusal")
    body = openai_completion(expected)
    body["choices"][0]["message"]["refusal"] = expected["refusal"]
    faults.script(json_reply(body))
    response = openai_sdk.run(
        lambda client: client.responses.create(model="gpt", input=LOCKPICK),
        lambda client: client.responses.create(model="gpt", input=LOCKPICK),
    )
    (item,) = response.output
    assert [(part.type, part.refusal) for part in item.content] == [
        ("refusal", expected["refusal"])
    ]


@pytest.mark.parametrize("upstream", sorted(REFUSALS))
def test_anthropic_clients_get_stop_reason_refusal(
    faults: Any, anthropic_sdk: AnthropicSDK, upstream: str
) -> None:
    # The Messages API has no field for a refusal's text: a text block of its own carries it,
    # and stop_reason says it is a refusal.
    reply, expected = recorded(*REFUSALS[upstream])
    faults.script(reply)
    events = anthropic_sdk.events(model=upstream, messages=LOCKPICK, **MAX)
    stops = [e.delta.stop_reason for e in events if e.type == "message_delta"]
    assert stops == ["refusal"]
    faults.script(reply)
    message = anthropic_sdk.helper(model=upstream, messages=LOCKPICK, **MAX)
    assert message.stop_reason == "refusal"
    assert [block.type for block in message.content] == ["text"]
    assert text_of(message) == expected["refusal"] == "".join(anthropic_sdk.seen)


def test_anthropic_clients_get_stop_reason_refusal_not_streamed(
    faults: Any, anthropic_sdk: AnthropicSDK
) -> None:
    _, expected = recorded("openai_chat", "refusal")
    body = openai_completion(expected)
    body["choices"][0]["message"]["refusal"] = expected["refusal"]
    faults.script(json_reply(body))
    message = anthropic_sdk.message(model="gpt", messages=LOCKPICK, **MAX)
    assert message.stop_reason == "refusal"
    assert text_of(message) == expected["refusal"]


# -- a tool round trip -----------------------------------------------------------------------

RESULTS = {"get_weather": "21 degrees and sunny", "get_time": "14:05"}


def script_tool_turns(faults: Any, upstream: str) -> dict[str, Any]:
    """The upstream's two turns, in its own format: recorded tool calls, then an answer."""
    if upstream == "gpt":
        first, expected = recorded("openai_chat", "parallel_tool_calls")
        answer = openai_chat_stream(["It is ", "sunny."]).reply()
    else:
        first, expected = recorded("anthropic", "text_and_tool_use")
        answer = anthropic_stream(["It is ", "sunny."]).reply()
    faults.script(first, answer)
    return expected


@pytest.mark.parametrize("upstream", ["gpt", "claude"])
def test_openai_tool_round_trip(faults: Any, openai_sdk: OpenAISDK, upstream: str) -> None:
    expected = script_tool_turns(faults, upstream)
    completion = openai_sdk.helper(model=upstream, messages=USER, tools=OPENAI_TOOLS)
    calls = completion.choices[0].message.tool_calls
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": completion.choices[0].message.content,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ],
        },
        *(
            {"role": "tool", "tool_call_id": c.id, "content": RESULTS[c.function.name]}
            for c in calls
        ),
    ]
    final = openai_sdk.helper(model=upstream, messages=messages, tools=OPENAI_TOOLS)
    assert final.choices[0].message.content == "It is sunny."
    sent = faults.requests[-1].json()["messages"]
    if upstream == "gpt":
        check_openai_upstream(sent, expected)
    else:
        check_anthropic_upstream(sent, expected)


@pytest.mark.parametrize("upstream", ["gpt", "claude"])
def test_anthropic_tool_round_trip(faults: Any, anthropic_sdk: AnthropicSDK, upstream: str) -> None:
    expected = script_tool_turns(faults, upstream)
    message = anthropic_sdk.helper(model=upstream, messages=USER, tools=ANTHROPIC_TOOLS, **MAX)
    uses = [block for block in message.content if block.type == "tool_use"]
    messages = [
        *USER,
        {"role": "assistant", "content": message.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": RESULTS[use.name]}
                for use in uses
            ],
        },
    ]
    final = anthropic_sdk.helper(model=upstream, messages=messages, tools=ANTHROPIC_TOOLS, **MAX)
    assert text_of(final) == "It is sunny."
    sent = faults.requests[-1].json()["messages"]
    if upstream == "gpt":
        check_openai_upstream(sent, expected)
    else:
        check_anthropic_upstream(sent, expected)


def check_openai_upstream(sent: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    """The tool turn in chat completions' terms: assistant ``tool_calls``, ``tool`` messages."""
    assert sent[0] == USER[0]
    assistant = sent[1]
    assert assistant["role"] == "assistant"
    assert [
        (c["id"], c["type"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in assistant["tool_calls"]
    ] == [(i, "function", n, a) for i, n, a in calls_of(expected)]
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": i, "content": RESULTS[n]} for i, n, _ in calls_of(expected)
    ]


def check_anthropic_upstream(sent: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    """The tool turn in Anthropic's terms: ``tool_use`` blocks, then one user message holding
    every ``tool_result``."""
    assert len(sent) == 3
    assert sent[0]["role"] == "user"
    assistant, results = sent[1], sent[2]
    assert assistant["role"] == "assistant"
    text = "".join(b["text"] for b in assistant["content"] if b["type"] == "text")
    assert text == expected["text"]
    uses = [b for b in assistant["content"] if b["type"] == "tool_use"]
    assert [(b["id"], b["name"], b["input"]) for b in uses] == calls_of(expected)
    assert results["role"] == "user"
    got = [(b["type"], b["tool_use_id"], b["content"]) for b in results["content"]]
    assert got == [("tool_result", i, RESULTS[n]) for i, n, _ in calls_of(expected)]


# -- the bundled model -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """One gateway serving the bundled model for the module: it loads once."""
    store: Path = tmp_path_factory.mktemp("sdk-conversations") / "store.db"
    config = GatewayConfig(
        routes={"local": Route(name="local", provider="local")},
        default="local",
        conversation_store=store,
    )
    with run_gateway(config) as running:
        yield running


PROMPT = [{"role": "user", "content": "Name three colours."}]


@pytest.mark.model
def test_model_openai_stream_usage_matches_the_whole_answer(
    local_gateway: RunningGateway, mode: str
) -> None:
    sdk = OpenAISDK(local_gateway.url, mode)
    params: dict[str, Any] = {
        "model": "local",
        "messages": PROMPT,
        "max_tokens": 12,
        "temperature": 0,
        "seed": 7,
    }
    chunks = sdk.chunks(**params, stream_options={"include_usage": True})
    whole = sdk.completion(**params)
    text = chunk_text(chunks)
    assert text.strip()
    assert finish_reasons(chunks)[0] in ("stop", "length")
    usage = chunks[-1].usage
    assert usage.prompt_tokens == whole.usage.prompt_tokens > 0
    assert usage.completion_tokens == whole.usage.completion_tokens > 0
    assert text == whole.choices[0].message.content
    assert finish_reasons(chunks)[0] == whole.choices[0].finish_reason


@pytest.mark.model
def test_model_anthropic_stream_helper(local_gateway: RunningGateway, mode: str) -> None:
    sdk = AnthropicSDK(local_gateway.url, mode)
    message = sdk.helper(model="local", messages=PROMPT, max_tokens=12)
    assert "".join(sdk.seen).strip()
    assert text_of(message) == "".join(sdk.seen)
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0
    assert 0 < message.usage.output_tokens <= 12


@pytest.mark.model
def test_model_openai_stream_helper_gets_the_tool_call_it_named(
    local_gateway: RunningGateway, mode: str
) -> None:
    # The bundled model calls tools in process: a request naming the tool gets that call,
    # its arguments streamed in pieces, and whole JSON the SDK's helper parses by the schema.
    sdk = OpenAISDK(local_gateway.url, mode)
    completion = sdk.helper(
        model="local",
        messages=USER,
        max_tokens=200,
        tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "get_time" and call.id
    assert set(call.function.parsed_arguments) == {"timezone", "format"}
    pieces = [e for e in sdk.seen if e.type == "tool_calls.function.arguments.delta"]
    assert len(pieces) > 1  # streamed, not sent whole at the end
    assert "".join(e.arguments_delta for e in pieces) == call.function.arguments


@pytest.mark.model
def test_model_anthropic_stream_gets_the_tool_call_it_named(
    local_gateway: RunningGateway, mode: str
) -> None:
    events = AnthropicSDK(local_gateway.url, mode).events(
        model="local",
        messages=USER,
        max_tokens=200,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "tool", "name": "get_time"},
    )
    (start,) = [e for e in events if e.type == "content_block_start"]
    assert start.content_block.type == "tool_use" and start.content_block.name == "get_time"
    pieces = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(pieces) > 1  # streamed, not sent whole at the end
    assert set(json.loads("".join(pieces))) == {"timezone", "format"}
    (delta,) = [e for e in events if e.type == "message_delta"]
    assert delta.delta.stop_reason == "tool_use"


# -- prompt caching: markers in, cached tokens out -------------------------------------------

EPHEMERAL = {"type": "ephemeral"}
CONTRACT = "<the contract> " * 40


def test_anthropic_cache_control_reaches_an_anthropic_upstream(
    faults: Any, anthropic_sdk: AnthropicSDK
) -> None:
    reply, expected = recorded("anthropic", "prompt_cache")
    faults.script(reply)
    system = [
        {"type": "text", "text": "You review contracts."},
        {"type": "text", "text": CONTRACT, "cache_control": EPHEMERAL},
    ]
    tools = [{**ANTHROPIC_TOOLS[0]}, {**ANTHROPIC_TOOLS[1], "cache_control": EPHEMERAL}]
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What does clause 4.2 say?", "cache_control": EPHEMERAL}
            ],
        }
    ]
    message = anthropic_sdk.helper(
        model="claude", system=system, tools=tools, messages=messages, **MAX
    )
    upstream = faults.requests[-1].json()
    # Each breakpoint where the client put it: not flattened away, not dropped.
    assert upstream["system"] == system
    assert [tool.get("cache_control") for tool in upstream["tools"]] == [None, EPHEMERAL]
    assert upstream["messages"] == messages
    # Usage as Anthropic counts it: the uncached input, and the cache's reads and writes.
    assert text_of(message) == expected["text"]
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (1000, 50)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (5000, 2000)


def test_anthropic_clients_get_the_cache_counts_not_streamed(
    faults: Any, anthropic_sdk: AnthropicSDK
) -> None:
    _, expected = recorded("anthropic", "prompt_cache")
    faults.script(json_reply(anthropic_message(expected)))
    message = anthropic_sdk.message(model="claude", messages=USER, **MAX)
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (1000, 50)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (5000, 2000)


def test_openai_upstream_cached_tokens_to_the_anthropic_sdk(
    faults: Any, anthropic_sdk: AnthropicSDK
) -> None:
    # OpenAI's prompt_tokens (2,006) holds the 1,920 cached: Anthropic's input_tokens is the rest.
    reply, _ = recorded("openai_chat", "prompt_cache")
    faults.script(reply)
    events = anthropic_sdk.events(model="gpt", messages=USER, **MAX)
    start, delta = events[0].message.usage, events[-2].usage
    assert (delta.input_tokens, delta.cache_read_input_tokens, delta.output_tokens) == (
        86,
        1920,
        300,
    )
    assert start.input_tokens == 0  # the upstream's usage comes at its end
    # An OpenAI upstream gets no Anthropic markers: it caches by itself.
    anthropic_sdk.seen = []
    faults.script(recorded("openai_chat", "prompt_cache")[0])
    system = [{"type": "text", "text": CONTRACT, "cache_control": EPHEMERAL}]
    anthropic_sdk.helper(model="gpt", system=system, messages=USER, **MAX)
    assert "cache_control" not in json.dumps(faults.requests[-1].json())


def test_openai_chat_cached_tokens_and_prompt_cache_key(faults: Any, openai_sdk: OpenAISDK) -> None:
    reply, _ = recorded("openai_chat", "prompt_cache")
    faults.script(reply)
    completion = openai_sdk.helper(
        model="gpt",
        messages=USER,
        prompt_cache_key="contract-review",
        stream_options={"include_usage": True},
    )
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (2006, 300)
    assert usage.prompt_tokens_details.cached_tokens == 1920
    assert usage.completion_tokens_details.reasoning_tokens == 192
    assert faults.requests[-1].json()["prompt_cache_key"] == "contract-review"


def test_anthropic_upstream_cached_tokens_to_the_openai_sdk(
    faults: Any, openai_sdk: OpenAISDK
) -> None:
    reply, _ = recorded("anthropic", "prompt_cache")
    faults.script(reply)
    completion = openai_sdk.helper(
        model="claude",
        messages=USER,
        prompt_cache_key="contract-review",
        stream_options={"include_usage": True},
    )
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (8000, 50)
    assert usage.prompt_tokens_details.cached_tokens == 5000
    # Anthropic takes no prompt_cache_key: it is not sent there (it would be refused).
    assert "prompt_cache_key" not in faults.requests[-1].json()


def test_responses_cached_tokens_and_prompt_cache_key(faults: Any, openai_sdk: OpenAISDK) -> None:
    reply, _ = recorded("openai_responses", "prompt_cache")
    faults.script(reply)
    response = openai_sdk.response_helper(
        model="gpt-responses", input="What does clause 4.2 say?", prompt_cache_key="contract-review"
    )
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (2006, 300, 2306)
    assert usage.input_tokens_details.cached_tokens == 1920
    assert usage.output_tokens_details.reasoning_tokens == 192
    assert faults.requests[-1].json()["prompt_cache_key"] == "contract-review"


def test_responses_clients_get_anthropic_cache_reads_and_writes(
    faults: Any, openai_sdk: OpenAISDK
) -> None:
    reply, _ = recorded("anthropic", "prompt_cache")
    faults.script(reply)
    events = openai_sdk.response_events(model="claude", input="What does clause 4.2 say?")
    usage = events[-1].response.usage
    assert (usage.input_tokens, usage.output_tokens) == (8000, 50)
    assert usage.input_tokens_details.cached_tokens == 5000
