"""The Accumulator folds any event sequence into the Response a user reads."""

from __future__ import annotations

import pytest

from spout import (
    Accumulator,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    ResponseStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)


def fold(*events: object) -> Accumulator:
    accumulator = Accumulator()
    for event in events:
        accumulator.add(event)  # type: ignore[arg-type]
    return accumulator


def test_folds_every_kind_of_event() -> None:
    call = ToolCall("call_1", "get_time", {"tz": "UTC"}, '{"tz": "UTC"}')
    response = fold(
        ResponseStart("resp_1", "model-x"),
        ReasoningDelta("Think", signature="sig-of-an-earlier-block"),
        ReasoningDelta("ing.", signature="sig"),
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallStart(0, "call_1", "get_time"),
        ToolCallDelta(0, '{"tz": "UTC"}'),
        ToolCallEnd(0, call),
        Usage(10, 3),
        Usage(10, 7, {"total_tokens": 17}),  # a later report replaces, never adds
        Finish("tool_calls", "tool_calls"),
    ).response()
    assert response.text == "Hello"
    # A signature arrives whole, once per thinking block: the latest replaces, never appends.
    assert response.reasoning == "Thinking." and response.reasoning_signature == "sig"
    assert response.tool_calls == (call,)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 7)
    assert response.usage.total_tokens == 17
    assert (response.finish_reason, response.raw_finish_reason) == ("tool_calls", "tool_calls")
    assert (response.id, response.model) == ("resp_1", "model-x")
    assert response.time_to_first_token is not None and response.duration is not None
    assert response.duration >= response.time_to_first_token


def test_a_refusal_is_folded_apart_from_the_text() -> None:
    accumulator = fold(ResponseStart("chatcmpl-1", "gpt-4o"))
    assert not accumulator.started and accumulator.refusal is None
    accumulator.add(RefusalDelta("I can\u2019t"))
    assert accumulator.started  # the model's output: it ends the wait for a first token
    accumulator.add(RefusalDelta(" help."))
    accumulator.add(Finish("refusal", "stop"))
    response = accumulator.response()
    assert (response.text, response.refusal) == ("", "I can\u2019t help.")
    assert (response.finish_reason, response.raw_finish_reason) == ("refusal", "stop")
    assert response.time_to_first_token is not None
    # Not text: no chunk, no character; but output, so the token estimate counts it.
    assert response.stats is not None
    assert (response.stats.chunks, response.stats.characters) == (0, 0)
    assert (response.stats.output_tokens, response.stats.output_tokens_source) == (4, "estimate")
    assert fold(TextDelta("Hi"), Finish("stop")).response().refusal is None


def test_snapshot_before_the_end() -> None:
    accumulator = fold(TextDelta("par"), TextDelta("tial"))
    snapshot = accumulator.response()
    assert snapshot.text == "partial" and snapshot.finish_reason is None
    accumulator.add(TextDelta("ly"))
    assert accumulator.text == "partially"
    assert snapshot.text == "partial"  # a snapshot does not change afterwards


def test_no_usage_means_unknown_counts() -> None:
    response = fold(TextDelta("x"), Finish("stop")).response()
    assert response.usage.input_tokens is None and response.usage.total_tokens is None
    assert response.output_tokens_per_second is None


def test_many_chunks_rebuild_exactly() -> None:
    pieces = [f"{i}," for i in range(100_000)]
    accumulator = Accumulator()
    for piece in pieces:
        accumulator.add(TextDelta(piece))
    assert accumulator.response().text == "".join(pieces)


def test_rejects_what_is_not_an_event() -> None:
    with pytest.raises(TypeError, match="not a spout event"):
        Accumulator().add("text")  # type: ignore[arg-type]
