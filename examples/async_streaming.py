"""Stream from the bundled local model with asyncio, without blocking the event loop.

Shows ``agenerate_stream``, ``generate_async(stream=True)`` and a non-streamed
``generate_async``, all inside ``async with create_llm() as llm``.
Run it with ``python examples/async_streaming.py``: no key and no network needed.
"""

from __future__ import annotations

import asyncio

from spout import create_llm


async def main() -> None:
    async with create_llm() as llm:
        print("-- agenerate_stream: the request is sent when the loop starts")
        async for chunk in llm.agenerate_stream("Write a haiku about rivers.", max_tokens=60):
            print(chunk, end="", flush=True)
        print()

        print("\n-- generate_async(stream=True): the request is sent before the await returns")
        stream = await llm.generate_async("Count from 1 to 5.", stream=True, max_tokens=40)
        async for chunk in stream:
            print(chunk, end="", flush=True)
        response = await stream.get_response()
        print(f"\n({response.usage.output_tokens} tokens, finish reason: {response.finish_reason})")

        print("\n-- generate_async: the whole answer at once")
        response = await llm.generate_async("Say hi in one short sentence.", max_tokens=30)
        print(response.text)


if __name__ == "__main__":
    asyncio.run(main())
