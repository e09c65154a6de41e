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

Files sent in a conversation (content parts holding a file's bytes, see :class:`spout.File`)
are kept once per conversation in the ``files`` table, keyed by the SHA-256 of their bytes; the
stored turn names them by a reference (``spout-file:<media type>;sha256,<hex>``) where the
part held the bytes, and reading the turn puts the bytes back. A conversation's files may take
at most :data:`MAX_CONVERSATION_FILE_BYTES` (``Store(max_conversation_file_bytes=...)``), each
at most 50 MB, as :class:`spout.File` takes them.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import enum
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from ._closing import Closing
from ._errors import ConfigurationError, ConversationNotFoundError, StoreError
from ._export import EXPORT_FORMAT, EXPORT_VERSION, clean_title, parse_json, to_json, to_markdown
from ._files import MAX_FILE_BYTES, file_from_part
from ._turn import Turn

__all__ = [
    "BUSY_TIMEOUT",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "MAX_CONVERSATION_FILE_BYTES",
    "MIGRATIONS",
    "Conversation",
    "Store",
    "default_path",
    "new_id",
]

#: Seconds a write waits for another process's write to finish before it fails.
BUSY_TIMEOUT = 10.0

#: The most bytes one conversation's files may take in the store (each file counted once):
#: room for two files at the largest spout sends (50 MB, :class:`spout.File`'s limit) or a
#: few hundred photos, while a store of many conversations stays a file one can copy around.
MAX_CONVERSATION_FILE_BYTES = 100 * 1024 * 1024


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
    # 3: the bytes of the files sent in a conversation, once each (by their SHA-256, in hex);
    # the turns refer to them. A rowid table: rows this large belong out of the primary key's
    # b-tree (https://sqlite.org/withoutrowid.html, "When To Use WITHOUT ROWID").
    """
    CREATE TABLE files (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        sha256          TEXT NOT NULL,
        size            INTEGER NOT NULL,
        data            BLOB NOT NULL,
        created_at      REAL NOT NULL,
        PRIMARY KEY (conversation_id, sha256)
    );
    """,
    # 4: each turn's cost in US dollars (NULL where unknown, and for turns stored before), so
    # a conversation's total is a sum the database does, not every turn's JSON read back.
    """
    ALTER TABLE turns ADD COLUMN cost REAL;
    """,
    # 5: who owns a conversation: the name of the gateway key that made it (``spout serve
    # --keys``); NULL for one made by no key (the library, the CLI, a gateway without keys).
    # A keyed gateway shows each key only the conversations it owns, listed by this index.
    """
    ALTER TABLE conversations ADD COLUMN owner TEXT;
    CREATE INDEX conversations_by_owner ON conversations (owner, updated_at DESC, id DESC);
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
    Times are seconds since the epoch, as :func:`time.time` gives them. ``cost`` is its turns'
    known costs added, in US dollars (:attr:`spout.Turn.cost`); None when none is known.

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
    cost: float | None = None


class Store(Closing):
    """The conversations in one SQLite file; safe to share between threads and processes.

    ``path`` defaults to :func:`default_path`; its directory is made if missing and the
    schema migrated on opening. Every method that takes an id also takes a unique prefix of
    at least 4 characters. Failures raise :class:`~spout.StoreError`, naming the file.
    ``max_conversation_file_bytes`` caps the bytes of the files one conversation keeps (each
    file once); a write past it fails and writes nothing.

    ``owner=`` (on :meth:`get`, :meth:`turns`, :meth:`list` and :meth:`append_turns`) is for
    a gateway with keys: a conversation made with ``owner="alice"`` belongs to that key, and a
    call given an owner sees only that owner's conversations (by id, by prefix, in a list);
    any other, or one with no owner, is not found, exactly as if it did not exist. Without
    ``owner`` (None) every conversation is seen, and a new one has no owner.

    Example::

        with Store() as store:
            conversation_id = new_id()
            store.append_turns(conversation_id, session_turns)
            print(store.get(conversation_id).title)
            print(store.export(conversation_id, "md"))
    """

    path: Path
    #: The most bytes of files one conversation may keep (see :data:`MAX_CONVERSATION_FILE_BYTES`).
    max_conversation_file_bytes: int

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_conversation_file_bytes: int = MAX_CONVERSATION_FILE_BYTES,
    ) -> None:
        if (
            isinstance(max_conversation_file_bytes, bool)
            or not isinstance(max_conversation_file_bytes, int)
            or max_conversation_file_bytes < 0
        ):
            raise ValueError(
                "max_conversation_file_bytes must be a non-negative int, "
                f"not {max_conversation_file_bytes!r}"
            )
        self.max_conversation_file_bytes = max_conversation_file_bytes
        self.path = Path(path).expanduser() if path is not None else default_path()
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        try:
            # User-private: conversations hold what people typed.
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(f"cannot make the directory {self.path.parent}: {exc}") from exc
        with self._translated("open the conversation store"):
            # A new file is made user-private too (SQLite gives its -wal and -shm files the
            # same mode): a store in a shared directory holds a gateway's every tenant.
            try:
                os.close(os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o600))
            except OSError as exc:
                raise self._error(f"cannot open the conversation store: {exc.strerror}") from exc
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

    def get(self, conversation_id: str, *, owner: str | None = None) -> Conversation:
        """The conversation with this id, or the only one whose id starts with it (among
        ``owner``'s alone, when given).

        Raises :class:`~spout.ConversationNotFoundError` for an unknown id, and for a prefix
        shorter than 4 characters or shared by several conversations.

        Example::

            conversation = store.get("01j9zk3v")
            print(conversation.title, conversation.models)
        """
        with self._reading("read a conversation") as connection:
            return self._summary(connection, self._resolve(connection, conversation_id, owner))

    def turns(self, conversation_id: str, *, owner: str | None = None) -> builtins.list[Turn]:
        """The conversation's turns, oldest first (``owner``: see :class:`Store`).

        Example::

            for turn in store.turns(conversation_id):
                print(turn.model, turn.text)
        """
        with self._reading("read a conversation's turns") as connection:
            return self._turns(connection, self._resolve(connection, conversation_id, owner))

    def last(self) -> Conversation | None:
        """The most recently updated conversation, or None when there are none.

        Example::

            if (conversation := store.last()) is not None:
                print("continuing", conversation.title)
        """
        found = self.list(limit=1)
        return found[0] if found else None

    def list(
        self, limit: int | None = None, *, owner: str | None = None
    ) -> builtins.list[Conversation]:
        """The conversations, most recently updated first; at most ``limit`` of them (only
        ``owner``'s, when given).

        Example::

            for conversation in store.list(limit=10):
                print(conversation.id[:10], conversation.title)
        """
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 0
        ):
            raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")
        with self._reading("list conversations") as connection:
            # Two statements, not one with "? IS NULL OR": each then has its own index.
            mine = "" if owner is None else " WHERE c.owner = ?"
            rows = connection.execute(
                f"{_SUMMARY_SELECT}{mine} ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
                (*(() if owner is None else (owner,)), -1 if limit is None else limit),
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
        owner: str | None = None,
    ) -> None:
        """Add turns to the end of a conversation, making the conversation if it is new.

        One transaction: the turns, the conversation's ``updated_at`` and its ``models`` are
        all written, or (on any error) none of them. ``title`` and ``created_at`` describe a
        new conversation and are ignored for an existing one; ``system_prompt``, when given
        (None included), is the conversation's system prompt from now on. Without
        a title, the first user message gives one (its first line, cut to 60 characters),
        even when it arrives in a later call. Zero turns just make the conversation.
        ``owner`` owns a new conversation; an existing one that it does not own raises
        :class:`~spout.ConversationNotFoundError` and is left as it was (see :class:`Store`).

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
        if owner is not None and not isinstance(owner, str):
            raise TypeError(f"owner must be a str or None, not {type(owner).__name__}")
        if owner == "":
            raise ValueError("owner must be a non-empty str or None, not ''")
        # Serialize before the transaction: a turn that cannot be stored stops the whole
        # batch before anything is written.
        for index, turn in enumerate(turns):
            if not isinstance(turn, Turn):
                raise TypeError(f"turns[{index}] must be a Turn, not {type(turn).__name__}")
        rows, files = self._rows(conversation_id, turns)
        derived = _title_from(turns)
        new_models = _models_of(turns)
        now = time.time()

        with self._writing(f"save conversation {conversation_id!r}") as connection:
            row = connection.execute(
                "SELECT models, owner FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is not None and owner is not None and row[1] != owner:
                # Checked inside the write: another key's conversation is never added to.
                raise self._not_found(conversation_id)
            if row is None:
                started = now if created_at is None else float(created_at)
                connection.execute(
                    "INSERT INTO conversations"
                    " (id, title, created_at, updated_at, models, system_prompt, owner)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        conversation_id,
                        (clean_title(title) if title else None) or derived,
                        started,
                        max(started, now),
                        _json_list(new_models),
                        None if system_prompt is KEEP else system_prompt,
                        owner,
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
                    "INSERT INTO turns (conversation_id, seq, created_at, data, cost)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [
                        (conversation_id, last + offset, turn_created, data, cost)
                        for offset, (turn_created, data, cost) in enumerate(rows, start=1)
                    ],
                )
            self._put_files(connection, conversation_id, files, now)

    def check_room(self, conversation_id: str, turns: Sequence[Turn]) -> None:
        """Raise the :class:`~spout.StoreError` that :meth:`append_turns` would raise for
        these turns' files (too large, or past the conversation's limit), writing nothing.

        A session asks before it sends files, so a reply is not lost to a save that fails.

        Example::

            store.check_room(conversation_id, [Turn(messages=(message_with_a_file,))])
        """
        _, files = self._rows(conversation_id, turns)
        if files:
            with self._reading(f"check the files of conversation {conversation_id!r}") as conn:
                self._new_files(conn, conversation_id, files)

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
        rows, files = self._rows(conversation_id, turns)
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
                "INSERT INTO turns (conversation_id, seq, created_at, data, cost)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (conversation_id, seq, created, text, cost)
                    for seq, (created, text, cost) in enumerate(rows, start=1)
                ],
            )
            self._put_files(connection, conversation_id, files, time.time())
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

    def _resolve(
        self, connection: sqlite3.Connection, conversation_id: str, owner: str | None = None
    ) -> str:
        """The full id of the conversation ``conversation_id`` names, exactly or by prefix;
        with ``owner``, only among the conversations it owns (others are not found)."""
        if not isinstance(conversation_id, str):
            raise TypeError(
                f"a conversation id must be a str, not {type(conversation_id).__name__}"
            )
        if owner is not None and not isinstance(owner, str):
            raise TypeError(f"owner must be a str or None, not {type(owner).__name__}")
        mine, args = ("", ()) if owner is None else (" AND owner = ?", (owner,))
        if connection.execute(
            f"SELECT 1 FROM conversations WHERE id = ?{mine}", (conversation_id, *args)
        ).fetchone():
            return conversation_id
        matches: builtins.list[str] = []
        if len(conversation_id) >= _MIN_PREFIX:
            matches = [
                found
                for (found,) in connection.execute(
                    f"SELECT id FROM conversations WHERE substr(id, 1, ?) = ?{mine}"
                    " ORDER BY id LIMIT 6",
                    (len(conversation_id), conversation_id, *args),
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
            raise self._not_found(conversation_id)
        raise ConversationNotFoundError(
            f"{message} ({self.path})", conversation_id=conversation_id, path=str(self.path)
        )

    def _not_found(self, conversation_id: str) -> ConversationNotFoundError:
        return ConversationNotFoundError(
            f"no conversation has an id that is or starts with {conversation_id!r} ({self.path})",
            conversation_id=conversation_id,
            path=str(self.path),
        )

    def _summary(self, connection: sqlite3.Connection, conversation_id: str) -> Conversation:
        row = connection.execute(f"{_SUMMARY_SELECT} WHERE c.id = ?", (conversation_id,)).fetchone()
        return _conversation(row)

    def _turns(self, connection: sqlite3.Connection, conversation_id: str) -> builtins.list[Turn]:
        turns = []
        found: dict[str, bytes] = {}

        def file(sha256: str) -> bytes:
            if sha256 not in found:
                row = connection.execute(
                    "SELECT data FROM files WHERE conversation_id = ? AND sha256 = ?",
                    (conversation_id, sha256),
                ).fetchone()
                if row is None:
                    raise ValueError(f"the file with SHA-256 {sha256} is missing")
                found[sha256] = bytes(row[0])
            return found[sha256]

        for seq, data in connection.execute(
            "SELECT seq, data FROM turns WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        ).fetchall():
            try:
                stored = orjson.loads(data)
                if (_REFERENCE if isinstance(data, str) else _REFERENCE.encode()) in data:
                    stored = _with_files(stored, file)
                turns.append(Turn.from_dict(stored))
            except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                raise self._error(
                    f"turn {seq} of conversation {conversation_id!r} is damaged: {exc}"
                ) from exc
        return turns

    def _rows(
        self, conversation_id: str, turns: Sequence[Turn]
    ) -> tuple[builtins.list[tuple[float, str, float | None]], dict[str, bytes]]:
        """The turns' rows as stored (their files' bytes moved out), and those bytes by
        SHA-256; a turn that cannot be stored raises StoreError, naming it."""
        rows: builtins.list[tuple[float, str, float | None]] = []
        files: dict[str, bytes] = {}
        for index, turn in enumerate(turns):
            try:
                data = orjson.dumps(_without_files(turn.to_dict(), files)).decode()
            except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
                raise self._error(
                    f"cannot store turn {index} of conversation {conversation_id!r}: "
                    f"its data is not JSON-serializable ({exc}); nothing was written"
                ) from exc
            except (ValueError, ConfigurationError) as exc:  # a file part holding no file
                raise self._error(
                    f"cannot store turn {index} of conversation {conversation_id!r}: {exc}; "
                    "nothing was written"
                ) from exc
            rows.append((turn.created_at, data, turn.cost))
        return rows, files

    def _new_files(
        self, connection: sqlite3.Connection, conversation_id: str, files: Mapping[str, bytes]
    ) -> dict[str, bytes]:
        """Those of ``files`` the conversation does not keep yet; StoreError when they would
        take it past :attr:`max_conversation_file_bytes`."""
        kept = {
            sha256
            for (sha256,) in connection.execute(
                "SELECT sha256 FROM files WHERE conversation_id = ?", (conversation_id,)
            )
        }
        new = {sha256: data for sha256, data in files.items() if sha256 not in kept}
        if not new:
            return new
        (used,) = connection.execute(
            "SELECT coalesce(sum(size), 0) FROM files WHERE conversation_id = ?",
            (conversation_id,),
        ).fetchone()
        total = used + sum(len(data) for data in new.values())
        limit = self.max_conversation_file_bytes
        if total > limit:
            raise self._error(
                f"cannot save conversation {conversation_id!r}: its files would take "
                f"{total:,} bytes, over the {limit:,} a conversation may keep "
                f"(Store(max_conversation_file_bytes=...)); nothing was written"
            )
        return new

    def _put_files(
        self,
        connection: sqlite3.Connection,
        conversation_id: str,
        files: Mapping[str, bytes],
        now: float,
    ) -> None:
        """Keep the files the conversation does not have yet (each once), inside the write."""
        if not files:
            return
        new = self._new_files(connection, conversation_id, files)
        connection.executemany(
            "INSERT INTO files (conversation_id, sha256, size, data, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(conversation_id, sha256, len(data), data, now) for sha256, data in new.items()],
        )


_SUMMARY_SELECT = (
    "SELECT c.id, c.title, c.created_at, c.updated_at, c.models, c.system_prompt,"
    " (SELECT count(*) FROM turns AS t WHERE t.conversation_id = c.id),"
    " (SELECT sum(t.cost) FROM turns AS t WHERE t.conversation_id = c.id)"
    " FROM conversations AS c"
)


def _conversation(row: tuple[Any, ...]) -> Conversation:
    id_, title, created_at, updated_at, models, system_prompt, turn_count, cost = row
    return Conversation(
        id=id_,
        title=title or _UNTITLED,
        created_at=created_at,
        updated_at=updated_at,
        models=tuple(_loads_models(models)),
        turn_count=turn_count,
        system_prompt=system_prompt,
        cost=cost,
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


# -- files ----------------------------------------------------------------------------------------

#: How a stored turn refers to a file kept in the ``files`` table, where its part held the
#: bytes: ``spout-file:<media type>;sha256,<hex>``, after the data URL it replaces.
_REFERENCE = "spout-file:"

# Where each portable file part holds its bytes: (its object, the key in it).
_SLOTS = {"image_url": "url", "file": "file_data", "input_audio": "data"}


def _slot(part: Any) -> tuple[str, str, str] | None:
    """(the part's object, its key, the value) where a file part holds a string; else None."""
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    key = _SLOTS.get(kind) if isinstance(kind, str) else None
    inner = part.get(kind) if key is not None else None
    if key is None or not isinstance(inner, dict) or not isinstance(inner.get(key), str):
        return None
    return str(kind), key, inner[key]


def _without_files(turn: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    """The turn as stored: each file part's bytes moved into ``files`` (by SHA-256) and a
    reference left in their place. A file given by an http(s) URL stays as it is."""
    messages = []
    for message in turn["messages"]:
        content = message.get("content")
        if isinstance(content, list) and any(_slot(part) for part in content):
            message = {**message, "content": [_moved(part, files) for part in content]}
        messages.append(message)
    return {**turn, "messages": messages}


def _moved(part: Any, files: dict[str, bytes]) -> Any:
    found = _slot(part)
    if found is None:
        return part
    kind, key, value = found
    if value.startswith(("http://", "https://", _REFERENCE)):
        return part
    file = file_from_part(part)  # ConfigurationError (a ValueError) when it holds no file
    if file is None or file.data is None:
        return part
    if len(file.data) > MAX_FILE_BYTES:  # File refuses these; a part built by hand may not
        raise ValueError(
            f"a file of {len(file.data):,} bytes is over the {MAX_FILE_BYTES:,} spout keeps"
        )
    sha256 = hashlib.sha256(file.data).hexdigest()
    files[sha256] = file.data
    reference = f"{_REFERENCE}{file.media_type};sha256,{sha256}"
    return {**part, kind: {**part[kind], key: reference}}


def _with_files(turn: Any, file: Callable[[str], bytes]) -> Any:
    """A stored turn with its files' bytes back where the references are (``file`` gives
    the bytes of a SHA-256): data URLs, or bare base64 for ``input_audio``."""
    if not isinstance(turn, dict) or not isinstance(turn.get("messages"), list):
        return turn  # Turn.from_dict says what is wrong with it
    messages = []
    for message in turn["messages"]:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            message = {**message, "content": [_restored(part, file) for part in content]}
        messages.append(message)
    return {**turn, "messages": messages}


def _restored(part: Any, file: Callable[[str], bytes]) -> Any:
    found = _slot(part)
    if found is None or not found[2].startswith(_REFERENCE):
        return part
    kind, key, value = found
    media_type, marker, sha256 = value[len(_REFERENCE) :].rpartition(";sha256,")
    if not marker:
        raise ValueError(f"a file reference is malformed: {value[:100]!r}")
    encoded = base64.b64encode(file(sha256)).decode("ascii")
    restored = encoded if kind == "input_audio" else f"data:{media_type};base64,{encoded}"
    return {**part, kind: {**part[kind], key: restored}}
