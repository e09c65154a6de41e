"""The exceptions spout raises, as one tree.

::

    SpoutError
    ├── ConfigurationError          missing key, unknown provider or model string, missing extra
    ├── ProviderError               the provider answered with an error (HTTP status, or in-stream)
    │   ├── AuthenticationError         401
    │   ├── PermissionDeniedError       403
    │   ├── NotFoundError               404, model not found
    │   ├── BadRequestError             400, 422
    │   │   └── ContextWindowExceededError
    │   ├── RateLimitError              429 (``retry_after`` in seconds, when the provider says)
    │   ├── ServiceUnavailableError     502, 503, 504
    │   │   └── OverloadedError             529, Anthropic ``overloaded_error``
    │   └── InternalServerError         500 and other 5xx
    ├── TransportError              no usable answer arrived
    │   ├── ConnectionError             could not connect, or the connection broke before a response
    │   └── TimeoutError
    │       ├── ConnectTimeout
    │       ├── FirstTokenTimeout
    │       ├── IdleTimeout
    │       └── TotalTimeout
    ├── StreamError                 the stream itself went wrong after it began
    │   ├── StreamInterruptedError      connection lost mid-stream, or no terminator before the end
    │   └── ProtocolError               malformed event, invalid UTF-8 or JSON (``.data`` holds the bytes)
    ├── ToolError                   a tool call could not be taken as the model sent it
    │   ├── ToolCallParseError          its arguments are not valid JSON (``.raw``, ``.tool_name``)
    │   └── MaxToolRoundsError          the tool loop reached ``max_rounds`` with calls still coming
    ├── CallbackError               a callback given to a call (``on_chunk=``...) raised; the stream stopped
    ├── StructuredOutputError       the answer is not JSON valid for ``response_format`` (``.raw``, ``.value``)
    └── StoreError                  the conversation store could not be read or written (``.path``)
        └── ConversationNotFoundError   no conversation has that id, or the prefix is ambiguous

Every error raised after a stream began carries ``.partial``: the :class:`~spout.Response`
rebuilt from what arrived before it, so nothing the user saw is lost. httpx exceptions are
translated in :mod:`spout._transport` and never escape; sqlite3 exceptions are translated in
:mod:`spout._store`.

Each error is also an instance of the class litellm names for it (defined in
:mod:`spout._litellm_errors`, exported by :mod:`spout.compat`), so ``except`` clauses written
for litellm keep working: ``ProviderError`` is an ``APIError``; ``AuthenticationError``,
``PermissionDeniedError``, ``NotFoundError``, ``BadRequestError``,
``ContextWindowExceededError``, ``RateLimitError``, ``ServiceUnavailableError`` and
``InternalServerError`` are litellm's classes of the same names; ``ConnectionError`` and every
``StreamError`` are an ``APIConnectionError``; ``TimeoutError`` is litellm's ``Timeout``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _litellm_errors as litellm

if TYPE_CHECKING:
    from ._response import Response

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "CallbackError",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionError",
    "ContextWindowExceededError",
    "ConversationNotFoundError",
    "FirstTokenTimeout",
    "IdleTimeout",
    "InternalServerError",
    "MaxToolRoundsError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
    "ServiceUnavailableError",
    "SpoutError",
    "StoreError",
    "StreamError",
    "StreamInterruptedError",
    "StructuredOutputError",
    "TimeoutError",
    "ToolCallParseError",
    "ToolError",
    "TotalTimeout",
    "TransportError",
    "error_for_status",
]


class SpoutError(Exception):
    """The root of every exception spout raises.

    ``partial`` is the response rebuilt so far when the error interrupted a stream, else None.
    """

    partial: Response | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(SpoutError):
    """The call cannot be made as configured: an unknown provider, a missing key or extra."""


class ProviderError(SpoutError, litellm.APIError):
    """The provider answered with an error, as an HTTP status or as an error inside a stream.

    Example::

        try:
            llm.generate("hi")
        except spout.RateLimitError as exc:
            print(exc.status_code, exc.retry_after, exc.request_id)
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
        error_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        self.error_type = error_type
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                self.provider,
                self.model,
                f"HTTP {self.status_code}" if self.status_code else None,
                f"request {self.request_id}" if self.request_id else None,
            )
            if part
        )
        return f"{self.message} ({where})" if where else self.message


class AuthenticationError(ProviderError, litellm.AuthenticationError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(ProviderError, litellm.PermissionDeniedError):
    """403: the key is valid but may not use this model or endpoint."""


class NotFoundError(ProviderError, litellm.NotFoundError):
    """404: the endpoint or the model does not exist."""


class BadRequestError(ProviderError, litellm.BadRequestError):
    """400 or 422: the request was rejected as malformed; retrying will not help."""


class ContextWindowExceededError(BadRequestError, litellm.ContextWindowExceededError):
    """The prompt and the requested output do not fit in the model's context window."""


class RateLimitError(ProviderError, litellm.RateLimitError):
    """429: too many requests or tokens; ``retry_after`` says how long to wait, if known."""


class ServiceUnavailableError(ProviderError, litellm.ServiceUnavailableError):
    """502, 503 or 504: the service is down or overloaded for now."""


class OverloadedError(ServiceUnavailableError):
    """The provider said it is overloaded (Anthropic 529 / ``overloaded_error``)."""


class InternalServerError(ProviderError, litellm.InternalServerError):
    """500 or another 5xx: the provider failed."""


class TransportError(SpoutError):
    """No usable answer arrived from the server."""


class ConnectionError(TransportError, litellm.APIConnectionError):
    """The connection could not be made, or broke before a response arrived."""


class TimeoutError(TransportError, litellm.Timeout):
    """A time limit ran out."""


class ConnectTimeout(TimeoutError):
    """The connection was not established in time."""


class FirstTokenTimeout(TimeoutError):
    """The server answered but sent no content in time."""


class IdleTimeout(TimeoutError):
    """The stream went quiet for longer than the idle limit."""


class TotalTimeout(TimeoutError):
    """The whole call took longer than its total limit."""


class StreamError(SpoutError, litellm.APIConnectionError):
    """The stream went wrong after it began."""


class StreamInterruptedError(StreamError):
    """The connection was lost mid-stream, or the stream ended without its terminator."""


class ProtocolError(StreamError):
    """The server sent something that is not valid for its protocol; ``data`` holds it."""

    def __init__(self, message: str, *, data: bytes | str | None = None) -> None:
        super().__init__(message)
        self.data = data


class ToolError(SpoutError):
    """A tool call, or the loop that runs tool calls, went wrong."""


class ToolCallParseError(ToolError):
    """The model's arguments for a tool call are not valid JSON.

    ``raw`` is the text as the model sent it, ``tool_name`` and ``tool_call_id`` name the call.
    Raised at the call's end by :meth:`LLM.generate` and streams; the tool loop instead
    reports the problem to the model as the call's result and goes on.
    """

    def __init__(
        self, message: str, *, tool_name: str, raw: str, tool_call_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.tool_name = tool_name
        self.raw = raw
        self.tool_call_id = tool_call_id


class MaxToolRoundsError(ToolError):
    """The model still asked for tools when the loop's ``max_rounds`` were spent.

    ``partial`` is the response of every round so far; ``rounds`` is how many ran.
    """

    def __init__(self, message: str, *, rounds: int) -> None:
        super().__init__(message)
        self.rounds = rounds


class CallbackError(SpoutError):
    """A callback given to a call (``on_start``, ``on_chunk``, ``on_event``, ``on_error``,
    ``on_complete``) raised: the stream was stopped and its connection released.

    ``callback`` names the callback; what it raised is ``__cause__``; ``partial`` is the
    response as far as it arrived.

    Example::

        try:
            for chunk in llm.generate_stream("hi", on_chunk=log):
                ...
        except spout.CallbackError as exc:
            print(exc.callback, repr(exc.__cause__), exc.partial.text)
    """

    def __init__(self, message: str, *, callback: str) -> None:
        super().__init__(message)
        self.callback = callback


class StructuredOutputError(SpoutError):
    """The answer to a call with ``response_format`` is not JSON that validates against it.

    ``raw`` is the answer's text; ``value`` is its JSON as far as it parsed (a partial object,
    or None when no JSON began); ``partial`` is the whole :class:`~spout.Response`. A pydantic
    ``ValidationError`` is kept as ``__cause__``. Raised where the answer ends: at the end of
    a stream (its iteration, ``stream.response``) or by a non-streamed call.
    """

    def __init__(self, message: str, *, raw: str, value: Any = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.value = value


class StoreError(SpoutError):
    """The conversation store could not be opened, read or written; ``path`` is its file.

    A failed write leaves the stored conversation as it was.

    Example::

        try:
            store.append_turns(conversation_id, [turn])
        except spout.StoreError as exc:
            print(f"not saved: {exc}")  # names the problem and the database file
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ConversationNotFoundError(StoreError):
    """No stored conversation has this id, or the prefix given starts more than one.

    ``conversation_id`` is the id or prefix asked for, when one was.

    Example::

        try:
            store.get("01j9")
        except spout.ConversationNotFoundError as exc:
            print(exc)  # "no conversation has an id that is or starts with '01j9' (...)"
    """

    def __init__(
        self, message: str, *, conversation_id: str | None = None, path: str | None = None
    ) -> None:
        super().__init__(message, path=path)
        self.conversation_id = conversation_id


_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "exceeds the context",
    # Gemini: "The input token count (N) exceeds the maximum number of tokens allowed (M)."
    "input token count",
    # TGI: "`inputs` tokens + `max_new_tokens` must be <= N"
    "`inputs` tokens + `max_new_tokens`",
    # Bedrock's ValidationException: "Input is too long for requested model."
    "input is too long",
)


def error_for_status(
    status_code: int,
    message: str,
    *,
    provider: str | None = None,
    model: str | None = None,
    request_id: str | None = None,
    body: Any = None,
    error_type: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Build the :class:`ProviderError` subclass that fits an HTTP status and error type."""
    cls: type[ProviderError]
    lowered = f"{error_type or ''} {message}".lower()
    if error_type == "overloaded_error" or status_code == 529:
        cls = OverloadedError
    elif status_code == 401:
        cls = AuthenticationError
    elif status_code == 403:
        cls = PermissionDeniedError
    elif status_code == 404:
        cls = NotFoundError
    elif status_code in (400, 413, 422):
        cls = (
            ContextWindowExceededError
            if any(marker in lowered for marker in _CONTEXT_MARKERS)
            else BadRequestError
        )
    elif status_code == 429:
        cls = RateLimitError
    elif status_code in (502, 503, 504):
        cls = ServiceUnavailableError
    elif status_code >= 500:
        cls = InternalServerError
    else:
        cls = ProviderError
    return cls(
        message,
        provider=provider,
        model=model,
        status_code=status_code,
        request_id=request_id,
        body=body,
        error_type=error_type,
        retry_after=retry_after,
    )
