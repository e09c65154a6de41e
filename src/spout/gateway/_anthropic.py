"""Anthropic's Messages API on the wire: ``POST /v1/messages`` in, message events out."""

from __future__ import annotations

from typing import Any

import orjson

from .. import (
    Citation,
    Event,
    File,
    FileEnd,
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
    Usage,
)
from ..compat.chunks import arguments_text
from ._attachments import anthropic_block, anthropic_citation, raw_object
from ._openai import (
    UNSUPPORTED,
    ErrorKind,
    at_least_one,
    check_json_schema_format,
    check_stop,
    classify_error,
    flag,
    named_choice,
    number,
    object_field,
    objects,
    refuse_given,
    refuse_unknown,
    request_model,
    request_object,
    take_numbers,
)
from ._wire import Request, RequestError, sse_frame

__all__ = ["PROTOCOL", "MessagesEncoder", "MessagesProtocol"]

# Anthropic's error ``type`` and status for each kind (https://docs.anthropic.com/en/api/errors).
_ERRORS: dict[str, tuple[str, int | None]] = {
    ErrorKind.INVALID_REQUEST: ("invalid_request_error", None),
    ErrorKind.CONTEXT_WINDOW: ("invalid_request_error", 400),
    ErrorKind.AUTHENTICATION: ("authentication_error", 401),
    ErrorKind.PERMISSION: ("permission_error", 403),
    ErrorKind.NOT_FOUND: ("not_found_error", 404),
    ErrorKind.RATE_LIMIT: ("rate_limit_error", 429),
    # A spend limit the operator set, as the API answers one an organization or workspace set:
    # 400 invalid_request_error (https://platform.claude.com/docs/en/api/errors, "HTTP
    # errors"); its 429 is for rate limits and its 402 billing_error for payment details.
    ErrorKind.INSUFFICIENT_QUOTA: ("invalid_request_error", 400),
    ErrorKind.OVERLOADED: ("overloaded_error", 529),
    ErrorKind.TIMEOUT: ("timeout_error", 504),
    ErrorKind.UPSTREAM: ("api_error", None),
    ErrorKind.SERVER: ("api_error", 500),
}

# Stop reasons Anthropic sends (anthropic-sdk-python types/stop_reason.py): an upstream's
# own is kept as it is; any other is spout's normalized reason in Anthropic's words.
_STOP_REASONS = frozenset(
    (
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    )
)
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "refusal": "refusal",
    "content_filter": "refusal",
    "error": "end_turn",
    "unrecognized": "end_turn",
}

# Hints and bookkeeping that change nothing a client reads back: accepted and dropped.
_IGNORED = frozenset(
    (
        "metadata",
        "service_tier",
        "inference_geo",
        "cache_control",
        "diagnostics",
        "speed",
        "user_profile_id",
        "workspace_id",
    )
)
_KNOWN = _IGNORED | frozenset(
    (
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "output_format",
        "output_config",
    )
)
_REFUSED = ("container", "mcp_servers", "context_management")


def anthropic_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and Anthropic error body (``{"type": "error", "error": {type, message}}``)."""
    status, kind, message = classify_error(exc)
    error_type, fixed = _ERRORS[kind]
    if status == 413:
        error_type = "request_too_large"
    return fixed or status, {"type": "error", "error": {"type": error_type, "message": message}}


def anthropic_usage(usage: Usage | None) -> dict[str, Any]:
    """Usage as the Messages API counts it: ``input_tokens`` is only the input after the last
    cache breakpoint (spout's whole input less what was read from the prompt cache and written
    to it), the two cache counts beside it, then the output (0 for a count not known).

    >>> anthropic_usage(Usage(8000, 50, cache_read_tokens=5000, cache_write_tokens=2000))
    {'input_tokens': 1000, 'cache_creation_input_tokens': 2000, 'cache_read_input_tokens': 5000, 'output_tokens': 50}
    """
    whole = (usage and usage.input_tokens) or 0
    read = (usage and usage.cache_read_tokens) or 0
    write = (usage and usage.cache_write_tokens) or 0
    return {
        "input_tokens": max(whole - read - write, 0),
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": (usage and usage.output_tokens) or 0,
    }


def _fail(message: str, param: str) -> RequestError:
    return RequestError(message, param=param)


def _text_of(blocks: list[Any]) -> str | None:
    """The text of blocks that are all text, else None. Blocks that mark a prompt-cache
    breakpoint (``cache_control``) are kept as blocks: an Anthropic (or Bedrock) upstream
    caches by the marker, and the other providers leave it out."""
    if all(
        isinstance(b, dict) and b.get("type") == "text" and "cache_control" not in b for b in blocks
    ):
        return "\n\n".join(str(b.get("text") or "") for b in blocks)
    return None


def _check_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(
        isinstance(b, dict) and isinstance(b.get("type"), str) for b in content
    ):
        raise _fail(f"{where}.content must be a string or a list of content blocks", "messages")
    return content


def _system(value: Any) -> str | list[Any] | None:
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, list) and all(
        isinstance(b, dict) and b.get("type") == "text" for b in value
    ):
        text = _text_of(value)
        if text is None:
            return value  # text blocks with a cache breakpoint, kept as they came
        return text or None
    raise _fail("system must be a string or a list of text blocks", "system")


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """A user turn as spout's messages: each ``tool_result`` a ``tool`` message, then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    messages: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for j, block in enumerate(_check_blocks(content, where)):
        if block["type"] == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise _fail(f"{where}.content[{j}].tool_use_id must be a string", "messages")
            result = block.get("content")
            if isinstance(result, list):
                # All text: one string. Images and other blocks go on as Anthropic sent them.
                text = _text_of(result)
                result = result if text is None else text
            elif result is not None and not isinstance(result, str):
                raise _fail(
                    f"{where}.content[{j}].content must be a string or a list of blocks",
                    "messages",
                )
            message = {
                "role": "tool",
                "tool_call_id": block["tool_use_id"],
                "content": result or "",
            }
            if block.get("is_error"):
                message["is_error"] = True
            if block.get("cache_control"):
                message["cache_control"] = block["cache_control"]
            messages.append(message)
        else:
            # Images and documents as spout's portable parts, which the upstream's adapter
            # writes in its own shape (Anthropic's blocks again for an Anthropic upstream).
            rest.append(anthropic_block(block, f"{where}.content[{j}]") or block)
    if rest:
        # Text alone becomes a string every provider takes.
        text = _text_of(rest)
        messages.append({"role": "user", "content": rest if text is None else text})
    return messages


def _assistant(content: Any, where: str) -> dict[str, Any]:
    """An assistant turn: text, ``tool_use`` as tool calls, ``thinking`` as reasoning."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    signature: str | None = None
    for j, block in enumerate(_check_blocks(content, where)):
        kind = block["type"]
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _fail(f"{where}.content[{j}] (tool_use) needs an id and a name", "messages")
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block["name"],
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking") or ""))
            if block.get("signature"):
                signature = str(block["signature"])
        elif kind == "redacted_thinking":
            # No spout message field holds it; the turn is sent on without it.
            continue
        else:
            raise _fail(
                f"{where}.content[{j}]: an assistant block of type {kind!r:.40} is not supported",
                "messages",
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    if reasoning or signature:
        message["reasoning"] = "".join(reasoning)
    if signature:
        message["reasoning_signature"] = signature
    return message


def _messages(value: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    listed, each = "a non-empty list of messages", "an object with a role and content"
    for where, message in objects(value, "messages", listed=listed, each=each):
        role = message.get("role")
        if role == "user":
            messages += _user(message.get("content"), where)
        elif role == "assistant":
            messages.append(_assistant(message.get("content"), where))
        else:
            raise _fail(f"{where}.role must be 'user' or 'assistant', not {role!r:.40}", "messages")
    return messages


def _tools(value: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Custom tools in chat completions' shape (spout's), server tools as they are."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise _fail("tools must be a list of tools", "tools")
    tools: list[dict[str, Any]] = []
    names: list[str] = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _fail(f"tools[{i}] must be an object with a name", "tools")
        if tool.get("type") in (None, "custom"):
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise _fail(f"tools[{i}].input_schema must be a JSON Schema object", "tools")
            function = {"name": tool["name"], "parameters": schema}
            if tool.get("description"):
                function["description"] = tool["description"]
            custom: dict[str, Any] = {"type": "function", "function": function}
            if tool.get("cache_control"):
                custom["cache_control"] = tool["cache_control"]  # the Tool keeps it
            tools.append(custom)
            names.append(tool["name"])
        else:
            # A server tool (web search, code execution...): for an Anthropic upstream, as is.
            tools.append(tool)
    return tools, names


def _tool_choice(value: Any, names: list[str]) -> Any:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        if not names:
            raise _fail("tool_choice 'any' needs tools", "tool_choice")
        return "required"
    if kind == "tool":
        return named_choice(value.get("name"), names, "tool_choice")
    raise _fail(
        "tool_choice must be {'type': 'auto' | 'any' | 'none'} or {'type': 'tool', 'name': ...}",
        "tool_choice",
    )


class MessagesProtocol:
    """``POST /v1/messages``: Anthropic's Messages API, streamed (``message_start`` ...
    ``message_stop``) or not (one ``message``).

    Example::

        request = PROTOCOL.parse({"model": "claude", "max_tokens": 100,
                                  "messages": [{"role": "user", "content": "Hi"}]})
        request.params["max_tokens"]     # 100
    """

    name = "anthropic"

    def parse(self, body: Any) -> Request:
        body = request_object(body)
        refuse_unknown(body, _KNOWN | frozenset(_REFUSED))
        refuse_given(body, _REFUSED, UNSUPPORTED)
        model = request_model(body)
        max_tokens = at_least_one(number(body, "max_tokens", integer=True), "max_tokens")
        if max_tokens is None:
            raise _fail("max_tokens is required", "max_tokens")
        messages = _messages(body.get("messages"))
        system = _system(body.get("system"))
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        tools, names = _tools(body.get("tools"))
        params: dict[str, Any] = {"max_tokens": max_tokens}
        take_numbers(body, params, ("temperature", "top_p"))
        take_numbers(body, params, ("top_k",), integer=True)
        stop = check_stop(body.get("stop_sequences"), "stop_sequences")
        if stop is not None:
            params["stop"] = [stop] if isinstance(stop, str) else stop
        choice = _tool_choice(body.get("tool_choice"), names)
        if choice is not None:
            params["tool_choice"] = choice
        thinking = object_field(body, "thinking")
        if thinking is not None and thinking.get("type") != "disabled":
            params["thinking"] = thinking
        output_format = body.get("output_format")
        config = object_field(body, "output_config")
        if config is not None:
            # {"format": {...}, "effort": ...}: the format is structured output; the effort a
            # hint spout has no setting for.
            output_format = config.get("format") or output_format
        if output_format is not None:
            # Structured outputs ({"type": "json_schema", "schema": {...}}): spout's
            # response_format, in chat completions' words.
            schema = output_format.get("schema") if isinstance(output_format, dict) else None
            params["response_format"] = check_json_schema_format(
                {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}},
                "output_format",
            )
        return Request(
            model=model,
            messages=messages,
            stream=flag(body, "stream"),
            tools=tools,
            params=params,
            extras={"max_tokens": max_tokens},
        )

    def encoder(self, request: Request, *, response_id: str, model: str) -> MessagesEncoder:
        return MessagesEncoder(request, response_id=response_id, model=model)

    def body(
        self, request: Request, response: Response, *, response_id: str, model: str
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if response.reasoning or response.reasoning_signature:
            content.append(
                {
                    "type": "thinking",
                    "thinking": response.reasoning,
                    "signature": response.reasoning_signature or "",
                }
            )
        if response.text or response.citations or not (response.tool_calls or response.refusal):
            text: dict[str, Any] = {"type": "text", "text": response.text}
            if response.citations:
                text["citations"] = [anthropic_citation(c) for c in response.citations]
            content.append(text)
        if response.refusal:
            # A text block of its own, marked by stop_reason "refusal" (see MessagesEncoder).
            content.append({"type": "text", "text": response.refusal})
        for call in response.tool_calls:
            content.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            )
        usage = response.usage
        extra: dict[str, Any] = {}
        if response.files:
            extra["spout_files"] = [file_block(file) for file in response.files]
        if response.raw_events:
            extra["spout_raw_events"] = [raw_object(r.type, r.data) for r in response.raw_events]
        return {
            "id": response_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason(response),
            "stop_sequence": None,
            "usage": anthropic_usage(usage),
            **extra,
        }

    def error_body(self, exc: BaseException) -> tuple[int, Any]:
        return anthropic_error(exc)


def stop_reason(response: Response) -> str:
    raw = response.raw_finish_reason
    if raw in _STOP_REASONS:
        return raw
    reason = _STOP.get(response.finish_reason or "stop", "end_turn")
    if reason == "end_turn" and response.tool_calls:
        return "tool_use"
    return reason


def _event(name: str, data: dict[str, Any]) -> bytes:
    return sse_frame(orjson.dumps(data), name)


def file_block(file: File) -> dict[str, Any]:
    """A file the model answered with in the shape of the Messages API's input blocks:
    ``image`` for an image, else ``document``, each with a ``base64`` source (a ``url`` one for
    a file given by URL). The API has no block for a file it answers with, and its SDKs refuse
    one in ``content``: the gateway sends it in spout's ``spout_file`` event (streamed) and
    ``spout_files`` field (not streamed)."""
    if file.url is not None:
        source: dict[str, Any] = {"type": "url", "url": file.url}
    else:
        source = {"type": "base64", "media_type": file.media_type, "data": file.base64()}
    block: dict[str, Any] = {"type": "image" if file.kind == "image" else "document"}
    block["source"] = source
    if file.name and block["type"] == "document":
        block["title"] = file.name
    return block


class _Call:
    """A tool call on its way to a ``tool_use`` block."""

    __slots__ = ("arguments", "block", "ended", "id", "name", "sent")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.block: int | None = None
        self.arguments: list[str] = []  # held back while another block is open
        self.sent = False
        self.ended: ToolCall | None = None


class MessagesEncoder:
    """spout events as the Messages API's stream events.

    Content blocks get increasing indices, one open at a time (the SDK's accumulator appends a
    block at each ``content_block_start`` and finds it again by index): text, thinking and each
    tool call its own block. Calls whose argument deltas interleave upstream are sent one after
    another, the later ones held back until the open one ends.

    A refusal goes as a text block of its own, and the message ends with ``stop_reason:
    "refusal"``. The Messages API has no field for a refusal's text (Claude marks a refusal in
    its stop reason alone, after whatever text it wrote); a text block is the one place the
    protocol has for words the model said, so an Anthropic client still shows why the model
    declined, and the stop reason tells a program that it did. Its own block keeps it apart
    from any answer text before it.
    """

    __slots__ = (
        "_blocks",
        "_calls",
        "_kind",
        "_model",
        "_open",
        "_pending",
        "_request_id",
        "_signed",
        "_started",
        "_usage",
    )

    def __init__(self, request: Request, *, response_id: str, model: str) -> None:
        self._request_id = response_id
        self._model = model
        self._started = False
        self._blocks = 0
        self._open: int | None = None
        # "text", "refusal" (a text block), "thinking", or "tool" for the open block
        self._kind: str | None = None
        self._signed = False
        self._calls: dict[int, _Call] = {}
        self._pending: list[_Call] = []
        self._usage: Usage | None = None

    def start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        usage = self._usage
        message: dict[str, Any] = {
            "id": self._request_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage(usage),
        }
        return [
            _event("message_start", {"type": "message_start", "message": message}),
            _event("ping", {"type": "ping"}),
        ]

    # -- blocks

    def _close(self, frames: list[bytes]) -> None:
        if self._open is not None:
            frames.append(
                _event("content_block_stop", {"type": "content_block_stop", "index": self._open})
            )
            self._open = None
            self._kind = None

    def _begin(self, frames: list[bytes], kind: str, block: dict[str, Any]) -> int:
        self._close(frames)
        index = self._blocks
        self._blocks += 1
        self._open = index
        self._kind = kind
        frames.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        return index

    def _delta(self, frames: list[bytes], delta: dict[str, Any]) -> None:
        frames.append(
            _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._open, "delta": delta},
            )
        )

    def _begin_call(self, frames: list[bytes], call: _Call) -> None:
        call.block = self._begin(
            frames, "tool", {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        )
        for part in call.arguments:
            self._delta(frames, {"type": "input_json_delta", "partial_json": part})
        call.sent = bool(call.arguments)
        call.arguments = []
        if call.ended is not None:
            self._end_call(frames, call, call.ended)

    def _end_call(self, frames: list[bytes], call: _Call, tool_call: ToolCall) -> None:
        if not call.sent:
            # A call sent whole (an object, not text): its JSON in one delta.
            self._delta(
                frames, {"type": "input_json_delta", "partial_json": arguments_text(tool_call)}
            )
            call.sent = True
        self._close(frames)
        while self._pending and self._open is None:
            self._begin_call(frames, self._pending.pop(0))

    # -- events

    def feed(self, event: Event) -> list[bytes]:
        if type(event) is Usage:
            self._usage = event
            return []
        if type(event) is ResponseStart:
            return []  # the gateway names the message; it does not start it
        frames = [] if self._started else self.start()
        if type(event) is TextDelta:
            if event.text:
                if self._kind != "text":
                    self._begin(frames, "text", {"type": "text", "text": ""})
                self._delta(frames, {"type": "text_delta", "text": event.text})
        elif type(event) is RefusalDelta:
            if event.text:
                if self._kind != "refusal":
                    self._begin(frames, "refusal", {"type": "text", "text": ""})
                self._delta(frames, {"type": "text_delta", "text": event.text})
        elif type(event) is ReasoningDelta:
            if event.text:
                if self._kind != "thinking" or self._signed:
                    self._begin(
                        frames, "thinking", {"type": "thinking", "thinking": "", "signature": ""}
                    )
                    self._signed = False
                self._delta(frames, {"type": "thinking_delta", "thinking": event.text})
            if event.signature:
                if self._kind != "thinking":
                    self._begin(
                        frames, "thinking", {"type": "thinking", "thinking": "", "signature": ""}
                    )
                self._delta(frames, {"type": "signature_delta", "signature": event.signature})
                self._signed = True
        elif type(event) is ToolCallStart:
            call = self._calls[event.index] = _Call(event.id, event.name)
            if self._kind == "tool":
                self._pending.append(call)
            else:
                self._begin_call(frames, call)
        elif type(event) is ToolCallDelta:
            streaming = self._calls.get(event.index)
            if streaming is not None and event.arguments:
                if streaming.block is not None and streaming.block == self._open:
                    streaming.sent = True
                    self._delta(
                        frames, {"type": "input_json_delta", "partial_json": event.arguments}
                    )
                else:
                    streaming.arguments.append(event.arguments)
        elif type(event) is ToolCallEnd:
            ending = self._calls.get(event.index)
            if ending is None:
                # An end with no start: a call that came whole.
                ending = self._calls[event.index] = _Call(event.tool_call.id, event.tool_call.name)
                self._pending.append(ending)
            call = ending
            if call.block is not None and call.block == self._open:
                self._end_call(frames, call, event.tool_call)
            else:
                call.ended = event.tool_call
                if call in self._pending and self._kind != "tool":
                    self._pending.remove(call)
                    self._begin_call(frames, call)
        elif type(event) is Citation:
            # Anthropic's citations_delta, on the text block it supports (one opened for it
            # when another, or none, is open: Anthropic sends a cited block's citations first).
            if self._kind != "text":
                self._begin(frames, "text", {"type": "text", "text": ""})
            self._delta(frames, {"type": "citations_delta", "citation": anthropic_citation(event)})
        elif type(event) is FileEnd:
            # No block of the API's holds a file the model made: an event of spout's own,
            # which the SDKs pass on and their accumulators skip.
            frames.append(
                _event(
                    "spout_file",
                    {
                        "type": "spout_file",
                        "index": event.index,
                        "content_block": file_block(event.file),
                    },
                )
            )
        elif type(event) is RawEvent:
            # Content spout did not recognise: likewise an event of spout's own.
            frames.append(
                _event(
                    "spout_raw_event",
                    {"type": "spout_raw_event", "raw": raw_object(event.type, event.data)},
                )
            )
        # Finish comes with end().
        return frames

    def end(self, response: Response) -> list[bytes]:
        frames = [] if self._started else self.start()
        self._close(frames)
        while self._pending:
            call = self._pending.pop(0)
            if call.ended is None:
                call.ended = ToolCall(call.id, call.name)
            self._begin_call(frames, call)
        usage = response.usage
        delta_usage: dict[str, Any] = {"output_tokens": usage.output_tokens or 0}
        if usage.input_tokens is not None:
            # Cumulative, as Anthropic's own message_delta repeats them.
            delta_usage = anthropic_usage(usage)
        frames.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason(response), "stop_sequence": None},
                    "usage": delta_usage,
                },
            )
        )
        frames.append(_event("message_stop", {"type": "message_stop"}))
        return frames

    def error(self, exc: BaseException) -> list[bytes]:
        # https://docs.anthropic.com/en/docs/build-with-claude/streaming#error-events
        _, body = anthropic_error(exc)
        return [_event("error", body)]


PROTOCOL = MessagesProtocol()
