"""Tools while streaming: a real model calls a Python function, and the loop streams its answer.

The bundled model runs behind ``python -m llama_cpp.server --chat_format
chatml-function-calling`` on a free loopback port (started and stopped here), reached through
the ``openai`` provider; ``--base-url`` names a server of your own instead. A forced
``tool_choice`` makes the small model call ``get_weather`` in the first round; the loop runs
the function, sends its result back, and streams the model's next turn.

Run it with ``python examples/tools.py`` (no key, no network).
"""

from __future__ import annotations

import argparse
from typing import Literal

from openai_compatible import llama_server

from spout import Tool, ToolCall, ToolCallDelta, create_llm, tool


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Current weather for a city.

    Args:
        city: The city to report on, e.g. "Oslo".
        unit: The temperature unit.
    """
    return f"It is 21 degrees {unit} and sunny in {city}."


def calculate(expression: str) -> str:
    if not set(expression) <= set("0123456789+-*/(). "):
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
    function=calculate,
)


def run(base_url: str) -> None:
    with create_llm("openai", model="smollm2", base_url=base_url, api_key="sk-local") as llm:
        print(f"schema of get_weather: {get_weather.parameters}")

        # 1. The calls stream as events; the arguments parsed so far are on the snapshot.
        stream = llm.generate_stream(
            "What is the weather in Oslo?",
            tools=[get_weather],
            tool_choice="get_weather",
            max_tokens=60,
            seed=1,
            temperature=0,
        )
        partials = []
        for event in stream.events():
            if isinstance(event, ToolCallDelta):
                partials.append(stream.snapshot.tool_calls[-1].arguments)
        [call] = stream.response.tool_calls
        print(f"streamed call: {call.name}({call.arguments}) in {len(partials)} deltas")

        # 2. The loop: the model's call runs, its result goes back, the next turn streams.
        loop = llm.generate_stream_with_tools(
            "What is the weather in Oslo?",
            tools=[calculator, get_weather],
            tool_choice="get_weather",
            max_rounds=3,
            max_tokens=60,
            seed=1,
            temperature=0,
        )
        for item in loop:
            if isinstance(item, str):
                print(item, end="", flush=True)
            elif isinstance(item, ToolCall):
                print(f"[{item.name}({item.arguments}) -> {item.error or item.result!r}]")
        response = loop.response
        print(f"\nrounds: {len(loop.rounds)}, tool calls run: {len(response.tool_calls)}")
        print(f"conversation: {' -> '.join(m['role'] for m in loop.messages)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="an OpenAI-compatible server with tool calls")
    args = parser.parse_args()
    if args.base_url:
        run(args.base_url)
    else:
        with llama_server() as base_url:
            run(base_url)


if __name__ == "__main__":
    main()
