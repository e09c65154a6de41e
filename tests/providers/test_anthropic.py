"""The Anthropic provider against recorded transcripts replayed over loopback HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

import spout
from helpers import (
    Cut,
    Runner,
    check_outputs,
    comparable,
    json_reply,
    made,
    raised_on_start,
    stream_text,
    usage_counts,
)
from replay_server import CUTS, WIRE, ReplayServer, Reply, transcript
from spout import (
    Finish,
    ModelCapability,
    ReasoningDelta,
    Response,
    TextDelta,
    Tool,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    create_llm,
)

CASES = sorted(
    path.name.removesuffix(".expected.json")
    for path in (WIRE / "anthropic").glob("*.expected.json")
)


def anthropic(server: ReplayServer, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here (they are tested in tests/test_retries.py).
    config.setdefault("max_retries", 0)
    config.setdefault("api_key", "sk-ant-test")
    return made(create_llm("anthropic", model="claude-sonnet-4-5", base_url=server.url, **config))


def event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def text_stream(*texts: str, stop_reason: str | None = "end_turn", end: bool = True) -> bytes:
    """A Messages API stream of one text block, as Anthropic frames it."""
    body = event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_x",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 1},
            },
        },
    )
    body += event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for text in texts:
        body += event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            },
        )
    if end:
        body += event("content_block_stop", {"type": "content_block_stop", "index": 0})
        body += event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 7},
            },
        )
        body += event("message_stop", {"type": "message_stop"})
    return body


def headers_of(request: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def check_response(response: Response, expected: dict[str, Any]) -> None:
    """The rebuilt response, field by field, against a transcript's expected result."""
    assert response.text == expected["text"]
    assert [
        {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_raw": c.arguments_raw}
        for c in response.tool_calls
    ] == expected["tool_calls"]
    if expected["error"] is None:
        assert response.finish_reason == expected["finish_reason"]
        assert response.raw_finish_reason == expected["finish_reason_raw"]
    else:
        assert response.finish_reason is None  # the error, not a Finish, ended it
    assert usage_counts(response) == expected["usage"]
    assert response.reasoning == expected.get("reasoning", "")
    assert response.reasoning_signature == expected.get("reasoning_signature")
    assert response.id is not None and "WIRE" in response.id
    assert response.model is not None and response.model.startswith("claude-")


@pytest.mark.parametrize("case", CASES)
def test_transcript(replay: ReplayServer, runner: Runner, case: str, cut: Cut) -> None:
    body, expected = transcript("anthropic", case)
    replay.replies = [Reply(chunks=cut(body))]
    if expected["error"] is None:
        streamed = runner.events(anthropic(replay))
        check_response(streamed.response, expected)
        check_outputs(streamed.response, expected, streamed.events)
        return
    with pytest.raises(spout.ProviderError) as caught:
        runner.events(anthropic(replay))
    exc = caught.value
    assert (exc.error_type, exc.message) == (
        expected["error"]["type"],
        expected["error"]["message"],
    )
    assert exc.provider == "anthropic" and exc.status_code is None  # no status was sent
    assert exc.partial is not None
    check_response(exc.partial, expected)


def test_overloaded_error_in_stream_is_an_overloaded_error(
    replay: ReplayServer, runner: Runner
) -> None:
    body, _ = transcript("anthropic", "overloaded_error")
    replay.replies = [Reply(chunks=[body])]  # the text and the error in one read
    with pytest.raises(spout.OverloadedError) as caught:
        runner.text(anthropic(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "Once upon a time, in a château"


@pytest.mark.parametrize(
    ("error_type", "error_class"),
    [
        ("overloaded_error", spout.OverloadedError),
        ("rate_limit_error", spout.RateLimitError),
        ("api_error", spout.InternalServerError),
        ("invalid_request_error", spout.BadRequestError),
        ("authentication_error", spout.AuthenticationError),
        ("permission_error", spout.PermissionDeniedError),
        ("not_found_error", spout.NotFoundError),
        ("timeout_error", spout.ServiceUnavailableError),
        ("some_future_error", spout.ProviderError),
    ],
)
def test_error_events_raise_the_matching_error(
    replay: ReplayServer, error_type: str, error_class: type[spout.ProviderError]
) -> None:
    body = text_stream("Half", end=False) + event(
        "error", {"type": "error", "error": {"type": error_type, "message": "went wrong"}}
    )
    replay.replies = [Reply(chunks=CUTS["mid_line"](body))]
    with pytest.raises(error_class) as caught:
        stream_text(anthropic(replay), "sync")
    assert type(caught.value) is error_class
    assert caught.value.error_type == error_type
    assert caught.value.body == {"type": error_type, "message": "went wrong"}
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


def test_tool_call_events_in_order(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("anthropic", "text_and_tool_use")
    replay.replies = [Reply(chunks=CUTS["every_byte"](body))]
    events = runner.events(anthropic(replay)).events
    tool_events = [e for e in events if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))]
    assert tool_events[0] == ToolCallStart(0, "toolu_01WIRE00000000000000001", "get_weather")
    assert isinstance(tool_events[-1], ToolCallEnd) and tool_events[-1].index == 0
    joined = "".join(e.arguments for e in tool_events if isinstance(e, ToolCallDelta))
    assert joined == expected["tool_calls"][0]["arguments_raw"]
    # Usage replaces: message_start's count first, the cumulative message_delta one last.
    usages = [e for e in events if isinstance(e, Usage)]
    assert [(u.input_tokens, u.output_tokens) for u in usages] == [(472, 2), (472, 89)]
    assert usages[-1].extras["cache_read_input_tokens"] == 0
    assert events[-1] == Finish("tool_calls", "tool_use")


def test_signature_arrives_whole(replay: ReplayServer) -> None:
    body, expected = transcript("anthropic", "thinking_signature")
    replay.replies = [Reply(chunks=CUTS["every_byte"](body))]
    events = list(anthropic(replay).generate_stream("hi").events())
    signatures = [e.signature for e in events if isinstance(e, ReasoningDelta) and e.signature]
    assert signatures == [expected["reasoning_signature"]]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "refusal"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_stop_reasons(replay: ReplayServer, stop_reason: str | None, finish_reason: str) -> None:
    replay.replies = [Reply(chunks=[text_stream("ok", stop_reason=stop_reason)])]
    response = stream_text(anthropic(replay), "sync").response
    assert (response.finish_reason, response.raw_finish_reason) == (finish_reason, stop_reason)


def test_a_refusal_stop_reason_is_a_finish_reason_only(
    replay: ReplayServer, runner: Runner
) -> None:
    # Claude marks a refusal in stop_reason alone; what it wrote before is its text, and
    # there is no refusal text to report (Response.refusal stays None).
    replay.replies = [Reply(chunks=[text_stream("I can", stop_reason="refusal")])]
    result = runner.text(anthropic(replay))
    response = result.response
    assert "".join(result.chunks) == response.text == "I can"
    assert (response.finish_reason, response.raw_finish_reason) == ("refusal", "refusal")
    assert response.refusal is None


def test_stream_cut_before_its_end_is_an_interruption(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("anthropic", "text_and_tool_use")
    cut = body[: body.index(b"event: content_block_stop")]  # ends cleanly, but early
    replay.replies = [Reply(chunks=[cut])]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(anthropic(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "I'll look up the weather in Oslo for you."


def test_message_delta_without_message_stop_is_an_interruption(
    replay: ReplayServer, runner: Runner
) -> None:
    body = text_stream("All of it")
    replay.replies = [Reply(chunks=[body[: body.index(b"event: message_stop")]])]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(anthropic(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "All of it"


def test_connection_dropped_mid_stream_is_an_interruption(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = [Reply(chunks=[text_stream("Half", end=False)], abort=True)]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(anthropic(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


def test_request_body_and_headers(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("anthropic", "text_and_tool_use")
    replay.replies = [Reply(chunks=[body])]
    llm = anthropic(replay, headers={"X-Title": "spout tests"}, temperature=0.5)
    runner.text(
        llm,
        "Count from 1 to 5",
        system_prompt="Be brief.",
        max_tokens=20,
        stop=["6"],
        top_p=0.9,
        top_k=40,
    )
    request = replay.requests[-1]
    assert request.method == "POST" and request.path == "/v1/messages"
    headers = headers_of(request)
    assert headers["x-api-key"] == "sk-ant-test"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert headers["x-title"] == "spout tests"
    assert "authorization" not in headers
    assert request.json() == {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Count from 1 to 5"}],
        "max_tokens": 20,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["6"],
        "top_k": 40,
        "stream": True,
    }


def test_max_tokens_is_always_sent(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[text_stream("ok")])]
    stream_text(anthropic(replay), "sync", "hi", stop="END")
    sent = replay.requests[-1].json()
    assert sent["max_tokens"] == 4096
    assert sent["stop_sequences"] == ["END"]
    assert "system" not in sent


def test_seed_is_refused_before_any_request(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [Reply(chunks=[text_stream("ok")])]
    with pytest.raises(spout.ConfigurationError, match="Anthropic does not take seed"):
        runner.text(anthropic(replay), "hi", seed=7)
    with pytest.raises(spout.ConfigurationError, match="seed"):
        runner.generate(anthropic(replay), "hi", seed=7)
    assert replay.requests == []


def test_messages_are_translated(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[text_stream("ok")])]
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Bergen?", "name": "ann"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "4 °C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "7 °C"},
        {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
    ]
    stream_text(
        anthropic(replay), "sync", None, messages=history, system_prompt="Answer in English."
    )
    sent = replay.requests[-1].json()
    assert sent["system"] == "Answer in English.\n\nBe brief."
    assert sent["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Bergen"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4 °C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "7 °C"},
            ],
        },
        {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
    ]


# The Messages API response for the same turn as each transcript (its final message).
MESSAGES = {
    "thinking_signature": {
        "id": "msg_01WIREthinking000000000001",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": None, "signature": None},
            {"type": "text", "text": None},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 58,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 172,
            "service_tier": "standard",
        },
    },
    "text_and_tool_use": {
        "id": "msg_01WIRE0000000000000000001",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "text", "text": None},
            {
                "type": "tool_use",
                "id": "toolu_01WIRE00000000000000001",
                "name": "get_weather",
                "input": None,
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 472,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 89,
            "service_tier": "standard",
        },
    },
}


def message_for(case: str) -> dict[str, Any]:
    _, expected = transcript("anthropic", case)
    message: dict[str, Any] = json.loads(json.dumps(MESSAGES[case]))
    for block in message["content"]:
        if block["type"] == "thinking":
            block["thinking"] = expected["reasoning"]
            block["signature"] = expected["reasoning_signature"]
        elif block["type"] == "text":
            block["text"] = expected["text"]
        elif block["type"] == "tool_use":
            block["input"] = expected["tool_calls"][0]["arguments"]
    return message


def compared(response: Response) -> dict[str, Any]:
    # A tool call is compared by id, name and arguments: the whole message has no raw JSON text.
    return comparable(response, "reasoning_signature") | {
        "tool_calls": [(c.id, c.name, c.arguments) for c in response.tool_calls]
    }


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_not_streamed_gives_the_streamed_response(
    replay: ReplayServer, runner: Runner, case: str
) -> None:
    body, _ = transcript("anthropic", case)
    replay.replies = [Reply(chunks=[body]), json_reply(message_for(case))]
    streamed = runner.events(anthropic(replay)).response
    whole = runner.generate(anthropic(replay))
    assert compared(whole) == compared(streamed)
    # The whole response carries tool input as an object: there is no JSON text to keep.
    assert all(call.arguments_raw is None for call in whole.tool_calls)
    sent = replay.requests[-1]
    assert sent.path == "/v1/messages" and "stream" not in sent.json()
    assert sent.json()["max_tokens"] == 4096


@pytest.mark.parametrize(
    ("status", "error_type", "error_class"),
    [
        (400, "invalid_request_error", spout.BadRequestError),
        (401, "authentication_error", spout.AuthenticationError),
        (403, "permission_error", spout.PermissionDeniedError),
        (404, "not_found_error", spout.NotFoundError),
        (413, "request_too_large", spout.BadRequestError),
        (429, "rate_limit_error", spout.RateLimitError),
        (500, "api_error", spout.InternalServerError),
        (529, "overloaded_error", spout.OverloadedError),
    ],
)
def test_http_errors_raise_before_streaming(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    error_type: str,
    error_class: type[spout.ProviderError],
) -> None:
    error = {
        "type": "error",
        "error": {"type": error_type, "message": f"status {status} for you"},
        "request_id": "req_011WIREbody",
    }
    replay.replies = [json_reply(error, status, {"request-id": "req_011WIRE", "retry-after": "7"})]
    exc = raised_on_start(runner, anthropic(replay), error_class)
    assert exc.status_code == status
    assert exc.request_id == "req_011WIRE"
    assert exc.body == error["error"]
    assert exc.error_type == error_type
    assert f"status {status} for you" in str(exc)
    if status == 429:
        assert exc.retry_after == 7.0


def test_request_id_from_the_body_when_no_header(replay: ReplayServer) -> None:
    error = {
        "type": "error",
        "error": {"type": "api_error", "message": "Internal server error"},
        "request_id": "req_011WIREbody",
    }
    replay.replies = [Reply(status=500, chunks=[json.dumps(error).encode()])]
    with pytest.raises(spout.InternalServerError) as caught:
        anthropic(replay).generate("hi")
    assert caught.value.request_id == "req_011WIREbody"


def test_error_body_that_is_not_json(replay: ReplayServer) -> None:
    replay.replies = [
        Reply(
            status=502, chunks=[b"<html>Bad Gateway</html>"], headers={"Content-Type": "text/html"}
        )
    ]
    with pytest.raises(spout.ServiceUnavailableError, match="Bad Gateway"):
        anthropic(replay).generate("hi")


def test_context_window_error_is_recognized(replay: ReplayServer) -> None:
    error = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 208736 tokens > 200000 maximum",
        },
    }
    replay.replies = [Reply(status=400, chunks=[json.dumps(error).encode()])]
    with pytest.raises(spout.ContextWindowExceededError):
        anthropic(replay).generate("x" * 10)


def test_a_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(spout.ConfigurationError, match="ANTHROPIC_API_KEY"):
        create_llm("anthropic", model="claude-sonnet-4-5")
    with pytest.raises(spout.ConfigurationError, match="ANTHROPIC_API_KEY"):
        create_llm("anthropic", model="claude-sonnet-4-5", base_url="http://127.0.0.1:9")


def test_key_and_base_url_from_environment(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", replay.url + "/")
    replay.replies = [Reply(chunks=[text_stream("ok")])]
    assert create_llm("anthropic:claude-haiku-4-5").generate_stream("hi").response.text == "ok"
    request = replay.requests[-1]
    assert request.path == "/v1/messages"
    assert headers_of(request)["x-api-key"] == "sk-ant-from-env"


def test_capabilities() -> None:
    llm = create_llm("anthropic", model="claude-sonnet-4-5", api_key="sk-ant-test")
    assert llm.get_capabilities() == {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: True,
        ModelCapability.TOOL_STREAMING: True,
        ModelCapability.USAGE_IN_STREAM: True,
        ModelCapability.REASONING: True,
        ModelCapability.SYSTEM_PROMPT: True,
        ModelCapability.VISION: True,
        ModelCapability.PDF_INPUT: True,
        ModelCapability.AUDIO_INPUT: False,
    }


def message_from_stream(body: bytes) -> dict[str, Any]:
    """The whole message a Messages API stream builds (as the SDK's accumulator folds it):
    the response not streamed for the same turn."""
    message: dict[str, Any] = {}
    inputs: dict[int, str] = {}
    for block_text in body.decode().split("\n\n"):
        data_lines = [line[6:] for line in block_text.splitlines() if line.startswith("data: ")]
        if not data_lines:
            continue
        event = json.loads(data_lines[0])
        kind = event["type"]
        if kind == "message_start":
            message = event["message"]
        elif kind == "content_block_start":
            message["content"].append(event["content_block"])
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "citations_delta":
                block.setdefault("citations", []).append(delta["citation"])
            elif delta["type"] == "input_json_delta":
                inputs[event["index"]] = inputs.get(event["index"], "") + delta["partial_json"]
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"] = {**message["usage"], **event["usage"]}
    for index, text in inputs.items():
        message["content"][index]["input"] = json.loads(text)
    return message


@pytest.mark.parametrize("case", ["citations", "web_search"])
def test_not_streamed_gives_the_streamed_outputs(
    replay: ReplayServer, runner: Runner, case: str
) -> None:
    body, expected = transcript("anthropic", case)
    replay.replies = [Reply(chunks=[body]), json_reply(message_from_stream(body))]
    streamed = runner.events(anthropic(replay)).response
    whole = runner.generate(anthropic(replay))
    also = ("files", "citations", "raw_events")
    assert compared(whole) | comparable(whole, *also) == compared(streamed) | comparable(
        streamed, *also
    )
    check_outputs(whole, expected)
    # A server tool's block comes whole, its streamed input joined and parsed.
    if case == "web_search":
        call = whole.raw_events[0].data
        assert (call["name"], call["input"]) == ("web_search", {"query": "emperor penguin height"})


@pytest.mark.parametrize("delta_repeats_input", [True, False])
def test_prompt_cache_counts_the_whole_input(
    replay: ReplayServer, runner: Runner, delta_repeats_input: bool
) -> None:
    # Issue #21's measured case: 1,000 uncached, 5,000 read from the cache, 2,000 written.
    body, expected = transcript("anthropic", "prompt_cache")
    if not delta_repeats_input:
        # Older streams' message_delta carries output_tokens alone: message_start's counts stay.
        body = body.replace(
            b'"usage":{"input_tokens":1000,"cache_creation_input_tokens":2000,'
            b'"cache_read_input_tokens":5000,"output_tokens":50}',
            b'"usage":{"output_tokens":50}',
        )
    replay.replies = [Reply(chunks=CUTS["mid_line"](body)), json_reply(message_from_stream(body))]
    streamed = runner.events(anthropic(replay))
    usages = [e for e in streamed.events if isinstance(e, Usage)]
    assert [(u.input_tokens, u.cache_read_tokens, u.cache_write_tokens) for u in usages] == [
        (8000, 5000, 2000),
        (8000, 5000, 2000),
    ]
    usage = streamed.response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (8000, 50, 8050)
    assert usage.reasoning_tokens is None  # Anthropic does not count thinking apart
    # The provider's own figures stay in extras, under its names.
    raw = expected["usage_raw"]
    for key in ("cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation"):
        assert usage.extras[key] == raw[key]
    whole = runner.generate(anthropic(replay))
    assert whole.usage == usage


def test_a_citation_spans_the_text_block_it_supports(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("anthropic", "citations")
    replay.replies = [Reply(chunks=[body])]
    streamed = runner.events(anthropic(replay))
    response = streamed.response
    spans = [response.text[c.start or 0 : c.end] for c in response.citations]
    assert spans == [
        "emperor penguins breed in the Antarctic winter",
        "stand about 115 cm tall",
        "the males keep the egg warm for some 65 days",
    ]
    assert [c.raw["type"] for c in response.citations] == [
        "char_location",
        "page_location",
        "content_block_location",
    ]
    # Each citation is sent once its block's text is all out: right after that text.
    events = streamed.events
    first = events.index(response.citations[0])
    assert "".join(e.text for e in events[:first] if isinstance(e, TextDelta)).endswith(spans[0])


def test_unknown_deltas_are_raw_events_and_redacted_thinking_is_kept(
    replay: ReplayServer, runner: Runner
) -> None:
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3WIRE"}
    body = (
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_WIRE_r",'
        '"type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],'
        '"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
        f'event: content_block_start\ndata: {{"type":"content_block_start","index":0,'
        f'"content_block":{json.dumps(redacted)}}}\n\n'
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        'event: content_block_start\ndata: {"type":"content_block_start","index":1,'
        '"content_block":{"type":"text","text":""}}\n\n'
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,'
        '"delta":{"type":"shiny_new_delta","value":1}}\n\n'
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        '"usage":{"output_tokens":9}}\n\n'
        'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    ).encode()
    replay.replies = [Reply(chunks=[body])]
    response = runner.events(anthropic(replay)).response
    assert response.raw_events == (
        spout.RawEvent("shiny_new_delta", {"type": "shiny_new_delta", "value": 1}),
    )
    # Redacted thinking is kept, to go back as it came.
    assert response.reasoning_blocks == ({"redacted": "EmwKAhgBEgy3WIRE"},)
    # Nothing but content spout does not know: not a quiet, empty "stop".
    assert (response.text, response.finish_reason) == ("", "unrecognized")
    assert response.raw_finish_reason == "end_turn"


# -- prompt-cache markers ------------------------------------------------------------------------

EPHEMERAL = {"type": "ephemeral"}
CONTRACT = "<the contract>" * 50


def test_cache_control_reaches_anthropic_unchanged(replay: ReplayServer, runner: Runner) -> None:
    # On a system block, a user block, a message (litellm's place for it), a tool result and
    # a Tool, in each of the shapes a caller may give a tool: each marker goes where it was.
    replay.replies = [Reply(chunks=[text_stream("ok")])]
    messages: list[dict[str, Any]] = [
        {
            "role": "system",
            "content": [{"type": "text", "text": CONTRACT, "cache_control": EPHEMERAL}],
        },
        {"role": "user", "content": "Summarise clause 1.", "cache_control": EPHEMERAL},
        {"role": "assistant", "content": "Clause 1 names the parties."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And clause 2?"},
                {"type": "text", "text": "Briefly.", "cache_control": {**EPHEMERAL, "ttl": "1h"}},
            ],
        },
    ]
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    tools = [
        Tool("clause", "A clause by number", schema, cache_control=EPHEMERAL),
        {
            "type": "function",
            "function": {"name": "party", "parameters": schema},
            "cache_control": EPHEMERAL,
        },
        {"name": "term", "input_schema": schema, "cache_control": EPHEMERAL},
    ]
    runner.text(anthropic(replay), None, messages=messages, tools=tools)
    sent = replay.requests[-1].json()
    assert sent["system"] == [{"type": "text", "text": CONTRACT, "cache_control": EPHEMERAL}]
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Summarise clause 1.", "cache_control": EPHEMERAL}
            ],
        },
        {"role": "assistant", "content": "Clause 1 names the parties."},
        messages[3],
    ]
    assert sent["tools"] == [
        {
            "name": "clause",
            "description": "A clause by number",
            "input_schema": schema,
            "cache_control": EPHEMERAL,
        },
        {"name": "party", "input_schema": schema, "cache_control": EPHEMERAL},
        {"name": "term", "input_schema": schema, "cache_control": EPHEMERAL},
    ]
    # The caller's messages are left as they were.
    assert messages[1] == {
        "role": "user",
        "content": "Summarise clause 1.",
        "cache_control": EPHEMERAL,
    }


def test_cache_control_on_a_tool_result_marks_its_block(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[text_stream("ok")])]
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Read it."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "t1", "function": {"name": "read", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": CONTRACT, "cache_control": EPHEMERAL},
    ]
    stream_text(anthropic(replay), "sync", None, messages=history)
    sent = replay.requests[-1].json()
    assert sent["messages"][-1] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t1",
                "content": CONTRACT,
                "cache_control": EPHEMERAL,
            }
        ],
    }
