"""Hugging Face: text-generation-inference's native API, and the OpenAI-compatible router."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from .._capabilities import Capabilities
from .._errors import (
    _CONTEXT_MARKERS,
    BadRequestError,
    ConfigurationError,
    ContextWindowExceededError,
    InternalServerError,
    OverloadedError,
    ProtocolError,
    ProviderError,
    error_for_status,
)
from .._events import Event, Finish, FinishReason, TextDelta, Usage
from .._files import files_in, unsupported
from .._request import HTTPRequest
from ._base import (
    Call,
    HTTPProvider,
    OutputShape,
    Provider,
    SSEStreamParser,
    WireMapper,
    env_value,
    load_json,
    streaming_capabilities,
)
from ._common import bearer_headers, error_json, error_text, retry_after_seconds
from .openai import IMAGES_ONLY, FileRules, OpenAIProvider

if TYPE_CHECKING:
    from .._cost import Pricing
    from .._output_format import OutputFormat

__all__ = [
    "HuggingFaceChatProvider",
    "HuggingFaceProvider",
    "PromptTemplate",
    "render_prompt",
]

#: Renders chat messages into the single ``inputs`` string TGI's native API takes.
PromptTemplate = Callable[[Sequence[Mapping[str, Any]]], str]

# TGI's FinishReason (router/src/lib.rs): eos_token, stop_sequence, length.
_FINISH: dict[str, FinishReason] = {
    "eos_token": "stop",
    "stop_sequence": "stop",
    "length": "length",
}

# TGI's InferError.error_type() (router/src/infer/mod.rs) -> the spout error it means. The
# HTTP statuses TGI pairs with them (429 overloaded, 422 validation, 424 generation, 500
# incomplete) say less than the type does, so the type decides when it is known.
_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "overloaded": OverloadedError,
    "validation": BadRequestError,
    "template_error": BadRequestError,
    "missing_template_variable": BadRequestError,
    "tool_error": BadRequestError,
    "generation": InternalServerError,
    "incomplete_generation": InternalServerError,
}


def _text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def render_prompt(messages: Sequence[Mapping[str, Any]]) -> str:
    """The default rendering of chat messages into one prompt for TGI's native API.

    A lone user message is sent as its content alone. Anything else becomes one
    ``role: content`` line per message, then ``assistant:`` for the model to continue. This is
    not the model's chat template: pass ``prompt_template=`` for that, or use ``api="chat"``,
    where the server applies the template itself.

    >>> render_prompt([{"role": "user", "content": "Hi"}])
    'Hi'
    >>> render_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    'system: Be brief.\\nuser: Hi\\nassistant:'
    """
    if len(messages) == 1 and messages[0].get("role") == "user":
        return _text(messages[0].get("content"))
    lines = [f"{message.get('role')}: {_text(message.get('content'))}" for message in messages]
    lines.append("assistant:")
    return "\n".join(lines)


def _error(
    error: Any,
    error_type: Any,
    *,
    status_code: int | None,
    provider: str,
    model: str | None,
    body: Any,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    message = str(error)
    kind = str(error_type) if error_type else None
    cls = _ERROR_TYPES.get(kind or "")
    if cls is None and kind and kind.startswith("incomplete"):
        cls = InternalServerError  # newer TGI tells a stream that ended early apart
    if cls is None:
        if status_code is not None:
            return error_for_status(
                status_code,
                message,
                provider=provider,
                model=model,
                request_id=request_id,
                body=body,
                error_type=kind,
                retry_after=retry_after,
            )
        cls = ProviderError
    if cls is BadRequestError and any(m in message.lower() for m in _CONTEXT_MARKERS):
        cls = ContextWindowExceededError
    return cls(
        message,
        provider=provider,
        model=model,
        status_code=status_code,
        request_id=request_id,
        body=body,
        error_type=kind,
        retry_after=retry_after,
    )


class _TGIMapper(WireMapper):
    """Turns TGI's ``StreamResponse`` objects (and the ``/generate`` answer) into events."""

    __slots__ = ("_done",)

    def __init__(self, provider: str, model: str) -> None:
        super().__init__(provider, model)
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def map(self, data: dict[str, Any]) -> list[Event]:
        error = data.get("error")
        if error is not None:
            # An error event inside the 200 stream: {"error": ..., "error_type": ...}
            # (router/src/server.rs, `impl From<InferError> for Event`).
            raise _error(
                error,
                data.get("error_type"),
                status_code=None,
                provider=self._provider,
                model=self._model,
                body=data,
            )
        if self._done:
            return []
        events: list[Event] = []
        token = data.get("token")
        # Special tokens (end of sequence and the like) are not text (StreamResponse docs).
        if token and not token.get("special"):
            text = token.get("text")
            if text:
                events.append(TextDelta(text))
        if data.get("generated_text") is not None:
            # The last event carries the whole text, and details when they were asked for.
            events += self.finish(data.get("details"))
        return events

    def finish(self, details: Any) -> list[Event]:
        self._done = True
        events: list[Event] = []
        raw: str | None = None
        if isinstance(details, dict):
            raw = details.get("finish_reason")
            extras = {"seed": details["seed"]} if details.get("seed") is not None else {}
            input_tokens = details.get("input_length")
            if input_tokens is None and details.get("prefill"):
                # /generate has no input_length; its prefill (decoder_input_details) does.
                input_tokens = len(details["prefill"])
            events.append(Usage(input_tokens, details.get("generated_tokens"), extras))
        events.append(Finish(_FINISH.get(raw or "", "stop"), raw))
        return events


class _TGIStreamParser(SSEStreamParser[_TGIMapper]):
    """SSE bytes in, events out, for ``/generate_stream``."""

    __slots__ = ()

    def _close(self) -> list[Event]:
        # No [DONE] on /generate_stream: the end is the event with generated_text.
        self._end(self._mapper.done, "the stream ended before its last token (no generated_text)")
        return []


class HuggingFaceProvider(HTTPProvider):
    """A model served by text-generation-inference (TGI), through its native API.

    Streams from ``{base_url}/generate_stream``; non-streamed calls use ``{base_url}/generate``.

    Example::

        llm = create_llm("huggingface", base_url="http://localhost:8080")
        llm = create_llm("huggingface", model="meta-llama/Llama-3.1-8B-Instruct", api="chat")

    ``base_url`` defaults to ``HF_BASE_URL``, else ``http://localhost:8080``. A key
    (``api_key=`` or ``HF_TOKEN``) is sent as a bearer token when there is one: a local TGI
    needs none, an Inference Endpoint does. TGI serves one model, so ``model`` is only a label.

    TGI's native API takes one ``inputs`` string: the messages are rendered by
    ``prompt_template`` (default :func:`render_prompt`). ``api="chat"``, or a ``base_url``
    ending in ``/v1``, selects :class:`HuggingFaceChatProvider` instead: the OpenAI-compatible
    chat completions that TGI and the Hugging Face router serve, with the model's own chat
    template and tool calls.

    Generation settings go into ``parameters`` (``max_tokens`` as ``max_new_tokens``); so do
    other keywords (``top_k``, ``repetition_penalty``, ``grammar``...). ``temperature=0`` asks
    for greedy decoding, which TGI spells ``do_sample: false`` (it rejects a zero temperature).
    """

    name: ClassVar[str] = "huggingface"
    # TGI is a server one runs (an Inference Endpoint is billed by the hour, not the token).
    self_hosted: ClassVar[bool] = True
    default_model: ClassVar[str | None] = "tgi"
    default_base_url: ClassVar[str] = "http://localhost:8080"
    base_url_env: ClassVar[tuple[str, ...]] = ("HF_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("HF_TOKEN",)
    # Models under Hugging Face's names (meta-llama/Llama-3.1-8B-Instruct, which Groq and
    # Together write the same way): Meta's Llama 3.1-3.3 model cards, and SmolLM2's.
    context_windows: ClassVar[Mapping[str, int]] = {
        "llama-3.1": 131_072,
        "llama-3.2": 131_072,
        "llama-3.3": 131_072,
        "meta-llama-3.1": 131_072,
        "smollm2": 8_192,
    }

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        prompt_template: PromptTemplate | None = None,
        **transport: Any,
    ) -> None:
        super().__init__(model, headers=headers, **transport)
        self._resolve_endpoint(base_url, api_key)
        self.prompt_template: PromptTemplate = prompt_template or render_prompt
        self._headers = bearer_headers(self.api_key)

    @classmethod
    def for_api(cls, api: str | None, config: Mapping[str, Any]) -> type[Provider]:
        """The class that speaks ``api``: ``"generate"`` (TGI native) or ``"chat"``.

        Without ``api``, a base URL ending in ``/v1`` (as the OpenAI SDK takes it) means chat.
        """
        if api is None:
            base_url = config.get("base_url") or env_value(*cls.base_url_env) or ""
            api = "chat" if str(base_url).rstrip("/").endswith("/v1") else "generate"
        if api == "chat":
            return HuggingFaceChatProvider
        if api == "generate":
            return cls
        raise ConfigurationError(
            f"provider {cls.name!r} has no api {api!r}; choose 'generate' (TGI's native API) "
            "or 'chat' (OpenAI-compatible chat completions)"
        )

    def capabilities(self) -> Capabilities:
        # Usage: details: true is always asked for. A system prompt is rendered into the prompt.
        # No files: the native API takes one text prompt (api="chat" takes images).
        return {
            **streaming_capabilities(tools=False, tool_streaming=False, reasoning=False),
            **FileRules().capabilities(),
        }

    def output_shape(self, fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
        # TGI's guidance: parameters.grammar {"type": "json", "value": schema}
        # (huggingface.co/docs/text-generation-inference/conceptual/guidance), plus the
        # instruction, which tells the model what to put there.
        grammar = {"type": "json", "value": fmt.schema or {"type": "object"}}
        return OutputShape({**params, "grammar": grammar})

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        for file in files_in(call.messages):
            # Any file, not only those a capability names (a text file too): the prompt
            # template would keep only the text parts, and the model would never see it.
            raise unsupported(
                self.name,
                file,
                "TGI's native API takes one text prompt (inputs); use api='chat' for a "
                "vision model, whose server takes images",
            )
        parameters: dict[str, Any] = {}
        for key, value in call.params.items():
            if value is None or key == "stream":
                continue
            if key == "max_tokens":
                parameters["max_new_tokens"] = value
            elif key == "stop":
                parameters["stop"] = [value] if isinstance(value, str) else list(value)
            elif key == "temperature":
                # TGI rejects temperature <= 0 ("`temperature` must be strictly positive",
                # router/src/validation.rs); greedy decoding is do_sample false, as TGI's own
                # OpenAI route does for temperature 0 (router/src/server.rs, completions).
                if value > 0:
                    parameters["temperature"] = value
                    parameters["do_sample"] = True
                else:
                    parameters["do_sample"] = False
            elif key == "top_p":
                # TGI takes 0 < top_p < 1; 1 means no nucleus filtering, which is the default.
                if value < 1:
                    parameters["top_p"] = value
            else:
                parameters[key] = value
        # Details carry the finish reason and token counts on the last event.
        parameters.setdefault("details", True)
        body = {"inputs": self.prompt_template(call.messages), "parameters": parameters}
        url = f"{self.base_url}/generate_stream" if stream else f"{self.base_url}/generate"
        return self._post_json(url, self._headers, body, stream=stream)

    def new_parser(self, call: Call) -> _TGIStreamParser:
        return _TGIStreamParser(_TGIMapper(self.name, self.model))

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        data = load_json(body)
        if isinstance(data, list) and len(data) == 1:
            data = data[0]  # the root route's answer is a one-element list
        mapper = _TGIMapper(self.name, self.model)
        if isinstance(data, dict) and data.get("error") is not None:
            return mapper.map(data)  # raises
        if not isinstance(data, dict) or not isinstance(data.get("generated_text"), str):
            raise ProtocolError("the response has no generated_text", data=body)
        # /generate's text has special tokens removed already (GenerateResponse).
        events: list[Event] = []
        if data["generated_text"]:
            events.append(TextDelta(data["generated_text"]))
        events += mapper.finish(data.get("details"))
        return events

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        # TGI's ErrorResponse: {"error": "...", "error_type": "..."} (router/src/lib.rs).
        data = error_json(body)
        if isinstance(data, dict) and data.get("error") is not None:
            error, error_type = data["error"], data.get("error_type")
            if isinstance(error, dict):  # a proxy's OpenAI-style error object
                error, error_type = error.get("message", error), error.get("type", error_type)
        else:
            error = data = error_text(status, body)
            error_type = None
        return _error(
            error,
            error_type,
            status_code=status,
            provider=self.name,
            model=self.model,
            body=data,
            request_id=self._request_id(headers),
            retry_after=retry_after_seconds(headers),
        )


class HuggingFaceChatProvider(OpenAIProvider):
    """OpenAI-compatible chat completions on Hugging Face: the router, or TGI's ``/v1``.

    Selected by ``create_llm("huggingface", model=..., api="chat")``, or by a ``base_url``
    ending in ``/v1``. The default is the router, ``https://router.huggingface.co/v1``, which
    needs ``HF_TOKEN`` (or ``api_key=``).
    """

    name: ClassVar[str] = "huggingface"
    default_base_url: ClassVar[str] = "https://router.huggingface.co/v1"
    base_url_env: ClassVar[tuple[str, ...]] = ("HF_BASE_URL",)
    api_key_env: ClassVar[tuple[str, ...]] = ("HF_TOKEN",)

    def pricing(self) -> Pricing:
        """The router charges what the provider it sends to charges: a model named with one
        (``"openai/gpt-oss-120b:groq"``) is priced by genai-prices' ``huggingface_groq``, a
        model without one has no known price. Any other endpoint is TGI's ``/v1``, a server
        of the caller's own: free."""
        pricing = super().pricing()
        if pricing.base_url is not None:
            return replace(pricing, price_list=None, base_url=None, free=True)
        model, _, routed = self.model.partition(":")
        return replace(pricing, price_list=f"huggingface_{routed}" if routed else None, model=model)

    def file_rules(self) -> FileRules:
        # TGI's Messages API takes image_url parts (a URL or a data URL) for a vision
        # model ("Vision Language Model Inference in TGI"), as the router's providers do;
        # neither documents documents or audio.
        return IMAGES_ONLY
