"""``spout chat`` on a pseudo-terminal: streamed replies, multi-line input, Ctrl-C, Ctrl-D."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import Terminal, openai_args, spout, spout_env

from replay_server import ReplayServer, Reply
from scripted_turns import openai_chunk, openai_sse
from spout import Turn
from spout.conversations import Store

#: The slow reply Ctrl-C stops: 40 distinct words, 0.1 s apart.
SLOW_WORDS = [f"w{i:02d} " for i in range(40)]


@pytest.fixture(autouse=True)
def spout_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "spout_home"
    monkeypatch.setenv("SPOUT_HOME", str(home))
    return home


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Terminals the test opens; whatever runs on them is killed at the end."""
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def chat(terminals: list[Terminal], *args: str) -> Terminal:
    terminal = Terminal("chat", *args, env=spout_env())
    terminals.append(terminal)
    terminal.expect("> ")
    return terminal


def reply(*words: str, delay: float = 0.0) -> Reply:
    """An OpenAI stream sending each word as its own event, ``delay`` seconds apart."""
    events = [openai_sse(openai_chunk({"content": word})) for word in words]
    done = b"data: [DONE]\n\n"
    chunks = [event.removesuffix(done) for event in events]
    chunks.append(openai_sse(openai_chunk({}, "stop")))
    return Reply(chunks=chunks, delay=delay)


def stored_turns(home: Path) -> list[Turn]:
    with Store(home / "conversations.db") as store:
        (conversation,) = store.list()
        return store.turns(conversation.id)


def sent_messages(server: ReplayServer, index: int = -1) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = server.requests[index].json()["messages"]
    return messages


def test_ctrl_c_stops_the_reply_keeps_it_and_the_chat_goes_on(
    replay: ReplayServer, spout_home: Path, terminals: list[Terminal]
) -> None:
    replay.replies = [
        reply("Hello", " there", "."),
        reply(*SLOW_WORDS, delay=0.1),
        reply("Fine", ", thanks."),
    ]
    term = chat(terminals, *openai_args(replay))
    assert "spout chat with openai:test-model" in term.output
    assert "Ctrl-D" in term.output and '"""' in term.output

    term.send("Hi\r")
    assert term.expect("> ").endswith("Hello there.\r\n> ")

    term.send("Tell me a long story.\r")
    term.expect("Tell me a long story.\r\n")
    shown = term.expect("w03")  # mid-reply: some words shown, most still to come
    term.send("\x03")
    shown += term.expect("[stopped]")
    term.expect("> ")
    assert replay.wait_for_disconnect() is not None, "the reply's connection was not closed"

    term.send("How are you?\r")
    assert term.expect("> ").endswith("Fine, thanks.\r\n> ")
    term.send("exit\r")
    assert term.wait() == 0

    first, stopped, after = stored_turns(spout_home)
    assert (first.text, first.incomplete) == ("Hello there.", None)
    assert stopped.incomplete == "interrupted"
    assert stopped.messages[0] == {"role": "user", "content": "Tell me a long story."}
    # What was on the screen is what was kept: the words before the stop, whole, no more.
    on_screen = shown.removesuffix("[stopped]").replace("^C", "").replace("\r\n", "")
    assert stopped.text == on_screen
    assert re.fullmatch(r"(w\d\d )+", stopped.text)
    assert 4 <= len(stopped.text.split()) < len(SLOW_WORDS)
    assert stopped.text == "".join(SLOW_WORDS[: len(stopped.text.split())])
    assert (after.text, after.incomplete) == ("Fine, thanks.", None)
    # The next request carried the stopped reply as the model's turn.
    assert sent_messages(replay)[-3:] == [
        {"role": "user", "content": "Tell me a long story."},
        {"role": "assistant", "content": stopped.text},
        {"role": "user", "content": "How are you?"},
    ]


def test_multi_line_input_ctrl_c_at_the_prompt_errors_and_ctrl_d(
    replay: ReplayServer, spout_home: Path, terminals: list[Terminal]
) -> None:
    error = Reply(  # a 400: not retried
        status=400,
        headers={"Content-Type": "application/json"},
        chunks=[b'{"error": {"message": "the model fell over", "type": "invalid_request_error"}}'],
    )
    replay.replies = [reply("One."), reply("Two."), error, reply("Three.")]
    term = chat(terminals, *openai_args(replay), "--max-tokens", "50")

    # A block between """ lines, then a line continued by a trailing backslash.
    term.send('"""\rFirst line\r\r  indented third\r"""\r')
    assert term.expect("> ").endswith("One.\r\n> ")
    assert sent_messages(replay)[-1]["content"] == "First line\n\n  indented third"
    term.send("left \\\rright\r")
    assert term.expect("> ").endswith("Two.\r\n> ")
    assert sent_messages(replay)[-1]["content"] == "left \nright"

    # Ctrl-C at the prompt drops what was typed; nothing is sent.
    term.send("never sent")
    term.expect("never sent")
    term.send("\x03")
    try:
        term.expect("(exit or Ctrl-D leaves)", timeout=3)
    except AssertionError:
        # CPython's readline loop acts on a signal only when it interrupts its select(): one
        # landing while readline still handles the last key waits for the next key. A person
        # never types that fast; a test does. A second Ctrl-C wakes it (one KeyboardInterrupt).
        term.send("\x03")
        term.expect("(exit or Ctrl-D leaves)")
    term.expect("> ")
    assert len(replay.requests) == 2

    # A provider error is one line, and the chat goes on.
    term.send("Break?\r")
    assert "spout: error:" in term.expect("the model fell over")
    term.expect("> ")
    term.send("Again\r")
    assert term.expect("> ").endswith("Three.\r\n> ")

    term.send("\x04")  # Ctrl-D at an empty prompt leaves
    assert term.wait() == 0
    assert "Traceback" not in term.output
    assert [request.json()["max_tokens"] for request in replay.requests] == [50] * 4

    turns = stored_turns(spout_home)
    assert [turn.text for turn in turns] == ["One.", "Two.", "", "Three."]
    assert [turn.incomplete for turn in turns] == [None, None, "error", None]
    assert "the model fell over" in (turns[2].error or "")


def test_chat_continues_a_conversation_and_no_log_saves_nothing(
    replay: ReplayServer, spout_home: Path, terminals: list[Terminal]
) -> None:
    replay.replies = [reply("Paris."), reply("About two million.")]
    first = spout(*openai_args(replay), "-s", "Be brief.", "Capital of France?")
    assert first.returncode == 0, first.stderr

    term = chat(terminals, "-c", "--base-url", f"{replay.url}/v1")
    # Without -m, the model of the conversation's last turn answers.
    assert "continuing" in term.output and "Capital of France?" in term.output
    term.send("Its population?\r")
    assert term.expect("> ").endswith("About two million.\r\n> ")
    term.send("quit\r")
    assert term.wait() == 0
    request = replay.requests[-1].json()
    assert request["model"] == "test-model"  # the first turn's, not the provider's default
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Its population?"},
    ]
    assert [turn.text for turn in stored_turns(spout_home)] == ["Paris.", "About two million."]

    unlogged = Terminal(
        "chat", *openai_args(replay), "--no-log", env=spout_env(SPOUT_HOME=str(spout_home / "x"))
    )
    terminals.append(unlogged)
    assert "not logged" in unlogged.expect("> ")
    unlogged.send("Hello?\r")
    unlogged.expect("About two million.\r\n> ")
    unlogged.send("\x04")
    assert unlogged.wait() == 0
    assert not (spout_home / "x").exists()


@pytest.mark.model
def test_chat_with_the_local_model(spout_home: Path, terminals: list[Terminal]) -> None:
    term = chat(terminals, "--max-tokens", "8", "--temperature", "0")
    assert "spout chat with local:" in term.output
    term.send("Name a colour.\r")
    first = term.expect("> ", timeout=60)
    term.send("And a fruit?\r")
    second = term.expect("> ", timeout=60)
    term.send('"""\rSay hello\rin French.\r"""\r')
    term.expect("> ", timeout=60)
    term.send("exit\r")
    assert term.wait() == 0

    turns = stored_turns(spout_home)
    assert [turn.messages[0]["content"] for turn in turns] == [
        "Name a colour.",
        "And a fruit?",
        "Say hello\nin French.",
    ]
    for turn, screen in zip(turns, (first, second), strict=False):
        assert turn.incomplete is None and turn.provider == "local"
        assert turn.text.strip() and turn.text.strip() in screen.replace("\r\n", "\n")
