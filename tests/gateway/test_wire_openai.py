"""The chat completions wire protocol, checked by the official openai SDK itself.

The SDK talks to the protocol module alone (no rest of the gateway) over a real loopback
connection (tests/gateway/sdk_loopback.py): its real request bodies are parsed, and the frames
the encoder makes are read by its own SSE decoder, chunk types and stream accumulator. The
whole gateway, with the SDKs, is tested in test_sdks.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx2
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from sdk_loopback import http_client
from wire_support import Handler, answering, call_events, encoded, endpoint, numbered, response_of

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
from spout.compat.chunks import ChunkEncoder, _sync_chunks
from spout.gateway._openai import PROTOCOL, classify_error, models_body
from spout.gateway._wire import Request, RequestError
from spout.providers._base import Call
from spout.providers.openai import OpenAIProvider

RESPONSE_ID = "chatcmpl-gw0001"

TEXT: list[Event] = [
    ResponseStart("upstream-id", "upstream-model"),
    TextDelta("Hel"),
    TextDelta("lo, "),
    TextDelta("wörld"),
    Usage(12, 3),
    Finish("stop", "stop"),
]


def recorded(case: str) -> tuple[list[Event], dict[str, Any]]:
    """A recorded OpenAI stream as the events spout's own provider makes of it."""
    body, expected = transcript("openai_chat", case)
    parser = OpenAIProvider("gpt-4o-mini", api_key="sk-test").new_parser(Call(messages=[]))
    return parser.feed(body) + parser.close(), expected


def encode(request: Request, events: list[Event], error: BaseException | None = None) -> bytes:
    """What the gateway sends: the encoder's frames, each numbered with an ``id:`` line."""
    return numbered(encoded(PROTOCOL, request, events, error, response_id=RESPONSE_ID))


def client(answer: Handler, seen: list[Request] | None = None) -> openai.OpenAI:
    """An SDK client whose requests the protocol module parses and ``answer`` answers."""

    return openai.OpenAI(
        api_key="sk-gw",
        base_url=endpoint(PROTOCOL, answer, seen) + "/v1",
        max_retries=0,
        http_client=http_client(),
        _strict_response_validation=True,
    )


def streaming(events: list[Event], error: BaseException | None = None) -> Handler:
    return answering(PROTOCOL, events, error, response_id=RESPONSE_ID)


USER = [{"role": "user", "content": "Hi"}]


def chunks_of(data: bytes) -> list[dict[str, Any]]:
    payloads = [line[6:] for line in data.split(b"\n") if line.startswith(b"data: ")]
    assert payloads[-1] == b"[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


# --- the stream, read by the SDK --------------------------------------------------------------


def test_text_stream_through_the_sdk_stream_helper() -> None:
    with client(streaming(TEXT)).chat.completions.stream(
        model="gw-model", messages=USER, stream_options={"include_usage": True}
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert deltas == ["Hel", "lo, ", "wörld"]
    assert final.id == RESPONSE_ID and final.model == "gw-model"
    choice = final.choices[0]
    assert choice.message.content == "Hello, wörld"
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (12, 3)
    assert final.usage.total_tokens == 15


def test_plain_stream_chunks_validate_and_usage_comes_only_when_asked() -> None:
    raw = encode(PROTOCOL.parse({"model": "m", "messages": USER, "stream": True}), TEXT)
    chunks = [ChatCompletionChunk.model_validate(c) for c in chunks_of(raw)]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == RESPONSE_ID for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.usage is None for c in chunks)

    with_usage = PROTOCOL.parse(
        {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    )
    last = ChatCompletionChunk.model_validate(chunks_of(encode(with_usage, TEXT))[-1])
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens == 15


def test_reasoning_is_reasoning_content() -> None:
    events: list[Event] = [
        ReasoningDelta("Let me "),
        ReasoningDelta("think."),
        ReasoningDelta(signature="sig"),
        TextDelta("42"),
        Finish("stop"),
    ]
    raw = encode(PROTOCOL.parse({"model": "m", "messages": USER, "stream": True}), events)
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks_of(raw):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    message = state.get_final_completion().choices[0].message
    assert message.content == "42"
    assert getattr(message, "reasoning_content", None) == "Let me think."


def test_parallel_tool_calls_from_a_recorded_stream() -> None:
    events, expected = recorded("parallel_tool_calls")
    tools = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("get_weather", "get_time")
    ]
    seen: list[Request] = []
    sdk = client(streaming(events), seen)
    with sdk.chat.completions.stream(
        model="gw-model",
        messages=USER,
        tools=tools,
        stream_options={"include_usage": True},
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert seen[0].tools == tools
    assert [(e.index, e.name, json.loads(e.arguments)) for e in done] == [
        (i, c["name"], c["arguments"]) for i, c in enumerate(expected["tool_calls"])
    ]
    calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (c["id"], c["name"], c["arguments"]) for c in expected["tool_calls"]
    ]
    assert [c.function.arguments for c in calls] == [
        c["arguments_raw"] for c in expected["tool_calls"]
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 200


def test_recorded_text_stream() -> None:
    events, expected = recorded("text")
    sdk = client(streaming(events))
    stream = sdk.chat.completions.create(
        model="gw-model",
        messages=USER,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == expected["text"]


def test_text_then_tool_call_with_upstream_indexes_renumbered() -> None:
    # The Responses API numbers a call by its output index (1 after a message): the
    # client still sees calls 0, 1... as chat completions numbers them.
    events = [
        TextDelta("Checking."),
        *call_events(1, "call_a", "get_weather", ['{"city"', ': "Oslo"}']),
        *call_events(3, "call_b", "get_time", ["{}"]),
        Finish("tool_calls"),
    ]
    raw = encode(PROTOCOL.parse({"model": "m", "messages": USER, "stream": True}), events)
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    indexes = []
    for chunk in chunks_of(raw):
        parsed = ChatCompletionChunk.model_validate(chunk)
        state.handle_chunk(parsed)
        for choice in parsed.choices:
            indexes += [c.index for c in choice.delta.tool_calls or []]
    assert sorted(set(indexes)) == [0, 1]
    message = state.get_final_completion().choices[0].message
    assert message.content == "Checking."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("call_a", "get_weather", '{"city": "Oslo"}'),
        ("call_b", "get_time", "{}"),
    ]


def test_a_call_sent_whole_gets_its_arguments_as_json() -> None:
    # Gemini and Ollama send a call as an object: no deltas, arguments_raw None.
    events: list[Event] = [
        ToolCallStart(0, "c1", "f"),
        ToolCallEnd(0, ToolCall("c1", "f", {"x": 1})),
        Finish("tool_calls"),
    ]
    raw = encode(PROTOCOL.parse({"model": "m", "messages": USER, "stream": True}), events)
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks_of(raw):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    calls = state.get_final_completion().choices[0].message.tool_calls or []
    assert json.loads(calls[0].function.arguments) == {"x": 1}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([TextDelta("x"), Finish("length")], "length"),
        ([TextDelta("x"), Finish("content_filter")], "content_filter"),
        # A refusal with its text ends as OpenAI ends one; one marked only by a stop reason
        # (Anthropic's) is a content filter's, as compat (and litellm) maps it.
        ([RefusalDelta("I can't."), Finish("refusal")], "stop"),
        ([TextDelta("x"), Finish("refusal", "refusal")], "content_filter"),
        # An upstream that ends a call with a plain stop (Gemini): chat completions says so.
        ([*call_events(0, "c1", "f", ["{}"]), Finish("stop")], "tool_calls"),
    ],
)
def test_finish_reasons(events: list[Event], expected: str) -> None:
    raw = encode(PROTOCOL.parse({"model": "m", "messages": USER, "stream": True}), events)
    assert chunks_of(raw)[-1]["choices"][0]["finish_reason"] == expected


def said(chunks: Sequence[dict[str, Any]]) -> list[Any]:
    """What chunks say, as a client reads it: no nulls, no names of the response, no role, no
    chunk that says nothing (the gateway's opener)."""
    out = []
    for chunk in chunks:
        plain = spout.compat.OpenAIObject(chunk).model_dump(exclude_none=True)
        for choice in plain["choices"]:
            choice["delta"].pop("role", None)
            for call in choice["delta"].get("tool_calls", ()):
                if "id" not in call:
                    call.pop("type", None)  # litellm's objects keep it on every piece
        if plain["choices"] == [{"index": 0, "delta": {}}]:
            continue
        # The usage, on the chunk of its own (include_usage); litellm's objects also carry it on
        # the finish chunk, OpenAI's wire does not.
        usage = plain.get("usage") if not plain["choices"] else None
        out.append({"choices": plain["choices"], "usage": usage})
    return out


@pytest.mark.parametrize("include_usage", [False, True])
def test_compat_and_the_gateway_encode_the_same_chunks(include_usage: bool) -> None:
    # One encoder (spout.compat.chunks) behind both: the same events make the same chunks,
    # whatever each wire adds around them (litellm's null fields, the gateway's opener).
    events: list[Event] = [
        ResponseStart("up-1", "up-model"),
        TextDelta(""),
        ReasoningDelta("Hm."),
        TextDelta("Calling."),
        RefusalDelta(""),
        # A call without arguments, as Anthropic streams one: empty argument text.
        ToolCallStart(4, "c1", "now"),
        ToolCallDelta(4, ""),
        ToolCallEnd(4, ToolCall("c1", "now", {}, "")),
        *call_events(7, "c2", "get_weather", ['{"city"', ': "Oslo"}']),
        # A call sent whole (Gemini, Ollama): no start, no argument text.
        ToolCallEnd(9, ToolCall("c3", "f", {"x": 1})),
        Usage(12, 5),
        Finish("tool_calls"),
    ]
    body: dict[str, Any] = {"model": "m", "messages": USER, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    request = PROTOCOL.parse(body)
    gateway = chunks_of(encode(request, events))
    compat = list(_sync_chunks(iter(events), ChunkEncoder("m", request.messages, include_usage)))
    assert said(gateway) == said(compat)
    arguments = [
        call["function"]["arguments"]
        for chunk in gateway
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", ())
        if call["index"] == 0
    ]
    assert arguments == ["", "{}"]  # JSON text, never an empty string, for no arguments


def test_an_error_inside_the_stream_raises_in_the_sdk_with_no_done() -> None:
    error = spout.OverloadedError("upstream overloaded", provider="anthropic")
    raw = encode(
        PROTOCOL.parse({"model": "m", "messages": USER, "stream": True}),
        [TextDelta("partial")],
        error,
    )
    assert b"[DONE]" not in raw
    sdk = client(streaming([TextDelta("partial")], error))
    received = []
    with pytest.raises(openai.APIError, match="upstream overloaded") as caught:
        for chunk in sdk.chat.completions.create(
            model="m",
            messages=USER,
            stream=True,
        ):
            received += [c.delta.content for c in chunk.choices if c.delta.content]
    assert received == ["partial"]
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "server_error"


# --- not streamed ------------------------------------------------------------------------------


def test_non_streamed_body_through_the_sdk() -> None:
    events = [
        ReasoningDelta("hmm"),
        TextDelta("Let me look."),
        *call_events(0, "call_1", "get_weather", ['{"city": "Oslo"}']),
        Usage(20, 7),
        Finish("tool_calls"),
    ]
    completion = client(streaming(events)).chat.completions.create(
        model="gw-model",
        messages=USER,
    )
    assert isinstance(completion, ChatCompletion)
    assert completion.id == RESPONSE_ID and completion.object == "chat.completion"
    message = completion.choices[0].message
    assert message.content == "Let me look."
    assert getattr(message, "reasoning_content", None) == "hmm"
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("call_1", "get_weather", '{"city": "Oslo"}')
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.total_tokens == 27


def test_non_streamed_tool_calls_only_have_null_content() -> None:
    body = PROTOCOL.body(
        PROTOCOL.parse({"model": "m", "messages": USER}),
        response_of(
            [
                ToolCallStart(0, "c", "f"),
                ToolCallEnd(0, ToolCall("c", "f", {})),
                Finish("tool_calls"),
            ]
        ),
        response_id="r",
        model="m",
    )
    assert body["choices"][0]["message"]["content"] is None
    assert ChatCompletion.model_validate(body).choices[0].message.tool_calls


def test_models_body() -> None:
    page = client(streaming([])).models
    del page  # the route is the server's; the body is checked against the SDK's type here
    from openai.types import Model

    body = models_body(["a", "b"])
    assert body["object"] == "list"
    assert [Model.model_validate(m).id for m in body["data"]] == ["a", "b"]


# --- requests ----------------------------------------------------------------------------------


def test_a_full_request_in_spouts_terms() -> None:
    seen: list[Request] = []
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "d",
                "parameters": {"type": "object"},
                "strict": True,
            },
        }
    ]
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "data:,"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    client(streaming(TEXT), seen).chat.completions.create(
        model="alias",
        messages=messages,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_completion_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=["END"],
        seed=7,
        response_format={"type": "json_object"},
        user="u1",
        metadata={"k": "v"},
        store=False,
        parallel_tool_calls=True,
        n=1,
        presence_penalty=0.5,
    )
    request = seen[0]
    assert request.model == "alias" and request.stream is False
    assert request.messages[0] == {"role": "system", "content": "Be brief."}
    assert request.messages[1:] == messages[1:]
    assert request.tools == tools
    assert request.params == {
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 7,
        "tool_choice": "get_weather",
        "response_format": {"type": "json_object"},
        "presence_penalty": 0.5,
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "function": {"name": "f"}}, "f"),
    ],
)
def test_tool_choice_forms(choice: Any, expected: str) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    request = PROTOCOL.parse(
        {"model": "m", "messages": USER, "tools": tools, "tool_choice": choice}
    )
    assert request.params["tool_choice"] == expected


def test_max_tokens_json_schema_and_include_usage() -> None:
    schema = {"name": "w", "schema": {"type": "object"}, "strict": True}
    request = PROTOCOL.parse(
        {
            "model": "m",
            "messages": USER,
            "max_tokens": 9,
            "stream": True,
            "stream_options": {"include_usage": True},
            "response_format": {"type": "json_schema", "json_schema": schema},
        }
    )
    assert request.params == {
        "max_tokens": 9,
        "response_format": {"type": "json_schema", "json_schema": schema},
    }
    assert request.include_usage and request.stream
    assert (
        "response_format"
        not in PROTOCOL.parse(
            {"model": "m", "messages": USER, "response_format": {"type": "text"}}
        ).params
    )
    # include_usage means nothing without a stream.
    assert not PROTOCOL.parse(
        {"model": "m", "messages": USER, "stream_options": {"include_usage": True}}
    ).include_usage


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ([], "must be a JSON object", None),
        ({"model": "m"}, "messages must be a non-empty list", "messages"),
        ({"model": "m", "messages": []}, "messages must be a non-empty list", "messages"),
        ({"model": 3, "messages": USER}, "model must be a string", "model"),
        ({"model": "m", "messages": ["hi"]}, r"messages\[0\] must be an object", "messages"),
        (
            {"model": "m", "messages": [*USER, {"role": "assistant", "refusal": 3}]},
            r"messages\[1\].refusal must be a string or null",
            "messages",
        ),
        (
            {"model": "m", "messages": [{"role": "bot", "content": "x"}]},
            "role must be one of",
            "messages",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            r"messages\[0\].content must be a string or a list",
            "messages",
        ),
        ({"model": "m", "messages": [{"role": "user"}]}, "content must be", "messages"),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "tool_call_id",
            "messages",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]},
            r"tool_calls\[0\] must have an id and a function",
            "messages",
        ),
        ({"model": "m", "messages": USER, "n": 2}, "n must be 1", "n"),
        ({"model": "m", "messages": USER, "logprobs": True}, "logprobs", "logprobs"),
        (
            {"model": "m", "messages": USER, "functions": []} | {"functions": [{}]},
            "legacy form of tools",
            "functions",
        ),
        (
            {"model": "m", "messages": USER, "modalities": "audio"},
            "modalities must be a list of strings",
            "modalities",
        ),
        (
            {"model": "m", "messages": USER, "frobnicate": 1},
            "unsupported field 'frobnicate'",
            "frobnicate",
        ),
        (
            {"model": "m", "messages": USER, "temperature": "hot"},
            "temperature must be a number",
            "temperature",
        ),
        (
            {"model": "m", "messages": USER, "max_tokens": 1.5},
            "max_tokens must be an integer",
            "max_tokens",
        ),
        (
            {"model": "m", "messages": USER, "max_completion_tokens": 0},
            "at least 1",
            "max_completion_tokens",
        ),
        ({"model": "m", "messages": USER, "stop": [1]}, "stop must be a string or a list", "stop"),
        (
            {"model": "m", "messages": USER, "stream": "yes"},
            "stream must be true or false",
            "stream",
        ),
        (
            {"model": "m", "messages": USER, "tools": [{"type": "custom", "name": "x"}]},
            r"tools\[0\] must be a function tool",
            "tools",
        ),
        (
            {"model": "m", "messages": USER, "tools": [{"type": "function", "function": {}}]},
            r"tools\[0\].function must have a name",
            "tools",
        ),
        (
            {"model": "m", "messages": USER, "tool_choice": "required"},
            "'required' needs tools",
            "tool_choice",
        ),
        (
            {
                "model": "m",
                "messages": USER,
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "not among the tools given",
            "tool_choice",
        ),
        (
            {"model": "m", "messages": USER, "tool_choice": "any"},
            "tool_choice must be",
            "tool_choice",
        ),
        (
            {"model": "m", "messages": USER, "response_format": {"type": "xml"}},
            "response_format.type must be",
            "response_format",
        ),
        (
            {"model": "m", "messages": USER, "response_format": {"type": "json_schema"}},
            "json_schema.schema must be",
            "response_format",
        ),
    ],
)
def test_bad_requests(body: Any, message: str, param: str | None) -> None:
    with pytest.raises(RequestError, match=message) as caught:
        PROTOCOL.parse(body)
    assert caught.value.status == 400 and caught.value.param == param


def test_a_bad_request_is_a_bad_request_error_in_the_sdk() -> None:
    sdk = client(streaming(TEXT))
    with pytest.raises(openai.BadRequestError, match="n must be 1") as caught:
        sdk.chat.completions.create(model="m", messages=USER, n=3)
    assert caught.value.param == "n" and caught.value.type == "invalid_request_error"


# --- errors before any byte --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "sdk_class", "code"),
    [
        (RequestError("too big", status=413), 413, openai.APIStatusError, None),
        (spout.AuthenticationError("bad key"), 401, openai.AuthenticationError, "invalid_api_key"),
        (spout.PermissionDeniedError("no"), 403, openai.PermissionDeniedError, None),
        (spout.NotFoundError("no model"), 404, openai.NotFoundError, "not_found"),
        (spout.BadRequestError("bad"), 400, openai.BadRequestError, None),
        (
            spout.ContextWindowExceededError("too long"),
            400,
            openai.BadRequestError,
            "context_length_exceeded",
        ),
        (
            spout.RateLimitError("slow down", retry_after=3),
            429,
            openai.RateLimitError,
            "rate_limit_exceeded",
        ),
        (
            spout.ServiceUnavailableError("down", status_code=503),
            503,
            openai.InternalServerError,
            "server_overloaded",
        ),
        (spout.OverloadedError("busy"), 529, openai.InternalServerError, "server_overloaded"),
        (
            spout.InternalServerError("boom", status_code=500),
            502,
            openai.InternalServerError,
            "upstream_error",
        ),
        (spout.ConnectionError("refused"), 502, openai.InternalServerError, "upstream_error"),
        (spout.FirstTokenTimeout("slow"), 504, openai.InternalServerError, "timeout"),
        (spout.ConfigurationError("seed is not taken"), 400, openai.BadRequestError, None),
        (ValueError("secret internals"), 500, openai.InternalServerError, None),
    ],
)
def test_error_bodies(
    exc: BaseException, status: int, sdk_class: type[openai.APIStatusError], code: str | None
) -> None:
    got_status, body = PROTOCOL.error_body(exc)
    assert got_status == status
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert "secret" not in body["error"]["message"]

    def answer(request: Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    with pytest.raises(sdk_class) as caught:
        client(answer).chat.completions.create(model="m", messages=USER)
    assert caught.value.status_code == status


def test_classify_error_keeps_the_status_of_a_request_error() -> None:
    assert classify_error(RequestError("no", status=429))[:2] == (429, "rate_limit")
