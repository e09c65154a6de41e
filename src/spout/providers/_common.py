"""What the HTTP adapters' JSON wire formats have in common, read and written alike."""

from __future__ import annotations

import binascii
import hashlib
import re
from base64 import b64decode
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .._errors import ProtocolError, ProviderError, error_for_status
from .._events import Event, FileEnd, FileStart, RawEvent, Usage
from .._files import FILE_PART_TYPES, File, file_from_part
from .._policy import server_wait
from ._base import Call, parse_arguments, wire_tools

__all__ = [
    "ToolIds",
    "answer_file",
    "bearer_headers",
    "error_json",
    "error_of_type",
    "error_text",
    "file_events",
    "history_tool_calls",
    "move_settings",
    "object_arguments",
    "portable_file",
    "retry_after_seconds",
    "set_stream",
    "set_tools",
    "token_count",
    "tool_declaration",
    "tool_loop_messages",
    "usage_from",
    "without_cache_control",
]


def set_tools(
    body: dict[str, Any],
    call: Call,
    tool: Callable[[Any], dict[str, Any]],
    choice: Callable[[Any], Any],
) -> None:
    """The call's ``tools`` and ``tool_choice`` into ``body`` under those names, each
    :class:`~spout.Tool` through ``tool`` and the choice through ``choice``."""
    if call.tools:
        body["tools"] = wire_tools(call.tools, tool)
    if call.tool_choice is not None:
        body["tool_choice"] = choice(call.tool_choice)


def move_settings(
    params: dict[str, Any],
    into: dict[str, Any],
    names: tuple[tuple[str, str], ...],
    stop: str,
) -> None:
    """Take spout's settings ``names`` (``(spout's name, the wire's)`` pairs) and ``stop`` out
    of ``params`` and into ``into`` under the wire's names, the stop sequences (a string or
    several) as a list under ``stop``. Unset ones (None) are left out."""
    for name, key in names:
        value = params.pop(name, None)
        if value is not None:
            into[key] = value
    sequences = params.pop("stop", None)
    if sequences is not None:
        into[stop] = [sequences] if isinstance(sequences, str) else list(sequences)


def error_of_type(
    status_code: int | None,
    message: str,
    error_type: str | None,
    statuses: Mapping[str, int],
    **details: Any,
) -> ProviderError:
    """The spout error for a provider error with a type, sent as an HTTP status or (with
    ``status_code`` None) inside a stream. In a stream the class follows the type, by the
    status ``statuses`` gives it, and the error carries no status, since none was sent.
    ``details`` are :func:`~spout._errors.error_for_status`'s keywords."""
    status = status_code if status_code is not None else statuses.get(error_type or "", 0)
    exc = error_for_status(status, message, error_type=error_type, **details)
    if status_code is None:
        exc.status_code = None
    return exc


def set_stream(body: dict[str, Any], stream: bool) -> None:
    """``"stream": true`` in ``body`` for a stream; otherwise no ``stream`` at all (one given
    as a keyword is dropped: the driver, not the caller, says how the answer comes)."""
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)


def tool_declaration(tool: Any, schema_key: str) -> dict[str, Any]:
    """A :class:`~spout.Tool`'s name, description (when it has one) and parameters under
    ``schema_key``: what every wire's tool definition holds, whatever it wraps it in."""
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out[schema_key] = tool.parameters
    return out


def tool_loop_messages(
    messages: list[dict[str, Any]], convert: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """The messages, each through ``convert``, for a wire that takes spout's (chat
    completions') messages but for the tool loop's turns. A conversation with no assistant
    or tool message is returned as it is: it has nothing to convert, and nothing is copied."""
    if not any(m.get("role") in ("assistant", "tool") for m in messages):
        return messages
    return [convert(message) for message in messages]


def bearer_headers(key: str | None) -> dict[str, str]:
    """A JSON request's headers, with ``key`` as a bearer token when there is one."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def error_json(body: bytes) -> Any:
    """An error response's body parsed as JSON; None when it is empty or not JSON."""
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def error_text(status: int, body: bytes) -> str:
    """An error response's body as a message: its text, cut to 500 characters, or
    ``HTTP {status}`` when it has none."""
    return body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a server asked for, from ``retry-after-ms`` or ``retry-after`` (seconds).

    A value that is not a finite number is ignored, a negative one is 0, a huge one is cut
    to a day (:func:`spout._policy.server_wait`): the headers come from the network.
    """
    value = headers.get("retry-after-ms")
    if value:
        try:
            wait = server_wait(float(value) / 1000)
        except ValueError:
            wait = None
        if wait is not None:
            return wait
    value = headers.get("retry-after")
    if value:
        try:
            return server_wait(float(value))
        except ValueError:
            return None  # an HTTP date; retries (a later issue) may parse it
    return None


def token_count(data: Any, path: str) -> int | None:
    """The token count at a dotted ``path`` of a usage object
    (``"prompt_tokens_details.cached_tokens"``), or None where the wire has none (a count
    sent as a float, as Cohere's SDK types them, is made an int).

    >>> token_count({"a": {"b": 3}}, "a.b"), token_count({"a": None}, "a.b")
    (3, None)
    """
    for key in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    if isinstance(data, bool) or not isinstance(data, int | float):
        return None
    return int(data)


def usage_from(
    data: Mapping[str, Any],
    input_key: str,
    output_key: str,
    *,
    cache_read: str | None = None,
    reasoning: str | None = None,
    reasoning_apart: bool = False,
) -> Usage:
    """A usage object's counts under the wire's names (``cache_read`` and ``reasoning`` as
    dotted paths, for the wires whose input count already holds the cached tokens and whose
    output count the reasoning); whatever else it reports, but nulls, goes into ``extras``.

    ``reasoning_apart`` is for a wire whose output count leaves the reasoning out (xAI's):
    spout's ``output_tokens`` holds it all the same.
    """
    extras = {
        key: value
        for key, value in data.items()
        if key not in (input_key, output_key) and value is not None
    }
    output = data.get(output_key)
    thought = token_count(data, reasoning) if reasoning else None
    if reasoning_apart and thought and isinstance(output, int):
        output += thought
    return Usage(
        data.get(input_key),
        output,
        extras,
        cache_read_tokens=token_count(data, cache_read) if cache_read else None,
        reasoning_tokens=thought,
    )


def _marked(message: Mapping[str, Any]) -> bool:
    content = message.get("content")
    return "cache_control" in message or (
        isinstance(content, list)
        and any(isinstance(part, Mapping) and "cache_control" in part for part in content)
    )


def without_cache_control(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with their prompt-cache markers (``cache_control``, on a message or on a
    content part) left out, for a provider that caches by itself and may refuse the key
    (OpenAI's API refuses properties it does not know). The list is returned as it is when
    no message has one, and the caller's messages are never changed.

    >>> without_cache_control([{"role": "user", "content": "Hi", "cache_control": {}}])
    [{'role': 'user', 'content': 'Hi'}]
    """
    if not any(_marked(message) for message in messages):
        return messages
    out = []
    for message in messages:
        message = {key: value for key, value in message.items() if key != "cache_control"}
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = [
                {k: v for k, v in part.items() if k != "cache_control"}
                if isinstance(part, Mapping)
                else part
                for part in content
            ]
        out.append(message)
    return out


def object_arguments(value: Any) -> dict[str, Any]:
    """Tool-call arguments a provider sent as an object, not as JSON text: none is ``{}``,
    and a value that is not an object is kept under ``"value"``."""
    if isinstance(value, dict):
        return value
    return {} if value is None else {"value": value}


def history_tool_calls(message: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], Any, Any]]:
    """An assistant message's tool calls, for a wire that sends arguments as an object: each
    call with its function's name and arguments (JSON text parsed leniently, none as ``{}``).

    A call may be in chat completions' shape (``{"id", "function": {...}}``) or flat.
    """
    for tool_call in message.get("tool_calls") or ():
        function = tool_call.get("function") or tool_call
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            arguments = parse_arguments(arguments)
        yield tool_call, function.get("name"), arguments or {}


def portable_file(part: Any) -> File | None:
    """The file a portable content part (``image_url``, ``file``, ``input_audio``) carries;
    None for any other part (text, or a block in a provider's own shape)."""
    if not isinstance(part, Mapping) or part.get("type") not in FILE_PART_TYPES:
        return None
    return file_from_part(part)


def answer_file(index: int, data: str | bytes | None, media_type: str | None, what: str) -> Event:
    """A file a model answered with, whole: its :class:`FileEnd`, the bytes given as they are or
    decoded from base64 (``what`` names where they came, for the error when they are not).

    The media type is the provider's, else guessed from the bytes. Content with no bytes at
    all is no file: it comes as a :class:`RawEvent` named ``what``, so that it does not vanish.
    """
    if isinstance(data, str):
        try:
            data = b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"{what} is not base64", data=data[:200]) from None
    if not data:
        return RawEvent(what, {"media_type": media_type})
    return FileEnd(index, File(data=data, media_type=media_type))


def file_events(
    index: int, data: str | bytes | None, media_type: str | None, what: str
) -> list[Event]:
    """A file that arrives whole in one piece of the wire: its :class:`FileStart` and its
    :class:`FileEnd` (:func:`answer_file`) together."""
    end = answer_file(index, data, media_type, what)
    if type(end) is not FileEnd:
        return [end]
    return [FileStart(index, end.file.media_type), end]


_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _hashed(old: str, attempt: int, length: int) -> str:
    """``length`` letters and digits derived from ``old`` (and the attempt), the same every run."""
    number = int.from_bytes(hashlib.sha256(f"{attempt}:{old}".encode()).digest()[:8], "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[digit])
    return "".join(chars)


@dataclass(frozen=True)
class ToolIds:
    """The tool-call ids a provider accepts, and how an id it would refuse is rewritten in an
    outgoing request (:meth:`rewrite`).

    ``fits`` is the full pattern of an accepted id. An id that does not fit is replaced by
    ``length`` hashed letters and digits when ``length`` is set (Mistral's fixed size); else
    by the id with the characters ``outside`` taken out, cut to ``max_length``, and given a
    short hash suffix when that leaves it empty, too long, or equal to another id.

    >>> ToolIds.of_chars("a-zA-Z0-9_-").rewrite(
    ...     [{"role": "tool", "tool_call_id": "call:1", "content": "4"}]
    ... )[0]["tool_call_id"]
    'call1'
    """

    fits: re.Pattern[str]
    length: int | None = None
    outside: re.Pattern[str] | None = None
    max_length: int | None = None

    @classmethod
    def of_chars(cls, chars: str, max_length: int | None = None) -> ToolIds:
        """Ids of one or more of the characters of the regex class ``chars`` (at most
        ``max_length``); others are taken out.

        >>> ToolIds.of_chars("a-zA-Z0-9_-").derive("toolu:01/x", 0)
        'toolu01x'
        """
        top = "" if max_length is None else str(max_length)
        return cls(
            re.compile(f"[{chars}]{{1,{top}}}"),
            outside=re.compile(f"[^{chars}]"),
            max_length=max_length,
        )

    @classmethod
    def at_most(cls, max_length: int) -> ToolIds:
        """Ids of any characters, 1 to ``max_length`` of them; a longer one is cut.

        >>> len(ToolIds.at_most(40).derive("x" * 50, 0))
        40
        """
        return cls(re.compile(f"(?s).{{1,{max_length}}}"), max_length=max_length)

    def derive(self, old: str, attempt: int) -> str:
        """The new id for ``old``; ``attempt`` counts the candidates already taken."""
        if self.length is not None:
            return _hashed(old, attempt, self.length)
        kept = self.outside.sub("", old) if self.outside is not None else old
        limit = self.max_length
        if attempt == 0 and kept and (limit is None or len(kept) <= limit):
            return kept
        suffix = "_" + _hashed(old, attempt, 8)
        if self.outside is not None:  # a rule may refuse "_" or some letters too
            suffix = self.outside.sub("", suffix)
        stem = kept or "call"
        return (stem if limit is None else stem[: limit - len(suffix)]) + suffix

    def rewrite(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """spout's OpenAI-style messages with every tool-call id this provider would refuse
        replaced, alike in the assistant's ``tool_calls`` and in the ``tool`` results that
        answer them.

        An id that fits is kept; one that does not always gets the same new id (ids are taken
        in the order they first appear, so a longer history keeps an earlier id's mapping),
        never one that another id of the history has. The list is returned as it is when
        every id fits; a message that changes is copied, never edited: the caller's history
        and the stored turns keep their own ids.
        """
        ids: list[str] = []
        for message in messages:
            role = message.get("role")
            if role == "assistant":
                ids += [c.get("id") for c in message.get("tool_calls") or ()]
            elif role == "tool":
                ids.append(message.get("tool_call_id"))  # type: ignore[arg-type]
        ids = [i for i in dict.fromkeys(ids) if isinstance(i, str)]
        unfit = [i for i in ids if not self.fits.fullmatch(i)]
        if not unfit:
            return messages
        taken = {i for i in ids if self.fits.fullmatch(i)}
        new: dict[str, str] = {}
        for old in unfit:
            attempt = 0
            while (candidate := self.derive(old, attempt)) in taken or not self.fits.fullmatch(
                candidate
            ):
                attempt += 1  # two ids must never answer as one
                if attempt > 1000:  # a rule whose ids cannot hold a hash suffix
                    raise ValueError(f"no tool-call id this provider takes is left for {old!r}")
            taken.add(candidate)
            new[old] = candidate
        out = []
        for message in messages:
            role = message.get("role")
            if role == "tool" and message.get("tool_call_id") in new:
                message = {**message, "tool_call_id": new[message["tool_call_id"]]}
            elif role == "assistant" and any(
                c.get("id") in new for c in message.get("tool_calls") or ()
            ):
                calls = [
                    {**c, "id": new[c["id"]]} if c.get("id") in new else c
                    for c in message["tool_calls"]
                ]
                message = {**message, "tool_calls": calls}
            out.append(message)
        return out
