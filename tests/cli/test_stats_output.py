"""`--stats` prints one summary line on stderr; the live status line shows only when stderr is a
terminal and stdout is not, and never reaches stdout."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import TIMEOUT, openai_args, spout, spout_env

from replay_server import ReplayServer, Reply
from scripted_turns import openai_chunk, openai_sse, openai_text_turn

SUMMARY = re.compile(
    r"\[\d+ chars, \d+ tokens \((provider|estimate)\), first token \d+\.\d\d s, "
    r"\d+\.\d tokens/s, \d+\.\d\d s(, \$\d+\.\d{6}( \(estimate\))?)?\]"
)
ANSWER = "123 * 456 = 56088, and Oslo is mild."


@pytest.fixture(autouse=True)
def spout_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "spout_home"
    monkeypatch.setenv("SPOUT_HOME", str(home))
    return home


def test_stats_prints_one_summary_line_and_stdout_is_the_answer(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn(ANSWER)])]
    result = spout(*openai_args(replay), "--stats", "Hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
    assert SUMMARY.fullmatch(lines[0]), lines[0]
    assert f"[{len(ANSWER)} chars, " in lines[0]
    # The reply names gpt-4o-mini and used 90 + 12 tokens: 90 x $0.15 + 12 x $0.60 per million.
    assert lines[0].endswith(", $0.000021]"), lines[0]


def test_without_stats_stderr_is_empty(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn(ANSWER)])]
    result = spout(*openai_args(replay), "Hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, ANSWER + "\n", "")


def test_chat_prints_a_summary_after_each_reply(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn(text)]) for text in ("One.", "Two.")]
    result = spout("chat", *openai_args(replay), "--stats", input="first\nsecond\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "One.\nTwo.\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(SUMMARY.fullmatch(line) for line in lines), result.stderr


def test_live_status_on_a_terminal_stderr_never_reaches_stdout(replay: ReplayServer) -> None:
    words = [f"w{i:02d} " for i in range(8)]
    done = b"data: [DONE]\n\n"
    replay.replies = [
        Reply(
            chunks=[openai_sse(openai_chunk({"content": w})).removesuffix(done) for w in words]
            + [done],
            delay=0.15,
        )
    ]
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "spout", *openai_args(replay), "--stats", "Count."],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=spout_env(TERM="dumb"),
        )
    finally:
        os.close(slave)
    terminal = b""
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the command exited and closed the terminal
                    break
                if not data:
                    break
                terminal += data
            elif process.poll() is not None:
                break
        assert process.stdout is not None
        stdout = process.stdout.read()
        assert process.wait(timeout=TIMEOUT) == 0, terminal
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        os.close(master)

    assert stdout == "".join(words).encode() + b"\n"  # byte for byte: no \r, no escape codes
    shown = terminal.decode()
    updates = re.findall(r"\r\x1b\[Kspout: \d+ tokens", shown)
    assert len(updates) >= 2, shown  # redrawn in place as the answer streams
    # Erased before the summary, which is the last (and only remaining) line.
    summary = shown.rpartition("\r\x1b[K")[2]
    assert SUMMARY.fullmatch(summary.replace("\r\n", "\n").strip()), shown
