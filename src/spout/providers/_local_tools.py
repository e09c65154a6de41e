"""Tool calls for a model run in process: the tools described in its prompt, its answer held
to a grammar.

A model in process has no server to parse its tool calls, so spout asks for them in a plain
format and lets llama.cpp's grammar sampler allow nothing else::

    functions.calculator:
    {"expression": "123 * 456"}

or, for an answer in words, ``message:`` and the text. The reply opens with one of those
headers (held to a grammar of the tool names), each call's arguments are held to a grammar
made from that tool's JSON Schema, and after a call the model either names another or ends.
The same convention as llama-cpp-python's ``chatml-function-calling`` handler, so a model
that knows one knows the other; the handler itself is not used, since it cannot stream a
reply's start, drops tool results from the prompt and has no ``required``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from .._errors import ConfigurationError
from ._base import Call, NamedToolChoice, text_content

__all__ = ["MESSAGE_HEADER", "ToolPlan"]

MESSAGE_HEADER = "message:"
CALL_PREFIX = "functions."
#: A reply makes at most this many calls: a small model may otherwise name the same call
#: again and again until its budget runs out.
MAX_CALLS = 4


def _literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _arguments_text(arguments: Any) -> str:
    """A call's arguments as the model wrote them (text), or as JSON where they are parsed."""
    if isinstance(arguments, str):
        return arguments
    return text_content(arguments if arguments is not None else {})


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """How one call may use its tools: which, and whether it must."""

    #: (name, description, JSON Schema of the arguments), in the caller's order.
    tools: tuple[tuple[str, str, dict[str, Any]], ...]
    #: "auto": a call or words; "required": at least one call; "named": one call of ``named``.
    mode: Literal["auto", "required", "named"]
    named: str | None = None
    #: (name, arguments as the model wrote them) of the calls already in the conversation.
    earlier_calls: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, call: Call) -> ToolPlan | None:
        """The plan for ``call``, or None when it generates words only."""
        choice = call.tool_choice
        if not call.tools or choice == "none":
            return None
        tools = []
        for tool in call.tools:
            if isinstance(tool, dict):
                raise ConfigurationError(
                    "the local provider calls function tools only (a spout Tool, a Python "
                    f"function or an OpenAI function definition), not {str(tool)[:80]}"
                )
            tools.append((tool.name, tool.description or "", dict(tool.parameters or {})))
        names = [name for name, _, _ in tools]
        if isinstance(choice, dict):
            function = choice.get("function") if choice.get("type") == "function" else None
            name = function.get("name") if isinstance(function, dict) else None
            if not isinstance(name, str):
                raise ConfigurationError(
                    f"the local provider does not understand tool_choice={choice!r}: give "
                    "'auto', 'none', 'required' or a tool's name"
                )
            choice = NamedToolChoice(name)
        if isinstance(choice, NamedToolChoice):
            if choice.name not in names:
                raise ConfigurationError(
                    f"tool_choice names {choice.name!r}, which is not one of the tools "
                    f"({', '.join(names)})"
                )
            return cls(tuple(tools), "named", choice.name)
        earlier = tuple(
            (str(function.get("name") or ""), _arguments_text(function.get("arguments")))
            for message in call.messages
            if message.get("role") == "assistant"
            for tool_call in message.get("tool_calls") or ()
            for function in [tool_call.get("function") or {}]
        )
        mode: Literal["auto", "required"] = "required" if choice == "required" else "auto"
        return cls(tuple(tools), mode, None, earlier)

    # -- the prompt ----------------------------------------------------------------------------

    def instructions(self) -> str:
        lines = [
            "You can call these functions. Each is given with the JSON Schema of its arguments.",
            "",
        ]
        for name, description, schema in self.tools:
            lines.append(f"{CALL_PREFIX}{name}: {description}".rstrip(": ").rstrip())
            lines.append(orjson.dumps(schema).decode())
            lines.append("")
        lines.append(
            f"To call a function, reply with a line '{CALL_PREFIX}<name>:' and then a line "
            "with the JSON object of its arguments; several calls follow one another. To "
            f"answer in words instead, begin your reply with the line '{MESSAGE_HEADER}'."
        )
        return "\n".join(lines)

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation as the model reads it: the tools described in the system message,
        earlier calls and their results written in the reply format."""
        out: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        instructions = self.instructions()
        rest = messages
        if messages and messages[0].get("role") == "system":
            system = text_content(messages[0].get("content"))
            out.append({"role": "system", "content": f"{system}\n\n{instructions}"})
            rest = messages[1:]
        else:
            out.append({"role": "system", "content": instructions})
        for message in rest:
            role = message.get("role")
            if role == "assistant":
                out.append({"role": "assistant", "content": self._reply(message, names)})
            elif role == "tool":
                name = message.get("name") or names.get(str(message.get("tool_call_id")), "")
                result = text_content(message.get("content"))
                # As the user's turn: small models know no "tool" role, and read a result
                # given there as something to answer.
                out.append({"role": "user", "content": f"{CALL_PREFIX}{name} returned:\n{result}"})
            else:
                out.append(message)
        return out

    @staticmethod
    def _reply(message: dict[str, Any], names: dict[str, str]) -> str:
        parts = []
        content = text_content(message.get("content"))
        if content:
            parts.append(f"{MESSAGE_HEADER}\n{content}")
        for tool_call in message.get("tool_calls") or ():
            function = tool_call.get("function") or {}
            name = str(function.get("name") or "")
            names[str(tool_call.get("id"))] = name
            parts.append(f"{CALL_PREFIX}{name}:\n{_arguments_text(function.get('arguments'))}")
        return "\n".join(parts)

    # -- the grammars --------------------------------------------------------------------------

    def first_header(self) -> str | None:
        """The header the reply must open with, when it is fixed (a named tool)."""
        return f"{CALL_PREFIX}{self.named}:" if self.mode == "named" else None

    def header_grammar(self, *, first: bool) -> str:
        """GBNF for a header: the reply's first (a call, or words where allowed), or the one
        after a call (another call, or nothing: the reply ends)."""
        names = " | ".join(_literal(name) for name, _, _ in self.tools)
        call = f"{_literal(CALL_PREFIX)} name {_literal(':')}"
        if not first:
            # Right after the arguments' closing brace: the end of the reply, or a new line
            # and another call.
            root = f"({_literal(chr(10))} {call})?"
        elif self.mode == "auto":
            root = f"{_literal(MESSAGE_HEADER)} | {call}"
        else:
            root = call
        return f"root ::= {root}\nname ::= {names}\n"

    def schema(self, name: str) -> dict[str, Any]:
        for tool_name, _, schema in self.tools:
            if tool_name == name:
                return schema
        raise KeyError(name)

    def may_continue(self, calls: int) -> bool:
        """Whether the reply may make another call after ``calls`` of them."""
        return self.mode != "named" and calls < MAX_CALLS
