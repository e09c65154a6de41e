"""``spout serve`` as a user runs it: a process, its flags, its config file, its shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
from sdk_loopback import http_client

from fault_server import FaultServer, openai_chat_stream

PIECES = [f"p{i} " for i in range(20)]


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@contextmanager
def serve(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``spout serve ARGS --port 0``; yields the process and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "spout", "serve", "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    url = None
    seen = []
    for line in process.stderr:
        seen.append(line)
        found = re.search(r"spout serve: (http://\S+)", line)
        if found:
            url = found.group(1)
            break
    try:
        assert url, "spout serve did not say where it listens:\n" + "".join(seen)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        process.stderr.close()


def upstream_args(faults: FaultServer) -> list[str]:
    return ["-m", "openai:m", "--base-url", faults.url + "/v1", "--api-key-env", "UPSTREAM_KEY"]


def test_serve_proxies_an_upstream_with_its_key_from_the_environment(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES[:3]).reply())
    with serve(*upstream_args(faults), env={"UPSTREAM_KEY": "sk-upstream"}) as (_, url):
        client = openai.OpenAI(
            base_url=url + "/v1", api_key="unused", max_retries=0, http_client=http_client()
        )
        assert [m.id for m in client.models.list()] == ["m"]
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        client.close()
    assert text == "".join(PIECES[:3])
    (request,) = faults.requests
    assert request.headers["authorization"] == "Bearer sk-upstream"


def test_serve_refuses_what_cannot_work() -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "spout", "serve", "-m", "openai:m", "--api-key-env", "NOPE_KEY_X"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "NOPE_KEY_X"},
    )  # fmt: skip
    assert missing.returncode == 2
    assert "NOPE_KEY_X" in missing.stderr
    open_host = subprocess.run(
        [sys.executable, "-m", "spout", "serve", "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert open_host.returncode == 2
    assert "--keys" in open_host.stderr
    bad_config = subprocess.run(
        [sys.executable, "-m", "spout", "serve", "--config", "/nonexistent/gateway.toml"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad_config.returncode == 2
    assert "/nonexistent/gateway.toml" in bad_config.stderr


def test_serve_takes_a_config_file_with_aliases_and_fallbacks(
    faults: FaultServer, tmp_path: Path
) -> None:
    # the first upstream refuses the connection, so the alias falls back to the second
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
default = "main"
resume_window = 0

[models.main]
provider = "openai"
model = "first"
base_url = "{faults.refused_url}/v1"
api_key = "sk-1"
max_retries = 0
fallbacks = ["backup"]

[models.backup]
provider = "openai"
model = "second"
base_url = "{faults.url}/v1"
api_key = "sk-2"
""",
        encoding="utf-8",
    )
    faults.script(openai_chat_stream(PIECES[:4]).reply())
    with serve("--config", str(config)) as (_, url):
        models = httpx.get(url + "/v1/models").json()
        assert sorted(m["id"] for m in models["data"]) == ["backup", "main"]
        client = openai.OpenAI(
            base_url=url + "/v1", api_key="unused", max_retries=0, http_client=http_client()
        )
        stream = client.chat.completions.create(
            model="main", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        client.close()
    assert text == "".join(PIECES[:4])
    assert faults.requests[0].json()["model"] == "second"


def test_shutdown_lets_a_running_stream_finish(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.05))
    with (
        serve(*upstream_args(faults), env={"UPSTREAM_KEY": "k"}) as (process, url),
        httpx.stream(
            "POST",
            url + "/v1/chat/completions",
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        ) as response,
    ):
        lines = response.iter_lines()
        head = [next(lines) for _ in range(4)]
        process.send_signal(signal.SIGTERM)
        rest = list(lines)
        # uvicorn re-raises the signal once it shut down gracefully: the status says SIGTERM
        assert process.wait(10) == -signal.SIGTERM
    data = [line[6:] for line in head + rest if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    text = "".join(
        (choice["delta"].get("content") or "")
        for item in data[:-1]
        for choice in json.loads(item)["choices"]
    )
    assert text == "".join(PIECES)


def test_shutdown_stops_streams_past_the_deadline(faults: FaultServer) -> None:
    faults.script(openai_chat_stream(PIECES * 10).reply(delay=0.05))  # 10 s of stream
    args = [*upstream_args(faults), "--shutdown-deadline", "1"]
    with (
        serve(*args, env={"UPSTREAM_KEY": "k"}) as (process, url),
        httpx.stream(
            "POST",
            url + "/v1/chat/completions",
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        ) as response,
    ):
        lines = response.iter_lines()
        next(lines)
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        with pytest.raises(httpx.HTTPError):
            list(lines)
        process.wait(10)
        assert time.monotonic() - stopped < 4
    assert faults.wait_for_disconnect(timeout=3) is not None


def test_a_serving_process_collects_less_often_and_still_frees_cycles() -> None:
    # In a fresh interpreter, as `spout serve` and each worker call it before serving.
    script = """
import gc, weakref
from spout.cli._serve import GC_THRESHOLD, server_gc
server_gc()
assert gc.get_threshold()[0] == GC_THRESHOLD, gc.get_threshold()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()  # what was loaded is frozen
class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a
alive = weakref.ref(a)
del a, b
kept = [[] for _ in range(3 * GC_THRESHOLD)]  # allocations enough for a collection
assert alive() is None, "a reference cycle outlived the collections"
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
