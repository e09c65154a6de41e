"""Callbacks and live stats: a progress indicator, early stopping, and custom processing.

Every generate call (and the session and the tool loop) takes ``on_start``, ``on_chunk``,
``on_event``, ``on_error`` and ``on_complete``; ``stream.stats`` is live while it streams.
This runs on the bundled local model: no key, no network.

Run it with ``python examples/callbacks.py``.
"""

from __future__ import annotations

import sys

import spout
from spout import Response, create_llm


def progress_indicator(llm: spout.LLM) -> None:
    """A status line on stderr while the answer streams to stdout."""
    print("-- a progress indicator")

    def started() -> None:
        print("[thinking...]", file=sys.stderr, flush=True)

    def finished(response: Response) -> None:
        assert response.stats is not None
        print(f"\ndone: {response.stats.summary()}")

    stream = llm.generate_stream(
        "Write a haiku about the sea.", max_tokens=24, on_start=started, on_complete=finished
    )
    for chunk in stream:
        print(chunk, end="", flush=True)
        stats = stream.stats  # live: nothing is read to compute it
        print(
            f"\r[{stats.output_tokens} tokens, {stats.elapsed:.1f} s]",
            end="",
            file=sys.stderr,
            flush=True,
        )
    print(file=sys.stderr)


def early_stopping(llm: spout.LLM) -> None:
    """Stop as soon as the answer has said enough: the model stops within a token."""
    print("-- early stopping after 8 words")
    completed: list[Response] = []
    stream = llm.generate_stream(
        "Tell me a long story about a dragon.",
        max_tokens=40,
        smooth="word",
        on_complete=completed.append,
    )
    words = 0
    for chunk in stream:
        print(chunk, end="", flush=True)
        words += 1
        if words == 8:
            break
    response = stream.response  # as far as it got
    print(
        f"\nstopped: {stream.closed}, words: {words}, finish reason: {response.finish_reason}, "
        f"on_complete called: {bool(completed)}"
    )


class WordCounter:
    """Custom processing in callbacks: counts words and events."""

    def __init__(self) -> None:
        self.words = 0
        self.events: dict[str, int] = {}

    def on_chunk(self, text: str) -> None:
        self.words += len(text.split())

    def on_event(self, event: spout.Event) -> None:
        name = type(event).__name__
        self.events[name] = self.events.get(name, 0) + 1


def custom_processing(llm: spout.LLM) -> None:
    print("-- custom callback processing")
    counter = WordCounter()
    stream = llm.generate_stream(
        "Explain neural networks briefly.",
        max_tokens=30,
        on_chunk=counter.on_chunk,
        on_event=counter.on_event,
    )
    response = stream.response  # reads it all: the callbacks run as it is read
    print(f"counted {counter.words} words; events: {counter.events}")
    assert response.stats is not None
    print(
        f"stats: {response.stats.chunks} chunks, {response.stats.output_tokens} tokens "
        f"({response.stats.output_tokens_source})"
    )


def failing_callback(llm: spout.LLM) -> None:
    print("-- a callback that raises")

    def fussy(text: str) -> None:
        if "e" in text:
            raise ValueError(f"no e allowed: {text!r}")

    try:
        for _ in llm.generate_stream("Say hello.", max_tokens=10, on_chunk=fussy):
            pass
    except spout.CallbackError as exc:
        print(
            f"CallbackError from {exc.callback}: {exc.__cause__!r}; "
            f"kept {len(exc.partial.text) if exc.partial else 0} characters"
        )


def main() -> None:
    with create_llm(temperature=0) as llm:
        progress_indicator(llm)
        early_stopping(llm)
        custom_processing(llm)
        failing_callback(llm)


if __name__ == "__main__":
    main()
