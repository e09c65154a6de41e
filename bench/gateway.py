"""The gateway under load, side by side: one load through ``spout serve``, litellm's proxy and
a raw byte relay, next to the same streams read from the upstream directly.

The upstream is the load server (bench/server.py: paced OpenAI chunks, one process); the
client is this process (aiohttp, reading SSE lines; the same code reads every path). Each
gateway runs in its own processes, with 1 and with 2 workers (``spout serve --workers``,
litellm's ``--num_workers``, bench/raw_relay.py's ``--workers``), at 100, 500 and 2,000
concurrent streams. Reported for each: errors, the gateway's CPU per token delivered (every
process of it, from /proc), the time to first token it adds (median and p95, against the
direct read at the same concurrency), tokens/s delivered and peak RSS (summed over its
processes). litellm's proxy runs from bench/.venv (``litellm[proxy]``), with the config below:
no database, no callbacks, no retries, no telemetry.

Usage: ``python bench/gateway.py [--streams 100,500,2000] [--workers 1,2]
[--gateways "spout serve,litellm proxy,raw relay,byte pipe"] [--chunks 100] [--pace 0.01] [--write]``
(``--write`` puts the table in docs/benchmarks.md, between the gateway markers; ``make bench``
runs it so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import re
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- gateway:begin -->", "<!-- gateway:end -->"
GATEWAYS = ("spout serve", "litellm proxy", "raw relay", "byte pipe")
#: The floors: no gateway is compared with litellm through them.
FLOORS = ("raw relay", "byte pipe")
# The key the client sends on every path: litellm's proxy refuses to start without a strong
# master key; spout serve (no --keys, on loopback), the relay and the load server ignore it.
KEY = "sk-bench-" + secrets.token_hex(32)


@dataclass
class Run:
    """One load through one path: what the client saw, and what the gateway spent."""

    name: str
    workers: int = 0
    streams: int = 0
    wall: float = 0.0
    errors: int = 0
    first: list[float] = field(default_factory=list)
    deltas: int = 0
    cpu: float | None = None
    peak_mb: float | None = None
    error: str | None = None
    cut: int = 0  # streams still open at the case's time limit
    unstarted: int = 0  # of those, the ones that had no token yet
    skipped: str | None = None  # why this case was not run ("n/a" in the table)


def _stat(pid: int) -> list[str]:
    # The command name, in parentheses, may hold spaces: split after its closing one.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _tree(root: int) -> list[int]:
    """``root`` and every live process descended from it (uvicorn's and litellm's workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue  # exited while we looked
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """Each process's CPU time: its own and that of its children it has reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        # utime + stime + cutime + cstime: a worker that exits and is reaped mid-run moves its
        # time into its parent's cutime, so the sum over the tree still counts it once.
        seconds[pid] = sum(int(value) for value in fields[11:15]) / ticks
    return seconds


def _peak_mb(pids: Sequence[int]) -> float:
    """The sum over ``pids`` of each one's peak resident set (VmHWM)."""
    total = 0.0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


async def _streams(run: Run, url: str, chunks: int, limit: float) -> Run:
    """``run.streams`` concurrent streams from ``url``, each read to its end and checked.

    Streams still open after ``limit`` seconds are cut (counted in ``run.cut``), so that a
    gateway slower than the load ends its case in bounded time; what it delivered until then
    is what its figures are over. A stream cut before its first token counts ``limit`` as its
    time to first token (a lower bound, shown with ≥).
    """
    body = orjson.dumps(
        {
            "model": "bench",
            "stream": True,
            "messages": [{"role": "user", "content": f"paced-{chunks}"}],
        }
    )
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=0)
    client_timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def one(index: int) -> None:
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
                                    started[index] = True
                                deltas += 1
                                run.deltas += 1
                if deltas != chunks:
                    raise RuntimeError(f"{deltas} text deltas of {chunks}")
            except Exception as exc:  # counted: the table reports errors
                run.errors += 1
                run.error = run.error or repr(exc)[:300]

        started = [False] * run.streams
        start = time.perf_counter()
        tasks = [asyncio.create_task(one(index)) for index in range(run.streams)]
        _, pending = await asyncio.wait(tasks, timeout=limit)
        run.wall = time.perf_counter() - start
        run.cut = len(pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        run.unstarted = sum(1 for i, task in enumerate(tasks) if task in pending and not started[i])
        run.first += [limit] * run.unstarted
    return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    """A gateway's processes, started; its log is a file, so a chatty one never blocks."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _launch(name: str, args: Sequence[str], url: str, ready: str, workdir: Path) -> Gateway:
    """Start ``args`` and wait until ``ready`` (a GET) answers, whatever its status."""
    log = workdir / f"{name.replace(' ', '-')}.log"
    env = {
        **os.environ,
        "BENCH_UPSTREAM_KEY": "bench",
        # litellm: its bundled price list, not one fetched at start, and no telemetry.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }
    env.pop("DATABASE_URL", None)  # litellm's proxy runs without a database
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    gateway = Gateway(name, process, url, log)
    deadline = time.monotonic() + 180  # litellm's proxy takes a while to import
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{gateway.tail()}")
        try:
            with urllib.request.urlopen(url + ready, timeout=5):
                return gateway
        except urllib.error.HTTPError:
            return gateway  # it answered
        except OSError:
            time.sleep(0.5)
    gateway.stop()
    raise RuntimeError(f"{name} did not start in 180 s:\n{gateway.tail()}")


def spout_workers() -> bool:
    """Whether this spout's ``spout serve`` takes ``--workers``."""
    shown = subprocess.run(
        [sys.executable, "-m", "spout", "serve", "--help"], capture_output=True, text=True
    )
    return "--workers" in shown.stdout


def start_gateway(
    name: str, workers: int, upstream: str, workdir: Path, has_workers: bool = True
) -> Gateway:
    """Start ``name`` (one of GATEWAYS) with ``workers`` processes in front of ``upstream``."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    if name == "spout serve":
        args = [
            sys.executable, "-m", "spout", "serve",
            "-m", "openai:bench",
            "--base-url", upstream + "/v1",
            "--api-key-env", "BENCH_UPSTREAM_KEY",
            "--port", str(port),
            "--resume-window", "0",
            "--max-connections", "0",  # the 2,000-stream case is over the default 1,000
        ]  # fmt: skip
        if has_workers:  # always said: its default is one worker per core
            args += ["--workers", str(workers)]
        return _launch(name, args, url, "/v1/models", workdir)
    if name == "litellm proxy":
        config = workdir / "litellm.yaml"
        config.write_text(LITELLM_CONFIG.format(upstream=upstream, key=KEY), encoding="utf-8")
        litellm = Path(sys.executable).with_name("litellm")
        args = [
            str(litellm), "--config", str(config),
            "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", str(workers),
        ]  # fmt: skip
        return _launch(name, args, url, "/health/liveliness", workdir)
    if name in FLOORS:  # bench/raw_relay.py, bench/byte_pipe.py: the same arguments
        script = HERE / f"{name.replace(' ', '_')}.py"
        args = [
            sys.executable, str(script),
            "--upstream", upstream, "--port", str(port), "--workers", str(workers),
        ]  # fmt: skip
        return _launch(name, args, url, "/", workdir)
    raise ValueError(f"unknown gateway {name!r}; one of {', '.join(GATEWAYS)}")


# The same upstream as spout's: an OpenAI-compatible model at the load server, no database,
# no callbacks, no retries (a retry would hide an error), nothing fetched at start.
LITELLM_CONFIG = """\
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: {upstream}/v1
      api_key: bench
litellm_settings:
  telemetry: false
  num_retries: 0
  request_timeout: 600
  callbacks: []
  success_callback: []
  failure_callback: []
general_settings:
  master_key: {key}
  disable_spend_logs: true
  disable_reset_budget: true
"""


def start_upstream(pace: float) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "--port", "0", "--pace", str(pace)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, f"http://127.0.0.1:{server.stdout.readline().strip()}"


def _load(run: Run, url: str, chunks: int, limit: float) -> Run:
    return asyncio.run(_streams(run, url + "/v1/chat/completions", chunks, limit))


def measure(args: argparse.Namespace, workdir: Path) -> tuple[list[Run], list[Run]]:
    """The direct runs (one per stream count) and every gateway's runs."""
    upstream, upstream_url = start_upstream(args.pace)
    has_workers = spout_workers()
    direct: list[Run] = []
    runs: list[Run] = []
    try:
        _load(Run("warm", streams=4), upstream_url, 5, args.limit)
        for streams in args.streams:
            run = _load(
                Run("upstream, read directly", streams=streams),
                upstream_url,
                args.chunks,
                args.limit,
            )
            direct.append(run)
            print(_row(run, None), flush=True)
        for workers in args.workers:
            for name in args.gateways:
                if name == "spout serve" and workers != 1 and not has_workers:
                    for streams in args.streams:
                        runs.append(Run(name, workers, streams, skipped="no --workers"))
                    continue
                try:
                    gateway = start_gateway(name, workers, upstream_url, workdir, has_workers)
                except RuntimeError as exc:
                    print(exc, file=sys.stderr)
                    for streams in args.streams:
                        runs.append(Run(name, workers, streams, skipped="did not start"))
                    continue
                try:
                    # Warm every worker up: connections, imports, each one's first request
                    # (litellm's imports much on its first requests).
                    for _ in range(2):
                        _load(Run("warm", streams=20 * workers), gateway.url, 5, args.limit)
                    time.sleep(1)
                    for streams in args.streams:
                        run = Run(name, workers, streams)
                        before = _cpu_seconds(_tree(gateway.process.pid))
                        _load(run, gateway.url, args.chunks, args.limit)
                        pids = _tree(gateway.process.pid)
                        after = _cpu_seconds(pids)
                        run.cpu = sum(after.values()) - sum(before.get(p, 0.0) for p in after)
                        run.peak_mb = _peak_mb(pids)
                        runs.append(run)
                        print(_row(run, direct[args.streams.index(streams)]), flush=True)
                finally:
                    gateway.stop()
        return direct, runs
    finally:
        upstream.terminate()
        upstream.wait(10)
        if upstream.stdout is not None:
            upstream.stdout.close()


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def _per_token(run: Run) -> float | None:
    return run.cpu / run.deltas * 1e6 if run.cpu is not None and run.deltas else None


def _cpu_cell(run: Run, per_token: float | None) -> str:
    if per_token is not None:
        return f"{per_token:.1f}"
    if run.cpu is not None:  # no token came: what it spent is still worth saying
        return f"none delivered ({run.cpu:.1f} s CPU)"
    return "-"


def _row(run: Run, direct: Run | None) -> str:
    workers = str(run.workers) if run.workers else "-"
    if run.skipped:
        return f"| {run.name} | {workers} | {run.streams:,} | n/a ({run.skipped}) |" + " |" * 6
    cpu = _per_token(run)
    first = run.first or [float("nan")]
    if direct is None or not direct.first:
        median, p95 = statistics.median(first), _p95(first)
    else:
        median = statistics.median(first) - statistics.median(direct.first)
        p95 = _p95(first) - _p95(direct.first)
    bound = "≥ " if run.unstarted else ""  # some streams had no token at the time limit
    return (
        f"| {run.name} | {workers} | {run.streams:,} | {run.errors} | {run.cut:,} "
        f"| {_cpu_cell(run, cpu)} "
        f"| {bound}{median * 1000:.0f} | {bound}{p95 * 1000:.0f} "
        f"| {run.deltas / run.wall if run.wall else 0:,.0f} "
        f"| {'-' if run.peak_mb is None else f'{run.peak_mb:.0f}'} |"
    )


def machine() -> str:
    """The CPU model and cores, the load when the run began, and the peers' versions."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = []
    for package in ("spout", "litellm", "aiohttp", "uvicorn"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{package} {importlib.metadata.version(package)}")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f"{when} on {model}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{', '.join(versions)}; load average {load} (1, 5, 15 min) at the start"
    )


def table(direct: list[Run], runs: list[Run], args: argparse.Namespace, host: str) -> str:
    streams = args.streams
    lines = [
        f"Each stream: {args.chunks} chunks, one every {args.pace * 1000:g} ms; the same load "
        f"server upstream, the same client (aiohttp, one process), each gateway in its own "
        f"processes. Run {host}.",
        "",
        "CPU per token: the gateway's CPU time (every process it runs, summed, from /proc) over "
        "the text deltas the client received. Added time to first token: the gateway's median "
        "(p95) minus the direct read's at the same concurrency; the direct rows give the "
        "absolute times. Peak RSS: the sum over the gateway's processes. A case ends after "
        f"{args.limit:g} s: streams still open then are cut, and the figures are over what was "
        "delivered until then (≥: some streams had no token yet, and count the limit as "
        "their time to first token).",
        "",
        "| path | workers | streams | errors | cut at limit | CPU µs/token "
        "| first token added, median ms | p95 ms | tokens/s delivered | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [_row(run, None) for run in direct]
    for run in runs:
        lines.append(_row(run, direct[streams.index(run.streams)]))
    lines += ["", "litellm's proxy CPU per token over spout serve's, from this run:", ""]
    lines.append("| workers | " + " | ".join(f"{n:,} streams" for n in streams) + " |")
    lines.append("| ---: |" + " ---: |" * len(streams))
    for workers in args.workers:
        cells = []
        for n in streams:
            found = {
                run.name: _per_token(run)
                for run in runs
                if run.workers == workers and run.streams == n
            }
            spout, litellm = found.get("spout serve"), found.get("litellm proxy")
            cut = any(
                run.cut
                for run in runs
                if run.workers == workers and run.streams == n and run.name not in FLOORS
            )
            mark = "*" if cut else ""
            cells.append(f"{litellm / spout:.0f}×{mark}" if spout and litellm else "n/a")
        lines.append(f"| {workers} | " + " | ".join(cells) + " |")
    if any("*" in line for line in lines[-len(args.workers) :]):
        lines += [
            "",
            "\\* streams were cut at the time limit: the ratio is over the tokens delivered "
            "until then, most of them spent queued, so it says less than the others.",
        ]
    for run in [*direct, *runs]:
        if run.error:
            lines.append(
                f"\nfirst error ({run.name}, {run.workers or '-'} workers, {run.streams} "
                f"streams): {run.error}"
            )
    return "\n".join(lines)


def write(text: str) -> None:
    command = "python bench/gateway.py --write"
    section = (
        f"{BEGIN}\n## The gateway under load\n\n`{command}` (run by `make bench`)\n\n{text}\n{END}"
    )
    doc = DOCS.read_text(encoding="utf-8")
    if BEGIN in doc:
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.write_text(doc, encoding="utf-8")


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"every number must be at least 1, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    unknown = [name for name in names if name not in GATEWAYS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown gateway {', '.join(map(repr, unknown))}; choose from {', '.join(GATEWAYS)}"
        )
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=_counts, default=[100, 500, 2000])
    parser.add_argument("--workers", type=_counts, default=[1, 2])
    parser.add_argument("--gateways", type=_names, default=list(GATEWAYS))
    parser.add_argument(
        "--chunks",
        type=int,
        default=100,
        help="text chunks per stream (default 100: a second of tokens at the default pace)",
    )
    parser.add_argument("--pace", type=float, default=0.01, help="seconds between chunks")
    parser.add_argument(
        "--limit",
        type=float,
        default=30,
        help="seconds one case may take; streams still open then are cut (default 30)",
    )
    parser.add_argument(
        "--write", action="store_true", help="write the table to docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    # 2,000 streams hold 4,000+ sockets in the client and in each gateway; the gateways
    # inherit this limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(args.streams) * 3 + 1024
    if soft != resource.RLIM_INFINITY and soft < want:
        top = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, top), hard))
    host = machine()
    print(host, flush=True)
    with tempfile.TemporaryDirectory(prefix="spout-bench-gateway-") as workdir:
        direct, runs = measure(args, Path(workdir))
    text = table(direct, runs, args, host)
    print(text)
    if args.write:
        write(text)
    return 1 if any(run.errors for run in [*direct, *runs]) else 0


if __name__ == "__main__":
    sys.exit(main())
