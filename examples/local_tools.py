"""Tools on the bundled model, in process: no server, no key, no network.

The seed example of spout's tool loop, run on ``create_llm()``: the calculator is described
to the model, its call streams as events while llama.cpp samples it (held to the tool's JSON
Schema by a grammar), the loop runs the function and streams the answer.

Run it with ``python examples/local_tools.py``.
"""

from __future__ import annotations

import asyncio

from spout import ModelCapability, Tool, ToolCall, ToolCallDelta, ToolCallStart, create_llm


def calculator(expression: str) -> object:
    """Evaluates a mathematical expression."""
    if not set(expression) <= set("0123456789+-*/(). "):
        return "Error: not arithmetic"
    try:
        return eval(expression)
    except (SyntaxError, ZeroDivisionError):
        return "Error evaluating expression"


tools = [
    Tool(
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
]


def main() -> None:
    llm = create_llm()  # the bundled SmolLM2-135M-Instruct
    caps = llm.get_capabilities()
    print(f"tools: {caps[ModelCapability.TOOLS]}, streamed: {caps[ModelCapability.TOOL_STREAMING]}")

    # 1. One call, streamed as it is sampled (tool_choice names the tool the model must call).
    stream = llm.generate_stream("What is 123 * 456?", tools=tools, tool_choice="calculator")
    deltas = 0
    for event in stream.events():
        if isinstance(event, ToolCallStart):
            print(f"call started: {event.name} ({event.id})")
        elif isinstance(event, ToolCallDelta):
            deltas += 1
    [call] = stream.response.tool_calls
    print(
        f"streamed call: {call.name}({call.arguments}) in {deltas} deltas, "
        f"finish reason: {stream.response.finish_reason}"
    )

    # 2. The loop: the model chooses, the function runs, the answer streams.
    prompt = "What is 123 * 456? Then add 789 to the result."
    for chunk in llm.generate_stream_with_tools(prompt, tools=tools):
        if isinstance(chunk, str):
            print(chunk, end="", flush=True)
        elif isinstance(chunk, ToolCall):
            print(f"\n[Tool Call: {chunk.name}({chunk.arguments})]", flush=True)
            print(f"[Tool Result: {chunk.result}]\n", flush=True)
    print()

    # 3. The same, async.
    async def run() -> None:
        async with llm:
            results = [
                item.result
                async for item in llm.agenerate_stream_with_tools("What is 2 + 2?", tools=tools)
                if isinstance(item, ToolCall)
            ]
            print(f"async: tool results {results}")

    asyncio.run(run())


if __name__ == "__main__":
    main()
