"""Anthropic's Messages API: requests, the SSE event stream, and errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import orjson

from .._capabilities import Capabilities, ModelCapability
from .._errors import (
    ConfigurationError,
    ProtocolError,
    ProviderError,
)
from .._events import (
    Citation,
    Event,
    Finish,
    FinishReason,
    RawEvent,
    ReasoningDelta,
    ResponseStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from .._files import File, unsupported
from .._request import HTTPRequest, header_value
from ._base import (
    Call,
    HTTPProvider,
    NamedToolChoice,
    SSEStreamParser,
    WireMapper,
    load_json_object,
    streaming_capabilities,
    text_content,
    tool_call_from_json,
)
from ._common import (
    ToolIds,
    error_json,
    error_of_type,
    error_text,
    history_tool_calls,
    object_arguments,
    portable_file,
    retry_after_seconds,
    set_stream,
    set_tools,
    token_count,
    tool_declaration,
    usage_from,
)

__all__ = [
    "AnthropicProvider",
    "MessageEventMapper",
    "MessagesParser",
    "can_prefill",
    "claude_inputs",
    "message_events",
    "messages_body",
    "messages_error",
]

#: Sent with every request; https://docs.anthropic.com/en/api/versioning
API_VERSION = "2023-06-01"

#: ``max_tokens`` is required by the Messages API; this is sent when the caller gives none.
DEFAULT_MAX_TOKENS = 4096

# https://docs.anthropic.com/en/api/handling-stop-reasons
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
    # A server tool loop paused; the turn may be continued by sending it back. Not an error.
    "pause_turn": "stop",
}

# The HTTP status each documented error type stands for (https://docs.anthropic.com/en/api/errors),
# so an ``event: error`` inside a 200 stream becomes the same class as the status would.
_STATUS_FOR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def anthropic_error(
    error: Any,
    *,
    status_code: int | None,
    provider: str,
    model: str | None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The spout error for an Anthropic error object (``{"type": ..., "message": ...}``).

    ``status_code`` is None for an error sent inside a stream: the class then follows the
    error's type, and the error carries no status, since none was sent.
    """
    if isinstance(error, dict):
        error_type = error.get("type")
        error_type = None if error_type is None else str(error_type)
        message = str(error.get("message") or error_type or error)
    else:
        error_type, message = None, str(error)
    return error_of_type(
        status_code,
        message,
        error_type,
        _STATUS_FOR_TYPE,
        provider=provider,
        model=model,
        request_id=request_id,
        body=error,
        retry_after=retry_after,
    )


class MessageEventMapper(WireMapper):
    """Turns parsed Messages API stream events into spout events, with no I/O.

    Content blocks are keyed by their ``index``; a ``tool_use`` block becomes a tool call
    numbered in the order calls appear (0, 1...), whatever its block index. A text block's
    ``citations_delta`` events become :class:`Citation` events when the block ends, each
    placing the block in the answer's text. A block of a type spout does not know
    (``server_tool_use``, ``web_search_tool_result``, ``mcp_tool_use``...) comes whole as a
    :class:`RawEvent` when it ends, its ``input`` joined from its deltas.
    """

    __slots__ = (
        "_blocks",
        "_finish_raw",
        "_input_tokens",
        "_others",
        "_output_tokens",
        "_texts",
        "_tool_count",
        "_usage_extras",
        "chars",
        "stopped",
    )

    def __init__(self, provider: str, model: str | None) -> None:
        super().__init__(provider, model)
        # block index -> [tool index, id, name, argument parts] for open tool_use blocks
        self._blocks: dict[int, list[Any]] = {}
        self._tool_count = 0
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._usage_extras: dict[str, Any] = {}
        self._finish_raw: str | None = None
        # block index -> [the block's start in the answer's text, its citations] for open
        # text blocks
        self._texts: dict[int, list[Any]] = {}
        # block index -> [the block as it started, its input's JSON parts] for open blocks
        # of types spout does not know
        self._others: dict[int, list[Any]] = {}
        #: How many characters of answer text went out: a citation's span is placed in it.
        #: (The parser counts the text it sends itself.)
        self.chars = 0
        #: Whether ``message_stop`` arrived: the stream's terminator.
        self.stopped = False

    def map(self, data: dict[str, Any]) -> list[Event]:
        kind = data.get("type")
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_stop":
            return self._block_stop(data.get("index"))
        if kind == "message_start":
            message = data.get("message") or {}
            events: list[Event] = [ResponseStart(message.get("id"), message.get("model"))]
            usage = message.get("usage")
            if usage:
                events.append(self._update_usage(usage))
            return events
        if kind == "message_delta":
            delta = data.get("delta") or {}
            if delta.get("stop_reason"):
                self._finish_raw = delta["stop_reason"]
            usage = data.get("usage")
            return [self._update_usage(usage)] if usage else []
        if kind == "message_stop":
            if self.stopped:
                return []
            self.stopped = True
            return self.finish()
        if kind == "error":
            raise anthropic_error(
                data.get("error"), status_code=None, provider=self._provider, model=self._model
            )
        # "ping", and event types added later: the docs ask clients to ignore unknown ones.
        return []

    def _delta(self, data: dict[str, Any]) -> list[Event]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if not text:
                return []
            self.chars += len(text)
            return [TextDelta(text)]
        if kind == "input_json_delta":
            index = data.get("index", -1)
            block = self._blocks.get(index)
            partial = delta.get("partial_json")
            if block is None or not partial:
                other = self._others.get(index)
                if other is not None and partial:
                    other[1].append(partial)  # a server tool's input
                return []
            block[3].append(partial)
            return [ToolCallDelta(block[0], partial)]
        if kind == "citations_delta":
            citation = delta.get("citation")
            if isinstance(citation, dict):
                # The block's place was noted when it started (an index never seen: here).
                self._texts.setdefault(data.get("index", -1), [self.chars, []])[1].append(citation)
            return []
        if kind == "thinking_delta":
            thinking = delta.get("thinking")
            return [ReasoningDelta(thinking)] if thinking else []
        if kind == "signature_delta":
            signature = delta.get("signature")
            return [ReasoningDelta(signature=signature)] if signature else []
        # A kind added later: kept, as sent, so that nothing vanishes.
        return [RawEvent(str(kind), delta)]

    def _block_start(self, data: dict[str, Any]) -> list[Event]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            index = self._tool_count
            self._tool_count += 1
            call_id = block.get("id") or f"call_{index}"
            name = block.get("name") or ""
            self._blocks[data.get("index", -1)] = [index, call_id, name, []]
            return [ToolCallStart(index, call_id, name)]
        # Blocks start empty in practice; anything they do carry is content all the same.
        if kind == "text":
            # Its citations may come before its text or after it: its place is noted now.
            self._texts[data.get("index", -1)] = [self.chars, list(block.get("citations") or ())]
            if block.get("text"):
                self.chars += len(block["text"])
                return [TextDelta(block["text"])]
            return []
        if kind == "thinking":
            if block.get("thinking") or block.get("signature"):
                thinking = block.get("thinking") or ""
                return [ReasoningDelta(thinking, block.get("signature") or None)]
            return []
        if kind == "redacted_thinking":
            # Thinking the safety systems encrypted: it comes whole, and must go back as it
            # came, in its place among the turn's thinking blocks.
            # https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
            return [ReasoningDelta(redacted=str(block.get("data") or ""))]
        # server_tool_use and its results run on Anthropic's side, not the caller's: they
        # are not tool calls to run, but content all the same, given whole at their end.
        self._others[data.get("index", -1)] = [block, []]
        return []

    def _block_stop(self, index: Any) -> list[Event]:
        block = self._blocks.pop(index, None)
        if block is None:
            text = self._texts.pop(index, None)
            if text is not None:
                return _citations(text[1], text[0], self.chars)
            other = self._others.pop(index, None)
            if other is not None:
                return [_raw_block(other[0], "".join(other[1]))]
            return []
        tool_index, call_id, name, parts = block
        return [ToolCallEnd(tool_index, tool_call_from_json(call_id, name, "".join(parts)))]

    def _update_usage(self, usage: dict[str, Any]) -> Usage:
        # message_delta's counts are cumulative: each one replaces, never adds.
        # https://docs.anthropic.com/en/docs/build-with-claude/streaming
        update = usage_from(usage, "input_tokens", "output_tokens")
        if update.input_tokens is not None:
            self._input_tokens = update.input_tokens
        if update.output_tokens is not None:
            self._output_tokens = update.output_tokens
        self._usage_extras.update(update.extras)
        # input_tokens counts only what came after the last cache breakpoint: the prompt read
        # from the cache and the prompt written to it are counted apart, and the whole input
        # is the three added up. https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching
        read = token_count(self._usage_extras, "cache_read_input_tokens")
        write = token_count(self._usage_extras, "cache_creation_input_tokens")
        uncached = self._input_tokens
        whole = None if uncached is None else uncached + (read or 0) + (write or 0)
        return Usage(
            whole,
            self._output_tokens,
            dict(self._usage_extras),
            cache_read_tokens=read,
            cache_write_tokens=write,
        )

    def finish(self) -> list[Event]:
        """The events that close the response: tool calls left open, then :class:`Finish`."""
        events: list[Event] = []
        for index in sorted({*self._blocks, *self._texts, *self._others}):
            events += self._block_stop(index)
        raw = self._finish_raw
        events.append(Finish(_FINISH.get(raw, "stop") if raw else "stop", raw))
        return events


def _citations(citations: list[Any], start: int, end: int) -> list[Event]:
    """A text block's citations: each names the source's words it cites (``cited_text``) and
    the source (a document's title, a web page's url), and supports the block, which spans
    ``start`` to ``end`` of the answer's text."""
    events: list[Event] = []
    for citation in citations:
        if not isinstance(citation, dict):
            continue
        events.append(
            Citation(
                citation.get("cited_text"),
                # web_search_result_location's url; search_result_location's source
                citation.get("url") or citation.get("source"),
                citation.get("title") or citation.get("document_title"),
                start,
                end,
                citation,
            )
        )
    return events


def _thinking_block(block: dict[str, Any]) -> dict[str, Any]:
    """One of spout's reasoning blocks as Anthropic takes it back."""
    if "redacted" in block:
        return {"type": "redacted_thinking", "data": block["redacted"]}
    return {
        "type": "thinking",
        "thinking": block.get("text") or "",
        "signature": block.get("signature") or "",
    }


def _raw_block(block: dict[str, Any], input_json: str) -> RawEvent:
    """A content block spout does not know, as Anthropic sent it, with the ``input`` its
    ``input_json_delta`` events carried (parsed; as text when it is not JSON)."""
    if input_json:
        try:
            value: Any = orjson.loads(input_json)
        except orjson.JSONDecodeError:
            value = input_json
        block = {**block, "input": value}
    return RawEvent(str(block.get("type")), block)


class MessagesParser(SSEStreamParser[MessageEventMapper]):
    """SSE bytes in, events out, for the Messages API stream."""

    __slots__ = ()

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        mapper = self._mapper
        map_event = mapper.map
        loads = orjson.loads
        append = events.append
        for sse in self._decoder.feed(chunk):
            name = sse.event
            if name == "ping":
                continue  # keeps the connection alive; says nothing about the answer
            try:
                data = loads(sse.raw)
            except orjson.JSONDecodeError as exc:
                raise ProtocolError(
                    f"a stream event is not valid JSON ({exc})", data=sse.raw
                ) from None
            if type(data) is not dict:
                continue
            if name == "content_block_delta":
                # The hot path: a piece of text, nearly every event of a stream.
                delta = data.get("delta")
                if type(delta) is dict and delta.get("type") == "text_delta":
                    text = delta.get("text")
                    if text:
                        append(TextDelta(text))
                        mapper.chars += len(text)  # where a citation's span is placed
                    continue
            if "type" not in data:
                data["type"] = name
            events += map_event(data)
        if self._decoder.error is not None:
            raise self._decoder.error  # after the events before it: StreamParser delivers them

    def _close(self) -> list[Event]:
        self._end(self._mapper.stopped, "the stream ended before its end: no message_stop")
        return []


class AnthropicProvider(HTTPProvider):
    """Anthropic's Messages API at ``{base_url}/v1/messages``.

    Example::

        llm = create_llm("anthropic", model="claude-sonnet-4-5")          # ANTHROPIC_API_KEY
        print(llm.generate("Say hi", max_tokens=100).text)

    ``base_url`` is taken as Anthropic's SDK takes it, without ``/v1`` (default
    ``https://api.anthropic.com``, or ``ANTHROPIC_BASE_URL``). ``max_tokens`` is required by
    the API: 4096 is sent when the call gives none. System messages become the top-level
    ``system`` field; any keyword spout does not know (``thinking``, ``tools``, ``top_k``...)
    goes into the request body as it is. ``seed`` is refused: Anthropic has no such parameter.
    """

    name: ClassVar[str] = "anthropic"
    price_list: ClassVar[str | None] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    base_url_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    accept_header: ClassVar[str] = "accept"
    # Context windows from Anthropic's models overview. OpenRouter writes versions with dots
    # (claude-3.5-sonnet, claude-sonnet-4.5): the prefixes cover both.
    context_windows: ClassVar[Mapping[str, int]] = {
        "claude-3": 200_000,
        "claude-sonnet-4": 200_000,
        "claude-opus-4": 200_000,
        "claude-haiku-4": 200_000,
    }
    litellm_models: ClassVar[tuple[str, ...]] = ("claude-",)

    @classmethod
    def litellm_config(
        cls, model: str | None, config: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        # litellm takes Anthropic's endpoint whole; spout its base, as the SDK does.
        base_url = config.get("base_url")
        if base_url is not None:
            config = {**config, "base_url": base_url.rstrip("/").removesuffix("/v1/messages")}
        return model, config

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        **transport: Any,
    ) -> None:
        super().__init__(model, headers=headers, **transport)
        self._resolve_endpoint(base_url, api_key)
        key = self._require_key()
        self._url = f"{self.base_url}/v1/messages"
        self._headers = {
            "x-api-key": key,
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
        }

    def capabilities(self) -> Capabilities:
        return {
            **streaming_capabilities(tools=True, tool_streaming=True, reasoning=True),
            **claude_inputs(self.model),
        }

    def can_prefill(self, call: Call) -> bool:
        return can_prefill(call)

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        body = {"model": self.model, **messages_body(call, stream=stream, provider=self.name)}
        return self._post_json(self._url, self._headers, body, stream=stream)

    def new_parser(self, call: Call) -> MessagesParser:
        return MessagesParser(MessageEventMapper(self.name, self.model))

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        return message_events(body, self.name, self.model)

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        return messages_error(status, headers, body, self.name, self.model)


# -- the wire's pieces, shared with Claude on Vertex AI (vertex.py) ----------------------------


def can_prefill(call: Call) -> bool:
    """Whether a last assistant message is continued: always, but with extended thinking,
    where prefilling is refused (docs.anthropic.com, "Extended thinking" > feature
    compatibility)."""
    return not call.params.get("thinking")


def claude_inputs(model: str | None) -> Capabilities:
    """The files a Claude model takes: images and PDFs (every current model, by Anthropic's
    vision and PDF support pages; Claude 2 and Instant, retired, took text only), never audio.
    """
    name = (model or "").lower()
    text_only = "claude-2" in name or "claude-instant" in name
    return {
        ModelCapability.VISION: not text_only,
        ModelCapability.PDF_INPUT: not text_only,
        ModelCapability.AUDIO_INPUT: False,
    }


def messages_body(call: Call, *, stream: bool, provider: str = "anthropic") -> dict[str, Any]:
    """A Messages API request body for a call, all but its ``model``. Files in a user turn's
    portable parts become ``image`` and ``document`` blocks; one the API cannot take raises
    ConfigurationError naming it and ``provider``.

    Example::

        messages_body(Call([{"role": "user", "content": "Hi"}]), stream=True)
        # {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4096, "stream": True}
    """
    params = dict(call.params)
    if params.pop("seed", None) is not None:
        raise ConfigurationError(
            "Anthropic does not take seed: the Messages API has no such parameter; "
            "leave seed out for this provider"
        )
    system, messages = _messages(call.messages, provider)
    body: dict[str, Any] = {"messages": messages}
    if system is not None:
        body["system"] = system
    max_tokens = params.pop("max_tokens", None)
    body["max_tokens"] = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    stop = params.pop("stop", None)
    if stop is not None:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for key, value in params.items():
        if value is not None:
            body[key] = value
    set_tools(body, call, _tool, _tool_choice)
    set_stream(body, stream)
    return body


def message_events(body: bytes, provider: str, model: str | None) -> list[Event]:
    """The events of a whole Messages API response (a call not streamed)."""
    data = load_json_object(body)
    if data.get("type") == "error":
        raise anthropic_error(
            data.get("error"),
            status_code=None,
            provider=provider,
            model=model,
            request_id=data.get("request_id"),
        )
    mapper = MessageEventMapper(provider, model)
    events: list[Event] = [ResponseStart(data.get("id"), data.get("model"))]
    tool_index = 0
    chars = 0
    for block in data.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text = block.get("text") or ""
            if text:
                events.append(TextDelta(text))
            events += _citations(block.get("citations") or [], chars, chars + len(text))
            chars += len(text)
        elif kind == "thinking":
            if block.get("thinking"):
                events.append(ReasoningDelta(block["thinking"]))
            if block.get("signature"):
                events.append(ReasoningDelta(signature=block["signature"]))
        elif kind == "redacted_thinking":
            events.append(ReasoningDelta(redacted=str(block.get("data") or "")))
        elif kind == "tool_use":
            call_id = block.get("id") or f"call_{tool_index}"
            name = block.get("name") or ""
            arguments = object_arguments(block.get("input"))
            events.append(ToolCallStart(tool_index, call_id, name))
            # The whole response carries the input as an object, not as JSON text.
            events.append(
                ToolCallEnd(tool_index, ToolCall(call_id, name, arguments, arguments_raw=None))
            )
            tool_index += 1
        elif isinstance(block, dict):
            events.append(_raw_block(block, ""))  # a block spout does not know, as sent
    events += mapper.map(
        {
            "type": "message_delta",
            "delta": {"stop_reason": data.get("stop_reason")},
            "usage": data.get("usage"),
        }
    )
    events += mapper.finish()
    return events


def messages_error(
    status: int, headers: Mapping[str, str], body: bytes, provider: str, model: str | None
) -> ProviderError:
    """The spout error for an HTTP error response carrying an Anthropic error body."""
    data = error_json(body)
    error = data.get("error") if isinstance(data, dict) else None
    if error is None:
        error = {"message": error_text(status, body)}
    request_id = header_value(headers, "request-id")
    if request_id is None and isinstance(data, dict) and data.get("request_id"):
        request_id = str(data["request_id"])
    return anthropic_error(
        error,
        status_code=status,
        provider=provider,
        model=model,
        request_id=request_id,
        retry_after=retry_after_seconds(headers),
    )


def _tool(tool: Any) -> dict[str, Any]:
    """A :class:`~spout.Tool` as a Messages API tool: its schema is ``input_schema``, and its
    ``cache_control`` (a prompt-cache breakpoint) goes with it."""
    out = tool_declaration(tool, "input_schema")
    if tool.cache_control is not None:
        out["cache_control"] = tool.cache_control
    return out


def _tool_choice(choice: Any) -> Any:
    """``tool_choice`` as an object: "required" is Anthropic's ``any``, a name is ``tool``.

    https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use
    """
    if isinstance(choice, NamedToolChoice):
        return {"type": "tool", "name": choice.name}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, str):
        return {"type": choice}  # "auto", "none"
    return choice


#: Anthropic's tool-use ids: ``^[a-zA-Z0-9_-]+$`` (``id`` of a ``tool_use`` block and
#: ``tool_use_id`` of a ``tool_result`` in the Messages API reference); an id from another
#: provider ("call:1/x") is refused with a 400, so it is sent without the other characters.
ANTHROPIC_TOOL_IDS = ToolIds.of_chars("a-zA-Z0-9_-")


def _messages(
    messages: list[dict[str, Any]], provider: str = "anthropic"
) -> tuple[Any, list[dict[str, Any]]]:
    """spout's OpenAI-style messages as Anthropic's ``system`` and ``messages``.

    System messages are lifted out (the Messages API has no system role); assistant tool
    calls become ``tool_use`` blocks and ``tool`` messages ``tool_result`` blocks in a user
    turn; a user turn's files (portable parts) become ``image`` and ``document`` blocks; any
    other message is sent as its role and content, which may already be a list of Anthropic
    content blocks. Tool-call ids Anthropic would refuse are rewritten (the calls' and their
    results' alike, :data:`ANTHROPIC_TOOL_IDS`); the caller's messages keep theirs.
    """
    messages = ANTHROPIC_TOOL_IDS.rewrite(messages)
    system: list[Any] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            if isinstance(content, list):
                system.extend(content)
            elif content:
                system.append({"type": "text", "text": str(content)})
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": content if isinstance(content, list) else text_content(content),
            }
            if message.get("is_error"):
                block["is_error"] = True
            # The results of parallel calls go back together, in one user turn.
            last = out[-1] if out else None
            if (
                last
                and last["role"] == "user"
                and isinstance(last["content"], list)
                and all(
                    isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"]
                )
            ):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif role == "assistant" and (
            message.get("tool_calls")
            or message.get("reasoning_signature")
            or message.get("reasoning_blocks")
        ):
            blocks: list[Any] = []
            if message.get("reasoning_blocks"):
                # Each thinking and redacted_thinking block, in order, as it came.
                blocks += [
                    _thinking_block(block)
                    for block in message["reasoning_blocks"]
                    if "item" not in block  # another API's reasoning items
                ]
            elif message.get("reasoning_signature"):
                # With extended thinking, the turn that called tools must be sent back with its
                # thinking block, signature intact, before the tool_use blocks.
                # https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
                blocks.append(
                    {
                        "type": "thinking",
                        "thinking": message.get("reasoning") or "",
                        "signature": message["reasoning_signature"],
                    }
                )
            if isinstance(content, list):
                blocks.extend(content)
            elif content:
                blocks.append({"type": "text", "text": str(content)})
            for tool_call, name, arguments in history_tool_calls(message):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": tool_call.get("id"),
                        "name": name,
                        "input": arguments,
                    }
                )
            out.append({"role": "assistant", "content": blocks})
        else:
            if role == "user" and isinstance(content, list):
                content = [_user_block(part, provider) for part in content]
            # Only role and content: the API rejects OpenAI's extra keys such as "name".
            out.append({"role": role, "content": "" if content is None else content})
        if message.get("cache_control"):
            # A message's cache_control (litellm's place for it) marks its last block: the
            # prompt up to and including it is cached (docs.anthropic.com, "Prompt caching").
            if role in ("system", "developer"):
                system[-1:] = _cache_marked(system[-1:], message["cache_control"])
            elif out:
                out[-1]["content"] = _cache_marked(out[-1]["content"], message["cache_control"])
    if not system:
        return None, out
    if all(set(block) == {"type", "text"} and block["type"] == "text" for block in system):
        return "\n\n".join(block["text"] for block in system), out
    return system, out


def _cache_marked(content: Any, cache_control: Any) -> list[Any]:
    """Content as blocks (a string as one text block), the last one carrying
    ``cache_control``. The caller's blocks are copied, not changed."""
    blocks = list(content) if isinstance(content, list) else []
    if isinstance(content, str) and content:
        blocks = [{"type": "text", "text": content}]
    if blocks and isinstance(blocks[-1], dict):
        blocks[-1] = {**blocks[-1], "cache_control": cache_control}
    return blocks


#: The image types the Messages API takes (docs.anthropic.com, "Vision" > FAQ).
_IMAGE_TYPES = frozenset(("image/jpeg", "image/png", "image/gif", "image/webp"))


def _user_block(part: Any, provider: str) -> Any:
    """A user turn's content part: a portable file part as Anthropic's block, any other part
    as it is (text, or a block already in Anthropic's shape)."""
    file = portable_file(part)
    return part if file is None else file_block(file, provider)


def file_block(file: File, provider: str = "anthropic") -> dict[str, Any]:
    """A file as a Messages API content block: an ``image``, or a ``document`` (a PDF, or text
    as a plain-text document), from its bytes (base64) or its URL, titled with its name.

    https://docs.anthropic.com/en/docs/build-with-claude/vision and .../pdf-support: an image
    is JPEG, PNG, GIF or WebP; a URL source is an image's or a PDF's; a plain-text source
    takes ``text/plain`` and the text itself.

    Example::

        file_block(File(data=b"%PDF-1.7 ...", name="report.pdf"))
        # {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
        #  "data": "JVBERi0xLjcgLi4u"}, "title": "report.pdf"}
    """
    kind = file.kind
    if kind == "image":
        if file.url is not None:
            return {"type": "image", "source": {"type": "url", "url": file.url}}
        if file.media_type not in _IMAGE_TYPES:
            raise unsupported(provider, file, "Anthropic takes JPEG, PNG, GIF and WebP images")
        data = file.base64()
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": file.media_type, "data": data},
        }
    source: dict[str, Any]
    if kind == "pdf":
        if file.url is not None:
            source = {"type": "url", "url": file.url}
        else:
            source = {"type": "base64", "media_type": "application/pdf", "data": file.base64()}
    elif kind == "text" and file.data is not None:
        try:
            text = file.data.decode("utf-8")
        except UnicodeDecodeError:
            raise unsupported(provider, file, "its text is not UTF-8") from None
        source = {"type": "text", "media_type": "text/plain", "data": text}
    elif kind == "text":
        raise unsupported(
            provider, file, "Anthropic fetches only images and PDFs by URL: give the text's bytes"
        )
    else:
        raise unsupported(provider, file, "Anthropic takes images, PDFs and text documents")
    block: dict[str, Any] = {"type": "document", "source": source}
    if file.name:
        # The title is how the model, and citations, name the document.
        block["title"] = file.name
    return block
