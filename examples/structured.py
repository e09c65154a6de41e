"""Structured output: the answer's JSON as partial objects while it streams, then validated.

Run it with ``python examples/structured.py``: uses the bundled local model, no key or network.
The local model samples under a grammar made from the schema, so even this small model writes
JSON that parses; other providers use their native structured output, or an instruction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from spout import StructuredOutputError, create_llm


@dataclass
class Capital:
    """A capital city."""

    city: str
    country: str


# A JSON Schema works too: `parsed` is then a dict, checked against the schema.
BOOK = {
    "type": "object",
    "properties": {"title": {"type": "string", "maxLength": 40}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}


def main() -> None:
    with create_llm() as llm:
        stream = llm.generate_stream(
            "What is the capital of France?", response_format=Capital, max_tokens=60, temperature=0
        )
        for partial in stream.partial_objects():
            print(f"partial: {partial}")
        response = stream.response
        print(f"parsed: {response.parsed!r}")
        print(f"finish reason: {response.finish_reason}, {response.usage.output_tokens} tokens")

        book = llm.generate("Name a famous novel.", response_format=BOOK, max_tokens=60, seed=3)
        print(f"parsed (JSON Schema): {book.parsed}")

        # An answer cut short (or that does not validate) raises, keeping the text.
        try:
            llm.generate("What is the capital of Peru?", response_format=Capital, max_tokens=6)
        except StructuredOutputError as error:
            print(f"StructuredOutputError: {error}")
            print(f"raw: {error.raw!r}, parsed so far: {error.value}")

    asyncio.run(streamed_async())


async def streamed_async() -> None:
    async with create_llm() as llm:
        stream = llm.agenerate_stream(
            "What is the capital of Italy?", response_format=Capital, max_tokens=60, temperature=0
        )
        count = 0
        async for _ in stream.partial_objects():
            count += 1
        print(f"async: {(await stream.get_response()).parsed!r} after {count} partial objects")


if __name__ == "__main__":
    main()
