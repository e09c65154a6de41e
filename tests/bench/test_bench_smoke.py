"""The benchmark harness runs end to end (a seconds-long smoke run); it asserts no speed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_run_prints_every_table() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for heading in (
        "CPU per chunk, openai format, burst",
        "CPU per chunk, openai format, one event per read",
        "CPU per chunk, anthropic format, burst",
        "CPU per chunk with shaping and callbacks",
        "Time to first text delta",
        "concurrent async streams ×",
        "concurrent async streams that wait",
        "Memory of one long stream",
        "Cold import",
        "tokens/s",
    ):
        assert heading in out, f"missing table: {heading}"
    # spout measured itself in every CPU table, sync and async, and its figures are numbers.
    spout_rows = [line for line in out.splitlines() if line.startswith("| spout ")]
    assert len(spout_rows) >= 8
    for row in spout_rows:
        float(row.split("|")[2])
    # Every shaping configuration was measured, sync and async.
    for label in ("plain", 'smooth="word"', "buffer_size=10", "min_chunk_size=20",
                  "on_chunk callback", "stats read every chunk", "debounce=0.05"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
        float(row.split("|")[2]), float(row.split("|")[4])
