"""A hostile upstream (tests/hostile_upstream.py) cannot make a call grow without bound.

Each case runs sync and async against the real loopback server, under a watchdog: the call
runs in a thread while another samples the process's resident memory (``/proc/self/statm``);
past the time or memory it is allowed, the watchdog stops the server (the call then ends with
an error of its own) and the test fails saying which bound broke. So a regression fails
quickly instead of filling the machine's memory. The decoders' own limits and their linear
buffering are checked without a server at the end.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import spout
from fault_server import FaultServer, Reply
from hostile_upstream import HostileUpstream
from spout import ProtocolError, ResponseLimits, TextDelta, Timeout
from spout.ndjson import NDJSONDecoder
from spout.providers._base import limit_decoder
from spout.sse import SSEDecoder

MIB = 1024 * 1024
#: How much the process may grow while a hostile call runs (the issue saw 2 to 3.6 GB).
MAX_GROWTH = 200 * MIB
#: Seconds a hostile call may take before it counts as unbounded (CI machines are slow).
MAX_SECONDS = 10.0

_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident() -> int:
    """The process's resident memory in bytes, as the kernel counts it now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


@dataclass
class Outcome:
    """How a watched call ended: what it raised (None if it returned), how long it took, how
    much the process grew at most, and which bound the watchdog enforced (None: none)."""

    error: BaseException | None
    result: Any
    seconds: float
    growth: int
    broke: str | None


def watched(
    upstream: HostileUpstream, call: Callable[[], Any], seconds: float = MAX_SECONDS
) -> Outcome:
    """Run ``call`` in a thread under the watchdog described in the module's docstring."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # what the call raised is the outcome
            box["error"] = exc

    base = resident()
    peak = base
    broke: str | None = None
    thread = threading.Thread(target=run, name="hostile-call", daemon=True)
    started = time.monotonic()
    thread.start()
    while thread.is_alive():
        thread.join(0.005)
        peak = max(peak, resident())
        if broke is None and peak - base > MAX_GROWTH:
            broke = f"memory: the process grew by {(peak - base) // MIB} MiB"
        elif broke is None and time.monotonic() - started > seconds:
            broke = f"time: the call ran past {seconds} s"
        if broke is not None:
            upstream.stop()  # the call's connection ends: it returns or raises now
            thread.join(30)
            break
    elapsed = time.monotonic() - started
    return Outcome(box.get("error"), box.get("result"), elapsed, peak - base, broke)


def call_for(llm: spout.LLM, mode: str, stream: bool = True) -> Callable[[], Any]:
    """The call a test watches: a stream read to its end, or a whole answer; sync or async."""

    def sync() -> Any:
        if not stream:
            return llm.generate("hi")
        chunks = llm.generate_stream("hi")
        for _ in chunks:
            pass
        return chunks.response

    async def read_async() -> Any:
        try:
            if not stream:
                return await llm.generate_async("hi")
            chunks = await llm.generate_async("hi", stream=True)
            async for _ in chunks:
                pass
            return await chunks.get_response()
        finally:
            await llm.aclose()

    if mode == "sync":
        return sync
    return lambda: asyncio.run(read_async())


def hostile_llm(upstream: HostileUpstream, route: str, **config: Any) -> spout.LLM:
    return spout.create_llm(
        "openai:gpt-4o-mini", api_key="sk-hostile-test", base_url=upstream.base(route), **config
    )


@pytest.fixture
def upstream() -> Iterator[HostileUpstream]:
    server = HostileUpstream().start()
    try:
        yield server
    finally:
        server.stop()


def assert_bounded(outcome: Outcome) -> None:
    assert outcome.broke is None, outcome.broke
    assert outcome.growth < MAX_GROWTH, f"the process grew by {outcome.growth // MIB} MiB"


MODES = ["sync", "async"]


# -- a line that never ends --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_line_that_never_ends_stops_at_max_event_bytes(
    upstream: HostileUpstream, mode: str
) -> None:
    """``data: {"choices": ... "AAAA`` with no line end, ever: the call raises ProtocolError
    naming the limit at 16 MiB, at once, with the response so far; the server sees it go.
    (Before: the buffer was copied whole on every chunk, 300 MB gave no error in 90 s.)"""
    llm = hostile_llm(upstream, "long-line")
    outcome = watched(upstream, call_for(llm, mode))
    assert_bounded(outcome)
    error = outcome.error
    assert isinstance(error, ProtocolError), repr(error)
    assert "max_event_bytes" in str(error) and str(16 * MIB) in str(error)
    assert isinstance(error.data, bytes) and error.data.startswith(b'data: {"choices"')
    assert len(error.data) <= 200  # the start of the line, not the line
    assert error.partial is not None and error.partial.text == ""
    served = upstream.wait_for_response("long-line")
    assert served is not None and served.client_left
    assert served.sent < 64 * MIB


@pytest.mark.parametrize("mode", MODES)
def test_max_event_bytes_is_the_llms_own(upstream: HostileUpstream, mode: str) -> None:
    llm = hostile_llm(upstream, "long-line", limits=ResponseLimits(max_event_bytes=MIB))
    outcome = watched(upstream, call_for(llm, mode))
    assert_bounded(outcome)
    assert isinstance(outcome.error, ProtocolError), repr(outcome.error)
    assert f"exceeded {MIB} bytes" in str(outcome.error)
    served = upstream.wait_for_response("long-line")
    assert served is not None and served.sent < 16 * MIB


# -- a gzip bomb -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("mode", MODES)
def test_a_gzip_bomb_stops_at_max_body_bytes(
    upstream: HostileUpstream, mode: str, stream: bool
) -> None:
    """1.5 MB that inflate to 1 GiB of well-formed events: the call stops at 64 MiB inflated,
    memory stays near what was kept (before: 2 GB of RSS, then StreamInterruptedError)."""
    llm = hostile_llm(upstream, "gzip-bomb")
    # (Memory is the bound that matters: 64 MiB of events can take seconds on a busy machine.)
    outcome = watched(upstream, call_for(llm, mode, stream), seconds=30)
    assert_bounded(outcome)
    error = outcome.error
    assert isinstance(error, ProtocolError), repr(error)
    assert "max_body_bytes" in str(error) and str(64 * MIB) in str(error)
    if stream:
        # The text of every event inflated before the limit is kept, all "B".
        assert error.partial is not None
        text = error.partial.text
        assert 32 * MIB < len(text) <= 64 * MIB and set(text) == {"B"}
    # (Whether the server saw the client leave is not asserted: all 1.5 MB of the bomb can
    # fit in loopback's socket buffers before the client reads its first 64 KiB.)


@pytest.mark.parametrize("mode", MODES)
def test_a_gzip_bomb_in_a_smaller_limit(upstream: HostileUpstream, mode: str) -> None:
    llm = hostile_llm(upstream, "gzip-bomb", limits=ResponseLimits(max_body_bytes=4 * MIB))
    outcome = watched(upstream, call_for(llm, mode), seconds=5)
    assert_bounded(outcome)
    assert isinstance(outcome.error, ProtocolError), repr(outcome.error)
    assert outcome.error.partial is not None
    assert 0 < len(outcome.error.partial.text) <= 4 * MIB


# -- endless tool-call arguments ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_endless_tool_arguments_stop_at_max_tool_arguments(
    upstream: HostileUpstream, mode: str
) -> None:
    """A tool call whose arguments never close: ProtocolError at 4 MiB naming the limit, the
    call in progress on ``.partial`` (before: memory grew 1:1, 3 GB in 8 s)."""
    llm = hostile_llm(upstream, "endless-arguments")
    outcome = watched(upstream, call_for(llm, mode))
    assert_bounded(outcome)
    error = outcome.error
    assert isinstance(error, ProtocolError), repr(error)
    assert "max_tool_arguments" in str(error) and "'lookup' (call_hostile)" in str(error)
    assert error.partial is not None
    (call,) = error.partial.tool_calls
    assert call.name == "lookup" and call.id == "call_hostile"
    assert call.arguments_raw is not None
    assert call.arguments_raw.startswith('{"q": "aaaa')
    assert 4 * MIB < len(call.arguments_raw) <= 4 * MIB + 8192
    served = upstream.wait_for_response("endless-arguments")
    assert served is not None and served.client_left


# -- time limits against a server that never stops ---------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_total_timeout_is_kept_while_bytes_pour_in(upstream: HostileUpstream, mode: str) -> None:
    """A server sending keep-alives without any pause, so every read finds bytes waiting:
    ``Timeout(total=1)`` still ends the call within a little of 1 s (the clock is read after
    every read, not only when one waits), and the pings hold no memory."""
    upstream.ping_every = 0
    llm = hostile_llm(upstream, "keep-alive", timeout=Timeout(total=1))
    outcome = watched(upstream, call_for(llm, mode))
    assert_bounded(outcome)
    assert isinstance(outcome.error, spout.TotalTimeout), repr(outcome.error)
    assert outcome.seconds < 1.6, f"total=1 ended the call after {outcome.seconds:.2f} s"
    assert outcome.growth < 20 * MIB, f"the process grew by {outcome.growth // MIB} MiB"
    served = upstream.wait_for_response("keep-alive")
    assert served is not None and served.client_left and served.sent > 10_000  # pings


@pytest.mark.parametrize(
    ("limit", "error"),
    [
        (Timeout(first_token=0.5), spout.FirstTokenTimeout),
        (Timeout(total=0.5), spout.TotalTimeout),
    ],
    ids=["first_token", "total"],
)
@pytest.mark.parametrize("mode", MODES)
def test_endless_keep_alives_are_not_progress(
    upstream: HostileUpstream, mode: str, limit: Timeout, error: type[Exception]
) -> None:
    """``: ping`` every 50 ms and nothing else: a ping is not content, so the first-token (or
    total) limit fires on time though bytes keep arriving. (With no limit set the call waits,
    as for a slow model; the pings cost no memory: they are dropped as they are read.) No
    retries: a first-token timeout is retried, and each attempt would wait its own 0.5 s."""
    llm = hostile_llm(upstream, "keep-alive", timeout=limit, max_retries=0)
    outcome = watched(upstream, call_for(llm, mode))
    assert_bounded(outcome)
    assert isinstance(outcome.error, error), repr(outcome.error)
    assert 0.45 < outcome.seconds < 1.5
    served = upstream.wait_for_response("keep-alive")
    assert served is not None and served.client_left and served.sent > 0


@pytest.mark.parametrize("mode", MODES)
def test_endless_keep_alives_hold_no_memory(upstream: HostileUpstream, mode: str) -> None:
    """With no time limit, a server pinging for ever keeps the call waiting, but holds
    nothing: the process does not grow while 2 s of pings arrive."""
    upstream.ping_every = 0.001
    llm = hostile_llm(upstream, "keep-alive")
    outcome = watched(upstream, call_for(llm, mode), seconds=2)
    assert outcome.broke is not None and outcome.broke.startswith("time")  # still waiting
    assert outcome.growth < 20 * MIB, f"the process grew by {outcome.growth // MIB} MiB"


# -- what must still work ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("route", ["ok", "ok-gzip", "ok-deflate"])
@pytest.mark.parametrize("mode", MODES)
def test_an_honest_answer_arrives_whole(
    upstream: HostileUpstream, mode: str, route: str, stream: bool
) -> None:
    """Plain, gzip and raw-deflate answers, streamed or whole, written a few bytes at a time:
    spout inflates them itself now, and gets them all."""
    llm = hostile_llm(upstream, route)
    outcome = watched(upstream, call_for(llm, mode, stream))
    assert outcome.error is None, repr(outcome.error)
    assert outcome.result.text == "hello" and outcome.result.finish_reason == "stop"


@pytest.mark.parametrize("mode", MODES)
def test_a_redirect_to_another_origin_is_not_followed(upstream: HostileUpstream, mode: str) -> None:
    llm = hostile_llm(upstream, "redirect")
    outcome = watched(upstream, call_for(llm, mode))
    assert isinstance(outcome.error, spout.ProviderError), repr(outcome.error)
    assert outcome.error.status_code == 307 and upstream.other_url in str(outcome.error)
    assert upstream.redirected == []


@pytest.mark.parametrize("mode", MODES)
def test_an_encoding_not_asked_for_is_refused(faults: FaultServer, mode: str) -> None:
    """A body in an encoding spout did not ask for (it asks for gzip and deflate) is a
    ProtocolError naming it, not bytes handed to the parser."""
    faults.script(Reply(headers={"Content-Encoding": "br"}, body=[b"\x0b\x02\x80hi\x03"]))
    llm = spout.create_llm("openai:gpt-4o-mini", api_key="sk-test", base_url=f"{faults.url}/v1")
    with pytest.raises(ProtocolError, match="compressed as 'br'"):
        call_for(llm, mode)()
    (request,) = faults.requests
    assert request.headers["accept-encoding"] == "gzip, deflate"


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match=r"ResponseLimits\.max_body_bytes must be a positive"):
        ResponseLimits(max_body_bytes=0)
    with pytest.raises(ValueError, match="max_event_bytes"):
        ResponseLimits(max_event_bytes=True)
    with pytest.raises(TypeError, match=r"limits must be a spout\.ResponseLimits or a mapping"):
        spout.create_llm("openai:gpt-4o-mini", api_key="sk-test", limits=1024)
    with pytest.raises(ValueError, match="no setting 'max_bytes'; ResponseLimits has max_event"):
        spout.create_llm("openai:gpt-4o-mini", api_key="sk-test", limits={"max_bytes": 1})
    # A config file's table: the settings it names, the defaults for the rest.
    table = spout.create_llm("openai:gpt-4o-mini", api_key="sk-test", limits={"max_body_bytes": 9})
    assert table.limits == ResponseLimits(max_body_bytes=9)
    llm = spout.create_llm(
        "openai:gpt-4o-mini", api_key="sk-test", limits=ResponseLimits(max_body_bytes=5)
    )
    assert llm.limits.max_body_bytes == 5 and llm.provider.limits is llm.limits
    assert spout.create_llm("openai:gpt-4o-mini", api_key="sk-test").limits == ResponseLimits()


def test_a_fallback_made_from_a_spec_holds_to_the_same_limits() -> None:
    limits = ResponseLimits(max_event_bytes=MIB)
    own = ResponseLimits(max_body_bytes=MIB)
    fallbacks = [
        {"provider": "openai:gpt-4o", "api_key": "sk-test"},
        {"provider": "openai:gpt-4o", "api_key": "sk-test", "limits": own},
    ]
    llm = spout.create_llm(
        "openai:gpt-4o-mini", api_key="sk-test", limits=limits, fallbacks=fallbacks
    )
    assert llm.fallback(0).limits is limits and llm.fallback(0).provider.limits is limits
    assert llm.fallback(1).limits is own


# -- the decoders, alone -----------------------------------------------------------------------


def test_sse_a_long_line_costs_linear_time() -> None:
    """64 MiB of one line in 16 KiB chunks, under a limit that lets it through: well under a
    second (joining the buffer to each chunk, as before, copied 128 GiB)."""
    decoder = SSEDecoder(max_event_bytes=128 * MIB)
    piece = b"x" * 16384
    started = time.perf_counter()
    assert decoder.feed(b"data: ") == []
    for _ in range(64 * MIB // len(piece)):
        assert decoder.feed(piece) == []
    (event,) = decoder.feed(b"\n\n")
    assert time.perf_counter() - started < 3
    assert len(event.raw) == 64 * MIB


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"data: " + b"x" * 100, "a line"),
        (b"data: xxxxxxxxx\n" * 20, "an event"),
        (b": comment " + b"x" * 100, "a line"),
    ],
    ids=["line", "event-of-many-lines", "comment"],
)
@pytest.mark.parametrize("cut", [1, 7, 4096])
def test_sse_limit(body: bytes, what: str, cut: int) -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(ProtocolError, match=f"^{what}.*exceeded 64 bytes.*max_event_bytes"):
        for at in range(0, len(body), cut):
            decoder.feed(body[at : at + cut])


def test_sse_the_events_before_one_over_the_limit_come_first() -> None:
    """The events a read completed before one over the limit are returned; the error comes
    at the next call, so what arrived is not lost with it."""
    over = b"data: " + b"x" * 100 + b"\n\n"
    for chunk in (b"data: a\n\ndata: b\n\n" + over, b"data: a\n\ndata: b\n\ndata: " + b"x" * 100):
        decoder = SSEDecoder(max_event_bytes=64)
        assert [event.data for event in decoder.feed(chunk)] == ["a", "b"]
        with pytest.raises(ProtocolError, match="exceeded 64 bytes"):
            decoder.feed(b"data: c\n\n")
    decoder = SSEDecoder(max_event_bytes=64)
    assert len(decoder.feed(b"data: a\n\n" + over)) == 1
    with pytest.raises(ProtocolError, match="exceeded 64 bytes"):
        decoder.close()


def test_sse_made_up_event_names_do_not_grow_memory() -> None:
    """A server naming each event anew (within max_body_bytes, 64 MiB of them) costs the
    decoder nothing it keeps: only a real stream's few names are remembered."""
    decoder = SSEDecoder()
    chunk = b"".join(b"event: e%d\ndata: x\n\n" % n for n in range(20_000))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10):
            events = decoder.feed(chunk)
        del events
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 256 * 1024, kept  # the 20,000 names would be a few MB
    (event,) = decoder.feed(b"event: e19999\ndata: y\n\n")
    assert (event.event, event.data) == ("e19999", "y")


def test_ndjson_a_line_over_the_limit_in_one_chunk_is_refused_after_the_lines_before() -> None:
    decoder = NDJSONDecoder(max_line_bytes=64)
    line = b'{"a": "' + b"x" * 100 + b'"}\n'
    assert decoder.feed(b'{"a": 1}\n' + line) == [{"a": 1}]
    with pytest.raises(ProtocolError, match="line 2 of the NDJSON stream exceeded 64 bytes"):
        decoder.feed(b"")


def test_sse_an_event_just_within_the_limit_passes() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    events = []
    for _ in range(100):  # many events, each small: the limit is per event, not per stream
        events += decoder.feed(b"data: " + b"x" * 40 + b"\n\n")
    assert len(events) == 100


def test_ndjson_a_long_line_is_linear_and_limited() -> None:
    decoder = NDJSONDecoder(max_line_bytes=128 * MIB)
    started = time.perf_counter()
    decoder.feed(b'{"a": "')
    piece = b"x" * 16384
    for _ in range(64 * MIB // len(piece)):
        assert decoder.feed(piece) == []
    (value,) = decoder.feed(b'"}\n')
    assert time.perf_counter() - started < 3 and len(value["a"]) == 64 * MIB
    small = NDJSONDecoder(max_line_bytes=64)
    with pytest.raises(ProtocolError, match="line 1 of the NDJSON stream exceeded 64 bytes"):
        for _ in range(100):
            small.feed(b"xx")


def _chat_parser() -> Any:
    from spout.providers.openai import ChatChunkMapper, _StreamParser

    return _StreamParser(ChatChunkMapper("openai", "m"))


def _messages_parser() -> Any:
    from spout.providers.anthropic import MessageEventMapper, MessagesParser

    return MessagesParser(MessageEventMapper("anthropic", "m"))


def _responses_parser() -> Any:
    from spout.providers.openai_responses import ResponsesEventMapper, _ResponsesStreamParser

    return _ResponsesStreamParser(ResponsesEventMapper("openai", "m"))


@pytest.mark.parametrize(
    ("make", "event"),
    [
        (_chat_parser, b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'),
        (
            _messages_parser,
            b"event: content_block_delta\ndata: {"
            b'"type": "content_block_delta", "index": 0, '
            b'"delta": {"type": "text_delta", "text": "Hi"}}\n\n',
        ),
        (
            _responses_parser,
            b"event: response.output_text.delta\ndata: {"
            b'"type": "response.output_text.delta", "item_id": "m1", "output_index": 0, '
            b'"content_index": 0, "delta": "Hi"}\n\n',
        ),
    ],
    ids=["chat", "messages", "responses"],
)
def test_an_sse_event_over_the_limit_is_raised_right_after_the_events_before_it(
    make: Any, event: bytes
) -> None:
    """One read holds a text event, then one past max_event_bytes: the text is delivered and
    the error is raised with it, not after another read (which a stalling server never sends)."""
    parser = limit_decoder(make(), ResponseLimits(max_event_bytes=512))
    events = parser.feed(event + b"data: " + b"x" * 1000 + b"\n\n")
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hi"]
    assert isinstance(parser.error, ProtocolError), parser.error
    assert "exceeded 512 bytes" in str(parser.error)
