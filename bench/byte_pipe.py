"""The lowest floor for bench/gateway.py: bytes piped between two sockets, and nothing else.

No HTTP library, no task a chunk: an asyncio protocol (on uvloop) reads a request's head and
body, opens a connection to the upstream, writes the request on with ``Connection: close``,
and writes every piece the upstream sends back to the client from the upstream socket's own
callback, unread. The client sees the upstream's response as is (head, chunked body and
all). It parses no event, renames nothing, counts nothing, keeps nothing: what it costs a
token is one read, one write and the event loop's turn, the least any Python gateway pays.

Run: ``python bench/byte_pipe.py --upstream http://127.0.0.1:PORT [--workers N] [--port P]``
prints the port it listens on, then serves until killed. With ``--workers N`` it forks N
processes accepting on one listening socket (the parent is one of them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from typing import cast
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
_OPENING: set[asyncio.Task[None]] = set()


class _Upstream(asyncio.Protocol):
    """The upstream side of one request: its bytes go to the client as they come."""

    def __init__(self, client: asyncio.Transport, request: bytes) -> None:
        self.client = client
        self.request = request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        self.client.write(data)


class _Client(asyncio.Protocol):
    """A client connection: each request (head and Content-Length body) is piped upstream."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self._fail(b"431 Request Header Fields Too Large")
            return
        lines = self.buffer[:end].split(b"\r\n")
        headers = [line for line in lines[1:] if line]
        length = 0
        for line in headers:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        kept = [
            line
            for line in headers
            if line.partition(b":")[0].strip().lower() not in (b"host", b"connection")
        ]
        head = b"\r\n".join(
            [
                lines[0],
                b"Host: %s:%d" % (self.host.encode(), self.port),
                b"Connection: close",
                *kept,
            ]
        )
        request = head + b"\r\n\r\n" + body
        assert self.transport is not None
        client = self.transport
        task = asyncio.get_running_loop().create_task(self._open(client, request))
        _OPENING.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(_OPENING.discard)

    async def _open(self, client: asyncio.Transport, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _Upstream(client, request), self.host, self.port)
        except OSError:
            self._fail(b"502 Bad Gateway")

    def _fail(self, status: bytes) -> None:
        if self.transport is not None:
            self.transport.write(b"HTTP/1.1 %s\r\ncontent-length: 0\r\n\r\n" % status)
            self.transport.close()


def serve(sock: socket.socket, host: str, port: int) -> None:
    """Serve on ``sock`` until SIGTERM."""
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    server = loop.run_until_complete(loop.create_server(lambda: _Client(host, port), sock=sock))
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    upstream = urlsplit(args.upstream)
    if upstream.scheme != "http" or not upstream.hostname or not upstream.port:
        parser.error(f"--upstream must be http://HOST:PORT, not {args.upstream!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(4096)
    children = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            serve(sock, upstream.hostname, upstream.port)
            os._exit(0)
        children.append(pid)
    print(sock.getsockname()[1], flush=True)
    try:
        serve(sock, upstream.hostname, upstream.port)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
