"""Many concurrent async streams through one client, in a fresh process; prints JSON.

Usage: python bench/concurrency.py CLIENT_NAME BASE_URL STREAMS CHUNKS [PACE]

Without PACE every stream's events come in one burst; with it, one event every PACE seconds.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients import find


def peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    # ru_maxrss survives fork and exec on Linux: a child of a large parent would report the
    # parent's peak. Reset this process's peak to its own current size first.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    name, base, streams, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    spec = f"paced-{chunks}:{sys.argv[5]}" if len(sys.argv) > 5 else f"burst-{chunks}"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    client = find(name, "openai", True)
    errors = 0

    async def one(texts: Any) -> None:
        nonlocal errors
        try:
            pieces = 0
            async for _ in texts(spec):
                pieces += 1
            if pieces != chunks:
                errors += 1
        except Exception as exc:  # counted, not raised: the table reports errors
            errors += 1
            if errors == 1:
                print(f"first error: {exc!r}", file=sys.stderr)

    def most_open() -> int:
        """The most connections the load server had open at once since it was last asked."""
        with urllib.request.urlopen(f"{base}/_peak", timeout=10) as answer:
            return int(json.loads(answer.read())["peak"])

    async def run() -> tuple[float, float, int]:
        # Warm up imports and caches with a client of its own, closed before the measured one
        # is made. Reusing it would leave one idle connection in the pool, and httpcore then
        # hands every waiting request that one connection, all but one fail and retry: raw
        # httpx ran about 13 streams at a time instead of 1,000.
        warm_texts, warm_close = client.make(base)
        try:
            async for _ in warm_texts("burst-10"):
                pass
        finally:
            await warm_close()
        await asyncio.sleep(0.2)  # the server sees the warm-up connection close
        texts, close = client.make(base)
        try:
            most_open()  # starts the count
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one(texts) for _ in range(streams)))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return wall, cpu, most_open()
        finally:
            await close()

    wall, cpu, open_at_once = asyncio.run(run())
    rss_mb = peak_mb()
    print(
        json.dumps(
            {"wall": wall, "cpu": cpu, "rss_mb": rss_mb, "errors": errors, "open": open_at_once}
        )
    )


if __name__ == "__main__":
    main()
