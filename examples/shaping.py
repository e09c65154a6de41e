"""Shaping a stream: fewer, larger chunks for a UI (buffering), and steady word-by-word output
from a provider that sends whole sentences (smoothing).

A loopback server here speaks OpenAI's streaming format and sends its answer a sentence per
chunk, as some providers do. The same answer is then read as it comes, buffered, and smoothed;
the text is the same byte for byte every time: only the chunking changes.

Run it with ``python examples/shaping.py`` (no key, no network).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from spout import create_llm

ANSWER = [
    "Space is almost silent: sound needs air to travel. ",
    "A day on Venus is longer than its year. ",
    "Neutron stars can spin 600 times a second. ",
    "Footprints on the Moon will last for millions of years. ",
    "The Sun holds 99.8% of the Solar System's mass. 🌞\n",
]


class Handler(BaseHTTPRequestHandler):
    """Answers every chat completion with ANSWER, one sentence per chunk, 30 ms apart."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deltas: list[dict[str, Any]] = [{"content": sentence} for sentence in ANSWER]
        for index, delta in enumerate([*deltas, {}]):
            finish = "stop" if index == len(deltas) else None
            chunk = {
                "id": "demo",
                "object": "chat.completion.chunk",
                "model": "demo",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            data = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(0.03)
        done = b"data: [DONE]\n\n"
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))


@contextmanager
def sentence_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def show(title: str, chunks: list[str]) -> None:
    print(f"-- {title}: {len(chunks)} chunks")
    for chunk in chunks[:4]:
        print(f"   {chunk!r}")
    if len(chunks) > 4:
        print(f"   ... and {len(chunks) - 4} more")


def main() -> None:
    with (
        sentence_server() as base_url,
        create_llm("openai", model="demo", base_url=base_url, api_key="sk-demo") as llm,
    ):
        prompt = "List five facts about space."
        as_sent = list(llm.generate_stream(prompt))
        show("as the provider sends it", as_sent)

        # Fewer, larger updates: at least 2 provider chunks and 60 characters each.
        buffered = list(llm.generate_stream(prompt, buffer_size=2, min_chunk_size=60))
        show("buffer_size=2, min_chunk_size=60", buffered)

        # Gathered by time: what arrives within 70 ms goes out together, when the window
        # passes (a timer: text never waits for a chunk that is slow to come).
        windowed = list(llm.generate_stream(prompt, debounce=0.07))
        show("debounce=0.07", windowed)

        # Word by word, 5 ms apart: a steady typing effect from sentence-sized chunks.
        started = time.monotonic()
        words = []
        for chunk in llm.generate_stream(prompt, smooth="word", delay=0.005):
            words.append(chunk)
        show("smooth='word', delay=0.005", words)
        print(f"   (took {time.monotonic() - started:.2f} s)")

        # Any boundary: here, after each clause.
        clauses = list(llm.generate_stream(prompt, smooth=re.compile(r"[:,.]\s+")))
        show("smooth=re.compile(r'[:,.]\\s+')", clauses)

        same = {"".join(chunks) for chunks in (as_sent, buffered, windowed, words, clauses)}
        print(f"same text: {len(same) == 1}")


if __name__ == "__main__":
    main()
