"""Which spout provider and model a litellm model string names."""

from __future__ import annotations

from .._errors import ConfigurationError
from ..providers._registry import is_provider, litellm_name, litellm_names, litellm_provider_of


def _route(model: str, custom_llm_provider: str | None) -> tuple[str, str | None]:
    """The spout provider and model a litellm model string names.

    A provider prefix is spout's name or litellm's (``ollama_chat``), which each provider
    lists (:attr:`Provider.litellm_prefixes <spout.providers.Provider.litellm_prefixes>`);
    a bare model name finds its provider by how it begins (``claude-``), as in litellm.
    """
    if not isinstance(model, str) or not model:
        raise TypeError(
            f"model must be a non-empty str such as 'openai/gpt-4o-mini', not {model!r}"
        )
    if custom_llm_provider:
        name = litellm_name(custom_llm_provider)
        prefix = f"{custom_llm_provider}/"
        return name, model[len(prefix) :] if model.startswith(prefix) else model
    head, slash, rest = model.partition("/")
    name = litellm_name(head)
    if slash and is_provider(name):
        return name, rest or None
    if not slash and is_provider(name):
        return name, None  # "local": the provider's default model
    provider = litellm_provider_of(model)
    if provider is not None:
        return provider, model
    known = ", ".join(litellm_names())
    raise ConfigurationError(
        f"cannot tell the provider of model {model!r}: prefix it with one, as in "
        f"'openai/{model}' (known prefixes: {known})"
    )
