"""create_llm and the LLM object: one interface over every provider."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, Literal, overload

from . import _otel
from ._attempts import (
    Attempts,
    CallPolicy,
    complete_async,
    complete_sync,
    open_async,
    open_sync,
)
from ._capabilities import Capabilities, ModelCapability, has_capability
from ._closing import AsyncClosing, Closing
from ._context import count_tokens, estimate_tokens
from ._cost import Prices
from ._errors import ConfigurationError
from ._events import Event
from ._files import attach_files, check_files
from ._limits import ResponseLimits
from ._policy import Deadline, Retry, Timeout
from ._request import send_through
from ._response import Accumulator, Response
from ._stream import AsyncStream, PendingAsyncStream, Stream
from ._stream_base import partial_on_error
from ._tool_loop import Approve, AsyncToolStream, ToolStream, tool_table
from ._transport import Transport
from ._validate import validate_call
from ._watch import Watch, take_watch
from .providers._base import Call, NamedToolChoice, Provider, text_token_counter
from .providers._registry import is_provider, provider_class
from .tools import Tool, as_tool

__all__ = ["LLM", "create_llm", "parse_model_string"]

# Providers do no I/O: the HTTP ones send through the transport handed to them here.
send_through(Transport)

#: Generation settings, in spout's names; every provider translates them.
GENERATION_PARAMS = ("temperature", "max_tokens", "top_p", "stop", "seed")

#: What a call does when it fails or stalls: on create_llm, and on any call (the call's wins).
CALL_POLICY_PARAMS = ("timeout", "max_retries", "retry", "resume")
RELIABILITY_PARAMS = (*CALL_POLICY_PARAMS, "fallbacks", "limits")

Message = dict[str, Any]


def normalize_tools(value: Any) -> list[Any]:
    """The ``tools=`` a caller gave, as :class:`Tool` objects and provider-native dicts.

    A plain function becomes a tool; a function definition in OpenAI's shape
    (``{"type": "function", "function": {...}}``) or Anthropic's (``input_schema``) becomes a
    :class:`Tool`, so it works with every provider; any other dict (a provider's own tool,
    such as Anthropic's web search) is sent as it is.
    """
    if not value:
        return []
    if isinstance(value, (dict, Tool)) or callable(value) or _is_mcp_server(value):
        value = [value]
    tools: list[Any] = []
    for item in value:
        if _is_mcp_server(item):
            # An MCP server stands for its tools, listed now (starting it): once per loop.
            tools.extend(item.tools())
        elif isinstance(item, dict):
            openai_shape = item.get("type") == "function" and isinstance(item.get("function"), dict)
            anthropic_shape = "name" in item and "input_schema" in item and "type" not in item
            if openai_shape or anthropic_shape:
                item = as_tool(item)  # its cache_control kept
            tools.append(item)
        else:
            tools.append(as_tool(item))
    names = [tool.name for tool in tools if isinstance(tool, Tool)]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ConfigurationError(f"two tools are named {duplicated[0]!r}: tool names must differ")
    return tools


def _is_mcp_server(item: Any) -> bool:
    # Looked up by module, not imported: spout.mcp needs the optional `mcp` SDK.
    return type(item).__name__ == "MCPServer" and type(item).__module__ == "spout.mcp"


def normalize_tool_choice(choice: Any, tools: list[Any]) -> Any:
    """``tool_choice`` checked against the tools: a mode, one tool's name, or a native dict."""
    if choice is None or isinstance(choice, dict):
        return choice
    if isinstance(choice, Tool):
        choice = choice.name
    if not isinstance(choice, str):
        raise TypeError(f"tool_choice must be a str, a Tool or a dict, not {type(choice).__name__}")
    names = [tool.name for tool in tools if isinstance(tool, Tool)]
    if choice in names:
        return NamedToolChoice(choice)
    if choice in ("auto", "none", "required"):
        if choice == "required" and not tools:
            raise ConfigurationError("tool_choice='required' needs tools: pass tools=[...]")
        return choice
    raise ConfigurationError(
        f"tool_choice must be 'auto', 'none', 'required' or the name of one of the tools "
        f"({', '.join(names) or 'none given'}), not {choice!r}"
    )


def _retry(retry: Any, max_retries: Any, default: Retry) -> Retry:
    """The retry policy from ``retry=`` and ``max_retries=`` (which overrides its count)."""
    if retry is None:
        retry = default
    elif not isinstance(retry, Retry):
        raise TypeError(f"retry must be a spout.Retry, not {type(retry).__name__}")
    if max_retries is not None:
        retry = dataclasses.replace(retry, max_retries=max_retries)
    result: Retry = retry
    return result


_NO_LIMITS = Timeout()


def _fresh_clock(call: Call) -> Call:
    """The call with its own clock: each round of the tool loop is timed as a call."""
    if call.deadline is None:
        return call
    deadline = Deadline(call.deadline.timeout)
    policy = call.policy and dataclasses.replace(call.policy, deadline=deadline)
    return dataclasses.replace(call, deadline=deadline, policy=policy)


def _fold(accumulator: Accumulator, events: Iterable[Event]) -> Response:
    """A whole response's events through the accumulator; an error keeps what came before."""
    with partial_on_error(accumulator.response):
        for event in events:
            accumulator.add(event)
    return accumulator.response()


def _fold_watched(
    accumulator: Accumulator, complete: Callable[[], Iterable[Event]], watch: Watch
) -> Response:
    """A response not streamed, its events reported to the call's callbacks as they fold."""
    from ._watch import watch_sync

    def events() -> Generator[Event, None, None]:
        with partial_on_error(accumulator.response):
            for event in complete():  # the request goes out after on_start
                accumulator.add(event)
                yield event

    for _ in watch_sync(events(), watch, accumulator.response):
        pass
    return accumulator.response()


async def _afold_watched(
    accumulator: Accumulator, complete: Callable[[], Awaitable[Iterable[Event]]], watch: Watch
) -> Response:
    from ._watch import watch_async

    async def events() -> AsyncGenerator[Event, None]:
        with partial_on_error(accumulator.response):
            for event in await complete():
                accumulator.add(event)
                yield event

    async for _ in watch_async(events(), watch, accumulator.response):
        pass
    return accumulator.response()


def parse_model_string(value: str) -> tuple[str, str | None]:
    """Split ``"provider:model"`` or ``"provider/model"`` into its parts.

    A bare ``"provider"`` has no model. ``/`` splits only after a known provider's name, as
    model names carry slashes of their own (``openrouter/openai/gpt-4o``).

    >>> parse_model_string("openai:gpt-4o-mini")
    ('openai', 'gpt-4o-mini')
    >>> parse_model_string("anthropic/claude-sonnet-4-5")
    ('anthropic', 'claude-sonnet-4-5')
    >>> parse_model_string("bedrock/anthropic.claude-3-haiku-20240307-v1:0")
    ('bedrock', 'anthropic.claude-3-haiku-20240307-v1:0')
    """
    provider, sep, model = value.partition(":")
    # A model id may hold a colon of its own ("bedrock/...-v1:0"): a head before the colon
    # that names no provider leaves the slash to be tried.
    if not sep or ("/" in provider and not is_provider(provider.strip().lower())):
        head, slash, rest = value.partition("/")
        if slash and is_provider(head.strip().lower()):
            provider, sep, model = head, slash, rest
    return provider.strip().lower(), (model.strip() or None) if sep else None


def route(model: str) -> tuple[str, str] | None:
    """The provider a model string names by its prefix, if it names a known one."""
    name, routed = parse_model_string(model)
    if routed and is_provider(name):
        return name, routed
    return None


def create_llm(provider: str | None = None, *, model: str | None = None, **config: Any) -> LLM:
    """An LLM for a provider and model; with no arguments, the bundled local model.

    ``provider`` may carry the model as ``"provider:model"``; with no provider, a model
    string such as ``"anthropic/claude-sonnet-4-5"`` picks it by its prefix. ``config`` holds the provider's
    connection settings (``base_url``, ``api_key``, ``headers``, ``timeout``...) and default
    generation settings for every call (``temperature``, ``max_tokens``, ``top_p``, ``stop``,
    ``seed``, ``system_prompt``). ``api`` picks the wire format of a provider that has several:
    ``"chat"`` or ``"responses"`` for ``openai``, ``"generate"`` or ``"chat"`` for
    ``huggingface``. ``prices`` (a :class:`spout.Prices`) prices its calls
    (:attr:`Response.cost`) in place of the public price list.

    Example::

        llm = create_llm()
        llm = create_llm("openai", model="gpt-4o-mini", base_url="http://127.0.0.1:8080/v1")
        llm = create_llm("openai:gpt-4o-mini", temperature=0)
        llm = create_llm(model="anthropic/claude-sonnet-4-5")
        llm = create_llm("openai", model="gpt-4.1", api="responses")
        llm = create_llm("vllm", model="mine", prices=Prices(input=0.2, output=0.6))
    """
    if (
        provider is None
        and model is not None
        and not os.path.exists(model)  # a relative path is not a provider prefix
        and (routed := route(model))
    ):
        # create_llm(model="anthropic/claude-sonnet-4-5"): the prefix names the provider.
        provider, model = routed
    name, routed_model = parse_model_string(provider or "local")
    model = model or routed_model
    cls = provider_class(name)
    # A provider that speaks more than one wire API picks the class for `api=` (and may infer
    # it from the rest of the config): OpenAI chat or responses, TGI native or chat.
    api = config.pop("api", None)
    for_api = getattr(cls, "for_api", None)
    if for_api is not None:
        cls = for_api(api, config)
    elif api is not None:
        raise ConfigurationError(f"provider {name!r} speaks one API: it takes no api=")
    defaults = {
        key: config.pop(key) for key in (*GENERATION_PARAMS, "system_prompt") if key in config
    }
    reliability = {key: config.pop(key) for key in RELIABILITY_PARAMS if key in config}
    prices = config.pop("prices", None)
    if prices is not None and not isinstance(prices, Prices):
        raise TypeError(f"prices must be a spout.Prices, not {type(prices).__name__}")
    accepted = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = [key for key in config if key not in accepted]
    if unknown and not takes_any:
        options = sorted(k for k in accepted if k not in ("self", "model"))
        raise ConfigurationError(
            f"provider {name!r} does not take {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options)}"
        )
    try:
        instance = cls(model, **config)
    except TypeError as exc:  # an option a nested layer rejected
        raise ConfigurationError(f"provider {name!r}: {exc}") from None
    if prices is not None:
        instance.prices = prices
    return LLM(instance, defaults, **reliability)


class LLM(Closing, AsyncClosing):
    """A model at a provider, ready to generate. Made by :func:`create_llm`.

    Example::

        llm = create_llm()
        print(llm.generate("Say hi").text)
        for chunk in llm.generate_stream("Write a haiku about rivers."):
            print(chunk, end="", flush=True)
    """

    def __init__(
        self,
        provider: Provider,
        defaults: dict[str, Any] | None = None,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        retry: Retry | None = None,
        resume: bool = False,
        fallbacks: Sequence[Any] = (),
        limits: ResponseLimits | Mapping[str, int] | None = None,
    ) -> None:
        #: What one response may make spout hold (:class:`ResponseLimits`); past one, a call
        #: raises :class:`ProtocolError` with the response so far on ``.partial``.
        self.limits = ResponseLimits.coerce(limits)
        provider.limits = self.limits
        self.provider = provider
        self.defaults = dict(defaults or {})
        self.timeout = Timeout.coerce(timeout)
        self.retry = _retry(retry, max_retries, Retry())
        self.resume = bool(resume)
        if isinstance(fallbacks, (str, LLM)):
            fallbacks = [fallbacks]
        #: Models tried in order when this one fails before its first token: ``LLM`` objects,
        #: ``"provider/model"`` strings, or dicts of ``create_llm`` arguments (made on first use).
        self.fallbacks = list(fallbacks)
        self._fallback_llms: dict[int, LLM] = {}

    @property
    def model(self) -> str:
        return self.provider.model

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def get_capabilities(self) -> Capabilities:
        """What this provider and model support, keyed by :class:`ModelCapability`."""
        return self.provider.capabilities()

    def count_tokens(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
    ) -> int:
        """How many tokens this prompt would take, counted as :meth:`generate` would send it.

        The provider's own tokenizer counts where it has one (the local model does: the
        count is the ``input_tokens`` its usage reports); otherwise the count is an estimate
        that errs high (see :func:`spout._context.estimate_tokens`). Nothing is sent.

        Example::

            llm = create_llm()
            llm.count_tokens("Say hi")                              # 32 with SmolLM2's template
            llm.count_tokens(messages=history, system_prompt="Be brief.")
        """
        call = self._call(prompt, messages, system_prompt, {})
        return count_tokens(self, call.messages)

    # -- building a call -----------------------------------------------------------------------

    def _call(
        self,
        prompt: str | None,
        messages: Sequence[Message] | None,
        system_prompt: str | None,
        params: dict[str, Any],
    ) -> Call:
        validate_call(prompt, messages, system_prompt, params, self.defaults)
        if prompt is None and not messages:
            raise ValueError("nothing to generate from: pass a prompt or messages=[...]")
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
        system = system_prompt if system_prompt is not None else self.defaults.get("system_prompt")
        built: list[Message] = []
        if system:
            built.append({"role": "system", "content": system})
        if messages:
            for message in messages:
                if not isinstance(message, dict) or "role" not in message:
                    raise ValueError(f"a message must be a dict with a 'role': {message!r}")
                built.append(dict(message))
        if prompt is not None:
            built.append({"role": "user", "content": prompt})
        merged = {k: v for k, v in self.defaults.items() if k != "system_prompt"}
        merged.update((k, v) for k, v in params.items() if v is not None)
        files = merged.pop("files", None)
        attached = attach_files(built, files) if files else ()
        # A file the provider cannot take fails here, before anything is sent.
        check_files(built, self.provider.name, self.provider.capabilities, attached)
        deadline = self._deadline(merged.pop("timeout", None))
        tools = normalize_tools(merged.pop("tools", None))
        tool_choice = normalize_tool_choice(merged.pop("tool_choice", None), tools)
        output_format = merged.pop("response_format", None)
        if output_format is not None:
            from ._structured import output_format as normalize_output_format

            output_format = normalize_output_format(output_format)
        if tools and not has_capability(self.provider.capabilities(), ModelCapability.TOOLS):
            # Declared capabilities are enforced here, before anything is sent.
            raise ConfigurationError(
                f"provider {self.provider.name!r} (model {self.provider.model!r}) cannot call "
                f"tools; use a provider whose capabilities include TOOLS"
            )
        policy = CallPolicy(
            _retry(merged.pop("retry", None), merged.pop("max_retries", None), self.retry),
            bool(merged.pop("resume", self.resume)),
            deadline,
        )
        return Call(built, merged, tools, tool_choice, deadline, policy, output_format)

    def _deadline(self, timeout: Any) -> Deadline | None:
        limits = self.timeout if timeout is None else self.timeout.override(Timeout.coerce(timeout))
        if limits == _NO_LIMITS:
            return None
        return Deadline(limits)

    def _accumulator(self, *, strict_tool_arguments: bool = True) -> Accumulator:
        return Accumulator(
            model=self.provider.model,
            provider=self.provider.name,
            started_at=time.perf_counter(),
            strict_tool_arguments=strict_tool_arguments,
            count_tokens=text_token_counter(self.provider),
            pricing=self.provider.pricing(),
            max_tool_arguments=self.limits.max_tool_arguments,
        )

    def _attempts(self, call: Call, accumulator: Accumulator) -> Attempts:
        # Every call passes here: its answer is validated against response_format at its end.
        accumulator.output_format = call.output_format
        # A stream cut before the provider reported its usage costs this input, estimated.
        accumulator.estimate_input = functools.partial(estimate_tokens, call.messages)
        fallbacks = [
            functools.partial(self._fallback_provider, i) for i in range(len(self.fallbacks))
        ]
        return Attempts(
            self.provider, call, accumulator, call.policy or CallPolicy(self.retry), fallbacks
        )

    def _stream(self, call: Call, accumulator: Accumulator, watch: Watch | None = None) -> Stream:
        """Send the request (retrying, falling back as the call allows) and stream it."""
        attempts = self._attempts(call, accumulator)
        span = attempts.span = _otel.call_span(self.provider, call, accumulator, stream=True)
        if span is None:
            return Stream(open_sync(attempts), accumulator, owner=self, watch=watch)
        span.start()
        try:
            source = open_sync(attempts)
        except BaseException as exc:
            span.end(exc)
            raise
        return Stream(source, accumulator, owner=self, watch=watch, span=span)

    def _astream(
        self, call: Call, accumulator: Accumulator, watch: Watch | None = None
    ) -> AsyncStream:
        attempts = self._attempts(call, accumulator)
        # Started by the stream, as its request goes out.
        span = attempts.span = _otel.call_span(self.provider, call, accumulator, stream=True)

        async def opener() -> Any:
            return await open_async(attempts)

        return AsyncStream(opener, accumulator, owner=self, watch=watch, span=span)

    def _origin(self) -> tuple[str, str]:
        return self.provider.name, self.provider.model

    def _open_round(self, call: Call) -> Stream:
        """A round of the tool loop: a stream whose bad arguments go to the model, not raise."""
        return self._stream(_fresh_clock(call), self._accumulator(strict_tool_arguments=False))

    def _aopen_round(self, call: Call) -> AsyncStream:
        return self._astream(_fresh_clock(call), self._accumulator(strict_tool_arguments=False))

    # -- sync ----------------------------------------------------------------------------------

    @overload
    def generate(
        self,
        prompt: str | None = ...,
        *,
        stream: Literal[False] = ...,
        messages: Sequence[Message] | None = ...,
        system_prompt: str | None = ...,
        **params: Any,
    ) -> Response: ...

    @overload
    def generate(
        self,
        prompt: str | None = ...,
        *,
        stream: Literal[True],
        messages: Sequence[Message] | None = ...,
        system_prompt: str | None = ...,
        **params: Any,
    ) -> Stream: ...

    def generate(
        self,
        prompt: str | None = None,
        *,
        stream: bool = False,
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        **params: Any,
    ) -> Response | Stream:
        """Generate an answer: a :class:`Response`, or with ``stream=True`` a :class:`Stream`.

        ``params`` are generation settings (``temperature``, ``max_tokens``, ``top_p``,
        ``stop``, ``seed``); any other keyword goes to the provider's request as it is.
        ``response_format`` (a pydantic model, a dataclass, a TypedDict or a JSON Schema)
        asks for JSON of that shape: ``response.parsed`` is it, validated
        (docs/structured-output.md).
        """
        if stream:
            return self.generate_stream(
                prompt, messages=messages, system_prompt=system_prompt, **params
            )
        watch = take_watch(params, asynchronous=False, streaming=False)
        call = self._call(prompt, messages, system_prompt, params)
        accumulator = self._accumulator()
        attempts = self._attempts(call, accumulator)
        span = attempts.span = _otel.call_span(self.provider, call, accumulator, stream=False)
        with _otel.spanning(span):
            if watch is not None:
                return _fold_watched(accumulator, lambda: complete_sync(attempts), watch)
            return _fold(accumulator, complete_sync(attempts))

    def generate_stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        **params: Any,
    ) -> Stream:
        """Stream an answer: iterate the result for text chunks as they arrive.

        The request is sent before this returns, so connection and HTTP errors raise here.
        """
        watch = take_watch(params, asynchronous=False)
        call = self._call(prompt, messages, system_prompt, params)
        return self._stream(call, self._accumulator(), watch)

    # -- async ---------------------------------------------------------------------------------

    @overload
    def generate_async(
        self,
        prompt: str | None = ...,
        *,
        stream: Literal[False] = ...,
        messages: Sequence[Message] | None = ...,
        system_prompt: str | None = ...,
        **params: Any,
    ) -> Coroutine[Any, Any, Response]: ...

    @overload
    def generate_async(
        self,
        prompt: str | None = ...,
        *,
        stream: Literal[True],
        messages: Sequence[Message] | None = ...,
        system_prompt: str | None = ...,
        **params: Any,
    ) -> PendingAsyncStream: ...

    def generate_async(
        self,
        prompt: str | None = None,
        *,
        stream: bool = False,
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        **params: Any,
    ) -> Coroutine[Any, Any, Response] | PendingAsyncStream:
        """Like :meth:`generate`, without blocking the event loop.

        Await it for a :class:`Response`. With ``stream=True`` there are two forms, and
        both send the request before the first chunk::

            stream = await llm.generate_async(prompt, stream=True)   # request sent; a stream
            async for chunk in stream: ...

            async for chunk in llm.generate_async(prompt, stream=True):   # no await
                ...
        """
        if stream:
            return PendingAsyncStream(
                self.agenerate_stream(
                    prompt, messages=messages, system_prompt=system_prompt, **params
                )
            )
        # Checked now, so a bad call raises where it is made, as the streamed form does.
        watch = take_watch(params, asynchronous=True, streaming=False)
        call = self._call(prompt, messages, system_prompt, params)
        return self._agenerate(call, watch)

    async def _agenerate(self, call: Call, watch: Watch | None) -> Response:
        accumulator = self._accumulator()
        attempts = self._attempts(call, accumulator)
        span = attempts.span = _otel.call_span(self.provider, call, accumulator, stream=False)
        with _otel.spanning(span):
            if watch is not None:
                return await _afold_watched(accumulator, lambda: complete_async(attempts), watch)
            return _fold(accumulator, await complete_async(attempts))

    def agenerate_stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        **params: Any,
    ) -> AsyncStream:
        """Stream an answer asynchronously: ``async for chunk in llm.agenerate_stream(...)``.

        The request is sent on first use of the stream.
        """
        watch = take_watch(params, asynchronous=True)
        call = self._call(prompt, messages, system_prompt, params)
        return self._astream(call, self._accumulator(), watch)

    # -- tools ---------------------------------------------------------------------------------

    def generate_stream_with_tools(
        self,
        prompt: str | None = None,
        *,
        tools: Sequence[Any],
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        max_rounds: int = 8,
        approve: Approve | None = None,
        **params: Any,
    ) -> ToolStream:
        """Stream an answer, running the tools the model calls, until it answers without them.

        Iterate the result for text chunks (``str``) and each :class:`ToolCall` once it ran,
        with its ``result`` or ``error``. Each round's calls run in order; a tool that raises,
        an unknown tool, arguments that are not valid JSON, or a call ``approve(call)``
        returned False for, go back to the model as an error result and the loop goes on.
        ``tool_choice`` holds for the first round only. When the model still calls tools in
        round ``max_rounds``, those calls are not run and :class:`MaxToolRoundsError` is
        raised, its ``partial`` holding every round so far.

        Example::

            @tool
            def get_weather(city: str) -> str:
                '''Current weather for a city.'''
                return f"Sunny in {city}"

            for item in llm.generate_stream_with_tools("Weather in Oslo?", tools=[get_weather]):
                print(item if isinstance(item, str) else f"[{item.name} -> {item.result}]")
        """
        watch = take_watch(params, asynchronous=False)
        call, table = self._loop_call(prompt, messages, system_prompt, tools, max_rounds, params)
        asynchronous = [name for name, tool in table.items() if tool.is_async]
        if approve is not None and inspect.iscoroutinefunction(approve):
            raise ConfigurationError(
                "approve= is an async function: use agenerate_stream_with_tools, or pass a "
                "plain function"
            )
        if asynchronous:
            raise ConfigurationError(
                f"tool {asynchronous[0]!r} is an async function: run it with "
                "agenerate_stream_with_tools, or make it a plain function"
            )
        return ToolStream(
            self._open_round, call, table, max_rounds, approve, watch, origin=self._origin()
        )

    def agenerate_stream_with_tools(
        self,
        prompt: str | None = None,
        *,
        tools: Sequence[Any],
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        max_rounds: int = 8,
        approve: Approve | None = None,
        **params: Any,
    ) -> AsyncToolStream:
        """Like :meth:`generate_stream_with_tools`, asynchronously: ``async for item in ...``.

        The calls of one round run concurrently: async tools on the event loop, plain ones
        in worker threads. ``approve`` may be an async function.
        """
        watch = take_watch(params, asynchronous=True)
        call, table = self._loop_call(prompt, messages, system_prompt, tools, max_rounds, params)
        return AsyncToolStream(
            self._aopen_round, call, table, max_rounds, approve, watch, origin=self._origin()
        )

    def _loop_call(
        self,
        prompt: str | None,
        messages: Sequence[Message] | None,
        system_prompt: str | None,
        tools: Sequence[Any],
        max_rounds: int,
        params: dict[str, Any],
    ) -> tuple[Call, dict[str, Tool]]:
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
            raise ValueError(f"max_rounds must be a positive int, not {max_rounds!r}")
        call = self._call(prompt, messages, system_prompt, {**params, "tools": tools})
        if not call.tools:
            raise ValueError("the tool loop needs tools: pass tools=[...]")
        return call, tool_table(call.tools)

    # -- lifetime ------------------------------------------------------------------------------

    def fallback(self, position: int) -> LLM:
        """The fallback at ``position``, made on first use from its spec and kept."""
        made = self._fallback_llms.get(position)
        if made is None:
            spec = self.fallbacks[position]
            # One made here holds to this LLM's response limits unless its spec says others.
            if isinstance(spec, LLM):
                made = spec
            elif isinstance(spec, dict):
                made = create_llm(**{"limits": self.limits, **spec})
            else:
                made = create_llm(spec, limits=self.limits)
            self._fallback_llms[position] = made
        return made

    def _fallback_provider(self, position: int) -> Provider:
        return self.fallback(position).provider

    def close(self) -> None:
        """Release the provider's connections, and those of the fallbacks used."""
        self.provider.close()
        for fallback in self._fallback_llms.values():
            fallback.close()

    async def aclose(self) -> None:
        await self.provider.aclose()
        for fallback in self._fallback_llms.values():
            await fallback.aclose()

    def __repr__(self) -> str:
        return f"<spout.LLM provider={self.provider.name!r} model={self.provider.model!r}>"
