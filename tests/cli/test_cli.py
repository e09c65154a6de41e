"""The ``spout`` command, run as a real process: streaming to a pipe, stdin, options, errors."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    TIMEOUT,
    assert_one_error_line,
    how_it_ended,
    openai_args,
    spout,
    spout_env,
)

from helpers import free_port
from replay_server import ReplayServer, Reply, cut_by_event, transcript

HELLO = "Hello! How can I help you today?"


@pytest.fixture(autouse=True)
def spout_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each run logs its exchange: into a store of the test's own, not the user's."""
    home = tmp_path / "spout_home"
    monkeypatch.setenv("SPOUT_HOME", str(home))
    return home


def replay_text(server: ReplayServer) -> None:
    body, expected = transcript("openai_chat", "text")
    assert expected["text"] == HELLO
    server.replies = [Reply(chunks=[body])]


def sse(*payloads: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)


def content_chunk(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-cli",
        "object": "chat.completion.chunk",
        "model": "test-model",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


# -- streaming to a pipe ---------------------------------------------------------------------------


@pytest.mark.model
def test_local_model_streams_to_a_pipe_chunk_by_chunk(tmp_path: Path) -> None:
    # A pipe is block-buffered: unless the command flushes each chunk, the whole answer would
    # arrive in one read as the process exits.
    reads: list[tuple[float, bytes]] = []
    with (
        (tmp_path / "stderr").open("w+") as err,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spout",
                "--max-tokens",
                "60",
                "--temperature",
                "0",
                "Count from 1 to 100, separated by commas.",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=spout_env(),
        ) as process,
    ):
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + TIMEOUT
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                process.kill()
                pytest.fail(f"no output or end within {TIMEOUT} s; read so far: {reads}")
            data = os.read(fd, 65536)
            if not data:
                break
            reads.append((time.monotonic(), data))
        status = process.wait(timeout=TIMEOUT)
        exited = time.monotonic()
        err.seek(0)
        stderr = err.read()

    assert status == 0, f"spout {how_it_ended(status)}:\n{stderr}"
    assert "Traceback" not in stderr
    text_reads = [at for at, data in reads if data.strip()]
    assert b"".join(data for _, data in reads).strip(), "no answer on stdout"
    assert len(text_reads) > 1, f"the answer came in one piece: {reads}"
    assert text_reads[0] <= exited - 0.3, (
        f"first text {exited - text_reads[0]:.2f} s before exit; reads: {reads}"
    )


@pytest.mark.model
def test_the_readme_demo_streams_a_haiku() -> None:
    # `make demo`: the bundled model, in process, with its defaults. Bounded, though: about
    # one run in eight, SmolLM2 at its default temperature rambles on to the end of its context
    # (2,000 tokens, a minute on an idle machine, past any timeout on a busy one).
    result = spout("--max-tokens", "100", "Write a haiku about rivers.")
    assert result.returncode == 0, f"spout {how_it_ended(result.returncode)}:\n{result.stderr}"
    assert result.stdout.strip(), "no answer on stdout"
    assert result.stdout.endswith("\n") and result.stderr == ""


# -- the prompt, from arguments and stdin ----------------------------------------------------------


def test_prompt_from_stdin(replay: ReplayServer) -> None:
    replay_text(replay)
    result = spout(*openai_args(replay), input="Tell me about rivers.\n")
    assert (result.returncode, result.stdout) == (0, HELLO + "\n"), result.stderr
    (message,) = replay.requests[-1].json()["messages"]
    assert message["role"] == "user"
    assert message["content"].strip() == "Tell me about rivers."


def test_argument_and_stdin_together(replay: ReplayServer, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("The Nile is long.\nThe Amazon is wide.\n")
    replay_text(replay)
    with notes.open() as file:
        result = spout(*openai_args(replay), "summarize:", stdin=file)
    assert (result.returncode, result.stdout) == (0, HELLO + "\n"), result.stderr
    (message,) = replay.requests[-1].json()["messages"]
    content = message["content"]
    assert content.startswith("summarize:")
    assert "The Nile is long.\nThe Amazon is wide." in content
    assert content.index("summarize:") < content.index("The Nile")


def test_system_prompt_comes_first(replay: ReplayServer) -> None:
    replay_text(replay)
    result = spout(*openai_args(replay), "-s", "Be brief.", "Why is the sky blue?")
    assert result.returncode == 0, result.stderr
    assert replay.requests[-1].json()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]


def test_max_tokens_and_temperature_reach_the_request(replay: ReplayServer) -> None:
    replay_text(replay)
    result = spout(*openai_args(replay), "--max-tokens", "50", "--temperature", "0.3", "Hi")
    assert (result.returncode, result.stdout) == (0, HELLO + "\n"), result.stderr
    body = replay.requests[-1].json()
    assert (body["max_tokens"], body["temperature"]) == (50, 0.3)
    assert body["model"] == "test-model"
    assert body["stream"] is True


def test_no_stream_sends_one_request_and_prints_the_text(replay: ReplayServer) -> None:
    completion = {
        "id": "chatcmpl-cli",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": HELLO},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
    }
    replay.replies = [
        Reply(
            chunks=[json.dumps(completion).encode()], headers={"Content-Type": "application/json"}
        )
    ]
    result = spout(*openai_args(replay), "--no-stream", "Hi")
    assert (result.returncode, result.stdout) == (0, HELLO + "\n"), result.stderr
    assert len(replay.requests) == 1
    assert "stream" not in replay.requests[-1].json()


# -- errors: one line on stderr, a non-zero exit -----------------------------------------------------


def test_unknown_provider() -> None:
    line = assert_one_error_line(spout("-m", "nosuch:model", "Hi"))
    assert "nosuch" in line


def test_connection_refused() -> None:
    result = spout(
        "-m", "openai:test-model", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "Hi"
    )
    assert_one_error_line(result)
    assert result.stdout == ""


def test_http_401(replay: ReplayServer) -> None:
    error = {
        "error": {
            "message": "Incorrect API key provided: sk-dummy.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    replay.replies = [
        Reply(
            status=401,
            headers={"Content-Type": "application/json"},
            chunks=[json.dumps(error).encode()],
        )
    ]
    result = spout(*openai_args(replay), "Hi")
    line = assert_one_error_line(result)
    assert "Incorrect API key" in line and "401" in line
    assert result.stdout == ""


def test_error_body_spanning_lines_is_still_one_line(replay: ReplayServer) -> None:
    # A proxy in front of the model answers with its own HTML page.
    page = (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>502</body>\r\n</html>\r\n"
    )
    replay.replies = [Reply(status=502, headers={"Content-Type": "text/html"}, chunks=[page])]
    line = assert_one_error_line(spout(*openai_args(replay), "Hi"))
    assert "502 Bad Gateway" in line


def test_no_prompt() -> None:
    result = spout()  # no argument, and stdin is empty
    assert_one_error_line(result)
    assert result.stdout == ""


@pytest.mark.parametrize("delivery", ["event_by_event", "one_read"])
def test_error_mid_stream_keeps_the_partial_text(replay: ReplayServer, delivery: str) -> None:
    body = sse(
        content_chunk("Once upon"),
        content_chunk(" a time"),
        {"error": {"message": "boom", "type": "server_error"}},
    )
    if delivery == "event_by_event":
        replay.replies = [Reply(chunks=cut_by_event(body), delay=0.05)]
    else:
        replay.replies = [Reply(chunks=[body])]
    result = spout(*openai_args(replay), "Tell me a story.")
    line = assert_one_error_line(result)
    assert "boom" in line
    assert result.stdout == "Once upon a time\n"
