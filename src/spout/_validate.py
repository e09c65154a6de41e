"""Checks what a caller asked for before anything is sent; each error names its field.

A wrong type raises :class:`TypeError`, a wrong value :class:`ValueError`, as Python's own
functions do: these are mistakes in the calling code, to fix rather than to catch, so they
are not :class:`~spout.SpoutError`. The checks run in one pass over the messages.

What is checked, and why it is no stricter:

- ``prompt`` is a str with some non-whitespace text: an empty or blank prompt is almost
  always an empty variable, and Anthropic refuses blank text blocks anyway.
- ``messages`` is a list (or tuple) of dicts; each has a known ``role`` (``system``,
  ``developer``, ``user``, ``assistant``, ``tool``). A system, developer or user message has
  ``content``, a str or a list of content parts (str or dict), or Gemini's own ``parts``;
  an assistant's content may also be missing or None (beside tool calls), and its
  ``tool_calls`` are a list of dicts. A ``tool`` message names the call it answers in
  ``tool_call_id``; its content may be any value (it is sent as JSON when not text). Empty
  content in a message is allowed: the tool loop sends ``""`` beside tool calls.
- Roles need not alternate: no provider spout speaks to requires it any more. Anthropic's
  Messages API combines consecutive turns of one role into a single turn (API reference,
  ``messages``), and the adapters already group tool results into one turn.
- ``max_tokens`` is a positive int and ``seed`` an int (a bool is neither); ``temperature``
  is a number >= 0 (providers' upper limits differ: 1 for Anthropic, 2 for OpenAI and
  Gemini, none for llama.cpp, so the provider judges); ``top_p`` is a number from 0 to 1
  (OpenAI's and Anthropic's range); ``stop`` is a str or a list of str.
- A tool's parameters schema (or a provider-native tool dict) can be serialized as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from .tools import Tool

__all__ = ["ROLES", "validate_call"]

#: The roles a message may have.
ROLES = ("system", "developer", "user", "assistant", "tool")
_ROLE_SET = frozenset(ROLES)
_NEEDS_CONTENT = frozenset(("system", "developer", "user"))


def validate_call(
    prompt: Any,
    messages: Any,
    system_prompt: Any,
    params: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> None:
    """Raise TypeError or ValueError naming the first field of a call that cannot be sent.

    ``params`` are the call's keywords, ``defaults`` the LLM's; a setting given as None in
    the call falls back to the default, which is checked instead.

    >>> validate_call("hi", None, None, {"max_tokens": 0}, {})
    Traceback (most recent call last):
    ...
    ValueError: max_tokens must be a positive int, not 0
    """
    if prompt is not None:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
        if not prompt or prompt.isspace():
            raise ValueError(
                f"prompt is {'empty' if not prompt else 'only whitespace'}: pass some text, "
                "or leave prompt out and pass messages=[...]"
            )
    if messages is not None:
        _check_messages(messages)
    system = system_prompt if system_prompt is not None else defaults.get("system_prompt")
    if system is not None and not isinstance(system, (str, list)):
        raise TypeError(f"system_prompt must be a str, not {type(system).__name__}")
    _check_settings(params, defaults)
    tools = params.get("tools")
    if tools:
        _check_tools(tools)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages must be a list of dicts, not {type(messages).__name__}")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(f"messages[{index}] must be a dict, not {type(message).__name__}")
        role = message.get("role")
        if role not in _ROLE_SET:
            if role is None:
                raise ValueError(f"messages[{index}] has no 'role'; give one of {_roles()}")
            raise ValueError(f"messages[{index}]['role'] must be one of {_roles()}, not {role!r}")
        content = message.get("content")
        if type(content) is str:  # the common case, checked first
            pass
        elif role == "tool":
            pass  # any value: a result that is not text is sent as JSON
        elif content is None:
            if role in _NEEDS_CONTENT and "parts" not in message:
                what = "has no 'content'" if "content" not in message else "has content None"
                raise ValueError(f"messages[{index}] ({role}) {what}: give it a str")
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                if not isinstance(part, (str, dict)):
                    raise TypeError(
                        f"messages[{index}]['content'][{part_index}] must be a str or a dict "
                        f"(a content part), not {type(part).__name__}"
                    )
        else:
            raise TypeError(
                f"messages[{index}]['content'] must be a str or a list of content parts, "
                f"not {type(content).__name__}"
            )
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise ValueError(
                    f"messages[{index}] is a tool result without 'tool_call_id': name the "
                    f"tool call it answers"
                    + ("" if call_id is None else f" (a non-empty str, not {call_id!r})")
                )
        elif role == "assistant":
            tool_calls = message.get("tool_calls")
            if tool_calls is not None and not (
                isinstance(tool_calls, list) and all(isinstance(c, dict) for c in tool_calls)
            ):
                raise TypeError(f"messages[{index}]['tool_calls'] must be a list of dicts")


def _roles() -> str:
    return ", ".join(map(repr, ROLES))


def _setting(name: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> Any:
    value = params.get(name)
    return defaults.get(name) if value is None else value


def _check_settings(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    value = _setting("max_tokens", params, defaults)
    if value is not None and (not _is_int(value) or value < 1):
        raise (ValueError if _is_int(value) else TypeError)(
            f"max_tokens must be a positive int, not {value!r}"
        )
    value = _setting("temperature", params, defaults)
    if value is not None:
        if not _is_number(value):
            raise TypeError(f"temperature must be a number, not {type(value).__name__}")
        if not (0 <= value < math.inf):
            raise ValueError(f"temperature must be a number >= 0, not {value!r}")
    value = _setting("top_p", params, defaults)
    if value is not None:
        if not _is_number(value):
            raise TypeError(f"top_p must be a number, not {type(value).__name__}")
        if not 0 <= value <= 1:
            raise ValueError(f"top_p must be a number from 0 to 1, not {value!r}")
    value = _setting("stop", params, defaults)
    if value is not None and not (
        isinstance(value, str)
        or (isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value))
    ):
        raise TypeError(f"stop must be a str or a list of str, not {value!r:.80}")
    value = _setting("seed", params, defaults)
    if value is not None and not _is_int(value):
        raise TypeError(f"seed must be an int, not {type(value).__name__}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_tools(tools: Any) -> None:
    if isinstance(tools, (Tool, dict)) or callable(tools):
        tools = [tools]
    if not isinstance(tools, (list, tuple)):
        return  # normalize_tools says what is wrong with it
    for tool in tools:
        if isinstance(tool, Tool):
            name, schema = tool.name, tool.parameters
        elif isinstance(tool, dict):
            function = tool.get("function")
            named = function if isinstance(function, dict) else tool
            name, schema = named.get("name") or tool.get("type") or "?", tool
        else:
            continue  # a function: its schema is built from type hints, always JSON
        try:
            orjson.dumps(schema)
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise TypeError(
                f"tool {name!r}: its parameters cannot be sent as JSON ({exc})"
            ) from None
