"""spout against the raw HTTP stacks and its peers, side by side in one run.

Usage (from the repository root): ``make bench`` installs the peers into ``bench/.venv`` and
runs ``bench/.venv/bin/python bench/run.py --write``, which prints every table and writes
``docs/benchmarks.md`` and ``docs/benchmarks.png``. ``--quick`` is a seconds-long smoke run
(CI runs it so the harness never rots); it asserts nothing about speed.

Every figure is the median over ``--rounds`` rounds; within a round the clients run one after
another, interleaved, and each library's ratio is taken to the raw client of the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from clients import CLIENTS, Client, find  # noqa: E402


@dataclass
class Settings:
    rounds: int = 5
    burst: int = 20_000
    burst_slow: int = 2_000  # for clients that need ~0.5 ms a chunk (litellm)
    paced: int = 1_000
    pace: float = 0.0005
    ttft_runs: int = 30
    streams: int = 1_000
    stream_chunks: int = 200
    waiting_chunks: int = 40  # streams that wait on a model: one chunk every waiting_pace s
    waiting_pace: float = 0.05
    memory_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    import_runs: int = 10
    local_tokens: int = 200
    quick: bool = False


QUICK = Settings(
    rounds=1,
    burst=500,
    burst_slow=100,
    paced=50,
    ttft_runs=3,
    streams=20,
    stream_chunks=20,
    waiting_chunks=5,
    waiting_pace=0.01,
    memory_sizes=(1_000, 10_000),
    import_runs=2,
    local_tokens=16,
    quick=True,
)

SLOW = {"litellm"}
FORMATS = ("openai", "anthropic")


# -- the load server -------------------------------------------------------------------------


class LoadServer:
    def __init__(self, pace: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "server.py"), "--port", "0", "--pace", str(pace)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{self.process.stdout.readline().strip()}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# -- one measurement -------------------------------------------------------------------------


def _cpu_run(client: Client, base: str, model: str) -> tuple[float, int]:
    """CPU seconds this process spent streaming one response, and the pieces it got."""
    texts, close = client.make(base)
    try:
        if not client.is_async:
            sum(1 for _ in texts("burst-10"))  # warm: connection, imports, caches
            gc.collect()
            start = time.process_time()
            pieces = sum(1 for _ in texts(model))
            return time.process_time() - start, pieces

        async def main() -> tuple[float, int]:
            try:
                async for _ in texts("burst-10"):
                    pass
                gc.collect()
                start = time.process_time()
                pieces = 0
                async for _ in texts(model):
                    pieces += 1
                return time.process_time() - start, pieces
            finally:
                await close()

        return asyncio.run(main())
    finally:
        if not client.is_async:
            close()


def _ttft_run(client: Client, base: str, runs: int) -> list[float]:
    """Seconds from the call to the first text piece, ``runs`` times."""
    texts, close = client.make(base)
    if not client.is_async:
        try:
            for _ in texts("burst-10"):  # warm up, read to the end (see below)
                pass
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                iterator = texts("paced-5")
                next(iterator)
                times.append(time.perf_counter() - start)
                # Read the short rest rather than abandon it: an SDK stream collected while
                # its pool is busy can deadlock (seen with openai's sync client).
                for _ in iterator:
                    pass
            return times
        finally:
            close()

    async def main() -> list[float]:
        try:
            times = []
            for i in range(runs + 1):
                start = time.perf_counter()
                iterator = texts("paced-5")
                await iterator.__anext__()
                elapsed = time.perf_counter() - start
                async for _ in iterator:
                    pass
                if i:
                    times.append(elapsed)
            return times
        finally:
            await close()

    return asyncio.run(main())


# -- tables ----------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"


def ratio(values: list[float], baseline: list[float]) -> float:
    return statistics.median(v / b for v, b in zip(values, baseline, strict=True))


def cpu_section(
    server: LoadServer, s: Settings, fmt: str, mode: str
) -> tuple[Table, dict[str, float]]:
    """CPU µs per chunk for every client of one format, burst or one event per read."""
    clients = [c for c in CLIENTS if c.fmt == fmt and c.available]
    results: dict[str, list[float]] = {c.label: [] for c in clients}
    for _ in range(s.rounds):
        for client in clients:
            n = (s.burst_slow if client.name in SLOW else s.burst) if mode == "burst" else s.paced
            cpu, pieces = _cpu_run(client, server.url, f"{mode}-{n}")
            if pieces != n:
                raise RuntimeError(f"{client.label} got {pieces} text pieces of {n}")
            results[client.label].append(cpu / n * 1e6)
    # Burst is measured against raw httpx (sync and async); one event per read against the
    # cheapest raw client of its kind (sync: httpx, async: aiohttp), as the targets say.
    baselines = {
        False: results["httpx (raw) sync"],
        True: results["httpx (raw) async" if mode == "burst" else "aiohttp (raw) async"],
    }
    label = "burst (64 KiB writes)" if mode == "burst" else "one event per read"
    table = Table(
        f"CPU per chunk, {fmt} format, {label}",
        ["client", "µs per chunk", "× raw"],
        note=(
            f"{s.burst if mode == 'burst' else s.paced:,} chunks a run"
            + (f" ({s.burst_slow:,} for litellm)" if mode == "burst" else "")
            + f"; median of {s.rounds} rounds; × raw is to "
            + (
                "raw httpx (sync) and raw httpx async"
                if mode == "burst"
                else "raw httpx (sync) and raw aiohttp (async)"
            )
            + ", measured in the same round."
        ),
    )
    medians: dict[str, float] = {}
    for client in clients:
        values = results[client.label]
        medians[client.label] = statistics.median(values)
        table.rows.append(
            [
                client.label,
                f"{statistics.median(values):.1f}",
                f"{ratio(values, baselines[client.is_async]):.2f}",
            ]
        )
    return table, medians


def shaping_section(server: LoadServer, s: Settings) -> Table:
    """spout's CPU per chunk with each shaping option or callback on (see bench/shaping.py)."""
    from shaping import measure, rows

    table = Table(
        "CPU per chunk with shaping and callbacks (spout, openai format, burst)",
        ["options", "sync µs per chunk", "× plain", "async µs per chunk", "× plain"],
        note=(
            f"{s.burst:,} provider chunks a run; median of {s.rounds} rounds; µs per chunk the "
            "provider sent; × plain is to spout with no option, measured in the same round. "
            "Run alone: `python bench/run.py --only shaping`."
        ),
    )
    table.rows = rows(measure(server.url, s.burst, s.rounds))
    return table


def otel_section(server: LoadServer, s: Settings) -> Table:
    """What spout.instrument() costs per chunk and per call (see bench/otel.py)."""
    from otel import measure, rows

    calls = 20 if s.quick else 300
    table = Table(
        "CPU with OpenTelemetry (spout.instrument(), openai format, burst)",
        [
            "OpenTelemetry",
            "sync µs per chunk",
            "× off",
            "async µs per chunk",
            "× off",
            "sync µs per call over off",
            "async µs per call over off",
        ],
        note=(
            f"Per chunk: one stream of {s.burst:,} provider chunks; per call: {calls} streams of "
            f"10 chunks, the µs each call adds to spout with OpenTelemetry off. Median of "
            f"{s.rounds} rounds, the configurations interleaved in each. "
            "Run alone: `python bench/run.py --only otel`."
        ),
    )
    table.rows = rows(measure(server.url, s.burst, calls, s.rounds))
    return table


def ttft_section(server: LoadServer, s: Settings) -> Table:
    clients = [
        c for c in CLIENTS if c.fmt == "openai" and c.available and c.name != "http.client (raw)"
    ]
    per_round: dict[str, list[float]] = {c.label: [] for c in clients}
    for _ in range(s.rounds):
        for client in clients:
            per_round[client.label].append(
                statistics.median(_ttft_run(client, server.url, s.ttft_runs))
            )
    table = Table(
        "Time to first text delta (OpenAI format)",
        ["client", "ms", "ms over raw"],
        note=f"From the call to the first text piece on loopback; median of {s.ttft_runs} calls a round, {s.rounds} rounds.",
    )
    for client in clients:
        base = per_round["httpx (raw) async" if client.is_async else "httpx (raw) sync"]
        values = per_round[client.label]
        over = statistics.median(v - b for v, b in zip(values, base, strict=True))
        table.rows.append(
            [client.label, f"{statistics.median(values) * 1e3:.3f}", f"{over * 1e3:+.3f}"]
        )
    return table


def concurrency_section(
    server: LoadServer, s: Settings, pace: float | None = None
) -> tuple[Table, dict[str, dict[str, float]]]:
    """Many concurrent async streams, each client in a fresh process.

    Without ``pace`` every stream's events arrive in one burst, so what a client holds at its
    peak depends on how fast it starts streams against how fast it drains them; with it, every
    stream waits on the server between events (as on a model) and all of them stay open at
    once, which shows what each open stream costs.
    """
    names = ["aiohttp (raw)", "httpx (raw)", "spout", "openai", "litellm"]
    clients = [find(n, "openai", True) for n in names]
    clients = [c for c in clients if c.available]
    chunks = s.stream_chunks if pace is None else s.waiting_chunks
    runs: dict[str, list[dict[str, float]]] = {c.label: [] for c in clients}
    rounds = 1 if s.quick else max(1, s.rounds // 2)
    for _ in range(rounds):
        for client in clients:
            streams = s.streams if client.name not in SLOW else max(1, s.streams // 10)
            command = [
                sys.executable,
                str(HERE / "concurrency.py"),
                client.name,
                server.url,
                str(streams),
                str(chunks),
            ]
            if pace is not None:
                command.append(str(pace))
            out = subprocess.run(command, capture_output=True, text=True, timeout=900)
            if out.returncode:
                raise RuntimeError(f"{client.label}: {out.stderr[-2000:]}")
            result = json.loads(out.stdout)
            result["streams"] = streams
            runs[client.label].append(result)
    if pace is None:
        title = f"{s.streams:,} concurrent async streams × {chunks} chunks"
        note = (
            "Each client in a fresh process, warmed up with a client of its own; RSS is the "
            "process's peak; 'open at once' is the most connections the load server saw open "
            "at the same time. litellm runs a tenth of the streams."
        )
    else:
        title = (
            f"{s.streams:,} concurrent async streams that wait: {chunks} chunks, "
            f"one every {pace * 1e3:.0f} ms"
        )
        note = (
            "As above, but the server sends each stream's events one at a time, "
            f"{pace * 1e3:.0f} ms apart, so every stream stays open for at least "
            f"{chunks * pace:g} s and all are open at once."
        )
    table = Table(
        title,
        [
            "client",
            "streams",
            "open at once",
            "wall s",
            "CPU s",
            "peak RSS MB",
            "errors",
            "wall × fastest raw",
            "RSS × raw httpx",
        ],
        note=note,
    )
    medians = {
        label: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for label, results in runs.items()
    }
    raw_wall = min(
        medians[f"{n} async"]["wall"]
        for n in ("aiohttp (raw)", "httpx (raw)")
        if f"{n} async" in medians
    )
    raw_rss = medians["httpx (raw) async"]["rss_mb"]
    for label, m in medians.items():
        table.rows.append(
            [
                label,
                f"{m['streams']:.0f}",
                f"{m['open']:.0f}",
                f"{m['wall']:.2f}",
                f"{m['cpu']:.2f}",
                f"{m['rss_mb']:.0f}",
                f"{m['errors']:.0f}",
                f"{m['wall'] / raw_wall:.2f}",
                f"{m['rss_mb'] / raw_rss:.2f}",
            ]
        )
    return table, medians


def import_section(s: Settings) -> Table:
    modules = ["httpx", "spout", "aiohttp", "openai", "anthropic", "litellm"]
    modules = [m for m in modules if _installed(m)]
    times: dict[str, list[float]] = {m: [] for m in ["pass", *modules]}
    for _ in range(s.import_runs):
        for module in times:
            code = "pass" if module == "pass" else f"import {module}"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[module].append(time.perf_counter() - start)
    base = statistics.median(times["pass"])
    table = Table(
        "Cold import",
        ["module", "python -c 'import …' ms", "import alone ms", "× httpx"],
        note=f"Wall time of a fresh interpreter, median of {s.import_runs}; 'import alone' subtracts `python -c pass` ({base * 1e3:.0f} ms).",
    )
    httpx_wall = statistics.median(times["httpx"])
    for module in modules:
        wall = statistics.median(times[module])
        table.rows.append(
            [module, f"{wall * 1e3:.0f}", f"{(wall - base) * 1e3:.0f}", f"{wall / httpx_wall:.2f}"]
        )
    return table


def memory_section(server: LoadServer, s: Settings) -> Table:
    table = Table(
        "Memory of one long stream and its Response (spout, sync)",
        [
            "chunks",
            "peak RSS growth MB",
            "bytes per chunk",
            "text MB",
            "accumulate s",
            "× time of previous",
        ],
        note="Peak RSS growth of a fresh process while streaming, over its RSS after importing; 'accumulate' folds the same number of events with the Accumulator alone.",
    )
    previous: float | None = None
    for n in s.memory_sizes:
        out = subprocess.run(
            [sys.executable, str(HERE / "memory.py"), server.url, str(n)],
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
        m = json.loads(out.stdout)
        table.rows.append(
            [
                f"{n:,}",
                f"{m['growth_mb']:.1f}",
                f"{m['growth_mb'] * 2**20 / n:.0f}",
                f"{m['text_mb']:.1f}",
                f"{m['accumulate_s']:.3f}",
                "" if previous is None else f"{m['accumulate_s'] / previous:.1f}",
            ]
        )
        previous = m["accumulate_s"]
    return table


def local_section(s: Settings) -> Table:
    out = subprocess.run(
        [sys.executable, str(HERE / "local_model.py"), str(s.rounds), str(s.local_tokens)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    m = json.loads(out.stdout)
    table = Table(
        "The bundled model in process: tokens/s",
        ["client", "tokens/s", "× llama-cpp-python"],
        note=(
            f"SmolLM2-135M-Instruct Q4_1, same prompt, seed and settings, up to {s.local_tokens} tokens, "
            f"median of {s.rounds} interleaved rounds; both produce the same tokens."
        ),
    )
    table.rows.append(
        ["llama-cpp-python create_chat_completion(stream=True)", f"{m['direct']:.1f}", "1.00"]
    )
    table.rows.append(["spout generate_stream", f"{m['spout']:.1f}", f"{m['ratio']:.2f}"])
    return table


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- report ----------------------------------------------------------------------------------


def plot(
    cpu: dict[str, dict[str, float]], concurrency: dict[str, dict[str, float]], path: Path
) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    sections = list(cpu)
    panels = len(sections) + 2
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.5))
    plain = FuncFormatter(lambda value, _: f"{value:g}")

    def bars(ax: Any, values: dict[str, float], title: str, xlabel: str, log: bool) -> None:
        labels = list(values)
        colors = ["#d62728" if "spout" in label else "#7f7f7f" for label in labels]
        ax.barh(labels, [values[label] for label in labels], color=colors)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.invert_yaxis()

    for ax, section in zip(axes, sections, strict=False):
        bars(ax, cpu[section], section, "CPU µs per chunk (log)", log=True)
    walls = {label: m["wall"] for label, m in concurrency.items()}
    rss = {label: m["rss_mb"] for label, m in concurrency.items()}
    bars(axes[-2], walls, "1,000 concurrent streams: wall s (log)", "seconds (log)", log=True)
    bars(axes[-1], rss, "1,000 concurrent streams: peak RSS", "MB", log=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--rounds", type=int, help="rounds per figure")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md and .png")
    parser.add_argument(
        "--only",
        help="comma-separated sections: cpu,shaping,otel,ttft,concurrency,import,memory,local",
    )
    args = parser.parse_args(argv)
    s = QUICK if args.quick else Settings()
    if args.rounds:
        s.rounds = args.rounds
    only = (
        set(args.only.split(","))
        if args.only
        else {"cpu", "shaping", "otel", "ttft", "concurrency", "import", "memory", "local"}
    )
    missing = [c.needs for c in CLIENTS if not c.available]
    if missing:
        print(
            f"not installed, left out: {', '.join(sorted(set(missing)))} (make bench installs them)\n"
        )

    compile_spout()
    tables: list[Table] = []
    cpu: dict[str, dict[str, float]] = {}
    concurrency: dict[str, dict[str, float]] = {}
    started = time.perf_counter()

    def show(table: Table) -> None:
        tables.append(table)
        print(table.markdown(), flush=True)
        if not args.quick:  # each section is kept, so one can be run again alone
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"{_slug(table.title)}.md").write_text(table.markdown())

    burst = LoadServer(s.pace)
    try:
        if "cpu" in only:
            for fmt in FORMATS:
                for mode in ("burst", "paced"):
                    table, medians = cpu_section(burst, s, fmt, mode)
                    show(table)
                    cpu[f"{fmt}, {'burst' if mode == 'burst' else 'one event per read'}"] = medians
        if "shaping" in only:
            show(shaping_section(burst, s))
        if "otel" in only:
            show(otel_section(burst, s))
        if "ttft" in only:
            show(ttft_section(burst, s))
        if "concurrency" in only:
            table, concurrency = concurrency_section(burst, s)
            show(table)
            show(concurrency_section(burst, s, s.waiting_pace)[0])
        if "memory" in only:
            show(memory_section(burst, s))
    finally:
        burst.stop()
    if "import" in only:
        show(import_section(s))
    if "local" in only:
        show(local_section(s))
    elapsed = time.perf_counter() - started
    print(f"({elapsed:.0f} s)")

    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        if cpu:
            (RESULTS / "cpu.json").write_text(json.dumps(cpu))
        if concurrency:
            (RESULTS / "concurrency.json").write_text(json.dumps(concurrency))
    if args.write:
        cpu = cpu or _load("cpu.json")
        concurrency = concurrency or _load("concurrency.json")
        png = ROOT / "docs" / "benchmarks.png"
        has_plot = plot(cpu, concurrency, png) if cpu and concurrency else False
        write_report(s, has_plot)
    return 0


def compile_spout() -> None:
    """Write spout's bytecode, as pip does when it installs a wheel.

    An editable install compiles on first import and caches the result, unless bytecode
    writing is off (PYTHONDONTWRITEBYTECODE, set on this machine): then every fresh process
    compiled spout again, which cost ~100 ms of its cold import and ~2 MB of its RSS, while
    the peers, installed from wheels, read cached bytecode.
    """
    spec = importlib.util.find_spec("spout")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(folder, quiet=1)


RESULTS = HERE / "results"
ORDER = ["cpu-per-chunk", "time-to-first", "concurrent", "memory", "cold-import", "the-bundled"]


def _slug(title: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _saved_tables() -> list[str]:
    def rank(path: Path) -> tuple[int, str]:
        key = next((i for i, prefix in enumerate(ORDER) if prefix in path.stem), len(ORDER))
        return key, path.stem

    return [p.read_text() for p in sorted(RESULTS.glob("*.md"), key=rank)]


def write_report(s: Settings, has_plot: bool) -> None:
    versions = []
    for module in (
        "spout",
        "httpx",
        "aiohttp",
        "orjson",
        "openai",
        "anthropic",
        "litellm",
        "llama_cpp",
    ):
        with contextlib.suppress(ImportError, AttributeError):
            versions.append(f"{module} {__import__(module).__version__}")
    header = f"""# Benchmarks

Measured by `make bench` (about 7 minutes with `BENCH_ARGS="--rounds 3"`), which installs the
peers into `bench/.venv` and runs
`bench/.venv/bin/python bench/run.py --write`. The load server (`bench/server.py`) runs in its
own process on loopback and streams pre-rendered events, in 64 KiB writes ("burst") or one
event per write ~{s.pace * 1e3:.1f} ms apart ("one event per read", what a model at ~100
tokens/s looks like to a client). Clients (`bench/clients.py`) all do the same job: get every
text piece; spout also rebuilds the final `Response`. Every figure is a median of interleaved
rounds, with its ratio to the raw client measured in the same round.

Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};
{", ".join(versions)}.

"""
    body = "\n".join(_saved_tables())
    if has_plot:
        body = "![per-chunk CPU and concurrency](benchmarks.png)\n\n" + body
    notes = ROOT / "docs" / "benchmarks-notes.md"
    tail = "\n" + notes.read_text() if notes.exists() else ""
    doc = ROOT / "docs" / "benchmarks.md"
    # Sections written by their own scripts between markers (bench/gateway.py, and
    # bench/llama_build.py, which needs native builds made by hand): keep them.
    old = doc.read_text() if doc.exists() else ""
    for name in ("gateway", "llama-build"):
        begin, end = old.find(f"<!-- {name}:begin -->"), old.find(f"<!-- {name}:end -->")
        if 0 <= begin < end:
            kept = old[begin : end + len(f"<!-- {name}:end -->")]
            tail = tail.rstrip("\n") + "\n\n" + kept + "\n"
    doc.write_text(header + body + tail)


if __name__ == "__main__":
    sys.exit(main())
