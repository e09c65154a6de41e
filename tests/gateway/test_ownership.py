"""Conversations and streams belong to the key that made them (issue #24, points 1, 4, 11).

A gateway with a keys file holding two keys, alice and bob: bob's conversations and streams
are not there for alice (the 404 of an unknown id, on list, read, id prefix, continue, follow
and cancel), also across two replicas sharing one real ``redis-server``. Without keys nothing
changed. No answer names the conversation store's file. The upstream is the loopback
FaultServer speaking OpenAI's chat completions; nothing is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_server import RunningGateway, run_gateway, upstream_config
from redis_server import run_redis
from test_streams import EventReader, text_of
from websockets.sync.client import connect

from fault_server import FaultServer, openai_chat_stream
from spout.conversations import Store
from spout.gateway._keys import add_key

CHAT = "/v1/chat/completions"
HEADER = "x-spout-conversation"
PIECES = [f"w{i} " for i in range(200)]
#: A stream id no stream has (the shape of a real one).
UNKNOWN_STREAM = "st_" + "0" * 24


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        server.route(lambda request: openai_chat_stream(["Fine."]).reply())
        yield server


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """A keys file with alice and bob; each one's request headers."""
    path = tmp_path / "keys.txt"
    made = {name: add_key(path, name) for name in ("alice", "bob")}
    return path, {name: {"Authorization": f"Bearer {key}"} for name, key in made.items()}


def chat(content: str, *, stream: bool = True) -> dict[str, Any]:
    return {"model": "up", "messages": [{"role": "user", "content": content}], "stream": stream}


def unknown_answer(client: httpx.Client, url: str, asked: str, instead: str) -> Any:
    """The answer to ``url`` (naming ``asked``, which nothing has) as it reads for ``instead``."""
    response = client.get(url)
    assert response.status_code == 404
    return json.loads(response.text.replace(asked, instead))


# -- conversations ---------------------------------------------------------------------------


def test_a_keys_conversations_are_not_there_for_another_key(
    faults: FaultServer, keys: tuple[Path, dict[str, dict[str, str]]], tmp_path: Path
) -> None:
    path, headers = keys
    store_path = tmp_path / "conversations.db"
    with Store(store_path) as store:  # made by the CLI or the library: no key owns it
        store.append_turns("01nokey0000000000000000000", [])
    config = upstream_config(faults.url + "/v1", keys_file=path, conversation_store=store_path)
    with (
        run_gateway(config) as gateway,
        httpx.Client(base_url=gateway.url, headers=headers["alice"]) as alice,
        httpx.Client(base_url=gateway.url, headers=headers["bob"]) as bob,
    ):
        made = bob.post(CHAT, json=chat("Bob's secret plan."), headers={HEADER: "new"})
        assert made.status_code == 200
        bobs = made.headers[HEADER]
        mine = alice.post(CHAT, json=chat("Alice's question."), headers={HEADER: "new"})
        alices = mine.headers[HEADER]

        # Each lists only its own; the conversation no key made is nobody's.
        assert [c["id"] for c in alice.get("/v1/conversations").json()["data"]] == [alices]
        assert [c["id"] for c in bob.get("/v1/conversations").json()["data"]] == [bobs]

        # Reading bob's, by id or by a prefix of his alone, is the 404 of an id nothing has.
        never = "01zzzzzzzzzzzzzzzzzzzzzzzz"
        split = next(n for n in range(26) if alices[n] != bobs[n])  # ids start with the time
        bob_only = bobs[: max(4, split + 1)]
        for asked in (bobs, bob_only, "01nokey0000000000000000000", "01nokey"):
            response = alice.get(f"/v1/conversations/{asked}")
            assert response.status_code == 404, asked
            fake = never[: len(asked)]
            assert response.json() == unknown_answer(
                alice, f"/v1/conversations/{fake}", fake, asked
            )
            assert "Bob" not in response.text
        # A prefix both share is alice's own alone (bob's does not make it ambiguous).
        if split >= 4:
            assert alice.get(f"/v1/conversations/{bobs[:split]}").json()["id"] == alices

        # Continuing bob's: 404, nothing asked upstream, and bob's conversation unchanged.
        asked_before = len(faults.requests)
        response = alice.post(CHAT, json=chat("Adding to it."), headers={HEADER: bobs})
        assert response.status_code == 404
        assert response.json()["error"]["message"] == (
            f"no stored conversation {bobs!r} ({HEADER}: send 'new' to start one)"
        )
        assert len(faults.requests) == asked_before
        response = alice.post(
            CHAT, json=chat("Adding to it.", stream=False), headers={HEADER: bobs}
        )
        assert response.status_code == 404

        # Bob keeps reading and continuing his own.
        one = bob.get(f"/v1/conversations/{bobs[:6]}").json()
        assert one["id"] == bobs
        assert [m["content"] for m in one["messages"]] == ["Bob's secret plan.", "Fine."]
        response = bob.post(CHAT, json=chat("And then?"), headers={HEADER: bobs})
        assert response.status_code == 200
        assert bob.get(f"/v1/conversations/{bobs}").json()["messages"][-2]["content"] == (
            "And then?"
        )
    with Store(store_path) as store:
        assert store.get(bobs).turn_count == 2
        assert store.get(alices).turn_count == 1


def test_without_keys_every_caller_still_sees_every_conversation(
    faults: FaultServer, tmp_path: Path
) -> None:
    store_path = tmp_path / "conversations.db"
    with Store(store_path) as store:
        store.append_turns("01nokey0000000000000000000", [])
    config = upstream_config(faults.url + "/v1", conversation_store=store_path)
    with run_gateway(config) as gateway, httpx.Client(base_url=gateway.url) as client:
        made = client.post(CHAT, json=chat("Hello."), headers={HEADER: "new"})
        conversation_id = made.headers[HEADER]
        listed = [c["id"] for c in client.get("/v1/conversations").json()["data"]]
        assert sorted(listed) == sorted([conversation_id, "01nokey0000000000000000000"])
        assert client.get(f"/v1/conversations/{conversation_id[:4]}").status_code == 200
        again = client.post(CHAT, json=chat("Again."), headers={HEADER: conversation_id})
        assert again.status_code == 200
        with client.stream("POST", CHAT, json=chat("Count.")) as response:
            stream_id = response.headers["x-spout-stream-id"]
            response.read()
        assert client.get(f"/v1/streams/{stream_id}?after=0").status_code == 200


def test_answers_never_name_the_conversation_store_file(
    faults: FaultServer,
    keys: tuple[Path, dict[str, dict[str, str]]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, headers = keys
    store_path = tmp_path / "private-dir" / "conversations.db"
    config = upstream_config(faults.url + "/v1", keys_file=path, conversation_store=store_path)
    with (
        run_gateway(config) as gateway,
        httpx.Client(base_url=gateway.url, headers=headers["alice"]) as alice,
    ):
        first = alice.post(CHAT, json=chat("one"), headers={HEADER: "new"}).headers[HEADER]
        alice.post(CHAT, json=chat("two"), headers={HEADER: "new"})
        answers = [
            alice.get("/v1/conversations/01zzzzzzzzzzzzzzzzzzzzzzzz"),  # unknown
            alice.get("/v1/conversations/01zz"),  # no such prefix
            alice.get("/v1/conversations/01"),  # too short for a prefix
            alice.get(f"/v1/conversations/{first[:4]}"),  # both of hers start so: ambiguous
        ]
        for response in answers[:3]:
            assert response.status_code == 404
            assert response.json()["error"]["type"] == "not_found_error"
        assert answers[0].json()["error"]["message"] == (
            "no conversation has an id that is or starts with '01zzzzzzzzzzzzzzzzzzzzzzzz'"
        )
        for response in answers:
            assert str(store_path) not in response.text
            assert "private-dir" not in response.text

    # A store that cannot be opened: a 500 that says so, the path only in the log.
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a SQLite database, not at all" * 100)
    config = upstream_config(faults.url + "/v1", keys_file=path, conversation_store=broken)
    with (
        run_gateway(config) as gateway,
        httpx.Client(base_url=gateway.url, headers=headers["alice"]) as alice,
    ):
        listed = alice.get("/v1/conversations")
        read = alice.get("/v1/conversations/01zzzzzzzzzzzzzzzzzzzzzzzz")
        continued = alice.post(
            CHAT, json=chat("more"), headers={HEADER: "01zzzzzzzzzzzzzzzzzzzzzzzz"}
        )
        for response in (listed, read, continued):
            assert response.status_code == 500
            assert "conversation store failed" in response.json()["error"]["message"]
            assert str(broken) not in response.text and "broken.db" not in response.text
    # The operator's log has it.
    assert any(str(broken) in record.getMessage() for record in caplog.records)


# -- streams -----------------------------------------------------------------------------------


def follow_and_cancel_as(
    client: httpx.Client, url: str, stream_id: str, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response, Any]:
    """GET and DELETE ``/v1/streams/{stream_id}`` with ``headers``; and the 404 body an
    unknown id gets with those headers, as it would read for ``stream_id``."""
    followed = client.get(f"{url}/v1/streams/{stream_id}?after=0", headers=headers)
    cancelled = client.delete(f"{url}/v1/streams/{stream_id}", headers=headers)
    unknown = client.get(f"{url}/v1/streams/{UNKNOWN_STREAM}", headers=headers)
    assert unknown.status_code == 404
    return followed, cancelled, json.loads(unknown.text.replace(UNKNOWN_STREAM, stream_id))


def assert_others_stream_is_hidden(
    client: httpx.Client, url: str, stream_id: str, headers: dict[str, str]
) -> None:
    followed, cancelled, unknown = follow_and_cancel_as(client, url, stream_id, headers)
    assert followed.status_code == 404 and followed.json() == unknown
    assert cancelled.status_code == 404 and cancelled.json() == unknown


def test_a_keys_stream_cannot_be_followed_or_cancelled_by_another_key(
    faults: FaultServer, keys: tuple[Path, dict[str, dict[str, str]]]
) -> None:
    path, headers = keys
    faults.route(lambda request: openai_chat_stream(PIECES).reply(delay=0.01))
    config = upstream_config(faults.url + "/v1", keys_file=path, resume_window=30)
    with run_gateway(config) as gateway, httpx.Client(timeout=10) as client:
        with client.stream(
            "POST", gateway.url + CHAT, json=chat("Count."), headers=headers["bob"]
        ) as response:
            stream_id = response.headers["x-spout-stream-id"]
            reader = EventReader(response)
            head = reader.take(3)
            assert_others_stream_is_hidden(client, gateway.url, stream_id, headers["alice"])
            rest = reader.take()
        # alice's cancel did nothing: bob got the whole answer
        assert text_of(head + rest) == "".join(PIECES)
        assert rest[-1][1] == "[DONE]"

        # Bob follows and cancels his own.
        with client.stream(
            "POST", gateway.url + CHAT, json=chat("Count."), headers=headers["bob"]
        ) as response:
            stream_id = response.headers["x-spout-stream-id"]
            EventReader(response).take(2)
            with client.stream(
                "GET", f"{gateway.url}/v1/streams/{stream_id}?after=0", headers=headers["bob"]
            ) as followed:
                assert followed.status_code == 200
                assert EventReader(followed).take(2)
            cancelled = client.delete(
                f"{gateway.url}/v1/streams/{stream_id}", headers=headers["bob"]
            )
            assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True

        # A stream bob made over the WebSocket is his too.
        ws_url = gateway.url.replace("http://", "ws://") + "/v1/ws"
        with connect(ws_url, additional_headers=headers["bob"]) as ws:
            ws.send(json.dumps({"type": "request", "id": "r1", **chat("Count.")}))
            start = json.loads(ws.recv(timeout=10))
            assert start["type"] == "start"
            assert_others_stream_is_hidden(
                client, gateway.url, start["stream_id"], headers["alice"]
            )
            followed = client.get(
                f"{gateway.url}/v1/streams/{start['stream_id']}?after=0", headers=headers["bob"]
            )
            assert followed.status_code == 200


def test_replicas_sharing_redis_agree_on_a_streams_key(
    faults: FaultServer, keys: tuple[Path, dict[str, dict[str, str]]], tmp_path: Path
) -> None:
    path, headers = keys
    faults.route(lambda request: openai_chat_stream(PIECES).reply(delay=0.01))
    with run_redis(tmp_path) as redis_url:
        config = upstream_config(
            faults.url + "/v1",
            keys_file=path,
            redis_url=redis_url,
            resume_window=30,
            shutdown_deadline=1.0,
        )
        a: RunningGateway
        b: RunningGateway
        with (
            run_gateway(config) as a,
            run_gateway(config) as b,
            httpx.Client(timeout=10) as client,
            client.stream("POST", a.url + CHAT, json=chat("Count."), headers=headers["bob"]) as bob,
        ):
            stream_id = bob.headers["x-spout-stream-id"]
            reader = EventReader(bob)
            head = reader.take(3)
            for replica in (a, b):
                assert_others_stream_is_hidden(client, replica.url, stream_id, headers["alice"])
            with client.stream(
                "GET", f"{b.url}/v1/streams/{stream_id}?after=0", headers=headers["bob"]
            ) as followed:
                assert followed.status_code == 200
                assert EventReader(followed).take(2)
            cancelled = client.delete(f"{b.url}/v1/streams/{stream_id}", headers=headers["bob"])
            assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
            rest = reader.take()
        assert len(text_of(head + rest)) < len("".join(PIECES))
