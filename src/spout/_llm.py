"""create_llm and the LLM object: one interface over every provider."""

from __future__ import annotations

import importlib
import inspect
import os
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, overload

from ._capabilities import Capabilities, ModelCapability, has_capability
from ._errors import ConfigurationError
from ._response import Accumulator, Response
from ._stream import AsyncStream, Stream
from .providers._base import Call, Provider

__all__ = ["LLM", "create_llm", "parse_model_string"]

# name -> (module, class), imported on first use so `import spout` stays light.
_PROVIDERS: dict[str, tuple[str, str]] = {
    "anthropic": ("spout.providers.anthropic", "AnthropicProvider"),
    "gemini": ("spout.providers.gemini", "GeminiProvider"),
    "huggingface": ("spout.providers.huggingface", "HuggingFaceProvider"),
    "local": ("spout.providers.local", "LocalProvider"),
    "ollama": ("spout.providers.ollama", "OllamaProvider"),
    "openai": ("spout.providers.openai", "OpenAIProvider"),
    "openai_responses": ("spout.providers.openai_responses", "OpenAIResponsesProvider"),
    # OpenAI-compatible services and servers: profiles of the one chat adapter.
    "openrouter": ("spout.providers.profiles", "OpenRouterProvider"),
    "vllm": ("spout.providers.profiles", "VLLMProvider"),
    "llamacpp": ("spout.providers.profiles", "LlamaCppProvider"),
    "lmstudio": ("spout.providers.profiles", "LMStudioProvider"),
    "together": ("spout.providers.profiles", "TogetherProvider"),
    "groq": ("spout.providers.profiles", "GroqProvider"),
    "deepseek": ("spout.providers.profiles", "DeepSeekProvider"),
    "transformers": ("spout.providers.transformers", "TransformersProvider"),
}

#: Generation settings, in spout's names; every provider translates them.
GENERATION_PARAMS = ("temperature", "max_tokens", "top_p", "stop", "seed")

Message = dict[str, Any]


def parse_model_string(value: str) -> tuple[str, str | None]:
    """Split ``"provider:model"`` or ``"provider/model"`` into its parts.

    A bare ``"provider"`` has no model. ``/`` splits only after a known provider's name, as
    model names carry slashes of their own (``openrouter/openai/gpt-4o``).

    >>> parse_model_string("openai:gpt-4o-mini")
    ('openai', 'gpt-4o-mini')
    >>> parse_model_string("anthropic/claude-sonnet-4-5")
    ('anthropic', 'claude-sonnet-4-5')
    """
    provider, sep, model = value.partition(":")
    if not sep:
        head, slash, rest = value.partition("/")
        if slash and head.strip().lower() in _PROVIDERS:
            provider, sep, model = head, slash, rest
    return provider.strip().lower(), (model.strip() or None) if sep else None


def route(model: str) -> tuple[str, str] | None:
    """The provider a model string names by its prefix, if it names a known one."""
    name, routed = parse_model_string(model)
    if routed and name in _PROVIDERS:
        return name, routed
    return None


def _provider_class(name: str) -> type[Provider]:
    try:
        module_name, class_name = _PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(_PROVIDERS))
        raise ConfigurationError(f"unknown provider {name!r}; known providers: {known}") from None
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls


def create_llm(provider: str | None = None, *, model: str | None = None, **config: Any) -> LLM:
    """An LLM for a provider and model; with no arguments, the bundled local model.

    ``provider`` may carry the model as ``"provider:model"``; with no provider, a model
    string such as ``"anthropic/claude-sonnet-4-5"`` picks it by its prefix. ``config`` holds the provider's
    connection settings (``base_url``, ``api_key``, ``headers``, ``timeout``...) and default
    generation settings for every call (``temperature``, ``max_tokens``, ``top_p``, ``stop``,
    ``seed``, ``system_prompt``). ``api`` picks the wire format of a provider that has several:
    ``"chat"`` or ``"responses"`` for ``openai``, ``"generate"`` or ``"chat"`` for
    ``huggingface``.

    Example::

        llm = create_llm()
        llm = create_llm("openai", model="gpt-4o-mini", base_url="http://127.0.0.1:8080/v1")
        llm = create_llm("openai:gpt-4o-mini", temperature=0)
        llm = create_llm(model="anthropic/claude-sonnet-4-5")
        llm = create_llm("openai", model="gpt-4.1", api="responses")
    """
    if (
        provider is None
        and model is not None
        and not os.path.exists(model)  # a relative path is not a provider prefix
        and (routed := route(model))
    ):
        # create_llm(model="anthropic/claude-sonnet-4-5"): the prefix names the provider.
        provider, model = routed
    name, routed_model = parse_model_string(provider or "local")
    model = model or routed_model
    cls = _provider_class(name)
    # A provider that speaks more than one wire API picks the class for `api=` (and may infer
    # it from the rest of the config): OpenAI chat or responses, TGI native or chat.
    api = config.pop("api", None)
    for_api = getattr(cls, "for_api", None)
    if for_api is not None:
        cls = for_api(api, config)
    elif api is not None:
        raise ConfigurationError(f"provider {name!r} speaks one API: it takes no api=")
    defaults = {key: config.pop(key) for key in (*GENERATION_PARAMS, "system_prompt") if key in config}
    accepted = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = [key for key in config if key not in accepted]
    if unknown and not takes_any:
        options = sorted(k for k in accepted if k not in ("self", "model"))
        raise ConfigurationError(
            f"provider {name!r} does not take {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options)}"
        )
    try:
        instance = cls(model, **config)
    except TypeError as exc:  # an option a nested layer rejected
        raise ConfigurationError(f"provider {name!r}: {exc}") from None
    return LLM(instance, defaults)


class LLM:
    """A model at a provider, ready to generate. Made by :func:`create_llm`.

    Example::

        llm = create_llm()
        print(llm.generate("Say hi").text)
        for chunk in llm.generate_stream("Write a haiku about rivers."):
            print(chunk, end="", flush=True)
    """

    def __init__(self, provider: Provider, defaults: dict[str, Any] | None = None) -> None:
        self.provider = provider
        self.defaults = dict(defaults or {})

    @property
    def model(self) -> str:
        return self.provider.model

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def get_capabilities(self) -> Capabilities:
        """What this provider and model support, keyed by :class:`ModelCapability`."""
        return self.provider.capabilities()

    # -- building a call -----------------------------------------------------------------------

    def _call(
        self,
        prompt: str | None,
        messages: Sequence[Message] | None,
        system_prompt: str | None,
        params: dict[str, Any],
    ) -> Call:
        if prompt is None and not messages:
            raise ValueError("nothing to generate from: pass a prompt or messages=[...]")
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
        system = system_prompt if system_prompt is not None else self.defaults.get("system_prompt")
        built: list[Message] = []
        if system:
            built.append({"role": "system", "content": system})
        if messages:
            for message in messages:
                if not isinstance(message, dict) or "role" not in message:
                    raise ValueError(f"a message must be a dict with a 'role': {message!r}")
                built.append(dict(message))
        if prompt is not None:
            built.append({"role": "user", "content": prompt})
        merged = {k: v for k, v in self.defaults.items() if k != "system_prompt"}
        merged.update((k, v) for k, v in params.items() if v is not None)
        if merged.get("tools") and not has_capability(
            self.provider.capabilities(), ModelCapability.TOOLS
        ):
            # Declared capabilities are enforced here, before anything is sent.
            raise ConfigurationError(
                f"provider {self.provider.name!r} (model {self.provider.model!r}) cannot call "
                f"tools; use a provider whose capabilities include TOOLS"
            )
        return Call(built, merged)

    def _accumulator(self) -> Accumulator:
        return Accumulator(
            model=self.provider.model, provider=self.provider.name, started_at=time.perf_counter()
        )

    # -- sync ----------------------------------------------------------------------------------

    @overload
    def generate(
        self,
        prompt: str | None = ...,
        *,
        stream: Literal[False] = ...,
        messages: Sequence[Message] | None = ...,
        system_prompt: str | None = ...,
        **params: Any,
    ) -> Response: ...

    @overload
    def generate(
        self,
        prompt: str | None = ...,
        *,
        stream: Literal[True],
        messages: Sequence[Message] | None = ...,
        system_prompt: str | None = ...,
        **params: Any,
    ) -> Stream: ...

    def generate(
        self,
        prompt: str | None = None,
        *,
        stream: bool = False,
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        **params: Any,
    ) -> Response | Stream:
        """Generate an answer: a :class:`Response`, or with ``stream=True`` a :class:`Stream`.

        ``params`` are generation settings (``temperature``, ``max_tokens``, ``top_p``,
        ``stop``, ``seed``); any other keyword goes to the provider's request as it is.
        """
        if stream:
            return self.generate_stream(
                prompt, messages=messages, system_prompt=system_prompt, **params
            )
        call = self._call(prompt, messages, system_prompt, params)
        accumulator = self._accumulator()
        for event in self.provider.complete(call):
            accumulator.add(event)
        return accumulator.response()

    def generate_stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        **params: Any,
    ) -> Stream:
        """Stream an answer: iterate the result for text chunks as they arrive.

        The request is sent before this returns, so connection and HTTP errors raise here.
        """
        call = self._call(prompt, messages, system_prompt, params)
        accumulator = self._accumulator()
        return Stream(self.provider.open_stream(call), accumulator, owner=self)

    # -- async ---------------------------------------------------------------------------------

    @overload
    async def generate_async(
        self,
        prompt: str | None = ...,
        *,
        stream: Literal[False] = ...,
        messages: Sequence[Message] | None = ...,
        system_prompt: str | None = ...,
        **params: Any,
    ) -> Response: ...

    @overload
    async def generate_async(
        self,
        prompt: str | None = ...,
        *,
        stream: Literal[True],
        messages: Sequence[Message] | None = ...,
        system_prompt: str | None = ...,
        **params: Any,
    ) -> AsyncStream: ...

    async def generate_async(
        self,
        prompt: str | None = None,
        *,
        stream: bool = False,
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        **params: Any,
    ) -> Response | AsyncStream:
        """Like :meth:`generate`, without blocking the event loop.

        With ``stream=True`` the request is sent before the await returns, and the result is
        an :class:`AsyncStream` to read with ``async for``.
        """
        if stream:
            return await self.agenerate_stream(
                prompt, messages=messages, system_prompt=system_prompt, **params
            ).start()
        call = self._call(prompt, messages, system_prompt, params)
        accumulator = self._accumulator()
        for event in await self.provider.acomplete(call):
            accumulator.add(event)
        return accumulator.response()

    def agenerate_stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system_prompt: str | None = None,
        **params: Any,
    ) -> AsyncStream:
        """Stream an answer asynchronously: ``async for chunk in llm.agenerate_stream(...)``.

        The request is sent on first use of the stream.
        """
        call = self._call(prompt, messages, system_prompt, params)
        accumulator = self._accumulator()
        provider = self.provider

        async def opener() -> Any:
            return await provider.aopen_stream(call)

        return AsyncStream(opener, accumulator, owner=self)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the provider's connections."""
        self.provider.close()

    async def aclose(self) -> None:
        await self.provider.aclose()

    def __enter__(self) -> LLM:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> LLM:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<spout.LLM provider={self.provider.name!r} model={self.provider.model!r}>"
