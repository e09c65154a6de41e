"""Two gateway replicas sharing one real ``redis-server``: they act as one.

A stream started through replica A is resumed, followed, and cancelled through replica B;
a reader leaving on one replica counts for the producer on the other. The upstream is the
paced loopback server of ``test_streams.py``, which records when the gateway's connection to
it closed; and every scenario of ``test_streams.py`` runs again against the Redis hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import test_streams
from gateway_server import RunningGateway, free_port, run_gateway, upstream_config
from redis_server import run_redis
from test_streams import PIECES, EventReader, body, parse_sse, read_events, text_of

from fault_server import FaultServer, openai_chat_stream
from spout.gateway._hub import EventsExpired, StreamNotFound
from spout.gateway._redis_hub import RedisHub

CHAT = "/v1/chat/completions"
#: Long enough that a stream stopped late (a busy machine) is still seen stopped, not ended.
LONG = [f"w{i} " for i in range(200)]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@contextlib.contextmanager
def two_replicas(
    faults: FaultServer, redis_url: str, **settings: Any
) -> Iterator[tuple[RunningGateway, RunningGateway]]:
    # Streams still running when a test ends get a second to finish, not the default ten: a
    # replica that waited for them could outlast run_gateway's wait for it to stop.
    settings.setdefault("shutdown_deadline", 1.0)
    config = functools.partial(upstream_config, faults.url + "/v1", redis_url=redis_url)
    with run_gateway(config(**settings)) as a, run_gateway(config(**settings)) as b:
        assert isinstance(a.app.state.gateway.hub, RedisHub)
        yield a, b


def stream_url(gateway: RunningGateway, stream_id: str) -> str:
    return f"{gateway.url}/v1/streams/{stream_id}"


def test_a_stream_started_on_one_replica_resumes_on_the_other(
    faults: FaultServer, redis_url: str
) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.02))
    with (
        two_replicas(faults, redis_url, resume_window=5) as (a, b),
        httpx.Client(timeout=10) as client,
    ):
        with client.stream("POST", a.url + CHAT, json=body()) as response:
            stream_id = response.headers["x-spout-stream-id"]
            first = read_events(response, 6)
        with client.stream(
            "GET", stream_url(b, stream_id), headers={"Last-Event-ID": str(first[-1][0])}
        ) as response:
            assert response.status_code == 200
            assert response.headers["x-spout-stream-id"] == stream_id
            rest = read_events(response)
    numbers = [number for number, _ in first + rest]
    assert numbers == list(range(1, len(numbers) + 1))
    assert text_of(first + rest) == "".join(PIECES)
    assert rest[-1][1] == "[DONE]"
    assert len(faults.requests) == 1
    assert not faults.disconnects


def test_readers_on_both_replicas_get_the_same_bytes(faults: FaultServer, redis_url: str) -> None:
    faults.script(openai_chat_stream(PIECES[:20]).reply(delay=0.02))
    with (
        two_replicas(faults, redis_url) as (a, b),
        httpx.Client(timeout=10) as client,
        client.stream("POST", a.url + CHAT, json=body()) as owner,
    ):
        stream_id = owner.headers["x-spout-stream-id"]
        reader = EventReader(owner)
        head = reader.take(3)
        with (
            client.stream("GET", stream_url(a, stream_id) + "?after=0") as on_a,
            client.stream("GET", stream_url(b, stream_id) + "?after=0") as on_b,
        ):
            # both follow live, at once: read them in turns
            raw_a: Iterator[bytes] | None = on_a.iter_raw()
            raw_b: Iterator[bytes] | None = on_b.iter_raw()
            bytes_a, bytes_b = bytearray(), bytearray()
            while raw_a is not None or raw_b is not None:
                if raw_a is not None and (chunk := next(raw_a, None)) is not None:
                    bytes_a += chunk
                else:
                    raw_a = None
                if raw_b is not None and (chunk := next(raw_b, None)) is not None:
                    bytes_b += chunk
                else:
                    raw_b = None
        events = head + reader.take()
    assert bytes(bytes_a) == bytes(bytes_b)
    assert parse_sse(bytes(bytes_b)) == events
    assert text_of(events) == "".join(PIECES[:20])
    assert len(faults.requests) == 1


def test_a_cancel_through_the_other_replica_stops_the_upstream_at_once(
    faults: FaultServer, redis_url: str
) -> None:
    faults.script(openai_chat_stream(LONG).reply(delay=0.05))
    with (
        two_replicas(faults, redis_url, resume_window=30) as (a, b),
        httpx.Client(timeout=10) as client,
    ):
        with client.stream("POST", a.url + CHAT, json=body()) as response:
            stream_id = response.headers["x-spout-stream-id"]
            reader = EventReader(response)
            head = reader.take(3)
            assert client.get(b.url + "/healthz").json()["active_streams"] == 0
            assert client.get(a.url + "/healthz").json()["active_streams"] == 1
            cancelled = client.delete(stream_url(b, stream_id))
            assert cancelled.status_code == 200
            assert cancelled.json() == {"id": stream_id, "cancelled": True, "status": "running"}
            rest = reader.take()
            events = head + rest
        disconnect = faults.wait_for_disconnect(timeout=5)
        assert disconnect is not None
        assert disconnect.events_sent < 15
        assert rest and "cancelled" in rest[-1][1]
        assert all(data != "[DONE]" for _, data in rest)
        again = client.delete(stream_url(b, stream_id))
        assert again.json() == {"id": stream_id, "cancelled": False, "status": "cancelled"}
        # the whole stream, its end included, is kept for the retention time, on both
        for gateway in (a, b):
            with client.stream("GET", stream_url(gateway, stream_id) + "?after=0") as replay:
                assert read_events(replay) == events


def test_readers_on_both_replicas_count_with_no_resume_window(
    faults: FaultServer, redis_url: str
) -> None:
    faults.script(openai_chat_stream(LONG).reply(delay=0.05))
    with (
        two_replicas(faults, redis_url, resume_window=0) as (a, b),
        httpx.Client(timeout=10) as client,
    ):
        with client.stream("POST", a.url + CHAT, json=body()) as owner:
            stream_id = owner.headers["x-spout-stream-id"]
            reader = EventReader(owner)  # kept: a dropped iterator would close the response
            reader.take(2)
            follower = client.stream("GET", stream_url(b, stream_id) + "?after=0")
            response = follower.__enter__()
            follow = EventReader(response)
            follow.take(3)
        # the creator left on A, a reader is still on B: the upstream goes on
        time.sleep(0.4)
        assert not faults.disconnects
        follow.take(2)
        follower.__exit__(None, None, None)
        left = time.monotonic()
        disconnect = faults.wait_for_disconnect(timeout=5)
    assert disconnect is not None
    assert disconnect.at - left < 2
    assert disconnect.events_sent < 100


def test_a_reader_comes_back_on_the_other_replica_within_the_resume_window(
    faults: FaultServer, redis_url: str
) -> None:
    faults.script(openai_chat_stream(LONG).reply(delay=0.05))
    with (
        two_replicas(faults, redis_url, resume_window=1) as (a, b),
        httpx.Client(timeout=10) as client,
    ):
        # leaves A, comes back on B within the window: nothing stopped, nothing lost
        with client.stream("POST", a.url + CHAT, json=body()) as response:
            stream_id = response.headers["x-spout-stream-id"]
            first = read_events(response, 4)
        time.sleep(0.3)
        with client.stream(
            "GET", stream_url(b, stream_id), headers={"Last-Event-ID": str(first[-1][0])}
        ) as response:
            rest = read_events(response, 6)
        # ... and leaves B for good: A stops the upstream once the window passed
        left = time.monotonic()
        disconnect = faults.wait_for_disconnect(timeout=5)
        assert disconnect is not None
        assert 0.9 < disconnect.at - left < 3
        numbers = [number for number, _ in first + rest]
        assert numbers == list(range(1, 11))
        with client.stream("GET", stream_url(b, stream_id) + "?after=10") as response:
            tail = read_events(response)
    assert "cancelled" in tail[-1][1]
    text = text_of(first + rest + tail[:-1])
    assert text and "".join(LONG).startswith(text)
    assert len(faults.requests) == 1


def test_frames_no_longer_kept_are_expired_on_every_replica(
    faults: FaultServer, redis_url: str
) -> None:
    faults.script(openai_chat_stream(PIECES[:20]).reply(delay=0.01))
    with (
        two_replicas(faults, redis_url, max_stream_events=5) as (a, b),
        httpx.Client(timeout=10) as client,
    ):
        response = client.post(a.url + CHAT, json=body())
        whole = parse_sse(response.content)
        stream_id = response.headers["x-spout-stream-id"]
        last = whole[-1][0]
        assert whole[-1][1] == "[DONE]"
        assert last is not None and last > 5
        for gateway in (a, b):
            gone = client.get(stream_url(gateway, stream_id) + "?after=0")
            assert gone.status_code == 410
            assert gone.json()["error"]["type"] == "events_expired"
            assert f"before {last - 4} " in gone.json()["error"]["message"]
            kept = client.get(stream_url(gateway, stream_id) + f"?after={last - 3}")
            assert kept.status_code == 200
            assert parse_sse(kept.content) == whole[-3:]


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_two_hubs_share_frames_numbers_ends_and_cancels(redis_url: str) -> None:
    a = RedisHub(redis_url, resume_window=30, max_events=3)
    b = RedisHub(redis_url, resume_window=30, max_events=3)
    try:
        stops: list[str] = []
        await a.create("st_share", {"protocol": "openai"})
        a.on_stop("st_share", stops.append)
        with pytest.raises(ValueError, match="exists"):
            await b.create("st_share", {})
        await a.append("st_share", [b"one", b"two"])
        follower = b.follow("st_share", 0)
        assert await anext(follower) == (1, b"one")
        meta = await b.meta("st_share")
        assert meta == {"protocol": "openai", "status": "running", "events": "2", "readers": "2"}
        assert (await a.active(), await b.active()) == (1, 0)
        assert await b.cancel("st_share")
        assert await wait_until(lambda: stops == ["cancelled"])
        await a.append("st_share", [b"three", b"four"])
        await a.finish("st_share", "cancelled")
        assert [frame async for frame in follower] == [(2, b"two"), (3, b"three"), (4, b"four")]
        assert not await b.cancel("st_share")
        for _ in range(100):  # the reader's leaving is recorded in the background
            meta = await b.meta("st_share")
            assert meta is not None
            if meta["readers"] == "0":
                break
            await asyncio.sleep(0.01)
        assert (meta["status"], meta["events"], meta["readers"]) == ("cancelled", "4", "0")
        with pytest.raises(EventsExpired, match="before 2 "):
            await anext(b.follow("st_share", 0))
        assert [n async for n, _ in a.follow("st_share", 1)] == [2, 3, 4]
        assert [n async for n, _ in b.follow("st_share", 4)] == []
        assert [n async for n, _ in b.follow("st_share", 99)] == []
        with pytest.raises(StreamNotFound):
            await anext(b.follow("st_nope", 0))
        assert await b.meta("st_nope") is None
        assert not await b.cancel("st_nope")
        assert (await a.active(), stops) == (0, ["cancelled"])
    finally:
        await a.aclose()
        await b.aclose()


async def test_the_last_reader_on_any_hub_leaving_abandons_the_stream(redis_url: str) -> None:
    a = RedisHub(redis_url, resume_window=0)
    b = RedisHub(redis_url, resume_window=0)
    try:
        stops: list[str] = []
        await a.create("st_leave", {})
        a.on_stop("st_leave", stops.append)
        await a.append("st_leave", [b"one"])
        creator = a.follow("st_leave", 0, creator=True)
        reader = b.follow("st_leave", 0)
        assert isinstance(creator, AsyncGenerator)  # an async generator, which the test closes
        assert isinstance(reader, AsyncGenerator)
        assert await anext(creator) == (1, b"one")
        assert await anext(reader) == (1, b"one")
        await creator.aclose()  # a reader is left, on B
        await asyncio.sleep(0.3)
        assert stops == []
        await reader.aclose()
        assert await wait_until(lambda: stops == ["abandoned"], timeout=2)
        await a.finish("st_leave", "cancelled")
    finally:
        await a.aclose()
        await b.aclose()


async def test_without_redis_each_call_fails_and_the_hub_still_closes() -> None:
    hub = RedisHub(f"redis://127.0.0.1:{free_port()}/0")
    for _ in range(2):  # tried again each time, not a failure kept from the first
        with pytest.raises(redis.ConnectionError):
            await hub.create("st_x", {})
    await hub.aclose()


# Every scenario of test_streams.py, against the Redis hub (one replica).
SCENARIOS = [
    "test_a_stream_has_an_id_and_numbered_events",
    "test_resume_after_a_cut_connection_misses_and_repeats_nothing",
    "test_two_readers_of_one_stream_get_the_same_events",
    "test_cancel_stops_the_upstream_at_once",
    "test_a_reader_that_leaves_stops_the_upstream_with_no_resume_window",
    "test_a_reader_that_leaves_has_the_resume_window_to_come_back",
    "test_an_upstream_error_before_any_byte_keeps_its_status",
    "test_an_upstream_error_mid_stream_is_an_error_event",
    "test_unknown_things_are_named",
    "test_health_and_metrics",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_memory_scenarios_pass_with_redis(
    scenario: str, faults: FaultServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        test_streams, "upstream_config", functools.partial(upstream_config, redis_url=redis_url)
    )
    getattr(test_streams, scenario)(faults)
