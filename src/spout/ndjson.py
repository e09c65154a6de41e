"""An incremental newline-delimited JSON decoder: bytes in, parsed objects out, no I/O.

Lines end in LF (a CR before it is ignored); blank lines are skipped; a last line without a
line end is parsed at :meth:`NDJSONDecoder.close`. Malformed JSON raises
:class:`spout.ProtocolError` naming the line number and showing the line. A line waiting for
its end is kept as the chunks it came in and joined once (linear time for a long line); one
longer than ``max_event_bytes`` raises :class:`spout.ProtocolError` instead of growing on.

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
from ._limits import DEFAULT_LIMITS, over_limit

__all__ = ["NDJSONDecoder"]


class NDJSONDecoder:
    """Turns the bytes of an NDJSON body into parsed JSON values, one per line."""

    __slots__ = ("_buffer", "_line_number", "_pending", "_pending_size", "error", "max_line_bytes")

    def __init__(self, *, max_line_bytes: int = DEFAULT_LIMITS.max_event_bytes) -> None:
        #: The most bytes one line may hold.
        self.max_line_bytes = max_line_bytes
        self._buffer = b""
        # Chunks of a line with no end yet, joined when it arrives (see the module).
        self._pending: list[bytes] = []
        self._pending_size = 0
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
        if self._buffer or self._pending:
            # (``_buffer`` is the rest after a malformed line: it is read again at once.)
            if not self._buffer and chunk.rfind(b"\n") < 0:
                self._hold(chunk)
                return []
            chunk = b"".join([self._buffer, *self._pending, chunk])
            self._buffer = b""
            self._pending.clear()
            self._pending_size = 0
        end = chunk.rfind(b"\n")
        if end < 0:
            self._hold(chunk)
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
        if end + 1 < len(chunk):
            self._hold(chunk[end + 1 :])
        return values

    def _hold(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._pending_size += len(piece)
        if self._pending_size > self.max_line_bytes:
            start = self._pending[0]
            self._pending.clear()
            self._pending_size = 0
            raise self._too_long(start)

    def _too_long(self, start: bytes) -> ProtocolError:
        """The error for the line now read, past ``max_line_bytes``; ``start`` its first bytes."""
        return ProtocolError(
            over_limit(
                f"line {self._line_number + 1} of the NDJSON stream",
                self.max_line_bytes,
                "max_event_bytes",
            ),
            data=start[:200],
        )

    def close(self) -> list[Any]:
        """End of stream: parses what is left, including a last line with no line end."""
        return self.feed(b"\n") if self._buffer or self._pending else []

    def _parse(self, line: bytes) -> Any:
        if len(line) > self.max_line_bytes:  # whole in one chunk, so never held
            raise self._too_long(line)
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
