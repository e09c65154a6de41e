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
from pathlib import Path

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
    texts, close = client.make(base)
    errors = 0

    async def one() -> None:
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

    async def run() -> tuple[float, float]:
        try:
            async for _ in texts("burst-10"):  # warm up imports and caches
                pass
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one() for _ in range(streams)))
            return time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await close()

    wall, cpu = asyncio.run(run())
    rss_mb = peak_mb()
    print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": rss_mb, "errors": errors}))


if __name__ == "__main__":
    main()
