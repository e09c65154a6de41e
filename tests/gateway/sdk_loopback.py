"""A real loopback HTTP server that answers each request with a Python function, for driving
the official SDKs against one protocol module without the rest of the gateway.

``serve(handle)`` starts a server on a free port whose every request is answered by
``handle(request)``: the request has ``.content`` (the body, bytes), the answer is an
``httpx2.Response`` (status, headers, body), written back on the socket. The SDK under test
reads it with its own HTTP client over a real connection. Servers and the SDK clients made
with ``http_client()`` are closed after each test (``tests/conftest.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2


@dataclass
class Received:
    method: str
    path: str
    content: bytes


_open: list[Any] = []


def serve(handle: Callable[[Received], httpx2.Response]) -> str:
    """A started server answering with ``handle``; its base URL (``http://127.0.0.1:PORT``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            response = handle(Received(self.command, self.path, body))
            content = response.content
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_POST = do_GET = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="sdk-loopback", daemon=True)
    thread.start()
    _open.append(server)
    return f"http://127.0.0.1:{server.server_address[1]}"


def http_client() -> httpx2.Client:
    """An HTTP client for an SDK, closed when the test ends."""
    client = httpx2.Client()
    _open.append(client)
    return client


def close_all() -> None:
    while _open:
        thing = _open.pop()
        if isinstance(thing, ThreadingHTTPServer):
            thing.shutdown()
            thing.server_close()
        else:
            thing.close()
