"""The tool loop: stream a turn, run the tools it calls, send the results, stream the next."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, MaxToolRoundsError, SpoutError
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
from .providers._base import Call, text_content

if TYPE_CHECKING:
    import asyncio

    from ._llm import LLM
    from ._stats import StreamStats
    from ._watch import Watch
    from .tools import Tool

__all__ = ["AsyncToolStream", "ToolStream"]

#: ``approve(call) -> bool``, or an async function in the async loop: False vetoes the call.
Approve = Callable[[ToolCall], "bool | Awaitable[bool]"]


class _Rounds:
    """What the loop has seen so far, over every round: folded into one :class:`Response`.

    Kept apart from the stream objects so the generators that drive a loop never refer back
    to them: a loop that is dropped mid-stream is collected, and closes its connection, at once.
    """

    def __init__(self, llm: LLM, messages: list[dict[str, Any]]) -> None:
        self.llm = llm
        self.messages = messages
        self.rounds: list[Response] = []
        self.tool_calls: list[ToolCall] = []
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.current: Stream | AsyncStream | None = None
        self.started_at = time.perf_counter()

    def add(self, event: Event) -> None:
        if type(event) is TextDelta:
            self.text.append(event.text)
        elif type(event) is ReasoningDelta and event.text:
            self.reasoning.append(event.text)
        elif type(event) is RefusalDelta:
            self.refusal.append(event.text)

    def end_round(self, response: Response) -> None:
        self.rounds.append(response)
        self.current = None

    def response(self) -> Response:
        rounds = list(self.rounds)
        if self.current is not None:
            rounds.append(self.current.snapshot)
        ran = {call.id: call for call in self.tool_calls}
        calls = tuple(ran.get(call.id, call) for r in rounds for call in r.tool_calls)
        last = rounds[-1] if rounds else None
        duration = time.perf_counter() - self.started_at
        return Response(
            text="".join(self.text),
            reasoning="".join(self.reasoning),
            reasoning_signature=last.reasoning_signature if last else None,
            tool_calls=calls,
            usage=_sum_usage([r.usage for r in rounds]),
            finish_reason=last.finish_reason if last else None,
            raw_finish_reason=last.raw_finish_reason if last else None,
            model=last.model if last else self.llm.model,
            id=last.id if last else None,
            # The first round's request went out as the loop began: its first token is the
            # loop's.
            time_to_first_token=rounds[0].time_to_first_token if rounds else None,
            duration=duration,
            provider=self.llm.provider_name,
            stats=_loop_stats(rounds, duration),
            parsed=last.parsed if last else None,  # with response_format: the final answer's
            refusal="".join(self.refusal) if self.refusal else None,
        )

    def assistant_message(self, response: Response) -> dict[str, Any]:
        return assistant_message(response)

    def max_rounds_error(self, max_rounds: int) -> MaxToolRoundsError:
        error = MaxToolRoundsError(
            f"the model still called tools after max_rounds={max_rounds} rounds; "
            "its last calls were not run (they are on .partial.tool_calls). Raise max_rounds, "
            "or ask for an answer without tools",
            rounds=max_rounds,
        )
        error.partial = self.response()
        return error


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
    if response.refusal is not None:
        # OpenAI's shape for a refused turn: the refusal beside the (usually empty) content.
        # Providers without that field get it as the turn's text (``refusals_as_text``).
        message["refusal"] = response.refusal
    return message


def _loop_stats(rounds: list[Response], elapsed: float) -> StreamStats:
    """Every round's numbers as one: counts added, the first token the first round's."""
    from ._stats import make_stats

    stats = [r.stats for r in rounds if r.stats is not None]
    sources = {s.output_tokens_source for s in stats}
    total = sum(s.output_tokens for s in stats)
    return make_stats(
        rounds[0].time_to_first_token if rounds else None,
        elapsed,
        sum(s.chunks for s in stats),
        sum(s.characters for s in stats),
        total if stats and sources == {"provider"} else None,
        # every round counted, some by the model's tokenizer: the sum is a tokenizer count
        total if stats and "estimate" not in sources else None,
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


def _finished(call: ToolCall, result: Any = None, error: str | None = None) -> ToolResult:
    if error is not None:
        ran = replace(call, result=None, error=error)
        return ToolResult(ran, f"Error: {error}")
    ran = replace(call, result=result, error=None)
    return ToolResult(ran, text_content(result))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- sync -------------------------------------------------------------------------------------


def _run_sync(call: ToolCall, tools: dict[str, Tool], approve: Approve | None) -> ToolResult:
    refusal = _refusal(call, tools)
    if refusal is not None:
        return _finished(call, error=refusal)
    if approve is not None:
        verdict = approve(call)
        if inspect.isawaitable(verdict):
            if inspect.iscoroutine(verdict):
                verdict.close()  # never awaited: say so here, not in a RuntimeWarning
            raise ConfigurationError(
                "approve= returned an awaitable in the sync tool loop: pass a plain function, "
                "or use agenerate_stream_with_tools"
            )
        if not verdict:
            return _finished(call, error="the call was not approved")
    try:
        return _finished(call, result=tools[call.name].run(call.arguments))
    except Exception as exc:
        return _finished(call, error=_describe(exc))


def _sync_loop(
    state: _Rounds,
    call: Call,
    first: Stream,
    tools: dict[str, Tool],
    max_rounds: int,
    approve: Approve | None,
) -> Generator[Event, None, None]:
    llm = state.llm
    stream: Stream | None = first
    round_number = 1
    try:
        while True:
            assert stream is not None
            state.current = stream
            for event in stream.events():
                state.add(event)
                yield event
            response = stream.response
            state.end_round(response)
            if not response.tool_calls:
                state.messages.append(state.assistant_message(response))
                return
            if round_number >= max_rounds:
                raise state.max_rounds_error(max_rounds)
            state.messages.append(state.assistant_message(response))
            for tool_call in response.tool_calls:
                result = _run_sync(tool_call, tools, approve)
                state.tool_calls.append(result.tool_call)
                state.messages.append(_tool_message(result.tool_call, result.content))
                yield result
            round_number += 1
            # tool_choice holds for the first round only: a forced call ("required", or a
            # named tool) kept would make the model call tools forever and never answer.
            next_call = replace(call, messages=list(state.messages), tool_choice=None)
            stream = None
            stream = llm._open_round(next_call)
    except SpoutError as exc:
        if not isinstance(exc, MaxToolRoundsError):
            exc.partial = state.response()
        raise
    finally:
        current = state.current
        if current is not None and isinstance(current, Stream):
            current.close()


class ToolStream:
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

    def __init__(
        self,
        llm: LLM,
        call: Call,
        tools: dict[str, Tool],
        max_rounds: int,
        approve: Approve | None,
        watch: Watch | None = None,
    ) -> None:
        self._state = _Rounds(llm, list(call.messages))
        # The first request goes out now, as generate_stream's does: errors raise here.
        first = llm._open_round(call)
        self._state.current = first
        self._pump = _sync_loop(self._state, call, first, tools, max_rounds, approve)
        if watch is not None:  # shaping and callbacks over every round
            from ._watch import watch_sync

            self._pump = watch_sync(self._pump, watch, self._state.response)
        self._closed = False

    def __iter__(self) -> Iterator[str | ToolCall]:
        return self._items()

    def _items(self) -> Generator[str | ToolCall, None, None]:
        done = False
        try:
            for event in self._pump:
                if type(event) is TextDelta:
                    yield event.text
                elif type(event) is ToolResult:
                    yield event.tool_call
            done = True
        finally:
            if not done:
                self.close()

    def events(self) -> Iterator[Event]:
        """Every event of every round, with a :class:`ToolResult` after each call ran."""
        return self._events()

    def _events(self) -> Generator[Event, None, None]:
        done = False
        try:
            yield from self._pump
            done = True
        finally:
            if not done:
                self.close()

    @property
    def text(self) -> str:
        """The text of every round so far."""
        return "".join(self._state.text)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far: what was sent, the model's turns, and the tool results.

        Pass it as ``messages=`` to continue the conversation.
        """
        return self._state.messages

    @property
    def rounds(self) -> list[Response]:
        """The response of each round that ended, in order."""
        return list(self._state.rounds)

    @property
    def snapshot(self) -> Response:
        """Every round so far as one response, without reading further."""
        return self._state.response()

    @property
    def stats(self) -> StreamStats:
        """Live numbers over every round so far (see :attr:`Stream.stats`)."""
        stats = self._state.response().stats
        assert stats is not None
        return stats

    @property
    def response(self) -> Response:
        """Every round as one response: all rounds' text and tool calls, usage summed.

        Reads the rest of the loop first if it is still going.
        """
        if not self._closed:
            for _ in self._pump:
                pass
        return self._state.response()

    def close(self) -> None:
        """Stop the model and the loop now."""
        if not self._closed:
            self._closed = True
            self._pump.close()

    def __enter__(self) -> ToolStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<spout.ToolStream rounds={len(self._state.rounds)} text={self.text[:40]!r}>"


# -- async ------------------------------------------------------------------------------------


async def _run_async(call: ToolCall, tools: dict[str, Tool], approve: Approve | None) -> ToolResult:
    refusal = _refusal(call, tools)
    if refusal is not None:
        return _finished(call, error=refusal)
    if approve is not None:
        verdict = approve(call)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if not verdict:
            return _finished(call, error="the call was not approved")
    try:
        return _finished(call, result=await tools[call.name].arun(call.arguments))
    except Exception as exc:
        return _finished(call, error=_describe(exc))


async def _async_loop(
    state: _Rounds,
    call: Call,
    tools: dict[str, Tool],
    max_rounds: int,
    approve: Approve | None,
) -> AsyncGenerator[Event, None]:
    import asyncio  # on first use: `import spout` stays light

    llm = state.llm
    round_call = call
    round_number = 1
    pending: list[asyncio.Task[ToolResult]] = []
    try:
        while True:
            stream = llm._aopen_round(round_call)
            state.current = stream
            async for event in stream.events():
                state.add(event)
                yield event
            response = await stream.get_response()
            state.end_round(response)
            if not response.tool_calls:
                state.messages.append(state.assistant_message(response))
                return
            if round_number >= max_rounds:
                raise state.max_rounds_error(max_rounds)
            state.messages.append(state.assistant_message(response))
            # The calls of one turn are independent: run them together, report each as it
            # finishes, and send the results back in the order the model made the calls.
            pending = [
                asyncio.ensure_future(_run_async(c, tools, approve)) for c in response.tool_calls
            ]
            for finished in asyncio.as_completed(pending):
                result = await finished
                state.tool_calls.append(result.tool_call)
                yield result
            for task in pending:
                result = task.result()
                state.messages.append(_tool_message(result.tool_call, result.content))
            pending = []
            round_number += 1
            round_call = replace(call, messages=list(state.messages), tool_choice=None)
    except SpoutError as exc:
        if not isinstance(exc, MaxToolRoundsError):
            exc.partial = state.response()
        raise
    finally:
        for task in pending:
            task.cancel()
        current = state.current
        if current is not None and isinstance(current, AsyncStream):
            await current.aclose()


class AsyncToolStream:
    """The async tool loop: ``async for`` gives text chunks and each :class:`ToolCall` run.

    Made by :meth:`LLM.agenerate_stream_with_tools`. The calls of one turn run concurrently
    (async functions on the event loop, plain ones in worker threads).

    Example::

        async for item in llm.agenerate_stream_with_tools("Weather in Oslo?", tools=[weather]):
            print(item if isinstance(item, str) else f"[{item.name} -> {item.result}]")
    """

    def __init__(
        self,
        llm: LLM,
        call: Call,
        tools: dict[str, Tool],
        max_rounds: int,
        approve: Approve | None,
        watch: Watch | None = None,
    ) -> None:
        self._state = _Rounds(llm, list(call.messages))
        self._pump = _async_loop(self._state, call, tools, max_rounds, approve)
        if watch is not None:  # shaping and callbacks over every round
            from ._watch import watch_async

            self._pump = watch_async(self._pump, watch, self._state.response)
        self._closed = False

    def __aiter__(self) -> AsyncGenerator[str | ToolCall, None]:
        return self._items()

    async def _items(self) -> AsyncGenerator[str | ToolCall, None]:
        done = False
        try:
            async for event in self._pump:
                if type(event) is TextDelta:
                    yield event.text
                elif type(event) is ToolResult:
                    yield event.tool_call
            done = True
        finally:
            if not done:
                await self.aclose()

    def events(self) -> AsyncGenerator[Event, None]:
        """Every event of every round, with a :class:`ToolResult` after each call ran."""
        return self._events()

    async def _events(self) -> AsyncGenerator[Event, None]:
        done = False
        try:
            async for event in self._pump:
                yield event
            done = True
        finally:
            if not done:
                await self.aclose()

    @property
    def text(self) -> str:
        return "".join(self._state.text)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far, to pass as ``messages=`` and go on."""
        return self._state.messages

    @property
    def rounds(self) -> list[Response]:
        return list(self._state.rounds)

    @property
    def snapshot(self) -> Response:
        return self._state.response()

    @property
    def stats(self) -> StreamStats:
        """Live numbers over every round so far (see :attr:`Stream.stats`)."""
        stats = self._state.response().stats
        assert stats is not None
        return stats

    @property
    def response(self) -> Response:
        """Every round so far as one response; ``await get_response()`` reads to the end."""
        return self._state.response()

    async def get_response(self) -> Response:
        """Every round as one response, reading the rest of the loop first."""
        if not self._closed:
            async for _ in self._pump:
                pass
        return self._state.response()

    async def aclose(self) -> None:
        """Stop the model and the loop now (tools still running are cancelled)."""
        if not self._closed:
            self._closed = True
            await self._pump.aclose()

    async def __aenter__(self) -> AsyncToolStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<spout.AsyncToolStream rounds={len(self._state.rounds)} text={self.text[:40]!r}>"


def tool_table(tools: Sequence[Any]) -> dict[str, Tool]:
    """The runnable tools by name (provider-native dicts have nothing to run)."""
    from .tools import Tool

    return {tool.name: tool for tool in tools if isinstance(tool, Tool)}
