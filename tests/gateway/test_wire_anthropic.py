"""The Messages API wire protocol, checked by the official anthropic SDK itself.

The SDK talks to the protocol module alone (no rest of the gateway) over a real loopback
connection (tests/gateway/sdk_loopback.py): its real request bodies are parsed, and the events
the encoder makes are read by its own SSE decoder, event types and ``messages.stream()``
accumulator. The whole gateway, with the SDKs, is tested in test_sdks.py.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter
from sdk_loopback import http_client
from wire_support import Handler, answering, call_events, encoded, endpoint

import spout
from replay_server import transcript
from spout import (
    Finish,
    ReasoningDelta,
    RefusalDelta,
    ResponseStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from spout._events import Event
from spout.gateway._anthropic import PROTOCOL
from spout.gateway._wire import Request, RequestError
from spout.providers._base import Call
from spout.providers.anthropic import AnthropicProvider
from spout.providers.openai import OpenAIProvider

RESPONSE_ID = "msg_gw0001"
EVENT = TypeAdapter(RawMessageStreamEvent)

TEXT: list[Event] = [
    ResponseStart("x", "y"),
    Usage(11, 1),
    TextDelta("Hel"),
    TextDelta("lo"),
    Usage(11, 4),
    Finish("stop", "end_turn"),
]


def recorded(folder: str, case: str) -> tuple[list[Event], dict[str, Any]]:
    """A recorded stream as the events spout's own provider makes of it."""
    body, expected = transcript(folder, case)
    provider = (
        AnthropicProvider("claude", api_key="k")
        if folder == "anthropic"
        else OpenAIProvider("gpt", api_key="k")
    )
    parser = provider.new_parser(Call(messages=[]))
    return parser.feed(body) + parser.close(), expected


REQUEST = PROTOCOL.parse(
    {
        "model": "m",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
)


def frames_of(
    events: list[Event], error: BaseException | None = None, request: Request = REQUEST
) -> list[bytes]:
    return encoded(PROTOCOL, request, events, error, response_id=RESPONSE_ID)


def parsed(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in frames:
        assert frame.endswith(b"\n\n")
        name, data = frame[:-2].split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        payload = json.loads(data[6:])
        assert payload["type"] == name[7:].decode()
        out.append((payload["type"], payload))
    return out


def accumulate(frames: list[bytes]) -> Message:
    """The SDK's accumulator over the frames, each validated as the SDK's event type."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for kind, payload in parsed(frames):
        if kind == "ping":
            continue
        event = EVENT.validate_python(payload)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def client(answer: Handler, seen: list[Request] | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="sk-gw",
        base_url=endpoint(PROTOCOL, answer, seen),
        max_retries=0,
        http_client=http_client(),
        _strict_response_validation=True,
    )


def streaming(events: list[Event], error: BaseException | None = None) -> Handler:
    return answering(PROTOCOL, events, error, response_id=RESPONSE_ID)


USER = [{"role": "user", "content": "Hi"}]


# --- the stream ------------------------------------------------------------------------------


def counts(input_tokens: int, output_tokens: int, read: int = 0, write: int = 0) -> dict[str, int]:
    """A Messages API usage: input_tokens the part after the last cache breakpoint, as
    Anthropic counts it, the cache's reads and writes beside it (0 when none was said)."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": output_tokens,
    }


def test_text_stream_event_order_and_usage() -> None:
    events = parsed(frames_of(TEXT))
    assert [k for k, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == RESPONSE_ID and start["model"] == "gw-model"
    assert start["usage"] == counts(0, 0)  # not known yet
    assert events[-2][1]["usage"] == counts(11, 4)
    message = accumulate(frames_of(TEXT))
    assert message.content[0].type == "text" and message.content[0].text == "Hello"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 4)


def test_text_stream_through_the_sdk_stream_helper() -> None:
    with client(streaming(TEXT)).messages.stream(
        model="m",
        max_tokens=10,
        messages=USER,
    ) as stream:
        text = list(stream.text_stream)
        message = stream.get_final_message()
    assert text == ["Hel", "lo"]
    assert message.id == RESPONSE_ID and message.model == "gw-model"
    assert message.usage.output_tokens == 4 and message.stop_reason == "end_turn"


def test_message_start_carries_input_tokens_when_the_encoder_starts_late() -> None:
    # The gateway may hold start() back until the first event: usage that came before the
    # first content is then in message_start, as Anthropic sends it.
    encoder = PROTOCOL.encoder(REQUEST, response_id="r", model="m")
    frames = encoder.feed(Usage(30, 1)) + encoder.feed(TextDelta("x"))
    assert parsed(frames)[0][1]["message"]["usage"] == counts(30, 1)
    assert encoder.start() == []


def test_recorded_text_and_tool_use_through_the_sdk() -> None:
    events, expected = recorded("anthropic", "text_and_tool_use")
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    with client(streaming(events)).messages.stream(
        model="m",
        max_tokens=100,
        messages=USER,
        tools=tools,
    ) as stream:
        kinds = [e.type for e in stream]
        message = stream.get_final_message()
    assert "input_json" in kinds
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[0].text == expected["text"]
    call = message.content[1]
    assert call.type == "tool_use"
    assert (call.id, call.name, call.input) == (
        expected["tool_calls"][0]["id"],
        "get_weather",
        expected["tool_calls"][0]["arguments"],
    )
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (472, 89)


def test_parallel_tool_calls_from_an_openai_stream() -> None:
    events, expected = recorded("openai_chat", "parallel_tool_calls")
    message = accumulate(frames_of(events))
    blocks: list[Any] = list(message.content)
    assert [(b.type, b.id, b.name, b.input) for b in blocks] == [
        ("tool_use", c["id"], c["name"], c["arguments"]) for c in expected["tool_calls"]
    ]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (142, 58)


def test_interleaved_calls_become_one_block_after_another() -> None:
    events: list[Event] = [
        TextDelta("Both."),
        ToolCallStart(0, "a", "f"),
        ToolCallStart(1, "b", "g"),
        ToolCallDelta(1, '{"y"'),
        ToolCallDelta(0, '{"x": 1}'),
        ToolCallDelta(1, ": 2}"),
        ToolCallEnd(1, ToolCall("b", "g", {"y": 2}, '{"y": 2}')),
        ToolCallEnd(0, ToolCall("a", "f", {"x": 1}, '{"x": 1}')),
        Finish("tool_calls"),
    ]
    frames = frames_of(events)
    opened = [p["index"] for k, p in parsed(frames) if k == "content_block_start"]
    closed = [p["index"] for k, p in parsed(frames) if k == "content_block_stop"]
    assert opened == closed == [0, 1, 2]
    message = accumulate(frames)
    assert [getattr(b, "input", None) for b in message.content] == [None, {"x": 1}, {"y": 2}]


def test_a_call_sent_whole() -> None:
    events: list[Event] = [
        ToolCallStart(0, "c", "f"),
        ToolCallEnd(0, ToolCall("c", "f", {"k": [1]})),
        Finish("tool_calls"),
    ]
    message = accumulate(frames_of(events))
    assert message.content[0].input == {"k": [1]}


def test_thinking_with_its_signature_then_text() -> None:
    events: list[Event] = [
        ReasoningDelta("Let me "),
        ReasoningDelta("think."),
        ReasoningDelta(signature="EqQBsig"),
        TextDelta("42"),
        Finish("stop", "end_turn"),
    ]
    message = accumulate(frames_of(events))
    thinking, text = message.content
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("Let me think.", "EqQBsig")
    assert text.type == "text" and text.text == "42"


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        (Finish("length"), "max_tokens"),
        (Finish("stop", "stop_sequence"), "stop_sequence"),
        (Finish("stop", "stop"), "end_turn"),
        (Finish("tool_calls", "tool_calls"), "tool_use"),
        (Finish("refusal"), "refusal"),
    ],
)
def test_stop_reasons(finish: Finish, stop_reason: str) -> None:
    assert accumulate(frames_of([TextDelta("x"), finish])).stop_reason == stop_reason


def test_a_refusal_after_text_is_a_text_block_of_its_own() -> None:
    # No field for a refusal's text in the Messages API: its own text block, and the stop
    # reason that says what it is.
    message = accumulate(
        frames_of(
            [
                TextDelta("Let me see. "),
                RefusalDelta("I can't"),
                RefusalDelta(" help."),
                Finish("refusal", "stop"),
            ]
        )
    )
    assert [(b.type, b.text) for b in message.content if b.type == "text"] == [
        ("text", "Let me see. "),
        ("text", "I can't help."),
    ]
    assert message.stop_reason == "refusal"


def test_an_error_inside_the_stream_raises_in_the_sdk() -> None:
    error = spout.OverloadedError("upstream is overloaded")
    frames = frames_of([TextDelta("part")], error)
    kind, payload = parsed(frames)[-1]
    assert kind == "error"
    assert payload == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "upstream is overloaded"},
    }
    assert "message_stop" not in [k for k, _ in parsed(frames)]
    sdk = client(streaming([TextDelta("part")], error))
    seen = []
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):  # noqa: SIM117
        with sdk.messages.stream(model="m", max_tokens=10, messages=USER) as stream:
            for text in stream.text_stream:
                seen.append(text)
    assert seen == ["part"]


# --- not streamed ------------------------------------------------------------------------------


def test_non_streamed_message_through_the_sdk() -> None:
    events = [
        ReasoningDelta("hmm"),
        ReasoningDelta(signature="sig"),
        TextDelta("Looking."),
        *call_events(0, "toolu_1", "get_weather", ['{"city": "Oslo"}']),
        Usage(20, 7),
        Finish("tool_calls"),
    ]
    message = client(streaming(events)).messages.create(
        model="m",
        max_tokens=10,
        messages=USER,
    )
    assert message.id == RESPONSE_ID and message.type == "message"
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[2].input == {"city": "Oslo"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (20, 7)


# --- requests ----------------------------------------------------------------------------------


def test_a_full_request_in_spouts_terms() -> None:
    seen: list[Request] = []
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}, image]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "use the tool", "signature": "sig1"},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [{"type": "text", "text": "no city"}],
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    tools = [
        {
            "name": "get_weather",
            "description": "Weather now",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    client(streaming(TEXT), seen).messages.create(
        model="claude-x",
        max_tokens=300,
        system=[{"type": "text", "text": "Be brief."}],
        messages=messages,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        stop_sequences=["END"],
        metadata={"user_id": "u"},
        cache_control={"type": "ephemeral"},
        # Sampling settings this SDK version no longer names; older clients send them.
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40},
    )
    request = seen[0]
    assert request.model == "claude-x" and request.stream is False
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        # The image as spout's portable part, for the upstream's adapter to write its way.
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "reasoning": "use the tool",
            "reasoning_signature": "sig1",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "no city", "is_error": True},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert request.tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": tools[0]["input_schema"],
                "description": "Weather now",
            },
        }
    ]
    assert request.params == {
        "max_tokens": 300,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["END"],
        "tool_choice": "get_weather",
    }
    assert request.extras == {"max_tokens": 300}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "f", "disable_parallel_tool_use": True}, "f"),
    ],
)
def test_tool_choice_forms(choice: Any, expected: str) -> None:
    request = PROTOCOL.parse(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": USER,
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": choice,
        }
    )
    assert request.params["tool_choice"] == expected


def test_server_tools_thinking_and_output_format_pass_on() -> None:
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    request = PROTOCOL.parse(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": USER,
            "tools": [search],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "output_config": {
                "format": {"type": "json_schema", "schema": {"type": "object"}},
                "effort": "low",
            },
        }
    )
    assert request.tools == [search]
    assert request.params["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert request.params["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}},
    }
    older = PROTOCOL.parse(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": USER,
            "output_format": {"type": "json_schema", "schema": {"type": "object"}},
        }
    )
    assert older.params["response_format"] == request.params["response_format"]
    assert (
        "thinking"
        not in PROTOCOL.parse(
            {"model": "m", "max_tokens": 5, "messages": USER, "thinking": {"type": "disabled"}}
        ).params
    )


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ("hi", "must be a JSON object", None),
        ({"model": "m", "messages": USER}, "max_tokens is required", "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": USER}, "at least 1", "max_tokens"),
        (
            {"model": "m", "max_tokens": "9", "messages": USER},
            "max_tokens must be an integer",
            "max_tokens",
        ),
        ({"model": "m", "max_tokens": 9}, "messages must be a non-empty list", "messages"),
        (
            {"model": "m", "max_tokens": 9, "messages": [{"role": "system", "content": "x"}]},
            r"role must be 'user' or 'assistant'",
            "messages",
        ),
        (
            {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": 3}]},
            r"messages\[0\].content must be a string or a list",
            "messages",
        ),
        (
            {
                "model": "m",
                "max_tokens": 9,
                "messages": [{"role": "user", "content": [{"type": "tool_result"}]}],
            },
            "tool_use_id must be a string",
            "messages",
        ),
        (
            {
                "model": "m",
                "max_tokens": 9,
                "messages": [{"role": "assistant", "content": [{"type": "tool_use", "input": {}}]}],
            },
            "needs an id and a name",
            "messages",
        ),
        (
            {
                "model": "m",
                "max_tokens": 9,
                "messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}],
            },
            "'server_tool_use' is not supported",
            "messages",
        ),
        (
            {"model": "m", "max_tokens": 9, "messages": USER, "system": 5},
            "system must be a string",
            "system",
        ),
        (
            {"model": "m", "max_tokens": 9, "messages": USER, "tools": [{"name": "f"}]},
            "input_schema must be",
            "tools",
        ),
        (
            {"model": "m", "max_tokens": 9, "messages": USER, "tool_choice": {"type": "any"}},
            "'any' needs tools",
            "tool_choice",
        ),
        (
            {
                "model": "m",
                "max_tokens": 9,
                "messages": USER,
                "tool_choice": {"type": "tool", "name": "g"},
            },
            "not among the tools",
            "tool_choice",
        ),
        (
            {"model": "m", "max_tokens": 9, "messages": USER, "tool_choice": "auto"},
            "tool_choice must be",
            "tool_choice",
        ),
        (
            {"model": "m", "max_tokens": 9, "messages": USER, "stop_sequences": "x"}
            | {"stop_sequences": [1]},
            "stop_sequences must be",
            "stop_sequences",
        ),
        (
            {"model": "m", "max_tokens": 9, "messages": USER, "mcp_servers": []}
            | {"mcp_servers": [{}]},
            "mcp_servers is not supported",
            "mcp_servers",
        ),
        ({"model": "m", "max_tokens": 9, "messages": USER, "n": 2}, "unsupported field 'n'", "n"),
        (
            {"model": "m", "max_tokens": 9, "messages": USER, "thinking": True},
            "thinking must be an object",
            "thinking",
        ),
    ],
)
def test_bad_requests(body: Any, message: str, param: str | None) -> None:
    with pytest.raises(RequestError, match=message) as caught:
        PROTOCOL.parse(body)
    assert caught.value.status == 400 and caught.value.param == param


def test_a_bad_request_is_a_bad_request_error_in_the_sdk() -> None:
    sdk = client(streaming(TEXT))
    with pytest.raises(anthropic.BadRequestError, match="tool_use_id") as caught:
        sdk.messages.create(
            model="m",
            max_tokens=5,
            messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 5}]}],
        )
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


# --- errors before any byte --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "error_type", "sdk_class"),
    [
        (RequestError("bad"), 400, "invalid_request_error", anthropic.BadRequestError),
        (RequestError("too big", status=413), 413, "request_too_large", anthropic.APIStatusError),
        (
            spout.ContextWindowExceededError("prompt is too long"),
            400,
            "invalid_request_error",
            anthropic.BadRequestError,
        ),
        (
            spout.AuthenticationError("key"),
            401,
            "authentication_error",
            anthropic.AuthenticationError,
        ),
        (
            spout.PermissionDeniedError("no"),
            403,
            "permission_error",
            anthropic.PermissionDeniedError,
        ),
        (spout.NotFoundError("model"), 404, "not_found_error", anthropic.NotFoundError),
        (spout.RateLimitError("slow"), 429, "rate_limit_error", anthropic.RateLimitError),
        (spout.OverloadedError("busy"), 529, "overloaded_error", anthropic.OverloadedError),
        (
            spout.ServiceUnavailableError("down", status_code=503),
            529,
            "overloaded_error",
            anthropic.OverloadedError,
        ),
        (
            spout.InternalServerError("boom", status_code=500),
            502,
            "api_error",
            anthropic.InternalServerError,
        ),
        (spout.IdleTimeout("quiet"), 504, "timeout_error", anthropic.InternalServerError),
        (RuntimeError("secret"), 500, "api_error", anthropic.InternalServerError),
    ],
)
def test_error_bodies(
    exc: BaseException, status: int, error_type: str, sdk_class: type[anthropic.APIStatusError]
) -> None:
    got, body = PROTOCOL.error_body(exc)
    assert got == status
    assert body["type"] == "error" and body["error"]["type"] == error_type
    assert "secret" not in body["error"]["message"]

    def answer(request: Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    with pytest.raises(sdk_class) as caught:
        client(answer).messages.create(model="m", max_tokens=5, messages=USER)
    assert caught.value.status_code == status
