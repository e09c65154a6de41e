"""With spout.instrument(), the gateway's upstream calls continue the client's W3C trace."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gateway_server import run_gateway, upstream_config
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spout
from replay_server import ReplayServer, Reply, cut_by_event, transcript

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
BODY = {"model": "up", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spout.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        spout.instrument(False)
        provider.shutdown()


def recorded() -> Reply:
    body, _ = transcript("openai_chat", "text")
    return Reply(chunks=cut_by_event(body))


@pytest.mark.parametrize("stream", [True, False])
def test_the_upstream_call_is_a_child_of_the_clients_span(
    spans: InMemorySpanExporter, replay: ReplayServer, stream: bool
) -> None:
    replay.replies = [recorded()]
    if not stream:  # the gateway asks the upstream for a whole answer
        replay.replies = [
            Reply(
                chunks=[
                    b'{"id":"chatcmpl-WIREgw","object":"chat.completion","model":"m",'
                    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},'
                    b'"finish_reason":"stop"}]}'
                ],
                headers={"Content-Type": "application/json"},
            )
        ]
    with run_gateway(upstream_config(f"{replay.url}/v1")) as gateway:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={**BODY, "stream": stream},
            headers={"traceparent": TRACEPARENT},
            timeout=10,
        )
        assert response.status_code == 200
        response.read()
    [span] = spans.get_finished_spans()
    assert span.name == "chat m"
    assert span.context is not None and span.context.trace_id == TRACE_ID
    assert span.parent is not None and span.parent.span_id == PARENT_ID
    assert span.parent.is_remote
    # The trace context is the client's business with the gateway: not sent upstream.
    assert "traceparent" not in replay.requests[0].headers


def test_without_a_traceparent_the_call_starts_a_trace(
    spans: InMemorySpanExporter, replay: ReplayServer
) -> None:
    replay.replies = [recorded()]
    with run_gateway(upstream_config(f"{replay.url}/v1")) as gateway:
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions", json={**BODY, "stream": True}, timeout=10
        )
        response.read()
    [span] = spans.get_finished_spans()
    assert span.parent is None


# The OpenTelemetry SDK set up in the `spout serve` process before spout runs, as an
# application's own start-up (or opentelemetry-instrument) would: its finished spans are
# written to a file, one JSON object a line.
SITECUSTOMIZE = """
import json, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

class ToFile(SpanExporter):
    def export(self, spans):
        with open(os.environ["SPANS_FILE"], "a") as out:
            for span in spans:
                parent = span.parent.span_id if span.parent else None
                out.write(json.dumps({"name": span.name, "trace_id": span.context.trace_id,
                                      "parent_id": parent}) + "\\n")
        return SpanExportResult.SUCCESS

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ToFile()))
trace.set_tracer_provider(provider)
"""


def test_spout_serve_otel_continues_the_clients_trace(replay: ReplayServer, tmp_path: Any) -> None:
    """`spout serve --otel`, a process as a user runs it: the upstream call of a request that
    came with a traceparent is a span of the client's trace, under the client's span."""
    from test_serve_cli import serve

    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    spans_file = tmp_path / "spans.jsonl"
    replay.replies = [recorded()]
    env = {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "SPANS_FILE": str(spans_file),
        "UPSTREAM_KEY": "sk-test",
    }
    args = ["--otel", "-m", "openai:up", "--base-url", replay.url + "/v1"]
    with serve(*args, "--api-key-env", "UPSTREAM_KEY", env=env) as (_, url):
        response = httpx.post(
            url + "/v1/chat/completions",
            json={**BODY, "stream": True},
            headers={"traceparent": TRACEPARENT},
            timeout=10,
        )
        assert response.status_code == 200 and "[DONE]" in response.text
        deadline = time.monotonic() + 5
        while not spans_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    chat = [span for span in spans if span["name"] == "chat up"]
    assert len(chat) == 1
    assert (chat[0]["trace_id"], chat[0]["parent_id"]) == (TRACE_ID, PARENT_ID)
