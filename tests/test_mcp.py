"""MCP servers as tools: real servers written with the `mcp` SDK, over stdio and Streamable HTTP,
in tool loops against scripted model turns on the loopback replay server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import spout
from helpers import Runner, free_port
from replay_server import ReplayServer
from scripted_turns import openai_single_call, openai_text_turn, turns
from spout import ToolCall, ToolResult, create_llm
from spout.mcp import MCPServer, MCPServerError

SERVER = textwrap.dedent(
    '''
    """A small MCP server for spout's tests."""
    import base64
    import os
    import sys

    from pydantic import BaseModel

    from mcp.server.mcpserver import Image, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("spout-test")

    # A 1x1 PNG.
    PIXEL = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )


    class Weather(BaseModel):
        city: str
        degrees: int


    @server.tool()
    def shout(text: str) -> str:
        """Says the text louder."""
        return text.upper() + "!"


    @server.tool()
    def weather(city: str) -> Weather:
        """Today's weather in a city."""
        return Weather(city=city, degrees=21)


    @server.tool()
    def fail(reason: str) -> str:
        """Always fails (a ToolError's message reaches the client; others are masked)."""
        raise ToolError(f"failed on purpose: {reason}")


    @server.tool()
    def pixel() -> Image:
        """A tiny picture."""
        return Image(data=PIXEL, format="png")


    @server.tool()
    def pid() -> str:
        """The server's process id."""
        return str(os.getpid())


    if __name__ == "__main__":
        if len(sys.argv) > 1:
            server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
        else:
            server.run()
    '''
)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return path


@pytest.fixture
def stdio(script: Path) -> Iterator[MCPServer]:
    server = MCPServer.stdio([sys.executable, str(script)])
    yield server
    server.close()


@pytest.fixture
def http(script: Path) -> Iterator[MCPServer]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        server = MCPServer.http(f"http://127.0.0.1:{port}/mcp")
        yield server
        server.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the MCP HTTP server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the MCP HTTP server did not start listening")


def openai(replay: ReplayServer) -> spout.LLM:
    return create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1", api_key="sk-x")


def two_rounds(
    replay: ReplayServer, runner: Runner, server: MCPServer, name: str, arguments: str, **kw: Any
) -> tuple[ToolCall, dict[str, Any], dict[str, Any]]:
    """Round 1 calls the MCP tool; round 2 answers. The call run, and both request bodies."""
    replay.replies = turns(openai_single_call("call_1", name, arguments), openai_text_turn("Done."))
    result = runner.tool_events(openai(replay), "Go", tools=[server], **kw)
    calls = [e.tool_call for e in result.events if isinstance(e, ToolResult)]
    assert len(calls) == 1
    assert result.response.text == "Done."
    first, second = (r.json() for r in replay.requests)
    return calls[0], first, second


def tool_message(body: dict[str, Any]) -> dict[str, Any]:
    (message,) = [m for m in body["messages"] if m["role"] == "tool"]
    return dict(message)


# -- listing ------------------------------------------------------------------------------------


def test_tools_are_listed_with_the_servers_names_descriptions_and_schemas(
    replay: ReplayServer, runner: Runner, stdio: MCPServer
) -> None:
    _, first, _ = two_rounds(replay, runner, stdio, "shout", '{"text": "hi"}')
    tools = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert sorted(tools) == ["fail", "pid", "pixel", "shout", "weather"]
    assert tools["shout"]["description"] == "Says the text louder."
    assert tools["shout"]["parameters"]["properties"]["text"]["type"] == "string"
    assert tools["shout"]["parameters"]["required"] == ["text"]


# -- results back to the model, over stdio and over Streamable HTTP ------------------------------


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_text_result_goes_back_in_round_two(
    replay: ReplayServer, runner: Runner, transport: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(transport)
    call, _, second = two_rounds(replay, runner, server, "shout", '{"text": "hello"}')
    assert (call.name, call.result, call.error) == ("shout", "HELLO!", None)
    assert tool_message(second) == {"role": "tool", "tool_call_id": "call_1", "content": "HELLO!"}


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_structured_result_goes_back_as_json(
    replay: ReplayServer, runner: Runner, transport: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(transport)
    call, _, second = two_rounds(replay, runner, server, "weather", '{"city": "Oslo"}')
    # The server's text for it, which the MCP spec asks to be the structured content's JSON.
    assert json.loads(call.result) == {"city": "Oslo", "degrees": 21}
    assert tool_message(second)["content"] == call.result


def test_tool_error_goes_back_as_an_error_result(
    replay: ReplayServer, runner: Runner, stdio: MCPServer
) -> None:
    call, _, second = two_rounds(replay, runner, stdio, "fail", '{"reason": "test"}')
    assert call.result is None
    assert call.error is not None
    assert call.error.startswith("MCPToolError: ")
    assert "failed on purpose: test" in call.error
    assert tool_message(second)["content"] == f"Error: {call.error}"


def test_image_is_described_in_text(replay: ReplayServer, runner: Runner, stdio: MCPServer) -> None:
    call, _, second = two_rounds(replay, runner, stdio, "pixel", "{}")
    assert call.result == (
        "[image image/png, 70 bytes: not shown, as tool results go back to the model as text only]"
    )
    assert tool_message(second)["content"] == call.result


def test_approve_refuses_an_mcp_call(
    replay: ReplayServer, runner: Runner, stdio: MCPServer
) -> None:
    asked: list[str] = []

    def approve(call: ToolCall) -> bool:
        asked.append(call.name)
        return False

    call, _, second = two_rounds(replay, runner, stdio, "shout", '{"text": "hi"}', approve=approve)
    assert asked == ["shout"]
    assert call.error == "the call was not approved"
    assert tool_message(second)["content"] == "Error: the call was not approved"


# -- lifecycle ------------------------------------------------------------------------------------


def test_the_server_stops_when_the_loop_ends(
    replay: ReplayServer, runner: Runner, stdio: MCPServer
) -> None:
    call, _, _ = two_rounds(replay, runner, stdio, "pid", "{}")
    pid = int(call.result)
    assert stdio._thread is None  # the client's thread is gone ...
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)  # ... and so is the server's process


def test_a_crashed_server_gives_a_clear_error_and_restarts(stdio: MCPServer) -> None:
    tools = {t.name: t for t in stdio.tools()}
    pid = int(tools["pid"].run({}))
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(MCPServerError, match=r"MCP server '.*server\.py' failed"):
        tools["shout"].run({"text": "after the crash"})
    restarted = int(tools["pid"].run({}))
    assert restarted != pid
    assert tools["shout"].run({"text": "again"}) == "AGAIN!"


def test_session_with_an_mcp_server(replay: ReplayServer, stdio: MCPServer) -> None:
    replay.replies = turns(
        openai_single_call("call_1", "pid", "{}"),
        openai_text_turn("First."),
        openai_single_call("call_2", "pid", "{}"),
        openai_text_turn("Second."),
    )
    session = spout.Session(openai(replay))
    pids = []
    for prompt in ("Your pid?", "And now?"):
        stream = session.generate_stream_with_tools(prompt, tools=[stdio])
        pids += [int(item.result) for item in stream if isinstance(item, ToolCall)]
        assert stdio._thread is not None  # the session keeps the server up between turns
    assert tool_message(replay.requests[1].json())["content"] == str(pids[0])
    assert [m["role"] for m in session.messages] == ["user", "assistant", "tool", "assistant"] * 2
    assert pids[0] == pids[1]  # one server process for the whole session
    session.close()
    assert stdio._thread is None  # ... which stops with it
    deadline = time.monotonic() + 10
    while _alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


def test_the_server_stops_when_the_first_request_fails(
    replay: ReplayServer, stdio: MCPServer
) -> None:
    replay.replies = []  # no turn scripted: the replay server answers 500 at once
    llm = openai(replay)
    try:
        with pytest.raises(spout.SpoutError):
            llm.generate_stream_with_tools("Go", tools=[stdio])
    finally:
        # Closed here: the error's traceback keeps the LLM in a cycle, and a pooled socket
        # freed by the collector later may be finalized before the LLM closes it.
        llm.close()
    assert stdio._thread is None


def test_generate_stream_offers_the_servers_tools(replay: ReplayServer, stdio: MCPServer) -> None:
    replay.replies = turns(openai_single_call("call_1", "shout", '{"text": "a"}'))
    stream = openai(replay).generate_stream("Shout a", tools=[stdio], tool_choice="shout")
    assert [c.name for c in stream.response.tool_calls] == ["shout"]
    body = replay.requests[0].json()
    assert "shout" in [t["function"]["name"] for t in body["tools"]]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "shout"}}


def test_structured_content_without_text_goes_back_as_json() -> None:
    from mcp_types import CallToolResult

    from spout.mcp import _result_text

    result = CallToolResult(content=[], structured_content={"city": "Oslo", "degrees": 21})
    assert _result_text(result) == '{"city": "Oslo", "degrees": 21}'


@pytest.mark.model
def test_the_bundled_model_calls_an_mcp_tool(stdio: MCPServer) -> None:
    llm = create_llm()  # the bundled SmolLM2, in process
    try:
        loop = llm.generate_stream_with_tools(
            "Shout the word hello.",
            tools=[stdio],
            tool_choice="shout",
            max_rounds=3,
            max_tokens=60,
            seed=1,
            temperature=0,
        )
        items = list(loop)
    finally:
        llm.close()
    calls = [item for item in items if isinstance(item, ToolCall)]
    # The real model made a real call, and the MCP server ran it.
    assert calls and calls[0].name == "shout"
    assert calls[0].error is None
    assert calls[0].result == str(calls[0].arguments["text"]).upper() + "!"
    assert len(loop.rounds) >= 2


def test_calls_made_at_once_start_one_server(stdio: MCPServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    pid = {t.name: t for t in stdio.tools()}["pid"]
    stdio.close()  # not connected now: the next calls start it
    with ThreadPoolExecutor(4) as pool:
        pids = list(pool.map(lambda _: pid.run({}), range(4)))
    assert len(set(pids)) == 1
