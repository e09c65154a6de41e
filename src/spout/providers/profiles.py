"""OpenAI-compatible services and servers, as small profiles of the one chat adapter.

A profile names its endpoint, its key's environment variable and its quirks; the wire format
is :class:`~spout.providers.openai.OpenAIProvider`'s. Any other compatible server needs only
``create_llm("openai", base_url=...)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from .._capabilities import Capabilities
from .._errors import ContextWindowExceededError, ProviderError
from .._events import Event, RawEvent, ReasoningDelta, TextDelta
from .._files import File
from ._base import Provider, streaming_capabilities
from ._common import ToolIds, error_json, error_text
from .openai import (
    IMAGES_ONLY,
    ChatChunkMapper,
    FileRules,
    OpenAIProvider,
    check_file,
    file_kind,
    file_name,
)

__all__ = [
    "DeepSeekProvider",
    "GroqProvider",
    "LMStudioProvider",
    "LlamaCppProvider",
    "MistralProvider",
    "OpenRouterProvider",
    "TogetherProvider",
    "VLLMProvider",
    "XAIProvider",
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
    Prompt-cache markers (``cache_control``) go on to the models that cache by them (OpenRouter's
    "Prompt Caching" guide).
    """

    name: ClassVar[str] = "openrouter"
    takes_cache_control: ClassVar[bool] = True
    price_list: ClassVar[str | None] = "openrouter"
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

    def file_rules(self) -> FileRules:
        # openrouter.ai/docs, "Multimodal": images (PNG, JPEG, WebP, GIF) by URL or data
        # URL; PDFs as a file part whose file_data is a data URL or a URL, on any model
        # (OpenRouter parses them for a model that cannot); audio as input_audio, base64
        # only ("direct URLs are not supported"), formats varying by the model's provider.
        return FileRules(
            frozenset({"image", "pdf", "audio"}),
            by_url=frozenset({"image", "pdf"}),
            image_types=_OPENROUTER_IMAGES,
        )


_OPENROUTER_IMAGES = frozenset(("image/png", "image/jpeg", "image/webp", "image/gif"))


class VLLMProvider(OpenAIProvider):
    """A vLLM server (``vllm serve``), at http://localhost:8000/v1 unless told otherwise."""

    name: ClassVar[str] = "vllm"
    price_list: ClassVar[str | None] = None
    self_hosted: ClassVar[bool] = True
    default_base_url: ClassVar[str] = "http://localhost:8000/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("VLLM_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("VLLM_API_KEY",)
    requires_key: ClassVar[bool] = False
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("hosted_vllm",)

    def file_rules(self) -> FileRules:
        # vLLM's "Multimodal Inputs" (online serving): image_url (a URL or a data URL) and
        # input_audio (base64) for a model that takes them; the served model answers.
        return _IMAGES_AND_AUDIO


# Images, and audio sent as base64 input_audio (never a URL).
_IMAGES_AND_AUDIO = FileRules(frozenset({"image", "audio"}))


class LlamaCppProvider(OpenAIProvider):
    """A llama.cpp server (``llama-server`` or ``python -m llama_cpp.server``), port 8080.

    llama_cpp.server sends no usage in streams (it ignores ``stream_options``).
    """

    name: ClassVar[str] = "llamacpp"
    price_list: ClassVar[str | None] = None
    self_hosted: ClassVar[bool] = True
    default_base_url: ClassVar[str] = "http://localhost:8080/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("LLAMACPP_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("LLAMACPP_API_KEY",)
    requires_key: ClassVar[bool] = False
    usage_in_stream: ClassVar[bool] = False
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("llamafile",)

    def file_rules(self) -> FileRules:
        # llama-server's multimodal support (docs/multimodal.md, libmtmd): image_url parts
        # for a vision model, input_audio for an audio one, when started with the model's
        # projector; without one it refuses them itself.
        return _IMAGES_AND_AUDIO


class LMStudioProvider(OpenAIProvider):
    """LM Studio's local server, at http://localhost:1234/v1."""

    name: ClassVar[str] = "lmstudio"
    price_list: ClassVar[str | None] = None
    self_hosted: ClassVar[bool] = True
    default_base_url: ClassVar[str] = "http://localhost:1234/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("LMSTUDIO_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("LMSTUDIO_API_KEY",)
    requires_key: ClassVar[bool] = False
    usage_in_stream: ClassVar[bool] = False  # not documented: declared only when known
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("lm_studio",)

    def file_rules(self) -> FileRules:
        # LM Studio's "Image Input": base64 images for a vision model (VLM).
        return IMAGES_ONLY


class TogetherProvider(OpenAIProvider):
    """Together AI (https://docs.together.ai/docs/openai-api-compatibility)."""

    name: ClassVar[str] = "together"
    price_list: ClassVar[str | None] = "together"
    default_base_url: ClassVar[str] = "https://api.together.xyz/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("TOGETHER_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("TOGETHER_API_KEY",)
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("together_ai",)

    def file_rules(self) -> FileRules:
        # Together's "Vision": image_url parts (URL or base64) for its vision models.
        return IMAGES_ONLY


class GroqProvider(OpenAIProvider):
    """Groq (https://console.groq.com/docs/openai)."""

    name: ClassVar[str] = "groq"
    price_list: ClassVar[str | None] = "groq"
    default_base_url: ClassVar[str] = "https://api.groq.com/openai/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("GROQ_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("GROQ_API_KEY",)

    def file_rules(self) -> FileRules:
        # Groq's "Images and Vision": image_url parts (URL or base64) for its vision models;
        # audio goes to its transcription endpoint, not to chat.
        return IMAGES_ONLY


class DeepSeekProvider(OpenAIProvider):
    """DeepSeek (https://api-docs.deepseek.com); ``deepseek-reasoner`` streams
    ``reasoning_content``, which arrives as reasoning."""

    name: ClassVar[str] = "deepseek"
    price_list: ClassVar[str | None] = "deepseek"
    default_base_url: ClassVar[str] = "https://api.deepseek.com"
    base_url_env: ClassVar[tuple[str, ...]] = ("DEEPSEEK_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("DEEPSEEK_API_KEY",)

    def file_rules(self) -> FileRules:
        # DeepSeek's chat API takes text: a user message's content is a string
        # (api-docs.deepseek.com, "Create Chat Completion"). A file fails before sending.
        return FileRules()


class MistralChunkMapper(ChatChunkMapper):
    """Mistral's chunks: a reasoning model (Magistral) sends ``delta.content`` as a list of
    parts, ``{"type": "thinking", "thinking": [{"type": "text", "text": ...}]}`` and
    ``{"type": "text", "text": ...}`` (DeltaMessageContent and ThinkChunk in mistralai's
    client-python), where other models send a string."""

    __slots__ = ()

    def map_into(self, chunk: dict[str, Any], events: list[Event]) -> None:
        choices = chunk.get("choices")
        if choices:
            delta = choices[0].get("delta")
            if delta and isinstance(delta.get("content"), list):
                if not self._started:
                    self._start(events, chunk.get("id"), chunk.get("model"))
                for part in delta["content"]:
                    events += _mistral_part(part)
                delta = {k: v for k, v in delta.items() if k != "content"}
                chunk = {**chunk, "choices": [{**choices[0], "delta": delta}, *choices[1:]]}
        super().map_into(chunk, events)


def _mistral_part(part: Any) -> list[Event]:
    """The events of one of Mistral's content parts: text, or thinking (its own list of text
    parts); image, reference (a source the answer cites, by its ids) and other parts carry no
    text to stream, and come as :class:`RawEvent` so that they do not vanish."""
    if isinstance(part, str):
        return [TextDelta(part)] if part else []
    if not isinstance(part, dict):
        return []
    kind = part.get("type")
    if kind == "text":
        return [TextDelta(part["text"])] if part.get("text") else []
    if kind == "thinking":
        thinking = part.get("thinking")
        if isinstance(thinking, str):
            return [ReasoningDelta(thinking)] if thinking else []
        texts = [p.get("text") for p in thinking or () if isinstance(p, dict)]
        return [ReasoningDelta(t) for t in texts if isinstance(t, str) and t]
    return [RawEvent(str(kind), part)]


# Mistral's tool-call ids: exactly nine letters and digits. A call id from another provider
# ("call_abc...", "toolu_...") is refused with a 422 ("Tool call id was ... but must be
# a-z, A-Z, 0-9, with a length of 9").
MISTRAL_TOOL_IDS = ToolIds(re.compile(r"[a-zA-Z0-9]{9}"), length=9)


def mistral_tool_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with every tool-call id Mistral would refuse replaced by nine letters and
    digits derived from it, alike in the assistant's ``tool_calls`` and in the ``tool``
    results that answer them (:meth:`ToolIds.rewrite`).

    >>> sent = mistral_tool_ids([
    ...     {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"name": "f"}}]},
    ...     {"role": "tool", "tool_call_id": "call_0", "content": "4"},
    ... ])
    >>> sent[0]["tool_calls"][0]["id"] == sent[1]["tool_call_id"] != "call_0"
    True
    """
    return MISTRAL_TOOL_IDS.rewrite(messages)


class MistralProvider(OpenAIProvider):
    """Mistral's API (https://docs.mistral.ai/api), OpenAI-compatible at
    https://api.mistral.ai/v1, keyed by ``MISTRAL_API_KEY``.

    Example::

        llm = create_llm("mistral", model="mistral-small-latest")
        print(llm.generate("Say hi").text)

    What Mistral takes otherwise than OpenAI is sent its way: tool-call ids from another
    provider's history are rewritten to the nine letters and digits Mistral accepts (the
    caller's messages and responses keep theirs), ``seed`` goes as ``random_seed``,
    ``tool_choice="required"`` as ``"any"``, and no ``stream_options`` is sent (Mistral
    refuses the key and reports usage on a stream's last chunk unasked). A reasoning model's
    thinking arrives as reasoning.
    """

    name: ClassVar[str] = "mistral"
    price_list: ClassVar[str | None] = "mistral"
    default_base_url: ClassVar[str] = "https://api.mistral.ai/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("MISTRAL_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("MISTRAL_API_KEY",)
    mapper_class: ClassVar[type[ChatChunkMapper]] = MistralChunkMapper
    # From Mistral's model pages.
    context_windows: ClassVar[Mapping[str, int]] = {
        "mistral-large": 131_072,
        "codestral": 262_144,
        "ministral": 131_072,
        "pixtral-large": 131_072,
    }
    # Models whose thinking is streamed apart from the answer.
    reasoning_models: ClassVar[tuple[str, ...]] = ("magistral-",)

    # Models that take audio (docs.mistral.ai, "Audio & Transcription": Voxtral).
    audio_models: ClassVar[tuple[str, ...]] = ("voxtral-",)

    def capabilities(self) -> Capabilities:
        # A tool call arrives whole in one chunk, arguments and all.
        caps = streaming_capabilities(
            tools=True,
            tool_streaming=False,
            reasoning=self.model.lower().startswith(self.reasoning_models),
            usage_in_stream=self.base_url == self.default_base_url,
        )
        return {**caps, **self.file_rules().capabilities()}

    def file_rules(self) -> FileRules:
        # Images for the vision models (the model answers for one without), documents by
        # document_url ("Document QnA"), audio for Voxtral as base64 only.
        kinds = {"image", "pdf"}
        if self.model.lower().startswith(self.audio_models):
            kinds.add("audio")
        return FileRules(frozenset(kinds), by_url=frozenset({"image", "pdf"}))

    def file_part(self, file: File, part: Mapping[str, Any]) -> dict[str, Any]:
        # Mistral's content chunks (ImageURLChunk, DocumentURLChunk, AudioChunk in
        # mistralai's client-python): an image's URL is a bare string (an object only to
        # carry a detail), a document goes as a document_url with its document_name (a
        # data: URL for bytes, as Mistral's OCR takes the same chunk), audio as the bare
        # base64 string under input_audio (docs.mistral.ai, "Chat with Audio").
        kind = file_kind(file, part)
        check_file(self.name, self.file_rules(), file, kind)
        if kind == "image":
            given = part.get("image_url")
            if isinstance(given, Mapping) and given.get("detail"):
                url: Any = {"url": file.data_url(), "detail": given["detail"]}
            else:
                url = file.data_url()
            return {"type": "image_url", "image_url": url}
        if kind == "audio":
            return {"type": "input_audio", "input_audio": file.base64()}
        return {
            "type": "document_url",
            "document_url": file.data_url(),
            "document_name": file_name(file),
        }

    def litellm_params(self, params: dict[str, Any]) -> dict[str, Any]:
        # Mistral refuses max_completion_tokens (extra_forbidden): it takes max_tokens.
        return Provider.litellm_params(self, params)

    def wire_body(self, body: dict[str, Any]) -> dict[str, Any]:
        # The request model of Mistral's API forbids keys it does not name (a 422,
        # "extra_forbidden"): ChatCompletionStreamRequest in mistralai's client-python.
        body.pop("stream_options", None)
        if "seed" in body:
            seed = body.pop("seed")
            body.setdefault("random_seed", seed)
        if body.get("tool_choice") == "required":
            body["tool_choice"] = "any"  # Mistral's name, which every version of it takes
        body["messages"] = mistral_tool_ids(body["messages"])
        return body

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        # Mistral's error bodies are not OpenAI's: {"object": "error", "message", "type",
        # "code"} at the top, a validation error's message a {"detail": [...]} object, and
        # a 401 {"detail": "Unauthorized"} or {"message": "Unauthorized", "request_id"}.
        error = self.error_object(status, body)
        if not isinstance(error, dict):
            error = {"message": error}
        message = error.get("message", error.get("detail"))
        if isinstance(message, dict):
            message = message.get("detail", message)
        if isinstance(message, list):
            message = "; ".join(_validation_error(item) for item in message)
        error = {**error, "message": message if isinstance(message, str) else str(message)}
        # The request id is in a header, else (a 401's) in the body.
        request_id = self._request_id(headers) or error.get("request_id")
        return self.chat_error(
            error, status, headers, request_id=request_id if isinstance(request_id, str) else None
        )


def _validation_error(item: Any) -> str:
    """One entry of a 422's ``detail`` list (pydantic's) as ``where: what``."""
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc") or ())
    what = str(item.get("msg") or item)
    return f"{where}: {what}" if where else what


class XAIChunkMapper(ChatChunkMapper):
    """xAI's chunks: ``completion_tokens`` leaves out the reasoning tokens counted in
    ``completion_tokens_details`` (``total_tokens`` is the three added up), which spout's
    ``output_tokens`` holds all the same."""

    __slots__ = ()
    reasoning_apart: ClassVar[bool] = True


_XAI_FILES = FileRules(frozenset({"image"}), image_types=frozenset(("image/jpeg", "image/png")))


class XAIProvider(OpenAIProvider):
    """xAI's Grok models (https://docs.x.ai), OpenAI-compatible at https://api.x.ai/v1,
    keyed by ``XAI_API_KEY``.

    Example::

        llm = create_llm("xai", model="grok-3-mini")
        response = llm.generate("Is 1013 prime?")
        print(response.reasoning, response.text)

    ``grok-3-mini`` streams its thinking as ``reasoning_content``, which arrives as
    reasoning (Grok 4 reasons without showing it). A wrong key is answered with a 400 (xAI's
    "Debugging Errors" page), raised as :class:`~spout.AuthenticationError` all the same.
    """

    name: ClassVar[str] = "xai"
    price_list: ClassVar[str | None] = "x-ai"
    default_base_url: ClassVar[str] = "https://api.x.ai/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("XAI_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("XAI_API_KEY",)
    mapper_class: ClassVar[type[ChatChunkMapper]] = XAIChunkMapper
    # From xAI's models page.
    context_windows: ClassVar[Mapping[str, int]] = {
        "grok-3": 131_072,
        "grok-4": 256_000,
    }
    # Models that stream reasoning_content.
    reasoning_models: ClassVar[tuple[str, ...]] = ("grok-3-mini",)

    def capabilities(self) -> Capabilities:
        # A tool call arrives whole in one chunk (xAI's function-calling guide).
        caps = streaming_capabilities(
            tools=True,
            tool_streaming=False,
            reasoning=self.model.lower().startswith(self.reasoning_models),
            usage_in_stream=self.base_url == self.default_base_url,
        )
        return {**caps, **self.file_rules().capabilities()}

    def file_rules(self) -> FileRules:
        # xAI's "Image Understanding": images by URL or data URL, jpg/jpeg or png. Its
        # chat completions take no documents or audio (files go through its Files API).
        return _XAI_FILES

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        # xAI's error bodies: {"code": "<the gRPC status, in words>", "error": "<message>"}.
        data = error_json(body)
        error: Any
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            error = {"message": data["error"]}
            if data.get("code") is not None:
                error["type"] = str(data["code"])
        elif isinstance(data, dict):
            error = data.get("error", data)
        else:
            error = {"message": error_text(status, body)}
        message = str(error.get("message") if isinstance(error, dict) else error)
        # A wrong key is a 400 here (docs.x.ai, "Debugging Errors"): raised as what it is.
        wrong_key = status == 400 and "incorrect api key" in message.lower()
        exc = self.chat_error(error, 401 if wrong_key else status, headers)
        exc.status_code = status
        if status == 400 and "maximum prompt length" in message.lower():
            # xAI's words for a prompt past the context window.
            exc = ContextWindowExceededError(
                exc.message,
                provider=exc.provider,
                model=exc.model,
                status_code=status,
                request_id=exc.request_id,
                body=exc.body,
                error_type=exc.error_type,
            )
        return exc
