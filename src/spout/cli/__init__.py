"""The ``spout`` command: stream an answer to stdout as it is generated, and log the exchange."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO, TextIO

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
from ._tools import CallDisplay, add_tool_options, close_servers, load_tools, same_terminal

if TYPE_CHECKING:
    from .. import File

__all__ = ["main"]

#: A first argument naming one of these runs it; ``spout -- chat`` sends "chat" as a prompt.
SUBCOMMANDS = ("chat", "conversations", "serve")

_DESCRIPTION = """\
Stream an answer from a model to stdout, chunk by chunk as it is generated.
With no -m, the bundled local model answers (no key, no network).
Text piped to stdin is appended to the prompt: echo text | spout, or spout "summarize:" < file.
-a attaches a file (an image, a PDF, audio) to the prompt; -a - reads it from stdin.
--tool-file gives the model the functions of a Python file as tools, --mcp an MCP server's;
the calls show on stderr.
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
  spout -m openai:gpt-4o-mini -a photo.png "What is in this picture?"
  curl -s https://example.com/chart.png | spout -m openai:gpt-4o -a - "Describe the chart"
  git diff | spout -s "You review code." "Review this diff:"
  spout -m openai:gpt-4o-mini --tool-file tools.py "What is the weather in Oslo?"
  spout -m openai:gpt-4o-mini --tool-file tools.py --tools-approve --chain-limit 3 "..."
  spout -m openai:gpt-4o-mini --mcp "uvx mcp-server-time" "What time is it in Tokyo?"
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
    parser.add_argument(
        "-a",
        "--attach",
        action="append",
        default=[],
        metavar="FILE",
        help="attach a file to the prompt: a path, an http(s) URL, or - for stdin (its type "
        "found from its bytes); repeatable",
    )
    add_model_options(parser)
    parser.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="print each chunk as it arrives (the default), or the whole answer at the end",
    )
    add_tool_options(parser)
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


def _read_attachments(paths: Sequence[str], stdin: BinaryIO | None) -> list[File]:
    """The files ``-a`` names, read now (before anything is sent); ``-`` is stdin's bytes."""
    from .. import File

    if list(paths).count("-") > 1:
        raise CommandError("-a - reads stdin, which can be read once: give it once", 2)
    files = []
    for path in paths:
        if path == "-":
            if stdin is None:
                raise CommandError("-a -: there is no stdin to read", 2)
            data = stdin.read()
            if not data:
                raise CommandError("-a -: stdin is empty, there is no file to attach", 2)
            files.append(File(data=data))  # its type from its bytes (File's too-large error)
        else:
            files.append(File.coerce(path))
    return files


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
    from .. import ConfigurationError

    reads_file = "-" in args.attach  # stdin is the file, not more of the prompt
    try:
        # stdin's bytes only when -a - asks for them (a stdin replaced by text has none).
        stdin = getattr(sys.stdin, "buffer", None) if reads_file else None
        files = _read_attachments(args.attach, stdin)
        prompt = _read_prompt(args.prompt, None if reads_file else sys.stdin)
        tools = load_tools(args)
    except (ConfigurationError, CommandError) as exc:
        return fail(str(exc), 2)
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"could not read stdin: {exc}")
    if not prompt.strip() and not files:
        return fail('no prompt: give one as an argument (spout "...") or on stdin', 2)

    from .. import SpoutError, StreamStats
    from ..session import SessionStream

    stdout = sys.stdout
    stream: SessionStream | None = None
    status = status_for()

    shown = 0  # how much of the text the lines on stderr came after

    def before_call() -> None:
        nonlocal shown
        status.clear()
        stdout.flush()
        # On one terminal, a call's line must not run on from the text the model wrote
        # before it ("Let me check.→ ..."); a pipe's text is left as the model wrote it.
        text = stream.text if stream is not None else ""
        new = len(text) > shown and not text.endswith("\n")
        if new and args.stream and same_terminal(stdout):
            sys.stderr.write("\n")
        shown = len(text)

    calls = CallDisplay(ask=args.tools_approve, before=before_call)
    stats: StreamStats | None
    try:
        with open_session(args) as session:
            try:
                asked = prompt if prompt.strip() else None  # files alone are a prompt too
                if tools:
                    # The tool loop, streamed: text to stdout (at the end with --no-stream),
                    # each call on stderr as it runs.
                    stream = session.generate_stream_with_tools(
                        asked,
                        files=files,
                        tools=tools,
                        max_rounds=args.chain_limit,
                        approve=calls,
                    )
                    for item in iter(stream):
                        if isinstance(item, str):
                            if args.stream:
                                stdout.write(item)
                                stdout.flush()
                        else:
                            before_call()
                            calls.ran(item)
                        status.update(stream.stats)
                    text = stream.text
                    if not args.stream:
                        stdout.write(text)
                    stats = stream.response.stats or stream.stats
                    refusal = stream.response.refusal
                elif args.stream:
                    stream = session.generate_stream(asked, files=files)
                    chunks = iter(stream)  # held, so a Ctrl-C in write() is kept "interrupted"
                    for chunk in chunks:
                        stdout.write(chunk)
                        stdout.flush()  # a pipe is block-buffered: flush so each chunk shows now
                        status.update(stream.stats)
                    text = stream.text
                    stats = stream.response.stats or stream.stats
                    refusal = stream.response.refusal
                else:
                    response = session.generate(asked, files=files)
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
    finally:
        close_servers(tools)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
