"""The gateway load benchmark runs end to end (a seconds-long smoke run); it asserts no speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gateway_bench_quick_run_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gateway.py"), "--streams", "8", "--chunks", "10",
         "--sequential", "3"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    direct, through = rows[-4], rows[-3]
    assert direct.startswith("| upstream, read directly | 0 |")
    assert through.startswith("| through spout serve | 0 |")
    # the gateway's CPU per token and its peak memory were measured: numbers
    cpu, rss = through.split("|")[6:8]
    assert float(cpu) > 0 and float(rss) > 0
    assert rows[-2].startswith("| one at a time, read directly | 0 |")
    assert rows[-1].startswith("| one at a time, through spout serve | 0 |")
    assert "Added time to first text delta (median, 8 at once)" in result.stdout
    assert "Added time to first text delta (median, one at a time, 3 streams)" in result.stdout
