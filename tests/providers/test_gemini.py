"""The Gemini provider against recorded transcripts replayed over loopback HTTP."""

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
    stream,
    stream_text,
    usage_counts,
)
from replay_server import CUTS, WIRE, ReplayServer, Reply, transcript
from spout import (
    Finish,
    ModelCapability,
    Response,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    create_llm,
)

CASES = sorted(
    path.name.removesuffix(".expected.json") for path in (WIRE / "gemini").glob("*.expected.json")
)
STREAM_PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


def gemini(server: ReplayServer, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here (they are tested in tests/test_retries.py).
    config.setdefault("max_retries", 0)
    config.setdefault("api_key", "AIza-test")
    return made(create_llm("gemini", model="gemini-2.5-flash", base_url=server.url, **config))


def sse(*payloads: Any) -> bytes:
    """An SSE body of JSON payloads, as Gemini frames it (CRLF line ends)."""
    return b"".join(b"data: " + json.dumps(p).encode() + b"\r\n\r\n" for p in payloads)


def chunk(*parts: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
        **extra,
    }


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
    for key, value in (expected.get("usage_raw") or {}).items():
        if key not in ("promptTokenCount", "candidatesTokenCount"):
            assert response.usage.extras[key] == value
    assert response.reasoning == expected.get("reasoning", "")
    assert response.reasoning_signature == expected.get("reasoning_signature")
    assert response.id is not None and "WIRE" in response.id
    assert response.model is not None and response.model.startswith("gemini-")


@pytest.mark.parametrize("case", CASES)
def test_transcript(replay: ReplayServer, runner: Runner, case: str, cut: Cut) -> None:
    body, expected = transcript("gemini", case)
    replay.replies = [Reply(chunks=cut(body))]
    if expected["error"] is None:
        streamed = runner.events(gemini(replay))
        check_response(streamed.response, expected)
        check_outputs(streamed.response, expected, streamed.events)
        return
    with pytest.raises(spout.ProviderError) as caught:
        runner.events(gemini(replay))
    exc = caught.value
    assert (exc.error_type, exc.message) == (
        expected["error"]["type"],
        expected["error"]["message"],
    )
    assert exc.provider == "gemini"
    assert exc.partial is not None
    check_response(exc.partial, expected)


def test_error_in_stream_keeps_its_code(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("gemini", "stream_error")
    replay.replies = [Reply(chunks=[body])]  # the text and the error in one read
    with pytest.raises(spout.RateLimitError) as caught:
        runner.text(gemini(replay))
    assert caught.value.status_code == 429
    assert caught.value.body["status"] == "RESOURCE_EXHAUSTED"
    assert caught.value.partial is not None
    assert caught.value.partial.text == "Über den Wolken muss die Freiheit"


@pytest.mark.parametrize(
    ("error", "error_class"),
    [
        (
            {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"},
            spout.ServiceUnavailableError,
        ),
        (
            {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"},
            spout.InternalServerError,
        ),
        (
            {
                "message": "Deadline expired.",
                "status": "DEADLINE_EXCEEDED",
            },  # no code: the status says
            spout.ServiceUnavailableError,
        ),
    ],
)
def test_errors_in_stream(
    replay: ReplayServer, error: dict[str, Any], error_class: type[spout.ProviderError]
) -> None:
    replay.replies = [Reply(chunks=[sse(chunk({"text": "Half"}), {"error": error})])]
    with pytest.raises(error_class) as caught:
        stream_text(gemini(replay), "sync")
    assert type(caught.value) is error_class
    assert caught.value.error_type == error["status"]
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


def test_function_call_events(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("gemini", "function_call")
    replay.replies = [Reply(chunks=CUTS["mid_line"](body))]
    events = runner.events(gemini(replay)).events
    tool_events = [e for e in events if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))]
    # Each call arrives whole: start, its arguments as one delta, end; one call after another.
    assert [(type(e).__name__, e.index) for e in tool_events] == [
        ("ToolCallStart", 0),
        ("ToolCallDelta", 0),
        ("ToolCallEnd", 0),
        ("ToolCallStart", 1),
        ("ToolCallDelta", 1),
        ("ToolCallEnd", 1),
    ]
    deltas = [e for e in tool_events if isinstance(e, ToolCallDelta)]
    assert [json.loads(d.arguments) for d in deltas] == [
        c["arguments"] for c in expected["tool_calls"]
    ]
    assert isinstance(events[-2], Usage) and events[-1] == Finish("tool_calls", "STOP")


def test_function_call_id_is_kept_when_sent(replay: ReplayServer) -> None:
    replay.replies = [
        Reply(
            chunks=[
                sse(
                    chunk(
                        {"functionCall": {"id": "fc-WIRE-1", "name": "now", "args": {}}},
                        finish="STOP",
                    )
                )
            ]
        )
    ]
    (call,) = stream(gemini(replay), "sync").response.tool_calls
    assert (call.id, call.name, call.arguments, call.arguments_raw) == (
        "fc-WIRE-1",
        "now",
        {},
        None,
    )


@pytest.mark.parametrize(
    ("raw", "finish_reason"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
    ],
)
def test_finish_reasons(replay: ReplayServer, raw: str, finish_reason: str) -> None:
    replay.replies = [Reply(chunks=[sse(chunk({"text": "ok"}), chunk({"text": ""}, finish=raw))])]
    response = stream_text(gemini(replay), "sync").response
    assert (response.finish_reason, response.raw_finish_reason) == (finish_reason, raw)


def test_blocked_prompt_is_a_content_filter_finish(replay: ReplayServer, runner: Runner) -> None:
    # A blocked prompt gets no candidates, hence no finishReason: promptFeedback says why.
    blocked = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }
    replay.replies = [Reply(chunks=[sse(blocked)])]
    response = runner.text(gemini(replay)).response
    assert (response.text, response.finish_reason) == ("", "content_filter")
    assert response.raw_finish_reason == "PROHIBITED_CONTENT"
    assert response.usage.input_tokens == 8


def test_stream_cut_before_its_end_is_an_interruption(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("gemini", "text")
    cut = body[: body.rindex(b"data: ")]  # every event before the one with finishReason
    replay.replies = [Reply(chunks=[cut])]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(gemini(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "The capital of France is Paris. It is known for the Eiffel"


def test_connection_dropped_mid_stream_is_an_interruption(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = [Reply(chunks=[sse(chunk({"text": "Half"}))], abort=True)]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(gemini(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


def test_request_body_and_headers(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("gemini", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = gemini(replay, headers={"X-Title": "spout tests"}, temperature=0.5)
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]
    runner.text(
        llm,
        "Count from 1 to 5",
        system_prompt="Be brief.",
        max_tokens=20,
        stop=["6"],
        top_p=0.9,
        seed=7,
        safetySettings=safety,
    )
    request = replay.requests[-1]
    assert request.method == "POST" and request.path == STREAM_PATH
    headers = headers_of(request)
    assert headers["x-goog-api-key"] == "AIza-test"
    assert headers["content-type"] == "application/json"
    assert headers["x-title"] == "spout tests"
    assert "authorization" not in headers and "key=" not in request.path
    assert request.json() == {
        "contents": [{"role": "user", "parts": [{"text": "Count from 1 to 5"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "temperature": 0.5,
            "topP": 0.9,
            "maxOutputTokens": 20,
            "stopSequences": ["6"],
            "seed": 7,
        },
        "safetySettings": safety,
    }


def test_generation_config_given_as_a_keyword_is_merged(replay: ReplayServer) -> None:
    body, _ = transcript("gemini", "text")
    replay.replies = [Reply(chunks=[body])]
    thinking = {"thinkingConfig": {"includeThoughts": True}}
    stream_text(gemini(replay), "sync", "hi", generationConfig=thinking, stop="END")
    assert replay.requests[-1].json()["generationConfig"] == {**thinking, "stopSequences": ["END"]}
    stream_text(gemini(replay), "sync", "hi", generationConfig=thinking)
    assert replay.requests[-1].json()["generationConfig"] == thinking
    stream_text(gemini(replay), "sync", "hi")
    assert "generationConfig" not in replay.requests[-1].json()


def test_messages_are_translated(replay: ReplayServer) -> None:
    body, _ = transcript("gemini", "text")
    replay.replies = [Reply(chunks=[body])]
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": '{"celsius": 4}'},
        {"role": "tool", "tool_call_id": "call_1", "content": "7 °C"},
        {"role": "assistant", "content": "Oslo 4 °C, Bergen 7 °C."},
        {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
    ]
    stream_text(gemini(replay), "sync", None, messages=history)
    sent = replay.requests[-1].json()
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Oslo and Bergen?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Bergen"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"celsius": 4}}},
                {"functionResponse": {"name": "get_weather", "response": {"result": "7 °C"}}},
            ],
        },
        {"role": "model", "parts": [{"text": "Oslo 4 °C, Bergen 7 °C."}]},
        {"role": "user", "parts": [{"text": "Thanks!"}]},
    ]


def whole_response(case: str) -> dict[str, Any]:
    """The generateContent response for the same turn as a transcript: its chunks merged."""
    body, _ = transcript("gemini", case)
    chunks = [
        json.loads(line[6:]) for line in body.decode().split("\r\n") if line.startswith("data: ")
    ]
    parts: list[dict[str, Any]] = []
    for data in chunks:
        for part in data["candidates"][0]["content"]["parts"]:
            last = parts[-1] if parts else None
            if (
                last
                and "text" in part
                and "text" in last
                and last.get("thought") == part.get("thought")
            ):
                last["text"] += part["text"]
            else:
                parts.append(dict(part))
    final = chunks[-1]
    candidate = {**final["candidates"][0], "content": {"parts": parts, "role": "model"}}
    return {**final, "candidates": [candidate]}


@pytest.mark.parametrize(
    "case",
    [
        "function_call",
        "thoughts",
        "max_tokens",
        "text",
        "image_output",
        "grounding",
        "code_execution",
        "code_execution_only",
    ],
)
def test_not_streamed_gives_the_streamed_response(
    replay: ReplayServer, runner: Runner, case: str
) -> None:
    body, _ = transcript("gemini", case)
    replay.replies = [Reply(chunks=[body]), json_reply(whole_response(case))]
    streamed = runner.events(gemini(replay)).response
    whole = runner.generate(gemini(replay))
    also = ("reasoning_signature", "files", "citations", "raw_events")
    assert comparable(whole, *also) == comparable(streamed, *also)
    assert replay.requests[-1].path == "/v1beta/models/gemini-2.5-flash:generateContent"


def test_model_given_with_its_collection(replay: ReplayServer) -> None:
    body, _ = transcript("gemini", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = create_llm("gemini", model="models/gemini-2.5-flash", base_url=replay.url, api_key="k")
    stream_text(llm, "sync")
    assert replay.requests[-1].path == STREAM_PATH


@pytest.mark.parametrize(
    ("status", "grpc_status", "error_class"),
    [
        (400, "INVALID_ARGUMENT", spout.BadRequestError),
        (401, "UNAUTHENTICATED", spout.AuthenticationError),
        (403, "PERMISSION_DENIED", spout.PermissionDeniedError),
        (404, "NOT_FOUND", spout.NotFoundError),
        (429, "RESOURCE_EXHAUSTED", spout.RateLimitError),
        (500, "INTERNAL", spout.InternalServerError),
        (503, "UNAVAILABLE", spout.ServiceUnavailableError),
    ],
)
def test_http_errors_raise_before_streaming(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    grpc_status: str,
    error_class: type[spout.ProviderError],
) -> None:
    error = {
        "error": {"code": status, "message": f"status {status} for you", "status": grpc_status}
    }
    replay.replies = [json_reply(error, status, {"x-request-id": "WIRE-req-1", "retry-after": "7"})]
    exc = raised_on_start(runner, gemini(replay), error_class)
    assert exc.status_code == status
    assert exc.request_id == "WIRE-req-1"
    assert exc.body == error["error"]
    assert exc.error_type == grpc_status
    assert f"status {status} for you" in str(exc)
    if status == 429:
        assert exc.retry_after == 7.0


def test_rate_limit_retry_delay_and_request_id_from_the_body(replay: ReplayServer) -> None:
    # Gemini sends no Retry-After header: the wait is a RetryInfo detail in the body.
    error = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota. Please retry in 42.5s.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": "WIRE-req-2"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "42.500s"},
            ],
        }
    }
    replay.replies = [json_reply(error, 429)]
    with pytest.raises(spout.RateLimitError) as caught:
        gemini(replay).generate("hi")
    assert caught.value.retry_after == 42.5
    assert caught.value.request_id == "WIRE-req-2"


def test_error_body_as_a_json_array(replay: ReplayServer) -> None:
    error = [
        {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}
    ]
    replay.replies = [Reply(status=400, chunks=[json.dumps(error).encode()])]
    with pytest.raises(spout.BadRequestError, match="API key not valid"):
        gemini(replay).generate("hi")


def test_a_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(spout.ConfigurationError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        create_llm("gemini", model="gemini-2.5-flash")


@pytest.mark.parametrize(
    ("env", "sent"),
    [
        ({"GEMINI_API_KEY": "from-gemini"}, "from-gemini"),
        ({"GOOGLE_API_KEY": "from-google"}, "from-google"),
        # Google's SDK and docs: GOOGLE_API_KEY takes precedence when both are set.
        ({"GEMINI_API_KEY": "from-gemini", "GOOGLE_API_KEY": "from-google"}, "from-google"),
    ],
)
def test_key_from_environment(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], sent: str
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    body, _ = transcript("gemini", "text")
    replay.replies = [Reply(chunks=[body])]
    create_llm("gemini:gemini-2.5-flash", base_url=replay.url).generate_stream("hi").close()
    assert headers_of(replay.requests[-1])["x-goog-api-key"] == sent


def test_capabilities() -> None:
    llm = create_llm("gemini", model="gemini-2.5-flash", api_key="k")
    assert llm.get_capabilities() == {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: True,
        ModelCapability.TOOL_STREAMING: False,
        ModelCapability.USAGE_IN_STREAM: True,
        ModelCapability.REASONING: True,
        ModelCapability.SYSTEM_PROMPT: True,
        ModelCapability.VISION: True,
        ModelCapability.PDF_INPUT: True,
        ModelCapability.AUDIO_INPUT: True,
    }


def test_an_image_answer_is_a_file_and_the_text_stream_stays_text(
    replay: ReplayServer, runner: Runner
) -> None:
    body, _ = transcript("gemini", "image_output")
    replay.replies = [Reply(chunks=CUTS["every_byte"](body))]
    streamed = runner.text(gemini(replay))
    # Iterating the stream gives its text only; the image is in the response, whole.
    assert streamed.chunks == ["Here is a small red square:"]
    (image,) = streamed.response.files
    assert image.media_type == "image/png" and image.kind == "image"
    assert image.data is not None and image.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert streamed.response.finish_reason == "stop"


def test_grounded_spans_are_the_answer_text_they_name(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("gemini", "grounding")
    replay.replies = [Reply(chunks=[body])]
    response = runner.events(gemini(replay)).response
    spans = [c for c in response.citations if c.start is not None]
    assert spans  # byte offsets (past an en dash and an apostrophe) turned into characters
    for citation in spans:
        assert response.text[citation.start : citation.end] == citation.text
    support = spans[0].raw["groundingSupport"]
    assert support["groundingChunkIndices"] == [0, 1]
    assert spans[0].raw["groundingChunk"]["web"]["title"] == "uefa.com"


def test_recitation_sources_are_citations(replay: ReplayServer, runner: Runner) -> None:
    # citationMetadata (Candidate.citationMetadata): a span the answer recites, in bytes.
    source = {"startIndex": 6, "endIndex": 15, "uri": "https://example.com/WIRE", "license": "mit"}
    last = chunk({"text": "hills"}, finish="STOP")
    last["candidates"][0]["citationMetadata"] = {"citationSources": [source]}
    replay.replies = [Reply(chunks=[sse(chunk({"text": "Über the "}), last)])]
    (citation,) = runner.events(gemini(replay)).response.citations
    assert (citation.text, citation.start, citation.end) == ("the hills", 5, 14)
    assert (citation.url, citation.raw) == ("https://example.com/WIRE", source)


def test_a_part_of_an_unknown_kind_is_a_raw_event(replay: ReplayServer, runner: Runner) -> None:
    part = {"someNewPart": {"x": 1}, "thoughtSignature": "c2ln"}
    replay.replies = [Reply(chunks=[sse(chunk({"text": "Hi"}), chunk(part, finish="STOP"))])]
    streamed = runner.events(gemini(replay))
    assert streamed.response.raw_events == (spout.RawEvent("someNewPart", part),)
    assert streamed.response.finish_reason == "stop"  # the text was recognised
