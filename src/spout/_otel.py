"""OpenTelemetry for every call (:func:`instrument`): a GenAI span and metrics per call, a span per tool run.

Off (the default) costs one global read per call and nothing per chunk. On, a call opens its
span as its request goes out and ends it once, when its stream ends however it ends (its
last event, an error, ``break``, ``close``, cancellation, garbage collection); everything the
span says is read then from the stream's :class:`~spout.Response` (the time to first chunk
included, which the accumulator already notes), so a chunk costs nothing more. With only
``opentelemetry-api`` installed and no SDK configured, spans and instruments are the API's
no-ops, and the attributes are not even computed (``span.is_recording()``).

Names follow OpenTelemetry's GenAI semantic conventions (now kept in
open-telemetry/semantic-conventions-genai, ``docs/gen-ai/gen-ai-spans.md`` and
``gen-ai-metrics.md``), at their development status: ``gen_ai.response.time_to_first_chunk``
and ``gen_ai.request.stream`` as added by open-telemetry/semantic-conventions#3607, and the
``gen_ai.client.operation.time_to_first_chunk`` histogram by #3377.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from opentelemetry.metrics import Histogram
    from opentelemetry.trace import Span, Tracer

    from ._events import ToolCall, ToolResult
    from ._response import Accumulator, Response
    from .providers._base import Call, Provider

__all__ = ["CallSpan", "Instrumentation", "ToolSpan", "continue_trace", "instrument", "state"]

#: The instrumentation in force, or None when spout is not instrumented (the default).
state: Instrumentation | None = None

#: spout's provider names as the conventions' well-known ``gen_ai.provider.name`` values;
#: a provider not listed is named as spout names it (a custom value, which they allow).
PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",  # generativelanguage.googleapis.com, "the AI Studio API"
    "vertex": "gcp.vertex_ai",  # aiplatform.googleapis.com
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "groq": "groq",
}

#: Providers that run the model in this process: their spans are INTERNAL, not CLIENT.
IN_PROCESS = frozenset({"local", "transformers"})

# The conventions' advised bucket boundaries (gen-ai-metrics.md).
_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKENS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)


def instrument(
    enabled: bool = True,
    *,
    capture_content: bool = False,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> None:
    """Switch OpenTelemetry on (or off, with ``False``) for every call in this process.

    Each call is a span named ``chat {model}`` with the GenAI semantic conventions'
    attributes (provider, model, request settings, response id and model, finish reasons,
    token usage with the cached part, time to first chunk), retries and fallbacks as its
    events, and each tool the tool loop runs is an ``execute_tool {name}`` span. The
    histograms ``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` and
    ``gen_ai.client.operation.time_to_first_chunk`` are recorded. Message contents are
    recorded only with ``capture_content=True``. Spans and metrics go to the global
    OpenTelemetry providers (or those given): with no SDK configured, nowhere, at next to no
    cost. Needs ``opentelemetry-api`` (``pip install 'spout[otel]'``).

    Example::

        import spout
        spout.instrument()                      # after configuring the OpenTelemetry SDK
        llm = spout.create_llm("openai:gpt-4o-mini")
        for chunk in llm.generate_stream("Hi"):  # one span, ended with the stream
            ...
        spout.instrument(False)
    """
    global state
    if not enabled:
        state = None
        return
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        raise ConfigurationError(
            "spout.instrument() needs OpenTelemetry's API: pip install 'spout[otel]'"
        ) from None
    version = _version()
    tracer = trace.get_tracer("spout", version, tracer_provider=tracer_provider)
    meter = metrics.get_meter("spout", version, meter_provider=meter_provider)
    state = Instrumentation(tracer, meter, capture_content=bool(capture_content))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spout")
    except PackageNotFoundError:  # a source checkout never installed
        return ""


class Instrumentation:
    """What :func:`instrument` set up: the tracer, the three histograms, and whether to record
    message contents."""

    def __init__(self, tracer: Tracer, meter: Any, *, capture_content: bool) -> None:
        self.tracer = tracer
        self.capture_content = capture_content
        self.duration: Histogram = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.tokens: Histogram = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKENS,
        )
        self.first_chunk: Histogram = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk, from when the request is issued.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        # base_url -> (server.address, server.port): parsed once per endpoint, not per call.
        self._servers: dict[str, tuple[str | None, int | None]] = {}

    def server(self, provider: Provider) -> tuple[str | None, int | None]:
        base_url = getattr(provider, "base_url", None)
        if not isinstance(base_url, str) or not base_url:
            return None, None
        found = self._servers.get(base_url)
        if found is None:
            from urllib.parse import urlsplit

            try:
                parts = urlsplit(base_url)
                port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
                found = (parts.hostname, port)
            except ValueError:
                found = (None, None)
            self._servers[base_url] = found
        return found


def call_span(
    provider: Provider, call: Call, accumulator: Accumulator, *, stream: bool
) -> CallSpan | None:
    """A span for this call, not yet started; None when spout is not instrumented."""
    otel = state
    if otel is None:
        return None
    return CallSpan(otel, provider, call, accumulator, stream)


@contextlib.contextmanager
def spanning(span: CallSpan | None) -> Iterator[None]:
    """Run a call that is not streamed in its span (None: instrumentation is off): started
    here, ended with the call's error or without one."""
    if span is None:
        yield
        return
    span.start()
    try:
        yield
    except BaseException as exc:
        span.end(exc)
        raise
    span.end()


class CallSpan:
    """One call's span: started as its request goes out, ended once however the call ends.

    :meth:`fail` notes what interrupted the stream (the pump calls it as the exception
    passes); :meth:`end` reads the response as it stands and closes the span. A
    ``GeneratorExit`` (``break``, ``close``, garbage collection) ends it as ``closed`` and a
    cancellation as ``cancelled``, neither an error; anything else sets the ERROR status.
    """

    __slots__ = (
        "_accumulator",
        "_attributes",
        "_call",
        "_failure",
        "_once",
        "_otel",
        "_provider",
        "_retries",
        "_span",
        "_started",
        "_stream",
    )

    def __init__(
        self,
        otel: Instrumentation,
        provider: Provider,
        call: Call,
        accumulator: Accumulator,
        stream: bool,
    ) -> None:
        self._otel = otel
        self._provider = provider
        self._call = call
        self._accumulator = accumulator
        self._stream = stream
        self._span: Span | None = None
        self._failure: BaseException | None = None
        self._once = threading.Lock()  # taken by the first end(), never released
        self._started = 0.0
        self._retries = 0
        self._attributes: dict[str, Any] = {}

    def start(self) -> None:
        """Open the span, as the request is about to go out (a second call does nothing)."""
        if self._span is not None:
            return
        from opentelemetry.trace import SpanKind

        otel, provider = self._otel, self._provider
        model = provider.model
        name = provider.name
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER_NAMES.get(name, name),
        }
        if model:
            attributes["gen_ai.request.model"] = model
        address, port = otel.server(provider)
        if address:
            attributes["server.address"] = address
            if port:
                attributes["server.port"] = port
        self._attributes = dict(attributes)  # the metrics' attributes: low cardinality
        self._span = span = otel.tracer.start_span(
            f"chat {model}" if model else "chat",
            kind=SpanKind.INTERNAL if name in IN_PROCESS else SpanKind.CLIENT,
            attributes=attributes,
        )
        if span.is_recording():
            span.set_attributes(_request_attributes(self._call, self._stream))
            if otel.capture_content:
                span.set_attribute("gen_ai.input.messages", _input_messages(self._call.messages))
        # The call's clock starts now, the request next: the time to first chunk and the
        # duration are then counted from one moment, without the span's own making.
        self._started = time.perf_counter()
        self._accumulator.restart_clock()

    def retry(self, error: BaseException, delay: float) -> None:
        """The request failed before its first token and is tried again after ``delay``."""
        self._retries += 1
        span = self._span
        if span is not None and span.is_recording():
            span.add_event(
                "spout.retry",
                {
                    "error.type": error_type(error),
                    "spout.retry.attempt": self._retries,
                    "spout.retry.delay": float(delay),
                },
            )

    def fallback(self, provider: Provider, error: BaseException) -> None:
        """The request failed and goes to the fallback ``provider`` next."""
        span = self._span
        if span is not None and span.is_recording():
            span.add_event(
                "spout.fallback",
                {
                    "error.type": error_type(error),
                    "gen_ai.provider.name": PROVIDER_NAMES.get(provider.name, provider.name),
                    "gen_ai.request.model": provider.model or "",
                },
            )

    def resume(self, error: BaseException) -> None:
        """The stream was cut by ``error`` and is continued in a new request."""
        span = self._span
        if span is not None and span.is_recording():
            span.add_event("spout.resume", {"error.type": error_type(error)})

    def fail(self, error: BaseException) -> None:
        """What is ending the call, noted as it passes; :meth:`end` reports it."""
        if self._failure is None:
            self._failure = error

    def end(self, error: BaseException | None = None, *, closed: bool = False) -> None:
        """End the span, once: with ``error`` (or the one noted by :meth:`fail`), as closed
        early when ``closed`` and nothing was noted, else as done."""
        span = self._span
        if span is None or not self._once.acquire(blocking=False):
            return
        error = error or self._failure
        how = "closed" if closed else "done"
        if error is not None:
            how = _how(error)
        elapsed = time.perf_counter() - self._started
        response = self._accumulator.response()
        attributes = self._attributes
        if response.model:
            attributes["gen_ai.response.model"] = response.model
        if how == "error":
            attributes["error.type"] = error_type(error)  # type: ignore[arg-type]
        try:
            if span.is_recording():
                self._describe(span, response, how)
                if how == "error":
                    from opentelemetry.trace import Status, StatusCode

                    span.set_attribute("error.type", attributes["error.type"])
                    span.record_exception(error)  # type: ignore[arg-type]
                    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        finally:
            span.end()
        otel = self._otel
        otel.duration.record(elapsed, attributes)
        usage = response.usage
        if usage.input_tokens is not None:
            otel.tokens.record(usage.input_tokens, {**attributes, "gen_ai.token.type": "input"})
        if usage.output_tokens is not None:
            otel.tokens.record(usage.output_tokens, {**attributes, "gen_ai.token.type": "output"})
        if self._stream and response.time_to_first_token is not None:
            otel.first_chunk.record(response.time_to_first_token, attributes)

    def _describe(self, span: Span, response: Response, how: str) -> None:
        values: dict[str, Any] = {}
        if response.model:
            values["gen_ai.response.model"] = response.model
        if response.id:
            values["gen_ai.response.id"] = response.id
        if response.finish_reason is not None:
            values["gen_ai.response.finish_reasons"] = [response.finish_reason]
        usage = response.usage
        for key, value in (
            ("gen_ai.usage.input_tokens", usage.input_tokens),
            ("gen_ai.usage.output_tokens", usage.output_tokens),
            ("gen_ai.usage.cache_read.input_tokens", usage.cache_read_tokens),
            ("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens),
            ("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens),
        ):
            if value is not None:
                values[key] = value
        if self._stream:
            values["spout.stream.end"] = how
            if response.time_to_first_token is not None:
                values["gen_ai.response.time_to_first_chunk"] = response.time_to_first_token
        cost = getattr(response, "cost", None)
        if isinstance(cost, (int, float)):
            values["spout.cost.usd"] = float(cost)
        if response.provider and response.provider != self._provider.name:
            # A fallback answered: the provider that did, besides the one first asked.
            values["spout.response.provider"] = PROVIDER_NAMES.get(
                response.provider, response.provider
            )
        if self._otel.capture_content:
            values["gen_ai.output.messages"] = _output_messages(response)
        span.set_attributes(values)


def _how(error: BaseException) -> str:
    if isinstance(error, GeneratorExit):
        return "closed"
    import asyncio

    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "error"


def error_type(error: BaseException) -> str:
    """The ``error.type`` of an exception: its class, named with its module outside spout
    and the builtins (the conventions ask for a low-cardinality identifier)."""
    cls = type(error)
    module = cls.__module__
    if module == "builtins" or module.startswith("spout"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _request_attributes(call: Call, stream: bool) -> dict[str, Any]:
    params = call.params
    values: dict[str, Any] = {}
    for name, key, kind in (
        ("temperature", "gen_ai.request.temperature", float),
        ("top_p", "gen_ai.request.top_p", float),
        ("max_tokens", "gen_ai.request.max_tokens", int),
        ("seed", "gen_ai.request.seed", int),
    ):
        value = params.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = kind(value)
    stop = params.get("stop")
    if isinstance(stop, str):
        values["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        values["gen_ai.request.stop_sequences"] = list(stop)
    if stream:
        values["gen_ai.request.stream"] = True
    if call.output_format is not None:
        values["gen_ai.output.type"] = "json"
    return values


# -- contents (capture_content=True only) -------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, list):
        for item in content:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                parts.append({"type": "text", "content": item["text"]})
            elif isinstance(item, str):
                parts.append({"type": "text", "content": item})
            else:  # an image, a file, a provider's own block: said to be there, not copied
                kind = item.get("type") if isinstance(item, dict) else type(item).__name__
                parts.append({"type": str(kind or "unknown")})
        return parts
    return [{"type": type(content).__name__}]


def _input_messages(messages: list[dict[str, Any]]) -> str:
    """The messages in the conventions' input-messages shape (gen-ai-input-messages.json)."""
    out = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            parts: list[dict[str, Any]] = [
                {
                    "type": "tool_call_response",
                    "id": message.get("tool_call_id"),
                    "response": message.get("content"),
                }
            ]
        else:
            parts = _parts(message.get("content"))
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                parts.append(
                    {
                        "type": "tool_call",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": function.get("arguments"),
                    }
                )
        out.append({"role": role, "parts": parts})
    return _json(out)


def _output_messages(response: Response) -> str:
    """The answer in the conventions' output-messages shape (gen-ai-output-messages.json)."""
    parts: list[dict[str, Any]] = []
    if response.reasoning:
        parts.append({"type": "reasoning", "content": response.reasoning})
    if response.text:
        parts.append({"type": "text", "content": response.text})
    if response.refusal:
        parts.append({"type": "refusal", "content": response.refusal})
    for call in response.tool_calls:
        parts.append(
            {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        )
    message = {"role": "assistant", "parts": parts, "finish_reason": response.finish_reason}
    return _json([message])


# -- tools ----------------------------------------------------------------------------------------


def tool_span(call: ToolCall, tool: Any) -> ToolSpan | None:
    """A started span for running this tool call; None when spout is not instrumented."""
    otel = state
    return None if otel is None else ToolSpan(otel, call, tool)


class ToolSpan:
    """An ``execute_tool {name}`` span (INTERNAL), ended by :meth:`end` with the result."""

    __slots__ = ("_capture", "_error", "_span")

    def __init__(self, otel: Instrumentation, call: ToolCall, tool: Any) -> None:
        from opentelemetry.trace import SpanKind

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.type": "function",
        }
        if call.id:
            attributes["gen_ai.tool.call.id"] = call.id
        description = getattr(tool, "description", None)  # a spout.Tool's, when known
        if description:
            attributes["gen_ai.tool.description"] = description
        self._capture = otel.capture_content
        if self._capture:
            attributes["gen_ai.tool.call.arguments"] = _json(call.arguments)
        self._span = otel.tracer.start_span(
            f"execute_tool {call.name}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        self._error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        """The tool raised ``error`` (its result is then an error result)."""
        self._error = error

    def end(self, result: ToolResult | None) -> None:
        span = self._span
        try:
            if not span.is_recording():
                return
            ran = result.tool_call if result is not None else None
            if self._error is not None and _how(self._error) != "error":
                pass  # cancelled with the loop: not the tool's failure
            elif self._error is not None or (ran is not None and ran.error is not None):
                from opentelemetry.trace import Status, StatusCode

                kind = error_type(self._error) if self._error is not None else "refused"
                span.set_attribute("error.type", kind)
                if self._error is not None:
                    span.record_exception(self._error)
                message = ran.error if ran is not None and ran.error else str(self._error)
                span.set_status(Status(StatusCode.ERROR, message))
            elif self._capture and ran is not None:
                span.set_attribute("gen_ai.tool.call.result", _json(ran.result))
        finally:
            span.end()


# -- the gateway ------------------------------------------------------------------------------


@contextlib.contextmanager
def continue_trace(headers: Mapping[str, str]) -> Iterator[None]:
    """Continue the W3C trace in ``headers`` (``traceparent``, ``tracestate``) inside the
    ``with`` block: the calls made there are spans of that trace, children of the caller's
    span. Does nothing when spout is not instrumented.

    Example::

        with spout.continue_trace(request.headers):   # in a server's request handler
            answer = llm.generate(prompt)
    """
    if state is None:
        yield
        return
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(headers))
    try:
        yield
    finally:
        context.detach(token)
