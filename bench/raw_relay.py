"""The floor for bench/gateway.py: a raw byte relay that any gateway costs at least as much as.

It reads nothing and translates nothing: each POST is sent on to the upstream with its body and
content type, and the upstream's response bytes are written to the client as they arrive, in
the pieces the socket gives them. What it costs is what any Python gateway on aiohttp pays for
two HTTP connections and the copying between them.

Run: ``python bench/raw_relay.py --upstream http://127.0.0.1:PORT [--workers N]`` prints the
port it listens on, then serves until killed. With ``--workers N`` it forks N processes that
accept on one listening socket (the parent is one of them), as a multi-process gateway would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys

import aiohttp
from aiohttp import web

# Headers that describe one hop, not the body: aiohttp sets its own on each side.
HOP = {"connection", "content-length", "transfer-encoding", "keep-alive", "host"}


def make_app(upstream: str) -> web.Application:
    """An app relaying every POST to ``upstream`` (its path kept) and the bytes back."""

    async def start_session(app: web.Application) -> None:
        # No connection limit: one upstream connection per stream, as the gateways keep.
        connector = aiohttp.TCPConnector(limit=0)
        app["session"] = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False
        )

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        session: aiohttp.ClientSession = request.app["session"]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        body = await request.read()
        async with session.post(upstream + request.path, data=body, headers=headers) as reply:
            response = web.StreamResponse(status=reply.status)
            for name, value in reply.headers.items():
                if name.lower() not in HOP:
                    response.headers[name] = value
            await response.prepare(request)
            async for piece in reply.content.iter_any():
                await response.write(piece)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_post("/{path:.*}", relay)
    app.on_startup.append(start_session)
    app.on_cleanup.append(close_session)
    return app


def serve(sock: socket.socket, upstream: str) -> None:
    """Serve on ``sock`` until SIGTERM."""
    web.run_app(make_app(upstream), sock=sock, print=None, access_log=None, handle_signals=True)


def main() -> int:
    try:  # the event loop spout serve runs on (uvicorn's), so the floor is not handicapped
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(4096)
    sock.set_inheritable(True)
    children = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            serve(sock, args.upstream.rstrip("/"))
            os._exit(0)
        children.append(pid)
    print(sock.getsockname()[1], flush=True)

    def stop_children(*_: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        raise web.GracefulExit

    # The parent is a worker too; on SIGTERM it stops its children before itself.
    loop = asyncio.get_event_loop_policy().new_event_loop()
    asyncio.set_event_loop(loop)
    loop.add_signal_handler(signal.SIGTERM, stop_children)
    web.run_app(
        make_app(args.upstream.rstrip("/")),
        sock=sock,
        print=None,
        access_log=None,
        handle_signals=False,
        loop=loop,
    )
    for pid in children:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
