"""Chats kept through the gateway (header ``x-spout-conversation``) and read back with
``GET /v1/conversations`` and ``GET /v1/conversations/{id}``.

The upstream is the loopback FaultServer speaking OpenAI's chat completions; the store is the
test's own (``SPOUT_HOME`` is set per test in conftest.py), or ``conversation_store``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_server import run_gateway, upstream_config

from fault_server import FaultServer, Reply, error_reply, openai_chat_stream
from spout.conversations import Store

CHAT = "/v1/chat/completions"
HEADER = "x-spout-conversation"
PIECES = [f"w{i} " for i in range(30)]


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def chat(messages: list[dict[str, str]], *, stream: bool = True) -> dict[str, object]:
    return {"model": "up", "messages": messages, "stream": stream}


def streamed_text(raw: bytes) -> str:
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    out.append(choice["delta"].get("content") or "")
    return "".join(out)


def test_a_streamed_chat_is_kept_and_listed(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:3]).reply(), openai_chat_stream(["Fine."]).reply())
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(base_url=gateway.url) as client,
    ):
        first = [{"role": "user", "content": "Tell me about rivers."}]
        response = client.post(CHAT, json=chat(first), headers={HEADER: "new"})
        assert response.status_code == 200
        conversation_id = response.headers[HEADER]
        assert len(conversation_id) == 26
        assert streamed_text(response.content) == "w0 w1 w2 "

        # The next turn sends the whole history; only what it adds is stored.
        second = [
            *first,
            {"role": "assistant", "content": "w0 w1 w2 "},
            {"role": "user", "content": "And then?"},
        ]
        response = client.post(CHAT, json=chat(second), headers={HEADER: conversation_id})
        assert response.headers[HEADER] == conversation_id

        listed = client.get("/v1/conversations").json()
        assert listed["object"] == "list"
        (summary,) = listed["data"]
        assert summary["id"] == conversation_id
        assert summary["title"] == "Tell me about rivers."
        assert summary["model"] == "up"
        assert summary["models"] == ["openai:m"]
        assert summary["turn_count"] == 2
        assert summary["updated_at"] <= time.time()

        one = client.get(f"/v1/conversations/{conversation_id}").json()
        assert one["id"] == conversation_id
        assert one["model"] == "up"
        assert [(m["role"], m["content"]) for m in one["messages"]] == [
            ("user", "Tell me about rivers."),
            ("assistant", "w0 w1 w2 "),
            ("user", "And then?"),
            ("assistant", "Fine."),
        ]
        assert not any("incomplete" in m for m in one["messages"])
        # a unique prefix is enough, as everywhere in spout's store
        prefix = client.get(f"/v1/conversations/{conversation_id[:12]}").json()
        assert prefix["id"] == conversation_id


def test_a_stopped_stream_is_kept_marked_cancelled(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.05))
    with (
        run_gateway(upstream_config(faults.url + "/v1", resume_window=30)) as gateway,
        httpx.Client(base_url=gateway.url) as client,
    ):
        messages = [{"role": "user", "content": "Count."}]
        with client.stream("POST", CHAT, json=chat(messages), headers={HEADER: "new"}) as response:
            conversation_id = response.headers[HEADER]
            stream_id = response.headers["x-spout-stream-id"]
            raw = response.iter_raw()
            seen = b""
            for chunk in raw:
                seen += chunk
                if seen.count(b"w") >= 3:
                    break
            assert client.delete(f"/v1/streams/{stream_id}").json()["cancelled"] is True
            rest = b"".join(raw)
        assert faults.wait_for_disconnect(timeout=2) is not None
        shown = streamed_text(seen + rest)
        one = client.get(f"/v1/conversations/{conversation_id}").json()
        user, assistant = one["messages"]
        assert user == {"role": "user", "content": "Count."}
        assert assistant["incomplete"] == "cancelled"
        assert assistant["content"] and "".join(PIECES).startswith(assistant["content"])
        assert assistant["content"].startswith(shown)


def test_a_chat_not_streamed_is_kept(faults: FaultServer) -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    faults.script(
        Reply(headers={"content-type": "application/json"}, body=[json.dumps(completion).encode()])
    )
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(base_url=gateway.url) as client,
    ):
        messages = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ]
        response = client.post(CHAT, json=chat(messages, stream=False), headers={HEADER: "new"})
        assert response.status_code == 200, response.text
        one = client.get(f"/v1/conversations/{response.headers[HEADER]}").json()
        assert one["system_prompt"] == "Be brief."
        assert [(m["role"], m["content"]) for m in one["messages"]] == [
            ("user", "Hi"),
            ("assistant", "Hello there."),
        ]


def test_without_the_header_nothing_is_kept(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:2]).reply())
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(base_url=gateway.url) as client,
    ):
        response = client.post(CHAT, json=chat([{"role": "user", "content": "Hi"}]))
        assert response.status_code == 200
        assert HEADER not in response.headers
        assert client.get("/v1/conversations").json()["data"] == []


def test_an_upstream_error_keeps_the_prompt_marked(faults: FaultServer) -> None:
    faults.script(error_reply("openai", 400))
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(base_url=gateway.url) as client,
    ):
        response = client.post(
            CHAT, json=chat([{"role": "user", "content": "Hi"}]), headers={HEADER: "new"}
        )
        assert response.status_code == 400
        conversation_id = response.headers[HEADER]
        (turn,) = Store().turns(conversation_id)
        assert [m["role"] for m in turn.messages] == ["user"]
        assert turn.incomplete == "error"
        assert turn.error


def test_bad_and_unknown_conversations_are_refused(faults: FaultServer) -> None:
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(base_url=gateway.url) as client,
    ):
        body = chat([{"role": "user", "content": "Hi"}])
        bad = client.post(CHAT, json=body, headers={HEADER: "../../etc"})
        assert bad.status_code == 400
        assert HEADER in bad.json()["error"]["message"]
        unknown = client.post(CHAT, json=body, headers={HEADER: "0" * 26})
        assert unknown.status_code == 404
        assert "no stored conversation" in unknown.json()["error"]["message"]
        assert client.get(f"/v1/conversations/{'0' * 26}").status_code == 404
        assert client.get("/v1/conversations?limit=0").status_code == 400
        assert client.get("/v1/conversations?limit=x").status_code == 400
    assert not faults.requests


def test_the_store_may_be_set_in_the_config(faults: FaultServer, tmp_path: Path) -> None:
    faults.script(openai_chat_stream(["Yes."]).reply())
    path = tmp_path / "gateway-chats.db"
    config = upstream_config(faults.url + "/v1", conversation_store=path)
    with run_gateway(config) as gateway, httpx.Client(base_url=gateway.url) as client:
        response = client.post(
            CHAT, json=chat([{"role": "user", "content": "Here?"}]), headers={HEADER: "new"}
        )
        assert response.status_code == 200
    with Store(path) as store:
        (conversation,) = store.list()
        assert conversation.id == response.headers[HEADER]
        assert conversation.title == "Here?"
    with Store() as default:
        assert default.list() == []
