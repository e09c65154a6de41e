"""Callbacks on every call: in order, each exactly once, on errors and early stops too."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import spout
from helpers import Runner
from replay_server import ReplayServer, Reply
from scripted_turns import (
    openai_call_turn,
    openai_chunk,
    openai_refusal_turn,
    openai_sse,
    openai_text_turn,
    turns,
)
from spout import Finish, RefusalDelta, Session, TextDelta, ToolResult, create_llm


def text_reply(pieces: list[str], *, finish: bool = True, delay: float = 0.0) -> Reply:
    chunks = [
        b"data: " + json.dumps(openai_chunk({"content": p})).encode() + b"\n\n" for p in pieces
    ]
    if finish:
        chunks.append(openai_sse(openai_chunk({}, "stop")))
    return Reply(chunks=chunks, delay=delay, abort=not finish)


def llm_for(server: ReplayServer, *replies: Reply) -> spout.LLM:
    server.replies = list(replies)
    return create_llm("openai", model="m", base_url=f"{server.url}/v1", api_key="k", max_retries=0)


class Log:
    """Records every callback; in async mode, half of them are async functions."""

    def __init__(self, asynchronous: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.asynchronous = asynchronous

    def hooks(self) -> dict[str, Any]:
        def record(name: str) -> Any:
            def hook(*args: Any) -> None:
                self.calls.append((name, args[0] if args else None))

            async def ahook(*args: Any) -> None:
                await asyncio.sleep(0)
                hook(*args)

            return ahook if self.asynchronous and name in ("on_chunk", "on_complete") else hook

        return {
            name: record(name)
            for name in ("on_start", "on_chunk", "on_event", "on_error", "on_complete")
        }

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def run(llm: spout.LLM, runner: Runner, stop_after: int | None = None, **options: Any) -> list[str]:
    return runner.list(runner.stream(llm, "hi", **options), stop_after=stop_after)


def test_callbacks_in_order_each_once(replay: ReplayServer, runner: Runner) -> None:
    log = Log(asynchronous=runner.is_async)
    chunks = run(llm_for(replay, text_reply(["a", "b", "c"])), runner, **log.hooks())
    assert chunks == ["a", "b", "c"]
    names = log.names()
    assert names[0] == "on_start"
    assert names[-1] == "on_complete"
    assert names.count("on_start") == names.count("on_complete") == 1
    assert "on_error" not in names
    # Each text event, then its text.
    body = [(n, v) for n, v in log.calls if n in ("on_event", "on_chunk")]
    texts = [
        (n, v if n == "on_chunk" else v.text)
        for n, v in body
        if n == "on_chunk" or isinstance(v, TextDelta)
    ]
    assert texts == [
        ("on_event", "a"),
        ("on_chunk", "a"),
        ("on_event", "b"),
        ("on_chunk", "b"),
        ("on_event", "c"),
        ("on_chunk", "c"),
    ]
    assert any(isinstance(v, Finish) for n, v in body)
    assert log.calls[-1][1].text == "abc"  # on_complete gets the final response


def test_on_chunk_gets_the_shaped_chunks(replay: ReplayServer, runner: Runner) -> None:
    log = Log()
    chunks = run(
        llm_for(replay, text_reply(["Hel", "lo wor", "ld"])),
        runner,
        smooth="word",
        on_chunk=log.hooks()["on_chunk"],
    )
    assert chunks == ["Hello ", "wor", "ld"]  # "wor" goes out when the next chunk comes
    assert [v for _, v in log.calls] == chunks


def test_a_refusal_goes_to_on_event_not_on_chunk(replay: ReplayServer, runner: Runner) -> None:
    log = Log(asynchronous=runner.is_async)
    llm = llm_for(replay, Reply(chunks=[openai_refusal_turn()]))
    chunks = run(llm, runner, buffer_size=4, **log.hooks())
    assert chunks == []
    assert [n for n in log.names() if n == "on_chunk"] == []  # a refusal is not text
    refusals = [v.text for n, v in log.calls if n == "on_event" and isinstance(v, RefusalDelta)]
    response = log.calls[-1][1]
    assert log.names()[-1] == "on_complete" and "".join(refusals) == response.refusal
    assert (response.text, response.finish_reason) == ("", "refusal")


def test_an_error_calls_on_error_once_and_raises(replay: ReplayServer, runner: Runner) -> None:
    log = Log(asynchronous=runner.is_async)
    with pytest.raises(spout.StreamInterruptedError) as caught:
        run(llm_for(replay, text_reply(["a", "b"], finish=False)), runner, **log.hooks())
    names = log.names()
    assert names.count("on_error") == 1 and "on_complete" not in names
    assert log.calls[-1] == ("on_error", caught.value)
    assert caught.value.partial is not None and caught.value.partial.text == "ab"


def test_an_early_break_calls_neither_on_error_nor_on_complete(
    replay: ReplayServer, runner: Runner
) -> None:
    log = Log()
    reply = text_reply([f"w{i} " for i in range(200)], delay=0.01)
    chunks = run(llm_for(replay, reply), runner, stop_after=2, **log.hooks())
    assert chunks == ["w0 ", "w1 "]
    assert replay.wait_for_disconnect(timeout=3) is not None
    names = log.names()
    assert names.count("on_start") == 1
    assert "on_complete" not in names and "on_error" not in names


@pytest.mark.parametrize("failing", ["on_start", "on_chunk", "on_event", "on_complete"])
def test_a_raising_callback_stops_the_stream(
    replay: ReplayServer, runner: Runner, failing: str
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("boom")

    reply = text_reply(["a", "b", *[f"w{i} " for i in range(200)]], delay=0.005)
    with pytest.raises(spout.CallbackError) as caught:
        run(llm_for(replay, reply), runner, **dict[str, Any]({failing: boom}))
    error = caught.value
    assert error.callback == failing
    assert isinstance(error.__cause__, RuntimeError)
    assert error.partial is not None
    if failing != "on_complete":
        assert replay.wait_for_disconnect(timeout=3) is not None  # the connection was released
    else:
        assert error.partial.finish_reason == "stop"


def test_a_raising_on_error_is_a_callback_error(replay: ReplayServer, runner: Runner) -> None:
    def boom(exc: BaseException) -> None:
        raise ValueError("in on_error")

    with pytest.raises(spout.CallbackError) as caught:
        run(llm_for(replay, text_reply(["a"], finish=False)), runner, on_error=boom)
    assert caught.value.callback == "on_error"
    assert isinstance(caught.value.__cause__, ValueError)
    assert isinstance(caught.value.__cause__.__context__, spout.StreamInterruptedError)


def test_generate_not_streamed_calls_the_callbacks(replay: ReplayServer, runner: Runner) -> None:
    log = Log(asynchronous=runner.is_async)
    body = {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ab"}, "finish_reason": "stop"}
        ],
    }
    llm = llm_for(
        replay,
        Reply(chunks=[json.dumps(body).encode()], headers={"Content-Type": "application/json"}),
    )
    response = runner.generate(llm, "hi", **log.hooks())
    assert response.text == "ab"
    names = log.names()
    assert names[0] == "on_start" and names[-1] == "on_complete"
    assert [v for n, v in log.calls if n == "on_chunk"] == ["ab"]  # one text, not streamed


def test_the_tool_loop_calls_the_callbacks(replay: ReplayServer, runner: Runner) -> None:
    def calculator(expression: str) -> str:
        """Evaluate."""
        return "56088"

    def get_weather(city: str) -> str:
        """Weather."""
        return "mild"

    log = Log(asynchronous=runner.is_async)
    llm = llm_for(replay, *turns(openai_call_turn(), openai_text_turn()))
    tools = [calculator, get_weather]
    items = runner.list(runner.stream_with_tools(llm, "hi", tools=tools, **log.hooks()))
    names = log.names()
    assert names.count("on_start") == names.count("on_complete") == 1
    assert sum(isinstance(v, ToolResult) for n, v in log.calls if n == "on_event") == 2
    final = log.calls[-1][1]
    assert len(final.tool_calls) == 2 and final.text.endswith("mild.")
    assert final.stats.chunks >= 3
    assert "".join(i for i in items if isinstance(i, str)) == final.text


def test_session_passes_callbacks_and_shaping(replay: ReplayServer) -> None:
    log = Log()
    session = Session(provider=llm_for(replay, text_reply(["one ", "two ", "three"])))
    chunks = list(session.generate_stream("hi", buffer_size=2, **log.hooks()))
    assert chunks == ["one two ", "three"]
    assert log.names()[-1] == "on_complete"
    assert session.turns[-1].messages[-1]["content"] == "one two three"


def test_an_async_callback_on_a_sync_stream_is_refused() -> None:
    async def hook(text: str) -> None:
        pass

    llm = create_llm("openai", model="m", base_url="http://127.0.0.1:9/v1", api_key="k")
    with pytest.raises(TypeError, match="on_chunk is an async function"):
        llm.generate_stream("hi", on_chunk=hook)
    with pytest.raises(TypeError, match="on_start must be a function"):
        llm.generate_stream("hi", on_start=3)
