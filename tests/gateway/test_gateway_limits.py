"""The gateway against clients and a store that misbehave (issue #24, points 5, 8 and 10).

A real ``spout serve`` process is attacked over raw loopback sockets: request headers sent a
line at a time (slowloris), a connection that says nothing, a kept-alive connection left idle,
more connections than allowed, a client that never reads its stream. The hub's byte limits
and its retention are checked on a gateway in a thread, and a real ``redis-server`` is killed
under a running stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_server import run_gateway, upstream_config
from redis_server import redis_server_binary
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from fault_server import FaultServer, Stall, openai_chat_stream
from helpers import free_port
from hostile_upstream import HostileUpstream, peak_rss_growth
from spout import ResponseLimits
from spout.gateway._hub import EventsExpired, MemoryHub

CHAT = "/v1/chat/completions"


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@contextlib.contextmanager
def serve(tmp_path: Path, faults: FaultServer, settings: str, *args: str) -> Iterator[str]:
    """``spout serve --config`` (``settings``, then a model ``up`` on ``faults``); its URL."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        settings
        + f'\n[models.up]\nprovider = "openai"\nmodel = "m"\nbase_url = "{faults.url}/v1"\n'
        'api_key_env = "UPSTREAM_KEY"\nmax_retries = 0\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "spout", "serve", "--config", str(config), "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "UPSTREAM_KEY": "sk-upstream"},
    )
    assert process.stderr is not None
    seen = []
    url = None
    for line in process.stderr:
        seen.append(line)
        found = re.search(r"spout serve: (http://\S+)", line)
        if found:
            url = found.group(1)
            break
    try:
        assert url, "spout serve did not start:\n" + "".join(seen)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        process.stderr.close()


def connect(url: str, *, receive_buffer: int | None = None) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connecting: the window is agreed then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((host, int(port)))
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float | None]:
    """What arrives within ``timeout``, and when the server closed (None: it did not)."""
    received = b""
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < timeout:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received, time.monotonic() - start
        if not data:
            return received, time.monotonic() - start
        received += data
    return received, None


DEADLINES = "header_timeout = 1\nidle_timeout = 1\nwrite_timeout = 1\n"


# -- point 8: header and idle deadlines, a connection limit ------------------------------------


def test_request_headers_sent_a_line_a_second_are_cut_off_at_the_deadline(
    tmp_path: Path, faults: FaultServer
) -> None:
    with serve(tmp_path, faults, DEADLINES) as url:
        sock = connect(url)
        with sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            start = time.monotonic()
            closed_after = None
            received = b""
            while time.monotonic() - start < 6:
                try:
                    sock.sendall(b"x-slow: 1\r\n")  # never the empty line that ends them
                except (BrokenPipeError, ConnectionResetError):
                    break
                more, closed_after = read_until_closed(sock, 0.25)
                received += more
                if closed_after is not None:
                    break
            elapsed = time.monotonic() - start
        assert closed_after is not None, "the slow client was never cut off"
        assert 0.8 < elapsed < 5, elapsed
        assert received.startswith(b"HTTP/1.1 408 "), received


def test_a_connection_that_sends_nothing_is_closed(tmp_path: Path, faults: FaultServer) -> None:
    with serve(tmp_path, faults, DEADLINES) as url, connect(url) as sock:
        received, closed_after = read_until_closed(sock, 6)
    assert closed_after is not None and 0.8 < closed_after < 5, closed_after
    assert received == b""  # a client that said nothing gets nothing


def test_a_kept_alive_connection_is_closed_when_idle_and_its_next_headers_have_a_deadline(
    tmp_path: Path, faults: FaultServer
) -> None:
    settings = "header_timeout = 1\nidle_timeout = 5\n"
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    # After a response the connection may idle 5 s; once the next request begins, its
    # headers have header_timeout (1 s): its first bytes do not buy the idle time.
    with serve(tmp_path, faults, settings) as url, connect(url) as sock:
        sock.sendall(request)
        received, closed_after = read_until_closed(sock, 3)
        assert received.startswith(b"HTTP/1.1 200 ") and closed_after is None
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        received, closed_after = read_until_closed(sock, 6)
        assert closed_after is not None and 0.8 < closed_after < 5, closed_after
        assert received.startswith(b"HTTP/1.1 408 "), received
    with serve(tmp_path, faults, "header_timeout = 30\nidle_timeout = 1\n") as url:
        with connect(url) as sock:
            sock.sendall(request)
            received, closed_after = read_until_closed(sock, 6)
        assert received.startswith(b"HTTP/1.1 200 "), received
        assert closed_after is not None and 0.8 < closed_after < 5, closed_after


def test_a_request_beyond_the_connection_limit_is_answered_503(
    tmp_path: Path, faults: FaultServer
) -> None:
    # The limit is each worker's (the kernel picks the worker of a connection): one here.
    limit = ("--max-connections", "4", "--workers", "1")
    with serve(tmp_path, faults, "header_timeout = 30\n", *limit) as url:
        held = [connect(url) for _ in range(2)]
        try:
            for sock in held:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # headers never finished
            time.sleep(0.2)
            assert httpx.get(url + "/healthz").status_code == 200  # 3 open of 4
            held.append(connect(url))
            held[-1].sendall(b"GET /healthz HTTP/1.1\r\n")
            time.sleep(0.2)
            refused = httpx.get(url + "/healthz")  # the 4th open connection
            assert refused.status_code == 503, refused.text
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        assert httpx.get(url + "/healthz").status_code == 200


def test_max_connections_and_the_deadlines_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    for setting, complaint in [
        ("header_timeout = 0", "header_timeout must be a number of seconds > 0"),
        ('write_timeout = "soon"', "write_timeout must be a number of seconds > 0"),
        ("max_connections = -1", "max_connections must be an integer >= 0"),
        ("max_stream_bytes = 0", "max_stream_bytes (0) must be > 0"),
    ]:
        config.write_text(setting + '\n[models.smol]\nprovider = "local"\n')
        done = subprocess.run(
            [sys.executable, "-m", "spout", "serve", "--config", str(config), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert complaint in done.stderr


# -- point 5: a client that never reads; the hub's bytes -----------------------------------------


def test_a_client_that_reads_nothing_is_dropped_after_the_write_timeout(
    tmp_path: Path, faults: FaultServer
) -> None:
    pieces = ["x" * 400] * 30_000  # about 20 MB of frames: more than any socket buffers
    stream = openai_chat_stream(pieces)
    # Then the upstream waits (watching its socket): the gateway must hang up on it.
    faults.script(stream.reply([*stream.upto(len(pieces)), Stall(60)]))
    settings = DEADLINES + "resume_window = 0\n"
    with serve(tmp_path, faults, settings) as url:
        sock = connect(url, receive_buffer=4096)
        with sock:
            body = (
                b'{"model": "up", "stream": true, "messages": [{"role": "user", "content": "x"}]}'
            )
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            time.sleep(4)  # reads nothing: the gateway's writes stall
            # Dropped while the client still read nothing: its stream, with no reader left
            # (and no resume window), was stopped upstream.
            assert faults.wait_for_disconnect(timeout=3) is not None
            received, closed_after = read_until_closed(sock, 10)
        assert closed_after is not None, "the connection stayed open for a client not reading"
        assert received.startswith(b"HTTP/1.1 200 ")
        assert b"data: [DONE]" not in received  # cut off, not finished
        health = httpx.get(url + "/healthz").json()
        assert health["active_streams"] == 0


def test_a_websocket_outlives_the_header_deadline_and_is_dropped_if_it_reads_nothing(
    tmp_path: Path, faults: FaultServer
) -> None:
    pieces = ["x" * 400] * 30_000
    stream = openai_chat_stream(pieces)
    faults.script(stream.reply([*stream.upto(len(pieces)), Stall(60)]))
    with serve(tmp_path, faults, DEADLINES + "resume_window = 0\n") as url:
        ws_url = url.replace("http://", "ws://") + "/v1/ws"
        # A WebSocket in use is not cut off by the HTTP deadlines (1 s each here).
        with ws_connect(ws_url, compression=None) as ws:
            time.sleep(2.5)
            ws.send(json.dumps({"type": "cancel", "id": "nothing"}))
            assert json.loads(ws.recv(timeout=5))["type"] == "rejected"
        # One that stops reading (its client queues one message, then reads no more).
        sock = connect(url, receive_buffer=4096)
        with ws_connect(ws_url, sock=sock, compression=None, max_queue=1) as ws:
            message = {"type": "request", "id": "r1", "model": "up"}
            ws.send(json.dumps({**message, "messages": [{"role": "user", "content": "x"}]}))
            time.sleep(4)
            # Dropped while it read nothing: the stream it left was stopped upstream.
            assert faults.wait_for_disconnect(timeout=3) is not None
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=10)
        assert httpx.get(url + "/healthz").json()["active_streams"] == 0


async def test_a_stream_keeps_at_most_max_bytes_of_frames_and_all_streams_max_total() -> None:
    hub = MemoryHub(max_bytes=1000, max_total_bytes=2500, retention=60)
    await hub.create("a", {})
    await hub.append("a", [b"x" * 100] * 25)
    assert hub.held_bytes == 1000  # the newest ten frames
    await hub.finish("a", "done")
    with pytest.raises(EventsExpired):
        async for _ in hub.follow("a", 0):
            pass
    assert [number async for number, _ in hub.follow("a", 15)] == list(range(16, 26))
    # A single frame over max_bytes is kept: the newest frame always is.
    await hub.create("b", {})
    await hub.append("b", [b"y" * 1200])
    assert hub.held_bytes == 2200
    # Past max_total_bytes the finished stream "a" goes first, whole...
    await hub.create("c", {})
    await hub.append("c", [b"z" * 100] * 5)
    assert hub.held_bytes == 2200 - 1000 + 500
    assert await hub.meta("a") is None
    # ...then the oldest frames of the stream that grows.
    await hub.append("c", [b"z" * 100] * 20)
    assert hub.held_bytes <= 2500
    assert await hub.meta("b") is not None
    await hub.aclose()
    assert hub.held_bytes == 0


async def test_a_finished_stream_is_forgotten_when_its_retention_ends_without_a_request() -> None:
    hub = MemoryHub(retention=0.2)
    await hub.create("a", {})
    await hub.append("a", [b"x" * 1000])
    await hub.finish("a", "done")
    assert hub.held_bytes == 1000
    await asyncio.sleep(0.5)
    assert hub.held_bytes == 0  # nothing asked the hub anything meanwhile
    await hub.aclose()


def test_a_reader_keeps_up_with_a_stream_longer_than_max_stream_bytes(
    faults: FaultServer,
) -> None:
    pieces = [f"{i:04d}" + "x" * 96 for i in range(1500)]  # about 400 KB of frames
    # Paced, as a model is: a reader that reads is never 128 KiB (1.5 s) behind.
    faults.script(openai_chat_stream(pieces).reply(delay=0.003))
    config = upstream_config(faults.url + "/v1", max_stream_bytes=128 * 1024)
    with run_gateway(config) as gateway:
        request = {"model": "up", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", gateway.url + CHAT, json=request, timeout=30) as response:
            stream_id = response.headers["x-spout-stream-id"]
            text = response.read().decode()
        assert text.count('"content":"') >= 1500 and "data: [DONE]" in text
        held = gateway.app.state.gateway.hub.held_bytes
        assert 0 < held <= 128 * 1024 + 1000
        # The frames from the start are gone: a reader asking for them is told so.
        resumed = httpx.get(f"{gateway.url}/v1/streams/{stream_id}?after=0")
        assert resumed.status_code == 410, resumed.text


def test_a_gzip_bomb_upstream_leaves_the_gateway_answering_and_stops_on_delete() -> None:
    # The library's own cap on inflated bytes (64 MiB) would end it at once: lifted, the
    # gateway alone must keep its memory, answer others, and stop when told.
    limits = ResponseLimits(max_body_bytes=4 << 30)
    with HostileUpstream() as upstream, peak_rss_growth() as growth:
        # 32 MiB kept a stream, not 8: between the stream's start and its response's first
        # write, a producer inflating the bomb on a loaded machine once ran 8 MiB (2,000
        # frames) ahead, and the client got the "no longer kept" error before any frame.
        config = upstream_config(
            upstream.base("gzip-bomb"),
            resume_window=0,
            max_stream_bytes=32 << 20,
            options={"limits": limits},
        )
        with run_gateway(config) as gateway:
            request = {
                "model": "up",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            }
            with httpx.stream("POST", gateway.url + CHAT, json=request, timeout=30) as response:
                stream_id = response.headers["x-spout-stream-id"]
                lines = response.iter_lines()
                for _ in range(200):
                    next(lines)
                asked = time.monotonic()
                assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200
                assert time.monotonic() - asked < 3
                cancelled = httpx.delete(f"{gateway.url}/v1/streams/{stream_id}", timeout=5)
                assert cancelled.json()["cancelled"] is True
                rest = "\n".join(lines)
            # An error frame ends it: the cancel, or (the producer ran ahead of this reader
            # by more than max_stream_bytes) the frames it had not read yet were dropped.
            assert '"error"' in rest.strip().splitlines()[-1] and "data: [DONE]" not in rest
            deadline = time.monotonic() + 5
            while httpx.get(gateway.url + "/healthz").json()["active_streams"]:
                assert time.monotonic() < deadline, "the producer went on after the cancel"
                time.sleep(0.05)
            served = upstream.wait_for_response("gzip-bomb", timeout=5)
            assert served is not None and served.client_left  # not read to its end
    assert growth[0] < 300 * 1024 * 1024, growth[0]


def test_an_endless_tool_call_through_the_gateway_ends_with_the_limit_it_broke() -> None:
    with HostileUpstream() as upstream, peak_rss_growth() as growth:
        config = upstream_config(upstream.base("endless-arguments"), resume_window=0)
        with run_gateway(config) as gateway:
            request = {
                "model": "up",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            }
            with httpx.stream("POST", gateway.url + CHAT, json=request, timeout=30) as response:
                text = response.read().decode()
            assert "max_tool_arguments" in text.strip().splitlines()[-1]
            assert httpx.get(gateway.url + "/healthz").json()["active_streams"] == 0
    assert growth[0] < 300 * 1024 * 1024, growth[0]


# -- point 10: Redis killed under a running stream -----------------------------------------------


@contextlib.contextmanager
def killable_redis(directory: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server a test may kill; its URL and process."""
    port = free_port()
    redis = subprocess.Popen(
        [
            *(redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(directory)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", redis
    finally:
        if redis.poll() is None:
            redis.kill()
        redis.wait(10)


@contextlib.contextmanager
def crashes_logged() -> Iterator[list[logging.LogRecord]]:
    """The records of errors uvicorn and the gateway log meanwhile."""
    crashes: list[logging.LogRecord] = []

    class Crashes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                crashes.append(record)

    handler = Crashes()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "spout.gateway", "asyncio")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield crashes
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def test_redis_killed_mid_stream_ends_the_body_with_the_error_frame(
    tmp_path: Path, faults: FaultServer
) -> None:
    faults.script(openai_chat_stream([f"w{i} " for i in range(400)]).reply(delay=0.02))
    with killable_redis(tmp_path) as (redis_url, redis), crashes_logged() as crashes:
        config = upstream_config(faults.url + "/v1", redis_url=redis_url, shutdown_deadline=1.0)
        with run_gateway(config) as gateway:
            request = {
                "model": "up",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
            lines = []
            with httpx.stream("POST", gateway.url + CHAT, json=request, timeout=30) as response:
                assert response.status_code == 200
                for line in response.iter_lines():  # a body cut short raises here
                    lines.append(line)
                    if len(lines) == 12:
                        redis.kill()
                        redis.wait(10)
            data = [line for line in lines if line.startswith("data: ")]
            assert "data: [DONE]" not in data
            assert "the gateway lost this stream's events" in data[-1], data[-3:]
            # The upstream is not read on for nobody.
            assert faults.wait_for_disconnect(timeout=10) is not None
            # With Redis gone, what needs it is a 503 naming the problem, not a crash.
            stream_id = response.headers["x-spout-stream-id"]
            again = httpx.post(gateway.url + CHAT, json=request, timeout=30)
            assert again.status_code == 503, again.text
            assert "the gateway cannot start a stream now (its store failed)" in again.text
            for method in ("GET", "DELETE"):
                url = f"{gateway.url}/v1/streams/{stream_id}"
                answer = httpx.request(method, url, timeout=30)
                assert answer.status_code == 503, (method, answer.text)
    assert not [r for r in crashes if "Exception in ASGI application" in r.getMessage()]
    assert not [r for r in crashes if r.exc_info], [r.getMessage() for r in crashes]


def test_redis_killed_mid_stream_ends_a_websocket_request_with_an_error(
    tmp_path: Path, faults: FaultServer
) -> None:
    faults.script(openai_chat_stream([f"w{i} " for i in range(400)]).reply(delay=0.02))
    with killable_redis(tmp_path) as (redis_url, redis), crashes_logged() as crashes:
        config = upstream_config(faults.url + "/v1", redis_url=redis_url, shutdown_deadline=1.0)
        with run_gateway(config) as gateway:
            ws_url = gateway.url.replace("http://", "ws://") + "/v1/ws"
            with ws_connect(ws_url) as ws:
                request = {"type": "request", "id": "r1", "model": "up"}
                ws.send(json.dumps({**request, "messages": [{"role": "user", "content": "hi"}]}))
                seen = 0
                while True:
                    message = json.loads(ws.recv(timeout=10))
                    seen += 1
                    if seen == 10:
                        redis.kill()
                        redis.wait(10)
                    if message["type"] in ("done", "error"):
                        break
                assert message["type"] == "error", message
                assert "the gateway lost this stream's events" in message["error"]["message"]
                # The connection goes on.
                ws.send(json.dumps({"type": "cancel", "id": "nothing"}))
                assert json.loads(ws.recv(timeout=10))["type"] == "rejected"
    assert not [r for r in crashes if r.exc_info], [r.getMessage() for r in crashes]
