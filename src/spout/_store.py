"""The conversation store: conversations and their turns in one SQLite file, safe to share.

Where it lives (:func:`default_path`): ``$SPOUT_HOME/conversations.db`` if ``SPOUT_HOME`` is
set, else ``$XDG_DATA_HOME/spout/conversations.db``, else
``~/.local/share/spout/conversations.db``; a :class:`Store` takes another path.

How it stays whole when two processes (two CLI windows) write at once, or one dies mid-write:

- WAL journal: readers never block the writer nor the writer the readers.
- Every write is one ``BEGIN IMMEDIATE`` transaction: it takes the write lock before it reads
  what it builds on (the next ``seq``), so two writers queue rather than both reading the same
  ``seq``. A deferred transaction would instead fail with ``SQLITE_BUSY`` when it tried to
  upgrade (https://sqlite.org/lang_transaction.html, "BEGIN IMMEDIATE").
- A writer waits up to :data:`BUSY_TIMEOUT` seconds for the lock before giving up.
- A turn is one row, its JSON in one column, so it is written whole or not at all; a batch of
  turns and the conversation's summary commit together.
- ``synchronous=NORMAL``: in WAL mode a crash of the process loses nothing committed and a
  power cut may lose the last commits but never corrupts the file
  (https://sqlite.org/pragma.html#pragma_synchronous).

The schema grows by :data:`MIGRATIONS`, numbered and append-only; ``PRAGMA user_version``
counts the ones that ran. A file from a newer spout (a higher count) is refused, not guessed at.
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from ._closing import Closing
from ._errors import ConversationNotFoundError, StoreError
from ._export import EXPORT_FORMAT, EXPORT_VERSION, clean_title, parse_json, to_json, to_markdown
from ._turn import Turn

__all__ = [
    "BUSY_TIMEOUT",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "MIGRATIONS",
    "Conversation",
    "Store",
    "default_path",
    "new_id",
]

#: Seconds a write waits for another process's write to finish before it fails.
BUSY_TIMEOUT = 10.0


#: The schema, one script per version. Append a script to change it; never edit one that
#: shipped: databases out there ran it already, and ``user_version`` says how many ran.
MIGRATIONS: tuple[str, ...] = (
    # 1: conversations and their turns. ``title`` is NULL until given or derived from the
    # first user message; ``models`` is a JSON array of "provider:model" in order of first use.
    """
    CREATE TABLE conversations (
        id            TEXT PRIMARY KEY NOT NULL,
        title         TEXT,
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL,
        models        TEXT NOT NULL DEFAULT '[]',
        system_prompt TEXT
    );
    CREATE TABLE turns (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL,
        created_at      REAL NOT NULL,
        data            TEXT NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    ) WITHOUT ROWID;
    """,
    # 2: list() and last() read the most recently updated first.
    """
    CREATE INDEX conversations_by_update ON conversations (updated_at DESC, id DESC);
    """,
)

# Crockford's base32, lowercase: no i, l, o or u, so an id read aloud or retyped survives.
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_MIN_PREFIX = 4
_TITLE_LENGTH = 60
_UNTITLED = "Untitled"


class _Keep(enum.Enum):
    KEEP = "keep"


#: ``append_turns(system_prompt=KEEP)``: leave an existing conversation's system prompt as is.
KEEP = _Keep.KEEP


def default_path() -> Path:
    """Where conversations are kept unless a :class:`Store` is given another path.

    ``$SPOUT_HOME/conversations.db`` if ``SPOUT_HOME`` is set, else
    ``$XDG_DATA_HOME/spout/conversations.db`` (an absolute ``XDG_DATA_HOME`` only, as the XDG
    spec asks), else ``~/.local/share/spout/conversations.db``.

    Example::

        print(default_path())  # /home/ada/.local/share/spout/conversations.db
    """
    spout_home = os.environ.get("SPOUT_HOME")
    if spout_home:
        return Path(spout_home).expanduser() / "conversations.db"
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "spout" / "conversations.db"
    return Path.home() / ".local" / "share" / "spout" / "conversations.db"


def new_id() -> str:
    """A new conversation id: 26 characters that sort by creation time.

    The first 10 encode the time in milliseconds, the last 16 are 80 random bits (a ULID in
    lowercase Crockford base32). Ids made in the same millisecond sort in random order.

    Example::

        conversation_id = new_id()  # e.g. '01jc3k9xq8t2m5v7w9y0z1a2b3'
        store.append_turns(conversation_id, [])
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_ID_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


_fresh_id = new_id  # for Store.import_json, whose ``new_id`` parameter hides the function


@dataclass(frozen=True, slots=True)
class Conversation:
    """A stored conversation's summary; its turns come from :meth:`Store.turns`.

    ``models`` are the ``"provider:model"`` strings its turns used, in order of first use.
    Times are seconds since the epoch, as :func:`time.time` gives them.

    Example::

        with Store() as store:
            for conversation in store.list(limit=5):
                print(conversation.id, conversation.title, conversation.turn_count)
    """

    id: str
    title: str
    created_at: float
    updated_at: float
    models: tuple[str, ...]
    turn_count: int
    system_prompt: str | None


class Store(Closing):
    """The conversations in one SQLite file; safe to share between threads and processes.

    ``path`` defaults to :func:`default_path`; its directory is made if missing and the
    schema migrated on opening. Every method that takes an id also takes a unique prefix of
    at least 4 characters. Failures raise :class:`~spout.StoreError`, naming the file.

    Example::

        with Store() as store:
            conversation_id = new_id()
            store.append_turns(conversation_id, session_turns)
            print(store.get(conversation_id).title)
            print(store.export(conversation_id, "md"))
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        try:
            # User-private: conversations hold what people typed.
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(f"cannot make the directory {self.path.parent}: {exc}") from exc
        with self._translated("open the conversation store"):
            connection = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,  # transactions are begun and ended here, explicitly
                check_same_thread=False,  # self._lock serializes every use
            )
            try:
                self._open(connection)
            except BaseException:
                connection.close()
                raise
        self._connection = connection

    # -- reading ---------------------------------------------------------------------------------

    def get(self, conversation_id: str) -> Conversation:
        """The conversation with this id, or the only one whose id starts with it.

        Raises :class:`~spout.ConversationNotFoundError` for an unknown id, and for a prefix
        shorter than 4 characters or shared by several conversations.

        Example::

            conversation = store.get("01j9zk3v")
            print(conversation.title, conversation.models)
        """
        with self._reading("read a conversation") as connection:
            return self._summary(connection, self._resolve(connection, conversation_id))

    def turns(self, conversation_id: str) -> builtins.list[Turn]:
        """The conversation's turns, oldest first.

        Example::

            for turn in store.turns(conversation_id):
                print(turn.model, turn.text)
        """
        with self._reading("read a conversation's turns") as connection:
            return self._turns(connection, self._resolve(connection, conversation_id))

    def last(self) -> Conversation | None:
        """The most recently updated conversation, or None when there are none.

        Example::

            if (conversation := store.last()) is not None:
                print("continuing", conversation.title)
        """
        found = self.list(limit=1)
        return found[0] if found else None

    def list(self, limit: int | None = None) -> builtins.list[Conversation]:
        """The conversations, most recently updated first; at most ``limit`` of them.

        Example::

            for conversation in store.list(limit=10):
                print(conversation.id[:10], conversation.title)
        """
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 0
        ):
            raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")
        with self._reading("list conversations") as connection:
            rows = connection.execute(
                f"{_SUMMARY_SELECT} ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [_conversation(row) for row in rows]

    def export(self, conversation_id: str, format: Literal["json", "md"] = "json") -> str:
        """The conversation as JSON (what :meth:`import_json` reads back) or as Markdown.

        The JSON is ``{"format": "spout.conversation", "version": 1, "id", "title",
        "created_at", "updated_at", "system_prompt", "models", "turns"}``, each turn as
        :meth:`Turn.to_dict` gives it.

        Example::

            Path("chat.md").write_text(store.export(conversation_id, "md"))
        """
        if format not in ("json", "md"):
            raise ValueError(f"format must be 'json' or 'md', not {format!r}")
        with self._reading("export a conversation") as connection:
            found = self._resolve(connection, conversation_id)
            conversation = self._summary(connection, found)
            turns = self._turns(connection, found)
        if format == "md":
            return to_markdown(conversation, turns)
        return to_json(conversation, turns)

    # -- writing ---------------------------------------------------------------------------------

    def append_turns(
        self,
        conversation_id: str,
        turns: Sequence[Turn],
        *,
        title: str | None = None,
        system_prompt: str | _Keep | None = KEEP,
        created_at: float | None = None,
    ) -> None:
        """Add turns to the end of a conversation, making the conversation if it is new.

        One transaction: the turns, the conversation's ``updated_at`` and its ``models`` are
        all written, or (on any error) none of them. ``title`` and ``created_at`` describe a
        new conversation and are ignored for an existing one; ``system_prompt``, when given
        (None included), is the conversation's system prompt from now on. Without
        a title, the first user message gives one (its first line, cut to 60 characters),
        even when it arrives in a later call. Zero turns just make the conversation.

        Example::

            conversation_id = new_id()
            store.append_turns(conversation_id, [], system_prompt="Be brief.")
            store.append_turns(conversation_id, [turn])  # after each reply
        """
        if not isinstance(conversation_id, str) or not conversation_id:
            raise ValueError(f"conversation_id must be a non-empty str, not {conversation_id!r}")
        if title is not None and not isinstance(title, str):
            raise TypeError(f"title must be a str or None, not {type(title).__name__}")
        if (
            system_prompt is not KEEP
            and system_prompt is not None
            and not isinstance(system_prompt, str)
        ):
            raise TypeError(
                f"system_prompt must be a str or None, not {type(system_prompt).__name__}"
            )
        # Serialize before the transaction: a turn that cannot be stored stops the whole
        # batch before anything is written.
        rows: builtins.list[tuple[float, str]] = []
        for index, turn in enumerate(turns):
            if not isinstance(turn, Turn):
                raise TypeError(f"turns[{index}] must be a Turn, not {type(turn).__name__}")
            try:
                data = orjson.dumps(turn.to_dict()).decode()
            except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
                raise self._error(
                    f"cannot store turn {index} of conversation {conversation_id!r}: "
                    f"its data is not JSON-serializable ({exc}); nothing was written"
                ) from exc
            rows.append((turn.created_at, data))
        derived = _title_from(turns)
        new_models = _models_of(turns)
        now = time.time()

        with self._writing(f"save conversation {conversation_id!r}") as connection:
            row = connection.execute(
                "SELECT models FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                started = now if created_at is None else float(created_at)
                connection.execute(
                    "INSERT INTO conversations"
                    " (id, title, created_at, updated_at, models, system_prompt)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        conversation_id,
                        (clean_title(title) if title else None) or derived,
                        started,
                        max(started, now),
                        _json_list(new_models),
                        None if system_prompt is KEEP else system_prompt,
                    ),
                )
            else:
                if system_prompt is not KEEP:
                    connection.execute(
                        "UPDATE conversations SET system_prompt = ? WHERE id = ?",
                        (system_prompt, conversation_id),
                    )
            if row is not None and rows:
                models = _merge(_loads_models(row[0]), new_models)
                connection.execute(
                    "UPDATE conversations SET updated_at = max(updated_at, ?), models = ?,"
                    " title = coalesce(title, ?) WHERE id = ?",
                    (now, _json_list(models), derived, conversation_id),
                )
            if rows:
                (last,) = connection.execute(
                    "SELECT coalesce(max(seq), 0) FROM turns WHERE conversation_id = ?",
                    (conversation_id,),
                ).fetchone()
                connection.executemany(
                    "INSERT INTO turns (conversation_id, seq, created_at, data) VALUES (?, ?, ?, ?)",
                    [
                        (conversation_id, last + offset, turn_created, data)
                        for offset, (turn_created, data) in enumerate(rows, start=1)
                    ],
                )

    def set_title(self, conversation_id: str, title: str) -> None:
        """Rename a conversation (whitespace collapsed); its ``updated_at`` stays as it was.

        Example::

            store.set_title(conversation_id, "Trip to Oslo")
        """
        if not isinstance(title, str):
            raise TypeError(f"title must be a str, not {type(title).__name__}")
        cleaned = clean_title(title)
        if not cleaned:
            raise ValueError("title must have some non-whitespace text")
        with self._writing("rename a conversation") as connection:
            found = self._resolve(connection, conversation_id)
            connection.execute("UPDATE conversations SET title = ? WHERE id = ?", (cleaned, found))

    def delete(self, conversation_id: str) -> None:
        """Delete a conversation and all its turns.

        Example::

            store.delete(conversation_id)
        """
        with self._writing("delete a conversation") as connection:
            found = self._resolve(connection, conversation_id)
            connection.execute("DELETE FROM conversations WHERE id = ?", (found,))

    def import_json(
        self, data: str | bytes | dict[str, Any], *, new_id: bool = False
    ) -> Conversation:
        """Store a conversation from :meth:`export`'s JSON (text, bytes or the parsed dict).

        Invalid data raises ValueError naming the field. An id already in the store is
        refused (:class:`~spout.StoreError`) unless ``new_id=True``, which stores a copy under
        a fresh id.

        Example::

            copied = store.import_json(Path("chat.json").read_bytes(), new_id=True)
            print(copied.id, copied.turn_count)
        """
        document = parse_json(data, need_id=not new_id)
        conversation_id = _fresh_id() if new_id else document["id"]
        turns: builtins.list[Turn] = document["turns"]
        title = document["title"] or _title_from(turns)
        rows = [(turn.created_at, orjson.dumps(turn.to_dict()).decode()) for turn in turns]
        models = _merge(document["models"], _models_of(turns))
        with self._writing(f"import conversation {conversation_id!r}") as connection:
            exists = connection.execute(
                "SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if exists:
                raise self._error(
                    f"conversation {conversation_id!r} is already in the store; "
                    "import it with new_id=True to keep a copy under a new id"
                )
            connection.execute(
                "INSERT INTO conversations"
                " (id, title, created_at, updated_at, models, system_prompt)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    title,
                    document["created_at"],
                    document["updated_at"],
                    _json_list(models),
                    document["system_prompt"],
                ),
            )
            connection.executemany(
                "INSERT INTO turns (conversation_id, seq, created_at, data) VALUES (?, ?, ?, ?)",
                [
                    (conversation_id, seq, created, text)
                    for seq, (created, text) in enumerate(rows, start=1)
                ],
            )
            return self._summary(connection, conversation_id)

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection; closing twice is harmless.

        Example::

            store = Store()
            try:
                print(store.last())
            finally:
                store.close()
        """
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- internals -------------------------------------------------------------------------------

    def _open(self, connection: sqlite3.Connection) -> None:
        """Check the file, set the pragmas, migrate the schema."""
        version = self._version(connection)  # the first read: fails on a file not SQLite
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA synchronous = NORMAL")
        # WAL is a property of the file; switching needs a moment of exclusive access, so
        # only ask when it is not already on. It may stay off on file systems without shared
        # memory (network mounts); the store still works there, with readers waiting on writers.
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            _switch_to_wal(connection)
        if version == len(MIGRATIONS):
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated meanwhile.
            version = self._version(connection)
            for number in range(version, len(MIGRATIONS)):
                for statement in _statements(MIGRATIONS[number]):
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise

    def _version(self, connection: sqlite3.Connection) -> int:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise self._error(
                f"the conversation store was written by a newer spout (schema version "
                f"{version}; this spout knows up to {len(MIGRATIONS)}): upgrade spout to use it"
            )
        return int(version)

    @contextlib.contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for every query in the block."""
        with self._lock, self._translated(action):
            connection = self._live()
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                _rollback(connection)  # nothing to keep; ends the snapshot

    @contextlib.contextmanager
    def _writing(self, action: str) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed whole at the block's end, or rolled back."""
        with self._lock, self._translated(action):
            connection = self._live()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                _rollback(connection)
                raise

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """sqlite3 errors become StoreError, saying what failed, why and in which file."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(f"could not {action}: {_reason(exc)}") from exc

    def _live(self) -> sqlite3.Connection:
        if self._connection is None:
            raise self._error("the conversation store is closed")
        return self._connection

    def _error(self, message: str) -> StoreError:
        return StoreError(f"{message} ({self.path})", path=str(self.path))

    def _resolve(self, connection: sqlite3.Connection, conversation_id: str) -> str:
        """The full id of the conversation ``conversation_id`` names, exactly or by prefix."""
        if not isinstance(conversation_id, str):
            raise TypeError(
                f"a conversation id must be a str, not {type(conversation_id).__name__}"
            )
        if connection.execute(
            "SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone():
            return conversation_id
        matches: builtins.list[str] = []
        if len(conversation_id) >= _MIN_PREFIX:
            matches = [
                found
                for (found,) in connection.execute(
                    "SELECT id FROM conversations WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 6",
                    (len(conversation_id), conversation_id),
                )
            ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            message = (
                f"the id prefix {conversation_id!r} is ambiguous: it starts "
                f"{'more than 5' if len(matches) > 5 else len(matches)} conversations "
                f"({shown}); give more of the id"
            )
        elif len(conversation_id) < _MIN_PREFIX:
            message = (
                f"no conversation has the id {conversation_id!r}; "
                f"an id prefix needs at least {_MIN_PREFIX} characters"
            )
        else:
            message = f"no conversation has an id that is or starts with {conversation_id!r}"
        raise ConversationNotFoundError(
            f"{message} ({self.path})", conversation_id=conversation_id, path=str(self.path)
        )

    def _summary(self, connection: sqlite3.Connection, conversation_id: str) -> Conversation:
        row = connection.execute(f"{_SUMMARY_SELECT} WHERE c.id = ?", (conversation_id,)).fetchone()
        return _conversation(row)

    def _turns(self, connection: sqlite3.Connection, conversation_id: str) -> builtins.list[Turn]:
        turns = []
        for seq, data in connection.execute(
            "SELECT seq, data FROM turns WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        ):
            try:
                turns.append(Turn.from_dict(orjson.loads(data)))
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                raise self._error(
                    f"turn {seq} of conversation {conversation_id!r} is damaged: {exc}"
                ) from exc
        return turns


_SUMMARY_SELECT = (
    "SELECT c.id, c.title, c.created_at, c.updated_at, c.models, c.system_prompt,"
    " (SELECT count(*) FROM turns AS t WHERE t.conversation_id = c.id)"
    " FROM conversations AS c"
)


def _conversation(row: tuple[Any, ...]) -> Conversation:
    id_, title, created_at, updated_at, models, system_prompt, turn_count = row
    return Conversation(
        id=id_,
        title=title or _UNTITLED,
        created_at=created_at,
        updated_at=updated_at,
        models=tuple(_loads_models(models)),
        turn_count=turn_count,
        system_prompt=system_prompt,
    )


def _switch_to_wal(connection: sqlite3.Connection) -> None:
    """Turn WAL on, waiting up to :data:`BUSY_TIMEOUT` for the moment of exclusive access.

    Two processes opening a new file at once both read it (a shared lock) and then both ask
    for the exclusive lock the switch needs. SQLite sees that waiting could deadlock and fails
    one of them at once with ``SQLITE_BUSY``, without calling the busy handler
    (https://sqlite.org/c3ref/busy_handler.html). That one tries again, holding no lock
    meanwhile, and usually finds the other has switched the file already.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)
        if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        # The error being raised matters more than one from the rollback; SQLite rolls back
        # by itself after the errors that leave no transaction to roll back.
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _reason(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "file is not a database" in text:
        return "the file is not a SQLite database"
    if "database is locked" in text:
        return f"another process kept the store locked for over {BUSY_TIMEOUT:g} s"
    if "readonly database" in text or "read-only" in text:
        return f"the store is read-only ({text})"
    return text


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into its statements (``execute`` takes one at a time).

    ``executescript`` would take the script whole, but it commits any open transaction
    first, and a migration must run inside the transaction that checked the version.
    """
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                yield pending.strip()
            pending = ""


def _models_of(turns: Sequence[Turn]) -> builtins.list[str]:
    models: builtins.list[str] = []
    for turn in turns:
        if turn.model:
            name = f"{turn.provider}:{turn.model}" if turn.provider else turn.model
            if name not in models:
                models.append(name)
    return models


def _merge(first: builtins.list[str], then: builtins.list[str]) -> builtins.list[str]:
    return first + [model for model in dict.fromkeys(then) if model not in first]


def _json_list(items: builtins.list[str]) -> str:
    return orjson.dumps(items).decode()


def _loads_models(text: str) -> builtins.list[str]:
    try:
        models = orjson.loads(text)
    except orjson.JSONDecodeError:
        return []
    return [m for m in models if isinstance(m, str)] if isinstance(models, list) else []


def _title_from(turns: Sequence[Turn]) -> str | None:
    """The first user message's first line, whitespace collapsed, cut to 60 characters."""
    for turn in turns:
        for message in turn.messages:
            if message.get("role") != "user":
                continue
            for line in _content_text(message.get("content")).splitlines():
                line = clean_title(line)
                if line:
                    if len(line) > _TITLE_LENGTH:
                        line = line[: _TITLE_LENGTH - 1].rstrip() + "…"
                    return line
    return None


def _content_text(content: Any) -> str:
    """A message's text: a str as it is, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part if isinstance(part, str) else str(part.get("text") or "")
            for part in content
            if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text")
        )
    return ""
