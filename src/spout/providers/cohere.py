"""Cohere's v2 Chat API (``POST /v2/chat``): requests, its typed stream events, errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .._capabilities import Capabilities, ModelCapability
from .._errors import (
    AuthenticationError,
    InternalServerError,
    ProviderError,
    ServiceUnavailableError,
    error_for_status,
)
from .._events import (
    Citation,
    Event,
    Finish,
    FinishReason,
    RawEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from .._files import File, unsupported
from .._request import HTTPRequest
from ._base import (
    Call,
    HTTPProvider,
    NamedToolChoice,
    OutputShape,
    SSEStreamParser,
    WireMapper,
    load_json_object,
    sse_json,
    streaming_capabilities,
    text_content,
    tool_call_from_json,
    wire_tools,
)
from ._common import (
    bearer_headers,
    error_json,
    error_text,
    move_settings,
    portable_file,
    retry_after_seconds,
    set_stream,
    tool_declaration,
    without_cache_control,
)

if TYPE_CHECKING:
    from .._output_format import OutputFormat

__all__ = ["CohereProvider", "CohereStreamMapper", "cohere_inputs"]

#: spout's settings under Cohere's names.
_SETTINGS = (
    ("max_tokens", "max_tokens"),
    ("temperature", "temperature"),
    ("top_p", "p"),
    ("seed", "seed"),
)

# ChatFinishReason in cohere-python (src/cohere/types/chat_finish_reason.py).
_FINISH: dict[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
# Reasons that mean the generation failed: raised, with what came before as the partial.
_FAILED: dict[str, type[ProviderError]] = {
    "ERROR": InternalServerError,
    "TIMEOUT": ServiceUnavailableError,
}


def normalize_finish(raw: str | None, *, tool_calls: bool) -> FinishReason:
    reason = _FINISH.get(raw or "COMPLETE", "stop")
    # A turn that called tools must be answered with their results, whatever it said.
    return "tool_calls" if tool_calls and reason == "stop" else reason


def _count(value: Any) -> int | None:
    """A token count as Cohere sends it (its SDK types them as floats): an int, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def cohere_usage(usage: Mapping[str, Any]) -> Usage:
    """Cohere's ``usage``: the counts from ``tokens`` (what the model read and wrote), the
    prompt's cached part from ``cached_tokens`` ("prompt tokens that hit the inference
    cache", Cohere's Usage type); ``billed_units``, ``cached_tokens`` and the rest kept in
    ``extras``."""
    tokens = usage.get("tokens")
    tokens = tokens if isinstance(tokens, dict) else {}
    extras = {key: value for key, value in usage.items() if key != "tokens" and value is not None}
    extras.update(
        (f"tokens.{key}", value)
        for key, value in tokens.items()
        if key not in ("input_tokens", "output_tokens") and value is not None
    )
    return Usage(
        _count(tokens.get("input_tokens")),
        _count(tokens.get("output_tokens")),
        extras,
        cache_read_tokens=_count(usage.get("cached_tokens")),
    )


class CohereStreamMapper(WireMapper):
    """Turns Cohere v2's stream events (and a whole response) into spout events, no I/O.

    Each event names its kind in ``type``: ``message-start``, ``content-start`` /
    ``content-delta`` / ``content-end`` (text, or a reasoning model's ``thinking``),
    ``tool-plan-delta`` (the plan the model writes before calling tools: reasoning),
    ``tool-call-start`` / ``tool-call-delta`` / ``tool-call-end``, ``citation-start`` /
    ``citation-end`` and ``message-end`` (usage and finish reason). Tool calls are numbered
    in the order they start; Cohere's ``index`` (its content index, or none at all) only
    ties a delta to its call. A citation becomes one :class:`Citation` for each source it
    names, as its ``citation-start`` arrives; content of a type spout does not know comes as a
    :class:`RawEvent` when it starts.
    """

    __slots__ = ("_calls", "_current", "_ended", "_finish_raw", "_tool_count")

    def __init__(self, provider: str, model: str | None) -> None:
        super().__init__(provider, model)
        # Cohere's index of a call (or None) -> [spout index, id, name, argument parts]
        self._calls: dict[Any, list[Any]] = {}
        self._current: Any = None
        self._tool_count = 0
        self._finish_raw: str | None = None
        self._ended = False

    @property
    def ended(self) -> bool:
        """Whether ``message-end`` arrived: the stream has no other terminator."""
        return self._ended

    def map(self, data: dict[str, Any]) -> list[Event]:
        """The events one parsed stream event carries."""
        events: list[Event] = []
        self.map_into(data, events)
        return events

    def map_into(self, data: dict[str, Any], events: list[Event]) -> None:
        """Append the events one parsed stream event carries to ``events``: what came before
        an error in the same event (``message-end``'s usage) is kept when it raises."""
        if not self._started:
            # message-start carries the response's id; Cohere's stream never names the model.
            self._start(events, data.get("id"), None)
        kind = data.get("type")
        delta = data.get("delta")
        message = delta.get("message") if isinstance(delta, dict) else None
        message = message if isinstance(message, dict) else {}
        if kind == "content-delta" or kind == "content-start":
            content = message.get("content")
            if (
                kind == "content-start"
                and isinstance(content, dict)
                and content.get("type") not in (None, "text", "thinking")
            ):
                events.append(RawEvent(str(content["type"]), content))
            elif isinstance(content, dict):
                thinking = content.get("thinking")
                if thinking:
                    events.append(ReasoningDelta(thinking))
                text = content.get("text")
                if text:
                    events.append(TextDelta(text))
        elif kind == "tool-plan-delta":
            plan = message.get("tool_plan")
            if plan:
                events.append(ReasoningDelta(plan))
        elif kind == "tool-call-start":
            events += self._call_start(data.get("index"), message.get("tool_calls"))
        elif kind == "tool-call-delta":
            call = self._call(data.get("index"))
            tool_calls = message.get("tool_calls")
            function = tool_calls.get("function") if isinstance(tool_calls, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if call is not None and arguments:
                call[3].append(arguments)
                events.append(ToolCallDelta(call[0], arguments))
        elif kind == "tool-call-end":
            key = data.get("index")
            if key not in self._calls:
                key = self._current
            if key in self._calls:
                events.append(self._end(key))
        elif kind == "citation-start":
            events += _citations(message.get("citations"))
        elif kind == "message-end":
            self._message_end(delta if isinstance(delta, dict) else {}, events)
        # citation-end closes what citation-start gave whole; debug and later kinds frame
        # the answer, they hold none of it.

    def _call_start(self, key: Any, tool_call: Any) -> list[Event]:
        if isinstance(tool_call, list):  # one call per event, but a list costs nothing here
            tool_call = tool_call[0] if tool_call else None
        tool_call = tool_call if isinstance(tool_call, dict) else {}
        function = tool_call.get("function")
        function = function if isinstance(function, dict) else {}
        events: list[Event] = []
        if key in self._calls:
            events.append(self._end(key))  # a new call under an index still open: close it
        index = self._tool_count
        self._tool_count += 1
        call_id = tool_call.get("id") or f"call_{index}"
        name = function.get("name") or ""
        arguments = function.get("arguments") or ""
        self._calls[key] = [index, call_id, name, [arguments] if arguments else []]
        self._current = key
        events.append(ToolCallStart(index, call_id, name))
        if arguments:
            events.append(ToolCallDelta(index, arguments))
        return events

    def _call(self, key: Any) -> list[Any] | None:
        return self._calls.get(key if key in self._calls else self._current)

    def _end(self, key: Any) -> ToolCallEnd:
        index, call_id, name, parts = self._calls.pop(key)
        if self._current == key:
            self._current = None
        return ToolCallEnd(index, tool_call_from_json(call_id, name, "".join(parts)))

    def _message_end(self, delta: dict[str, Any], events: list[Event]) -> None:
        for key in list(self._calls):
            events.append(self._end(key))
        usage = delta.get("usage")
        if isinstance(usage, dict):
            events.append(cohere_usage(usage))
        raw = delta.get("finish_reason")
        raw = None if raw is None else str(raw)
        failed = _FAILED.get(raw or "")
        if failed is not None or delta.get("error"):
            # The generation failed after the 200: raised (the driver adds the partial),
            # never ended as a shorter success.
            message = str(delta.get("error") or f"the generation ended with {raw}")
            raise (failed or InternalServerError)(
                message,
                provider=self._provider,
                model=self._model,
                body=delta,
                error_type=raw,
            )
        self._finish_raw = raw
        self._ended = True

    def finish(self) -> list[Event]:
        """The events that close the response: calls still open, then :class:`Finish`."""
        events: list[Event] = [self._end(key) for key in list(self._calls)]
        raw = self._finish_raw
        events.append(Finish(normalize_finish(raw, tool_calls=self._tool_count > 0), raw))
        return events

    def whole(self, data: dict[str, Any]) -> list[Event]:
        """The events of a response not streamed (``V2ChatResponse``): what a stream of the
        same turn would have carried."""
        events: list[Event] = []
        self._start(events, data.get("id"), None)
        message = data.get("message")
        message = message if isinstance(message, dict) else {}
        if message.get("tool_plan"):
            events.append(ReasoningDelta(message["tool_plan"]))
        for item in message.get("content") or ():
            if not isinstance(item, dict):
                continue
            if item.get("type") == "thinking":
                if item.get("thinking"):
                    events.append(ReasoningDelta(item["thinking"]))
            elif item.get("type") == "text":
                if item.get("text"):
                    events.append(TextDelta(item["text"]))
            else:
                events.append(RawEvent(str(item.get("type")), item))
        for citation in message.get("citations") or ():
            events += _citations(citation)
        for key, tool_call in enumerate(message.get("tool_calls") or ()):
            events += self._call_start(key, tool_call)
        self._message_end(
            {"finish_reason": data.get("finish_reason"), "usage": data.get("usage")}, events
        )
        return events


def _citations(citation: Any) -> list[Event]:
    """A Cohere citation (``start``, ``end`` and ``text`` of the span of the answer it
    supports, and its ``sources``) as one :class:`Citation` for each source: a document's or a
    tool output's title and url. A span of the reasoning (``type: THINKING_CONTENT``) is not
    placed in the answer's text."""
    if not isinstance(citation, dict):
        return []
    in_text = citation.get("type", "TEXT_CONTENT") == "TEXT_CONTENT"
    start = citation.get("start") if in_text else None
    end = citation.get("end") if in_text else None
    events: list[Event] = []
    for source in citation.get("sources") or [None]:
        source = source if isinstance(source, dict) else {}
        named = source.get("document") or source.get("tool_output")
        named = named if isinstance(named, dict) else {}
        events.append(
            Citation(
                citation.get("text"),
                named.get("url"),
                named.get("title"),
                start,
                end,
                citation,
            )
        )
    return events


class _StreamParser(SSEStreamParser[CohereStreamMapper]):
    """SSE bytes in, events out, for ``/v2/chat`` with ``stream: true``.

    Each event comes as ``event: <type>`` and ``data: {"type": "<type>", ...}``; the type is
    read from the data. A ``data: [DONE]``, which Cohere's SDK skips, is skipped too.
    """

    __slots__ = ()

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        map_into = self._mapper.map_into
        for _, data in sse_json(self._decoder, chunk):
            if type(data) is dict:
                map_into(data, events)

    def _close(self) -> list[Event]:
        self._end(self._mapper.ended, "the stream ended before its end: no message-end")
        return self._mapper.finish()


class CohereProvider(HTTPProvider):
    """Cohere's Chat API v2 at ``{base_url}/v2/chat`` (https://docs.cohere.com/v2/reference/chat).

    Example::

        llm = create_llm("cohere", model="command-a-03-2025")      # CO_API_KEY
        for text in llm.generate_stream("Name three rivers"):
            print(text, end="")

    The key is ``api_key=``, or ``CO_API_KEY`` (``COHERE_API_KEY`` also, as Cohere's SDK
    accepts it), sent as a bearer token; ``base_url`` is the host (``CO_API_URL``). System
    messages stay messages; ``top_p`` goes as ``p``, ``stop`` as ``stop_sequences``;
    ``tool_choice`` ``"required"`` and ``"none"`` as ``REQUIRED`` and ``NONE``, and a named
    tool as ``REQUIRED`` with only that tool offered. The plan the model writes before
    calling tools (``tool_plan``) arrives as reasoning, and goes back with the calls.
    """

    name: ClassVar[str] = "cohere"
    price_list: ClassVar[str | None] = "cohere"
    default_base_url: ClassVar[str] = "https://api.cohere.com"
    base_url_env: ClassVar[tuple[str, ...]] = ("CO_API_URL",)
    # CO_API_KEY is Cohere's documented name; its SDK accepts COHERE_API_KEY too.
    api_key_env: ClassVar[tuple[str, ...]] = ("CO_API_KEY", "COHERE_API_KEY")
    # From Cohere's model pages.
    context_windows: ClassVar[Mapping[str, int]] = {
        "command-a-03-2025": 256_000,
        "command-r": 128_000,
    }
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("cohere_chat",)
    litellm_models: ClassVar[tuple[str, ...]] = ("command-",)

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
        self._require_key("CO_API_KEY or COHERE_API_KEY")
        self._url = f"{self.base_url}/v2/chat"
        self._headers = bearer_headers(self.api_key)

    def capabilities(self) -> Capabilities:
        # Tool arguments stream (tool-call-delta); tool plans and thinking are reasoning.
        return {
            **streaming_capabilities(tools=True, tool_streaming=True, reasoning=True),
            **cohere_inputs(self.model),
        }

    def output_shape(self, fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
        # response_format {"type": "json_object", "json_schema"?} (ResponseFormatV2); without
        # a schema Cohere asks that the message say to answer in JSON, which the
        # instruction does.
        shape: dict[str, Any] = {"type": "json_object"}
        if fmt.schema is not None:
            shape["json_schema"] = fmt.schema
        return OutputShape({**params, "response_format": shape}, instruct=fmt.schema is None)

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        params = dict(call.params)
        # Cohere has no prompt-cache markers to take: Anthropic's go.
        messages = cohere_messages(without_cache_control(call.messages), self.name)
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        move_settings(params, body, _SETTINGS, "stop_sequences")
        for key, value in params.items():
            if value is not None:
                body[key] = value
        tools = call.tools
        choice = call.tool_choice
        if isinstance(choice, NamedToolChoice):
            # Cohere cannot name a tool: offered only that one, the model must call it.
            tools = [t for t in tools if _tool_name(t) == choice.name] or tools
            choice = "required"
        if tools:
            body["tools"] = wire_tools(tools, cohere_tool)
        if isinstance(choice, str):
            if choice in ("required", "none"):
                body["tool_choice"] = choice.upper()
            # "auto" is Cohere's default and has no name of its own: nothing is sent.
        elif choice is not None:
            body["tool_choice"] = choice  # provider-native, as given
        set_stream(body, stream)
        return self._post_json(self._url, self._headers, body, stream=stream)

    def new_parser(self, call: Call) -> _StreamParser:
        return _StreamParser(CohereStreamMapper(self.name, self.model))

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        data = load_json_object(body)
        mapper = CohereStreamMapper(self.name, self.model)
        events = mapper.whole(data)
        events += mapper.finish()
        return events

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        # Cohere's error body is {"message": "..."} (docs.cohere.com/reference/errors); some
        # carry an "id" too.
        data = error_json(body)
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, str) or not message:
            message = error_text(status, body)
        request_id = self._request_id(headers)
        if request_id is None and isinstance(data, dict) and isinstance(data.get("id"), str):
            request_id = data["id"]
        if status == 498:
            # Cohere's "invalid token" status (InvalidTokenError in its SDK): a bad key.
            return AuthenticationError(
                message,
                provider=self.name,
                model=self.model,
                status_code=status,
                request_id=request_id,
                body=data,
            )
        return error_for_status(
            status,
            message,
            provider=self.name,
            model=self.model,
            request_id=request_id,
            body=data if data is not None else message,
            retry_after=retry_after_seconds(headers),
        )


def _tool_name(tool: Any) -> str | None:
    if isinstance(tool, dict):
        function = tool.get("function")
        return function.get("name") if isinstance(function, dict) else tool.get("name")
    return getattr(tool, "name", None)


def cohere_tool(tool: Any) -> dict[str, Any]:
    """A :class:`~spout.Tool` as a Cohere v2 ``tools`` entry (ToolV2)."""
    return {"type": "function", "function": tool_declaration(tool, "parameters")}


def cohere_inputs(model: str | None) -> Capabilities:
    """The files a Cohere model takes: images for its vision models (Command A Vision, Aya
    Vision; docs.cohere.com "Image Inputs"), and no documents or audio for any: the Chat API
    has no part for them."""
    name = (model or "").lower()
    return {
        ModelCapability.VISION: "command-a-vision" in name or "aya-vision" in name,
        ModelCapability.PDF_INPUT: False,
        ModelCapability.AUDIO_INPUT: False,
    }


def cohere_messages(
    messages: list[dict[str, Any]], provider: str = "cohere"
) -> list[dict[str, Any]]:
    """spout's messages in Cohere v2's shape (ChatMessageV2 in cohere-python).

    System, user and tool messages keep chat completions' shape, less spout's own keys; an
    assistant turn that called tools sends them with their arguments as JSON text, and its
    reasoning as the ``tool_plan`` that preceded them. A user turn's images (portable parts)
    go as ``image_url`` parts; any other file is refused.
    """
    out = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": _text_or_parts(message.get("content"))})
        elif role == "tool":
            content = message.get("content")
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.get("tool_call_id"),
                    # Text (JSON or not), or a list of Cohere's tool content blocks as given.
                    "content": content if isinstance(content, list) else text_content(content),
                }
            )
        elif role == "assistant":
            out.append(_assistant(message))
        else:
            content = message.get("content")
            if isinstance(content, list):
                content = [_user_part(part, provider) for part in content]
            out.append({"role": "user", "content": _text_or_parts(content)})
    return out


#: The image types Cohere's vision models take (docs.cohere.com, "Image Inputs").
_IMAGE_TYPES = frozenset(("image/png", "image/jpeg", "image/webp", "image/gif"))


def _user_part(part: Any, provider: str) -> Any:
    """A user turn's content part: a portable file part as Cohere's ``image_url`` part, any
    other part as it is."""
    file = portable_file(part)
    if file is None:
        return part
    return image_part(file, provider, detail=_detail(part))


def _detail(part: Any) -> Any:
    image = part.get("image_url") if isinstance(part, dict) else None
    return image.get("detail") if isinstance(image, dict) else None


def image_part(file: File, provider: str = "cohere", *, detail: Any = None) -> dict[str, Any]:
    """An image as Cohere v2's ``image_url`` content part: a data URL, or its http(s) URL
    (Cohere takes both), with the part's ``detail`` when it had one. Anything but an image
    is refused (an image to a model without vision is refused before: it declares no VISION).

    Example::

        image_part(File(data=png_bytes))
        # {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo..."}}
    """
    if file.kind != "image":
        raise unsupported(provider, file, "Cohere's Chat API takes images only")
    if file.url is None and file.media_type not in _IMAGE_TYPES:
        raise unsupported(provider, file, "Cohere takes PNG, JPEG, WebP and GIF images")
    image: dict[str, Any] = {"url": file.data_url()}
    if detail is not None:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _text_or_parts(content: Any) -> Any:
    if content is None:
        return ""
    return content


def _assistant(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant"}
    calls = [
        {
            "id": tool_call.get("id"),
            "type": "function",
            "function": {
                "name": (tool_call.get("function") or {}).get("name"),
                "arguments": _arguments_text((tool_call.get("function") or {}).get("arguments")),
            },
        }
        for tool_call in message.get("tool_calls") or ()
    ]
    if calls:
        if message.get("reasoning"):
            out["tool_plan"] = message["reasoning"]
        out["tool_calls"] = calls
    content = message.get("content")
    # Cohere refuses an empty assistant text; a turn of tool calls goes without one.
    if content or not calls:
        out["content"] = content if content is not None else ""
    return out


def _arguments_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return text_content(arguments or {})
