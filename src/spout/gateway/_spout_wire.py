"""spout's own events on the wire: each typed event as a JSON object (the ``spout`` protocol).

The WebSocket (``GET /v1/ws``) and ``POST /v1/spout/stream`` speak it. A request is an OpenAI
chat request (parsed by the chat completions protocol); the answer is one frame per spout
event, whose data is the event as JSON, then one frame that ends the stream::

    data: {"type":"response_start","id":"st_...","model":"smol"}
    data: {"type":"text","text":"Hel"}
    data: {"type":"refusal","text":"I can't help with that."}
    data: {"type":"tool_call_start","index":0,"id":"call_1","name":"get_weather"}
    data: {"type":"file_start","index":0,"media_type":"image/png"}
    data: {"type":"file_end","index":0,"file":{"media_type":"image/png","data":"iVBORw0...","name":null,"url":null}}
    data: {"type":"citation","text":"...","url":"https://...","title":"...","start":0,"end":5,"raw":{...}}
    data: {"type":"raw_event","event_type":"web_search_tool_result","data":{...}}
    data: {"type":"usage","input_tokens":9,"output_tokens":5,"extras":{}}
    data: {"type":"finish","reason":"stop","raw_reason":"stop"}
    data: {"type":"done","response":{"text":"Hello","tool_calls":[],...}}

or, in place of ``done``, ``{"type":"error","error":{"type":"cancelled","message":...}}``.
:func:`event_to_dict` and :func:`event_from_dict` are the two directions of one event.
"""

from __future__ import annotations

import base64
from typing import Any, cast

import orjson

from .. import (
    Citation,
    Event,
    File,
    FileEnd,
    FileStart,
    Finish,
    FinishReason,
    RawEvent,
    ReasoningDelta,
    RefusalDelta,
    Response,
    ResponseStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)
from . import _openai
from ._hub import EventsExpired
from ._wire import Request, StreamCancelled, sse_frame

__all__ = [
    "PROTOCOL",
    "SpoutEncoder",
    "SpoutProtocol",
    "error_to_dict",
    "event_from_dict",
    "event_to_dict",
    "response_to_dict",
]


def tool_call_to_dict(call: ToolCall) -> dict[str, Any]:
    """A tool call as JSON: id, name, arguments (parsed) and arguments_raw (as sent); the
    signature, result and error only when set."""
    out: dict[str, Any] = {
        "id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "arguments_raw": call.arguments_raw,
    }
    for key in ("signature", "result", "error"):
        value = getattr(call, key)
        if value is not None:
            out[key] = value
    return out


def _tool_call(data: dict[str, Any]) -> ToolCall:
    return ToolCall(
        id=data["id"],
        name=data["name"],
        arguments=data.get("arguments") or {},
        arguments_raw=data.get("arguments_raw"),
        signature=data.get("signature"),
        result=data.get("result"),
        error=data.get("error"),
    )


def file_to_dict(file: File) -> dict[str, Any]:
    """A file as JSON: its media type, name, and its bytes in base64 (``data``) or its
    ``url``."""
    return {
        "media_type": file.media_type,
        "name": file.name,
        "data": None if file.data is None else file.base64(),
        "url": file.url,
    }


def _file(data: dict[str, Any]) -> File:
    name = data.get("name")
    if data.get("data") is not None:
        return File(
            data=base64.b64decode(data["data"], validate=True),
            media_type=data.get("media_type"),
            name=name,
        )
    return File(url=data["url"], media_type=data.get("media_type"), name=name)


def citation_to_dict(citation: Citation) -> dict[str, Any]:
    """A citation as JSON: every field, the provider's own object in ``raw``."""
    return {
        "text": citation.text,
        "url": citation.url,
        "title": citation.title,
        "start": citation.start,
        "end": citation.end,
        "raw": citation.raw,
    }


def _citation(data: dict[str, Any]) -> Citation:
    return Citation(
        data.get("text"),
        data.get("url"),
        data.get("title"),
        data.get("start"),
        data.get("end"),
        data.get("raw") or {},
    )


def usage_to_dict(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "extras": usage.extras,
    }


def event_to_dict(event: Event) -> dict[str, Any]:
    """One spout event as a JSON-ready dict, its kind in ``type``.

    >>> event_to_dict(TextDelta("Hel"))
    {'type': 'text', 'text': 'Hel'}
    """
    if type(event) is TextDelta:
        return {"type": "text", "text": event.text}
    if type(event) is ReasoningDelta:
        out: dict[str, Any] = {"type": "reasoning", "text": event.text}
        if event.signature is not None:
            out["signature"] = event.signature
        # Encrypted reasoning and whole reasoning items: state the client sends back.
        if event.redacted is not None:
            out["redacted"] = event.redacted
        if event.item is not None:
            out["item"] = event.item
        return out
    if type(event) is RefusalDelta:
        return {"type": "refusal", "text": event.text}
    if type(event) is ToolCallStart:
        return {"type": "tool_call_start", "index": event.index, "id": event.id, "name": event.name}
    if type(event) is ToolCallDelta:
        return {"type": "tool_call_delta", "index": event.index, "arguments": event.arguments}
    if type(event) is ToolCallEnd:
        return {
            "type": "tool_call_end",
            "index": event.index,
            "tool_call": tool_call_to_dict(event.tool_call),
        }
    if type(event) is Usage:
        return {"type": "usage", **usage_to_dict(event)}
    if type(event) is Finish:
        return {"type": "finish", "reason": event.reason, "raw_reason": event.raw_reason}
    if type(event) is ResponseStart:
        return {"type": "response_start", "id": event.id, "model": event.model}
    if type(event) is ToolResult:
        return {
            "type": "tool_result",
            "tool_call": tool_call_to_dict(event.tool_call),
            "content": event.content,
        }
    if type(event) is FileStart:
        return {"type": "file_start", "index": event.index, "media_type": event.media_type}
    if type(event) is FileEnd:
        return {"type": "file_end", "index": event.index, "file": file_to_dict(event.file)}
    if type(event) is Citation:
        return {"type": "citation", **citation_to_dict(event)}
    if type(event) is RawEvent:
        return {"type": "raw_event", "event_type": event.type, "data": event.data}
    raise TypeError(f"not a spout event: {event!r:.80}")


def event_from_dict(data: dict[str, Any]) -> Event:
    """The spout event a dict made by :func:`event_to_dict` stands for (a client's side).

    >>> event_from_dict({"type": "text", "text": "Hel"})
    TextDelta(text='Hel')
    """
    kind = data.get("type")
    if kind == "text":
        return TextDelta(data["text"])
    if kind == "reasoning":
        return ReasoningDelta(
            data.get("text", ""), data.get("signature"), data.get("redacted"), data.get("item")
        )
    if kind == "refusal":
        return RefusalDelta(data["text"])
    if kind == "tool_call_start":
        return ToolCallStart(data["index"], data["id"], data["name"])
    if kind == "tool_call_delta":
        return ToolCallDelta(data["index"], data["arguments"])
    if kind == "tool_call_end":
        return ToolCallEnd(data["index"], _tool_call(data["tool_call"]))
    if kind == "usage":
        return Usage(data.get("input_tokens"), data.get("output_tokens"), data.get("extras") or {})
    if kind == "finish":
        return Finish(cast(FinishReason, data["reason"]), data.get("raw_reason"))
    if kind == "response_start":
        return ResponseStart(data.get("id"), data.get("model"))
    if kind == "tool_result":
        return ToolResult(_tool_call(data["tool_call"]), data["content"])
    if kind == "file_start":
        return FileStart(data["index"], data.get("media_type"))
    if kind == "file_end":
        return FileEnd(data["index"], _file(data["file"]))
    if kind == "citation":
        return _citation(data)
    if kind == "raw_event":
        return RawEvent(data["event_type"], data.get("data"))
    raise ValueError(f"not a spout event type: {kind!r:.40}")


def response_to_dict(response: Response) -> dict[str, Any]:
    """The final answer as JSON: text, reasoning, refusal (None when the model did not
    refuse), tool calls, files, citations, raw events, usage and finish reason."""
    return {
        "text": response.text,
        "reasoning": response.reasoning,
        "refusal": response.refusal,
        "tool_calls": [tool_call_to_dict(call) for call in response.tool_calls],
        "files": [file_to_dict(file) for file in response.files],
        "citations": [citation_to_dict(citation) for citation in response.citations],
        "raw_events": [{"event_type": raw.type, "data": raw.data} for raw in response.raw_events],
        "usage": usage_to_dict(response.usage),
        "finish_reason": response.finish_reason,
    }


def error_to_dict(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP status and ``{"type", "message", "status"}`` of an error; ``type`` is one of
    the protocol-neutral kinds (``invalid_request``, ``rate_limit``, ``upstream``...), or
    ``cancelled`` for a stream stopped before its end."""
    if isinstance(exc, StreamCancelled):
        return exc.status, {"type": "cancelled", "message": exc.message, "status": exc.status}
    if isinstance(exc, EventsExpired):
        return 410, {"type": "events_expired", "message": str(exc), "status": 410}
    status, kind, message = _openai.classify_error(exc)
    return status, {"type": kind, "message": message, "status": status}


def _dumps(data: Any) -> bytes:
    # A tool's result may be anything the tool loop returned: its str() rather than a failure.
    return orjson.dumps(data, default=str)


class SpoutEncoder:
    """spout events as frames whose data is :func:`event_to_dict`'s JSON.

    The first frame is a ``response_start`` naming the gateway's stream and route (the
    upstream's own id and model stay behind the gateway, as in the other protocols).
    """

    __slots__ = ("_model", "_response_id")

    def __init__(self, *, response_id: str, model: str) -> None:
        self._response_id = response_id
        self._model = model

    def start(self) -> list[bytes]:
        start = {"type": "response_start", "id": self._response_id, "model": self._model}
        return [sse_frame(_dumps(start))]

    def feed(self, event: Event) -> list[bytes]:
        if type(event) is ResponseStart:
            return []
        return [sse_frame(_dumps(event_to_dict(event)))]

    def end(self, response: Response) -> list[bytes]:
        return [sse_frame(_dumps({"type": "done", "response": response_to_dict(response)}))]

    def error(self, exc: BaseException) -> list[bytes]:
        _, error = error_to_dict(exc)
        return [sse_frame(_dumps({"type": "error", "error": error}))]


class SpoutProtocol:
    """spout's own protocol: an OpenAI chat request in, spout's events out as JSON; always
    streamed (``stream`` and ``stream_options`` are accepted and ignored).

    Example::

        request = PROTOCOL.parse({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
        frames = PROTOCOL.encoder(request, response_id="st_1", model="m").feed(TextDelta("Hi"))
    """

    name = "spout"

    def parse(self, body: Any) -> Request:
        body = _openai.request_object(body)
        body = {key: value for key, value in body.items() if key not in ("stream",)}
        request = _openai.PROTOCOL.parse(body)
        request.stream = True
        return request

    def encoder(self, request: Request, *, response_id: str, model: str) -> SpoutEncoder:
        return SpoutEncoder(response_id=response_id, model=model)

    def body(
        self, request: Request, response: Response, *, response_id: str, model: str
    ) -> dict[str, Any]:
        return {"id": response_id, "model": model, "response": response_to_dict(response)}

    def error_body(self, exc: BaseException) -> tuple[int, Any]:
        status, error = error_to_dict(exc)
        return status, {"error": error}


PROTOCOL = SpoutProtocol()
