"""Tools from an MCP server: a model calls a tool an MCP server (run over stdio) provides.

Run it with ``python examples/mcp.py`` (needs ``pip install 'spout[mcp]'``; no key, no
network). It writes a small MCP server with the official ``mcp`` SDK to a temporary
directory, and hands ``MCPServer.stdio([python, server.py])`` to the tool loop beside a plain
spout tool. The model is a scripted OpenAI-compatible server on a loopback port: its first
turn calls the MCP tool ``weather``, its second answers with the result it was sent back, so
what went over the wire can be seen. Point ``create_llm`` at a real model instead and it
decides the calls itself.
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# This file is named mcp.py, and `python examples/mcp.py` puts examples/ first on sys.path,
# where it would shadow the `mcp` SDK that spout.mcp imports: take that entry out first.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from spout import ToolCall, create_llm, tool  # noqa: E402
from spout.mcp import MCPServer  # noqa: E402

SERVER = textwrap.dedent(
    '''
    from pydantic import BaseModel

    from mcp.server.mcpserver import MCPServer

    server = MCPServer("weather")


    class Weather(BaseModel):
        city: str
        degrees: int
        sky: str


    @server.tool()
    def weather(city: str) -> Weather:
        """Today's weather in a city."""
        return Weather(city=city, degrees=21, sky="sunny")


    if __name__ == "__main__":
        server.run()  # stdio
    '''
)


@tool
def shout(text: str) -> str:
    """Says the text louder (a local tool, beside the MCP server's)."""
    return text.upper()


class ScriptedModel(BaseHTTPRequestHandler):
    """OpenAI's chat completions, scripted: call `weather` first, then quote its result."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        print(f"model sees tools: {sorted(t['function']['name'] for t in body['tools'])}")
        results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        if not results:
            function = {"name": "weather", "arguments": '{"city": "Oslo"}'}
            call = {"index": 0, "id": "call_1", "type": "function", "function": function}
            chunks: list[dict[str, Any] | str] = [{"tool_calls": [call]}, "tool_calls"]
        else:
            weather = json.loads(results[0])
            chunks = [{"content": f"It is {weather['degrees']} degrees and {weather['sky']}."}]
            chunks.append("stop")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for chunk in chunks:
            finish = chunk if isinstance(chunk, str) else None
            delta: dict[str, Any] = {} if isinstance(chunk, str) else chunk
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            data = {"object": "chat.completion.chunk", "model": "scripted", "choices": [choice]}
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    model = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedModel)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "weather_server.py"
        script.write_text(SERVER)
        server = MCPServer.stdio([sys.executable, str(script)])
        base_url = f"http://127.0.0.1:{model.server_address[1]}/v1"
        with create_llm("openai", model="scripted", base_url=base_url, api_key="sk-x") as llm:
            # The server starts when the loop lists its tools, and stops when the loop ends.
            stream = llm.generate_stream_with_tools("Weather in Oslo?", tools=[server, shout])
            for item in stream:
                if isinstance(item, ToolCall):
                    print(f"[{item.name}({item.arguments}) -> {json.loads(item.result)}]")
                else:
                    print(item, end="", flush=True)
            print()
            print(f"rounds: {len(stream.rounds)}")
    model.shutdown()


if __name__ == "__main__":
    main()
