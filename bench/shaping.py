"""What shaping and callbacks cost spout per chunk: CPU µs per provider chunk, burst mode.

The same stream as the "CPU per chunk, openai format, burst" table, read by spout plain and
with one option at a time: word smoothing, buffering, a callback, the live stats read after
every chunk, and debounce (which in a sync stream reads on a thread of its own: its CPU is
counted, ``time.process_time`` being the whole process's). Run alone with
``python bench/run.py --only shaping`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Any

from clients import MODEL

#: (label, options passed to the call, whether the loop reads ``stream.stats`` every chunk)
CONFIGS: list[tuple[str, dict[str, Any], bool]] = [
    ("plain", {}, False),
    ('smooth="word"', {"smooth": "word"}, False),
    ("buffer_size=10", {"buffer_size": 10}, False),
    ("min_chunk_size=20", {"min_chunk_size": 20}, False),
    ("on_chunk callback", {"on_chunk": lambda piece: None}, False),
    ("stats read every chunk", {}, True),
    ("debounce=0.05", {"debounce": 0.05}, False),
]


def _sync_run(base: str, n: int, options: dict[str, Any], read_stats: bool) -> float:
    import spout

    llm = spout.create_llm("openai", model=MODEL, base_url=f"{base}/v1", api_key="sk-bench")
    try:
        for _ in llm.generate_stream("burst-10", **options):  # warm: connection, caches
            pass
        gc.collect()
        start = time.process_time()
        stream = llm.generate_stream(f"burst-{n}", **options)
        for _ in stream:
            if read_stats:
                stream.stats  # noqa: B018 - what a live display does
        if stream.response.text.count("tok") != n:
            raise RuntimeError(f"spout ({options}) lost text")
        return time.process_time() - start
    finally:
        llm.close()


def _async_run(base: str, n: int, options: dict[str, Any], read_stats: bool) -> float:
    import spout

    async def main() -> float:
        llm = spout.create_llm("openai", model=MODEL, base_url=f"{base}/v1", api_key="sk-bench")
        try:
            async for _ in llm.agenerate_stream("burst-10", **options):
                pass
            gc.collect()
            start = time.process_time()
            stream = llm.agenerate_stream(f"burst-{n}", **options)
            async for _ in stream:
                if read_stats:
                    stream.stats  # noqa: B018
            response = await stream.get_response()
            if response.text.count("tok") != n:
                raise RuntimeError(f"spout ({options}) lost text")
            return time.process_time() - start
        finally:
            await llm.aclose()

    return asyncio.run(main())


def measure(base: str, n: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """CPU µs per provider chunk, by configuration and by ``"sync"`` / ``"async"``, one
    value a round; within a round the configurations run interleaved."""
    results: dict[str, dict[str, list[float]]] = {
        label: {"sync": [], "async": []} for label, _, _ in CONFIGS
    }
    for _ in range(rounds):
        for label, options, read_stats in CONFIGS:
            results[label]["sync"].append(_sync_run(base, n, options, read_stats) / n * 1e6)
            results[label]["async"].append(_async_run(base, n, options, read_stats) / n * 1e6)
    return results


def rows(results: dict[str, dict[str, list[float]]]) -> list[list[str]]:
    """The table's rows: each configuration's medians, and its ratio to plain in each round."""
    plain = results["plain"]
    out = []
    for label, _, _ in CONFIGS:
        row = [label]
        for mode in ("sync", "async"):
            values = results[label][mode]
            ratio = statistics.median(v / p for v, p in zip(values, plain[mode], strict=True))
            row += [f"{statistics.median(values):.1f}", f"{ratio:.2f}"]
        out.append(row)
    return out
