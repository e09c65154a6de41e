"""One way to run a streaming call, sync or async, so every test covers both."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from spout import LLM, Event, Response


@dataclass
class Streamed:
    chunks: list[str]
    events: list[Event]
    response: Response


def stream(llm: LLM, mode: str, prompt: str | None = "hi", **kwargs: Any) -> Streamed:
    """Stream a call to its end through ``Stream`` (sync) or ``AsyncStream`` (async).

    One pass over ``events()``; the text chunks are the text events' text.
    """
    if mode == "sync":
        s = llm.generate_stream(prompt, **kwargs)
        events = list(s.events())
        return Streamed(_texts(events), events, s.response)

    async def run() -> Streamed:
        try:
            s = llm.agenerate_stream(prompt, **kwargs)
            events = [event async for event in s.events()]
            return Streamed(_texts(events), events, await s.get_response())
        finally:
            await llm.aclose()

    return asyncio.run(run())


def stream_text(llm: LLM, mode: str, prompt: str | None = "hi", **kwargs: Any) -> Streamed:
    """Like :func:`stream`, but iterating the stream itself for text, as most users do."""
    if mode == "sync":
        s = llm.generate_stream(prompt, **kwargs)
        chunks = list(s)
        return Streamed(chunks, [], s.response)

    async def run() -> Streamed:
        try:
            s = llm.agenerate_stream(prompt, **kwargs)
            chunks = [chunk async for chunk in s]
            return Streamed(chunks, [], await s.get_response())
        finally:
            await llm.aclose()

    return asyncio.run(run())


def generate(llm: LLM, mode: str, prompt: str | None = "hi", **kwargs: Any) -> Response:
    """A non-streamed call, sync or async."""
    if mode == "sync":
        return llm.generate(prompt, **kwargs)

    async def run() -> Response:
        try:
            return await llm.generate_async(prompt, **kwargs)
        finally:
            await llm.aclose()

    return asyncio.run(run())


def _texts(events: list[Event]) -> list[str]:
    from spout import TextDelta

    return [event.text for event in events if isinstance(event, TextDelta)]
