"""``spout -a``: files attached to the prompt from paths and stdin, continued, and listed."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_support import TIMEOUT, assert_one_error_line, openai_args, spout, spout_env

from replay_server import ReplayServer, Reply
from scripted_turns import openai_text_turn
from spout.conversations import Store

# A PNG's signature and some bytes: its type is found from them when no name says it.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
OTHER_PNG = PNG + b"another"


@pytest.fixture(autouse=True)
def spout_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "spout_home"
    monkeypatch.setenv("SPOUT_HOME", str(home))
    return home


def image_part(data: bytes) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}


def test_attach_files_from_paths_to_the_prompt(replay: ReplayServer, tmp_path: Path) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn("Two cats.")])]
    (tmp_path / "cat.png").write_bytes(PNG)
    (tmp_path / "other.png").write_bytes(OTHER_PNG)
    result = spout(
        *openai_args(replay),
        "-a",
        str(tmp_path / "cat.png"),
        "--attach",
        str(tmp_path / "other.png"),
        "What is in these pictures?",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Two cats.\n" and result.stderr == ""
    (request,) = replay.requests
    assert request.json()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these pictures?"},
                image_part(PNG),
                image_part(OTHER_PNG),
            ],
        }
    ]


def test_attach_stdin_its_type_found_from_its_bytes(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn("A cat.")])]
    result = subprocess.run(
        [sys.executable, "-m", "spout", *openai_args(replay), "-a", "-", "Describe it"],
        input=PNG,
        capture_output=True,
        env=spout_env(),
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"A cat.\n"
    # stdin is the file, not text appended to the prompt.
    assert replay.requests[0].json()["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Describe it"}, image_part(PNG)]}
    ]


def test_a_file_alone_is_a_prompt(replay: ReplayServer, tmp_path: Path) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn("A cat.")])]
    (tmp_path / "cat.png").write_bytes(PNG)
    result = spout(*openai_args(replay), "-a", str(tmp_path / "cat.png"))
    assert result.returncode == 0, result.stderr
    assert replay.requests[0].json()["messages"] == [{"role": "user", "content": [image_part(PNG)]}]


@pytest.mark.parametrize(
    ("attach", "message"),
    [
        (["missing.png"], r"cannot read file '.*missing\.png': No such file or directory"),
        (["."], r"cannot read file '\.'"),
        (["-", "-"], "stdin, which can be read once"),
    ],
)
def test_an_attachment_that_cannot_be_read_is_a_usage_error(
    replay: ReplayServer, spout_home: Path, attach: list[str], message: str
) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn("never")])]
    args = [arg for path in attach for arg in ("-a", path)]
    result = spout(*openai_args(replay), *args, "What is it?", input="")
    assert result.returncode == 2
    line = assert_one_error_line(result)
    assert re.search(message, line), line
    assert replay.requests == []  # nothing sent, nothing logged
    assert not (spout_home / "conversations.db").exists()


def test_empty_stdin_for_a_file_is_a_usage_error(replay: ReplayServer) -> None:
    result = spout(*openai_args(replay), "-a", "-", "What is it?", input="")
    assert result.returncode == 2
    assert "stdin is empty" in assert_one_error_line(result)
    assert replay.requests == []


def test_continuing_sends_the_files_again_and_show_lists_them(
    replay: ReplayServer, tmp_path: Path, spout_home: Path
) -> None:
    replay.replies = [
        Reply(chunks=[openai_text_turn("A cat.")]),
        Reply(chunks=[openai_text_turn("A tabby.")]),
    ]
    (tmp_path / "cat.png").write_bytes(PNG)
    first = spout(*openai_args(replay), "-a", str(tmp_path / "cat.png"), "What is it?")
    assert first.returncode == 0, first.stderr
    second = spout("-c", "--base-url", f"{replay.url}/v1", "Which breed?")
    assert second.returncode == 0, second.stderr
    assert second.stdout == "A tabby.\n"
    asked = {"role": "user", "content": [{"type": "text", "text": "What is it?"}, image_part(PNG)]}
    assert replay.requests[1].json()["messages"] == [
        asked,
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "Which breed?"},
    ]

    with Store(spout_home / "conversations.db") as store:
        conversation = store.last()
        assert conversation is not None
    shown = spout("conversations", "show", conversation.id)
    assert shown.returncode == 0, shown.stderr
    assert f"*[attachment: cat.png, image/png, {len(PNG):,} bytes]*" in shown.stdout
    assert base64.b64encode(PNG).decode()[:20] not in shown.stdout  # the bytes stay stored
