"""Streams through the gateway: numbered events, resume, several readers, cancel, disconnect.

The upstream is a real loopback server (tests/fault_server.py) speaking OpenAI's chat
completions, paced so that the gateway's stream is still running while a test acts on it;
the upstream records when the gateway's connection to it closed and how many events it had
sent by then, which is what "no tokens paid for that nobody reads" means on the wire.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from gateway_server import run_gateway, upstream_config

from fault_server import FaultServer, error_reply, openai_chat_stream

CHAT = "/v1/chat/completions"
PIECES = [f"w{i} " for i in range(40)]


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def body(stream: bool = True, **extra: object) -> dict[str, object]:
    return {
        "model": "up",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        **extra,
    }


def parse_sse(raw: bytes) -> list[tuple[int | None, str]]:
    """(id, data) of each event in ``raw``."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        number = None
        data = []
        for line in block.split("\n"):
            if line.startswith("id: "):
                number = int(line[4:])
            elif line.startswith("data: "):
                data.append(line[6:])
        events.append((number, "\n".join(data)))
    return events


def text_of(events: list[tuple[int | None, str]]) -> str:
    out = []
    for _, data in events:
        if data == "[DONE]":
            continue
        chunk = json.loads(data)
        for choice in chunk.get("choices", []):
            out.append(choice["delta"].get("content") or "")
    return "".join(out)


class EventReader:
    """Events from a streamed response, as many as asked for at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self._raw = response.iter_raw()
        self._buffer = b""
        self._ready: list[tuple[int | None, str]] = []

    def take(self, count: int | None = None) -> list[tuple[int | None, str]]:
        """The next ``count`` events (or all the rest)."""
        while count is None or len(self._ready) < count:
            chunk = next(self._raw, None)
            if chunk is None:
                break
            self._buffer += chunk
            *whole, self._buffer = self._buffer.split(b"\n\n")
            for block in whole:
                self._ready.extend(parse_sse(block + b"\n\n"))
        taken = self._ready if count is None else self._ready[:count]
        self._ready = [] if count is None else self._ready[count:]
        return taken


def read_events(response: httpx.Response, count: int | None = None) -> list[tuple[int | None, str]]:
    return EventReader(response).take(count)


def test_a_stream_has_an_id_and_numbered_events(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:5]).reply())
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        response = httpx.post(gateway.url + CHAT, json=body(), timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-spout-stream-id"].startswith("st_")
    events = parse_sse(response.content)
    assert [number for number, _ in events] == list(range(1, len(events) + 1))
    assert events[-1][1] == "[DONE]"
    assert text_of(events) == "".join(PIECES[:5])


def test_resume_after_a_cut_connection_misses_and_repeats_nothing(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.02))
    with (
        run_gateway(upstream_config(faults.url + "/v1", resume_window=5)) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        with client.stream("POST", gateway.url + CHAT, json=body()) as response:
            stream_id = response.headers["x-spout-stream-id"]
            first = read_events(response, 6)
        # the connection is closed: resume from the last event seen
        last = first[-1][0]
        with client.stream(
            "GET", f"{gateway.url}/v1/streams/{stream_id}", headers={"Last-Event-ID": str(last)}
        ) as response:
            assert response.status_code == 200
            rest = read_events(response)
    numbers = [number for number, _ in first + rest]
    assert numbers == list(range(1, len(numbers) + 1))
    assert text_of(first + rest) == "".join(PIECES)
    # the upstream was read once, to its end
    assert len(faults.requests) == 1
    assert not faults.disconnects


def test_two_readers_of_one_stream_get_the_same_events(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:20]).reply(delay=0.02))
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(timeout=10) as client,
        client.stream("POST", gateway.url + CHAT, json=body()) as first,
    ):
        stream_id = first.headers["x-spout-stream-id"]
        reader = EventReader(first)
        head = reader.take(3)
        # a second reader joins while the first is reading, from the first event
        with client.stream("GET", f"{gateway.url}/v1/streams/{stream_id}?after=0") as second:
            follower = read_events(second)
        owner = head + reader.take()
    assert owner == follower
    assert text_of(owner) == "".join(PIECES[:20])


def test_cancel_stops_the_upstream_at_once(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.05))
    with (
        run_gateway(upstream_config(faults.url + "/v1", resume_window=30)) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        with client.stream("POST", gateway.url + CHAT, json=body()) as response:
            stream_id = response.headers["x-spout-stream-id"]
            reader = EventReader(response)
            reader.take(3)
            cancelled = client.delete(f"{gateway.url}/v1/streams/{stream_id}")
            assert cancelled.status_code == 200
            assert cancelled.json()["cancelled"] is True
            rest = reader.take()
        disconnect = faults.wait_for_disconnect(timeout=2)
        assert disconnect is not None
        assert disconnect.events_sent < 10
        # the reader learns why its stream ended: an error, no [DONE]
        assert rest and "cancelled" in rest[-1][1]
        assert all(data != "[DONE]" for _, data in rest)
        again = client.delete(f"{gateway.url}/v1/streams/{stream_id}")
        assert again.json()["cancelled"] is False


def test_a_reader_that_leaves_stops_the_upstream_with_no_resume_window(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.05))
    with (
        run_gateway(upstream_config(faults.url + "/v1", resume_window=0)) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        with client.stream("POST", gateway.url + CHAT, json=body()) as response:
            read_events(response, 3)
        left = time.monotonic()
        disconnect = faults.wait_for_disconnect(timeout=2)
    assert disconnect is not None
    assert disconnect.at - left < 0.5
    assert disconnect.events_sent < 10


def test_a_reader_that_leaves_has_the_resume_window_to_come_back(faults: FaultServer) -> None:
    faults.script(
        openai_chat_stream(PIECES).reply(delay=0.05),
        openai_chat_stream(PIECES).reply(delay=0.05),
    )
    with (
        run_gateway(upstream_config(faults.url + "/v1", resume_window=0.6)) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        # one reader leaves and never comes back: stopped once the window passed
        with client.stream("POST", gateway.url + CHAT, json=body()) as response:
            read_events(response, 3)
        left = time.monotonic()
        disconnect = faults.wait_for_disconnect(timeout=3)
        assert disconnect is not None
        assert 0.5 < disconnect.at - left < 1.5
        # another leaves, and comes back within the window: nothing stopped, nothing lost
        with client.stream("POST", gateway.url + CHAT, json=body()) as response:
            stream_id = response.headers["x-spout-stream-id"]
            first = read_events(response, 4)
        time.sleep(0.3)
        with client.stream(
            "GET",
            f"{gateway.url}/v1/streams/{stream_id}",
            headers={"Last-Event-ID": str(first[-1][0])},
        ) as response:
            rest = read_events(response)
    assert text_of(first + rest) == "".join(PIECES)
    assert len(faults.disconnects) == 1


def test_an_upstream_error_before_any_byte_keeps_its_status(faults: FaultServer) -> None:
    faults.script(error_reply("openai", 429, retry_after=7))
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        response = httpx.post(gateway.url + CHAT, json=body(), timeout=10)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["message"]


def test_an_upstream_error_mid_stream_is_an_error_event(faults: FaultServer) -> None:
    stream = openai_chat_stream(PIECES[:5])
    faults.script(stream.reply([*stream.head, *stream.upto(2), stream.error()]))
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        response = httpx.post(gateway.url + CHAT, json=body(), timeout=10)
    assert response.status_code == 200
    events = parse_sse(response.content)
    assert text_of(events[:-1]) == "".join(PIECES[:2])
    assert "error" in json.loads(events[-1][1])


def test_unknown_things_are_named(faults: FaultServer) -> None:
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        response = client.post(gateway.url + CHAT, json={**body(), "model": "nope"})
        assert response.status_code == 404
        assert "'nope'" in response.json()["error"]["message"]
        assert "up" in response.json()["error"]["message"]
        response = client.get(gateway.url + "/v1/streams/st_missing")
        assert response.status_code == 404
        response = client.delete(gateway.url + "/v1/streams/st_missing")
        assert response.status_code == 404
        response = client.post(
            gateway.url + CHAT, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert "not JSON" in response.json()["error"]["message"]
        models = client.get(gateway.url + "/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["up"]
    assert not faults.requests


def test_health_and_metrics(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:3]).reply())
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        assert client.get(gateway.url + "/healthz").json()["status"] == "ok"
        client.post(gateway.url + CHAT, json=body())
        client.post(gateway.url + CHAT, json={**body(), "model": "nope"})
        metrics = client.get(gateway.url + "/metrics").text
    assert 'spout_requests_total{route="/v1/chat/completions",status="200"} 1' in metrics
    assert 'spout_requests_total{route="/v1/chat/completions",status="404"} 1' in metrics
    assert "spout_time_to_first_token_seconds_count 1" in metrics
    assert "spout_active_streams 0" in metrics


def test_a_client_that_leaves_a_request_not_streamed_stops_its_upstream(
    faults: FaultServer,
) -> None:
    # The upstream takes 5 s to answer; the client gives up after 0.5 s.
    faults.script(openai_chat_stream(PIECES).reply(head_delay=5))
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gateway.url + CHAT, json=body(stream=False), timeout=0.5)
        left = time.monotonic()
        disconnect = faults.wait_for_disconnect(timeout=3)
        metrics = httpx.get(gateway.url + "/metrics").text
    assert disconnect is not None
    assert disconnect.at - left < 1.0
    assert 'spout_streams_stopped_total{reason="disconnected"} 1' in metrics
