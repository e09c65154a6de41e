"""Retries, resume, timeouts and fallbacks, against a loopback server that fails on purpose.

The server here speaks OpenAI's streaming format and misbehaves in the ways real services do:
an overloaded answer (503 with ``Retry-After``), a connection dropped mid-answer, a stream that
sends only keep-alive comments. spout retries the first, resumes the second (``resume=True``),
times out the third (``Timeout(idle=...)``), and falls back to another model when one fails.

Run it with ``python examples/reliability.py`` (no key, no network).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import spout
from spout import Retry, Timeout, create_llm


def event(text: str, finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-demo",
        "object": "chat.completion.chunk",
        "model": "demo",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


# What the server does for each request, in order: (status, headers, body pieces, then drop?).
SCRIPT: list[tuple[int, dict[str, str], list[bytes], bool]] = [
    # 1. Overloaded: spout waits the Retry-After it is told, and asks again.
    (503, {"Retry-After": "0.2"}, [b'{"error": {"message": "overloaded"}}'], False),
    # 2. Half an answer, then the connection drops.
    (200, {}, [event("Rivers carve "), event("canyons over ")], True),
    # 3. The continuation spout asks for (it repeats a little; spout drops the repeat).
    (
        200,
        {},
        [event("canyons over millions of years."), event("", "stop"), b"data: [DONE]\n\n"],
        False,
    ),
    # 4. A stream that only ever says "still here".
    (200, {}, [event("Thinking"), *[b": keep-alive\n\n"] * 30], False),
    # 5. The primary model, down.
    (500, {}, [b'{"error": {"message": "internal error"}}'], False),
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if SCRIPT:
            status, headers, pieces, drop = SCRIPT.pop(0)
        else:
            status, headers, pieces, drop = (
                200,
                {},
                [event("The backup answers."), event("", "stop")],
                False,
            )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header(
            "Content-Type", "text/event-stream" if status == 200 else "application/json"
        )
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # Chunks name the model that was asked for, as a real server's do.
        pieces = [
            p.replace(b'"model": "demo"', f'"model": "{body["model"]}"'.encode()) for p in pieces
        ]
        try:
            for piece in pieces:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.05)
            if drop:
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


@contextmanager
def flaky_server() -> Iterator[str]:
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


def main() -> None:
    with flaky_server() as base_url:
        llm = create_llm(
            "openai",
            model="demo",
            base_url=base_url,
            api_key="sk-demo",
            resume=True,
            retry=Retry(max_retries=2, initial_delay=0.1),
        )

        print("-- a 503, then a connection dropped mid-answer:")
        stream = llm.generate_stream("How are canyons made?")
        for chunk in stream:
            print(chunk, end="", flush=True)
        response = stream.response
        print(f"\nretries: {response.retries}, resumed: {response.resumed}")

        print("-- a stream that sends only keep-alives:")
        try:
            # resume=False for this call: a stalled stream would otherwise be continued too.
            llm.generate_stream("Go on.", timeout=Timeout(idle=0.5), resume=False).response  # noqa: B018
        except spout.IdleTimeout as exc:
            kept = exc.partial.text if exc.partial else ""
            print(f"{type(exc).__name__}: {exc} (kept: {kept!r})")

        print("-- the primary fails, a fallback answers:")
        backup = create_llm("openai", model="backup", base_url=base_url, api_key="sk-demo")
        with create_llm(
            "openai",
            model="primary",
            base_url=base_url,
            api_key="sk-demo",
            max_retries=0,
            fallbacks=[backup],
        ) as primary:
            answer = primary.generate_stream("Hello?").response
            print(f"{answer.text} (answered by the model {answer.model!r})")
        llm.close()


if __name__ == "__main__":
    main()
