"""End to end: spout's OpenAI provider against a real server, llama_cpp.server, on loopback."""

from __future__ import annotations

from typing import Any

import pytest

import spout
from helpers import Runner
from spout import ToolCallDelta, ToolCallStart, create_llm

# llama_cpp.server serving the bundled model.
pytestmark = pytest.mark.model

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def llm(llama_server: str) -> spout.LLM:
    return create_llm("openai", model="smollm2", base_url=llama_server, api_key="sk-local")


def test_streamed_text(llm: spout.LLM, runner: Runner) -> None:
    result = runner.text(llm, "Count from 1 to 5", max_tokens=40, seed=1, temperature=0)
    response = result.response
    assert len(result.chunks) > 3
    assert "".join(result.chunks) == response.text and response.text.strip()
    assert response.finish_reason in ("stop", "length")
    assert response.id and response.id.startswith("chatcmpl-")
    # llama_cpp.server ignores stream_options and never streams usage: spout asked for it,
    # and reports the counts as unknown rather than inventing them.
    assert response.usage.output_tokens is None


def test_not_streamed_carries_usage(llm: spout.LLM, runner: Runner) -> None:
    response = runner.generate(llm, "Count from 1 to 5", max_tokens=40, seed=1, temperature=0)
    assert response.text
    assert response.usage.input_tokens and response.usage.input_tokens > 5
    assert response.usage.output_tokens and response.usage.output_tokens > 3


def test_same_answer_streamed_or_not(llm: spout.LLM) -> None:
    # The server is deterministic only from the same cache state. It keeps the previous
    # request's tokens and reuses the longest prefix a new prompt shares with them: a prompt
    # asked again has its last token evaluated alone, a new one is evaluated in one batch, and
    # the two give slightly different logits. At temperature 0 that flips a near tie: "Name
    # three rivers." after another prompt gives "the Nile ... one of the largest", asked
    # again "the Nile ... the longest", streamed or not. So the prompt is asked once first;
    # streamed and not streamed then both answer a repeat, and must fold into the same reply.
    prompt = "Name three rivers."
    settings: dict[str, Any] = {"max_tokens": 30, "seed": 5, "temperature": 0}
    llm.generate(prompt, **settings)
    streamed = llm.generate_stream(prompt, **settings).response
    whole = llm.generate(prompt, **settings)
    assert streamed.text == whole.text and streamed.text.strip()
    assert streamed.finish_reason == whole.finish_reason
    assert streamed.tool_calls == whole.tool_calls == ()


def test_forced_tool_call_assembled_from_deltas(llm: spout.LLM, runner: Runner) -> None:
    result = runner.events(
        llm,
        "What is the weather in Oslo?",
        max_tokens=60,
        temperature=0,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    (call,) = result.response.tool_calls
    # The server repeats id and name on every delta; they must arrive once, not concatenated.
    assert call.name == "get_weather"
    assert call.id.startswith("call_") and call.id.count("call_") == 1
    assert isinstance(call.arguments, dict) and isinstance(call.arguments.get("city"), str)
    starts = [e for e in result.events if isinstance(e, ToolCallStart)]
    deltas = [e for e in result.events if isinstance(e, ToolCallDelta)]
    assert len(starts) == 1 and len(deltas) > 1  # the arguments really streamed
    assert "".join(d.arguments for d in deltas) == call.arguments_raw
    assert result.response.finish_reason == "tool_calls"


def test_tool_loop_runs_the_function_and_streams_the_next_turn(
    llm: spout.LLM, runner: Runner
) -> None:
    ran: list[dict[str, Any]] = []

    @spout.tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        ran.append({"city": city})
        return f"It is 21 degrees and sunny in {city}."

    settings: dict[str, Any] = {"max_tokens": 60, "seed": 1, "temperature": 0}
    prompt = "What is the weather in Oslo?"
    loop = runner.stream_with_tools(
        llm, prompt, tools=[get_weather], tool_choice="get_weather", max_rounds=3, **settings
    )
    items = runner.list(loop)
    response, rounds = runner.response(loop), loop.rounds
    calls = [item for item in items if isinstance(item, spout.ToolCall)]
    # The real model made a real call; the loop ran the Python function with its arguments.
    assert calls and calls[0].name == "get_weather"
    assert ran and ran[0] == calls[0].arguments
    assert calls[0].result == f"It is 21 degrees and sunny in {ran[0]['city']}."
    # The next turn streamed after the call ran.
    assert len(rounds) >= 2 and rounds[0].finish_reason == "tool_calls"
    after = items[items.index(calls[0]) + 1 :]
    assert any(isinstance(item, str) and item for item in after)
    assert response.text == "".join(item for item in items if isinstance(item, str))
