"""The gateway's settings: routes (model names clients ask for), limits, keys.

Built from ``spout serve``'s flags, or from a TOML file (``--config``) that the flags then
override. A *route* is a model name a client may send (``"model": "smol"``) and what answers
it: a spout provider, its model, base URL, the environment variable holding its key, and
fallbacks (other routes) tried when it fails before its first token.

Example ``gateway.toml``::

    default = "smol"
    resume_window = 10

    [models.smol]
    provider = "local"

    [models.claude]
    provider = "anthropic"
    model = "claude-sonnet-4-5"
    api_key_env = "ANTHROPIC_API_KEY"
    timeout = 60
    max_retries = 2
    fallbacks = ["mini"]

    [models.mini]
    provider = "openai"
    model = "gpt-4o-mini"
    base_url = "http://127.0.0.1:8080/v1"
    api_key_env = "UPSTREAM_KEY"

    [limits]
    requests_per_minute = 60
    tokens_per_minute = 100000
    max_body_bytes = 1048576
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import ConfigurationError, Timeout

__all__ = ["GatewayConfig", "Limits", "Route", "load_config"]


@dataclass(frozen=True, slots=True)
class Route:
    """A model name clients ask for, and the spout provider that answers it."""

    name: str
    provider: str = "local"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    #: Seconds in all, or :class:`spout.Timeout`'s fields (``{first_token = 60, idle = 30}``).
    timeout: float | dict[str, float] | None = None
    max_retries: int | None = None
    fallbacks: tuple[str, ...] = ()
    #: Other create_llm settings (``temperature``, ``headers``, ``n_ctx``...).
    options: dict[str, Any] = field(default_factory=dict)

    def llm_config(self) -> dict[str, Any]:
        """The keywords for :func:`spout.create_llm`, the key read from its variable."""
        config: dict[str, Any] = dict(self.options)
        if self.base_url:
            config["base_url"] = self.base_url
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigurationError(
                    f"model {self.name!r}: the environment variable {self.api_key_env} "
                    "(api_key_env) is not set"
                )
            config["api_key"] = key
        if self.timeout is not None:
            config["timeout"] = self.timeout
        if self.max_retries is not None:
            config["max_retries"] = self.max_retries
        return config


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-key limits (per client address without keys); 0 means none."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    max_body_bytes: int = 4 * 1024 * 1024


@dataclass(slots=True)
class GatewayConfig:
    """Everything ``spout serve`` runs with."""

    routes: dict[str, Route] = field(default_factory=dict)
    default: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    #: Seconds a stream whose last reader left keeps running for one to come back.
    resume_window: float = 10.0
    #: Seconds a finished stream's events stay for late readers.
    retention: float = 60.0
    #: Events kept per stream (oldest dropped beyond it; a reader behind them gets an error).
    max_stream_events: int = 20_000
    #: Bytes of frames kept per stream (oldest dropped beyond it, as for max_stream_events).
    max_stream_bytes: int = 8 * 1024 * 1024
    #: Bytes of frames kept by all streams together in this process (without Redis): beyond
    #: it, finished streams are forgotten (oldest first), then the growing stream's oldest
    #: frames are dropped.
    max_hub_bytes: int = 256 * 1024 * 1024
    #: Seconds a client has to send a request's line and headers (from the connection's
    #: opening, or from the first byte of a later request on it); then the connection is
    #: closed, with a 408 if part of a request came.
    header_timeout: float = 10.0
    #: Seconds a kept-alive connection may wait for its next request.
    idle_timeout: float = 5.0
    #: Seconds a connection may read nothing while the gateway has more to send it (its send
    #: buffer past 64 KiB, not drained to 16 KiB); then it is dropped (its stream, unread,
    #: gets the resume window).
    write_timeout: float = 30.0
    #: A request arriving while this many connections are open (its own counted) or this
    #: many requests are being answered gets a 503, and its connection is closed. 0: no limit.
    max_connections: int = 1000
    #: Seconds running streams get to finish on shutdown.
    shutdown_deadline: float = 10.0
    limits: Limits = field(default_factory=Limits)
    keys_file: Path | None = None
    cors_origins: tuple[str, ...] = ()
    #: Host names served besides loopback ones and ``host`` (``*.example.com``; ``*``: any).
    allowed_hosts: tuple[str, ...] = ()
    #: Peers (addresses, networks, ``*``) whose X-Forwarded-For / -Proto is believed; none.
    trusted_proxies: tuple[str, ...] = ()
    redis_url: str | None = None
    log_prompts: bool = False
    #: The SQLite file the chat page's conversations are kept in (None: spout's default store).
    conversation_store: Path | None = None

    def route(self, name: str | None) -> Route | None:
        """The route for a requested model name; the default one for None or ``""``."""
        if not name:
            return self.routes.get(self.default or "")
        return self.routes.get(name)

    def check(self) -> None:
        """Refuse settings that cannot work, naming them."""
        if not self.routes:
            raise ConfigurationError("no models to serve: give -m provider:model or --config")
        if self.default is not None and self.default not in self.routes:
            raise ConfigurationError(
                f"default model {self.default!r} is not one of the models: "
                + ", ".join(sorted(self.routes))
            )
        for route in self.routes.values():
            if route.api_key_env and not os.environ.get(route.api_key_env):
                raise ConfigurationError(
                    f"model {route.name!r}: the environment variable {route.api_key_env} "
                    "(api_key_env) is not set"
                )
            try:  # a table in the config file: Timeout's fields
                Timeout.coerce(route.timeout)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"model {route.name!r}: {exc}") from None
            for name in route.fallbacks:
                if name not in self.routes:
                    raise ConfigurationError(
                        f"model {route.name!r}: fallback {name!r} is not one of the models"
                    )
        if self.keys_file is None and self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigurationError(
                f"--host {self.host} would serve the network without keys: give --keys FILE "
                "(see spout serve --help), or listen on 127.0.0.1"
            )
        if self.resume_window < 0:
            raise ConfigurationError("resume_window must be >= 0 seconds")
        from ._hygiene import setting_problem

        problem = setting_problem(self)
        if problem is not None:
            raise ConfigurationError(problem)
        for name in ("header_timeout", "idle_timeout", "write_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{name} must be a number of seconds > 0, not {value!r}")
        for name in ("max_stream_bytes", "max_hub_bytes", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be an integer >= 0, not {value!r}")
        if not 0 < self.max_stream_bytes <= self.max_hub_bytes:
            raise ConfigurationError(
                f"max_stream_bytes ({self.max_stream_bytes}) must be > 0 and at most "
                f"max_hub_bytes ({self.max_hub_bytes})"
            )


def route_from_model_string(spec: str, *, name: str | None = None, **settings: Any) -> Route:
    """``"anthropic:claude-sonnet-4-5"`` (or ``"local"``) as a route named after its model."""
    provider, _, model = spec.partition(":")
    provider = provider or "local"
    return Route(name=name or model or provider, provider=provider, model=model or None, **settings)


_ROUTE_FIELDS = {f.name for f in fields(Route)} - {"name", "options"}
_TOP_FIELDS = {
    "default",
    "host",
    "port",
    "resume_window",
    "retention",
    "max_stream_events",
    "max_stream_bytes",
    "max_hub_bytes",
    "header_timeout",
    "idle_timeout",
    "write_timeout",
    "max_connections",
    "shutdown_deadline",
    "cors_origins",
    "allowed_hosts",
    "trusted_proxies",
    "redis_url",
    "log_prompts",
    "keys_file",
    "conversation_store",
}


def load_config(path: str | Path) -> GatewayConfig:
    """A :class:`GatewayConfig` from a TOML file; unknown keys are refused by name."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the gateway config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    config = GatewayConfig()
    for key, value in data.items():
        if key == "models":
            if not isinstance(value, dict):
                raise ConfigurationError(f"{path}: [models] must be a table of tables")
            for name, table in value.items():
                config.routes[name] = _route(path, name, table)
        elif key == "limits":
            config.limits = _limits(path, value)
        elif key in _TOP_FIELDS:
            if key in ("allowed_hosts", "trusted_proxies") and not isinstance(value, list):
                raise ConfigurationError(f"{path}: {key} must be a list of strings")
            if key in ("cors_origins", "allowed_hosts", "trusted_proxies"):
                value = tuple(value)
            elif key in ("keys_file", "conversation_store"):
                value = (path.parent / value).resolve()
            setattr(config, key, value)
        else:
            raise ConfigurationError(f"{path}: unknown setting {key!r}")
    if config.default is None and config.routes:
        config.default = next(iter(config.routes))
    return config


def _route(path: Path, name: str, table: Any) -> Route:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [models.{name}] must be a table")
    settings: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key in _ROUTE_FIELDS:
            settings[key] = tuple(value) if key == "fallbacks" else value
        else:
            options[key] = value
    return Route(name=name, options=options, **settings)


def _limits(path: Path, table: Any) -> Limits:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [limits] must be a table")
    known = {f.name for f in fields(Limits)}
    for key, value in table.items():
        if key not in known:
            raise ConfigurationError(f"{path}: unknown limit {key!r} (known: {sorted(known)})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"{path}: limit {key} must be an integer >= 0")
    return Limits(**table)
