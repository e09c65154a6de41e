"""The tests of one expensive fixture run on one xdist worker (tests/xdist_groups.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent

SUITE = """
import pytest


@pytest.fixture(scope="session")
def llama_server() -> str:
    return "a server"


@pytest.mark.parametrize("i", range(6))
def test_uses_the_server(llama_server: str, i: int) -> None:
    pass


@pytest.mark.xdist_group("marked")
@pytest.mark.parametrize("i", range(6))
def test_marked(i: int) -> None:
    pass


@pytest.mark.parametrize("i", range(12))
def test_free(i: int) -> None:
    pass
"""


def test_a_fixtures_tests_and_a_marked_group_each_run_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_groups.py").write_text(SUITE)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["xdist_groups"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # none of the suite's own options
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", "-p", "no:asyncio", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    workers: dict[str, set[str]] = {}
    for worker, test in re.findall(r"^\[(gw\d+)\] .*PASSED \S+::(test_\w+)", result.stdout, re.M):
        workers.setdefault(test, set()).add(worker)
    assert len(workers["test_uses_the_server"]) == 1, result.stdout
    assert len(workers["test_marked"]) == 1, result.stdout
