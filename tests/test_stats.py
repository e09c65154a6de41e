"""Live stats against a loopback server that paces its chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest

import spout
from helpers import Runner
from replay_server import ReplayServer, Reply
from scripted_turns import openai_chunk, openai_usage
from spout import StreamStats, create_llm

PACE = 0.1
MARGIN = 0.15  # thread start-up, the loopback and the CI machine's scheduling
# A whole stream spans five paces: on a busy 2-core CI machine one of them can stall for
# half a second (seen once). The lower bounds say the stats follow the pacing; the upper
# ones only that nothing is counted twice.
STREAM_SLACK = 1.0


def paced_reply(pieces: list[str], output_tokens: int = 7) -> Reply:
    def data(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    chunks = [data(openai_chunk({"content": p})) for p in pieces]
    chunks.append(data(openai_chunk({}, "stop")) + data(openai_usage(3, output_tokens)))
    chunks.append(b"data: [DONE]\n\n")
    return Reply(chunks=chunks, delay=PACE)


def llm_for(server: ReplayServer, reply: Reply) -> spout.LLM:
    # A first, unpaced reply warms the client up: making an HTTP client (its TLS context)
    # takes a few hundred milliseconds, which the first request's timings include.
    warm = paced_reply(["warm"])
    warm.delay = 0.0
    server.replies = [warm, reply]
    return create_llm("openai", model="m", base_url=f"{server.url}/v1", api_key="k")


def watch(
    llm: spout.LLM, runner: Runner, **options: Any
) -> tuple[list[StreamStats], spout.Response]:
    """The stats seen after each chunk, and the final response."""
    runner.list(runner.stream(llm, "warm"))
    stream = runner.stream(llm, "hi", **options)
    seen: list[StreamStats] = []
    runner.list(stream, each=lambda _: seen.append(stream.stats))
    return seen, runner.response(stream)


def test_live_stats_follow_the_pacing(replay: ReplayServer, runner: Runner) -> None:
    pieces = ["Hello, ", "wide ", "world ", "of ", "streams."]
    seen, response = watch(llm_for(replay, paced_reply(pieces)), runner)
    first = seen[0]
    assert first.time_to_first_token is not None
    assert PACE <= first.time_to_first_token < PACE + MARGIN
    assert [s.chunks for s in seen] == [1, 2, 3, 4, 5]
    assert [s.characters for s in seen] == [len("".join(pieces[: i + 1])) for i in range(5)]
    # Until the provider's usage arrives, the tokens are an estimate, and say so.
    assert all(s.output_tokens_source == "estimate" for s in seen)
    assert seen[-1].output_tokens == (len("".join(pieces)) + 3) // 4
    elapsed = [s.elapsed for s in seen]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] >= 5 * PACE - 0.02
    final = response.stats
    assert final is not None
    assert final.output_tokens == 7 and final.output_tokens_source == "provider"
    assert final.chunks == 5 and final.characters == len(response.text)
    assert final.tokens_per_second is not None
    generating = final.elapsed - (final.time_to_first_token or 0)
    assert final.tokens_per_second == pytest.approx(7 / generating)
    assert 4 * PACE - 0.02 <= generating < 5 * PACE + STREAM_SLACK
    assert "7 tokens in" in final.summary()


def test_stats_count_the_provider_chunks_not_the_shaped_ones(
    replay: ReplayServer, runner: Runner
) -> None:
    pieces = ["a b c ", "d e f"]
    reply = paced_reply(pieces)
    reply.delay = 0.0
    seen, response = watch(llm_for(replay, reply), runner, smooth="word")
    assert len(seen) == 6
    assert response.stats is not None and response.stats.chunks == 2


def test_a_response_not_streamed_has_stats(replay: ReplayServer) -> None:
    body = {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    replay.replies = [
        Reply(chunks=[json.dumps(body).encode()], headers={"Content-Type": "application/json"})
    ]
    llm = create_llm("openai", model="m", base_url=f"{replay.url}/v1", api_key="k")
    stats = llm.generate("hi").stats
    assert stats is not None
    assert (stats.chunks, stats.characters, stats.output_tokens) == (1, 8, 2)
    assert stats.output_tokens_source == "provider"


def test_stats_before_anything_arrived(replay: ReplayServer) -> None:
    replay.replies = [paced_reply(["x"])]
    llm = create_llm("openai", model="m", base_url=f"{replay.url}/v1", api_key="k")
    stream = llm.generate_stream("hi")
    stats = stream.stats
    assert stats.chunks == stats.characters == stats.output_tokens == 0
    assert stats.time_to_first_token is None and stats.tokens_per_second is None
    stream.close()


@pytest.mark.model
def test_the_local_model_counts_with_its_own_tokenizer(runner: Runner) -> None:
    """Before usage arrives, live stats count the text so far with the model's tokenizer;
    at the end, the provider's usage."""
    llm = create_llm("local")
    seen: list[tuple[str, StreamStats]] = []
    options: dict[str, Any] = {"max_tokens": 24, "seed": 1, "temperature": 0}
    try:
        stream = runner.stream(llm, "Count from 1 to 10", **options)
        runner.list(stream, each=lambda _: seen.append((stream.text, stream.stats)))
        response = runner.response(stream)
        llama = llm.provider._loaded.llama  # type: ignore[attr-defined]
        assert len(seen) > 3
        for text, stats in seen:
            assert stats.output_tokens_source == "tokenizer"
            assert stats.output_tokens == len(
                llama.tokenize(text.encode(), add_bos=False, special=False)
            )
        assert response.stats is not None
        assert response.stats.output_tokens_source == "provider"
        assert response.stats.output_tokens == response.usage.output_tokens
    finally:
        llm.close()


def test_the_tokenizer_count_is_cached_by_length() -> None:
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return len(text.split())

    acc = spout.Accumulator(count_tokens=count)
    assert acc.stats().output_tokens == 0 and counted == []  # no text: nothing to count
    acc.add(spout.TextDelta("one two"))
    assert acc.stats().output_tokens == 2
    assert acc.stats().output_tokens_source == "tokenizer"
    assert counted == ["one two"]  # read twice, counted once
    acc.add(spout.TextDelta(" three"))
    assert acc.stats().output_tokens == 3 and counted == ["one two", "one two three"]
    acc.add(spout.Usage(output_tokens=9))
    assert (acc.stats().output_tokens, acc.stats().output_tokens_source) == (9, "provider")
    assert len(counted) == 2
