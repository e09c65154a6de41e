"""Each provider's own state goes back exactly on the next round: reasoning blocks, encrypted
reasoning, signatures, in order, before the turn's tool calls (issue #22, part 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import Runner
from replay_server import ReplayServer
from scripted_turns import anthropic_sse, anthropic_text_turn, turns
from spout import Session, ToolCall, ToolResult, create_llm, tool


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
