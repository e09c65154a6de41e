"""The history rewrite across providers: a session's turns as the next provider takes them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._turn import Turn

__all__ = ["for_provider"]

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def for_provider(turns: Sequence[Turn], provider: str) -> list[dict[str, Any]]:
    """The history as the current provider may take it.

    Turns another provider made lose what only that provider can read back: reasoning
    signatures (Anthropic thinking, Gemini thought signatures). Their tool call ids are made
    unique and safe for every provider (Gemini numbers calls ``call_0`` in each response;
    Anthropic takes ids matching ``^[a-zA-Z0-9_-]+$``), results renamed to match.
    """
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, turn in enumerate(turns):
        foreign = turn.provider is not None and turn.provider != provider
        renamed: dict[str, str] = {}
        for message in turn.messages:
            if not foreign:
                out.append(message)
                for call in message.get("tool_calls") or ():
                    seen.add(str(call.get("id")))
                continue
            message = dict(message)
            message.pop("reasoning_signature", None)
            message.pop("reasoning_blocks", None)
            calls = message.get("tool_calls")
            if calls:
                fixed = []
                for call in calls:
                    call = {k: v for k, v in call.items() if k != "signature"}
                    old = str(call.get("id") or "")
                    new = _UNSAFE_ID.sub("_", old) or f"call_{position}"
                    while new in seen:
                        new = f"{new}_{position}"
                    seen.add(new)
                    renamed[old] = new
                    call["id"] = new
                    fixed.append(call)
                message["tool_calls"] = fixed
            if message.get("role") == "tool":
                old = str(message.get("tool_call_id") or "")
                message["tool_call_id"] = renamed.get(old, old)
            out.append(message)
    return out
