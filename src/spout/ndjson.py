"""An incremental newline-delimited JSON decoder: bytes in, parsed objects out, no I/O.

Lines end in LF (a CR before it is ignored); blank lines are skipped; a last line without a
line end is parsed at :meth:`NDJSONDecoder.close`. Malformed JSON raises
:class:`spout.ProtocolError` naming the line number and showing the line.

Example::

    decoder = NDJSONDecoder()
    for chunk in byte_chunks:
        for obj in decoder.feed(chunk):
            print(obj["message"]["content"])
    decoder.close()
"""

from __future__ import annotations

from typing import Any

import orjson

from ._errors import ProtocolError

__all__ = ["NDJSONDecoder"]


class NDJSONDecoder:
    """Turns the bytes of an NDJSON body into parsed JSON values, one per line."""

    __slots__ = ("_buffer", "_line_number")

    def __init__(self) -> None:
        self._buffer = b""
        self._line_number = 0

    def feed(self, chunk: bytes) -> list[Any]:
        """Decode one chunk; returns the values of the lines it completed, in order."""
        if self._buffer:
            chunk = self._buffer + chunk
        end = chunk.rfind(b"\n")
        if end < 0:
            self._buffer = chunk
            return []
        self._buffer = chunk[end + 1 :]
        return [
            value
            for value in map(self._parse, chunk[:end].split(b"\n"))
            if value is not _BLANK
        ]

    def close(self) -> list[Any]:
        """End of stream: parses a last line that had no line end."""
        rest, self._buffer = self._buffer, b""
        value = self._parse(rest)
        return [] if value is _BLANK else [value]

    def _parse(self, line: bytes) -> Any:
        self._line_number += 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.isspace():
            return _BLANK
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            shown = line if len(line) <= 200 else line[:200] + b"..."
            raise ProtocolError(
                f"line {self._line_number} of the NDJSON stream is not valid JSON ({exc}): "
                f"{shown!r}",
                data=line,
            ) from None


_BLANK: Any = object()
