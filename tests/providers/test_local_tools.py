"""Tools on the bundled model, in process: streamed calls, tool_choice, the loop, repeats;
and the CPU check that refuses a llama.cpp build this machine cannot run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import spout
from helpers import Runner
from spout import (
    Event,
    ModelCapability,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    create_llm,
    has_capability,
)
from spout.providers import local
from spout.providers._base import Call, NamedToolChoice
from spout.providers._local_tools import ToolPlan

pytestmark = pytest.mark.model


def calculator(expression: str) -> Any:
    """Evaluates a mathematical expression."""
    try:
        return eval(expression, {"__builtins__": {}})
    except Exception:
        return "Error evaluating expression"


CALCULATOR = Tool(
    name="calculator",
    description="Evaluates a mathematical expression",
    parameters={
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "description": "The mathematical expression to evaluate",
            }
        },
        "required": ["expression"],
    },
    function=calculator,
)


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}"


@pytest.fixture(scope="module")
def llm() -> spout.LLM:
    return create_llm()


def test_capabilities_say_tools_stream(llm: spout.LLM) -> None:
    caps = llm.get_capabilities()
    assert has_capability(caps, ModelCapability.TOOLS)
    assert has_capability(caps, ModelCapability.TOOL_STREAMING)


def test_a_named_tool_streams_its_call(llm: spout.LLM, runner: Runner) -> None:
    result = runner.events(llm, "What is 123 * 456?", tools=[CALCULATOR], tool_choice="calculator")
    kinds = [
        type(e) for e in result.events if type(e) in (ToolCallStart, ToolCallDelta, ToolCallEnd)
    ]
    # Start, the arguments in several pieces as they were sampled, then the whole call.
    assert kinds[0] is ToolCallStart and kinds[-1] is ToolCallEnd
    assert kinds.count(ToolCallDelta) > 2
    start = next(e for e in result.events if isinstance(e, ToolCallStart))
    deltas = "".join(e.arguments for e in result.events if isinstance(e, ToolCallDelta))
    (call,) = result.response.tool_calls
    assert start.name == call.name == "calculator" and start.id == call.id
    assert deltas == call.arguments_raw
    assert isinstance(call.arguments["expression"], str) and call.arguments["expression"]
    assert set(call.arguments) <= {"expression"}  # held to the tool's schema
    assert result.response.finish_reason == "tool_calls"
    assert result.response.text == ""
    assert result.response.usage.output_tokens and result.response.usage.output_tokens >= 3


def test_required_makes_a_call_and_none_makes_none(llm: spout.LLM, runner: Runner) -> None:
    tools = [CALCULATOR, get_weather]
    required = runner.events(llm, "Hello there!", tools=tools, tool_choice="required").response
    assert required.tool_calls and required.finish_reason == "tool_calls"
    assert {call.name for call in required.tool_calls} <= {"calculator", "get_weather"}
    assert required.text == ""

    none = runner.events(llm, "What is 2 + 2?", tools=tools, tool_choice="none", max_tokens=20)
    assert not none.response.tool_calls and none.response.text.strip()
    assert none.response.finish_reason in ("stop", "length")


def test_the_openai_shaped_tool_choice_names_a_tool(llm: spout.LLM) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    response = llm.generate("Weather in Oslo?", tools=[CALCULATOR, get_weather], tool_choice=choice)
    (call,) = response.tool_calls
    assert call.name == "get_weather" and isinstance(call.arguments.get("city"), str)


def test_seed_001_calculator_loop_runs(llm: spout.LLM, runner: Runner) -> None:
    # The seed's sync and async examples ask different questions.
    prompt = {
        "sync": "What is 123 * 456? Then add 789 to the result.",
        "async": "What is 2 + 2?",
    }[runner.mode]
    items = runner.list(runner.stream_with_tools(llm, prompt, tools=[CALCULATOR]))
    calls = [item for item in items if isinstance(item, ToolCall)]
    text = "".join(item for item in items if isinstance(item, str))
    assert calls and all(call.name == "calculator" for call in calls)
    # Each call ran: its result is what the function returned for its arguments.
    for call in calls:
        assert call.result == calculator(call.arguments["expression"])
    assert text.strip()  # the loop ends in an answer in words


def test_a_call_already_answered_is_not_made_again(llm: spout.LLM) -> None:
    # The model, left to choose, repeats the call it has the result of: the repeat is held
    # back and the reply turns to words.
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What is 2 + 2?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression":"2 + 2"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "calculator", "content": "4"},
    ]
    response = llm.generate(messages=messages, tools=[CALCULATOR], max_tokens=40)
    assert all(call.arguments_raw != '{"expression":"2 + 2"}' for call in response.tool_calls)
    if not response.tool_calls:
        assert response.text.strip() and response.finish_reason in ("stop", "length")


def test_max_tokens_cuts_a_call(llm: spout.LLM) -> None:
    # As with any provider: a call cut short is not JSON, and the stream says so, keeping
    # what arrived.
    stream_ = llm.generate_stream(
        "What is 123 * 456?", tools=[CALCULATOR], tool_choice="calculator", max_tokens=3
    )
    events: list[Event] = []
    with pytest.raises(spout.ToolCallParseError) as caught:
        events.extend(stream_.events())
    assert any(isinstance(e, ToolCallStart) for e in events)
    partial = caught.value.partial
    assert partial is not None and partial.usage.output_tokens == 3
    assert partial.tool_calls[0].name == "calculator" and partial.tool_calls[0].error


def test_a_stream_closed_mid_call_frees_the_model(llm: spout.LLM) -> None:
    s = llm.generate_stream("What is 123 * 456?", tools=[CALCULATOR], tool_choice="calculator")
    for event in s.events():
        if isinstance(event, ToolCallDelta):
            break
    s.close()
    # The model is free again at once, and a new call is whole.
    assert llm.generate("Say hi", max_tokens=5).text


def test_tools_the_local_model_cannot_take_are_refused(llm: spout.LLM) -> None:
    with pytest.raises(spout.ConfigurationError, match="function tools only"):
        llm.generate("hi", tools=[{"type": "web_search"}])
    with pytest.raises(spout.ConfigurationError, match="tool_choice"):
        llm.generate("hi", tools=[CALCULATOR], tool_choice={"type": "any"})


# -- the plan: pure ----------------------------------------------------------------------------


def _plan(messages: list[dict[str, Any]], choice: Any = None) -> ToolPlan:
    plan = ToolPlan.of(Call(messages=messages, tools=[CALCULATOR], tool_choice=choice))
    assert plan is not None
    return plan


def test_the_prompt_describes_the_tools_and_keeps_the_system_prompt() -> None:
    plan = _plan([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    system, user = plan.messages(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    )
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n")
    assert "functions.calculator: Evaluates a mathematical expression" in system["content"]
    assert json.dumps(CALCULATOR.parameters, separators=(",", ":")) in system["content"]
    assert user == {"role": "user", "content": "hi"}


def test_earlier_calls_and_results_are_written_in_the_reply_format() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "2+2?"},
        {
            "role": "assistant",
            "content": "Let me see.",
            "tool_calls": [
                {"id": "c1", "function": {"name": "calculator", "arguments": {"expression": "2+2"}}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": 4},
    ]
    plan = _plan(messages)
    rendered = plan.messages(messages)
    assert rendered[0]["role"] == "system"
    assert rendered[2] == {
        "role": "assistant",
        "content": 'message:\nLet me see.\nfunctions.calculator:\n{"expression":"2+2"}',
    }
    # The result names its call's tool, found by id.
    assert rendered[3] == {"role": "user", "content": "functions.calculator returned:\n4"}
    assert plan.earlier_calls == (("calculator", '{"expression":"2+2"}'),)


def test_grammars_follow_tool_choice() -> None:
    auto = _plan([{"role": "user", "content": "x"}], "auto")
    assert auto.header_grammar(first=True).startswith('root ::= "message:" | "functions." name ":"')
    assert '"calculator"' in auto.header_grammar(first=True)
    assert auto.header_grammar(first=False).startswith('root ::= ("\\n" "functions." name ":")?')
    required = _plan([{"role": "user", "content": "x"}], "required")
    assert "message:" not in required.header_grammar(first=True)
    named = _plan([{"role": "user", "content": "x"}], NamedToolChoice("calculator"))
    assert named.first_header() == "functions.calculator:" and not named.may_continue(1)
    assert ToolPlan.of(Call(messages=[], tools=[CALCULATOR], tool_choice="none")) is None
    with pytest.raises(spout.ConfigurationError, match="not one of the tools"):
        ToolPlan.of(Call(messages=[], tools=[CALCULATOR], tool_choice=NamedToolChoice("nope")))


# -- the CPU check -----------------------------------------------------------------------------


def test_what_a_build_uses_is_read_from_its_info_or_its_flags() -> None:
    info = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 0 |"
    assert local.built_with(info) == {"SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA"}
    args = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=OFF"]
    assert local.built_with(cmake_args=args) == {"AVX", "AVX2"}


def test_instructions_the_cpu_lacks_are_named() -> None:
    old_cpu = {"sse", "sse2", "pni", "ssse3", "avx"}
    assert local.missing_instructions({"AVX", "AVX2", "FMA"}, old_cpu) == ["AVX2", "FMA"]
    assert local.missing_instructions({"AVX"}, old_cpu) == []
    assert local.missing_instructions({"AVX2"}, None) == []  # unknown: not refused


def test_this_machine_runs_the_installed_build() -> None:
    info = __import__("llama_cpp").llama_print_system_info().decode()
    assert local.missing_instructions(local.built_with(info), local.cpu_flags()) == []


def test_a_cpu_without_avx2_gets_a_message_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As on a CPU without AVX2: the build record says AVX2, /proc/cpuinfo does not.
    record = tmp_path / "llama-cpp-build.json"
    record.write_text(json.dumps({"cmake_args": ["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON"]}))
    monkeypatch.setattr(local, "_BUILD_RECORD", record)
    monkeypatch.setattr(local, "cpu_flags", lambda: {"sse", "sse2", "avx"})
    llm = create_llm("local", n_ctx=512)  # settings no other test loads: a fresh load
    with pytest.raises(spout.ConfigurationError, match=r"built for AVX2, which this CPU does not"):
        llm.generate("hi", max_tokens=1)


def test_the_installer_builds_for_the_baseline_without_avx2() -> None:
    spec = importlib.util.spec_from_file_location(
        "install_llama", Path(__file__).parents[2] / "scripts" / "install_llama.py"
    )
    assert spec and spec.loader
    installer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installer)
    args, note = installer.cmake_flags("x86_64", {"avx", "avx2", "fma", "f16c", "sse"})
    assert (
        args
        == [
            "-DGGML_NATIVE=OFF",
            "-DGGML_AVX=ON",
            "-DGGML_AVX2=ON",
            "-DGGML_FMA=ON",
            "-DGGML_F16C=ON",
        ]
        and note is None
    )
    args, note = installer.cmake_flags("x86_64", {"sse", "sse2", "avx"})
    assert "-DGGML_AVX2=OFF" in args and "-DGGML_NATIVE=OFF" in args
    assert note and "AVX2" in note
    assert installer.cmake_flags("aarch64", set()) == (["-DGGML_NATIVE=OFF"], None)
    # The cache key changes with the flags: a wheel built with others is never reused.
    assert installer.build_key("0.3.36", ["-DGGML_NATIVE=OFF"]) != installer.build_key(
        "0.3.36", ["-DGGML_NATIVE=ON"]
    )
