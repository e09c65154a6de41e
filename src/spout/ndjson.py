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

    __slots__ = ("_buffer", "_line_number", "error")

    def __init__(self) -> None:
        self._buffer = b""
        self._line_number = 0
        #: The error of a malformed line that followed the values the last feed returned: a
        #: caller that wants it at once (not on the next feed) raises it after those values.
        self.error: ProtocolError | None = None

    def feed(self, chunk: bytes) -> list[Any]:
        """Decode one chunk; returns the values of the lines it completed, in order.

        Values before a malformed line are returned first; the error is raised by the next
        call, so what a caller receives does not depend on how the bytes were split.
        """
        self.error = None
        if self._buffer:
            chunk = self._buffer + chunk
        end = chunk.rfind(b"\n")
        if end < 0:
            self._buffer = chunk
            return []
        values: list[Any] = []
        start = 0
        while start <= end:
            stop = chunk.index(b"\n", start)
            try:
                value = self._parse(chunk[start:stop])
            except ProtocolError as exc:
                if not values:
                    raise
                self._buffer = chunk[start:]  # raise when the caller comes back for more
                self.error = exc
                return values
            if value is not _BLANK:
                values.append(value)
            start = stop + 1
        self._buffer = chunk[end + 1 :]
        return values

    def close(self) -> list[Any]:
        """End of stream: parses what is left, including a last line with no line end."""
        return self.feed(b"\n") if self._buffer else []

    def _parse(self, line: bytes) -> Any:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip(b" \t"):  # only JSON's whitespace makes a line blank
            self._line_number += 1
            return _BLANK
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            shown = line if len(line) <= 200 else line[:200] + b"..."
            raise ProtocolError(
                f"line {self._line_number + 1} of the NDJSON stream is not valid JSON ({exc}): "
                f"{shown!r}",
                data=line,
            ) from None
        self._line_number += 1
        return value


_BLANK: Any = object()
