"""The gateway under load: many concurrent streams through ``spout serve`` against a loopback
upstream, next to the same streams read from the upstream directly.

Three processes: the load server (bench/server.py, paced OpenAI chunks), ``spout serve`` in
front of it, and this one, the client (aiohttp, reading SSE lines; the same client code
reads both). Reported: errors, wall time, time to first text delta (median and p95, so the
gateway's added time shows), the gateway's CPU per token streamed (its own process's CPU
time, from /proc, divided by the text deltas delivered) and its peak RSS.

Usage: ``python bench/gateway.py [--streams 500] [--chunks 200] [--pace 0.01] [--write]``
(``--write`` puts the table in docs/benchmarks.md, between the gateway markers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- gateway:begin -->", "<!-- gateway:end -->"


@dataclass
class Run:
    name: str
    wall: float = 0.0
    errors: int = 0
    first: list[float] = field(default_factory=list)
    deltas: int = 0
    cpu: float | None = None
    peak_mb: float | None = None
    error: str | None = None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _streams(name: str, url: str, streams: int, chunks: int) -> Run:
    run = Run(name)
    body = orjson.dumps(
        {
            "model": "bench",
            "stream": True,
            "messages": [{"role": "user", "content": f"paced-{chunks}"}],
        }
    )
    headers = {"content-type": "application/json", "authorization": "Bearer bench"}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            sent = time.perf_counter()
            deltas = 0
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
                    async for line in response.content:
                        if not line.startswith(b"data: {"):
                            continue
                        chunk = orjson.loads(line[6:])
                        if "error" in chunk:
                            raise RuntimeError(chunk["error"])
                        for choice in chunk.get("choices") or ():
                            if (choice.get("delta") or {}).get("content"):
                                if deltas == 0:
                                    run.first.append(time.perf_counter() - sent)
                                deltas += 1
                if deltas != chunks:
                    raise RuntimeError(f"{deltas} text deltas of {chunks}")
            except Exception as exc:  # counted: the table reports errors
                run.errors += 1
                run.error = run.error or repr(exc)[:200]
            run.deltas += deltas

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(streams)))
        run.wall = time.perf_counter() - start
    return run


def _start(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def start_upstream(pace: float) -> tuple[subprocess.Popen[str], str]:
    server = _start([sys.executable, str(HERE / "server.py"), "--port", "0", "--pace", str(pace)])
    assert server.stdout is not None
    return server, f"http://127.0.0.1:{server.stdout.readline().strip()}"


def start_gateway(upstream: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "BENCH_UPSTREAM_KEY": "bench"}
    gateway = _start(
        [
            sys.executable, "-m", "spout", "serve",
            "-m", "openai:bench",
            "--base-url", upstream + "/v1",
            "--api-key-env", "BENCH_UPSTREAM_KEY",
            "--port", "0",
            "--resume-window", "0",
        ],
        env,
    )  # fmt: skip
    assert gateway.stderr is not None
    deadline = time.monotonic() + 30
    for line in gateway.stderr:
        found = re.search(r"spout serve: (http://\S+)", line)
        if found:
            return gateway, found.group(1)
        if time.monotonic() > deadline:
            break
    gateway.kill()
    raise RuntimeError("spout serve did not start")


def measure(streams: int, chunks: int, pace: float, sequential: int) -> list[Run]:
    upstream, upstream_url = start_upstream(pace)
    gateway, gateway_url = start_gateway(upstream_url)
    try:
        # Warm both paths up (connections, imports, the gateway's first request).
        asyncio.run(_streams("warm", upstream_url + "/v1/chat/completions", 4, 5))
        asyncio.run(_streams("warm", gateway_url + "/v1/chat/completions", 4, 5))
        direct = asyncio.run(
            _streams(
                "upstream, read directly", upstream_url + "/v1/chat/completions", streams, chunks
            )
        )
        before = _cpu_seconds(gateway.pid)
        through = asyncio.run(
            _streams("through spout serve", gateway_url + "/v1/chat/completions", streams, chunks)
        )
        through.cpu = _cpu_seconds(gateway.pid) - before
        through.peak_mb = _peak_mb(gateway.pid)
        # One stream at a time: the added time to first token without contention.
        alone_direct = Run("one at a time, read directly")
        alone_through = Run("one at a time, through spout serve")
        for _ in range(sequential):
            for run, url in ((alone_direct, upstream_url), (alone_through, gateway_url)):
                one = asyncio.run(_streams(run.name, url + "/v1/chat/completions", 1, chunks))
                run.first += one.first
                run.errors += one.errors
                run.wall += one.wall
                run.deltas += one.deltas
                run.error = run.error or one.error
        return [direct, through, alone_direct, alone_through]
    finally:
        for process in (gateway, upstream):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()


def table(runs: list[Run], streams: int, chunks: int, pace: float) -> str:
    lines = [
        f"Gateway under load: {streams} concurrent streams x {chunks} chunks, one chunk every "
        f"{pace * 1000:g} ms per stream",
        "",
        "| path | errors | wall s | first delta median ms | p95 ms | gateway CPU µs/token "
        "| gateway peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        first = sorted(run.first) or [float("nan")]
        p95 = first[min(len(first) - 1, int(len(first) * 0.95))]
        cpu = f"{run.cpu / run.deltas * 1e6:.0f}" if run.cpu is not None and run.deltas else "-"
        peak = f"{run.peak_mb:.0f}" if run.peak_mb is not None else "-"
        lines.append(
            f"| {run.name} | {run.errors} | {run.wall:.2f} | {statistics.median(first) * 1000:.1f} "
            f"| {p95 * 1000:.1f} | {cpu} | {peak} |"
        )
    lines.append("")
    for label, (direct, through) in (
        (f"{streams} at once", runs[:2]),
        (f"one at a time, {len(runs[3].first)} streams", runs[2:]),
    ):
        if direct.first and through.first:
            added = (statistics.median(through.first) - statistics.median(direct.first)) * 1000
            lines.append(f"Added time to first text delta (median, {label}): {added:.1f} ms")
    for run in runs:
        if run.error:
            lines.append(f"\nfirst error ({run.name}): {run.error}")
    return "\n".join(lines)


def write(text: str) -> None:
    command = "python bench/gateway.py --write"
    section = f"{BEGIN}\n## The gateway under load\n\n`{command}`\n\n{text}\n{END}"
    doc = DOCS.read_text(encoding="utf-8")
    if BEGIN in doc:
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.write_text(doc, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--pace", type=float, default=0.01, help="seconds between chunks")
    parser.add_argument("--sequential", type=int, default=20, help="streams one at a time")
    parser.add_argument(
        "--write", action="store_true", help="write the table to docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    runs = measure(args.streams, args.chunks, args.pace, args.sequential)
    text = table(runs, args.streams, args.chunks, args.pace)
    print(text)
    if args.write:
        write(text)
    return 1 if any(run.errors for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
