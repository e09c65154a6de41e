"""``spout serve --workers 2``: two processes on one port act as one gateway.

Starts ``spout serve --workers 2`` serving the bundled model on loopback (each worker loads
its own copy; no Redis, no other server). Each connection lands on one worker, and
``/healthz`` says which, so a client can hold a connection to each. Then:
1. starts a stream on worker 0, cuts it after five events, and resumes it on worker 1 with
   ``Last-Event-ID``: nothing missing, nothing repeated, the model ran once;
2. starts a stream on worker 1 and cancels it with ``DELETE /v1/streams/{id}`` sent to
   worker 0: worker 1 stops the model and its reader gets the cancellation.

Run: python examples/gateway_workers.py   (needs spout[gateway,local])
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx

QUESTION = [{"role": "user", "content": "Name three rivers in Europe."}]


@contextlib.contextmanager
def gateway() -> Iterator[str]:
    """``spout serve --workers 2`` on a free port; its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "spout", "serve", "--port", "0", "--workers", "2",
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
        process.wait(30)


def on_worker(url: str, index: int) -> httpx.Client:
    """A client whose (kept-alive) connection landed on worker ``index``."""
    for _ in range(200):
        client = httpx.Client(timeout=120)
        if client.get(url + "/healthz").json()["worker"]["index"] == index:
            return client
        client.close()  # the kernel gave this connection to the other worker: again
    raise SystemExit(f"no connection landed on worker {index} in 200 tries")


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
    with gateway() as url:
        print(f"spout serve --workers 2 on {url}")
        zero, one = on_worker(url, 0), on_worker(url, 1)
        with contextlib.closing(zero), contextlib.closing(one):
            pids = {client.get(url + "/healthz").json()["worker"]["pid"] for client in (zero, one)}
            print(f"a connection on each worker: two processes: {len(pids) == 2}")
            body = {"model": "local", "messages": QUESTION, "stream": True, "max_tokens": 60,
                    "temperature": 0}  # fmt: skip

            print("\n-- a stream started on worker 0, cut after 5 events, resumed on worker 1")
            before = []
            with zero.stream("POST", url + "/v1/chat/completions", json=body) as response:
                stream_id = response.headers["x-spout-stream-id"]
                for event in events(response.iter_lines()):
                    before.append(event)
                    if event[0] == 5:
                        break  # this response is closed here, mid-answer
            print(f"read on worker 0, events 1-5: {text(before)!r}")
            with one.stream(
                "GET", f"{url}/v1/streams/{stream_id}", headers={"Last-Event-ID": "5"}
            ) as response:
                after = list(events(response.iter_lines()))
            print(f"resumed on worker 1 from event {after[0][0]}: {text(after)!r}")
            numbers = [number for number, _ in before + after]
            print(f"events 1-{numbers[-1]}, none missing or repeated: "
                  f"{numbers == list(range(1, len(numbers) + 1))}")  # fmt: skip

            print("\n-- a stream started on worker 1, cancelled through worker 0")
            long_body = {**body, "max_tokens": 400}
            with one.stream("POST", url + "/v1/chat/completions", json=long_body) as response:
                stream_id = response.headers["x-spout-stream-id"]
                received = events(response.iter_lines())
                for number, _ in received:
                    if number == 3:
                        break
                cancelled = zero.delete(f"{url}/v1/streams/{stream_id}").json()
                print(f"DELETE on worker 0: cancelled={cancelled['cancelled']}")
                rest = list(received)
            print(f"the reader on worker 1 got, last: {rest[-1][1]}")


if __name__ == "__main__":
    main()
