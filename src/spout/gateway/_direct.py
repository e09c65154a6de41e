"""The creator's frames written in the producer's own step, straight to the client's socket.

A streamed response follows the hub like any reader: the producer appends a frame, wakes the
follower's task, and that task sends the frame through the server. That is a task step and a
generator's turn a token, about a fifth of the gateway's CPU for a token. When the hub can
call a reader (:meth:`MemoryHub.attach`) and the server is uvicorn's httptools protocol, the
creator's response is instead a :class:`~._hub.Sink` that writes each frame to the
connection's transport as it is appended, framed as uvicorn frames a chunked body.

It writes only while it can do so at once: when the client reads slower than the upstream
writes (the transport asks for a pause), or anything else is unusual, it hands over to the
usual follower from the last frame it wrote, which waits for the client as before. Other
readers of the stream (``GET /v1/streams/{id}``, other workers) follow as always.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from starlette.types import Scope

#: The scope key under which the gateway's app leaves the server's own ``send``.
SERVER_SEND = "spout.server_send"

_HTTPTOOLS_CYCLE = "uvicorn.protocols.http.httptools_impl"


def server_cycle(scope: Scope) -> Any | None:
    """uvicorn's httptools request cycle behind this scope, or None (another server, or
    uvicorn's h11 protocol: those get the usual follower)."""
    send = scope.get(SERVER_SEND)
    cycle = getattr(send, "__self__", None)
    if cycle is None or type(cycle).__module__ != _HTTPTOOLS_CYCLE:
        return None
    if scope.get("method") == "HEAD":
        return None
    return cycle


class DirectWriter:
    """A :class:`~._hub.Sink` writing frames to ``cycle``'s transport as chunks of its body.

    ``done`` says how it stopped: True, the stream ended and every frame was written (the
    response's last chunk is still to send); False, it handed over, and the reader goes on
    from ``after``, the number of the last frame written.
    """

    __slots__ = ("_cycle", "_flow", "_transport", "after", "done")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._transport = cycle.transport
        self._flow = cycle.flow
        self.after = 0
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def usable(self) -> bool:
        """Whether the response started as a chunked body this writer can add to."""
        cycle = self._cycle
        return bool(
            cycle.response_started
            and cycle.chunked_encoding is True
            and not cycle.response_complete
        )

    def frames(self, first: int, frames: Sequence[bytes]) -> bool:
        if (
            first != self.after + 1
            or self._flow.write_paused
            or self._cycle.disconnected
            or self._transport.is_closing()
        ):
            self._stop(False)
            return False
        if len(frames) == 1:
            body = b"id: %d\n%s" % (first, frames[0])
        else:
            body = b"".join([b"id: %d\n%s" % (first + i, f) for i, f in enumerate(frames)])
        self._transport.write(b"%x\r\n%s\r\n" % (len(body), body))
        self.after = first + len(frames) - 1
        return True

    def ended(self) -> None:
        self._stop(True)

    def _stop(self, ended: bool) -> None:
        if not self.done.done():
            self.done.set_result(ended)
