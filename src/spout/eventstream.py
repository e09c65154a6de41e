"""An incremental decoder of AWS's binary event-stream framing: bytes in, messages out, no I/O.

This is ``application/vnd.amazon.eventstream``, the body Bedrock's ConverseStream answers with.
Each message is a 12-byte prelude (total length, headers length, both big-endian uint32, and a
CRC32 of those 8 bytes), the headers, the payload, and a CRC32 of everything before it. A header
is a 1-byte name length, the name (UTF-8), a 1-byte value type and the value. The facts follow
botocore's reader (``botocore/eventstream.py``), the reference the tests check against.

Both CRCs are checked, and a message's declared lengths are refused before its bytes are
buffered: the network is not trusted to be honest about sizes. Anything malformed raises
:class:`spout.ProtocolError` naming what is wrong; messages completed before it are returned
first and the error comes on the next call, so what a caller receives does not depend on how
the bytes were split (as :class:`spout.ndjson.NDJSONDecoder` does).

Example::

    decoder = EventStreamDecoder()
    for chunk in byte_chunks:
        for message in decoder.feed(chunk):
            print(message.headers[":event-type"], message.payload)
    decoder.close()
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ._errors import ProtocolError

__all__ = ["MAX_MESSAGE_LENGTH", "EventStreamDecoder", "HeaderValue", "Message"]

#: The largest total length a message may declare, by default (16 MiB). Bedrock's events are
#: small JSON objects; botocore itself refuses payloads over 24 MiB.
MAX_MESSAGE_LENGTH = 16 * 1024 * 1024
#: The format's limit on a message's headers section (botocore's ``_MAX_HEADERS_LENGTH``).
_MAX_HEADERS_LENGTH = 128 * 1024
_PRELUDE_LENGTH = 12
_CRC_LENGTH = 4
_MIN_MESSAGE_LENGTH = _PRELUDE_LENGTH + _CRC_LENGTH

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: A header's value, typed by its wire type: bool (types 0 and 1), int (2 byte, 3 short, 4 int,
#: 5 long), bytes (6 byte array), str (7 string), datetime in UTC (8 timestamp, milliseconds
#: since the epoch on the wire) and UUID (9).
HeaderValue = bool | int | bytes | str | datetime | uuid.UUID

# Fixed-size integer types: wire type -> (struct format, size).
_INTEGERS: dict[int, tuple[str, int]] = {2: ("!b", 1), 3: ("!h", 2), 4: ("!i", 4), 5: ("!q", 8)}


@dataclass(frozen=True)
class Message:
    """One event-stream message: its headers (name -> typed value) and its payload bytes.

    Example::

        message.headers[":message-type"]  # "event" or "exception"
        json.loads(message.payload)
    """

    headers: dict[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""


class EventStreamDecoder:
    """Turns the bytes of an ``application/vnd.amazon.eventstream`` body into :class:`Message`\\ s.

    Call :meth:`feed` with each chunk as it arrives, in order (cut anywhere); call :meth:`close`
    at the end. ``max_message_length`` bounds the total length a message may declare.
    """

    __slots__ = ("_buffer", "_error", "_offset", "_total_length", "max_message_length")

    def __init__(self, *, max_message_length: int = MAX_MESSAGE_LENGTH) -> None:
        self._buffer = bytearray()
        #: The largest total length a message may declare (an LLM sets it from
        #: ``ResponseLimits.max_event_bytes``).
        self.max_message_length = max_message_length
        self._offset = 0  # bytes of the stream consumed before the buffer, for error messages
        self._total_length: int | None = None  # of the message being read, once its prelude is
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[Message]:
        """Decode one chunk; returns the messages it completed, in order.

        Messages before a malformed one are returned first; its error is raised by the next
        call (and every call after: the stream cannot be resynchronised).
        """
        if self._error is not None:
            raise self._error
        self._buffer += data
        messages: list[Message] = []
        try:
            while True:
                message = self._next()
                if message is None:
                    return messages
                messages.append(message)
        except ProtocolError as exc:
            self._error = exc
            if not messages:
                raise
            return messages

    def close(self) -> None:
        """End of stream: raises :class:`spout.ProtocolError` if part of a message is left."""
        if self._error is not None:
            raise self._error
        if self._buffer:
            if self._total_length is None:
                what = f"{len(self._buffer)} of the prelude's {_PRELUDE_LENGTH} bytes"
            else:
                what = f"{len(self._buffer)} of its {self._total_length} bytes"
            self._error = ProtocolError(
                f"the event stream ended inside a message at byte {self._offset}: "
                f"only {what} arrived",
                data=bytes(self._buffer),
            )
            raise self._error

    def _next(self) -> Message | None:
        buffer = self._buffer
        if self._total_length is None:
            if len(buffer) < _PRELUDE_LENGTH:
                return None
            self._total_length = self._check_prelude(bytes(buffer[:_PRELUDE_LENGTH]))
        total = self._total_length
        if len(buffer) < total:
            return None
        frame = bytes(buffer[:total])
        del buffer[:total]
        message = self._parse(frame)
        self._offset += total
        self._total_length = None
        return message

    def _check_prelude(self, prelude: bytes) -> int:
        total, headers_length, crc = struct.unpack("!III", prelude)
        computed = zlib.crc32(prelude[:8])
        if crc != computed:
            raise self._fail(
                f"prelude CRC mismatch (the message says {crc:#010x}, its bytes give "
                f"{computed:#010x})",
                prelude,
            )
        if total > self.max_message_length:
            raise self._fail(
                f"the message declares a total length of {total} bytes, over the limit of "
                f"{self.max_message_length} (ResponseLimits.max_event_bytes, for an LLM)",
                prelude,
            )
        if total < _MIN_MESSAGE_LENGTH:
            raise self._fail(
                f"the message declares a total length of {total} bytes, under the "
                f"{_MIN_MESSAGE_LENGTH} its prelude and CRC take",
                prelude,
            )
        if headers_length > _MAX_HEADERS_LENGTH:
            raise self._fail(
                f"the message declares {headers_length} bytes of headers, over the format's "
                f"limit of {_MAX_HEADERS_LENGTH}",
                prelude,
            )
        if headers_length > total - _MIN_MESSAGE_LENGTH:
            raise self._fail(
                f"the message declares {headers_length} bytes of headers, more than its total "
                f"length of {total} leaves room for",
                prelude,
            )
        return int(total)

    def _parse(self, frame: bytes) -> Message:
        (crc,) = struct.unpack("!I", frame[-_CRC_LENGTH:])
        computed = zlib.crc32(frame[:-_CRC_LENGTH])
        if crc != computed:
            raise self._fail(
                f"message CRC mismatch (the message says {crc:#010x}, its bytes give "
                f"{computed:#010x})",
                frame,
            )
        (headers_length,) = struct.unpack("!I", frame[4:8])
        headers_end = _PRELUDE_LENGTH + headers_length
        headers = self._parse_headers(frame[_PRELUDE_LENGTH:headers_end], frame)
        return Message(headers=headers, payload=frame[headers_end:-_CRC_LENGTH])

    def _parse_headers(self, data: bytes, frame: bytes) -> dict[str, HeaderValue]:
        headers: dict[str, HeaderValue] = {}
        at = 0

        def take(size: int, what: str) -> bytes:
            nonlocal at
            if at + size > len(data):
                raise self._fail(
                    f"{what} runs past the end of the headers ({size} bytes at offset {at} of "
                    f"{len(data)})",
                    frame,
                )
            chunk = data[at : at + size]
            at += size
            return chunk

        def text(raw: bytes, what: str) -> str:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail(f"{what} is not valid UTF-8: {raw[:100]!r}", frame) from None

        while at < len(data):
            name = text(
                take(take(1, "a header name's length")[0], "a header name"), "a header name"
            )
            kind = take(1, f"header {name!r}'s type")[0]
            value: HeaderValue
            if kind == 0:
                value = True
            elif kind == 1:
                value = False
            elif kind in _INTEGERS:
                fmt, size = _INTEGERS[kind]
                (value,) = struct.unpack(fmt, take(size, f"header {name!r}'s value"))
            elif kind in (6, 7):
                (length,) = struct.unpack("!H", take(2, f"header {name!r}'s value length"))
                raw = take(length, f"header {name!r}'s value")
                value = raw if kind == 6 else text(raw, f"header {name!r}'s value")
            elif kind == 8:
                (millis,) = struct.unpack("!q", take(8, f"header {name!r}'s value"))
                try:
                    value = _EPOCH + timedelta(milliseconds=millis)
                except OverflowError:
                    raise self._fail(
                        f"header {name!r}'s timestamp {millis} ms is out of range", frame
                    ) from None
            elif kind == 9:
                value = uuid.UUID(bytes=take(16, f"header {name!r}'s value"))
            else:
                raise self._fail(f"header {name!r} has unknown value type {kind}", frame)
            if name in headers:
                raise self._fail(f"header {name!r} appears twice", frame)
            headers[name] = value
        return headers

    def _fail(self, problem: str, data: bytes) -> ProtocolError:
        return ProtocolError(
            f"malformed event-stream message at byte {self._offset}: {problem}", data=data
        )
