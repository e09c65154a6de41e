"""What a stream cost, and its OpenTelemetry span.

Run it with ``python examples/cost_and_tracing.py``. It needs the price list and OpenTelemetry
(``pip install 'spout[cost,otel]' opentelemetry-sdk``), and no key or network: a local server
speaks Anthropic's wire (with prompt-cache usage) and OpenAI's (for a model of your own). The
example prints:
- the usage, counting the cached input;
- the cost, live while the stream runs and final at its end;
- the cost of a stream cut short;
- a model priced with your own prices;
- the span each call left.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spout
from spout import Prices, create_llm

WORDS = ["Prompt ", "caching ", "reads ", "a ", "long ", "prefix ", "once."]


def sse(events: list[tuple[str | None, dict[str, Any]]]) -> bytes:
    out = ""
    for name, data in events:
        out += (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
    return out.encode()


def anthropic_stream() -> bytes:
    """1,000 new input tokens, 5,000 read from the prompt cache, 2,000 written to it."""
    usage = {
        "input_tokens": 1000,
        "cache_read_input_tokens": 5000,
        "cache_creation_input_tokens": 2000,
        "output_tokens": 1,
    }
    message = {
        "id": "msg_cost_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "usage": usage,
    }
    events: list[tuple[str | None, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    events += [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word},
            },
        )
        for word in WORDS
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 150},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return sse(events)  # fmt: skip


def openai_stream() -> bytes:
    chunks: list[tuple[str | None, dict[str, Any]]] = [
        (
            None,
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": "my-finetune",
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            },
        )
        for word in WORDS
    ]
    chunks.append(
        (
            None,
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": "my-finetune",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
        )
    )
    chunks.append(
        (
            None,
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": "my-finetune",
                "choices": [],
                "usage": {"prompt_tokens": 2000, "completion_tokens": 100},
            },
        )
    )
    return sse(chunks) + b"data: [DONE]\n\n"  # fmt: skip


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = anthropic_stream() if self.path.startswith("/v1/messages") else openai_stream()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    # Tracing: your application's SDK set-up (here, spans kept in memory to print them).
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    spout.instrument(tracer_provider=tracing)

    claude = create_llm("anthropic", model="claude-sonnet-4-5", base_url=url, api_key="demo")
    # A model of your own, on a server of your own: priced with your prices ($ per 1M tokens).
    mine = create_llm(
        "openai", model="my-finetune", base_url=url + "/v1", prices=Prices(input=0.2, output=0.6)
    )
    try:
        with claude.generate_stream("Why cache a prompt?") as stream:
            for i, _ in enumerate(stream):
                if i == 2:
                    stats = stream.stats
                    print(f"cost so far: ${stats.cost:.6f} (estimated: {stats.cost_estimated})")
        response = stream.response
        usage = response.usage
        print(f"answer: {response.text!r}")
        print(
            f"usage: {usage.input_tokens} input tokens ({usage.cache_read_tokens} read from the "
            f"cache, {usage.cache_write_tokens} written to it), {usage.output_tokens} output"
        )
        print(f"cost: ${response.cost:.6f}")

        with claude.generate_stream("Why cache a prompt?") as cut:
            for i, _ in enumerate(cut):
                if i == 1:
                    break  # stopped early: what was used still costs
        print(
            f"cut after 2 chunks: ${cut.response.cost:.6f} "
            f"(estimated: {cut.response.cost_estimated})"
        )

        own = mine.generate("Hello", stream=True)
        text = "".join(own)
        print(f"my-finetune: {len(text)} characters, cost ${own.response.cost:.6f}")
    finally:
        claude.close()
        mine.close()
        server.shutdown()
        server.server_close()
        spout.instrument(False)

    for span in spans.get_finished_spans():
        attributes = span.attributes or {}
        print(f"span {span.name!r}: {span.status.status_code.name}")
        for key in (
            "gen_ai.provider.name",
            "gen_ai.response.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.response.finish_reasons",
            "spout.stream.end",
            "spout.cost.usd",
        ):
            if key in attributes:
                value = attributes[key]
                shown = list(value) if isinstance(value, tuple) else value
                print(f"    {key} = {shown}")


if __name__ == "__main__":
    main()
