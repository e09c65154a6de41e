"""Structured output: a ``response_format`` sent in each provider's shape, parsed as it streams.

A caller's ``response_format`` becomes one :class:`~spout._output_format.OutputFormat` on the
:class:`~spout.providers._base.Call` (what it asks for, and how an answer is checked, are in
:mod:`spout._output_format`). Right before each request (a retry or a fallback may reach
another provider), :func:`request_for` translates it into that provider's native structured
output where it has one, and otherwise into an instruction in the system prompt. While the
text streams, :func:`partial_objects` gives progressively completed objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ._events import TextDelta

# Named here too: they were defined here before _output_format, and callers import them so.
from ._output_format import (
    OutputFormat,
    PartialObjects,
    find_json,
    output_format,
    schema_problems,
)

if TYPE_CHECKING:
    from ._stream import AsyncStream, Stream
    from .providers._base import Call, Provider

__all__ = [
    "OutputFormat",
    "PartialObjects",
    "apartial_objects",
    "find_json",
    "output_format",
    "partial_objects",
    "request_for",
    "schema_problems",
]

# -- per provider -------------------------------------------------------------------------------


def request_for(provider: Provider, call: Call) -> Call:
    """``call`` as ``provider`` should receive it: its ``output_format`` in the provider's
    own shape (:meth:`Provider.output_shape`), with the format stated in the system prompt
    where the provider asks for that (a new Call; the one given is left as it is, for a
    fallback to reshape)."""
    fmt: OutputFormat | None = call.output_format
    if fmt is None:
        return call
    shape = provider.output_shape(fmt, call.params)
    messages = (
        with_instruction(call.messages, fmt.instruction()) if shape.instruct else call.messages
    )
    return dataclasses.replace(call, params=shape.params, messages=messages)


def with_instruction(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    """The messages with ``instruction`` at the end of the system prompt (one made if none)."""
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        content = first.get("content")
        if isinstance(content, list):
            first["content"] = [*content, {"type": "text", "text": instruction}]
        else:
            first["content"] = f"{content}\n\n{instruction}" if content else instruction
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


# -- partial objects from a stream -------------------------------------------------------------


def partial_objects(stream: Stream, fmt: OutputFormat | None) -> Iterator[Any]:
    """What :meth:`Stream.partial_objects` yields (``fmt``: the stream's output format)."""
    objects = PartialObjects(_openers(fmt))
    if objects.feed(stream.text):
        yield objects.value
    for event in stream.events():
        if type(event) is TextDelta and objects.feed(event.text):
            yield objects.value


async def apartial_objects(stream: AsyncStream, fmt: OutputFormat | None) -> AsyncIterator[Any]:
    """What :meth:`AsyncStream.partial_objects` yields (``fmt``: the stream's output format)."""
    objects = PartialObjects(_openers(fmt))
    if objects.feed(stream.text):
        yield objects.value
    async for event in stream.events():
        if type(event) is TextDelta and objects.feed(event.text):
            yield objects.value


def _openers(fmt: OutputFormat | None) -> str:
    return fmt.openers if fmt is not None else "{["
