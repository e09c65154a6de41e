"""``spout conversations``: list, show, export, import and delete the logged conversations."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import CommandError, add_database_option, fail, silence_stdout
from ._status import cost_text

if TYPE_CHECKING:
    from ..conversations import Conversation, Store

__all__ = ["main"]

_EXAMPLES = """\
examples:
  spout conversations list
  spout conversations list -n 5 --json
  spout conversations show 01jc3k9x
  spout conversations export 01jc3k9x --format md -o chat.md
  spout conversations export 01jc3k9x > chat.json
  spout conversations import chat.json
  spout conversations delete 01jc3k9x

An ID may be any unique prefix of at least 4 characters.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spout conversations",
        description="The conversations spout logged, most recently updated first.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="id, last update, turns, model and title of each")
    listing.add_argument(
        "-n", type=int, default=20, metavar="N", help="show the N most recent (0: all; default 20)"
    )
    listing.add_argument("--json", action="store_true", help="a JSON array instead of a table")

    show = commands.add_parser("show", help="a conversation as readable text (Markdown)")
    show.add_argument("id", metavar="ID")

    export = commands.add_parser("export", help="a conversation as JSON (to import) or Markdown")
    export.add_argument("id", metavar="ID")
    export.add_argument("--format", choices=("json", "md"), default="json", help="default: json")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")

    importing = commands.add_parser("import", help="store a conversation exported as JSON")
    importing.add_argument("file", metavar="FILE", help="the export's JSON file, or - for stdin")
    importing.add_argument(
        "--new-id", action="store_true", help="store a copy under a new id (the id is in use)"
    )

    delete = commands.add_parser("delete", help="delete a conversation and all its turns")
    delete.add_argument("id", metavar="ID")

    for command in (listing, show, export, importing, delete):
        add_database_option(command)
    return parser


def main(argv: Sequence[str]) -> int:
    """Run ``spout conversations ...``; returns the exit status."""
    args = _parser().parse_args(argv)
    from .. import SpoutError
    from ..conversations import Store

    try:
        with Store(args.database) as store:
            run = {
                "list": _list,
                "show": _show,
                "export": _export,
                "import": _import,
                "delete": _delete,
            }[args.command]
            run(store, args)
        sys.stdout.flush()
    except SpoutError as exc:
        return fail(str(exc))
    except CommandError as exc:
        return fail(str(exc), exc.status)
    except BrokenPipeError:  # spout conversations show ID | head
        silence_stdout()
        return 0
    except (OSError, ValueError) as exc:  # a file to import or export to; invalid JSON
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return 0


def _list(store: Store, args: argparse.Namespace) -> None:
    if args.n < 0:
        raise CommandError("-n must be 0 (all) or more", 2)
    conversations = store.list(limit=args.n or None)
    if args.json:
        import orjson

        rows = [_as_json(conversation) for conversation in conversations]
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not conversations:
        print(f"no conversations yet in {store.path}", file=sys.stderr)
        return
    sys.stdout.write(_table(conversations, _width()))


def _as_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "models": list(conversation.models),
        "turns": conversation.turn_count,
        "cost": conversation.cost,
        "system_prompt": conversation.system_prompt,
    }


def _width() -> int | None:
    """The terminal's width, to cut titles to; None when stdout is not a terminal."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def _table(conversations: Sequence[Conversation], width: int | None) -> str:
    """Aligned columns; titles cut to ``width`` when it is given. COST is the conversation's
    turns' known costs added (``-`` where none is known)."""
    header = ("ID", "UPDATED", "TURNS", "COST", "MODEL", "TITLE")
    rows = [header] + [
        (
            c.id,
            datetime.fromtimestamp(c.updated_at).strftime("%Y-%m-%d %H:%M"),
            str(c.turn_count),
            "-" if c.cost is None else cost_text(c.cost),
            _models(c.models),
            c.title,
        )
        for c in conversations
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    lines = []
    for row in rows:
        cells = [
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            row[2].rjust(widths[2]),
            row[3].rjust(widths[3]),
            row[4].ljust(widths[4]),
        ]
        line = "  ".join([*cells, row[5]]).rstrip()
        if width is not None and len(line) > width:
            line = line[: max(width - 1, 0)] + "…"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _models(models: Sequence[str]) -> str:
    """The model used last (the list is in order of first use), and how many others."""
    if not models:
        return "-"
    return models[-1] + (f" +{len(models) - 1}" if len(models) > 1 else "")


def _show(store: Store, args: argparse.Namespace) -> None:
    sys.stdout.write(store.export(args.id, "md"))


def _export(store: Store, args: argparse.Namespace) -> None:
    text = store.export(args.id, args.format)
    if not text.endswith("\n"):
        text += "\n"
    if args.output is None:
        sys.stdout.write(text)
        return
    Path(args.output).expanduser().write_text(text, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)


def _import(store: Store, args: argparse.Namespace) -> None:
    import orjson

    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        data = Path(args.file).expanduser().read_bytes()
    if not args.new_id:
        # Say what to do in the command's own words (the store's message names the API's).
        try:
            given = orjson.loads(data).get("id")
        except (orjson.JSONDecodeError, AttributeError):
            given = None  # import_json names what is wrong with it
        if isinstance(given, str) and given and _stored(store, given):
            raise CommandError(
                f"conversation {given} is already in {store.path}: "
                "import it with --new-id to keep a copy under a new id"
            )
    conversation = store.import_json(data, new_id=args.new_id)
    print(conversation.id)
    print(f"imported {conversation.title!r} ({conversation.turn_count} turns)", file=sys.stderr)


def _stored(store: Store, conversation_id: str) -> bool:
    from .. import ConversationNotFoundError

    try:
        return store.get(conversation_id).id == conversation_id
    except ConversationNotFoundError:
        return False


def _delete(store: Store, args: argparse.Namespace) -> None:
    conversation = store.get(args.id)
    store.delete(conversation.id)
    turns = f"{conversation.turn_count} turn{'s' if conversation.turn_count != 1 else ''}"
    print(f"deleted {conversation.id}: {conversation.title} ({turns})", file=sys.stderr)
