"""A real HTTP/1.1 server on loopback that attacks its client, for the tests of issue #24.

Where ``tests/fault_server.py`` plays a provider that fails, this one plays a provider that is
hostile: it answers every request with something a client must bound in time or in memory.

Guide
=====

Start it as a context manager (it listens on ``127.0.0.1``, a free port; its threads are named
``hostile-upstream-*``), and point a client at one of its routes::

    with HostileUpstream() as upstream:
        llm = create_llm("openai:gpt-4o-mini", api_key="sk-test",
                         base_url=upstream.base("long-line"))    # .../long-line/v1
        ...

``upstream.base(route)`` is ``f"{upstream.url}/{route}/v1"``: the first path segment picks the
route and the rest of the path is ignored, so any OpenAI-style path (``/chat/completions``,
``/responses``, ``/models``) under it gets the route's answer, whatever the method or body.
``upstream.url`` is the bare origin (``http://127.0.0.1:<port>``).

Routes (every stream is in OpenAI's chat-completions shape, ``text/event-stream``, chunked):

``redirect``
    ``307 Temporary Redirect`` to the same path on *another origin*: a second listening port,
    ``upstream.other_url``. Every request that arrives there is recorded in
    ``upstream.redirected`` (with its headers): a client that follows no redirect leaves it
    empty.
``long-line``
    A 200 whose body is ``data: {"choices": ... "content": "AAAA...`` that never ends: no line
    end, ever.
``gzip-bomb``
    ``Content-Encoding: gzip``; about 1.5 MB on the wire that inflate to 1 GiB of well-formed
    chat chunks (each event carries 4,000 ``B`` of content). It is made on the fly from one
    compressed block repeated (deflate's full flush makes blocks independent), then a proper
    gzip trailer, so a client that reads it all gets a valid stream and no error of its own.
``endless-arguments``
    One tool call (``id`` ``call_hostile``, function ``lookup``) whose ``arguments`` grow
    forever: ``{"q": "`` then 8 KiB pieces of ``a``, never closed.
``keep-alive``
    The response head, then only ``: ping`` comments, one every ``ping_every`` seconds (default
    0.05), forever: the connection is alive and no event ever comes.
``ok``
    A complete, short stream (text ``"hello"``, ``[DONE]``): to check the client works. A
    request whose JSON body does not say ``"stream": true`` gets a chat completion instead.
``ok-gzip``, ``ok-deflate``
    The same, compressed (``Content-Encoding: gzip``; ``deflate`` as a raw deflate stream,
    which some servers send in place of the zlib wrapping the standard asks for), written a
    few bytes at a time: an honest compressed answer must still arrive whole.

"Forever" means until the client leaves, the server stops, or ``max_bytes`` (default 2 GiB)
have been written on one response, whichever comes first; the body then ends properly
(chunked terminator), so a client that takes it all is not left waiting.

Reading what happened
---------------------
* ``upstream.requests``: every request on the main port, as :class:`Request` (``route``,
  ``method``, ``path``, ``headers`` with lower-cased names, ``body``).
* ``upstream.responses``: one :class:`Served` per finished response: ``route``, ``sent``
  (body bytes written, compressed where gzip), ``client_left`` (the client went away before
  the body ended), ``ended_at`` (``time.monotonic()``).
* ``upstream.wait_for_response(route, timeout)``: the first finished response of a route (or
  None): a test that stopped reading sees the server notice and stop sending.

``with peak_rss_growth() as growth:`` measures the most the test's process grew meanwhile
(``growth[0]``, bytes), to bound what a client or an in-thread gateway held.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["ROUTES", "HostileUpstream", "Request", "Served", "peak_rss_growth", "rss_bytes"]

#: Every route the server knows, as the first path segment.
ROUTES = (
    "redirect",
    "long-line",
    "gzip-bomb",
    "endless-arguments",
    "keep-alive",
    "ok",
    "ok-gzip",
    "ok-deflate",
)

_GIB = 1 << 30


@dataclass
class Request:
    """One request as the server read it; ``headers`` has lower-cased names."""

    route: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Served:
    """One response the server finished writing (or gave up on when the client left)."""

    route: str
    sent: int
    client_left: bool
    ended_at: float


class _ClientGone(Exception):
    pass


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    import json

    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "hostile",
        "choices": [choice],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


# One deflate block of 256 chat chunks, compressed once per process: with a full flush after
# it, the same bytes can be sent any number of times and still inflate correctly.
_BOMB_EVENT = _event({"content": "B" * 4000})
_BOMB_BLOCK = _BOMB_EVENT * 256
_bomb_cache: list[bytes] = []


def _bomb_unit() -> bytes:
    if not _bomb_cache:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        unit = compressor.compress(_BOMB_BLOCK) + compressor.flush(zlib.Z_FULL_FLUSH)
        _bomb_cache.append(unit)
    return _bomb_cache[0]


class HostileUpstream:
    """The server; see the module's guide. ``max_bytes`` bounds one response's body."""

    def __init__(self, *, max_bytes: int = 2 * _GIB, ping_every: float = 0.05) -> None:
        self.max_bytes = max_bytes
        self.ping_every = ping_every
        self.requests: list[Request] = []
        self.redirected: list[Request] = []
        self.responses: list[Served] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = self._listen()
        self._other = self._listen()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.other_url = f"http://127.0.0.1:{self._other.getsockname()[1]}"

    def base(self, route: str) -> str:
        """The OpenAI-style ``base_url`` of a route (``.../<route>/v1``)."""
        if route not in ROUTES:
            raise ValueError(f"no route {route!r} on the hostile upstream; routes: {ROUTES}")
        return f"{self.url}/{route}/v1"

    def wait_for_response(self, route: str, timeout: float = 5.0) -> Served | None:
        """The first finished response of ``route``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for served in self.responses:
                    if served.route == route:
                        return served
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    # -- life ----------------------------------------------------------------------------------

    @staticmethod
    def _listen() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.settimeout(0.1)
        return sock

    def start(self) -> HostileUpstream:
        for listener, other in ((self._listener, False), (self._other, True)):
            thread = threading.Thread(
                target=self._accept_loop,
                args=(listener, other),
                name="hostile-upstream-accept",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop: every open connection is closed (a stuck client then sees it end)."""
        self._stopping.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(10)
        self._listener.close()
        self._other.close()

    def __enter__(self) -> HostileUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self, listener: socket.socket, other: bool) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(sock, other), name="hostile-upstream-conn", daemon=True
            )
            with self._lock:
                self._sockets.add(sock)
                self._threads.append(thread)
            thread.start()

    # -- one connection ------------------------------------------------------------------------

    def _serve(self, sock: socket.socket, other: bool) -> None:
        try:
            request = self._read_request(sock)
            if request is None:
                return
            if other:
                with self._lock:
                    self.redirected.append(request)
                self._send_head(sock, 404, {"Content-Length": "0"})
                return
            with self._lock:
                self.requests.append(request)
            sent, left = 0, False
            try:
                sent = self._answer(sock, request)
            except _ClientGone as gone:
                sent, left = gone.args[0], True
            if request.route in ROUTES and request.route != "redirect":
                with self._changed:
                    self.responses.append(Served(request.route, sent, left, time.monotonic()))
                    self._changed.notify_all()
        except (OSError, _ClientGone):
            pass
        finally:
            with self._lock:
                self._sockets.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def _read_request(self, sock: socket.socket) -> Request | None:
        sock.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                return None
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(body) < length:
            piece = sock.recv(65536)
            if not piece:
                return None
            body += piece
        route = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        return Request(route, method, path, headers, body)

    def _send_head(self, sock: socket.socket, status: int, headers: dict[str, str]) -> None:
        from http import HTTPStatus

        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("Connection: close")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _write(self, sock: socket.socket, data: bytes, sent: int) -> int:
        if self._stopping.is_set():
            raise _ClientGone(sent)
        try:
            sock.sendall(_chunk(data))
        except OSError:
            raise _ClientGone(sent) from None
        return sent + len(data)

    def _end(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(b"0\r\n\r\n")

    def _answer(self, sock: socket.socket, request: Request) -> int:
        route = request.route
        sock.settimeout(30)
        if route == "redirect":
            location = self.other_url + request.path
            self._send_head(sock, 307, {"Location": location, "Content-Length": "0"})
            return 0
        if route not in ROUTES:
            body = f"no route {route!r}; routes: {', '.join(ROUTES)}".encode()
            self._send_head(sock, 404, {"Content-Length": str(len(body))})
            sock.sendall(body)
            return 0
        headers = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}
        if route in ("gzip-bomb", "ok-gzip"):
            headers["Content-Encoding"] = "gzip"
        elif route == "ok-deflate":
            headers["Content-Encoding"] = "deflate"
        if route.startswith("ok"):
            return self._ok(sock, request, headers)
        self._send_head(sock, 200, headers)
        sent = 0
        if route == "long-line":
            sent = self._write(sock, b'data: {"choices": [{"index": 0, "delta": {"content": "', 0)
            piece = b"A" * 65536
            while sent < self.max_bytes:
                sent = self._write(sock, piece, sent)
        elif route == "gzip-bomb":
            sent = self._gzip_bomb(sock)
        elif route == "endless-arguments":
            call = {
                "index": 0,
                "id": "call_hostile",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "'},
            }
            sent = self._write(sock, _event({"role": "assistant", "tool_calls": [call]}), 0)
            piece = _event({"tool_calls": [{"index": 0, "function": {"arguments": "a" * 8192}}]})
            while sent < self.max_bytes:
                sent = self._write(sock, piece, sent)
        elif route == "keep-alive":
            while sent < self.max_bytes:
                sent = self._write(sock, b": ping\n\n", sent)
                if self._stopping.wait(self.ping_every):
                    raise _ClientGone(sent)
        self._end(sock)
        return sent

    def _ok(self, sock: socket.socket, request: Request, headers: dict[str, str]) -> int:
        import json

        streamed = False
        with contextlib.suppress(ValueError, AttributeError):
            streamed = json.loads(request.body).get("stream") is True
        if streamed:
            body = (
                _event({"role": "assistant", "content": "hel"})
                + _event({"content": "lo"})
                + _event({}, "stop")
                + b"data: [DONE]\n\n"
            )
        else:
            headers["Content-Type"] = "application/json"
            message = {"role": "assistant", "content": "hello"}
            answer = {
                "id": "chatcmpl-hostile",
                "object": "chat.completion",
                "created": 0,
                "model": "hostile",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
            body = json.dumps(answer).encode()
        if request.route != "ok":
            bits = 31 if request.route == "ok-gzip" else -15  # gzip, or raw deflate
            compressor = zlib.compressobj(6, zlib.DEFLATED, bits)
            body = compressor.compress(body) + compressor.flush()
        self._send_head(sock, 200, headers)
        sent = 0
        step = 7 if request.route != "ok" else len(body)
        for at in range(0, len(body), step):
            sent = self._write(sock, body[at : at + step], sent)
        self._end(sock)
        return sent

    def _gzip_bomb(self, sock: socket.socket) -> int:
        unit = _bomb_unit()
        # gzip's header: magic, deflate, no flags, no time, no extra flags, unknown OS.
        sent = self._write(sock, b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 0)
        crc, size = 0, 0
        while size < _GIB and sent < self.max_bytes:
            sent = self._write(sock, unit, sent)
            crc = zlib.crc32(_BOMB_BLOCK, crc)
            size += len(_BOMB_BLOCK)
        final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty last block
        trailer = crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")
        return self._write(sock, final + trailer, sent)


def rss_bytes() -> int:
    """This process's resident memory now (a gateway in a test runs in one of its threads)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """The most this process's memory grew meanwhile, sampled every 20 ms: ``[bytes]``."""
    start = rss_bytes()
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_bytes() - start)

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join(5)
