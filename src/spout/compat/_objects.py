"""The litellm-shaped response objects: JSON dicts with attribute access."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

JSONDict = dict[str, Any]

_dict_get = dict.get
_object_getattribute = object.__getattribute__
_MISSING: Any = object()


class OpenAIObject(dict[str, Any]):
    """A JSON object with attribute access: ``obj.choices[0].delta.content`` or
    ``obj["choices"][0]["delta"]["content"]``.

    A ``dict`` underneath, so building one costs what building a dict costs, ``json.dumps``
    takes it as it is, and it compares equal to the plain dict it holds. A missing key is an
    ``AttributeError`` to attribute access (so ``getattr(delta, "reasoning_content", None)``
    and ``hasattr(chunk, "usage")`` work as with litellm) and a ``KeyError`` to item access.

    Example::

        response = completion(model="local/smollm2", messages=[{"role": "user", "content": "Hi"}])
        response.choices[0].message.content == response["choices"][0]["message"]["content"]
        response.model_dump()  # plain dicts and lists, all the way down
    """

    __slots__ = ()

    # Keys first, then the class's own attributes (its methods): a key is found without an
    # exception raised and caught, at a fifth of what __getattr__ would cost, and a miss is
    # the AttributeError that hasattr() and getattr(obj, name, default) expect.
    def __getattribute__(self, name: str) -> Any:
        value = _dict_get(self, name, _MISSING)
        if value is _MISSING:
            return _object_getattribute(self, name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def model_dump(self, *, exclude_none: bool = False) -> JSONDict:
        """The object as plain ``dict``, ``list`` and JSON scalars (pydantic's name for it)."""
        dumped: JSONDict = _plain(self, exclude_none)
        return dumped

    def dict(self, *, exclude_none: bool = False) -> JSONDict:
        """The same as :meth:`model_dump` (pydantic v1's name, which litellm objects keep)."""
        return self.model_dump(exclude_none=exclude_none)

    def model_dump_json(self, *, indent: int | None = None, exclude_none: bool = False) -> str:
        """The object as JSON text."""
        if indent is None and not exclude_none:
            return orjson.dumps(self).decode()
        return json.dumps(self.model_dump(exclude_none=exclude_none), indent=indent)

    def json(self, *, indent: int | None = None, exclude_none: bool = False) -> str:
        """The same as :meth:`model_dump_json`."""
        return self.model_dump_json(indent=indent, exclude_none=exclude_none)

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.items())
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> Any:
        return (type(self), (dict(self),))


class ModelResponse(OpenAIObject):
    """A complete ``chat.completion``: what a non-streamed call and the chunk builder return."""

    __slots__ = ()


class ModelResponseStream(OpenAIObject):
    """One ``chat.completion.chunk`` of a stream."""

    __slots__ = ()


class Choices(OpenAIObject):
    """A choice of a complete response: ``index``, ``message``, ``finish_reason``."""

    __slots__ = ()


class StreamingChoices(OpenAIObject):
    """A choice of a chunk: ``index``, ``delta``, ``finish_reason``."""

    __slots__ = ()


class Message(OpenAIObject):
    """The assistant's message: ``content``, ``role``, ``tool_calls`` (and reasoning, if any)."""

    __slots__ = ()


class Delta(OpenAIObject):
    """What a chunk adds to the message: ``content``, ``role``, ``tool_calls``..."""

    __slots__ = ()


class Function(OpenAIObject):
    """A tool call's ``name`` and JSON ``arguments`` text."""

    __slots__ = ()


class ChatCompletionMessageToolCall(OpenAIObject):
    """A complete tool call: ``id``, ``type``, ``function``."""

    __slots__ = ()


class ChatCompletionDeltaToolCall(OpenAIObject):
    """A piece of a tool call in a chunk, keyed by ``index``."""

    __slots__ = ()


class Usage(OpenAIObject):
    """Token counts: ``prompt_tokens``, ``completion_tokens``, ``total_tokens``."""

    __slots__ = ()


def _plain(value: Any, exclude_none: bool) -> Any:
    if isinstance(value, dict):
        return {
            key: _plain(item, exclude_none)
            for key, item in value.items()
            if not (exclude_none and item is None)
        }
    if isinstance(value, (list, tuple)):
        return [_plain(item, exclude_none) for item in value]
    return value


def _wrap(value: Any, cls: type[OpenAIObject] = OpenAIObject) -> Any:
    """Plain JSON (or an object with ``model_dump``) as :class:`OpenAIObject` all the way down."""
    if not isinstance(value, Mapping) and hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, Mapping):
        return cls({key: _wrap(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return [_wrap(item) for item in value]
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    """A chunk or a part of one as a mapping: mappings as they are, pydantic objects dumped."""
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        dumped: Mapping[str, Any] = dump()
        return dumped
    raise TypeError(f"not a chat.completion.chunk: {value!r:.80}")


def _as_dict(value: Any) -> dict[str, Any]:
    """A chunk or a part of one as a dict, read with ``dict.get`` (no attribute hook)."""
    return value if isinstance(value, dict) else dict(_mapping(value))
