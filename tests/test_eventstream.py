"""Tests for spout.eventstream.EventStreamDecoder, checked against botocore's reader.

botocore has no event-stream encoder, so the frames are built here by hand (struct and zlib);
every frame a test decodes successfully is also read by botocore's ``EventStreamBuffer``, and
both must agree on its headers and payload.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from spout import ProtocolError
from spout.eventstream import EventStreamDecoder, HeaderValue, Message

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# A header as the tests write it: (name, wire type, value as the wire holds it).
Header = tuple[str, int, Any]


def encode_header(name: str, kind: int, value: Any) -> bytes:
    """One header in the wire format: name length, name, type, value."""
    raw_name = name.encode()
    out = struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!B", kind)
    if kind in (0, 1):
        return out
    fixed = {2: "!b", 3: "!h", 4: "!i", 5: "!q", 8: "!q"}
    if kind in fixed:
        return out + struct.pack(fixed[kind], value)
    if kind in (6, 7):
        raw: bytes = value if kind == 6 else value.encode()
        return out + struct.pack("!H", len(raw)) + raw
    if kind == 9:
        assert isinstance(value, bytes) and len(value) == 16
        return out + value
    return out  # an unknown type, for the tests that send one


def frame(
    headers: Sequence[Header] = (),
    payload: bytes = b"",
    *,
    raw_headers: bytes | None = None,
    total_length: int | None = None,
) -> bytes:
    """A whole message with correct CRCs (``total_length`` overrides the declared length)."""
    head = raw_headers if raw_headers is not None else b"".join(encode_header(*h) for h in headers)
    total = total_length if total_length is not None else 12 + len(head) + len(payload) + 4
    lengths = struct.pack("!II", total, len(head))
    prelude = lengths + struct.pack("!I", zlib.crc32(lengths))
    body = prelude + head + payload
    return body + struct.pack("!I", zlib.crc32(body))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    """A Bedrock ConverseStream event frame, as the service sends it."""
    return frame(
        [
            (":event-type", 7, kind),
            (":content-type", 7, "application/json"),
            (":message-type", 7, "event"),
        ],
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def decode(chunks: Iterable[bytes], **options: int) -> list[Message]:
    """Feed the chunks in order, then close."""
    decoder = EventStreamDecoder(**options)
    messages = [m for chunk in chunks for m in decoder.feed(chunk)]
    decoder.close()
    return messages


def as_botocore(value: HeaderValue) -> Any:
    """A header value in botocore's terms: timestamps as int milliseconds, UUIDs as bytes."""
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, uuid.UUID):
        return value.bytes
    return value


def botocore_reads(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The headers and payload of each message, as botocore's reader sees them."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(dict(m.headers), bytes(m.payload)) for m in buffer]


def seen(messages: Iterable[Message]) -> list[tuple[dict[str, Any], bytes]]:
    return [({k: as_botocore(v) for k, v in m.headers.items()}, m.payload) for m in messages]


UUID = uuid.UUID("0123456789abcdef0123456789abcdef")
EVERY_TYPE: list[Header] = [
    ("true", 0, True),
    ("false", 1, False),
    ("byte", 2, -7),
    ("short", 3, -12345),
    ("int", 4, -2_000_000_000),
    ("long", 5, -(2**62)),
    ("bytes", 6, b"\x00\xffbin"),
    ("string", 7, "h\u00e9llo \U0001f600"),
    ("timestamp", 8, 1_700_000_000_123),
    ("uuid", 9, UUID.bytes),
]

STREAM = b"".join(
    [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo \u00e9"}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
        frame(EVERY_TYPE, b"every type"),
        frame([], b""),
        event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}}),
    ]
)
EXPECTED = botocore_reads(STREAM)


def test_botocore_reads_the_hand_built_frames() -> None:
    assert len(EXPECTED) == 8
    assert EXPECTED[1] == (
        {
            ":event-type": "contentBlockDelta",
            ":content-type": "application/json",
            ":message-type": "event",
        },
        b'{"contentBlockIndex":0,"delta":{"text":"Hel"}}',
    )


def test_whole_stream_in_one_chunk() -> None:
    messages = decode([STREAM])
    assert seen(messages) == EXPECTED
    assert json.loads(messages[4].payload) == {"stopReason": "end_turn"}


def test_every_header_type_is_typed() -> None:
    (message,) = decode([frame(EVERY_TYPE, b"x")])
    assert message.headers == {
        "true": True,
        "false": False,
        "byte": -7,
        "short": -12345,
        "int": -2_000_000_000,
        "long": -(2**62),
        "bytes": b"\x00\xffbin",
        "string": "h\u00e9llo \U0001f600",
        "timestamp": datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc),
        "uuid": UUID,
    }
    assert message.payload == b"x"
    assert seen([message]) == botocore_reads(frame(EVERY_TYPE, b"x"))


def test_extreme_integer_values() -> None:
    headers: list[Header] = [
        ("b+", 2, 127),
        ("b-", 2, -128),
        ("s+", 3, 2**15 - 1),
        ("i+", 4, 2**31 - 1),
        ("l+", 5, 2**63 - 1),
        ("l-", 5, -(2**63)),
        ("t0", 8, 0),
        ("t-", 8, -1),
    ]
    data = frame(headers)
    (message,) = decode([data])
    assert seen([message]) == botocore_reads(data)
    assert message.headers["t-"] == EPOCH - timedelta(milliseconds=1)


def test_empty_payload_and_no_headers() -> None:
    assert decode([frame()]) == [Message(headers={}, payload=b"")]
    assert len(frame()) == 16


def test_several_messages_in_one_chunk_and_none_in_another() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(b"") == []
    assert len(decoder.feed(STREAM[:-1])) == 7
    assert seen(decoder.feed(STREAM[-1:])) == EXPECTED[-1:]
    decoder.close()


def test_one_byte_at_a_time() -> None:
    assert seen(decode(STREAM[i : i + 1] for i in range(len(STREAM)))) == EXPECTED


@pytest.mark.parametrize("at", range(1, len(STREAM)))
def test_cut_in_two_at_every_byte(at: int) -> None:
    """Every boundary: inside each prelude, its CRC, a header, a payload and a message CRC."""
    assert seen(decode([STREAM[:at], STREAM[at:]])) == EXPECTED


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_random_cuts(points: list[int]) -> None:
    bounds = [0, *sorted(points), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in pairwise(bounds)]
    assert seen(decode(chunks)) == EXPECTED


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(
                st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) < 256),
                st.one_of(
                    st.booleans().map(lambda b: (0 if b else 1, b)),
                    st.integers(-(2**63), 2**63 - 1).map(lambda i: (5, i)),
                    st.binary(max_size=40).map(lambda b: (6, b)),
                    st.text(max_size=40).map(lambda s: (7, s)),
                ),
                max_size=5,
            ),
            st.binary(max_size=300),
        ),
        min_size=1,
        max_size=4,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_random_messages_agree_with_botocore(
    messages: list[tuple[dict[str, tuple[int, Any]], bytes]], size: int
) -> None:
    data = b"".join(
        frame([(name, kind, value) for name, (kind, value) in headers.items()], payload)
        for headers, payload in messages
    )
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert seen(decode(chunks)) == botocore_reads(data)


def corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


GOOD = event("contentBlockDelta", {"delta": {"text": "hi"}})


def test_corrupted_prelude_crc() -> None:
    with pytest.raises(ProtocolError, match="prelude CRC mismatch") as caught:
        decode([corrupt(GOOD, 9)])
    assert "at byte 0" in str(caught.value)


def test_corrupted_length_fails_the_prelude_crc() -> None:
    with pytest.raises(ProtocolError, match="prelude CRC mismatch"):
        decode([corrupt(GOOD, 3)])


@pytest.mark.parametrize("at", [len(GOOD) - 1, len(GOOD) - 10, 20])
def test_corrupted_message_crc_or_body(at: int) -> None:
    with pytest.raises(ProtocolError, match="message CRC mismatch"):
        decode([corrupt(GOOD, at)])


def test_messages_before_a_bad_one_come_first_then_the_error() -> None:
    """What the caller receives does not depend on where the bytes were cut."""
    decoder = EventStreamDecoder()
    assert seen(decoder.feed(GOOD + corrupt(GOOD, 9))) == botocore_reads(GOOD)
    with pytest.raises(ProtocolError, match=f"at byte {len(GOOD)}: prelude CRC mismatch"):
        decoder.feed(b"")
    with pytest.raises(ProtocolError, match=f"at byte {len(GOOD)}: prelude CRC"):
        decoder.close()


@pytest.mark.parametrize("left", [1, 11, 12, len(GOOD) - 1])
def test_truncated_stream_at_close(left: int) -> None:
    decoder = EventStreamDecoder()
    assert len(decoder.feed(GOOD + GOOD[:left])) == 1
    with pytest.raises(ProtocolError, match=f"ended inside a message at byte {len(GOOD)}") as e:
        decoder.close()
    assert e.value.data == GOOD[:left]


def test_oversized_declared_length_is_refused_before_buffering() -> None:
    huge = frame(total_length=2**32 - 1)[:12]
    decoder = EventStreamDecoder()
    with pytest.raises(ProtocolError, match=r"total length of 4294967295 bytes, over the limit"):
        decoder.feed(huge)


def test_length_limit_is_configurable() -> None:
    big = frame(payload=b"x" * 1000)
    assert len(decode([big], max_message_length=len(big))) == 1
    with pytest.raises(ProtocolError, match="over the limit of 1015"):
        decode([big], max_message_length=len(big) - 1)


def test_declared_length_too_short_for_the_prelude() -> None:
    with pytest.raises(ProtocolError, match="under the 16"):
        decode([frame(total_length=15)])


def test_headers_longer_than_the_message() -> None:
    lengths = struct.pack("!II", 20, 8)
    data = lengths + struct.pack("!I", zlib.crc32(lengths)) + b"\x00" * 8
    with pytest.raises(ProtocolError, match="8 bytes of headers, more than"):
        decode([data])


@pytest.mark.parametrize(
    ("raw_headers", "problem"),
    [
        (encode_header("x", 10, None), "unknown value type 10"),
        (encode_header("x", 7, "a") + encode_header("x", 7, "b"), "'x' appears twice"),
        (b"\x05ab", "a header name runs past the end"),
        (encode_header("x", 4, 1)[:-1], "header 'x''s value runs past"),
        (encode_header("x", 7, "abc")[:-1], "header 'x''s value runs past"),
        (b"\x01\xff\x00", "a header name is not valid UTF-8"),
        (b"\x01x\x07\x00\x01\xff", "header 'x''s value is not valid UTF-8"),
        (encode_header("x", 8, 2**63 - 1), "timestamp .* out of range"),
    ],
)
def test_malformed_headers(raw_headers: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode([frame(raw_headers=raw_headers)])


def test_error_is_sticky() -> None:
    decoder = EventStreamDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(corrupt(GOOD, 9))
    with pytest.raises(ProtocolError, match="prelude CRC"):
        decoder.feed(GOOD)
