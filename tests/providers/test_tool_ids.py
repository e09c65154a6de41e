"""Tool-call ids a conversation carries from one provider to another, as each one takes them."""

from __future__ import annotations

from typing import Any

import pytest

import spout
from helpers import Runner, made
from replay_server import ReplayServer, Reply
from scripted_turns import (
    anthropic_text_turn,
    openai_single_call,
    openai_text_turn,
    responses_text_turn,
    turns,
)
from spout import Session, ToolCall, create_llm
from spout.providers._common import ToolIds
from spout.providers.anthropic import ANTHROPIC_TOOL_IDS
from spout.providers.bedrock import BEDROCK_TOOL_IDS

OPENAI_ID = "call_WIREabc123XYZdef456ghi789jk"
# What Mistral is sent for it: nine characters hashed from it, the same in every request.
OPENAI_ID_ON_MISTRAL = "OBEZP4RQc"


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"4 °C in {city}"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def llms(server: ReplayServer) -> tuple[spout.LLM, spout.LLM, spout.LLM]:
    common: dict[str, Any] = {"api_key": "WIRE-key", "max_retries": 0}
    return (
        made(create_llm("openai", model="gpt-4o-mini", base_url=f"{server.url}/v1", **common)),
        made(
            create_llm(
                "mistral", model="mistral-small-latest", base_url=f"{server.url}/v1", **common
            )
        ),
        made(create_llm("anthropic", model="claude-sonnet-4-5", base_url=server.url, **common)),
    )


def call(call_id: str, city: str) -> dict[str, Any]:
    arguments = f'{{"city": "{city}"}}'
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }


def test_a_session_goes_from_openai_to_mistral_to_anthropic(replay: ReplayServer) -> None:
    openai, mistral, anthropic = llms(replay)
    session = Session(openai)
    replay.replies = turns(
        openai_single_call(OPENAI_ID, "get_weather", '{"city": "Oslo"}'),
        openai_text_turn("Oslo: 4 °C."),
    )
    ran = [x for x in session.generate_stream_with_tools("Oslo?", tools=[get_weather])]
    assert [x.id for x in ran if isinstance(x, ToolCall)] == [OPENAI_ID]
    # OpenAI takes its own ids back as they are.
    assert replay.requests[1].json()["messages"][1]["tool_calls"] == [call(OPENAI_ID, "Oslo")]

    session.provider = mistral
    replay.replies = turns(
        openai_single_call("WIREmis01", "get_weather", '{"city": "Bergen"}'),
        openai_text_turn("Bergen: 7 °C."),
    )
    ran = [x for x in session.generate_stream_with_tools("Bergen?", tools=[get_weather])]
    assert [x.id for x in ran if isinstance(x, ToolCall)] == ["WIREmis01"]
    oslo_on_mistral = [
        {"role": "user", "content": "Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [call(OPENAI_ID_ON_MISTRAL, "Oslo")]},
        {"role": "tool", "tool_call_id": OPENAI_ID_ON_MISTRAL, "content": "4 °C in Oslo"},
        {"role": "assistant", "content": "Oslo: 4 °C."},
        {"role": "user", "content": "Bergen?"},
    ]
    assert replay.requests[2].json() == {
        "model": "mistral-small-latest",
        "messages": oslo_on_mistral,
        "tools": TOOLS,
        "stream": True,
    }
    # The next round sends the same new id again, and Mistral's own id as it is.
    assert replay.requests[3].json()["messages"] == [
        *oslo_on_mistral,
        {"role": "assistant", "content": "", "tool_calls": [call("WIREmis01", "Bergen")]},
        {"role": "tool", "tool_call_id": "WIREmis01", "content": "4 °C in Bergen"},
    ]

    # A result from elsewhere with an id Anthropic refuses, then Anthropic.
    session.add_message("assistant", "", tool_calls=[call("call:WIRE/1", "Tromsø")])
    session.add_message("tool", "-2 °C in Tromsø", tool_call_id="call:WIRE/1")
    session.provider = anthropic
    replay.replies = turns(anthropic_text_turn("Oslo 4, Bergen 7, Tromsø -2."))
    assert "".join(session.generate_stream("Sum up.")) == "Oslo 4, Bergen 7, Tromsø -2."

    def use(call_id: str, city: str) -> dict[str, Any]:
        return {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": city}}

    def result(call_id: str, content: str) -> dict[str, Any]:
        return {"type": "tool_result", "tool_use_id": call_id, "content": content}

    assert replay.requests[4].json() == {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "user", "content": "Oslo?"},
            {"role": "assistant", "content": [use(OPENAI_ID, "Oslo")]},
            {"role": "user", "content": [result(OPENAI_ID, "4 °C in Oslo")]},
            {"role": "assistant", "content": "Oslo: 4 °C."},
            {"role": "user", "content": "Bergen?"},
            {"role": "assistant", "content": [use("WIREmis01", "Bergen")]},
            {"role": "user", "content": [result("WIREmis01", "4 °C in Bergen")]},
            {"role": "assistant", "content": "Bergen: 7 °C."},
            {"role": "assistant", "content": [use("callWIRE1", "Tromsø")]},
            {"role": "user", "content": [result("callWIRE1", "-2 °C in Tromsø")]},
            {"role": "user", "content": "Sum up."},
        ],
        "max_tokens": 4096,
        "stream": True,
    }
    # The conversation itself keeps every id as the model that made it gave it.
    kept = [c["id"] for m in session.messages for c in m.get("tool_calls") or ()]
    kept += [m["tool_call_id"] for m in session.messages if m["role"] == "tool"]
    assert kept == [OPENAI_ID, "WIREmis01", "call:WIRE/1", OPENAI_ID, "WIREmis01", "call:WIRE/1"]


# A history with ids from everywhere: OpenAI's, Mistral's, Anthropic's, and ids Anthropic
# refuses, two of which lose the same characters as a third that fits already.
MIXED = [
    OPENAI_ID,
    "WIREmis01",
    "toolu_01WIRE00000000000000001",
    "call:WIRE/1",
    "callWIRE1",
    "call/WIRE:1",
    "::/",
]
ON_ANTHROPIC = [
    OPENAI_ID,
    "WIREmis01",
    "toolu_01WIRE00000000000000001",
    "callWIRE1_DSj8QVkd",
    "callWIRE1",
    "callWIRE1_pkSmuJGN",
    "call_2a20VaQD",
]


def mixed_history() -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = [{"role": "user", "content": "Weather everywhere?"}]
    history.append(
        {"role": "assistant", "content": "", "tool_calls": [call(i, "Oslo") for i in MIXED]}
    )
    # The results come back in another order than the calls.
    history += [{"role": "tool", "tool_call_id": i, "content": i} for i in reversed(MIXED)]
    return [*history, {"role": "user", "content": "So?"}]


def test_anthropic_is_sent_ids_it_takes_alike_in_calls_and_results(
    replay: ReplayServer, runner: Runner
) -> None:
    anthropic = llms(replay)[2]
    history = mixed_history()
    replay.replies = [Reply(chunks=[anthropic_text_turn("Mild.")])] * 2
    runner.text(anthropic, None, messages=history)
    runner.text(anthropic, None, messages=history)
    sent = replay.requests[-1].json()["messages"]
    assert [b["id"] for b in sent[1]["content"]] == ON_ANTHROPIC
    assert len(set(ON_ANTHROPIC)) == len(MIXED)
    # Each result answers its own call still, under the call's new id.
    assert [b["tool_use_id"] for b in sent[2]["content"]] == ON_ANTHROPIC[::-1]
    assert [b["content"] for b in sent[2]["content"]] == MIXED[::-1]
    # The same history is the same request every time; the caller's messages are untouched.
    assert replay.requests[-2].json() == replay.requests[-1].json()
    assert history == mixed_history()


def test_mistral_is_sent_nine_characters_for_every_foreign_id(
    replay: ReplayServer, runner: Runner
) -> None:
    mistral = llms(replay)[1]
    history = mixed_history()
    replay.replies = [Reply(chunks=[openai_text_turn("Mild.")])]
    runner.text(mistral, None, messages=history)
    sent = replay.requests[-1].json()["messages"]
    ids = [c["id"] for c in sent[1]["tool_calls"]]
    assert ids == [
        OPENAI_ID_ON_MISTRAL,
        "WIREmis01",
        "v56R5SePy",
        "mUNy7013Q",
        "callWIRE1",
        "wRef1wJMV",
        "2a20VaQD5",
    ]
    assert [m["tool_call_id"] for m in sent[2:-1]] == ids[::-1]
    assert history == mixed_history()


def test_vertex_claude_is_sent_anthropic_ids(replay: ReplayServer, runner: Runner) -> None:
    llm = made(
        create_llm(
            "vertex",
            model="claude-sonnet-4-5@20250929",
            base_url=replay.url,
            project="wire-project",
            location="us-central1",
            token_provider=lambda: "ya29.WIRE-token",
            max_retries=0,
        )
    )
    replay.replies = [Reply(chunks=[anthropic_text_turn("Mild.")])]
    runner.text(llm, None, messages=mixed_history())
    sent = replay.requests[-1].json()["messages"]
    assert [b["id"] for b in sent[1]["content"]] == ON_ANTHROPIC
    assert [b["tool_use_id"] for b in sent[2]["content"]] == ON_ANTHROPIC[::-1]


def test_bedrock_is_sent_ids_its_service_model_takes(
    replay: ReplayServer, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    llm = made(
        create_llm(
            "bedrock",
            model="us.anthropic.claude-3-5-haiku-20241022-v1:0",
            base_url=replay.url,
            region="us-east-1",
            api_key="ABSKWIREbedrockapikey0000",
            max_retries=0,
        )
    )
    long = "call.WIRE." + "x" * 70
    history = mixed_history()
    history[1]["tool_calls"].append(call(long, "Oslo"))
    history.insert(2, {"role": "tool", "tool_call_id": long, "content": "long"})
    replay.replies = [Reply(status=400, chunks=[b'{"message": "WIRE stop here"}'])]
    with pytest.raises(spout.ProviderError):
        runner.text(llm, None, messages=history)
    sent = replay.requests[-1].json()["messages"]
    uses = [b["toolUse"]["toolUseId"] for b in sent[1]["content"]]
    # ToolUseId in botocore's model: [a-zA-Z0-9_.:-]+, 1 to 64 characters.
    assert uses == [
        OPENAI_ID,
        "WIREmis01",
        "toolu_01WIRE00000000000000001",
        "call:WIRE1",
        "callWIRE1",
        "callWIRE:1",
        "::",
        "call.WIRE." + "x" * 45 + "_vFOP49y9",
    ]
    results = [b["toolResult"]["toolUseId"] for b in sent[2]["content"] if "toolResult" in b]
    assert results == [uses[-1], *uses[-2::-1]]


# A 51-character id (an OpenAI web search call's, vercel/ai#8132) and one of 70.
LONG = ["ws_689e2d4880a0819d98acca37694989b00b15d90494fc6b87", "call_WIRE" + "y" * 61]


def test_openai_chat_and_responses_are_sent_ids_of_the_length_they_take(
    replay: ReplayServer, runner: Runner
) -> None:
    history = mixed_history()
    history[1]["tool_calls"] += [call(i, "Oslo") for i in LONG]
    history[2:2] = [{"role": "tool", "tool_call_id": i, "content": i} for i in LONG]
    openai = llms(replay)[0]
    replay.replies = [Reply(chunks=[openai_text_turn("Mild.")])]
    runner.text(openai, None, messages=history)
    sent = replay.requests[-1].json()["messages"]
    ids = [c["id"] for c in sent[1]["tool_calls"]]
    # Ids of 40 characters or fewer go as they are, whatever their characters.
    assert ids[: len(MIXED)] == MIXED
    assert [len(i) for i in ids[len(MIXED) :]] == [40, 40]
    assert ids[-2] == "ws_689e2d4880a0819d98acca376949_vxRGv45h" and len(set(ids)) == len(ids)
    assert [m["tool_call_id"] for m in sent[2:4]] == ids[-2:]
    assert history[1]["tool_calls"][-1]["id"] == LONG[1]

    responses = made(
        create_llm(
            "openai",
            model="gpt-4.1",
            api="responses",
            base_url=f"{replay.url}/v1",
            api_key="WIRE-key",
            max_retries=0,
        )
    )
    replay.replies = [Reply(chunks=[responses_text_turn()])]
    runner.text(responses, None, messages=history)
    items = replay.requests[-1].json()["input"]
    calls = [i["call_id"] for i in items if i.get("type") == "function_call"]
    outputs = [i["call_id"] for i in items if i.get("type") == "function_call_output"]
    assert calls[:-1] == [*MIXED, LONG[0]] and len(calls[-1]) == 64
    assert outputs[:2] == calls[-2:] and sorted(outputs) == sorted(calls)


def test_an_id_rule_keeps_what_fits_and_never_merges_two_ids() -> None:
    rule = ToolIds.of_chars("a-z0-9_", max_length=12)
    messages: list[dict[str, Any]] = [
        {"role": "assistant", "tool_calls": [{"id": i} for i in ("ab", "a-b", "a+b", "")]},
        {"role": "tool", "tool_call_id": "a+b", "content": "x"},
    ]
    sent = rule.rewrite(messages)
    new = [c["id"] for c in sent[0]["tool_calls"]]
    assert new[0] == "ab" and len(set(new)) == 4
    assert all(rule.fits.fullmatch(i) for i in new)
    assert sent[1]["tool_call_id"] == new[2]
    # A history whose ids all fit is sent as it is.
    fitting = [{"role": "tool", "tool_call_id": "abc", "content": "x"}]
    assert rule.rewrite(fitting) is fitting
    assert ANTHROPIC_TOOL_IDS.rewrite(fitting) is fitting
    assert BEDROCK_TOOL_IDS.fits.fullmatch("a" * 65) is None
    # A rule with no room for another id says so, rather than sending two calls as one.
    with pytest.raises(ValueError, match="no tool-call id"):
        ToolIds.of_chars("x", max_length=1).rewrite(
            [{"role": "tool", "tool_call_id": i, "content": i} for i in ("x", "y")]
        )
