"""Stream and AsyncStream: reading, and every way of stopping that must free the connection."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest

import spout
from replay_server import ReplayServer, Reply
from spout import Finish, TextDelta, create_llm

EVENTS = 400  # far more than any test reads: the server would take 4 s to send them all
WITHIN = 20  # chunks the server may still send after the client stopped (0.2 s)


def slow_reply() -> Reply:
    chunks = [
        b"data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}).encode()
        + b"\n\n"
        for i in range(EVENTS)
    ]
    end = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    return Reply(chunks=[*chunks, end], delay=0.01)


def llm_for(server: ReplayServer) -> spout.LLM:
    server.replies = [slow_reply()]
    return create_llm("openai", model="m", base_url=f"{server.url}/v1", api_key="k")


def assert_server_saw_disconnect(server: ReplayServer, stopped: int) -> None:
    """The server saw the client go soon after ``stopped``: the chunks it had sent when the
    client stopped reading. (Counted from what the client read, a client kept waiting by a busy
    machine while the server ran ahead looked like a stream left open.)"""
    sent = server.wait_for_disconnect(timeout=3)
    assert sent is not None, "the server never saw the client go"
    assert sent <= stopped + WITHIN, f"the connection stayed open for {sent - stopped} more events"


def test_break_closes_the_connection(replay: ReplayServer) -> None:
    for i, _ in enumerate(llm_for(replay).generate_stream("hi")):
        if i == 2:
            stopped = replay.sent
            break
    assert_server_saw_disconnect(replay, stopped)


def test_break_closes_even_while_the_stream_is_still_referenced(replay: ReplayServer) -> None:
    stream = llm_for(replay).generate_stream("hi")
    for i, _ in enumerate(stream):
        if i == 2:
            stopped = replay.sent
            break
    assert_server_saw_disconnect(replay, stopped)
    assert stream.closed
    # What arrived is kept; the answer did not finish.
    assert stream.response.text == "w0 w1 w2 "
    assert stream.response.finish_reason is None


def test_close_closes_the_connection(replay: ReplayServer) -> None:
    stream = llm_for(replay).generate_stream("hi")
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    stopped = replay.sent
    stream.close()
    assert_server_saw_disconnect(replay, stopped)
    assert stream.text == "w0 w1 w2 "
    assert list(chunks) == []  # nothing more comes after close


def test_leaving_a_with_block_closes_the_connection(replay: ReplayServer) -> None:
    with llm_for(replay).generate_stream("hi") as stream:
        chunks = iter(stream)
        for _ in range(3):
            next(chunks)
        stopped = replay.sent
    assert_server_saw_disconnect(replay, stopped)
    assert stream.closed


def test_an_abandoned_stream_is_closed_when_collected(replay: ReplayServer) -> None:
    stream = llm_for(replay).generate_stream("hi")
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    stopped = replay.sent
    del chunks, stream
    gc.collect()
    assert_server_saw_disconnect(replay, stopped)


def test_a_stream_never_read_is_closed_when_collected(replay: ReplayServer) -> None:
    stream = llm_for(replay).generate_stream("hi")
    stopped = replay.sent
    del stream
    assert_server_saw_disconnect(replay, stopped)


def test_cancelling_the_task_closes_the_connection(replay: ReplayServer) -> None:
    llm = llm_for(replay)
    stopped = 0

    async def main() -> None:
        started = asyncio.Event()
        received: list[str] = []

        async def consume() -> None:
            nonlocal stopped
            async for chunk in llm.agenerate_stream("hi"):
                received.append(chunk)
                if len(received) == 3:
                    stopped = replay.sent
                    started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await llm.aclose()

    asyncio.run(main())
    assert_server_saw_disconnect(replay, stopped)


def test_async_break_and_aclose(replay: ReplayServer) -> None:
    llm = llm_for(replay)
    stopped = 0

    async def main() -> spout.AsyncStream:
        nonlocal stopped
        async with llm:
            stream = await llm.generate_async("hi", stream=True)
            chunks = aiter(stream)
            for _ in range(3):
                await anext(chunks)
            stopped = replay.sent
            await stream.aclose()
            return stream

    stream = asyncio.run(main())
    assert_server_saw_disconnect(replay, stopped)
    assert stream.closed and stream.text == "w0 w1 w2 "


def test_async_with_block(replay: ReplayServer) -> None:
    llm = llm_for(replay)
    stopped = 0

    async def main() -> None:
        nonlocal stopped
        async with llm, llm.agenerate_stream("hi") as stream:
            async for i, _ in _aenumerate(stream):
                if i == 2:
                    stopped = replay.sent
                    break

    asyncio.run(main())
    assert_server_saw_disconnect(replay, stopped)


async def _aenumerate(stream: spout.AsyncStream) -> Any:
    i = 0
    async for item in stream:
        yield i, item
        i += 1


# -- reading ----------------------------------------------------------------------------------


def fast_llm(server: ReplayServer, words: int = 5) -> spout.LLM:
    chunks = [
        b"data: "
        + json.dumps({"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}).encode()
        + b"\n\n"
        for i in range(words)
    ]
    chunks.append(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    chunks.append(b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}\n\n')
    chunks.append(b"data: [DONE]\n\n")
    server.replies = [Reply(chunks=chunks)]
    return create_llm("openai", model="m", base_url=f"{server.url}/v1", api_key="k")


def test_response_reads_the_rest_of_an_open_stream(replay: ReplayServer) -> None:
    stream = fast_llm(replay).generate_stream("hi")
    assert stream.snapshot.text == ""  # nothing read yet
    chunks = iter(stream)
    assert next(chunks) == "w0 "
    assert stream.text == "w0 "
    response = stream.response
    assert response.text == "w0 w1 w2 w3 w4 "
    assert response.finish_reason == "stop"
    assert response.usage.output_tokens == 5
    assert stream.closed


def test_text_and_events_share_one_stream(replay: ReplayServer) -> None:
    stream = fast_llm(replay).generate_stream("hi")
    events = stream.events()
    first = [next(events) for _ in range(2)]  # ResponseStart, then the first text
    assert isinstance(first[1], TextDelta)
    # Iterating the text continues where the events left off.
    assert "".join(stream) == "w1 w2 w3 w4 "
    assert stream.response.text == "w0 w1 w2 w3 w4 "


def test_generate_stream_equals_generate_stream_true(replay: ReplayServer) -> None:
    a = fast_llm(replay).generate("hi", stream=True)
    assert isinstance(a, spout.Stream)
    assert "".join(a) == "w0 w1 w2 w3 w4 "


def test_async_response_property_and_get_response(replay: ReplayServer) -> None:
    llm = fast_llm(replay)

    async def main() -> tuple[str, spout.Response]:
        async with llm:
            stream = llm.agenerate_stream("hi")
            before = stream.response.text
            return before, await stream.get_response()

    before, response = asyncio.run(main())
    assert before == ""
    assert response.text == "w0 w1 w2 w3 w4 " and response.usage.input_tokens == 3


def test_events_end_with_finish(replay: ReplayServer) -> None:
    events = list(fast_llm(replay).generate_stream("hi").events())
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"


def test_bad_arguments_are_named(replay: ReplayServer) -> None:
    llm = fast_llm(replay)
    with pytest.raises(ValueError, match="prompt or messages"):
        llm.generate_stream()
    with pytest.raises(TypeError, match="prompt must be a str"):
        llm.generate_stream(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'role'"):
        llm.generate_stream(messages=[{"content": "no role"}])


def test_an_async_stream_dropped_before_reading_is_released(replay: ReplayServer) -> None:
    llm = llm_for(replay)

    async def main() -> int | None:
        async with llm:
            stream = await llm.generate_async("hi", stream=True)  # the request went out
            del stream  # ...and nothing will ever read it
            gc.collect()
            return await asyncio.to_thread(replay.wait_for_disconnect, 3)

    assert asyncio.run(main()) is not None, "the connection stayed open"
