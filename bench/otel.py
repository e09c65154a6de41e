"""What spout.instrument() costs: CPU µs per provider chunk and per call, off and on.

The same burst stream as the "CPU per chunk, openai format, burst" table, read by spout with
OpenTelemetry off, on with only the API (no SDK configured: the API's no-op tracer and
meter), and on with the SDK recording every span and metric in memory (with and without
message contents). Per chunk is over one long stream, where a call's fixed cost vanishes; per
call is over many ten-chunk streams, where it shows. Run alone with
``python bench/run.py --only otel`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable

from clients import MODEL

#: (label, what switches it on; None: off)
CONFIGS: list[tuple[str, Callable[[], None] | None]] = []


def _off() -> None:
    import spout

    spout.instrument(False)


def _api_only() -> None:
    import spout

    spout.instrument()  # no SDK set up in this process: the global providers are no-ops


def _sdk(capture: bool) -> Callable[[], None]:
    def on() -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        import spout

        tracer = TracerProvider()
        tracer.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        meter = MeterProvider(metric_readers=[InMemoryMetricReader()])
        spout.instrument(tracer_provider=tracer, meter_provider=meter, capture_content=capture)

    return on


CONFIGS = [
    ("off", None),
    ("on, API only (no SDK)", _api_only),
    ("on, SDK + in-memory exporter", _sdk(False)),
    ("on, SDK, capture_content=True", _sdk(True)),
]


def _sync_run(base: str, prompt: str, calls: int) -> float:
    import spout

    llm = spout.create_llm("openai", model=MODEL, base_url=f"{base}/v1", api_key="sk-bench")
    try:
        for _ in llm.generate_stream("burst-10"):  # warm: connection, caches
            pass
        gc.collect()
        start = time.process_time()
        for _ in range(calls):
            for _ in llm.generate_stream(prompt):
                pass
        return time.process_time() - start
    finally:
        llm.close()


def _async_run(base: str, prompt: str, calls: int) -> float:
    import spout

    async def main() -> float:
        llm = spout.create_llm("openai", model=MODEL, base_url=f"{base}/v1", api_key="sk-bench")
        try:
            async for _ in llm.agenerate_stream("burst-10"):
                pass
            gc.collect()
            start = time.process_time()
            for _ in range(calls):
                async for _ in llm.agenerate_stream(prompt):
                    pass
            return time.process_time() - start
        finally:
            await llm.aclose()

    return asyncio.run(main())


def measure(base: str, n: int, calls: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """By configuration: µs per chunk of one ``n``-chunk stream, and µs per call of ``calls``
    ten-chunk streams, sync and async; one value a round, configurations interleaved."""
    results: dict[str, dict[str, list[float]]] = {
        label: {"sync": [], "async": [], "sync call": [], "async call": []} for label, _ in CONFIGS
    }
    try:
        for _ in range(rounds):
            for label, switch in CONFIGS:
                (switch or _off)()
                values = results[label]
                values["sync"].append(_sync_run(base, f"burst-{n}", 1) / n * 1e6)
                values["async"].append(_async_run(base, f"burst-{n}", 1) / n * 1e6)
                values["sync call"].append(_sync_run(base, "burst-10", calls) / calls * 1e6)
                values["async call"].append(_async_run(base, "burst-10", calls) / calls * 1e6)
    finally:
        _off()
    return results


def rows(results: dict[str, dict[str, list[float]]]) -> list[list[str]]:
    """Each configuration's medians; per chunk its ratio to off, per call its µs over off,
    both taken within each round."""
    off = results["off"]
    out = []
    for label, _ in CONFIGS:
        row = [label]
        for mode in ("sync", "async"):
            values = results[label][mode]
            ratio = statistics.median(v / o for v, o in zip(values, off[mode], strict=True))
            row += [f"{statistics.median(values):.2f}", f"{ratio:.2f}"]
        for mode in ("sync call", "async call"):
            values = results[label][mode]
            over = statistics.median(v - o for v, o in zip(values, off[mode], strict=True))
            row.append(f"{over:+.0f}")
        out.append(row)
    return out
