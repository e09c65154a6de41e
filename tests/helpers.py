"""One runner for a test body, through spout's sync API or its async twin, so every test covers both.

Beside it, the small pieces the provider tests build alike: a JSON reply for the replay server,
the error a call raises when it is made, and the fields two responses to one call share.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import socket
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import pytest

from replay_server import Reply
from spout import (
    LLM,
    Citation,
    Event,
    File,
    FileEnd,
    FileStart,
    ProviderError,
    RawEvent,
    Response,
    Session,
    TextDelta,
)

T = TypeVar("T")
E = TypeVar("E", bound=ProviderError)

#: The two ways through every streaming API, in the order the tests' ids name them.
MODES = ("sync", "async")

#: What the runner calls: an LLM, or a session (whose async methods it names the same way
#: but ``agenerate`` for ``generate_async``).
Chat = LLM | Session

#: How a test cuts a recorded body into the writes the replay server sends.
Cut = Callable[[bytes], list[bytes]]


@dataclass
class Streamed:
    """What a test asserts on after a stream ran to its end."""

    chunks: list[Any]
    events: list[Event]
    response: Response
    #: the underlying stream (``Stream``, ``AsyncStream``, a tool or session stream)
    stream: Any = field(default=None, repr=False)


class Runner:
    """Runs a test's body once through the sync API, or once through the async one.

    The body is written once, in sync style, on mode-neutral steps: :meth:`stream` opens
    ``llm.generate_stream`` or ``llm.agenerate_stream``, :meth:`list` reads an iterator or an
    async iterator to its end, :meth:`response` is ``stream.response`` or
    ``await stream.get_response()``. In async mode each step runs on one event loop kept for the
    whole test (a stream opened in one step is read in the next), and the LLMs the runner
    touched are closed on that loop when it closes, as ``async with llm`` would.

    Example::

        def test_text(replay: ReplayServer, runner: Runner) -> None:
            result = runner.text(openai(replay), "Count from 1 to 5")
            assert "".join(result.chunks) == result.response.text
    """

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode is 'sync' or 'async', not {mode!r}")
        self.mode = mode
        self._llms: list[LLM] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the mode-neutral steps ------------------------------------------------------------------

    @overload
    def wait(self, value: Awaitable[T]) -> T: ...
    @overload
    def wait(self, value: T) -> T: ...
    def wait(self, value: Any) -> Any:
        """The value itself, or, for an awaitable, what it gives on the runner's loop."""
        if not inspect.isawaitable(value):
            return value
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop.run_until_complete(_awaited(value))

    def call(
        self, sync: Callable[..., Any], asynchronous: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """``sync(*args, **kwargs)``, or ``await asynchronous(*args, **kwargs)``."""
        if not self.is_async:
            return sync(*args, **kwargs)
        return self.wait(asynchronous(*args, **kwargs))

    def list(
        self,
        items: Iterable[T] | AsyncIterable[T],
        *,
        stop_after: int | None = None,
        each: Callable[[T], object] | None = None,
    ) -> list[T]:
        """Read ``for`` or ``async for`` to the end, or leave after ``stop_after`` items.

        ``each`` is called on every item as it comes, before the next one is read (to look at
        a stream's live state between chunks); in async mode, what it returns is awaited if it
        can be (see :meth:`pause`). A loop left early closes the iterator it left,
        as the collector does at once for a sync loop; an async generator would otherwise wait
        for a loop to close it, and the runner's loop runs only inside its steps.
        """
        if isinstance(items, AsyncIterable):
            return self.wait(_alist(items, stop_after, each))
        out: list[T] = []
        iterator = iter(items)
        for item in iterator:
            out.append(item)
            if each is not None:
                each(item)
            if stop_after is not None and len(out) >= stop_after:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
                break
        return out

    def next(self, items: Any) -> Any:
        """The next item of an iterator or an async iterator (of a fresh one, if given an
        iterable: the one made here is dropped after its first item)."""
        if isinstance(items, AsyncIterable):
            return self.wait(_anext(items))
        return next(items if isinstance(items, Iterator) else iter(items))

    def pause(self, seconds: float) -> Awaitable[None] | None:
        """A reader busy for a while: ``time.sleep`` now, or an ``asyncio.sleep`` to await
        (return it from :meth:`list`'s ``each``, so the event loop goes on meanwhile)."""
        if self.is_async:
            return asyncio.sleep(seconds)
        time.sleep(seconds)
        return None

    def response(self, stream: Any) -> Response:
        """The final response: ``stream.response``, or ``await stream.get_response()``."""
        if self.is_async:
            return self.wait(stream.get_response())  # type: ignore[no-any-return]
        return stream.response  # type: ignore[no-any-return]

    def close(self, stream: Any = None) -> None:
        """Close a stream (``close()`` or ``await aclose()``); with none, the runner itself."""
        if stream is not None:
            self.wait(stream.aclose() if self.is_async else stream.close())
            return
        # Sync, the LLMs are left as the test made them (a fixture's LLM may serve other tests).
        llms, self._llms = self._llms, []
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        try:
            for llm in llms:
                loop.run_until_complete(llm.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    # -- an LLM's calls --------------------------------------------------------------------------

    def stream(self, llm: Chat, prompt: str | None = "hi", **kwargs: Any) -> Any:
        """``llm.generate_stream(...)`` (sent now), or ``llm.agenerate_stream(...)`` (sent on
        first use)."""
        self._touch(llm)
        if self.is_async:
            return llm.agenerate_stream(prompt, **kwargs)
        return llm.generate_stream(prompt, **kwargs)

    def start(self, llm: LLM, prompt: str | None = "hi", **kwargs: Any) -> Any:
        """A stream whose request is sent now in both modes: an HTTP error raises here."""
        self._touch(llm)
        if self.is_async:
            return self.wait(llm.generate_async(prompt, stream=True, **kwargs))
        return llm.generate_stream(prompt, **kwargs)

    def stream_with_tools(self, llm: Chat, prompt: str | None = "hi", **kwargs: Any) -> Any:
        """``llm.generate_stream_with_tools(...)`` or ``llm.agenerate_stream_with_tools(...)``."""
        self._touch(llm)
        if self.is_async:
            return llm.agenerate_stream_with_tools(prompt, **kwargs)
        return llm.generate_stream_with_tools(prompt, **kwargs)

    def generate(self, llm: Chat, prompt: str | None = "hi", **kwargs: Any) -> Response:
        """A call not streamed: ``llm.generate(...)`` or ``await llm.generate_async(...)``."""
        self._touch(llm)
        asynchronous = llm.agenerate if isinstance(llm, Session) else llm.generate_async
        return self.call(llm.generate, asynchronous, prompt, **kwargs)  # type: ignore[no-any-return]

    def events(self, llm: Chat, prompt: str | None = "hi", **kwargs: Any) -> Streamed:
        """A stream read to its end through ``events()``; the chunks are the text events'."""
        return self.read_events(self.stream(llm, prompt, **kwargs))

    def text(self, llm: Chat, prompt: str | None = "hi", **kwargs: Any) -> Streamed:
        """A stream read to its end as text, iterating the stream itself as most users do."""
        return self.read_text(self.stream(llm, prompt, **kwargs))

    def tool_events(self, llm: Chat, prompt: str | None = "hi", **kwargs: Any) -> Streamed:
        """A tool loop read to its end through ``events()``."""
        return self.read_events(self.stream_with_tools(llm, prompt, **kwargs))

    def read_events(self, stream: Any) -> Streamed:
        """Any stream read to its end through ``events()``, and its final response."""
        events: list[Event] = self.list(stream.events())
        chunks = [event.text for event in events if isinstance(event, TextDelta)]
        return Streamed(chunks, events, self.response(stream), stream)

    def read_text(self, stream: Any) -> Streamed:
        """Any stream iterated to its end, and its final response."""
        return Streamed(self.list(stream), [], self.response(stream), stream)

    def _touch(self, chat: Chat) -> None:
        llm = chat.provider if isinstance(chat, Session) else chat
        if all(llm is not seen for seen in self._llms):
            self._llms.append(llm)


async def _awaited(value: Awaitable[T]) -> T:
    return await value


async def _alist(
    items: AsyncIterable[T], stop_after: int | None, each: Callable[[T], object] | None
) -> list[T]:
    out: list[T] = []
    iterator = items.__aiter__()
    async for item in iterator:
        out.append(item)
        if each is not None and inspect.isawaitable(seen := each(item)):
            await seen
        if stop_after is not None and len(out) >= stop_after:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            break
    return out


async def _anext(items: AsyncIterable[T]) -> T:
    iterator = items.__aiter__()
    try:
        return await iterator.__anext__()
    finally:
        # A fresh iterator is dropped here, as a sync one is (and closed at once by the collector).
        aclose = getattr(iterator, "aclose", None)
        if iterator is not items and aclose is not None:
            await aclose()


@pytest.fixture
def runner(mode: str) -> Iterator[Runner]:
    """The test's body runs twice: through the sync API and through the async one."""
    with Runner(mode) as run:
        yield run


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- LLMs closed when the test ends -----------------------------------------------------------

_made: list[LLM] = []


def made(llm: LLM) -> LLM:
    """Remember an LLM, so that its connections are closed when the test ends, however it ends
    (tests/providers/conftest.py closes them)."""
    _made.append(llm)
    return llm


def close_made() -> None:
    while _made:
        _made.pop().close()


# -- the same runs, for a test that holds the mode as a string -----------------------------------


def stream(llm: LLM, mode: str, prompt: str | None = "hi", **kwargs: Any) -> Streamed:
    """Stream a call to its end through ``events()``, sync or async (see :class:`Runner`)."""
    with Runner(mode) as run:
        return run.events(llm, prompt, **kwargs)


def stream_text(llm: LLM, mode: str, prompt: str | None = "hi", **kwargs: Any) -> Streamed:
    """Like :func:`stream`, but iterating the stream itself for text, as most users do."""
    with Runner(mode) as run:
        return run.text(llm, prompt, **kwargs)


def generate(llm: LLM, mode: str, prompt: str | None = "hi", **kwargs: Any) -> Response:
    """A non-streamed call, sync or async."""
    with Runner(mode) as run:
        return run.generate(llm, prompt, **kwargs)


# -- what the provider tests build alike -------------------------------------------------------


def json_reply(document: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    """A reply of one JSON document, as an API answers a call not streamed or fails one:
    ``Content-Type: application/json``, then ``headers`` (which may replace it)."""
    return Reply(
        status=status,
        chunks=[json.dumps(document).encode()],
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def raised_on_start(runner: Runner, llm: LLM, error_class: type[E]) -> E:
    """The error a streamed call raises when it is made, before any read (``runner.start``),
    checked to be of ``error_class`` itself rather than a subclass of it."""
    with pytest.raises(error_class) as caught:
        runner.start(llm)
    assert type(caught.value) is error_class
    return caught.value


#: The fields a response not streamed shares with the same response streamed.
SAME_FIELDS = (
    "text",
    "reasoning",
    "tool_calls",
    "usage",
    "finish_reason",
    "raw_finish_reason",
    "model",
    "id",
    "provider",
)


def comparable(response: Response, *also: str) -> dict[str, Any]:
    """The response's :data:`SAME_FIELDS` and the fields ``also`` names, by name, to compare
    a response not streamed with the streamed one (a mismatch shows as a dict's diff)."""
    return {name: getattr(response, name) for name in (*SAME_FIELDS, *also)}


#: The counts a transcript's expected ``usage`` may name (the wire README's ``usage``).
USAGE_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def usage_counts(response: Response) -> dict[str, Any] | None:
    """The response's usage as a transcript's expected ``usage`` writes it: every count, a
    cache or reasoning count left out where the provider did not say (None); None for no
    usage at all."""
    usage = response.usage
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    counts = {name: getattr(usage, name) for name in USAGE_COUNTS}
    return {k: v for k, v in counts.items() if v is not None or k in USAGE_COUNTS[:2]}


def check_outputs(response: Response, expected: Mapping[str, Any], events: Any = None) -> None:
    """The files, citations and raw events a transcript's expected result names (the wire
    README's optional ``files``, ``citations`` and ``raw_events``; none when it names none).

    With the stream's ``events``: each file began (:class:`~spout.FileStart`) before it came
    whole (:class:`~spout.FileEnd`), once, and the events are what the response kept.
    """
    assert [
        {
            "media_type": file.media_type,
            "size": len(file.data or b""),
            "sha256": hashlib.sha256(file.data or b"").hexdigest(),
        }
        for file in response.files
    ] == expected.get("files", [])
    assert [
        {"text": c.text, "url": c.url, "title": c.title, "start": c.start, "end": c.end}
        for c in response.citations
    ] == expected.get("citations", [])
    assert all(c.raw for c in response.citations)  # the provider's own object, always
    assert [event.type for event in response.raw_events] == expected.get("raw_events", [])
    if events is None:
        return
    begun: dict[int, str | None] = {}
    ended: list[File] = []
    for event in events:
        if isinstance(event, FileStart):
            assert event.index not in begun
            begun[event.index] = event.media_type
        elif isinstance(event, FileEnd):
            # The media type said at the start, if any, is the file's.
            assert begun.pop(event.index, "never") in (None, event.file.media_type)
            ended.append(event.file)
    assert not begun and tuple(ended) == response.files
    assert tuple(e for e in events if isinstance(e, Citation)) == response.citations
    assert tuple(e for e in events if isinstance(e, RawEvent)) == response.raw_events
