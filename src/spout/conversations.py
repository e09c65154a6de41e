"""The stored conversations, one call each: list, read, export, import and delete them.

Each function opens the store (``store=``: a :class:`Store`, a path, or None for
:func:`default_path`) and closes it again unless it was given open. Ids may be unique prefixes.

Example::

    from spout import conversations

    for conversation in conversations.list(limit=5):
        print(conversation.id, conversation.title, conversation.models)
    Path("chat.md").write_text(conversations.export("01jc3k9x", "md"))
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal, TypeAlias

from ._store import (
    KEEP,
    MAX_CONVERSATION_FILE_BYTES,
    Conversation,
    Store,
    default_path,
    new_id,
)
from ._turn import Turn

__all__ = [
    "KEEP",
    "MAX_CONVERSATION_FILE_BYTES",
    "Conversation",
    "Store",
    "default_path",
    "delete",
    "export",
    "get",
    "import_json",
    "last",
    "list",
    "new_id",
    "turns",
]

# A Store, used as it is; or where to open one (None: default_path()).
_StoreArg: TypeAlias = "Store | str | os.PathLike[str] | None"


@contextlib.contextmanager
def _opened(store: _StoreArg) -> Iterator[Store]:
    if isinstance(store, Store):
        yield store
    else:
        with Store(store) as opened:
            yield opened


def list(limit: int | None = None, *, store: _StoreArg = None) -> builtins.list[Conversation]:
    """The stored conversations, most recently updated first; at most ``limit`` of them.

    Example::

        for conversation in conversations.list(limit=10):
            print(conversation.id[:12], conversation.title)
    """
    with _opened(store) as opened:
        return opened.list(limit)


def get(id: str, *, store: _StoreArg = None) -> Conversation:
    """The conversation with this id or unique id prefix (ConversationNotFoundError if none).

    Example::

        print(conversations.get("01jc3k9x").turn_count)
    """
    with _opened(store) as opened:
        return opened.get(id)


def turns(id: str, *, store: _StoreArg = None) -> builtins.list[Turn]:
    """The conversation's turns, oldest first.

    Example::

        for turn in conversations.turns("01jc3k9x"):
            print(turn.model, turn.text)
    """
    with _opened(store) as opened:
        return opened.turns(id)


def last(*, store: _StoreArg = None) -> Conversation | None:
    """The most recently updated conversation, or None when none is stored.

    Example::

        latest = conversations.last()
        print(latest.title if latest else "nothing stored yet")
    """
    with _opened(store) as opened:
        return opened.last()


def delete(id: str, *, store: _StoreArg = None) -> None:
    """Delete the conversation and its turns.

    Example::

        conversations.delete("01jc3k9x")
    """
    with _opened(store) as opened:
        opened.delete(id)


def export(id: str, format: Literal["json", "md"] = "json", *, store: _StoreArg = None) -> str:
    """The conversation as JSON (for :func:`import_json`) or as readable Markdown.

    Example::

        Path("chat.md").write_text(conversations.export("01jc3k9x", "md"))
    """
    with _opened(store) as opened:
        return opened.export(id, format)


def import_json(
    data: str | bytes | dict[str, Any], *, new_id: bool = False, store: _StoreArg = None
) -> Conversation:
    """Store a conversation exported as JSON; ``new_id=True`` keeps a copy under a fresh id.

    Example::

        imported = conversations.import_json(Path("chat.json").read_text())
    """
    with _opened(store) as opened:
        return opened.import_json(data, new_id=new_id)
