"""The hub in Redis, so that several gateway replicas act as one.

Same protocol and semantics as :class:`~spout.gateway._hub.MemoryHub`; what changes is where
things live and how replicas tell each other:

* **Frames** are entries of a Redis Stream, ``spout:stream:{id}:frames``, whose entry ids
  *are* the frame numbers: frame N is entry ``N-0``. Any replica reads "the frames after N"
  with ``XREAD ... N-0`` (replay, then ``BLOCK`` to follow live), and every replica sees the
  same numbers. The log is trimmed exactly with ``MINID`` to the last ``max_events`` frames,
  and to the last ``max_bytes`` of frames (the owner keeps each frame's size); a gap
  between the number a reader expects and the first entry it gets means the frames it
  asked for were trimmed: :class:`EventsExpired`. The end of a stream is one more entry,
  ``N-1`` after the last frame N, carrying the final status, so followers blocked in
  ``XREAD`` on any replica see it at once.
* **Meta and status** are a hash, ``spout:stream:{id}:meta``, which also names the replica
  that runs the producer (its *owner*).
* **Readers** are a sorted set, ``spout:stream:{id}:readers``: one member per follower on
  any replica, scored with the time it is good until. Each replica refreshes its own
  followers every ``heartbeat`` seconds, so a replica that dies loses its readers after a
  few heartbeats, without anyone cleaning up after it. Times are Redis's clock (each replica
  measures its offset to ``TIME``), so replicas with skewed clocks still agree.
* **Telling the owner**: each replica subscribes to its own channel,
  ``spout:replica:{replica id}``. A reader leaving or joining, and an explicit cancel, are
  published to the owner's channel, so the owner stops its producer at once (or starts the
  resume window). Pub/sub messages can be lost (a dropped connection), so the owner also
  looks every ``heartbeat`` seconds at each running stream's reader count and cancel flag.
* **Expiry**: a running stream's keys carry a safety TTL, refreshed by the owner, so that
  the keys of a replica that died go away; a finished stream's keys expire ``retention``
  seconds after its end.

:meth:`RedisHub.active` counts the streams this replica is producing: summed over replicas
(as Prometheus does with ``spout_active_streams``) it is the whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from ._hub import MAX_STREAM_BYTES, EventsExpired, HubBase, Producer, StreamNotFound

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline

__all__ = ["RedisHub"]

log = logging.getLogger("spout.gateway")

_RUNNING = "running"
#: Fields of the meta hash that are the hub's own, not the stream's meta.
_OWNER = "_owner"
_CANCEL = "_cancel"


class _Keys:
    """The keys of one stream; the ``{id}`` hash tag keeps them in one Redis Cluster slot."""

    __slots__ = ("frames", "meta", "readers")

    def __init__(self, prefix: str, stream_id: str) -> None:
        base = f"{prefix}stream:{{{stream_id}}}"
        self.meta = base + ":meta"
        self.frames = base + ":frames"
        self.readers = base + ":readers"

    def all(self) -> tuple[str, str, str]:
        return self.meta, self.frames, self.readers


class _Producing(Producer):
    """A stream whose producer runs on this replica: where its frames go."""

    __slots__ = ("creator", "first", "held", "keys", "next", "sizes", "writing")

    def __init__(self, keys: _Keys, creator: str) -> None:
        super().__init__()
        self.keys = keys
        self.next = 1  # the number the next frame gets
        self.first = 1  # the number of the oldest frame kept
        self.sizes: deque[int] = deque()  # the size of each frame kept, from `first`
        self.held = 0  # their sum
        self.creator = creator  # the creator's reader token
        self.writing: asyncio.Task[None] | None = None  # the last write sent


class RedisHub(HubBase[_Producing]):
    """The hub of several replicas, kept in Redis at ``url``.

    ``resume_window``, ``retention``, ``max_events`` and ``max_bytes`` are
    :class:`~spout.gateway._hub.HubBase`'s. ``heartbeat``: seconds between a replica's
    rounds (refreshing its readers, checking its streams); a replica that dies loses its
    readers after ``3 * heartbeat + 2`` seconds. ``prefix``: the start of every key and
    channel name.

    Example::

        hub = RedisHub("redis://127.0.0.1:6379/0", resume_window=10)
        app = create_app(config, hub=hub)  # or set config.redis_url
    """

    def __init__(
        self,
        url: str,
        *,
        resume_window: float = 10.0,
        retention: float = 60.0,
        max_events: int = 20_000,
        max_bytes: int = MAX_STREAM_BYTES,
        heartbeat: float = 1.0,
        prefix: str = "spout:",
    ) -> None:
        from redis.asyncio import Redis

        super().__init__(
            resume_window=resume_window,
            retention=retention,
            max_events=max_events,
            max_bytes=max_bytes,
        )
        self.heartbeat = heartbeat
        self.prefix = prefix
        #: This replica's name in Redis: the owner of the streams it produces.
        self.replica = secrets.token_hex(8)
        self._redis: Redis = Redis.from_url(url)
        self._channel = f"{prefix}replica:{self.replica}"
        self._reader_ttl_ms = int((3 * heartbeat + 2) * 1000)
        # Long enough to outlive any pause of a healthy owner, short enough to clean up
        # after a dead one; refreshed every quarter of it.
        self._running_ttl_ms = int(max(60.0, 20 * heartbeat) * 1000)
        self._readers: dict[str, _Keys] = {}  # this replica's followers: token -> keys
        self._creators: dict[str, str] = {}  # stream id -> creator token, until it follows
        self._offset_ms = 0.0  # Redis's clock minus ours
        self._tasks: set[asyncio.Task[None]] = set()  # background: cancelled on close
        self._writes: set[asyncio.Task[None]] = set()  # writes and leaves: finished on close
        self._reads: set[asyncio.Future[Any]] = set()  # followers' XREADs: cancelled on close
        self._started: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._closed = False

    # -- the producer's side ---------------------------------------------------------------------

    async def create(self, stream_id: str, meta: dict[str, str]) -> None:
        """A new running stream, produced here; its creator counts as a reader until its
        first follow ends."""
        await self._start()
        keys = _Keys(self.prefix, stream_id)
        if not await self._redis.hsetnx(keys.meta, "status", _RUNNING):
            raise ValueError(f"stream {stream_id} exists")
        creator = _token()
        async with self._redis.pipeline(transaction=True) as pipe:
            fields = {**meta, "events": "0", _OWNER: self.replica}
            pipe.hset(keys.meta, mapping=fields)  # type: ignore[arg-type]
            pipe.zadd(keys.readers, {creator: self._now_ms() + self._reader_ttl_ms})
            for key in (keys.meta, keys.readers):
                pipe.pexpire(key, self._running_ttl_ms)
            await pipe.execute()
        self._producers[stream_id] = _Producing(keys, creator)
        self._readers[creator] = keys
        self._creators[stream_id] = creator

    async def append(self, stream_id: str, frames: Sequence[bytes]) -> None:
        producing = self._producers.get(stream_id)
        if producing is None or not frames:
            return
        keys = producing.keys
        first = producing.next
        last = first + len(frames) - 1
        producing.next = last + 1  # numbered now: the writes go out in order
        sizes = producing.sizes
        sizes.extend(map(len, frames))
        producing.held += sum(map(len, frames))
        oldest = producing.first
        # The newest frame stays, whatever its size; the older ones go beyond either limit.
        while len(sizes) > 1 and (len(sizes) > self.max_events or producing.held > self.max_bytes):
            producing.held -= sizes.popleft()
            producing.first += 1
        kept = producing.first

        def commands(pipe: Pipeline) -> None:
            for number, frame in enumerate(frames, first):
                pipe.xadd(keys.frames, {"f": frame}, id=f"{number}-0")
            if kept > oldest:
                pipe.xtrim(keys.frames, minid=f"{kept}-0", approximate=False)
            pipe.hset(keys.meta, "events", last)
            if first == 1:
                pipe.pexpire(keys.frames, self._running_ttl_ms)

        await self._write(producing, commands, transaction=False)

    async def finish(self, stream_id: str, status: str) -> None:
        producing = self._finished(stream_id)
        if producing is None:
            return
        creator = self._creators.pop(stream_id, None)
        if creator is not None:  # the creator never followed: it will not leave
            self._readers.pop(creator, None)
        keys = producing.keys
        retention_ms = self._retention_ms

        def commands(pipe: Pipeline) -> None:
            # The end marker sits right after the last frame (N-1 after N-0), so a follower
            # blocked in XREAD on any replica wakes up to it.
            pipe.xadd(keys.frames, {"e": status}, id=f"{producing.next - 1}-1")
            pipe.hset(keys.meta, "status", status)
            if creator is not None:
                pipe.zrem(keys.readers, creator)
            for key in keys.all():
                pipe.pexpire(key, retention_ms)

        await self._write(producing, commands, transaction=True)

    async def _write(
        self, producing: _Producing, commands: Callable[[Pipeline], None], *, transaction: bool
    ) -> None:
        """Send ``commands`` after the stream's earlier writes, and to their end even if the
        caller is cancelled meanwhile: a producer stopped in the middle of an append then
        still writes its error frame and its end with the right numbers."""
        previous = producing.writing

        async def write() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous  # its failure is logged by _done
            async with self._redis.pipeline(transaction=transaction) as pipe:
                commands(pipe)
                await pipe.execute()

        task = asyncio.ensure_future(write())
        producing.writing = task
        self._writes.add(task)
        task.add_done_callback(self._done)
        await asyncio.shield(task)

    @property
    def _retention_ms(self) -> int:
        """How long a finished stream's keys stay, as Redis counts it."""
        return max(1, int(self.retention * 1000))

    # -- any replica -----------------------------------------------------------------------------

    async def meta(self, stream_id: str) -> dict[str, str] | None:
        await self._start()
        keys = _Keys(self.prefix, stream_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.meta)
            pipe.zremrangebyscore(keys.readers, "-inf", self._now_ms())
            pipe.zcard(keys.readers)
            fields, _, readers = await pipe.execute()
        if not fields or b"status" not in fields:
            return None
        meta = {key.decode(): value.decode() for key, value in fields.items()}
        meta.pop(_OWNER, None)
        meta.pop(_CANCEL, None)
        meta["readers"] = str(readers)
        return meta

    async def follow_batches(
        self, stream_id: str, after: int = 0, *, creator: bool = False
    ) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        """:meth:`follow`, a list at a time: every frame one read of Redis returned."""
        await self._start()
        keys = _Keys(self.prefix, stream_id)
        token: str | None
        if creator:
            # Counted since create(); None if the stream already ended (nothing to leave).
            token = self._creators.pop(stream_id, None)
            status = _RUNNING
        else:
            token = _token()
            status = await self._join(keys, stream_id, token)
        block: int | None = None if status != _RUNNING else int(self.heartbeat * 1000)
        try:
            position = max(after + 1, 1)
            last_id: bytes | str = f"{position - 1}-0"
            while True:
                entries = _entries(await self._read(keys.frames, last_id, block))
                if not entries:
                    if block is None:
                        return  # finished, and nothing after what was asked for
                    now = _text(await self._redis.hget(keys.meta, "status"))
                    if now is None:
                        return  # gone (expired, or the owner died long ago)
                    if now != _RUNNING:
                        block = None  # one last look: the end may have come meanwhile
                    continue
                batch: list[tuple[int, bytes]] = []
                ended = False
                for entry_id, fields in entries:
                    number, _, sequence = entry_id.partition(b"-")
                    if sequence == b"0":
                        if int(number) != position:
                            if batch:
                                yield batch  # what came before the gap, then the error
                            raise EventsExpired.before(stream_id, int(number))
                        batch.append((position, fields[b"f"]))
                        position += 1
                    else:  # the end marker, after frame `number`
                        if int(number) >= position:
                            if batch:
                                yield batch
                            raise EventsExpired.before(stream_id, int(number) + 1)
                        ended = True
                        break
                    last_id = entry_id
                if batch:
                    yield batch
                if ended:
                    return
        finally:
            if token is not None:
                self._left(keys, stream_id, token)

    async def _read(self, key: str, after: bytes | str, block: int | None) -> Any:
        """XREAD in a task of its own: a follower cancelled while blocked (its client went
        away) ends at once, and redis-py cleans up the interrupted connection on the side."""
        read: asyncio.Future[Any] = asyncio.ensure_future(
            self._redis.xread({key: after}, count=1024, block=block)
        )
        self._reads.add(read)
        read.add_done_callback(self._read_done)
        try:
            return await asyncio.shield(read)
        except asyncio.CancelledError:
            read.cancel()
            raise

    async def cancel(self, stream_id: str) -> bool:
        """Stop a running stream now, whichever replica produces it; False if it is not
        running (or unknown)."""
        await self._start()
        keys = _Keys(self.prefix, stream_id)
        status, owner = await self._status(keys)
        if status != _RUNNING or owner is None:
            return False
        # The flag is for the owner's next round, should the message be lost.
        await self._redis.hset(keys.meta, _CANCEL, 1)
        await self._tell(owner, "cancel", stream_id)
        return True

    async def aclose(self) -> None:
        """Stop the background tasks, close the connections; the hub is unusable after."""
        self._closed = True
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        self._forget_producers()
        tasks: list[asyncio.Future[Any]] = [*self._tasks, *self._reads]
        if self._started is not None:
            tasks.append(self._started)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()

    # -- readers ---------------------------------------------------------------------------------

    async def _join(self, keys: _Keys, stream_id: str, token: str) -> str:
        """Count a new reader of ``stream_id``; its status."""
        status, owner = await self._status(keys)
        if status is None:
            raise StreamNotFound(stream_id)
        running = status == _RUNNING
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.readers, {token: self._now_ms() + self._reader_ttl_ms})
            # An emptied sorted set is deleted, so this may have made the key anew: it must
            # expire like the others (the owner refreshes it while the stream runs).
            ttl_ms = self._running_ttl_ms if running else self._retention_ms
            pipe.pexpire(keys.readers, ttl_ms)
            await pipe.execute()
        self._readers[token] = keys
        if running and owner is not None:
            await self._tell(owner, "joined", stream_id)
        return status

    async def _status(self, keys: _Keys) -> tuple[str | None, str | None]:
        """A stream's status and owner (None, None: no such stream)."""
        status, owner = await self._redis.hmget(keys.meta, ["status", _OWNER])
        return _text(status), _text(owner)

    def _left(self, keys: _Keys, stream_id: str, token: str) -> None:
        """A follower ended: tell Redis and the owner, in a task of its own.

        Not awaited where the follower ends: that is often a task being cancelled (the
        client went away), or a generator being closed, where the reader's response should
        end at once; and a replica that shuts down finishes these tasks first."""
        self._readers.pop(token, None)
        if self._closed:
            return  # shutting down: the heartbeat stops and the entry expires
        try:
            task = asyncio.get_running_loop().create_task(self._leave(keys, stream_id, token))
        except RuntimeError:  # no loop: a follower collected at exit; its entry will expire
            return
        self._writes.add(task)
        task.add_done_callback(self._done)

    async def _leave(self, keys: _Keys, stream_id: str, token: str) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.readers, token)
                pipe.hmget(keys.meta, ["status", _OWNER])
                _, (status, owner) = await pipe.execute()
            if _text(status) == _RUNNING and owner is not None:
                await self._tell(owner.decode(), "left", stream_id)
        except Exception:  # the reader is gone either way; its entry will expire
            log.warning("stream %s: could not record a reader leaving", stream_id, exc_info=True)

    async def _live_readers(self, keys: _Keys) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(keys.readers, "-inf", self._now_ms())
            pipe.zcard(keys.readers)
            _, count = await pipe.execute()
        return int(count)

    # -- the owner's decisions -------------------------------------------------------------------

    async def _tell(self, owner: str, kind: str, stream_id: str) -> None:
        if owner == self.replica:
            self._heard(kind, stream_id)
        elif owner:
            await self._redis.publish(f"{self.prefix}replica:{owner}", f"{kind} {stream_id}")

    def _heard(self, kind: str, stream_id: str) -> None:
        if stream_id not in self._producers:
            return
        if kind == "cancel":
            self._stop(stream_id, "cancelled")
        elif kind == "joined":
            self._reader_joined(stream_id)
        elif kind == "left":
            self._spawn(self._check_readers(stream_id))

    async def _check_readers(self, stream_id: str, *, window_passed: bool = False) -> None:
        producing = self._producers.get(stream_id)
        if producing is not None:
            readers = await self._live_readers(producing.keys)
            self._decide(stream_id, readers, window_passed=window_passed)

    def _decide(self, stream_id: str, readers: int, *, window_passed: bool = False) -> None:
        if readers:
            self._reader_joined(stream_id)
        else:
            self._no_reader_left(stream_id, window_passed=window_passed)

    def _window_passed(self, stream_id: str) -> None:
        """Readers on other replicas are not seen here: count them before stopping."""
        producing = self._producers.get(stream_id)
        if producing is not None:
            producing.timer = None
            self._spawn(self._check_readers(stream_id, window_passed=True))

    # -- background ------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Subscribe to this replica's channel and start its rounds, once."""
        if self._closed:
            raise RuntimeError("the hub is closed")
        started = self._started
        if started is None or (
            started.done() and not started.cancelled() and started.exception() is not None
        ):  # not yet, or Redis could not be reached last time: try (again)
            self._started = started = asyncio.ensure_future(self._subscribe())
        await asyncio.shield(started)

    async def _subscribe(self) -> None:
        await self._sync_clock()
        if self._pubsub is not None:
            await self._pubsub.aclose()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._channel)
        self._spawn(self._listen())
        self._spawn(self._rounds())

    async def _sync_clock(self) -> None:
        before = time.time()
        seconds, microseconds = await self._redis.time()
        after = time.time()
        server_ms = seconds * 1000 + microseconds / 1000
        self._offset_ms = server_ms - (before + after) * 500

    def _now_ms(self) -> int:
        return int(time.time() * 1000 + self._offset_ms)

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The rounds catch up on what is missed while reconnecting.
                log.warning("redis hub: the control channel failed; retrying", exc_info=True)
                await asyncio.sleep(self.heartbeat)
                with contextlib.suppress(Exception):
                    await self._pubsub.subscribe(self._channel)
                continue
            if message is None or message.get("type") != "message":
                continue
            kind, _, stream_id = message["data"].decode().partition(" ")
            self._heard(kind, stream_id)

    async def _rounds(self) -> None:
        last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                refresh = time.monotonic() - last_refresh > self._running_ttl_ms / 4000
                await self._round(refresh)
                if refresh:
                    last_refresh = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("redis hub: a heartbeat round failed", exc_info=True)

    async def _round(self, refresh: bool) -> None:
        """Keep this replica's readers alive; look at each stream it produces."""
        await self._sync_clock()
        until = self._now_ms() + self._reader_ttl_ms
        producing = list(self._producers.items())
        async with self._redis.pipeline(transaction=False) as pipe:
            for token, keys in self._readers.items():
                pipe.zadd(keys.readers, {token: until}, xx=True)
            for _, stream in producing:
                if refresh:
                    for key in stream.keys.all():
                        pipe.pexpire(key, self._running_ttl_ms)
                pipe.zremrangebyscore(stream.keys.readers, "-inf", self._now_ms())
                pipe.zcard(stream.keys.readers)
                pipe.hget(stream.keys.meta, _CANCEL)
            results = await pipe.execute()
        # Each stream's group of answers ends with its reader count and its cancel flag.
        group = 6 if refresh else 3
        start = len(results) - group * len(producing)
        for index, (stream_id, _) in enumerate(producing):
            end = start + (index + 1) * group
            readers, cancelled = results[end - 2], results[end - 1]
            if cancelled is not None:
                self._heard("cancel", stream_id)
            else:
                # Also catches the readers of a replica that died without saying so.
                self._decide(stream_id, int(readers))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            coroutine.close()
            return
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _read_done(self, read: asyncio.Future[Any]) -> None:
        self._reads.discard(read)
        if not read.cancelled():
            read.exception()  # retrieved: the follower raised it, or was cancelled before

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("redis hub: a task failed", exc_info=task.exception())


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _token() -> str:
    return secrets.token_hex(8)


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of an XREAD reply on one key (RESP2: a list of pairs; RESP3: a dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        streams = list(reply.values())
        return list(streams[0][0]) if streams and streams[0] else []
    return list(reply[0][1])
