"""spout.instrument(): a GenAI span and metrics per call, read with the OpenTelemetry SDK's
in-memory exporter and metric reader, against recorded transcripts replayed over loopback."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import spout
from helpers import Runner, json_reply
from replay_server import ReplayServer, Reply, cut_by_event, transcript
from spout import Retry, create_llm

FAST = Retry(max_retries=2, initial_delay=0.01, max_delay=0.05, jitter=False)


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def only(self) -> ReadableSpan:
        """The one span there is (each call ends exactly one)."""
        spans = self.finished()
        assert len(spans) == 1, [span.name for span in spans]
        return spans[0]

    def points(self, name: str) -> list[HistogramDataPoint]:
        data = self.metrics.get_metrics_data()
        found: list[HistogramDataPoint] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += metric.data.data_points  # type: ignore[arg-type]
        return found


def _instrument(caplog: pytest.LogCaptureFixture, **options: Any) -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    spout.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, **options)
    try:
        yield Telemetry(spans, reader)
    finally:
        spout.instrument(False)
        tracer_provider.shutdown()
        meter_provider.shutdown()
    # The SDK logs a second end() of a span: every span here ended exactly once.
    twice = [r.getMessage() for r in caplog.records if "ended span" in r.getMessage()]
    assert not twice


@pytest.fixture
def otel(caplog: pytest.LogCaptureFixture) -> Iterator[Telemetry]:
    yield from _instrument(caplog)


@pytest.fixture
def otel_content(caplog: pytest.LogCaptureFixture) -> Iterator[Telemetry]:
    yield from _instrument(caplog, capture_content=True)


@pytest.fixture
def llms() -> Iterator[list[spout.LLM]]:
    made: list[spout.LLM] = []
    yield made
    for llm in made:
        llm.close()


def openai(replay: ReplayServer, llms: list[spout.LLM], **config: Any) -> spout.LLM:
    if "retry" not in config:
        config.setdefault("max_retries", 0)
    llm = create_llm(
        "openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1", api_key="sk-test", **config
    )
    llms.append(llm)
    return llm


def recorded(case: str, provider: str = "openai_chat") -> Reply:
    """A recorded transcript, each event its own write."""
    body, _ = transcript(provider, case)
    return Reply(chunks=cut_by_event(body))


def sse(*payloads: Any, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)
    return body + (b"data: [DONE]\n\n" if done else b"")


def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-WIREotel",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }


def answer(*pieces: str, delay: float = 0.0) -> Reply:
    return Reply(
        chunks=[*(sse(chunk(p), done=False) for p in pieces), sse(chunk("", "stop"))], delay=delay
    )


def error(status: int) -> Reply:
    body = json.dumps({"error": {"message": "try later", "type": "server_error"}}).encode()
    return Reply(status=status, chunks=[body], headers={"Content-Type": "application/json"})


# -- one span per call --------------------------------------------------------------------------


def test_a_stream_is_one_span_with_the_conventions_attributes(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [recorded("text_then_tool_call")]
    llm = openai(replay, llms)
    result = runner.events(
        llm, "hi", temperature=0.5, max_tokens=99, top_p=0.9, stop=["END"], seed=7
    )
    span = otel.only()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    ttfc = attributes.pop("gen_ai.response.time_to_first_chunk")
    usage = result.response.usage
    assert attributes.pop("spout.cost.usd", None) == result.response.cost
    # What the provider said of its cache and reasoning (0 here), as Usage has it.
    assert attributes.pop("gen_ai.usage.cache_read.input_tokens", None) == usage.cache_read_tokens
    assert attributes.pop("gen_ai.usage.reasoning.output_tokens", None) == usage.reasoning_tokens
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "server.address": "127.0.0.1",
        "server.port": int(replay.url.rsplit(":", 1)[1]),
        "gen_ai.request.stream": True,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 99,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.request.seed": 7,
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-WIREtextTool0000000000000003",
        "gen_ai.response.finish_reasons": ("tool_calls",),
        "gen_ai.usage.input_tokens": 187,
        "gen_ai.usage.output_tokens": 64,
        "spout.stream.end": "done",
    }
    assert isinstance(ttfc, float) and ttfc == result.response.time_to_first_token
    assert span.end_time is not None and span.start_time is not None
    assert 0 < ttfc <= (span.end_time - span.start_time) / 1e9
    # No content unless asked for.
    assert not [key for key in attributes if "messages" in key]


def test_cache_figures_and_the_whole_input(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [recorded("prompt_cache", "anthropic")]
    llm = create_llm("anthropic", model="claude-sonnet-4-5", base_url=replay.url, api_key="k")
    llms.append(llm)
    runner.text(llm)
    attributes = otel.only().attributes or {}
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.usage.input_tokens"] == 8000
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 5000
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] == 2000
    assert attributes["gen_ai.usage.output_tokens"] == 50


def test_a_call_not_streamed_is_a_span_without_stream_attributes(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [
        json_reply(
            {
                "id": "chatcmpl-WIREwhole",
                "object": "chat.completion",
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
            }
        )
    ]
    runner.generate(openai(replay, llms))
    span = otel.only()
    assert span.name == "chat gpt-4o-mini"
    attributes = span.attributes or {}
    assert attributes["gen_ai.response.id"] == "chatcmpl-WIREwhole"
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert "gen_ai.request.stream" not in attributes
    assert "gen_ai.response.time_to_first_chunk" not in attributes
    assert not otel.points("gen_ai.client.operation.time_to_first_chunk")


def test_provider_names_are_the_conventions_well_known_values(
    otel: Telemetry, replay: ReplayServer, llms: list[spout.LLM]
) -> None:
    replay.replies = [error(400)]
    for name, model, expected in [
        ("gemini", "gemini-2.5-flash", "gcp.gemini"),
        ("mistral", "mistral-small-latest", "mistral_ai"),
        ("xai", "grok-4", "x_ai"),
        ("cohere", "command-a-03-2025", "cohere"),
        ("ollama", "llama3.2", "ollama"),
    ]:
        llm = create_llm(name, model=model, base_url=replay.url, api_key="k", max_retries=0)
        llms.append(llm)
        with pytest.raises(spout.SpoutError):
            llm.generate("hi")
        span = otel.finished()[-1]
        assert (span.attributes or {})["gen_ai.provider.name"] == expected, name


# -- however the stream ends, its span ends once ----------------------------------------------


def test_an_error_before_the_first_token_sets_the_error_status(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [error(400)]
    with pytest.raises(spout.BadRequestError):
        runner.text(openai(replay, llms))
    span = otel.only()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "BadRequestError"
    assert [event.name for event in span.events] == ["exception"]
    [duration] = otel.points("gen_ai.client.operation.duration")
    assert (duration.attributes or {})["error.type"] == "BadRequestError"


def test_an_error_mid_stream_sets_the_error_status(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [Reply(chunks=[sse(chunk("Hel"), done=False)], abort=True)]
    with pytest.raises(spout.SpoutError) as raised:
        runner.text(openai(replay, llms))
    span = otel.only()
    attributes = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == type(raised.value).__qualname__
    assert attributes["spout.stream.end"] == "error"
    ttfc = attributes["gen_ai.response.time_to_first_chunk"]
    assert isinstance(ttfc, float) and ttfc > 0  # the chunk that came


def test_break_ends_the_span_as_closed(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [answer("a", "b", "c", "d")]
    stream = runner.stream(openai(replay, llms))
    assert runner.list(stream, stop_after=1) == ["a"]
    span = otel.only()
    assert span.status.status_code is StatusCode.UNSET
    assert (span.attributes or {})["spout.stream.end"] == "closed"


def test_close_before_reading_ends_the_span(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [answer("a", "b")]
    stream = runner.start(openai(replay, llms))  # the request went out: a span is open
    assert otel.finished() == []
    runner.close(stream)
    runner.close(stream)  # twice: still one end
    assert (otel.only().attributes or {})["spout.stream.end"] == "closed"


def test_an_async_stream_never_started_has_no_span(
    otel: Telemetry, replay: ReplayServer, llms: list[spout.LLM]
) -> None:
    replay.replies = [answer("a")]
    stream = openai(replay, llms).agenerate_stream("hi")
    asyncio.run(stream.aclose())
    assert otel.finished() == []
    assert replay.requests == []


def test_a_sync_stream_collected_unread_ends_its_span(
    otel: Telemetry, replay: ReplayServer, llms: list[spout.LLM]
) -> None:
    replay.replies = [answer("a", "b")]
    llm = openai(replay, llms)
    stream = llm.generate_stream("hi")
    del stream
    gc.collect()
    assert (otel.only().attributes or {})["spout.stream.end"] == "closed"
    # and one read part-way
    otel.spans.clear()
    chunks = iter(llm.generate_stream("hi"))
    assert next(chunks) == "a"
    del chunks
    gc.collect()
    assert (otel.only().attributes or {})["spout.stream.end"] == "closed"


async def test_an_async_stream_collected_ends_its_span(
    otel: Telemetry, replay: ReplayServer
) -> None:
    replay.replies = [answer("a", "b")]
    async with create_llm(
        "openai", model="m", base_url=f"{replay.url}/v1", api_key="k", max_retries=0
    ) as llm:
        stream = await llm.generate_async("hi", stream=True)
        del stream
        gc.collect()
        assert (otel.only().attributes or {})["spout.stream.end"] == "closed"
        await asyncio.sleep(0.05)  # the connection released on the loop


async def test_cancelling_the_reader_ends_the_span_as_cancelled(
    otel: Telemetry, replay: ReplayServer
) -> None:
    replay.replies = [answer("a", "b", "c", delay=0.5)]
    first = asyncio.Event()

    async with create_llm(
        "openai", model="m", base_url=f"{replay.url}/v1", api_key="k", max_retries=0
    ) as llm:

        async def read() -> None:
            async for _ in llm.agenerate_stream("hi"):
                first.set()

        task = asyncio.create_task(read())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    span = otel.only()
    assert span.status.status_code is StatusCode.UNSET
    assert (span.attributes or {})["spout.stream.end"] == "cancelled"


# -- retries and fallbacks are events -----------------------------------------------------------


def test_retries_are_events_on_the_one_span(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [error(503), error(503), answer("ok")]
    result = runner.text(openai(replay, llms, retry=FAST))
    assert result.response.retries == 2
    span = otel.only()
    retries = [event for event in span.events if event.name == "spout.retry"]
    assert [(e.attributes or {})["spout.retry.attempt"] for e in retries] == [1, 2]
    assert {(e.attributes or {})["error.type"] for e in retries} == {"ServiceUnavailableError"}
    assert span.status.status_code is StatusCode.UNSET


def test_a_fallback_is_an_event_and_the_answer_names_it(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    backup = create_llm(
        "mistral", model="mistral-small-latest", base_url=f"{replay.url}/v1", api_key="k"
    )
    llms.append(backup)
    replay.replies = [error(503), answer("ok")]
    runner.text(openai(replay, llms, fallbacks=[backup]))
    span = otel.only()
    [event] = [event for event in span.events if event.name == "spout.fallback"]
    assert dict(event.attributes or {}) == {
        "error.type": "ServiceUnavailableError",
        "gen_ai.provider.name": "mistral_ai",
        "gen_ai.request.model": "mistral-small-latest",
    }
    assert (span.attributes or {})["spout.response.provider"] == "mistral_ai"


# -- the tool loop ------------------------------------------------------------------------------


def run_python(expression: str, path: str = "", label: str = "") -> str:
    """Run a Python expression."""
    return f"ran {expression}"


def test_each_tool_run_is_an_execute_tool_span(
    otel_content: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [recorded("text_then_tool_call"), answer("It is 10.")]
    runner.list(runner.stream_with_tools(openai(replay, llms), tools=[run_python]))
    spans = otel_content.finished()
    assert [span.name for span in spans] == [
        "chat gpt-4o-mini",
        "execute_tool run_python",
        "chat gpt-4o-mini",
    ]
    tool = spans[1]
    attributes = dict(tool.attributes or {})
    assert tool.kind is SpanKind.INTERNAL
    assert json.loads(str(attributes.pop("gen_ai.tool.call.arguments")))["label"] == "résumé 😀"
    assert attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "run_python",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "call_WIREsandbox00000000000001",
        "gen_ai.tool.description": "Run a Python expression.",
        "gen_ai.tool.call.result": '"ran len(\\"café\\") * 2"',
    }
    # The tool's span ran between the two rounds, inside the caller's trace.
    assert spans[0].end_time <= tool.start_time  # type: ignore[operator]
    assert tool.end_time <= spans[2].start_time  # type: ignore[operator]


def test_a_tool_that_raises_is_an_error_span(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    def run_python(expression: str, path: str = "", label: str = "") -> str:
        """Always fails."""
        raise RuntimeError("no sandbox today")

    replay.replies = [recorded("text_then_tool_call"), answer("Sorry.")]
    runner.list(runner.stream_with_tools(openai(replay, llms), tools=[run_python]))
    [tool] = [span for span in otel.finished() if span.name.startswith("execute_tool")]
    assert tool.status.status_code is StatusCode.ERROR
    assert (tool.attributes or {})["error.type"] == "RuntimeError"
    assert "gen_ai.tool.call.arguments" not in (tool.attributes or {})  # no content by default


# -- contents, only when asked ------------------------------------------------------------------


def test_capture_content_records_the_messages(
    otel_content: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [answer("Hel", "lo")]
    runner.text(openai(replay, llms, system_prompt="Be brief."), "Say hello")
    attributes = otel_content.only().attributes or {}
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Say hello"}]},
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello"}],
            "finish_reason": "stop",
        }
    ]


# -- metrics -------------------------------------------------------------------------------------


def test_the_three_histograms(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    replay.replies = [recorded("text_then_tool_call")]
    result = runner.text(openai(replay, llms))
    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "server.address": "127.0.0.1",
        "server.port": int(replay.url.rsplit(":", 1)[1]),
    }
    [duration] = otel.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes or {}) == common
    assert duration.count == 1 and duration.sum > 0
    tokens = {
        (p.attributes or {})["gen_ai.token.type"]: p.sum
        for p in otel.points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": 187, "output": 64}
    [first] = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert first.sum == result.response.time_to_first_token
    assert first.sum <= duration.sum


# -- on and off ----------------------------------------------------------------------------------


def test_instrument_false_stops_it(
    otel: Telemetry, replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    spout.instrument(False)
    replay.replies = [answer("a")]
    assert runner.text(openai(replay, llms)).response.text == "a"
    assert otel.finished() == []


def test_with_no_sdk_a_stream_runs_as_before(
    replay: ReplayServer, runner: Runner, llms: list[spout.LLM]
) -> None:
    spout.instrument()  # the global providers: the API's no-ops, as no SDK was set up
    try:
        replay.replies = [answer("a", "b")]
        assert runner.text(openai(replay, llms)).response.text == "ab"
    finally:
        spout.instrument(False)


def test_without_the_api_instrument_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(spout.ConfigurationError, match=r"pip install 'spout\[otel\]'"):
        spout.instrument()
