"""``spout serve``: run the gateway on uvicorn."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import fail

if TYPE_CHECKING:
    import uvicorn

    from ..gateway._config import GatewayConfig
    from ..gateway._keys import KeyEntry

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
  spout serve keys add alice --keys keys.txt    make a key (printed once; only its hash is kept)
  spout serve keys add intern --keys keys.txt --max-spend 25    a key that may spend 25 USD
  spout serve keys list --keys keys.txt         each key's limits, and what it has spent
  spout serve --host 0.0.0.0 --keys keys.txt --cors-origin https://app.example.com
  opentelemetry-instrument spout serve --otel   spans to the exporter OTEL_* variables name
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
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name to answer to besides loopback ones and --host (repeatable; "
        "'*.example.com'; '*' for any); other names get 421, against DNS rebinding",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="a proxy (address or network) whose X-Forwarded-For names the client "
        "(repeatable; default: none, the header is ignored)",
    )
    parser.add_argument(
        "--log-prompts", action="store_true", help="log prompt text (off: never logged)"
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="OpenTelemetry spans and metrics for every call, continuing a client's "
        "traceparent (spout[otel]; exporters as your OpenTelemetry SDK set-up says, e.g. "
        "under opentelemetry-instrument)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="a request arriving while N connections are open (its own counted) is answered "
        "503 (default 1000; 0: no limit). Deadlines: header_timeout, idle_timeout, "
        "write_timeout in --config",
    )
    parser.add_argument(
        "--shutdown-deadline",
        type=float,
        metavar="SECONDS",
        help="on shutdown, how long running streams may go on (default 10)",
    )
    parser.add_argument(
        "--workers",
        type=_workers_count,
        metavar="N",
        help="gateway processes on the one port (default: the CPU cores; 1 when a model runs "
        "in process: local, transformers); streams, limits and spend are shared (through "
        "--redis, else a local hub)",
    )
    return parser


#: Providers that run the model in the gateway's process: ``--workers`` defaults to 1 then.
_IN_PROCESS = frozenset({"local", "transformers"})


def _workers_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"a number of processes, 1 or more, not {text!r}")
    return count


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
    for name in ("host", "port", "resume_window", "shutdown_deadline", "max_connections"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.redis:
        config.redis_url = args.redis
    if args.keys:
        config.keys_file = args.keys
    if args.cors_origin:
        config.cors_origins = tuple(args.cors_origin)
    if args.allowed_host:
        config.allowed_hosts = tuple(args.allowed_host)
    if args.trusted_proxy:
        config.trusted_proxies = tuple(args.trusted_proxy)
    if args.log_prompts:
        config.log_prompts = True
    return config


def main(argv: Sequence[str] | None = None) -> int:
    if argv is not None and list(argv[:1]) == ["keys"]:
        return keys_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        import uvicorn  # noqa: F401

        from ..gateway import create_app
    except ModuleNotFoundError as exc:
        return fail(f"spout serve needs the gateway extra: pip install 'spout[gateway]' ({exc})")
    from .. import ConfigurationError

    try:
        config = build_config(args)
        if args.otel:
            from .. import instrument

            instrument()  # ConfigurationError naming the extra when OpenTelemetry is missing
        app = create_app(config)
    except (ConfigurationError, ValueError) as exc:
        return fail(str(exc), 2)
    from ..gateway._workers import default_workers, run_workers

    workers = args.workers or default_workers()
    in_process = sorted(n for n, r in config.routes.items() if r.provider in _IN_PROCESS)
    if args.workers is None and in_process:
        # Each worker would load its own copy of the model, and they would contend for the
        # same cores: one process, unless asked.
        workers = 1
    if workers > 1:
        # Each worker builds its own gateway from the same arguments; this one only checked
        # them (so a mistake is told once, here).
        del app
        _access_log()
        return run_workers(
            _worker,
            list(argv if argv is not None else sys.argv[2:]),
            config,
            workers,
            lambda host, port: _say_listening(host, port, config, workers),
        )
    server = serve_server(app, config)
    _announce(server, config)
    _access_log()
    server_gc()
    server.run()
    return 0


#: The youngest generation's threshold in a gateway process (Python's default: 700).
GC_THRESHOLD = 50_000


def server_gc() -> None:
    """Garbage collection for a process that serves and nothing else (``spout serve`` and
    each of its workers): what is loaded by now is frozen out of the collections, and the
    youngest generation is collected every 50,000 allocations rather than every 700. A
    streamed token allocates a few dozen objects, so the default collected every ~20 tokens
    relayed, each time walking whatever 500 open streams held. Measured: 2-4 µs less CPU
    a token at 500 streams (docs/benchmarks-notes.md)."""
    import gc

    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, middle, oldest)


def _server_settings(config: GatewayConfig) -> dict[str, Any]:
    """uvicorn's settings beside the config's deadlines, connection limit and proxies."""
    return {
        "timeout_graceful_shutdown": max(1, round(config.shutdown_deadline)),
        "log_level": "info",
        "access_log": False,
    }


def serve_server(app: Any, config: GatewayConfig) -> uvicorn.Server:
    """The uvicorn server of ``app``: its deadlines (header, idle, write), connection limit
    and trusted proxies are ``config``'s."""
    import uvicorn

    from ..gateway._server import server_config

    return uvicorn.Server(server_config(app, config, **_server_settings(config)))


def _worker(argv: Sequence[str], **worker: Any) -> None:
    """A ``--workers`` process: the gateway of ``argv`` (checked by the parent already)."""
    from ..gateway._workers import serve_worker

    args = _parser().parse_args(argv)
    config: GatewayConfig = build_config(args)
    if args.otel:
        from .. import instrument

        instrument()
    _access_log()  # this process's own logging: a spawned worker starts with none
    server_gc()
    serve_worker(config, _server_settings(config), **worker)


def _access_log() -> None:
    """Show the gateway's access log (one line per request) on stderr, as uvicorn's lines."""
    import logging

    logger = logging.getLogger("spout.gateway")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _keys_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spout serve keys",
        description="Manage the gateway's API keys. The keys file holds a name and the "
        "SHA-256 of each key, never a key: a new key is printed once, on stdout.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="make a key, print it once, store its hash")
    add.add_argument("name", help="who the key is for (shown in logs and limits)")
    add.add_argument("--requests-per-minute", type=int, metavar="N", help="this key's own limit")
    add.add_argument("--tokens-per-minute", type=int, metavar="N", help="this key's own limit")
    add.add_argument(
        "--max-spend",
        type=_usd,
        metavar="USD",
        help="what the key may spend in all, in USD (each response's cost); then it is refused",
    )
    remove = commands.add_parser("remove", help="remove a key by name")
    remove.add_argument("name")
    listing = commands.add_parser("list", help="the keys' names, limits and spend")
    listing.add_argument(
        "--redis",
        metavar="URL",
        help="read the spend from this Redis (the gateway's --redis), not the file beside the keys",
    )
    for sub in commands.choices.values():
        sub.add_argument("--keys", type=Path, required=True, metavar="FILE", help="the keys file")
    return parser


def _usd(text: str) -> float:
    from ..gateway._keys import parse_usd

    amount = parse_usd(text)
    if amount is None:
        raise argparse.ArgumentTypeError(f"an amount in USD more than 0, not {text!r}")
    return amount


def keys_main(argv: Sequence[str]) -> int:
    """``spout serve keys add|remove|list``."""
    from .. import ConfigurationError
    from ..gateway._keys import add_key, read_keys, remove_key

    args = _keys_parser().parse_args(argv)
    try:
        if args.command == "add":
            key = add_key(
                args.keys,
                args.name,
                requests_per_minute=args.requests_per_minute,
                tokens_per_minute=args.tokens_per_minute,
                max_spend=args.max_spend,
            )
            print(key)
            print(
                f"spout serve: added the key {args.name!r} to {args.keys}; it is shown only "
                "this once (the file keeps its hash)",
                file=sys.stderr,
            )
        elif args.command == "remove":
            if not remove_key(args.keys, args.name):
                return fail(f"{args.keys} has no key named {args.name!r}")
        else:
            entries = read_keys(args.keys)
            spent = _spent(args.keys, [entry.name for entry in entries], args.redis)
            for entry in entries:
                print("  ".join([entry.name, *entry.options(), _spend_column(entry, spent)]))
    except ConfigurationError as exc:
        return fail(str(exc), 2)
    return 0


def _spent(keys: Path, names: list[str], redis_url: str | None) -> dict[str, float]:
    """What each key has spent: in Redis with ``redis_url``, else in the file beside ``keys``."""
    from ..gateway._spend import FileLedger, redis_totals, spend_path

    if redis_url:
        return redis_totals(redis_url, names)
    ledger = FileLedger(spend_path(keys))
    try:
        return ledger.totals()
    finally:
        ledger.close()


def _spend_column(entry: KeyEntry, spent: dict[str, float]) -> str:
    """``spent=$1.234567``, and against the limit: ``(49% of 2.5)``, ``(refused)`` once reached."""
    usd = spent.get(entry.name, 0.0)
    column = f"spent=${usd:.6f}"
    if entry.max_spend is not None:
        if usd >= entry.max_spend:
            column += " (limit reached: refused)"
        else:
            column += f" ({usd / entry.max_spend:.0%} of the limit)"
    return column


def _announce(server, config) -> None:  # type: ignore[no-untyped-def]
    """Print the address once uvicorn listens (the port may have been 0)."""
    from ..gateway._server import when_started

    def say(server) -> None:  # type: ignore[no-untyped-def]
        for listener in server.servers:
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                _say_listening(host, port, config)

    when_started(server, say)


def _say_listening(host: str, port: int, config, workers: int = 1) -> None:  # type: ignore[no-untyped-def]
    processes = f", {workers} workers" if workers > 1 else ""
    print(
        f"spout serve: http://{host}:{port} (models: {', '.join(config.routes)}{processes})",
        file=sys.stderr,
        flush=True,
    )
