"""What a gateway lets out of an upstream's failure (issue #24, points 2, 10 and 11).

A real ``spout serve`` process in front of a real loopback upstream (tests/fault_server.py):

* the upstream answers 200, then echoes the gateway's own upstream key in an error event:
  the client's error frame or body, the turn kept in conversations.db, ``spout conversations
  show`` and the gateway's log hold no key;
* the upstream cannot be reached: the 502 the client gets names no address, the log does;
* the upstream sends ``Retry-After: nan`` (``inf``, ``1e400``, ``-5``): the client gets the
  protocol's JSON 429, never a plain-text 500.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from fault_server import FaultServer, Reply, error_reply, openai_chat_stream

#: The gateway's upstream key, which the hostile upstream echoes.
KEY = "sk-upstream-SECRET-0123456789abcdef"
ECHO = f"Incorrect API key provided: Bearer {KEY}"
PIECES = ["Grüß", " dich", "!"]
USER = [{"role": "user", "content": "hi"}]

#: Each wire protocol's endpoint, and its request body.
WIRES: dict[str, tuple[str, dict[str, Any]]] = {
    "openai": ("/v1/chat/completions", {"model": "m", "messages": USER}),
    "anthropic": ("/v1/messages", {"model": "m", "max_tokens": 50, "messages": USER}),
    "responses": ("/v1/responses", {"model": "m", "input": "hi"}),
    "spout": ("/v1/spout/stream", {"model": "m", "messages": USER}),
}


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@dataclass
class Served:
    """A running ``spout serve``: its URL, and (once it stopped) what it wrote to stderr."""

    url: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    @property
    def log_text(self) -> str:
        return "".join(self.log)


@contextmanager
def serve(upstream: str, tmp_path: Path) -> Iterator[Served]:
    """``spout serve`` of one model, ``m``, at ``upstream`` with :data:`KEY` and no retries
    (each fault is seen once); its stderr is read to the end once it stopped (SIGTERM: it
    shuts down as an operator stops it)."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
default = "m"
resume_window = 0

[models.m]
provider = "openai"
model = "m"
base_url = "{upstream}"
api_key_env = "UPSTREAM_KEY"
max_retries = 0
""",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "spout", "serve", "--port", "0", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "UPSTREAM_KEY": KEY},
    )  # fmt: skip
    assert process.stderr is not None
    served = Served("", process)
    for line in process.stderr:
        served.log.append(line)
        found = re.search(r"spout serve: (http://\S+)", line)
        if found:
            served.url = found.group(1)
            break
    try:
        assert served.url, "spout serve did not say where it listens:\n" + served.log_text
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            served.log += process.stderr.readlines()
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            process.stderr.close()


def conversations_show(conversation_id: str) -> str:
    """``spout conversations show ID``, as a user runs it (the store is $SPOUT_HOME's)."""
    shown = subprocess.run(
        [sys.executable, "-m", "spout", "conversations", "show", conversation_id],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    return shown.stdout + shown.stderr


def echoing_upstream(faults: FaultServer, *, text: int = 1) -> None:
    stream = openai_chat_stream(PIECES)
    faults.script(stream.reply([*stream.upto(text), stream.error(message=ECHO)]))


@pytest.mark.parametrize("wire", list(WIRES))
def test_a_key_echoed_mid_stream_reaches_no_client_store_or_log(
    faults: FaultServer, tmp_path: Path, wire: str
) -> None:
    echoing_upstream(faults)
    path, body = WIRES[wire]
    with serve(faults.url + "/v1", tmp_path) as served:
        response = httpx.post(
            served.url + path,
            json={**body, "stream": True},
            headers={"x-spout-conversation": "new"},
            timeout=20,
        )
        conversation = response.headers["x-spout-conversation"]
        listing = httpx.get(f"{served.url}/v1/conversations/{conversation}", timeout=10)
    assert response.status_code == 200
    assert PIECES[0] in response.text  # the text before the error reached the client
    assert "error" in response.text
    assert KEY not in response.text
    assert faults.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert listing.status_code == 200
    assert KEY not in listing.text
    shown = conversations_show(conversation)
    assert "incomplete: error" in shown
    assert KEY not in shown
    assert "[redacted ...cdef]" in shown  # the turn's error is kept, masked
    assert KEY not in served.log_text
    assert "[redacted ...cdef]" in served.log_text  # logged, masked


@pytest.mark.parametrize("wire", ["openai", "anthropic", "responses"])
def test_a_key_echoed_before_any_text_is_not_in_the_error_body(
    faults: FaultServer, tmp_path: Path, wire: str
) -> None:
    # The error comes before the stream's first event: the answer is the protocol's error body.
    echoing_upstream(faults, text=0)
    path, body = WIRES[wire]
    with serve(faults.url + "/v1", tmp_path) as served:
        response = httpx.post(served.url + path, json={**body, "stream": True}, timeout=20)
    assert response.status_code == 502
    assert "Incorrect API key provided: Bearer [redacted ...cdef]" in response.text
    assert KEY not in response.text
    assert KEY not in served.log_text


@pytest.mark.parametrize("wire", list(WIRES))
def test_a_502_names_no_upstream_address(faults: FaultServer, tmp_path: Path, wire: str) -> None:
    upstream = faults.refused_url + "/v1"
    address = urlsplit(upstream).netloc  # 127.0.0.1:<port>
    port = address.rsplit(":", 1)[1]
    path, body = WIRES[wire]
    with serve(upstream, tmp_path) as served:
        response = httpx.post(served.url + path, json=body, timeout=20)
        streamed = httpx.post(served.url + path, json={**body, "stream": True}, timeout=20)
    for answer in (response, streamed):
        assert answer.status_code == 502
        assert answer.json()["error"]
        assert "could not be reached" in answer.text
        assert port not in answer.text
        assert "127.0.0.1" not in answer.text
    assert port in served.log_text  # the operator still sees where it failed


def test_a_redirect_names_no_location(faults: FaultServer, tmp_path: Path) -> None:
    # spout follows no redirect (the key would go along); where it pointed is for the log.
    elsewhere = "http://internal-host.example:8443/v1/chat/completions"
    faults.script(Reply(status=307, headers={"Location": elsewhere}, framing="length"))
    with serve(faults.url + "/v1", tmp_path) as served:
        response = httpx.post(
            served.url + "/v1/chat/completions", json={"model": "m", "messages": USER}, timeout=20
        )
    assert response.status_code == 502
    assert "redirect" in response.json()["error"]["message"]
    assert "internal-host" not in response.text
    assert "internal-host.example:8443" in served.log_text


def test_a_stream_cut_mid_way_names_no_upstream_detail(faults: FaultServer, tmp_path: Path) -> None:
    stream = openai_chat_stream(PIECES)
    faults.script(stream.reply(stream.upto(1), end="reset"))
    with serve(faults.url + "/v1", tmp_path) as served:
        response = httpx.post(
            served.url + "/v1/chat/completions",
            json={"model": "m", "messages": USER, "stream": True},
            timeout=20,
        )
    assert response.status_code == 200
    assert "the upstream's stream was cut off before its end" in response.text
    assert "StreamInterruptedError" in served.log_text


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("Retry-After", "nan", None),
        ("Retry-After", "inf", None),
        ("Retry-After", "1e400", None),
        ("Retry-After", "-inf", None),
        ("Retry-After", "-5", "1"),
        ("retry-after-ms", "-5000", "1"),
        ("Retry-After", "1e300", "86400"),
        ("Retry-After", "7", "7"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_hostile_retry_after_is_a_json_429(
    faults: FaultServer, tmp_path: Path, header: str, value: str, expected: str | None, stream: bool
) -> None:
    faults.script(error_reply("openai", 429, headers={header: value}))
    with serve(faults.url + "/v1", tmp_path) as served:
        response = httpx.post(
            served.url + "/v1/chat/completions",
            json={"model": "m", "messages": USER, "stream": stream},
            timeout=20,
        )
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response.headers.get("retry-after") == expected
    assert "Traceback" not in served.log_text
