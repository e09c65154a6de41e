"""Ollama's native chat API (``POST /api/chat``): NDJSON in, spout events out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import orjson

from .._capabilities import Capabilities
from .._errors import (
    ConfigurationError,
    ContextWindowExceededError,
    InternalServerError,
    ProtocolError,
    ProviderError,
    StreamInterruptedError,
    error_for_status,
)
from .._events import (
    Event,
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from .._files import file_from_part, unsupported
from .._log import checked_key
from .._request import HTTPRequest
from ..ndjson import NDJSONDecoder
from ._base import (
    Call,
    HTTPProvider,
    OutputShape,
    StreamParser,
    WireMapper,
    env_value,
    load_json,
    streaming_capabilities,
    text_content,
    tool_call_from_json,
    wire_tools,
)
from ._common import (
    bearer_headers,
    error_json,
    error_text,
    history_tool_calls,
    object_arguments,
    retry_after_seconds,
    tool_loop_messages,
)
from .openai import IMAGES_ONLY, chat_tool, file_kind

if TYPE_CHECKING:
    from .._output_format import OutputFormat

__all__ = ["OllamaProvider", "ollama_base_url"]

DEFAULT_HOST = "http://localhost:11434"

# spout's generation settings -> Ollama's "options" keys (docs/api.md, "Generate request
# (With options)"; a Modelfile parameter of the same name).
_OPTIONS = {
    "temperature": "temperature",
    "max_tokens": "num_predict",
    "stop": "stop",
    "seed": "seed",
    "top_p": "top_p",
}

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}

# Keys of the final line that are not counters.
_NOT_USAGE = frozenset(("prompt_eval_count", "eval_count"))


def ollama_base_url(value: str | None) -> str:
    """The server address from ``OLLAMA_HOST``-style text: ``host``, ``host:port`` or a URL.

    As the ``ollama`` CLI reads it: the scheme defaults to http, the host to 127.0.0.1 and the
    port of an http address to 11434.

    >>> ollama_base_url("gpu-box:11500")
    'http://gpu-box:11500'
    >>> ollama_base_url("https://ollama.example.com/")
    'https://ollama.example.com'
    """
    text = (value or "").strip().rstrip("/")
    if not text:
        return DEFAULT_HOST
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is None and parts.scheme == "http":
        port = 11434
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _usage(line: dict[str, Any]) -> Usage:
    # Durations are in nanoseconds (docs/api.md, "Conventions").
    extras = {
        key: value
        for key, value in line.items()
        if key.endswith(("_duration", "_count")) and key not in _NOT_USAGE and value is not None
    }
    return Usage(line.get("prompt_eval_count"), line.get("eval_count"), extras)


class _ChatMapper(WireMapper):
    """Turns parsed ``/api/chat`` lines (streamed, or the one object of a non-streamed call)
    into spout events."""

    __slots__ = ("_done", "_tools")

    def __init__(self, provider: str, model: str) -> None:
        super().__init__(provider, model)
        self._done = False
        self._tools = 0

    @property
    def done(self) -> bool:
        return self._done

    def map(self, line: Any) -> list[Event]:
        if type(line) is not dict:
            raise ProtocolError(f"an Ollama line is not a JSON object: {line!r}"[:300])
        error = line.get("error")
        if error is not None:
            # The server accepted the request, then failed while generating; the Python client
            # raises the same way (ollama-python _client.py: `if err := part.get('error')`).
            raise _stream_error(error, self._provider, self._model)
        if self._done:
            return []
        events: list[Event] = []
        if not self._started:
            self._start(events, None, line.get("model"))
        message = line.get("message")
        if message:
            thinking = message.get("thinking")
            if thinking:
                events.append(ReasoningDelta(thinking))
            content = message.get("content")
            if content:
                events.append(TextDelta(content))
            for tool_call in message.get("tool_calls") or ():
                events += self._tool_call(tool_call)
        if line.get("done"):
            self._done = True
            events.append(_usage(line))
            raw = line.get("done_reason") or None
            reason = _FINISH.get(raw or "stop", "stop")
            if self._tools and reason == "stop":
                reason = "tool_calls"
            events.append(Finish(reason, raw))
        return events

    def _tool_call(self, tool_call: dict[str, Any]) -> list[Event]:
        # Ollama sends each call whole, its arguments already an object; newer servers add an
        # "id" and "function.index", older ones neither (docs/api.md, ollama.com/blog/
        # streaming-tool). Indexes here count calls across the whole response.
        index = self._tools
        self._tools += 1
        function = tool_call.get("function") or {}
        call_id = tool_call.get("id") or f"call_{index}"
        name = function.get("name") or ""
        arguments = function.get("arguments")
        if isinstance(arguments, str):  # not Ollama's shape, but keep what was sent
            call = tool_call_from_json(call_id, name, arguments)
        else:
            call = ToolCall(call_id, name, object_arguments(arguments))
        return [ToolCallStart(index, call_id, name), ToolCallEnd(index, call)]


def _messages(messages: list[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """spout's messages in Ollama's chat shape.

    Tool-call arguments go as objects, a tool result names its tool (``tool_name``), and
    reasoning goes back as ``thinking`` (docs/api.md, "Chat request (with tools)"). A
    message's content parts become its text and its ``images`` (:func:`_with_images`).
    """
    return _with_images(tool_loop_messages(messages, _ollama_message), provider)


def _with_images(messages: list[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """The messages with content given as parts in Ollama's shape: the text parts joined
    into ``content`` (a string: Ollama has no parts), the images as bare base64 strings in
    ``images`` (docs/api.md, "Chat request (with images)"). Ollama takes images alone, and
    their bytes: it fetches no URL. Anything else fails here, before sending, naming the
    file. The list is returned as it is when no message has parts."""
    if not any(isinstance(message.get("content"), list) for message in messages):
        return messages
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            texts: list[str] = []
            images: list[str] = list(message.get("images") or ())
            for part in content:
                file = file_from_part(part) if isinstance(part, Mapping) else None
                if file is None:
                    text = part.get("text") if isinstance(part, Mapping) else part
                    if isinstance(text, str):
                        texts.append(text)
                    continue
                if file_kind(file, part) != "image":
                    raise unsupported(provider, file, "Ollama takes images, no other files")
                if file.url is not None:
                    raise unsupported(
                        provider,
                        file,
                        "Ollama takes an image's bytes and fetches no URL; give "
                        "File(path=...) or File(data=...)",
                    )
                images.append(file.base64())
            message = {**message, "content": "\n".join(texts)}
            if images:
                message["images"] = images
        out.append(message)
    return out


def _ollama_message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role == "tool":
        return {
            "role": "tool",
            "content": text_content(message.get("content")),
            **({"tool_name": message["name"]} if message.get("name") else {}),
        }
    if role == "assistant" and (message.get("tool_calls") or "reasoning" in message):
        converted = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("reasoning"):
            converted["thinking"] = message["reasoning"]
        calls = [
            {"function": {"name": name, "arguments": arguments}}
            for _, name, arguments in history_tool_calls(message)
        ]
        if calls:
            converted["tool_calls"] = calls
        return converted
    return message


def _message(error: Any) -> str:
    """An error's text: Ollama's is a string, a proxy's may be an object with a message."""
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)


def _stream_error(error: Any, provider: str, model: str | None) -> ProviderError:
    message = _message(error)
    lowered = message.lower()
    cls: type[ProviderError] = InternalServerError
    if "context" in lowered and ("length" in lowered or "window" in lowered or "exceed" in lowered):
        cls = ContextWindowExceededError
    return cls(message, provider=provider, model=model, body={"error": error})


class _OllamaStreamParser(StreamParser):
    """NDJSON bytes in, events out."""

    __slots__ = ("_decoder", "_mapper", "_tail")

    def __init__(self, mapper: _ChatMapper) -> None:
        super().__init__()
        self._decoder = NDJSONDecoder()
        self._mapper = mapper
        self._tail = b""  # the bytes after the last line end, to tell a torn line at the end

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        end = chunk.rfind(b"\n")
        self._tail = self._tail + chunk if end < 0 else chunk[end + 1 :]
        map_line = self._mapper.map
        decoder = self._decoder
        for line in decoder.feed(chunk):
            events += map_line(line)
        if decoder.error is not None:
            raise decoder.error  # after the lines before it: StreamParser delivers them first

    def _close(self) -> list[Event]:
        events: list[Event] = []
        try:
            lines = self._decoder.close()
        except ProtocolError as exc:
            torn = self._tail and exc.data == self._tail.rstrip(b"\r")
            if not torn:
                raise
            if self._mapper.done:
                return events  # a torn line after the end changes nothing
            # The last line was cut short by the end of the body: cut, not malformed.
            raise StreamInterruptedError(
                "the Ollama stream ended in the middle of a line, before its final line"
            ) from None
        for line in lines:
            events += self._mapper.map(line)
        if not self._mapper.done:
            raise StreamInterruptedError(
                "the Ollama stream ended without its final line (done: true)"
            )
        return events


class OllamaProvider(HTTPProvider):
    """A model served by Ollama, through its native chat API at ``{base_url}/api/chat``.

    Example::

        llm = create_llm("ollama", model="llama3.2")           # http://localhost:11434
        llm = create_llm("ollama:qwen3", base_url="http://gpu-box:11434", think=True)

    ``base_url`` defaults to ``OLLAMA_HOST`` (``host:port`` is accepted, as the ``ollama`` CLI
    takes it), else ``http://localhost:11434``. No key is needed; one given with ``api_key=``
    is sent as a bearer token (for a server behind an authenticating proxy).

    Generation settings go into the request's ``options`` (``max_tokens`` as ``num_predict``);
    any other keyword (``format``, ``keep_alive``, ``think``, ``tools``...) goes into the body
    as it is, and an ``options={...}`` keyword is merged into the options.
    """

    name: ClassVar[str] = "ollama"
    self_hosted: ClassVar[bool] = True
    path: ClassVar[str] = "/api/chat"
    # Read as the ollama CLI reads it (no key: one is only ever given).
    base_url_env: ClassVar[tuple[str, ...]] = ("OLLAMA_HOST",)
    # Meta's Llama 3.1-3.3 (model cards), under Ollama's names (llama3.1:8b). Ollama runs a
    # model with a much smaller num_ctx than this unless told otherwise, and cuts a longer
    # prompt itself.
    context_windows: ClassVar[Mapping[str, int]] = {
        "llama3.1": 131_072,
        "llama3.2": 131_072,
        "llama3.3": 131_072,
    }
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("ollama_chat",)

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
        self.base_url = ollama_base_url(base_url or env_value(*self.base_url_env))
        self._url = f"{self.base_url}{self.path}"
        self._headers = bearer_headers(checked_key(self.name, api_key))

    def capabilities(self) -> Capabilities:
        # Tool calls arrive whole, never argument by argument: no tool streaming. Images for
        # a vision model (llava, gemma3...; the server answers for one without); no
        # documents or audio in /api/chat.
        return {
            **streaming_capabilities(tools=True, tool_streaming=False, reasoning=True),
            **IMAGES_ONLY.capabilities(),
        }

    def output_shape(self, fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
        # /api/chat's "format": "json" or a JSON Schema (docs/api.md, "Structured outputs");
        # Ollama advises also putting the schema in the prompt to ground the model.
        return OutputShape({**params, "format": fmt.schema if fmt.schema is not None else "json"})

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        options: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in call.params.items():
            if value is None:
                continue
            option = _OPTIONS.get(key)
            if option is None:
                extra[key] = value
            elif option == "stop" and isinstance(value, str):
                options["stop"] = [value]  # Ollama's stop is a list of strings
            else:
                options[option] = value
        given = extra.pop("options", None)
        if isinstance(given, dict):
            options.update(given)
        extra.pop("stream", None)
        messages = _messages(call.messages, self.name)
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        body.update(extra)
        choice = call.tool_choice
        if call.tools and choice != "none":
            body["tools"] = wire_tools(call.tools, chat_tool)
        if choice is not None and choice not in ("auto", "none"):
            # Ollama's /api/chat has no way to force a call (docs/api.md).
            raise ConfigurationError(
                f"Ollama cannot be made to call a tool: tool_choice {choice!r} is not "
                "supported; use 'auto' or 'none'"
            )
        # Ollama streams unless told not to (docs/api.md, "Streaming responses").
        body["stream"] = stream
        if options:
            body["options"] = options
        return HTTPRequest("POST", self._url, self._headers, orjson.dumps(body))

    def new_parser(self, call: Call) -> _OllamaStreamParser:
        return _OllamaStreamParser(_ChatMapper(self.name, self.model))

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        data = load_json(body)
        mapper = _ChatMapper(self.name, self.model)
        events = mapper.map(data)
        if not mapper.done:
            raise ProtocolError("the Ollama response is not done (no done: true)", data=body)
        return events

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        # Errors are {"error": "message"} (api/types.go StatusError); a missing model is a 404.
        data = error_json(body)
        if isinstance(data, dict) and data.get("error") is not None:
            message = _message(data["error"])
        else:
            message = data = error_text(status, body)
        return error_for_status(
            status,
            message,
            provider=self.name,
            model=self.model,
            request_id=self._request_id(headers),
            body=data,
            retry_after=retry_after_seconds(headers),
        )
