"""A pytest plugin: a test that kills its xdist worker fails with the signal and the trace.

llama.cpp runs in the tests' own process, so a native crash there (a segfault, an abort) kills
the process running the test. Under pytest-xdist that process is a worker: the controller
replaces it and reports the test it was running as failed, but only as "worker 'gw1' crashed".
Here each worker has :mod:`faulthandler` write into a file of its own, and the controller adds
that file (``Fatal Python error: Segmentation fault`` and every thread's Python stack) and the
signal the worker died of to the failed test's report.

Loaded by ``tests/conftest.py``; without xdist (``-p no:xdist``) it does nothing, and a crash
ends the run as it always did, with faulthandler's trace on stderr.
"""

from __future__ import annotations

import faulthandler
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

import pytest

_DIRECTORY = "spout_crash_dir"  # the key of the files' directory in each worker's workerinput
_directory = pytest.StashKey[Path]()
_log = pytest.StashKey[IO[str]]()

# faulthandler's names for the signals it catches (Modules/faulthandler.c, faulthandler_handlers).
_FATAL_ERRORS = {
    "Segmentation fault": signal.SIGSEGV,
    "Aborted": signal.SIGABRT,
    "Bus error": signal.SIGBUS,
    "Illegal instruction": signal.SIGILL,
    "Floating-point exception": signal.SIGFPE,
}


# After pytest's own faulthandler plugin, which points faulthandler at stderr.
@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None:
        if config.pluginmanager.hasplugin("xdist"):
            config.stash[_directory] = Path(tempfile.mkdtemp(prefix="spout-test-crashes-"))
    elif _DIRECTORY in workerinput:
        path = Path(workerinput[_DIRECTORY]) / f"{workerinput['workerid']}.log"
        log = config.stash[_log] = path.open("w", encoding="utf-8")
        faulthandler.enable(file=log, all_threads=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    log = config.stash.get(_log, None)
    if log is not None:
        faulthandler.disable()  # pytest's plugin, unconfigured after, restores its own
        log.close()
    directory = config.stash.get(_directory, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """The controller tells each worker (and each replacement) where its file goes."""
    directory = node.config.stash.get(_directory, None)
    if directory is not None:
        node.workerinput[_DIRECTORY] = str(directory)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    """The crashed test's report names the signal and carries faulthandler's trace."""
    node = getattr(report, "node", None)
    directory = node.config.stash.get(_directory, None) if node is not None else None
    if node is None or directory is None:
        return
    worker = node.gateway.id
    path = directory / f"{worker}.log"
    trace = path.read_text(encoding="utf-8", errors="replace").strip() if path.exists() else ""
    fatal = next((line for line in trace.splitlines() if line.startswith("Fatal Python error")), "")
    how = _signal_name(_exit_status(node), fatal)
    if fatal:
        how += f" ({fatal})"
    report.longrepr = f"worker {worker!r} crashed while running {crashitem!r}: {how}\n\n" + (
        trace or "(faulthandler wrote nothing: the signal is one it cannot catch)"
    )


def _exit_status(node: Any) -> int | None:
    """The dead worker's exit status, if execnet kept its process (a popen gateway does)."""
    process = getattr(getattr(node.gateway, "_io", None), "popen", None)
    if not isinstance(process, subprocess.Popen):
        return None
    try:
        return process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None


def _signal_name(status: int | None, fatal: str) -> str:
    if status is not None and status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    for text, number in _FATAL_ERRORS.items():
        if fatal.endswith(text):
            return f"killed by {number.name}"
    if status is not None:
        return f"exited with status {status}"
    return "killed"
