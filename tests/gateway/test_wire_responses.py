"""The Responses API wire protocol, checked by the official openai SDK itself.

The SDK talks to the protocol module alone (no rest of the gateway) over a real loopback
connection (tests/gateway/sdk_loopback.py): its real request bodies are parsed, and every event
the encoder makes is read by its own SSE decoder and event types. The whole gateway, with the
SDKs, is tested in test_sdks.py.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter
from sdk_loopback import http_client
from wire_support import Handler, answering, encoded, endpoint

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
from spout.gateway._responses import PROTOCOL
from spout.gateway._wire import Request, RequestError
from spout.providers._base import Call
from spout.providers.anthropic import AnthropicProvider
from spout.providers.openai import OpenAIProvider
from spout.providers.openai_responses import OpenAIResponsesProvider

RESPONSE_ID = "resp_gw0001"
EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)

TEXT: list[Event] = [
    ResponseStart("x", "y"),
    TextDelta("Hel"),
    TextDelta("lo"),
    Usage(9, 2),
    Finish("stop", "stop"),
]
USER = "Hi"


def recorded(folder: str, case: str) -> tuple[list[Event], dict[str, Any]]:
    body, expected = transcript(folder, case)
    provider = {
        "anthropic": AnthropicProvider,
        "openai_chat": OpenAIProvider,
        "openai_responses": OpenAIResponsesProvider,
    }[folder]("m", api_key="k")
    parser = provider.new_parser(Call(messages=[]))
    return parser.feed(body) + parser.close(), expected


REQUEST = PROTOCOL.parse({"model": "m", "input": USER, "stream": True})


def frames_of(
    events: list[Event], error: BaseException | None = None, request: Request = REQUEST
) -> list[bytes]:
    return encoded(PROTOCOL, request, events, error, response_id=RESPONSE_ID)


def validated(frames: list[bytes]) -> list[Any]:
    """Each frame as the SDK's event type; its ``event:`` name is its type, numbered in order."""
    events = []
    for n, frame in enumerate(frames):
        name, data = frame[:-2].split(b"\n")
        event = EVENT.validate_python(json.loads(data[6:]))
        assert name == b"event: " + event.type.encode()
        assert event.sequence_number == n
        events.append(event)
    return events


def client(answer: Handler, seen: list[Request] | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-gw",
        base_url=endpoint(PROTOCOL, answer, seen) + "/v1",
        max_retries=0,
        http_client=http_client(),
        _strict_response_validation=True,
    )


def streaming(events: list[Event], error: BaseException | None = None) -> Handler:
    return answering(PROTOCOL, events, error, response_id=RESPONSE_ID)


TOOLS = [
    {"type": "function", "name": n, "parameters": {"type": "object"}, "strict": False}
    for n in ("get_weather", "get_time")
]


# --- the stream ------------------------------------------------------------------------------


def test_text_stream_events_in_order() -> None:
    events = validated(frames_of(TEXT))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    completed = events[-1].response
    assert completed.id == RESPONSE_ID and completed.status == "completed"
    assert completed.output_text == "Hello"
    usage = completed.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (9, 2, 11)


def test_recorded_responses_stream_through_the_sdk_stream_helper() -> None:
    events, expected = recorded("openai_responses", "text")
    with client(streaming(events)).responses.stream(model="gw-model", input=USER) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == expected["text"] and len(deltas) > 1
    assert final.output_text == expected["text"]
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (36, 10)


def test_parallel_tool_calls_from_an_openai_chat_stream() -> None:
    events, expected = recorded("openai_chat", "parallel_tool_calls")
    with client(streaming(events)).responses.stream(
        model="gw-model",
        input=USER,
        tools=TOOLS,
    ) as stream:
        done = [e for e in stream if e.type == "response.function_call_arguments.done"]
        final = stream.get_final_response()
    assert [json.loads(e.arguments) for e in done] == [
        c["arguments"] for c in expected["tool_calls"]
    ]
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        (c["id"], c["name"], c["arguments_raw"]) for c in expected["tool_calls"]
    ]
    assert final.tools[0].name == "get_weather"


def test_text_then_tool_call_from_an_anthropic_stream() -> None:
    events, expected = recorded("anthropic", "text_and_tool_use")
    sdk_events = validated(frames_of(events))
    final = sdk_events[-1].response
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output_text == expected["text"]
    assert json.loads(final.output[1].arguments) == expected["tool_calls"][0]["arguments"]
    # A message is done before the call is added.
    kinds = [e.type for e in sdk_events]
    assert kinds.index("response.output_text.done") < kinds.index(
        "response.function_call_arguments.delta"
    )


def test_overlapping_calls_and_a_call_sent_whole() -> None:
    events: list[Event] = [
        ToolCallStart(0, "a", "f"),
        ToolCallStart(1, "b", "g"),
        ToolCallDelta(1, '{"y": 2}'),
        ToolCallDelta(0, '{"x": 1}'),
        ToolCallEnd(1, ToolCall("b", "g", {"y": 2}, '{"y": 2}')),
        ToolCallEnd(0, ToolCall("a", "f", {"x": 1}, '{"x": 1}')),
        ToolCallEnd(2, ToolCall("c", "h", {"z": 3})),
        Finish("tool_calls"),
    ]
    with client(streaming(events)).responses.stream(model="m", input=USER) as stream:
        final = stream.get_final_response()
    assert [(i.call_id, json.loads(i.arguments)) for i in final.output] == [
        ("a", {"x": 1}),
        ("b", {"y": 2}),
        ("c", {"z": 3}),
    ]


def test_reasoning_is_a_summary_before_the_message() -> None:
    events: list[Event] = [
        ReasoningDelta("Think"),
        ReasoningDelta("ing."),
        ReasoningDelta(signature="sig"),
        TextDelta("42"),
        Finish("stop"),
    ]
    final = validated(frames_of(events))[-1].response
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Thinking."
    assert message.type == "message" and final.output_text == "42"


def test_a_cut_answer_is_incomplete() -> None:
    final = validated(frames_of([TextDelta("x"), Finish("length")]))[-1]
    assert final.type == "response.incomplete"
    assert final.response.incomplete_details.reason == "max_output_tokens"


def test_an_error_inside_the_stream_is_a_failed_response() -> None:
    error = spout.RateLimitError("slow down")
    events = validated(frames_of([TextDelta("part")], error))
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert (failed.response.error.code, failed.response.error.message) == (
        "rate_limit_exceeded",
        "slow down",
    )
    # What came before the error is closed and kept.
    assert failed.response.output_text == "part"
    with client(streaming([TextDelta("part")], error)).responses.stream(
        model="m", input=USER
    ) as stream:
        kinds = [e.type for e in stream]
        assert kinds[-1] == "response.failed"
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()


def test_an_error_from_an_encoder_that_never_started_is_an_error_event() -> None:
    encoder = PROTOCOL.encoder(REQUEST, response_id=RESPONSE_ID, model="m")
    (event,) = validated(encoder.error(RequestError("events expired", status=410)))
    assert (event.type, event.message, event.code) == ("error", "events expired", "invalid_prompt")


# --- not streamed ------------------------------------------------------------------------------


def test_non_streamed_response_through_the_sdk() -> None:
    events: list[Event] = [
        ReasoningDelta("hmm"),
        TextDelta("Looking."),
        ToolCallStart(0, "call_1", "get_weather"),
        ToolCallDelta(0, '{"city": "Oslo"}'),
        ToolCallEnd(0, ToolCall("call_1", "get_weather", {"city": "Oslo"}, '{"city": "Oslo"}')),
        Usage(20, 7),
        Finish("tool_calls"),
    ]
    response = client(streaming(events)).responses.create(
        model="gw-model",
        input=USER,
        instructions="Be brief.",
        tools=TOOLS,
        max_output_tokens=99,
        temperature=0.3,
    )
    assert isinstance(response, SDKResponse)
    assert response.id == RESPONSE_ID and response.status == "completed"
    assert [i.type for i in response.output] == ["reasoning", "message", "function_call"]
    assert response.output_text == "Looking."
    assert response.output[2].arguments == '{"city": "Oslo"}'
    assert response.usage is not None and response.usage.total_tokens == 27
    assert (response.instructions, response.max_output_tokens, response.temperature) == (
        "Be brief.",
        99,
        0.3,
    )


# --- requests ----------------------------------------------------------------------------------


def test_a_full_request_in_spouts_terms() -> None:
    seen: list[Request] = []
    items = [
        {"role": "developer", "content": "Use tools."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Weather?"},
                {"type": "input_image", "image_url": "data:,", "detail": "low"},
            ],
        },
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "noon"}],
        },
    ]
    client(streaming(TEXT), seen).responses.create(
        model="alias",
        input=items,
        instructions="Be brief.",
        tools=TOOLS,
        tool_choice={"type": "function", "name": "get_time"},
        max_output_tokens=50,
        temperature=0.2,
        top_p=0.9,
        store=False,
        metadata={"k": "v"},
        parallel_tool_calls=True,
        text={
            "format": {
                "type": "json_schema",
                "name": "w",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
    )
    request = seen[0]
    assert request.model == "alias" and not request.stream
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use tools."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "data:,", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
    ]
    assert request.tools == [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("get_weather", "get_time")
    ]
    assert request.params == {
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "tool_choice": "get_time",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
        },
    }


def test_an_earlier_refusal_part_is_kept_as_a_refusal() -> None:
    request = PROTOCOL.parse(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Pick a lock?"},
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": "Well."},
                        {"type": "refusal", "refusal": "No."},
                    ],
                },
                {"role": "user", "content": "Why?"},
            ],
        }
    )
    assert request.messages[1] == {"role": "assistant", "content": "Well.", "refusal": "No."}


def test_a_refusal_is_a_message_with_a_refusal_part() -> None:
    frames = validated(frames_of([TextDelta("Well. "), RefusalDelta("No"), RefusalDelta(".")]))
    kinds = [event.type for event in frames]
    assert kinds.count("response.output_item.added") == 2  # the text's message, the refusal's
    deltas = [event.delta for event in frames if event.type == "response.refusal.delta"]
    assert deltas == ["No", "."]
    final = frames[-1].response
    assert [[part.type for part in item.content] for item in final.output] == [
        ["output_text"],
        ["refusal"],
    ]
    assert final.output[1].content[0].refusal == "No." and final.output_text == "Well. "


def test_function_calls_without_text_make_their_own_assistant_turn() -> None:
    request = PROTOCOL.parse(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Hi"},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            ],
        }
    )
    assert request.messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ({"format": {"type": "text"}}, None),
        ({"format": {"type": "json_object"}}, {"type": "json_object"}),
        ({}, None),
    ],
)
def test_text_formats(text: Any, expected: Any) -> None:
    request = PROTOCOL.parse({"model": "m", "input": "x", "text": text})
    assert request.params.get("response_format") == expected


def test_reasoning_passes_on() -> None:
    request = PROTOCOL.parse({"model": "m", "input": "x", "reasoning": {"effort": "low"}})
    assert request.params == {"reasoning": {"effort": "low"}}


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (None, "must be a JSON object", None),
        ({"model": "m"}, "input must be a string or a non-empty list", "input"),
        ({"model": "m", "input": []}, "input must be", "input"),
        ({"model": "m", "input": [3]}, r"input\[0\] must be an object", "input"),
        ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "role must be", "input"),
        (
            {"model": "m", "input": [{"role": "user", "content": 4}]},
            "content must be a string",
            "input",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_video"}]}]},
            "'input_video' is not supported",
            "input",
        ),
        (
            {"model": "m", "input": [{"type": "function_call", "name": "f"}]},
            "needs a call_id",
            "input",
        ),
        (
            {"model": "m", "input": [{"role": "assistant", "content": [{"type": "refusal"}]}]},
            "a refusal part needs its refusal text",
            "input",
        ),
        (
            {
                "model": "m",
                "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}],
            },
            "arguments must be a JSON string",
            "input",
        ),
        (
            {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
            "needs a call_id",
            "input",
        ),
        (
            {"model": "m", "input": [{"type": "item_reference", "id": "x"}]},
            "'item_reference' is not supported",
            "input",
        ),
        (
            {"model": "m", "input": "x", "previous_response_id": "resp_1"},
            "previous_response_id is not supported",
            "previous_response_id",
        ),
        ({"model": "m", "input": "x", "background": True}, "background", "background"),
        (
            {"model": "m", "input": "x", "instructions": 1},
            "instructions must be a string",
            "instructions",
        ),
        (
            {"model": "m", "input": "x", "tools": [{"type": "web_search"}]},
            "only function tools are supported",
            "tools",
        ),
        (
            {"model": "m", "input": "x", "tools": [{"type": "function"}]},
            "must have a name",
            "tools",
        ),
        ({"model": "m", "input": "x", "tool_choice": "required"}, "needs tools", "tool_choice"),
        (
            {
                "model": "m",
                "input": "x",
                "tools": TOOLS,
                "tool_choice": {"type": "function", "name": "nope"},
            },
            "not among the tools",
            "tool_choice",
        ),
        ({"model": "m", "input": "x", "max_output_tokens": 0}, "at least 1", "max_output_tokens"),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}},
            "schema must be",
            "text",
        ),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}},
            "text.format.type must be",
            "text",
        ),
        ({"model": "m", "input": "x", "temperature": "warm"}, "must be a number", "temperature"),
        ({"model": "m", "input": "x", "seed": 1}, "unsupported field 'seed'", "seed"),
    ],
)
def test_bad_requests(body: Any, message: str, param: str | None) -> None:
    with pytest.raises(RequestError, match=message) as caught:
        PROTOCOL.parse(body)
    assert caught.value.status == 400 and caught.value.param == param


@pytest.mark.parametrize(
    ("exc", "status", "sdk_class"),
    [
        (RequestError("bad", param="input"), 400, openai.BadRequestError),
        (spout.RateLimitError("slow"), 429, openai.RateLimitError),
        (spout.NotFoundError("model"), 404, openai.NotFoundError),
        (spout.TotalTimeout("late"), 504, openai.InternalServerError),
    ],
)
def test_error_bodies_are_openai_errors(exc: BaseException, status: int, sdk_class: type) -> None:
    got, body = PROTOCOL.error_body(exc)
    assert got == status and set(body["error"]) == {"message", "type", "param", "code"}

    def answer(request: Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    with pytest.raises(sdk_class):
        client(answer).responses.create(model="m", input=USER)
