"""The tool loop: stream a turn, run the tools it calls, send the results, stream the next."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Generator,
    Sequence,
)
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _otel
from ._cost import Priced
from ._errors import ConfigurationError, MaxToolRoundsError
from ._events import (
    Event,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
)
from ._response import Response, add_usage
from ._stream import AsyncStream, Stream
from ._stream_base import AsyncStreamBase, StreamView, SyncStreamBase, partial_on_error
from .providers._base import Call, text_content

if TYPE_CHECKING:
    import asyncio

    from ._stats import StreamStats
    from ._watch import Watch
    from .tools import Tool

__all__ = ["AsyncToolStream", "ToolStream"]

#: ``approve(call) -> bool``, or an async function in the async loop: False vetoes the call.
Approve = Callable[[ToolCall], "bool | Awaitable[bool]"]


_S = TypeVar("_S", Stream, AsyncStream)


class _Rounds(Generic[_S]):
    """The loop's rounds: what each one adds to the conversation, and what the loop has seen
    so far, folded into one :class:`Response`. The sync and async loops add only the I/O.

    Kept apart from the stream objects so the generators that drive a loop never refer back
    to them: a loop that is dropped mid-stream is collected, and closes its connection, at once.
    """

    def __init__(
        self,
        origin: tuple[str, str],
        open_round: Callable[[Call], _S],
        call: Call,
        tools: dict[str, Tool],
        max_rounds: int,
        approve: Approve | None,
    ) -> None:
        self.provider, self.model = origin
        self.open_round: Callable[[Call], _S] = open_round
        self.call = call
        self.tools = tools
        self.max_rounds = max_rounds
        self.approve = approve
        self.messages = list(call.messages)
        self.rounds: list[Response] = []
        self.tool_calls: list[ToolCall] = []
        self.texts: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.current: _S | None = None
        self.started_at = time.perf_counter()

    def add(self, event: Event) -> None:
        if type(event) is TextDelta:
            self.texts.append(event.text)
        elif type(event) is ReasoningDelta and event.text:
            self.reasoning.append(event.text)
        elif type(event) is RefusalDelta:
            self.refusal.append(event.text)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def stats(self) -> StreamStats:
        stats = self.response().stats
        assert stats is not None
        return stats

    def current_round(self) -> Response | None:
        return None if self.current is None else self.current.snapshot

    def end_round(self, response: Response) -> bool:
        """Keep a round that ended; True when the loop goes on to run its tool calls."""
        self.rounds.append(response)
        self.current = None
        if response.tool_calls and len(self.rounds) >= self.max_rounds:
            raise self.max_rounds_error()
        self.messages.append(assistant_message(response))
        return bool(response.tool_calls)

    def ran(self, result: ToolResult) -> None:
        self.tool_calls.append(result.tool_call)

    def send_back(self, result: ToolResult) -> None:
        self.messages.append(_tool_message(result.tool_call, result.content))

    def next_call(self) -> Call:
        # tool_choice holds for the first round only: a forced call ("required", or a
        # named tool) kept would make the model call tools forever and never answer.
        return replace(self.call, messages=list(self.messages), tool_choice=None)

    def response(self) -> Response:
        rounds = list(self.rounds)
        if self.current is not None:
            rounds.append(self.current.snapshot)
        ran = {call.id: call for call in self.tool_calls}
        calls = tuple(ran.get(call.id, call) for r in rounds for call in r.tool_calls)
        last = rounds[-1] if rounds else None
        duration = time.perf_counter() - self.started_at
        stats = _loop_stats(rounds, duration)
        return Response(
            text=self.text,
            reasoning="".join(self.reasoning),
            reasoning_signature=last.reasoning_signature if last else None,
            reasoning_blocks=tuple(block for r in rounds for block in r.reasoning_blocks),
            tool_calls=calls,
            usage=_sum_usage([r.usage for r in rounds]),
            finish_reason=last.finish_reason if last else None,
            raw_finish_reason=last.raw_finish_reason if last else None,
            model=last.model if last else self.model,
            id=last.id if last else None,
            # The first round's request went out as the loop began: its first token is the
            # loop's.
            time_to_first_token=rounds[0].time_to_first_token if rounds else None,
            duration=duration,
            provider=self.provider,
            stats=stats,
            parsed=last.parsed if last else None,  # with response_format: the final answer's
            refusal="".join(self.refusal) if self.refusal else None,
            _priced=stats._priced,
        )

    def max_rounds_error(self) -> MaxToolRoundsError:
        max_rounds = self.max_rounds
        error = MaxToolRoundsError(
            f"the model still called tools after max_rounds={max_rounds} rounds; "
            "its last calls were not run (they are on .partial.tool_calls). Raise max_rounds, "
            "or ask for an answer without tools",
            rounds=max_rounds,
        )
        return error  # its partial, every round so far, is set as it leaves the loop


def assistant_message(response: Response) -> dict[str, Any]:
    """The model's turn as a message to send back, with what providers need returned."""
    # Text, even empty: chat completions allows null beside tool calls, but servers such
    # as llama.cpp's refuse it.
    message: dict[str, Any] = {"role": "assistant", "content": response.text}
    if response.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.arguments_raw
                    if call.arguments_raw is not None and call.error is None
                    else text_content(call.arguments),
                },
                **({"signature": call.signature} if call.signature else {}),
            }
            for call in response.tool_calls
        ]
    if response.reasoning or response.reasoning_signature:
        message["reasoning"] = response.reasoning
        if response.reasoning_signature:
            message["reasoning_signature"] = response.reasoning_signature
    blocks = response.reasoning_blocks
    if any("redacted" in b or "item" in b for b in blocks) or (
        sum("signature" in b for b in blocks) > 1
    ):
        # More than one signed block, or encrypted ones, or items: each goes back, in order,
        # as it came (reasoning and reasoning_signature above hold one block only).
        message["reasoning_blocks"] = [dict(block) for block in blocks]
    if response.refusal is not None:
        # OpenAI's shape for a refused turn: the refusal beside the (usually empty) content.
        # Providers without that field get it as the turn's text (``refusals_as_text``).
        message["refusal"] = response.refusal
    return message


def _loop_stats(rounds: list[Response], elapsed: float) -> StreamStats:
    """Every round's numbers as one: counts added, the first token the first round's, and
    each round's cost added (a round is a request, priced on its own)."""
    from ._stats import make_stats

    stats = [r.stats for r in rounds if r.stats is not None]
    sources = {s.output_tokens_source for s in stats}
    total = sum(s.output_tokens for s in stats)
    cost = Priced.total([r._priced for r in rounds if r._priced is not None])
    return make_stats(
        rounds[0].time_to_first_token if rounds else None,
        elapsed,
        sum(s.chunks for s in stats),
        sum(s.characters for s in stats),
        total if stats and sources == {"provider"} else None,
        # every round counted, some by the model's tokenizer: the sum is a tokenizer count
        total if stats and "estimate" not in sources else None,
        cost=cost,
    )


def _sum_usage(usages: list[Usage]) -> Usage:
    """Every round's usage added up."""
    return functools.reduce(add_usage, usages, None) or Usage()


def _tool_message(call: ToolCall, content: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "tool",
        "tool_call_id": call.id,
        "name": call.name,
        "content": content,
    }
    if call.error is not None:
        message["is_error"] = True
    return message


def _refusal(call: ToolCall, tools: dict[str, Tool]) -> str | None:
    """Why a call cannot run as it stands, or None when it can."""
    if call.error is not None:  # the model's arguments were not valid JSON
        return call.error
    tool = tools.get(call.name)
    if tool is None:
        names = ", ".join(sorted(tools)) or "none"
        return f"unknown tool {call.name!r}; the tools are: {names}"
    if tool.function is None:
        return f"tool {call.name!r} has no function to run"
    return None


def _refused(call: ToolCall, tools: dict[str, Tool]) -> ToolResult | None:
    """The error result of a call that cannot run as it stands, or None when it can."""
    refusal = _refusal(call, tools)
    return None if refusal is None else _finished(call, error=refusal)


def _unapproved(call: ToolCall, verdict: object) -> ToolResult | None:
    """The error result of a call ``approve`` vetoed, or None when it may run."""
    return None if verdict else _finished(call, error="the call was not approved")


def _finished(call: ToolCall, result: Any = None, error: str | None = None) -> ToolResult:
    if error is not None:
        ran = replace(call, result=None, error=error)
        return ToolResult(ran, f"Error: {error}")
    ran = replace(call, result=result, error=None)
    return ToolResult(ran, text_content(result))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _LoopView(StreamView):
    """What the sync and async tool loops share besides a stream's: how one starts, and
    the conversation it makes. Each adds :meth:`_start`, the loop over its rounds."""

    _rounds: _Rounds[Any]
    _pump: Any

    def __init__(
        self,
        open_round: Callable[[Call], Any],
        call: Call,
        tools: dict[str, Tool],
        max_rounds: int,
        approve: Approve | None,
        watch: Watch | None = None,
        *,
        origin: tuple[str, str],
    ) -> None:
        rounds = _Rounds(origin, open_round, call, tools, max_rounds, approve)
        self._tally = self._rounds = rounds
        self._pump = self._start(rounds, watch)

    def _start(self, rounds: _Rounds[Any], watch: Watch | None) -> Any:
        raise NotImplementedError

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far: what was sent, the model's turns, and the tool results.

        Pass it as ``messages=`` to continue the conversation.
        """
        return self._rounds.messages

    @property
    def rounds(self) -> list[Response]:
        """The response of each round that ended, in order."""
        return list(self._rounds.rounds)

    @property
    def current_round(self) -> Response | None:
        """The round streaming now as it stands, or None between rounds and at the end."""
        return self._rounds.current_round()

    def _label(self) -> str:
        return f"rounds={len(self._rounds.rounds)}"


# -- sync -------------------------------------------------------------------------------------


def _sync_verdict(verdict: bool | Awaitable[bool]) -> bool:
    if inspect.isawaitable(verdict):
        if inspect.iscoroutine(verdict):
            verdict.close()  # never awaited: say so here, not in a RuntimeWarning
        raise ConfigurationError(
            "approve= returned an awaitable in the sync tool loop: pass a plain function, "
            "or use agenerate_stream_with_tools"
        )
    return verdict


def _run_sync(call: ToolCall, tools: dict[str, Tool], approve: Approve | None) -> ToolResult:
    span = _otel.tool_span(call, tools.get(call.name))
    result = None
    try:
        refused = _refused(call, tools)
        if refused is None and approve is not None:
            refused = _unapproved(call, _sync_verdict(approve(call)))
        if refused is not None:
            result = refused
            return result
        try:
            result = _finished(call, result=tools[call.name].run(call.arguments))
        except Exception as exc:
            if span is not None:
                span.fail(exc)
            result = _finished(call, error=_describe(exc))
        return result
    except BaseException as exc:  # approve raised
        if span is not None:
            span.fail(exc)
        raise
    finally:
        if span is not None:
            span.end(result)


def _sync_loop(rounds: _Rounds[Stream], first: Stream) -> Generator[Event, None, None]:
    stream: Stream | None = first
    try:
        # An error carries every round so far, not only the round it cut.
        with partial_on_error(rounds.response, replace=True):
            while True:
                assert stream is not None
                rounds.current = stream
                for event in stream.events():
                    rounds.add(event)
                    yield event
                response = stream.response
                if not rounds.end_round(response):
                    return
                for tool_call in response.tool_calls:
                    result = _run_sync(tool_call, rounds.tools, rounds.approve)
                    rounds.ran(result)
                    rounds.send_back(result)
                    yield result
                stream = None
                stream = rounds.open_round(rounds.next_call())
    finally:
        current = rounds.current
        if current is not None:
            current.close()
        for server in _servers(rounds.tools):  # MCP servers stop when their loop ends
            server._loop_ended()


class ToolStream(_LoopView, SyncStreamBase[str | ToolCall]):
    """A conversation with tools, streamed: text chunks and each tool call once it ran.

    Made by :meth:`LLM.generate_stream_with_tools`. Iterating gives ``str`` text chunks and
    :class:`ToolCall` objects (with ``result`` or ``error``); :meth:`events` gives every
    event of every round, and a :class:`ToolResult` for each call run.

    Example::

        for item in llm.generate_stream_with_tools("What is 2 ** 10?", tools=[calculator]):
            if isinstance(item, str):
                print(item, end="", flush=True)
            else:
                print(f"[{item.name}({item.arguments}) -> {item.result}]")

    Leaving a ``for`` loop early, :meth:`close`, or leaving a ``with`` block stops the model
    and the loop at once; :attr:`response` then holds what arrived.
    """

    def _start(self, rounds: _Rounds[Stream], watch: Watch | None) -> Generator[Event, None, None]:
        # The first request goes out now, as generate_stream's does: errors raise here.
        try:
            rounds.current = first = rounds.open_round(rounds.call)
        except BaseException:
            for server in _servers(rounds.tools):  # the loop ends before it began
                server._loop_ended()
            raise
        if watch is None:
            return _sync_loop(rounds, first)
        from ._watch import watch_sync  # shaping and callbacks over every round

        return watch_sync(_sync_loop(rounds, first), watch, rounds.response)


# -- async ------------------------------------------------------------------------------------


async def _run_async(call: ToolCall, tools: dict[str, Tool], approve: Approve | None) -> ToolResult:
    span = _otel.tool_span(call, tools.get(call.name))
    result = None
    try:
        refused = _refused(call, tools)
        if refused is None and approve is not None:
            verdict = approve(call)
            refused = _unapproved(call, await verdict if inspect.isawaitable(verdict) else verdict)
        if refused is not None:
            result = refused
            return result
        try:
            result = _finished(call, result=await tools[call.name].arun(call.arguments))
        except Exception as exc:
            if span is not None:
                span.fail(exc)
            result = _finished(call, error=_describe(exc))
        return result
    except BaseException as exc:  # cancelled, or approve raised
        if span is not None:
            span.fail(exc)
        raise
    finally:
        if span is not None:
            span.end(result)


async def _async_loop(rounds: _Rounds[AsyncStream]) -> AsyncGenerator[Event, None]:
    import asyncio  # on first use: `import spout` stays light

    round_call = rounds.call
    pending: list[asyncio.Task[ToolResult]] = []
    try:
        with partial_on_error(rounds.response, replace=True):
            while True:
                stream = rounds.open_round(round_call)
                rounds.current = stream
                async for event in stream.events():
                    rounds.add(event)
                    yield event
                response = await stream.get_response()
                if not rounds.end_round(response):
                    return
                # The calls of one turn are independent: run them together, report each as
                # it finishes, and send the results back in the order the model made them.
                pending = [
                    asyncio.ensure_future(_run_async(c, rounds.tools, rounds.approve))
                    for c in response.tool_calls
                ]
                for finished in asyncio.as_completed(pending):
                    result = await finished
                    rounds.ran(result)
                    yield result
                for task in pending:
                    rounds.send_back(task.result())
                pending = []
                round_call = rounds.next_call()
    finally:
        for task in pending:
            task.cancel()
        current = rounds.current
        if current is not None:
            await current.aclose()
        for server in _servers(rounds.tools):  # MCP servers stop when their loop ends
            await asyncio.to_thread(server._loop_ended)


class AsyncToolStream(_LoopView, AsyncStreamBase[str | ToolCall]):
    """The async tool loop: ``async for`` gives text chunks and each :class:`ToolCall` run.

    Made by :meth:`LLM.agenerate_stream_with_tools`. The calls of one turn run concurrently
    (async functions on the event loop, plain ones in worker threads).

    Example::

        async for item in llm.agenerate_stream_with_tools("Weather in Oslo?", tools=[weather]):
            print(item if isinstance(item, str) else f"[{item.name} -> {item.result}]")
    """

    def _start(
        self, rounds: _Rounds[AsyncStream], watch: Watch | None
    ) -> AsyncGenerator[Event, None]:
        if watch is None:
            return _async_loop(rounds)
        from ._watch import watch_async  # shaping and callbacks over every round

        return watch_async(_async_loop(rounds), watch, rounds.response)


def tool_table(tools: Sequence[Any]) -> dict[str, Tool]:
    """The runnable tools by name (provider-native dicts have nothing to run)."""
    from .tools import Tool

    return {tool.name: tool for tool in tools if isinstance(tool, Tool)}


def _servers(tools: dict[str, Tool]) -> list[Any]:
    """The MCP servers behind the loop's tools (none unless an MCPServer was among them)."""
    import sys

    mcp = sys.modules.get("spout.mcp")  # only loaded when an MCPServer was made
    return [] if mcp is None else mcp.servers_of(tools)
