"""Google's Gemini API (generateContent / streamGenerateContent): requests, stream, errors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import orjson

from .._capabilities import Capabilities, ModelCapability
from .._errors import ProviderError, error_for_status
from .._events import (
    Citation,
    Event,
    Finish,
    FinishReason,
    RawEvent,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from .._files import File, unsupported
from .._policy import server_wait
from .._request import HTTPRequest, header_value
from ._base import (
    Call,
    HTTPProvider,
    NamedToolChoice,
    OutputShape,
    SSEStreamParser,
    WireMapper,
    load_json_object,
    streaming_capabilities,
)
from ._common import (
    error_json,
    error_text,
    file_events,
    history_tool_calls,
    move_settings,
    object_arguments,
    portable_file,
    retry_after_seconds,
    token_count,
    tool_declaration,
)

if TYPE_CHECKING:
    from .._output_format import OutputFormat

#: spout's settings under Gemini's names, in ``generationConfig``.
_GENERATION_CONFIG = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("max_tokens", "maxOutputTokens"),
    ("seed", "seed"),
)

__all__ = [
    "GeminiProvider",
    "GenerateContentMapper",
    "GenerateContentParser",
    "file_part",
    "gemini_inputs",
    "gemini_usage",
    "generate_content_body",
    "generate_content_error",
    "generate_content_events",
    "json_output_shape",
]

API_VERSION = "v1beta"

# Candidate.FinishReason, https://ai.google.dev/api/generate-content#FinishReason
_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

# The HTTP status of each google.rpc.Code, for an error that names only its status
# (https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto).
_STATUS_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


# A part's keys that qualify what it holds rather than hold it (Part in the API reference): a
# part with nothing else is no content.
_PART_QUALIFIERS = frozenset(
    ("thought", "thoughtSignature", "partMetadata", "videoMetadata", "mediaResolution")
)


def normalize_finish(raw: str | None, *, tool_calls: bool) -> FinishReason:
    if raw == "MAX_TOKENS":
        return "length"
    if raw in _CONTENT_FILTER:
        return "content_filter"
    # STOP, and reasons spout has no name for (OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL...),
    # whose raw value the response keeps.
    return "tool_calls" if tool_calls else "stop"


def gemini_error(
    error: Any,
    *,
    status_code: int | None,
    provider: str,
    model: str | None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The spout error for a Google error object (``{"code", "message", "status", "details"}``)."""
    if not isinstance(error, dict):
        error = {"message": str(error)}
    status = error.get("status")
    status = None if status is None else str(status)
    message = str(error.get("message") or status or error)
    if status_code is None:
        code = error.get("code")
        status_code = code if isinstance(code, int) else _STATUS_CODES.get(status or "", 0)
    details = error.get("details")
    if isinstance(details, list):
        for detail in details:
            if not isinstance(detail, dict):
                continue
            kind = str(detail.get("@type", ""))
            # Gemini says how long to wait in the body, not in a Retry-After header.
            if retry_after is None and kind.endswith("google.rpc.RetryInfo"):
                retry_after = _duration_seconds(detail.get("retryDelay"))
            elif request_id is None and kind.endswith("google.rpc.RequestInfo"):
                request_id = detail.get("requestId") or None
    return error_for_status(
        status_code,
        message,
        provider=provider,
        model=model,
        request_id=request_id,
        body=error,
        error_type=status,
        retry_after=retry_after,
    )


def _duration_seconds(value: Any) -> float | None:
    """A protobuf Duration in its JSON form (``"45.837906927s"``) as seconds."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return server_wait(float(value[:-1]))  # "-5s" or "infs" from a hostile server
    except ValueError:
        return None


class GenerateContentMapper(WireMapper):
    """Turns parsed ``GenerateContentResponse`` objects into spout events, with no I/O.

    A stream is a series of these, each with the new parts of the first candidate;
    ``usageMetadata`` is cumulative, so each one replaces the last. A function call arrives
    whole, its arguments an object: its start, its arguments as one delta and its end are
    sent together, and ``arguments_raw`` is None since no JSON text was sent. An
    ``inlineData`` part (an image, audio) is a file, whole in its part: its
    :class:`FileStart` and :class:`FileEnd` go together. ``groundingMetadata`` and
    ``citationMetadata`` become :class:`Citation` events, and a part of a kind spout does not
    know (``executableCode``, ``codeExecutionResult``...) a :class:`RawEvent` named by its key.
    """

    __slots__ = (
        "_blocked",
        "_cited",
        "_file_count",
        "_finish_raw",
        "_text",
        "_tool_count",
    )

    def __init__(self, provider: str, model: str | None) -> None:
        super().__init__(provider, model)
        self._tool_count = 0
        self._file_count = 0
        self._finish_raw: str | None = None
        self._blocked: str | None = None
        # The answer's text so far: grounding places its spans in it, in UTF-8 bytes.
        self._text: list[str] = []
        # What was cited already: a stream may repeat the metadata on later chunks.
        self._cited: set[bytes] = set()

    @property
    def finish_seen(self) -> bool:
        """Whether a finish reason (or a blocked prompt) arrived: Gemini sends no terminator."""
        return self._finish_raw is not None or self._blocked is not None

    def map(self, data: dict[str, Any]) -> list[Event]:
        error = data.get("error")
        if error is not None:
            raise gemini_error(error, status_code=None, provider=self._provider, model=self._model)
        events: list[Event] = []
        if not self._started:
            self._start(events, data.get("responseId"), data.get("modelVersion"))
        candidates = data.get("candidates")
        if candidates:
            # candidateCount > 1 is not supported: the first candidate is the answer.
            candidate = candidates[0]
            content = candidate.get("content")
            parts = content.get("parts") if content else None
            if parts:
                for part in parts:
                    text = part.get("text")
                    if text is not None:
                        if text:
                            if part.get("thought"):
                                events.append(ReasoningDelta(text))
                            else:
                                self._text.append(text)
                                events.append(TextDelta(text))
                    elif "functionCall" in part:
                        events += self._function_call(
                            part["functionCall"] or {}, part.get("thoughtSignature")
                        )
                    else:
                        events += self._other_part(part)
            grounding = candidate.get("groundingMetadata")
            if grounding:
                events += self._grounding(grounding)
            citations = candidate.get("citationMetadata")
            if citations:
                events += self._recitations(citations)
            finish = candidate.get("finishReason")
            if finish:
                self._finish_raw = finish
        feedback = data.get("promptFeedback")
        if feedback and feedback.get("blockReason"):
            # The prompt itself was blocked: no candidates, and no finishReason, will come.
            self._blocked = feedback["blockReason"]
        usage = data.get("usageMetadata")
        if usage:
            events.append(gemini_usage(usage))
        return events

    def _function_call(self, function_call: dict[str, Any], signature: str | None) -> list[Event]:
        index = self._tool_count
        self._tool_count += 1
        # Gemini names no call id (a newer field, "id", is used when present).
        call_id = function_call.get("id") or f"call_{index}"
        name = function_call.get("name") or ""
        arguments = object_arguments(function_call.get("args"))
        return [
            ToolCallStart(index, call_id, name),
            ToolCallDelta(index, orjson.dumps(arguments).decode()),
            # A thought signature must go back on this call's part with its result: the loop
            # sends it (https://ai.google.dev/gemini-api/docs/thought-signatures).
            ToolCallEnd(index, ToolCall(call_id, name, arguments, None, signature or None)),
        ]

    def _other_part(self, part: dict[str, Any]) -> list[Event]:
        blob = part.get("inlineData")
        # A thought's image (a draft an image model shows while it thinks) is not the answer.
        if isinstance(blob, dict) and not part.get("thought"):
            index = self._file_count
            self._file_count += 1
            return file_events(index, blob.get("data"), blob.get("mimeType"), "inlineData")
        kind = next((key for key in part if key not in _PART_QUALIFIERS), None)
        return [] if kind is None else [RawEvent(kind, part)]

    def _span(self, start: Any, end: Any, text: Any) -> tuple[int, int | None]:
        """A span Google gives in UTF-8 bytes of the answer as characters (``startIndex`` is
        left out when it is 0, as proto3's JSON leaves out every zero)."""
        start = start if isinstance(start, int) else 0
        if not isinstance(end, int) and isinstance(text, str):
            end = start + len(text.encode())
        answer = "".join(self._text).encode()
        head = len(answer[:start].decode(errors="ignore"))
        if not isinstance(end, int):
            return head, None
        return head, head + len(answer[start:end].decode(errors="ignore"))

    def _cite(self, citation: Citation) -> list[Event]:
        key = orjson.dumps(citation.raw, option=orjson.OPT_SORT_KEYS)
        if key in self._cited:
            return []
        self._cited.add(key)
        return [citation]

    def _grounding(self, metadata: dict[str, Any]) -> list[Event]:
        """One :class:`Citation` for each source of each grounded span (a support names the
        span and the chunks behind it), then one for each source no span names; the search
        suggestions Google asks apps to show (``searchEntryPoint``) as a :class:`RawEvent`."""
        chunks = metadata.get("groundingChunks")
        chunks = chunks if isinstance(chunks, list) else []
        events: list[Event] = []
        named: set[int] = set()
        for support in metadata.get("groundingSupports") or ():
            if not isinstance(support, dict):
                continue
            segment = support.get("segment")
            segment = segment if isinstance(segment, dict) else {}
            text = segment.get("text")
            start, end = self._span(segment.get("startIndex"), segment.get("endIndex"), text)
            for i in support.get("groundingChunkIndices") or [None]:
                chunk = chunks[i] if isinstance(i, int) and 0 <= i < len(chunks) else None
                if chunk is not None:
                    named.add(i)
                url, title = _source(chunk)
                raw = {"groundingSupport": support, "groundingChunk": chunk}
                events += self._cite(Citation(text, url, title, start, end, raw))
        for i, chunk in enumerate(chunks):
            if i not in named:
                url, title = _source(chunk)
                events += self._cite(Citation(None, url, title, raw={"groundingChunk": chunk}))
        entry = metadata.get("searchEntryPoint")
        if entry:
            events += self._cite_raw("searchEntryPoint", entry)
        return events

    def _cite_raw(self, kind: str, data: Any) -> list[Event]:
        key = kind.encode() + orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        if key in self._cited:
            return []
        self._cited.add(key)
        return [RawEvent(kind, data)]

    def _recitations(self, metadata: dict[str, Any]) -> list[Event]:
        """``citationMetadata``: the sources a span of the answer recites (spans in bytes)."""
        events: list[Event] = []
        for source in metadata.get("citationSources") or metadata.get("citations") or ():
            if not isinstance(source, dict):
                continue
            start, end = self._span(source.get("startIndex"), source.get("endIndex"), None)
            text = "".join(self._text)[start:end] if end is not None else None
            url = source.get("uri")
            title = source.get("title")
            events += self._cite(Citation(text or None, url, title, start, end, source))
        return events

    def finish(self) -> list[Event]:
        """The event that closes the response."""
        if self._finish_raw is None and self._blocked is not None:
            return [Finish("content_filter", self._blocked)]
        raw = self._finish_raw
        return [Finish(normalize_finish(raw, tool_calls=self._tool_count > 0), raw)]


def _source(chunk: Any) -> tuple[str | None, str | None]:
    """The url and title of a grounding chunk: a web page, a retrieved document, a place."""
    if not isinstance(chunk, dict):
        return None, None
    for kind in ("web", "retrievedContext", "maps"):
        source = chunk.get(kind)
        if isinstance(source, dict):
            return source.get("uri"), source.get("title")
    return None, None


class GenerateContentParser(SSEStreamParser[GenerateContentMapper]):
    """SSE bytes in, events out, for ``streamGenerateContent?alt=sse``."""

    __slots__ = ()

    def _close(self) -> list[Event]:
        # Gemini has no terminator: a stream is complete once it has said why it finished.
        self._end(self._mapper.finish_seen, "the stream ended before its end: no finishReason")
        return self._mapper.finish()


class GeminiProvider(HTTPProvider):
    """The Gemini API at ``{base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse``.

    Example::

        llm = create_llm("gemini", model="gemini-2.5-flash")     # GEMINI_API_KEY
        print(llm.generate("Say hi").text)

    The key is ``api_key=``, or ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY`` (the first wins when
    both are set, as in Google's SDK), sent as ``x-goog-api-key``. ``base_url`` is the host,
    as Google's SDK takes it (``GOOGLE_GEMINI_BASE_URL``). System messages become
    ``systemInstruction``; ``temperature``, ``top_p``, ``max_tokens``, ``stop`` and ``seed``
    go into ``generationConfig``; any other keyword (``tools``, ``safetySettings``,
    ``generationConfig``...) goes into the request body as it is.
    """

    name: ClassVar[str] = "gemini"
    price_list: ClassVar[str | None] = "google"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"
    base_url_env: ClassVar[tuple[str, ...]] = ("GOOGLE_GEMINI_BASE_URL",)
    # https://ai.google.dev/gemini-api/docs/api-key: GOOGLE_API_KEY takes precedence.
    api_key_env: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    accept_header: ClassVar[str] = "accept"
    # Context windows from Google's Gemini models page. Specialised variants (image and speech
    # models) have smaller windows and are not listed: their prefix over-states them.
    context_windows: ClassVar[Mapping[str, int]] = {
        "gemini-1.5-pro": 2_097_152,
        "gemini-1.5-flash": 1_048_576,
        "gemini-2.0-flash": 1_048_576,
        "gemini-2.5-pro": 1_048_576,
        "gemini-2.5-flash": 1_048_576,
    }
    litellm_models: ClassVar[tuple[str, ...]] = ("gemini-",)

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
        # GEMINI_API_KEY is the name Google's docs lead with; GOOGLE_API_KEY wins if both are set.
        key = self._require_key("GEMINI_API_KEY or GOOGLE_API_KEY")
        # "gemini-2.5-flash" and "models/gemini-2.5-flash" name the same model; a tuned
        # model ("tunedModels/...") keeps its own collection.
        resource = self.model if "/" in self.model else f"models/{self.model}"
        prefix = f"{self.base_url}/{API_VERSION}/{quote(resource, safe='/')}"
        self._stream_url = f"{prefix}:streamGenerateContent?alt=sse"
        self._url = f"{prefix}:generateContent"
        self._headers = {"x-goog-api-key": key, "content-type": "application/json"}

    def capabilities(self) -> Capabilities:
        # A function call arrives whole, arguments and all: no tool streaming.
        return {
            **streaming_capabilities(tools=True, tool_streaming=False, reasoning=True),
            **gemini_inputs(self.model),
        }

    def output_shape(self, fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
        return json_output_shape(fmt, params)

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        url = self._stream_url if stream else self._url
        return self._post_json(url, self._headers, generate_content_body(call), stream=stream)

    def new_parser(self, call: Call) -> GenerateContentParser:
        return GenerateContentParser(GenerateContentMapper(self.name, self.model))

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        return generate_content_events(body, self.name, self.model)

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        return generate_content_error(status, headers, body, self.name, self.model)


# -- the wire's pieces, shared with Vertex AI's Gemini models (vertex.py) ----------------------


def json_output_shape(fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
    """A ``response_format`` as ``generationConfig.responseMimeType`` + ``responseJsonSchema``,
    which takes JSON Schema as it is (ai.google.dev/gemini-api/docs/structured-output); Google
    advises against repeating the schema in the prompt, so there is no instruction."""
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if fmt.schema is not None:
        config["responseJsonSchema"] = fmt.schema
    given = params.get("generationConfig")
    merged = {**given, **config} if isinstance(given, dict) else config
    return OutputShape({**params, "generationConfig": merged}, instruct=False)


def gemini_inputs(model: str | None) -> Capabilities:
    """The files a model takes: every Gemini model images, PDFs, audio (and video), by
    Google's pages on each; a Gemma model served by the API images only (Gemma 3n audio too,
    the 1B model text only), as its model card says."""
    name = (model or "").lower()
    if "gemma" not in name:
        return {
            ModelCapability.VISION: True,
            ModelCapability.PDF_INPUT: True,
            ModelCapability.AUDIO_INPUT: True,
        }
    return {
        ModelCapability.VISION: "-1b" not in name,
        ModelCapability.PDF_INPUT: False,
        ModelCapability.AUDIO_INPUT: "gemma-3n" in name,
    }


def generate_content_body(
    call: Call, *, provider: str = "gemini", url_needs_type: bool = False
) -> dict[str, Any]:
    """A ``GenerateContentRequest`` for a call: its messages, settings, tools and tool choice.

    Files in a user turn's portable parts become ``inlineData`` and ``fileData`` parts
    (:func:`file_part`); one the API cannot take raises ConfigurationError naming it and
    ``provider``. ``url_needs_type``: a file given by URL must name its media type (Vertex
    AI's ``fileData.mimeType`` is required; the Gemini API's is not).

    Example::

        generate_content_body(Call([{"role": "user", "content": "Hi"}], {"max_tokens": 5}))
        # {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        #  "generationConfig": {"maxOutputTokens": 5}}
    """
    params = dict(call.params)

    def files(file: File) -> dict[str, Any]:
        return file_part(file, provider, url_needs_type=url_needs_type)

    system, contents = _contents(call.messages, files)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config: dict[str, Any] = {}
    move_settings(params, config, _GENERATION_CONFIG, "stopSequences")
    params.pop("stream", None)
    for key, value in params.items():
        if value is not None:
            body[key] = value
    if call.tools:
        body["tools"] = _tools(call.tools)
    if call.tool_choice is not None:
        body["toolConfig"] = _tool_config(call.tool_choice)
    if config:
        # A generationConfig given as a keyword (thinkingConfig...) is kept, under
        # the settings spout names.
        given = body.get("generationConfig")
        body["generationConfig"] = {**given, **config} if isinstance(given, dict) else config
    return body


def gemini_usage(usage: Mapping[str, Any]) -> Usage:
    """``usageMetadata`` as spout's usage, counting everything: the input is
    ``promptTokenCount`` (which holds ``cachedContentTokenCount``, the cache's part) and
    ``toolUsePromptTokenCount`` (what a tool such as search or code execution added to the
    prompt); the output is ``candidatesTokenCount`` and ``thoughtsTokenCount``, which Gemini
    counts apart, so that the two add up to ``totalTokenCount``. The rest, and both parts,
    stay in ``extras`` under Gemini's names. (ai.google.dev/api/generate-content#UsageMetadata)

    >>> u = gemini_usage({"promptTokenCount": 18, "candidatesTokenCount": 17,
    ...                   "thoughtsTokenCount": 151, "cachedContentTokenCount": 8})
    >>> u.input_tokens, u.output_tokens, u.reasoning_tokens, u.cache_read_tokens
    (18, 168, 151, 8)
    """
    extras = {
        key: value
        for key, value in usage.items()
        if key not in ("promptTokenCount", "candidatesTokenCount")
    }
    prompt = token_count(usage, "promptTokenCount")
    tool_use = token_count(usage, "toolUsePromptTokenCount")
    candidates = token_count(usage, "candidatesTokenCount")
    thoughts = token_count(usage, "thoughtsTokenCount")
    # A chunk of only thoughts so far has no candidatesTokenCount; one of Vertex AI's with
    # no counts at all (only trafficType) has neither.
    output = (
        None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    )
    return Usage(
        None if prompt is None else prompt + (tool_use or 0),
        output,
        extras,
        cache_read_tokens=token_count(usage, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def generate_content_events(body: bytes, provider: str, model: str | None) -> list[Event]:
    """The events of a whole ``GenerateContentResponse`` (a call not streamed)."""
    data = load_json_object(body)
    mapper = GenerateContentMapper(provider, model)
    events = mapper.map(data)
    events += mapper.finish()
    return events


def generate_content_error(
    status: int, headers: Mapping[str, str], body: bytes, provider: str, model: str | None
) -> ProviderError:
    """The spout error for an HTTP error response carrying a Google error body."""
    data = error_json(body)
    # Without alt=sse an error body is a JSON array of one error: accept both.
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if error is None:
        error = {"message": error_text(status, body)}
    return gemini_error(
        error,
        status_code=status,
        provider=provider,
        model=model,
        # Google documents no request id header; a gateway in front of it may send one.
        request_id=header_value(headers, "x-request-id"),
        retry_after=retry_after_seconds(headers),
    )


def _tools(tools: list[Any]) -> list[Any]:
    """Every :class:`~spout.Tool` as one ``functionDeclarations`` entry; native dicts as given.

    Parameters go as ``parametersJsonSchema`` (full JSON Schema) rather than ``parameters``,
    which takes only an OpenAPI subset.
    """
    declarations = []
    native = []
    for tool in tools:
        if isinstance(tool, dict):
            native.append(tool)
            continue
        declarations.append(tool_declaration(tool, "parametersJsonSchema"))
    return ([{"functionDeclarations": declarations}] if declarations else []) + native


def _tool_config(choice: Any) -> Any:
    """``tool_choice`` as ``toolConfig.functionCallingConfig``: "required" is mode ANY."""
    if isinstance(choice, NamedToolChoice):
        config = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    elif isinstance(choice, str):
        config = {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}
    else:
        return choice
    return {"functionCallingConfig": config}


#: Types Gemini reads as text though they are not ``text/*`` (the document-processing page's
#: list of text formats).
_TEXT_LIKE = frozenset(
    ("application/json", "application/xml", "application/x-javascript", "application/x-python")
)

#: The media type of a file whose type is not known.
_UNKNOWN = "application/octet-stream"


def _known_type(media_type: str) -> bool:
    """Whether a media type is one to send: not unknown, nor only its top half (``image/*``,
    an image_url part's whose URL does not tell)."""
    return media_type != _UNKNOWN and not media_type.endswith("/*")


def file_part(
    file: File, provider: str = "gemini", *, url_needs_type: bool = False
) -> dict[str, Any]:
    """A file as a Gemini part: its bytes as ``inlineData``, its URL as ``fileData``.

    https://ai.google.dev/gemini-api/docs/file-input-methods: Gemini takes images, PDFs,
    audio, video and text inline or by URL (public and signed https URLs, Files API URIs and
    YouTube links on the Gemini API; Vertex AI fetches http(s) and gs:// URIs). A URL whose
    type is not known (a Files API URI, a YouTube link) goes without ``mimeType``, which the
    Gemini API then finds itself, unless ``url_needs_type``.

    Example::

        file_part(File(data=png_bytes))
        # {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo..."}}
        file_part(File(url="https://example.com/a.pdf"))
        # {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}}
    """
    known = _known_type(file.media_type)
    if file.kind == "other" and known and file.media_type not in _TEXT_LIKE:
        raise unsupported(
            provider, file, "Gemini takes images, PDFs, audio, video and text documents"
        )
    if file.url is not None:
        if known:
            return {"fileData": {"mimeType": file.media_type, "fileUri": file.url}}
        if url_needs_type:
            raise unsupported(
                provider, file, "its URL names no media type: give File(url=..., media_type=...)"
            )
        return {"fileData": {"fileUri": file.url}}
    if not known:
        raise unsupported(
            provider, file, "Gemini needs its media type: give File(..., media_type=...)"
        )
    return {"inlineData": {"mimeType": file.media_type, "data": file.base64()}}


def _parts(content: Any, files: Callable[[File], dict[str, Any]] | None = None) -> list[Any]:
    """A message's content as Gemini parts: text, files (portable parts, through ``files``,
    when it is given), or parts given in Gemini's own shape."""
    if not content:
        return []  # Gemini refuses an empty text part
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[Any] = []
    for item in content:
        if isinstance(item, str):
            parts.append({"text": item})
        elif isinstance(item, dict) and item.get("type") == "text":
            parts.append({"text": item.get("text", "")})
        elif files is not None and (file := portable_file(item)) is not None:
            parts.append(files(file))
        else:
            parts.append(item)
    return parts


def _contents(
    messages: list[dict[str, Any]],
    files: Callable[[File], dict[str, Any]] | None = None,
) -> tuple[list[Any], list[dict[str, Any]]]:
    """spout's OpenAI-style messages as Gemini's ``systemInstruction`` parts and ``contents``.

    Roles become "user" and "model"; assistant tool calls become ``functionCall`` parts and
    ``tool`` messages ``functionResponse`` parts (named after the call they answer); a user
    turn's files (portable parts) go through ``files``.
    """
    system: list[Any] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name
    for message in messages:
        role = message.get("role")
        if "parts" in message:
            parts = list(message["parts"])
        else:
            parts = _parts(message.get("content"), files if role == "user" else None)
        if role in ("system", "developer"):
            system += parts
        elif role == "tool":
            call_id = message.get("tool_call_id") or ""
            result: Any = message.get("content")
            if isinstance(result, str):
                with contextlib.suppress(orjson.JSONDecodeError):
                    result = orjson.loads(result)
            # functionResponse.response is a JSON object (a Struct); a failed call reports
            # under "error" (FunctionResponse in the API reference).
            if message.get("is_error"):
                result = {"error": result}
            elif not isinstance(result, dict):
                result = {"result": result}
            part = {
                "functionResponse": {
                    "name": message.get("name") or names.get(call_id, ""),
                    "response": result,
                }
            }
            last = contents[-1] if contents else None
            if (
                last
                and last["role"] == "user"
                and all("functionResponse" in p for p in last["parts"])
            ):
                last["parts"].append(part)  # parallel calls answered in one turn
            else:
                contents.append({"role": "user", "parts": [part]})
        elif role in ("assistant", "model"):
            for tool_call, name, arguments in history_tool_calls(message):
                if tool_call.get("id"):
                    names[tool_call["id"]] = name or ""
                part = {"functionCall": {"name": name, "args": arguments}}
                if tool_call.get("signature"):
                    part["thoughtSignature"] = tool_call["signature"]
                parts.append(part)
            contents.append({"role": "model", "parts": parts})
        else:
            contents.append({"role": "user", "parts": parts})
    return system, contents
