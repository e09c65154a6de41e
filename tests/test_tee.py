"""Several readers of one live stream: tee() and subscribe(), sync and async."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

import spout
from helpers import Runner
from replay_server import ReplayServer, Reply
from scripted_turns import openai_chunk, openai_refusal_turn, openai_sse
from spout import RefusalDelta, TextDelta, create_llm

WORDS = [f"w{i} " for i in range(30)]
TEXT = "".join(WORDS)


def reply(words: list[str] = WORDS, delay: float = 0.0) -> Reply:
    chunks = [
        b"data: " + json.dumps(openai_chunk({"content": w})).encode() + b"\n\n" for w in words
    ]
    chunks.append(openai_sse(openai_chunk({}, "stop")))
    return Reply(chunks=chunks, delay=delay)


def llm_for(server: ReplayServer, r: Reply) -> spout.LLM:
    server.replies = [r]
    return create_llm("openai", model="m", base_url=f"{server.url}/v1", api_key="k")


def test_a_fast_and_a_slow_reader_sync(replay: ReplayServer) -> None:
    stream = llm_for(replay, reply(delay=0.002)).generate_stream("hi")
    fast, slow = stream.tee(2)
    got: dict[str, list[str]] = {"fast": [], "slow": []}

    def read_slowly() -> None:
        for chunk in slow:
            time.sleep(0.005)
            got["slow"].append(chunk)

    thread = threading.Thread(target=read_slowly)
    thread.start()
    got["fast"] = list(fast)
    thread.join(10)
    assert "".join(got["fast"]) == "".join(got["slow"]) == TEXT
    assert stream.response.text == TEXT and stream.response.finish_reason == "stop"


def test_a_fast_and_a_slow_reader_async(replay: ReplayServer) -> None:
    llm = llm_for(replay, reply(delay=0.002))

    async def main() -> tuple[str, str, spout.Response]:
        async with llm:
            stream = llm.agenerate_stream("hi")
            fast, slow = stream.tee(2)

            async def read(reader: spout.AsyncStreamReader, pause: float) -> str:
                out = []
                async for chunk in reader:
                    await asyncio.sleep(pause)
                    out.append(chunk)
                return "".join(out)

            a, b = await asyncio.gather(read(fast, 0), read(slow, 0.005))
            return a, b, await stream.get_response()

    a, b, response = asyncio.run(main())
    assert a == b == response.text == TEXT


def test_events_come_to_every_reader_from_the_first(replay: ReplayServer, runner: Runner) -> None:
    stream = runner.stream(llm_for(replay, reply(WORDS[:3])))
    a, b = stream.tee(2)
    c = stream.subscribe()
    first = runner.list(a.events())
    second, third = runner.list(b.events()), runner.list(c.events())
    assert first == second == third
    assert isinstance(first[0], spout.ResponseStart)
    assert "".join(e.text for e in first if isinstance(e, TextDelta)) == "".join(WORDS[:3])


def test_readers_of_a_refusal(replay: ReplayServer, runner: Runner) -> None:
    # A reader of text gets none of a refusal; a reader of events gets it as RefusalDelta.
    stream = runner.stream(llm_for(replay, Reply(chunks=[openai_refusal_turn("Well. ")])))
    texts, events = stream.tee(2)
    text, got = runner.list(texts), runner.list(events.events())
    response = runner.response(stream)
    assert text == ["Well. "] and response.text == "Well. "
    assert "".join(e.text for e in got if isinstance(e, RefusalDelta)) == response.refusal
    assert response.refusal == "I can\u2019t help with that."


def test_a_reader_that_stops_leaves_the_others_going(replay: ReplayServer, runner: Runner) -> None:
    quitter, stayer = runner.stream(llm_for(replay, reply())).tee(2, max_lag=5)
    runner.list(quitter, stop_after=2)
    # A loop left early closes its reader: sync at once, async when the reader is closed (an
    # async generator left early is otherwise closed only when collected).
    if runner.is_async:
        runner.close(quitter)
    assert quitter.closed
    rest = "".join(runner.list(stayer))  # far more than max_lag past the reader that left
    assert rest == TEXT


def test_a_reader_too_far_behind_gets_a_clear_error(replay: ReplayServer, runner: Runner) -> None:
    ahead, behind = runner.stream(llm_for(replay, reply())).tee(2, max_lag=5)
    assert "".join(runner.list(ahead)) == TEXT
    with pytest.raises(spout.StreamError, match="max_lag=5") as caught:
        runner.list(behind)
    assert caught.value.partial is not None


def test_closing_the_last_reader_closes_the_connection(
    replay: ReplayServer, runner: Runner
) -> None:
    stream = runner.stream(llm_for(replay, reply([f"w{i} " for i in range(300)], delay=0.01)))
    a, b = stream.tee(2)
    runner.next(a)
    runner.close(a)
    assert replay.wait_for_disconnect(timeout=0.3) is None  # b still reads
    runner.next(b)
    runner.close(b)
    sent = replay.wait_for_disconnect(timeout=3)
    assert sent is not None and sent < 100


def test_split_streams_are_read_through_their_readers(replay: ReplayServer) -> None:
    stream = llm_for(replay, reply(WORDS[:3])).generate_stream("hi")
    a = stream.subscribe()
    with pytest.raises(RuntimeError, match="read it through its readers"):
        list(stream)
    assert stream.response.text == "".join(WORDS[:3])  # read for the readers, who still get it
    assert "".join(a) == "".join(WORDS[:3])
    read = llm_for(replay, reply(WORDS[:3])).generate_stream("hi")
    next(iter(read))
    with pytest.raises(RuntimeError, match="before the stream is read"):
        read.tee()
    read.close()
    with pytest.raises(ValueError, match="max_lag must be a positive int"):
        llm_for(replay, reply()).generate_stream("hi").tee(2, max_lag=0)


def test_tee_with_shaping_and_callbacks(replay: ReplayServer) -> None:
    chunks: list[str] = []
    stream = llm_for(replay, reply(WORDS[:6])).generate_stream(
        "hi", buffer_size=3, on_chunk=chunks.append
    )
    a, b = stream.tee()
    assert list(a) == list(b) == chunks == ["w0 w1 w2 ", "w3 w4 w5 "]  # callbacks ran once
