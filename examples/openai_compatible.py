"""The OpenAI-compatible provider against a real server: llama.cpp's, serving the bundled model.

Without ``--base-url`` this starts ``python -m llama_cpp.server`` on a free loopback port
(and stops it at the end); with it, it talks to the server you name. Then it streams an
answer and prints the text, the finish reason and the usage.

Run it with ``python examples/openai_compatible.py`` (no key, no network), or
``python examples/openai_compatible.py --base-url http://127.0.0.1:8080/v1``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from spout import Usage, create_llm
from spout.providers.local import bundled_model_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_server(timeout: float = 120) -> Iterator[str]:
    """Serve the bundled model with llama.cpp's OpenAI-compatible server; yields its base URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(bundled_model_path()),
        "--host", "127.0.0.1", "--port", str(port),
        "--chat_format", "chatml-function-calling",
    ]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not answers(f"{base_url}/models"):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    sys.exit(f"llama_cpp.server did not start:\n{log.read()[-2000:].decode()}")
                time.sleep(0.2)
            yield base_url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run(base_url: str) -> None:
    prompt = "Count from 1 to 5"
    with create_llm("openai", model="smollm2", base_url=base_url, api_key="sk-local") as llm:
        stream = llm.generate_stream(prompt, max_tokens=60, temperature=0)
        for chunk in stream:
            print(chunk, end="", flush=True)
        response = stream.response
        print(f"\n\nfinish reason: {response.finish_reason} (raw: {response.raw_finish_reason!r})")
        print(f"usage: {describe(response.usage)}")
        if response.usage.output_tokens is None:
            # llama.cpp's server sends no usage in a stream; a whole answer carries it.
            response = llm.generate(prompt, max_tokens=60, temperature=0)
            print(f"usage, not streamed: {describe(response.usage)}")


def describe(usage: Usage) -> str:
    if usage.output_tokens is None:
        return "not sent by the server (unknown, not zero)"
    return f"{usage.input_tokens} prompt tokens, {usage.output_tokens} output tokens"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1"
    )
    args = parser.parse_args()
    if args.base_url:
        run(args.base_url)
    else:
        with llama_server() as base_url:
            run(base_url)


if __name__ == "__main__":
    main()
