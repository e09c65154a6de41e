"""The OpenAI-compatible provider against recorded transcripts replayed over loopback HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

import spout
from helpers import (
    Cut,
    Runner,
    check_outputs,
    free_port,
    json_reply,
    made,
    raised_on_start,
    usage_counts,
)
from replay_server import CUTS, ReplayServer, Reply, transcript
from spout import (
    FileEnd,
    FileStart,
    Finish,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    create_llm,
)
from spout.providers._base import Call
from spout.providers.openai import OpenAIProvider


def openai(server: ReplayServer, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here (they are tested in tests/test_retries.py).
    config.setdefault("max_retries", 0)
    config.setdefault("api_key", "sk-test")
    return made(create_llm("openai", model="gpt-4o-mini", base_url=f"{server.url}/v1", **config))


def sse(*payloads: Any, done: bool = True) -> bytes:
    """An SSE body of JSON payloads, as OpenAI frames it."""
    body = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)
    return body + (b"data: [DONE]\n\n" if done else b"")


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def test_text_transcript(replay: ReplayServer, runner: Runner, cut: Cut) -> None:
    body, expected = transcript("openai_chat", "text")
    replay.replies = [Reply(chunks=cut(body))]
    result = runner.text(openai(replay))
    assert "".join(result.chunks) == expected["text"]
    assert len(result.chunks) > 1
    response = result.response
    assert response.text == expected["text"]
    assert response.finish_reason == expected["finish_reason"]
    assert response.raw_finish_reason == expected["finish_reason_raw"]
    # This server sent no usage: the counts are unknown, not zero.
    assert response.usage.input_tokens is None and response.usage.output_tokens is None
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.id == "chatcmpl-WIREtext0000000000000000001"
    assert response.time_to_first_token is not None and response.duration is not None


def test_parallel_tool_calls_transcript(replay: ReplayServer, runner: Runner, cut: Cut) -> None:
    body, expected = transcript("openai_chat", "parallel_tool_calls")
    replay.replies = [Reply(chunks=cut(body))]
    result = runner.events(openai(replay))
    response = result.response
    assert [
        {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_raw": c.arguments_raw}
        for c in response.tool_calls
    ] == expected["tool_calls"]
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (142, 58)
    assert response.usage.extras["total_tokens"] == 200
    # Each call's arguments arrive as deltas between its start and its end, in order.
    kinds = [
        (type(e).__name__, e.index)
        for e in result.events
        if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))
    ]
    assert kinds[0] == ("ToolCallStart", 0)
    assert kinds.index(("ToolCallEnd", 0)) < kinds.index(("ToolCallStart", 1))
    joined = "".join(
        e.arguments for e in result.events if isinstance(e, ToolCallDelta) and e.index == 1
    )
    assert joined == expected["tool_calls"][1]["arguments_raw"]
    assert isinstance(result.events[-1], Finish)


def test_openrouter_keepalive_comments(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openrouter", "keepalive_comments")
    replay.replies = [Reply(chunks=CUTS["mid_line"](body))]
    response = runner.text(openai(replay)).response
    assert response.text == expected["text"]
    assert response.usage.input_tokens == expected["usage"]["input_tokens"]
    assert response.usage.output_tokens == expected["usage"]["output_tokens"]
    assert response.usage.extras["cost"] == expected["usage_raw"]["cost"]


def test_repeated_id_and_name_are_not_concatenated(replay: ReplayServer, runner: Runner) -> None:
    # llama.cpp's server repeats id and name on every delta of a call.
    def delta(args: str) -> dict[str, Any]:
        return chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": args},
                    }
                ]
            }
        )

    body = sse(delta('{"ci'), delta('ty": "Os'), delta('lo"}'), chunk({}, "tool_calls"))
    replay.replies = [Reply(chunks=CUTS["every_byte"](body))]
    (call,) = runner.events(openai(replay)).response.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "get_weather", {"city": "Oslo"})


def test_chunks_with_empty_choices_are_accepted(replay: ReplayServer, runner: Runner) -> None:
    body = sse(
        {"id": "x", "object": "chat.completion.chunk", "choices": []},
        chunk({"content": "Hi"}),
        {"id": "x", "choices": [], "usage": None},
        chunk({}, "stop"),
    )
    replay.replies = [Reply(chunks=[body])]
    assert runner.text(openai(replay)).response.text == "Hi"


@pytest.mark.parametrize("cut", [CUTS["whole"], CUTS["mid_line"]], ids=["whole", "mid_line"])
def test_error_inside_the_stream_raises_with_the_partial_response(
    replay: ReplayServer, runner: Runner, cut: Cut
) -> None:
    # "whole": the text and the error arrive in one read, and the text must still be kept.
    body = sse(
        chunk({"content": "Once upon"}),
        chunk({"content": " a time"}),
        {"error": {"message": "The server had an error", "type": "server_error"}},
        done=False,
    )
    replay.replies = [Reply(chunks=cut(body))]
    with pytest.raises(spout.InternalServerError) as caught:
        runner.text(openai(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "Once upon a time"
    assert caught.value.provider == "openai"
    assert "server had an error" in str(caught.value)


def test_stream_without_terminator_is_an_interruption(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [Reply(chunks=[sse(chunk({"content": "Half an ans"}), done=False)])]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(openai(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "Half an ans"


def test_connection_dropped_mid_stream_is_an_interruption(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = [Reply(chunks=[sse(chunk({"content": "Half"}), done=False)], abort=True)]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(openai(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


def test_finish_without_done_is_complete(replay: ReplayServer, runner: Runner) -> None:
    # Some compatible servers end after the finish_reason chunk without "[DONE]".
    replay.replies = [
        Reply(chunks=[sse(chunk({"content": "ok"}), chunk({}, "length"), done=False)])
    ]
    response = runner.text(openai(replay)).response
    assert (response.text, response.finish_reason) == ("ok", "length")


def test_reasoning_and_refusal(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [
        Reply(
            chunks=[
                sse(
                    chunk({"reasoning_content": "The user wants"}),
                    chunk({"reasoning_content": " a refusal."}),
                    chunk({"refusal": "I can't help with that."}),
                    chunk({}, "stop"),
                )
            ]
        )
    ]
    result = runner.events(openai(replay))
    response = result.response
    assert response.reasoning == "The user wants a refusal."
    # A refusal is not text: OpenAI keeps message.refusal apart from message.content.
    assert response.text == "" and result.chunks == []
    assert response.refusal == "I can't help with that."
    assert response.finish_reason == "refusal"


def test_refusal_transcript(replay: ReplayServer, runner: Runner, cut: Cut) -> None:
    body, expected = transcript("openai_chat", "refusal")
    replay.replies = [Reply(chunks=cut(body))]
    result = runner.events(openai(replay))
    response = result.response
    # The refusal is its own event, folded into .refusal; no text event, no text.
    refusals = [e.text for e in result.events if isinstance(e, RefusalDelta)]
    assert len(refusals) > 1 and "".join(refusals) == expected["refusal"]
    assert not any(isinstance(e, TextDelta) for e in result.events)
    assert (response.text, response.refusal) == (expected["text"], expected["refusal"])
    assert response.finish_reason == expected["finish_reason"] == "refusal"
    assert response.raw_finish_reason == expected["finish_reason_raw"]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        expected["usage"]["input_tokens"],
        expected["usage"]["output_tokens"],
    )
    assert response.time_to_first_token is not None  # a refusal is the model's output


def test_prompt_cache_transcript(replay: ReplayServer, runner: Runner, cut: Cut) -> None:
    body, expected = transcript("openai_chat", "prompt_cache")
    last = json.loads(body.split(b"data: ")[-2])
    completion = {
        **last,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": expected["text"], "refusal": None},
                "finish_reason": "stop",
            }
        ],
    }
    replay.replies = [Reply(chunks=cut(body)), json_reply(completion)]
    response = runner.events(openai(replay)).response
    assert response.text == expected["text"]
    # prompt_tokens holds the cached part, completion_tokens the reasoning: both as sent.
    assert usage_counts(response) == expected["usage"]
    assert response.usage.total_tokens == expected["usage_raw"]["total_tokens"]
    assert response.usage.extras["prompt_tokens_details"]["cached_tokens"] == 1920
    assert runner.generate(openai(replay)).usage == response.usage


def test_deepseek_cache_hit_tokens_are_the_cached_part(
    replay: ReplayServer, runner: Runner
) -> None:
    # DeepSeek counts its context cache as prompt_cache_hit_tokens + prompt_cache_miss_tokens
    # = prompt_tokens (api-docs.deepseek.com/guides/kv_cache), with no prompt_tokens_details.
    usage = {
        "prompt_tokens": 1500,
        "completion_tokens": 20,
        "total_tokens": 1520,
        "prompt_cache_hit_tokens": 1280,
        "prompt_cache_miss_tokens": 220,
    }
    replay.replies = [
        Reply(
            chunks=[
                sse(chunk({"content": "Hi"}, "stop"), {**chunk({}), "choices": [], "usage": usage})
            ]
        )
    ]
    response = runner.events(openai(replay)).response
    assert usage_counts(response) == {
        "input_tokens": 1500,
        "output_tokens": 20,
        "cache_read_tokens": 1280,
    }


def test_iterating_a_refusal_gives_no_text(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openai_chat", "refusal")
    replay.replies = [Reply(chunks=CUTS["mid_line"](body))]
    result = runner.text(openai(replay))
    assert result.chunks == []
    assert result.response.refusal == expected["refusal"]
    assert result.response.stats is not None
    assert (result.response.stats.chunks, result.response.stats.characters) == (0, 0)


def test_refusal_not_streamed(replay: ReplayServer, runner: Runner) -> None:
    _, expected = transcript("openai_chat", "refusal")
    completion = {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": expected["refusal"],
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 81, "completion_tokens": 12, "total_tokens": 93},
    }
    replay.replies = [json_reply(completion)]
    response = runner.generate(openai(replay), "How do I pick a lock?")
    assert (response.text, response.refusal) == ("", expected["refusal"])
    assert (response.finish_reason, response.raw_finish_reason) == ("refusal", "stop")


def test_a_refusal_goes_back_as_openai_takes_it(replay: ReplayServer, runner: Runner) -> None:
    # OpenAI's own API takes the refusal field on an assistant message; a compatible server
    # elsewhere is not known to (Groq refuses the key), so there it is the turn's text.
    history = [
        {"role": "user", "content": "How do I pick a lock?"},
        {"role": "assistant", "content": "", "refusal": "I can't help with that."},
    ]
    official = OpenAIProvider("gpt-4o", base_url="https://api.openai.com/v1", api_key="sk-test")
    assert official.takes_refusal()
    request = official.build_request(Call(history), stream=True)
    assert request.body is not None
    body = json.loads(request.body)
    official.close()
    assert body["messages"][1] == history[1]
    assert not OpenAIProvider("m", base_url=f"{replay.url}/v1").takes_refusal()
    body, _ = transcript("openai_chat", "text")
    replay.replies = [Reply(chunks=[body])]
    runner.text(openai(replay), None, messages=[*history, {"role": "user", "content": "Why?"}])
    sent = replay.requests[-1].json()["messages"]
    assert sent[1] == {"role": "assistant", "content": "I can't help with that."}


def test_request_body_and_headers(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("openai_chat", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = openai(replay, headers={"X-Title": "spout tests"}, temperature=0.5)
    runner.text(
        llm,
        "Count from 1 to 5",
        system_prompt="Be brief.",
        max_tokens=20,
        stop=["6"],
        seed=7,
        top_p=0.9,
        logit_bias={"50256": -100},
    )
    request = replay.requests[-1]
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.headers["X-Title"] == "spout tests"
    assert request.json() == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Count from 1 to 5"},
        ],
        "temperature": 0.5,
        "max_tokens": 20,
        "stop": ["6"],
        "seed": 7,
        "top_p": 0.9,
        "logit_bias": {"50256": -100},
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_messages_are_sent_as_given(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("openai_chat", "text")
    replay.replies = [Reply(chunks=[body])]
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    runner.text(openai(replay), "And now?", messages=history)
    assert replay.requests[-1].json()["messages"] == [
        *history,
        {"role": "user", "content": "And now?"},
    ]


def test_not_streamed(replay: ReplayServer, runner: Runner) -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": '{"tz":"UTC"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
    }
    replay.replies = [json_reply(completion)]
    response = runner.generate(openai(replay), "What time is it?")
    assert response.text == "Let me check."
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_9", "get_time", {"tz": "UTC"})
    ]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 12)
    assert response.finish_reason == "tool_calls" and response.id == "chatcmpl-1"
    sent = replay.requests[-1].json()
    assert "stream" not in sent and "stream_options" not in sent


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, spout.BadRequestError),
        (401, spout.AuthenticationError),
        (403, spout.PermissionDeniedError),
        (404, spout.NotFoundError),
        (429, spout.RateLimitError),
        (500, spout.InternalServerError),
        (503, spout.ServiceUnavailableError),
    ],
)
def test_http_errors_raise_before_streaming(
    replay: ReplayServer, runner: Runner, status: int, error_class: type[spout.ProviderError]
) -> None:
    error = {"error": {"message": f"status {status} for you", "type": "some_error", "code": None}}
    replay.replies = [json_reply(error, status, {"x-request-id": "req_123", "retry-after": "7"})]
    exc = raised_on_start(runner, openai(replay), error_class)
    assert exc.status_code == status
    assert exc.request_id == "req_123"
    assert exc.body == error["error"]
    assert f"status {status} for you" in str(exc)
    if status == 429:
        assert exc.retry_after == 7.0


def test_context_window_error_is_recognized(replay: ReplayServer) -> None:
    error = {
        "error": {
            "message": "This model's maximum context length is 128000 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
    replay.replies = [Reply(status=400, chunks=[json.dumps(error).encode()])]
    with pytest.raises(spout.ContextWindowExceededError):
        openai(replay).generate("x" * 10)


def test_connection_refused_is_a_spout_error(runner: Runner) -> None:
    llm = create_llm("openai", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(spout.ConnectionError):
        runner.text(llm)


def test_default_endpoint_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(spout.ConfigurationError, match="OPENAI_API_KEY"):
        create_llm("openai", model="gpt-4o-mini")


def test_key_from_environment(replay: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    body, _ = transcript("openai_chat", "text")
    replay.replies = [Reply(chunks=[body])]
    create_llm("openai", model="m", base_url=f"{replay.url}/v1").generate_stream("hi").close()
    assert replay.requests[-1].headers["Authorization"] == "Bearer sk-from-env"


def test_usage_event_comes_before_finish(replay: ReplayServer) -> None:
    body, _ = transcript("openai_chat", "parallel_tool_calls")
    replay.replies = [Reply(chunks=[body])]
    events = list(openai(replay).generate_stream("hi").events())
    assert isinstance(events[-2], Usage) and isinstance(events[-1], Finish)
    assert not any(isinstance(e, TextDelta) and e.text == "" for e in events)


AUDIO: dict[str, Any] = {
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "pcm16"},
}


def test_audio_transcript(replay: ReplayServer, runner: Runner, cut: Cut) -> None:
    body, expected = transcript("openai_chat", "audio")
    replay.replies = [Reply(chunks=cut(body))]
    streamed = runner.events(openai(replay), **AUDIO)
    # The text is the audio's transcript; the audio is a file, whole at the end.
    said = "".join(e.text for e in streamed.events if isinstance(e, TextDelta))
    assert said == expected["text"] == streamed.response.text
    check_outputs(streamed.response, expected, streamed.events)
    (audio,) = streamed.response.files
    assert (audio.kind, audio.name) == ("audio", "audio_WIRE0000000000000000000001")
    kinds = [type(e) for e in streamed.events if isinstance(e, (FileStart, FileEnd, Finish))]
    assert kinds == [FileStart, FileEnd, Finish]
    assert streamed.response.finish_reason == "stop"
    assert replay.requests[-1].json()["audio"] == AUDIO["audio"]


def test_audio_not_streamed(replay: ReplayServer, runner: Runner) -> None:
    # The whole message carries the audio whole: base64 data in the format asked for.
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28)
    message = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "audio": {
            "id": "audio_WIRE2",
            "data": base64.b64encode(wav).decode(),
            "expires_at": 1735693200,
            "transcript": "Hi!",
        },
    }
    completion = {
        "id": "chatcmpl-WIRE",
        "object": "chat.completion",
        "model": "gpt-4o-audio-preview",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }
    replay.replies = [json_reply(completion)]
    response = runner.generate(
        openai(replay), modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"}
    )
    assert response.text == "Hi!"
    (audio,) = response.files
    assert (audio.data, audio.media_type, audio.name) == (wav, "audio/wav", "audio_WIRE2")


def test_url_citation_annotations(replay: ReplayServer, runner: Runner) -> None:
    # A search model's answer (gpt-4o-search-preview): url_citation annotations on the message.
    text = "Oslo is Norway's capital (example.com)."
    annotation = {
        "type": "url_citation",
        "url_citation": {
            "end_index": 38,
            "start_index": 26,
            "title": "Oslo",
            "url": "https://example.com/WIRE/oslo",
        },
    }
    completion = {
        "id": "chatcmpl-WIRE",
        "object": "chat.completion",
        "model": "gpt-4o-search-preview",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "annotations": [annotation]},
                "finish_reason": "stop",
            }
        ],
    }
    replay.replies = [json_reply(completion)]
    (citation,) = runner.generate(openai(replay)).citations
    assert (citation.url, citation.title, citation.raw) == (
        "https://example.com/WIRE/oslo",
        "Oslo",
        annotation,
    )
    assert text[citation.start or 0 : citation.end] == "example.com)"


def test_anthropic_cache_markers_are_left_out_for_openai(
    replay: ReplayServer, runner: Runner
) -> None:
    # OpenAI caches by itself and refuses properties it does not know; OpenRouter passes the
    # markers on to the models that cache by them.
    marked: list[dict[str, Any]] = [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "<contract>", "cache_control": {"type": "ephemeral"}}
            ],
        },
        {"role": "user", "content": "Clause 4.2?", "cache_control": {"type": "ephemeral"}},
    ]
    replay.replies = [Reply(chunks=[sse(chunk({"content": "ok"}, "stop"))])] * 2
    runner.text(openai(replay), None, messages=marked)
    assert replay.requests[-1].json()["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "<contract>"}]},
        {"role": "user", "content": "Clause 4.2?"},
    ]
    assert "cache_control" in marked[1]  # the caller's messages are left as they were
    router = create_llm(
        "openrouter", model="anthropic/claude-sonnet-4.5", base_url=f"{replay.url}/v1", api_key="k"
    )
    runner.text(made(router), None, messages=marked)
    assert replay.requests[-1].json()["messages"] == marked
