"""The transport's async sessions: closed on their own event loop even when nobody closes them.

The seeds' async examples (``/work/shared/seeds/`` 000 and 001) make an LLM inside a
coroutine and never close it. Each test records every warning, collects garbage, and fails on
any: an aiohttp session left to the collector warns ``Unclosed client session``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import spout
from helpers import Runner, made
from replay_server import ReplayServer, Reply
from spout import create_llm


def answer(words: int = 3) -> Reply:
    chunks = [
        b"data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}).encode()
        + b"\n\n"
        for i in range(words)
    ]
    chunks.append(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    chunks.append(b"data: [DONE]\n\n")
    return Reply(chunks=chunks)


def make_llm(server: ReplayServer) -> spout.LLM:
    server.replies = [answer()]
    return create_llm("openai", model="m", base_url=f"{server.url}/v1", api_key="k")


@pytest.fixture
def no_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
        gc.collect()
    assert [str(w.message) for w in caught] == []


def sessions_of(llm: spout.LLM) -> list[Any]:
    transport = llm.provider.transport  # type: ignore[attr-defined]
    return list(transport._sessions.values())


def test_an_llm_dropped_in_its_loop_closes_its_session(
    replay: ReplayServer, no_warnings: list[warnings.WarningMessage]
) -> None:
    # Seed 001's stream_handler: a provider per call, three gathered, none closed.
    opened: list[weakref.ref[Any]] = []

    async def stream_handler(prompt: str) -> str:
        provider = make_llm(replay)
        result = [chunk async for chunk in provider.agenerate_stream(prompt)]
        opened.extend(weakref.ref(session) for session in sessions_of(provider))
        return "".join(result)

    async def main() -> list[str]:
        results = await asyncio.gather(*(stream_handler(p) for p in ("AI", "ML", "NLP")))
        # Closed while the loop still runs, not only at its end.
        await asyncio.sleep(0.05)
        assert all(ref() is None or ref().closed for ref in opened)  # type: ignore[union-attr]
        return list(results)

    assert asyncio.run(main()) == ["w0 w1 w2 "] * 3
    assert len(opened) == 3


def test_an_llm_dropped_as_its_loop_ends_is_closed_with_it(
    replay: ReplayServer, no_warnings: list[warnings.WarningMessage]
) -> None:
    # Seed 000's asynchronous example: the LLM lives as long as main(), which asyncio.run
    # ends right after it returns.
    chunks: list[str] = []

    async def main() -> None:
        llm = make_llm(replay)
        async for chunk in llm.generate_async("Tell me a story", stream=True):
            chunks.append(chunk)

    asyncio.run(main())
    assert "".join(chunks) == "w0 w1 w2 "


def test_an_llm_that_outlives_its_loop_is_closed_when_the_loop_ends(
    replay: ReplayServer, no_warnings: list[warnings.WarningMessage]
) -> None:
    llm = make_llm(replay)

    async def main() -> str:
        return "".join([chunk async for chunk in llm.agenerate_stream("hi")])

    assert asyncio.run(main()) == "w0 w1 w2 "
    (session,) = sessions_of(llm)
    assert session.closed
    # The same LLM on a new loop opens a new session there, closed at that loop's end too.
    assert asyncio.run(main()) == "w0 w1 w2 "
    assert all(session.closed for session in sessions_of(llm))


def test_an_llm_closed_by_hand_is_unchanged(
    replay: ReplayServer, no_warnings: list[warnings.WarningMessage]
) -> None:
    async def main() -> str:
        async with make_llm(replay) as llm:
            stream = llm.agenerate_stream("hi")
            return "".join([chunk async for chunk in stream])

    assert asyncio.run(main()) == "w0 w1 w2 "


async def test_a_running_loop_of_pytest_asyncio(
    replay: ReplayServer, no_warnings: list[warnings.WarningMessage]
) -> None:
    llm = make_llm(replay)
    assert "".join([chunk async for chunk in llm.agenerate_stream("hi")]) == "w0 w1 w2 "
    (session,) = sessions_of(llm)
    del llm
    gc.collect()
    await asyncio.sleep(0.05)
    assert session.closed


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_an_api_call_follows_no_redirect_and_sends_its_key_nowhere_else(
    runner: Runner, status: int
) -> None:
    """A server that answers 3xx pointing at another origin: the call raises a ProviderError
    naming the status and the Location, sync and async, streamed or not, and the other
    origin never sees the request nor the key (Anthropic's x-api-key is a header of its own,
    which aiohttp keeps on a cross-origin redirect)."""
    elsewhere = ReplayServer().start()
    redirecting = ReplayServer().start()
    try:
        target = f"{elsewhere.url}/v1/messages"
        redirecting.replies = [Reply(chunks=[b""], status=status, headers={"Location": target})]
        llm = made(
            create_llm(
                "anthropic",
                model="claude-x",
                base_url=redirecting.url,
                api_key="sk-ant-SECRET",
                max_retries=2,
            )
        )
        for call in (runner.text, runner.generate):
            with pytest.raises(spout.ProviderError) as caught:
                call(llm, "hi")
            message = str(caught.value)
            assert f"HTTP {status}, a redirect to '{target}'" in message
            assert caught.value.status_code == status and caught.value.error_type == "redirect"
            assert "sk-ant-SECRET" not in message
        assert elsewhere.requests == []
        assert len(redirecting.requests) == 2  # a redirect is no reason to retry
    finally:
        elsewhere.stop()
        redirecting.stop()
