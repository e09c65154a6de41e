"""The WebSocket endpoint ``GET /v1/ws``: several requests on one connection, spout's events
as JSON, cancel, and what a closed connection does to its streams.

A real gateway (uvicorn on loopback) and a real upstream (tests/fault_server.py, paced so a
stream is still running while a test acts on it), talked to with the ``websockets`` client.
"""

from __future__ import annotations

import itertools
import json
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_server import run_gateway, upstream_config
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from fault_server import FaultServer, Reply, Request, openai_chat_stream
from replay_server import transcript
from spout import File
from spout._events import (
    Citation,
    Event,
    FileEnd,
    FileStart,
    Finish,
    RawEvent,
    ReasoningDelta,
    RefusalDelta,
    ResponseStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)
from spout._response import Accumulator
from spout.gateway import event_from_dict, event_to_dict
from spout.gateway._keys import add_key
from spout.gateway._spout_wire import PROTOCOL

PIECES = [f"w{i} " for i in range(40)]
Message = dict[str, Any]


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "/v1/ws"


def request(request_id: str, content: str = "hi", **extra: Any) -> Message:
    return {
        "type": "request",
        "id": request_id,
        "model": "up",
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def send(ws: ClientConnection, message: Message) -> None:
    ws.send(json.dumps(message))


def recv(ws: ClientConnection) -> Message:
    return typing.cast(Message, json.loads(ws.recv(timeout=10)))


def until_end(ws: ClientConnection, *ids: str) -> list[Message]:
    """Messages until each of ``ids`` got its ``done`` or ``error``."""
    messages: list[Message] = []
    open_ids = set(ids)
    while open_ids:
        message = recv(ws)
        messages.append(message)
        if message["type"] in ("done", "error"):
            open_ids.discard(message["id"])
    return messages


def of(messages: list[Message], request_id: str) -> list[Message]:
    return [m for m in messages if m.get("id") == request_id]


def text_of(messages: list[Message]) -> str:
    return "".join(
        m["event"]["text"]
        for m in messages
        if m["type"] == "event" and m["event"]["type"] == "text"
    )


def by_content(replies: dict[str, Reply]) -> Any:
    """An upstream router: the reply for the request's last user message."""

    def choose(upstream: Request) -> Reply:
        return replies[upstream.json()["messages"][-1]["content"]]

    return choose


def test_a_request_streams_its_events_then_its_response(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:5]).reply())
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        with connect(ws_url(gateway.url)) as ws:
            send(ws, request("r1", temperature=0.5, stream=True))
            messages = until_end(ws, "r1")
        start, *events, done = messages
        assert start["type"] == "start" and start["id"] == "r1"
        assert start["stream_id"].startswith("st_")
        assert all(m["type"] == "event" and m["id"] == "r1" for m in events)
        assert [m["n"] for m in [*events, done]] == list(range(1, len(events) + 2))
        kinds = [m["event"]["type"] for m in events]
        assert kinds == ["response_start", *["text"] * 5, "usage", "finish"]
        assert events[0]["event"] == {
            "type": "response_start",
            "id": start["stream_id"],
            "model": "up",
        }
        assert text_of(events) == "".join(PIECES[:5])
        assert done["type"] == "done"
        assert done["response"]["text"] == "".join(PIECES[:5])
        assert done["response"]["finish_reason"] == "stop"
        assert done["response"]["usage"]["output_tokens"] == 5
        assert faults.requests[0].json()["temperature"] == 0.5
        # The same stream, followed over HTTP: one SSE event per message, numbered alike.
        replay = httpx.get(f"{gateway.url}/v1/streams/{start['stream_id']}?after=0", timeout=10)
    blocks = [b for b in replay.text.split("\n\n") if b.strip()]
    assert [block.split("\n")[0] for block in blocks] == [f"id: {m['n']}" for m in messages[1:]]
    data = [json.loads(block.split("\n")[1].removeprefix("data: ")) for block in blocks]
    assert data[:-1] == [m["event"] for m in events]
    assert data[-1] == {"type": "done", "response": done["response"]}


def test_two_requests_on_one_connection_interleave_and_both_complete(
    faults: FaultServer,
) -> None:
    a = openai_chat_stream([f"a{i} " for i in range(15)])
    b = openai_chat_stream([f"b{i} " for i in range(15)])
    faults.route(by_content({"a": a.reply(delay=0.02), "b": b.reply(delay=0.02)}))
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        connect(ws_url(gateway.url)) as ws,
    ):
        send(ws, request("ra", "a"))
        send(ws, request("rb", "b"))
        messages = until_end(ws, "ra", "rb")
    ids = [m["id"] for m in messages]
    first_done = next(i for i, m in enumerate(messages) if m["type"] == "done")
    assert {"ra", "rb"} <= set(ids[:first_done]), "one finished before the other began"
    switches = sum(1 for x, y in itertools.pairwise(ids) if x != y)
    assert switches > 4
    for request_id, stream in (("ra", a), ("rb", b)):
        mine = of(messages, request_id)
        assert text_of(mine) == stream.text()
        assert mine[-1]["type"] == "done"
        assert mine[-1]["response"]["text"] == stream.text()
        numbers = [m["n"] for m in mine[1:]]
        assert numbers == list(range(1, len(numbers) + 1))


def test_cancel_stops_one_request_at_once_and_the_other_finishes(faults: FaultServer) -> None:
    slow = openai_chat_stream(PIECES)
    other = openai_chat_stream([f"o{i} " for i in range(10)])
    faults.route(by_content({"slow": slow.reply(delay=0.05), "other": other.reply(delay=0.05)}))
    with (
        run_gateway(upstream_config(faults.url + "/v1", resume_window=30)) as gateway,
        connect(ws_url(gateway.url)) as ws,
    ):
        send(ws, request("slow", "slow"))
        send(ws, request("other", "other"))
        seen: list[Message] = []
        while len([m for m in of(seen, "slow") if m["type"] == "event"]) < 3:
            seen.append(recv(ws))
        send(ws, {"type": "cancel", "id": "slow"})
        seen += until_end(ws, "slow", "other")
        disconnect = faults.wait_for_disconnect(timeout=2)
        assert disconnect is not None
        assert disconnect.events_sent < 10
        slow_end = of(seen, "slow")[-1]
        assert slow_end["type"] == "error"
        assert slow_end["error"]["type"] == "cancelled"
        assert "cancelled" in slow_end["error"]["message"]
        assert PIECES[-1] not in text_of(of(seen, "slow"))
        other_end = of(seen, "other")[-1]
        assert other_end["type"] == "done"
        assert other_end["response"]["text"] == other.text()
        # the request is over: cancelling it again names the id, and nothing else changes
        send(ws, {"type": "cancel", "id": "slow"})
        rejected = recv(ws)
        assert rejected["type"] == "rejected" and rejected["id"] == "slow"
        assert "no running request 'slow'" in rejected["error"]["message"]
        status = gateway.call(gateway.app.state.gateway.hub.meta(slow_end_stream(seen)))
        assert status["status"] == "cancelled"
    assert len(faults.disconnects) == 1


def slow_end_stream(messages: list[Message]) -> str:
    return str(next(m["stream_id"] for m in messages if m["type"] == "start" and m["id"] == "slow"))


def test_cancel_before_the_first_event_stops_the_upstream(faults: FaultServer) -> None:
    stream = openai_chat_stream(PIECES)
    faults.script(stream.reply(head_delay=5))
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        connect(ws_url(gateway.url)) as ws,
    ):
        send(ws, request("r1"))
        faults.wait_for_requests(1)
        send(ws, {"type": "cancel", "id": "r1"})
        (end,) = until_end(ws, "r1")  # no start: the stream never began
        assert end["type"] == "error" and end["error"]["type"] == "cancelled"
        assert faults.wait_for_disconnect(timeout=2) is not None
        assert gateway.call(gateway.app.state.gateway.hub.active()) == 0


def test_a_closed_websocket_stops_its_streams_at_once_without_a_resume_window(
    faults: FaultServer,
) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.05))
    with run_gateway(upstream_config(faults.url + "/v1", resume_window=0)) as gateway:
        with connect(ws_url(gateway.url)) as ws:
            send(ws, request("r1"))
            for _ in range(4):
                recv(ws)
        left = time.monotonic()
        disconnect = faults.wait_for_disconnect(timeout=2)
        assert disconnect is not None
        assert disconnect.at - left < 0.5
        assert disconnect.events_sent < 10


def test_a_closed_websocket_leaves_its_streams_the_resume_window(faults: FaultServer) -> None:
    faults.script(
        openai_chat_stream(PIECES).reply(delay=0.05),
        openai_chat_stream(PIECES).reply(delay=0.05),
    )
    with (
        run_gateway(upstream_config(faults.url + "/v1", resume_window=0.6)) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        # nobody comes back: stopped once the window passed
        with connect(ws_url(gateway.url)) as ws:
            send(ws, request("r1"))
            for _ in range(4):
                recv(ws)
        left = time.monotonic()
        disconnect = faults.wait_for_disconnect(timeout=3)
        assert disconnect is not None
        assert 0.5 < disconnect.at - left < 1.5
        # the reader comes back over HTTP within the window: nothing stopped, nothing lost
        with connect(ws_url(gateway.url)) as ws:
            send(ws, request("r2"))
            first = [recv(ws) for _ in range(5)]
        time.sleep(0.3)
        stream_id = first[0]["stream_id"]
        last = first[-1]["n"]
        rest = client.get(
            f"{gateway.url}/v1/streams/{stream_id}", headers={"Last-Event-ID": str(last)}
        ).text
    events = [m["event"] for m in first[1:]]
    for block in rest.split("\n\n"):
        if block.strip():
            data = json.loads(block.split("\n")[1].removeprefix("data: "))
            if data["type"] != "done":
                events.append(data)
    assert "".join(e["text"] for e in events if e["type"] == "text") == "".join(PIECES)
    assert len(faults.disconnects) == 1


def test_a_gateway_shutting_down_closes_its_websockets_and_their_streams(
    faults: FaultServer,
) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.2))
    config = upstream_config(faults.url + "/v1", shutdown_deadline=0.5)
    with run_gateway(config) as gateway, connect(ws_url(gateway.url)) as ws:
        send(ws, request("r1"))
        for _ in range(3):
            recv(ws)
        gateway.server.should_exit = True  # as on SIGTERM
        with pytest.raises(ConnectionClosed):
            while True:
                recv(ws)
    assert faults.wait_for_disconnect(timeout=2) is not None


def test_bad_messages_are_named_and_the_connection_stays_usable(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:3]).reply())
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        connect(ws_url(gateway.url)) as ws,
    ):
        ws.send("{not json")
        answer = recv(ws)
        assert answer["type"] == "rejected" and answer["id"] is None
        assert "not JSON" in answer["error"]["message"]
        ws.send("[1, 2]")
        assert "JSON object" in recv(ws)["error"]["message"]
        send(ws, {"type": "hello", "id": "h"})
        answer = recv(ws)
        assert answer == {
            "type": "rejected",
            "id": "h",
            "error": {
                "type": "invalid_message",
                "message": "unknown message type 'hello': send 'request' or 'cancel'",
            },
        }
        send(ws, {"type": "cancel", "id": "nope"})
        assert "no running request 'nope'" in recv(ws)["error"]["message"]
        send(ws, {"type": "request", "messages": []})
        assert "needs an 'id'" in recv(ws)["error"]["message"]
        # A request the gateway refuses ends with an error, in the request's own id.
        send(ws, {**request("r1"), "model": "nope"})
        answer = recv(ws)
        assert answer["type"] == "error" and answer["id"] == "r1"
        assert answer["error"]["type"] == "not_found"
        assert "'nope'" in answer["error"]["message"]
        send(ws, request("r2", frequency_penalty_typo=1))
        answer = recv(ws)
        assert answer["type"] == "error" and answer["id"] == "r2"
        assert "frequency_penalty_typo" in answer["error"]["message"]
        assert answer["error"]["param"] == "frequency_penalty_typo"
        ws.send(b'{"type": "request", "id": "bin", "messages": 5}')  # a binary message
        answer = recv(ws)
        assert answer["type"] == "error" and answer["id"] == "bin"
        assert "messages" in answer["error"]["message"]
        assert not faults.requests
        # still usable: a request answers
        send(ws, request("r1"))
        messages = until_end(ws, "r1")
        assert messages[-1]["response"]["text"] == "".join(PIECES[:3])


def test_a_running_id_cannot_be_reused_until_its_end(faults: FaultServer) -> None:
    faults.script(
        openai_chat_stream(PIECES[:10]).reply(delay=0.02),
        openai_chat_stream(PIECES[:2]).reply(),
    )
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        connect(ws_url(gateway.url)) as ws,
    ):
        send(ws, request("r1"))
        assert recv(ws)["type"] == "start"
        send(ws, request("r1"))
        messages = until_end(ws, "r1")
        rejected = [m for m in messages if m["type"] == "rejected"]
        assert len(rejected) == 1
        assert "'r1' is still running" in rejected[0]["error"]["message"]
        assert messages[-1]["response"]["text"] == "".join(PIECES[:10])
        send(ws, request("r1"))  # ended: the id is free again
        assert until_end(ws, "r1")[-1]["response"]["text"] == "".join(PIECES[:2])


def test_an_upstream_error_is_the_request_error(faults: FaultServer) -> None:
    stream = openai_chat_stream(PIECES[:5])
    faults.script(stream.reply([*stream.head, *stream.upto(2)[1:], stream.error()]))
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        connect(ws_url(gateway.url)) as ws,
    ):
        send(ws, request("r1"))
        messages = until_end(ws, "r1")
    assert text_of(messages) == "".join(PIECES[:2])
    end = messages[-1]
    assert end["type"] == "error"
    assert end["error"]["type"] == "upstream"
    assert end["error"]["status"] == 502


def test_parallel_tool_calls_from_a_recorded_stream(faults: FaultServer) -> None:
    body, expected = transcript("openai_chat", "parallel_tool_calls")
    events = [block + b"\n\n" for block in body.split(b"\n\n") if block.strip()]
    faults.script(Reply(headers={"Content-Type": "text/event-stream"}, body=events))
    tools = [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        for name in ("get_weather", "get_time")
    ]
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        connect(ws_url(gateway.url)) as ws,
    ):
        send(ws, request("r1", "weather and time in Lisbon?", tools=tools))
        messages = until_end(ws, "r1")
    kinds = [m["event"]["type"] for m in messages if m["type"] == "event"]
    assert kinds.count("tool_call_start") == 2
    assert kinds.count("tool_call_end") == 2
    assert kinds.count("tool_call_delta") > 4
    response = messages[-1]["response"]
    assert response["finish_reason"] == "tool_calls"
    assert response["usage"]["input_tokens"] == expected["usage"]["input_tokens"]
    calls = [
        {k: call[k] for k in ("id", "name", "arguments", "arguments_raw")}
        for call in response["tool_calls"]
    ]
    assert calls == expected["tool_calls"]
    # A client folds the events back into spout's own Response: the same answer.
    accumulator = Accumulator()
    for message in messages:
        if message["type"] == "event":
            accumulator.add(event_from_dict(message["event"]))
    rebuilt = accumulator.response()
    assert [(c.id, c.name, c.arguments) for c in rebuilt.tool_calls] == [
        (c["id"], c["name"], c["arguments"]) for c in expected["tool_calls"]
    ]
    assert rebuilt.finish_reason == "tool_calls"


def test_post_spout_stream_is_the_same_events_as_sse(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:4]).reply())
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        body = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(f"{gateway.url}/v1/spout/stream", json=body, timeout=10)
    assert response.status_code == 200
    assert response.headers["x-spout-stream-id"].startswith("st_")
    data = [
        json.loads(block.split("\n")[1].removeprefix("data: "))
        for block in response.text.split("\n\n")
        if block.strip()
    ]
    assert "".join(d["text"] for d in data if d["type"] == "text") == "".join(PIECES[:4])
    assert data[-1]["type"] == "done"


def test_keys_are_checked_on_the_handshake_and_each_request_is_counted(
    faults: FaultServer, tmp_path: Path
) -> None:
    faults.route(lambda upstream: openai_chat_stream(PIECES[:2]).reply())
    path = tmp_path / "keys.txt"
    key = add_key(path, "alice", requests_per_minute=2)
    config = upstream_config(faults.url + "/v1", keys_file=path)
    with run_gateway(config) as gateway:
        for headers in ({}, {"Authorization": "Bearer not-a-key"}):
            with connect(ws_url(gateway.url), additional_headers=headers) as ws:
                answer = recv(ws)
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=5)
            assert answer["type"] == "rejected" and answer["id"] is None
            assert answer["error"]["type"] == "authentication"
            assert answer["error"]["status"] == 401
            assert ws.close_code == 1008
            assert ws.close_reason == answer["error"]["message"]
        with connect(
            ws_url(gateway.url), additional_headers={"Authorization": f"Bearer {key}"}
        ) as ws:
            for request_id in ("r1", "r2"):
                send(ws, request(request_id))
                assert until_end(ws, request_id)[-1]["type"] == "done"
            send(ws, request("r3"))
            (refused,) = until_end(ws, "r3")
            assert refused["type"] == "error"
            assert refused["error"]["type"] == "rate_limit"
            assert "2 requests per minute for 'alice'" in refused["error"]["message"]
            assert 0 < refused["error"]["retry_after"] <= 60
            send(ws, {"type": "cancel", "id": "r3"})  # still open, still answering
            assert recv(ws)["type"] == "rejected"
    assert len(faults.requests) == 2


def test_a_browser_page_from_another_origin_is_refused(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:2]).reply())
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        with connect(ws_url(gateway.url), origin=Origin("http://evil.example")) as ws:
            answer = recv(ws)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        assert answer["error"]["type"] == "permission"
        assert "'http://evil.example'" in answer["error"]["message"]
        assert ws.close_code == 1008
        # the gateway's own pages (the chat page) may
        with connect(ws_url(gateway.url), origin=Origin(gateway.url)) as ws:
            send(ws, request("r1"))
            assert until_end(ws, "r1")[-1]["type"] == "done"


EVERY_EVENT: list[Event] = [
    ResponseStart("resp_1", "m"),
    TextDelta("Hel"),
    RefusalDelta("I can't help with that."),
    ReasoningDelta("think"),
    ReasoningDelta("", signature="sig"),
    ToolCallStart(0, "call_1", "get_weather"),
    ToolCallDelta(0, '{"city": "Oslo"}'),
    ToolCallEnd(0, ToolCall("call_1", "get_weather", {"city": "Oslo"}, '{"city": "Oslo"}')),
    ToolResult(ToolCall("call_1", "get_weather", {"city": "Oslo"}, result=21), "21"),
    Usage(9, 5, {"cached_tokens": 2}),
    FileStart(0, "image/png"),
    FileEnd(0, File(data=b"\x89PNG\r\n\x1a\n", media_type="image/png")),
    Citation("It is sunny.", "https://example.com/w", "Weather", 0, 12, {"type": "url_citation"}),
    RawEvent("web_search_tool_result", {"content": []}),
    Finish("stop", "end_turn"),
]


def test_every_event_class_goes_to_json_and_back() -> None:
    classes = {type(event) for event in EVERY_EVENT}
    assert classes == set(typing.get_args(Event))
    for event in EVERY_EVENT:
        data = json.loads(json.dumps(event_to_dict(event)))
        assert event_from_dict(data) == event
    parsed = PROTOCOL.parse({"messages": [{"role": "user", "content": "hi"}], "stream": False})
    assert parsed.stream  # the spout protocol always streams
    encoder = PROTOCOL.encoder(parsed, response_id="st_1", model="m")
    assert encoder.feed(TextDelta("Hel")) == [b'data: {"type":"text","text":"Hel"}\n\n']
    assert encoder.feed(RefusalDelta("No.")) == [b'data: {"type":"refusal","text":"No."}\n\n']
    assert encoder.feed(ResponseStart("upstream_id", "upstream-model")) == []
