"""The Ollama native provider against recorded transcripts replayed over loopback HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

import spout
from helpers import Cut, Runner, comparable, json_reply, made, raised_on_start, usage_counts
from replay_server import CUTS, ReplayServer, Reply, transcript
from spout import (
    ModelCapability,
    ReasoningDelta,
    Response,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    create_llm,
)
from spout.providers.ollama import ollama_base_url

NDJSON = {"Content-Type": "application/x-ndjson"}
CASES = ["chat_text", "tool_calls", "thinking", "stream_error"]


def ollama(server: ReplayServer, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here (they are tested in tests/test_retries.py).
    config.setdefault("max_retries", 0)
    return made(create_llm("ollama", model="llama3.2", base_url=server.url, **config))


def ndjson(*lines: Any) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def line(content: str = "", **message: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": content, **message},
        "done": False,
    }


def last(reason: str = "stop", **counts: Any) -> dict[str, Any]:
    return {
        **line(),
        "done_reason": reason,
        "done": True,
        "prompt_eval_count": 5,
        "eval_count": 3,
        **counts,
    }


def check(response: Response, expected: dict[str, Any]) -> None:
    """The rebuilt response, field by field, against a transcript's expected result."""
    assert response.text == expected["text"]
    assert [
        {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_raw": c.arguments_raw}
        for c in response.tool_calls
    ] == expected["tool_calls"]
    assert response.reasoning == expected.get("reasoning", "")
    if expected["error"] is None:
        assert response.finish_reason == expected["finish_reason"]
        assert response.raw_finish_reason == expected["finish_reason_raw"]
    else:
        assert response.finish_reason is None  # the stream never finished
    assert usage_counts(response) == expected["usage"]
    assert response.provider == "ollama"


@pytest.mark.parametrize("case", CASES)
def test_transcripts(replay: ReplayServer, runner: Runner, case: str, cut: Cut) -> None:
    body, expected = transcript("ollama", case)
    replay.replies = [Reply(chunks=cut(body), headers=NDJSON)]
    if expected["error"] is not None:
        with pytest.raises(spout.InternalServerError) as caught:
            runner.events(ollama(replay))
        assert caught.value.message == expected["error"]["message"]
        assert caught.value.provider == "ollama" and caught.value.status_code is None
        assert caught.value.partial is not None
        check(caught.value.partial, expected)
        return
    result = runner.events(ollama(replay))
    check(result.response, expected)
    assert result.response.model == json.loads(body.splitlines()[0])["model"]
    assert result.response.id is None  # Ollama names no response
    assert "".join(result.chunks) == expected["text"]


def test_durations_go_into_usage_extras(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("ollama", "chat_text")
    replay.replies = [Reply(chunks=[body], headers=NDJSON)]
    usage = runner.text(ollama(replay)).response.usage
    assert usage.extras == expected["durations_ns"]
    assert usage.total_tokens == 36


def test_tool_calls_arrive_whole(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("ollama", "tool_calls")
    replay.replies = [Reply(chunks=CUTS["mid_line"](body), headers=NDJSON)]
    events = runner.events(ollama(replay)).events
    calls = [e for e in events if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))]
    # Each call is a start and its end, back to back: no argument deltas, nothing to wait for.
    assert [(type(e).__name__, e.index) for e in calls] == [
        ("ToolCallStart", 0),
        ("ToolCallEnd", 0),
        ("ToolCallStart", 1),
        ("ToolCallEnd", 1),
    ]
    assert isinstance(calls[0], ToolCallStart) and calls[0].id == "call_WIREollamaTool0001"


def test_tool_calls_without_ids_get_generated_ones(replay: ReplayServer, runner: Runner) -> None:
    # Ollama before 0.12 sent neither id nor index (ollama.com/blog/streaming-tool).
    call = {"function": {"name": "add", "arguments": {"a": 1, "b": 2}}}
    replay.replies = [Reply(chunks=[ndjson(line(tool_calls=[call, call]), last())], headers=NDJSON)]
    response = runner.events(ollama(replay)).response
    assert [(c.id, c.name, c.arguments, c.arguments_raw) for c in response.tool_calls] == [
        ("call_0", "add", {"a": 1, "b": 2}, None),
        ("call_1", "add", {"a": 1, "b": 2}, None),
    ]
    assert response.finish_reason == "tool_calls" and response.raw_finish_reason == "stop"


def test_thinking_streams_as_reasoning(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("ollama", "thinking")
    replay.replies = [Reply(chunks=CUTS["utf8"](body), headers=NDJSON)]
    result = runner.events(ollama(replay))
    reasoning = [e.text for e in result.events if isinstance(e, ReasoningDelta)]
    assert "".join(reasoning) == expected["reasoning"] and len(reasoning) == 4
    assert result.response.time_to_first_token is not None


def test_length_is_normalized(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [Reply(chunks=[ndjson(line("Once upon"), last("length"))], headers=NDJSON)]
    response = runner.text(ollama(replay)).response
    assert (response.finish_reason, response.raw_finish_reason) == ("length", "length")


def test_request_body_and_headers(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("ollama", "chat_text")
    replay.replies = [Reply(chunks=[body], headers=NDJSON)]
    llm = ollama(replay, headers={"X-Title": "spout tests"}, temperature=0.5)
    runner.text(
        llm,
        "Count from 1 to 5",
        system_prompt="Be brief.",
        max_tokens=20,
        stop="6",
        seed=7,
        top_p=0.9,
        format="json",
        keep_alive="10m",
        think=False,
        options={"num_ctx": 4096},
    )
    request = replay.requests[-1]
    assert request.method == "POST" and request.path == "/api/chat"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Title"] == "spout tests"
    assert "Authorization" not in request.headers
    assert request.json() == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Count from 1 to 5"},
        ],
        "format": "json",
        "keep_alive": "10m",
        "think": False,
        "stream": True,
        "options": {
            "temperature": 0.5,
            "num_predict": 20,
            "stop": ["6"],
            "seed": 7,
            "top_p": 0.9,
            "num_ctx": 4096,
        },
    }


def test_no_options_when_no_settings(replay: ReplayServer) -> None:
    body, _ = transcript("ollama", "chat_text")
    replay.replies = [Reply(chunks=[body], headers=NDJSON)]
    ollama(replay).generate_stream("hi").close()
    assert replay.requests[-1].json() == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


def test_not_streamed_is_the_same_response(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("ollama", "tool_calls")
    lines = [json.loads(raw) for raw in body.splitlines()]
    whole = {
        **lines[-1],
        "message": {
            "role": "assistant",
            "content": "".join(x["message"]["content"] for x in lines),
            "tool_calls": [c for x in lines for c in x["message"].get("tool_calls", ())],
        },
    }
    replay.replies = [Reply(chunks=[body], headers=NDJSON)]
    streamed = runner.events(ollama(replay)).response
    replay.replies = [json_reply(whole)]
    response = runner.generate(ollama(replay))
    assert replay.requests[-1].json()["stream"] is False
    assert comparable(response) == comparable(streamed)


def test_not_streamed_thinking(replay: ReplayServer, runner: Runner) -> None:
    whole = {
        **last(total_duration=10),
        "message": {"role": "assistant", "content": "391.", "thinking": "17 * 23 is 391."},
    }
    replay.replies = [Reply(chunks=[json.dumps(whole).encode()])]
    response = runner.generate(ollama(replay))
    assert (response.text, response.reasoning) == ("391.", "17 * 23 is 391.")
    assert response.usage.extras == {"total_duration": 10}


@pytest.mark.parametrize(
    ("status", "message", "error_class"),
    [
        (400, "invalid options: num_predict", spout.BadRequestError),
        (404, 'model "llama3" not found, try pulling it first', spout.NotFoundError),
        (500, "llama runner process has terminated: signal: killed", spout.InternalServerError),
        (
            503,
            "server busy, please try again.  maximum pending requests exceeded",
            spout.ServiceUnavailableError,
        ),
    ],
)
def test_http_errors(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    message: str,
    error_class: type[spout.ProviderError],
) -> None:
    charset = {"Content-Type": "application/json; charset=utf-8"}
    replay.replies = [json_reply({"error": message}, status, charset)]
    exc = raised_on_start(runner, ollama(replay), error_class)
    assert exc.status_code == status
    assert exc.message == message
    assert exc.body == {"error": message}
    assert exc.provider == "ollama" and exc.model == "llama3.2"


def test_http_error_without_json(replay: ReplayServer) -> None:
    replay.replies = [Reply(status=502, chunks=[b"Bad Gateway"], headers={})]
    with pytest.raises(spout.ServiceUnavailableError) as caught:
        ollama(replay).generate("hi")
    assert caught.value.message == "Bad Gateway" and caught.value.body == "Bad Gateway"


@pytest.mark.parametrize("how", ["no_done_line", "dropped", "torn_line"])
def test_stream_cut_before_its_end_is_an_interruption(
    replay: ReplayServer, runner: Runner, how: str
) -> None:
    body = ndjson(line("Half"), line(" an"), line(" answer"))
    if how == "torn_line":
        body += b'{"model":"llama3.2","message":{"role":"assis'
    replay.replies = [Reply(chunks=[body], headers=NDJSON, abort=how == "dropped")]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(ollama(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "Half an answer"


def test_error_line_in_the_same_read_keeps_the_text(replay: ReplayServer, runner: Runner) -> None:
    body = ndjson(line("Once"), line(" upon"), {"error": "unexpected EOF"})
    replay.replies = [Reply(chunks=[body], headers=NDJSON)]
    with pytest.raises(spout.ProviderError) as caught:
        runner.text(ollama(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "Once upon"


def test_malformed_line_is_a_protocol_error(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [Reply(chunks=[ndjson(line("Hi")) + b"{not json}\n" + ndjson(last())])]
    with pytest.raises(spout.ProtocolError) as caught:
        runner.text(ollama(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "Hi"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, "http://localhost:11434"),
        ("", "http://localhost:11434"),
        ("gpu-box:11500", "http://gpu-box:11500"),
        ("gpu-box", "http://gpu-box:11434"),
        ("0.0.0.0", "http://0.0.0.0:11434"),
        (":11500", "http://127.0.0.1:11500"),
        ("http://10.0.0.2:8000/", "http://10.0.0.2:8000"),
        ("https://ollama.example.com", "https://ollama.example.com"),
        ("https://example.com/ollama/", "https://example.com/ollama"),
        ("[::1]:11434", "http://[::1]:11434"),
    ],
)
def test_ollama_host_forms(value: str | None, url: str) -> None:
    assert ollama_base_url(value) == url


def test_base_url_from_ollama_host(replay: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OLLAMA_HOST", f"127.0.0.1:{replay.port}"
    )  # bare host:port, as ollama takes it
    body, _ = transcript("ollama", "chat_text")
    replay.replies = [Reply(chunks=[body], headers=NDJSON)]
    llm = made(create_llm("ollama:llama3.2"))
    assert llm.provider.base_url == replay.url  # type: ignore[attr-defined]
    assert llm.generate_stream("hi").response.text.startswith("The sky")


def test_api_key_is_sent_when_given(replay: ReplayServer) -> None:
    body, _ = transcript("ollama", "chat_text")
    replay.replies = [Reply(chunks=[body], headers=NDJSON)]
    ollama(replay, api_key="proxy-key").generate_stream("hi").close()
    assert replay.requests[-1].headers["Authorization"] == "Bearer proxy-key"


def test_one_api_only() -> None:
    with pytest.raises(spout.ConfigurationError, match="api="):
        create_llm("ollama", model="llama3.2", api="chat")


def test_capabilities() -> None:
    caps = create_llm("ollama", model="llama3.2").get_capabilities()
    assert caps == {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: True,
        ModelCapability.TOOL_STREAMING: False,
        ModelCapability.USAGE_IN_STREAM: True,
        ModelCapability.REASONING: True,
        ModelCapability.SYSTEM_PROMPT: True,
        # Images in message.images; no documents or audio in /api/chat.
        ModelCapability.VISION: True,
        ModelCapability.PDF_INPUT: False,
        ModelCapability.AUDIO_INPUT: False,
    }
