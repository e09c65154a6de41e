"""Tools on the command line: --tool-file, --tools-approve, --chain-limit, calls on stderr."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_support import Terminal, assert_one_error_line, openai_args, spout, spout_env

from replay_server import ReplayServer, Reply
from spout._store import Store

ANSWER = "It is 21 degrees in Oslo."

TOOLS_PY = '''\
"""Tools for the test."""
from os.path import join  # imported: not a tool


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"21 degrees in {city}"


def _helper() -> None:
    """Private: not a tool."""
'''


@pytest.fixture(autouse=True)
def spout_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each run logs its exchange: into a store of the test's own, not the user's."""
    home = tmp_path / "spout_home"
    monkeypatch.setenv("SPOUT_HOME", str(home))
    return home


@pytest.fixture
def tool_file(tmp_path: Path) -> Path:
    path = tmp_path / "tools.py"
    path.write_text(TOOLS_PY)
    return path


def sse(*payloads: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads) + (
        b"data: [DONE]\n\n"
    )


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-WIREcli",
        "object": "chat.completion.chunk",
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def script(server: ReplayServer, said: str | None = None) -> None:
    """Round 1 calls get_weather for Oslo (after saying ``said``); round 2 answers in text."""
    call = {
        "index": 0,
        "id": "call_WIRE0001",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    round_1 = sse(
        chunk({"role": "assistant", "content": said}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chunk({}, "tool_calls"),
    )
    round_2 = sse(
        chunk({"role": "assistant", "content": "It is 21 degrees"}),
        chunk({"content": " in Oslo."}),
        chunk({}, "stop"),
    )
    server.replies = [Reply(chunks=[round_1]), Reply(chunks=[round_2])]


def tool_message(server: ReplayServer) -> dict[str, Any]:
    """The result the round-2 request sent back for the call."""
    (message,) = [m for m in server.requests[1].json()["messages"] if m["role"] == "tool"]
    assert message["tool_call_id"] == "call_WIRE0001"
    return dict(message)


def test_tool_file_functions_run_and_their_result_goes_back(
    replay: ReplayServer, tool_file: Path, spout_home: Path
) -> None:
    script(replay)
    result = spout(*openai_args(replay), "--tool-file", str(tool_file), "Weather in Oslo?")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"  # only the answer on stdout
    assert result.stderr == '→ get_weather({"city": "Oslo"})\n← 21 degrees in Oslo\n'
    # The file's own public functions, and nothing it imported or kept private.
    tools = replay.requests[0].json()["tools"]
    assert [t["function"]["name"] for t in tools] == ["get_weather"]
    assert tools[0]["function"]["description"] == "The current weather in a city."
    assert len(replay.requests) == 2
    assert tool_message(replay)["content"] == "21 degrees in Oslo"
    # The exchange is logged: a continued conversation has the call and its result.
    with Store(spout_home / "conversations.db") as store:
        (conversation,) = store.list()
        (turn,) = store.turns(conversation.id)
    assert turn.text == ANSWER
    assert [m["role"] for m in turn.messages] == ["user", "assistant", "tool", "assistant"]


def test_a_tool_file_may_define_dataclasses(replay: ReplayServer, tmp_path: Path) -> None:
    # A dataclass with string annotations looks its module up in sys.modules as it is made;
    # classes are not tools.
    path = tmp_path / "tools.py"
    path.write_text(
        "from __future__ import annotations\n\nfrom dataclasses import dataclass\n\n\n"
        "@dataclass\nclass Reading:\n"
        "    degrees: int\n\n\ndef get_weather(city: str) -> str:\n"
        '    """The current weather in a city."""\n'
        '    return f"{Reading(21).degrees} degrees in {city}"\n'
    )
    script(replay)
    result = spout(*openai_args(replay), "--tool-file", str(path), "Weather in Oslo?")
    assert (result.returncode, result.stdout) == (0, ANSWER + "\n"), result.stderr
    assert [t["function"]["name"] for t in replay.requests[0].json()["tools"]] == ["get_weather"]
    assert tool_message(replay)["content"] == "21 degrees in Oslo"


def test_no_stream_prints_the_answer_at_the_end(replay: ReplayServer, tool_file: Path) -> None:
    script(replay)
    result = spout(
        *openai_args(replay), "--no-stream", "--tool-file", str(tool_file), "Weather in Oslo?"
    )
    assert (result.returncode, result.stdout) == (0, ANSWER + "\n"), result.stderr
    assert "← 21 degrees in Oslo" in result.stderr


def test_chain_limit_stops_after_that_many_rounds(
    replay: ReplayServer, tool_file: Path, spout_home: Path
) -> None:
    script(replay)
    result = spout(
        *openai_args(replay),
        "--tool-file",
        str(tool_file),
        "--chain-limit",
        "1",
        "Weather in Oslo?",
    )
    line = assert_one_error_line(result)  # and no call shown: it was not run
    assert result.returncode == 1
    assert "max_rounds=1" in line
    assert len(replay.requests) == 1
    # What arrived is logged, marked as cut short by the error.
    with Store(spout_home / "conversations.db") as store:
        (conversation,) = store.list()
        (turn,) = store.turns(conversation.id)
    assert turn.incomplete == "error" and turn.error is not None and "max_rounds" in turn.error


def test_on_a_terminal_a_call_starts_its_own_line(replay: ReplayServer, tool_file: Path) -> None:
    script(replay, said="Let me check.")
    terminal = Terminal(
        *openai_args(replay), "--tool-file", str(tool_file), "Weather in Oslo?", env=spout_env()
    )
    try:
        assert terminal.wait() == 0
    finally:
        terminal.close()
    assert terminal.output == (
        'Let me check.\r\n→ get_weather({"city": "Oslo"})\r\n← 21 degrees in Oslo\r\n'
        f"{ANSWER}\r\n"
    )


def test_in_a_pipe_the_text_is_as_the_model_wrote_it(replay: ReplayServer, tool_file: Path) -> None:
    script(replay, said="Let me check.")
    result = spout(*openai_args(replay), "--tool-file", str(tool_file), "Weather in Oslo?")
    assert result.stdout == f"Let me check.{ANSWER}\n", result.stderr


@pytest.mark.parametrize(
    ("answer", "sent_back"),
    [("n", "Error: the call was not approved"), ("y", "21 degrees in Oslo")],
)
def test_tools_approve_asks_on_the_terminal(
    replay: ReplayServer, tool_file: Path, answer: str, sent_back: str
) -> None:
    script(replay)
    terminal = Terminal(
        *openai_args(replay),
        "--tools-approve",
        "--tool-file",
        str(tool_file),
        "Weather in Oslo?",
        env=spout_env(),
    )
    try:
        terminal.expect('→ get_weather({"city": "Oslo"})  run it? [y/N] ')
        assert len(replay.requests) == 1  # it waits for the answer
        terminal.send(answer + "\n")
        terminal.expect(ANSWER)
        assert terminal.wait() == 0
    finally:
        terminal.close()
    assert tool_message(replay)["content"] == sent_back
    if answer == "y":
        assert "← 21 degrees in Oslo" in terminal.output
    else:
        assert "← error: the call was not approved" in terminal.output


def test_tools_approve_without_a_terminal_refuses(replay: ReplayServer, tool_file: Path) -> None:
    script(replay)
    result = spout(
        *openai_args(replay), "--tools-approve", "--tool-file", str(tool_file), "Weather?"
    )
    assert result.returncode == 0, result.stderr
    assert "refused (--tools-approve asks on a terminal, and stdin is not one)" in result.stderr
    assert tool_message(replay)["content"] == "Error: the call was not approved"


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("def broken(:\n", "SyntaxError"),
        ("import no_such_module_for_spout\n", "ModuleNotFoundError"),
        ("X = 1\n", "it defines no public function"),
    ],
)
def test_a_tool_file_that_does_not_load_exits_2(
    replay: ReplayServer, tmp_path: Path, source: str, says: str
) -> None:
    path = tmp_path / "bad_tools.py"
    path.write_text(source)
    result = spout(*openai_args(replay), "--tool-file", str(path), "Weather?")
    line = assert_one_error_line(result)
    assert result.returncode == 2
    assert f"--tool-file {path}" in line and says in line
    assert replay.requests == []  # nothing was sent


def test_a_missing_tool_file_exits_2(replay: ReplayServer, tmp_path: Path) -> None:
    result = spout(*openai_args(replay), "--tool-file", str(tmp_path / "nope.py"), "Hi")
    assert "no such file" in assert_one_error_line(result)
    assert result.returncode == 2


# -- --mcp ---------------------------------------------------------------------------------------

MCP_SERVER_PY = '''\
"""An MCP server for the test, over stdio."""
from mcp.server.mcpserver import MCPServer

server = MCPServer("spout-cli-test")


@server.tool()
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"21 degrees in {city}"


if __name__ == "__main__":
    server.run()
'''


def test_mcp_server_tools_run_and_their_result_goes_back(
    replay: ReplayServer, tmp_path: Path
) -> None:
    pytest.importorskip("mcp")
    path = tmp_path / "weather server.py"  # a space: the command is split as a shell would
    path.write_text(MCP_SERVER_PY)
    script(replay)
    command = shlex.join([sys.executable, str(path)])
    result = spout(*openai_args(replay), "--mcp", command, "Weather in Oslo?")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"
    assert result.stderr == '→ get_weather({"city": "Oslo"})\n← 21 degrees in Oslo\n'
    (listed,) = replay.requests[0].json()["tools"]
    assert listed["function"]["name"] == "get_weather"
    assert listed["function"]["description"] == "The current weather in a city."
    assert tool_message(replay)["content"] == "21 degrees in Oslo"


def test_an_mcp_server_that_does_not_start_is_one_error_line(
    replay: ReplayServer, tmp_path: Path
) -> None:
    pytest.importorskip("mcp")
    script(replay)
    missing = str(tmp_path / "no-such-server")
    result = spout(*openai_args(replay), "--mcp", missing, "Weather in Oslo?")
    assert_one_error_line(result)
    assert result.returncode == 1
    assert replay.requests == []  # its tools are listed before anything is sent
