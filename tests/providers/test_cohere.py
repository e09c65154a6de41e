"""The Cohere provider (v2 Chat API) against recorded transcripts replayed over loopback HTTP."""

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
    p.name.removesuffix(".expected.json") for p in (WIRE / "cohere").glob("*.expected.json")
)


def cohere(server: ReplayServer, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here (they are tested in tests/test_retries.py).
    config.setdefault("max_retries", 0)
    config.setdefault("api_key", "co-test-key")
    return made(create_llm("cohere", model="command-a-03-2025", base_url=server.url, **config))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    """One event as Cohere frames it: its type as the SSE event name and in the data."""
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


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
    if expected.get("usage_raw"):
        # The billed counts are not the token counts, and are kept beside them.
        assert response.usage.extras["billed_units"] == expected["usage_raw"]["billed_units"]
    assert response.reasoning == expected.get("reasoning", "")
    assert response.id is not None and "WIRE" in response.id
    assert response.model == "command-a-03-2025" and response.provider == "cohere"


@pytest.mark.parametrize("case", CASES)
def test_transcript(replay: ReplayServer, runner: Runner, case: str, cut: Cut) -> None:
    body, expected = transcript("cohere", case)
    replay.replies = [Reply(chunks=cut(body))]
    if expected["error"] is None:
        streamed = runner.events(cohere(replay))
        check_response(streamed.response, expected)
        check_outputs(streamed.response, expected, streamed.events)
        return
    with pytest.raises(spout.ProviderError) as caught:
        runner.events(cohere(replay))
    exc = caught.value
    assert (exc.error_type, exc.message) == (
        expected["error"]["type"],
        expected["error"]["message"],
    )
    assert exc.provider == "cohere"
    assert exc.partial is not None
    check_response(exc.partial, expected)


def test_stream_error_is_a_server_error_with_the_partial(
    replay: ReplayServer, runner: Runner
) -> None:
    body, expected = transcript("cohere", "stream_error")
    replay.replies = [Reply(chunks=[body])]  # the text and the error in one read
    with pytest.raises(spout.InternalServerError) as caught:
        runner.text(cohere(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == expected["text"]
    assert caught.value.status_code is None  # the HTTP status was 200


def test_timeout_finish_is_raised(replay: ReplayServer, runner: Runner) -> None:
    body = (
        event("message-start", {"id": "WIRE-timeout"})
        + event("content-delta", {"index": 0, "delta": {"message": {"content": {"text": "Half"}}}})
        + event("message-end", {"delta": {"finish_reason": "TIMEOUT"}})
    )
    replay.replies = [Reply(chunks=[body])]
    with pytest.raises(spout.ServiceUnavailableError) as caught:
        runner.text(cohere(replay))
    assert caught.value.error_type == "TIMEOUT"
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


def test_tool_plan_and_calls_events(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("cohere", "tool_plan_tool_calls")
    replay.replies = [Reply(chunks=CUTS["mid_line"](body))]
    events = runner.events(cohere(replay)).events
    reasoning = [e.text for e in events if isinstance(e, ReasoningDelta)]
    assert "".join(reasoning) == expected["reasoning"] and len(reasoning) > 1
    assert not any(isinstance(e, TextDelta) for e in events)
    tool_events = [e for e in events if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))]
    # Calls numbered from 0, each start, its argument pieces as they came, end; in turn.
    order = [(type(e).__name__, e.index) for e in tool_events]
    assert order[0] == ("ToolCallStart", 0)
    assert order.index(("ToolCallEnd", 0)) < order.index(("ToolCallStart", 1))
    assert order[-1] == ("ToolCallEnd", 1)
    pieces = [e.arguments for e in tool_events if isinstance(e, ToolCallDelta) and e.index == 1]
    assert len(pieces) > 1 and "".join(pieces) == expected["tool_calls"][1]["arguments_raw"]
    assert isinstance(events[-2], Usage)
    assert events[-1] == Finish("tool_calls", "TOOL_CALL")


def test_calls_without_an_index_continue_the_call_in_progress(
    replay: ReplayServer, runner: Runner
) -> None:
    # Events as Vercel's AI SDK tests write them: no index at all, a COMPLETE finish.
    def call_event(kind: str, message: dict[str, Any]) -> bytes:
        return event(kind, {"delta": {"message": message}})

    body = (
        event("message-start", {"id": "WIRE-noindex"})
        + call_event(
            "tool-call-start",
            {
                "tool_calls": {
                    "id": "WIRE-1",
                    "type": "function",
                    "function": {"name": "now", "arguments": ""},
                }
            },
        )
        + call_event("tool-call-delta", {"tool_calls": {"function": {"arguments": '{"tz": '}}})
        + call_event("tool-call-delta", {"tool_calls": {"function": {"arguments": '"UTC"}'}}})
        + event("tool-call-end", {})
        + event("message-end", {"delta": {"finish_reason": "COMPLETE"}})
        + b"data: [DONE]\n\n"
    )
    replay.replies = [Reply(chunks=CUTS["every_byte"](body))]
    response = runner.events(cohere(replay)).response
    (call,) = response.tool_calls
    assert (call.id, call.name, call.arguments) == ("WIRE-1", "now", {"tz": "UTC"})
    # Tools were called: the turn must be answered, whatever the finish reason said.
    assert (response.finish_reason, response.raw_finish_reason) == ("tool_calls", "COMPLETE")


def test_citations_leave_the_text_as_it_is(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("cohere", "citations")
    replay.replies = [Reply(chunks=[body])]
    result = runner.events(cohere(replay))
    assert "".join(result.chunks) == result.response.text == expected["text"]


@pytest.mark.parametrize(
    ("raw", "finish_reason"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("SOMETHING_NEW", "stop"),
    ],
)
def test_finish_reasons(replay: ReplayServer, raw: str, finish_reason: str) -> None:
    body = (
        event("message-start", {"id": "WIRE-f"})
        + event("content-delta", {"index": 0, "delta": {"message": {"content": {"text": "ok"}}}})
        + event("message-end", {"delta": {"finish_reason": raw}})
    )
    replay.replies = [Reply(chunks=[body])]
    response = spout.create_llm("cohere", model="command-r", base_url=replay.url, api_key="k")
    result = made(response).generate_stream("hi")
    final = result.response
    assert (final.finish_reason, final.raw_finish_reason) == (finish_reason, raw)


def test_stream_cut_before_message_end_is_an_interruption(
    replay: ReplayServer, runner: Runner
) -> None:
    body, expected = transcript("cohere", "text")
    cut = body[: body.rindex(b"event: message-end")]
    replay.replies = [Reply(chunks=[cut])]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(cohere(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == expected["text"]


def test_connection_dropped_mid_stream_is_an_interruption(
    replay: ReplayServer, runner: Runner
) -> None:
    body = event("message-start", {"id": "WIRE-drop"}) + event(
        "content-delta", {"index": 0, "delta": {"message": {"content": {"text": "Half"}}}}
    )
    replay.replies = [Reply(chunks=[body], abort=True)]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(cohere(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


def test_request(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("cohere", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = cohere(replay, headers={"X-Client-Name": "spout-tests"})
    runner.text(
        llm,
        "Where does the Rhône rise?",
        system_prompt="Be brief.",
        max_tokens=20,
        temperature=0.3,
        top_p=0.75,
        stop="\n\n",
        seed=7,
        safety_mode="CONTEXTUAL",
    )
    request = replay.requests[-1]
    assert (request.method, request.path) == ("POST", "/v2/chat")
    headers = headers_of(request)
    assert headers["authorization"] == "Bearer co-test-key"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "text/event-stream"
    assert headers["x-client-name"] == "spout-tests"
    assert request.json() == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where does the Rhône rise?"},
        ],
        "max_tokens": 20,
        "temperature": 0.3,
        "p": 0.75,
        "seed": 7,
        "stop_sequences": ["\n\n"],
        "safety_mode": "CONTEXTUAL",
        "stream": True,
    }


def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name
    """
    return f"4 °C in {city}"


def get_time(tz: str) -> str:
    """The time in a time zone."""
    return "12:00"


@pytest.mark.parametrize(
    ("tool_choice", "sent_choice", "sent_tools"),
    [
        (None, None, ["get_weather", "get_time"]),
        ("auto", None, ["get_weather", "get_time"]),
        ("required", "REQUIRED", ["get_weather", "get_time"]),
        ("none", "NONE", ["get_weather", "get_time"]),
        # Cohere cannot name a tool: only that one is offered, and a call required.
        ("get_time", "REQUIRED", ["get_time"]),
    ],
)
def test_tools_and_tool_choice(
    replay: ReplayServer, tool_choice: Any, sent_choice: str | None, sent_tools: list[str]
) -> None:
    body, _ = transcript("cohere", "text")
    replay.replies = [Reply(chunks=[body])]
    kwargs: dict[str, Any] = {"tools": [get_weather, get_time]}
    if tool_choice is not None:
        kwargs["tool_choice"] = tool_choice
    cohere(replay).generate_stream("hi", **kwargs).close()
    sent = replay.requests[-1].json()
    assert sent.get("tool_choice") == sent_choice
    assert [t["function"]["name"] for t in sent["tools"]] == sent_tools
    if "get_weather" in sent_tools:
        assert sent["tools"][0] == {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": Tool.from_function(get_weather).description,
                "parameters": Tool.from_function(get_weather).parameters,
            },
        }


def test_messages_are_translated(replay: ReplayServer) -> None:
    body, _ = transcript("cohere", "text")
    replay.replies = [Reply(chunks=[body])]
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {
            "role": "assistant",
            "content": "",
            "reasoning": "I will look up the weather in Oslo and Bergen.",
            "tool_calls": [
                {
                    "id": "get_weather_WIRE0oslo01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "call_WIRE_bergen",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Bergen"}},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "get_weather_WIRE0oslo01", "content": '{"celsius": 4}'},
        {"role": "tool", "tool_call_id": "call_WIRE_bergen", "content": {"celsius": 7}},
        {"role": "assistant", "content": "Oslo 4 °C, Bergen 7 °C."},
        {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
    ]
    made(cohere(replay)).generate_stream(None, messages=history).close()
    assert replay.requests[-1].json()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {
            "role": "assistant",
            "tool_plan": "I will look up the weather in Oslo and Bergen.",
            "tool_calls": [
                {
                    "id": "get_weather_WIRE0oslo01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "call_WIRE_bergen",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Bergen"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "get_weather_WIRE0oslo01", "content": '{"celsius": 4}'},
        {"role": "tool", "tool_call_id": "call_WIRE_bergen", "content": '{"celsius":7}'},
        {"role": "assistant", "content": "Oslo 4 °C, Bergen 7 °C."},
        {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
    ]


def test_tool_loop_sends_the_plan_back_with_the_calls(replay: ReplayServer, runner: Runner) -> None:
    calls, expected = transcript("cohere", "tool_plan_tool_calls")
    answer, _ = transcript("cohere", "text")
    replay.replies = [Reply(chunks=[calls]), Reply(chunks=[answer])]
    result = runner.tool_events(cohere(replay), "Weather in Oslo and Bergen?", tools=[get_weather])
    assert result.response.text == "Le Rhône prend sa source au glacier du Rhône, en Suisse."
    sent = replay.requests[-1].json()["messages"]
    assert sent[-3] == {
        "role": "assistant",
        "tool_plan": expected["reasoning"],
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": call["arguments_raw"]},
            }
            for call in expected["tool_calls"]
        ],
    }
    assert sent[-2:] == [
        {"role": "tool", "tool_call_id": "get_weather_WIRE0oslo01", "content": "4 °C in Oslo"},
        {"role": "tool", "tool_call_id": "get_weather_WIRE0bergen", "content": "4 °C in Bergen"},
    ]


def whole_response(case: str) -> dict[str, Any]:
    """The V2ChatResponse for the same turn as a transcript: its events merged."""
    body, _ = transcript("cohere", case)
    events = [
        json.loads(line[6:]) for line in body.decode().split("\n") if line.startswith("data: ")
    ]
    message: dict[str, Any] = {"role": "assistant"}
    blocks: dict[int, dict[str, str]] = {}
    calls: dict[int, dict[str, Any]] = {}
    plan = ""
    end: dict[str, Any] = {}
    for data in events:
        kind, delta = data["type"], data.get("delta") or {}
        part = (delta.get("message") or {}).get("content") or {}
        if kind == "content-start":
            blocks[data["index"]] = dict(part)
        elif kind == "content-delta":
            key = "thinking" if "thinking" in part else "text"
            blocks[data["index"]][key] += part[key]
        elif kind == "tool-plan-delta":
            plan += delta["message"]["tool_plan"]
        elif kind == "tool-call-start":
            calls[data["index"]] = delta["message"]["tool_calls"]
        elif kind == "tool-call-delta":
            arguments = delta["message"]["tool_calls"]["function"]["arguments"]
            calls[data["index"]]["function"]["arguments"] += arguments
        elif kind == "message-end":
            end = delta
    if plan:
        message["tool_plan"] = plan
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return {
        "id": events[0]["id"],
        "finish_reason": end["finish_reason"],
        "message": message,
        "usage": end["usage"],
    }


@pytest.mark.parametrize("case", ["text", "tool_plan_tool_calls", "max_tokens", "thinking"])
def test_not_streamed_gives_the_streamed_response(
    replay: ReplayServer, runner: Runner, case: str
) -> None:
    body, _ = transcript("cohere", case)
    replay.replies = [Reply(chunks=[body]), json_reply(whole_response(case))]
    streamed = runner.events(cohere(replay)).response
    whole = runner.generate(cohere(replay))
    assert comparable(whole) == comparable(streamed)
    assert whole.usage.extras == streamed.usage.extras
    request = replay.requests[-1]
    assert request.path == "/v2/chat" and "stream" not in request.json()


def test_not_streamed_error_finish_is_raised(replay: ReplayServer, runner: Runner) -> None:
    whole = {
        "id": "WIRE-whole-error",
        "finish_reason": "ERROR",
        "message": {"role": "assistant", "content": []},
    }
    replay.replies = [json_reply(whole)]
    with pytest.raises(spout.InternalServerError):
        runner.generate(cohere(replay))


@pytest.mark.parametrize(
    ("status", "message", "error_class"),
    [
        # docs.cohere.com/reference/errors: the body is {"message": string}.
        (400, "invalid request: message must be at least 1 token long.", spout.BadRequestError),
        (
            400,
            "too many tokens: total number of tokens in the prompt cannot exceed 4081",
            spout.ContextWindowExceededError,
        ),
        (401, "invalid api token", spout.AuthenticationError),
        (404, "model 'command-x' not found", spout.NotFoundError),
        (
            429,
            "You are using a Trial key, which is limited to 20 API calls / minute.",
            spout.RateLimitError,
        ),
        (498, "invalid api token", spout.AuthenticationError),
        (500, "internal server error", spout.InternalServerError),
        (503, "service unavailable", spout.ServiceUnavailableError),
    ],
)
def test_http_errors_raise_before_streaming(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    message: str,
    error_class: type[spout.ProviderError],
) -> None:
    body = {"id": "WIRE-err-1", "message": message}
    replay.replies = [json_reply(body, status, {"retry-after": "5"})]
    exc = raised_on_start(runner, cohere(replay), error_class)
    assert exc.status_code == status and exc.provider == "cohere"
    assert exc.message == message and exc.body == body
    assert exc.request_id == "WIRE-err-1"
    if status == 429:
        assert exc.retry_after == 5.0


def test_a_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    with pytest.raises(spout.ConfigurationError, match="CO_API_KEY or COHERE_API_KEY"):
        create_llm("cohere", model="command-r")


@pytest.mark.parametrize(
    ("env", "sent"),
    [
        ({"CO_API_KEY": "from-co"}, "from-co"),
        ({"COHERE_API_KEY": "from-cohere"}, "from-cohere"),
        # Cohere's SDK: CO_API_KEY first.
        ({"CO_API_KEY": "from-co", "COHERE_API_KEY": "from-cohere"}, "from-co"),
    ],
)
def test_key_from_environment(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], sent: str
) -> None:
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    body, _ = transcript("cohere", "text")
    replay.replies = [Reply(chunks=[body])]
    made(create_llm("cohere:command-r", base_url=replay.url)).generate_stream("hi").close()
    assert headers_of(replay.requests[-1])["authorization"] == f"Bearer {sent}"


def test_default_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CO_API_URL", raising=False)
    llm = create_llm("cohere", model="command-r", api_key="k")
    assert llm.provider.base_url == "https://api.cohere.com"  # type: ignore[attr-defined]
    monkeypatch.setenv("CO_API_URL", "https://cohere.internal.example/")
    llm = create_llm("cohere", model="command-r", api_key="k")
    assert llm.provider.base_url == "https://cohere.internal.example"  # type: ignore[attr-defined]


def test_structured_output(replay: ReplayServer) -> None:
    body = (
        event("message-start", {"id": "WIRE-json"})
        + event(
            "content-delta", {"index": 0, "delta": {"message": {"content": {"text": '{"n": 3}'}}}}
        )
        + event("message-end", {"delta": {"finish_reason": "COMPLETE"}})
    )
    replay.replies = [Reply(chunks=[body])]
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response = cohere(replay).generate_stream("Count", response_format=schema).response
    assert response.parsed == {"n": 3}
    assert replay.requests[-1].json()["response_format"] == {
        "type": "json_object",
        "json_schema": schema,
    }


def test_capabilities() -> None:
    llm = create_llm("cohere", model="command-a-03-2025", api_key="k")
    assert llm.get_capabilities() == {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: True,
        ModelCapability.TOOL_STREAMING: True,
        ModelCapability.USAGE_IN_STREAM: True,
        ModelCapability.REASONING: True,
        ModelCapability.SYSTEM_PROMPT: True,
        ModelCapability.VISION: False,
        ModelCapability.PDF_INPUT: False,
        ModelCapability.AUDIO_INPUT: False,
    }


def test_citations_and_unknown_content_not_streamed(replay: ReplayServer, runner: Runner) -> None:
    # A whole V2ChatResponse: message.citations, each with its sources (a document and a tool
    # output here), and a content item of a type spout does not know.
    citation = {
        "start": 0,
        "end": 5,
        "text": "Oslo.",
        "sources": [
            {"type": "document", "id": "doc:0", "document": {"title": "Capitals", "url": "u0"}},
            {"type": "tool", "id": "t:1", "tool_output": {"title": "Search", "url": "u1"}},
        ],
        "type": "TEXT_CONTENT",
    }
    chart = {"type": "image", "image": {"id": "WIRE"}}
    whole = {
        "id": "c0c0-WIRE",
        "finish_reason": "COMPLETE",
        "message": {
            "role": "assistant",
            "content": [{"type": "text", "text": "Oslo."}, chart],
            "citations": [citation],
        },
        "usage": {"tokens": {"input_tokens": 3, "output_tokens": 2}},
    }
    replay.replies = [json_reply(whole)]
    response = runner.generate(cohere(replay))
    assert [(c.text, c.title, c.url, c.start, c.end) for c in response.citations] == [
        ("Oslo.", "Capitals", "u0", 0, 5),
        ("Oslo.", "Search", "u1", 0, 5),
    ]
    assert response.citations[0].raw == citation
    assert response.raw_events == (spout.RawEvent("image", chart),)
