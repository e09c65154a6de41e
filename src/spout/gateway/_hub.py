"""Where a streamed response's frames live while it runs, so any number of readers can follow
it, and a reader that lost its connection can come back and resume.

A stream is a numbered log of frames (1, 2, 3...) written by the one task that reads the
upstream (the *producer*), and read by *followers*: the client that asked, a client that
resumes with ``Last-Event-ID``, a second reader. The log is bounded (the oldest frames go
first; a reader asking for them gets :class:`EventsExpired`) in frames and in bytes, and a
finished stream is forgotten after a retention time.

The hub also decides when the upstream must stop: on an explicit cancel, or when no reader
has been left for the resume window. It tells the producer through the callback the producer
registered (:meth:`Hub.on_stop`); :class:`HubBase` holds that, and the settings, for both
hubs.

:class:`MemoryHub` keeps all of this in one process. The Redis hub (``_redis_hub``) keeps it
in Redis so that several replicas act as one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from itertools import islice
from typing import Generic, Protocol, TypeVar

__all__ = [
    "EventsExpired",
    "Hub",
    "HubBase",
    "MemoryHub",
    "Producer",
    "StopReason",
    "StreamNotFound",
]

#: Bytes of frames a stream keeps by default (the oldest go first beyond it).
MAX_STREAM_BYTES = 8 * 1024 * 1024
#: Bytes of frames all the streams of a :class:`MemoryHub` keep together by default.
MAX_HUB_BYTES = 256 * 1024 * 1024

#: Why the hub asks a producer to stop: "cancelled" (someone asked), "abandoned" (no reader
#: came back within the resume window).
StopReason = str


class StreamNotFound(LookupError):
    """No stream by that id here (never was, or expired)."""


class EventsExpired(LookupError):
    """The frames a reader asked for are no longer kept (the log is bounded)."""

    @classmethod
    def before(cls, stream_id: str, first: int) -> EventsExpired:
        """The error for a reader that asked for frames before ``first``, the oldest kept."""
        return cls(f"stream {stream_id}: events before {first} are no longer kept")


class Hub(Protocol):
    """What the gateway needs from a hub; see :class:`MemoryHub` for the semantics."""

    async def create(self, stream_id: str, meta: dict[str, str]) -> None: ...

    async def append(self, stream_id: str, frames: Sequence[bytes]) -> None: ...

    async def finish(self, stream_id: str, status: str) -> None: ...

    async def meta(self, stream_id: str) -> dict[str, str] | None: ...

    def follow(
        self, stream_id: str, after: int = 0, *, creator: bool = False
    ) -> AsyncIterator[tuple[int, bytes]]: ...

    def follow_batches(
        self, stream_id: str, after: int = 0, *, creator: bool = False
    ) -> AsyncGenerator[list[tuple[int, bytes]], None]: ...

    async def cancel(self, stream_id: str) -> bool: ...

    def on_stop(self, stream_id: str, callback: Callable[[StopReason], None]) -> None: ...

    async def active(self) -> int: ...

    async def aclose(self) -> None: ...


class Producer:
    """What a hub keeps about a stream whose producer runs here, until it finishes: how to
    stop it, and the resume window's timer while no reader is left."""

    __slots__ = ("on_stop", "timer")

    def __init__(self) -> None:
        self.on_stop: Callable[[StopReason], None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


P = TypeVar("P", bound=Producer)


class HubBase(Generic[P]):
    """What the hubs share beside their storage: the settings, the running streams produced
    here (``P``, a :class:`Producer`), when they must stop, and reading frames one at a time.

    A subclass stores the frames (:meth:`follow_batches` and the rest of :class:`Hub`); it
    adds a stream's ``P`` to ``_producers`` when it creates it, and tells the base when
    readers come and go (:meth:`_reader_joined`, :meth:`_no_reader_left`).

    ``resume_window``: seconds a running stream with no reader is kept going (0: stopped as
    soon as its last reader leaves). ``retention``: seconds a finished stream's frames stay.
    ``max_events``: frames kept per stream. ``max_bytes``: bytes of frames kept per stream
    (the newest frame is always kept, whatever its size).
    """

    def __init__(
        self,
        *,
        resume_window: float = 10.0,
        retention: float = 60.0,
        max_events: int = 20_000,
        max_bytes: int = MAX_STREAM_BYTES,
    ) -> None:
        self.resume_window = resume_window
        self.retention = retention
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._producers: dict[str, P] = {}

    def follow_batches(
        self, stream_id: str, after: int = 0, *, creator: bool = False
    ) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        raise NotImplementedError

    async def follow(
        self, stream_id: str, after: int = 0, *, creator: bool = False
    ) -> AsyncIterator[tuple[int, bytes]]:
        """The frames numbered after ``after``, then each new one as it is written, until the
        stream ends. ``creator``: this is the creator's own follow (already counted)."""
        batches = self.follow_batches(stream_id, after, creator=creator)
        try:
            async for batch in batches:
                for item in batch:
                    yield item
        finally:
            await batches.aclose()

    def on_stop(self, stream_id: str, callback: Callable[[StopReason], None]) -> None:
        """The producer's hook: called once when the stream must stop, with the reason."""
        producer = self._producers.get(stream_id)
        if producer is not None:
            producer.on_stop = callback

    async def active(self) -> int:
        """The running streams produced here."""
        return len(self._producers)

    def _finished(self, stream_id: str) -> P | None:
        """Forget a stream's producer as its stream ends (None: not running here)."""
        producer = self._producers.pop(stream_id, None)
        if producer is not None:
            producer.on_stop = None
            producer.cancel_timer()
        return producer

    def _forget_producers(self) -> None:
        """Closing: no timer may fire after, and no producer is told to stop."""
        for producer in self._producers.values():
            producer.cancel_timer()
        self._producers.clear()

    def _reader_joined(self, stream_id: str) -> None:
        """A reader came (back): the resume window, if it runs, stops."""
        producer = self._producers.get(stream_id)
        if producer is not None:
            producer.cancel_timer()

    def _no_reader_left(self, stream_id: str, *, window_passed: bool = False) -> None:
        """With no reader left: stop now (no resume window, or it passed), or start the window."""
        producer = self._producers.get(stream_id)
        if producer is None:
            return
        if window_passed or self.resume_window <= 0:
            self._stop(stream_id, "abandoned")
        elif producer.timer is None:
            producer.timer = asyncio.get_running_loop().call_later(
                self.resume_window, self._window_passed, stream_id
            )

    def _window_passed(self, stream_id: str) -> None:
        """The resume window ran out, and no reader came back meanwhile."""
        self._no_reader_left(stream_id, window_passed=True)

    def _stop(self, stream_id: str, reason: StopReason) -> None:
        """Tell the stream's producer to stop, once."""
        producer = self._producers.get(stream_id)
        if producer is None:
            return
        producer.cancel_timer()
        callback, producer.on_stop = producer.on_stop, None
        if callback is not None:
            callback(reason)


class Sink(Protocol):
    """A reader the hub calls as frames come, in the producer's own step: no task wakes
    for it, no follower generator. One a stream, the creator's (:meth:`MemoryHub.attach`)."""

    def frames(self, first: int, frames: Sequence[bytes]) -> bool:
        """Take ``frames`` (numbered from ``first``); False: not taken, and detach me (the
        reader goes on by :meth:`Hub.follow_batches` from the frames it did take)."""
        ...

    def ended(self) -> None:
        """The stream ended: every frame was given (the hub then forgets the sink)."""
        ...


class _Log:
    __slots__ = (
        "finished_at",
        "first",
        "frames",
        "meta",
        "next",
        "readers",
        "sink",
        "size",
        "status",
        "waiters",
    )

    def __init__(self, meta: dict[str, str]) -> None:
        self.meta = meta
        self.frames: deque[bytes] = deque()
        self.size = 0  # the bytes of frames
        self.first = 1  # the number of frames[0]
        self.next = 1  # the number the next frame gets
        self.status = "running"
        self.readers = 1  # the creator, until it follows and leaves
        # The followers waiting for the next change, each on a future of its own: a new
        # asyncio.Event per append (what this was) is an object and its set-up per token.
        self.waiters: list[asyncio.Future[None]] = []
        self.sink: Sink | None = None
        self.finished_at: float | None = None

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def changed(self) -> None:
        """Returns at the next :meth:`wake`."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter in self.waiters:  # not left behind for wake to find
                self.waiters.remove(waiter)
            raise


class MemoryHub(HubBase[Producer]):
    """The hub of one process; the settings are :class:`HubBase`'s, and ``max_total_bytes``:
    the bytes of frames all streams keep together. Beyond it, finished streams are forgotten
    first (the longest finished first, before their retention ends), then the oldest frames
    of the stream that grows are dropped, as past ``max_bytes``."""

    def __init__(
        self,
        *,
        resume_window: float = 10.0,
        retention: float = 60.0,
        max_events: int = 20_000,
        max_bytes: int = MAX_STREAM_BYTES,
        max_total_bytes: int = MAX_HUB_BYTES,
    ) -> None:
        super().__init__(
            resume_window=resume_window,
            retention=retention,
            max_events=max_events,
            max_bytes=max_bytes,
        )
        self.max_total_bytes = max_total_bytes
        self._logs: dict[str, _Log] = {}
        self._size = 0  # the bytes of frames of all logs
        self._ended: dict[str, None] = {}  # finished streams, in the order they finished
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def held_bytes(self) -> int:
        """The bytes of frames all streams keep now (at most ``max_total_bytes``, and one
        frame more per stream)."""
        return self._size

    async def create(self, stream_id: str, meta: dict[str, str]) -> None:
        """A new running stream; its creator counts as a reader until its first follow ends."""
        self._expire()
        if stream_id in self._logs:
            raise ValueError(f"stream {stream_id} exists")
        self._logs[stream_id] = _Log(meta)
        self._producers[stream_id] = Producer()

    async def append(self, stream_id: str, frames: Sequence[bytes]) -> None:
        log = self._logs.get(stream_id)
        if log is None or not frames:
            return
        log.frames.extend(frames)
        log.next += len(frames)
        added = sum(map(len, frames))
        log.size += added
        self._size += added
        if len(log.frames) > self.max_events or log.size > self.max_bytes:  # rare: no call
            self._trim(log, self.max_events, self.max_bytes)
        while self._size > self.max_total_bytes and self._ended:
            self._drop(next(iter(self._ended)))
        if self._size > self.max_total_bytes:
            self._trim(log, self.max_events, max(0, log.size - (self._size - self.max_total_bytes)))
        sink = log.sink
        if sink is not None and not sink.frames(log.next - len(frames), frames):
            log.sink = None
        if log.waiters:
            log.wake()

    def _trim(self, log: _Log, events: int, size: int) -> None:
        """Drop ``log``'s oldest frames to keep at most ``events`` of them and ``size`` bytes,
        but never its newest frame."""
        while len(log.frames) > 1 and (len(log.frames) > events or log.size > size):
            dropped = len(log.frames.popleft())
            log.size -= dropped
            self._size -= dropped
            log.first += 1

    def _drop(self, stream_id: str) -> None:
        """Forget a stream and its frames."""
        log = self._logs.pop(stream_id, None)
        self._ended.pop(stream_id, None)
        if log is not None:
            self._size -= log.size
            log.frames.clear()
            log.size = 0
            log.first = log.next  # a reader still on it was behind: EventsExpired

    async def finish(self, stream_id: str, status: str) -> None:
        log = self._logs.get(stream_id)
        if log is None:
            return
        log.status = status
        log.finished_at = time.monotonic()
        self._ended[stream_id] = None
        self._finished(stream_id)
        if self._sweeper is None:
            # Forgotten when its retention ends, even if no request comes to look.
            self._sweeper = asyncio.get_running_loop().call_later(self.retention, self._sweep)
        sink, log.sink = log.sink, None
        if sink is not None:
            sink.ended()
        log.wake()

    def _sweep(self) -> None:
        """Forget the streams whose retention ended; come back for the next one."""
        self._sweeper = None
        self._expire()
        if self._ended:
            log = self._logs[next(iter(self._ended))]
            assert log.finished_at is not None
            wait = max(0.0, log.finished_at + self.retention - time.monotonic()) + 0.01
            self._sweeper = asyncio.get_running_loop().call_later(wait, self._sweep)

    async def meta(self, stream_id: str) -> dict[str, str] | None:
        self._expire()
        log = self._logs.get(stream_id)
        if log is None:
            return None
        return {
            **log.meta,
            "status": log.status,
            "events": str(log.next - 1),
            "readers": str(log.readers),
        }

    async def follow_batches(
        self, stream_id: str, after: int = 0, *, creator: bool = False
    ) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        """:meth:`follow`, a list at a time: every frame there is when the reader asks, so a
        reader that fell behind catches up in one write rather than one per frame."""
        self._expire()
        log = self._logs.get(stream_id)
        if log is None:
            raise StreamNotFound(stream_id)
        if not creator:
            log.readers += 1
            self._reader_joined(stream_id)
        try:
            position = max(after + 1, 1)
            while True:
                if position < log.first:
                    raise EventsExpired.before(stream_id, log.first)
                if position < log.next:
                    # islice, not an index a frame: indexing a deque far from its ends walks
                    # it, so a reader catching up on 20,000 frames took 20,000 walks.
                    frames = islice(log.frames, position - log.first, None)
                    batch = list(zip(range(position, log.next), frames, strict=True))
                    position = log.next
                    yield batch
                    continue
                if log.status != "running":
                    return
                await log.changed()
        finally:
            log.readers -= 1
            if log.readers == 0:
                self._no_reader_left(stream_id)

    def attach(self, stream_id: str, sink: Sink) -> bool:
        """The creator's follow as a :class:`Sink`: the frames so far at once, then each new
        one as it is appended, then :meth:`Sink.ended`. The sink holds the creator's count as
        a reader (taken at :meth:`create`) until :meth:`detach`, or until it hands over to
        :meth:`follow_batches` (``creator=True``), which then holds it. False (nothing done):
        the stream is unknown, has a sink, or lost its first frames; follow it instead."""
        log = self._logs.get(stream_id)
        if log is None or log.sink is not None or log.first != 1:
            return False
        if log.frames and not sink.frames(1, list(log.frames)):
            return True
        if log.status != "running":
            sink.ended()
        else:
            log.sink = sink
        return True

    def detach(self, stream_id: str, sink: Sink) -> None:
        """The creator's sink leaves (its client went, or it took the end): it stops being
        called and no longer counts as a reader."""
        log = self._logs.get(stream_id)
        if log is None:
            return
        if log.sink is sink:
            log.sink = None
        log.readers -= 1
        if log.readers == 0:
            self._no_reader_left(stream_id)

    async def cancel(self, stream_id: str) -> bool:
        """Stop a running stream now; False if it is not running (or unknown)."""
        if stream_id not in self._producers:
            return False
        self._stop(stream_id, "cancelled")
        return True

    async def aclose(self) -> None:
        self._forget_producers()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._logs.clear()
        self._ended.clear()
        self._size = 0

    def _expire(self) -> None:
        # The finished streams in the order they finished: the expired ones come first.
        # Looked at from the oldest until one is not expired: every stream created, followed
        # or asked about calls this, so it must not copy the (60 s of them) list each time.
        now = time.monotonic()
        ended = self._ended
        while ended:
            stream_id = next(iter(ended))
            finished_at = self._logs[stream_id].finished_at
            assert finished_at is not None
            if now - finished_at <= self.retention:
                break
            self._drop(stream_id)
