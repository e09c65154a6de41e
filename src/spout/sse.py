"""An incremental Server-Sent Events decoder: bytes in, events out, no I/O.

It follows the WHATWG HTML standard's "interpreting an event stream" to the letter: lines end in
CR, LF or CRLF (also when a CRLF is split across two chunks); one leading byte order mark is
stripped; lines starting with ``:`` are comments; ``data`` lines join with ``\\n``; an ``id``
containing NUL is ignored and the last event id persists; ``retry`` takes ASCII digits only; a
block without data is not dispatched; an unterminated event at the end of the stream is
discarded. UTF-8 sequences split across chunks are reassembled, and invalid UTF-8 becomes U+FFFD
as the standard says (``raw`` keeps the exact bytes).

The network is not trusted: a line waiting for its end is kept as a list of the chunks it came
in, joined once when the end arrives, so a long line costs linear time; and one line, or one
event's ``data`` lines together, longer than ``max_event_bytes`` raises
:class:`spout.ProtocolError` instead of growing without end.

Example::

    decoder = SSEDecoder()
    for chunk in byte_chunks:
        for event in decoder.feed(chunk):
            print(event.event, event.data)
    decoder.close()
"""

from __future__ import annotations

from ._errors import ProtocolError
from ._limits import DEFAULT_LIMITS, over_limit

__all__ = ["SSEDecoder", "ServerSentEvent"]

#: How many distinct ``event`` names one decoder keeps decoded (a real stream has a few).
_NAMES_KEPT = 64

_BOM = b"\xef\xbb\xbf"


class ServerSentEvent:
    """One dispatched event.

    ``event`` is the type (``"message"`` unless the stream named one), ``data`` the text, ``id``
    the last event id seen so far in the stream, ``retry`` the reconnection time in
    milliseconds if this event's block set one, and ``raw`` the data as the exact bytes sent.
    """

    __slots__ = ("_data", "event", "id", "raw", "retry")

    def __init__(
        self,
        data: str | bytes = b"",
        event: str = "message",
        id: str = "",
        retry: int | None = None,
    ) -> None:
        if type(data) is bytes:  # the decoder's case, checked first: it is the hot path
            self._data: str | None = None
            self.raw = data
        else:
            self._data = str(data)
            self.raw = self._data.encode()
        self.event = event
        self.id = id
        self.retry = retry

    @property
    def data(self) -> str:
        """The data as text (invalid UTF-8 replaced by U+FFFD)."""
        if self._data is None:
            self._data = self.raw.decode("utf-8", "replace")
        return self._data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return (self.event, self.raw, self.id, self.retry) == (
            other.event,
            other.raw,
            other.id,
            other.retry,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = [f"event={self.event!r}", f"data={self.data!r}"]
        if self.id:
            fields.append(f"id={self.id!r}")
        if self.retry is not None:
            fields.append(f"retry={self.retry}")
        return f"ServerSentEvent({', '.join(fields)})"


class SSEDecoder:
    """Turns the bytes of an ``text/event-stream`` body into :class:`ServerSentEvent` objects.

    Call :meth:`feed` with each chunk as it arrives, in order; call :meth:`close` at the end.
    ``max_event_bytes`` bounds one line, and one event's lines together (see the module).
    """

    __slots__ = (
        "_bom_checked",
        "_clean",
        "_data",
        "_event",
        "_event_size",
        "_fields",
        "_id",
        "_names",
        "_pending",
        "_pending_size",
        "_retry",
        "_skip_lf",
        "error",
        "last_event_id",
        "max_event_bytes",
        "retry",
    )

    def __init__(self, *, max_event_bytes: int = DEFAULT_LIMITS.max_event_bytes) -> None:
        #: The most bytes one line, or one event's lines together, may hold.
        self.max_event_bytes = max_event_bytes
        # The start of a line whose end has not arrived, as the chunks it came in (joined
        # only when its end arrives: joining on every chunk would make a long line quadratic).
        self._pending: list[bytes] = []
        self._pending_size = 0
        # Bytes of lines read since the last blank line (an event's lines, roughly, to a chunk).
        self._event_size = 0
        self._bom_checked = False
        self._skip_lf = False
        self._data: list[bytes] = []
        self._event = ""
        self._retry: int | None = None
        self._id = ""
        self._fields = False  # whether the block being read set id or retry
        self._names: dict[bytes, str] = {}  # event names seen, decoded once
        #: A limit passed after events the last :meth:`feed` returned (raised by the next
        #: call): a caller that wants it at once raises it after those events, as with
        #: :attr:`spout.ndjson.NDJSONDecoder.error`.
        self.error: ProtocolError | None = None
        # True only when nothing is held or half read (no line start, no open block, no CR
        # waiting for its LF, BOM checked): then a chunk may take :meth:`lone_data`'s path.
        self._clean = False
        #: The last event id, as the standard's event source keeps it across events.
        self.last_event_id = ""
        #: The reconnection time in milliseconds, as last set by a ``retry`` field.
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one chunk; returns the events it completed, in order.

        Raises :class:`spout.ProtocolError` when a line or an event grows past
        ``max_event_bytes``; when the chunk completed events before that, they are returned
        first and the error is raised by the next :meth:`feed` or :meth:`close`.
        """
        if self.error is not None:
            raise self.error
        self._clean = False  # until the end below finds the state idle again
        pending = self._pending
        if pending:
            if self._bom_checked and chunk.rfind(b"\n") < 0 and chunk.rfind(b"\r") < 0:
                self._hold(chunk)  # still no line end: only the new bytes were scanned
                return []
            pending.append(chunk)
            chunk = b"".join(pending)
            pending.clear()
            self._pending_size = 0
        if not self._bom_checked:
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._hold(chunk)  # could still be the start of a BOM
                return []
            self._bom_checked = True
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if self._skip_lf:
            if not chunk:
                return []
            self._skip_lf = False
            if chunk[0] == 10:  # the LF of a CRLF split across chunks
                chunk = chunk[1:]
        # Only complete lines are interpreted; the tail waits for its line end.
        end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if end < 0:
            self._hold(chunk)
            return []
        tail = chunk[end + 1 :] if end + 1 < len(chunk) else None
        if tail is None and chunk[end] == 13:
            self._skip_lf = True
        events: list[ServerSentEvent] = []
        data = self._data
        names = self._names
        try:
            for line in chunk[: end + 1].splitlines():
                if line:
                    if line.startswith(b"data: "):  # the common cases first
                        data.append(line[6:])
                    elif line.startswith(b"event: "):
                        name = line[7:]
                        event = names.get(name)
                        if event is None:
                            event = name.decode("utf-8", "replace")
                            if len(names) < _NAMES_KEPT:  # a server making up names gets no more
                                names[name] = event
                        self._event = event
                    elif line.startswith(b"data:"):
                        data.append(line[5:])
                    elif line[0] != 58:  # ':' starts a comment
                        self._field(line)
                else:
                    if data:
                        payload = data[0] if len(data) == 1 else b"\n".join(data)
                        if len(payload) > self.max_event_bytes:  # even when whole in one chunk
                            self._too_long("an event (its data lines together)")
                        events.append(
                            ServerSentEvent(
                                payload, self._event or "message", self._id, self._retry
                            )
                        )
                        data.clear()
                    self._event = ""
                    if self._fields:
                        self._fields = False
                        self.last_event_id = self._id
                        self._retry = None
            if tail is not None:
                self._hold(tail)  # after the lines before it: their events come first
            if data:
                # An event still open: its lines count against the limit, across chunks.
                self._event_size += end + 1
                if self._event_size + self._pending_size > self.max_event_bytes:
                    self._too_long("an event (its data lines together)")
            else:
                self._event_size = 0
                self._clean = not (self._pending or self._skip_lf or self._event or self._fields)
        except ProtocolError as exc:
            if not events:
                raise
            self.error = exc  # the events before it are not lost
        return events

    def lone_data(self, chunk: bytes) -> bytes | None:
        """The data of ``chunk`` when it is exactly one whole event of one data line,
        ``data: ...\\n\\n`` (or ``data:...``), and nothing is held from the chunks before;
        None otherwise, and then nothing was consumed: call :meth:`feed` with it.

        A server streaming tokens mostly sends one such event per read, and a caller that
        needs only the data (the chat completions parser) skips the line splitting and the
        :class:`ServerSentEvent` with it. What it returns is the ``raw`` of the one event
        :meth:`feed` would return for the chunk (of type ``"message"``, with id
        :attr:`last_event_id` and no retry), and the decoder is left as :meth:`feed` would
        leave it: as it was. An event longer than ``max_event_bytes`` is not taken (:meth:`feed`
        raises for it). (:meth:`feed` does not call it: a chunk it does not take would then be
        looked at twice.)
        """
        n = len(chunk) - 2
        if (
            self._clean
            and 5 <= n <= self.max_event_bytes
            and chunk[-1] == 10
            and chunk[n] == 10
            and chunk.startswith(b"data:")
        ):
            raw = chunk[6:n] if chunk[5] == 32 else chunk[5:n]
            if 10 not in raw and 13 not in raw:
                return raw
        return None

    def _hold(self, piece: bytes) -> None:
        """Keep the start of a line until its end arrives, within ``max_event_bytes``."""
        self._pending.append(piece)
        self._pending_size += len(piece)
        if self._pending_size + (self._event_size if self._data else 0) > self.max_event_bytes:
            self._too_long("a line" if not self._data else "an event (its data lines together)")

    def _too_long(self, what: str) -> None:
        start = (self._pending[0] if self._pending else b"".join(self._data[:1]))[:200]
        self.close()  # what was held is dropped: the stream cannot go on
        raise ProtocolError(
            over_limit(
                f"{what} of the Server-Sent Events stream", self.max_event_bytes, "max_event_bytes"
            ),
            data=start,
        )

    def _field(self, line: bytes) -> None:
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
                self._fields = True
        elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
            self.retry = self._retry = int(value)
            self._fields = True
        # Any other field name is ignored, as the standard says.

    def close(self) -> list[ServerSentEvent]:
        """End of stream: an event not yet terminated by a blank line is discarded."""
        error, self.error = self.error, None
        if error is not None:
            raise error
        self._pending.clear()
        self._pending_size = 0
        self._event_size = 0
        self._data.clear()
        self._event = ""
        self._retry = None
        self._id = self.last_event_id
        self._fields = False
        self._skip_lf = False
        return []
