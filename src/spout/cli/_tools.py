"""The command's tools: functions from Python files, approval on the terminal, calls on stderr."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._common import CommandError

if TYPE_CHECKING:
    from .. import Tool, ToolCall

#: A result longer than this is cut on stderr (the model gets it whole).
_SHOWN = 200


def add_tool_options(parser: argparse.ArgumentParser) -> None:
    """--tool-file, --mcp, --tools-approve, --chain-limit."""
    parser.add_argument(
        "--tool-file",
        action="append",
        default=[],
        metavar="PATH",
        help="give the model the public functions defined in this Python file as tools; repeatable",
    )
    parser.add_argument(
        "--mcp",
        action="append",
        default=[],
        metavar="COMMAND",
        help="give the model the tools of an MCP server run as this command (one string, "
        'e.g. --mcp "uvx mcp-server-time"), over stdio; repeatable',
    )
    parser.add_argument(
        "--tools-approve",
        action="store_true",
        help="ask on the terminal before each tool call runs (y/N)",
    )
    parser.add_argument(
        "--chain-limit",
        type=int,
        default=8,
        metavar="N",
        help="the most model rounds in one answer with tools (default: 8)",
    )


def load_tool_file(path: str) -> list[Tool]:
    """The public functions defined at the top of a Python file, as tools.

    Functions the file imports (``from os.path import join``) are not its own and are left
    out, as are names starting with ``_``.

    Example::

        tools = load_tool_file("tools.py")
    """
    from .. import Tool

    file = Path(path)
    if not file.is_file():
        raise CommandError(f"--tool-file {path}: no such file", 2)
    # A name of its own, so two files both called tools.py do not replace each other.
    name = f"_spout_tools_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise CommandError(f"--tool-file {path}: not a Python file", 2)
    module = importlib.util.module_from_spec(spec)
    # Registered as importlib's recipe does: a @dataclass or pydantic model in the file looks
    # its module up in sys.modules as it is made.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # a tool file's SyntaxError, ImportError, SystemExit...
        del sys.modules[name]
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CommandError(
            f"--tool-file {path}: could not load it: {type(exc).__name__}: {exc}", 2
        ) from exc
    tools = []
    for attr, value in vars(module).items():
        if attr.startswith("_") or not inspect.isfunction(value):
            continue
        if value.__module__ != name:  # imported into the file, not defined there
            continue
        try:
            tools.append(Tool.from_function(value))
        except (TypeError, ValueError) as exc:
            raise CommandError(f"--tool-file {path}: {attr}: {exc}", 2) from exc
    if not tools:
        raise CommandError(f"--tool-file {path}: it defines no public function", 2)
    return tools


def load_tools(args: argparse.Namespace) -> list[Any]:
    """Every tool the options give (before anything is sent); empty without tool options."""
    if args.chain_limit < 1:
        raise CommandError("--chain-limit must be 1 or more", 2)
    tools: list[Any] = []
    for path in args.tool_file:
        tools.extend(load_tool_file(path))
    for command in args.mcp:
        tools.append(mcp_server(command))
    return tools


def mcp_server(command: str) -> Any:
    """The MCP server ``--mcp`` names, started on first use (when the tools are listed)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:  # an unclosed quote
        raise CommandError(f"--mcp {command!r}: {exc}", 2) from exc
    if not argv:
        raise CommandError("--mcp needs a command, e.g. --mcp 'uvx mcp-server-time'", 2)
    if importlib.util.find_spec("mcp") is None:
        raise CommandError("--mcp needs the mcp package: pip install 'spout[mcp]'", 2)
    from ..mcp import MCPServer

    return MCPServer.stdio(argv)


def close_servers(tools: list[Any]) -> None:
    """Stop the MCP servers among ``tools`` (the tool loop stops them too; this covers an
    error before the loop began)."""
    for item in tools:
        close = getattr(item, "close", None)
        if callable(close):
            close()


def call_text(call: ToolCall) -> str:
    """``name({"arg": ...})``, as the model asked for it."""
    arguments = json.dumps(call.arguments, ensure_ascii=False) if call.arguments else ""
    return f"{call.name}({arguments})"


def result_text(call: ToolCall) -> str:
    """What a call that ran gave back, on one line, cut when long."""
    if call.error is not None:
        text = f"error: {call.error}"
    elif isinstance(call.result, str):
        text = call.result
    else:
        try:
            text = json.dumps(call.result, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(call.result)
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


class CallDisplay:
    """Shows each tool call on stderr as it starts (``→``) and what it gave (``←``); with
    ``ask``, asks before each one runs.

    It is the tool loop's ``approve=``: the loop calls it just before a call runs, so the call
    shows then, not once it is over. Calls the loop refuses on its own (an unknown tool) show
    when they come back.
    """

    def __init__(
        self,
        ask: bool,
        before: Callable[[], None] | None = None,
        stderr: TextIO | None = None,
        stdin: TextIO | None = None,
    ) -> None:
        self.ask = ask
        self.before = before  # clears the status line, flushes stdout's text before the call
        self.stderr = stderr or sys.stderr
        self.stdin = stdin or sys.stdin
        self._shown: set[str] = set()

    def __call__(self, call: ToolCall) -> bool:
        self._shown.add(call.id)
        if self.before is not None:
            self.before()
        if not self.ask:
            self._line(f"→ {call_text(call)}")
            return True
        if not _isatty(self.stdin):
            self._line(
                f"→ {call_text(call)}: refused (--tools-approve asks on a terminal, and stdin "
                "is not one)"
            )
            return False
        self.stderr.write(f"→ {call_text(call)}  run it? [y/N] ")
        self.stderr.flush()
        answer = self.stdin.readline()
        if not answer.endswith("\n"):  # end of input: nobody said yes
            self.stderr.write("\n")
        return answer.strip().lower() in ("y", "yes")

    def ran(self, call: ToolCall) -> None:
        """A call came back from the loop, run or refused."""
        if call.id not in self._shown:
            self._line(f"→ {call_text(call)}")
        self._line(f"← {result_text(call)}")

    def _line(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()


def same_terminal(stdout: TextIO) -> bool:
    """Whether stdout and stderr both show on a terminal (where their lines interleave)."""
    return _isatty(stdout) and _isatty(sys.stderr)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
