"""The conversation store: schema migrations, reads and writes, export and import, and staying
whole when two processes write at once or one is killed mid-write."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from spout import Usage
from spout import conversations as conv
from spout._errors import ConversationNotFoundError, SpoutError, StoreError
from spout._store import MIGRATIONS, Conversation, Store, default_path, new_id
from spout._turn import Turn

# -- helpers ------------------------------------------------------------------------------------


def ask(
    text: str, reply: str = "ok", *, model: str | None = "m", provider: str | None = "p"
) -> Turn:
    return Turn(
        messages=({"role": "user", "content": text}, {"role": "assistant", "content": reply}),
        model=model,
        provider=provider,
    )


def tool_turn() -> Turn:
    """A tool-loop turn with reasoning, a call, its result and an answer, cut by an error."""
    return Turn(
        messages=(
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": "",
                "reasoning": "The user wants the weather.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny"},
            {"role": "assistant", "content": "It is sun"},
        ),
        model="claude-x",
        provider="anthropic",
        usage=Usage(12, 5, {"cache_read_tokens": 3}),
        finish_reason="error",
        response_id="msg_1",
        time_to_first_token=0.25,
        duration=1.5,
        incomplete="error",
        error="connection lost",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "conversations.db") as opened:
        yield opened


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection to look at (or tamper with) the file behind the store's back."""
    return sqlite3.connect(path, isolation_level=None)


def seqs(path: Path, conversation_id: str) -> list[int]:
    connection = raw(path)
    try:
        rows = connection.execute(
            "SELECT seq FROM turns WHERE conversation_id = ? ORDER BY seq", (conversation_id,)
        ).fetchall()
    finally:
        connection.close()
    return [seq for (seq,) in rows]


def integrity(path: Path) -> str:
    connection = raw(path)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


# -- where it lives -----------------------------------------------------------------------------


def test_default_path_prefers_spout_home_then_xdg_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPOUT_HOME", str(tmp_path / "spout-home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "spout-home" / "conversations.db"
    monkeypatch.delenv("SPOUT_HOME")
    assert default_path() == tmp_path / "xdg" / "spout" / "conversations.db"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")  # the XDG spec says: ignore it
    assert default_path() == tmp_path / "home" / ".local" / "share" / "spout" / "conversations.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_path() == tmp_path / "home" / ".local" / "share" / "spout" / "conversations.db"


def test_a_store_without_a_path_opens_the_default_and_makes_its_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPOUT_HOME", str(tmp_path / "a" / "b"))
    with Store() as store:
        assert store.path == tmp_path / "a" / "b" / "conversations.db"
        store.append_turns("c1", [ask("hi")])
    assert store.path.is_file()
    assert (store.path.parent.stat().st_mode & 0o777) == 0o700


# -- schema -------------------------------------------------------------------------------------


def test_a_new_store_has_every_migration_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    Store(path).close()
    connection = raw(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
    Store(path).close()  # opening again migrates nothing and changes nothing


def test_a_new_store_file_is_private_to_its_user(tmp_path: Path) -> None:
    # A gateway's store holds what every tenant typed: in a shared directory (the umask of a
    # service is often 022) its file must still be readable by its owner alone.
    old_umask = os.umask(0o022)
    try:
        store = Store(tmp_path / "chats.db")
        store.append_turns("c1", [ask("hello")])
    finally:
        os.umask(old_umask)
    for name in ("chats.db", "chats.db-wal"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    store.close()


def test_a_store_that_cannot_be_opened_says_why(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the conversation store: Is a directory"):
        Store(tmp_path)


@pytest.mark.parametrize("ran", range(len(MIGRATIONS)))
def test_an_older_store_is_migrated_and_keeps_its_data(tmp_path: Path, ran: int) -> None:
    path = tmp_path / "old.db"
    connection = raw(path)
    for script in MIGRATIONS[:ran]:
        connection.executescript(script)
    connection.execute(f"PRAGMA user_version = {ran}")
    if ran:
        connection.execute(
            "INSERT INTO conversations (id, title, created_at, updated_at, models)"
            " VALUES ('old1', 'From before', 1.0, 2.0, '[\"p:m\"]')"
        )
        connection.execute(
            # The columns named: a store migrated past 4 has one more (cost).
            "INSERT INTO turns (conversation_id, seq, created_at, data) VALUES ('old1', 1, 1.5, ?)",
            (orjson.dumps(ask("hi").to_dict()),),
        )
    connection.close()

    with Store(path) as store:
        if ran:
            assert store.get("old1").title == "From before"
            assert store.turns("old1")[0].messages[0]["content"] == "hi"
        store.append_turns("new1", [ask("after the upgrade")])
        assert store.get("new1").turn_count == 1
    connection = raw(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    connection.close()


def test_a_store_from_a_newer_spout_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Store(path).close()
    connection = raw(path)
    connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    connection.close()
    with pytest.raises(StoreError, match="newer spout") as caught:
        Store(path)
    assert str(path) in str(caught.value) and caught.value.path == str(path)
    connection = raw(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    connection.close()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="not a SQLite database") as caught:
        Store(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes().startswith(b"these are my notes")


def test_a_path_that_cannot_be_opened_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(StoreError, match="a-directory"):
        Store(tmp_path / "a-directory")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match="cannot make the directory"):
        Store(tmp_path / "a-file" / "c.db")


# -- reading and writing ------------------------------------------------------------------------


def test_a_new_system_prompt_replaces_the_stored_one(store: Store) -> None:
    store.append_turns("c1", [ask("Hello", "Hi!")], system_prompt="Be brief.")
    store.append_turns("c1", [], system_prompt="Answer in French.")
    assert store.get("c1").system_prompt == "Answer in French."
    store.append_turns("c1", [ask("Again", "Encore")], system_prompt=None)
    assert store.get("c1").system_prompt is None
    assert store.get("c1").turn_count == 2


def test_append_get_and_turns(store: Store) -> None:
    first, second = ask("Hello", "Hi!"), tool_turn()
    store.append_turns("c1", [first], system_prompt="Be brief.", created_at=100.0)
    store.append_turns("c1", [second])  # the system prompt is kept when none is given
    conversation = store.get("c1")
    assert conversation == Conversation(
        id="c1",
        title="Hello",
        created_at=100.0,
        updated_at=conversation.updated_at,
        models=("p:m", "anthropic:claude-x"),
        turn_count=2,
        system_prompt="Be brief.",
    )
    assert conversation.updated_at > 100.0
    assert [t.to_dict() for t in store.turns("c1")] == [first.to_dict(), second.to_dict()]
    assert seqs(store.path, "c1") == [1, 2]


def test_zero_turns_make_the_conversation_and_a_later_message_names_it(store: Store) -> None:
    store.append_turns("c1", [], system_prompt="sys")
    assert store.get("c1").title == "Untitled"
    assert store.get("c1").turn_count == 0 and store.turns("c1") == []
    store.append_turns("c1", [ask("Plan a trip to Oslo")])
    assert store.get("c1").title == "Plan a trip to Oslo"
    store.append_turns("c1", [ask("Something else")])
    assert store.get("c1").title == "Plan a trip to Oslo"


@pytest.mark.parametrize(
    ("content", "title"),
    [
        ("  What is\tthe   time?  \nsecond line", "What is the time?"),
        ("\n\n  first real line\n", "first real line"),
        ("x" * 100, "x" * 59 + "…"),
        ("word " * 30, ("word " * 12).rstrip() + "…"),
        ([{"type": "image_url"}, {"type": "text", "text": "Describe this"}], "Describe this"),
        ("   ", "Untitled"),
    ],
)
def test_the_title_comes_from_the_first_user_message(
    store: Store, content: Any, title: str
) -> None:
    turn = Turn(
        messages=({"role": "system", "content": "sys"}, {"role": "user", "content": content})
    )
    store.append_turns("c1", [turn])
    assert store.get("c1").title == title
    assert len(store.get("c1").title) <= 60


def test_a_given_title_wins_and_set_title_renames(store: Store) -> None:
    store.append_turns("c1", [ask("hello")], title="My  chat\n")
    assert store.get("c1").title == "My chat"
    updated = store.get("c1").updated_at
    store.set_title("c1", "  Renamed\tchat ")
    assert store.get("c1").title == "Renamed chat"
    assert store.get("c1").updated_at == updated
    with pytest.raises(ValueError, match="non-whitespace"):
        store.set_title("c1", "  ")


def test_models_accumulate_in_order_of_first_use(store: Store) -> None:
    store.append_turns("c1", [ask("a", model="gpt", provider="openai")])
    store.append_turns(
        "c1",
        [
            Turn(messages=({"role": "user", "content": "note"},)),  # add_message: no model
            ask("b", model="claude", provider="anthropic"),
            ask("c", model="gpt", provider="openai"),
            ask("d", model="bare", provider=None),
        ],
    )
    store.append_turns("c1", [ask("e", model="claude", provider="anthropic")])
    assert store.get("c1").models == ("openai:gpt", "anthropic:claude", "bare")
    assert store.get("c1").turn_count == 6
    assert seqs(store.path, "c1") == [1, 2, 3, 4, 5, 6]


def test_list_and_last_put_the_most_recently_updated_first(store: Store) -> None:
    assert store.list() == [] and store.last() is None
    for name in ("a", "b", "c"):
        store.append_turns(name, [ask(name)])
    store.append_turns("a", [ask("again")])
    assert [c.id for c in store.list()] == ["a", "c", "b"]
    assert [c.id for c in store.list(limit=2)] == ["a", "c"]
    assert store.list(limit=0) == []
    last = store.last()
    assert last is not None and last.id == "a" and last.turn_count == 2
    with pytest.raises(ValueError, match="limit"):
        store.list(limit=-1)


def test_ids_may_be_unique_prefixes(store: Store) -> None:
    store.append_turns("01abcdef", [ask("one")])
    store.append_turns("01abcxyz", [ask("two")])
    assert store.get("01abcd").id == "01abcdef"
    assert store.turns("01abcx")[0].messages[0]["content"] == "two"
    with pytest.raises(ConversationNotFoundError, match="ambiguous") as caught:
        store.get("01abc")
    assert "01abcdef" in str(caught.value) and "01abcxyz" in str(caught.value)
    assert caught.value.conversation_id == "01abc"
    with pytest.raises(ConversationNotFoundError, match="at least 4 characters"):
        store.get("01a")
    with pytest.raises(ConversationNotFoundError, match="'nope'") as caught:
        store.get("nope")
    assert str(store.path) in str(caught.value)
    assert isinstance(caught.value, StoreError) and isinstance(caught.value, SpoutError)
    for call in (store.turns, store.delete, store.export):
        with pytest.raises(ConversationNotFoundError):
            call("missing")


def test_an_owner_sees_only_its_own_conversations(store: Store) -> None:
    store.append_turns("01abcdef", [ask("alice's")], owner="alice")
    store.append_turns("01abcxyz", [ask("bob's")], owner="bob")
    store.append_turns("01abcnon", [ask("nobody's")])
    # Bob's and the unowned one are not there for alice: the prefix is hers alone.
    assert store.get("01abc", owner="alice").id == "01abcdef"
    assert [c.id for c in store.list(owner="alice")] == ["01abcdef"]
    assert store.turns("01abc", owner="alice")[0].messages[0]["content"] == "alice's"
    for wanted in ("01abcxyz", "01abcx", "01abcnon"):
        with pytest.raises(ConversationNotFoundError) as caught:
            store.get(wanted, owner="alice")
        # the very answer an unknown id gets
        assert str(caught.value) == (
            f"no conversation has an id that is or starts with {wanted!r} ({store.path})"
        )
        with pytest.raises(ConversationNotFoundError):
            store.turns(wanted, owner="alice")
    with pytest.raises(ConversationNotFoundError):
        store.append_turns("01abcxyz", [ask("alice adds")], owner="alice")
    assert store.get("01abcxyz").turn_count == 1  # left as it was
    store.append_turns("01abcdef", [ask("more")], owner="alice")
    assert store.get("01abcdef", owner="alice").turn_count == 2
    # Without an owner, as the CLI and the library read: everything.
    assert len(store.list()) == 3 and store.get("01abcx").id == "01abcxyz"
    with pytest.raises(ValueError, match="owner"):
        store.append_turns("01abcdef", [], owner="")


def test_delete_takes_the_turns_too(store: Store) -> None:
    store.append_turns("c1", [ask("a"), ask("b")])
    store.append_turns("c2", [ask("c")])
    store.delete("c1")
    with pytest.raises(ConversationNotFoundError):
        store.get("c1")
    assert seqs(store.path, "c1") == []
    assert store.get("c2").turn_count == 1


def test_new_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 and set(i) <= set("0123456789abcdefghjkmnpqrstvwxyz") for i in ids)
    # The first 10 characters are the millisecond: never decreasing.
    assert [i[:10] for i in ids] == sorted(i[:10] for i in ids)


def test_one_store_is_safe_to_share_between_threads(store: Store) -> None:
    def write(name: str) -> None:
        for i in range(40):
            store.append_turns("shared", [ask(f"{name} {i}")])
            store.get("shared")

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seqs(store.path, "shared") == list(range(1, 161))


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list()


# -- export and import --------------------------------------------------------------------------


def test_json_export_imports_back_the_same(store: Store, tmp_path: Path) -> None:
    turns = [ask("Hello there", "Hi"), tool_turn()]
    store.append_turns("c1", turns, system_prompt="Be kind.", created_at=50.0)
    exported = store.export("c1")
    document = orjson.loads(exported)
    assert document["format"] == "spout.conversation" and document["version"] == 1
    assert document["turns"] == [t.to_dict() for t in turns]

    with Store(tmp_path / "other.db") as other:
        imported = other.import_json(exported)
        assert imported == store.get("c1")
        assert [t.to_dict() for t in other.turns("c1")] == [t.to_dict() for t in turns]
        assert other.export("c1") == exported

    with pytest.raises(StoreError, match="already in the store"):
        store.import_json(exported)
    copy = store.import_json(document, new_id=True)
    assert copy.id != "c1" and len(copy.id) == 26
    assert (copy.title, copy.models, copy.turn_count) == (
        "Hello there",
        ("p:m", "anthropic:claude-x"),
        2,
    )
    assert [t.to_dict() for t in store.turns(copy.id)] == [t.to_dict() for t in turns]
    assert store.get("c1").turn_count == 2  # the original is untouched


def test_markdown_export_reads_like_the_conversation(store: Store) -> None:
    store.append_turns(
        "c1",
        [ask("Hello", "Hi!", model="gpt", provider="openai"), tool_turn()],
        title="Weather chat",
        system_prompt="Be brief.\nAlways.",
    )
    text = store.export("c1", "md")
    for expected in (
        "# Weather chat\n",
        "`c1`",
        "models: `openai:gpt`, `anthropic:claude-x`",
        "> Be brief.\n> Always.",
        "## User\n\nHello\n",
        "## Assistant (openai:gpt)\n\nHi!\n",
        "<details><summary>Reasoning</summary>\n\nThe user wants the weather.\n\n</details>",
        '### Tool call: get_weather\n\n```json\n{\n  "city": "Oslo"\n}\n```',
        "### Tool result: get_weather\n\n```\nsunny\n```",
        "## Assistant (anthropic:claude-x)\n\nIt is sun\n",
        "*(incomplete: error — connection lost)*",
    ):
        assert expected in text, expected
    assert (
        text.index("## User\n\nHello") < text.index("Weather in Oslo?") < text.index("incomplete")
    )


def test_markdown_fences_outlast_backticks_in_the_content(store: Store) -> None:
    result = "``` not the end\n````"
    turn = Turn(messages=({"role": "tool", "tool_call_id": "x", "name": "t", "content": result},))
    store.append_turns("c1", [turn])
    assert f"`````\n{result}\n`````" in store.export("c1", "md")


def test_export_rejects_an_unknown_format(store: Store) -> None:
    store.append_turns("c1", [ask("a")])
    with pytest.raises(ValueError, match="'json' or 'md'"):
        store.export("c1", "html")  # type: ignore[arg-type]


def _exported() -> dict[str, Any]:
    return {
        "format": "spout.conversation",
        "version": 1,
        "id": "c9",
        "title": "t",
        "created_at": 1.0,
        "updated_at": 2.0,
        "system_prompt": None,
        "models": [],
        "turns": [ask("hi").to_dict()],
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"format": "something.else"}, "'format'"),
        ({"version": 2}, "'version' 2 is newer"),
        ({"version": "1"}, "'version'"),
        ({"id": ""}, "'id'"),
        ({"id": 7}, "'id'"),
        ({"title": ["x"]}, "'title'"),
        ({"system_prompt": 3}, "'system_prompt'"),
        ({"models": "p:m"}, "'models'"),
        ({"turns": None}, "'turns'"),
        ({"turns": [ask("a").to_dict(), {"messages": "hi"}]}, r"'turns'\[1\]: .*'messages'"),
        ({"turns": [{"messages": [], "incomplete": "bored"}]}, r"'turns'\[0\]: .*'incomplete'"),
        ({"created_at": "yesterday"}, "'created_at'"),
        ({"updated_at": None}, "'updated_at'"),
    ],
)
def test_import_errors_name_the_field(store: Store, change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        store.import_json({**_exported(), **change})
    assert store.list() == []


def test_import_refuses_what_is_not_a_json_object(store: Store) -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        store.import_json("{not json")
    with pytest.raises(ValueError, match="JSON object"):
        store.import_json(b"[1, 2]")
    imported = store.import_json(orjson.dumps(_exported()))
    assert imported.models == ("p:m",)  # the turns' models are added to those listed


# -- failures leave the store as it was ---------------------------------------------------------


def test_a_turn_that_cannot_be_serialized_writes_nothing(store: Store) -> None:
    store.append_turns("c1", [ask("first")])
    before = (store.get("c1"), [t.to_dict() for t in store.turns("c1")])
    bad = Turn(messages=({"role": "user", "content": object()},))
    with pytest.raises(StoreError, match=r"turn 1 .*not JSON-serializable") as caught:
        store.append_turns("c1", [ask("fine"), bad])
    assert str(store.path) in str(caught.value)
    assert (store.get("c1"), [t.to_dict() for t in store.turns("c1")]) == before


def test_a_write_failing_midway_rolls_back_whole(store: Store) -> None:
    store.append_turns("c1", [ask("first", model="a")])
    before = (store.get("c1"), [t.to_dict() for t in store.turns("c1")])
    # Fail the second row of the batch, after the first row and the summary were written.
    tamper = raw(store.path)
    tamper.execute(
        "CREATE TRIGGER fail BEFORE INSERT ON turns WHEN NEW.seq = 3"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    tamper.execute(
        "CREATE TRIGGER fail_new BEFORE INSERT ON turns WHEN NEW.conversation_id = 'c2'"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    with pytest.raises(StoreError, match="disk on fire") as caught:
        store.append_turns("c1", [ask("second", model="b"), ask("third", model="c")])
    assert str(store.path) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    assert (store.get("c1"), [t.to_dict() for t in store.turns("c1")]) == before
    with pytest.raises(StoreError, match="disk on fire"):
        store.append_turns("c2", [ask("new")], title="never made")
    with pytest.raises(ConversationNotFoundError):
        store.get("c2")

    tamper.execute("DROP TRIGGER fail")
    tamper.close()
    store.append_turns("c1", [ask("second", model="b"), ask("third", model="c")])
    assert seqs(store.path, "c1") == [1, 2, 3]
    assert store.get("c1").models == ("p:a", "p:b", "p:c")


# -- several processes --------------------------------------------------------------------------

WRITER = """
import sys
from spout._store import Store
from spout._turn import Turn

path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Store(path) as store:
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        store.append_turns("shared", [Turn(messages=({"role": "user", "content": f"{name} {i}"},))])
        store.append_turns(name, [Turn(messages=({"role": "user", "content": str(i)},))])
"""


Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Starts ``python -c CODE ARGS...``; whatever still runs when the test ends is killed.

    (A test that fails while a child waits on its stdin would otherwise leave it running, and
    the ResourceWarning of its collected Popen would fail some later test.)
    """
    children: list[subprocess.Popen[str]] = []

    def start(code: str, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "SPOUT_HOME": str(tmp_path / "home")}
        child = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()  # waits, and closes the pipes


def test_opening_a_new_file_waits_for_a_writer_that_holds_it(tmp_path: Path) -> None:
    # Two processes making the store at once: one holds a lock while the other, already
    # reading, needs the exclusive one to turn WAL on. SQLite fails that at once rather than
    # wait (it could deadlock); the store waits and tries again instead.
    path = tmp_path / "c.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    opened: list[Store | BaseException] = []

    def open_store() -> None:
        try:
            opened.append(Store(path))
        except BaseException as exc:
            opened.append(exc)

    opening = threading.Thread(target=open_store)
    opening.start()
    opening.join(0.3)
    other.execute("COMMIT")
    other.close()
    opening.join(30)
    (store,) = opened
    assert isinstance(store, Store), store
    with store:
        assert store.list() == []
    assert integrity(path) == "ok"


def test_two_processes_appending_at_once_lose_nothing(tmp_path: Path, spawn: Spawn) -> None:
    path, count = tmp_path / "c.db", 300  # the file is new: they also race to make it
    writers = [spawn(WRITER, str(path), name, str(count)) for name in "ab"]
    for writer in writers:
        assert writer.stdout is not None
        ready = writer.stdout.readline()
        assert ready == "ready\n", ready + writer.communicate(timeout=60)[1]
    for writer in writers:  # both start together
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err

    with Store(path) as store:
        shared = [t.messages[0]["content"] for t in store.turns("shared")]
        assert sorted(shared) == sorted(f"{n} {i}" for n in "ab" for i in range(count))
        for name in "ab":  # each writer's turns in the order it wrote them
            assert [int(s.split()[1]) for s in shared if s[0] == name] == list(range(count))
            assert [t.messages[0]["content"] for t in store.turns(name)] == [
                str(i) for i in range(count)
            ]
        assert store.get("shared").turn_count == 2 * count
    assert seqs(path, "shared") == list(range(1, 2 * count + 1))
    assert seqs(path, "a") == seqs(path, "b") == list(range(1, count + 1))
    assert integrity(path) == "ok"


KILLED = """
import sys
from spout._store import Store
from spout._turn import Turn

with Store(sys.argv[1]) as store:
    batch = 0
    while True:
        # Three large turns per write: a kill lands mid-transaction often.
        store.append_turns("c1", [
            Turn(messages=({"role": "user", "content": f"{batch}:{part}:" + "x" * 200_000},))
            for part in range(3)
        ])
        batch += 1
        if batch == 3:
            print("writing", flush=True)
"""


def test_a_process_killed_mid_write_leaves_a_whole_store(tmp_path: Path, spawn: Spawn) -> None:
    path = tmp_path / "c.db"
    writer = spawn(KILLED, str(path))
    assert writer.stdout is not None
    writing = writer.stdout.readline()
    assert writing == "writing\n", writing + writer.communicate(timeout=60)[1]
    threading.Event().wait(0.3)
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    assert writer.returncode == -signal.SIGKILL

    with Store(path) as store:
        turns = store.turns("c1")
        assert store.get("c1").turn_count == len(turns) >= 9
    # Whole batches only, each turn whole and in order.
    assert len(turns) % 3 == 0
    assert seqs(path, "c1") == list(range(1, len(turns) + 1))
    for index, turn in enumerate(turns):
        content = turn.messages[0]["content"]
        assert content == f"{index // 3}:{index % 3}:" + "x" * 200_000
    assert integrity(path) == "ok"


# -- spout.conversations ------------------------------------------------------------------------


def test_the_conversations_module_opens_the_store_it_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPOUT_HOME", str(tmp_path / "home"))
    with Store() as default:
        default.append_turns("d1", [ask("in the default store")])
    other = tmp_path / "other.db"
    with Store(other) as store:
        store.append_turns("o1", [ask("elsewhere")])

    assert [c.id for c in conv.list()] == ["d1"]
    assert [c.id for c in conv.list(store=other)] == ["o1"]
    assert [c.id for c in conv.list(limit=1, store=str(other))] == ["o1"]
    last = conv.last()
    assert last is not None and last.id == "d1"
    assert conv.get("d1").title == "in the default store"
    assert conv.turns("o1", store=other)[0].text == "ok"
    exported = conv.export("d1")
    assert "# in the default store" in conv.export("d1", "md")
    with Store(other) as store:
        imported = conv.import_json(exported, store=store)
        assert imported.id == "d1" and store.get("d1").turn_count == 1
        conv.delete("o1", store=store)
        assert [c.id for c in conv.list(store=store)] == ["d1"]
        store.list()  # a Store given is used, not closed
    copy = conv.import_json(exported, new_id=True)
    conv.delete("d1")
    assert [c.id for c in conv.list()] == [copy.id]


# -- files ----------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + b"0" * 500


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def with_files(text: str, *parts: dict[str, Any]) -> Turn:
    """A turn whose user message carries ``parts`` (portable file parts) after its text."""
    return Turn(
        messages=(
            {"role": "user", "content": [{"type": "text", "text": text}, *parts]},
            {"role": "assistant", "content": "ok"},
        ),
        model="m",
        provider="p",
    )


def image(data: bytes = PNG) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url("image/png", data)}}


def document(data: bytes = PDF, name: str = "report.pdf") -> dict[str, Any]:
    return {
        "type": "file",
        "file": {"file_data": data_url("application/pdf", data), "filename": name},
    }


def audio(data: bytes) -> dict[str, Any]:
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(data).decode(), "format": "mp3"},
    }


def stored_files(path: Path) -> list[tuple[str, str, int]]:
    connection = raw(path)
    try:
        rows = connection.execute(
            "SELECT conversation_id, sha256, size FROM files ORDER BY conversation_id, sha256"
        ).fetchall()
    finally:
        connection.close()
    return [(c, s, n) for c, s, n in rows]


def turn_rows(path: Path) -> str:
    connection = raw(path)
    try:
        return "".join(data for (data,) in connection.execute("SELECT data FROM turns"))
    finally:
        connection.close()


def test_a_files_bytes_are_stored_once_a_conversation_and_read_back_whole(store: Store) -> None:
    mp3 = b"ID3" + bytes(300)
    first = with_files("What is this?", image(), document())
    second = with_files("And this, again?", image(), audio(mp3))
    store.append_turns("c1", [first])
    store.append_turns("c1", [second])
    store.append_turns("c2", [with_files("Same picture", image())])

    digest = hashlib.sha256(PNG).hexdigest()
    assert stored_files(store.path) == sorted(
        [
            ("c1", digest, len(PNG)),
            ("c1", hashlib.sha256(PDF).hexdigest(), len(PDF)),
            ("c1", hashlib.sha256(mp3).hexdigest(), len(mp3)),
            ("c2", digest, len(PNG)),  # once per conversation: deleting one keeps the other's
        ]
    )
    # The turns refer to the files; their bytes are not in the turns' JSON.
    rows = turn_rows(store.path)
    assert base64.b64encode(PNG).decode()[:40] not in rows
    assert f"spout-file:image/png;sha256,{digest}" in rows
    # Read back as they were given: data URLs, and input_audio's bare base64.
    assert [t.to_dict() for t in store.turns("c1")] == [first.to_dict(), second.to_dict()]


def test_a_file_given_by_url_is_stored_as_its_url(store: Store) -> None:
    turn = with_files(
        "Look", {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    )
    store.append_turns("c1", [turn])
    assert stored_files(store.path) == []
    assert store.turns("c1")[0].to_dict() == turn.to_dict()


def test_deleting_a_conversation_deletes_its_files(store: Store) -> None:
    store.append_turns("c1", [with_files("a", image())])
    store.append_turns("c2", [with_files("b", image())])
    store.delete("c1")
    assert [c for c, _, _ in stored_files(store.path)] == ["c2"]


def test_files_past_a_conversations_limit_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Store(path, max_conversation_file_bytes=len(PNG) + len(PDF)) as store:
        store.append_turns("c1", [with_files("first", image(), document())])
        before = (store.get("c1"), [t.to_dict() for t in store.turns("c1")], stored_files(path))
        with pytest.raises(
            StoreError, match=rf"would take {2 * len(PNG) + 1 + len(PDF):,} bytes, over the 1,541 a"
        ) as caught:
            store.append_turns("c1", [ask("fine"), with_files("one more", image(PNG + b"!"))])
        assert "nothing was written" in str(caught.value) and str(path) in str(caught.value)
        assert (
            store.get("c1"),
            [t.to_dict() for t in store.turns("c1")],
            stored_files(path),
        ) == before
        # A file the conversation keeps already takes no more room.
        store.append_turns("c1", [with_files("the same again", image())])
        assert store.get("c1").turn_count == 2
        # A new conversation over the limit is not made at all.
        with pytest.raises(StoreError, match="a conversation may keep"):
            store.append_turns("c2", [with_files("big", image(), document(), image(PNG + b"?"))])
        with pytest.raises(ConversationNotFoundError):
            store.get("c2")
        with pytest.raises(ValueError, match="max_conversation_file_bytes"):
            Store(path, max_conversation_file_bytes=-1)


def test_a_file_over_the_per_file_cap_is_refused(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spout._files
    import spout._store

    monkeypatch.setattr(spout._files, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(spout._store, "MAX_FILE_BYTES", 100)
    with pytest.raises(StoreError, match=r"turn 0 .*larger than 100 bytes.*nothing was written"):
        store.append_turns("c1", [with_files("too big", image())])
    with pytest.raises(ConversationNotFoundError):
        store.get("c1")


def test_a_missing_file_is_reported_as_damage(store: Store) -> None:
    store.append_turns("c1", [with_files("a", image())])
    tamper = raw(store.path)
    tamper.execute("DELETE FROM files")
    tamper.close()
    with pytest.raises(StoreError, match=r"turn 1 of conversation 'c1' is damaged: .*missing"):
        store.turns("c1")


def test_json_export_carries_the_files_and_import_keeps_them_once(store: Store) -> None:
    turns = [with_files("a", image(), document()), with_files("b", image())]
    store.append_turns("c1", turns)
    exported = store.export("c1")
    assert base64.b64encode(PNG).decode() in exported  # a file of its own: the bytes inside
    copied = store.import_json(exported, new_id=True)
    assert [t.to_dict() for t in store.turns(copied.id)] == [t.to_dict() for t in turns]
    assert sum(1 for c, _, _ in stored_files(store.path) if c == copied.id) == 2


def test_markdown_lists_attachments_without_their_bytes(store: Store) -> None:
    turn = with_files("What is this?", image(), document())
    named = Turn(
        messages=turn.messages,
        model="m",
        provider="p",
        file_names={hashlib.sha256(PNG).hexdigest(): "cat.png"},
    )
    store.append_turns("c1", [named])
    markdown = store.export("c1", "md")
    assert f"*[attachment: cat.png, image/png, {len(PNG):,} bytes]*" in markdown
    assert f"*[attachment: report.pdf, application/pdf, {len(PDF):,} bytes]*" in markdown
    assert "base64" not in markdown
    assert store.turns("c1")[0].file_names == named.file_names


def test_a_store_from_before_files_keeps_its_inline_files_readable(tmp_path: Path) -> None:
    # Version 2 kept a file part's bytes inside the turn's JSON; those turns read as they were.
    path = tmp_path / "old.db"
    connection = raw(path)
    for script in MIGRATIONS[:2]:
        connection.executescript(script)
    connection.execute("PRAGMA user_version = 2")
    old = with_files("From before", image())
    connection.execute(
        "INSERT INTO conversations (id, title, created_at, updated_at, models)"
        " VALUES ('old1', 'From before', 1.0, 2.0, '[\"p:m\"]')"
    )
    connection.execute(
        "INSERT INTO turns VALUES ('old1', 1, 1.5, ?)", (orjson.dumps(old.to_dict()).decode(),)
    )
    connection.close()

    with Store(path) as store:
        assert [t.to_dict() for t in store.turns("old1")] == [old.to_dict()]
        store.append_turns("old1", [with_files("After", image())])  # now kept in the table
        assert [t.messages[0] for t in store.turns("old1")] == [
            old.messages[0],
            with_files("After", image()).messages[0],
        ]
    assert [c for c, _, _ in stored_files(path)] == ["old1"]
