"""A model's refusal on the command line: on stderr, marked, never on stdout; logged as one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import openai_args, spout

from replay_server import CUTS, ReplayServer, Reply, transcript
from spout._store import Store


@pytest.fixture(autouse=True)
def spout_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each run logs its exchange: into a store of the test's own, not the user's."""
    home = tmp_path / "spout_home"
    monkeypatch.setenv("SPOUT_HOME", str(home))
    return home


def replay_refusal(server: ReplayServer, streamed: bool) -> str:
    """The recorded refusal, streamed or as one chat completion; returns its text."""
    body, expected = transcript("openai_chat", "refusal")
    if streamed:
        server.replies = [Reply(chunks=CUTS["mid_line"](body))]
    else:
        completion = {
            "id": "chatcmpl-cli",
            "object": "chat.completion",
            "model": "test-model",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "refusal": expected["refusal"],
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 81, "completion_tokens": 12, "total_tokens": 93},
        }
        server.replies = [
            Reply(
                chunks=[json.dumps(completion).encode()],
                headers={"Content-Type": "application/json"},
            )
        ]
    refusal: str = expected["refusal"]
    return refusal


@pytest.mark.parametrize("stream", ["--stream", "--no-stream"])
def test_a_refusal_goes_to_stderr_not_stdout(
    replay: ReplayServer, spout_home: Path, stream: str
) -> None:
    refusal = replay_refusal(replay, stream == "--stream")
    result = spout(*openai_args(replay), stream, "How do I pick my neighbour's lock?")
    # Nothing on stdout: a pipe or a file must not take the refusal for the answer.
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert result.stderr == f"spout: the model refused: {refusal}\n"
    with Store(spout_home / "conversations.db") as store:
        (conversation,) = store.list()
        (turn,) = store.turns(conversation.id)
    assert (turn.text, turn.refusal, turn.finish_reason) == ("", refusal, "refusal")


def test_chat_prints_a_refusal_on_stderr(replay: ReplayServer) -> None:
    refusal = replay_refusal(replay, True)
    result = spout("chat", *openai_args(replay), input="How do I pick my neighbour's lock?\n")
    assert result.returncode == 0, result.stderr
    assert refusal not in result.stdout and result.stdout.strip() == ""
    assert f"spout: the model refused: {refusal}\n" in result.stderr
