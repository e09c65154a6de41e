"""OpenAI-compatible services and servers, as small profiles of the one chat adapter.

A profile names its endpoint, its key's environment variable and its quirks; the wire format
is :class:`~spout.providers.openai.OpenAIProvider`'s. Any other compatible server needs only
``create_llm("openai", base_url=...)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .openai import OpenAIProvider

__all__ = [
    "DeepSeekProvider",
    "GroqProvider",
    "LMStudioProvider",
    "LlamaCppProvider",
    "OpenRouterProvider",
    "TogetherProvider",
    "VLLMProvider",
]


class OpenRouterProvider(OpenAIProvider):
    """OpenRouter: many providers' models behind one OpenAI-compatible API.

    Example::

        llm = create_llm("openrouter", model="anthropic/claude-sonnet-4.5",
                         referer="https://myapp.example", title="My App")

    ``referer`` and ``title`` become the ``HTTP-Referer`` and ``X-Title`` headers OpenRouter
    uses to attribute an app (https://openrouter.ai/docs/api-reference/overview). Its
    ``: OPENROUTER PROCESSING`` keep-alive comments are ignored, an error inside the stream is
    raised with the partial response, and the cost it reports is kept in ``usage.extras``.
    """

    name: ClassVar[str] = "openrouter"
    default_base_url: ClassVar[str] = "https://openrouter.ai/api/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("OPENROUTER_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("OPENROUTER_API_KEY",)

    def __init__(
        self,
        model: str | None = None,
        *,
        referer: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **config: Any,
    ) -> None:
        app = {"HTTP-Referer": referer, "X-Title": title}
        merged = {**{k: v for k, v in app.items() if v}, **(headers or {})}
        super().__init__(model, headers=merged or None, **config)


class VLLMProvider(OpenAIProvider):
    """A vLLM server (``vllm serve``), at http://localhost:8000/v1 unless told otherwise."""

    name: ClassVar[str] = "vllm"
    default_base_url: ClassVar[str] = "http://localhost:8000/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("VLLM_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("VLLM_API_KEY",)
    requires_key: ClassVar[bool] = False
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("hosted_vllm",)


class LlamaCppProvider(OpenAIProvider):
    """A llama.cpp server (``llama-server`` or ``python -m llama_cpp.server``), port 8080.

    llama_cpp.server sends no usage in streams (it ignores ``stream_options``).
    """

    name: ClassVar[str] = "llamacpp"
    default_base_url: ClassVar[str] = "http://localhost:8080/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("LLAMACPP_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("LLAMACPP_API_KEY",)
    requires_key: ClassVar[bool] = False
    usage_in_stream: ClassVar[bool] = False
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("llamafile",)


class LMStudioProvider(OpenAIProvider):
    """LM Studio's local server, at http://localhost:1234/v1."""

    name: ClassVar[str] = "lmstudio"
    default_base_url: ClassVar[str] = "http://localhost:1234/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("LMSTUDIO_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("LMSTUDIO_API_KEY",)
    requires_key: ClassVar[bool] = False
    usage_in_stream: ClassVar[bool] = False  # not documented: declared only when known
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("lm_studio",)


class TogetherProvider(OpenAIProvider):
    """Together AI (https://docs.together.ai/docs/openai-api-compatibility)."""

    name: ClassVar[str] = "together"
    default_base_url: ClassVar[str] = "https://api.together.xyz/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("TOGETHER_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("TOGETHER_API_KEY",)
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("together_ai",)


class GroqProvider(OpenAIProvider):
    """Groq (https://console.groq.com/docs/openai)."""

    name: ClassVar[str] = "groq"
    default_base_url: ClassVar[str] = "https://api.groq.com/openai/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("GROQ_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("GROQ_API_KEY",)


class DeepSeekProvider(OpenAIProvider):
    """DeepSeek (https://api-docs.deepseek.com); ``deepseek-reasoner`` streams
    ``reasoning_content``, which arrives as reasoning."""

    name: ClassVar[str] = "deepseek"
    default_base_url: ClassVar[str] = "https://api.deepseek.com"
    base_url_env: ClassVar[tuple[str, ...]] = ("DEEPSEEK_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("DEEPSEEK_API_KEY",)
