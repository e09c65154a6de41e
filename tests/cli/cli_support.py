"""Running the ``spout`` command in tests: as a process on pipes, or on a pseudo-terminal."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from typing import IO, Any

from replay_server import ReplayServer

TIMEOUT = 120  # seconds for one run of the command; a hung command fails, never blocks


def spout_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell would give: no settings that change what is tested.

    ``SPOUT_HOME`` is inherited: each test module points it at a temporary directory, so no
    test touches the real conversation store.
    """
    env = {**os.environ, "OPENAI_API_KEY": "sk-dummy"}
    env.pop("OPENAI_BASE_URL", None)  # the machine's setting must not redirect requests
    env.pop("SPOUT_NO_LOG", None)
    # A user's shell does not set this: the command itself must flush what it writes to a pipe.
    env.pop("PYTHONUNBUFFERED", None)
    env.update(extra)
    return env


def spout(
    *args: str,
    input: str | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the command to its end; stdin is empty unless ``input`` or ``stdin`` says otherwise."""
    return subprocess.run(
        [sys.executable, "-m", "spout", *args],
        input=input,
        stdin=None if input is not None else stdin,
        capture_output=True,
        text=True,
        env=env or spout_env(),
        timeout=TIMEOUT,
    )


def how_it_ended(status: int) -> str:
    """An exit status in words: a process killed by a signal (llama.cpp crashing in it, say)
    says which, rather than a bare negative number."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def openai_args(server: ReplayServer, model: str = "test-model") -> list[str]:
    return ["-m", f"openai:{model}", "--base-url", f"{server.url}/v1"]


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed as promised: non-zero, one ``spout: error:`` line, no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spout: error: ")
    return lines[0]


# The child makes the terminal its controlling terminal (it leads a new session, see
# start_new_session below), so that ^C typed on it sends SIGINT to the child's process group,
# as in a shell. Done in the child rather than with pty.fork(): forking a process that runs
# threads (the loopback servers) is unsafe, and Python 3.12+ warns about it.
_TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class Terminal:
    """``spout`` on a pseudo-terminal: type into it, wait for what it prints.

    Output is read with deadlines, never fixed sleeps: :meth:`expect` returns as soon as the
    text shows, and fails with everything read so far when it does not in time.
    """

    def __init__(self, *args: str, env: dict[str, str], columns: int = 200) -> None:
        import fcntl
        import struct
        import termios

        master, slave = os.openpty()
        # Wide, so the terminal does not wrap lines in what the tests read.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        self.master = master
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _TAKE_TERMINAL, "-m", "spout", *args],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env={**env, "TERM": "dumb"},
                start_new_session=True,
            )
        finally:
            os.close(slave)
        self.output = ""
        self._seen = 0  # where the next expect() starts looking
        self._bytes = b""

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every process holding the terminal is gone
            return False
        if not data:
            return False
        self._bytes += data
        self.output = self._bytes.decode("utf-8", errors="replace")
        return True

    def expect(self, text: str, timeout: float = 30) -> str:
        """Wait for ``text`` after what earlier calls matched; returns the output up to its end."""
        deadline = time.monotonic() + timeout
        is_open = True
        while True:
            found = self.output.find(text, self._seen)
            if found >= 0:
                start, self._seen = self._seen, found + len(text)
                return self.output[start : self._seen]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not is_open:
                raise AssertionError(
                    f"{text!r} did not show within {timeout} s; the terminal shows:\n"
                    f"{self.output[self._seen :]!r}\n(before that: {self.output[: self._seen]!r})"
                )
            is_open = self._read(min(remaining, 0.5))

    def wait(self, timeout: float = 30) -> int:
        """Wait for the command to exit, reading what it prints meanwhile; its exit status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the command did not exit; it shows:\n{self.output!r}")
            self._read(0.1)
        while self._read(0.05):  # the rest of its output
            if not select.select([self.master], [], [], 0)[0]:
                break
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        os.close(self.master)
