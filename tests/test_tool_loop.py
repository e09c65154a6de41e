"""The tool loop against scripted model turns on a loopback server: what goes back on the wire."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any, Literal

import pytest

import spout
from helpers import Runner
from replay_server import ReplayServer, Reply
from scripted_turns import (
    anthropic_text_turn,
    anthropic_thinking_call_turn,
    gemini_call_turn,
    gemini_text_turn,
    ollama_call_turn,
    ollama_text_turn,
    openai_call_turn,
    openai_chunk,
    openai_single_call,
    openai_sse,
    openai_text_turn,
    responses_call_turn,
    responses_text_turn,
    turns,
)
from spout import (
    MaxToolRoundsError,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallParseError,
    ToolResult,
    create_llm,
    tool,
)

# -- tools --------------------------------------------------------------------------------------


def calculator_fn(expression: str) -> str:
    allowed = set("0123456789+-*/(). ")
    if not set(expression) <= allowed:
        raise ValueError(f"not arithmetic: {expression!r}")
    return str(eval(expression))


calculator = Tool(
    name="calculator",
    description="Evaluates an arithmetic expression",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
    function=calculator_fn,
)


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Current weather for a city."""
    return f"{city}: 21 degrees {unit}"


@tool
def broken(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"broken on purpose: {reason}")


# -- running the loop, sync or async ------------------------------------------------------------


@dataclass
class Loop:
    items: list[str | ToolCall]
    events: list[Any]
    response: spout.Response
    messages: list[dict[str, Any]]
    rounds: int


def run_loop(llm: spout.LLM, runner: Runner, prompt: str = "hi", **kwargs: Any) -> Loop:
    result = runner.tool_events(llm, prompt, **kwargs)
    stream = result.stream
    return Loop(
        _items(result.events), result.events, result.response, stream.messages, len(stream.rounds)
    )


def _items(events: list[Any]) -> list[str | ToolCall]:
    out: list[str | ToolCall] = []
    for event in events:
        if isinstance(event, TextDelta):
            out.append(event.text)
        elif isinstance(event, ToolResult):
            out.append(event.tool_call)
    return out


def ran_calls(loop: Loop, runner: Runner) -> list[ToolCall]:
    """The calls the loop yielded, in the order the model made them.

    Sync runs a round's calls one by one in that order. Async runs them together and yields
    each as it finishes (``asyncio.as_completed``): in whatever order the threads finished.
    """
    calls = [item for item in loop.items if isinstance(item, ToolCall)]
    made = [c.id for c in loop.response.tool_calls]
    in_order = sorted(calls, key=lambda c: made.index(c.id))
    if not runner.is_async:
        assert calls == in_order
    return in_order


def openai(server: ReplayServer) -> spout.LLM:
    return create_llm("openai", model="gpt-4o-mini", base_url=f"{server.url}/v1", api_key="sk-x")


# -- OpenAI chat: the shape of the second request ------------------------------------------------


def test_openai_two_rounds_send_calls_and_results_back(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn())
    loop = run_loop(
        openai(replay),
        runner,
        "What is 123 * 456, and the weather in Oslo?",
        tools=[calculator, get_weather],
    )
    calls = ran_calls(loop, runner)
    assert [(c.name, c.arguments, c.result, c.error) for c in calls] == [
        ("calculator", {"expression": "123 * 456"}, "56088", None),
        ("get_weather", {"city": 'Oslo é"'}, 'Oslo é": 21 degrees celsius', None),
    ]
    text = "".join(item for item in loop.items if isinstance(item, str))
    assert text == "Let me check.123 * 456 = 56088, and Oslo is mild."
    # Each call is yielded once it ran, after the round's text and before the next round's.
    assert all(isinstance(item, ToolCall) for item in loop.items[2:4])
    assert isinstance(loop.items[-1], str)

    assert len(replay.requests) == 2
    first, second = (r.json() for r in replay.requests)
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": "Evaluates an arithmetic expression",
                "parameters": calculator.parameters,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": get_weather.parameters,
            },
        },
    ]
    assert second["tools"] == first["tools"]
    assert second["messages"] == [
        {"role": "user", "content": "What is 123 * 456, and the weather in Oslo?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_calc",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "123 * 456"}'},
                },
                {
                    "id": "call_wx",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo \\u00e9\\""}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_calc", "content": "56088"},
        {"role": "tool", "tool_call_id": "call_wx", "content": 'Oslo é": 21 degrees celsius'},
    ]

    response = loop.response
    assert response.text == text
    assert [c.result for c in response.tool_calls] == ["56088", 'Oslo é": 21 degrees celsius']
    assert (response.usage.input_tokens, response.usage.output_tokens) == (140, 32)
    assert response.usage.extras["total_tokens"] == 172
    assert response.finish_reason == "stop"
    assert loop.rounds == 2
    # The conversation goes on from here: the final answer is its last message.
    assert loop.messages[-1] == {
        "role": "assistant",
        "content": "123 * 456 = 56088, and Oslo is mild.",
    }
    assert [m["role"] for m in loop.messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert loop.messages[2]["name"] == "calculator"


def test_every_rounds_events_and_tool_results(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn())
    loop = run_loop(openai(replay), runner, tools=[calculator, get_weather])
    kinds = [type(e).__name__ for e in loop.events]
    assert kinds.count("ResponseStart") == 2 and kinds.count("Finish") == 2
    assert kinds.count("ToolCallEnd") == 2 and kinds.count("ToolResult") == 2
    # A round's results come after its Finish, and before the next round starts.
    first_finish = kinds.index("Finish")
    assert first_finish < kinds.index("ToolResult") < kinds.index("ResponseStart", 1)
    results = {e.tool_call.id: e.content for e in loop.events if isinstance(e, ToolResult)}
    assert [results[c.id] for c in ran_calls(loop, runner)] == [
        "56088",
        'Oslo é": 21 degrees celsius',
    ]


def test_iterating_gives_text_and_ran_calls(replay: ReplayServer) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn())
    items = list(openai(replay).generate_stream_with_tools("q", tools=[calculator, get_weather]))
    assert [type(i).__name__ for i in items] == ["str", "str", "ToolCall", "ToolCall", "str", "str"]


async def test_async_iteration_gives_text_and_ran_calls(replay: ReplayServer) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn())
    llm = openai(replay)
    try:
        items = [
            i async for i in llm.agenerate_stream_with_tools("q", tools=[calculator, get_weather])
        ]
    finally:
        await llm.aclose()
    assert [type(i).__name__ for i in items] == ["str", "str", "ToolCall", "ToolCall", "str", "str"]


# -- the other providers: each sends calls and results back in its own shape -------------------


def test_anthropic_sends_thinking_and_tool_results_back(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = turns(anthropic_thinking_call_turn(), anthropic_text_turn())
    llm = create_llm("anthropic", model="claude-sonnet-4-5", base_url=replay.url, api_key="k")
    loop = run_loop(
        llm,
        runner,
        "Weather in Oslo?",
        tools=[get_weather],
        tool_choice="required",
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    [call] = [i for i in loop.items if isinstance(i, ToolCall)]
    assert (call.id, call.arguments, call.result) == (
        "toolu_01Wx",
        {"city": "Oslo"},
        "Oslo: 21 degrees celsius",
    )
    first, second = (r.json() for r in replay.requests)
    assert first["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": get_weather.parameters,
        }
    ]
    assert first["tool_choice"] == {"type": "any"}
    # A forced choice holds for the first round only, or the model could never answer.
    assert "tool_choice" not in second
    assert second["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "thinking",
                    "thinking": "The user wants weather.",
                    "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h",
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01Wx",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01Wx",
                    "content": "Oslo: 21 degrees celsius",
                },
            ],
        },
    ]
    assert loop.response.text == "It is 21 degrees in Oslo."
    assert loop.response.reasoning == "The user wants weather."
    assert (loop.response.usage.input_tokens, loop.response.usage.output_tokens) == (120, 39)


def test_anthropic_error_result_is_marked(replay: ReplayServer, runner: Runner) -> None:
    turn = anthropic_thinking_call_turn().replace(b"get_weather", b"broken")
    replay.replies = turns(turn, anthropic_text_turn("Sorry."))
    llm = create_llm("anthropic", model="claude-sonnet-4-5", base_url=replay.url, api_key="k")
    loop = run_loop(llm, runner, tools=[broken])
    [call] = [i for i in loop.items if isinstance(i, ToolCall)]
    assert call.result is None
    assert call.error == "TypeError: broken() got an unexpected keyword argument 'city'" or (
        call.error is not None and call.error.startswith("TypeError")
    )
    result = replay.requests[1].json()["messages"][2]["content"][0]
    assert result["is_error"] is True and result["content"] == f"Error: {call.error}"


def test_gemini_sends_thought_signature_back(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(gemini_call_turn(), gemini_text_turn())
    llm = create_llm("gemini", model="gemini-2.5-flash", base_url=replay.url, api_key="k")
    loop = run_loop(
        llm, runner, "Weather and sums", tools=[get_weather, calculator], tool_choice="get_weather"
    )
    calls = ran_calls(loop, runner)
    assert [(c.name, c.result, c.signature) for c in calls] == [
        ("get_weather", "Oslo: 21 degrees celsius", "CpwCAdHtim9signature"),
        ("calculator", "4", None),
    ]
    first, second = (r.json() for r in replay.requests)
    assert first["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parametersJsonSchema": get_weather.parameters,
                },
                {
                    "name": "calculator",
                    "description": "Evaluates an arithmetic expression",
                    "parametersJsonSchema": calculator.parameters,
                },
            ]
        }
    ]
    assert first["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert "toolConfig" not in second
    assert second["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and sums"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": "CpwCAdHtim9signature",
                },
                {"functionCall": {"name": "calculator", "args": {"expression": "2 + 2"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"result": "Oslo: 21 degrees celsius"},
                    }
                },
                {"functionResponse": {"name": "calculator", "response": {"result": 4}}},
            ],
        },
    ]
    assert loop.response.text == "Oslo is mild and 2 + 2 is 4."


def test_ollama_sends_tool_results_by_name(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(
        ollama_call_turn(), ollama_text_turn(), content_type="application/x-ndjson"
    )
    llm = create_llm("ollama", model="llama3.2", base_url=replay.url)
    loop = run_loop(llm, runner, "Weather in Oslo?", tools=[get_weather])
    first, second = (r.json() for r in replay.requests)
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": get_weather.parameters,
            },
        }
    ]
    assert second["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "Oslo: 21 degrees celsius", "tool_name": "get_weather"},
    ]
    assert loop.response.text == "Oslo: 21 degrees."
    assert (loop.response.usage.input_tokens, loop.response.usage.output_tokens) == (75, 15)


def test_ollama_cannot_force_a_call(replay: ReplayServer) -> None:
    llm = create_llm("ollama", model="llama3.2", base_url=replay.url)
    with pytest.raises(spout.ConfigurationError, match="tool_choice 'required'"):
        llm.generate("hi", tools=[get_weather], tool_choice="required")
    assert replay.requests == []


def test_responses_api_sends_function_call_items_back(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(responses_call_turn(), responses_text_turn())
    llm = create_llm(
        "openai", model="gpt-4.1", api="responses", base_url=f"{replay.url}/v1", api_key="k"
    )
    loop = run_loop(llm, runner, "Weather in Oslo?", tools=[get_weather], tool_choice="get_weather")
    first, second = (r.json() for r in replay.requests)
    assert first["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": get_weather.parameters,
        }
    ]
    assert first["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert second["input"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "type": "function_call",
            "call_id": "call_r1",
            "name": "get_weather",
            "arguments": '{"city": "Oslo"}',
        },
        {
            "type": "function_call_output",
            "call_id": "call_r1",
            "output": "Oslo: 21 degrees celsius",
        },
    ]
    assert loop.response.text == "Mild in Oslo."
    assert loop.response.usage.input_tokens == 60


# -- when calls go wrong, the model hears of it and the loop goes on -----------------------------


def test_failures_go_back_to_the_model(replay: ReplayServer, runner: Runner) -> None:
    turn = openai_sse(
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c_raise",
                        "type": "function",
                        "function": {
                            "name": "calculator",
                            "arguments": '{"expression": "import os"}',
                        },
                    },
                ]
            }
        ),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "c_unknown",
                        "type": "function",
                        "function": {"name": "launch_rockets", "arguments": "{}"},
                    },
                ]
            }
        ),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 2,
                        "id": "c_json",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"'},
                    },
                ]
            }
        ),
        openai_chunk({}, "tool_calls"),
    )
    replay.replies = turns(turn, openai_text_turn("Sorry, I could not."))
    loop = run_loop(openai(replay), runner, tools=[calculator, get_weather])
    calls = {c.id: c for c in loop.items if isinstance(c, ToolCall)}
    assert calls["c_raise"].error == "ValueError: not arithmetic: 'import os'"
    assert calls["c_unknown"].error == (
        "unknown tool 'launch_rockets'; the tools are: calculator, get_weather"
    )
    assert calls["c_json"].error is not None
    assert calls["c_json"].error.startswith("arguments are not valid JSON")
    assert calls["c_json"].arguments_raw == '{"city": "Oslo"'
    sent = [m for m in replay.requests[1].json()["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in sent] == [
        f"Error: {calls[i].error}" for i in ("c_raise", "c_unknown", "c_json")
    ]
    # Arguments that are not JSON go back as an empty object (servers that parse the history
    # would refuse the request); the error result tells the model what was wrong.
    assistant = replay.requests[1].json()["messages"][1]
    assert assistant["tool_calls"][2]["function"]["arguments"] == "{}"
    assert loop.response.text == "Sorry, I could not."


def test_a_plain_stream_raises_on_invalid_arguments(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [
        Reply(
            chunks=[
                openai_sse(
                    openai_chunk({"content": "Calling."}),
                    openai_chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "c1",
                                    "type": "function",
                                    "function": {
                                        "name": "get_weather",
                                        "arguments": '{"city": Oslo}',
                                    },
                                }
                            ]
                        }
                    ),
                    openai_chunk({}, "tool_calls"),
                )
            ]
        )
    ]
    with pytest.raises(ToolCallParseError) as caught:
        runner.events(openai(replay), tools=[get_weather])
    error = caught.value
    assert (error.tool_name, error.raw, error.tool_call_id) == (
        "get_weather",
        '{"city": Oslo}',
        "c1",
    )
    assert error.partial is not None and error.partial.text == "Calling."


def test_approve_can_veto_a_call(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn())
    seen: list[str] = []

    def approve(call: ToolCall) -> bool:
        seen.append(call.name)
        return call.name != "calculator"

    loop = run_loop(openai(replay), runner, tools=[calculator, get_weather], approve=approve)
    calls = ran_calls(loop, runner)
    assert sorted(seen) == ["calculator", "get_weather"]
    assert [(c.name, c.error) for c in calls] == [
        ("calculator", "the call was not approved"),
        ("get_weather", None),
    ]
    sent = [m for m in replay.requests[1].json()["messages"] if m["role"] == "tool"]
    assert sent[0]["content"] == "Error: the call was not approved"


async def test_async_approve_is_awaited(replay: ReplayServer) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn())

    async def approve(call: ToolCall) -> bool:
        await asyncio.sleep(0)
        return False

    llm = openai(replay)
    try:
        stream = llm.agenerate_stream_with_tools(
            "q", tools=[calculator, get_weather], approve=approve
        )
        calls = [i async for i in stream if isinstance(i, ToolCall)]
    finally:
        await llm.aclose()
    assert [c.error for c in calls] == ["the call was not approved"] * 2


def test_max_rounds_raises_with_every_round_so_far(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(
        openai_single_call("c1", "calculator", '{"expression": "1 + 1"}'),
        openai_single_call("c2", "calculator", '{"expression": "2 + 2"}'),
    )
    with pytest.raises(MaxToolRoundsError, match="max_rounds=2") as caught:
        run_loop(openai(replay), runner, tools=[calculator], max_rounds=2)
    partial = caught.value.partial
    assert partial is not None and caught.value.rounds == 2
    # The first round's call ran; the last round's did not.
    assert [(c.id, c.result) for c in partial.tool_calls] == [("c1", "2"), ("c2", None)]
    assert len(replay.requests) == 2


async def test_calls_of_one_turn_run_concurrently(replay: ReplayServer) -> None:
    # Each tool waits for the other to start: run one after the other, they never finish.
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    @tool
    async def wait_for_b() -> str:
        """Waits for b."""
        started["a"].set()
        await asyncio.wait_for(started["b"].wait(), 5)
        return "a done"

    @tool
    async def wait_for_a() -> str:
        """Waits for a."""
        started["b"].set()
        await asyncio.wait_for(started["a"].wait(), 5)
        return "b done"

    turn = openai_sse(
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "ca",
                        "type": "function",
                        "function": {"name": "wait_for_b", "arguments": "{}"},
                    }
                ]
            }
        ),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "cb",
                        "type": "function",
                        "function": {"name": "wait_for_a", "arguments": "{}"},
                    }
                ]
            }
        ),
        openai_chunk({}, "tool_calls"),
    )
    replay.replies = turns(turn, openai_text_turn("both"))
    llm = openai(replay)
    try:
        stream = llm.agenerate_stream_with_tools("q", tools=[wait_for_b, wait_for_a])
        calls = [i async for i in stream if isinstance(i, ToolCall)]
    finally:
        await llm.aclose()
    assert sorted((c.name, c.result) for c in calls) == [
        ("wait_for_a", "b done"),
        ("wait_for_b", "a done"),
    ]
    # Results go back in the order the model made the calls, whatever order they finished in.
    sent = [m for m in replay.requests[1].json()["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in sent] == ["ca", "cb"]


async def test_sync_tools_run_in_worker_threads_in_the_async_loop(replay: ReplayServer) -> None:
    threads: list[int] = []

    @tool
    def where() -> str:
        """Which thread runs this."""
        threads.append(threading.get_ident())
        return "here"

    replay.replies = turns(openai_single_call("c1", "where", "{}"), openai_text_turn("ok"))
    llm = openai(replay)
    try:
        items = [i async for i in llm.agenerate_stream_with_tools("q", tools=[where])]
    finally:
        await llm.aclose()
    assert threads and threads[0] != threading.get_ident()
    assert "ok" in "".join(i for i in items if isinstance(i, str))


def test_async_tools_are_refused_by_the_sync_loop(replay: ReplayServer) -> None:
    @tool
    async def later() -> str:
        """Async."""
        return "x"

    with pytest.raises(spout.ConfigurationError, match="agenerate_stream_with_tools"):
        openai(replay).generate_stream_with_tools("q", tools=[later])
    assert replay.requests == []


def test_stopping_the_loop_closes_the_connection(replay: ReplayServer) -> None:
    body = openai_sse(*[openai_chunk({"content": f"w{i} "}) for i in range(200)])
    replay.replies = [
        Reply(chunks=[body[i : i + 80] for i in range(0, len(body), 80)], delay=0.002)
    ]
    stream = openai(replay).generate_stream_with_tools("q", tools=[calculator])
    for i, _ in enumerate(stream):
        if i == 3:
            break
    sent = replay.wait_for_disconnect()
    assert sent is not None and sent < 60
    assert stream.response.text.startswith("w0 w1 w2 w3")


def test_plain_functions_and_openai_dicts_are_tools(replay: ReplayServer) -> None:
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    native = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Looks up",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    replay.replies = turns(
        openai_single_call("c1", "add", '{"a": 2, "b": 3}'), openai_text_turn("5")
    )
    items = list(openai(replay).generate_stream_with_tools("q", tools=[add, native]))
    [call] = [i for i in items if isinstance(i, ToolCall)]
    assert call.result == 5
    assert replay.requests[1].json()["messages"][2]["content"] == "5"
    assert [t["function"]["name"] for t in replay.requests[0].json()["tools"]] == ["add", "lookup"]


def test_tool_choice_is_checked_before_sending(replay: ReplayServer) -> None:
    llm = openai(replay)
    with pytest.raises(spout.ConfigurationError, match="'auto', 'none', 'required' or the name"):
        llm.generate("q", tools=[calculator], tool_choice="get_weather")
    with pytest.raises(spout.ConfigurationError, match="two tools are named 'calculator'"):
        llm.generate("q", tools=[calculator, calculator])
    with pytest.raises(ValueError, match="max_rounds must be a positive int"):
        llm.generate_stream_with_tools("q", tools=[calculator], max_rounds=0)
    with pytest.raises(ValueError, match="needs tools"):
        llm.generate_stream_with_tools("q", tools=[])
    assert replay.requests == []


@pytest.mark.parametrize(
    "choice, sent",
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("calculator", {"type": "function", "function": {"name": "calculator"}}),
    ],
)
def test_openai_tool_choice(replay: ReplayServer, choice: str, sent: Any) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn("x")])]
    openai(replay).generate_stream("q", tools=[calculator], tool_choice=choice).close()
    assert replay.requests[0].json()["tool_choice"] == sent


# -- arguments while they stream -----------------------------------------------------------------


def test_snapshot_holds_the_arguments_parsed_so_far(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[openai_call_turn()])]
    stream = openai(replay).generate_stream("q", tools=[calculator, get_weather])
    seen = []
    for event in stream.events():
        if isinstance(event, ToolCallDelta):
            calls = stream.snapshot.tool_calls
            seen.append((calls[-1].name, calls[-1].arguments))
        elif isinstance(event, ToolCallEnd):
            assert stream.snapshot.tool_calls[-1] == event.tool_call
    assert seen == [
        ("calculator", {}),
        ("calculator", {"expression": "123 * 456"}),
        ("get_weather", {"city": "Os"}),
        ("get_weather", {"city": 'Oslo é"'}),
        ("get_weather", {"city": 'Oslo é"'}),
    ]
