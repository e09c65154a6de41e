"""Azure OpenAI: OpenAI's chat completions at a resource's deployment, with Azure's keys and filters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from .._capabilities import Capabilities
from .._errors import ConfigurationError, ProviderError, error_for_status
from .._events import Event
from .._request import HTTPRequest
from ._base import Call, TokenProvider, env_value, streaming_capabilities
from .openai import OPENAI_AUDIO_FORMATS, ChatChunkMapper, FileRules, OpenAIProvider

__all__ = ["DEFAULT_API_VERSION", "AzureOpenAIProvider"]

#: The api-version sent when none is given: the last dated GA version of Azure OpenAI's
#: inference API (https://learn.microsoft.com/azure/ai-services/openai/reference, "Latest GA
#: release"). Newer features come through the v1 API, ``api_version="v1"``.
DEFAULT_API_VERSION = "2024-10-21"

#: The first dated api-version that takes ``stream_options.include_usage``: it came in
#: 2024-09-01-preview (https://learn.microsoft.com/azure/ai-services/openai/api-version-deprecation);
#: an older version refuses the unknown argument with a 400.
_STREAM_USAGE_SINCE = "2024-09-01"


#: Headers that carry credentials a caller may give as headers instead: Azure's two, and the
#: subscription key of an Azure API Management gateway in front of the resource.
_CREDENTIAL_HEADERS = frozenset(("api-key", "authorization", "ocp-apim-subscription-key"))


class _AzureChunkMapper(ChatChunkMapper):
    """Chat completion chunks as Azure streams them.

    Azure's content filter adds chunks of its own (https://learn.microsoft.com/azure/
    ai-services/openai/concepts/content-filter-streaming): the first one carries
    ``prompt_filter_results`` and ``choices: []``, and annotation chunks (``content_filter_results``
    and offsets, no delta, ``finish_reason`` null, and may come after the finish) have
    ``"id": ""`` and ``"model": ""``. They hold no output. One before the response's first
    real chunk is passed over, so that the response takes its id and model from the model's
    chunks, not the filter's empty ones; the rest need no care (an annotation whose
    ``finish_reason`` is ``content_filter``, as the asynchronous filter sends, ends the
    response as such).
    """

    __slots__ = ()

    def map_into(self, chunk: dict[str, Any], events: list[Event]) -> None:
        if not self._started and not chunk.get("id") and not _has_output(chunk):
            return
        super().map_into(chunk, events)


def _has_output(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries anything but filter results: a delta, a finish, usage."""
    if chunk.get("usage") or chunk.get("error") is not None:
        return True
    return any(
        isinstance(choice, dict) and (choice.get("delta") or choice.get("finish_reason"))
        for choice in chunk.get("choices") or ()
    )


_AZURE_FILES = FileRules(frozenset({"image", "audio"}), audio_formats=OPENAI_AUDIO_FORMATS)


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: a deployment on an Azure resource, over OpenAI's chat completions.

    Example::

        llm = create_llm("azure", model="my-gpt-4o",          # the deployment's name
                         base_url="https://my-resource.openai.azure.com")  # AZURE_OPENAI_API_KEY

        from azure.identity import DefaultAzureCredential, get_bearer_token_provider
        tokens = get_bearer_token_provider(
            DefaultAzureCredential(), "https://cognitiveservices.azure.com/.default")
        llm = create_llm("azure", model="my-gpt-4o", token_provider=tokens)  # Entra ID

        llm = create_llm("azure", model="my-gpt-4o", api_version="v1")  # the v1 API

    The request goes to ``{base_url}/openai/deployments/{model}/chat/completions?api-version=...``
    (``api_version``, else ``OPENAI_API_VERSION``, else :data:`DEFAULT_API_VERSION`), or with
    ``api_version="v1"`` to ``{base_url}/openai/v1/chat/completions``, with no api-version.
    ``base_url`` is the resource's endpoint, else ``AZURE_OPENAI_ENDPOINT``.

    A key (``api_key``, else ``AZURE_OPENAI_API_KEY``) goes in the ``api-key`` header; a
    ``token_provider`` (a callable returning a Microsoft Entra ID token; async code may give
    one returning an awaitable) is asked before each request and its token sent as
    ``Authorization: Bearer``, and asked again once after a 401. A ``finish_reason`` of
    ``content_filter`` ends a stream as the ``content_filter`` finish; a prompt the filter
    refuses raises :class:`~spout.BadRequestError` (``error_type == "content_filter"``)
    naming the categories it flagged.
    """

    name: ClassVar[str] = "azure"
    price_list: ClassVar[str | None] = "azure"
    # No default: every resource has its own endpoint.
    default_base_url: ClassVar[str] = ""
    # Azure's own names first (openai-python's AzureOpenAI reads them), then litellm's.
    base_url_env: ClassVar[tuple[str, ...]] = ("AZURE_OPENAI_ENDPOINT", "AZURE_API_BASE")
    api_key_env: ClassVar[tuple[str, ...]] = ("AZURE_OPENAI_API_KEY", "AZURE_API_KEY")
    api_version_env: ClassVar[tuple[str, ...]] = ("OPENAI_API_VERSION", "AZURE_API_VERSION")
    requires_key: ClassVar[bool] = False  # a key or a token: checked in __init__
    # Azure's gateway names the request apim-request-id; x-request-id is OpenAI's name.
    request_id_headers: ClassVar[tuple[str, ...]] = ("apim-request-id", "x-request-id")
    # A deployment is named by its owner, so no model name says "Azure" (litellm's
    # "azure/<deployment>" reaches it by the provider's own name).
    litellm_models: ClassVar[tuple[str, ...]] = ()
    # completion(model="azure/<deployment>", api_version=..., azure_ad_token_provider=...)
    litellm_settings: ClassVar[Mapping[str, str]] = {
        "api_version": "api_version",
        "azure_ad_token_provider": "token_provider",
    }
    mapper_class: ClassVar[type[ChatChunkMapper]] = _AzureChunkMapper

    @classmethod
    def env_names(cls) -> tuple[str, ...]:
        return (*super().env_names(), *cls.api_version_env)

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_version: str | None = None,
        api_key: str | None = None,
        token_provider: TokenProvider | None = None,
        headers: dict[str, str] | None = None,
        stream_usage: bool = True,
        **transport: Any,
    ) -> None:
        # Checked before anything is built, so that a refused configuration holds nothing open.
        if not model:
            raise ConfigurationError(
                "provider 'azure' needs model=: the name of your deployment (Azure portal, "
                "Deployments), which the request path names"
            )
        endpoint = (base_url or env_value(*self.base_url_env) or "").rstrip("/")
        if not endpoint:
            raise ConfigurationError(
                "provider 'azure' needs your resource's endpoint: pass "
                "base_url='https://<resource>.openai.azure.com' or set AZURE_OPENAI_ENDPOINT"
            )
        endpoint, version = _endpoint_and_version(endpoint, api_version, self.api_version_env)
        if api_key and token_provider is not None:
            raise ConfigurationError(
                "provider 'azure': pass api_key= or token_provider=, not both (a key goes "
                "in the api-key header, a token as Authorization: Bearer)"
            )
        given = {name.lower() for name in headers or ()}
        if (
            token_provider is None
            and not (api_key or env_value(*self.api_key_env))
            and not given & _CREDENTIAL_HEADERS
        ):
            raise ConfigurationError(
                "provider 'azure' needs credentials: pass api_key=... (or set "
                "AZURE_OPENAI_API_KEY), or token_provider=... for Microsoft Entra ID (e.g. "
                "azure.identity.get_bearer_token_provider(DefaultAzureCredential(), "
                "'https://cognitiveservices.azure.com/.default'))"
            )
        self._use_tokens(token_provider)  # refuses one that is not callable
        super().__init__(
            model,
            base_url=endpoint,
            api_key=api_key,
            headers=headers,
            stream_usage=stream_usage,
            **transport,
        )
        self.api_version = version
        if token_provider is not None:
            # A token given beats a key in the environment: never send both.
            self.api_key = None
        # stream_options came in 2024-09-01-preview: an older version refuses it.
        self.stream_usage = stream_usage and _takes_stream_usage(version)
        if version == "v1":
            # https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle: the
            # deployment is named by the body's "model", as OpenAI's models are.
            self._url = f"{self.base_url}/openai/v1/chat/completions"
        else:
            self._url = (
                f"{self.base_url}/openai/deployments/{quote(self.model, safe='')}"
                f"/chat/completions?api-version={quote(version, safe='')}"
            )
        # Azure takes a key in its own header, never as a bearer token.
        self._headers = {"Content-Type": "application/json"}
        if self.api_key:
            self._headers["api-key"] = self.api_key

    def capabilities(self) -> Capabilities:
        caps = streaming_capabilities(
            tools=True, tool_streaming=True, reasoning=False, usage_in_stream=self.stream_usage
        )
        return {**caps, **self.file_rules().capabilities()}

    def file_rules(self) -> FileRules:
        # A deployment's name need not say its model, so this is what Azure OpenAI's chat
        # completions document for any: images (its vision how-to) and input_audio in wav
        # or mp3 (its audio quickstart, for gpt-4o-audio-preview deployments); the
        # deployment answers for a model without them. PDFs are not declared: Azure
        # documents file inputs for its Responses API only.
        return _AZURE_FILES

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        # The body is OpenAI's, "model" included: the deployments path ignores it (and
        # openai-python's AzureOpenAI sends it too); the v1 path needs it.
        request = super().build_request(call, stream=stream)
        if self._token_provider is not None:
            # A new dict: the request's headers may be this provider's own.
            request.headers = {**request.headers, "Authorization": f"Bearer {self._token}"}
        return request

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        error = self.error_object(status, body)
        if isinstance(error, dict) and error.get("code") == "content_filter":
            # https://learn.microsoft.com/azure/ai-services/openai/concepts/content-filter:
            # a prompt the filter refuses is a 400 whose innererror says what it flagged.
            return error_for_status(
                status,
                _content_filter_message(error),
                provider=self.name,
                model=self.model,
                request_id=self._request_id(headers),
                body=error,
                error_type="content_filter",
            )
        # A 429 says when to come back in retry-after-ms and retry-after.
        return self.chat_error(error, status, headers)


def _endpoint_and_version(
    endpoint: str, api_version: str | None, env: tuple[str, ...]
) -> tuple[str, str]:
    """The resource's endpoint and the api-version to use.

    An endpoint given with the v1 API's path (``.../openai/v1``, as Azure's v1 examples
    write the OpenAI client's base URL) means the v1 API; one with ``/openai`` loses it.
    """
    if endpoint.endswith("/openai/v1"):
        if api_version not in (None, "v1"):
            raise ConfigurationError(
                f"provider 'azure': base_url ends in /openai/v1 (the v1 API) but "
                f"api_version={api_version!r}; give the resource's endpoint alone with a "
                "dated api_version, or api_version='v1'"
            )
        return endpoint.removesuffix("/openai/v1"), "v1"
    endpoint = endpoint.removesuffix("/openai")
    return endpoint, api_version or env_value(*env) or DEFAULT_API_VERSION


def _takes_stream_usage(version: str) -> bool:
    """Whether an api-version takes ``stream_options``: v1 does, a dated one from 2024-09-01."""
    if version[:4].isdigit():
        return version[:10] >= _STREAM_USAGE_SINCE
    return True


def _content_filter_message(error: dict[str, Any]) -> str:
    """Azure's message for a refused prompt, led by what the filter flagged in it."""
    inner = error.get("innererror")
    results = inner.get("content_filter_result") if isinstance(inner, dict) else None
    flagged = []
    for category, result in (results or {}).items():
        if isinstance(result, dict) and result.get("filtered"):
            severity = result.get("severity")
            flagged.append(f"{category} ({severity})" if severity else str(category))
    what = "the prompt" if error.get("param") in (None, "prompt") else "the request"
    lead = f"Azure's content filter refused {what}"
    if flagged:
        lead += f": {', '.join(flagged)}"
    message = error.get("message")
    return f"{lead}. {message}" if message else lead
