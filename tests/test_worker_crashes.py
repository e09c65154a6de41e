"""A native crash in a test (llama.cpp runs in process) fails that test, not the whole run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent

CRASHING = """
import os
import signal


def test_before() -> None:
    pass


def test_crashes() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def test_after() -> None:
    pass
"""


def test_a_segfault_fails_its_test_naming_the_signal_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "test_crash.py").write_text(CRASHING)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["worker_crashes"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # none of the suite's own options
    env = {**os.environ, "PYTHONPATH": str(TESTS), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-p", "no:asyncio",
         "-rf", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 1, out + result.stderr  # tests failed: not a crashed run
    assert out.splitlines()[-1].strip("= ").startswith("1 failed, 2 passed"), out
    (summary,) = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert "test_crash.py::test_crashes" in summary and "killed by SIGSEGV" in summary, out
    # The failure carries faulthandler's report: the error, and the test's line in the stack.
    assert "Fatal Python error: Segmentation fault" in out, out
    assert 'test_crash.py", line 11 in test_crashes' in out, out
