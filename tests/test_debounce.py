"""debounce on live streams: held text comes out when its window passes, even while the
provider pauses; nothing is lost, duplicated or reordered; closing mid-pause leaves nothing
running. Against a real loopback server that stalls mid-stream (tests/fault_server.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import spout
from fault_server import FaultServer, Stall, openai_chat_stream
from helpers import Runner
from spout import Event, TextDelta, create_llm

WINDOW = 0.1
MARGIN = 0.4  # scheduling slack on a loaded CI machine; the pause below is far longer
PAUSE = 1.5
PIECES = ["Hel", "lo", " wor", "ld", "!"]


def llm_for(faults: FaultServer) -> spout.LLM:
    return create_llm("openai", model="m", base_url=f"{faults.url}/v1", api_key="k", max_retries=0)


def debounce_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "spout-debounce"]


def wait_no_debounce_thread(timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while debounce_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert debounce_threads() == []


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    yield
    wait_no_debounce_thread()


def read_timed(
    llm: spout.LLM, runner: Runner, **options: Any
) -> tuple[list[tuple[float, str, str]], spout.Response]:
    """[(time.monotonic() at each text event, its text, stream.text then)], the response."""
    got: list[tuple[float, str, str]] = []

    def note(event: Event) -> None:
        if isinstance(event, TextDelta):
            got.append((time.monotonic(), event.text, stream.text))

    with llm:
        stream = runner.stream(llm, "hi", **options)
        runner.list(stream.events(), each=note)
        return got, runner.response(stream)


def test_held_text_comes_out_during_a_pause(faults: FaultServer, runner: Runner) -> None:
    s = openai_chat_stream(PIECES)
    faults.script(s.reply([*s.upto(2), Stall(PAUSE), *s.after(2)]))
    got, response = read_timed(llm_for(faults), runner, debounce=WINDOW)
    sent = faults.requests[0].at  # the server answers at once, then pauses
    at, text, seen = got[0]
    assert text == "Hello"  # both chunks before the pause, gathered in one window
    assert seen == "Hello"  # out before the next chunk had arrived
    assert at - sent < WINDOW + MARGIN < PAUSE  # within the window (and slack), not after
    assert "".join(piece for _, piece, _ in got) == "".join(PIECES) == response.text
    assert got[-1][0] - sent >= PAUSE  # the rest came after the pause


def test_debounce_with_smoothing_and_callbacks(faults: FaultServer, runner: Runner) -> None:
    s = openai_chat_stream(PIECES)
    faults.script(s.reply([*s.upto(3), Stall(PAUSE), *s.after(3)]))
    seen: list[tuple[str, threading.Thread]] = []
    got, response = read_timed(
        llm_for(faults),
        runner,
        debounce=WINDOW,
        smooth="word",
        on_chunk=lambda piece: seen.append((piece, threading.current_thread())),
    )
    assert got[0][1] == "Hello "  # the smoothed word is released; " wor" waits for its end
    assert got[0][0] - faults.requests[0].at < WINDOW + MARGIN
    assert "".join(piece for _, piece, _ in got) == response.text == "".join(PIECES)
    assert [piece for piece, _ in seen] == [piece for _, piece, _ in got]
    assert {thread for _, thread in seen} == {threading.main_thread()}  # the consumer's


def test_a_stream_without_debounce_starts_no_thread(faults: FaultServer) -> None:
    s = openai_chat_stream(PIECES)
    faults.script(s.reply())
    with llm_for(faults) as llm:
        stream = llm.generate_stream("hi", smooth="word", buffer_size=2, on_chunk=lambda _: None)
        for _ in stream:
            assert debounce_threads() == []
    assert stream.response.text == "".join(PIECES)


def test_closing_a_sync_stream_mid_pause(faults: FaultServer) -> None:
    s = openai_chat_stream(PIECES)
    faults.script(s.reply([*s.upto(2), Stall(5, ping=s.ping), *s.after(2)]))
    with llm_for(faults) as llm:
        stream = llm.generate_stream("hi", debounce=WINDOW)
        started = time.monotonic()
        for chunk in stream:
            assert chunk == "Hello"
            assert debounce_threads() != []
            break  # during the pause
        closed_after = time.monotonic() - started
    # The read blocked on the socket was woken: the thread ended and the server saw the
    # client go, long before the pause would have.
    assert closed_after < 1.0
    assert debounce_threads() == []
    assert stream.closed and stream.response.text == "Hello"
    assert faults.wait_for_disconnect(2.0) is not None


def test_closing_an_unread_sync_stream(faults: FaultServer) -> None:
    s = openai_chat_stream(PIECES)
    faults.script(s.reply())
    with llm_for(faults) as llm:
        stream = llm.generate_stream("hi", debounce=WINDOW)
        stream.close()
        assert debounce_threads() == []


@pytest.mark.parametrize("how", ["break", "cancel"])
def test_closing_an_async_stream_mid_pause(faults: FaultServer, how: str) -> None:
    s = openai_chat_stream(PIECES)
    faults.script(s.reply([*s.upto(2), Stall(5, ping=s.ping), *s.after(2)]))
    got: list[str] = []

    async def consume(stream: spout.AsyncStream) -> None:
        async for chunk in stream:
            got.append(chunk)
            if how == "break":
                break

    async def run() -> spout.AsyncStream:
        async with llm_for(faults) as llm:
            stream = llm.agenerate_stream("hi", debounce=WINDOW)
            if how == "break":
                await consume(stream)
            else:
                task = asyncio.ensure_future(consume(stream))
                while not got:
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            return stream

    started = time.monotonic()
    stream = asyncio.run(run())
    assert time.monotonic() - started < 2.0
    assert got == ["Hello"]
    assert stream.closed
    assert faults.wait_for_disconnect(2.0) is not None


def test_an_error_mid_stream_flushes_then_raises(faults: FaultServer, runner: Runner) -> None:
    s = openai_chat_stream(PIECES)
    # The first two chunks come out by the timer; the third is held when the error arrives.
    faults.script(s.reply([*s.upto(2), Stall(0.5), *s.texts[2:3], s.error()]))
    got: list[str] = []
    errors: list[BaseException] = []
    options: dict[str, Any] = {"debounce": 0.3, "on_error": errors.append}
    with pytest.raises(spout.SpoutError) as caught, llm_for(faults) as llm:
        runner.list(runner.stream(llm, "hi", **options), each=got.append)
    assert got == ["Hello", " wor"]
    assert errors == [caught.value]
    assert caught.value.partial is not None and caught.value.partial.text == "Hello wor"


def test_a_raising_callback_on_a_timer_release(faults: FaultServer, runner: Runner) -> None:
    s = openai_chat_stream(PIECES)
    faults.script(s.reply([*s.upto(2), Stall(5, ping=s.ping), *s.after(2)]))

    def on_chunk(piece: str) -> None:
        raise RuntimeError("no")

    with pytest.raises(spout.CallbackError) as caught, llm_for(faults) as llm:
        runner.list(runner.stream(llm, "hi", debounce=WINDOW, on_chunk=on_chunk))
    assert caught.value.partial is not None and caught.value.partial.text == "Hello"
