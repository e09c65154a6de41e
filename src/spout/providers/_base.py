"""The adapter protocol every provider implements, and the drivers HTTP providers share."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import orjson

from .._capabilities import Capabilities, ModelCapability
from .._errors import (
    AuthenticationError,
    ConfigurationError,
    ProtocolError,
    ProviderError,
    SpoutError,
    StreamInterruptedError,
)
from .._events import Event, ResponseStart, ToolCall, ToolCallDelta, ToolCallEnd, ToolCallStart
from .._limits import DEFAULT_LIMITS, ResponseLimits
from .._log import checked_key, scrub_error, secrets_in
from .._request import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    HTTPRequest,
    Sender,
    header_value,
    new_sender,
)
from ..sse import ServerSentEvent, SSEDecoder

if TYPE_CHECKING:
    from .._cost import Prices, Pricing
    from .._output_format import OutputFormat
    from .._policy import CallPolicy, Deadline

__all__ = [
    "AsyncSource",
    "Call",
    "GenerationLock",
    "HTTPProvider",
    "NamedToolChoice",
    "OutputShape",
    "Parser",
    "Provider",
    "SSEStreamParser",
    "StreamParser",
    "SyncSource",
    "TokenProvider",
    "ToolCallAssembler",
    "WireMapper",
    "refusals_as_text",
    "streaming_capabilities",
    "text_token_counter",
]

#: What a provider's ``open_stream`` hands a stream: its events, and how to release what it
#: holds (a connection, a model's lock). ``aopen_stream`` hands the async pair.
SyncSource = tuple[Iterator[Event], Callable[[], None]]
AsyncSource = tuple[AsyncIterator[Event], Callable[[], Awaitable[None]]]

#: A caller's source of bearer tokens (``token_provider=``: Entra ID through azure-identity,
#: Google's credentials): a callable that returns a token, or, in async code, may return an
#: awaitable of one. It is asked before each request, and once more after a 401.
TokenProvider = Callable[[], "str | Awaitable[str]"]
R = TypeVar("R")


@dataclass(slots=True)
class Call:
    """One request, provider-neutral: what the caller asked for, before any wire format.

    ``params`` uses spout's names (``temperature``, ``max_tokens``, ``top_p``, ``stop``,
    ``seed``); any other key is passed through to the provider's request body as it is.
    """

    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    #: :class:`~spout.Tool` definitions to translate, or provider-native dicts sent as given.
    tools: list[Any] = field(default_factory=list)
    #: None (the provider's default), "auto", "none", "required", a :class:`NamedToolChoice`,
    #: or a provider-native dict sent as given.
    tool_choice: Any = None
    #: The call's clock, when it has time limits.
    deadline: Deadline | None = None
    #: Retries, resume: the LLM's business, not the provider's.
    policy: CallPolicy | None = None
    #: What ``response_format`` asked for, put in each provider's shape right before its
    #: request (:func:`spout._structured.request_for`).
    output_format: OutputFormat | None = None


@dataclass(frozen=True, slots=True)
class NamedToolChoice:
    """A ``tool_choice`` that names the one tool the model must call."""

    name: str


@dataclass(frozen=True, slots=True)
class OutputShape:
    """How a provider takes a ``response_format``: what :meth:`Provider.output_shape` answers.

    ``params`` are the call's params with the provider's native way of asking for the format
    set (unchanged where it has none); ``instruct`` says whether the system prompt also states
    the format in words (:meth:`spout._output_format.OutputFormat.instruction`).
    """

    params: dict[str, Any]
    instruct: bool = True


def wire_tools(tools: list[Any], convert: Callable[[Any], dict[str, Any]]) -> list[Any]:
    """Each :class:`~spout.Tool` in the provider's shape; native dicts as they were given."""
    return [tool if isinstance(tool, dict) else convert(tool) for tool in tools]


def text_content(content: Any) -> str:
    """A tool result's content as text: strings as they are, anything else as JSON."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    return orjson.dumps(content, default=str).decode()


def refusals_as_text(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with each assistant ``refusal`` moved into the turn's text.

    For providers whose messages have no field for a refusal (everyone but OpenAI's chat
    completions): the model then still sees what it said, where its ``content`` alone would
    be empty (an empty assistant turn, which Anthropic refuses outright). A refusal after
    text follows it in a paragraph of its own. The list is returned as it is when no message
    has a ``refusal`` key, so the common case copies nothing.

    >>> refusals_as_text([{"role": "assistant", "content": "", "refusal": "I can't."}])
    [{'role': 'assistant', 'content': "I can't."}]
    """
    if not any("refusal" in message for message in messages):
        return messages
    out = []
    for message in messages:
        if "refusal" in message:
            message = dict(message)
            refusal = message.pop("refusal")
            if isinstance(refusal, str) and refusal and message.get("role") == "assistant":
                content = message.get("content")
                if isinstance(content, list):
                    message["content"] = [*content, {"type": "text", "text": refusal}]
                elif isinstance(content, str) and content:
                    message["content"] = f"{content}\n\n{refusal}"
                else:
                    message["content"] = refusal
        out.append(message)
    return out


def streaming_capabilities(
    *, tools: bool, tool_streaming: bool, reasoning: bool, usage_in_stream: bool = True
) -> Capabilities:
    """What a built-in provider declares: every one streams, sync and async, and takes a
    system prompt; the rest is its own."""
    return {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: tools,
        ModelCapability.TOOL_STREAMING: tool_streaming,
        ModelCapability.USAGE_IN_STREAM: usage_in_stream,
        ModelCapability.REASONING: reasoning,
        ModelCapability.SYSTEM_PROMPT: True,
    }


class Parser(Protocol):
    """Turns a response body's bytes into events, incrementally and without I/O.

    ``error`` is set when a chunk held an error after some events: ``feed`` returned those
    events, and the driver raises ``error`` right after delivering them.
    """

    error: SpoutError | None

    def feed(self, chunk: bytes) -> list[Event]: ...

    def close(self) -> list[Event]: ...


class StreamParser:
    """A base for parsers: an error found mid-chunk never swallows the events before it.

    Subclasses implement :meth:`_feed`, appending to the list they are given, and
    :meth:`_close`. What a caller receives then does not depend on how the bytes were split.
    """

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: SpoutError | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        if self.error is not None:
            raise self.error
        events: list[Event] = []
        try:
            self._feed(chunk, events)
        except SpoutError as exc:
            if not events:
                raise
            self.error = exc
        return events

    def close(self) -> list[Event]:
        if self.error is not None:
            raise self.error
        return self._close()

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        raise NotImplementedError

    def _close(self) -> list[Event]:
        raise NotImplementedError


class Provider:
    """A way to reach models: builds requests, and turns what comes back into events."""

    name: ClassVar[str] = ""
    default_model: ClassVar[str | None] = None
    #: What one response may make spout hold (its LLM sets them; see ResponseLimits).
    limits: ResponseLimits = DEFAULT_LIMITS

    def __init__(self, model: str | None = None) -> None:
        resolved = model or self.default_model
        if not resolved:
            raise ConfigurationError(f"provider {self.name!r} needs a model: pass model=...")
        self.model: str = resolved

    def open_stream(self, call: Call) -> SyncSource:
        """Start generating; returns the events as they come and how to stop."""
        raise NotImplementedError

    async def aopen_stream(self, call: Call) -> AsyncSource:
        """Start generating without blocking the event loop."""
        raise NotImplementedError

    def complete(self, call: Call) -> Iterable[Event]:
        """Generate without streaming; by default, a stream read to its end."""
        events, release = self.open_stream(call)
        try:
            return list(events)
        finally:
            release()

    async def acomplete(self, call: Call) -> Iterable[Event]:
        events, release = await self.aopen_stream(call)
        try:
            return [event async for event in events]
        finally:
            await release()

    def capabilities(self) -> Capabilities:
        return {}

    # -- what the provider says of itself, so no other module tests its class or name ---------

    #: Context windows in tokens of the models this provider's vendor makes, by the start of
    #: their lower-cased names (the longest matching prefix wins). The context-window code
    #: (:mod:`spout._context`) reads every built-in provider's table with the serving
    #: provider's: a model's window does not depend on who serves it. A window known only at
    #: run time (a local model's ``n_ctx``) is declared in :meth:`capabilities` instead.
    context_windows: ClassVar[Mapping[str, int]] = {}
    #: litellm's names for this provider besides its own (``"ollama_chat"`` for ``ollama``):
    #: ``completion(model="<prefix>/<model>")`` reaches it under each.
    litellm_prefixes: ClassVar[tuple[str, ...]] = ()
    #: How bare model names this provider serves begin (``"claude-"``): a litellm call that
    #: names no provider reaches it by them. The built-in providers are asked in the order of
    #: their table, so a subclass of OpenAI's adapter never takes ``gpt-`` from it.
    litellm_models: ClassVar[tuple[str, ...]] = ()
    #: litellm's names for this provider's own ``create_llm`` settings, as ``{litellm name:
    #: keyword}`` (``{"vertex_project": "project"}``): a litellm call that gives one
    #: configures the provider with it, where litellm would otherwise drop it.
    litellm_settings: ClassVar[Mapping[str, str]] = {}
    #: Whether the model runs in this process, with no endpoint: the endpoint settings of a
    #: litellm call (``api_key``, ``base_url``, ``headers``) are then dropped, as litellm does.
    in_process: ClassVar[bool] = False
    #: The provider's id in the public price list spout prices calls by (genai-prices:
    #: ``"anthropic"``, ``"aws"``, ``"google"``; see :attr:`spout.Response.cost`), or None
    #: where the list has no prices for it. A subclass that serves other prices sets its own.
    price_list: ClassVar[str | None] = None
    #: Whether the model runs on hardware the caller runs (a server of their own, such as
    #: Ollama or vLLM): a call then costs nothing per token, as one :attr:`in_process` does.
    self_hosted: ClassVar[bool] = False
    #: The caller's own prices (``create_llm(prices=...)``), which win over the list.
    prices: Prices | None = None

    def pricing(self) -> Pricing:
        """How a call to this provider is priced (:attr:`spout.Response.cost`)."""
        from .._cost import Pricing

        return Pricing(
            self.price_list,
            self.model,
            None,
            self.in_process or self.self_hosted,
            self.prices,
        )

    def output_shape(self, fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
        """How this provider is asked for structured output ``fmt``, given the call's
        ``params``: by default it has no native way, and the system prompt states the format."""
        return OutputShape(dict(params))

    @classmethod
    def env_names(cls) -> tuple[str, ...]:
        """The environment variables this provider reads its endpoint and key from (two LLMs
        built while they differ are different LLMs)."""
        return ()

    @classmethod
    def litellm_config(
        cls, model: str | None, config: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        """The model and ``create_llm`` settings for a litellm call's ``model`` (its provider
        prefix removed) and connection settings (``api_key``, ``base_url``, ``headers``),
        where litellm means them otherwise than this provider takes them. By default: as
        given, less the endpoint settings of a provider :attr:`in_process`."""
        if cls.in_process:
            config = {
                k: v for k, v in config.items() if k not in ("api_key", "base_url", "headers")
            }
        return model, config

    def litellm_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """A litellm call's generation settings in the names this provider takes.

        By default OpenAI's ``max_completion_tokens`` becomes spout's ``max_tokens`` (a
        ``max_tokens`` given too wins); any other setting passes as it is.
        """
        if "max_completion_tokens" in params:
            params = dict(params)
            params.setdefault("max_tokens", params.pop("max_completion_tokens"))
        return params

    def takes_prompt_cache_key(self) -> bool:
        """Whether this endpoint takes OpenAI's ``prompt_cache_key`` (OpenAI's own API does):
        the gateway passes a client's on only then, as another refuses the unknown key."""
        return False

    def takes_refusal(self) -> bool:
        """Whether this provider's messages have a field for an assistant's refusal (OpenAI's
        ``refusal``). When not, a refusal in the history is sent as the turn's text
        (:func:`refusals_as_text`), right before each request is built."""
        return False

    def can_prefill(self, call: Call) -> bool:
        """Whether a last assistant message is continued, not answered (a resumed stream's
        text is then sent as the start of the model's turn)."""
        return False

    def count_tokens(self, messages: list[dict[str, Any]]) -> int | None:
        """How many tokens the messages take as a prompt, by the model's own tokenizer; None
        when the provider has none at hand (the caller then estimates)."""
        return None

    def count_text_tokens(self, text: str) -> int | None:
        """How many tokens ``text`` (a reply's text, no template) is in the model's own
        tokenizer; None when the provider has none at hand. Live stream stats use it until
        the provider's usage arrives (``output_tokens_source == "tokenizer"``)."""
        return None

    def close(self) -> None:
        """Release connections and other resources."""

    async def aclose(self) -> None:
        self.close()


class HTTPProvider(Provider):
    """A provider reached over HTTP. Subclasses write the pure parts; the I/O lives here."""

    #: Where the provider is by default, and the environment variables that say otherwise.
    default_base_url: ClassVar[str] = ""
    base_url_env: ClassVar[tuple[str, ...]] = ()
    #: The environment variables a key is read from, first found wins.
    api_key_env: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def env_names(cls) -> tuple[str, ...]:
        return (*cls.base_url_env, *cls.api_key_env)

    def __init__(
        self,
        model: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(model)
        # Handed in, not imported: providers do no I/O (see spout._request).
        self.transport: Sender = new_sender(
            timeout=timeout, connect_timeout=connect_timeout, headers=headers
        )
        # Kept to know what to redact: a caller may authenticate with a header of their own.
        self._given_headers = dict(headers or {})

    @property
    def limits(self) -> ResponseLimits:
        """As :attr:`Provider.limits`; the transport, which reads ``max_body_bytes``, gets
        them too when they are set."""
        return self.__dict__.get("_limits", DEFAULT_LIMITS)  # type: ignore[no-any-return]

    @limits.setter
    def limits(self, limits: ResponseLimits) -> None:
        self.__dict__["_limits"] = limits
        if hasattr(self.transport, "limits"):  # a Sender of a test's own may not take them
            self.transport.limits = limits

    def _resolve_endpoint(self, base_url: str | None, api_key: str | None) -> None:
        """Set ``base_url`` (argument, environment, default) and ``api_key`` (argument, env)."""
        self.base_url = (base_url or env_value(*self.base_url_env) or self.default_base_url).rstrip(
            "/"
        )
        self.api_key: str | None = checked_key(self.name, api_key or env_value(*self.api_key_env))

    def pricing(self) -> Pricing:
        """As :meth:`Provider.pricing`, and an endpoint other than the default is matched
        against the price list's services by its URL first (the ``openai`` provider pointed
        at Groq's endpoint is priced as Groq)."""
        pricing = super().pricing()
        base_url = getattr(self, "base_url", None)
        if base_url and base_url != self.default_base_url.rstrip("/"):
            pricing = replace(pricing, base_url=base_url)
        return pricing

    def _require_key(self, where: str | None = None) -> str:
        """The API key, or a ConfigurationError that names where to put one."""
        if not self.api_key:
            raise ConfigurationError(
                f"provider {self.name!r} needs an API key: pass api_key=... or set "
                f"{where or ' or '.join(self.api_key_env)}"
            )
        return self.api_key

    #: How this provider spells the Accept header: as it spells its other headers.
    accept_header: ClassVar[str] = "Accept"

    def _post_json(
        self, url: str, headers: dict[str, str], body: Any, *, stream: bool
    ) -> HTTPRequest:
        """A POST of ``body`` as JSON; a stream's also asks for Server-Sent Events."""
        if stream:
            headers = {**headers, self.accept_header: "text/event-stream"}
        return HTTPRequest("POST", url, headers, orjson.dumps(body))

    # -- the pure parts, per wire format -------------------------------------------------------

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        raise NotImplementedError

    def new_parser(self, call: Call) -> Parser:
        raise NotImplementedError

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        raise NotImplementedError

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        raise NotImplementedError

    # -- the drivers ---------------------------------------------------------------------------
    # An error on the way to a response passes through _scrub: a server may echo the key it
    # was sent, and an HTTP library may quote a header it refused. (Success costs nothing.)

    def open_stream(self, call: Call) -> SyncSource:
        def send(request: HTTPRequest) -> SyncSource:
            chunks, release, headers = self.transport.stream(
                request, self.error_from_response, call.deadline
            )
            parser = limit_decoder(self.new_parser(call), self.limits)
            scrub = self._scrubber(request)
            return _parse(chunks, parser, self._request_id(headers), scrub), release

        return self._send(call, True, send)

    async def aopen_stream(self, call: Call) -> AsyncSource:
        async def send(request: HTTPRequest) -> AsyncSource:
            chunks, release, headers = await self.transport.astream(
                request, self.error_from_response, call.deadline
            )
            parser = limit_decoder(self.new_parser(call), self.limits)
            scrub = self._scrubber(request)
            return _aparse(chunks, parser, self._request_id(headers), scrub), release

        return await self._asend(call, True, send)

    def complete(self, call: Call) -> Iterable[Event]:
        def send(request: HTTPRequest) -> Iterable[Event]:
            body = self.transport.request(request, self.error_from_response, call.deadline)
            return self.parse_response(body, call)

        return self._send(call, False, send)

    async def acomplete(self, call: Call) -> Iterable[Event]:
        async def send(request: HTTPRequest) -> Iterable[Event]:
            body = await self.transport.arequest(request, self.error_from_response, call.deadline)
            return self.parse_response(body, call)

        return await self._asend(call, False, send)

    # -- bearer tokens from a caller's token_provider ------------------------------------------
    # A token expires (an hour for Entra ID and Google's), so the provider is asked before
    # each request; it caches as it sees fit. A 401 means the token went stale between the
    # two: it is asked once more and the request sent once more. That resend is not one of the
    # call's retries (a second 401 is the answer), and it happens only before a stream has
    # started, where nothing has reached the caller yet.

    #: The caller's ``token_provider``, set by a provider that takes one (:meth:`_use_tokens`).
    _token_provider: TokenProvider | None = None
    #: The token the next request is built with (``build_request`` reads it).
    _token: str | None = None

    def _use_tokens(self, token_provider: TokenProvider | None) -> None:
        if token_provider is not None and not callable(token_provider):
            raise ConfigurationError(
                f"provider {self.name!r}: token_provider must be a callable that returns a "
                f"token, not {type(token_provider).__name__}"
            )
        self._token_provider = token_provider

    def _fresh_token(self, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            got = "an empty string" if isinstance(value, str) else type(value).__name__
            raise ConfigurationError(
                f"provider {self.name!r}: token_provider returned {got}, not a token (a "
                "non-empty str)"
            )
        token = checked_key(self.name, value)
        assert token is not None
        self._token = token
        return token

    def _ask_token(self, again: bool) -> None:
        provider = self._token_provider
        assert provider is not None
        if again:
            # spout's own providers (Google's default credentials) refresh when told the
            # token they gave was refused; a caller's callable is simply asked again.
            getattr(provider, "invalidate", _nothing)()
        value = provider()
        if isinstance(value, Awaitable):
            close = getattr(value, "close", None)
            if close is not None:
                close()  # never awaited: no "coroutine was never awaited" warning
            raise ConfigurationError(
                f"provider {self.name!r}: token_provider returned an awaitable in a sync "
                "call; use an async method (generate_async, agenerate_stream) or a sync callable"
            )
        self._fresh_token(value)

    async def _aask_token(self, again: bool) -> None:
        provider = self._token_provider
        assert provider is not None
        if again:
            getattr(provider, "invalidate", _nothing)()
        # spout's own providers that may block on a refresh (Google's default credentials)
        # say how to ask them without blocking the event loop.
        atoken = getattr(provider, "atoken", None)
        # An error of the caller's own callable (azure-identity's, google-auth's) is raised
        # as it is: it names what went wrong better than spout could.
        value = await atoken() if atoken is not None else provider()
        if isinstance(value, Awaitable):
            value = await value
        self._fresh_token(value)

    def _send(self, call: Call, stream: bool, send: Callable[[HTTPRequest], R]) -> R:
        """Build the request and send it; with a ``token_provider``, resend once after a 401."""
        tokens = self._token_provider is not None
        if tokens:
            self._ask_token(again=False)
        request = self.build_request(call, stream=stream)
        try:
            try:
                return send(request)
            except AuthenticationError as exc:
                if not tokens:
                    raise
                self._scrub(exc, request)
                self._ask_token(again=True)
                request = self.build_request(call, stream=stream)
                return send(request)
        except Exception as exc:
            self._scrub(exc, request)
            raise

    async def _asend(
        self, call: Call, stream: bool, send: Callable[[HTTPRequest], Awaitable[R]]
    ) -> R:
        tokens = self._token_provider is not None
        if tokens:
            await self._aask_token(again=False)
        request = self.build_request(call, stream=stream)
        try:
            try:
                return await send(request)
            except AuthenticationError as exc:
                if not tokens:
                    raise
                self._scrub(exc, request)
                await self._aask_token(again=True)
                request = self.build_request(call, stream=stream)
                return await send(request)
        except Exception as exc:
            self._scrub(exc, request)
            raise

    #: The response headers that carry the provider's request id, first found wins.
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id", "request-id")

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        return header_value(headers, *self.request_id_headers)

    def _scrub(self, exc: BaseException, request: HTTPRequest) -> None:
        """Remove this provider's credentials from an error and the errors chained to it."""
        secrets = secrets_in(
            request.headers,
            getattr(self, "_given_headers", None),
            extra=(getattr(self, "api_key", None),),
        )
        scrub_error(exc, secrets)

    def _scrubber(self, request: HTTPRequest) -> Callable[[BaseException], None]:
        """:meth:`_scrub` for the errors raised while ``request``'s stream is read: an error
        event may quote the credential the server was sent."""
        return lambda exc: self._scrub(exc, request)

    def close(self) -> None:
        self.transport.close()

    async def aclose(self) -> None:
        await self.transport.aclose()


class WireMapper:
    """A base for what turns a wire's parsed events into spout's: the provider and model its
    errors name, and whether it has sent the response's :class:`ResponseStart` (once)."""

    __slots__ = ("_model", "_provider", "_started")

    def __init__(self, provider: str, model: str | None) -> None:
        self._provider = provider
        self._model = model
        self._started = False

    def _start(self, events: list[Event], response_id: str | None, model: str | None) -> None:
        """Send the response's start (its callers check ``_started`` first: a hot path)."""
        self._started = True
        events.append(ResponseStart(response_id, model))


class EventMapper(Protocol):
    """Turns one parsed wire event (a JSON object) into spout events."""

    def map(self, data: dict[str, Any], /) -> list[Event]: ...


M = TypeVar("M", bound=EventMapper)


class SSEStreamParser(StreamParser, Generic[M]):
    """A :class:`StreamParser` over Server-Sent Events, turning them into events with a mapper.

    By default each event's data is parsed as JSON and each object handed to the mapper's
    ``map``; subclasses write :meth:`_close`, with :meth:`_end` to check the stream reached
    its end.
    """

    __slots__ = ("_decoder", "_mapper")

    def __init__(self, mapper: M) -> None:
        super().__init__()
        self._decoder = SSEDecoder()
        self._mapper = mapper

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        map_event = self._mapper.map  # once a chunk: the mapper is called for every event
        for _, data in sse_json(self._decoder, chunk):
            if type(data) is dict:
                events += map_event(data)

    def _end(self, ended: bool, missing: str) -> None:
        """Close the decoder (an event cut short raises), then raise
        :class:`StreamInterruptedError` with ``missing`` unless the stream had ``ended``."""
        self._decoder.close()
        if not ended:
            raise StreamInterruptedError(missing)


_P = TypeVar("_P")


def limit_decoder(parser: _P, limits: ResponseLimits) -> _P:
    """``parser`` with its decoder (``_decoder``, as every wire parser here names it) held
    to ``limits.max_event_bytes``: one SSE line or event, NDJSON line, event-stream message."""
    decoder = getattr(parser, "_decoder", None)
    for name in ("max_event_bytes", "max_line_bytes", "max_message_length"):
        if hasattr(decoder, name):
            setattr(decoder, name, limits.max_event_bytes)
    return parser


def _parse(
    chunks: Iterator[bytes],
    parser: Parser,
    request_id: str | None,
    scrub: Callable[[BaseException], None],
) -> Iterator[Event]:
    feed = parser.feed
    try:
        for chunk in chunks:
            events = feed(chunk)
            if events:
                yield from events
                if parser.error is not None:
                    raise parser.error
        yield from parser.close()
    except Exception as exc:
        # An error event inside the stream: the request id is on the response's headers.
        if isinstance(exc, ProviderError) and exc.request_id is None:
            exc.request_id = request_id
        # Scrubbed here, where it is raised, before any caller stores, logs or re-sends it:
        # a server may echo the key in an error event after answering 200.
        scrub(exc)
        raise


async def _aparse(
    chunks: AsyncIterator[bytes],
    parser: Parser,
    request_id: str | None,
    scrub: Callable[[BaseException], None],
) -> AsyncIterator[Event]:
    feed = parser.feed
    try:
        async for chunk in chunks:
            events = feed(chunk)
            if events:
                for event in events:
                    yield event
                if parser.error is not None:
                    raise parser.error
        for event in parser.close():
            yield event
    except Exception as exc:
        if isinstance(exc, ProviderError) and exc.request_id is None:
            exc.request_id = request_id
        scrub(exc)
        raise


def _nothing() -> None:
    pass


def load_json(body: bytes, what: str = "the response") -> Any:
    """Parse a JSON body, or raise :class:`ProtocolError` with the bytes."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"{what} is not valid JSON ({exc})", data=body) from None


def load_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON body that must be an object, or raise :class:`ProtocolError`."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise ProtocolError("the response is not a JSON object", data=body)
    return data


def sse_json(decoder: SSEDecoder, chunk: bytes) -> Iterator[tuple[ServerSentEvent, Any]]:
    """The events one chunk completes, each with its data parsed as JSON.

    A ``[DONE]`` sentinel, which some OpenAI-compatible servers add, is skipped. (The OpenAI
    and Anthropic adapters inline this loop: it is their hot path.)
    """
    for sse in decoder.feed(chunk):
        if sse.raw != b"[DONE]":
            yield sse, load_json(sse.raw, "a stream event")
    if decoder.error is not None:
        raise decoder.error  # after the events before it: StreamParser delivers them first


def env_value(*names: str) -> str | None:
    """The first non-empty environment variable among ``names``."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


class GenerationLock:
    """One generation at a time on an in-process model: a stream holds it from open to end.

    A lock (``acquire`` / ``release``) with two ways for a stream to take it: :meth:`hold`
    refuses a second stream in the thread that already holds it, where waiting would never
    end, and :meth:`ahold` waits without blocking the event loop or taking a thread, so that
    cancelling the wait leaves nothing held.
    """

    __slots__ = ("_holder", "_lock", "_what")

    def __init__(self, what: str) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None
        self._what = what

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._holder = None
        self._lock.release()

    def hold(self) -> None:
        me = threading.get_ident()
        if not self._lock.acquire(blocking=False):
            if self._holder == me:
                raise ConfigurationError(
                    f"the {self._what} is still generating another stream in this thread: "
                    f"read that stream to its end or close() it first"
                )
            self._lock.acquire()
        self._holder = me

    async def ahold(self) -> None:
        import asyncio

        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(0.005)
        self._holder = None


class ToolCallAssembler:
    """Builds complete tool calls from deltas keyed by index (the OpenAI streaming shape).

    ``id`` and ``name`` are taken from the first delta that carries them; servers that repeat
    them on every delta (llama.cpp's) must not get them concatenated, so later copies are
    ignored. A delta without an index continues the call in progress.
    """

    __slots__ = ("_calls", "_ended", "_last")

    def __init__(self) -> None:
        # index -> [id, name, argument parts, started]
        self._calls: dict[int, list[Any]] = {}
        self._ended: set[int] = set()
        self._last: int | None = None

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(
        self, index: int | None, id: str | None, name: str | None, arguments: str | None
    ) -> list[Event]:
        calls = self._calls
        if index is None:
            if self._last is None or (id and id != calls[self._last][0]):
                index = 0 if self._last is None else max(calls) + 1
            else:
                index = self._last
        events: list[Event] = []
        call = calls.get(index)
        if call is None:
            if index in self._ended:
                if arguments:
                    raise ProtocolError(
                        f"arguments arrived for tool call {index} after its JSON was complete",
                        data=arguments,
                    )
                return events  # a server repeating the id and name (llama.cpp)
            # Calls usually stream one after another: a new one means those before it are
            # done, and ending them now lets a caller see them whole while this one streams.
            # Some servers interleave calls, though: one ends early only once its
            # arguments are a complete JSON object.
            for earlier in [i for i in calls if i < index]:
                if _complete_object(calls[earlier][2]):
                    events += self._end(earlier)
                    self._ended.add(earlier)
            call = calls[index] = [id or None, name or None, [], False]
        else:
            if call[0] is None and id:
                call[0] = id
            if call[1] is None and name:
                call[1] = name
        self._last = index
        if not call[3] and call[1] is not None:
            # Start once the name is known; arguments that came before it go out with it.
            call[3] = True
            events.append(ToolCallStart(index, call[0] or f"call_{index}", call[1]))
            if call[2]:
                events.append(ToolCallDelta(index, "".join(call[2])))
        if arguments:
            call[2].append(arguments)
            if call[3]:
                events.append(ToolCallDelta(index, arguments))
        return events

    def finish(self) -> list[Event]:
        """End every call in progress, in index order."""
        events: list[Event] = []
        for index in sorted(self._calls):
            events += self._end(index)
        self._last = None
        self._ended.clear()
        return events

    def _end(self, index: int) -> list[Event]:
        call_id, name, parts, started = self._calls.pop(index)
        call_id = call_id or f"call_{index}"
        events: list[Event] = []
        if not started:
            events.append(ToolCallStart(index, call_id, name or ""))
        events.append(ToolCallEnd(index, tool_call_from_json(call_id, name or "", "".join(parts))))
        return events


def _complete_object(parts: list[str]) -> bool:
    try:
        return isinstance(orjson.loads("".join(parts)), dict)
    except orjson.JSONDecodeError:
        return False


def tool_call_from_json(call_id: str, name: str, raw: str) -> ToolCall:
    """A finished call whose arguments came as JSON text, parsed strictly.

    Blank text means no arguments. Text that is not a JSON object leaves ``arguments`` empty
    and says why in ``error``; the raw text is always kept. (Streams raise
    :class:`~spout.ToolCallParseError` for such a call; the tool loop tells the model.)
    """
    if not raw or raw.isspace():
        return ToolCall(call_id, name, {}, raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return ToolCall(call_id, name, {}, raw, error=f"arguments are not valid JSON: {exc}")
    if not isinstance(value, dict):
        kind = type(value).__name__
        return ToolCall(call_id, name, {}, raw, error=f"arguments are a JSON {kind}, not an object")
    return ToolCall(call_id, name, value, raw)


def parse_arguments(raw: str) -> dict[str, Any]:
    """Arguments from a conversation's history as a dict, leniently: empty when not JSON.

    (Arguments a model streams are parsed strictly, by :func:`tool_call_from_json`.)
    """
    if not raw or raw.isspace():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def text_token_counter(provider: Provider) -> Callable[[str], int | None] | None:
    """The provider's :meth:`Provider.count_text_tokens` when it has one of its own, so that a
    stream of a provider without a tokenizer never calls it."""
    if type(provider).count_text_tokens is Provider.count_text_tokens:
        return None
    return provider.count_text_tokens
