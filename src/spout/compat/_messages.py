"""litellm-style messages converted to what spout's adapters read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._objects import _mapping


def _spout_messages(messages: Any) -> list[dict[str, Any]]:
    """litellm-style messages as spout sends them.

    Most pass as they are. An assistant message taken from a response carries litellm's
    names for what spout's adapters read under their own: ``reasoning_content`` and
    ``thinking_blocks`` become ``reasoning`` and ``reasoning_signature``, a tool call's
    ``provider_specific_fields.thought_signature`` its ``signature``; empty fields go.
    """
    if messages is None:
        return []
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of dicts, not {type(messages).__name__}")
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, Mapping):
            message = _mapping(message)
        if message.get("role") != "assistant":
            out.append(message if isinstance(message, dict) else dict(message))
            continue
        converted: dict[str, Any] = {
            key: value
            for key, value in message.items()
            if value is not None and key not in ("reasoning_content", "thinking_blocks")
        }
        converted.setdefault("content", None)
        reasoning = message.get("reasoning_content")
        blocks = message.get("thinking_blocks") or ()
        if reasoning is None and blocks:
            reasoning = "".join(b.get("thinking") or "" for b in blocks if isinstance(b, Mapping))
        if reasoning and "reasoning" not in converted:
            converted["reasoning"] = reasoning
        signatures = [
            b["signature"] for b in blocks if isinstance(b, Mapping) and b.get("signature")
        ]
        if signatures and "reasoning_signature" not in converted:
            converted["reasoning_signature"] = signatures[-1]
        if converted.get("tool_calls"):
            calls = []
            for call in converted["tool_calls"]:
                call = {k: v for k, v in _mapping(call).items() if v is not None}
                fields = call.pop("provider_specific_fields", None)
                if isinstance(fields, Mapping) and fields.get("thought_signature"):
                    call.setdefault("signature", fields["thought_signature"])
                calls.append(call)
            converted["tool_calls"] = calls
            if converted["content"] is None:
                # Chat completions allows null beside tool calls, but llama.cpp's server does not.
                converted["content"] = ""
        out.append(converted)
    return out
