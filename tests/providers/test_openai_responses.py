"""The OpenAI Responses API provider against recorded transcripts replayed over loopback HTTP."""

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
from replay_server import CUTS, ReplayServer, Reply, transcript
from spout import (
    Finish,
    ModelCapability,
    ReasoningDelta,
    RefusalDelta,
    Response,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    create_llm,
)
from spout.providers.openai import OpenAIProvider
from spout.providers.openai_responses import OpenAIResponsesProvider

CASES = [
    "text",
    "function_call",
    "reasoning_summary",
    "refusal",
    "failed",
    "error_event",
    "image_generation",
    "web_search",
    "prompt_cache",
]
ERRORS: dict[str, type[spout.ProviderError]] = {
    "server_error": spout.InternalServerError,
    "rate_limit_exceeded": spout.RateLimitError,
}


def responses(server: ReplayServer, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here (they are tested in tests/test_retries.py).
    config.setdefault("max_retries", 0)
    config.setdefault("api_key", "sk-test")
    return made(
        create_llm(
            "openai", model="gpt-4.1", api="responses", base_url=f"{server.url}/v1", **config
        )
    )


def sse(*payloads: dict[str, Any]) -> bytes:
    """An SSE body as the Responses API frames it: each event named by its type."""
    return b"".join(f"event: {p['type']}\ndata: {json.dumps(p)}\n\n".encode() for p in payloads)


def created(**response: Any) -> dict[str, Any]:
    return {
        "type": "response.created",
        "response": {"id": "resp_1", "model": "gpt-4.1", "status": "in_progress", **response},
    }


def text(delta: str) -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": delta,
    }


def check(response: Response, expected: dict[str, Any]) -> None:
    """The rebuilt response, field by field, against a transcript's expected result."""
    assert response.text == expected["text"]
    assert [
        {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_raw": c.arguments_raw}
        for c in response.tool_calls
    ] == expected["tool_calls"]
    assert response.reasoning == expected.get("reasoning", "")
    assert response.refusal == expected.get("refusal")
    if expected["error"] is None:
        assert response.finish_reason == expected["finish_reason"]
        assert response.raw_finish_reason == expected["finish_reason_raw"]
    else:
        assert response.finish_reason is None
    assert usage_counts(response) == expected["usage"]
    if "usage_raw" in expected:
        raw = {
            k: v
            for k, v in expected["usage_raw"].items()
            if k not in ("input_tokens", "output_tokens")
        }
        assert response.usage.extras == raw
    assert response.provider == "openai"


def first_response(body: bytes) -> dict[str, Any]:
    """The Response object in a transcript's response.created event."""
    data = json.loads(body.split(b"\n")[1].removeprefix(b"data: "))
    response: dict[str, Any] = data["response"]
    return response


@pytest.mark.parametrize("case", CASES)
def test_transcripts(replay: ReplayServer, runner: Runner, case: str, cut: Cut) -> None:
    body, expected = transcript("openai_responses", case)
    replay.replies = [Reply(chunks=cut(body))]
    if expected["error"] is not None:
        with pytest.raises(ERRORS[expected["error"]["type"]]) as caught:
            runner.events(responses(replay))
        exc = caught.value
        assert exc.message == expected["error"]["message"]
        assert exc.error_type == expected["error"]["type"] and exc.provider == "openai"
        assert exc.partial is not None
        check(exc.partial, expected)
        assert exc.partial.id == first_response(body)["id"]
        return
    result = runner.events(responses(replay))
    check(result.response, expected)
    check_outputs(result.response, expected, result.events)
    assert "".join(result.chunks) == expected["text"]
    assert result.response.id == first_response(body)["id"]
    assert result.response.model == first_response(body)["model"]
    assert isinstance(result.events[-2], Usage) and isinstance(result.events[-1], Finish)


def test_function_call_events(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openai_responses", "function_call")
    replay.replies = [Reply(chunks=CUTS["every_byte"](body))]
    events = runner.events(responses(replay)).events
    calls = [e for e in events if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))]
    # Keyed by output_index; each call's deltas between its start and its end.
    assert isinstance(calls[0], ToolCallStart)
    assert (calls[0].index, calls[0].id, calls[0].name) == (
        0,
        expected["tool_calls"][0]["id"],
        "get_weather",
    )
    kinds = [(type(e).__name__, e.index) for e in calls]
    assert kinds.index(("ToolCallEnd", 0)) < kinds.index(("ToolCallStart", 1))
    for index, call in enumerate(expected["tool_calls"]):
        joined = "".join(
            e.arguments for e in calls if isinstance(e, ToolCallDelta) and e.index == index
        )
        assert joined == call["arguments_raw"]


def test_reasoning_summary_parts_are_paragraphs(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openai_responses", "reasoning_summary")
    replay.replies = [Reply(chunks=CUTS["utf8"](body))]
    result = runner.events(responses(replay))
    reasoning = [e.text for e in result.events if isinstance(e, ReasoningDelta)]
    assert "\n\n" in reasoning  # between the two summary parts
    assert "".join(reasoning) == expected["reasoning"]
    assert result.response.usage.extras["output_tokens_details"] == {"reasoning_tokens": 192}


def test_incomplete_is_length(replay: ReplayServer, runner: Runner) -> None:
    body = sse(
        created(),
        text("Once upon"),
        {
            "type": "response.incomplete",
            "response": {
                "id": "resp_1",
                "model": "gpt-4.1",
                "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
            },
        },
    )
    replay.replies = [Reply(chunks=[body])]
    response = runner.text(responses(replay)).response
    assert (response.text, response.finish_reason) == ("Once upon", "length")
    assert response.raw_finish_reason == "max_output_tokens"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 2)


def test_refusal(replay: ReplayServer, runner: Runner) -> None:
    body = sse(
        created(),
        {
            "type": "response.refusal.delta",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "I can't help.",
        },
        {"type": "response.completed", "response": {"status": "completed"}},
    )
    replay.replies = [Reply(chunks=[body])]
    result = runner.text(responses(replay))
    response = result.response
    assert (response.text, response.refusal) == ("", "I can't help.")
    assert result.chunks == [] and response.finish_reason == "refusal"


def test_refusal_transcript_events(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openai_responses", "refusal")
    replay.replies = [Reply(chunks=CUTS["utf8"](body))]
    result = runner.events(responses(replay))
    # Each delta once: response.refusal.done repeats the whole refusal, which is not sent again.
    refusals = [e.text for e in result.events if isinstance(e, RefusalDelta)]
    assert len(refusals) > 1 and "".join(refusals) == expected["refusal"]
    assert result.chunks == [] and not any(isinstance(e, TextDelta) for e in result.events)


def test_refusal_done_alone_is_the_refusal(replay: ReplayServer, runner: Runner) -> None:
    # A server that sends the refusal whole, with no deltas: the done event carries it.
    body = sse(
        created(),
        {
            "type": "response.refusal.done",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "refusal": "No.",
        },
        {"type": "response.completed", "response": {"status": "completed"}},
    )
    replay.replies = [Reply(chunks=[body])]
    response = runner.text(responses(replay)).response
    assert (response.text, response.refusal, response.finish_reason) == ("", "No.", "refusal")


def test_refusal_not_streamed(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openai_responses", "refusal")
    completed = json.loads(body.rstrip(b"\n").rsplit(b"\n", 1)[1].removeprefix(b"data: "))
    replay.replies = [json_reply(completed["response"])]
    response = runner.generate(responses(replay), "How do I pick a lock?")
    assert (response.text, response.refusal) == ("", expected["refusal"])
    assert (response.finish_reason, response.raw_finish_reason) == ("refusal", "completed")
    assert response.usage.output_tokens == expected["usage"]["output_tokens"]


def test_a_refusal_in_the_history_is_sent_as_text(replay: ReplayServer, runner: Runner) -> None:
    # An input message item can hold a refusal part only with the id and status of a
    # response this API made; a refusal kept by a session goes as the assistant's text.
    body, _ = transcript("openai_responses", "text")
    replay.replies = [Reply(chunks=[body])]
    history = [
        {"role": "user", "content": "How do I pick a lock?"},
        {"role": "assistant", "content": "", "refusal": "I can't help with that."},
        {"role": "user", "content": "Why not?"},
    ]
    runner.text(responses(replay), None, messages=history)
    assert replay.requests[-1].json()["input"][1] == {
        "role": "assistant",
        "content": "I can't help with that.",
    }


def test_nested_error_event(replay: ReplayServer, runner: Runner) -> None:
    # Some servers nest the error fields: {"type": "error", "error": {type, code, message}}.
    body = sse(
        created(),
        text("Hi"),
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
                "message": "Your input exceeds the context window of this model.",
            },
        },
    )
    replay.replies = [Reply(chunks=[body])]
    with pytest.raises(spout.ContextWindowExceededError) as caught:
        runner.text(responses(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "Hi"


def test_request_body_and_headers(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("openai_responses", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = responses(replay, headers={"X-Title": "spout tests"}, temperature=0.5)
    runner.text(
        llm,
        "Count from 1 to 5",
        system_prompt="Be brief.",
        max_tokens=20,
        top_p=0.9,
        reasoning={"effort": "low"},
    )
    request = replay.requests[-1]
    assert request.method == "POST" and request.path == "/v1/responses"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["X-Title"] == "spout tests"
    assert request.json() == {
        "model": "gpt-4.1",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": "Count from 1 to 5"}],
        "temperature": 0.5,
        "max_output_tokens": 20,
        "top_p": 0.9,
        "reasoning": {"effort": "low"},
        "stream": True,
    }


@pytest.mark.parametrize("setting", [{"stop": ["6"]}, {"seed": 7}])
def test_settings_the_api_lacks_are_refused(
    replay: ReplayServer, runner: Runner, setting: dict[str, Any]
) -> None:
    with pytest.raises(spout.ConfigurationError, match=next(iter(setting))):
        runner.text(responses(replay), "hi", **setting)
    assert replay.requests == []  # refused before anything was sent


def test_tool_results_become_items(replay: ReplayServer) -> None:
    body, _ = transcript("openai_responses", "text")
    replay.replies = [Reply(chunks=[body])]
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "4 °C, rain"},
    ]
    responses(replay).generate_stream(messages=history).close()
    assert replay.requests[-1].json()["input"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Oslo"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "4 °C, rain"},
    ]
    assert "instructions" not in replay.requests[-1].json()


@pytest.mark.parametrize(
    "case", ["text", "function_call", "reasoning_summary", "image_generation", "web_search"]
)
def test_not_streamed_is_the_same_response(replay: ReplayServer, runner: Runner, case: str) -> None:
    body, _ = transcript("openai_responses", case)
    replay.replies = [Reply(chunks=[body])]
    streamed = runner.events(responses(replay)).response
    last_event = body.rstrip(b"\n").split(b"\n")[-1].removeprefix(b"data: ")
    whole = json.loads(last_event)["response"]  # response.completed carries the whole response
    replay.replies = [json_reply(whole)]
    response = runner.generate(responses(replay))
    assert "stream" not in replay.requests[-1].json()
    also = ("files", "citations", "raw_events")
    assert comparable(response, *also) == comparable(streamed, *also)


def test_not_streamed_failure_raises(replay: ReplayServer, runner: Runner) -> None:
    failed = {
        "id": "resp_1",
        "object": "response",
        "status": "failed",
        "model": "gpt-4.1",
        "output": [],
        "error": {"code": "server_error", "message": "boom"},
    }
    replay.replies = [Reply(chunks=[json.dumps(failed).encode()])]
    with pytest.raises(spout.InternalServerError, match="boom"):
        runner.generate(responses(replay))


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, spout.BadRequestError),
        (401, spout.AuthenticationError),
        (404, spout.NotFoundError),
        (429, spout.RateLimitError),
        (500, spout.InternalServerError),
    ],
)
def test_http_errors(
    replay: ReplayServer, runner: Runner, status: int, error_class: type[spout.ProviderError]
) -> None:
    error = {
        "error": {
            "message": f"status {status} for you",
            "type": "some_error",
            "param": None,
            "code": None,
        }
    }
    replay.replies = [json_reply(error, status, {"x-request-id": "req_123", "retry-after": "7"})]
    exc = raised_on_start(runner, responses(replay), error_class)
    assert (exc.status_code, exc.request_id, exc.body) == (status, "req_123", error["error"])
    assert f"status {status} for you" in str(exc)


@pytest.mark.parametrize("dropped", [False, True])
def test_stream_cut_before_its_end_is_an_interruption(
    replay: ReplayServer, runner: Runner, dropped: bool
) -> None:
    body, _ = transcript("openai_responses", "text")
    events = body.split(b"\n\n")
    replay.replies = [Reply(chunks=[b"\n\n".join(events[:7]) + b"\n\n"], abort=dropped)]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(responses(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "Under the harvest"


def test_api_selects_the_class(replay: ReplayServer) -> None:
    url = f"{replay.url}/v1"
    assert type(create_llm("openai", model="m", base_url=url).provider) is OpenAIProvider
    chat = create_llm("openai", model="m", base_url=url, api="chat")
    assert type(chat.provider) is OpenAIProvider
    llm = create_llm("openai", model="m", base_url=url, api="responses")
    assert type(llm.provider) is OpenAIResponsesProvider and llm.provider_name == "openai"
    same = create_llm("openai_responses", model="m", base_url=url)
    assert type(same.provider) is OpenAIResponsesProvider
    with pytest.raises(spout.ConfigurationError, match="'responses'"):
        create_llm("openai", model="m", base_url=url, api="completions")


def test_default_endpoint_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(spout.ConfigurationError, match="OPENAI_API_KEY"):
        create_llm("openai", model="gpt-4.1", api="responses")


def test_capabilities(replay: ReplayServer) -> None:
    assert responses(replay).get_capabilities() == {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: True,
        ModelCapability.TOOL_STREAMING: True,
        ModelCapability.USAGE_IN_STREAM: True,
        ModelCapability.REASONING: True,
        ModelCapability.SYSTEM_PROMPT: True,
        # A server at another address than OpenAI's: images only (tests/providers/
        # test_files_in_openai.py has OpenAI's own, by model).
        ModelCapability.VISION: True,
        ModelCapability.PDF_INPUT: False,
        ModelCapability.AUDIO_INPUT: False,
    }


def test_file_annotations_and_unknown_items(replay: ReplayServer, runner: Runner) -> None:
    # A file search's citation, a code interpreter's file, and an item of a kind spout does
    # not know, in a whole response (the stream's events replayed).
    text = "See the report. The chart is at sandbox:/mnt/data/chart.png"
    file_citation = {
        "type": "file_citation",
        "file_id": "file-WIRE1",
        "filename": "a.pdf",
        "index": 14,
    }
    file_path = {"type": "file_path", "file_id": "cfile_WIRE2", "index": 31}
    search = {"id": "fs_WIRE", "type": "file_search_call", "status": "completed", "queries": ["q"]}
    part = {"type": "output_text", "annotations": [file_citation, file_path], "text": text}
    whole = {
        "id": "resp_WIRE",
        "object": "response",
        "status": "completed",
        "model": "gpt-4.1",
        "output": [
            search,
            {"id": "msg_WIRE", "type": "message", "role": "assistant", "content": [part]},
            {"id": "ig_WIRE", "type": "image_generation_call", "status": "failed", "result": None},
        ],
    }
    replay.replies = [json_reply(whole)]
    response = runner.generate(responses(replay))
    (citation,) = response.citations
    assert (citation.title, citation.start, citation.end, citation.raw) == (
        "a.pdf",
        14,
        14,
        file_citation,
    )
    assert [(e.type, e.data) for e in response.raw_events] == [
        ("file_search_call", search),
        ("file_path", file_path),
        ("image_generation_call", whole["output"][2]),  # failed: no image, nothing dropped
    ]
    assert response.files == () and response.finish_reason == "stop"
