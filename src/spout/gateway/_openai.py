"""OpenAI chat completions on the wire: ``POST /v1/chat/completions`` in, chunks out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import orjson

from .. import (
    AuthenticationError,
    BadRequestError,
    Citation,
    ConfigurationError,
    ConnectTimeout,
    ContextWindowExceededError,
    Event,
    FileEnd,
    Finish,
    FirstTokenTimeout,
    IdleTimeout,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RawEvent,
    Response,
    ServiceUnavailableError,
    StreamError,
    StreamInterruptedError,
    TextDelta,
    TimeoutError,
    TotalTimeout,
    TransportError,
)
from ..compat.chunks import ChunkEncoder, arguments_text, finish_reason, usage_object
from ._attachments import chat_annotation, chat_part, file_part, file_url, raw_object
from ._wire import QuotaExceeded, Request, RequestError, sse_frame

__all__ = [
    "PROTOCOL",
    "ChatCompletionsEncoder",
    "ChatCompletionsProtocol",
    "ErrorKind",
    "classify_error",
    "models_body",
]

_DONE = b"data: [DONE]\n\n"
# Events a chat completion carries in fields of the gateway's choosing (see _Extras).
_EXTRAS = frozenset((FileEnd, Citation, RawEvent))

# ---------------------------------------------------------------------------------------------
# Errors, shared by the three protocols: what a spout error stands for, as a status and a kind.


class ErrorKind:
    """The protocol-neutral kinds of error; each protocol names them its own way."""

    INVALID_REQUEST = "invalid_request"
    CONTEXT_WINDOW = "context_window"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    RATE_LIMIT = "rate_limit"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UPSTREAM = "upstream"
    SERVER = "server"


def classify_error(exc: BaseException) -> tuple[int, str, str]:
    """The HTTP status, the :class:`ErrorKind` and the message for an error.

    A :class:`RequestError` keeps its status. Errors from upstream keep their meaning (a
    rate limit is a 429, a context window overflow a 400); an upstream that failed or could
    not be reached is a 502 (bad gateway), one that took too long a 504; for these the
    message names the kind of failure, not the upstream's address (the log has it). A
    :class:`~spout.ConfigurationError` says the call cannot be made as asked (a parameter the
    provider does not take): a 400. Anything else is the gateway's own failure: a 500 that
    does not repeat its text, which may hold details the client should not see.
    """
    if isinstance(exc, QuotaExceeded):
        return exc.status, ErrorKind.INSUFFICIENT_QUOTA, exc.message
    if isinstance(exc, RequestError):
        kind = {
            401: ErrorKind.AUTHENTICATION,
            403: ErrorKind.PERMISSION,
            404: ErrorKind.NOT_FOUND,
            413: ErrorKind.INVALID_REQUEST,
            429: ErrorKind.RATE_LIMIT,
        }.get(exc.status, ErrorKind.INVALID_REQUEST if exc.status < 500 else ErrorKind.SERVER)
        return exc.status, kind, exc.message
    message = _upstream_message(exc) or str(getattr(exc, "message", None) or exc)
    for kinds, status, kind in _FIXED:
        if isinstance(exc, kinds):
            return status, kind, message
    if isinstance(exc, ServiceUnavailableError):
        status = exc.status_code if exc.status_code in (502, 503, 504) else 503
        return status, ErrorKind.OVERLOADED if status == 503 else ErrorKind.UPSTREAM, message
    if isinstance(exc, ProviderError):
        status = exc.status_code or 0
        if 400 <= status < 500:
            return status, ErrorKind.INVALID_REQUEST, message
        return 502, ErrorKind.UPSTREAM, message
    return 500, ErrorKind.SERVER, "the gateway failed to answer this request"


# What a client is told of an upstream that failed below HTTP: the kind of failure, never the
# error's own text, which names the upstream's address (a connection error's host and port).
# The gateway's log has the text in full. Looked at in order (a subclass before its base).
_UPSTREAM_MESSAGES: tuple[tuple[type[Exception], str], ...] = (
    (ConnectTimeout, "the upstream could not be reached in time"),
    (FirstTokenTimeout, "the upstream did not answer in time"),
    (IdleTimeout, "the upstream's stream sent nothing for too long"),
    (TotalTimeout, "the upstream took longer than the time allowed"),
    (TimeoutError, "the upstream did not answer in time"),
    (StreamInterruptedError, "the upstream's stream was cut off before its end"),
    (TransportError, "the upstream could not be reached"),
)


def _upstream_message(exc: BaseException) -> str | None:
    """The message for an upstream's failure whose text may name its address, else None.

    A redirect (which spout never follows) is one: its text quotes the ``Location``.
    """
    if isinstance(exc, ProviderError):
        if exc.error_type == "redirect":
            return "the upstream answered with a redirect, which the gateway does not follow"
        return None
    for kind, message in _UPSTREAM_MESSAGES:
        if isinstance(exc, kind):
            return message
    return None


# The errors whose status and kind are fixed, looked at in order (a subclass before its base).
# OverloadedError is a ServiceUnavailableError: met here first, it is not read by the status the
# upstream gave, as other ServiceUnavailableErrors and ProviderErrors are.
_FIXED: tuple[tuple[type[Exception] | tuple[type[Exception], ...], int, str], ...] = (
    (ContextWindowExceededError, 400, ErrorKind.CONTEXT_WINDOW),
    (BadRequestError, 400, ErrorKind.INVALID_REQUEST),
    (AuthenticationError, 401, ErrorKind.AUTHENTICATION),
    (PermissionDeniedError, 403, ErrorKind.PERMISSION),
    (NotFoundError, 404, ErrorKind.NOT_FOUND),
    (RateLimitError, 429, ErrorKind.RATE_LIMIT),
    (OverloadedError, 529, ErrorKind.OVERLOADED),
    (TimeoutError, 504, ErrorKind.TIMEOUT),
    ((TransportError, StreamError), 502, ErrorKind.UPSTREAM),
    (ConfigurationError, 400, ErrorKind.INVALID_REQUEST),
)


# OpenAI's error ``type`` and ``code`` for each kind
# (https://platform.openai.com/docs/guides/error-codes).
_OPENAI_ERRORS: dict[str, tuple[str, str | None]] = {
    ErrorKind.INVALID_REQUEST: ("invalid_request_error", None),
    ErrorKind.CONTEXT_WINDOW: ("invalid_request_error", "context_length_exceeded"),
    ErrorKind.AUTHENTICATION: ("authentication_error", "invalid_api_key"),
    ErrorKind.PERMISSION: ("permission_error", None),
    ErrorKind.NOT_FOUND: ("invalid_request_error", "not_found"),
    ErrorKind.RATE_LIMIT: ("rate_limit_error", "rate_limit_exceeded"),
    # What OpenAI sends for a spent quota (429, type and code both insufficient_quota); the
    # SDKs raise RateLimitError with that code.
    ErrorKind.INSUFFICIENT_QUOTA: ("insufficient_quota", "insufficient_quota"),
    ErrorKind.OVERLOADED: ("server_error", "server_overloaded"),
    ErrorKind.TIMEOUT: ("server_error", "timeout"),
    ErrorKind.UPSTREAM: ("server_error", "upstream_error"),
    ErrorKind.SERVER: ("server_error", None),
}


def openai_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI error object (``{"error": {message, type, param, code}}``)."""
    status, kind, message = classify_error(exc)
    error_type, code = _OPENAI_ERRORS[kind]
    param = exc.param if isinstance(exc, RequestError) else None
    return status, {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def models_body(names: list[str], *, owned_by: str = "spout") -> dict[str, Any]:
    """The body of ``GET /v1/models``: OpenAI's list of ``model`` objects.

    >>> models_body(["gpt-4o-mini"])["data"][0]["id"]
    'gpt-4o-mini'
    """
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": owned_by}
            for name in names
        ],
    }


# ---------------------------------------------------------------------------------------------
# Requests


# Fields that change nothing a client can see, or that the gateway cannot honour and no client
# depends on: accepted and dropped.
_IGNORED = frozenset(
    (
        "user",
        "metadata",
        "store",
        "parallel_tool_calls",
        "service_tier",
        "safety_identifier",
        "prompt_cache_retention",
        "verbosity",
        "stream_options",
        "model",
        "messages",
        "stream",
    )
)
# Sampling settings spout has no name of its own for: sent upstream as they are (a provider
# that does not take one refuses it, and the client gets that 400).
#: Why a field the gateway cannot honour is refused (see :func:`refuse_given`).
UNSUPPORTED = "is not supported by the gateway"
# modalities and audio ask for an answer in audio (OpenAI's audio models), which comes back as
# delta.audio (see _Extras); another upstream refuses them.
_PASSED = (
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "reasoning_effort",
    "modalities",
    "audio",
)
_ROLES = ("system", "developer", "user", "assistant", "tool")
#: The fields of an assistant message that _Extras writes.
_ANSWER_EXTRAS = ("audio", "images", "annotations", "spout_files", "spout_raw_events")


def _fail(message: str, param: str | None = None) -> RequestError:
    return RequestError(message, param=param)


def take_prompt_cache_key(body: dict[str, Any], params: dict[str, Any]) -> None:
    """OpenAI's ``prompt_cache_key`` (a string that routes like prompts to one cache) into
    ``params``: it goes on to an upstream that takes it (OpenAI's own API; see ``_call_args``
    in the app), and is dropped for the others, which cache by their own rules."""
    key = body.get("prompt_cache_key")
    if key is None:
        return
    if not isinstance(key, str):
        raise _fail("prompt_cache_key must be a string", "prompt_cache_key")
    params["prompt_cache_key"] = key


def number(
    body: dict[str, Any], key: str, *, integer: bool = False, name: str | None = None
) -> Any:
    """``body[key]`` checked to be a number (an integer with ``integer``), or None if absent."""
    value = body.get(key)
    if value is None:
        return None
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an integer" if integer else "a number"
        raise _fail(f"{name or key} must be {what}, not {value!r:.40}", name or key)
    return value


def take_numbers(
    body: dict[str, Any], params: dict[str, Any], keys: Iterable[str], *, integer: bool = False
) -> None:
    """Each of ``keys`` that ``body`` gives, checked to be a number, into ``params``."""
    for key in keys:
        value = number(body, key, integer=integer)
        if value is not None:
            params[key] = value


def at_least_one(value: int | None, param: str) -> int | None:
    """A token budget: None (not given) or at least 1."""
    if value is not None and value < 1:
        raise _fail(f"{param} must be at least 1", param)
    return value


def object_field(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    """``body[key]`` checked to be an object, or None if absent."""
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise _fail(f"{key} must be an object", key)
    return value


def objects(
    value: Any, param: str, *, listed: str, each: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The objects of a non-empty list, each with its place (``messages[2]``) for errors:
    ``{param} must be {listed}`` if it is not such a list, ``{place} must be {each}`` for an
    item that is not an object."""
    if not isinstance(value, list) or not value:
        raise _fail(f"{param} must be {listed}", param)
    for i, item in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise _fail(f"{where} must be {each}", param)
        yield where, item


def refuse_given(body: dict[str, Any], keys: Iterable[str], why: str) -> None:
    """The first of ``keys`` that ``body`` gives (not null) is refused: ``{key} {why}``."""
    for key in keys:
        if body.get(key) is not None:
            raise _fail(f"{key} {why}", key)


def check_stop(value: Any, param: str) -> Any:
    """A stop sequence or a list of them."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value or None
    raise _fail(f"{param} must be a string or a list of strings", param)


def check_json_schema_format(value: Any, param: str) -> Any:
    """An OpenAI ``response_format`` as spout takes it (None for plain text)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(f"{param} must be an object", param)
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise _fail(f"{param}.json_schema.schema must be a JSON Schema object", param)
        return {"type": "json_schema", "json_schema": spec}
    raise _fail(
        f"{param}.type must be 'text', 'json_object' or 'json_schema', not {kind!r:.40}", param
    )


def _check_content(message: dict[str, Any], where: str, *, allow_none: bool) -> None:
    """``message["content"]`` checked; a file part in it checked to decode (a 400 naming its
    place if not), as spout's portable form (:func:`._attachments.chat_part`)."""
    content = message.get("content")
    if content is None and allow_none:
        return
    if isinstance(content, str):
        return
    if isinstance(content, list) and all(
        isinstance(part, dict) and isinstance(part.get("type"), str) for part in content
    ):
        message["content"] = [
            chat_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)
        ]
        return
    raise _fail(f"{where}.content must be a string or a list of content parts", "messages")


def _check_tool_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, list):
        raise _fail(f"{where}.tool_calls must be a list", "messages")
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(function.get("name"), str)
        ):
            raise _fail(f"{at} must have an id and a function with a name", "messages")
        if not isinstance(function.get("arguments", ""), (str, dict)):
            raise _fail(f"{at}.function.arguments must be a JSON string", "messages")


def parse_messages(value: Any) -> list[dict[str, Any]]:
    """Chat messages checked and copied; ``developer`` is read as ``system``."""
    messages: list[dict[str, Any]] = []
    listed = "a non-empty list of messages"
    for where, message in objects(value, "messages", listed=listed, each="an object with a role"):
        role = message.get("role")
        if role not in _ROLES:
            raise _fail(
                f"{where}.role must be one of {', '.join(_ROLES)}, not {role!r:.40}", "messages"
            )
        message = dict(message)
        if role == "developer":
            # The same instruction role under its newer name; every spout provider knows system.
            message["role"] = "system"
        if role == "assistant":
            for key in _ANSWER_EXTRAS:
                # An earlier answer's files, citations and raw events, handed back as the
                # SDK gives the message: none is a field a provider takes.
                message.pop(key, None)
            if message.get("tool_calls") is not None:
                _check_tool_calls(message["tool_calls"], where)
            else:
                message.pop("tool_calls", None)
            _check_content(message, where, allow_none=True)
            # A refused turn, as the SDK hands the message back (message.refusal): kept as a
            # refusal; the SDK's refusal: null on every other turn is dropped.
            refusal = message.get("refusal")
            if refusal is None:
                message.pop("refusal", None)
            elif not isinstance(refusal, str):
                raise _fail(f"{where}.refusal must be a string or null", "messages")
        elif role == "tool":
            if not isinstance(message.get("tool_call_id"), str):
                raise _fail(f"{where}.tool_call_id must be the id of the call answered", "messages")
            _check_content(message, where, allow_none=False)
        else:
            _check_content(message, where, allow_none=False)
        messages.append(message)
    return messages


def parse_tools(value: Any) -> list[dict[str, Any]]:
    """Function tools in chat completions' shape, checked."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail("tools must be a list of function tools", "tools")
    for i, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _fail(
                f"tools[{i}] must be a function tool ({{'type': 'function', 'function': "
                f"{{...}}}}); the gateway supports no other kind",
                "tools",
            )
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _fail(f"tools[{i}].function must have a name", "tools")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _fail(f"tools[{i}].function.parameters must be a JSON Schema object", "tools")
    return list(value)


def tool_names(tools: list[dict[str, Any]]) -> list[str]:
    """The names of function tools given in chat completions' shape."""
    return [tool["function"]["name"] for tool in tools]


def named_choice(name: Any, names: list[str], param: str) -> str:
    """A forced tool's name, checked against the tools given."""
    if not isinstance(name, str) or name not in names:
        raise _fail(
            f"{param} names the tool {name!r:.40}, which is not among the tools given "
            f"({', '.join(names) or 'none'})",
            param,
        )
    return name


def tool_choice(
    value: Any, names: list[str], *, name_of: Callable[[dict[str, Any]], Any], named: str
) -> Any:
    """OpenAI's ``tool_choice``, as both its APIs take it: 'auto', 'none', 'required', or one
    function (``{'type': 'function', ...}``, whose name ``name_of`` finds; ``named`` writes
    that form for the error)."""
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        if value == "required" and not names:
            raise _fail("tool_choice 'required' needs tools", "tool_choice")
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        return named_choice(name_of(value), names, "tool_choice")
    raise _fail(f"tool_choice must be 'auto', 'none', 'required' or {named}", "tool_choice")


def _function_name(choice: dict[str, Any]) -> Any:
    function = choice.get("function")
    return function.get("name") if isinstance(function, dict) else None


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise _fail("n must be 1: the gateway returns one choice per request", "n")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise _fail("logprobs are not supported by the gateway", "logprobs")
    modalities = body.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities)
    ):
        raise _fail("modalities must be a list of strings", "modalities")
    legacy = ("functions", "function_call")
    refuse_given(body, legacy, "is the legacy form of tools: send tools and tool_choice")
    refuse_given(body, ("prediction", "web_search_options"), UNSUPPORTED)


_KNOWN = _IGNORED | frozenset(
    (
        "prompt_cache_key",
        *_PASSED,
        "n",
        "logprobs",
        "top_logprobs",
        "modalities",
        "functions",
        "function_call",
        "audio",
        "prediction",
        "web_search_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "tools",
        "tool_choice",
        "response_format",
    )
)


def refuse_unknown(body: dict[str, Any], known: frozenset[str]) -> None:
    """A field the gateway does not know would be silently lost: refused, named."""
    for key in body:
        if key not in known:
            raise _fail(f"unsupported field {key!r:.60}", key)


def request_model(body: dict[str, Any]) -> str:
    """``model``: a string; empty (the gateway's default route) when absent."""
    model = body.get("model")
    if model is None:
        return ""
    if not isinstance(model, str):
        raise _fail("model must be a string", "model")
    return model


def request_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _fail("the request body must be a JSON object")
    return body


def flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(f"{key} must be true or false", key)
    return value


class ChatCompletionsProtocol:
    """``POST /v1/chat/completions``: OpenAI's chat completions, streamed (chunks, then
    ``[DONE]``) or not (one ``chat.completion``).

    Example::

        request = PROTOCOL.parse({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
        request.messages, request.params    # spout's messages and generate() keywords
    """

    name = "openai"

    def parse(self, body: Any) -> Request:
        body = request_object(body)
        refuse_unknown(body, _KNOWN)
        _refuse_unsupported(body)
        model = request_model(body)
        messages = parse_messages(body.get("messages"))
        tools = parse_tools(body.get("tools"))
        params: dict[str, Any] = {}
        max_tokens = number(body, "max_completion_tokens", integer=True)
        if max_tokens is None:
            max_tokens = number(body, "max_tokens", integer=True)
        max_tokens = at_least_one(max_tokens, "max_completion_tokens")
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        take_numbers(body, params, ("temperature", "top_p"))
        take_numbers(body, params, ("seed",), integer=True)
        stop = check_stop(body.get("stop"), "stop")
        if stop is not None:
            params["stop"] = stop
        choice = tool_choice(
            body.get("tool_choice"),
            tool_names(tools),
            name_of=_function_name,
            named="{'type': 'function', 'function': {'name': ...}}",
        )
        if choice is not None:
            params["tool_choice"] = choice
        response_format = check_json_schema_format(body.get("response_format"), "response_format")
        if response_format is not None:
            params["response_format"] = response_format
        for key in _PASSED:
            if body.get(key) is not None:
                params[key] = body[key]
        take_prompt_cache_key(body, params)
        stream = flag(body, "stream")
        options = object_field(body, "stream_options")
        include_usage = bool(stream and options and options.get("include_usage"))
        return Request(
            model=model,
            messages=messages,
            stream=stream,
            tools=tools,
            params=params,
            include_usage=include_usage,
        )

    def encoder(self, request: Request, *, response_id: str, model: str) -> ChatCompletionsEncoder:
        return ChatCompletionsEncoder(request, response_id=response_id, model=model)

    def body(
        self, request: Request, response: Response, *, response_id: str, model: str
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            # OpenAI's content is null beside tool calls or a refusal, else a string.
            "content": response.text
            if response.text or not (response.tool_calls or response.refusal is not None)
            else None,
            "refusal": response.refusal,
        }
        if response.reasoning:
            message["reasoning_content"] = response.reasoning
        message.update(_Extras(response_id).message(response))
        # Characters of output, for the usage the upstream did not report (as a stream counts).
        chars = len(response.text) + len(response.reasoning) + len(response.refusal or "")
        if response.tool_calls:
            calls = []
            for call in response.tool_calls:
                arguments = arguments_text(call)
                chars += len(call.name) + len(arguments)
                calls.append(
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": arguments},
                    }
                )
            message["tool_calls"] = calls
        finish = Finish(response.finish_reason or "stop", response.raw_finish_reason)
        reason = finish_reason(
            finish, refused=response.refusal is not None, tool_calls=bool(response.tool_calls)
        )
        return {
            "id": response_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
            ],
            "usage": usage_object(response.usage, request.messages, chars),
        }

    def error_body(self, exc: BaseException) -> tuple[int, Any]:
        return openai_error(exc)


class _Extras:
    """What an answer holds beyond text, reasoning and calls, in a chat completion's fields.

    OpenAI's own: an audio file is ``audio`` (``id``, base64 ``data``, ``expires_at``,
    ``transcript``; one per answer, as OpenAI sends it), a citation with a URL an
    ``annotations`` entry of type ``url_citation``. OpenRouter's: an image is an ``images``
    entry (``{"type": "image_url", "image_url": {"url": <data URL>}}``). spout's, for what
    neither has a shape for: ``spout_files`` (any other file, or a second audio, as a
    portable ``file`` part), ``annotations`` entries of type ``spout_citation`` (a source
    without a URL) and ``spout_raw_events`` (content spout did not recognise, as the
    provider sent it: ``{"type", "data"}``). SDKs keep fields they do not know.

    In a stream, each list entry carries an ``index``, so that the SDKs' accumulators
    (openai's ``accumulate_delta``) gather entries sent in several chunks into one list.
    """

    __slots__ = ("_audio", "_counts", "_id")

    def __init__(self, response_id: str) -> None:
        self._id = response_id
        self._audio = False
        self._counts: dict[str, int] = {}

    def fields(self, event: Event, *, indexed: bool) -> dict[str, Any] | None:
        """The message (or delta) fields for ``event``; None for an event that has none."""
        kind = type(event)
        entry: dict[str, Any]
        if kind is FileEnd:
            file = cast(FileEnd, event).file
            if file.kind == "audio" and not self._audio and file.data is not None:
                self._audio = True
                audio = {
                    "id": f"audio_{self._id}_{cast(FileEnd, event).index}",
                    "data": file.base64(),
                    # The gateway keeps no audio for a later turn to name by its id.
                    "expires_at": int(time.time()),
                    "transcript": "",
                }
                return {"audio": audio}
            if file.kind == "image":
                key, entry = "images", {"type": "image_url", "image_url": {"url": file_url(file)}}
            else:
                key, entry = "spout_files", file_part(file)
        elif kind is Citation:
            key, entry = "annotations", chat_annotation(cast(Citation, event))
        elif kind is RawEvent:
            raw = cast(RawEvent, event)
            key, entry = "spout_raw_events", raw_object(raw.type, raw.data)
        else:
            return None
        if indexed:
            count = self._counts.get(key, 0)
            self._counts[key] = count + 1
            entry = {"index": count, **entry}
        return {key: [entry]}

    def message(self, response: Response) -> dict[str, Any]:
        """The fields of a whole answer's message."""
        out: dict[str, Any] = {}
        events: list[Event] = [
            *(FileEnd(i, file) for i, file in enumerate(response.files)),
            *response.citations,
            *response.raw_events,
        ]
        for event in events:
            for key, value in (self.fields(event, indexed=False) or {}).items():
                if isinstance(value, list):
                    out.setdefault(key, []).extend(value)
                else:
                    out[key] = value
        return out


class ChatCompletionsEncoder:
    """spout events as ``chat.completion.chunk`` frames, by compat's encoder
    (:class:`spout.compat.chunks.ChunkEncoder`, OpenAI's wire shape), then ``[DONE]``.

    The first frame says ``role: assistant`` and nothing more, as OpenAI's stream opens; text
    is ``delta.content``, a refusal ``delta.refusal``, reasoning ``delta.reasoning_content``
    (as DeepSeek and vLLM send it); each tool call gets the next ``index`` (0, 1...) whatever
    the upstream numbered it. The response is named by the gateway, not by the upstream.
    """

    __slots__ = ("_chunks", "_extras", "_opened")

    def __init__(self, request: Request, *, response_id: str, model: str) -> None:
        self._extras = _Extras(response_id)
        self._chunks = ChunkEncoder(
            model,
            request.messages,
            request.include_usage,
            response_id=response_id,
            litellm=False,
        )
        self._opened = False

    def start(self) -> list[bytes]:
        if self._opened:
            return []
        self._opened = True
        return [sse_frame(orjson.dumps(self._chunks.start()))]

    def feed(self, event: Event) -> list[bytes]:
        if type(event) is TextDelta and self._opened:
            # Text is most of a stream: its frame from the encoder's template, no dicts.
            data = self._chunks.text_json(event.text)
            return [] if data is None else [b"data: " + data + b"\n\n"]
        frames = [] if self._opened else self.start()
        if type(event) is TextDelta:
            chunk = self._chunks.text(event.text)
        elif type(event) in _EXTRAS:
            fields = self._extras.fields(event, indexed=True)
            chunk = self._chunks.fields(**fields) if fields else None
        else:
            chunk = self._chunks.event(event)
        if chunk is not None:
            frames.append(sse_frame(orjson.dumps(chunk)))
        return frames

    def end(self, response: Response) -> list[bytes]:
        frames = self.start()
        # The finish as the whole answer has it (an upstream that sent none ends with "stop"),
        # with its usage, which adds up every Usage event.
        self._chunks.event(Finish(response.finish_reason or "stop", response.raw_finish_reason))
        frames += [sse_frame(orjson.dumps(chunk)) for chunk in self._chunks.end(response.usage)]
        frames.append(_DONE)
        return frames

    def error(self, exc: BaseException) -> list[bytes]:
        # The SDK raises APIError on a data frame with an "error" key (openai/_streaming.py);
        # no [DONE] follows, so no client takes the cut answer for a whole one.
        _, body = openai_error(exc)
        return [sse_frame(orjson.dumps(body))]


PROTOCOL = ChatCompletionsProtocol()
