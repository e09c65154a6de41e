"""``spout serve``: run the gateway on uvicorn."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._common import fail

__all__ = ["main"]

_DESCRIPTION = """\
Serve a model over HTTP in the protocols clients already speak: OpenAI's
/v1/chat/completions and /v1/responses, Anthropic's /v1/messages, a WebSocket at /v1/ws,
and a chat page at /. Every stream can be resumed, followed by several readers, and
cancelled; a stream nobody reads is stopped upstream (see --resume-window).
Without --keys the server listens on loopback only.
"""

_EXAMPLES = """\
examples:
  spout serve                                   the bundled model on 127.0.0.1:8000
  spout serve -m anthropic:claude-sonnet-4-5 --port 9000
  spout serve -m openai:gpt-4o-mini --base-url http://127.0.0.1:8080/v1 --api-key-env UPSTREAM_KEY
  spout serve --config gateway.toml --redis redis://127.0.0.1:6379/0 --port 8001
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spout serve",
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "-m",
        "--model",
        help="provider:model answering requests (default: the bundled local model); "
        "served under the model's name, and as the default",
    )
    parser.add_argument("--base-url", help="the upstream provider's base URL (with -m)")
    parser.add_argument(
        "--api-key-env", metavar="NAME", help="environment variable holding the upstream key"
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="a TOML file of models and limits"
    )
    parser.add_argument("--redis", metavar="URL", help="share streams and limits through Redis")
    parser.add_argument(
        "--keys",
        type=Path,
        metavar="FILE",
        help="gateway API keys (hashed; see spout serve keys --help); required off loopback",
    )
    parser.add_argument(
        "--resume-window",
        type=float,
        metavar="SECONDS",
        help="how long a stream with no reader keeps running for one to come back (default 10)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to call the API (repeatable)",
    )
    parser.add_argument(
        "--log-prompts", action="store_true", help="log prompt text (off: never logged)"
    )
    parser.add_argument(
        "--shutdown-deadline",
        type=float,
        metavar="SECONDS",
        help="on shutdown, how long running streams may go on (default 10)",
    )
    return parser


def build_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..gateway._config import GatewayConfig, load_config, route_from_model_string

    config = load_config(args.config) if args.config else GatewayConfig()
    if args.model or not config.routes:
        route = route_from_model_string(
            args.model or "local", base_url=args.base_url, api_key_env=args.api_key_env
        )
        config.routes[route.name] = route
        config.default = route.name
    elif args.base_url or args.api_key_env:
        raise ValueError("--base-url and --api-key-env go with -m (in --config, per model)")
    for name in ("host", "port", "resume_window", "shutdown_deadline"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.redis:
        config.redis_url = args.redis
    if args.keys:
        config.keys_file = args.keys
    if args.cors_origin:
        config.cors_origins = tuple(args.cors_origin)
    if args.log_prompts:
        config.log_prompts = True
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        import uvicorn

        from ..gateway import create_app
    except ModuleNotFoundError as exc:
        return fail(f"spout serve needs the gateway extra: pip install 'spout[gateway]' ({exc})")
    from .._errors import ConfigurationError

    try:
        config = build_config(args)
        app = create_app(config)
    except (ConfigurationError, ValueError) as exc:
        return fail(str(exc), 2)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            timeout_graceful_shutdown=max(1, round(config.shutdown_deadline)),
            log_level="info",
            access_log=False,
        )
    )
    _announce(server, config)
    server.run()
    return 0


def _announce(server, config) -> None:  # type: ignore[no-untyped-def]
    """Print the address once uvicorn listens (the port may have been 0)."""
    startup = server.startup

    async def started(sockets=None):  # type: ignore[no-untyped-def]
        await startup(sockets)
        for listener in server.servers:
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                print(
                    f"spout serve: http://{host}:{port} (models: {', '.join(config.routes)})",
                    file=sys.stderr,
                    flush=True,
                )

    server.startup = started
