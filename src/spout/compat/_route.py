"""Which spout provider and model a litellm model string names."""

from __future__ import annotations

from .._errors import ConfigurationError
from .._llm import _PROVIDERS, is_provider

# litellm's provider prefixes that spout knows under another name.
_ALIASES = {
    "together_ai": "together",
    "hosted_vllm": "vllm",
    "lm_studio": "lmstudio",
    "ollama_chat": "ollama",
    "llamafile": "llamacpp",
    "openai_like": "openai",
    "text-completion-openai": "openai",
}

# A bare model name (no prefix) of these families names its provider, as in litellm.
_FAMILIES = (
    (("gpt-", "o1", "o3", "o4", "chatgpt-", "ft:gpt-"), "openai"),
    (("claude-",), "anthropic"),
    (("gemini-",), "gemini"),
)


def _route(model: str, custom_llm_provider: str | None) -> tuple[str, str | None]:
    """The spout provider and model a litellm model string names."""
    if not isinstance(model, str) or not model:
        raise TypeError(
            f"model must be a non-empty str such as 'openai/gpt-4o-mini', not {model!r}"
        )
    if custom_llm_provider:
        name = _ALIASES.get(custom_llm_provider, custom_llm_provider)
        prefix = f"{custom_llm_provider}/"
        return name, model[len(prefix) :] if model.startswith(prefix) else model
    head, slash, rest = model.partition("/")
    name = _ALIASES.get(head, head)
    if slash and is_provider(name):
        return name, rest or None
    if not slash and is_provider(name):
        return name, None  # "local": the provider's default model
    for prefixes, provider in _FAMILIES:
        if model.startswith(prefixes):
            return provider, model
    known = ", ".join(sorted({*_PROVIDERS, *_ALIASES}))
    raise ConfigurationError(
        f"cannot tell the provider of model {model!r}: prefix it with one, as in "
        f"'openai/{model}' (known prefixes: {known})"
    )
