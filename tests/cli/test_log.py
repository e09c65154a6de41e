"""`spout "prompt"`: each exchange logged, continued with -c or --cid, or kept out with --no-log."""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import TIMEOUT, assert_one_error_line, openai_args, spout, spout_env

from replay_server import ReplayServer, Reply
from scripted_turns import openai_chunk, openai_sse, openai_text_turn
from spout import Turn
from spout.conversations import Conversation, Store

#: Short, fixed replies from the local model: quick, and the same every run.
LOCAL = ["--max-tokens", "12", "--temperature", "0"]


@pytest.fixture(autouse=True)
def spout_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "spout_home"
    monkeypatch.setenv("SPOUT_HOME", str(home))
    return home


def stored(home: Path) -> list[tuple[Conversation, list[Turn]]]:
    """Every stored conversation with its turns, oldest conversation first."""
    with Store(home / "conversations.db") as store:
        found = sorted(store.list(), key=lambda conversation: conversation.created_at)
        return [(conversation, store.turns(conversation.id)) for conversation in found]


def answers(*texts: str) -> list[Reply]:
    """One streamed reply per text, in order; the last one repeats."""
    return [Reply(chunks=[openai_text_turn(text)]) for text in texts]


def printed(turn: Turn) -> str:
    """What the command prints for a turn: its text, ending in a newline."""
    return turn.text if turn.text.endswith("\n") else turn.text + "\n"


@pytest.mark.model
def test_local_model_logs_continues_and_stores_the_same_reply_streamed_or_not(
    spout_home: Path,
) -> None:
    streamed = spout(*LOCAL, "Name three colours.")
    assert streamed.returncode == 0, streamed.stderr
    whole = spout(*LOCAL, "--no-stream", "Name three colours.")
    assert whole.returncode == 0, whole.stderr
    assert streamed.stderr == whole.stderr == ""  # stdout is the answer; nothing else is said

    (first, [streamed_turn]), (_, [whole_turn]) = stored(spout_home)
    assert streamed.stdout == printed(streamed_turn) and whole.stdout == printed(whole_turn)
    # The same messages stored either way, and the same reply on stdout.
    assert streamed_turn.messages == whole_turn.messages
    assert streamed_turn.messages[0] == {"role": "user", "content": "Name three colours."}
    assert streamed_turn.text.strip()
    assert (streamed_turn.provider, streamed_turn.incomplete) == ("local", None)
    assert first.title == "Name three colours."

    # -c continues the most recent conversation (the second); --cid, by a prefix, the first.
    more = spout(*LOCAL, "-c", "And three fruits?")
    assert more.returncode == 0, more.stderr
    again = spout(*LOCAL, "--cid", first.id[:12], "And three animals?")
    assert again.returncode == 0, again.stderr

    (_, first_turns), (_, second_turns) = stored(spout_home)
    assert [t.messages[0]["content"] for t in first_turns] == [
        "Name three colours.",
        "And three animals?",
    ]
    assert [t.messages[0]["content"] for t in second_turns] == [
        "Name three colours.",
        "And three fruits?",
    ]
    assert more.stdout == printed(second_turns[1]) and again.stdout == printed(first_turns[1])
    assert {t.provider for t in first_turns + second_turns} == {"local"}


def test_continuing_sends_the_history_and_may_switch_model_and_system_prompt(
    replay: ReplayServer, spout_home: Path
) -> None:
    replay.replies = answers("Paris.", "Lyon.", "Marseille.")
    url = f"{replay.url}/v1"
    assert spout(*openai_args(replay), "-s", "Be brief.", "Capital of France?").returncode == 0

    # Without -m, the conversation's last model answers (its base URL is not stored).
    result = spout("-c", "--base-url", url, "A second city?")
    assert (result.returncode, result.stdout) == (0, "Lyon.\n"), result.stderr
    body = replay.requests[-1].json()
    assert body["model"] == "test-model"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "A second city?"},
    ]

    # -m switches the model from this turn on; -s replaces the system prompt.
    [(conversation, _)] = stored(spout_home)
    result = spout(
        "--cid", conversation.id, "-m", "openai:other-model", "--base-url", url,
        "-s", "Answer in one word.", "A third?",
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "Marseille.\n"), result.stderr
    body = replay.requests[-1].json()
    assert body["model"] == "other-model"
    assert body["messages"][0] == {"role": "system", "content": "Answer in one word."}
    assert [m["content"] for m in body["messages"][1:]] == [
        "Capital of France?", "Paris.", "A second city?", "Lyon.", "A third?",
    ]  # fmt: skip

    [(conversation, stored_turns)] = stored(spout_home)
    assert [turn.model for turn in stored_turns] == ["test-model", "test-model", "other-model"]
    assert conversation.models == ("openai:test-model", "openai:other-model")
    assert conversation.system_prompt == "Answer in one word."
    assert [turn.text for turn in stored_turns] == ["Paris.", "Lyon.", "Marseille."]


def test_no_log_touches_no_store(replay: ReplayServer, spout_home: Path) -> None:
    replay.replies = answers("Hello.")
    result = spout(*openai_args(replay), "--no-log", "Hi")
    assert (result.returncode, result.stdout) == (0, "Hello.\n"), result.stderr
    result = spout(*openai_args(replay), "Hi", env=spout_env(SPOUT_NO_LOG="1"))
    assert (result.returncode, result.stdout) == (0, "Hello.\n"), result.stderr
    assert not spout_home.exists()

    # SPOUT_NO_LOG=0 leaves logging on.
    result = spout(*openai_args(replay), "Hi", env=spout_env(SPOUT_NO_LOG="0"))
    assert result.returncode == 0, result.stderr
    [(_, [turn])] = stored(spout_home)
    assert turn.text == "Hello."


def test_no_log_continues_without_saving(replay: ReplayServer, spout_home: Path) -> None:
    replay.replies = answers("Paris.", "Lyon.")
    assert spout(*openai_args(replay), "Capital of France?").returncode == 0
    result = spout(*openai_args(replay), "-c", "--no-log", "A second city?")
    assert (result.returncode, result.stdout) == (0, "Lyon.\n"), result.stderr
    assert len(replay.requests[-1].json()["messages"]) == 3  # the history was read...
    [(_, [turn])] = stored(spout_home)  # ...and nothing written
    assert turn.text == "Paris."


def test_a_stream_cut_by_an_error_is_kept_marked_incomplete(
    replay: ReplayServer, spout_home: Path
) -> None:
    cut = openai_sse(
        openai_chunk({"content": "Once upon"}),
        {"error": {"message": "boom", "type": "server_error"}},
    )
    replay.replies = [Reply(chunks=[cut])]
    result = spout(*openai_args(replay), "Tell me a story.")
    assert "boom" in assert_one_error_line(result)
    assert result.stdout == "Once upon\n"
    [(_, [turn])] = stored(spout_home)
    assert (turn.text, turn.incomplete) == ("Once upon", "error")
    assert "boom" in (turn.error or "")


def test_ctrl_c_keeps_the_partial_answer_marked_interrupted(
    replay: ReplayServer, spout_home: Path
) -> None:
    words = [f"w{i:02d} " for i in range(40)]
    done = b"data: [DONE]\n\n"
    replay.replies = [
        Reply(
            chunks=[openai_sse(openai_chunk({"content": w})).removesuffix(done) for w in words],
            delay=0.1,
        )
    ]
    with subprocess.Popen(
        [sys.executable, "-m", "spout", *openai_args(replay), "Count slowly."],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=spout_env(),
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        shown = b""
        deadline = time.monotonic() + TIMEOUT
        while b"w02" not in shown:  # the answer is under way
            assert time.monotonic() < deadline, shown
            ready, _, _ = select.select([process.stdout], [], [], 1)
            if ready:
                shown += os.read(process.stdout.fileno(), 4096)
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr
    [(_, [turn])] = stored(spout_home)
    assert turn.incomplete == "interrupted"
    assert (shown + rest).decode() == turn.text + "\n"
    assert 3 <= len(turn.text.split()) < len(words)


def test_nothing_to_continue_is_one_error_line(replay: ReplayServer, spout_home: Path) -> None:
    line = assert_one_error_line(spout(*openai_args(replay), "-c", "Hi"))
    assert "no conversation to continue" in line
    replay.replies = answers("Hello.")
    assert spout(*openai_args(replay), "Hi").returncode == 0
    line = assert_one_error_line(spout(*openai_args(replay), "--cid", "zzzzzzzz", "Hi"))
    assert "zzzzzzzz" in line
    assert len(replay.requests) == 1  # neither sent anything


def test_only_a_first_word_names_a_command(replay: ReplayServer) -> None:
    replay.replies = answers("A chat is a talk.")
    result = spout(*openai_args(replay), "--no-log", "chat")
    assert (result.returncode, result.stdout) == (0, "A chat is a talk.\n"), result.stderr
    assert replay.requests[-1].json()["messages"] == [{"role": "user", "content": "chat"}]


def test_double_dash_makes_a_command_name_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    # In process: options cannot follow "--", so as a process this would ask the local model.
    import spout.cli

    prompts: list[list[str]] = []

    def answer(args: argparse.Namespace) -> int:
        prompts.append(args.prompt)
        return 0

    monkeypatch.setattr(spout.cli, "_answer", answer)
    assert spout.cli.main(["--", "chat"]) == 0
    assert spout.cli.main(["--", "conversations", "list"]) == 0
    assert prompts == [["chat"], ["conversations", "list"]]
