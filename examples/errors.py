"""Catch spout's errors: each is a subclass of ``spout.SpoutError`` with a one-line message.

Shows a ConfigurationError (an unknown provider) and a ConnectionError (nothing listening at
the base URL). Run it with ``python examples/errors.py``: no key and no network needed.
"""

from __future__ import annotations

import socket

import spout
from spout import create_llm


def unused_port() -> int:
    """A loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    try:
        create_llm("nosuch:model")
    except spout.ConfigurationError as exc:
        print(f"{type(exc).__name__}: {exc}")

    base_url = f"http://127.0.0.1:{unused_port()}/v1"
    with create_llm("openai", model="any", base_url=base_url, api_key="sk-none") as llm:
        try:
            llm.generate("Hi")
        except spout.ConnectionError as exc:  # a TransportError: no answer arrived
            print(f"{type(exc).__name__}: {exc}")
        except spout.SpoutError as exc:  # every other spout error, should this one differ
            print(f"unexpected {type(exc).__name__}: {exc}")
            raise


if __name__ == "__main__":
    main()
