"""Streamed tool calls from every provider with tools, replayed over loopback HTTP.

Each transcript is replayed cut every hostile way, sync and async, and checked twice: the final
response (text, every call's id, name, parsed and raw arguments, finish, usage) and the event
stream (per call: its start, its argument deltas, its end; calls after the text they follow).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any, Literal

import pytest

import spout
from helpers import Cut, Runner, Streamed, made, usage_counts
from replay_server import ReplayServer, Reply, transcript
from spout import (
    Event,
    Finish,
    ReasoningDelta,
    Response,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    create_llm,
)

Connect = Callable[[str], spout.LLM]
#: How a provider streams a call's arguments: as JSON text in pieces ("raw"), as one delta that
#: is the object it sent, re-serialized ("object"), or not at all, the call arriving whole ("none").
Deltas = Literal["raw", "object", "none"]

JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}
SSE = {"Content-Type": "text/event-stream"}
TOOL_EVENTS = (ToolCallStart, ToolCallDelta, ToolCallEnd)


@pytest.fixture
def connect(replay: ReplayServer) -> Connect:
    """Make an LLM of a provider, pointed at the replay server; closed when the test ends."""

    def connect(provider: str) -> spout.LLM:
        url = replay.url
        if provider == "openai_chat":
            llm = create_llm("openai", model="gpt-4o-mini", base_url=f"{url}/v1", api_key="sk-test")
        elif provider == "openai_responses":
            llm = create_llm(
                "openai", model="gpt-4.1", api="responses", base_url=f"{url}/v1", api_key="sk-test"
            )
        elif provider == "anthropic":
            llm = create_llm(
                "anthropic", model="claude-sonnet-4-5", base_url=url, api_key="sk-ant-test"
            )
        elif provider == "gemini":
            llm = create_llm("gemini", model="gemini-2.5-flash", base_url=url, api_key="AIza-test")
        elif provider == "ollama":
            llm = create_llm("ollama", model="qwen3:8b", base_url=url)
        else:
            raise ValueError(provider)
        return made(llm)

    return connect


def replay_transcript(replay: ReplayServer, provider: str, case: str, cut: Cut) -> dict[str, Any]:
    """Script the server to send a transcript cut as asked; the result it must rebuild."""
    body, expected = transcript(provider, case)
    headers = NDJSON if provider == "ollama" else SSE
    replay.replies = [Reply(chunks=cut(body), headers=headers)]
    return expected


def calls_of(response: Response) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_raw": c.arguments_raw}
        for c in response.tool_calls
    ]


def check_response(response: Response, expected: dict[str, Any]) -> None:
    """The rebuilt response, field by field, against a transcript's expected result."""
    assert response.text == expected["text"]
    assert calls_of(response) == expected["tool_calls"]
    assert response.finish_reason == expected["finish_reason"] == "tool_calls"
    assert response.raw_finish_reason == expected["finish_reason_raw"]
    assert usage_counts(response) == expected["usage"]
    assert response.reasoning == expected.get("reasoning", "")
    assert response.reasoning_signature == expected.get("reasoning_signature")


def check_events(
    events: list[Event], response: Response, expected: dict[str, Any], deltas: Deltas
) -> None:
    """Each call streams as its start, its argument deltas, its end, one call after another,
    after any text and reasoning; the stream ends with the usage, then the finish."""
    tool_events = [e for e in events if isinstance(e, TOOL_EVENTS)]
    starts = [e for e in tool_events if isinstance(e, ToolCallStart)]
    calls = expected["tool_calls"]
    assert [(s.id, s.name) for s in starts] == [(c["id"], c["name"]) for c in calls]
    indexes = [s.index for s in starts]
    assert len(set(indexes)) == len(indexes), "two calls share an index"
    # No call's events interleave with another's: grouping by index gives each index once.
    assert [index for index, _ in itertools.groupby(e.index for e in tool_events)] == indexes
    for index, call, final in zip(indexes, calls, response.tool_calls, strict=True):
        mine = [e for e in tool_events if e.index == index]
        start, *middle, end = mine
        assert isinstance(start, ToolCallStart) and isinstance(end, ToolCallEnd)
        assert all(isinstance(e, ToolCallDelta) for e in middle)
        assert end.tool_call == final
        joined = "".join(e.arguments for e in middle if isinstance(e, ToolCallDelta))
        if deltas == "raw":
            assert joined == call["arguments_raw"]
            # Arguments stream in pieces as they came, not as one delta at the end.
            assert len(middle) > 1 if call["arguments_raw"] else not middle
        elif deltas == "object":
            assert len(middle) == 1 and json.loads(joined) == call["arguments"]
        else:
            assert not middle
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == expected["text"]
    texts = [pos for pos, e in enumerate(events) if isinstance(e, TextDelta)]
    reasoning = [pos for pos, e in enumerate(events) if isinstance(e, ReasoningDelta)]
    first_call = next(pos for pos, e in enumerate(events) if isinstance(e, ToolCallStart))
    if texts:
        assert max(texts) < first_call, "a call started before the text it follows ended"
    if reasoning and texts:
        assert max(reasoning) < min(texts)
    usages = [e for e in events if isinstance(e, Usage)]
    assert usages and usages[-1] == response.usage
    assert events[-1] == Finish("tool_calls", expected["finish_reason_raw"])


def check_stream(result: Streamed, expected: dict[str, Any], deltas: Deltas) -> None:
    check_response(result.response, expected)
    check_events(result.events, result.response, expected, deltas)


# -- OpenAI chat completions ----------------------------------------------------------------------


def test_openai_text_then_tool_call(
    replay: ReplayServer, connect: Connect, runner: Runner, cut: Cut
) -> None:
    expected = replay_transcript(replay, "openai_chat", "text_then_tool_call", cut)
    result = runner.events(connect("openai_chat"))
    check_stream(result, expected, "raw")
    assert result.response.usage.extras["total_tokens"] == expected["usage_raw"]["total_tokens"]


def test_openai_text_then_tool_call_not_streamed(
    replay: ReplayServer, connect: Connect, runner: Runner
) -> None:
    _, expected = transcript("openai_chat", "text_then_tool_call")
    (call,) = expected["tool_calls"]
    completion = {
        "id": "chatcmpl-WIREtextTool0000000000000003",
        "object": "chat.completion",
        "created": 1735689660,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": expected["text"],
                    "tool_calls": [
                        {
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["name"], "arguments": call["arguments_raw"]},
                        }
                    ],
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": expected["usage_raw"],
        "service_tier": "default",
        "system_fingerprint": "fp_0000wire01",
    }
    replay.replies = [Reply(chunks=[json.dumps(completion).encode()], headers=JSON)]
    response = runner.generate(connect("openai_chat"))
    # Chat completions send arguments as JSON text streamed or not: the raw text is kept.
    check_response(response, expected)
    assert response.id == completion["id"]
    assert "stream" not in replay.requests[-1].json()


def test_openai_interleaved_tool_calls(
    replay: ReplayServer, connect: Connect, runner: Runner, cut: Cut
) -> None:
    expected = replay_transcript(replay, "openai_chat", "interleaved_tool_calls", cut)
    result = runner.events(connect("openai_chat"))
    check_response(result.response, expected)
    # The deltas interleave, but each index still has one start, then its deltas, then one end.
    tool_events = [e for e in result.events if isinstance(e, TOOL_EVENTS)]
    for index, call in enumerate(expected["tool_calls"]):
        start, *middle, end = [e for e in tool_events if e.index == index]
        assert start == ToolCallStart(index, call["id"], call["name"])
        joined = "".join(e.arguments for e in middle if isinstance(e, ToolCallDelta))
        assert joined == call["arguments_raw"]
        assert isinstance(end, ToolCallEnd) and end.tool_call.arguments == call["arguments"]
    assert result.events[-1] == Finish("tool_calls", "tool_calls")


# -- Anthropic Messages ---------------------------------------------------------------------------


def test_anthropic_parallel_tool_use(
    replay: ReplayServer, connect: Connect, runner: Runner, cut: Cut
) -> None:
    expected = replay_transcript(replay, "anthropic", "parallel_tool_use", cut)
    check_stream(runner.events(connect("anthropic")), expected, "raw")


def test_anthropic_tool_use_without_any_input_delta(
    replay: ReplayServer, connect: Connect, runner: Runner, cut: Cut
) -> None:
    # A tool that takes no input may come with no input_json_delta at all: still {} and "".
    body, expected = transcript("anthropic", "parallel_tool_use")
    empty = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,'
        b'"delta":{"type":"input_json_delta","partial_json":""}}\n\n'
    )
    assert body.count(empty) == 1
    replay.replies = [Reply(chunks=cut(body.replace(empty, b"")))]
    result = runner.events(connect("anthropic"))
    check_stream(result, expected, "raw")
    assert result.response.tool_calls[1].arguments == {}


def test_anthropic_thinking_text_tool_use(
    replay: ReplayServer, connect: Connect, runner: Runner, cut: Cut
) -> None:
    expected = replay_transcript(replay, "anthropic", "thinking_text_tool_use", cut)
    result = runner.events(connect("anthropic"))
    check_stream(result, expected, "raw")
    reasoning = [e for e in result.events if isinstance(e, ReasoningDelta)]
    # The signature comes whole, once, after the thinking it signs and before the text.
    assert [e.signature for e in reasoning if e.signature] == [expected["reasoning_signature"]]
    assert reasoning[-1].signature == expected["reasoning_signature"]
    assert "".join(e.text for e in reasoning) == expected["reasoning"]


def anthropic_message(case: str) -> dict[str, Any]:
    """The non-streamed Messages API response for the same turn as a transcript."""
    _, expected = transcript("anthropic", case)
    content: list[dict[str, Any]] = []
    if expected.get("reasoning"):
        content.append(
            {
                "type": "thinking",
                "thinking": expected["reasoning"],
                "signature": expected["reasoning_signature"],
            }
        )
    content.append({"type": "text", "text": expected["text"]})
    content += [
        {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["arguments"]}
        for c in expected["tool_calls"]
    ]
    return {
        "id": "msg_01WIREnotStreamed000000001",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": expected["usage"]["input_tokens"],
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": expected["usage"]["output_tokens"],
            "service_tier": "standard",
        },
    }


@pytest.mark.parametrize("case", ["parallel_tool_use", "thinking_text_tool_use"])
def test_anthropic_not_streamed(
    replay: ReplayServer, connect: Connect, runner: Runner, case: str
) -> None:
    _, expected = transcript("anthropic", case)
    message = anthropic_message(case)
    replay.replies = [Reply(chunks=[json.dumps(message).encode()], headers=JSON)]
    response = runner.generate(connect("anthropic"))
    # A whole message carries each input as an object: there is no JSON text to keep.
    objects = [{**call, "arguments_raw": None} for call in expected["tool_calls"]]
    check_response(response, {**expected, "tool_calls": objects})
    assert response.id == message["id"]
    assert "stream" not in replay.requests[-1].json()


# -- Gemini ---------------------------------------------------------------------------------------


def test_gemini_parallel_function_calls(
    replay: ReplayServer, connect: Connect, runner: Runner, cut: Cut
) -> None:
    expected = replay_transcript(replay, "gemini", "parallel_function_calls", cut)
    result = runner.events(connect("gemini"))
    check_stream(result, expected, "object")
    # The thoughtSignature belongs to the call it came with, not to the reasoning.
    assert result.response.reasoning == "" and result.response.reasoning_signature is None
    thoughts = expected["usage_raw"]["thoughtsTokenCount"]
    assert result.response.usage.extras["thoughtsTokenCount"] == thoughts


def test_gemini_thought_signature_is_kept_on_its_call(
    replay: ReplayServer, connect: Connect, runner: Runner, cut: Cut
) -> None:
    expected = replay_transcript(replay, "gemini", "parallel_function_calls", cut)
    response = runner.events(connect("gemini")).response
    signatures = [call.signature for call in response.tool_calls]
    assert signatures == expected["tool_call_signatures"]


# -- Ollama ---------------------------------------------------------------------------------------


def test_ollama_tool_calls_after_content(
    replay: ReplayServer, connect: Connect, runner: Runner, cut: Cut
) -> None:
    expected = replay_transcript(replay, "ollama", "tool_calls_after_content", cut)
    result = runner.events(connect("ollama"))
    check_stream(result, expected, "none")
    # Two calls came in one line, the third in a line of its own: numbered across the response.
    assert [e.index for e in result.events if isinstance(e, ToolCallStart)] == [0, 1, 2]


# -- OpenAI Responses -----------------------------------------------------------------------------


def test_responses_text_then_function_calls(
    replay: ReplayServer, connect: Connect, runner: Runner, cut: Cut
) -> None:
    expected = replay_transcript(replay, "openai_responses", "text_then_function_calls", cut)
    result = runner.events(connect("openai_responses"))
    check_stream(result, expected, "raw")
    assert result.response.usage.extras["total_tokens"] == expected["usage_raw"]["total_tokens"]
