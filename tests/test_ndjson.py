"""Tests for spout.ndjson.NDJSONDecoder: chunking, line ends, blank lines and error reporting."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spout import ProtocolError, StreamError
from spout.ndjson import NDJSONDecoder

OLLAMA = Path(__file__).parent / "fixtures" / "wire" / "ollama"


def feed_chunks(data: bytes, sizes: Iterable[int]) -> list[Any]:
    """Feed ``data`` in chunks of the given sizes (the rest as one last chunk), then close."""
    decoder = NDJSONDecoder()
    values: list[Any] = []
    position = 0
    for size in sizes:
        values += decoder.feed(data[position : position + size])
        position += size
    if position < len(data):
        values += decoder.feed(data[position:])
    values += decoder.close()
    return values


def feed_split(data: bytes, cuts: Iterable[int]) -> list[Any]:
    """Feed ``data`` cut at the given offsets (in any order, repeats give empty chunks)."""
    bounds = [0, *sorted(cuts), len(data)]
    return feed_chunks(data, [end - start for start, end in pairwise(bounds)])


def feed_bytewise(data: bytes) -> list[Any]:
    """Feed every byte of ``data`` on its own."""
    return feed_chunks(data, [1] * len(data))


def decode(data: bytes) -> list[Any]:
    """Feed ``data`` all at once."""
    return feed_chunks(data, [len(data)])


def assert_any_chunking(data: bytes, expected: list[Any]) -> None:
    """``data`` gives ``expected`` fed at once, byte by byte, and cut in two at every offset."""
    assert decode(data) == expected
    assert feed_bytewise(data) == expected
    for cut in range(len(data) + 1):
        assert feed_split(data, [cut]) == expected, f"cut at {cut}"


def protocol_error(data: bytes, sizes: Iterable[int]) -> ProtocolError:
    """The ProtocolError that feeding ``data`` in chunks of ``sizes`` (then closing) raises."""
    with pytest.raises(ProtocolError) as info:
        feed_chunks(data, sizes)
    return info.value


# 1. Framing


def test_objects_split_at_every_byte() -> None:
    stream = b'{"a":1,"b":[1,2,{"c":null}]}\n{"d":"x y"}\n[true,false]\n"s"\n-1.5e3\nnull\n'
    assert_any_chunking(
        stream,
        [{"a": 1, "b": [1, 2, {"c": None}]}, {"d": "x y"}, [True, False], "s", -1500.0, None],
    )


def test_values_returned_as_soon_as_their_line_ends() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":1}\n{"b"') == [{"a": 1}]
    assert decoder.feed(b":2}") == []
    assert decoder.feed(b"\n") == [{"b": 2}]
    assert decoder.feed(b'{"c":3}\n{"d":4}\n') == [{"c": 3}, {"d": 4}]
    assert decoder.close() == []


def test_crlf_line_ends() -> None:
    stream = b'{"a":1}\r\n{"b":"\\r"}\r\n\r\n{"c":3}\r\n'
    assert_any_chunking(stream, [{"a": 1}, {"b": "\r"}, {"c": 3}])


def test_crlf_split_between_cr_and_lf() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":1}\r') == []
    assert decoder.feed(b'\n{"b":2}\r') == [{"a": 1}]
    assert decoder.feed(b"\n") == [{"b": 2}]
    assert decoder.close() == []


def test_blank_lines_skipped() -> None:
    stream = b'\n\n{"a":1}\n\n\r\n   \n\t\n{"b":2}\n\n'
    assert_any_chunking(stream, [{"a": 1}, {"b": 2}])


def test_only_blank_lines_give_nothing() -> None:
    assert_any_chunking(b"\n\r\n \n", [])
    assert decode(b"") == []


@pytest.mark.parametrize("tail", [b'{"b":2}', b'{"b":2}\r', b' {"b":2} '])
def test_last_line_without_newline_parsed_at_close(tail: bytes) -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":1}\n' + tail) == [{"a": 1}]
    assert decoder.close() == [{"b": 2}]


def test_close_after_complete_last_line_adds_nothing() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":1}\n') == [{"a": 1}]
    assert decoder.close() == []


@pytest.mark.parametrize("text", ["é", "日本", "🎉", "aé日本🎉z\u2028\u0085"])
def test_multibyte_utf8_split_at_every_byte(text: str) -> None:
    value = {"t": text, text: [text]}
    stream = json.dumps(value, ensure_ascii=False).encode() + b"\n" + json.dumps([text]).encode()
    assert_any_chunking(stream, [value, [text]])


def test_unicode_line_separators_do_not_end_lines() -> None:
    # Only LF ends a line: U+2028 and U+0085 inside a string are ordinary characters.
    stream = '{"a":"x\u2028y\u0085z"}\n'.encode()
    assert_any_chunking(stream, [{"a": "x\u2028y\u0085z"}])


# 2. Errors


@pytest.mark.parametrize(
    ("stream", "line_number", "bad"),
    [
        (b"{bad}\n", 1, b"{bad}"),
        (b'{"a":1}\n{bad}\n{"c":3}\n', 2, b"{bad}"),
        (b'\n\n{"a":1}\n\n{"a":\n', 5, b'{"a":'),  # blank lines count
        (b'{"a":1}\r\n\r\nnope\r\n', 3, b"nope"),
        (b'{"a":1} {"b":2}\n', 1, b'{"a":1} {"b":2}'),  # two values on one line
        (b'{"a":1}\n{"b":', 2, b'{"b":'),  # the unterminated last line, found at close
        (b'{"a":"\xff"}\n', 1, b'{"a":"\xff"}'),  # invalid UTF-8
        (b"[1,2\n]\n", 1, b"[1,2"),  # a value may not span lines
        (b'\n\n\n\n\n\n\n\n\n\n{"x":1}\n{\n', 12, b"{"),
    ],
)
def test_malformed_json_raises_protocol_error(stream: bytes, line_number: int, bad: bytes) -> None:
    for sizes in ([len(stream)], [1] * len(stream)):
        error = protocol_error(stream, sizes)
        assert isinstance(error, StreamError)
        assert re.search(rf"\bline {line_number}\b", str(error)), str(error)
        assert error.data == bad


def test_error_line_number_counts_lines_of_earlier_feeds() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":1}\n\n') == [{"a": 1}]
    assert decoder.feed(b'{"b":2}\n') == [{"b": 2}]
    with pytest.raises(ProtocolError, match=r"\bline 4\b") as info:
        decoder.feed(b"}{\n")
    assert info.value.data == b"}{"


def test_error_keeps_whole_long_line() -> None:
    bad = b'{"k":"' + b"x" * 5000
    error = protocol_error(b'{"a":1}\n' + bad + b"\n", [4096])
    assert error.data == bad
    assert re.search(r"\bline 2\b", str(error))


# Real transcript


def test_ollama_transcript_any_chunking() -> None:
    transcript = (OLLAMA / "chat_text.ndjson").read_bytes()
    expected = json.loads((OLLAMA / "chat_text.expected.json").read_text())
    lines = [json.loads(line) for line in transcript.splitlines() if line.strip()]
    whole = decode(transcript)
    assert whole == lines
    assert feed_bytewise(transcript) == whole
    text = "".join(value.get("message", {}).get("content", "") for value in whole)
    assert text == expected["text"]
    assert whole[-1]["done"] is True
    assert whole[-1]["eval_count"] == expected["usage"]["output_tokens"]


@settings(max_examples=100, deadline=None, database=None)
@given(data=st.data())
def test_ollama_transcript_random_chunking(data: st.DataObject) -> None:
    transcript = (OLLAMA / "chat_text.ndjson").read_bytes()
    cuts = data.draw(st.lists(st.integers(0, len(transcript)), max_size=60), label="cuts")
    assert feed_split(transcript, cuts) == decode(transcript)


# Round trip of random streams


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=5), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, database=None)
@given(values=st.lists(JSON_VALUES, max_size=8), data=st.data())
def test_round_trip_random_streams(values: list[Any], data: st.DataObject) -> None:
    out = b""
    for value in values:
        out += data.draw(st.sampled_from([b"", b"\n", b"\r\n", b" \n"]), label="blank")
        out += json.dumps(value, ensure_ascii=data.draw(st.booleans())).encode()
        out += data.draw(st.sampled_from([b"\n", b"\r\n"]), label="eol")
    if out and data.draw(st.booleans(), label="drop last line end"):
        out = out.rstrip(b"\r\n")
    cuts = data.draw(st.lists(st.integers(0, len(out)), max_size=20), label="cuts")
    assert feed_split(out, cuts) == values


def test_values_before_a_malformed_line_are_delivered_whatever_the_chunking() -> None:
    data = b'{"a":1}\n{"b":2}\n{bad}\n{"c":3}\n'
    for sizes in ([len(data)], [1] * len(data), [9, 100]):
        decoder = NDJSONDecoder()
        received: list[Any] = []
        position = 0
        with pytest.raises(ProtocolError, match="line 3"):
            for size in sizes:
                received += decoder.feed(data[position : position + size])
                position += size
            received += decoder.close()
        assert received == [{"a": 1}, {"b": 2}]


def test_vertical_tab_line_is_not_blank() -> None:
    with pytest.raises(ProtocolError, match="line 2"):
        decode(b'{"a":1}\n\x0b\n')
