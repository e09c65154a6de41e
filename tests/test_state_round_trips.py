"""Each provider's own state goes back exactly on the next round: reasoning blocks, encrypted
reasoning, signatures, in order, before the turn's tool calls (issue #22, part 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import Runner, json_reply
from replay_server import ReplayServer
from scripted_turns import (
    anthropic_sse,
    anthropic_text_turn,
    gemini_call_turn,
    gemini_text_turn,
    responses_sse,
    responses_text_turn,
    turns,
)
from spout import ReasoningDelta, Session, ToolCall, ToolResult, create_llm, tool
from spout.gateway import event_from_dict, event_to_dict


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"{city}: 21 degrees"


# -- Anthropic: thinking, redacted_thinking, thinking, then the call ----------------------------


def _block(index: int, block: dict[str, Any], *deltas: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def anthropic_redacted_call_turn() -> bytes:
    """A thinking turn whose second block the safety systems encrypted, then a tool call."""
    thinking = {"type": "thinking", "thinking": "", "signature": ""}
    return anthropic_sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_WIRE_state1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 40, "output_tokens": 1},
            },
        },
        *_block(
            0,
            thinking,
            {"type": "thinking_delta", "thinking": "Weather: "},
            {"type": "thinking_delta", "thinking": "call the tool."},
            {"type": "signature_delta", "signature": "EqQBWIREsig1"},
        ),
        *_block(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgyWIREredacted"}),
        *_block(
            2,
            thinking,
            {"type": "thinking_delta", "thinking": "Oslo it is."},
            {"type": "signature_delta", "signature": "EqQBWIREsig2"},
        ),
        *_block(
            3,
            {"type": "tool_use", "id": "toolu_WIRE1", "name": "get_weather", "input": {}},
            {"type": "input_json_delta", "partial_json": '{"city": "Oslo"}'},
        ),
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 30},
        },
        {"type": "message_stop"},
    )


ANTHROPIC_CALLING_TURN = {
    "role": "assistant",
    "content": [
        {"type": "thinking", "thinking": "Weather: call the tool.", "signature": "EqQBWIREsig1"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgyWIREredacted"},
        {"type": "thinking", "thinking": "Oslo it is.", "signature": "EqQBWIREsig2"},
        {"type": "tool_use", "id": "toolu_WIRE1", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
}
ANTHROPIC_RESULT = {
    "role": "user",
    "content": [
        {"type": "tool_result", "tool_use_id": "toolu_WIRE1", "content": "Oslo: 21 degrees"}
    ],
}
THINKING = {"type": "enabled", "budget_tokens": 1024}


def anthropic_at(replay: ReplayServer) -> Any:
    return create_llm(
        "anthropic", model="claude-sonnet-4-5", base_url=replay.url, api_key="k", max_retries=0
    )


def test_anthropic_thinking_and_redacted_thinking_go_back_in_order(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = turns(anthropic_redacted_call_turn(), anthropic_text_turn())
    result = runner.tool_events(
        anthropic_at(replay), "Weather in Oslo?", tools=[get_weather], thinking=THINKING
    )
    [call] = [e.tool_call for e in result.events if isinstance(e, ToolResult)]
    assert isinstance(call, ToolCall) and call.result == "Oslo: 21 degrees"
    second = replay.requests[1].json()
    assert second["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        ANTHROPIC_CALLING_TURN,
        ANTHROPIC_RESULT,
    ]


def test_anthropic_state_goes_back_from_a_history_given_as_messages(
    replay: ReplayServer, runner: Runner
) -> None:
    # The loop's own messages, passed back later by the caller, carry the same state.
    replay.replies = turns(anthropic_redacted_call_turn(), anthropic_text_turn())
    result = runner.tool_events(
        anthropic_at(replay), "Weather in Oslo?", tools=[get_weather], thinking=THINKING
    )
    history = [*result.stream.messages, {"role": "user", "content": "Thanks."}]
    replay.replies = turns(anthropic_text_turn("You're welcome."))
    runner.text(anthropic_at(replay), None, messages=history, thinking=THINKING)
    assert replay.requests[-1].json()["messages"][1:3] == [ANTHROPIC_CALLING_TURN, ANTHROPIC_RESULT]


def test_a_reloaded_session_sends_the_state_back(
    replay: ReplayServer, runner: Runner, tmp_path: Path
) -> None:
    replay.replies = turns(
        anthropic_redacted_call_turn(), anthropic_text_turn(), anthropic_text_turn("Bye.")
    )
    path = tmp_path / "conversations.db"
    session = Session(anthropic_at(replay), store=path)
    stream = runner.stream_with_tools(
        session, "Weather in Oslo?", tools=[get_weather], thinking=THINKING
    )
    runner.list(stream)
    session.save()
    session.close()

    again = Session.load(session.id, provider=anthropic_at(replay), store=path)
    runner.list(runner.stream(again, "Thanks.", thinking=THINKING))
    sent = replay.requests[-1].json()["messages"]
    assert sent[1:3] == [ANTHROPIC_CALLING_TURN, ANTHROPIC_RESULT]


# -- OpenAI Responses: a reasoning item, then the call --------------------------------------------

REASONING_ITEM = {
    "type": "reasoning",
    "id": "rs_WIRE1",
    "summary": [
        {"type": "summary_text", "text": "Weather needs a tool."},
        {"type": "summary_text", "text": "Oslo."},
    ],
    "encrypted_content": "gAAAAWIREencrypted==",
}
CALL_ITEM = {
    "type": "function_call",
    "id": "fc_WIRE1",
    "call_id": "call_WIRE1",
    "name": "get_weather",
    "arguments": '{"city": "Oslo"}',
    "status": "completed",
}


def responses_reasoning_call_turn() -> bytes:
    """A reasoning item (two summary parts, its encrypted content), then a function call."""
    response = {"id": "resp_WIRE1", "object": "response", "status": "in_progress", "model": "o4"}
    summary = {"type": "response.reasoning_summary_text.delta", "item_id": "rs_WIRE1"}
    return responses_sse(
        {"type": "response.created", "response": {**response, "output": []}},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**REASONING_ITEM, "summary": [], "encrypted_content": None},
        },
        {**summary, "output_index": 0, "summary_index": 0, "delta": "Weather needs a tool."},
        {**summary, "output_index": 0, "summary_index": 1, "delta": "Oslo."},
        {"type": "response.output_item.done", "output_index": 0, "item": REASONING_ITEM},
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {**CALL_ITEM, "arguments": "", "status": "in_progress"},
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_WIRE1",
            "output_index": 1,
            "delta": '{"city": "Oslo"}',
        },
        {"type": "response.output_item.done", "output_index": 1, "item": CALL_ITEM},
        {
            "type": "response.completed",
            "response": {
                **response,
                "status": "completed",
                "output": [REASONING_ITEM, CALL_ITEM],
                "usage": {"input_tokens": 20, "output_tokens": 70, "total_tokens": 90},
            },
        },
    )


def test_responses_reasoning_items_go_back_before_their_calls(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = turns(responses_reasoning_call_turn(), responses_text_turn())
    llm = create_llm("openai", model="o4", base_url=replay.url, api_key="k", api="responses")
    runner.tool_events(
        llm, "Weather in Oslo?", tools=[get_weather], store=False, reasoning={"summary": "auto"}
    )
    first, second = (r.json() for r in replay.requests)
    # With nothing stored at OpenAI, the encrypted reasoning is asked for by spout itself.
    assert first["include"] == second["include"] == ["reasoning.encrypted_content"]
    assert second["input"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        REASONING_ITEM,
        {
            "type": "function_call",
            "call_id": "call_WIRE1",
            "name": "get_weather",
            "arguments": '{"city": "Oslo"}',
        },
        {"type": "function_call_output", "call_id": "call_WIRE1", "output": "Oslo: 21 degrees"},
    ]


def test_responses_include_keeps_what_the_caller_asked(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = turns(responses_text_turn(), responses_text_turn())
    llm = create_llm("openai", model="o4", base_url=replay.url, api_key="k", api="responses")
    runner.text(llm, "hi", store=False, include=["message.output_text.logprobs"])
    runner.text(llm, "hi")
    unstored, stored = (r.json() for r in replay.requests)
    assert unstored["include"] == ["message.output_text.logprobs", "reasoning.encrypted_content"]
    assert "include" not in stored


# -- Gemini: a thought signature, kept in a stored session ----------------------------------------


@tool
def calculator(expression: str) -> str:
    """Evaluates an arithmetic expression."""
    return "4" if expression == "2 + 2" else "?"


def test_a_reloaded_gemini_session_sends_the_thought_signature_back(
    replay: ReplayServer, runner: Runner, tmp_path: Path
) -> None:
    replay.replies = turns(gemini_call_turn(), gemini_text_turn(), gemini_text_turn("Bye."))
    path = tmp_path / "conversations.db"

    def gemini() -> Any:
        return create_llm("gemini", model="gemini-2.5-flash", base_url=replay.url, api_key="k")

    session = Session(gemini(), store=path)
    runner.list(runner.stream_with_tools(session, "Sums", tools=[get_weather, calculator]))
    session.save()
    session.close()

    again = Session.load(session.id, provider=gemini(), store=path)
    runner.list(runner.stream(again, "Thanks."))
    sent = replay.requests[-1].json()["contents"]
    assert sent[1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                "thoughtSignature": "CpwCAdHtim9signature",
            },
            {"functionCall": {"name": "calculator", "args": {"expression": "2 + 2"}}},
        ],
    }


# -- calls not streamed keep the same state ------------------------------------------------------


def test_a_whole_anthropic_message_keeps_its_blocks_in_order(
    replay: ReplayServer, runner: Runner
) -> None:
    content = ANTHROPIC_CALLING_TURN["content"]
    assert isinstance(content, list)
    replay.replies = [
        json_reply(
            {
                "id": "msg_WIRE_whole",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": content,
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 40, "output_tokens": 30},
            }
        )
    ]
    response = runner.generate(anthropic_at(replay), "Weather in Oslo?", thinking=THINKING)
    assert response.reasoning_blocks == (
        {"text": "Weather: call the tool.", "signature": "EqQBWIREsig1"},
        {"redacted": "EmwKAhgBEgyWIREredacted"},
        {"text": "Oslo it is.", "signature": "EqQBWIREsig2"},
    )


def test_a_whole_responses_answer_keeps_its_reasoning_item(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = [
        json_reply(
            {
                "id": "resp_WIRE_whole",
                "object": "response",
                "status": "completed",
                "model": "o4",
                "output": [REASONING_ITEM, CALL_ITEM],
                "usage": {"input_tokens": 20, "output_tokens": 70, "total_tokens": 90},
            }
        )
    ]
    llm = create_llm("openai", model="o4", base_url=replay.url, api_key="k", api="responses")
    response = runner.generate(llm, "Weather in Oslo?", store=False)
    assert response.reasoning_blocks == (
        {"text": "Weather needs a tool.\n\nOslo.", "item": REASONING_ITEM},
    )
    assert replay.requests[0].json()["include"] == ["reasoning.encrypted_content"]


def test_the_loops_response_lists_every_rounds_reasoning_blocks(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = turns(anthropic_redacted_call_turn(), anthropic_text_turn())
    result = runner.tool_events(
        anthropic_at(replay), "Weather in Oslo?", tools=[get_weather], thinking=THINKING
    )
    assert result.response.reasoning_blocks == (
        {"text": "Weather: call the tool.", "signature": "EqQBWIREsig1"},
        {"redacted": "EmwKAhgBEgyWIREredacted"},
        {"text": "Oslo it is.", "signature": "EqQBWIREsig2"},
    )


@pytest.mark.parametrize(
    "event",
    [
        ReasoningDelta(redacted="EmwKAhgBEgyWIREredacted"),
        ReasoningDelta(item=REASONING_ITEM),
        ReasoningDelta("Oslo.", "EqQBWIREsig2"),
    ],
    ids=repr,
)
def test_reasoning_state_crosses_the_gateways_own_wire(event: ReasoningDelta) -> None:
    # A client of `spout serve` gets the same state to send back as a direct caller.
    assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event
