"""The gateway with API keys and a rate limit, called with the official openai SDK.

Makes a keys file (only a hash of the key is stored), serves the bundled model with it and a
limit of 2 requests per minute per key, then calls the gateway without a valid key (401),
with the key (streamed text), and once more than the limit allows (429 with Retry-After).
The gateway's access log shows who called, never the key nor the prompt.

Run it with ``python examples/gateway_keys.py``: no key and no network needed. From a shell,
the same is::

    spout serve keys add demo --keys keys.txt       # prints the key once
    spout serve --keys keys.txt --config gateway.toml   # [limits] requests_per_minute = 2
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import uvicorn

from spout.gateway import GatewayConfig, Limits, Route, create_app
from spout.gateway._keys import add_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(config: GatewayConfig) -> Iterator[str]:
    """The gateway on uvicorn in a background thread; yields its URL."""
    port = free_port()
    app = create_app(config)
    # Load the model now, so the first request below does not wait for it (and the minute
    # the rate limit counts is not spent loading it).
    app.state.gateway.llm(config.routes["smol"]).generate("Hi", max_tokens=1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            sys.exit("the gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def say(line: str) -> None:
    # One write per line: the access log below is written from the gateway's thread, and
    # print() writes a line and its newline separately, so a log line could land between.
    sys.stdout.write(line + "\n")


def main() -> None:
    # The access log: one line per request, on the "spout.gateway" logger.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("log: %(message)s"))
    logging.getLogger("spout.gateway").addHandler(handler)
    logging.getLogger("spout.gateway").setLevel(logging.INFO)

    keys_file = Path(tempfile.mkdtemp()) / "keys.txt"
    key = add_key(keys_file, "demo")  # what `spout serve keys add demo --keys FILE` does
    stored = keys_file.read_text().splitlines()[-1]
    say(f"keys file: {stored[:25]}... (the key itself in it: {key in keys_file.read_text()})")

    config = GatewayConfig(
        routes={"smol": Route("smol", provider="local")},
        default="smol",
        keys_file=keys_file,
        limits=Limits(requests_per_minute=2),
    )
    with serve(config) as url:
        prompt = [{"role": "user", "content": "Name a colour."}]

        intruder = openai.OpenAI(base_url=url + "/v1", api_key="sk-guess", max_retries=0)
        try:
            intruder.chat.completions.create(model="smol", messages=prompt)
        except openai.AuthenticationError as exc:
            say(f"without a valid key: {type(exc).__name__} {exc.status_code}")

        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        for attempt in (1, 2, 3):
            try:
                stream = client.chat.completions.create(
                    model="smol", messages=prompt, stream=True, max_tokens=12, temperature=0
                )
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                say(f"request {attempt} with the key: {text.strip()!r}")
            except openai.RateLimitError as exc:
                wait = exc.response.headers["retry-after"]
                say(f"request {attempt}: {type(exc).__name__} 429, Retry-After: {wait} s")


if __name__ == "__main__":
    main()
