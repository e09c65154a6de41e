"""OpenAI's Responses API on the wire: ``POST /v1/responses`` in, response events out."""

from __future__ import annotations

import time
from typing import Any, cast

import orjson

from .. import (
    Citation,
    Event,
    File,
    FileEnd,
    RawEvent,
    ReasoningDelta,
    RefusalDelta,
    Response,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from ..compat.chunks import arguments_text
from ._attachments import file_url, raw_object, responses_annotation, responses_part
from ._openai import (
    UNSUPPORTED,
    ErrorKind,
    at_least_one,
    classify_error,
    flag,
    number,
    object_field,
    objects,
    openai_error,
    refuse_given,
    refuse_unknown,
    request_model,
    request_object,
    take_numbers,
    take_prompt_cache_key,
    tool_choice,
    tool_names,
)
from ._wire import Request, RequestError, sse_frame

__all__ = ["PROTOCOL", "ResponsesEncoder", "ResponsesProtocol"]

_IGNORED = frozenset(
    (
        "store",
        "metadata",
        "user",
        "parallel_tool_calls",
        "service_tier",
        "safety_identifier",
        "prompt_cache_retention",
        "truncation",
        "include",
        "stream_options",
    )
)
_REFUSED = ("previous_response_id", "conversation", "prompt", "max_tool_calls")
_KEEPS_NONE = UNSUPPORTED + ", which keeps no responses: send the whole conversation as input"
_KNOWN = _IGNORED | frozenset(
    (
        "prompt_cache_key",
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "text",
        "reasoning",
        "background",
        "top_logprobs",
        *_REFUSED,
    )
)

# ResponseError.code for each kind (openai-python types/responses/response_error.py).
_FAILED_CODES = {
    ErrorKind.INVALID_REQUEST: "invalid_prompt",
    ErrorKind.CONTEXT_WINDOW: "invalid_prompt",
    ErrorKind.RATE_LIMIT: "rate_limit_exceeded",
}

# A finish that is not "completed": the response is "incomplete", and says why.
# The events that carry text, by the kind of item they fill...
_TEXT_ITEMS: dict[type[Event], str] = {
    TextDelta: "message",
    RefusalDelta: "refusal",
    ReasoningDelta: "reasoning",
}
# ... and each kind's delta event, with the name of its part's index.
_TEXT_DELTAS = {
    "message": ("response.output_text.delta", "content_index"),
    "refusal": ("response.refusal.delta", "content_index"),
    "reasoning": ("response.reasoning_summary_text.delta", "summary_index"),
}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _fail(message: str, param: str) -> RequestError:
    return RequestError(message, param=param)


def _text(parts: list[Any], where: str, joiner: str) -> Any:
    """Input content parts as chat content: a string when all are text."""
    out: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            out.append({"type": "text", "text": str(part.get("text") or "")})
            continue
        # input_image, input_file, input_audio: spout's portable parts.
        file = responses_part(part, f"{where}.content[{j}]") if isinstance(part, dict) else None
        if file is None:
            raise _fail(
                f"{where}.content[{j}]: a part of type {kind!r:.40} is not supported "
                "(input_text, output_text, input_image, input_file or input_audio)",
                "input",
            )
        out.append(file)
    if all(part["type"] == "text" for part in out):
        return joiner.join(part["text"] for part in out)
    return out


def _input(value: Any) -> list[dict[str, Any]]:
    """``input`` items as spout's chat messages; function calls join the assistant turn."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    listed = "a string or a non-empty list of items"
    for where, item in objects(value, "input", listed=listed, each="an object"):
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _fail(
                    f"{where}.role must be user, assistant, system or developer, not {role!r:.40}",
                    "input",
                )
            content = item.get("content")
            refusal: str | None = None
            if isinstance(content, list) and role == "assistant":
                # An earlier response's refusal part (ResponseOutputRefusal), handed back as
                # the SDK gives it: kept as the turn's refusal, apart from its text.
                refusals = [
                    part
                    for part in content
                    if isinstance(part, dict) and part.get("type") == "refusal"
                ]
                if refusals:
                    if not all(isinstance(part.get("refusal"), str) for part in refusals):
                        raise _fail(f"{where}: a refusal part needs its refusal text", "input")
                    refusal = "".join(part["refusal"] for part in refusals)
                    content = [part for part in content if part not in refusals]
            if isinstance(content, list):
                content = _text(content, where, "" if role == "assistant" else "\n\n")
            elif not isinstance(content, str):
                raise _fail(f"{where}.content must be a string or a list of parts", "input")
            message = {"role": "system" if role == "developer" else role, "content": content}
            if refusal is not None:
                message["refusal"] = refusal
            messages.append(message)
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            arguments = item.get("arguments", "")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise _fail(f"{where} (function_call) needs a call_id and a name", "input")
            if not isinstance(arguments, str):
                raise _fail(f"{where}.arguments must be a JSON string", "input")
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments or "{}"},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if not last["content"]:
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str):
                raise _fail(f"{where} (function_call_output) needs a call_id", "input")
            if isinstance(output, list):
                output = _text(output, where, "\n\n")
            elif not isinstance(output, str):
                raise _fail(f"{where}.output must be a string or a list of parts", "input")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind in ("reasoning", "image_generation_call"):
            # Items of an earlier response handed back: reasoning (OpenAI's own, opaque) and
            # an image the model made, which spout's messages do not hold; dropped.
            continue
        else:
            raise _fail(f"{where}: an item of type {kind!r:.40} is not supported", "input")
    return messages


def _tools(value: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Flat function tools as chat completions' (spout's), and as the response echoes them."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise _fail("tools must be a list of function tools", "tools")
    tools: list[dict[str, Any]] = []
    echoed: list[dict[str, Any]] = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _fail(f"tools[{i}]: only function tools are supported, not {kind!r:.40}", "tools")
        name, parameters = tool.get("name"), tool.get("parameters")
        if not isinstance(name, str):
            raise _fail(f"tools[{i}] must have a name", "tools")
        if parameters is not None and not isinstance(parameters, dict):
            raise _fail(f"tools[{i}].parameters must be a JSON Schema object", "tools")
        function: dict[str, Any] = {"name": name, "parameters": parameters or {"type": "object"}}
        if tool.get("description"):
            function["description"] = tool["description"]
        tools.append({"type": "function", "function": function})
        echoed.append(
            {
                "type": "function",
                "name": name,
                "description": tool.get("description"),
                "parameters": parameters,
                "strict": tool.get("strict"),
            }
        )
    return tools, echoed


def _format(text: Any) -> Any:
    """``text.format`` as spout's ``response_format`` (None for plain text)."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise _fail("text must be an object", "text")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        if not isinstance(fmt.get("schema"), dict):
            raise _fail("text.format.schema must be a JSON Schema object", "text")
        spec = {
            key: fmt[key]
            for key in ("name", "schema", "strict", "description")
            if fmt.get(key) is not None
        }
        spec.setdefault("name", "output")
        return {"type": "json_schema", "json_schema": spec}
    raise _fail("text.format.type must be 'text', 'json_object' or 'json_schema'", "text")


class ResponsesProtocol:
    """``POST /v1/responses``: OpenAI's Responses API, streamed (``response.created`` ...
    ``response.completed``) or not (one ``response`` object).

    Example::

        request = PROTOCOL.parse({"model": "m", "instructions": "Be brief.", "input": "Hi"})
        request.messages   # [{"role": "system", ...}, {"role": "user", "content": "Hi"}]
    """

    name = "responses"

    def parse(self, body: Any) -> Request:
        body = request_object(body)
        refuse_unknown(body, _KNOWN)
        refuse_given(body, _REFUSED, _KEEPS_NONE)
        if body.get("background"):
            raise _fail("background responses are not supported by the gateway", "background")
        if body.get("top_logprobs"):
            raise _fail("logprobs are not supported by the gateway", "top_logprobs")
        model = request_model(body)
        messages = _input(body.get("input"))
        instructions = body.get("instructions")
        if instructions is not None:
            if not isinstance(instructions, str):
                raise _fail("instructions must be a string", "instructions")
            messages.insert(0, {"role": "system", "content": instructions})
        tools, echoed = _tools(body.get("tools"))
        params: dict[str, Any] = {}
        max_tokens = at_least_one(
            number(body, "max_output_tokens", integer=True), "max_output_tokens"
        )
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        take_numbers(body, params, ("temperature", "top_p"))
        choice = tool_choice(
            body.get("tool_choice"),
            tool_names(tools),
            name_of=lambda choice: choice.get("name"),
            named="{'type': 'function', 'name': ...}",
        )
        if choice is not None:
            params["tool_choice"] = choice
        response_format = _format(body.get("text"))
        if response_format is not None:
            params["response_format"] = response_format
        take_prompt_cache_key(body, params)
        reasoning = object_field(body, "reasoning")
        if reasoning is not None and any(v is not None for v in reasoning.values()):
            # The Responses API's own setting: a Responses upstream takes it, others refuse.
            params["reasoning"] = reasoning
        text = body.get("text")
        echo = {
            "instructions": instructions,
            "tools": echoed,
            "tool_choice": body.get("tool_choice") or "auto",
            "max_output_tokens": max_tokens,
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "text": {"format": (text or {}).get("format") or {"type": "text"}},
            "metadata": body.get("metadata") or {},
            "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
            "store": False,
            "user": body.get("user"),
        }
        return Request(
            model=model,
            messages=messages,
            stream=flag(body, "stream"),
            tools=tools,
            params=params,
            extras={"response": echo},
        )

    def encoder(self, request: Request, *, response_id: str, model: str) -> ResponsesEncoder:
        return ResponsesEncoder(request, response_id=response_id, model=model)

    def body(
        self, request: Request, response: Response, *, response_id: str, model: str
    ) -> dict[str, Any]:
        encoder = ResponsesEncoder(request, response_id=response_id, model=model)
        if response.reasoning:
            encoder.feed(ReasoningDelta(response.reasoning))
        if response.text:
            encoder.feed(TextDelta(response.text))
        for citation in response.citations:
            encoder.feed(citation)  # annotations of the message just fed
        if response.refusal:
            encoder.feed(RefusalDelta(response.refusal))
        for index, call in enumerate(response.tool_calls):
            encoder.feed(ToolCallStart(index, call.id, call.name))
            encoder.feed(ToolCallEnd(index, call))
        for index, file in enumerate(response.files):
            encoder.feed(FileEnd(index, file))
        for raw in response.raw_events:
            encoder.feed(raw)
        encoder.end(response)
        return encoder.final

    def error_body(self, exc: BaseException) -> tuple[int, Any]:
        return openai_error(exc)


def _usage(response: Response) -> dict[str, Any]:
    usage = response.usage
    input_tokens, output_tokens = usage.input_tokens or 0, usage.output_tokens or 0
    return {
        "input_tokens": input_tokens,
        # The parts already counted in: what was read from the prompt cache and written to it,
        # and what was spent reasoning (0 where the upstream did not say).
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens or 0,
            "cache_write_tokens": usage.cache_write_tokens or 0,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": input_tokens + output_tokens,
    }


class ResponsesEncoder:
    """spout events as the Responses API's stream events.

    Each event carries its ``type`` and a ``sequence_number`` counted from 0. Reasoning is one
    ``reasoning`` item with a summary, text one ``message`` item with one ``output_text``
    part, a refusal one ``message`` item with one ``refusal`` part (``response.refusal.delta``
    and ``.done``, as the API streams one), each tool call a ``function_call`` item; an item
    is closed (its ``*.done`` events) before the next opens, except calls, which may overlap
    as their ``output_index`` tells them apart. ``final`` is the response object once
    :meth:`end` or :meth:`error` ran.
    """

    __slots__ = (
        "_calls",
        "_created",
        "_echo",
        "_id",
        "_model",
        "_open",
        "_output",
        "_seq",
        "_spout",
        "_started",
        "final",
    )

    def __init__(self, request: Request, *, response_id: str, model: str) -> None:
        self._id = response_id
        self._model = model
        self._echo: dict[str, Any] = request.extras.get("response") or {}
        self._created = int(time.time())
        self._seq = 0
        self._started = False
        self._output: list[dict[str, Any] | None] = []  # done items; None while open
        # The open message, refusal or reasoning item: [kind, output index, item id, parts]
        self._open: list[Any] | None = None
        # upstream index -> [output index, item id, call id, name, argument parts]
        self._calls: dict[int, list[Any]] = {}
        # spout's fields of the response: "spout_files", "spout_raw_events"
        self._spout: dict[str, list[Any]] = {}
        self.final: dict[str, Any] = {}

    def _frame(self, kind: str, data: dict[str, Any]) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **data}
        self._seq += 1
        return sse_frame(orjson.dumps(payload), kind)

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        echo = self._echo
        output = [item for item in self._output if item is not None]
        return {
            "id": self._id,
            "object": "response",
            "created_at": self._created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": echo.get("instructions"),
            "max_output_tokens": echo.get("max_output_tokens"),
            "model": self._model,
            "output": output,
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": False,
            "temperature": echo.get("temperature"),
            "text": echo.get("text") or {"format": {"type": "text"}},
            "tool_choice": echo.get("tool_choice") or "auto",
            "tools": echo.get("tools") or [],
            "top_p": echo.get("top_p"),
            "truncation": "disabled",
            "usage": None,
            "user": echo.get("user"),
            "metadata": echo.get("metadata") or {},
            **self._spout,
            **extra,
        }

    def start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        response = self._response("in_progress")
        return [
            self._frame("response.created", {"response": response}),
            self._frame("response.in_progress", {"response": response}),
        ]

    def _item_id(self, prefix: str, index: int) -> str:
        return f"{prefix}_{self._id}_{index}"

    def _add(self, frames: list[bytes], item: dict[str, Any]) -> int:
        index = len(self._output)
        self._output.append(None)
        frames.append(
            self._frame("response.output_item.added", {"output_index": index, "item": item})
        )
        return index

    def _begin(self, frames: list[bytes], kind: str) -> list[Any]:
        self._close(frames)
        index = len(self._output)
        if kind in ("message", "refusal"):
            item_id = self._item_id("msg", index)
            self._add(
                frames,
                {
                    "id": item_id,
                    "type": "message",
                    "status": "in_progress",
                    "content": [],
                    "role": "assistant",
                },
            )
            frames.append(
                self._frame(
                    "response.content_part.added",
                    {
                        "item_id": item_id,
                        "output_index": index,
                        "content_index": 0,
                        "part": {
                            "type": "output_text",
                            "annotations": [],
                            "logprobs": [],
                            "text": "",
                        }
                        if kind == "message"
                        else {"type": "refusal", "refusal": ""},
                    },
                )
            )
        else:
            item_id = self._item_id("rs", index)
            self._add(frames, {"id": item_id, "type": "reasoning", "summary": []})
            frames.append(
                self._frame(
                    "response.reasoning_summary_part.added",
                    {
                        "item_id": item_id,
                        "output_index": index,
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""},
                    },
                )
            )
        self._open = [kind, index, item_id, [], []]
        return self._open

    def _close(self, frames: list[bytes]) -> None:
        if self._open is None:
            return
        kind, index, item_id, parts, annotations = self._open
        self._open = None
        text = "".join(parts)
        if kind in ("message", "refusal"):
            part: dict[str, Any]
            if kind == "message":
                part = {
                    "type": "output_text",
                    "annotations": annotations,
                    "logprobs": [],
                    "text": text,
                }
                done = ("response.output_text.done", {"text": text, "logprobs": []})
            else:
                part = {"type": "refusal", "refusal": text}
                done = ("response.refusal.done", {"refusal": text})
            frames.append(
                self._frame(
                    done[0],
                    {"item_id": item_id, "output_index": index, "content_index": 0, **done[1]},
                )
            )
            frames.append(
                self._frame(
                    "response.content_part.done",
                    {
                        "item_id": item_id,
                        "output_index": index,
                        "content_index": 0,
                        "part": part,
                    },
                )
            )
            item = {
                "id": item_id,
                "type": "message",
                "status": "completed",
                "content": [part],
                "role": "assistant",
            }
        else:
            part = {"type": "summary_text", "text": text}
            frames.append(
                self._frame(
                    "response.reasoning_summary_text.done",
                    {
                        "item_id": item_id,
                        "output_index": index,
                        "summary_index": 0,
                        "text": text,
                    },
                )
            )
            frames.append(
                self._frame(
                    "response.reasoning_summary_part.done",
                    {
                        "item_id": item_id,
                        "output_index": index,
                        "summary_index": 0,
                        "part": part,
                    },
                )
            )
            item = {"id": item_id, "type": "reasoning", "summary": [part]}
        self._output[index] = item
        frames.append(
            self._frame("response.output_item.done", {"output_index": index, "item": item})
        )

    def _start_call(self, frames: list[bytes], upstream: int, call_id: str, name: str) -> None:
        self._close(frames)
        index = len(self._output)
        item_id = self._item_id("fc", index)
        self._add(
            frames,
            {
                "id": item_id,
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": call_id,
                "name": name,
            },
        )
        self._calls[upstream] = [index, item_id, call_id, name, []]

    def _end_call(self, frames: list[bytes], upstream: int, tool_call: ToolCall | None) -> None:
        index, item_id, call_id, name, parts = self._calls.pop(upstream)
        if parts:
            arguments = "".join(parts)
        elif tool_call is not None:
            # A call sent whole: its arguments in one delta, as the API would stream them.
            arguments = arguments_text(tool_call)
            frames.append(
                self._frame(
                    "response.function_call_arguments.delta",
                    {
                        "item_id": item_id,
                        "output_index": index,
                        "delta": arguments,
                    },
                )
            )
        else:
            arguments = "{}"
        frames.append(
            self._frame(
                "response.function_call_arguments.done",
                {
                    "item_id": item_id,
                    "output_index": index,
                    "name": name,
                    "arguments": arguments,
                },
            )
        )
        item = {
            "id": item_id,
            "type": "function_call",
            "status": "completed",
            "arguments": arguments,
            "call_id": call_id,
            "name": name,
        }
        self._output[index] = item
        frames.append(
            self._frame("response.output_item.done", {"output_index": index, "item": item})
        )

    def _text(self, frames: list[bytes], kind: str, text: str) -> None:
        """``text`` added to the open item of ``kind`` (opened if another, or none, is)."""
        item = self._open if self._open and self._open[0] == kind else None
        if item is None:
            item = self._begin(frames, kind)
        item[3].append(text)
        event, index = _TEXT_DELTAS[kind]
        data: dict[str, Any] = {
            "item_id": item[2],
            "output_index": item[1],
            index: 0,
            "delta": text,
        }
        if kind == "message":
            data["logprobs"] = []
        frames.append(self._frame(event, data))

    def _annotate(self, frames: list[bytes], citation: Citation) -> None:
        """A citation as an annotation of the open message's text (a message opened for it
        when none is: a citation arrives before or after the text it supports)."""
        item = self._open if self._open and self._open[0] == "message" else None
        if item is None:
            item = self._begin(frames, "message")
        annotation = responses_annotation(citation)
        item[4].append(annotation)
        frames.append(
            self._frame(
                "response.output_text.annotation.added",
                {
                    "item_id": item[2],
                    "output_index": item[1],
                    "content_index": 0,
                    "annotation_index": len(item[4]) - 1,
                    "annotation": annotation,
                },
            )
        )

    def _item(self, frames: list[bytes], prefix: str, item: dict[str, Any], *events: str) -> None:
        """An output item made whole at once: added as ``in_progress``, then ``events``
        (each with the item's id and index), then done as ``completed``."""
        self._close(frames)
        index = len(self._output)
        item_id = self._item_id(prefix, index)
        self._add(frames, {"id": item_id, **item, "status": "in_progress"})
        for kind in events:
            frames.append(self._frame(kind, {"item_id": item_id, "output_index": index}))
        done = {"id": item_id, **item, "status": "completed"}
        self._output[index] = done
        frames.append(
            self._frame("response.output_item.done", {"output_index": index, "item": done})
        )

    def _file(self, frames: list[bytes], file: File) -> None:
        if file.kind == "image" and file.data is not None:
            # The API's own item for an image the model made (its image_generation tool).
            fmt = file.media_type.partition("/")[2]
            item = {"type": "image_generation_call", "result": file.base64(), "output_format": fmt}
            self._item(
                frames,
                "ig",
                item,
                "response.image_generation_call.in_progress",
                "response.image_generation_call.completed",
            )
        else:
            # No item of the API's carries another file (and the SDK warns of an item type
            # it does not know): spout's own event, and field of the response.
            spout_file: dict[str, Any] = {
                "media_type": file.media_type,
                "file_data": file_url(file),
            }
            if file.name:
                spout_file["filename"] = file.name
            self._extension(frames, "spout_files", "spout.file", "file", spout_file)

    def _extension(
        self, frames: list[bytes], field: str, kind: str, key: str, value: dict[str, Any]
    ) -> None:
        """spout's own event ``kind`` holding ``{key: value}`` (the SDKs pass on an event they
        do not know), and ``value`` kept for the response's ``field``."""
        self._close(frames)
        self._spout.setdefault(field, []).append(value)
        frames.append(self._frame(kind, {key: value}))

    def feed(self, event: Event) -> list[bytes]:
        frames = [] if self._started else self.start()
        if type(event) in _TEXT_ITEMS:
            text = cast("TextDelta | RefusalDelta | ReasoningDelta", event).text
            if text:
                self._text(frames, _TEXT_ITEMS[type(event)], text)
        elif type(event) is ToolCallStart:
            self._start_call(frames, event.index, event.id, event.name)
        elif type(event) is ToolCallDelta:
            call = self._calls.get(event.index)
            if call is not None and event.arguments:
                call[4].append(event.arguments)
                frames.append(
                    self._frame(
                        "response.function_call_arguments.delta",
                        {
                            "item_id": call[1],
                            "output_index": call[0],
                            "delta": event.arguments,
                        },
                    )
                )
        elif type(event) is ToolCallEnd:
            if event.index not in self._calls:
                self._start_call(frames, event.index, event.tool_call.id, event.tool_call.name)
            self._end_call(frames, event.index, event.tool_call)
        elif type(event) is Citation:
            self._annotate(frames, event)
        elif type(event) is FileEnd:
            self._file(frames, event.file)
        elif type(event) is RawEvent:
            # Content spout did not recognise: spout's own event, the provider's JSON in it.
            raw = raw_object(event.type, event.data)
            self._extension(frames, "spout_raw_events", "spout.raw_event", "raw", raw)
        # ResponseStart: the gateway names the response; Usage and Finish come with end().
        return frames

    def _finish(self, frames: list[bytes]) -> None:
        self._close(frames)
        for upstream in list(self._calls):
            self._end_call(frames, upstream, None)

    def end(self, response: Response) -> list[bytes]:
        frames = [] if self._started else self.start()
        self._finish(frames)
        reason = _INCOMPLETE.get(response.finish_reason or "")
        if reason is None:
            self.final = self._response("completed", usage=_usage(response))
            frames.append(self._frame("response.completed", {"response": self.final}))
        else:
            self.final = self._response(
                "incomplete", usage=_usage(response), incomplete_details={"reason": reason}
            )
            frames.append(self._frame("response.incomplete", {"response": self.final}))
        return frames

    def error(self, exc: BaseException) -> list[bytes]:
        # A failed response (ResponseFailedEvent) with the output so far: the SDK's stream
        # helper keeps what came, and get_final_response() raises for want of a completion.
        _, kind, message = classify_error(exc)
        code = _FAILED_CODES.get(kind, "server_error")
        if not self._started:
            # No response.created from this encoder (one made only to report an error, e.g.
            # to a reader resuming a stream whose events expired): an error event alone.
            param = exc.param if isinstance(exc, RequestError) else None
            return [self._frame("error", {"code": code, "message": message, "param": param})]
        frames: list[bytes] = []
        self._finish(frames)
        error = {"code": code, "message": message}
        self.final = self._response("failed", error=error)
        frames.append(self._frame("response.failed", {"response": self.final}))
        return frames


PROTOCOL = ResponsesProtocol()
