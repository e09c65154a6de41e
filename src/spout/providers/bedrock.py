"""Amazon Bedrock's Converse API: requests, SigV4 signing, the event stream, and errors."""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import orjson

from .._capabilities import Capabilities, ModelCapability
from .._errors import (
    ConfigurationError,
    ProtocolError,
    ProviderError,
    StreamInterruptedError,
)
from .._events import (
    Citation,
    Event,
    FileEnd,
    FileStart,
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
from .._log import checked_key
from .._request import HTTPRequest, header_value
from ..eventstream import EventStreamDecoder, Message
from ._base import (
    AsyncSource,
    Call,
    HTTPProvider,
    NamedToolChoice,
    StreamParser,
    WireMapper,
    env_value,
    load_json,
    load_json_object,
    streaming_capabilities,
    text_content,
    tool_call_from_json,
)
from ._common import (
    ToolIds,
    answer_file,
    error_json,
    error_of_type,
    error_text,
    history_tool_calls,
    move_settings,
    object_arguments,
    portable_file,
    retry_after_seconds,
    token_count,
    tool_declaration,
)

if TYPE_CHECKING:
    from botocore.credentials import Credentials
    from botocore.session import Session

__all__ = ["BedrockProvider", "ConverseStreamMapper"]

#: The name requests are signed for: the service model's ``signingName``, not the endpoint's
#: ``bedrock-runtime`` (botocore/data/bedrock-runtime/2023-09-30/service-2.json, metadata).
SIGNING_NAME = "bedrock"

INSTALL_HINT = (
    "the bedrock provider signs requests with AWS's botocore: pip install 'spout[bedrock]' "
    "(or use a Bedrock API key: api_key=... or AWS_BEARER_TOKEN_BEDROCK)"
)

# StopReason in the service model; https://docs.aws.amazon.com/bedrock/latest/APIReference/
# API_runtime_MessageStopEvent.html
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# The HTTP status of each error shape in the service model (its ``error.httpStatusCode``), by
# the name an exception frame gives in ``:exception-type`` (the stream union's member, first
# letter lower case). ModelStreamErrorException and ModelErrorException say 424 (the model
# behind Bedrock failed): spout counts them as server errors, which are not retried inside a
# stream; throttling and service-unavailable are (spout._policy.retryable).
_STATUS_FOR_TYPE = {
    "validationException": 400,
    "serviceQuotaExceededException": 400,
    "accessDeniedException": 403,
    "resourceNotFoundException": 404,
    "modelTimeoutException": 408,
    "throttlingException": 429,
    "modelNotReadyException": 429,
    "internalServerException": 500,
    "modelStreamErrorException": 500,
    "modelErrorException": 500,
    "serviceUnavailableException": 503,
}


def _error_name(value: str | None) -> str | None:
    """An error type as the stream names it: ``ThrottlingException:http://internal...`` (the
    ``x-amzn-ErrorType`` header) and ``com.amazon...#ThrottlingException`` both become
    ``throttlingException``, as botocore reads them (RestJSONParser._inject_error_code)."""
    if not value:
        return None
    name = value.split(":", 1)[0].rsplit("#", 1)[-1]
    return name[:1].lower() + name[1:] if name else None


def bedrock_error(
    error_type: str | None,
    body: Any,
    *,
    status_code: int | None,
    provider: str,
    model: str | None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The spout error for a Bedrock error: its type (``throttlingException``) and its body
    (``{"message": ...}``). ``status_code`` is None for an exception frame inside a stream:
    the class then follows the type, and the error carries no status, since none was sent."""
    name = _error_name(error_type)
    if isinstance(body, dict):
        # rest-json errors spell it "message"; some gateways "Message" (botocore reads both).
        message = str(body.get("message") or body.get("Message") or name or body)
    else:
        message = str(body) if body else (name or "unknown error")
    return error_of_type(
        status_code,
        message,
        name,
        _STATUS_FOR_TYPE,
        provider=provider,
        model=model,
        request_id=request_id,
        body=body,
        retry_after=retry_after,
    )


#: spout's settings under Converse's names, in ``inferenceConfig``.
_INFERENCE_CONFIG = (("max_tokens", "maxTokens"), ("temperature", "temperature"), ("top_p", "topP"))


class ConverseStreamMapper(WireMapper):
    """Turns ConverseStream's events (the ``:event-type`` and the JSON payload) into spout
    events, with no I/O.

    Content blocks are keyed by ``contentBlockIndex``; a ``toolUse`` block becomes a tool call
    numbered in the order calls appear (0, 1...). The answer ends with ``messageStop`` (the
    stop reason) and then ``metadata`` (usage): :class:`Finish` goes out once both arrived.

    An ``image`` block is a file: begun at its start (its ``format``), its base64 pieces
    joined, whole at its stop. A text block's ``citation`` deltas become :class:`Citation`
    events when the block stops, each placing the block in the answer's text. Blocks and
    deltas of kinds spout does not know (``toolResult``...) come as :class:`RawEvent`, a
    block whole at its stop.
    """

    __slots__ = (
        "_blocks",
        "_chars",
        "_file_count",
        "_files",
        "_finish_raw",
        "_others",
        "_texts",
        "_tool_count",
        "metadata_seen",
        "stopped",
    )

    def __init__(self, provider: str, model: str | None) -> None:
        super().__init__(provider, model)
        # contentBlockIndex -> [tool index, id, name, argument parts] for open toolUse blocks
        self._blocks: dict[Any, list[Any]] = {}
        # contentBlockIndex -> [the block's start in the answer's text, its citations]
        self._texts: dict[Any, list[Any]] = {}
        # contentBlockIndex -> [file index, media type, base64 pieces] for open image blocks
        self._files: dict[Any, list[Any]] = {}
        # contentBlockIndex -> [kind, its start, its deltas] for open blocks spout does not know
        self._others: dict[Any, list[Any]] = {}
        self._chars = 0  # characters of answer text sent: citations are placed in it
        self._file_count = 0
        self._tool_count = 0
        self._finish_raw: str | None = None
        #: Whether ``messageStop`` and ``metadata`` arrived: the stream's end is both.
        self.stopped = False
        self.metadata_seen = False

    @property
    def ended(self) -> bool:
        return self.stopped and self.metadata_seen

    def message(self, message: Message) -> list[Event]:
        """The events of one event-stream message; an exception or error message raises."""
        headers = message.headers
        kind = headers.get(":message-type")
        if kind == "event":
            event_type = headers.get(":event-type")
            data = load_json(message.payload, "a stream event") if message.payload else {}
            if not isinstance(data, dict) or not isinstance(event_type, str):
                return []
            return self.map(event_type, data)
        if kind == "exception":
            exception_type = headers.get(":exception-type")
            body = load_json(message.payload, "a stream exception") if message.payload else {}
            raise bedrock_error(
                str(exception_type) if exception_type is not None else None,
                body,
                status_code=None,
                provider=self._provider,
                model=self._model,
            )
        if kind == "error":
            # The framing's own error form: the code and message in headers, no payload.
            code = headers.get(":error-code")
            raise bedrock_error(
                str(code) if code is not None else None,
                {"message": str(headers.get(":error-message") or code or "stream error")},
                status_code=None,
                provider=self._provider,
                model=self._model,
            )
        return []  # a message type added later

    def map(self, event_type: str, data: dict[str, Any]) -> list[Event]:
        if event_type == "contentBlockDelta":
            return self._delta(data)
        if event_type == "contentBlockStart":
            return self._block_start(data)
        if event_type == "contentBlockStop":
            return self._block_stop(data.get("contentBlockIndex"))
        if event_type == "messageStop":
            if self.stopped:
                return []
            self.stopped = True
            self._finish_raw = data.get("stopReason") or None
            return self.finish() if self.metadata_seen else []
        if event_type == "metadata":
            if self.metadata_seen:
                return []
            self.metadata_seen = True
            events: list[Event] = []
            usage = data.get("usage")
            if isinstance(usage, dict):
                events.append(_usage(usage, data.get("metrics")))
            if self.stopped:
                events += self.finish()
            return events
        # messageStart (it names only the role), and event types added later.
        return []

    def _delta(self, data: dict[str, Any]) -> list[Event]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return []
        text = delta.get("text")
        if text is not None:
            if not text:
                return []
            index = data.get("contentBlockIndex")
            if index not in self._texts:
                self._texts[index] = [self._chars, []]
            self._chars += len(text)
            return [TextDelta(text)]
        tool_use = delta.get("toolUse")
        if isinstance(tool_use, dict):
            block = self._blocks.get(data.get("contentBlockIndex"))
            partial = tool_use.get("input")
            if block is None or not partial:
                return []
            block[3].append(partial)
            return [ToolCallDelta(block[0], partial)]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            if reasoning.get("text"):
                return [ReasoningDelta(reasoning["text"])]
            if reasoning.get("signature"):
                return [ReasoningDelta(signature=reasoning["signature"])]
            if isinstance(reasoning.get("redactedContent"), str):
                # Reasoning the model's vendor encrypted (base64 on the wire): nothing
                # readable, and it must go back as it came.
                return [ReasoningDelta(redacted=reasoning["redactedContent"])]
            return [RawEvent(key, value) for key, value in reasoning.items()]
        return self._other_delta(data.get("contentBlockIndex"), delta)

    def _other_delta(self, index: Any, delta: dict[str, Any]) -> list[Event]:
        citation = delta.get("citation")
        if isinstance(citation, dict):
            # Said of the text block it is in: given, placed, when that block stops.
            self._texts.setdefault(index, [self._chars, []])[1].append(citation)
            return []
        image = delta.get("image")
        file = self._files.get(index)
        if isinstance(image, dict) and file is not None:
            source = image.get("source")
            piece = source.get("bytes") if isinstance(source, dict) else None
            if isinstance(piece, str) and piece:
                file[2].append(piece)
                return []
        other = self._others.get(index)
        if other is not None:
            other[2].append(delta)  # a block spout does not know: given whole at its stop
            return []
        return [RawEvent(key, value) for key, value in delta.items()]

    def _block_start(self, data: dict[str, Any]) -> list[Event]:
        start = data.get("start")
        start = start if isinstance(start, dict) else {}
        tool_use = start.get("toolUse")
        if not isinstance(tool_use, dict):
            image = start.get("image")
            block = data.get("contentBlockIndex")
            if isinstance(image, dict):
                media_type = _IMAGE_TYPES.get(str(image.get("format")))
                self._files[block] = [self._file_count, media_type, []]
                self._file_count += 1
                return [FileStart(self._file_count - 1, media_type)]
            for kind, value in start.items():
                self._others[block] = [kind, value, []]  # toolResult, and later kinds
            return []
        index = self._tool_count
        self._tool_count += 1
        call_id = tool_use.get("toolUseId") or f"call_{index}"
        name = tool_use.get("name") or ""
        self._blocks[data.get("contentBlockIndex")] = [index, call_id, name, []]
        return [ToolCallStart(index, call_id, name)]

    def _block_stop(self, index: Any) -> list[Event]:
        block = self._blocks.pop(index, None)
        if block is None:
            text = self._texts.pop(index, None)
            if text is not None:
                return _citations(text[1], text[0], self._chars)
            file = self._files.pop(index, None)
            if file is not None:
                file_index, media_type, pieces = file
                return [answer_file(file_index, "".join(pieces), media_type, "image")]
            other = self._others.pop(index, None)
            if other is not None:
                kind, start, deltas = other
                return [RawEvent(kind, {"start": start, "deltas": deltas})]
            return []
        tool_index, call_id, name, parts = block
        return [ToolCallEnd(tool_index, tool_call_from_json(call_id, name, "".join(parts)))]

    def finish(self) -> list[Event]:
        """The events that close the response: tool calls left open, then :class:`Finish`."""
        events: list[Event] = []
        for index in [*self._blocks, *self._texts, *self._files, *self._others]:
            events += self._block_stop(index)
        raw = self._finish_raw
        if raw is None:
            reason: FinishReason = "tool_calls" if self._tool_count else "stop"
        else:
            # Reasons spout has no name for (malformed_model_output, malformed_tool_use) are
            # kept raw beside "stop".
            reason = _FINISH.get(raw, "stop")
        events.append(Finish(reason, raw))
        return events


# ImageFormat in Bedrock's service model.
_IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


def _citations(citations: list[Any], start: int, end: int) -> list[Event]:
    """A text block's citations (``CitationsDelta`` / ``Citation``): the source's words it
    cites (``sourceContent``), the source (``title``; a web page's url, a search result's
    ``source``), supporting the block, which spans ``start`` to ``end`` of the answer."""
    events: list[Event] = []
    for citation in citations:
        if not isinstance(citation, dict):
            continue
        quoted = "".join(
            piece.get("text") or ""
            for piece in citation.get("sourceContent") or ()
            if isinstance(piece, dict)
        )
        location = citation.get("location")
        web = location.get("web") if isinstance(location, dict) else None
        url = web.get("url") if isinstance(web, dict) else None
        title = citation.get("title")
        events.append(
            Citation(quoted or None, url or citation.get("source"), title, start, end, citation)
        )
    return events


def _usage(usage: dict[str, Any], metrics: Any) -> Usage:
    """TokenUsage as spout's usage: everything but the two counts (totalTokens, the cache
    reads and writes) in ``extras`` under Bedrock's names, with ``metrics.latencyMs``.

    ``inputTokens`` leaves out the prompt read from the cache and the prompt written to it
    (``totalTokens`` is the four added up; docs.aws.amazon.com/bedrock/latest/userguide/
    prompt-caching.html): spout's ``input_tokens`` is the whole input, the three added up.
    """
    extras = {
        key: value
        for key, value in usage.items()
        if key not in ("inputTokens", "outputTokens") and value is not None
    }
    if isinstance(metrics, dict) and metrics.get("latencyMs") is not None:
        extras["latencyMs"] = metrics["latencyMs"]
    uncached = token_count(usage, "inputTokens")
    read = token_count(usage, "cacheReadInputTokens")
    write = token_count(usage, "cacheWriteInputTokens")
    return Usage(
        None if uncached is None else uncached + (read or 0) + (write or 0),
        usage.get("outputTokens"),
        extras,
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


class _StreamParser(StreamParser):
    """Event-stream bytes in, events out, for ConverseStream."""

    __slots__ = ("_decoder", "_mapper")

    def __init__(self, mapper: ConverseStreamMapper) -> None:
        super().__init__()
        self._decoder = EventStreamDecoder()
        self._mapper = mapper

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        message = self._mapper.message
        decoder = self._decoder
        for item in decoder.feed(chunk):
            events += message(item)
        # A malformed message after good ones is held by the decoder for its next call: asked
        # now, its error comes right after the events before it, not at the stream's end.
        decoder.feed(b"")

    def _close(self) -> list[Event]:
        mapper = self._mapper
        if not mapper.ended:
            # A body that stops short, even inside a message, was cut: an interruption
            # (which may be resumed), not a malformed stream.
            missing = "messageStop" if not mapper.stopped else "metadata"
            try:
                self._decoder.close()
            except ProtocolError as exc:
                raise StreamInterruptedError(
                    f"the stream ended before its end: no {missing}, and {exc}"
                ) from exc
            raise StreamInterruptedError(f"the stream ended before its end: no {missing}")
        self._decoder.close()  # bytes after the end that make no message
        return []


class BedrockProvider(HTTPProvider):
    """Amazon Bedrock's Converse API at ``{base_url}/model/{modelId}/converse-stream``.

    Example::

        llm = create_llm(
            "bedrock", model="us.anthropic.claude-3-5-haiku-20241022-v1:0", region="us-east-1"
        )
        print(llm.generate("Say hi", max_tokens=100).text)

    Requests are signed with SigV4 using AWS's standard credential chain (environment, the
    shared config and credentials files and their profiles, SSO, container and instance
    roles) through botocore (``pip install 'spout[bedrock]'``); ``profile=`` picks a profile.
    A Bedrock API key (``api_key=`` or ``AWS_BEARER_TOKEN_BEDROCK``) is sent as a bearer token
    instead, unsigned, and needs no botocore. The region is ``region=``, else ``AWS_REGION``
    or ``AWS_DEFAULT_REGION``, else the profile's; ``base_url`` (default
    ``https://bedrock-runtime.{region}.amazonaws.com``, or ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``
    / ``AWS_ENDPOINT_URL``) replaces only where requests go. Credentials are resolved on the
    first request, not here: the chain may call the network (instance metadata, SSO).

    System messages become ``system``; ``max_tokens``, ``temperature``, ``top_p`` and ``stop``
    go into ``inferenceConfig``; any other keyword (``additionalModelRequestFields``,
    ``guardrailConfig``, ``performanceConfig``...) goes into the request body as it is.
    ``seed`` is refused: Converse has no such parameter.
    """

    name: ClassVar[str] = "bedrock"
    price_list: ClassVar[str | None] = "aws"
    api_key_env: ClassVar[tuple[str, ...]] = ("AWS_BEARER_TOKEN_BEDROCK",)
    # The SDKs' service-specific endpoint variable first, then the global one (AWS SDKs and
    # Tools reference guide, "Service-specific endpoints").
    base_url_env: ClassVar[tuple[str, ...]] = (
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_ENDPOINT_URL",
    )
    region_env: ClassVar[tuple[str, ...]] = ("AWS_REGION", "AWS_DEFAULT_REGION")
    # completion(model="bedrock/<model id>", aws_region_name=..., aws_profile_name=...)
    litellm_settings: ClassVar[Mapping[str, str]] = {
        "aws_region_name": "region",
        "aws_profile_name": "profile",
    }
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-amzn-RequestId", "x-amzn-requestid")
    # Claude on Bedrock: the foundation model ids and the cross-region inference profiles.
    context_windows: ClassVar[Mapping[str, int]] = {
        f"{prefix}anthropic.claude-": 200_000 for prefix in ("", "us.", "eu.", "apac.", "global.")
    }

    @classmethod
    def litellm_config(
        cls, model: str | None, config: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        # litellm names the Converse route in the model ("bedrock/converse/<id>"); spout
        # speaks only Converse, so the route's name is dropped.
        if model is not None and model.startswith("converse/"):
            model = model.removeprefix("converse/")
        return super().litellm_config(model, config)

    @classmethod
    def env_names(cls) -> tuple[str, ...]:
        return (
            *cls.base_url_env,
            *cls.api_key_env,
            *cls.region_env,
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
        )

    def __init__(
        self,
        model: str | None = None,
        *,
        region: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        profile: str | None = None,
        headers: dict[str, str] | None = None,
        **transport: Any,
    ) -> None:
        super().__init__(model, headers=headers, **transport)
        self.api_key: str | None = checked_key(self.name, api_key or env_value(*self.api_key_env))
        self.profile = profile
        self._session: Session | None = None
        self._credentials: Credentials | None = None
        if self.api_key is None and importlib.util.find_spec("botocore") is None:
            raise ConfigurationError(INSTALL_HINT)
        given_url = base_url or env_value(*self.base_url_env)
        self.region: str | None = region or env_value(*self.region_env)
        if self.region is None and (self.api_key is None or given_url is None):
            self.region = self._profile_region()
        # The region names the endpoint, and is part of what a signature covers: only a
        # request sent with a key to a base_url of one's own goes without one.
        if self.region is None and (given_url is None or self.api_key is None):
            raise ConfigurationError(
                "provider 'bedrock' needs a region: pass region=... or set AWS_REGION "
                "(or a region in your AWS profile)"
            )
        self.base_url = (
            given_url or f"https://bedrock-runtime.{self.region}.amazonaws.com"
        ).rstrip("/")
        # The model id is one path segment, percent-encoded as botocore's serializer encodes
        # a URI label (everything but letters, digits and "-_.~"): "...-v1:0" is sent as
        # "...-v1%3A0", and an ARN's "/" as "%2F". SigV4 then encodes that path once more.
        prefix = f"{self.base_url}/model/{quote(self.model, safe='')}"
        self._stream_url = f"{prefix}/converse-stream"
        self._url = f"{prefix}/converse"

    def capabilities(self) -> Capabilities:
        return {
            **streaming_capabilities(tools=True, tool_streaming=True, reasoning=True),
            **bedrock_inputs(self.model),
        }

    # -- credentials: botocore's chain, resolved on first use ---------------------------------

    def _botocore_session(self) -> Session:
        if self._session is None:
            try:
                import botocore.session
            except ImportError:  # pragma: no cover - checked in __init__ when it matters
                raise ConfigurationError(INSTALL_HINT) from None
            self._session = botocore.session.Session(profile=self.profile)
        return self._session

    def _profile_region(self) -> str | None:
        """The region of the profile (``profile=``, else ``AWS_PROFILE``, else default)."""
        if importlib.util.find_spec("botocore") is None:
            return None
        from botocore.exceptions import BotoCoreError

        try:
            region = self._botocore_session().get_config_variable("region")
        except BotoCoreError as exc:
            raise ConfigurationError(f"provider 'bedrock': {exc}") from None
        return str(region) if region else None

    def _frozen_credentials(self) -> Any:
        """The credentials to sign one request with: resolved by botocore's chain on first
        use, and frozen per request (refreshable ones, SSO or a role's, renew themselves)."""
        from botocore.exceptions import BotoCoreError

        try:
            if self._credentials is None:
                credentials = self._botocore_session().get_credentials()
                if credentials is None:
                    raise ConfigurationError(
                        "provider 'bedrock' found no AWS credentials: set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, configure a profile (aws configure, aws sso "
                        "login), or use a Bedrock API key (api_key=... or "
                        "AWS_BEARER_TOKEN_BEDROCK)"
                    )
                self._credentials = credentials
            return self._credentials.get_frozen_credentials()
        except BotoCoreError as exc:
            raise ConfigurationError(
                f"provider 'bedrock' could not get credentials: {exc}"
            ) from exc

    def _needs_credentials_io(self) -> bool:
        """Whether signing the next request may wait on the network: the chain not yet run,
        or refreshable credentials about to expire."""
        if self.api_key is not None:
            return False
        credentials = self._credentials
        if credentials is None:
            return True
        refresh_needed = getattr(credentials, "refresh_needed", None)
        return bool(refresh_needed()) if refresh_needed is not None else False

    async def _aready(self) -> None:
        # botocore's chain is synchronous and may wait on the network (instance metadata,
        # SSO, STS): done in a worker thread, only when it has to run, so the event loop
        # never blocks on it. Signing itself is pure.
        if self._needs_credentials_io():
            import asyncio

            await asyncio.to_thread(self._frozen_credentials)

    async def aopen_stream(self, call: Call) -> AsyncSource:
        await self._aready()
        return await super().aopen_stream(call)

    async def acomplete(self, call: Call) -> Iterable[Event]:
        await self._aready()
        return await super().acomplete(call)

    def _signed(self, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """The headers with SigV4's added, signed over exactly this URL, these headers and
        these body bytes: what is signed is what is sent."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self._frozen_credentials()
        request = AWSRequest(method="POST", url=url, headers=headers, data=body)
        SigV4Auth(credentials, SIGNING_NAME, self.region).add_auth(request)
        return {str(name): str(value) for name, value in request.headers.items()}

    # -- the pure parts ------------------------------------------------------------------------

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        params = dict(call.params)
        if params.pop("seed", None) is not None:
            raise ConfigurationError(
                "Bedrock does not take seed: the Converse API has no such parameter; "
                "leave seed out for this provider"
            )
        params.pop("stream", None)
        system, messages = _messages(call.messages, self.name)
        body: dict[str, Any] = {"messages": messages}
        if system:
            body["system"] = system
        config: dict[str, Any] = {}
        move_settings(params, config, _INFERENCE_CONFIG, "stopSequences")
        for key, value in params.items():
            if value is not None:
                body[key] = value
        if config:
            # An inferenceConfig given as a keyword is kept, under the settings spout names.
            given = body.get("inferenceConfig")
            body["inferenceConfig"] = {**given, **config} if isinstance(given, dict) else config
        tool_config = _tool_config(call, messages)
        if tool_config is not None:
            body["toolConfig"] = tool_config
        data = orjson.dumps(body)
        url = self._stream_url if stream else self._url
        headers = {"Content-Type": "application/json"}
        if self.api_key is not None:
            # A Bedrock API key is a bearer token, and such a request is not signed
            # (https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys-use.html).
            headers["Authorization"] = f"Bearer {self.api_key}"
        else:
            headers = self._signed(url, headers, data)
        return HTTPRequest("POST", url, headers, data)

    def new_parser(self, call: Call) -> _StreamParser:
        return _StreamParser(ConverseStreamMapper(self.name, self.model))

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        data = load_json_object(body)
        output = data.get("output")
        message = output.get("message") if isinstance(output, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        events: list[Event] = []
        tool_index = file_index = chars = 0
        for block in content or ():
            if not isinstance(block, dict):
                continue
            if block.get("text"):
                events.append(TextDelta(block["text"]))
                chars += len(block["text"])
            elif isinstance(block.get("citationsContent"), dict):
                cited = block["citationsContent"]
                text = "".join(
                    piece.get("text") or ""
                    for piece in cited.get("content") or ()
                    if isinstance(piece, dict)
                )
                if text:
                    events.append(TextDelta(text))
                events += _citations(cited.get("citations") or [], chars, chars + len(text))
                chars += len(text)
            elif isinstance(block.get("image"), dict):
                image = block["image"]
                source = image.get("source")
                encoded = source.get("bytes") if isinstance(source, dict) else None
                media_type = _IMAGE_TYPES.get(str(image.get("format")))
                end = answer_file(file_index, encoded, media_type, "image")
                if isinstance(end, FileEnd):
                    events.append(FileStart(file_index, media_type))
                    file_index += 1
                events.append(end)
            elif isinstance(block.get("toolUse"), dict):
                tool_use = block["toolUse"]
                call_id = tool_use.get("toolUseId") or f"call_{tool_index}"
                name = tool_use.get("name") or ""
                arguments = object_arguments(tool_use.get("input"))
                events.append(ToolCallStart(tool_index, call_id, name))
                # The whole response carries the input as an object, not as JSON text.
                events.append(
                    ToolCallEnd(tool_index, ToolCall(call_id, name, arguments, arguments_raw=None))
                )
                tool_index += 1
            elif isinstance(block.get("reasoningContent"), dict):
                reasoning = block["reasoningContent"].get("reasoningText")
                if isinstance(reasoning, dict):
                    if reasoning.get("text"):
                        events.append(ReasoningDelta(reasoning["text"]))
                    if reasoning.get("signature"):
                        events.append(ReasoningDelta(signature=reasoning["signature"]))
                for key, value in block["reasoningContent"].items():
                    if key == "redactedContent" and isinstance(value, str):
                        events.append(ReasoningDelta(redacted=value))
                    elif key != "reasoningText":
                        events.append(RawEvent(key, value))
            else:
                # A block spout does not know, as sent.
                events += [RawEvent(key, value) for key, value in block.items()]
        mapper = ConverseStreamMapper(self.name, self.model)
        events += mapper.map("messageStop", {"stopReason": data.get("stopReason")})
        events += mapper.map(
            "metadata", {"usage": data.get("usage"), "metrics": data.get("metrics")}
        )
        return events

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        data = error_json(body)
        if not isinstance(data, dict):
            data = {"message": error_text(status, body)}
        # The type is in x-amzn-ErrorType ("ThrottlingException:http://internal.amazon.com/
        # coral/com.amazon.bedrock/"), or in the body's "__type" / "code".
        error_type = header_value(headers, "x-amzn-ErrorType", "x-amzn-errortype") or (
            data.get("__type") or data.get("code")
        )
        return bedrock_error(
            str(error_type) if error_type else None,
            data,
            status_code=status,
            provider=self.name,
            model=self.model,
            request_id=self._request_id(headers),
            retry_after=retry_after_seconds(headers),
        )


def _tool(tool: Any) -> dict[str, Any]:
    """A :class:`~spout.Tool` as Converse's ``toolSpec``, its schema under ``inputSchema.json``."""
    spec = tool_declaration(tool, "inputSchema")
    spec["inputSchema"] = {"json": spec["inputSchema"]}
    return {"toolSpec": spec}


def _tool_config(call: Call, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``toolConfig``: the tools and ``toolChoice`` ("auto" is ``{"auto": {}}``, "required"
    ``{"any": {}}``, a name ``{"tool": {"name": ...}}``).

    Converse has no "none": the tools are left out then, unless the conversation holds
    ``toolUse`` or ``toolResult`` blocks, which Bedrock refuses without a ``toolConfig``; they
    are sent then with no ``toolChoice``
    (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ToolChoice.html).
    """
    if not call.tools:
        return None
    choice = call.tool_choice
    if choice == "none" and not _has_tool_blocks(messages):
        return None
    tools: list[Any] = []
    for tool in call.tools:
        if isinstance(tool, dict):
            tools.append(tool)  # Converse's own shape, as given
            continue
        tools.append(_tool(tool))
        if tool.cache_control is not None:
            tools.append(_cache_point(tool.cache_control))
    config: dict[str, Any] = {"tools": tools}
    if isinstance(choice, NamedToolChoice):
        config["toolChoice"] = {"tool": {"name": choice.name}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict):
        config["toolChoice"] = choice
    return config


def _has_tool_blocks(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(block, dict) and ("toolUse" in block or "toolResult" in block)
        for message in messages
        for block in message["content"]
    )


def _cache_point(cache_control: Any) -> dict[str, Any]:
    """A ``cache_control`` marker (Anthropic's prompt-cache breakpoint) as the Converse block
    that does its work where it stands: ``{"cachePoint": {"type": "default"}}``, with
    Anthropic's ``ttl`` when it is one Converse takes (CachePointBlock in the service model:
    type "default", ttl "5m" or "1h")."""
    point: dict[str, Any] = {"type": "default"}
    ttl = cache_control.get("ttl") if isinstance(cache_control, dict) else None
    if ttl in ("5m", "1h"):
        point["ttl"] = ttl
    return {"cachePoint": point}


def _reasoning_block(block: dict[str, Any]) -> dict[str, Any]:
    """One of spout's reasoning blocks as Converse takes it back (a ReasoningContentBlock)."""
    if "redacted" in block:
        return {"reasoningContent": {"redactedContent": block["redacted"]}}
    text: dict[str, Any] = {"text": block.get("text") or ""}
    if block.get("signature"):
        text["signature"] = block["signature"]
    return {"reasoningContent": {"reasoningText": text}}


def _blocks(content: Any) -> list[Any]:
    """A message's content as Converse content blocks: text, or blocks given in Converse's
    own shape (``{"image": ...}``, ``{"cachePoint": ...}``). Blank text is left out: Bedrock
    refuses a blank text block. A text block's ``cache_control`` becomes a ``cachePoint``
    after it."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"text": content}]
    if isinstance(content, dict):
        return [content]
    blocks: list[Any] = []
    for item in content:
        if isinstance(item, str):
            if item:
                blocks.append({"text": item})
        elif isinstance(item, dict) and item.get("type") == "text":
            if item.get("text"):
                blocks.append({"text": item["text"]})
            if item.get("cache_control"):
                blocks.append(_cache_point(item["cache_control"]))
        else:
            blocks.append(item)
    return blocks


#: What a toolResult block holds (ToolResultContentBlock in the service model).
_RESULT_KINDS = frozenset(("text", "json", "image", "document", "video", "searchResult"))


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    """A ``tool`` message as a ``toolResult`` block: text, an object as ``json``, or blocks
    given in Converse's own shape."""
    content = message.get("content")
    blocks: list[Any]
    if isinstance(content, dict):
        blocks = [{"json": content}]
    elif (
        isinstance(content, list)
        and content
        and all(isinstance(b, dict) and len(b) == 1 and set(b) <= _RESULT_KINDS for b in content)
    ):
        blocks = content
    else:
        blocks = [{"text": text_content(content)}]
    result: dict[str, Any] = {"toolUseId": message.get("tool_call_id"), "content": blocks}
    if message.get("is_error"):
        # Only Claude and Nova take a status (ToolResultBlock in the API reference): it is
        # sent only when it says something.
        result["status"] = "error"
    return {"toolResult": result}


#: Converse's tool-use ids: ``ToolUseId`` in botocore's bedrock-runtime service model is
#: ``[a-zA-Z0-9_.:-]+``, 1 to 64 characters (a longer one is refused with a
#: ValidationException); ids from elsewhere are sent without the other characters.
BEDROCK_TOOL_IDS = ToolIds.of_chars("a-zA-Z0-9_.:-", max_length=64)


def _messages(
    messages: list[dict[str, Any]], provider: str = "bedrock"
) -> tuple[list[Any], list[dict[str, Any]]]:
    """spout's OpenAI-style messages as Converse's ``system`` blocks and ``messages``.

    System messages are lifted out; assistant tool calls become ``toolUse`` blocks, after the
    turn's reasoning (with its signature) and text; ``tool`` messages become ``toolResult``
    blocks in a user turn; a user turn's files (portable parts) become ``image``, ``document``
    and ``video`` blocks (:func:`file_block`). Turns of one role in a row are sent as one:
    Converse asks them to alternate, and parallel calls' results go back together. Tool-call
    ids Converse would refuse are rewritten alike in calls and results
    (:data:`BEDROCK_TOOL_IDS`); the caller's messages keep theirs.
    """
    messages = BEDROCK_TOOL_IDS.rewrite(messages)
    system: list[Any] = []
    out: list[dict[str, Any]] = []
    documents = _DocumentNames()

    def add(role: str, blocks: list[Any]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": list(blocks)})

    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system += _blocks(content)
        elif role == "tool":
            add("user", [_tool_result(message)])
        elif role == "assistant":
            blocks: list[Any] = []
            if message.get("reasoning_blocks"):
                # Each reasoning block, in order, as it came (encrypted ones too).
                blocks += [
                    _reasoning_block(block)
                    for block in message["reasoning_blocks"]
                    if "item" not in block  # another API's reasoning items
                ]
            elif message.get("reasoning_signature"):
                # A turn that thought must go back with its reasoning, signature intact, before
                # its tool calls (ReasoningTextBlock: "include the text and its signature
                # unmodified").
                blocks.append(
                    {
                        "reasoningContent": {
                            "reasoningText": {
                                "text": message.get("reasoning") or "",
                                "signature": message["reasoning_signature"],
                            }
                        }
                    }
                )
            blocks += _blocks(content)
            for tool_call, name, arguments in history_tool_calls(message):
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": tool_call.get("id"),
                            "name": name,
                            "input": arguments,
                        }
                    }
                )
            add("assistant", blocks)
        elif isinstance(content, list):
            add("user", _user_blocks(content, provider, documents))
        else:
            add("user", _blocks(content))
        if message.get("cache_control"):
            # A message's cache_control (litellm's place for it): a cachePoint after it.
            point = _cache_point(message["cache_control"])
            if role in ("system", "developer"):
                system.append(point)
            else:
                add("assistant" if role == "assistant" else "user", [point])
    for message in out:
        _check_documents(message["content"], provider, documents)
    return system, out


# -- files: what a user turn's portable parts become ------------------------------------------

# The formats Converse names (ImageFormat, DocumentFormat and VideoFormat in the service model),
# by media type.
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_VIDEO_FORMATS = {
    "video/x-matroska": "mkv",
    "video/quicktime": "mov",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/x-flv": "flv",
    "video/mpeg": "mpeg",
    "video/x-ms-wmv": "wmv",
    "video/3gpp": "three_gp",
}

# Which models take images, from AWS's table of the Converse API's models and features
# (userguide/conversation-inference-supported-models-features.html, "Vision"), matched in the
# model id wherever it stands (a foundation model, a cross-region profile "us.", an ARN).
_VISION = (
    "anthropic.claude-3",
    "anthropic.claude-sonnet-4",
    "anthropic.claude-opus-4",
    "anthropic.claude-haiku-4",
    "amazon.nova-",
    "meta.llama3-2-11b",
    "meta.llama3-2-90b",
    "meta.llama4",
    "mistral.pixtral",
)
_NO_VISION = ("anthropic.claude-3-5-haiku", "amazon.nova-micro")
# The models the same table lists without "Document chat" (or without chat at all).
_NO_DOCUMENTS = (
    "amazon.nova-micro",
    "amazon.titan-text-premier",
    "ai21.jamba-instruct",
    "ai21.j2",
    "cohere.command-text",
    "cohere.command-light",
)


def bedrock_inputs(model: str | None) -> Capabilities:
    """The files a model on Bedrock takes, by AWS's table of Converse's features: images for
    Claude 3 and later (but 3.5 Haiku), Nova Lite, Pro and Premier, Llama 3.2 11B and 90B,
    Llama 4 and Pixtral; documents (PDF among them) for every model but the few listed without
    document chat; audio for none spout sends it to.

    A model named by an ARN that holds no model id (an application inference profile, a
    provisioned model) could be any: it is declared to take both, and Bedrock answers for it.
    """
    name = (model or "").lower()
    if name.startswith("arn:") and "." not in name.rsplit("/", 1)[-1]:
        vision = documents = True
    else:
        vision = any(m in name for m in _VISION) and not any(m in name for m in _NO_VISION)
        documents = not any(m in name for m in _NO_DOCUMENTS)
    return {
        ModelCapability.VISION: vision,
        ModelCapability.PDF_INPUT: documents,
        ModelCapability.AUDIO_INPUT: False,
    }


class _DocumentNames:
    """The document names one request has used: Converse refuses two documents of one name."""

    __slots__ = ("_used", "files")

    def __init__(self) -> None:
        self._used: set[str] = set()
        #: each name given, and the file it names
        self.files: dict[str, File] = {}

    def name(self, file: File) -> str:
        """A name for a document as DocumentBlock allows it (letters and digits, single
        spaces, hyphens, parentheses and square brackets; 200 characters at most), from the
        file's name less its extension (the format says it), unique in the request:
        ``"report.v2.pdf"`` is ``"report v2"``, a second ``"report"`` is ``"report (2)"``."""
        stem = PurePosixPath(file.name).stem if file.name else ""
        # Accents dropped rather than the letters they sit on ("Résumé" is "Resume").
        ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
        clean = re.sub(r"[^A-Za-z0-9\-()\[\] ]+", " ", ascii_stem)
        clean = " ".join(clean.split())[:190].strip() or "document"
        name, n = clean, 1
        while name.lower() in self._used:
            n += 1
            name = f"{clean} ({n})"
        self._used.add(name.lower())
        self.files[name] = file
        return name


def _user_blocks(content: list[Any], provider: str, documents: _DocumentNames) -> list[Any]:
    """A user turn's content parts as Converse blocks: its files (portable parts) through
    :func:`file_block`, the rest as :func:`_blocks` has them."""
    blocks: list[Any] = []
    for part in content:
        file = portable_file(part)
        if file is None:
            blocks += _blocks([part])
        else:
            blocks.append(file_block(file, provider, documents))
            if part.get("cache_control"):
                blocks.append(_cache_point(part["cache_control"]))
    return blocks


def file_block(
    file: File, provider: str = "bedrock", documents: _DocumentNames | None = None
) -> dict[str, Any]:
    """A file as a Converse content block, its bytes in ``source.bytes`` (base64 in JSON):
    an ``image`` (PNG, JPEG, GIF, WebP), a ``video``, or a ``document`` (PDF, CSV, Word,
    Excel, HTML, text, Markdown) named as DocumentBlock allows.

    Converse takes bytes or an S3 location, never a URL: a file given by its URL is refused,
    as is audio and any other type.

    Example::

        file_block(File(data=png_bytes))
        # {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo..."}}}
    """
    if file.url is not None:
        raise unsupported(
            provider,
            file,
            "Bedrock takes a file's bytes (or an S3 location), not a URL: give "
            "File(path=...) or File(data=...)",
        )
    if file.kind == "image":
        image = _IMAGE_FORMATS.get(file.media_type)
        if image is None:
            raise unsupported(provider, file, "Bedrock takes PNG, JPEG, GIF and WebP images")
        return {"image": {"format": image, "source": {"bytes": file.base64()}}}
    if file.kind == "video":
        video = _VIDEO_FORMATS.get(file.media_type)
        if video is None:
            raise unsupported(provider, file, "Bedrock takes no video of this format")
        return {"video": {"format": video, "source": {"bytes": file.base64()}}}
    document = _DOCUMENT_FORMATS.get(file.media_type)
    if document is None:
        raise unsupported(
            provider,
            file,
            "Bedrock takes images, video and documents (PDF, CSV, Word, Excel, HTML, text, "
            "Markdown)",
        )
    name = (documents or _DocumentNames()).name(file)
    return {"document": {"format": document, "name": name, "source": {"bytes": file.base64()}}}


def _check_documents(blocks: list[Any], provider: str, documents: _DocumentNames) -> None:
    """Refuse a message with a document and no text, which Converse refuses (Message in the
    service model: "you must also include a ContentBlock with a text field")."""
    if any(isinstance(b, dict) and "text" in b for b in blocks):
        return
    for block in blocks:
        document = block.get("document") if isinstance(block, dict) else None
        name = document.get("name") if isinstance(document, dict) else None
        file = documents.files.get(name) if isinstance(name, str) else None
        if file is not None:
            raise unsupported(
                provider, file, "Bedrock needs text beside a document in its message: add a prompt"
            )
