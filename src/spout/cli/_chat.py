"""``spout chat``: a conversation in a loop, each reply streamed; Ctrl-C stops the reply only."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._common import (
    CommandError,
    add_log_options,
    add_model_options,
    describe_model,
    fail,
    logging_off,
    open_session,
    print_refusal,
    silence_stdout,
)
from ._status import StatusLine, add_stats_option, print_summary, status_for

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["main"]

PROMPT = "> "
MORE = "... "
#: A line that is exactly this starts a multi-line message, and the next such line ends it.
BLOCK = '"""'
EXIT_WORDS = ("exit", "quit")

_DESCRIPTION = """\
Talk with a model in a loop: each reply is streamed, and the conversation is kept (and logged,
unless --no-log) as you go.

  exit, quit or Ctrl-D   leave
  Ctrl-C                 during a reply: stop it (what arrived is kept, marked interrupted)
                         at the prompt: clear what you were typing
  \"\"\"                    on its own line: start a multi-line message; another \"\"\" sends it
  a trailing \\           continue the message on the next line
"""

_EXAMPLES = """\
examples:
  spout chat
  spout chat -m openai:gpt-4o-mini -s "You are a patient tutor."
  spout chat -c                      continue the most recent conversation
  spout chat --cid 01jc3k9x          continue that one
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spout chat",
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser)
    add_log_options(parser)
    add_stats_option(parser)
    return parser


class _Input:
    """Lines from stdin, with a prompt when a person is typing; remembers reaching the end."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive
        self.ended = False
        if interactive:
            # Line editing and history for input(); not built everywhere (Windows): plain
            # input() then.
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401

    def line(self, prompt: str) -> str | None:
        """The next line, or None at the end of input (Ctrl-D)."""
        try:
            return input(prompt if self.interactive else "")
        except EOFError:
            self.ended = True
            if self.interactive:
                sys.stdout.write("\n")  # leave the shell's prompt on a line of its own
                sys.stdout.flush()
            return None

    def message(self) -> str | None:
        """One message: a line, lines joined by trailing backslashes, or a \"\"\" block.

        The end of input inside a block or after a backslash sends what was typed. None when
        the input ended before anything was, and for ``exit`` or ``quit``.
        """
        line = self.line(PROMPT)
        if line is None:
            return None
        if line.strip().lower() in EXIT_WORDS:
            self.ended = True
            return None
        lines: list[str] = []
        if line.strip() == BLOCK:
            while (line := self.line(MORE)) is not None and line.strip() != BLOCK:
                lines.append(line)
            return "\n".join(lines)
        while line is not None and line.endswith("\\"):
            lines.append(line[:-1])
            line = self.line(MORE)
        if line is not None:
            lines.append(line)
        return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run ``spout chat``; returns the exit status."""
    args = _parser().parse_args(argv)
    from .. import SpoutError

    try:
        interactive = sys.stdin.isatty()
        with open_session(args) as session:
            if interactive:
                _banner(session, args)
            _loop(session, _Input(interactive), status_for(), args.stats)
    except SpoutError as exc:
        return fail(str(exc))
    except CommandError as exc:
        return fail(str(exc), exc.status)
    except (ValueError, TypeError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:  # a second Ctrl-C while the first was being handled
        sys.stdout.write("\n")
        return 130
    except BrokenPipeError:  # spout chat < prompts | head: the reader went away
        silence_stdout()
        return 0
    return 0


def _banner(session: Session, args: argparse.Namespace) -> None:
    turns = session.turns
    if turns:
        count = f"{len(turns)} turn{'s' if len(turns) != 1 else ''}"
        about = f"continuing {session.id}: {session.title or 'Untitled'} ({count})"
    else:
        about = f"new conversation {session.id}"
    if logging_off(args):
        about += ", not logged"
    print(
        f"spout chat with {describe_model(session.provider)}, {about}\n"
        f"exit or Ctrl-D leaves, Ctrl-C stops a reply; {BLOCK} on its own line starts and "
        f"ends a multi-line message",
        file=sys.stderr,
    )


def _loop(session: Session, read: _Input, status: StatusLine, stats: bool) -> None:
    while True:
        try:
            message = read.message()
        except KeyboardInterrupt:
            # At the prompt, Ctrl-C drops what was being typed, as a shell does.
            sys.stdout.write("\n")
            sys.stdout.flush()
            print("(exit or Ctrl-D leaves)", file=sys.stderr)
            continue
        if message is None:
            return
        if message.strip():
            _reply(session, message, status, stats)
        if read.ended:
            return


def _reply(session: Session, message: str, status: StatusLine, stats: bool) -> None:
    """Stream one reply; Ctrl-C stops it and errors are reported, the chat going on either way.

    The live status line (``status``) is erased before anything else goes to stderr; with
    ``stats``, a summary line follows each reply that completed.
    """
    from .. import SpoutError
    from ..session import SessionStream

    write, flush = sys.stdout.write, sys.stdout.flush
    stream: SessionStream | None = None
    shown = 0
    try:
        stream = session.generate_stream(message)
        # Held here, not only by the for loop: a Ctrl-C landing in write() would otherwise drop
        # the last reference to the iterator, closing it (kept as "closed") before the handler
        # below keeps it as "interrupted".
        chunks = iter(stream)
        for chunk in chunks:
            # Counted before it is written: a Ctrl-C inside write() or flush() comes after the
            # chunk reached the output buffer, which the newline below flushes.
            shown += len(chunk)
            write(chunk)
            flush()
            status.update(stream.stats)
        status.clear()
        refusal = stream.response.refusal
        if not stream.text.endswith("\n") and (stream.text or refusal is None):
            write("\n")
        flush()
        if refusal is not None:
            print_refusal(refusal)  # not the answer: on stderr, as the CLI's other notes
        if stats:
            print_summary(stream.response.stats or stream.stats)
    except KeyboardInterrupt:
        status.clear()
        if stream is not None:
            stream.close("interrupted")  # kept and saved; a no-op if the stream kept it already
            # Text that arrived just before the interrupt but was not printed yet: show it, so
            # what is on screen is what is kept.
            write(stream.text[shown:])
        write("\n")
        flush()
        print("[stopped]", file=sys.stderr)
    except SpoutError as exc:
        status.clear()
        if shown:
            write("\n")
            flush()
        fail(str(exc))
    except (ValueError, TypeError) as exc:
        status.clear()
        fail(str(exc))
