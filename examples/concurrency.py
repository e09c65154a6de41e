"""Concurrency: three async streams gathered at once, and one live stream read by several
consumers (``tee`` and ``subscribe``), with live stats.

A loopback server here speaks OpenAI's streaming format, answering each question in ten
chunks 50 ms apart; three streams at once take the time of one.

Run it with ``python examples/concurrency.py`` (no key, no network).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import spout
from spout import create_llm

ANSWERS = {
    "rivers": "Rivers carry water from the hills down to the sea, carving valleys as they go.",
    "stars": "Stars are huge balls of hot gas that shine by fusing hydrogen into helium.",
    "forests": "Forests cover a third of the land and hold most of its plant and animal life.",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        question = body["messages"][-1]["content"].lower()
        answer = next((a for key, a in ANSWERS.items() if key in question), "I do not know.")
        words = answer.split(" ")
        pieces = [" ".join(words[i : i + 2]) + " " for i in range(0, len(words), 2)]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for index, piece in enumerate([*pieces, None]):
                delta = (
                    {"content": piece.rstrip() if index == len(pieces) - 1 else piece}
                    if piece is not None
                    else {}
                )
                chunk = {
                    "id": "demo",
                    "object": "chat.completion.chunk",
                    "model": "demo",
                    "choices": [
                        {
                            "index": 0,
                            "delta": delta,
                            "finish_reason": None if piece is not None else "stop",
                        }
                    ],
                }
                data = b"data: " + json.dumps(chunk).encode() + b"\n\n"
                time.sleep(0.05)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            done = b"data: [DONE]\n\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


@contextmanager
def paced_server() -> Iterator[str]:
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


async def gathered(llm: spout.LLM) -> None:
    print("-- three streams at once")

    async def ask(topic: str) -> tuple[str, spout.Response]:
        stream = llm.agenerate_stream(f"Tell me about {topic}.")
        text = "".join([chunk async for chunk in stream])
        return text, await stream.get_response()

    started = time.monotonic()
    results = await asyncio.gather(*(ask(topic) for topic in ANSWERS))
    took = time.monotonic() - started
    for topic, (text, response) in zip(ANSWERS, results, strict=True):
        assert response.stats is not None
        print(
            f"{topic}: {text!r} ({response.stats.chunks} chunks, "
            f"first token after {response.stats.time_to_first_token:.2f} s)"
        )
    one = max(r.stats.elapsed for _, r in results if r.stats)
    print(f"all three in {took:.2f} s (the slowest of them took {one:.2f} s)")


async def tee(llm: spout.LLM) -> None:
    print("-- one stream, three readers")
    stream = llm.agenerate_stream("Tell me about rivers.")
    display, counter = stream.tee(2)
    log = stream.subscribe(max_lag=100)  # one more reader; at most 100 events behind

    async def show() -> str:
        out = []
        async for chunk in display:
            out.append(chunk)
            stats = stream.stats
            print(f"   {chunk!r:20} {stats.chunks:2} chunks, {stats.elapsed:.2f} s")
        return "".join(out)

    async def count() -> int:
        return sum([len(chunk.split()) async for chunk in counter])

    async def events() -> list[str]:
        await asyncio.sleep(0.2)  # a slow starter still gets every event from the first
        return [type(event).__name__ async for event in log.events()]

    text, words, kinds = await asyncio.gather(show(), count(), events())
    print(f"display: {text!r}")
    print(f"counter: {words} words")
    print(f"log: {kinds[0]}, {kinds.count('TextDelta')} TextDelta, {kinds[-1]}")
    response = await stream.get_response()
    assert response.stats is not None
    print(f"stats: {response.stats.summary()}")


async def main() -> None:
    with paced_server() as base_url:
        async with create_llm("openai", model="demo", base_url=base_url, api_key="sk") as llm:
            await gathered(llm)
            await tee(llm)


if __name__ == "__main__":
    asyncio.run(main())
