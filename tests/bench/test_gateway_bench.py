"""The gateway load benchmark runs end to end (a seconds-long smoke run); it asserts no speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gateway_bench_quick_run_prints_its_table() -> None:
    # litellm's proxy lives in bench/.venv only, so the project's tests run the other three.
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gateway.py"), "--streams", "8,16", "--chunks", "40",
         "--workers", "1", "--gateways", "spout serve,raw relay,byte pipe"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    table = result.stdout[result.stdout.index("| path |") :].split("\n\n")[0]
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ")][2:]
    paths = [(row[0].strip(), row[1].strip(), row[2].strip()) for row in rows]
    assert paths == [
        ("upstream, read directly", "-", "8"),
        ("upstream, read directly", "-", "16"),
        ("spout serve", "1", "8"),
        ("spout serve", "1", "16"),
        ("raw relay", "1", "8"),
        ("raw relay", "1", "16"),
        ("byte pipe", "1", "8"),
        ("byte pipe", "1", "16"),
    ]
    for row in rows:
        assert row[3].strip() == "0" and row[4].strip() == "0"  # no errors, none cut
        # every stream delivered: tokens/s is a number
        assert float(row[8].replace(",", "")) > 0
    for row in rows[2:]:
        # each gateway's CPU per token and its peak memory (over its processes) were measured;
        # CPU time comes in 10 ms ticks, so a light case may read 0
        assert float(row[5]) >= 0 and float(row[9]) > 0
    assert float(rows[3][5]) > 0  # spout serve, 640 tokens: at least one tick
    # the ratio table names what it could not compute (no litellm here)
    assert "| 1 | n/a | n/a |" in result.stdout


def test_gateway_bench_refuses_an_unknown_gateway() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gateway.py"), "--gateways", "spout serve,nginx"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown gateway 'nginx'" in result.stderr
