"""A stored conversation as text: its JSON export and import, and its Markdown export."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from ._errors import ConfigurationError
from ._files import FILE_PART_TYPES, file_from_part
from ._turn import Turn

if TYPE_CHECKING:
    from ._store import Conversation

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "clean_title", "parse_json", "to_json", "to_markdown"]

#: The ``format`` and ``version`` of :meth:`Store.export`'s JSON.
EXPORT_FORMAT = "spout.conversation"
EXPORT_VERSION = 1


def clean_title(title: str) -> str:
    return " ".join(title.split())


# -- JSON out -------------------------------------------------------------------------------------


def to_json(conversation: Conversation, turns: Sequence[Turn]) -> str:
    """The conversation as :meth:`Store.export` writes it and :meth:`Store.import_json` reads it."""
    document = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "id": conversation.id,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "system_prompt": conversation.system_prompt,
        "models": list(conversation.models),
        "turns": [turn.to_dict() for turn in turns],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


# -- JSON in --------------------------------------------------------------------------------------


def parse_json(data: str | bytes | dict[str, Any], *, need_id: bool) -> dict[str, Any]:
    """Check :meth:`Store.export`'s JSON; the ValueError names the first bad field."""
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the conversation is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"a conversation must be a JSON object, not {type(data).__name__}")
    if data.get("format") != EXPORT_FORMAT:
        raise ValueError(f"'format' must be {EXPORT_FORMAT!r}, not {data.get('format')!r}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"'version' must be a positive int, not {version!r}")
    if version > EXPORT_VERSION:
        raise ValueError(
            f"'version' {version} is newer than this spout reads ({EXPORT_VERSION}): upgrade spout"
        )
    conversation_id = data.get("id")
    if (need_id or conversation_id is not None) and (
        not isinstance(conversation_id, str) or not conversation_id
    ):
        raise ValueError(f"'id' must be a non-empty string, not {conversation_id!r}")
    title = data.get("title")
    if title is not None and not isinstance(title, str):
        raise ValueError(f"'title' must be a string, not {type(title).__name__}")
    system_prompt = data.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ValueError(
            f"'system_prompt' must be a string or null, not {type(system_prompt).__name__}"
        )
    models = data.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ValueError("'models' must be a list of strings")
    raw_turns = data.get("turns")
    if not isinstance(raw_turns, list):
        raise ValueError(f"'turns' must be a list, not {type(raw_turns).__name__}")
    turns = []
    for index, raw in enumerate(raw_turns):
        try:
            turns.append(Turn.from_dict(raw))
        except ValueError as exc:
            raise ValueError(f"'turns'[{index}]: {exc}") from exc
    times: dict[str, float] = {}
    for key in ("created_at", "updated_at"):
        value = data.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{key!r} must be a number (seconds since the epoch), not {value!r}")
        times[key] = float(value)
    return {
        "id": conversation_id,
        "title": clean_title(title) if title else None,
        "created_at": times["created_at"],
        "updated_at": times["updated_at"],
        "system_prompt": system_prompt,
        "models": list(dict.fromkeys(models)),
        "turns": turns,
    }


# -- Markdown ------------------------------------------------------------------------------------


def to_markdown(conversation: Conversation, turns: Sequence[Turn]) -> str:
    lines = [f"# {conversation.title}", ""]
    about = [
        f"`{conversation.id}`",
        f"created {_when(conversation.created_at)}",
        f"updated {_when(conversation.updated_at)}",
    ]
    if conversation.models:
        about.append("models: " + ", ".join(f"`{m}`" for m in conversation.models))
    lines += [" · ".join(about), ""]
    if conversation.system_prompt:
        lines += ["> **System prompt**", ">", _quoted(conversation.system_prompt), ""]
    for turn in turns:
        model = f"{turn.provider}:{turn.model}" if turn.provider and turn.model else turn.model
        call_names: dict[str, str] = {}
        for message in turn.messages:
            lines += _message_markdown(message, model, call_names, turn.file_names)
        if turn.incomplete is not None:
            why = f"{turn.incomplete} — {turn.error}" if turn.error else turn.incomplete
            lines += [f"*(incomplete: {why})*", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _message_markdown(
    message: dict[str, Any],
    model: str | None,
    call_names: dict[str, str],
    file_names: Mapping[str, str],
) -> list[str]:
    role = message.get("role")
    if role == "tool":
        call_id = message.get("tool_call_id")
        name = message.get("name") or call_names.get(str(call_id)) or "?"
        heading = f"### Tool result: {name}" + (" (error)" if message.get("is_error") else "")
        content = message.get("content")
        text = content if isinstance(content, str) else _pretty_json(content)
        return [heading, "", _fenced(text), ""]
    if role == "assistant":
        lines = [f"## Assistant ({model})" if model else "## Assistant", ""]
        reasoning = message.get("reasoning")
        if isinstance(reasoning, str) and reasoning.strip():
            lines += [
                "<details><summary>Reasoning</summary>",
                "",
                reasoning.strip(),
                "",
                "</details>",
                "",
            ]
        text = _content_markdown(message.get("content"), file_names)
        if text:
            lines += [text, ""]
        refusal = message.get("refusal")
        if isinstance(refusal, str):
            # Marked, and quoted apart from the text: the model declined, it did not answer.
            lines += ["> **Refusal**", ">", _quoted(refusal) or ">", ""]
        for call in message.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            # spout's messages nest name and arguments under "function", as chat completions do
            function = call["function"] if isinstance(call.get("function"), dict) else call
            name = str(function.get("name") or "?")
            if call.get("id") is not None:
                call_names[str(call["id"])] = name
            lines += [
                f"### Tool call: {name}",
                "",
                _fenced(_arguments(function.get("arguments")), "json"),
                "",
            ]
        return lines
    heading = {"user": "## User", "system": "## System", "developer": "## Developer"}.get(
        str(role), f"## {str(role).title()}"
    )
    return [heading, "", _content_markdown(message.get("content"), file_names), ""]


def _content_markdown(content: Any, file_names: Mapping[str, str]) -> str:
    if isinstance(content, str) or content is None:
        return (content or "").strip()
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text") or ""))
            elif isinstance(part, dict) and part.get("type") in FILE_PART_TYPES:
                parts.append(_attachment(part, file_names))
            elif isinstance(part, dict):
                parts.append(f"*[{part.get('type') or 'content'}]*")
        return "\n\n".join(p.strip() for p in parts if p.strip())
    return _fenced(_pretty_json(content), "json")


def _attachment(part: dict[str, Any], file_names: Mapping[str, str]) -> str:
    """A file part in one line, its bytes left out: name, media type and size, or URL."""
    try:
        file = file_from_part(part)
    except ConfigurationError as exc:
        return f"*[attachment: unreadable, {exc}]*"
    if file is None:  # not reached: every file part type carries a file or raises
        return f"*[{part.get('type')}]*"
    if file.data is None:
        return f"*[attachment: {file.url}]*"
    name = file.name or file_names.get(hashlib.sha256(file.data).hexdigest())
    about = [name] if name else []
    about += [file.media_type, f"{len(file.data):,} bytes"]
    return f"*[attachment: {', '.join(about)}]*"


def _arguments(arguments: Any) -> str:
    """Tool-call arguments pretty-printed; text that is not JSON as it was sent."""
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return str(arguments)
    return _pretty_json(arguments)


def _pretty_json(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return repr(value)


def _fenced(text: str, language: str = "") -> str:
    """A fenced block longer than any run of backticks inside, so the text cannot close it."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.strip().splitlines())


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
