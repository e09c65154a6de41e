"""What the wire-protocol tests share: tool-call events, the response a list of events makes,
and a loopback endpoint that answers an SDK with one protocol module."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
from sdk_loopback import Received, serve

import spout
from spout._events import Event, ToolCall, ToolCallDelta, ToolCallEnd, ToolCallStart
from spout._response import Accumulator
from spout.gateway._wire import Request, RequestError

Handler = Callable[[Request], httpx2.Response]


def call_events(index: int, call_id: str, name: str, parts: list[str]) -> list[Event]:
    """A tool call streamed in ``parts`` of its JSON arguments."""
    raw = "".join(parts)
    return [
        ToolCallStart(index, call_id, name),
        *(ToolCallDelta(index, part) for part in parts),
        ToolCallEnd(index, ToolCall(call_id, name, json.loads(raw), raw)),
    ]


def response_of(events: list[Event]) -> spout.Response:
    accumulator = Accumulator(strict_tool_arguments=False)
    for event in events:
        accumulator.add(event)
    return accumulator.response()


def endpoint(protocol: Any, answer: Handler, seen: list[Request] | None = None) -> str:
    """A loopback server that parses each request with ``protocol`` (a refused one gets the
    protocol's error body) and answers with ``answer``; its base URL."""

    def handle(received: Received) -> httpx2.Response:
        try:
            request = protocol.parse(json.loads(received.content))
        except RequestError as exc:
            status, body = protocol.error_body(exc)
            return httpx2.Response(status, json=body)
        if seen is not None:
            seen.append(request)
        return answer(request)

    return serve(handle)


def encoded(
    protocol: Any,
    request: Request,
    events: list[Event],
    error: BaseException | None = None,
    *,
    response_id: str,
) -> list[bytes]:
    """The frames ``protocol``'s encoder makes of ``events`` (ending with ``error`` if given)."""
    encoder = protocol.encoder(request, response_id=response_id, model="gw-model")
    frames: list[bytes] = encoder.start()
    for event in events:
        frames += encoder.feed(event)
    frames += encoder.error(error) if error else encoder.end(response_of(events))
    return frames


def numbered(frames: list[bytes]) -> bytes:
    """What the gateway sends: each frame with an ``id:`` line."""
    return b"".join(b"id: %d\n" % n + frame for n, frame in enumerate(frames))


def answering(
    protocol: Any, events: list[Event], error: BaseException | None = None, *, response_id: str
) -> Handler:
    """Answers a streamed request with the encoder's frames of ``events``, and one that is
    not streamed with the protocol's body of their response."""

    def answer(request: Request) -> httpx2.Response:
        if not request.stream:
            body = protocol.body(
                request, response_of(events), response_id=response_id, model="gw-model"
            )
            return httpx2.Response(200, json=body)
        frames = encoded(protocol, request, events, error, response_id=response_id)
        return httpx2.Response(
            200, content=numbered(frames), headers={"content-type": "text/event-stream"}
        )

    return answer
