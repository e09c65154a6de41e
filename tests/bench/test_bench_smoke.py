"""The benchmark harness runs end to end (a seconds-long smoke run); it asserts no speed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.model  # its last table is the bundled model's tokens/s
def test_bench_quick_run_prints_every_table() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for heading in (
        "CPU per chunk, openai format, burst",
        "CPU per chunk, openai format, one event per read",
        "CPU per chunk, anthropic format, burst",
        "CPU per chunk with shaping and callbacks",
        "CPU with OpenTelemetry",
        "Time to first text delta",
        "concurrent async streams \N{MULTIPLICATION SIGN}",
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
    for label in (
        "plain",
        'smooth="word"',
        "buffer_size=10",
        "min_chunk_size=20",
        "on_chunk callback",
        "stats read every chunk",
        "debounce=0.05",
    ):
        row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
        float(row.split("|")[2]), float(row.split("|")[4])
    # In both concurrency tables every client really had all its streams open at once (the
    # load server counts connections), and none failed.
    tables = [part for part in out.split("### ") if part.startswith(("20 concurrent",))]
    assert len(tables) == 2
    for table in tables:
        rows = [
            line.split("|")
            for line in table.splitlines()
            if line.startswith("| ") and "async" in line
        ]
        assert rows
        for cells in rows:
            streams, open_at_once, errors = int(cells[2]), int(cells[3]), int(cells[7])
            assert open_at_once == streams, cells
            assert errors == 0, cells
