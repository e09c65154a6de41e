"""Tests for spout.sse.SSEDecoder against the WHATWG "interpreting an event stream" rules."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spout.sse import ServerSentEvent, SSEDecoder

WIRE = Path(__file__).parent / "fixtures" / "wire"
SSE_FIXTURES = sorted(WIRE.glob("**/*.sse"))
BOM = b"\xef\xbb\xbf"

# (event, data, id, retry) of an event, and with raw appended: every public attribute.
Brief = tuple[str, str, str, int | None]
Seen = tuple[str, str, str, int | None, bytes]


def seen(events: Iterable[ServerSentEvent]) -> list[Seen]:
    """The public attributes of each event, so comparisons do not rely on ``__eq__``."""
    return [(e.event, e.data, e.id, e.retry, e.raw) for e in events]


def brief(events: Iterable[ServerSentEvent]) -> list[Brief]:
    """(event, data, id, retry) of each event."""
    return [(e.event, e.data, e.id, e.retry) for e in events]


def feed_chunks(
    data: bytes, sizes: Iterable[int], decoder: SSEDecoder | None = None
) -> list[ServerSentEvent]:
    """Feed ``data`` in chunks of the given sizes (the rest as one last chunk), then close."""
    decoder = decoder if decoder is not None else SSEDecoder()
    events: list[ServerSentEvent] = []
    position = 0
    for size in sizes:
        events += decoder.feed(data[position : position + size])
        position += size
    if position < len(data):
        events += decoder.feed(data[position:])
    events += decoder.close()
    return events


def feed_split(
    data: bytes, cuts: Iterable[int], decoder: SSEDecoder | None = None
) -> list[ServerSentEvent]:
    """Feed ``data`` cut at the given offsets (in any order, repeats give empty chunks)."""
    bounds = [0, *sorted(cuts), len(data)]
    return feed_chunks(data, [end - start for start, end in pairwise(bounds)], decoder)


def feed_bytewise(data: bytes) -> list[ServerSentEvent]:
    """Feed every byte of ``data`` on its own."""
    return feed_chunks(data, [1] * len(data))


def decode(data: bytes) -> list[ServerSentEvent]:
    """Feed ``data`` all at once."""
    return feed_chunks(data, [len(data)])


def assert_any_chunking(data: bytes, expected: Sequence[Brief]) -> None:
    """``data`` gives ``expected`` fed at once, byte by byte, and cut in two at every offset."""
    assert brief(decode(data)) == list(expected)
    assert brief(feed_bytewise(data)) == list(expected)
    for cut in range(len(data) + 1):
        assert brief(feed_split(data, [cut])) == list(expected), f"cut at {cut}"


# 1. Line endings


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_each_line_ending_alone(eol: bytes) -> None:
    stream = eol.join([b"event: a", b"data: 1", b"data: 2", b"id: 7", b"", b"data: 3", b"", b""])
    assert_any_chunking(stream, [("a", "1\n2", "7", None), ("message", "3", "7", None)])


def test_mixed_line_endings() -> None:
    stream = (
        b"data: a\rdata: b\ndata: c\r\n\n"  # CR, LF, CRLF, then a blank line ended by LF
        b"data: d\r\r\n"  # a blank line ended by CRLF right after a CR
        b"event: e\ndata: f\n\r"  # a blank line ended by CR after LF
        b"data: g\r\n\r"
    )
    expected = [
        ("message", "a\nb\nc", "", None),
        ("message", "d", "", None),
        ("e", "f", "", None),
        ("message", "g", "", None),
    ]
    assert_any_chunking(stream, expected)


def test_crlf_split_across_feeds_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # If the LF were a second line end, this would be a blank line dispatching "a".
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: b\r") == []
    # LF ends "data: b", then CR is a blank line: dispatched at once.
    assert brief(decoder.feed(b"\n\r")) == [("message", "a\nb", "", None)]
    assert decoder.feed(b"\ndata: c\r") == []
    assert decoder.feed(b"\n") == []
    assert brief(decoder.feed(b"data: d\r\n\r")) == [("message", "c\nd", "", None)]
    assert decoder.feed(b"\n") == []
    assert decoder.close() == []


def test_cr_at_chunk_end_then_cr_is_a_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # Only an LF is swallowed after a split CR; a CR is a line end of its own.
    assert brief(decoder.feed(b"\rdata: b\r")) == [("message", "a", "", None)]
    assert decoder.feed(b"") == []  # an empty chunk must not lose the pending CR
    assert decoder.feed(b"\n") == []
    assert brief(decoder.feed(b"\r\n")) == [("message", "b", "", None)]


def test_crlf_streams_split_between_cr_and_lf_everywhere() -> None:
    stream = b"id: 1\r\ndata: x\r\n\r\n: keep-alive\r\n\r\ndata: y\r\ndata: z\r\n\r\n"
    crlf_cuts = [i + 1 for i in range(len(stream)) if stream[i : i + 2] == b"\r\n"]
    expected = [("message", "x", "1", None), ("message", "y\nz", "1", None)]
    assert brief(feed_split(stream, crlf_cuts)) == expected
    assert_any_chunking(stream, expected)


@pytest.mark.parametrize("ending", [b"\n\n", b"\r\r", b"\r\n\r\n", b"\n\r", b"\r\n\n"])
def test_event_dispatched_as_soon_as_blank_line_arrives(ending: bytes) -> None:
    decoder = SSEDecoder()
    assert brief(decoder.feed(b"data: now" + ending)) == [("message", "now", "", None)]


# 2. Byte order mark


def test_leading_bom_stripped() -> None:
    assert_any_chunking(BOM + b"data: x\n\n", [("message", "x", "", None)])


@pytest.mark.parametrize("sizes", [[1, 2], [2, 1], [1, 1, 1], [1, 3], [2, 5], [0, 1, 0, 2]])
def test_bom_split_across_feeds_stripped(sizes: list[int]) -> None:
    assert brief(feed_chunks(BOM + b"data: x\n\n", sizes)) == [("message", "x", "", None)]


def test_bom_one_byte_then_two() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(BOM[:1]) == []
    assert decoder.feed(BOM[1:]) == []
    assert brief(decoder.feed(b"data: x\n\n")) == [("message", "x", "", None)]


def test_second_bom_not_stripped() -> None:
    # The second BOM becomes part of the field name "\ufeffdata", an unknown field: ignored.
    stream = BOM + BOM + b"data: lost\n\ndata: kept\n\n"
    assert_any_chunking(stream, [("message", "kept", "", None)])
    decoder = SSEDecoder()
    assert decoder.feed(BOM) == []
    assert decoder.feed(BOM + b"data: lost\n\n") == []


def test_bom_later_in_stream_not_stripped() -> None:
    stream = b"data: a\n\n" + BOM + b"data: b\n\n" + BOM + b"\n"
    assert_any_chunking(stream, [("message", "a", "", None)])


def test_short_first_chunks_that_are_not_a_bom() -> None:
    # A first chunk that might start a BOM but does not must be kept, not dropped.
    assert brief(feed_chunks(b"\xefdata: x\n\ndata: y\n\n", [1, 1])) == [("message", "y", "", None)]
    assert brief(feed_chunks(b"\n\ndata: y\n\n", [1, 1])) == [("message", "y", "", None)]
    assert brief(feed_chunks(b"data: y\n\n", [1, 1, 1])) == [("message", "y", "", None)]


# 3. Comments


def test_comment_lines_ignored() -> None:
    stream = b": hello\ndata: a\n:data: not data\n: \n:\ndata: b\n\n"
    assert_any_chunking(stream, [("message", "a\nb", "", None)])


def test_keepalive_comment_blocks_dispatch_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": ping\n\n:\n\n: OPENROUTER PROCESSING\r\n\r\n") == []
    assert brief(decoder.feed(b"data: x\n\n: ping\n\n")) == [("message", "x", "", None)]
    assert decoder.close() == []


def test_comment_does_not_end_or_reset_an_event() -> None:
    stream = b"event: e\nid: 3\ndata: a\n: keep-alive\ndata: b\n\n"
    assert_any_chunking(stream, [("e", "a\nb", "3", None)])


# 4. Fields


@pytest.mark.parametrize(
    ("line", "data"),
    [
        (b"data:x", "x"),
        (b"data: x", "x"),
        (b"data:  x", " x"),
        (b"data:   x  ", "  x  "),
        (b"data:\tx", "\tx"),
        (b"data: ", ""),
        (b"data:", ""),
        (b"data", ""),
        (b"data: a: b", "a: b"),
        (b"data:: x", ": x"),
        (b'data: {"k": "v"}', '{"k": "v"}'),
    ],
)
def test_data_value_parsing(line: bytes, data: str) -> None:
    assert_any_chunking(line + b"\n\n", [("message", data, "", None)])


def test_one_leading_space_removed_in_every_field() -> None:
    stream = b"event:  spaced\nid:  5\nretry: 10\ndata:  d\n\n"
    assert brief(decode(stream)) == [(" spaced", " d", " 5", 10)]
    # "retry:  10" keeps a space after removing one, so it is not all digits: ignored.
    assert brief(decode(b"retry:  10\ndata: d\n\n")) == [("message", "d", "", None)]


def test_event_field() -> None:
    stream = b"event: update\ndata: 1\n\ndata: 2\n\nevent: gone\n\ndata: 3\n\nevent\ndata: 4\n\n"
    # The type applies to its own block only, also when that block is not dispatched;
    # an empty type means "message".
    assert_any_chunking(
        stream,
        [
            ("update", "1", "", None),
            ("message", "2", "", None),
            ("message", "3", "", None),
            ("message", "4", "", None),
        ],
    )


def test_last_value_of_repeated_event_field_wins() -> None:
    assert brief(decode(b"event: a\nevent: b\ndata: x\n\n")) == [("b", "x", "", None)]


def test_unknown_fields_ignored() -> None:
    stream = (
        b"foo: bar\nDATA: upper\nData: title\ndata : spaced\n data: indented\n"
        b"ID: 9\nEvent: e\nretry : 5\nx\ndata: real\n\n"
    )
    decoder = SSEDecoder()
    events = feed_chunks(stream, [len(stream)], decoder)
    assert brief(events) == [("message", "real", "", None)]
    assert decoder.last_event_id == ""
    assert decoder.retry is None


def test_block_of_unknown_fields_only_dispatches_nothing() -> None:
    assert decode(b"foo: bar\nbaz\n\n") == []


# 5. Data


def test_multiline_data_joined_with_lf() -> None:
    stream = b"data: one\ndata:two\ndata\ndata:  four\ndata:\n\n"
    assert_any_chunking(stream, [("message", "one\ntwo\n\n four\n", "", None)])


@pytest.mark.parametrize("block", [b"data\n\n", b"data:\n\n", b"data: \n\n"])
def test_empty_data_dispatches_empty_string(block: bytes) -> None:
    events = decode(block)
    assert seen(events) == [("message", "", "", None, b"")]


def test_block_without_data_not_dispatched_but_id_and_retry_apply() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: ping\nid: 5\nretry: 250\n\n") == []
    assert decoder.last_event_id == "5"
    assert decoder.retry == 250
    # The dispatched event's own retry is only what its own block set.
    assert brief(decoder.feed(b"data: x\n\n")) == [("message", "x", "5", None)]


def test_blank_lines_without_fields_dispatch_nothing() -> None:
    assert decode(b"\n\n\r\n\r\r\n") == []


# 6. id


def test_id_persists_across_events() -> None:
    stream = b"id: 1\ndata: a\n\ndata: b\n\ndata: c\nid: 2\n\ndata: d\n\n"
    decoder = SSEDecoder()
    events = feed_chunks(stream, [len(stream)], decoder)
    assert brief(events) == [
        ("message", "a", "1", None),
        ("message", "b", "1", None),
        ("message", "c", "2", None),  # the id applies to its whole block, even after data
        ("message", "d", "2", None),
    ]
    assert decoder.last_event_id == "2"


def test_id_containing_nul_ignored() -> None:
    stream = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\nid: \x00\ndata: c\n\n"
    decoder = SSEDecoder()
    events = feed_chunks(stream, [1] * len(stream), decoder)
    assert [e.id for e in events] == ["1", "1", "1"]
    assert decoder.last_event_id == "1"


def test_nul_elsewhere_is_kept() -> None:
    stream = b"event: a\x00b\ndata: c\x00d\n\n"
    assert brief(decode(stream)) == [("a\x00b", "c\x00d", "", None)]


@pytest.mark.parametrize("reset", [b"id:", b"id: ", b"id"])
def test_empty_id_resets_last_event_id(reset: bytes) -> None:
    stream = b"id: 1\ndata: a\n\n" + reset + b"\ndata: b\n\ndata: c\n\n"
    decoder = SSEDecoder()
    events = feed_chunks(stream, [len(stream)], decoder)
    assert [e.id for e in events] == ["1", "", ""]
    assert decoder.last_event_id == ""


def test_id_is_kept_verbatim() -> None:
    stream = "id: ab c:d é\ndata: x\n\n".encode()
    assert [e.id for e in decode(stream)] == ["ab c:d é"]


# 7. retry


@pytest.mark.parametrize(("value", "expected"), [(b"0", 0), (b"3000", 3000), (b"007", 7)])
def test_retry_with_ascii_digits(value: bytes, expected: int) -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"retry: " + value + b"\ndata: x\n\ndata: y\n\n")
    assert brief(events) == [("message", "x", "", expected), ("message", "y", "", None)]
    assert decoder.retry == expected


@pytest.mark.parametrize(
    "value",
    [
        b"1a",
        b"-1",
        b"+1",
        b"1.5",
        b"1e3",
        b"0x10",
        b" 1",
        b"1 ",
        b"",
        "١٢".encode(),  # Arabic-Indic digits
        "\uff11\uff12".encode(),  # fullwidth digits
        "²".encode(),  # superscript two
    ],
)
def test_retry_without_only_ascii_digits_ignored(value: bytes) -> None:
    decoder = SSEDecoder()
    assert brief(decoder.feed(b"retry: 100\ndata: a\n\n")) == [("message", "a", "", 100)]
    events = decoder.feed(b"retry: " + value + b"\ndata: b\n\n")
    assert brief(events) == [("message", "b", "", None)]
    assert decoder.retry == 100


def test_retry_field_without_colon_ignored() -> None:
    decoder = SSEDecoder()
    assert brief(decoder.feed(b"retry\ndata: b\n\n")) == [("message", "b", "", None)]
    assert decoder.retry is None


def test_retry_persists_and_last_wins() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"retry: 5\nretry: 7\ndata: a\n\ndata: b\n\nretry: 9\n\n")
    assert brief(events) == [("message", "a", "", 7), ("message", "b", "", None)]
    assert decoder.retry == 9


# 8. End of stream


@pytest.mark.parametrize(
    "tail",
    [b"data: x", b"data: x\n", b"data: x\r", b"data: x\r\n", b"event: e\ndata: x\nid: 9\n"],
)
def test_unterminated_event_discarded_at_close(tail: bytes) -> None:
    decoder = SSEDecoder()
    assert brief(decoder.feed(b"id: 1\ndata: done\n\n" + tail)) == [("message", "done", "1", None)]
    assert decoder.close() == []
    assert decoder.last_event_id == "1"  # the id of a discarded block never took effect


def test_close_on_empty_stream() -> None:
    decoder = SSEDecoder()
    assert decoder.close() == []
    assert decoder.last_event_id == ""
    assert decoder.retry is None


# 9. UTF-8


@pytest.mark.parametrize("text", ["é", "日本", "🎉", "aé日本🎉z", "\u2028\u0085"])
def test_multibyte_utf8_split_at_every_position(text: str) -> None:
    stream = f"event: {text}\nid: {text}\ndata: {text}\ndata: {text}\n\n".encode()
    expected = [(text, f"{text}\n{text}", text, None)]
    assert_any_chunking(stream, expected)
    for first in range(len(stream)):
        for second in range(first, min(first + 5, len(stream))):
            assert brief(feed_split(stream, [first, second])) == expected


def test_unicode_line_separators_are_not_line_ends() -> None:
    # Only CR and LF end lines: U+2028, U+0085, VT and FF are ordinary characters.
    stream = "data: a\u2028b\u0085c\x0bd\x0ce\x1cf\n\n".encode()
    assert_any_chunking(stream, [("message", "a\u2028b\u0085c\x0bd\x0ce\x1cf", "", None)])


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"a\xffb", "a\ufffdb"),
        (b"\xe6\x97", "\ufffd"),  # a truncated 3-byte sequence at the end of the line
        (b"\xe6\x97x", "\ufffdx"),
        (b"\xc3", "\ufffd"),
        (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),  # an encoded surrogate
        (b"\xc0\xaf", "\ufffd\ufffd"),  # an overlong encoding
        (b"\xf0\x9f\x8e", "\ufffd"),
    ],
)
def test_invalid_utf8_replaced_raw_kept(raw: bytes, text: str) -> None:
    stream = b"data: " + raw + b"\n\n"
    for events in (decode(stream), feed_bytewise(stream)):
        assert seen(events) == [("message", text, "", None, raw)]


def test_invalid_utf8_in_multiline_data() -> None:
    events = feed_bytewise(b"data: \xe6\ndata: \x97\xff\n\n")
    assert [(e.data, e.raw) for e in events] == [("\ufffd\n\ufffd\ufffd", b"\xe6\n\x97\xff")]


def test_raw_is_utf8_of_data() -> None:
    events = decode("data: é日本🎉\ndata: x\n\n".encode())
    assert [e.raw for e in events] == ["é日本🎉\nx".encode()]


# 10. Real transcripts under hostile chunking


def fixture_id(path: Path) -> str:
    """``provider/case`` of a fixture."""
    return f"{path.parent.name}/{path.stem}"


@pytest.fixture(params=SSE_FIXTURES, ids=fixture_id)
def transcript(request: pytest.FixtureRequest) -> bytes:
    """The bytes of one recorded SSE body."""
    path: Path = request.param
    return path.read_bytes()


def test_fixtures_found() -> None:
    assert len(SSE_FIXTURES) >= 7


def test_transcript_events_are_the_data_blocks(transcript: bytes) -> None:
    events = decode(transcript)
    data_lines = [line for line in transcript.splitlines() if line.startswith(b"data")]
    assert len(events) == len(data_lines) > 0
    for event in events:
        if event.data == "[DONE]":
            continue
        payload = json.loads(event.data)
        if event.event != "message":
            # Anthropic and OpenAI Responses repeat the event type inside the payload.
            assert payload["type"] == event.event


def test_transcript_bytewise_equals_one_feed(transcript: bytes) -> None:
    assert seen(feed_bytewise(transcript)) == seen(decode(transcript))


def test_transcript_split_in_two_everywhere(transcript: bytes) -> None:
    whole = seen(decode(transcript))
    for cut in range(len(transcript) + 1):
        assert seen(feed_split(transcript, [cut])) == whole, f"cut at {cut}"


@pytest.mark.parametrize("path", SSE_FIXTURES, ids=fixture_id)
@settings(max_examples=60, deadline=None, database=None)
@given(data=st.data())
def test_transcript_random_chunking(path: Path, data: st.DataObject) -> None:
    transcript = path.read_bytes()
    cuts = data.draw(st.lists(st.integers(0, len(transcript)), max_size=80), label="cuts")
    assert seen(feed_split(transcript, cuts)) == seen(decode(transcript))


def test_openai_chat_text_content() -> None:
    expected = json.loads((WIRE / "openai_chat" / "text.expected.json").read_text())
    transcript = (WIRE / "openai_chat" / "text.sse").read_bytes()
    for events in (decode(transcript), feed_bytewise(transcript)):
        assert events[-1].data == "[DONE]"
        chunks = [json.loads(e.data) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == expected["text"]


def test_gemini_crlf_blocks_each_dispatch_once() -> None:
    transcript = (WIRE / "gemini" / "text.sse").read_bytes()
    assert b"\r\n\r\n" in transcript
    expected = json.loads((WIRE / "gemini" / "text.expected.json").read_text())
    events = feed_bytewise(transcript)
    parts = [json.loads(e.data)["candidates"][0]["content"]["parts"] for e in events]
    assert "".join(p["text"] for ps in parts for p in ps if "text" in p) == expected["text"]


# 11. Round trip of random event streams


LINE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
EVENT_TYPE = st.one_of(st.none(), LINE_TEXT)
EVENT_ID = st.one_of(
    st.none(), st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=8)
)
EVENTS = st.lists(
    st.fixed_dictionaries(
        {
            "event": EVENT_TYPE,
            "data": st.lists(LINE_TEXT, min_size=1, max_size=4),
            "id": EVENT_ID,
            "retry": st.one_of(st.none(), st.integers(0, 10**6)),
            "comment": st.one_of(st.none(), LINE_TEXT),
        }
    ),
    max_size=8,
)


def serialize(events: list[dict[str, Any]], source: st.DataObject) -> bytes:
    """Write ``events`` as an event stream, drawing line ends and field spellings."""
    lines: list[bytes] = []
    for event in events:
        if event["comment"] is not None:
            lines.append(b":" + event["comment"].encode())
        if event["event"] is not None:
            lines.append(b"event: " + event["event"].encode())
        for value in event["data"]:
            spellings = [b"data: " + value.encode()]
            if not value.startswith(" "):
                spellings.append(b"data:" + value.encode())
            if not value:
                spellings.append(b"data")
            lines.append(source.draw(st.sampled_from(spellings)))
        if event["id"] is not None:
            lines.append(b"id: " + event["id"].encode())
        if event["retry"] is not None:
            lines.append(b"retry: %d" % event["retry"])
        lines.append(b"")
    out = b""
    for line in lines:
        eol = source.draw(st.sampled_from([b"\n", b"\r", b"\r\n"]))
        if not line and out.endswith(b"\r") and eol == b"\n":
            eol = b"\r\n"  # CR then LF would be one CRLF line end, losing this blank line
        out += line + eol
    return out


@settings(max_examples=300, deadline=None, database=None)
@given(events=EVENTS, source=st.data(), bom=st.booleans())
def test_round_trip_random_streams(
    events: list[dict[str, Any]], source: st.DataObject, bom: bool
) -> None:
    stream = (BOM if bom else b"") + serialize(events, source)
    expected: list[Brief] = []
    last_id = ""
    last_retry: int | None = None
    for event in events:
        if event["id"] is not None:
            last_id = event["id"]
        if event["retry"] is not None:
            last_retry = event["retry"]
        expected.append(
            (event["event"] or "message", "\n".join(event["data"]), last_id, event["retry"])
        )
    cuts = source.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    decoder = SSEDecoder()
    got = feed_split(stream, cuts, decoder)
    assert brief(got) == expected
    assert [e.raw for e in got] == [d.encode() for _, d, _, _ in expected]
    assert decoder.last_event_id == last_id
    assert decoder.retry == last_retry


# Differential check against the standard's algorithm, written out literally


def reference_parse(stream: bytes) -> tuple[list[Brief], str, int | None]:
    """Events, last event id and retry per WHATWG HTML 9.2.6, decoding the whole stream first."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # the last piece has no line end: never processed
    events: list[Brief] = []
    data = event_type = id_buffer = last_id = ""
    block_retry: int | None = None
    retry: int | None = None
    for line in lines:
        if not line:
            last_id = id_buffer
            if data:
                events.append(
                    (event_type or "message", data.removesuffix("\n"), last_id, block_retry)
                )
            data = event_type = ""
            block_retry = None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\0" not in value:
            id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = block_retry = int(value)
    return events, last_id, retry


TOKENS = [
    *[b"\r", b"\n", b"\r\n", b":", b" ", b"  ", b"data", b"event", b"id", b"retry", b"x", b"1"],
    *[BOM, BOM[:1], BOM[:2], b"\xff", b"\xe6\x97", b"\x00", "é".encode()],
]


@settings(max_examples=1000, deadline=None, database=None)
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=40), source=st.data())
def test_matches_spec_algorithm_on_token_soup(tokens: list[bytes], source: st.DataObject) -> None:
    stream = b"".join(tokens)
    cuts = source.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")
    decoder = SSEDecoder()
    events = feed_split(stream, cuts, decoder)
    assert (brief(events), decoder.last_event_id, decoder.retry) == reference_parse(stream)
