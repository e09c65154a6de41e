"""OpenAI chat completions, and every server that speaks that wire format."""

from __future__ import annotations

import binascii
import mimetypes
from base64 import b64decode
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from .._capabilities import Capabilities, ModelCapability
from .._errors import (
    BadRequestError,
    ConfigurationError,
    ContextWindowExceededError,
    InternalServerError,
    OverloadedError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    error_for_status,
)
from .._events import (
    Citation,
    Event,
    FileEnd,
    FileStart,
    Finish,
    FinishReason,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    Usage,
)
from .._files import FILE_PART_TYPES, File, file_from_part, unsupported
from .._request import HTTPRequest
from ._base import (
    Call,
    HTTPProvider,
    NamedToolChoice,
    OutputShape,
    Provider,
    SSEStreamParser,
    StreamParser,
    ToolCallAssembler,
    WireMapper,
    load_json_object,
    streaming_capabilities,
    text_content,
)
from ._common import (
    ToolIds,
    answer_file,
    bearer_headers,
    error_json,
    error_text,
    retry_after_seconds,
    set_stream,
    set_tools,
    token_count,
    tool_declaration,
    tool_loop_messages,
    usage_from,
    without_cache_control,
)

if TYPE_CHECKING:
    from .._output_format import OutputFormat

__all__ = ["ChatChunkMapper", "FileRules", "OpenAIProvider", "file_kind", "translate_files"]

# The media type of each audio format chat completions answers in (``audio.format``, in the
# API reference); ``pcm16`` is raw 16-bit little-endian mono at 24 kHz, the one format a
# stream may ask for.
_AUDIO_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "pcm16": "audio/pcm",
}

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "refusal": "refusal",
    "error": "error",
    # Not OpenAI's, but sent by OpenAI-compatible servers:
    "eos": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}

# Generation parameters whose spout name is also the OpenAI body key.
_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed")


def normalize_finish(raw: str | None, *, tool_calls: bool, refusal: bool) -> FinishReason:
    if refusal and raw in (None, "stop"):
        return "refusal"
    reason = _FINISH.get(raw or "stop", "stop")
    # Some compatible servers say "stop" after calling tools; the caller must run them.
    if tool_calls and reason == "stop":
        return "tool_calls"
    return reason


def error_from_body(
    error: Any,
    *,
    status_code: int | None,
    provider: str,
    model: str | None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The spout error for an OpenAI-style error object, from a status or inside a stream."""
    if isinstance(error, dict):
        message = str(error.get("message") or error)
        error_type = error.get("type") or error.get("code")
        code = error.get("code")
    else:
        message, error_type, code = str(error), None, None
    error_type = None if error_type is None else str(error_type)
    if status_code is None and isinstance(code, int) and 400 <= code < 600:
        status_code = code  # OpenRouter puts the HTTP status it would have sent in "code"
    if status_code is not None:
        return error_for_status(
            status_code,
            message,
            provider=provider,
            model=model,
            request_id=request_id,
            body=error,
            error_type=error_type,
            retry_after=retry_after,
        )
    lowered = f"{error_type} {code} {message}".lower()
    cls: type[ProviderError] = ProviderError
    if "context_length" in lowered or "context window" in lowered:
        cls = ContextWindowExceededError
    elif "rate_limit" in lowered or "rate limit" in lowered:
        cls = RateLimitError
    elif "overloaded" in lowered:
        cls = OverloadedError
    elif "server_error" in lowered or "internal" in lowered:
        cls = InternalServerError
    elif "invalid_request" in lowered:
        cls = BadRequestError
    return cls(
        message,
        provider=provider,
        model=model,
        request_id=request_id,
        body=error,
        error_type=error_type,
    )


# The hot path's way to make a TextDelta (its one field set through its slot).
_new = object.__new__
_set_text = TextDelta.__dict__["text"].__set__  # the slot's descriptor
_raw = attrgetter("raw")  # a ServerSentEvent's data as its bytes


class ChatChunkMapper(WireMapper):
    """Turns parsed ``chat.completion.chunk`` objects into spout events, with no I/O.

    Shared by the HTTP adapter and by the local model, whose llama.cpp bindings yield the same
    shape in process.

    Audio the model answers with (``modalities: ["text", "audio"]``) streams as
    ``delta.audio``: its ``transcript`` is the answer's text, and its base64 ``data`` pieces
    make one file, begun at the first audio delta and given whole when the response ends,
    in the media type of the ``audio.format`` asked for (:attr:`audio_type`) and named by the
    audio's ``id`` (what a later turn refers to it by). ``url_citation`` annotations (the
    search models') become :class:`Citation` events.
    """

    __slots__ = (
        "_audio",
        "_finish_raw",
        "_had_tools",
        "_refusal",
        "_tools",
        "audio_type",
    )

    def __init__(self, provider: str, model: str | None) -> None:
        super().__init__(provider, model)
        self._finish_raw: str | None = None
        self._refusal = False
        self._had_tools = False
        self._tools = ToolCallAssembler()
        # [id, decoded bytes, base64 not yet decoded] of the audio answer, once it began
        self._audio: list[Any] | None = None
        #: The media type of the audio format the request asked for (None: from the bytes).
        self.audio_type: str | None = None

    @property
    def finish_seen(self) -> bool:
        return self._finish_raw is not None

    def map(self, chunk: dict[str, Any]) -> list[Event]:
        """The events one parsed chunk carries."""
        events: list[Event] = []
        self.map_into(chunk, events)
        return events

    def map_into(self, chunk: dict[str, Any], events: list[Event]) -> None:
        """Append the events one parsed chunk carries to ``events`` (the hot path)."""
        if not self._started:
            self._start(events, chunk.get("id"), chunk.get("model"))
        choices = chunk.get("choices")
        if choices:
            # n > 1 is not supported: the first choice is the answer.
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                content = delta.get("content")
                if content:
                    # TextDelta(content), made at half the cost: a frozen dataclass's __init__
                    # sets its field through object.__setattr__ (tests/test_chat_parse_fast.py
                    # checks the two give the same).
                    text = _new(TextDelta)
                    _set_text(text, content)
                    events.append(text)
                    # Most chunks carry text and nothing else: skip the other lookups.
                    if len(delta) > 1:
                        self._rest_of_delta(delta, events)
                else:
                    self._rest_of_delta(delta, events)
            finish = choice.get("finish_reason")
            if finish:
                self._finish_raw = finish
                if self._tools:
                    self._had_tools = True
                    events += self._tools.finish()
            if "usage" in chunk or "error" in chunk:
                self._rest_of_chunk(chunk, events)
        else:
            self._rest_of_chunk(chunk, events)

    def _rest_of_delta(self, delta: dict[str, Any], events: list[Event]) -> None:
        audio = delta.get("audio")
        if audio:
            self._audio_delta(audio, events)
        annotations = delta.get("annotations")
        if annotations:
            events += _url_citations(annotations)
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            events.append(ReasoningDelta(reasoning))
        refusal = delta.get("refusal")
        if refusal:
            # Not text: OpenAI keeps message.refusal apart from message.content.
            self._refusal = True
            events.append(RefusalDelta(refusal))
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            add = self._tools.add
            for tool_call in tool_calls:
                function = tool_call.get("function") or {}
                events += add(
                    tool_call.get("index"),
                    tool_call.get("id"),
                    function.get("name"),
                    function.get("arguments"),
                )

    def _audio_delta(self, audio: Any, events: list[Event]) -> None:
        if not isinstance(audio, dict):
            return
        if self._audio is None:
            self._audio = [None, [], ""]
            events.append(FileStart(0, self.audio_type))
        if audio.get("id") and self._audio[0] is None:
            self._audio[0] = audio["id"]
        transcript = audio.get("transcript")
        if transcript:
            events.append(TextDelta(transcript))  # what the audio says: the answer's text
        data = audio.get("data")
        if data and isinstance(data, str):
            # Each piece is base64 of its own; one cut elsewhere carries its tail over.
            pending = self._audio[2] + data
            whole = len(pending) // 4 * 4
            if whole:
                self._audio[1].append(pending[:whole])
            self._audio[2] = pending[whole:]

    def _end_audio(self) -> list[Event]:
        audio, self._audio = self._audio, None
        if audio is None:
            return []
        audio_id, pieces, rest = audio
        try:
            data = b"".join(b64decode(piece) for piece in [*pieces, rest] if piece)
        except (binascii.Error, ValueError):
            raise ProtocolError("the audio's data is not base64", data=rest[:200]) from None
        end = answer_file(0, data, self.audio_type, "audio")
        if type(end) is FileEnd and audio_id:
            file = end.file
            end = FileEnd(0, File(data=file.data, media_type=file.media_type, name=audio_id))
        return [end]

    def _rest_of_chunk(self, chunk: dict[str, Any], events: list[Event]) -> None:
        error = chunk.get("error")
        if error is not None:
            raise error_from_body(
                error, status_code=None, provider=self._provider, model=self._model
            )
        usage = chunk.get("usage")
        if usage:
            events.append(self.usage(usage))

    #: Whether the wire's ``completion_tokens`` leaves out the reasoning tokens it counts in
    #: ``completion_tokens_details`` (xAI's does); OpenAI's holds them.
    reasoning_apart: ClassVar[bool] = False

    def usage(self, usage: dict[str, Any]) -> Usage:
        """The chunk's ``usage``: the prompt's cached part (OpenAI's ``prompt_tokens_details``,
        or DeepSeek's ``prompt_cache_hit_tokens``), both already counted in ``prompt_tokens``,
        and the completion's reasoning part."""
        counted = usage_from(
            usage,
            "prompt_tokens",
            "completion_tokens",
            cache_read="prompt_tokens_details.cached_tokens",
            reasoning="completion_tokens_details.reasoning_tokens",
            reasoning_apart=self.reasoning_apart,
        )
        if counted.cache_read_tokens is None and "prompt_cache_hit_tokens" in usage:
            # https://api-docs.deepseek.com/guides/kv_cache: prompt_tokens = hit + miss.
            return replace(counted, cache_read_tokens=token_count(usage, "prompt_cache_hit_tokens"))
        return counted

    def finish(self) -> list[Event]:
        """The events that close the response: tool calls still open, the audio answered
        with, then :class:`Finish`."""
        events = self._tools.finish()
        if events:
            self._had_tools = True
        if self._audio is not None:
            events += self._end_audio()
        events.append(
            Finish(
                normalize_finish(
                    self._finish_raw,
                    tool_calls=self._had_tools,
                    refusal=self._refusal,
                ),
                self._finish_raw,
            )
        )
        return events


def _url_citations(annotations: Any) -> list[Event]:
    """``annotations`` of chat completions' message (a search model's ``url_citation``: the
    url and title of a page, and the span of the answer it supports)."""
    events: list[Event] = []
    for annotation in annotations if isinstance(annotations, list) else ():
        cited = annotation.get("url_citation") if isinstance(annotation, dict) else None
        if isinstance(cited, dict):
            events.append(
                Citation(
                    None,
                    cited.get("url"),
                    cited.get("title"),
                    cited.get("start_index"),
                    cited.get("end_index"),
                    annotation,
                )
            )
    return events


def audio_type(params: Mapping[str, Any]) -> str | None:
    """The media type of the audio a request's ``audio.format`` asks for; None when it asks
    for none (or a format spout does not know: the bytes then say)."""
    audio = params.get("audio")
    fmt = audio.get("format") if isinstance(audio, dict) else None
    return _AUDIO_TYPES.get(str(fmt).lower()) if fmt else None


class _StreamParser(SSEStreamParser[ChatChunkMapper]):
    """SSE bytes in, events out, for the chat completions stream."""

    __slots__ = ("_done",)

    def __init__(self, mapper: ChatChunkMapper) -> None:
        super().__init__(mapper)
        self._done = False

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        decoder = self._decoder
        map_into = self._mapper.map_into
        # A server streaming tokens mostly sends one ``data:`` event per read: its data is
        # taken as it is, without splitting lines or making an event (the type is not read).
        lone = decoder.lone_data(chunk)
        for raw in (lone,) if lone is not None else map(_raw, decoder.feed(chunk)):
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if raw == b"[DONE]":
                    self._done = True
                    continue
                raise ProtocolError(f"a stream event is not valid JSON ({exc})", data=raw) from None
            if type(data) is dict:
                map_into(data, events)
        if decoder.error is not None:
            raise decoder.error  # after the events before it: StreamParser delivers them first

    def _close(self) -> list[Event]:
        self._end(
            self._done or self._mapper.finish_seen,
            "the stream ended before its end: no finish_reason and no [DONE]",
        )
        return self._mapper.finish()


@dataclass(frozen=True)
class FileRules:
    """What an endpoint takes of the files a prompt carries, as spout declares it.

    ``kinds`` are the :attr:`File.kind <spout.File.kind>` values it takes (``"image"``,
    ``"pdf"``, ``"audio"``; the Responses API also ``"text"`` and ``"other"`` documents);
    ``by_url`` the kinds it fetches from an http(s) URL itself; ``image_types`` and
    ``audio_formats`` what it documents of each, None where it says nothing (the server
    answers). Anything else fails before a request is sent, naming the file and the provider.

    >>> FileRules(frozenset({"image"})).capabilities()[ModelCapability.VISION]
    True
    """

    kinds: frozenset[str] = frozenset()
    by_url: frozenset[str] = frozenset({"image"})
    image_types: frozenset[str] | None = None
    audio_formats: frozenset[str] | None = None

    def capabilities(self) -> Capabilities:
        """The file capabilities these rules declare."""
        return {
            ModelCapability.VISION: "image" in self.kinds,
            ModelCapability.PDF_INPUT: "pdf" in self.kinds,
            ModelCapability.AUDIO_INPUT: "audio" in self.kinds,
        }


#: Images only: what spout declares for an OpenAI-compatible server it knows nothing about.
#: Such a server may serve a vision model or not, and answers for itself; PDFs and audio
#: are declared only where a service documents them.
IMAGES_ONLY = FileRules(frozenset({"image"}))

# OpenAI's image types (platform.openai.com/docs/guides/images-vision, "Image input
# requirements": PNG, JPEG, WEBP, non-animated GIF) and input_audio's formats
# (ChatCompletionContentPartInputAudioParam in openai-python: "wav" and "mp3").
OPENAI_IMAGE_TYPES = frozenset(("image/png", "image/jpeg", "image/webp", "image/gif"))
OPENAI_AUDIO_FORMATS = frozenset(("wav", "mp3"))

# OpenAI's models that take text alone (their model pages): images and PDFs are refused
# before sending. Any other model is let through; OpenAI answers for a new one.
_TEXT_ONLY = (
    "gpt-3.5",
    "gpt-4-0",
    "gpt-4-32k",
    "gpt-4-1106-preview",
    "o1-mini",
    "o1-preview",
    "o3-mini",
    "davinci",
    "babbage",
)


def openai_file_kinds(model: str) -> frozenset[str]:
    """The kinds of file OpenAI's own chat completions take with ``model``: images and PDFs
    for its vision models (the file-inputs guide: PDFs go in as text and page images, on
    models with vision), audio alone for the audio models (gpt-4o-audio-preview, gpt-audio:
    text and audio in, no images).

    >>> sorted(openai_file_kinds("gpt-4o-mini")), sorted(openai_file_kinds("gpt-audio"))
    (['image', 'pdf'], ['audio'])
    """
    name = model.lower().removeprefix("ft:")
    if "audio" in name:
        return frozenset({"audio"})
    if name == "gpt-4" or name.startswith(_TEXT_ONLY):
        return frozenset()
    return frozenset({"image", "pdf"})


def file_kind(file: File, part: Mapping[str, Any]) -> str:
    """The kind of ``file``, from its media type; one whose type is unknown (an image at a
    URL whose name has no suffix) is what the part carrying it says: an ``image_url`` part
    holds an image, an ``input_audio`` part audio."""
    kind = file.kind
    if kind == "other":
        return {"image_url": "image", "input_audio": "audio"}.get(str(part.get("type")), kind)
    return kind


def file_name(file: File) -> str:
    """A file's name, or one made from its type (``file.pdf``): OpenAI refuses a ``file``
    part's ``file_data`` without a ``filename`` ("Missing required parameter")."""
    return file.name or f"file{mimetypes.guess_extension(file.media_type) or ''}"


def check_file(provider: str, rules: FileRules, file: File, kind: str) -> None:
    """Refuse, naming the file and the provider, a file ``rules`` do not take."""
    if kind not in rules.kinds:
        takes = ", ".join(sorted(rules.kinds)) or "no files"
        raise unsupported(provider, file, f"it takes {takes}, not {kind} input")
    if file.url is not None and kind not in rules.by_url:
        raise unsupported(
            provider,
            file,
            f"it does not fetch a {kind} from a URL; give the file's bytes "
            "(File(path=...) or File(data=...))",
        )
    types = rules.image_types
    # An image whose type is unknown (a URL with no suffix) is left to the service.
    known = file.media_type.startswith("image/")
    if kind == "image" and types is not None and known and file.media_type not in types:
        raise unsupported(provider, file, f"it takes images of {', '.join(sorted(types))}")
    formats = rules.audio_formats
    if kind == "audio" and formats is not None and file.audio_format() not in formats:
        raise unsupported(provider, file, f"it takes audio as {', '.join(sorted(formats))}")


def translate_files(
    messages: list[dict[str, Any]],
    translate: Callable[[File, Mapping[str, Any]], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The messages with each portable file part (``image_url``, ``file``, ``input_audio``)
    replaced by ``translate(file, part)``, the provider's own shape; it raises for a file
    the provider cannot take. The list is returned as it is when no message carries a
    file; a message that changes is copied, never edited."""
    if not any(_file_parts(message) for message in messages):
        return messages
    out = []
    for message in messages:
        if _file_parts(message):
            parts = []
            for part in message["content"]:
                file = _part_file(part)
                parts.append(part if file is None else translate(file, part))
            message = {**message, "content": parts}
        out.append(message)
    return out


def _file_parts(message: Mapping[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(part, Mapping) and part.get("type") in FILE_PART_TYPES for part in content
    )


def _part_file(part: Any) -> File | None:
    if isinstance(part, Mapping) and part.get("type") in FILE_PART_TYPES:
        return file_from_part(part)
    return None


def chat_file_part(
    provider: str, rules: FileRules, file: File, part: Mapping[str, Any]
) -> dict[str, Any]:
    """A file as a chat completions content part, the portable form itself
    (ChatCompletionContentPartParam in openai-python), checked against ``rules``."""
    kind = file_kind(file, part)
    check_file(provider, rules, file, kind)
    if kind == "image":
        image: dict[str, Any] = {"url": file.data_url()}
        given = part.get("image_url")
        if part.get("type") == "image_url" and isinstance(given, Mapping) and given.get("detail"):
            image["detail"] = given["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "audio":
        return {
            "type": "input_audio",
            "input_audio": {"data": file.base64(), "format": file.audio_format()},
        }
    # A document: file_data is a data URL, or an URL where the service fetches one.
    return {"type": "file", "file": {"filename": file_name(file), "file_data": file.data_url()}}


#: Chat completions' tool-call ids: any characters, at most 40 (an id from elsewhere, e.g. a
#: 51-character one, is refused: "Invalid 'messages[2].tool_calls[0].id': string too long.
#: Expected a string with maximum length 40"; Azure OpenAI's deployments say the same).
OPENAI_TOOL_IDS = ToolIds.at_most(40)


class OpenAIProvider(HTTPProvider):
    """Chat completions at ``{base_url}/chat/completions``: OpenAI, and compatible servers.

    Example::

        llm = create_llm("openai", model="gpt-4o-mini")                  # OPENAI_API_KEY
        llm = create_llm("openai", model="local", base_url="http://127.0.0.1:8080/v1")

    A key is required for the default base URL; a server at another address is sent one only
    if given (``api_key=`` or the environment variable).
    """

    name: ClassVar[str] = "openai"
    price_list: ClassVar[str | None] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("OPENAI_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    #: The endpoint under ``base_url`` that this wire format is served at.
    path: ClassVar[str] = "/chat/completions"
    #: Whether the default endpoint refuses requests without a key (servers people run
    #: themselves usually take none).
    requires_key: ClassVar[bool] = True
    #: Whether the service at the default base URL sends usage in a stream when asked. A
    #: server at another address is not known to, so it declares nothing.
    usage_in_stream: ClassVar[bool] = True
    # Context windows from OpenAI's model pages.
    context_windows: ClassVar[Mapping[str, int]] = {
        "gpt-4o": 128_000,
        "gpt-4.1": 1_047_576,
        "gpt-3.5-turbo": 16_385,
        "gpt-3.5-turbo-instruct": 4_096,
        "o1": 200_000,
        "o1-mini": 128_000,
        "o1-preview": 128_000,
        "o3": 200_000,
        "o4-mini": 200_000,
    }
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("openai_like", "text-completion-openai")
    litellm_models: ClassVar[tuple[str, ...]] = ("gpt-", "o1", "o3", "o4", "chatgpt-", "ft:gpt-")
    #: What turns this endpoint's chunks into events: a profile whose chunks differ (Mistral's
    #: content given as a list of parts) names a subclass.
    mapper_class: ClassVar[type[ChatChunkMapper]] = ChatChunkMapper

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        stream_usage: bool = True,
        **transport: Any,
    ) -> None:
        super().__init__(model, headers=headers, **transport)
        self._resolve_endpoint(base_url, api_key)
        if self.requires_key and self.base_url == self.default_base_url.rstrip("/"):
            self._require_key()
        self.stream_usage = stream_usage
        self._url = f"{self.base_url}{self.path}"
        self._headers = bearer_headers(self.api_key)

    @classmethod
    def for_api(cls, api: str | None, config: Mapping[str, Any]) -> type[Provider]:
        """The class for ``create_llm(..., api=...)``: ``"chat"`` (this one) or ``"responses"``.

        Only OpenAI itself offers both here; a profile (a subclass) speaks chat completions.
        """
        if api is None or api == "chat":
            return cls
        if api == "responses" and cls is OpenAIProvider:
            from .openai_responses import OpenAIResponsesProvider

            return OpenAIResponsesProvider
        options = "'chat' or 'responses'" if cls is OpenAIProvider else "'chat'"
        raise ConfigurationError(f"provider {cls.name!r} has no api {api!r}; choose {options}")

    @classmethod
    def litellm_config(
        cls, model: str | None, config: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        # litellm's "openai/responses/<model>": OpenAI's Responses API (not a profile's).
        if cls is OpenAIProvider and model and model.startswith("responses/"):
            return model.removeprefix("responses/"), {**config, "api": "responses"}
        return model, config

    def litellm_params(self, params: dict[str, Any]) -> dict[str, Any]:
        # max_completion_tokens is OpenAI's newer name (its reasoning models take no other):
        # sent as it is, here and to OpenAI-compatible servers.
        return params

    def output_shape(self, fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
        # response_format as chat completions takes it; JSON mode (no schema) requires the
        # word "JSON" in the messages, which the instruction brings.
        return OutputShape(
            {**params, "response_format": fmt.openai_chat()}, instruct=fmt.schema is None
        )

    def capabilities(self) -> Capabilities:
        return {
            **streaming_capabilities(
                tools=True,
                tool_streaming=True,
                reasoning=False,
                # OpenAI sends usage when asked; a compatible server may not (llama_cpp.server
                # ignores stream_options), so only a known service's own endpoint declares it.
                usage_in_stream=self.stream_usage
                and self.usage_in_stream
                and self.base_url == self.default_base_url.rstrip("/"),
            ),
            **self.file_rules().capabilities(),
        }

    def file_rules(self) -> FileRules:
        """What this endpoint and model take of files. OpenAI's own endpoint: by the model
        (:func:`openai_file_kinds`), PDFs only as bytes (chat completions has no file URL),
        its image types and audio formats. A server at another address: images only
        (:data:`IMAGES_ONLY`). A profile declares what its service documents."""
        if self.base_url != OpenAIProvider.default_base_url:
            return IMAGES_ONLY
        return FileRules(
            openai_file_kinds(self.model),
            image_types=OPENAI_IMAGE_TYPES,
            audio_formats=OPENAI_AUDIO_FORMATS,
        )

    def file_part(self, file: File, part: Mapping[str, Any]) -> dict[str, Any]:
        """One file as this endpoint takes it (``part`` is the portable part that carried
        it); raises :class:`~spout.ConfigurationError` for one it cannot take."""
        return chat_file_part(self.name, self.file_rules(), file, part)

    def takes_prompt_cache_key(self) -> bool:
        # platform.openai.com/docs/guides/prompt-caching. An endpoint configured as OpenAI
        # itself takes it (a server that does not know it ignores it, as vLLM and llama.cpp
        # do unknown fields); a profile's service is not known to.
        return self.name == "openai"

    def takes_refusal(self) -> bool:
        # OpenAI's own API takes an assistant message's refusal as it gave it
        # (ChatCompletionAssistantMessageParam.refusal in openai-python). A server elsewhere
        # is not known to: Groq refuses the unknown key, llama.cpp ignores it (an empty turn).
        return self.base_url == OpenAIProvider.default_base_url

    #: Whether the endpoint takes Anthropic's prompt-cache markers (``cache_control``) in
    #: messages (OpenRouter passes them to the models that cache so); OpenAI caches by itself
    #: and refuses keys it does not know, so they are left out.
    takes_cache_control: ClassVar[bool] = False

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        messages = chat_messages(call.messages)
        if not self.takes_cache_control:
            messages = without_cache_control(messages)
        messages = translate_files(messages, self.file_part)
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        for key, value in call.params.items():
            if value is not None:
                body[key] = value
        set_tools(body, call, chat_tool, chat_tool_choice)
        set_stream(body, stream)
        if stream and self.stream_usage and "stream_options" not in body:
            body["stream_options"] = {"include_usage": True}
        return self._post_json(self._url, self._headers, self.wire_body(body), stream=stream)

    def wire_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request body as this endpoint takes it. The default sends chat completions'
        body as built, with tool-call ids cut to 40 characters (:data:`OPENAI_TOOL_IDS`); a
        profile whose service differs (Mistral's tool-call ids and names for settings)
        rewrites it here, leaving the caller's messages as they are."""
        body["messages"] = OPENAI_TOOL_IDS.rewrite(body["messages"])
        return body

    def new_parser(self, call: Call) -> StreamParser:
        return _StreamParser(self.new_mapper(call))

    def new_mapper(self, call: Call) -> ChatChunkMapper:
        """The :attr:`mapper_class` for a call: told the audio format it asked for."""
        mapper = self.mapper_class(self.name, self.model)
        mapper.audio_type = audio_type(call.params)
        return mapper

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        data = load_json_object(body)
        mapper = self.new_mapper(call)
        if data.get("error") is not None:
            return mapper.map(data)  # raises
        # A whole completion is one chunk whose delta is the full message.
        choices = [
            {
                "delta": {
                    **choice.get("message", {}),
                    "tool_calls": [
                        {"index": i, **tool_call}
                        for i, tool_call in enumerate(
                            (choice.get("message") or {}).get("tool_calls") or ()
                        )
                    ],
                },
                "finish_reason": choice.get("finish_reason") or "stop",
            }
            for choice in data.get("choices") or ()
        ]
        events = mapper.map({**data, "choices": choices})
        events += mapper.finish()
        return events

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        return self.chat_error(self.error_object(status, body), status, headers)

    def error_object(self, status: int, body: bytes) -> Any:
        """An error response's error: OpenAI's ``{"error": {...}}`` object, the body itself
        when it has no ``error``, or ``{"message": ...}`` for a body that is not JSON."""
        data = error_json(body)
        error = data.get("error", data) if isinstance(data, dict) else None
        return {"message": error_text(status, body)} if error is None else error

    def chat_error(
        self,
        error: Any,
        status: int,
        headers: Mapping[str, str],
        *,
        request_id: str | None = None,
    ) -> ProviderError:
        """The spout error for an error object (``{"message", "type", "code"}``) answered
        with HTTP ``status``, its request id and retry-after read from ``headers``."""
        return error_from_body(
            error,
            status_code=status,
            provider=self.name,
            model=self.model,
            request_id=request_id or self._request_id(headers),
            retry_after=retry_after_seconds(headers),
        )


def chat_tool(tool: Any) -> dict[str, Any]:
    """A :class:`~spout.Tool` as a chat completions ``tools`` entry."""
    return {"type": "function", "function": tool_declaration(tool, "parameters")}


def chat_tool_choice(choice: Any) -> Any:
    """``tool_choice`` for chat completions: the strings as they are, a named tool as an object."""
    if isinstance(choice, NamedToolChoice):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


# Keys spout keeps on messages for other providers' round trips; chat completions rejects them.
_SPOUT_KEYS = frozenset(("reasoning", "reasoning_signature", "reasoning_blocks", "is_error"))


def chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """spout's messages as chat completions takes them.

    They are already in its shape; only a conversation that went through the tool loop
    needs care: spout's own keys are dropped, arguments and results are sent as text.
    """
    return tool_loop_messages(messages, _chat_message)


def _chat_message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.get("tool_call_id"),
            "content": text_content(message.get("content")),
        }
    if role == "assistant" and (message.keys() & _SPOUT_KEYS or message.get("tool_calls")):
        message = {k: v for k, v in message.items() if k not in _SPOUT_KEYS}
        if message.get("tool_calls"):
            message["tool_calls"] = [_chat_tool_call(c) for c in message["tool_calls"]]
    return message


def _chat_tool_call(tool_call: dict[str, Any]) -> dict[str, Any]:
    function = tool_call.get("function") or {}
    arguments = function.get("arguments")
    return {
        "id": tool_call.get("id"),
        "type": tool_call.get("type") or "function",
        "function": {
            "name": function.get("name"),
            "arguments": arguments if isinstance(arguments, str) else text_content(arguments or {}),
        },
    }
