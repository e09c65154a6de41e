"""``spout conversations list|show|export|import|delete``, end to end on a store of its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_support import assert_one_error_line, openai_args, spout, spout_env

from replay_server import ReplayServer, Reply
from scripted_turns import openai_text_turn
from spout.conversations import Store


@pytest.fixture(autouse=True)
def spout_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "spout_home"
    monkeypatch.setenv("SPOUT_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def two_conversations_made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A store holding two conversations logged by the command, and their ids, the most
    recently updated first. The first has two turns, on two models, and a system prompt."""
    home = tmp_path_factory.mktemp("two_conversations")
    server = ReplayServer().start()
    try:
        server.replies = [
            Reply(chunks=[openai_text_turn(text)]) for text in ("Paris.", "Lyon.", "Hi!")
        ]
        url = f"{server.url}/v1"
        for args in (
            [*openai_args(server), "-s", "Be brief.", "Capital of France?"],
            ["-c", "-m", "openai:other-model", "--base-url", url, "A second city?"],
            [*openai_args(server), "Say hi"],
        ):
            result = spout(*args, env=spout_env(SPOUT_HOME=str(home)))
            assert result.returncode == 0, result.stderr
    finally:
        server.stop()
    assert not server.errors, server.errors
    with Store(home / "conversations.db") as store:
        return home / "conversations.db", [conversation.id for conversation in store.list()]


@pytest.fixture
def two_conversations(
    two_conversations_made: tuple[Path, list[str]], spout_home: Path
) -> list[str]:
    """The two conversations, in a copy of the store for this test alone."""
    database, ids = two_conversations_made
    spout_home.mkdir()
    shutil.copyfile(database, spout_home / "conversations.db")
    return ids


def conversations(*args: str) -> tuple[str, str]:
    """Run ``spout conversations ...`` that must succeed; its (stdout, stderr)."""
    result = spout("conversations", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def test_list_as_a_table_and_as_json(two_conversations: list[str]) -> None:
    hi, france = two_conversations
    table, _ = conversations("list")
    header, first, second = table.splitlines()
    assert header.split() == ["ID", "UPDATED", "TURNS", "COST", "MODEL", "TITLE"]
    assert first.startswith(hi) and first.endswith("Say hi")
    assert second.startswith(france) and second.endswith("Capital of France?")
    # Each reply names gpt-4o-mini and used 90 + 12 tokens: $0.0000207 at $0.15 and $0.60 per
    # million, two turns $0.0000414.
    assert "  2  $0.000041  openai:other-model +1  " in second
    # The columns line up.
    assert header.index("TITLE") == first.index("Say hi") == second.index("Capital of France?")

    listed = json.loads(conversations("list", "--json")[0])
    assert [c["id"] for c in listed] == [hi, france]
    assert listed[1]["models"] == ["openai:test-model", "openai:other-model"]
    assert (listed[1]["turns"], listed[1]["system_prompt"]) == (2, "Be brief.")
    assert listed[1]["cost"] == pytest.approx(2 * (90 * 0.15 + 12 * 0.60) / 1e6)
    assert [c["id"] for c in json.loads(conversations("list", "-n", "1", "--json")[0])] == [hi]


def test_list_with_nothing_stored(spout_home: Path) -> None:
    out, err = conversations("list")
    assert out == "" and "no conversations yet" in err
    assert json.loads(conversations("list", "--json")[0]) == []


def test_show_and_export(two_conversations: list[str], tmp_path: Path) -> None:
    other, france = two_conversations
    # A prefix is enough. Ids begin with their creation time, so two made in the same second
    # share their first eight characters: take one more than they share.
    shared = next(i for i, (a, b) in enumerate(zip(other, france, strict=True)) if a != b)
    prefix = france[: max(8, shared + 1)]
    shown, _ = conversations("show", prefix)
    assert shown.startswith("# Capital of France?\n")
    for text in ("Be brief.", "## User", "A second city?", "Lyon.", "openai:other-model"):
        assert text in shown

    assert conversations("export", france, "--format", "md")[0] == shown
    exported = json.loads(conversations("export", france)[0])  # JSON unless told otherwise
    assert (exported["format"], exported["id"]) == ("spout.conversation", france)
    assert [len(turn["messages"]) for turn in exported["turns"]] == [2, 2]

    target = tmp_path / "out" / "chat.md"
    target.parent.mkdir()
    out, err = conversations("export", france, "--format", "md", "-o", str(target))
    assert out == "" and str(target) in err
    assert target.read_text() == shown


def test_delete_then_import_restores_it(two_conversations: list[str], tmp_path: Path) -> None:
    hi, france = two_conversations
    saved = tmp_path / "france.json"
    saved.write_text(conversations("export", france)[0])

    _, err = conversations("delete", france[:10])
    assert f"deleted {france}" in err and "Capital of France?" in err and "2 turns" in err
    assert [c["id"] for c in json.loads(conversations("list", "--json")[0])] == [hi]
    line = assert_one_error_line(spout("conversations", "show", france))
    assert france in line

    out, _ = conversations("import", str(saved))
    assert out == f"{france}\n"
    assert conversations("export", france)[0] == saved.read_text()

    # The same id again is refused, with what to do instead; --new-id keeps a copy.
    line = assert_one_error_line(spout("conversations", "import", str(saved)))
    assert "--new-id" in line
    out, _ = conversations("import", "--new-id", str(saved))
    copy = out.strip()
    assert copy != france
    with Store() as store:
        assert [t.messages for t in store.turns(copy)] == [t.messages for t in store.turns(france)]


def test_import_from_stdin_and_bad_input(tmp_path: Path) -> None:
    document = {
        "format": "spout.conversation",
        "version": 1,
        "id": "01jc3k9x0000000000000000aa",
        "title": "Imported",
        "created_at": 1_700_000_000.0,
        "updated_at": 1_700_000_100.0,
        "system_prompt": None,
        "models": ["openai:gpt-4o-mini"],
        "turns": [
            {
                "messages": [
                    {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Hi there."},
                ],
                "model": "gpt-4o-mini",
                "provider": "openai",
                "created_at": 1_700_000_050.0,
            }
        ],
    }
    result = spout("conversations", "import", "-", input=json.dumps(document))
    assert (result.returncode, result.stdout) == (0, "01jc3k9x0000000000000000aa\n")
    assert "Hi there." in conversations("show", "01jc3k9x")[0]

    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    assert "format" in assert_one_error_line(spout("conversations", "import", str(bad)))
    missing = tmp_path / "missing.json"
    assert "missing.json" in assert_one_error_line(spout("conversations", "import", str(missing)))


def test_unknown_ids_and_a_database_elsewhere(two_conversations: list[str], tmp_path: Path) -> None:
    for command in ("show", "export", "delete"):
        line = assert_one_error_line(spout("conversations", command, "zzzzzzzz"))
        assert "zzzzzzzz" in line
    elsewhere = tmp_path / "elsewhere.db"
    assert json.loads(conversations("list", "--json", "--database", str(elsewhere))[0]) == []
    assert len(json.loads(conversations("list", "--json")[0])) == 2
