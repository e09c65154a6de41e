"""Build the Bedrock transcripts (binary event-stream bodies) from their JSON sources.

Each ``tests/fixtures/wire/bedrock/<case>.frames.json`` lists a ConverseStream body's messages;
this writes ``<case>.eventstream``, the bytes Bedrock would send, framed with struct and zlib
as the format says (a 12-byte prelude of total length, headers length and their CRC32; the
headers; the JSON payload; a CRC32 of all before it). Every body is read back with botocore's
own parser (``botocore.eventstream.EventStreamBuffer``) to check the framing is AWS's.

Run: python scripts/bedrock_wire.py           (write the bodies)
     python scripts/bedrock_wire.py --check   (fail if a body is not what its source builds)

A source is ``{"frames": [...], "notes": ...}``; a frame is ``{"event": "<event type>",
"payload": {...}}`` or ``{"exception": "<exception type>", "payload": {...}}``. The headers
are those Bedrock sends, in its order: ``:event-type`` (or ``:exception-type``),
``:content-type`` and ``:message-type``, each a string header (type 7).
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "wire" / "bedrock"

__all__ = ["build", "frame", "header", "message"]


def header(name: str, value: str) -> bytes:
    """One string header: name length, name, type 7, value length (2 bytes), value."""
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack("!B", len(raw_name))
        + raw_name
        + struct.pack("!BH", 7, len(raw_value))
        + raw_value
    )


def frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message with these string headers and this payload."""
    encoded = b"".join(header(name, value) for name, value in headers)
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack("!I", zlib.crc32(body))


def message(spec: dict[str, Any]) -> bytes:
    """The message a source's frame describes; the payload as compact JSON in UTF-8, as
    AWS's serializers write it."""
    payload = json.dumps(spec["payload"], separators=(",", ":"), ensure_ascii=False).encode()
    if "event" in spec:
        headers = [(":event-type", spec["event"]), (":message-type", "event")]
    else:
        headers = [(":exception-type", spec["exception"]), (":message-type", "exception")]
    headers.insert(1, (":content-type", "application/json"))
    return frame(headers, payload)


def build(source: dict[str, Any]) -> bytes:
    """The whole body a source describes."""
    return b"".join(message(spec) for spec in source["frames"])


def botocore_reads(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The messages botocore's own parser finds in ``body`` (headers and payload)."""
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [(dict(m.headers), m.payload) for m in buffer]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for source_path in sorted(FOLDER.glob("*.frames.json")):
        source = json.loads(source_path.read_text())
        body = build(source)
        read = botocore_reads(body)
        assert len(read) == len(source["frames"]), source_path.name
        for (headers, payload), spec in zip(read, source["frames"], strict=True):
            assert headers[":message-type"] in ("event", "exception")
            assert json.loads(payload) == spec["payload"], source_path.name
        target = source_path.with_name(source_path.name.replace(".frames.json", ".eventstream"))
        if check:
            if not target.exists() or target.read_bytes() != body:
                stale.append(target.name)
        else:
            target.write_bytes(body)
    if stale:
        print("stale, run python scripts/bedrock_wire.py:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
