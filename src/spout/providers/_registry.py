"""Which providers there are, by name: spout's own, then those installed packages declare.

The rest of spout finds a provider here, by the name a caller gives, and then asks the class
about itself (:class:`~spout.providers.Provider`'s hooks); no module outside this package
names a provider class.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from collections.abc import Iterator, Mapping

from .._errors import ConfigurationError
from ._base import Provider

__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
    "is_provider",
    "known_context_windows",
    "litellm_name",
    "litellm_names",
    "litellm_provider_of",
    "provider_class",
]

#: The entry-point group a package declares providers in: ``name = "module:Class"``.
ENTRY_POINT_GROUP = "spout.providers"

#: spout's own providers: name -> (module, class), imported on first use so ``import spout``
#: stays light. pyproject.toml declares the same entry points (a test holds the two equal).
#: Where providers share a declaration by inheritance (a profile inherits OpenAI's
#: ``litellm_models``), the first in this order answers: OpenAI's adapter comes before the
#: classes that subclass it.
BUILT_IN: dict[str, tuple[str, str]] = {
    "anthropic": ("spout.providers.anthropic", "AnthropicProvider"),
    "bedrock": ("spout.providers.bedrock", "BedrockProvider"),
    "gemini": ("spout.providers.gemini", "GeminiProvider"),
    "vertex": ("spout.providers.vertex", "VertexProvider"),
    "huggingface": ("spout.providers.huggingface", "HuggingFaceProvider"),
    "local": ("spout.providers.local", "LocalProvider"),
    "ollama": ("spout.providers.ollama", "OllamaProvider"),
    "openai": ("spout.providers.openai", "OpenAIProvider"),
    "openai_responses": ("spout.providers.openai_responses", "OpenAIResponsesProvider"),
    "azure": ("spout.providers.azure", "AzureOpenAIProvider"),
    # OpenAI-compatible services and servers: profiles of the one chat adapter.
    "openrouter": ("spout.providers.profiles", "OpenRouterProvider"),
    "vllm": ("spout.providers.profiles", "VLLMProvider"),
    "llamacpp": ("spout.providers.profiles", "LlamaCppProvider"),
    "lmstudio": ("spout.providers.profiles", "LMStudioProvider"),
    "together": ("spout.providers.profiles", "TogetherProvider"),
    "groq": ("spout.providers.profiles", "GroqProvider"),
    "deepseek": ("spout.providers.profiles", "DeepSeekProvider"),
    "mistral": ("spout.providers.profiles", "MistralProvider"),
    "xai": ("spout.providers.profiles", "XAIProvider"),
    "cohere": ("spout.providers.cohere", "CohereProvider"),
    "transformers": ("spout.providers.transformers", "TransformersProvider"),
}


def plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Providers that installed packages declare, by name (read anew: a package installed
    while the process runs is found too; only names not built in are looked up here)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name.strip().lower(), entry)
    return found


def is_provider(name: str) -> bool:
    """Whether ``name`` is a provider: spout's own or an installed package's."""
    return name in BUILT_IN or name in plugins()


def provider_class(name: str) -> type[Provider]:
    """The class for a provider name: spout's own first (a package cannot take over a
    built-in name), then the ``spout.providers`` entry points of installed packages."""
    if name in BUILT_IN:
        return _built_in(name)
    found = plugins()
    entry = found.get(name)
    if entry is None:
        known = ", ".join(sorted({*BUILT_IN, *found}))
        raise ConfigurationError(f"unknown provider {name!r}; known providers: {known}")
    return _load(name, entry)


def _built_in(name: str) -> type[Provider]:
    module_name, class_name = BUILT_IN[name]
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls


def _load(name: str, entry: importlib.metadata.EntryPoint) -> type[Provider]:
    where = entry.dist.name if entry.dist is not None else entry.value
    try:
        loaded = entry.load()
    except Exception as exc:
        raise ConfigurationError(
            f"provider {name!r} (from {where}) could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Provider)):
        raise ConfigurationError(
            f"provider {name!r} (from {where}) is {entry.value}, which is not a subclass of "
            "spout.providers.Provider"
        )
    return loaded


def _every_class() -> Iterator[tuple[str, type[Provider]]]:
    """Every provider by name: spout's own in their order, then the plugins, each loaded only
    when the ones before did not answer (one that cannot be loaded is passed over here, and
    named in the error when a caller asks for it by name)."""
    yield from _built_in_classes()
    for name, entry in plugins().items():
        if name not in BUILT_IN:
            try:
                yield name, _load(name, entry)
            except ConfigurationError:
                continue


@functools.cache
def _built_in_classes() -> tuple[tuple[str, type[Provider]], ...]:
    return tuple((name, _built_in(name)) for name in BUILT_IN)


@functools.cache
def known_context_windows() -> Mapping[str, int]:
    """Every built-in provider's :attr:`Provider.context_windows` in one table."""
    windows: dict[str, int] = {}
    for _, cls in _built_in_classes():
        windows.update(cls.context_windows)
    return windows


def litellm_name(prefix: str) -> str:
    """spout's name for a litellm provider prefix: a provider's own name is its own; another
    (``"ollama_chat"``) is the name of the first provider that lists it in
    :attr:`Provider.litellm_prefixes`; a prefix no provider knows is returned as it is."""
    if prefix in BUILT_IN or prefix in plugins():
        return prefix
    for name, cls in _every_class():
        if prefix in cls.litellm_prefixes:
            return name
    return prefix


def litellm_provider_of(model: str) -> str | None:
    """The provider a bare model name (no provider prefix) names by how it begins
    (:attr:`Provider.litellm_models`), as in litellm; None when none does."""
    for name, cls in _every_class():
        if cls.litellm_models and model.startswith(cls.litellm_models):
            return name
    return None


def litellm_names() -> list[str]:
    """spout's own providers' names and litellm's other names for them, sorted."""
    names = set(BUILT_IN)
    for _, cls in _built_in_classes():
        names.update(cls.litellm_prefixes)
    return sorted(names)
