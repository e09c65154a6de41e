"""The OpenAI Responses API (``POST {base_url}/responses``): semantic SSE events in, spout
events out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from .._capabilities import Capabilities
from .._errors import (
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    ProviderError,
    RateLimitError,
    ServiceUnavailableError,
)
from .._events import (
    Citation,
    Event,
    FileStart,
    Finish,
    FinishReason,
    RawEvent,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from .._files import File
from .._request import HTTPRequest
from ._base import (
    Call,
    NamedToolChoice,
    OutputShape,
    Provider,
    SSEStreamParser,
    StreamParser,
    WireMapper,
    load_json_object,
    sse_json,
    streaming_capabilities,
    text_content,
    tool_call_from_json,
)
from ._common import (
    ToolIds,
    answer_file,
    set_stream,
    set_tools,
    tool_declaration,
    usage_from,
    without_cache_control,
)
from .openai import (
    IMAGES_ONLY,
    OPENAI_IMAGE_TYPES,
    FileRules,
    OpenAIProvider,
    check_file,
    error_from_body,
    file_kind,
    file_name,
    openai_file_kinds,
    translate_files,
)

if TYPE_CHECKING:
    from .._output_format import OutputFormat

__all__ = ["OpenAIResponsesProvider", "ResponsesEventMapper"]

# spout's names -> the Responses API's (response_create_params.py in openai-python).
_PARAMS = {"max_tokens": "max_output_tokens", "temperature": "temperature", "top_p": "top_p"}

# Chat completions settings the Responses API does not have: sending them is a 400.
_UNSUPPORTED = ("stop", "seed")

# incomplete_details.reason -> the normalized finish reason.
_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}

# ResponseError.code values (openai-python types/responses/response_error.py) that do not say
# "bad request": every other code names something wrong with the input.
_ERROR_CODES: dict[str, type[ProviderError]] = {
    "server_error": InternalServerError,
    "rate_limit_exceeded": RateLimitError,
    "vector_store_timeout": ServiceUnavailableError,
}

_TERMINAL = frozenset(("response.completed", "response.incomplete", "response.failed"))

# Output items spout reads for what they hold; any other kind (web_search_call,
# file_search_call, code_interpreter_call, mcp_call, computer_call...) comes whole, as a
# RawEvent, when it is done.
_KNOWN_ITEMS = frozenset(("message", "function_call", "reasoning", "image_generation_call"))

# The image formats the image generation tool answers in (its output_format).
_IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def _stream_error(error: Any, provider: str, model: str | None) -> ProviderError:
    """The spout error for an ``error`` event or a failed response's ``error`` object."""
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        cls = _ERROR_CODES.get(str(code)) if code else None
        if cls is None and isinstance(code, str) and code.startswith(("invalid_", "image_")):
            cls = BadRequestError
        if cls is not None:
            return cls(
                str(error.get("message") or error),
                provider=provider,
                model=model,
                body=error,
                error_type=str(code),
            )
    return error_from_body(error, status_code=None, provider=provider, model=model)


class ResponsesEventMapper(WireMapper):
    """Turns parsed Responses API stream events into spout events, with no I/O.

    Function calls are keyed by their ``output_index`` (the event index); argument deltas name
    their item by ``item_id``. The non-streamed path replays a whole response through the same
    mapper (:func:`_replay`), so both agree.

    An ``image_generation_call`` item is a file: begun when the item is added, whole (its
    base64 ``result``) when it is done; the tool's partial images are previews of it, and
    skipped. ``url_citation``, ``file_citation`` and ``container_file_citation`` annotations
    become :class:`Citation` events placed in the answer's text. Output items, content parts
    and annotations of kinds spout does not know come as :class:`RawEvent` with the item as
    sent.
    """

    __slots__ = (
        "_calls",
        "_chars",
        "_ended",
        "_files",
        "_had_tools",
        "_parts",
        "_reasoning_at",
        "_refusal",
        "_refusal_parts",
    )

    def __init__(self, provider: str, model: str | None) -> None:
        super().__init__(provider, model)
        self._ended = False
        self._refusal = False
        # (item_id, content_index) of the refusal parts whose text came as deltas
        self._refusal_parts: set[tuple[Any, Any]] = set()
        self._had_tools = False
        # item_id -> [output_index, call_id, name, argument parts, ended]
        self._calls: dict[str, list[Any]] = {}
        # (item_id, summary_index) of the last reasoning text, to separate summary parts
        self._reasoning_at: tuple[Any, Any] | None = None
        # How many characters of answer text went out, and (item_id, content_index) -> [its
        # start, its text so far] of each text part: annotations are placed in its text.
        self._chars = 0
        self._parts: dict[tuple[Any, Any], list[Any]] = {}
        # image_generation_call item id -> its file index
        self._files: dict[Any, int] = {}

    @property
    def ended(self) -> bool:
        return self._ended

    def map(self, data: dict[str, Any], event_name: str | None = None) -> list[Event]:
        kind = data.get("type") or event_name
        events: list[Event] = []
        if kind == "response.output_text.delta":
            delta = data.get("delta")
            if delta:
                part = (data.get("item_id"), data.get("content_index"))
                place = self._parts.get(part)
                if place is None:
                    place = self._parts[part] = [self._chars, []]
                place[1].append(delta)
                self._chars += len(delta)
                events.append(TextDelta(delta))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            delta = data.get("delta")
            if delta:
                at = (data.get("item_id"), data.get("summary_index", data.get("content_index")))
                if self._reasoning_at is not None and at != self._reasoning_at:
                    events.append(ReasoningDelta("\n\n"))  # a new summary part
                self._reasoning_at = at
                events.append(ReasoningDelta(delta))
        elif kind == "response.function_call_arguments.delta":
            call = self._calls.get(data.get("item_id") or "")
            delta = data.get("delta")
            if call is not None and delta:
                call[3].append(delta)
                events.append(ToolCallDelta(call[0], delta))
        elif kind == "response.function_call_arguments.done":
            events += self._end_call(data.get("item_id") or "", data.get("arguments"))
        elif kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "image_generation_call":
                index = self._files.setdefault(item.get("id"), len(self._files))
                events.append(FileStart(index, _IMAGE_TYPES.get(item.get("output_format", ""))))
            elif item.get("type") == "function_call":
                index = data.get("output_index", len(self._calls))
                call_id = item.get("call_id") or item.get("id") or f"call_{index}"
                name = item.get("name") or ""
                self._calls[item.get("id") or call_id] = [index, call_id, name, [], False]
                events.append(ToolCallStart(index, call_id, name))
        elif kind == "response.output_item.done":
            item = data.get("item") or {}
            item_type = item.get("type")
            if item_type == "function_call":
                events += self._end_call(
                    item.get("id") or item.get("call_id") or "", item.get("arguments")
                )
            elif item_type == "image_generation_call":
                events += self._image(item)
            elif item_type == "reasoning":
                # The item goes back whole before its turn's function calls, or the model
                # loses its reasoning between tool rounds (with store=False, its
                # encrypted_content is all there is of it).
                # https://platform.openai.com/docs/guides/reasoning#keeping-reasoning-items-in-context
                events.append(ReasoningDelta(item=item))
            elif item_type not in _KNOWN_ITEMS:
                events.append(RawEvent(str(item_type), item))
        elif kind == "response.output_text.annotation.added":
            events += self._annotation(data)
        elif kind == "response.content_part.done":
            content = data.get("part") or {}
            if content.get("type") not in ("output_text", "refusal", None):
                events.append(RawEvent(str(content["type"]), content))
        elif kind == "response.refusal.delta":
            # A refusal content part: not text (ResponseOutputRefusal, beside output_text).
            delta = data.get("delta")
            if delta:
                self._refusal = True
                self._refusal_parts.add((data.get("item_id"), data.get("content_index")))
                events.append(RefusalDelta(delta))
        elif kind == "response.refusal.done":
            # The whole refusal again; it is new only where no delta carried it.
            refusal = data.get("refusal")
            part = (data.get("item_id"), data.get("content_index"))
            if refusal and part not in self._refusal_parts:
                self._refusal = True
                self._refusal_parts.add(part)
                events.append(RefusalDelta(refusal))
        elif kind == "response.created":
            if not self._started:
                response = data.get("response") or {}
                self._start(events, response.get("id"), response.get("model"))
        elif kind in _TERMINAL:
            events += self._terminal(kind, data.get("response") or {})
        elif kind == "error":
            # {"type": "error", "code", "message", "param"} (ResponseErrorEvent); some servers
            # nest the same fields under "error".
            error = data.get("error")
            if not isinstance(error, dict):
                error = {k: data.get(k) for k in ("code", "message", "param") if data.get(k)}
            raise _stream_error(error, self._provider, self._model)
        # Every other event (in_progress, content_part.added, *.done...) repeats or frames
        # what the deltas carry; an image's partial_image events preview what its item
        # gives whole when it is done.
        return events

    def _image(self, item: dict[str, Any]) -> list[Event]:
        """A generated image, whole: its base64 ``result``, in the ``output_format`` the tool
        was asked for (else as its bytes say)."""
        added = item.get("id") in self._files
        index = self._files.setdefault(item.get("id"), len(self._files))
        result = item.get("result")
        if not result:
            return [RawEvent("image_generation_call", item)]  # failed: no image to give
        media_type = _IMAGE_TYPES.get(item.get("output_format", ""))
        end = answer_file(index, result, media_type, "image_generation_call")
        return [end] if added else [FileStart(index, media_type), end]

    def _annotation(self, data: dict[str, Any]) -> list[Event]:
        annotation = data.get("annotation")
        if not isinstance(annotation, dict):
            return []
        kind = annotation.get("type")
        at, text = 0, ""
        place = self._parts.get((data.get("item_id"), data.get("content_index")))
        if place is not None:
            at, text = place[0], "".join(place[1])
        start, end = annotation.get("start_index"), annotation.get("end_index")
        if kind in ("url_citation", "container_file_citation"):
            cited = text[start:end] if isinstance(start, int) and isinstance(end, int) else None
            return [
                Citation(
                    cited or None,
                    annotation.get("url"),
                    annotation.get("title") or annotation.get("filename"),
                    at + start if isinstance(start, int) else None,
                    at + end if isinstance(end, int) else None,
                    annotation,
                )
            ]
        if kind == "file_citation":
            # A file search's source, cited at one place in the text (``index``).
            index = annotation.get("index")
            place_at = at + index if isinstance(index, int) else None
            title = annotation.get("filename") or annotation.get("file_id")
            return [Citation(None, None, title, place_at, place_at, annotation)]
        # file_path (a file the code interpreter wrote) and kinds added later.
        return [RawEvent(str(kind), annotation)]

    def _end_call(self, item_id: str, arguments: Any) -> list[Event]:
        call = self._calls.get(item_id)
        if call is None or call[4]:
            return []
        call[4] = True
        self._had_tools = True
        index, call_id, name, parts = call[0], call[1], call[2], call[3]
        events: list[Event] = []
        raw = arguments if isinstance(arguments, str) else "".join(parts)
        if not parts and raw:
            events.append(ToolCallDelta(index, raw))  # arguments that came whole
        tool_call = tool_call_from_json(call_id, name, raw)
        events.append(ToolCallEnd(index, tool_call))
        return events

    def _terminal(self, kind: str, response: dict[str, Any]) -> list[Event]:
        if kind == "response.failed":
            error = response.get("error") or {"message": "the response failed"}
            raise _stream_error(error, self._provider, self._model)
        events: list[Event] = []
        if not self._started:
            self._start(events, response.get("id"), response.get("model"))
        for item_id in list(self._calls):
            events += self._end_call(item_id, None)
        usage = response.get("usage")
        if usage:
            # Both counts hold their details' parts: the cached input, the reasoning output.
            events.append(
                usage_from(
                    usage,
                    "input_tokens",
                    "output_tokens",
                    cache_read="input_tokens_details.cached_tokens",
                    reasoning="output_tokens_details.reasoning_tokens",
                )
            )
        status = response.get("status") or kind.rsplit(".", 1)[1]
        reason: FinishReason = "stop"
        raw = status
        if status == "incomplete":
            details = response.get("incomplete_details") or {}
            raw = details.get("reason") or status
            reason = _INCOMPLETE.get(raw, "stop")
        elif self._refusal:
            reason = "refusal"
        elif self._had_tools:
            reason = "tool_calls"
        events.append(Finish(reason, raw))
        self._ended = True
        return events


def _replay(response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A whole Response object as the stream events that would have built it."""
    yield {"type": "response.created", "response": response}
    for index, item in enumerate(response.get("output") or ()):
        kind = item.get("type")
        item_id = item.get("id")
        if kind == "message":
            for i, part in enumerate(item.get("content") or ()):
                where = {"item_id": item_id, "output_index": index, "content_index": i}
                if part.get("type") == "output_text":
                    yield {"type": "response.output_text.delta", **where, "delta": part.get("text")}
                    for n, annotation in enumerate(part.get("annotations") or ()):
                        yield {
                            "type": "response.output_text.annotation.added",
                            **where,
                            "annotation_index": n,
                            "annotation": annotation,
                        }
                elif part.get("type") == "refusal":
                    yield {"type": "response.refusal.delta", "delta": part.get("refusal")}
                else:
                    yield {"type": "response.content_part.done", **where, "part": part}
        elif kind == "reasoning":
            for i, part in enumerate(item.get("summary") or ()):
                yield {
                    "type": "response.reasoning_summary_text.delta",
                    "item_id": item_id,
                    "summary_index": i,
                    "delta": part.get("text"),
                }
            for i, part in enumerate(item.get("content") or ()):
                yield {
                    "type": "response.reasoning_text.delta",
                    "item_id": item_id,
                    "content_index": i,
                    "delta": part.get("text"),
                }
            yield {"type": "response.output_item.done", "output_index": index, "item": item}
        elif kind not in _KNOWN_ITEMS or kind == "image_generation_call":
            yield {"type": "response.output_item.done", "output_index": index, "item": item}
        elif kind == "function_call":
            yield {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "arguments": ""},
            }
            yield {
                "type": "response.function_call_arguments.done",
                "item_id": item_id,
                "output_index": index,
                "arguments": item.get("arguments") or "",
            }
    status = response.get("status")
    terminal = f"response.{status}" if f"response.{status}" in _TERMINAL else "response.completed"
    yield {"type": terminal, "response": response}


class _ResponsesStreamParser(SSEStreamParser[ResponsesEventMapper]):
    """SSE bytes in, events out, for the Responses API stream."""

    __slots__ = ()

    def _feed(self, chunk: bytes, events: list[Event]) -> None:
        map_event = self._mapper.map
        for sse, data in sse_json(self._decoder, chunk):
            if type(data) is dict:
                # An event may name its type only on the SSE line.
                events += map_event(data, sse.event)

    def _close(self) -> list[Event]:
        # There is no [DONE]: a stream ends with response.completed, .incomplete or .failed.
        self._end(
            self._mapper.ended,
            "the stream ended before its end: no response.completed or response.incomplete",
        )
        return []


class OpenAIResponsesProvider(OpenAIProvider):
    """The Responses API at ``{base_url}/responses``: ``create_llm("openai", api="responses")``.

    Example::

        llm = create_llm("openai", model="gpt-4.1", api="responses")      # OPENAI_API_KEY
        llm.generate("Hi", reasoning={"effort": "low", "summary": "auto"})

    Base URL and key work as for :class:`OpenAIProvider`. The messages become ``input``; a
    leading system message becomes ``instructions``; assistant tool calls and ``tool`` results
    become ``function_call`` and ``function_call_output`` items. ``max_tokens`` is sent as
    ``max_output_tokens``; the API has no ``stop`` or ``seed``, so those raise
    :class:`~spout.ConfigurationError`. Any other keyword (``reasoning``, ``tools``, ``text``,
    ``store``...) goes into the body as it is. ``stream_usage`` has no effect here: usage always
    comes with ``response.completed``.
    """

    path: ClassVar[str] = "/responses"

    @classmethod
    def for_api(cls, api: str | None, config: Mapping[str, Any]) -> type[Provider]:
        if api is None or api == "responses":
            return cls
        if api == "chat":
            return OpenAIProvider
        raise ConfigurationError(
            f"provider {cls.name!r} has no api {api!r}; choose 'chat' or 'responses'"
        )

    def output_shape(self, fmt: OutputFormat, params: Mapping[str, Any]) -> OutputShape:
        # text.format, chat's response_format flattened
        # (platform.openai.com/docs/api-reference/responses/create).
        chat = fmt.openai_chat()
        text_format = {"type": chat["type"], **chat.get("json_schema", {})}
        given = params.get("text")
        text = (
            {**given, "format": text_format} if isinstance(given, dict) else {"format": text_format}
        )
        return OutputShape({**params, "text": text}, instruct=fmt.schema is None)

    def capabilities(self) -> Capabilities:
        # Reasoning models stream a summary of their reasoning when asked
        # (reasoning={"summary": "auto"}).
        return {
            **streaming_capabilities(tools=True, tool_streaming=True, reasoning=True),
            **self.file_rules().capabilities(),
        }

    def file_rules(self) -> FileRules:
        # OpenAI's file-inputs guide: the Responses API takes images and PDFs (on vision
        # models), and other documents, text and code (their text extracted), each as bytes
        # or by URL (file_url). It has no audio input: input_audio is not among a message's
        # content parts (ResponseInputContentParam in openai-python). A server at another
        # address: images only.
        if self.base_url != OpenAIProvider.default_base_url:
            return IMAGES_ONLY
        kinds = (openai_file_kinds(self.model) - {"audio"}) | {"text", "other"}
        return FileRules(kinds, by_url=kinds, image_types=OPENAI_IMAGE_TYPES)

    def file_part(self, file: File, part: Mapping[str, Any]) -> dict[str, Any]:
        # ResponseInputImageParam (detail is required there; "auto" is the API's default)
        # and ResponseInputFileParam: file_data a data URL with its filename, or file_url.
        kind = file_kind(file, part)
        check_file(self.name, self.file_rules(), file, kind)
        if kind == "image":
            given = part.get("image_url")
            detail = given.get("detail") if isinstance(given, Mapping) else None
            return {"type": "input_image", "image_url": file.data_url(), "detail": detail or "auto"}
        if file.url is not None:
            return {"type": "input_file", "file_url": file.url}
        return {"type": "input_file", "filename": file_name(file), "file_data": file.data_url()}

    def build_request(self, call: Call, *, stream: bool) -> HTTPRequest:
        unsupported = [key for key in _UNSUPPORTED if call.params.get(key) is not None]
        if unsupported:
            raise ConfigurationError(
                f"the OpenAI Responses API has no {' or '.join(map(repr, unsupported))}; "
                "leave it out, or use api='chat'"
            )
        body: dict[str, Any] = {"model": self.model}
        # OpenAI caches prompts by itself (prompt_cache_key steers it): Anthropic's markers go.
        instructions, items = _input(without_cache_control(call.messages), self.file_part)
        if instructions is not None:
            body["instructions"] = instructions
        body["input"] = items
        for key, value in call.params.items():
            if value is not None and key != "stream":
                body[_PARAMS.get(key, key)] = value
        if body.get("store") is False:
            # Nothing is kept on OpenAI's side: the reasoning goes back only as the encrypted
            # content of its items, which must be asked for.
            # https://platform.openai.com/docs/guides/reasoning#encrypted-reasoning-items
            include = list(body.get("include") or ())
            if "reasoning.encrypted_content" not in include:
                body["include"] = [*include, "reasoning.encrypted_content"]
        set_tools(body, call, _tool, _tool_choice)
        set_stream(body, stream)  # "stream" was left out of the params above
        return self._post_json(self._url, self._headers, body, stream=stream)

    def takes_refusal(self) -> bool:
        # An earlier refusal could go back as a refusal part only inside an output message
        # item, which needs the id and status of a response this API made
        # (ResponseOutputMessageParam); a session's refusal, perhaps from another provider,
        # has neither. An easy input message with the refusal as its text always fits.
        return False

    def new_parser(self, call: Call) -> StreamParser:
        return _ResponsesStreamParser(ResponsesEventMapper(self.name, self.model))

    def parse_response(self, body: bytes, call: Call) -> Iterable[Event]:
        data = load_json_object(body)
        mapper = ResponsesEventMapper(self.name, self.model)
        if data.get("error") is not None and data.get("object") != "response":
            raise _stream_error(data["error"], self.name, self.model)
        events: list[Event] = []
        for event in _replay(data):
            events += mapper.map(event)
        return events


def _tool(tool: Any) -> dict[str, Any]:
    """A :class:`~spout.Tool` as a Responses ``function`` tool (flat, unlike chat's)."""
    return {"type": "function", **tool_declaration(tool, "parameters")}


def _tool_choice(choice: Any) -> Any:
    """``tool_choice`` as chat's, but a named tool flat: ``{"type": "function", "name"}``."""
    if isinstance(choice, NamedToolChoice):
        return {"type": "function", "name": choice.name}
    return choice


#: The Responses API's ``call_id``: at most 64 characters ("Invalid input[].call_id: string
#: too long. Expected max length 64"); an id from elsewhere is cut, alike in calls and outputs.
RESPONSES_TOOL_IDS = ToolIds.at_most(64)


def _input(
    messages: list[dict[str, Any]],
    file_part: Callable[[File, Mapping[str, Any]], dict[str, Any]],
) -> tuple[str | None, list[dict[str, Any]]]:
    """Chat messages as Responses ``input`` items, and the instructions, if any.

    A first system message with text content becomes ``instructions`` ("a system (or
    developer) message inserted into the model's context", response_create_params.py). Other
    messages are easy input messages as they are, except the chat shapes of tool calls and
    content parts: a ``text`` part is an ``input_text`` part there, and a file goes through
    ``file_part``. Call ids longer than the API takes are cut (:data:`RESPONSES_TOOL_IDS`).
    """
    messages = RESPONSES_TOOL_IDS.rewrite(messages)
    instructions: str | None = None
    if (
        messages
        and messages[0].get("role") == "system"
        and isinstance(messages[0].get("content"), str)
    ):
        instructions = messages[0]["content"]
        messages = messages[1:]
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            content = message.get("content")
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.get("tool_call_id"),
                    "output": text_content(content),
                }
            )
        elif role == "assistant" and message.get("tool_calls"):
            # The turn's reasoning items, whole and in order, before its message and calls.
            items += [b["item"] for b in message.get("reasoning_blocks") or () if "item" in b]
            if message.get("content"):
                items.append({"role": "assistant", "content": message["content"]})
            for tool_call in message["tool_calls"]:
                function = tool_call.get("function") or {}
                arguments = function.get("arguments")
                items.append(
                    {
                        "type": "function_call",
                        "call_id": tool_call.get("id"),
                        "name": function.get("name"),
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else orjson.dumps(arguments or {}).decode(),
                    }
                )
        elif role == "assistant" and ("reasoning" in message or "reasoning_blocks" in message):
            # The tool loop's own keys are not input fields; its text is.
            items.append({"role": "assistant", "content": message.get("content") or ""})
        elif role != "assistant" and isinstance(message.get("content"), list):
            (message,) = translate_files([message], file_part)
            items.append({**message, "content": [_input_text(p) for p in message["content"]]})
        else:
            items.append(message)
    return instructions, items


def _input_text(part: Any) -> Any:
    """A chat ``text`` part as the Responses API's ``input_text`` (ResponseInputTextParam);
    any other part as it is."""
    if isinstance(part, Mapping) and part.get("type") == "text":
        return {**part, "type": "input_text"}
    return part
