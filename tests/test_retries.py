"""Retries, fallbacks, timeouts and resume, against loopback servers that fail on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

import pytest

import spout
from helpers import generate, stream, stream_text
from replay_server import ReplayServer, Reply
from spout import Retry, Timeout, create_llm

FAST = Retry(max_retries=2, initial_delay=0.05, max_delay=0.2, jitter=False)


def sse(*payloads: Any, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)
    return body + (b"data: [DONE]\n\n" if done else b"")


def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-r",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }


def answer(*pieces: str) -> Reply:
    """A complete stream of these text pieces, each its own write."""
    body = [sse(text_chunk(p), done=False) for p in pieces]
    return Reply(chunks=[*body, sse(text_chunk("", "stop"))])


def error(status: int, message: str = "try later", **headers: str) -> Reply:
    body = json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
    return Reply(
        status=status, chunks=[body], headers={"Content-Type": "application/json", **headers}
    )


def openai(server: ReplayServer, **config: Any) -> spout.LLM:
    config.setdefault("retry", FAST)
    return create_llm("openai", model="m", base_url=f"{server.url}/v1", api_key="sk-x", **config)


# -- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_transient_statuses_are_retried(replay: ReplayServer, mode: str, status: int) -> None:
    replay.replies = [error(status), error(status), answer("Hel", "lo")]
    result = stream_text(openai(replay), mode)
    assert result.response.text == "Hello"
    assert result.response.retries == 2
    assert len(replay.requests) == 3


@pytest.mark.parametrize(
    "status, error_type",
    [
        (400, spout.BadRequestError),
        (401, spout.AuthenticationError),
        (403, spout.PermissionDeniedError),
        (404, spout.NotFoundError),
        (422, spout.BadRequestError),
    ],
)
def test_errors_a_retry_cannot_fix_are_not_retried(
    replay: ReplayServer, mode: str, status: int, error_type: type[Exception]
) -> None:
    replay.replies = [error(status), answer("never")]
    with pytest.raises(error_type):
        stream(openai(replay), mode)
    assert len(replay.requests) == 1


def test_retries_give_up_after_max_retries(replay: ReplayServer, mode: str) -> None:
    replay.replies = [error(503)]
    with pytest.raises(spout.ServiceUnavailableError):
        stream(openai(replay, max_retries=3), mode)
    assert len(replay.requests) == 4


def test_retries_are_spaced_by_exponential_backoff(replay: ReplayServer, mode: str) -> None:
    replay.replies = [error(500), error(500), error(500), answer("ok")]
    retry = Retry(max_retries=3, initial_delay=0.1, max_delay=0.25, jitter=False)
    assert stream_text(openai(replay, retry=retry), mode).response.text == "ok"
    arrivals = [r.arrived for r in replay.requests]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # 0.1, then 0.2, then capped at 0.25 (plus a request's round trip).
    for gap, wanted in zip(gaps, [0.1, 0.2, 0.25], strict=True):
        assert wanted <= gap < wanted + 0.15


def test_full_jitter_stays_under_the_bound() -> None:
    retry = Retry(initial_delay=1.0, max_delay=3.0)
    delays = [retry.delay(n) for n in range(4) for _ in range(200)]
    assert all(d is not None and 0 <= d <= 3.0 for d in delays)
    assert len({round(d, 3) for d in delays if d is not None}) > 100  # random, not fixed
    assert Retry(jitter=False, initial_delay=1, max_delay=3).delay(5) == 3


@pytest.mark.parametrize(
    "header, value, wait",
    [
        ("Retry-After", "0.3", 0.3),
        ("retry-after-ms", "250", 0.25),
    ],
)
def test_retry_after_is_honoured(
    replay: ReplayServer, mode: str, header: str, value: str, wait: float
) -> None:
    replay.replies = [error(429, **{header: value}), answer("ok")]
    assert stream_text(openai(replay), mode).response.text == "ok"
    gap = replay.requests[1].arrived - replay.requests[0].arrived
    assert wait <= gap < wait + 0.2


def test_a_retry_after_beyond_the_limit_is_not_waited(replay: ReplayServer) -> None:
    replay.replies = [error(429, **{"Retry-After": "3600"}), answer("ok")]
    started = time.monotonic()
    with pytest.raises(spout.RateLimitError) as caught:
        openai(replay).generate_stream("hi")
    assert time.monotonic() - started < 1 and caught.value.retry_after == 3600
    assert len(replay.requests) == 1


def test_an_overloaded_error_as_the_first_event_is_retried(replay: ReplayServer, mode: str) -> None:
    overloaded = (
        b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
        b'"message": "Overloaded"}}\n\n'
    )
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "model": "claude",
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "fine"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    ]
    ok = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    replay.replies = [Reply(chunks=[overloaded]), Reply(chunks=[ok])]
    llm = create_llm("anthropic", model="claude", base_url=replay.url, api_key="k", retry=FAST)
    result = stream(llm, mode)
    assert result.response.text == "fine" and result.response.retries == 1
    # The failed attempt left no trace in what the caller saw: one start, one answer.
    assert sum(isinstance(e, spout.ResponseStart) for e in result.events) == 1


def test_a_connection_lost_before_any_text_is_retried(replay: ReplayServer, mode: str) -> None:
    replay.replies = [Reply(chunks=[b": hello\n\n"], abort=True), answer("back")]
    assert stream_text(openai(replay), mode).response.text == "back"
    assert len(replay.requests) == 2


def test_refused_connections_are_retried_then_raised(mode: str) -> None:
    llm = create_llm("openai", model="m", base_url="http://127.0.0.1:9/v1", api_key="k", retry=FAST)
    with pytest.raises(spout.ConnectionError):
        stream(llm, mode)


def test_max_retries_per_call_wins(replay: ReplayServer, mode: str) -> None:
    replay.replies = [error(500)]
    with pytest.raises(spout.InternalServerError):
        stream(openai(replay, max_retries=5), mode, max_retries=0)
    assert len(replay.requests) == 1


def test_not_streamed_calls_are_retried_too(replay: ReplayServer, mode: str) -> None:
    body = json.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "whole"},
                    "finish_reason": "stop",
                }
            ],
        }
    ).encode()
    replay.replies = [
        error(502),
        Reply(chunks=[body], headers={"Content-Type": "application/json"}),
    ]
    response = generate(openai(replay), mode)
    assert response.text == "whole" and response.retries == 1


def test_errors_after_text_are_not_retried(replay: ReplayServer, mode: str) -> None:
    replay.replies = [
        Reply(
            chunks=[sse(text_chunk("par"), done=False), sse(text_chunk("tial"), done=False)],
            abort=True,
        ),
        answer("again"),
    ]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        stream(openai(replay), mode)
    assert caught.value.partial is not None and caught.value.partial.text == "partial"
    assert len(replay.requests) == 1


# -- fallbacks ----------------------------------------------------------------------------------


def test_a_fallback_answers_when_the_first_model_fails(mode: str) -> None:
    primary, backup = ReplayServer().start(), ReplayServer().start()
    try:
        primary.replies = [error(503)]
        backup.replies = [answer("from ", "backup")]
        fallback = create_llm(
            "openai", model="backup-model", base_url=f"{backup.url}/v1", api_key="k"
        )
        llm = openai(primary, max_retries=1, fallbacks=[fallback])
        response = stream_text(llm, mode).response
        assert response.text == "from backup"
        assert response.provider == "openai" and response.model in ("m", "backup-model")
        assert len(primary.requests) == 2 and len(backup.requests) == 1
        assert backup.requests[0].json()["messages"] == [{"role": "user", "content": "hi"}]
    finally:
        primary.stop()
        backup.stop()


def test_fallbacks_named_by_string_are_made_on_first_use(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    replay.replies = [error(500)]
    # The first fallback has no key here and is skipped; the second, an LLM, answers.
    backup = ReplayServer().start()
    try:
        backup.replies = [answer("second")]
        second = create_llm("openai", model="x", base_url=f"{backup.url}/v1", api_key="k")
        llm = openai(replay, max_retries=0, fallbacks=["anthropic/claude-haiku-4-5", second])
        assert llm.generate_stream("hi").response.text == "second"
    finally:
        backup.stop()


def test_without_fallbacks_left_the_last_error_is_raised(replay: ReplayServer) -> None:
    replay.replies = [error(401)]
    with pytest.raises(spout.AuthenticationError):
        openai(replay, fallbacks=[]).generate_stream("hi")


# -- timeouts -----------------------------------------------------------------------------------


def pings(count: int) -> list[bytes]:
    return [b": keep-alive\n\n"] * count


def test_first_token_timeout_is_not_reset_by_pings(replay: ReplayServer, mode: str) -> None:
    replay.replies = [Reply(chunks=[*pings(40), sse(text_chunk("late"))], delay=0.05)]
    started = time.monotonic()
    with pytest.raises(spout.FirstTokenTimeout):
        stream(openai(replay, max_retries=0), mode, timeout=Timeout(first_token=0.4))
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 0.9
    assert replay.wait_for_disconnect(2) is not None  # the connection was closed


def test_idle_timeout_counts_content_not_pings(replay: ReplayServer, mode: str) -> None:
    chunks = [sse(text_chunk("one "), done=False), sse(text_chunk("two"), done=False), *pings(40)]
    replay.replies = [Reply(chunks=chunks, delay=0.05)]
    llm = openai(replay, max_retries=0, timeout=Timeout(idle=0.4))
    started = time.monotonic()
    with pytest.raises(spout.IdleTimeout) as caught:
        stream(llm, mode)
    assert time.monotonic() - started < 1.2
    assert caught.value.partial is not None and caught.value.partial.text == "one two"


def test_idle_timeout_on_a_silent_server(replay: ReplayServer, mode: str) -> None:
    chunks = [sse(text_chunk("only"), done=False), b""]
    replay.replies = [Reply(chunks=chunks, delay=1.5)]
    with pytest.raises(spout.IdleTimeout) as caught:
        stream(openai(replay, max_retries=0), mode, timeout=Timeout(first_token=3, idle=0.3))
    assert caught.value.partial is not None and caught.value.partial.text == "only"


def test_total_timeout(replay: ReplayServer, mode: str) -> None:
    chunks = [sse(text_chunk(f"{i} "), done=False) for i in range(50)]
    quick = Reply(chunks=[sse(text_chunk("ok", "stop"))])
    replay.replies = [quick, Reply(chunks=chunks, delay=0.05)]
    llm = openai(replay)
    # A process's first request imports its HTTP library (0.3-0.5 s for httpx with rich
    # installed): done first, so that the half second timed below is the stream's own.
    stream(llm, mode)
    started = time.monotonic()
    with pytest.raises(spout.TotalTimeout) as caught:
        stream(llm, mode, timeout=0.5)  # a number is the total
    assert 0.5 <= time.monotonic() - started < 1.0
    partial = caught.value.partial
    assert partial is not None and partial.text.startswith("0 1 2 ")


def test_a_slow_but_steady_stream_is_not_idle(replay: ReplayServer, mode: str) -> None:
    chunks = [sse(text_chunk(f"{i} "), done=False) for i in range(8)] + [
        sse(text_chunk("", "stop"))
    ]
    replay.replies = [Reply(chunks=chunks, delay=0.1)]
    result = stream_text(openai(replay, timeout=Timeout(first_token=1, idle=0.5)), mode)
    assert result.response.text == "0 1 2 3 4 5 6 7 "


def test_timeouts_are_validated() -> None:
    with pytest.raises(ValueError, match=r"Timeout\.idle must be a positive number"):
        Timeout(idle=0)
    with pytest.raises(TypeError, match="timeout must be a Timeout, a number of seconds or a"):
        create_llm("openai", model="m", base_url="http://127.0.0.1:9/v1", timeout="soon")
    # A config file's table is a Timeout's fields; a misspelt one is named.
    assert Timeout.coerce({"first_token": 60, "idle": 30}) == Timeout(first_token=60, idle=30)
    with pytest.raises(ValueError, match="timeout has no setting 'first_tokn'; its settings: conn"):
        create_llm("openai", model="m", base_url="http://127.0.0.1:9/v1", timeout={"first_tokn": 1})
    with pytest.raises(ValueError, match="max_retries must be an int >= 0"):
        Retry(max_retries=-1)


def test_the_calls_timeout_overrides_the_llms_field_by_field(replay: ReplayServer) -> None:
    llm = openai(replay, timeout=Timeout(connect=3, idle=9))
    call = llm._call("hi", None, None, {"timeout": Timeout(idle=2)})
    assert call.deadline is not None
    assert call.deadline.timeout == Timeout(connect=3, idle=2)
    call = llm._call("hi", None, None, {})
    assert call.deadline is not None
    assert call.deadline.timeout == Timeout(connect=3, idle=9)


# -- resume -------------------------------------------------------------------------------------


def test_resume_continues_a_cut_stream_with_a_continuation_request(
    replay: ReplayServer, mode: str
) -> None:
    cut = Reply(
        chunks=[sse(text_chunk("The river "), done=False), sse(text_chunk("runs to"), done=False)],
        abort=True,
    )
    # The model repeats the end of what it said before going on: that overlap is dropped.
    replay.replies = [cut, answer("river runs to", " the sea.")]
    result = stream_text(openai(replay, resume=True), mode)
    assert "".join(result.chunks) == "The river runs to the sea."
    assert result.response.text == "The river runs to the sea."
    assert result.response.resumed == 1
    second = replay.requests[1].json()["messages"]
    assert second[-2] == {"role": "assistant", "content": "The river runs to"}
    assert second[-1]["role"] == "user" and "Continue" in second[-1]["content"]


def anthropic_events(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def anthropic_text(
    text: str, usage_in: int, usage_out: int, stop: bool = True
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_r",
                "model": "claude",
                "usage": {"input_tokens": usage_in, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    ]
    if stop:
        events += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": usage_out},
            },
            {"type": "message_stop"},
        ]
    return events


def test_resume_prefills_where_the_provider_can(replay: ReplayServer, mode: str) -> None:
    first = Reply(
        chunks=[anthropic_events(*anthropic_text("Rivers run ", 10, 0, stop=False))], abort=True
    )
    # Anthropic refuses trailing whitespace in a prefill: it is cut, and not doubled after.
    second = Reply(chunks=[anthropic_events(*anthropic_text(" to the sea.", 14, 5))])
    replay.replies = [first, second]
    llm = create_llm(
        "anthropic", model="claude", base_url=replay.url, api_key="k", resume=True, retry=FAST
    )
    result = stream(llm, mode)
    assert result.response.text == "Rivers run to the sea."
    assert replay.requests[1].json()["messages"][-1] == {
        "role": "assistant",
        "content": "Rivers run",
    }
    # Both requests' usage is counted.
    assert result.response.usage.input_tokens == 24
    assert sum(isinstance(e, spout.ResponseStart) for e in result.events) == 1


def test_resume_is_off_by_default(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[sse(text_chunk("cut"), done=False)], abort=True), answer("x")]
    with pytest.raises(spout.StreamInterruptedError):
        openai(replay).generate_stream("hi").response  # noqa: B018
    assert len(replay.requests) == 1


def test_tool_calls_mid_flight_are_not_resumed(replay: ReplayServer) -> None:
    call = {
        "id": "chatcmpl-r",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": '},
                        }
                    ]
                },
                "finish_reason": None,
            }
        ],
    }
    replay.replies = [
        Reply(chunks=[sse(text_chunk("Calling"), done=False), sse(call, done=False)], abort=True),
        answer("x"),
    ]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        openai(replay, resume=True).generate_stream("hi").response  # noqa: B018
    assert caught.value.partial is not None
    assert caught.value.partial.tool_calls[0].arguments_raw == '{"a": '
    assert len(replay.requests) == 1


async def test_task_cancellation_during_a_retry_wait_stops_everything(replay: ReplayServer) -> None:
    replay.replies = [error(503)]
    llm = openai(replay, retry=Retry(max_retries=5, initial_delay=5, jitter=False))
    try:
        task = asyncio.ensure_future(llm.generate_async("hi"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await llm.aclose()
    assert len(replay.requests) == 1


@pytest.mark.model
def test_total_timeout_stops_the_local_model(mode: str) -> None:
    llm = create_llm(timeout=Timeout(total=0.3))
    llm.generate("hi", max_tokens=1)  # the model loads on first use: not what is timed here
    started = time.monotonic()
    with pytest.raises(spout.TotalTimeout) as caught:
        stream(llm, mode, "Write a long story about a river.", max_tokens=2000, seed=1)
    assert time.monotonic() - started < 2.0
    assert caught.value.partial is not None and caught.value.partial.text


def test_connect_timeout(mode: str) -> None:
    # A listener whose accept queue is full: the kernel drops new SYNs, so connecting hangs.
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    try:
        llm = create_llm(
            "openai",
            model="m",
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="k",
            max_retries=0,
            timeout=Timeout(connect=0.3),
        )
        started = time.monotonic()
        with pytest.raises(spout.ConnectTimeout):
            stream(llm, mode)
        assert time.monotonic() - started < 1.5
    finally:
        for filler in fillers:
            filler.close()
        server.close()
