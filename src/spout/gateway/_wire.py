"""What every wire protocol the gateway speaks has in common.

A protocol module (``_openai``, ``_anthropic``, ``_responses``) turns a client's request body
into a :class:`Request` — spout's own terms: OpenAI-style messages, tools, settings — and
turns spout's typed events back into that protocol's stream frames with an :class:`Encoder`.
The gateway stores the frames of a streamed response as they are made, numbered, so any
reader (the first, one that resumes, a second follower, another replica) gets the same bytes
in the same protocol.

A frame is one complete server-sent event without its ``id:`` line (the gateway adds
``id: N`` when it sends the frame), e.g. ``b'event: ping\\ndata: {"type": "ping"}\\n\\n'``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .. import Event, Response

__all__ = [
    "Encoder",
    "QuotaExceeded",
    "Request",
    "RequestError",
    "StreamCancelled",
    "WireProtocol",
    "sse_frame",
]


class RequestError(Exception):
    """A client's request the gateway refuses before calling anyone: ``status`` and a
    message naming the problem, written in the client's protocol."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param


class QuotaExceeded(RequestError):
    """A key that spent its spend limit (``max_spend``): 429 with OpenAI's
    ``insufficient_quota``, in each protocol's words."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=429)


class StreamCancelled(RequestError):
    """A stream stopped before its end: someone cancelled it, or no reader came back within
    the resume window (status 499, nginx's "client closed request")."""

    def __init__(self, message: str = "the stream was cancelled") -> None:
        super().__init__(message, status=499)


@dataclass(slots=True)
class Request:
    """A client's request in spout's terms, whatever protocol it came in.

    ``messages`` are OpenAI-style chat messages (spout's own format: ``system``, ``user``,
    ``assistant`` with ``tool_calls``, ``tool`` with ``tool_call_id``); ``tools`` are function
    definitions in OpenAI's or Anthropic's shape (``spout`` accepts both); ``params`` the
    generation settings to pass to ``LLM.generate*`` as keywords (``temperature``,
    ``max_tokens``, ``top_p``, ``stop``, ``seed``, ``tool_choice``, ``response_format``...).
    """

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    tools: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    #: OpenAI ``stream_options.include_usage``: a last chunk with the usage.
    include_usage: bool = False
    #: What the protocol module needs to answer in kind (e.g. the Responses API's
    #: ``instructions``, Anthropic's ``max_tokens`` as given); never sent upstream.
    extras: dict[str, Any] = field(default_factory=dict)


class Encoder(Protocol):
    """Turns one response's spout events into a protocol's frames (each method returns the
    frames to send now, possibly none)."""

    def start(self) -> list[bytes]:
        """Frames sent before any event (Anthropic's ``message_start`` and ``ping``)."""
        ...

    def feed(self, event: Event) -> list[bytes]:
        """Frames for one spout event."""
        ...

    def end(self, response: Response) -> list[bytes]:
        """Frames that close a stream that ended well (finish reason, usage, ``[DONE]``)."""
        ...

    def error(self, exc: BaseException) -> list[bytes]:
        """Frames that report an error once some frames were sent (the HTTP status is gone)."""
        ...


class WireProtocol(Protocol):
    """One protocol: ``openai`` (``/v1/chat/completions``), ``anthropic`` (``/v1/messages``),
    ``responses`` (``/v1/responses``)."""

    name: str

    def parse(self, body: Any) -> Request:
        """The request in spout's terms; :class:`RequestError` naming what is wrong."""
        ...

    def encoder(self, request: Request, *, response_id: str, model: str) -> Encoder:
        """An encoder for one streamed response; ``response_id`` is the gateway's stream id."""
        ...

    def body(self, request: Request, response: Response, *, response_id: str, model: str) -> Any:
        """The JSON body of a response that is not streamed."""
        ...

    def error_body(self, exc: BaseException) -> tuple[int, Any]:
        """The HTTP status and JSON body for an error before anything was sent (a
        :class:`RequestError`, a spout error from upstream, anything else as a 500)."""
        ...


def sse_frame(data: bytes | str, event: str | None = None) -> bytes:
    """One server-sent event without an ``id:``: ``event:`` if given, then ``data:``."""
    if isinstance(data, str):
        data = data.encode()
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"
