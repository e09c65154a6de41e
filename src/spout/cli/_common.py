"""What the commands share: the model and logging options, one-line errors, opening a session."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .. import LLM, Turn
    from ..conversations import Store
    from ..session import Session

#: Values of ``SPOUT_NO_LOG`` that leave logging on (unset and empty do too).
_FALSE = ("", "0", "false", "no", "off")


class CommandError(Exception):
    """A failure the command reports in one line and an exit status (no traceback)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def fail(message: str, status: int = 1) -> int:
    """Print ``spout: error: ...`` on one line to stderr; returns ``status``."""
    # One line, always: a server's error body (an HTML 502 page, a stack trace) may span many.
    print(f"spout: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def print_refusal(refusal: str) -> None:
    """Print a model's refusal on stderr, marked as one: it is not the answer, so it never goes
    to stdout, where a pipe or a file would take it for one."""
    print(f"spout: the model refused: {refusal}", file=sys.stderr)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """-m, --base-url, -s, --max-tokens, --temperature."""
    parser.add_argument(
        "-m",
        "--model",
        help="provider:model, e.g. openai:gpt-4o-mini (default: local, or the model of the "
        "conversation continued)",
    )
    parser.add_argument("--base-url", help="the provider's base URL (a proxy or local server)")
    parser.add_argument(
        "-s", "--system", help="a system prompt (replaces a continued conversation's)"
    )
    parser.add_argument("--max-tokens", type=int, help="the most tokens to generate")
    parser.add_argument("--temperature", type=float, help="sampling temperature")


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """-c, --cid, --no-log, --database."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "-c",
        "--continue",
        dest="continue_last",
        action="store_true",
        help="continue the most recent conversation",
    )
    which.add_argument(
        "--cid", metavar="ID", help="continue the conversation with this id (or a unique prefix)"
    )
    parser.add_argument(
        "--no-log",
        action="store_true",
        help="save nothing (also: SPOUT_NO_LOG=1); -c/--cid still read the log",
    )
    add_database_option(parser)


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        metavar="PATH",
        help="the conversation store (default: $SPOUT_HOME/conversations.db, else "
        "$XDG_DATA_HOME/spout/conversations.db, else ~/.local/share/spout/conversations.db)",
    )


def logging_off(args: argparse.Namespace) -> bool:
    """--no-log, or SPOUT_NO_LOG set to anything but 0/false/no/off."""
    return bool(args.no_log) or os.environ.get("SPOUT_NO_LOG", "").strip().lower() not in _FALSE


def generation_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature
    return params


@contextlib.contextmanager
def open_session(args: argparse.Namespace) -> Iterator[Session]:
    """The session the options ask for: new or continued, logged or not; closed on leaving.

    Continuing without ``-m`` answers with the model of the conversation's last turn (the
    conversation does not keep a base URL: give ``--base-url`` again). Without logging, a new
    conversation touches no store; a continued one is read but not written.
    """
    from .. import create_llm
    from ..conversations import Store
    from ..session import Session

    logging = not logging_off(args)
    continuing = bool(args.continue_last) or args.cid is not None
    store: Store | None = None
    llm: LLM | None = None
    session: Session | None = None
    try:
        conversation_id = None
        stored_model = None
        if logging or continuing:
            store = Store(args.database)
        if continuing:
            assert store is not None
            conversation_id = _conversation_to_continue(store, args.cid)
            stored_model = last_model(store.turns(conversation_id))
        config: dict[str, Any] = {}
        if args.base_url:
            config["base_url"] = args.base_url
        # "provider:model" or "provider/model", split by create_llm as the CLI gives it.
        llm = create_llm(args.model or stored_model or "local", **config)
        params = generation_params(args)
        if conversation_id is not None:
            if args.system is not None:
                params["system_prompt"] = args.system
            session = Session.load(
                conversation_id, provider=llm, store=store, autosave=logging, **params
            )
        else:
            session = Session(
                llm, system_prompt=args.system, store=store, autosave=logging, **params
            )
        yield session
    finally:
        try:
            if session is not None:
                session.close()
        finally:
            if llm is not None:
                llm.close()
            if store is not None:
                store.close()


def _conversation_to_continue(store: Store, conversation_id: str | None) -> str:
    if conversation_id is not None:
        return store.get(conversation_id).id
    latest = store.last()
    if latest is None:
        raise CommandError(f"no conversation to continue: none is stored yet in {store.path}")
    return latest.id


def last_model(turns: Sequence[Turn]) -> str | None:
    """``provider:model`` of the last turn that names one."""
    for turn in reversed(turns):
        if turn.provider and turn.model:
            return f"{turn.provider}:{turn.model}"
    return None


def describe_model(llm: LLM) -> str:
    return f"{llm.provider_name}:{llm.model}"


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
