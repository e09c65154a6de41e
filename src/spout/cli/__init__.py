"""The ``spout`` command: stream an answer to stdout as it is generated."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["main"]

_DESCRIPTION = """\
Stream an answer from a model to stdout, chunk by chunk as it is generated.
With no -m, the bundled local model answers (no key, no network).
Text piped to stdin is appended to the prompt: echo text | spout, or spout "summarize:" < file.
"""

_EXAMPLES = """\
examples:
  spout "Write a haiku about rivers."
  spout -m openai:gpt-4o-mini "Count from 1 to 5"
  spout -m openai:any --base-url http://127.0.0.1:8080/v1 "Hello"
  git diff | spout -s "You review code." "Review this diff:"
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
        "-m", "--model", help="provider:model, e.g. openai:gpt-4o-mini (default: local)"
    )
    parser.add_argument("--base-url", help="the provider's base URL (a proxy or local server)")
    parser.add_argument("-s", "--system", help="a system prompt")
    parser.add_argument(
        "--no-stream", action="store_true", help="print the whole answer at the end"
    )
    parser.add_argument("--max-tokens", type=int, help="the most tokens to generate")
    parser.add_argument("--temperature", type=float, help="sampling temperature")
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
    args = _parser().parse_args(argv)
    stdout, stderr = sys.stdout, sys.stderr

    def fail(message: str, status: int = 1) -> int:
        # One line, always: a server's error body (an HTML 502 page, a stack trace) may span many.
        print(f"spout: error: {' '.join(message.split())}", file=stderr)
        return status

    try:
        prompt = _read_prompt(args.prompt, sys.stdin)
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"could not read stdin: {exc}")
    if not prompt.strip():
        return fail('no prompt: give one as an argument (spout "...") or on stdin', 2)

    from .._errors import SpoutError
    from .._llm import create_llm, parse_model_string

    provider, model = parse_model_string(args.model or "local")
    config: dict[str, Any] = {}
    if args.base_url:
        config["base_url"] = args.base_url
    params: dict[str, Any] = {}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature

    stream = None
    try:
        llm = create_llm(provider, model=model, **config)
        if args.no_stream:
            text = llm.generate(prompt, system_prompt=args.system, **params).text
            stdout.write(text)
        else:
            stream = llm.generate_stream(prompt, system_prompt=args.system, **params)
            text = ""
            for text in stream:
                stdout.write(text)
                stdout.flush()  # a pipe is block-buffered: flush so each chunk shows now
            text = stream.text
        if not text.endswith("\n"):
            stdout.write("\n")
        stdout.flush()
    except SpoutError as exc:
        if stream is not None and stream.text:
            stdout.write("\n")
            stdout.flush()
        return fail(str(exc))
    except (ValueError, TypeError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        if stream is not None:
            stream.close()
        stdout.write("\n")
        return 130
    except BrokenPipeError:
        # The reader went away (spout ... | head): stop quietly, as Unix tools do.
        if stream is not None:
            stream.close()
        _silence_stdout()
        return 0
    return 0


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
