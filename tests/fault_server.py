"""A real HTTP/1.1 server on loopback that misbehaves on purpose, as scripted by a test.

Guide
=====

The ``faults`` fixture (``tests/conftest.py``) gives a started :class:`FaultServer`; it is
stopped, and its threads joined, when the test ends. Point a provider at ``faults.url``
(``f"{faults.url}/v1"`` for the OpenAI-style ``base_url``), script what the next requests get,
then read what the server saw.

Scripting replies
-----------------
``faults.script(reply, ...)`` queues replies; each request takes the next one (one reply may
be queued several times: ``faults.script(*[error_reply("openai", 503)] * 2, s.reply())``
is two 503s, then the stream, as retries would need). A request that
finds the queue empty gets a 500 and is recorded in ``faults.errors`` (the fixture fails the
test on it), so unexpected retries show up. ``faults.route(fn)`` instead picks each reply with
``fn(request)``, for concurrent requests whose order is not known (see the soak test).

A reply is a :class:`Reply` or a :class:`Hangup`:

* nothing listening: ``create_llm(..., base_url=faults.refused_url)`` (a port held bound but
  never listened on, so connecting is refused);
* ``Hangup()``: read the request, then close without answering; ``Hangup(on_accept=True)``
  closes a new connection before reading anything (it applies to the next *connection*, so
  make sure the client opens one: a pooled connection skips it); ``reset=True`` sends a TCP
  RST instead of a FIN;
* an HTTP error in a provider's shape: ``error_reply("anthropic", 529, request_id="req_1")``,
  ``error_reply("openai", 429, retry_after=2)`` or ``retry_after_ms=1500``; the bodies alone
  come from :func:`error_body` and the ``*_error_body`` functions;
* a 200 stream: build a provider's events from text pieces, then pick what to send::

      s = provider_stream("anthropic", ["Grüß", " dich"])   # or anthropic_stream([...])
      s.reply()                                  # complete, terminator and all
      s.reply(s.upto(1), end="drop")             # 1 text event, then the connection drops
      s.reply(s.upto(1), end="reset")            # ... dropped with a RST (see below)
      s.reply(s.upto(2))                         # no terminator, but a proper chunked end
      s.reply([*s.upto(1), s.error()])           # in-stream error after 1 text event
      s.reply([*s.upto(0), s.error()])           # in-stream error as the first event
      s.reply([*s.upto(1), s.malformed(), *s.after(1)])   # a malformed JSON event
      s.reply([*s.upto(1), s.invalid_utf8()])    # a text event holding invalid UTF-8
      s.reply([*s.upto(1), s.truncated(1)])      # the next event cut in half, then the end
      s.reply([Stall(0.3, ping=s.ping, every=0.05), *s.complete()])  # stall before any event
      s.reply([*s.upto(1), Stall(0.3), *s.after(1)])                # stall without pings
      s.reply(delay=0.01)                        # every write 10 ms apart
      s.reply(cut=3)                             # every event written 3 bytes at a time

  ``head`` (the events before the text: message_start and the like), ``texts`` (one event
  per piece) and ``tail`` (the events that end the stream) are plain lists of bytes to
  recombine at will; ``s.payload(event)`` is the JSON bytes a decoder sees in an event (what
  ``ProtocolError.data`` should hold). ``s.error(...)`` takes the provider's own fields
  (see :func:`openai_stream_error`, :func:`openrouter_stream_error`,
  :func:`anthropic_stream_error`, :func:`gemini_stream_error`, :func:`ollama_stream_error`,
  :func:`tgi_stream_error`, :func:`responses_stream_error`). A body item is either bytes
  (an *event*: written whole, or ``cut`` bytes at a time) or a :class:`Stall`.

  To see that the client closes the connection after an error it read, put a long
  ``Stall(5, ping=s.ping)`` after the error event: the server then notices the client leave.

``Reply`` also takes ``status``, ``headers``, ``framing`` (``"chunked"``, the default;
``"length"``: a Content-Length, for error bodies; ``"close"``: the body ends when the
connection closes), ``head_delay`` (seconds before the status line, watching for the client
to go), ``content_length`` (to declare more than is sent) and ``keep_alive``.

Before a RST (``end="reset"``, ``Hangup(reset=True)``) the server waits (up to 1 s) until
the client's kernel acknowledged every byte written, since a RST discards unsent bytes: what
a test wrote has then reached the client, and only its reading side can lose it.

Reading what happened
---------------------
* ``faults.requests``: every request, in arrival order, as :class:`Request` (``method``,
  ``path``, ``headers`` with lower-cased names, ``body``, ``at`` = ``time.monotonic()`` when
  it had arrived, ``connection`` = which connection carried it, ``json()``);
  ``faults.wait_for_requests(n)`` waits for them. Retry spacing:
  ``[b.at - a.at for a, b in zip(reqs, reqs[1:])]``.
* ``faults.disconnects``: each time a client went away while a reply was still being sent
  (or stalled), as :class:`Disconnect` (``request``, ``events_sent``, ``pings_sent``, ``at``);
  ``faults.wait_for_disconnect(timeout)`` returns the first (or None). A client that leaves
  after the reply ended is not a disconnect: that is a pooled connection closing.
* ``faults.connections``: every accepted connection (``opened_at``, ``closed_at``,
  ``closed_by`` "client" or "server", ``requests``); ``faults.wait_idle(timeout)`` waits until
  the server holds no open connection (after the client closed its pool, that proves nothing
  leaked on the wire).
* Server threads are named ``fault-server-*`` so tests can leave them out of thread counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import select
import socket
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ANTHROPIC_PING",
    "PING",
    "Connection",
    "Disconnect",
    "FaultServer",
    "Hangup",
    "ProviderStream",
    "Reply",
    "Request",
    "Stall",
    "anthropic_error_body",
    "anthropic_stream",
    "anthropic_stream_error",
    "error_body",
    "error_reply",
    "gemini_error_body",
    "gemini_stream",
    "gemini_stream_error",
    "ollama_error_body",
    "ollama_stream",
    "ollama_stream_error",
    "openai_chat_stream",
    "openai_error_body",
    "openai_stream_error",
    "openrouter_error_body",
    "openrouter_stream",
    "openrouter_stream_error",
    "provider_stream",
    "request_id_header",
    "responses_stream",
    "responses_stream_error",
    "tgi_error_body",
    "tgi_stream",
    "tgi_stream_error",
]

#: An SSE comment, as many servers send to keep a quiet connection open.
PING = b": ping\n\n"
#: Anthropic's keep-alive event (https://docs.anthropic.com/en/docs/build-with-claude/streaming).
ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'

End = Literal["complete", "drop", "reset"]
Framing = Literal["chunked", "length", "close"]


# -- what the server sends ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stall:
    """Send no event for ``seconds``; a ``ping`` (if given) goes out every ``every`` seconds.

    The server watches the socket meanwhile, so a client that leaves is seen at once.
    """

    seconds: float
    ping: bytes | None = None
    every: float = 0.1


@dataclass
class Reply:
    """One scripted response: a status, headers, a body of events and stalls, and an end.

    ``end``: ``"complete"`` ends the body properly (the chunked terminator, or the declared
    length); ``"drop"`` closes the connection (FIN) without it; ``"reset"`` closes with a RST.
    ``delay`` is slept before every write; ``cut`` writes each event ``cut`` bytes at a time.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Sequence[bytes | Stall] = ()
    end: End = "complete"
    framing: Framing = "chunked"
    delay: float = 0.0
    cut: int | None = None
    head_delay: float = 0.0
    content_length: int | None = None
    keep_alive: bool = True


@dataclass(frozen=True)
class Hangup:
    """Close the connection without answering: after reading the request, or on accept."""

    on_accept: bool = False
    reset: bool = False


@dataclass
class Request:
    """A request as the server received it; ``headers`` has lower-cased names."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    connection: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Disconnect:
    """A client that went away while its reply was still being sent or stalled."""

    request: int
    events_sent: int
    pings_sent: int
    at: float


@dataclass
class Connection:
    index: int
    opened_at: float
    closed_at: float | None = None
    closed_by: Literal["client", "server"] | None = None
    requests: list[int] = field(default_factory=list)


class _ClientGone(Exception):
    pass


class _Stopping(Exception):
    pass


class FaultServer:
    """Serves scripted :class:`Reply` and :class:`Hangup` objects on 127.0.0.1."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # Bound but never listening: connecting to it is refused, and nothing else can take
        # the port while the server lives.
        self._refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._refuser.bind(("127.0.0.1", 0))
        self.refused_url = f"http://127.0.0.1:{self._refuser.getsockname()[1]}"

        self.requests: list[Request] = []
        self.disconnects: list[Disconnect] = []
        self.connections: list[Connection] = []
        #: Problems on the server's side: unscripted requests, handler exceptions.
        self.errors: list[str] = []

        self._queue: deque[Reply | Hangup] = deque()
        self._router: Callable[[Request], Reply | Hangup] | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()  # wakes the accept loop
        self._sockets: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(
            target=self._accept_loop, name="fault-server-accept", daemon=True
        )

    # -- scripting -----------------------------------------------------------------------------

    def script(self, *replies: Reply | Hangup) -> None:
        """Queue replies: each request (or, for ``Hangup(on_accept=True)``, connection)
        takes the next one."""
        with self._lock:
            self._queue.extend(replies)

    def route(self, choose: Callable[[Request], Reply | Hangup] | None) -> None:
        """Pick each reply with ``choose(request)`` instead of the queue (None: the queue)."""
        self._router = choose

    # -- reading what happened -----------------------------------------------------------------

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Request]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def wait_for_disconnect(self, timeout: float = 2.0, count: int = 1) -> Disconnect | None:
        """The first disconnect once ``count`` were seen, or None if they were not in time."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.disconnects) >= count, timeout)
            return self.disconnects[0] if len(self.disconnects) >= count else None

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self.connections if c.closed_at is None)

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Whether every connection got closed within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(
                lambda: all(c.closed_at is not None for c in self.connections), timeout
            )

    # -- lifetime ------------------------------------------------------------------------------

    def start(self) -> FaultServer:
        self._accepter.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection (stalls end at once) and join every thread."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake_writer.send(b"x")
        if self._accepter.ident is not None:  # it was started
            self._accepter.join(5)
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()
        with self._lock:
            for sock in self._sockets.values():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
            if thread.is_alive():
                self.errors.append(f"{thread.name} did not stop")
        self._refuser.close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the server ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._listener, self._wake_reader], [], [])
            if self._stopping.is_set():
                return
            if self._listener not in readable:
                continue
            try:
                sock, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                index = len(self.connections)
                record = Connection(index, time.monotonic())
                self.connections.append(record)
                hangup = None
                if self._queue and isinstance(self._queue[0], Hangup) and self._queue[0].on_accept:
                    hangup = self._queue.popleft()
                self._sockets[index] = sock
                thread = threading.Thread(
                    target=self._serve_connection,
                    args=(sock, record, hangup),
                    name=f"fault-server-conn-{index}",
                    daemon=True,
                )
                self._threads.append(thread)
            thread.start()

    def _serve_connection(
        self, sock: socket.socket, record: Connection, hangup: Hangup | None
    ) -> None:
        closed_by: Literal["client", "server"] = "server"
        reset = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hangup is not None:
                reset = hangup.reset
                return
            buffer = bytearray()
            while not self._stopping.is_set():
                request = self._read_request(sock, buffer, record)
                if request is None:
                    closed_by = "client"
                    return
                reply = self._choose(request)
                if isinstance(reply, Hangup):
                    reset = reply.reset
                    return
                try:
                    keep = self._send(sock, request, reply)
                except _ClientGone:
                    closed_by = "client"
                    return
                if not keep:
                    reset = reply.end == "reset"
                    return
        except _Stopping:
            pass
        except (ConnectionResetError, BrokenPipeError):
            closed_by = "client"
        except Exception as exc:  # reported to the test, not swallowed
            if not self._stopping.is_set():
                self.errors.append(f"connection {record.index}: {type(exc).__name__}: {exc}")
        finally:
            self._close(sock, record, closed_by, reset)

    def _close(
        self,
        sock: socket.socket,
        record: Connection,
        closed_by: Literal["client", "server"],
        reset: bool,
    ) -> None:
        with self._lock:
            self._sockets.pop(record.index, None)
        with contextlib.suppress(OSError):
            if reset:
                # A RST discards what the kernel has not sent yet: let it all go out first,
                # so that a reset loses nothing the test wrote.
                self._drain(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        with self._changed:
            record.closed_at = time.monotonic()
            record.closed_by = closed_by
            self._changed.notify_all()

    def _drain(self, sock: socket.socket, timeout: float = 1.0) -> None:
        """Wait until the peer acknowledged every byte written (Linux's SIOCOUTQ is 0)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            unsent = struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            if unsent == 0:
                return
            time.sleep(0.001)

    def _choose(self, request: Request) -> Reply | Hangup:
        router = self._router
        if router is not None:
            return router(request)
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        self.errors.append(f"no reply scripted for request {request.index} ({request.path})")
        return Reply(
            status=500,
            headers={"Content-Type": "text/plain"},
            body=[b"fault server: no reply scripted"],
            framing="length",
        )

    # -- reading requests ------------------------------------------------------------------

    def _recv(self, sock: socket.socket, buffer: bytearray) -> bool:
        """Read more into ``buffer``; False at the end of the stream."""
        try:
            # Acknowledge at once: a client that writes its headers and body apart (and
            # waits for the ACK under Nagle's algorithm) would otherwise lose 40 ms a request.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return False
        except OSError:
            if self._stopping.is_set():
                raise _Stopping from None
            raise
        if self._stopping.is_set():
            raise _Stopping
        if not data:
            return False
        buffer += data
        return True

    def _read_request(
        self, sock: socket.socket, buffer: bytearray, record: Connection
    ) -> Request | None:
        while b"\r\n\r\n" not in buffer:
            if not self._recv(sock, buffer):
                return None
        end = buffer.index(b"\r\n\r\n")
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        method, path, _ = head[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked(sock, buffer)
        else:
            length = int(headers.get("content-length") or 0)
            while len(buffer) < length:
                if not self._recv(sock, buffer):
                    return None
            body = bytes(buffer[:length])
            del buffer[:length]
        if body is None:
            return None
        with self._changed:
            request = Request(
                len(self.requests), method, path, headers, body, time.monotonic(), record.index
            )
            self.requests.append(request)
            record.requests.append(request.index)
            self._changed.notify_all()
        return request

    def _read_chunked(self, sock: socket.socket, buffer: bytearray) -> bytes | None:
        body = bytearray()
        while True:
            while b"\r\n" not in buffer:
                if not self._recv(sock, buffer):
                    return None
            line_end = buffer.index(b"\r\n")
            size = int(bytes(buffer[:line_end]).split(b";")[0], 16)
            del buffer[: line_end + 2]
            while len(buffer) < size + 2:
                if not self._recv(sock, buffer):
                    return None
            body += buffer[:size]
            del buffer[: size + 2]
            if size == 0:
                return bytes(body)

    # -- sending replies -------------------------------------------------------------------

    def _send(self, sock: socket.socket, request: Request, reply: Reply) -> bool:
        """Send one reply; returns whether the connection may carry another request."""
        sent = {"events": 0, "pings": 0}

        def gone() -> _ClientGone:
            with self._changed:
                self.disconnects.append(
                    Disconnect(request.index, sent["events"], sent["pings"], time.monotonic())
                )
                self._changed.notify_all()
            return _ClientGone()

        def write(data: bytes) -> None:
            if reply.delay:
                self._wait(sock, reply.delay, gone)
            if self._client_gone(sock):
                raise gone()
            if reply.framing == "chunked":
                data = b"%x\r\n%s\r\n" % (len(data), data)
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                raise gone() from None
            except OSError:
                if self._stopping.is_set():
                    raise _Stopping from None
                raise

        if reply.head_delay:
            self._wait(sock, reply.head_delay, gone)
        headers = {"Content-Type": "application/json", **reply.headers}
        lowered = {name.lower() for name in headers}
        if reply.framing == "chunked":
            headers["Transfer-Encoding"] = "chunked"
        elif reply.framing == "length" and "content-length" not in lowered:
            declared = reply.content_length
            if declared is None:
                declared = sum(len(item) for item in reply.body if isinstance(item, bytes))
            headers["Content-Length"] = str(declared)
        # A drop gives no warning: only a reply that means to close says so.
        closes = not reply.keep_alive or reply.framing == "close"
        if closes:
            headers["Connection"] = "close"
        head = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        except (BrokenPipeError, ConnectionResetError):
            raise gone() from None

        for item in reply.body:
            if isinstance(item, Stall):
                self._stall(sock, item, write, sent, gone)
                continue
            if not item:
                continue
            step = reply.cut or len(item)
            # In a framing without chunks, each write still goes out on its own.
            for start in range(0, len(item), step):
                write(item[start : start + step])
            sent["events"] += 1

        if reply.end != "complete":
            return False
        if reply.framing == "chunked":
            try:
                sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                raise gone() from None
        return not closes

    def _stall(
        self,
        sock: socket.socket,
        stall: Stall,
        write: Callable[[bytes], None],
        sent: dict[str, int],
        gone: Callable[[], _ClientGone],
    ) -> None:
        deadline = time.monotonic() + stall.seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if stall.ping is None:
                self._wait(sock, left, gone)
                return
            self._wait(sock, min(left, stall.every), gone)
            if time.monotonic() < deadline:
                write(stall.ping)
                sent["pings"] += 1

    def _wait(self, sock: socket.socket, seconds: float, gone: Callable[[], _ClientGone]) -> None:
        """Sleep ``seconds``, raising as soon as the client leaves or the server stops."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stopping.is_set():
                raise _Stopping
            left = deadline - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select([sock], [], [], min(left, 0.05))
            if readable:
                if self._client_gone(sock):
                    if self._stopping.is_set():
                        raise _Stopping
                    raise gone()
                # Bytes from the client mid-reply (it should send none): do not spin on them.
                self._stopping.wait(min(left, 0.05))

    @staticmethod
    def _client_gone(sock: socket.socket) -> bool:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


def _reason(status: int) -> str:
    from http import HTTPStatus

    if status == 529:
        return "Overloaded"  # Anthropic's, not in the standard
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# -- provider error bodies ---------------------------------------------------------------------

_DEFAULT_MESSAGES = {
    400: "Invalid request: 'messages' is malformed.",
    401: "Incorrect API key provided.",
    403: "You do not have access to this model.",
    404: "The model 'no-such-model' does not exist.",
    408: "The request timed out.",
    409: "Conflict.",
    413: "Request exceeds the maximum allowed number of bytes.",
    422: "Input validation error.",
    429: "Rate limit reached for requests.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The service is temporarily unavailable.",
    504: "The upstream timed out.",
    529: "Overloaded",
}

# openai-python's and the API reference's error types and codes, per status.
_OPENAI_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}

# https://docs.anthropic.com/en/api/errors
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# google.rpc.Code names by HTTP status (https://ai.google.dev/gemini-api/docs/troubleshooting).
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def openai_error_body(
    message: str,
    type: str | None = "invalid_request_error",
    code: Any = None,
    param: str | None = None,
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI sends it."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def openrouter_error_body(
    code: int, message: str, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """OpenRouter's ``{"error": {"code": <HTTP status>, "message", "metadata"}}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    return {"error": error}


def anthropic_error_body(type: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``, as Anthropic sends it."""
    body: dict[str, Any] = {"type": "error", "error": {"type": type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def gemini_error_body(
    code: int, message: str, status: str | None = None, details: list[Any] | None = None
) -> dict[str, Any]:
    """Google's ``{"error": {"code", "message", "status", "details"}}``."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or _GOOGLE_STATUS.get(code, "UNKNOWN"),
    }
    if details is not None:
        error["details"] = details
    return {"error": error}


def ollama_error_body(message: str) -> dict[str, Any]:
    """Ollama's ``{"error": "..."}``."""
    return {"error": message}


def tgi_error_body(message: str, error_type: str | None = None) -> dict[str, Any]:
    """text-generation-inference's ``{"error", "error_type"}``."""
    body: dict[str, Any] = {"error": message}
    if error_type is not None:
        body["error_type"] = error_type
    return body


def error_body(provider: str, status: int, message: str | None = None) -> dict[str, Any]:
    """A plausible error body for ``status`` in ``provider``'s shape."""
    text = message or _DEFAULT_MESSAGES.get(status, f"HTTP {status}")
    if provider in ("openai", "openai_responses"):
        kind, code = _OPENAI_TYPES.get(status, ("server_error" if status >= 500 else None, None))
        return openai_error_body(text, kind, code)
    if provider == "openrouter":
        return openrouter_error_body(status, text)
    if provider == "anthropic":
        return anthropic_error_body(_ANTHROPIC_TYPES.get(status, "api_error"), text)
    if provider == "gemini":
        return gemini_error_body(status, text)
    if provider == "ollama":
        return ollama_error_body(text)
    if provider == "tgi":
        # TGI itself names "validation" and "generation"; other statuses come from a proxy.
        kind = {400: "validation", 422: "validation", 500: "generation"}.get(status)
        return tgi_error_body(text, kind)
    raise ValueError(f"unknown provider {provider!r}")


def request_id_header(provider: str) -> str:
    """The header a provider names its request id in (Anthropic's differs)."""
    return "request-id" if provider == "anthropic" else "x-request-id"


def error_reply(
    provider: str,
    status: int,
    message: str | None = None,
    *,
    body: dict[str, Any] | bytes | None = None,
    request_id: str | None = None,
    retry_after: float | str | None = None,
    retry_after_ms: float | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An HTTP error in the provider's shape, with its request id and retry headers."""
    content = body if body is not None else error_body(provider, status, message)
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    all_headers = {"Content-Type": "application/json"}
    if request_id is not None:
        all_headers[request_id_header(provider)] = request_id
    if retry_after is not None:
        all_headers["Retry-After"] = str(retry_after)
    if retry_after_ms is not None:
        all_headers["retry-after-ms"] = str(retry_after_ms)
    all_headers.update(headers or {})
    return Reply(status=status, headers=all_headers, body=[raw], framing="length")


# -- provider streams --------------------------------------------------------------------------


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _sse(data: Any, event: str | None = None, *, space: bool = True, eol: bytes = b"\n") -> bytes:
    raw = data if isinstance(data, bytes) else _json(data)
    line = (b"data: " if space else b"data:") + raw + eol
    if event is not None:
        line = b"event: " + event.encode() + eol + line
    return line + eol


@dataclass
class ProviderStream:
    """A provider's 200 stream for some text pieces, split into recombinable events.

    ``head`` comes before the text (may be empty), ``texts`` has one event per piece, and
    ``tail`` ends the stream (finish, usage, terminator). ``format`` is ``"sse"`` or
    ``"ndjson"``; ``ping`` is the keep-alive the provider sends (or a harmless stand-in).
    """

    provider: str
    pieces: list[str]
    head: list[bytes]
    texts: list[bytes]
    tail: list[bytes]
    content_type: str
    ping: bytes
    make_text: Callable[[str], bytes]
    make_error: Callable[..., bytes]
    format: Literal["sse", "ndjson"] = "sse"

    def complete(self) -> list[bytes]:
        return [*self.head, *self.texts, *self.tail]

    def upto(self, n: int) -> list[bytes]:
        """The events before the text, then the first ``n`` text events."""
        return [*self.head, *self.texts[:n]]

    def after(self, n: int) -> list[bytes]:
        """What follows ``upto(n)`` in a complete stream."""
        return [*self.texts[n:], *self.tail]

    def text(self, n: int | None = None) -> str:
        """The text of the first ``n`` pieces (all by default)."""
        return "".join(self.pieces if n is None else self.pieces[:n])

    def error(self, **fields: Any) -> bytes:
        """The provider's in-stream error event (its fields as the builder takes them)."""
        return self.make_error(**fields)

    def malformed(self) -> bytes:
        """A text event whose JSON lost its closing brace."""
        event = self.make_text("oops")
        brace = event.rindex(b"}")
        return event[:brace] + event[brace + 1 :]

    def invalid_utf8(self, bad: bytes = b"\xc3\x28\xff") -> bytes:
        """A text event whose string holds bytes that are not UTF-8."""
        return self.make_text("@@BAD@@").replace(b"@@BAD@@", bad)

    def truncated(self, n: int) -> bytes:
        """Text event ``n`` (or a fresh one) cut in half: never terminated."""
        event = self.texts[n] if n < len(self.texts) else self.make_text("cut")
        return event[: len(event) // 2]

    def payload(self, event: bytes) -> bytes:
        """The JSON bytes a decoder sees in an event: SSE data lines, or the NDJSON line."""
        if self.format == "ndjson":
            return event.rstrip(b"\r\n")
        data = [
            line[5:].removeprefix(b" ")
            for line in event.replace(b"\r\n", b"\n").split(b"\n")
            if line.startswith(b"data:")
        ]
        return b"\n".join(data)

    def reply(
        self,
        body: Sequence[bytes | Stall] | None = None,
        *,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> Reply:
        """A 200 :class:`Reply` sending ``body`` (by default the complete stream)."""
        return Reply(
            headers={"Content-Type": self.content_type, **(headers or {})},
            body=list(self.complete() if body is None else body),
            **options,
        )


_CREATED = 1735689600


def openai_stream_error(
    message: str = "The server had an error while processing your request. Sorry about that!",
    type: str = "server_error",
    code: Any = None,
) -> bytes:
    """OpenAI's error inside a chat completions stream: a chunk that is ``{"error": {...}}``."""
    return _sse(openai_error_body(message, type, code))


def openai_chat_stream(
    pieces: Sequence[str],
    *,
    model: str = "gpt-4o-mini",
    id: str = "chatcmpl-fault",
    extra: dict[str, Any] | None = None,
) -> ProviderStream:
    """Chat completions chunks: a role chunk, one chunk per piece, finish, usage, [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(
            {
                "id": id,
                "object": "chat.completion.chunk",
                "created": _CREATED,
                "model": model,
                **(extra or {}),
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
        )

    usage = {"prompt_tokens": 9, "completion_tokens": len(pieces), "total_tokens": 9 + len(pieces)}
    return ProviderStream(
        provider="openai",
        pieces=list(pieces),
        head=[chunk({"role": "assistant", "content": ""})],
        texts=[chunk({"content": piece}) for piece in pieces],
        tail=[
            chunk({}, "stop"),
            _sse(
                {
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": _CREATED,
                    "model": model,
                    **(extra or {}),
                    "choices": [],
                    "usage": usage,
                }
            ),
            b"data: [DONE]\n\n",
        ],
        content_type="text/event-stream; charset=utf-8",
        ping=PING,
        make_text=lambda text: chunk({"content": text}),
        make_error=openai_stream_error,
    )


def openrouter_stream_error(
    message: str = "Provider disconnected unexpectedly",
    code: Any = "server_error",
    model: str = "openai/gpt-4o-mini",
) -> bytes:
    """OpenRouter's mid-stream error: a chunk with ``error`` and ``finish_reason: "error"``
    (https://openrouter.ai/docs/api-reference/errors, "Streaming Error Formats")."""
    return _sse(
        {
            "id": "gen-fault",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "provider": "OpenAI",
            "error": {"code": code, "message": message},
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        }
    )


def openrouter_stream(
    pieces: Sequence[str], *, model: str = "openai/gpt-4o-mini"
) -> ProviderStream:
    """OpenRouter's chat completions stream: OpenAI's chunks, with its keep-alive comments."""
    stream = openai_chat_stream(pieces, model=model, id="gen-fault", extra={"provider": "OpenAI"})
    stream.provider = "openrouter"
    stream.head = [b": OPENROUTER PROCESSING\n\n", *stream.head]
    stream.ping = b": OPENROUTER PROCESSING\n\n"
    stream.make_error = openrouter_stream_error
    return stream


def responses_stream_error(
    message: str = "The server had an error while processing your request.",
    code: str = "server_error",
) -> bytes:
    """The Responses API's ``error`` event (ResponseErrorEvent)."""
    return _sse(
        {"type": "error", "sequence_number": 999, "code": code, "message": message, "param": None},
        "error",
    )


def responses_stream(
    pieces: Sequence[str], *, model: str = "gpt-4.1-2025-04-14", id: str = "resp_fault"
) -> ProviderStream:
    """Responses API events: created, item and part added, text deltas, the dones, completed."""
    item_id = "msg_fault"
    counter = iter(range(10_000))

    def event(kind: str, **data: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(counter), **data}, kind)

    def response(status: str, output: list[Any], usage: Any = None) -> dict[str, Any]:
        return {
            "id": id,
            "object": "response",
            "created_at": _CREATED,
            "status": status,
            "model": model,
            "output": output,
            "usage": usage,
            "error": None,
            "incomplete_details": None,
        }

    def delta(text: str) -> bytes:
        return event(
            "response.output_text.delta",
            item_id=item_id,
            output_index=0,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    full = "".join(pieces)
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": full}
    message = {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    head = [
        event("response.created", response=response("in_progress", [])),
        event("response.in_progress", response=response("in_progress", [])),
        event(
            "response.output_item.added",
            output_index=0,
            item={**message, "status": "in_progress", "content": []},
        ),
        event(
            "response.content_part.added",
            item_id=item_id,
            output_index=0,
            content_index=0,
            part={**part, "text": ""},
        ),
    ]
    texts = [delta(piece) for piece in pieces]
    usage = {"input_tokens": 9, "output_tokens": len(pieces), "total_tokens": 9 + len(pieces)}
    tail = [
        event(
            "response.output_text.done",
            item_id=item_id,
            output_index=0,
            content_index=0,
            text=full,
            logprobs=[],
        ),
        event(
            "response.content_part.done",
            item_id=item_id,
            output_index=0,
            content_index=0,
            part=part,
        ),
        event("response.output_item.done", output_index=0, item=message),
        event("response.completed", response=response("completed", [message], usage)),
    ]
    return ProviderStream(
        provider="openai_responses",
        pieces=list(pieces),
        head=head,
        texts=texts,
        tail=tail,
        content_type="text/event-stream; charset=utf-8",
        ping=PING,
        make_text=delta,
        make_error=responses_stream_error,
    )


def anthropic_stream_error(type: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    """Anthropic's ``event: error`` inside a 200 stream."""
    return _sse({"type": "error", "error": {"type": type, "message": message}}, "error")


def anthropic_stream(
    pieces: Sequence[str], *, model: str = "claude-sonnet-4-5-20250929", id: str = "msg_fault"
) -> ProviderStream:
    """Messages API events: message_start, a text block with a ping, deltas, stop events."""

    def delta(text: str) -> bytes:
        return _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            },
            "content_block_delta",
        )

    head = [
        _sse(
            {
                "type": "message_start",
                "message": {
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 9, "output_tokens": 1},
                },
            },
            "message_start",
        ),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
        ANTHROPIC_PING,
    ]
    tail = [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return ProviderStream(
        provider="anthropic",
        pieces=list(pieces),
        head=head,
        texts=[delta(piece) for piece in pieces],
        tail=tail,
        content_type="text/event-stream; charset=utf-8",
        ping=ANTHROPIC_PING,
        make_text=delta,
        make_error=anthropic_stream_error,
    )


def gemini_stream_error(
    code: int = 503,
    message: str = "The model is overloaded. Please try again later.",
    status: str | None = None,
) -> bytes:
    """A Google error object sent as an event of a ``streamGenerateContent`` stream."""
    return _sse(gemini_error_body(code, message, status), eol=b"\r\n")


def gemini_stream(
    pieces: Sequence[str], *, model: str = "gemini-2.5-flash", id: str = "fault-response"
) -> ProviderStream:
    """``streamGenerateContent?alt=sse`` chunks (CRLF line ends, as Google sends them): one
    per piece, then one with ``finishReason``. Gemini has no terminator event."""

    def chunk(text: str, finish: str | None = None, n: int = 0) -> bytes:
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        }
        if finish:
            candidate["finishReason"] = finish
        return _sse(
            {
                "candidates": [candidate],
                "usageMetadata": {
                    "promptTokenCount": 9,
                    "candidatesTokenCount": n,
                    "totalTokenCount": 9 + n,
                },
                "modelVersion": model,
                "responseId": id,
            },
            eol=b"\r\n",
        )

    return ProviderStream(
        provider="gemini",
        pieces=list(pieces),
        head=[],
        texts=[chunk(piece, n=i + 1) for i, piece in enumerate(pieces)],
        tail=[chunk("", "STOP", len(pieces))],
        content_type="text/event-stream",
        ping=b": ping\r\n\r\n",
        make_text=chunk,
        make_error=gemini_stream_error,
    )


def ollama_stream_error(
    message: str = "an error was encountered while running the model: unexpected EOF",
) -> bytes:
    """Ollama's error line inside a 200 NDJSON stream."""
    return _json(ollama_error_body(message)) + b"\n"


def ollama_stream(pieces: Sequence[str], *, model: str = "llama3.2") -> ProviderStream:
    """``/api/chat`` NDJSON lines: one per piece, then the ``done: true`` line."""

    def line(text: str) -> bytes:
        return (
            _json(
                {
                    "model": model,
                    "created_at": "2025-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": text},
                    "done": False,
                }
            )
            + b"\n"
        )

    last = (
        _json(
            {
                "model": model,
                "created_at": "2025-01-01T00:00:01Z",
                "message": {"role": "assistant", "content": ""},
                "done_reason": "stop",
                "done": True,
                "total_duration": 1000,
                "prompt_eval_count": 9,
                "eval_count": len(pieces),
            }
        )
        + b"\n"
    )
    return ProviderStream(
        provider="ollama",
        pieces=list(pieces),
        head=[],
        texts=[line(p) for p in pieces],
        tail=[last],
        content_type="application/x-ndjson",
        # Ollama sends no keep-alive; a blank line is the harmless stand-in NDJSON allows.
        ping=b"\n",
        make_text=line,
        make_error=ollama_stream_error,
        format="ndjson",
    )


def tgi_stream_error(
    message: str = "Request failed during generation: Server error: CUDA out of memory.",
    error_type: str = "generation",
) -> bytes:
    """TGI's error event inside a 200 ``/generate_stream`` stream."""
    return _sse(tgi_error_body(message, error_type), space=False)


def tgi_stream(pieces: Sequence[str]) -> ProviderStream:
    """``/generate_stream`` events (``data:`` with no space, as TGI frames them): one token
    per piece, then the end-of-sequence token carrying ``generated_text`` and details."""

    def token(text: str, index: int = 1) -> bytes:
        return _sse(
            {
                "index": index,
                "token": {"id": 100 + index, "text": text, "logprob": -0.1, "special": False},
                "generated_text": None,
                "details": None,
            },
            space=False,
        )

    n = len(pieces)
    last = _sse(
        {
            "index": n + 1,
            "token": {"id": 2, "text": "</s>", "logprob": 0.0, "special": True},
            "generated_text": "".join(pieces),
            "details": {
                "finish_reason": "eos_token",
                "generated_tokens": n + 1,
                "seed": None,
                "input_length": 9,
            },
        },
        space=False,
    )
    return ProviderStream(
        provider="tgi",
        pieces=list(pieces),
        head=[],
        texts=[token(piece, i + 1) for i, piece in enumerate(pieces)],
        tail=[last],
        content_type="text/event-stream",
        ping=b":\n\n",
        make_text=token,
        make_error=tgi_stream_error,
    )


_STREAMS: dict[str, Callable[[Sequence[str]], ProviderStream]] = {
    "openai": openai_chat_stream,
    "openrouter": openrouter_stream,
    "openai_responses": responses_stream,
    "anthropic": anthropic_stream,
    "gemini": gemini_stream,
    "ollama": ollama_stream,
    "tgi": tgi_stream,
}


def provider_stream(provider: str, pieces: Iterable[str]) -> ProviderStream:
    """The stream builder for a provider: ``openai``, ``openrouter``, ``openai_responses``,
    ``anthropic``, ``gemini``, ``ollama`` or ``tgi``."""
    return _STREAMS[provider](list(pieces))
