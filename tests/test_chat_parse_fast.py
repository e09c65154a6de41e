"""The fast path of a chat completions chunk against the general path (#23).

``SSEDecoder.lone_data`` takes a chunk that is one whole ``data:`` event without splitting
lines, and the chat completions parser uses it; what comes out must not depend on it. The
reference here is the general path alone: a decoder whose fast path is never taken.
"""

from __future__ import annotations

import json
from dataclasses import fields
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spout import Event, SpoutError, TextDelta
from spout.providers import openai as openai_module
from spout.providers.openai import ChatChunkMapper, _StreamParser
from spout.sse import ServerSentEvent, SSEDecoder


class GeneralDecoder(SSEDecoder):
    """An SSEDecoder that always takes the general path (as before the fast path)."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        self._clean = False
        return super().feed(chunk)

    def lone_data(self, chunk: bytes) -> bytes | None:
        return None


def general_parser(model: str = "m") -> _StreamParser:
    parser = _StreamParser(ChatChunkMapper("openai", model))
    decoder = GeneralDecoder()
    decoder.max_event_bytes = parser._decoder.max_event_bytes
    parser._decoder = decoder
    return parser


def fast_parser(model: str = "m") -> _StreamParser:
    return _StreamParser(ChatChunkMapper("openai", model))


Outcome = tuple[list[Any], tuple[str, str, Any] | None]


def error_of(exc: BaseException) -> tuple[str, str, Any]:
    return (type(exc).__name__, str(exc), getattr(exc, "data", None))


def run_parser(parser: _StreamParser, chunks: list[bytes]) -> Outcome:
    """Every event the parser gives for ``chunks`` then its close, and the error that ended it."""
    events: list[Event] = []
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
        events += parser.close()
    except SpoutError as exc:
        return [(type(e), e) for e in events], error_of(exc)
    return [(type(e), e) for e in events], None


def run_decoder(decoder: SSEDecoder, chunks: list[bytes], *, lone_first: bool) -> Outcome:
    """The events (all their attributes) and the decoder's state after each chunk."""
    seen: list[Any] = []
    try:
        for chunk in chunks:
            lone = decoder.lone_data(chunk) if lone_first else None
            if lone is not None:
                events = [ServerSentEvent(lone, "message", decoder.last_event_id)]
            else:
                events = decoder.feed(chunk)
            seen.append(
                (
                    [(e.event, e.raw, e.data, e.id, e.retry) for e in events],
                    decoder.last_event_id,
                    decoder.retry,
                )
            )
        seen.append(decoder.close())
    except SpoutError as exc:
        return seen, error_of(exc)
    return seen, None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in pairwise(bounds)]


# -- streams ----------------------------------------------------------------------------------

texts = st.lists(
    st.sampled_from(["a", "tok ", " ", "é", "日本", "🎉", "\n", "\r", '"', "\\", "\u2028", "\x00"]),
    max_size=6,
).map("".join)


@st.composite
def chunk_objects(draw: st.DrawFn) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    kind = draw(st.sampled_from(["content", "content", "content", "role", "reasoning", "tool"]))
    if kind == "role":
        delta = {"role": "assistant", "content": draw(st.sampled_from(["", None]))}
    elif kind == "content":
        delta = {"content": draw(texts)}
    elif kind == "reasoning":
        delta = {"reasoning_content": draw(texts)}
    else:
        delta = {
            "tool_calls": [
                {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": draw(texts)}}
            ]
        }
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    if draw(st.booleans()) and draw(st.booleans()):
        choice["finish_reason"] = draw(st.sampled_from(["stop", "length", "tool_calls"]))
    chunk: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "bench",
        "choices": [choice],
    }
    if draw(st.integers(0, 9)) == 0:
        chunk = {**chunk, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    return chunk


@st.composite
def sse_blocks(draw: st.DrawFn) -> tuple[bytes, int]:
    """One SSE block, most often ``data: {json}\\n\\n``, sometimes with what SSE allows; and
    the length of its lines before its last."""
    eols = st.sampled_from([b"\n"] * 6 + [b"\r\n", b"\r"])
    eol = draw(eols)
    payload = draw(
        st.one_of(
            chunk_objects().map(lambda c: json.dumps(c, ensure_ascii=False).encode()),
            chunk_objects().map(lambda c: json.dumps(c).encode()),
            st.just(b"[DONE]"),
            st.just(b'{"error": {"message": "boom", "type": "server_error"}}'),
            st.just(b"not json"),
            st.just(b"[1, 2]"),
            st.just(b""),
        )
    )
    if draw(st.integers(0, 7)) == 0 and b"\n" not in payload:
        # The JSON cut over several data lines (joined with a newline: still valid JSON).
        at = draw(st.integers(0, len(payload)))
        data_lines = [payload[:at], payload[at:]]
    else:
        data_lines = [payload]
    lines = [draw(st.sampled_from([b"data: ", b"data:"])) + line for line in data_lines]
    extra = draw(
        st.lists(
            st.sampled_from(
                [
                    *(b": keep-alive", b"event: message", b"event: delta"),
                    *(b"id: 7", b"id: 8", b"id", b"retry: 9", b"retry: 10"),
                ]
            ),
            max_size=2,
        )
    )
    for line in extra:
        lines.insert(draw(st.integers(0, len(lines))), line)
    if draw(st.integers(0, 9)) == 0:
        return b": ping" + eol + eol, 0  # a comment block: dispatches nothing
    # Each line's end drawn apart (mostly LF): a CR may end one line of an LF-ended event.
    ended = [line + draw(eols) for line in lines]
    return b"".join(ended) + eol, sum(map(len, ended[:-1]))


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A stream and its chunks: cut at event ends (one event a read), anywhere, or both."""
    drawn = draw(st.lists(sse_blocks(), min_size=1, max_size=8))
    blocks = [block for block, _ in drawn]
    skips = [head for _, head in drawn]  # where each block's last line starts, in it
    if draw(st.booleans()):
        blocks[-1] += b"data: [DONE]\n\n"
    if draw(st.integers(0, 5)) == 0:
        blocks[0] = b"\xef\xbb\xbf" + blocks[0]
        skips[0] += 3
    data = b"".join(blocks)
    ends = []
    heads = []  # a block's fields and first lines apart, then its last line: a lone event
    position = 0
    for block, skip in zip(blocks, skips, strict=True):
        heads.append(position + skip)
        position += len(block)
        ends.append(position)
    how = draw(st.sampled_from(["events", "events", "lines", "anywhere", "mixed"]))
    cuts: list[int] = []
    if how in ("events", "mixed"):
        cuts += ends[:-1]
    if how == "lines":  # at event ends and before each block's last line
        cuts += ends[:-1] + heads
    if how in ("anywhere", "mixed"):
        cuts += draw(st.lists(st.integers(0, len(data)), max_size=6))
    return data, split(data, cuts)


# -- the decoder ------------------------------------------------------------------------------


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.sampled_from([1 << 20, 64]))
def test_decoder_fast_path_gives_what_the_general_path_gives(
    stream: tuple[bytes, list[bytes]], limit: int
) -> None:
    _, chunks = stream
    expected = run_decoder(GeneralDecoder(max_event_bytes=limit), chunks, lone_first=False)
    # feed alone (its bookkeeping for the fast path), and lone_data first as the parser calls it
    assert run_decoder(SSEDecoder(max_event_bytes=limit), chunks, lone_first=False) == expected
    assert run_decoder(SSEDecoder(max_event_bytes=limit), chunks, lone_first=True) == expected


@pytest.mark.parametrize(
    ("chunk", "raw"),
    [
        (b"data: x\n\n", b"x"),
        (b"data:x\n\n", b"x"),
        (b"data:  x\n\n", b" x"),
        (b"data: \n\n", b""),
        (b"data:\n\n", b""),
        ('data: {"c": "é\\n"}\n\n'.encode(), '{"c": "é\\n"}'.encode()),
    ],
)
def test_lone_data_takes_one_whole_data_event(chunk: bytes, raw: bytes) -> None:
    decoder = SSEDecoder()
    decoder.feed(b": hello\n\n")
    assert decoder.lone_data(chunk) == raw
    assert decoder.feed(chunk) == [ServerSentEvent(raw)]
    assert GeneralDecoder().feed(chunk) == [ServerSentEvent(raw)]


@pytest.mark.parametrize(
    "chunk",
    [
        b"data: x\r\n\r\n",
        b"data: x\r\r",
        b"data: x\n\r\n",
        b"data: a\ndata: b\n\n",
        b"data: a\rb\n\n",
        b"event: e\ndata: x\n\n",
        b"id: 1\ndata: x\n\n",
        b": c\ndata: x\n\n",
        b"data: x\n\ndata: y\n\n",
        b"data: x\n",
        b"data: x",
        b"\n\n",
        b"dat\n\n",
        b"data\n\n",
        b"\xef\xbb\xbfdata: x\n\n",
        b"",
    ],
)
def test_lone_data_leaves_everything_else_to_feed(chunk: bytes) -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: first\n\n")
    assert decoder.lone_data(chunk) is None
    general = GeneralDecoder()
    general.feed(b"data: first\n\n")
    assert decoder.feed(chunk) == general.feed(chunk)


@pytest.mark.parametrize(
    "before",
    [
        b"",  # the BOM is not checked yet
        b"data: x\n\n\xef",  # the start of a line held
        b"data: x\n\r",  # a CR whose LF may follow
        b"data: a\n",  # an event open
        b"event: delta\n",  # a block open with a type
        b"id: 5\n",  # a block open with an id (the last event id changes at its end)
        b"retry: 5\n",
    ],
)
def test_no_fast_path_while_something_is_held(before: bytes) -> None:
    decoder = SSEDecoder()
    decoder.feed(before)
    assert decoder.lone_data(b"data: y\n\n") is None
    general = GeneralDecoder()
    general.feed(before)
    assert decoder.feed(b"data: y\n\n") == general.feed(b"data: y\n\n")
    assert (decoder.last_event_id, decoder.retry) == (general.last_event_id, general.retry)


def test_lone_event_carries_the_last_event_id() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 42\ndata: a\n\n")
    assert decoder.lone_data(b"data: b\n\n") == b"b"
    assert decoder.feed(b"data: b\n\n") == [ServerSentEvent("b", id="42")]


def test_a_whole_event_over_the_limit_is_refused_on_both_paths() -> None:
    # max_event_bytes bounds every event, also one that arrives whole in one chunk.
    chunk = b"data: " + b"x" * 100 + b"\n\n"
    for decoder in (SSEDecoder(max_event_bytes=10), GeneralDecoder(max_event_bytes=10)):
        decoder.feed(b": hi\n\n")
        assert decoder.lone_data(chunk) is None
        with pytest.raises(SpoutError, match=r"an event .* exceeded 10 bytes"):
            decoder.feed(chunk)
    for decoder in (SSEDecoder(max_event_bytes=10), GeneralDecoder(max_event_bytes=10)):
        decoder.feed(b": hi\n\n")  # an event of exactly the limit passes
        assert decoder.feed(b"data: " + b"x" * 10 + b"\n\n") == [ServerSentEvent(b"x" * 10)]


def test_lone_data_changes_nothing() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 3\nretry: 10\ndata: a\n\n")
    state = {name: repr(getattr(decoder, name)) for name in SSEDecoder.__slots__}
    assert decoder.lone_data(b"data: b\n\n") == b"b"
    assert decoder.lone_data(b"data: b\r\n\r\n") is None
    assert {name: repr(getattr(decoder, name)) for name in SSEDecoder.__slots__} == state


# -- the chat completions parser --------------------------------------------------------------


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_parser_fast_path_gives_what_the_general_path_gives(
    stream: tuple[bytes, list[bytes]],
) -> None:
    data, chunks = stream
    expected = run_parser(general_parser(), chunks)
    assert run_parser(fast_parser(), chunks) == expected
    # and what the whole stream in one chunk gives
    assert run_parser(fast_parser(), [data]) == run_parser(general_parser(), [data])


def test_common_chunks_give_text_deltas() -> None:
    first = (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
        b'"finish_reason":null}]}\n\n'
    )
    chunk = (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench",'
        b'"choices":[{"index":0,"delta":{"content":"tok "},"logprobs":null,'
        b'"finish_reason":null}]}\n\n'
    )
    parser = fast_parser()
    start = parser.feed(first)
    assert [type(e).__name__ for e in start] == ["ResponseStart"]
    assert parser._decoder.lone_data(chunk) is not None  # the fast path is the one taken
    events = parser.feed(chunk)
    assert events == [TextDelta("tok ")]
    assert type(events[0]) is TextDelta and events[0].text == "tok "


def test_text_delta_is_made_as_its_constructor_makes_it() -> None:
    # The mapper sets TextDelta's one slot itself: that holds while it has one field only.
    assert [f.name for f in fields(TextDelta)] == ["text"]
    assert not hasattr(TextDelta, "__post_init__")
    made = openai_module._new(TextDelta)
    openai_module._set_text(made, "hé")
    assert made == TextDelta("hé") and hash(made) == hash(TextDelta("hé"))
    assert repr(made) == repr(TextDelta("hé"))
    with pytest.raises(AttributeError):
        made.text = "x"  # type: ignore[misc]


def test_an_error_after_events_in_one_chunk_waits_for_the_next_feed() -> None:
    chunk = b'data: {"id":"1","model":"m","choices":[{"delta":{"content":"a"}}]}\n\ndata: nope\n\n'
    for parser in (fast_parser(), general_parser()):
        events = parser.feed(chunk)
        assert events[-1] == TextDelta("a")
        with pytest.raises(SpoutError, match="not valid JSON"):
            parser.feed(b"data: [DONE]\n\n")


@pytest.mark.parametrize(
    "chunk",
    [b"data: nope\n\n", b'data: {"error": {"message": "boom"}}\n\n', b"data: {\n\n"],
)
def test_an_error_in_a_lone_event_raises_at_once(chunk: bytes) -> None:
    outcomes = []
    for parser in (fast_parser(), general_parser()):
        parser.feed(b"data: {}\n\n")
        with pytest.raises(SpoutError) as info:
            parser.feed(chunk)
        outcomes.append(error_of(info.value))
    assert outcomes[0] == outcomes[1]
