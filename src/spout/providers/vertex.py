"""Google Vertex AI: Gemini and Claude models behind Google Cloud's endpoints and credentials."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from .._capabilities import Capabilities
from .._errors import ConfigurationError, ProviderError
from .._events import Event
from .._request import HTTPRequest
from ._base import (
    Call,
    HTTPProvider,
    OutputShape,
    Parser,
    TokenProvider,
    env_value,
    streaming_capabilities,
)
from ._common import error_json
from .anthropic import (
    MessageEventMapper,
    MessagesParser,
    can_prefill,
    claude_inputs,
    message_events,
    messages_body,
    messages_error,
)
from .gemini import (
    GenerateContentMapper,
    GenerateContentParser,
    gemini_inputs,
    generate_content_body,
    generate_content_error,
    generate_content_events,
    json_output_shape,
)

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.auth.transport.requests import Request

    from .._output_format import OutputFormat

__all__ = ["ApplicationDefaultCredentials", "VertexProvider"]

#: The ``anthropic_version`` a Claude request on Vertex carries in its body (in place of
#: Anthropic's header), as Anthropic's SDK sends it (lib/vertex/_client.py, DEFAULT_VERSION).
ANTHROPIC_VERSION = "vertex-2023-10-16"

#: The OAuth scope Vertex AI's calls need; https://cloud.google.com/vertex-ai/docs/authentication
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"

#: Where a model is served when neither ``location=`` nor ``GOOGLE_CLOUD_LOCATION`` says:
#: ``global``, as in Google's own SDK (google-genai, which picks it when no location is set).
#: The global endpoint serves the current Gemini and Claude models with higher availability;
#: a model served only in some regions, or data that must stay in one, needs a ``location``.
DEFAULT_LOCATION = "global"

INSTALL_HINT = (
    "the vertex provider finds Google's Application Default Credentials with google-auth: "
    "pip install 'spout[vertex]' (or pass token_provider=...)"
)


def _check_google_auth() -> None:
    """Import google-auth and the transport its refresh takes, or raise a ConfigurationError
    saying how to install them."""
    try:
        import google.auth.transport.requests  # noqa: F401
    except ImportError:
        raise ConfigurationError(INSTALL_HINT) from None


class ApplicationDefaultCredentials:
    """Bearer tokens from Google's Application Default Credentials, through google-auth.

    What the ``vertex`` provider asks when it is given no ``token_provider``: the credentials
    ``GOOGLE_APPLICATION_CREDENTIALS`` names, else ``gcloud auth application-default login``'s,
    else the attached service account of a Google Cloud machine
    (https://cloud.google.com/docs/authentication/application-default-credentials). They are
    found on first use, and a token is refreshed when it is about to expire, or after
    :meth:`invalidate` (the provider calls it when a token was refused).

    Example::

        credentials = ApplicationDefaultCredentials()
        token = credentials()          # "ya29...."; the same one until it needs refreshing
        print(credentials.project)     # the project the credentials belong to, if they say

    A refresh is an HTTPS request (through ``requests``, google-auth's own transport), made
    in the thread that asks, about once an hour.
    """

    def __init__(self, scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,)) -> None:
        _check_google_auth()  # missing: fail now, with the hint, not at the first call
        self._scopes = list(scopes)
        self._credentials: Credentials | None = None
        self._project: str | None = None
        self._transport: Request | None = None
        self._stale = False
        # One refresh at a time: threads sharing an LLM would otherwise each fetch a token.
        self._lock = threading.Lock()

    def _load(self) -> Credentials:
        if self._credentials is None:
            import google.auth

            credentials, project = google.auth.default(scopes=self._scopes)
            self._credentials, self._project = credentials, project or None
        return self._credentials

    @property
    def project(self) -> str | None:
        """The project of the credentials (a service account's, or ``gcloud``'s quota
        project), found as they are; None when they name none."""
        with self._lock:
            self._load()
            return self._project

    def __call__(self) -> str:
        with self._lock:
            credentials = self._load()
            if self._stale or not credentials.valid:
                if self._transport is None:
                    import google.auth.transport.requests

                    self._transport = google.auth.transport.requests.Request()
                credentials.refresh(self._transport)  # type: ignore[no-untyped-call]
                self._stale = False
            token = credentials.token
        if not isinstance(token, str):
            raise ConfigurationError("Google's default credentials gave no access token")
        return token

    async def atoken(self) -> str:
        """The token, from async code: a refresh (an HTTPS request, about once an hour) runs
        in a worker thread, so the event loop goes on serving other streams meanwhile."""
        credentials = self._credentials
        if credentials is not None and not self._stale and credentials.valid:
            token = credentials.token
            if isinstance(token, str):
                return token
        return await asyncio.to_thread(self)

    def invalidate(self) -> None:
        """Refresh the token on the next call, however long it still claims to be valid."""
        self._stale = True

    def close(self) -> None:
        """Close the connection the refreshes keep open (requests' session and its pool)."""
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.session.close()


class VertexProvider(HTTPProvider):
    """Gemini and Claude models on Google Cloud's Vertex AI.

    Example::

        llm = create_llm("vertex", model="gemini-2.5-flash", project="my-project")
        llm = create_llm("vertex", model="claude-sonnet-4-5@20250929", location="us-east5")
        print(llm.generate("Say hi").text)

    A Gemini model is asked at ``{base_url}/v1/projects/{project}/locations/{location}/
    publishers/google/models/{model}:streamGenerateContent?alt=sse`` with the Gemini API's
    request and stream (:mod:`spout.providers.gemini`); a model whose name starts with
    ``claude`` at ``.../publishers/anthropic/models/{model}:streamRawPredict``, with
    Anthropic's Messages body less its ``model``, plus ``anthropic_version``, and Anthropic's
    stream (:mod:`spout.providers.anthropic`). Calls not streamed use ``:generateContent`` and
    ``:rawPredict``.

    ``project`` falls back to ``GOOGLE_CLOUD_PROJECT``, then to the credentials' own project;
    ``location`` to ``GOOGLE_CLOUD_LOCATION``, then to ``global`` (:data:`DEFAULT_LOCATION`).
    ``base_url`` defaults to ``https://{location}-aiplatform.googleapis.com``, or
    ``https://aiplatform.googleapis.com`` for ``global``. Every request carries
    ``Authorization: Bearer <token>``, and no API key: the token comes from ``token_provider``
    (a callable returning one, asked before each request and once more after a 401), else
    from Google's Application Default Credentials (:class:`ApplicationDefaultCredentials`,
    which needs ``pip install 'spout[vertex]'``).
    """

    name: ClassVar[str] = "vertex"
    price_list: ClassVar[str | None] = "google"
    accept_header: ClassVar[str] = "accept"
    # completion(model="vertex_ai/<model>", vertex_project=..., vertex_location=...)
    litellm_prefixes: ClassVar[tuple[str, ...]] = ("vertex_ai",)
    litellm_settings: ClassVar[Mapping[str, str]] = {
        "vertex_project": "project",
        "vertex_location": "location",
    }
    project_env: ClassVar[tuple[str, ...]] = ("GOOGLE_CLOUD_PROJECT",)
    location_env: ClassVar[tuple[str, ...]] = ("GOOGLE_CLOUD_LOCATION",)

    @classmethod
    def env_names(cls) -> tuple[str, ...]:
        return (*cls.project_env, *cls.location_env, "GOOGLE_APPLICATION_CREDENTIALS")

    def __init__(
        self,
        model: str | None = None,
        *,
        project: str | None = None,
        location: str | None = None,
        base_url: str | None = None,
        token_provider: TokenProvider | None = None,
        headers: dict[str, str] | None = None,
        **transport: Any,
    ) -> None:
        super().__init__(model, headers=headers, **transport)
        credentials = None
        if token_provider is None:
            credentials = ApplicationDefaultCredentials()
            token_provider = credentials
        # Closed with the provider: spout's own, never a caller's token_provider.
        self._default_credentials = credentials
        self._use_tokens(token_provider)
        self.location: str = location or env_value(*self.location_env) or DEFAULT_LOCATION
        resolved = project or env_value(*self.project_env)
        if resolved is None and credentials is not None:
            # Only now are the credentials looked for: a project given needs none until the
            # first request.
            resolved = self._credentials_project(credentials)
        if not resolved:
            raise ConfigurationError(
                f"provider {self.name!r} needs a Google Cloud project: pass project=... or set "
                "GOOGLE_CLOUD_PROJECT"
            )
        self.project: str = resolved
        if base_url is None:
            host = "" if self.location == "global" else f"{self.location}-"
            base_url = f"https://{host}aiplatform.googleapis.com"
        self.base_url = base_url.rstrip("/")
        #: Whether the model is Anthropic's (Claude): its requests, stream and errors are
        #: Anthropic's; otherwise they are the Gemini API's.
        self.claude = self.model.startswith("claude")
        publisher = "anthropic" if self.claude else "google"
        # "@" stays as it is: Claude's model ids carry their version after it
        # ("claude-sonnet-4-5@20250929"), and it is allowed in a path.
        prefix = (
            f"{self.base_url}/v1/projects/{quote(self.project, safe='')}"
            f"/locations/{quote(self.location, safe='')}"
            f"/publishers/{publisher}/models/{quote(self.model, safe='@')}"
        )
        if self.claude:
            self._stream_url = f"{prefix}:streamRawPredict"
            self._url = f"{prefix}:rawPredict"
        else:
            self._stream_url = f"{prefix}:streamGenerateContent?alt=sse"
            self._url = f"{prefix}:generateContent"

    def _credentials_project(self, credentials: ApplicationDefaultCredentials) -> str | None:
        from google.auth.exceptions import GoogleAuthError

        try:
            return credentials.project
        except GoogleAuthError as exc:  # none found, a key file that is not one...
            raise ConfigurationError(
                f"provider {self.name!r} needs a Google Cloud project: pass project=... or set "
                f"GOOGLE_CLOUD_PROJECT (Google's default credentials, which may name one, "
                f"could not be loaded: {exc})"
            ) from exc

    def close(self) -> None:
        super().close()
        if self._default_credentials is not None:
            self._default_credentials.close()

    async def aclose(self) -> None:
        await super().aclose()
        if self._default_credentials is not None:
            self._default_credentials.close()

    def capabilities(self) -> Capabilities:
        # Each route's are its wire's: Anthropic's stream sends tool arguments in pieces;
        # Gemini's sends each call whole. The files each model takes are its vendor's.
        inputs = claude_inputs if self.claude else gemini_inputs
        return {
            **streaming_capabilities(tools=True, tool_streaming=self.claude, reasoning=True),
            **inputs(self.model),
        }

    def output_shape(self, fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
        if self.claude:
            return super().output_shape(fmt, params)
        return json_output_shape(fmt, params)

    def can_prefill(self, call: Call) -> bool:
        return self.claude and can_prefill(call)

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        if self.claude:
            # https://docs.anthropic.com/en/api/claude-on-vertex-ai: the model is in the path,
            # the version in the body.
            body = {
                "anthropic_version": ANTHROPIC_VERSION,
                **messages_body(call, stream=stream, provider=self.name),
            }
        else:
            # Vertex's fileData.mimeType is required (aiplatform's Part reference).
            body = generate_content_body(call, provider=self.name, url_needs_type=True)
        headers = {"authorization": f"Bearer {self._token}", "content-type": "application/json"}
        url = self._stream_url if stream else self._url
        return self._post_json(url, headers, body, stream=stream)

    def new_parser(self, call: Call) -> Parser:
        if self.claude:
            return MessagesParser(MessageEventMapper(self.name, self.model))
        return GenerateContentParser(GenerateContentMapper(self.name, self.model))

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        if self.claude:
            return message_events(body, self.name, self.model)
        return generate_content_events(body, self.name, self.model)

    def error_from_response(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        # Vertex answers for the model, in Google's shape ({"error": {"code", "message",
        # "status"}}), when it refuses a call itself (a token, a quota, a region), but a
        # Claude model's own refusals pass through in Anthropic's ({"type": "error",
        # "error": {"type", "message"}}).
        if self.claude and not _google_shaped(error_json(body)):
            return messages_error(status, headers, body, self.name, self.model)
        return generate_content_error(status, headers, body, self.name, self.model)


def _google_shaped(data: Any) -> bool:
    """Whether an error body is Google's: an ``error`` object with a ``status`` or a numeric
    ``code`` (an Anthropic error names a ``type`` instead), alone or in a list of one."""
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, dict) and ("status" in error or isinstance(error.get("code"), int))
