"""llama.cpp's own ``llama-server``, serving the bundled model on loopback, for one session.

The ``llama_cpp_server`` fixture (used by tests/real_servers/, whose conftest.py imports it).

The binary is built from the llama-cpp-python sdist spout pins by scripts/build_llama_server.py
(portable, cached; ``make test`` builds it before the tests, so here it is found in a second).
The server speaks OpenAI chat completions, the Responses API and Anthropic's Messages API,
each streamed, with real tokens from the same model: what these tests hold spout's adapters
and the gateway to.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# The build script, from scripts/ (not a package).
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.append(str(SCRIPTS))

import build_llama_server  # noqa: E402

from helpers import free_port  # noqa: E402

#: SmolLM2's own template with tools added (see the file): the prompts without tools are the
#: model's own template's, token for token.
TEMPLATE = Path(__file__).parent / "real_servers" / "smollm2-tools.jinja"
#: The name the server reports its model by (it serves one model whatever a request names).
MODEL = "smollm2"


@dataclasses.dataclass
class LlamaServer:
    """A running llama-server: ``url`` without ``/v1`` (the Anthropic SDK's and spout's
    anthropic provider's form), ``v1`` with it (OpenAI's)."""

    url: str
    log: Path

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def chat(self, prompt: str, **params: Any) -> dict[str, Any]:
        """A chat completion asked of the server directly (no spout in between)."""
        body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], **params}
        reply = httpx.post(f"{self.v1}/chat/completions", json=body, timeout=120)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def warm(self, prompt: str) -> None:
        """Leave the server's cache holding ``prompt``, so the next request for it starts from
        the same state whichever wire asks.

        The server keeps its one slot's tokens and reuses the longest prefix a new prompt
        shares with them, evaluating the rest in one batch; it always evaluates the last token
        again. A prompt evaluated as 32 tokens in one batch and as 31 cached + 1 gives slightly
        different logits, which at temperature 0 can flip a near tie: the same prompt from the
        same cache state is what makes two requests comparable.
        """
        self.chat(prompt, max_tokens=1, temperature=0)


@pytest.fixture(scope="session")
def llama_cpp_server(
    model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """llama-server with the bundled model on a free loopback port, for the whole session."""
    binary = build_llama_server.ensure()
    port = free_port()
    log = tmp_path_factory.mktemp("llama_cpp_server") / "server.log"
    command = [
        str(binary),
        "--model",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--alias",
        MODEL,
        "--ctx-size",
        "2048",
        # One slot: one cache, so the state a request starts from is the one warm() left.
        "--parallel",
        "1",
        "--threads",
        str(min(2, os.cpu_count() or 1)),
        "--jinja",
        "--chat-template-file",
        str(TEMPLATE),
        "--no-webui",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = LlamaServer(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama-server exited:\n{log.read_text()[-3000:]}")
            try:
                # 503 while the model loads, 200 once it serves.
                if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
