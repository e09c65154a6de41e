"""A real HTTP server on loopback that replays recorded bytes, cut where the test says."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

WIRE = Path(__file__).parent / "fixtures" / "wire"


@dataclass
class Reply:
    """What the server sends for one request: status, headers, and the body in chunks.

    Each chunk goes out as its own write (HTTP chunked encoding, Nagle off), ``delay`` seconds
    apart, so the client's reads see the cuts as far as the kernel allows.
    """

    chunks: list[bytes] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/event-stream"})
    delay: float = 0.0
    # Drop the connection after the chunks, without the chunked terminator.
    abort: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: when the request arrived (time.monotonic), to check how retries are spaced
    arrived: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


class ReplayServer:
    """Serves :class:`Reply` objects in order (the last one repeats) on 127.0.0.1."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Recorded] = []
        #: chunks sent before each connection was seen closed by the client
        self.disconnects: list[int] = []
        #: chunks sent so far on the latest response (the server runs ahead of a slow client)
        self.sent = 0
        self._disconnected = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(
                    Recorded(self.command, self.path, dict(self.headers.items()), body)
                )
                reply = server._next_reply()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                sent = server.sent = 0
                try:
                    for chunk in reply.chunks:
                        if reply.delay:
                            time.sleep(reply.delay)
                        if server._client_gone(self.connection):
                            server._record_disconnect(sent)
                            self.close_connection = True
                            return
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                        sent += 1
                        server.sent = sent
                    if reply.abort:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    server._record_disconnect(sent)
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                import sys

                error = sys.exc_info()[1]
                # A client may reset a kept-alive connection while the server waits on it.
                if not isinstance(error, (ConnectionResetError, BrokenPipeError)):
                    server.errors.append(error)

        #: exceptions the handler raised, other than clients going away
        self.errors: list[BaseException | None] = []
        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next_reply(self) -> Reply:
        if not self.replies:
            return Reply(status=500, chunks=[b"no reply scripted"])
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    @staticmethod
    def _client_gone(conn: socket.socket) -> bool:
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return False
        try:
            return conn.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _record_disconnect(self, sent: int) -> None:
        with self._disconnected:
            self.disconnects.append(sent)
            self._disconnected.notify_all()

    def wait_for_disconnect(self, timeout: float = 5.0) -> int | None:
        """Chunks sent before the client was seen gone, or None if it never went."""
        with self._disconnected:
            self._disconnected.wait_for(lambda: bool(self.disconnects), timeout)
        return self.disconnects[0] if self.disconnects else None


# -- cutting transcripts at hostile places -------------------------------------------------------


def transcript(provider: str, case: str) -> tuple[bytes, dict[str, Any]]:
    """A recorded body and the result a client must rebuild from it."""
    folder = WIRE / provider
    body_path = next(
        p for p in folder.glob(f"{case}.*") if p.suffix in (".sse", ".ndjson", ".eventstream")
    )
    expected = json.loads((folder / f"{case}.expected.json").read_text())
    return body_path.read_bytes(), expected


def cut_every_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def cut_mid_line(data: bytes) -> list[bytes]:
    """Each line cut in the middle, and each line end apart from its line."""
    chunks: list[bytes] = []
    for line in data.splitlines(keepends=True):
        body = line.rstrip(b"\r\n")
        half = len(body) // 2
        chunks += [body[:half], body[half:], line[len(body) :]]
    return [c for c in chunks if c]


def cut_between_cr_lf(data: bytes) -> list[bytes]:
    """Every line end rewritten as CRLF, and cut between its CR and its LF."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    chunks: list[bytes] = []
    for line in lines[:-1]:
        chunks += [line + b"\r", b"\n"]
    if lines[-1]:
        chunks.append(lines[-1])
    return chunks


def cut_inside_utf8(data: bytes) -> list[bytes]:
    """Cut inside every multi-byte UTF-8 character (and nowhere else)."""
    chunks: list[bytes] = []
    start = 0
    for i, byte in enumerate(data):
        if byte & 0xC0 == 0x80 and i > start:  # a continuation byte: cut before it
            chunks.append(data[start:i])
            start = i
    chunks.append(data[start:])
    return chunks


def cut_by_event(data: bytes) -> list[bytes]:
    """One chunk per event (per blank-line-terminated block)."""
    parts = data.replace(b"\r\n", b"\n").split(b"\n\n")
    return [part + b"\n\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


CUTS = {
    "whole": lambda data: [data],
    "every_byte": cut_every_byte,
    "mid_line": cut_mid_line,
    "cr_lf": cut_between_cr_lf,
    "utf8": cut_inside_utf8,
}
