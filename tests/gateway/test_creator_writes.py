"""The creator's frames written by the producer itself (gateway/_direct.py, issue #23).

A real gateway (uvicorn's httptools protocol, in a thread) in front of a real loopback
upstream. The hub is a :class:`MemoryHub` that keeps the sinks it was given, so each test can
say which way the frames went; what it asserts is what the client reads.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from gateway_server import run_gateway, upstream_config

from fault_server import FaultServer, Stall, openai_chat_stream
from spout.gateway._direct import DirectWriter
from spout.gateway._hub import MemoryHub, Sink

CHAT = "/v1/chat/completions"
REQUEST = {"model": "up", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


class KeepingHub(MemoryHub):
    """A memory hub that keeps every sink attached to it."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.sinks: list[Sink] = []

    def attach(self, stream_id: str, sink: Sink) -> bool:
        self.sinks.append(sink)
        return super().attach(stream_id, sink)


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def frames(text: str) -> list[tuple[int, str]]:
    """The (id, data) of each SSE event of ``text``."""
    found = []
    for event in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in event.splitlines())
        found.append((int(lines["id"]), lines["data"]))
    return found


def contents(events: Sequence[tuple[int, str]]) -> list[str]:
    texts = []
    for _, data in events:
        if data == "[DONE]":
            continue
        for choice in json.loads(data).get("choices", []):
            content = choice["delta"].get("content")
            if content:
                texts.append(content)
    return texts


def test_a_paced_stream_reaches_its_creator_through_the_sink_whole_and_in_order(
    faults: FaultServer,
) -> None:
    pieces = [f"piece {i} " for i in range(60)]
    faults.script(openai_chat_stream(pieces).reply(delay=0.002))
    hub = KeepingHub(resume_window=0)
    with (
        run_gateway(upstream_config(faults.url + "/v1"), hub=hub) as gateway,
        httpx.stream("POST", gateway.url + CHAT, json=REQUEST, timeout=30) as response,
    ):
        assert response.status_code == 200
        text = response.read().decode()
    events = frames(text)
    assert [number for number, _ in events] == list(range(1, len(events) + 1))
    assert contents(events) == pieces
    assert events[-1][1] == "[DONE]"
    # Written by the producer, to the end: the sink took every frame and the stream's end.
    assert len(hub.sinks) == 1
    sink = hub.sinks[0]
    assert isinstance(sink, DirectWriter)
    assert sink.done.result() is True and sink.after == len(events)


def test_a_creator_that_falls_behind_goes_on_from_the_follower_and_misses_nothing(
    faults: FaultServer,
) -> None:
    # ~8 MB of frames sent at once: more than the kernel's socket buffers hold, all kept.
    pieces = [f"{i:05d}" + "y" * 400 for i in range(12_000)]
    faults.script(openai_chat_stream(pieces).reply())
    hub = KeepingHub(resume_window=0, max_bytes=64 << 20)
    with run_gateway(upstream_config(faults.url + "/v1"), hub=hub) as gateway:
        host, port = gateway.url.removeprefix("http://").split(":")
        with socket.socket() as sock:
            # Set before connecting, so the window is small from the start (and the socket
            # holds little of what the gateway writes while this client reads nothing).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.connect((host, int(port)))
            body = json.dumps(REQUEST).encode()
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            # Reads nothing until the gateway's writes fill the socket and its transport
            # pauses (the sink stops), or the whole stream went into the buffers.
            deadline = time.monotonic() + 30
            while not (hub.sinks and hub.sinks[0].done.done()):  # type: ignore[attr-defined]
                assert time.monotonic() < deadline, "the sink neither stopped nor finished"
                time.sleep(0.05)
            received = bytearray()
            sock.settimeout(20)
            while not received.endswith(b"0\r\n\r\n"):
                piece = sock.recv(1 << 16)
                assert piece, "the gateway closed the stream before its end"
                received += piece
    head, _, chunked = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    events = frames(_dechunk(chunked).decode())
    assert [number for number, _ in events] == list(range(1, len(events) + 1))
    assert contents(events) == pieces
    # The sink stopped part-way (the transport asked for a pause) and the follower went on.
    sink = hub.sinks[0]
    assert isinstance(sink, DirectWriter)
    assert sink.done.result() is False and 0 < sink.after < len(events)


def test_a_creator_gone_mid_stream_stops_the_upstream(faults: FaultServer) -> None:
    stream = openai_chat_stream([f"piece {i} " for i in range(10)])
    faults.script(stream.reply([*stream.upto(5), Stall(30, ping=stream.ping, every=0.05)]))
    hub = KeepingHub(resume_window=0)
    with run_gateway(upstream_config(faults.url + "/v1"), hub=hub) as gateway:
        with httpx.stream("POST", gateway.url + CHAT, json=REQUEST, timeout=30) as response:
            for line in response.iter_lines():
                if '"piece 4 "' in line:
                    break
        # The client left while its sink was attached: no reader is left, and (no resume
        # window) the producer stops, closing its upstream connection.
        assert faults.wait_for_disconnect(timeout=5) is not None
        deadline = time.monotonic() + 5
        while httpx.get(gateway.url + "/healthz").json()["active_streams"]:
            assert time.monotonic() < deadline, "the producer went on after its client left"
            time.sleep(0.05)
    assert isinstance(hub.sinks[0], DirectWriter)


def test_another_reader_follows_while_the_creator_is_written_directly(
    faults: FaultServer,
) -> None:
    pieces = [f"piece {i} " for i in range(40)]
    faults.script(openai_chat_stream(pieces).reply(delay=0.01))
    hub = KeepingHub(resume_window=5)
    with (
        run_gateway(upstream_config(faults.url + "/v1"), hub=hub) as gateway,
        httpx.stream("POST", gateway.url + CHAT, json=REQUEST, timeout=30) as response,
    ):
        stream_id = response.headers["x-spout-stream-id"]
        lines = response.iter_lines()
        read = [next(lines)]  # the first frame's id line: the sink is attached
        with httpx.stream(
            "GET", f"{gateway.url}/v1/streams/{stream_id}?after=0", timeout=30
        ) as other:
            second = other.read().decode()
        read += list(lines)
    creator = frames("\n".join(read))
    follower = frames(second)
    assert contents(follower) == pieces
    # The same frames with the same ids, the creator's written by the producer itself.
    assert creator == follower
    assert isinstance(hub.sinks[0], DirectWriter) and hub.sinks[0].done.result() is True


def _dechunk(body: bytes) -> bytes:
    """A chunked HTTP/1.1 body, whole."""
    out = bytearray()
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return bytes(out)
        out += body[:size]
        body = body[size + 2 :]
