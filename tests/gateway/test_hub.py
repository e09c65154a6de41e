"""MemoryHub: a stream's bounded, numbered log; followers; when the upstream must stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from spout.gateway._hub import EventsExpired, MemoryHub, StreamNotFound


async def collect(
    hub: MemoryHub, stream_id: str, after: int = 0, **kw: bool
) -> list[tuple[int, bytes]]:
    return [item async for item in hub.follow(stream_id, after, **kw)]


async def test_followers_get_numbered_frames_then_follow_live_until_the_end() -> None:
    hub = MemoryHub()
    await hub.create("s", {"protocol": "openai"})
    await hub.append("s", [b"a", b"b"])
    late: list[tuple[int, bytes]] = []

    async def follower() -> None:
        async for item in hub.follow("s", 1):
            late.append(item)

    task = asyncio.create_task(follower())
    await asyncio.sleep(0)
    await hub.append("s", [b"c"])
    await hub.finish("s", "done")
    await asyncio.wait_for(task, 1)
    assert late == [(2, b"b"), (3, b"c")]
    assert await collect(hub, "s") == [(1, b"a"), (2, b"b"), (3, b"c")]
    meta = await hub.meta("s")
    assert meta == {"protocol": "openai", "status": "done", "events": "3", "readers": "1"}
    await hub.aclose()


async def test_the_log_is_bounded_and_a_reader_behind_it_is_told() -> None:
    hub = MemoryHub(max_events=5)
    await hub.create("s", {})
    await hub.append("s", [b"%d" % i for i in range(1, 13)])
    await hub.finish("s", "done")
    # the last five are kept: 8..12
    assert await collect(hub, "s", 7) == [(n, b"%d" % n) for n in range(8, 13)]
    with pytest.raises(EventsExpired, match="events before 8"):
        await collect(hub, "s", 0)
    await hub.aclose()


async def test_a_slow_reader_is_told_once_the_log_moved_past_it() -> None:
    hub = MemoryHub(max_events=3)
    await hub.create("s", {})
    await hub.append("s", [b"1", b"2"])
    reader = hub.follow_batches("s", 0)
    assert await anext(reader) == [(1, b"1"), (2, b"2")]  # all there is, at once
    await hub.append("s", [b"3"])
    assert await anext(reader) == [(3, b"3")]
    await hub.append("s", [b"4", b"5", b"6", b"7"])  # 4 dropped before the reader came
    with pytest.raises(EventsExpired, match="events before 5"):
        await anext(reader)
    await reader.aclose()
    await hub.aclose()


async def test_finished_streams_expire_after_the_retention_time() -> None:
    hub = MemoryHub(retention=0.05)
    await hub.create("s", {})
    await hub.finish("s", "done")
    assert await hub.meta("s") is not None
    await asyncio.sleep(0.1)
    assert await hub.meta("s") is None
    with pytest.raises(StreamNotFound):
        await collect(hub, "s")
    await hub.aclose()


async def test_the_last_reader_leaving_stops_the_stream_after_the_resume_window() -> None:
    hub = MemoryHub(resume_window=0.1)
    stops: list[str] = []
    await hub.create("s", {})
    hub.on_stop("s", stops.append)
    await hub.append("s", [b"1"])
    reader = hub.follow("s", 0, creator=True)
    assert isinstance(reader, AsyncGenerator)  # an async generator, which the test closes
    await anext(reader)
    await reader.aclose()  # the creator left
    await asyncio.sleep(0.05)
    back = hub.follow("s", 1)  # ... and came back within the window
    assert isinstance(back, AsyncGenerator)
    task = asyncio.ensure_future(anext(back))
    await asyncio.sleep(0.15)
    assert stops == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await back.aclose()  # left again, for good
    await asyncio.sleep(0.15)
    assert stops == ["abandoned"]
    await hub.aclose()


async def test_no_resume_window_stops_at_once_and_cancel_stops_once() -> None:
    hub = MemoryHub(resume_window=0)
    stops: list[str] = []
    await hub.create("s", {})
    hub.on_stop("s", stops.append)
    reader = hub.follow("s", 0, creator=True)
    assert isinstance(reader, AsyncGenerator)  # an async generator, which the test closes
    task = asyncio.ensure_future(anext(reader))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await reader.aclose()
    assert stops == ["abandoned"]

    await hub.create("t", {})
    hub.on_stop("t", stops.append)
    assert await hub.cancel("t") is True
    assert await hub.cancel("t") is True  # still stopping: the producer is not told twice
    await hub.finish("t", "cancelled")
    assert await hub.cancel("t") is False
    assert await hub.cancel("unknown") is False
    assert stops == ["abandoned", "cancelled"]
    assert await hub.active() == 1  # "s": its producer was told to stop, has not finished
    await hub.aclose()
