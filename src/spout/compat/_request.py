"""One call's litellm settings sorted into spout's: where to connect, what to send."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigurationError
from .._llm import LLM, create_llm
from .._policy import Timeout as Limits
from ..providers._registry import provider_class
from ._messages import _spout_messages
from ._objects import _mapping, _plain
from ._route import _route

# litellm's own settings (logging, caching, its proxy): never sent to a provider.
_LITELLM_ONLY = frozenset(
    (
        "drop_params",
        "caching",
        "cache",
        "logger_fn",
        "metadata",
        "litellm_metadata",
        "litellm_call_id",
        "litellm_logging_obj",
        "proxy_server_request",
        "model_info",
        "preset_cache_key",
        "no-log",
        "input_cost_per_token",
        "output_cost_per_token",
        "mock_timeout",
        "api_version",
    )
)


def _limits(timeout: Any) -> Limits | None:
    """litellm's ``timeout`` as spout's limits.

    A number is what httpx (and so litellm) makes of it: the limit on connecting and on each
    wait for data, so a long stream that keeps arriving is not cut by it.
    """
    if timeout is None or isinstance(timeout, Limits):
        return timeout
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return Limits(connect=timeout, first_token=timeout, idle=timeout)
    read = getattr(timeout, "read", None)  # an httpx.Timeout
    if read is not None or getattr(timeout, "connect", None) is not None:
        return Limits(connect=getattr(timeout, "connect", None), first_token=read, idle=read)
    raise TypeError(f"timeout must be a number of seconds or a spout.Timeout, not {timeout!r}")


class _Request:
    """One call's settings, sorted: where to connect, what to send, how to answer."""

    __slots__ = (
        "config",
        "include_usage",
        "messages",
        "mock",
        "mock_delay",
        "mock_tool_calls",
        "model",
        "params",
        "provider",
        "shown_model",
    )

    def __init__(self, model: str, messages: Any, settings: dict[str, Any]) -> None:
        given = {key: value for key, value in settings.items() if value is not None}
        self.shown_model = model
        self.messages = _spout_messages(messages)
        self.mock = given.pop("mock_response", None)
        self.mock_tool_calls = given.pop("mock_tool_calls", None)
        self.mock_delay = given.pop("mock_delay", None)
        stream_options = given.pop("stream_options", None) or {}
        self.include_usage = bool(_mapping(stream_options).get("include_usage"))
        given.pop("stream", None)
        n = given.pop("n", None)
        if n not in (None, 1):
            raise ConfigurationError(
                f"n={n!r}: spout returns one choice per call; make {n} calls instead"
            )
        # Where to connect: part of which LLM serves the call.
        config: dict[str, Any] = {}
        api_key = given.pop("api_key", None)
        base_url: str | None = given.pop("api_base", None) or given.pop("base_url", None)
        given.pop("base_url", None)
        headers = given.pop("extra_headers", None) or given.pop("headers", None)
        given.pop("headers", None)
        custom = given.pop("custom_llm_provider", None)
        # How the call behaves when it fails or stalls.
        limits = _limits(given.pop("timeout", None) or given.pop("request_timeout", None))
        given.pop("request_timeout", None)
        retries = given.pop("num_retries", None)
        if retries is None:
            retries = given.pop("max_retries", None)
        given.pop("max_retries", None)
        self.provider: str = "mock"
        self.model: str | None = model
        if self.mock is None:
            self.provider, self.model = _route(model, custom)
            # The provider's own settings under litellm's names (Azure's api_version,
            # Vertex AI's vertex_project): part of where to connect.
            cls = provider_class(self.provider)
            for setting, keyword in cls.litellm_settings.items():
                if setting in given:
                    config[keyword] = given.pop(setting)
            if api_key is not None:
                config["api_key"] = api_key
            if base_url is not None:
                config["base_url"] = base_url
            if headers:
                config["headers"] = dict(headers)
            # Where litellm means these otherwise than spout, the provider says how.
            self.model, config = cls.litellm_config(self.model, config)
        for key in _LITELLM_ONLY:
            given.pop(key, None)
        self.config = config
        if limits is not None:
            given["timeout"] = limits
        if retries is not None:
            given["max_retries"] = retries
        choice = given.get("tool_choice")
        if isinstance(choice, Mapping) and choice.get("type") == "function":
            # OpenAI's way to name a tool; spout names it by its name, for every provider.
            name = (_mapping(choice.get("function") or {})).get("name")
            if name:
                given["tool_choice"] = name
        self.params = given

    def cache_key(self) -> tuple[Any, ...]:
        """What tells one LLM from another: provider, model, endpoint, key, headers, and the
        environment variables the provider reads them from."""
        names = provider_class(self.provider).env_names()
        env = tuple(os.environ.get(name) for name in names)
        config = tuple(
            sorted(
                (key, tuple(sorted(value.items())) if isinstance(value, dict) else value)
                for key, value in self.config.items()
            )
        )
        return (self.provider, self.model, config, env)

    def make_llm(self) -> LLM:
        return create_llm(self.provider, model=self.model, **self.config)

    def call_params(self, llm: LLM) -> dict[str, Any]:
        """The call's settings in spout's terms, where litellm's differ."""
        # What litellm names otherwise than the provider (max_completion_tokens), it maps.
        params = dict(llm.provider.litellm_params(dict(self.params)))
        response_format = params.get("response_format")
        if isinstance(response_format, Mapping):
            # spout sends response_format in each provider's own terms (docs/structured-output.md);
            # OpenAI's default, plain text, is no format at all.
            if response_format.get("type") == "text":
                del params["response_format"]
            else:
                params["response_format"] = _plain(response_format, False)
        return params
