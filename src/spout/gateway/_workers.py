"""``spout serve --workers N``: N gateway processes on one port that act as one gateway.

The parent process binds the listening socket once and starts N workers (spawned processes,
each building the gateway from the same command line) that all accept on it; the kernel
hands each new connection to one of them. The parent restarts a worker that dies, and on
SIGTERM or Ctrl-C asks every worker to shut down (each gives its running streams
``shutdown_deadline`` seconds, as one process does) and waits for them.

What the workers share:

* Streams. With ``--redis``, through Redis (:class:`RedisHub` already serves replicas).
  Without it, through a *local shared hub* that needs no other server: each worker keeps the
  streams it produces in its own :class:`MemoryHub` (so a client reading the stream it asked
  for costs nothing more than with one process) and answers the other workers on a Unix
  socket in a private (0700) directory the parent made. A worker asked about a stream it
  does not hold (a resume, follow, cancel or ``meta`` that landed on it) asks its peers, and
  the one producing it answers: its ``meta``, its cancel, or its frames, a batch at a time
  (see :class:`PeerHub`). The producer's hub stays the only place the stream lives, so its
  readers count, resume window, ownership (``meta["key"]``), caps and retention are the
  ones :class:`MemoryHub` keeps. Each worker's hub keeps at most ``max_hub_bytes / N``.
* Rate limits: a SQLite file in that directory (:class:`SqliteCounters`), or Redis.
* Keys and spend: the keys file (each worker re-reads it when it changes) and the spend
  ledger beside it (a SQLite file), or Redis, as with one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any

from ._hub import MAX_HUB_BYTES, MAX_STREAM_BYTES, EventsExpired, MemoryHub, StreamNotFound

__all__ = ["PeerHub", "default_workers", "run_workers", "serve_worker"]

log = logging.getLogger("spout.gateway")

#: What a peer's follow sends, each a header then ``size`` bytes: a batch of frames (b"B", the
#: frame count and the first frame's number; then the frames' lengths, 4 bytes each, and
#: their bytes, back to back), the end (b"E"), or events expired (b"X", then the message).
#: Two reads a batch, whatever its size.
_HEADER = struct.Struct(">cIQI")
#: Seconds a worker waits for a peer to answer a ``meta``, a ``cancel`` or the start of a
#: follow (then the stream is taken as not held there).
PEER_TIMEOUT = 5.0
#: A worker that dies this soon after it started is not restarted: it would die again (its
#: configuration or its port is wrong), and the parent stops.
_STARTUP_FAILURE_SECONDS = 5.0


def default_workers() -> int:
    """The CPU cores this process may run on (its affinity), the default ``--workers``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


class PeerHub(MemoryHub):
    """A worker's :class:`MemoryHub` that also answers, and asks, the other workers' hubs over
    Unix sockets in ``directory`` (one ``<name>.sock`` per worker).

    Streams made here live here. A ``meta``, ``cancel`` or follow of a stream this hub does
    not hold goes to each peer in turn until one holds it; a remote follow is a reader of
    the producer's hub like any other (it counts in ``readers``, and its leaving starts the
    resume window). The frames go over the socket a batch at a time, as many as the
    producer has when the reader asks, so a busy stream costs one write per batch, and a
    reader that reads nothing holds up only its own socket (the producer's follow waits on
    the socket's buffer, as it would on a client's). Settings are :class:`MemoryHub`'s.
    """

    def __init__(
        self,
        directory: Path,
        name: str,
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
            max_total_bytes=max_total_bytes,
        )
        self.directory = directory
        self.path = directory / f"{name}.sock"
        self._server: asyncio.AbstractServer | None = None
        self._serving: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Answer the peers (call in the worker's event loop, before it serves)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead worker's socket, this worker's predecessor
        self._server = await asyncio.start_unix_server(self._answer, path=str(self.path))

    def _peers(self) -> list[Path]:
        return sorted(path for path in self.directory.glob("*.sock") if path != self.path)

    # -- the Hub protocol, reaching the peers for streams not held here -------------------------

    async def meta(self, stream_id: str) -> dict[str, str] | None:
        meta = await super().meta(stream_id)
        if meta is not None:
            return meta
        for peer in self._peers():
            answer = await self._ask(peer, {"op": "meta", "id": stream_id})
            if isinstance(answer, dict):
                return {str(key): str(value) for key, value in answer.items()}
        return None

    async def cancel(self, stream_id: str) -> bool:
        if stream_id in self._logs:
            return await super().cancel(stream_id)
        for peer in self._peers():
            if await self._ask(peer, {"op": "cancel", "id": stream_id}) is True:
                return True
        return False

    def follow_batches(
        self, stream_id: str, after: int = 0, *, creator: bool = False
    ) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        if creator or stream_id in self._logs:
            return super().follow_batches(stream_id, after, creator=creator)
        return self._follow_peer(stream_id, after)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        for task in list(self._serving):
            task.cancel()
        if self._serving:
            await asyncio.gather(*self._serving, return_exceptions=True)
        await super().aclose()

    # -- asking a peer -------------------------------------------------------------------------

    async def _ask(self, peer: Path, request: dict[str, Any]) -> Any:
        """A peer's one-line answer to ``request``; None when it is gone or says nothing."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(peer)), PEER_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError):
            return None  # a worker that died or is restarting holds no stream
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            line = await asyncio.wait_for(reader.readline(), PEER_TIMEOUT)
            return json.loads(line) if line else None
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            log.warning("a peer worker (%s) did not answer: %s", peer.name, exc)
            return None
        finally:
            writer.close()

    async def _follow_peer(
        self, stream_id: str, after: int
    ) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        """A stream another worker produces, from that worker's hub."""
        request = json.dumps({"op": "follow", "id": stream_id, "after": after}).encode() + b"\n"
        for peer in self._peers():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(str(peer)), PEER_TIMEOUT
                )
            except (OSError, asyncio.TimeoutError):
                continue  # a worker that died or is restarting holds no stream
            try:
                writer.write(request)
                try:
                    status = await asyncio.wait_for(reader.readline(), PEER_TIMEOUT)
                except (OSError, asyncio.TimeoutError):
                    continue  # a hung worker: the stream is not found through it
                if status != b'"ok"\n':
                    continue  # not this peer's stream
                while True:
                    kind, count, first, size = _HEADER.unpack(
                        await reader.readexactly(_HEADER.size)
                    )
                    body = await reader.readexactly(size)
                    if kind == b"E":
                        return
                    if kind == b"X":
                        raise EventsExpired(body.decode())
                    lengths = array("I")
                    lengths.frombytes(body[: 4 * count])
                    batch = []
                    start = 4 * count
                    for offset, length in enumerate(lengths):
                        batch.append((first + offset, body[start : start + length]))
                        start += length
                    yield batch
            except asyncio.IncompleteReadError:
                raise ConnectionError(
                    f"stream {stream_id}: the worker producing it is gone"
                ) from None
            finally:
                writer.close()
        raise StreamNotFound(stream_id)

    # -- answering peers -----------------------------------------------------------------------

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        try:
            request = json.loads(await reader.readline())
            stream_id = str(request["id"])
            op = request["op"]
            if op == "meta":
                answer: Any = await MemoryHub.meta(self, stream_id)
            elif op == "cancel":
                answer = stream_id in self._logs and await MemoryHub.cancel(self, stream_id)
            elif op == "follow":
                await self._send_frames(reader, writer, stream_id, int(request["after"]))
                return
            else:
                raise ValueError(f"unknown peer request {op!r}")
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, ValueError, KeyError, asyncio.IncompleteReadError) as exc:
            log.debug("a peer worker's request failed: %s", exc)
        except asyncio.CancelledError:
            # aclose ends the answers under way; asyncio's stream server would log a
            # cancelled handler as an error, on every shutdown with a remote reader.
            pass
        finally:
            self._serving.discard(task)
            writer.close()

    async def _send_frames(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream_id: str,
        after: int,
    ) -> None:
        """A peer's reader: this hub's frames of ``stream_id`` on ``writer`` until the stream
        ends or the peer hangs up (then this reader leaves, as a client's would)."""
        if await MemoryHub.meta(self, stream_id) is None:
            writer.write(b'"missing"\n')
            return
        writer.write(b'"ok"\n')

        async def pump() -> None:
            batches = MemoryHub.follow_batches(self, stream_id, after)
            try:
                async for batch in batches:
                    frames = [frame for _, frame in batch]
                    lengths = array("I", map(len, frames)).tobytes()
                    size = len(lengths) + sum(map(len, frames))
                    header = _HEADER.pack(b"B", len(batch), batch[0][0], size)
                    writer.write(b"".join([header, lengths, *frames]))
                    await writer.drain()
                writer.write(_HEADER.pack(b"E", 0, 0, 0))
            except EventsExpired as exc:
                message = str(exc).encode()
                writer.write(_HEADER.pack(b"X", 0, 0, len(message)) + message)
            finally:
                await batches.aclose()
            await writer.drain()

        # The peer sends nothing more: its end of the socket closing is its reader leaving,
        # noticed now even while the stream waits for its next frame.
        pumping = asyncio.ensure_future(pump())
        hangup = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({pumping, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, hangup):
                task.cancel()
            await asyncio.gather(pumping, hangup, return_exceptions=True)


# -- the parent ----------------------------------------------------------------------------------


def run_workers(
    worker: Callable[..., None],
    argv: Sequence[str],
    config: Any,
    workers: int,
    announce: Callable[[str, int], None],
) -> int:
    """Serve ``config`` with ``workers`` processes on one socket until SIGTERM or Ctrl-C.

    ``worker``: a module-level function each worker process runs (it is imported there by
    name), called with ``argv`` (the ``spout serve`` arguments it builds its gateway from)
    and the ``workers``, ``shared``, ``index`` and ``listener`` :func:`serve_worker` takes.
    ``announce``: called with the host and port once the socket listens.
    """
    import uvicorn

    from ._ratelimit import SqliteCounters

    settings = uvicorn.Config(app="", host=config.host, port=config.port)
    listener = settings.bind_socket()
    # Listening now: a client connecting while the workers start waits in the backlog
    # rather than being refused.
    listener.listen(settings.backlog)
    shared = Path(tempfile.mkdtemp(prefix="spout-serve-"))  # 0700: only this user
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    stopping = [
        getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
    ]
    before = {signum: signal.signal(signum, on_signal) for signum in stopping}
    context = multiprocessing.get_context("spawn")
    common = {"argv": list(argv), "workers": workers, "shared": str(shared)}

    def start(index: int) -> tuple[Any, float]:
        process = context.Process(
            target=worker,
            kwargs={**common, "index": index, "listener": listener},
            name=f"spout-serve-worker-{index}",
        )
        process.start()
        return process, time.monotonic()

    failed = False
    try:
        SqliteCounters(shared / "limits.sqlite").close()  # made once, before workers race
        processes = [start(index) for index in range(workers)]
        host, port = listener.getsockname()[:2]
        # The address is printed once every worker answers (each leaves a file when its
        # server has started): whoever waits for it can use it at once. A client that
        # connects sooner waits in the backlog.
        ready = [shared / f"ready-{index}" for index in range(workers)]
        announced = False
        while not stop.wait(0.5 if announced else 0.05):
            if not announced and all(path.exists() for path in ready):
                announce(host, port)
                announced = True
            for index, (process, started) in enumerate(processes):
                if process.is_alive():
                    continue
                # Gone before it answered, or soon after: it would fail again.
                early = time.monotonic() - started < _STARTUP_FAILURE_SECONDS
                if early or not ready[index].exists():
                    print(
                        f"spout serve: worker {index} exited at start ({process.exitcode}); "
                        "stopping",
                        file=sys.stderr,
                    )
                    failed = True
                    stop.set()
                    break
                log.warning("worker %d (pid %s) died; starting another", index, process.pid)
                ready[index].unlink(missing_ok=True)
                processes[index] = start(index)
        # Ctrl-C reached the workers too (one process group); SIGTERM tells those it did
        # not. A worker takes a second SIGTERM as the first: its streams keep their deadline.
        for process, _ in processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + config.shutdown_deadline + 10
        for process, _ in processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker pid %s did not stop in time; killed", process.pid)
                process.kill()
                process.join()
    finally:
        listener.close()
        shutil.rmtree(shared, ignore_errors=True)
        for signum, handler in before.items():
            signal.signal(signum, handler)
    if failed:
        return 1
    # As one process does (uvicorn's way): the signal that stopped the gateway, raised again
    # now that it stopped cleanly, is its exit status.
    for signum in reversed(received):
        # The default action (not Python's KeyboardInterrupt): Ctrl-C ends it without a
        # traceback, with the status a shell reads as "ended by SIGINT".
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
    return 0


def _end_with_parent() -> None:
    """Shut this worker down (gracefully, as SIGTERM does) when its parent is gone, even
    killed outright: a worker left behind would hold the port."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="spout-parent-watch", daemon=True).start()


def serve_worker(
    config: Any,
    server_settings: dict[str, Any],
    *,
    workers: int,
    shared: str,
    index: int,
    listener: socket.socket,
) -> None:
    """Run one worker (in the process :func:`run_workers` started): the gateway of
    ``config`` on the parent's ``listener``, sharing what it must through ``shared`` (the
    parent's private directory) or Redis. ``server_settings`` are uvicorn's, as
    :func:`~spout.gateway._server.server_config` takes them."""
    from uvicorn import Server
    from uvicorn._compat import asyncio_run

    from ._app import create_app
    from ._ratelimit import SqliteCounters
    from ._server import server_config, when_started

    _end_with_parent()
    hub: PeerHub | None = None
    if not config.redis_url:
        hub = PeerHub(
            Path(shared),
            f"worker-{index}",
            resume_window=config.resume_window,
            retention=config.retention,
            max_events=config.max_stream_events,
            max_bytes=config.max_stream_bytes,
            # All the workers together keep at most max_hub_bytes.
            max_total_bytes=max(config.max_hub_bytes // workers, config.max_stream_bytes),
        )
    app = create_app(config, hub=hub)
    gateway = app.state.gateway
    gateway.worker = {"index": index, "workers": workers, "pid": os.getpid()}
    if not config.redis_url:
        gateway.guard.share_counters(SqliteCounters(Path(shared) / "limits.sqlite"))
    server = Server(server_config(app, config, **server_settings))
    # Answering once started: the parent prints the address when every worker has said so.
    when_started(server, lambda _: (Path(shared) / f"ready-{index}").touch())

    async def serve() -> None:
        if hub is not None:
            await hub.start()
        await server.serve(sockets=[listener])

    # uvicorn raises the signal that stopped it again once it stopped: Ctrl-C's
    # KeyboardInterrupt is this worker's normal end, not a crash to print.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio_run(serve(), loop_factory=server.config.get_loop_factory())
