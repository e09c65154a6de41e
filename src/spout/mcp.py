"""Tools from MCP servers: an :class:`MCPServer` stands in ``tools=[...]`` beside spout Tools.

Built on the official ``mcp`` SDK (``pip install 'spout[mcp]'``). The SDK is async; spout's
tool loop has a sync and an async form, and a sync one may itself run inside a running event
loop (a notebook, a web handler). So each :class:`MCPServer` runs its MCP client on a thread
of its own with its own event loop, and both loops talk to it through futures: nothing here
starts or nests an event loop in the caller's thread, and the connection (whose anyio task
groups must be entered and left in one task) lives in one task on that thread from start to
stop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager
from typing import Any

from ._errors import ToolError
from .tools import Tool

__all__ = ["MCPServer", "MCPServerError", "MCPToolError"]


class MCPServerError(ToolError):
    """The MCP server could not be started or reached, or it stopped (crashed) mid-call.

    In the tool loop it goes back to the model as the call's error; the server is started
    again on the next call.
    """


class MCPToolError(ToolError):
    """The MCP server ran the tool and reported an error (``isError``)."""


class _Connection:
    """One live connection to the server: the task that holds it open, and its session."""

    def __init__(self, task: asyncio.Task[None], session: Any, stop: asyncio.Event) -> None:
        self.task = task
        self.session = session
        self.stop = stop


class MCPServer:
    """An MCP server whose tools a model can call; pass it in ``tools=[...]``.

    Its tools are listed when a call or loop is made (with the names, descriptions and input
    schemas the server gives), and each call the model makes goes to the server. The server
    (its process, for stdio) starts on first use and stops when the tool loop ends (in a
    :class:`~spout.Session`, when the session closes); a crashed
    one gives :class:`MCPServerError` for the call it broke and starts again on the next.

    Example::

        server = MCPServer.stdio(["python", "weather_server.py"])
        for item in llm.generate_stream_with_tools("Weather in Oslo?", tools=[server]):
            print(item if isinstance(item, str) else f"[{item.name} -> {item.result}]")
    """

    def __init__(self, connect: Callable[[], AbstractAsyncContextManager[Any]], label: str) -> None:
        self._connect = connect
        self.label = label
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._holds = 0

    @classmethod
    def stdio(cls, command: Sequence[str], env: Mapping[str, str] | None = None) -> MCPServer:
        """A server run as a subprocess that speaks MCP over its stdin and stdout.

        ``env`` is added to the SDK's safe default environment (PATH, HOME and the like).

        ``MCPServer.stdio(["uvx", "mcp-server-time"])``
        """
        argv = [str(part) for part in command]
        if not argv:
            raise ValueError("MCPServer.stdio needs a command, e.g. ['python', 'server.py']")
        environment = None if env is None else dict(env)

        def connect() -> AbstractAsyncContextManager[Any]:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(command=argv[0], args=argv[1:], env=environment)
            return stdio_client(params)

        return cls(connect, " ".join(argv))

    @classmethod
    def http(cls, url: str, headers: Mapping[str, str] | None = None) -> MCPServer:
        """A server reached over MCP's Streamable HTTP transport at ``url``.

        ``MCPServer.http("http://localhost:8000/mcp", headers={"Authorization": "Bearer ..."})``
        """
        extra = dict(headers or {})

        def connect() -> AbstractAsyncContextManager[Any]:
            from mcp.client.streamable_http import streamable_http_client

            if not extra:
                return streamable_http_client(url)
            import httpx2  # the SDK's HTTP client; headers go on a client of its own

            return _with_client(httpx2.AsyncClient(headers=extra), url)

        return cls(connect, url)

    def __repr__(self) -> str:
        return f"MCPServer({self.label!r})"

    # -- what the tool loop uses -----------------------------------------------------------

    def tools(self) -> list[Tool]:
        """The server's tools as spout Tools whose calls go to the server (starting it)."""
        listed = self._run(self._list_tools)
        made = []
        for spec in listed:
            schema = dict(spec.input_schema or {})
            schema.setdefault("type", "object")
            made.append(
                Tool(
                    name=spec.name,
                    description=spec.description or "",
                    parameters=schema,
                    function=_RemoteTool(self, spec.name),
                )
            )
        return made

    def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> str:
        """Call one tool and return its result as the text the model gets.

        Raises :class:`MCPToolError` when the tool reports an error and
        :class:`MCPServerError` when the server cannot be reached or stopped.
        """
        result = self._run(lambda session: session.call_tool(name, dict(arguments or {})))
        text = _result_text(result)
        if result.is_error:
            raise MCPToolError(text or f"tool {name!r} failed")
        return text

    def close(self) -> None:
        """Stop the server (its process, for stdio) and the thread its client runs on.

        The tool loop does this when it ends; it starts again on next use.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            if loop is None or thread is None:
                return
            asyncio.run_coroutine_threadsafe(self._disconnect(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            self._connecting = None
        thread.join(timeout=10)
        loop.close()

    def _hold(self) -> None:
        """Keep the server up when a loop ends (a Session does, until it closes)."""
        with self._lock:
            self._holds += 1

    def _release(self) -> None:
        """Let go of a hold; the last one stops the server."""
        with self._lock:
            self._holds -= 1
            held = self._holds > 0
        if not held:
            self.close()

    def _loop_ended(self) -> None:
        """A tool loop that used the server ended: stop it, unless a Session holds it."""
        if not self._holds:
            self.close()

    def __enter__(self) -> MCPServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the client's thread ---------------------------------------------------------------

    def _run(self, use: Callable[[Any], Any]) -> Any:
        """Run ``use(session)`` on the client's loop, connecting first, and wait for it."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"spout-mcp {self.label}", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            loop = self._loop
        future: Future[Any] = asyncio.run_coroutine_threadsafe(self._use(use), loop)
        return future.result()

    async def _use(self, use: Callable[[Any], Any]) -> Any:
        if self._connecting is None:  # made on the client's loop, which it belongs to
            self._connecting = asyncio.Lock()
        async with self._connecting:  # calls made at once after a crash start one server
            connection = self._connection
            if connection is None or connection.task.done():
                connection = self._connection = await self._start()
        try:
            return await use(connection.session)
        except Exception as exc:
            if _is_tool_level(exc):
                raise
            # The server went away (or never answered): drop the connection so the next
            # call starts it again, and say which server it was.
            if self._connection is connection:
                await self._disconnect()
            raise MCPServerError(
                f"MCP server {self.label!r} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _start(self) -> _Connection:
        from mcp.client.session import ClientSession

        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()

        async def hold() -> None:
            try:
                async with self._connect() as streams:
                    read, write = streams[0], streams[1]
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        ready.set_result(session)
                        await stop.wait()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                elif not isinstance(exc, Exception):
                    raise

        task = asyncio.ensure_future(hold())
        try:
            session = await ready
        except Exception as exc:
            raise MCPServerError(
                f"MCP server {self.label!r} could not be started: {type(exc).__name__}: {exc}"
            ) from exc
        return _Connection(task, session, stop)

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        connection.stop.set()
        try:
            await asyncio.wait_for(connection.task, timeout=5)
        except Exception:  # a server that will not stop cleanly is let go
            connection.task.cancel()

    async def _list_tools(self, session: Any) -> list[Any]:
        from mcp_types import PaginatedRequestParams

        tools: list[Any] = []
        cursor = None
        while True:
            params = None if cursor is None else PaginatedRequestParams(cursor=cursor)
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = getattr(page, "next_cursor", None)
            if not cursor:
                return tools


class _RemoteTool:
    """A Tool's function that calls the server; ``server`` lets the loop stop it when done."""

    def __init__(self, server: MCPServer, name: str) -> None:
        self.server = server
        self.__name__ = name

    def __call__(self, **arguments: Any) -> str:
        return self.server.call(self.__name__, arguments)


def expand(tools: Sequence[Any]) -> list[Any]:
    """``tools=`` with each :class:`MCPServer` replaced by its tools, listed now."""
    out: list[Any] = []
    for item in tools:
        out.extend(item.tools() if isinstance(item, MCPServer) else [item])
    return out


def servers_of(tools: Mapping[str, Tool] | Sequence[Any]) -> list[MCPServer]:
    """The MCP servers behind the tools, each once."""
    values = tools.values() if isinstance(tools, Mapping) else tools
    found: dict[int, MCPServer] = {}
    for tool in values:
        function = getattr(tool, "function", None)
        if isinstance(function, _RemoteTool):
            found[id(function.server)] = function.server
    return list(found.values())


def _is_tool_level(exc: Exception) -> bool:
    """An error the server answered with (a JSON-RPC error), as opposed to a lost server."""
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    return isinstance(exc, MCPError) and exc.error.code != CONNECTION_CLOSED


def _result_text(result: Any) -> str:
    """A tool result as the text the model gets: its text blocks, or its structured content
    as JSON when it has no text, and each image described (tool results go back to the model
    as text). The MCP spec asks a server that returns structured content to return it as text
    too (server/tools#structured-content), so the text is taken first and nothing is doubled.
    """
    parts: list[str] = []
    has_text = any(getattr(block, "type", None) == "text" for block in result.content)
    if result.structured_content is not None and not has_text:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    for block in result.content:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            size = len(base64.b64decode(block.data))
            parts.append(
                f"[{kind} {block.mime_type}, {size} bytes: not shown, as tool results go back"
                " to the model as text only]"
            )
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")
        elif kind == "resource":
            text = getattr(block.resource, "text", None)
            parts.append(text if text is not None else f"[resource {block.resource.uri}]")
    return "\n".join(parts)


def _with_client(client: Any, url: str) -> AbstractAsyncContextManager[Any]:
    from contextlib import asynccontextmanager

    from mcp.client.streamable_http import streamable_http_client

    @asynccontextmanager
    async def connect() -> Any:
        async with client, streamable_http_client(url, http_client=client) as streams:
            yield streams

    return connect()
