"""Two ``spout serve`` replicas sharing one Redis act as one gateway.

Starts ``redis-server`` (the Debian package; nothing kept on disk) and two replicas,
``spout serve --redis URL`` A and B, serving the bundled model on loopback. Then:
1. starts a stream on A, cuts it after five events, and resumes it on B with
   ``Last-Event-ID``: nothing missing, nothing repeated, the model ran once;
2. reads that stream again from the start on both replicas: the same bytes;
3. starts a stream on B and cancels it with ``DELETE /v1/streams/{id}`` sent to A: B stops
   the model at once and its reader gets the cancellation.

Run: python examples/gateway_replicas.py   (needs spout[redis,local] and redis-server)
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import httpx

QUESTION = [{"role": "user", "content": "Name three rivers in Europe."}]


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("this example needs redis-server: apt-get install redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe,
                ):
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


@contextlib.contextmanager
def replica(redis_url: str) -> Iterator[str]:
    """``spout serve --redis`` on a free port; its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "spout", "serve", "--port", "0", "--redis", redis_url,
         "--resume-window", "5"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        for line in process.stderr:
            found = re.search(r"spout serve: (http://\S+)", line)
            if found:
                # keep reading its log, so that the pipe never fills up
                threading.Thread(target=process.stderr.read, daemon=True).start()
                yield found.group(1)
                break
        else:
            raise SystemExit("spout serve did not start")
    finally:
        process.terminate()
        process.wait(15)


def events(lines: Iterator[str]) -> Iterator[tuple[int, str]]:
    """(id, data) of each SSE event."""
    number = 0
    for line in lines:
        if line.startswith("id: "):
            number = int(line[4:])
        elif line.startswith("data: "):
            yield number, line[6:]


def text(received: list[tuple[int, str]]) -> str:
    out = []
    for _, data in received:
        if data.startswith("{"):
            for choice in json.loads(data).get("choices", []):
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


def main() -> None:
    with redis_server() as redis_url, replica(redis_url) as a, replica(redis_url) as b:
        print(f"redis-server on {redis_url}")
        print(f"replica A on {a}, replica B on {b}")
        body = {"model": "local", "messages": QUESTION, "stream": True, "max_tokens": 60,
                "temperature": 0}  # fmt: skip
        with httpx.Client(timeout=60) as http:
            print("\n-- a stream started on A, cut after 5 events, resumed on B")
            with http.stream("POST", a + "/v1/chat/completions", json=body) as response:
                stream_id = response.headers["x-spout-stream-id"]
                before = []
                for event in events(response.iter_lines()):
                    before.append(event)
                    if event[0] == 5:
                        break  # the connection to A is closed here, mid-answer
            print(f"read on A, events 1-5: {text(before)!r}")
            with http.stream(
                "GET", f"{b}/v1/streams/{stream_id}", headers={"Last-Event-ID": "5"}
            ) as response:
                after = list(events(response.iter_lines()))
            print(f"resumed on B from event {after[0][0]}: {text(after)!r}")
            numbers = [number for number, _ in before + after]
            print(f"whole answer: {text(before + after)!r}")
            print(f"events 1-{numbers[-1]}, none missing or repeated: "
                  f"{numbers == list(range(1, len(numbers) + 1))}")  # fmt: skip

            print("\n-- the same stream from the start, on both replicas")
            on_a = http.get(f"{a}/v1/streams/{stream_id}?after=0").content
            on_b = http.get(f"{b}/v1/streams/{stream_id}?after=0").content
            print(f"A and B sent the same bytes: {on_a == on_b} ({len(on_a)} bytes)")

            print("\n-- a stream started on B, cancelled through A")
            long_body = {**body, "max_tokens": 400}
            with http.stream("POST", b + "/v1/chat/completions", json=long_body) as response:
                stream_id = response.headers["x-spout-stream-id"]
                received = events(response.iter_lines())
                for number, _ in received:
                    if number == 3:
                        break
                cancelled = http.delete(f"{a}/v1/streams/{stream_id}").json()
                print(f"DELETE on A: cancelled={cancelled['cancelled']}")
                rest = list(received)
            print(f"the reader on B got, last: {rest[-1][1]}")


if __name__ == "__main__":
    main()
