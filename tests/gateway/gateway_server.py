"""The gateway on a free loopback port, served by uvicorn in a thread (with the protocol
classes and settings ``spout serve`` uses), for one test.

Example::

    with run_gateway(config) as gateway:
        httpx.post(f"{gateway.url}/v1/chat/completions", json={...})
        gateway.app.state.gateway.hub   # the live state, to look at
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from helpers import free_port
from spout.gateway import GatewayConfig, Route, create_app
from spout.gateway._server import server_config

__all__ = ["RunningGateway", "free_port", "run_gateway", "upstream_config"]


@dataclass
class RunningGateway:
    url: str
    app: Starlette
    server: uvicorn.Server
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Any, timeout: float = 5.0) -> Any:
        """Run a coroutine on the gateway's own event loop (to look at its hub)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


def upstream_config(
    base_url: str, *, name: str = "up", provider: str = "openai", **settings: Any
) -> GatewayConfig:
    """A gateway serving one model, ``name``, from an upstream at ``base_url``."""
    options = {"api_key": "sk-test", "max_retries": 0, **settings.pop("options", {})}
    route = Route(name=name, provider=provider, model="m", base_url=base_url, options=options)
    return GatewayConfig(routes={name: route}, default=name, **settings)


@contextlib.contextmanager
def run_gateway(
    config: GatewayConfig, *, hub: Any = None, port: int | None = None
) -> Iterator[RunningGateway]:
    app = create_app(config, hub=hub)
    port = port or free_port()
    # Served as `spout serve` serves it: its deadlines, connection limit and trusted proxies.
    served = dataclasses.replace(config, host="127.0.0.1", port=port)
    server = uvicorn.Server(
        server_config(app, served, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    loops: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="gateway-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", app, server, loops[0])
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "the gateway did not stop"
