"""The ``spout`` command: stream an answer to stdout as it is generated, and log the exchange."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from ._common import (
    CommandError,
    add_log_options,
    add_model_options,
    fail,
    open_session,
    print_refusal,
    silence_stdout,
)
from ._status import add_stats_option, print_summary, status_for

__all__ = ["main"]

#: A first argument naming one of these runs it; ``spout -- chat`` sends "chat" as a prompt.
SUBCOMMANDS = ("chat", "conversations", "serve")

_DESCRIPTION = """\
Stream an answer from a model to stdout, chunk by chunk as it is generated.
With no -m, the bundled local model answers (no key, no network).
Text piped to stdin is appended to the prompt: echo text | spout, or spout "summarize:" < file.
Each exchange is logged as a conversation (see spout conversations); -c continues the last one.

other commands:
  spout chat            talk in a loop, each reply streamed (spout chat --help)
  spout conversations   list, show, export, import or delete logged conversations
  spout serve           serve a model over HTTP to OpenAI/Anthropic clients and browsers
"""

_EXAMPLES = """\
examples:
  spout "Write a haiku about rivers."
  spout -c "Now one about the sea."
  spout --cid 01jc3k9x "And a limerick?"
  spout -m openai:gpt-4o-mini "Count from 1 to 5"
  spout -m openai:any --base-url http://127.0.0.1:8080/v1 "Hello"
  git diff | spout -s "You review code." "Review this diff:"
  spout --no-log "Something not to keep"
  spout chat -m anthropic:claude-sonnet-4-5
  spout conversations list
  spout -- chat         (the prompt "chat", not the command)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spout",
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", nargs="*", help="the prompt (joined with spaces)")
    add_model_options(parser)
    parser.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="print each chunk as it arrives (the default), or the whole answer at the end",
    )
    add_stats_option(parser)
    add_log_options(parser)
    parser.add_argument("--version", action="version", version=f"spout {_version()}")
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def _read_prompt(words: Sequence[str], stdin: TextIO | None) -> str:
    prompt = " ".join(words).strip()
    piped = ""
    if stdin is not None and not stdin.isatty():
        piped = stdin.read()
    if prompt and piped.strip():
        return f"{prompt}\n\n{piped}"
    return prompt or piped


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "chat":
        from ._chat import main as chat

        return chat(argv[1:])
    if argv and argv[0] == "serve":
        from ._serve import main as serve

        return serve(argv[1:])
    if argv and argv[0] == "conversations":
        from ._conversations import main as conversations

        return conversations(argv[1:])
    return _answer(_parser().parse_args(argv))


def _answer(args: argparse.Namespace) -> int:
    """One prompt, one answer on stdout; the exchange kept in the conversation."""
    try:
        prompt = _read_prompt(args.prompt, sys.stdin)
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"could not read stdin: {exc}")
    if not prompt.strip():
        return fail('no prompt: give one as an argument (spout "...") or on stdin', 2)

    from .. import SpoutError, StreamStats
    from ..session import SessionStream

    stdout = sys.stdout
    stream: SessionStream | None = None
    status = status_for()
    stats: StreamStats | None
    try:
        with open_session(args) as session:
            try:
                if args.stream:
                    stream = session.generate_stream(prompt)
                    chunks = iter(stream)  # held, so a Ctrl-C in write() is kept "interrupted"
                    for chunk in chunks:
                        stdout.write(chunk)
                        stdout.flush()  # a pipe is block-buffered: flush so each chunk shows now
                        status.update(stream.stats)
                    text = stream.text
                    stats = stream.response.stats or stream.stats
                    refusal = stream.response.refusal
                else:
                    response = session.generate(prompt)
                    text, stats, refusal = response.text, response.stats, response.refusal
                    stdout.write(text)
            except KeyboardInterrupt:
                # Keep what arrived, marked as stopped by the user, before the session closes
                # (which would mark a stream still open as merely "closed").
                if stream is not None:
                    stream.close("interrupted")
                raise
            finally:
                status.clear()  # before any message on stderr, the summary or an error
            # A refusal is not the answer: stdout holds only the text (none, usually), and the
            # refusal goes to stderr, marked.
            if not text.endswith("\n") and (text or refusal is None):
                stdout.write("\n")
            stdout.flush()
            if refusal is not None:
                print_refusal(refusal)
            if args.stats:
                print_summary(stats)
    except SpoutError as exc:
        if stream is not None and stream.text:
            stdout.write("\n")
            stdout.flush()
        return fail(str(exc))
    except CommandError as exc:
        return fail(str(exc), exc.status)
    except (ValueError, TypeError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        stdout.write("\n")
        return 130
    except BrokenPipeError:
        # The reader went away (spout ... | head): stop quietly, as Unix tools do. The session
        # has kept what arrived, marked "closed".
        silence_stdout()
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
