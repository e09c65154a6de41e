"""``spout serve --workers N``: real worker processes on one port acting as one gateway.

Each test runs ``spout serve --workers 2`` as a user would, against a real upstream on
loopback (``fault_server``). Where a request must land on a given worker, the test opens
connections until ``/healthz`` names that worker's pid, then keeps that one connection
(an HTTP keep-alive connection stays with the worker that accepted it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis_server import run_redis
from test_streams import PIECES, EventReader, parse_sse, read_events, text_of

from fault_server import FaultServer, openai_chat_stream
from spout.gateway._hub import EventsExpired, StreamNotFound
from spout.gateway._keys import add_key

CHAT = "/v1/chat/completions"


def body(stream: bool = True) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


class Served:
    """A running ``spout serve``: its process, base URL, and what it wrote on stderr."""

    def __init__(self, process: subprocess.Popen[str], url: str, log: list[str]) -> None:
        self.process = process
        self.url = url
        self.log = log

    def worker_pids(self, count: int = 2) -> set[int]:
        """The workers' pids, from /healthz on new connections until ``count`` answered."""
        pids: set[int] = set()
        deadline = time.monotonic() + 20
        while len(pids) < count:
            assert time.monotonic() < deadline, f"only workers {pids} answered"
            with httpx.Client(timeout=10) as client:
                pids.add(client.get(self.url + "/healthz").json()["worker"]["pid"])
        return pids

    @contextmanager
    def pinned(self, pid: int) -> Iterator[httpx.Client]:
        """A client whose one connection the worker ``pid`` accepted."""
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, f"no connection landed on worker {pid}"
            client = httpx.Client(
                timeout=10, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
            )
            if client.get(self.url + "/healthz").json()["worker"]["pid"] == pid:
                break
            client.close()
        # Its requests go on that connection while it is kept alive (a streamed response
        # left unread closes it: pin again after that).
        try:
            yield client
        finally:
            client.close()


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``spout serve --port 0 ARGS``, stopped with SIGTERM after the test (killed if hung)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "spout", "serve", "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "UPSTREAM_KEY": "sk-up", **(env or {})},
    )
    assert process.stderr is not None
    log: list[str] = []
    found = threading.Event()

    def drain() -> None:  # the workers' log lines must not fill the pipe
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            if "spout serve: http://" in line:
                found.set()
        found.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    found.wait(30)
    url = next(
        (m.group(1) for line in log if (m := re.search(r"spout serve: (http://\S+)", line))), None
    )
    try:
        assert url, "spout serve did not say where it listens:\n" + "".join(log)
        yield Served(process, url, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        reader.join(10)
        process.stderr.close()


def upstream(faults: FaultServer, model: str = "m") -> list[str]:
    return [
        "-m",
        f"openai:{model}",
        "--base-url",
        faults.url + "/v1",
        "--api-key-env",
        "UPSTREAM_KEY",
    ]


def paced(faults: FaultServer, delay: float) -> None:
    """Every upstream request gets the 20-piece stream, ``delay`` seconds between writes."""
    faults.route(lambda request: openai_chat_stream(PIECES).reply(delay=delay))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie (not yet reaped by its parent) is gone too
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1].startswith("Z")


# -- one port, many workers ------------------------------------------------------------------------


def test_many_streams_on_one_port_are_served_by_every_worker(faults: FaultServer) -> None:
    paced(faults, 0.005)
    with serve("--workers", "2", *upstream(faults)) as served:
        pids = served.worker_pids()
        assert served.process.pid not in pids  # the parent only supervises

        def one(_: int) -> tuple[str, str]:
            with httpx.Client(timeout=30) as client:
                response = client.post(served.url + CHAT, json=body())
                assert response.status_code == 200
                return response.headers["x-spout-stream-id"], text_of(parse_sse(response.content))

        with ThreadPoolExecutor(40) as pool:
            results = list(pool.map(one, range(80)))
        health = httpx.get(served.url + "/healthz").json()
    assert health["worker"]["workers"] == 2
    assert health["worker"]["index"] in (0, 1)
    assert [text for _, text in results] == ["".join(PIECES)] * 80
    assert len({stream_id for stream_id, _ in results}) == 80
    assert len(faults.requests) == 80


def test_the_address_is_printed_once_every_worker_has_started(faults: FaultServer) -> None:
    paced(faults, 0)
    with serve("--workers", "2", *upstream(faults)) as served:
        log = "".join(served.log)
        # The workers and the parent write to one pipe: what came before the address did so.
        before = log[: log.index("spout serve: http://")]
        assert before.count("Application startup complete.") == 2, log
        answer = httpx.post(served.url + CHAT, json=body(), timeout=10)
        assert text_of(parse_sse(answer.content)) == "".join(PIECES)


def test_workers_1_is_one_process_as_before(faults: FaultServer) -> None:
    paced(faults, 0)
    with serve("--workers", "1", *upstream(faults)) as served:
        health = httpx.get(served.url + "/healthz").json()
        metrics = httpx.get(served.url + "/metrics").text
    assert health == {"status": "ok", "active_streams": 0}  # no "worker": one process
    assert not metrics.startswith("# spout worker")


def test_workers_must_be_a_count(faults: FaultServer) -> None:
    for bad in ("0", "-2", "two"):
        done = subprocess.run(
            [sys.executable, "-m", "spout", "serve", "--workers", bad, *upstream(faults)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert f"--workers: a number of processes, 1 or more, not '{bad}'" in done.stderr


# -- streams across workers --------------------------------------------------------------------


def across_workers(served: Served, faults: FaultServer) -> None:
    """A stream made on one worker is resumed, followed and cancelled on the other."""
    first_pid, other_pid = sorted(served.worker_pids())
    url = served.url
    # resume on the other worker, after the maker's connection was cut
    with (
        served.pinned(first_pid) as maker,
        maker.stream("POST", url + CHAT, json=body()) as response,
    ):
        stream_id = response.headers["x-spout-stream-id"]
        head = read_events(response, 3)
    with (
        served.pinned(other_pid) as other,
        other.stream(
            "GET", f"{url}/v1/streams/{stream_id}", headers={"Last-Event-ID": "3"}
        ) as response,
    ):
        assert response.status_code == 200
        rest = read_events(response)
    numbers = [number for number, _ in head + rest]
    assert numbers == list(range(1, len(numbers) + 1))
    assert text_of(head + rest) == "".join(PIECES)
    assert len(faults.requests) == 1 and not faults.disconnects

    # a second reader on the other worker gets what the maker gets, from the start
    with served.pinned(first_pid) as maker, served.pinned(other_pid) as other:
        with maker.stream("POST", url + CHAT, json=body()) as first:
            stream_id = first.headers["x-spout-stream-id"]
            reader = EventReader(first)
            owner = reader.take(2)
            with other.stream("GET", f"{url}/v1/streams/{stream_id}?after=0") as second:
                follower = read_events(second)
            owner += reader.take()
        assert owner == follower
        assert text_of(owner) == "".join(PIECES)

        # cancel from the other worker stops the upstream at once
        with maker.stream("POST", url + CHAT, json=body()) as response:
            stream_id = response.headers["x-spout-stream-id"]
            reader = EventReader(response)
            reader.take(3)
            cancelled = other.delete(f"{url}/v1/streams/{stream_id}")
            assert cancelled.status_code == 200
            assert cancelled.json()["cancelled"] is True
            rest = reader.take()
        assert rest and "cancelled" in rest[-1][1]
        disconnect = faults.wait_for_disconnect(timeout=5)
        assert disconnect is not None and disconnect.events_sent < 10
        again = other.delete(f"{url}/v1/streams/{stream_id}")
        assert again.json()["cancelled"] is False
        assert other.get(f"{url}/v1/streams/st_missing").status_code == 404
        # both were answered by the workers they were pinned to
        assert maker.get(url + "/healthz").json()["worker"]["pid"] == first_pid
        assert other.get(url + "/healthz").json()["worker"]["pid"] == other_pid


def test_streams_resume_follow_and_cancel_across_workers_without_redis(
    faults: FaultServer,
) -> None:
    paced(faults, 0.05)
    with serve("--workers", "2", *upstream(faults)) as served:
        across_workers(served, faults)


def test_streams_resume_follow_and_cancel_across_workers_through_redis(
    faults: FaultServer, tmp_path: Path
) -> None:
    paced(faults, 0.05)
    with (
        run_redis(tmp_path) as redis_url,
        serve("--workers", "2", "--redis", redis_url, *upstream(faults)) as served,
    ):
        across_workers(served, faults)


def test_peer_hubs_answer_for_the_streams_they_hold(tmp_path: Path) -> None:
    """Two workers' hubs in one event loop, over their real Unix sockets."""
    from spout.gateway._workers import PeerHub

    async def scenario() -> None:
        a = PeerHub(tmp_path, "a", max_events=3, resume_window=0)
        b = PeerHub(tmp_path, "b")
        await a.start()
        await b.start()
        stops: list[str] = []
        try:
            await a.create("st_1", {"key": "alice"})
            a.on_stop("st_1", stops.append)
            await a.append("st_1", [b"one", b"two", b"three", b"four"])
            assert (await b.meta("st_1") or {})["key"] == "alice"
            assert await b.meta("st_none") is None
            with pytest.raises(EventsExpired, match="events before 2"):
                async for _ in b.follow("st_1", 0):
                    pass
            seen = []
            async for item in b.follow("st_1", 2):
                seen.append(item)
                if item[0] == 4:
                    await a.append("st_1", [b""])  # an empty frame crosses too
                if item[0] == 5:
                    await a.finish("st_1", "done")
            assert seen == [(3, b"three"), (4, b"four"), (5, b"")]
            assert not await b.cancel("st_1")  # finished
            with pytest.raises(StreamNotFound):
                async for _ in b.follow("st_none"):
                    pass

            # a remote reader leaving is noticed at once: no resume window, the stream stops
            await a.create("st_2", {})
            a.on_stop("st_2", stops.append)
            await a.append("st_2", [b"x"])
            follow = b.follow_batches("st_2", 0)
            assert await anext(follow) == [(1, b"x")]
            assert (await a.meta("st_2") or {})["readers"] == "2"
            own = a.follow_batches("st_2", 0, creator=True)  # the creator reads, and leaves
            assert await anext(own) == [(1, b"x")]
            await own.aclose()
            assert (await a.meta("st_2") or {})["readers"] == "1"
            assert not stops
            await follow.aclose()
            for _ in range(100):
                if stops:
                    break
                await asyncio.sleep(0.01)
            assert stops == ["abandoned"]

            await a.create("st_3", {})
            a.on_stop("st_3", stops.append)
            assert await b.cancel("st_3")
            assert stops == ["abandoned", "cancelled"]
        finally:
            await a.aclose()
            await b.aclose()
        assert not list(tmp_path.glob("*.sock"))

    asyncio.run(scenario())


# -- limits and spend across workers ---------------------------------------------------------


def test_rate_limits_are_shared_by_the_workers(faults: FaultServer, tmp_path: Path) -> None:
    paced(faults, 0)
    config = tmp_path / "gateway.toml"
    config.write_text("[limits]\nrequests_per_minute = 3\n")
    with serve("--workers", "2", "--config", str(config), *upstream(faults)) as served:
        a, b = sorted(served.worker_pids())
        with served.pinned(a) as on_a, served.pinned(b) as on_b:
            for client in (on_a, on_a, on_b):
                answer = client.post(served.url + CHAT, json=body())
                assert text_of(parse_sse(answer.content)) == "".join(PIECES)
            for client in (on_b, on_a):
                refused = client.post(served.url + CHAT, json=body())
                assert refused.status_code == 429
                assert "rate limit: 3 requests per minute" in refused.json()["error"]["message"]
    assert len(faults.requests) == 3


def test_spend_is_shared_by_the_workers(faults: FaultServer, tmp_path: Path) -> None:
    faults.route(lambda request: openai_chat_stream(PIECES, model="gpt-4o-mini").reply())
    keys = tmp_path / "keys.txt"
    alice = add_key(keys, "alice", max_spend=1e-5)  # one response costs 1.335e-5
    headers = {"Authorization": f"Bearer {alice}"}
    with serve("--workers", "2", "--keys", str(keys), *upstream(faults, "gpt-4o-mini")) as served:
        a, b = sorted(served.worker_pids())
        with served.pinned(a) as on_a, served.pinned(b) as on_b:
            request = {**body(), "model": "gpt-4o-mini"}
            answer = on_a.post(served.url + CHAT, json=request, headers=headers)
            assert text_of(parse_sse(answer.content)) == "".join(PIECES)
            refused = on_b.post(served.url + CHAT, json=request, headers=headers)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "insufficient_quota"
    assert len(faults.requests) == 1


# -- stopping ----------------------------------------------------------------------------------


def test_sigterm_stops_every_worker_and_lets_a_running_stream_finish(faults: FaultServer) -> None:
    paced(faults, 0.05)  # 20 pieces: about a second
    with serve("--workers", "2", *upstream(faults)) as served:
        pids = served.worker_pids()
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", served.url + CHAT, json=body()) as response,
        ):
            reader = EventReader(response)
            reader.take(2)
            served.process.send_signal(signal.SIGTERM)
            events = reader.take()
        assert events[-1][1] == "[DONE]"  # the stream had its shutdown deadline to finish
        # as one process: the signal is raised again once all stopped cleanly
        assert served.process.wait(30) == -signal.SIGTERM
    assert all(gone(pid) for pid in pids)
    assert "Traceback" not in "".join(served.log)


def test_workers_end_with_their_parent_even_if_it_is_killed(faults: FaultServer) -> None:
    paced(faults, 0)
    with serve("--workers", "2", *upstream(faults)) as served:
        pids = served.worker_pids()
        served.process.kill()
        served.process.wait(10)
        deadline = time.monotonic() + 20
        while not all(gone(pid) for pid in pids):
            assert time.monotonic() < deadline, "a worker outlived its parent"
            time.sleep(0.1)


def test_healthz_and_metrics_say_which_worker_answered(faults: FaultServer) -> None:
    paced(faults, 0)
    with serve("--workers", "2", *upstream(faults)) as served:
        for pid in served.worker_pids():
            with served.pinned(pid) as client:
                health = client.get(served.url + "/healthz").json()
                metrics = client.get(served.url + "/metrics").text
            assert health["worker"]["pid"] == pid
            assert metrics.startswith(
                f"# spout worker {health['worker']['index']} of 2 (pid {pid}): its own figures\n"
            )


def _admit_many(path: str, attempts: int, start: float) -> int:
    """In a process of its own: how many of ``attempts`` requests the shared counters let in."""
    from spout.gateway._ratelimit import SqliteCounters

    counters = SqliteCounters(path)
    while time.time() < start:  # both processes begin together
        time.sleep(0.001)

    async def run() -> int:
        admitted = 0
        for _ in range(attempts):
            admitted += await counters.admit("alice", 1000, 0) is None
        return admitted

    try:
        return asyncio.run(run())
    finally:
        counters.close()


def test_sqlite_counters_admit_exactly_the_limit_from_racing_processes(tmp_path: Path) -> None:
    import multiprocessing

    from spout.gateway._ratelimit import SqliteCounters

    path = str(tmp_path / "limits.sqlite")
    SqliteCounters(path).close()
    start = time.time() + 1.5
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        admitted = pool.starmap(_admit_many, [(path, 1500, start), (path, 1500, start)])
    assert sum(admitted) == 1000, admitted
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"

    async def tokens() -> None:
        counters = SqliteCounters(path, window=60)
        try:
            assert await counters.admit("bob", 0, 100) is None
            await counters.charge("bob", 60)
            assert await counters.admit("bob", 0, 100) is None
            await counters.charge("bob", 50)
            refusal = await counters.admit("bob", 0, 100)
            assert refusal is not None and refusal.limit == "tokens"
            assert 58 < refusal.retry_after <= 60
            refusal = await counters.admit("alice", 1000, 0)  # still full from the processes
            assert refusal is not None and refusal.limit == "requests"
        finally:
            await counters.aclose()

    asyncio.run(tokens())


def test_a_websocket_stream_is_read_again_on_every_worker(faults: FaultServer) -> None:
    from websockets.sync.client import connect

    paced(faults, 0.01)
    with serve("--workers", "2", *upstream(faults)) as served:
        pids = served.worker_pids()
        with connect(served.url.replace("http://", "ws://") + "/v1/ws") as ws:
            ws.send(json.dumps({**body(), "type": "request", "id": "r1"}))
            messages: list[dict[str, Any]] = []
            while not messages or messages[-1]["type"] not in ("done", "error"):
                messages.append(json.loads(ws.recv(timeout=10)))
        stream_id = messages[0]["stream_id"]
        assert messages[-1]["type"] == "done"
        # One worker holds the stream, the other asks it: both give the same events.
        for pid in pids:
            with served.pinned(pid) as client:
                replay = client.get(f"{served.url}/v1/streams/{stream_id}?after=0")
            assert replay.status_code == 200
            numbers = [number for number, _ in parse_sse(replay.content)]
            assert numbers == [message["n"] for message in messages[1:]]


def test_the_default_is_a_worker_per_core_but_one_for_a_model_in_process(
    faults: FaultServer,
) -> None:
    from spout.gateway._workers import default_workers

    cores = default_workers()
    assert cores == len(os.sched_getaffinity(0))
    paced(faults, 0)
    with serve(*upstream(faults)) as served:
        health = httpx.get(served.url + "/healthz").json()
    assert health.get("worker", {"workers": 1})["workers"] == cores
    with serve() as served:  # the bundled model, run in the gateway's process
        health = httpx.get(served.url + "/healthz").json()
    assert "worker" not in health


def test_ctrl_c_stops_every_worker_without_a_traceback(faults: FaultServer) -> None:
    paced(faults, 0)
    with serve("--workers", "2", *upstream(faults)) as served:
        pids = served.worker_pids()
        # A terminal's Ctrl-C reaches the whole process group at once: each worker and the
        # parent (the workers first here, as the parent's SIGTERM then comes after).
        for pid in (*pids, served.process.pid):
            os.kill(pid, signal.SIGINT)
        assert served.process.wait(30) == -signal.SIGINT
    assert all(gone(pid) for pid in pids)
    log = "".join(served.log)
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    assert log.count("Application shutdown complete.") == 2


def test_a_worker_that_dies_is_replaced(faults: FaultServer) -> None:
    paced(faults, 0)
    with serve("--workers", "2", *upstream(faults)) as served:
        pids = served.worker_pids()
        time.sleep(5.5)  # past the start-up time, in which a death stops the gateway instead
        dead = min(pids)
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            now = served.worker_pids()
            if dead not in now:
                break
        assert len(now - pids) == 1  # one new worker, the other one as it was
        answer = httpx.post(served.url + CHAT, json=body(), timeout=10)
        assert text_of(parse_sse(answer.content)) == "".join(PIECES)
        assert served.process.poll() is None
    assert f"(pid {dead}) died; starting another" in "".join(served.log)
