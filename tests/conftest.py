"""Fixtures: a replaying loopback server, the real llama.cpp server, sync/async drivers."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from replay_server import ReplayServer
from spout.providers.local import bundled_model_path

# A test that crashes its xdist worker (llama.cpp runs in process) fails naming the signal;
# the tests of one expensive fixture (the llama.cpp server) share a worker; the `runner`
# fixture (tests/helpers.py) runs a test's body sync and async.
pytest_plugins = ["worker_crashes", "xdist_groups", "helpers"]

# llama.cpp's OpenMP threads spin while they wait for each other (libgomp's default). With the
# xdist workers and the processes they start each running the model on every core, spinning
# threads take the cores from the threads they wait for: four processes generating at once
# took 130-180 s instead of 6-8 s on 2 cores. Told to wait passively, they sleep. Set before
# llama_cpp is first imported (libgomp reads it as it loads), and inherited by every child.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# A shell that starts a command in the background without job control (`.ci/run &` in a
# script) has it ignore SIGINT, and every process it starts inherits that: the tests' child
# processes would then never see the Ctrl-C the tests send them. A handler (not an ignore) here
# is reset to the default in each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def collect_before_teardown() -> Iterator[None]:
    """Collect cycles while the interpreter is whole.

    An LLM caught in a reference cycle (a traceback kept by pytest.raises, say) is otherwise
    collected during interpreter teardown, when its finalizer can no longer close its pooled
    sockets, and the ResourceWarning fails the run after every test passed.
    """
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def close_sdk_loopback() -> Iterator[None]:
    """The loopback servers and SDK clients a wire-protocol test made
    (tests/gateway/sdk_loopback.py) are closed when it ends."""
    yield
    loopback = sys.modules.get("sdk_loopback")
    if loopback is not None:
        loopback.close_all()


@pytest.fixture(autouse=True)
def spout_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's default conversation store is its own: nothing touches the real home."""
    home = tmp_path_factory.mktemp("spout-home")
    monkeypatch.setenv("SPOUT_HOME", str(home))
    return home


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    yield server
    server.stop()
    assert not server.errors, f"the replay server failed: {server.errors}"


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Each streaming test runs twice: through Stream and through AsyncStream."""
    return str(request.param)


@pytest.fixture(scope="session")
def model_path() -> Path:
    return bundled_model_path()


@pytest.fixture(scope="session")
def llama_server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving the bundled model; yields its ``/v1`` base URL."""
    from helpers import free_port  # here: helpers is a plugin, imported once pytest rewrites it

    port = free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model_path),
                "--chat_format",
                "chatml-function-calling",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--n_threads",
                str(os.cpu_count() or 1),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


from fault_server import FaultServer  # noqa: E402 - kept beside the fixture that uses it


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    """A loopback server that misbehaves as the test scripts it (see ``tests/fault_server.py``)."""
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, f"the fault server saw problems: {server.errors}"
