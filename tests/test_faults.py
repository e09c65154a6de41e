"""Streams that never lie: every fault the fault server stages, against every HTTP provider.

Each fault runs against each provider adapter it applies to, sync and async: the exact error
class and its fields, the partial text kept byte for byte, the connection closed promptly,
and no socket, file descriptor or thread left behind.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

import spout
from fault_server import (
    FaultServer,
    Hangup,
    ProviderStream,
    Request,
    Stall,
    error_body,
    error_reply,
    provider_stream,
    request_id_header,
)
from helpers import Runner
from hostile_upstream import HostileUpstream
from spout import ConfigurationError, Response, SpoutError, create_llm

PROVIDERS = ["openai", "openrouter", "openai_responses", "anthropic", "gemini", "ollama", "tgi"]
NOT_OPENAI = [p for p in PROVIDERS if p != "openai"]  # tests/test_stream.py covers openai

#: Text pieces with one-, two-, three- and four-byte UTF-8 characters.
PIECES = ["Grüß", " 日本", "語 🙂", " café", "!"]
REQUEST_ID = "req_fault_0123"
PROMPTLY = 1.0  # seconds within which the server must see a client go


# -- LLMs for the fault server -----------------------------------------------------------------

_CONFIG: dict[str, Callable[[str], dict[str, Any]]] = {
    "openai": lambda url: {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "base_url": f"{url}/v1",
        "api_key": "sk-fault",
    },
    "openrouter": lambda url: {
        "provider": "openrouter",
        "model": "openai/gpt-4o-mini",
        "base_url": f"{url}/api/v1",
        "api_key": "sk-or-fault",
    },
    "openai_responses": lambda url: {
        "provider": "openai",
        "api": "responses",
        "model": "gpt-4.1",
        "base_url": f"{url}/v1",
        "api_key": "sk-fault",
    },
    "anthropic": lambda url: {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "base_url": url,
        "api_key": "sk-ant-fault",
    },
    "gemini": lambda url: {
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "base_url": url,
        "api_key": "fault-key",
    },
    "ollama": lambda url: {"provider": "ollama", "model": "llama3.2", "base_url": url},
    "tgi": lambda url: {"provider": "huggingface", "base_url": url},
}


def make_llm(
    provider: str, server: FaultServer, *, url: str | None = None, **config: Any
) -> spout.LLM:
    """An LLM for ``provider`` pointed at the fault server (or at ``url``), without retries.

    Every fault here must be seen exactly once. Retries (default ``max_retries=2``) are being
    added; until they land create_llm rejects ``max_retries``, so it is passed only when
    accepted. This shim goes once retries land: pass ``max_retries=0`` directly.
    """
    settings = {**_CONFIG[provider](url or server.url), **config}
    name = settings.pop("provider")
    try:
        return create_llm(name, max_retries=0, **settings)
    except ConfigurationError as exc:
        if "max_retries" not in str(exc):
            raise
        return create_llm(name, **settings)


# -- reading a stream to its end, sync or async ------------------------------------------------


@dataclass
class Outcome:
    """How a stream read to its end went: the chunks seen, then a response or an error."""

    chunks: list[str] = field(default_factory=list)
    response: Response | None = None
    error: SpoutError | None = None
    ended_at: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def run(llm: spout.LLM, mode: str, prompt: str = "hi") -> Outcome:
    """Read a stream to its end (sync or async), catching spout's errors; closes the LLM.

    Anything but a :class:`SpoutError` escapes and fails the test: untranslated errors must not
    reach the caller. The runner is the call's own (not the ``runner`` fixture): its event loop
    is closed on return, before :func:`no_leaks` counts the descriptors.
    """
    out = Outcome()
    with Runner(mode) as runner:
        try:
            stream = runner.stream(llm, prompt)
            runner.list(stream, each=out.chunks.append)
            out.response = runner.response(stream)
        except SpoutError as exc:
            out.error = exc
        finally:
            out.ended_at = time.monotonic()
            llm.close()  # async, the runner closes it on its loop too
    return out


def raised(out: Outcome, cls: type[SpoutError]) -> Any:
    """The error the stream ended with, checked to be exactly ``cls``."""
    assert out.error is not None, f"no error: the stream ended quietly with {out.text!r}"
    assert type(out.error) is cls, f"{type(out.error).__name__} ({out.error}), not {cls.__name__}"
    return out.error


def assert_partial(out: Outcome, expected: str) -> None:
    """The error kept exactly the text sent before the fault, and the caller saw the same."""
    assert out.error is not None
    assert out.error.partial is not None, "an error after the stream began has no partial"
    assert out.error.partial.text == expected
    assert out.text == expected
    assert out.error.partial.finish_reason is None  # it did not finish: nothing claims it did


def assert_left_promptly(server: FaultServer, since: float) -> None:
    """The server saw the client close the connection within PROMPTLY of ``since``."""
    gone = server.wait_for_disconnect(timeout=PROMPTLY + 1)
    assert gone is not None, "the server never saw the client close the connection"
    assert gone.at - since < PROMPTLY, f"the connection stayed open {gone.at - since:.2f} s"


# -- leaks -------------------------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def client_threads() -> int:
    servers = ("fault-server", "hostile-upstream")
    return sum(1 for t in threading.enumerate() if not t.name.startswith(servers))


@contextmanager
def no_leaks(server: FaultServer) -> Iterator[None]:
    """Around a test body that closes its LLMs: no connection, descriptor or thread is left."""
    gc.collect()
    fds, threads = open_fds(), client_threads()
    yield
    gc.collect()
    assert server.wait_idle(2.0), f"{server.open_connections} connection(s) left open"
    deadline = time.monotonic() + 2.0
    while (open_fds(), client_threads()) != (fds, threads) and time.monotonic() < deadline:
        time.sleep(0.01)
        gc.collect()
    assert open_fds() == fds, f"{open_fds() - fds} file descriptor(s) leaked"
    assert client_threads() == threads, f"{client_threads() - threads} thread(s) leaked"


@pytest.fixture(autouse=True, scope="module")
def _cheap_setup() -> Iterator[None]:
    """Make the per-test costs that are not under test cheap, for hundreds of tests.

    Each httpx.Client loads certifi's bundle into a fresh SSL context (about 80 ms) that these
    plain-HTTP tests never use: the module's clients share one. And a full collection of the
    interpreter's heap takes about 50 ms, twice per test in :func:`no_leaks`: the long-lived
    objects that exist now are frozen out of it, so it looks at what the tests create.
    """
    import functools

    import httpx._transports.default as transports

    original = transports.create_ssl_context  # type: ignore[attr-defined]
    transports.create_ssl_context = functools.lru_cache(maxsize=None)(original)  # type: ignore[attr-defined]
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        transports.create_ssl_context = original  # type: ignore[attr-defined]


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def stream_for(provider: str, pieces: list[str] = PIECES) -> ProviderStream:
    return provider_stream(provider, pieces)


# -- before any response -----------------------------------------------------------------------


def test_nothing_listening_is_a_connection_error(
    faults: FaultServer, provider: str, mode: str
) -> None:
    with no_leaks(faults):
        out = run(make_llm(provider, faults, url=faults.refused_url), mode)
    error = raised(out, spout.ConnectionError)
    assert error.partial is None or error.partial.text == ""
    assert faults.requests == []


@pytest.mark.parametrize(
    "hangup",
    [Hangup(), Hangup(reset=True), Hangup(on_accept=True), Hangup(on_accept=True, reset=True)],
    ids=["after-request", "after-request-rst", "on-accept", "on-accept-rst"],
)
def test_a_server_that_hangs_up_without_answering_is_a_connection_error(
    faults: FaultServer, provider: str, mode: str, hangup: Hangup
) -> None:
    faults.script(hangup)
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    raised(out, spout.ConnectionError)
    assert len(faults.connections) == 1


# -- HTTP error statuses -----------------------------------------------------------------------

CONTEXT_MESSAGE = "prompt is too long: the maximum context length is 8192 tokens"

# (id, status, message, headers, expected class, expected retry_after)
STATUSES: list[tuple[str, int, str | None, dict[str, Any], type[SpoutError], float | None]] = [
    ("400", 400, None, {}, spout.BadRequestError, None),
    ("400-context", 400, CONTEXT_MESSAGE, {}, spout.ContextWindowExceededError, None),
    ("401", 401, None, {}, spout.AuthenticationError, None),
    ("403", 403, None, {}, spout.PermissionDeniedError, None),
    ("404", 404, None, {}, spout.NotFoundError, None),
    ("413", 413, None, {}, spout.BadRequestError, None),
    ("413-context", 413, CONTEXT_MESSAGE, {}, spout.ContextWindowExceededError, None),
    ("429-retry-after", 429, None, {"retry_after": 7}, spout.RateLimitError, 7.0),
    ("429-retry-after-ms", 429, None, {"retry_after_ms": 1500}, spout.RateLimitError, 1.5),
    ("429", 429, None, {}, spout.RateLimitError, None),
    ("500", 500, None, {}, spout.InternalServerError, None),
    ("503", 503, None, {}, spout.ServiceUnavailableError, None),
    ("529", 529, "Overloaded", {}, spout.OverloadedError, None),
]


@pytest.mark.parametrize(
    ("status", "message", "headers", "expected", "retry_after"),
    [case[1:] for case in STATUSES],
    ids=[case[0] for case in STATUSES],
)
def test_an_error_status_raises_its_class_with_every_field(
    faults: FaultServer,
    provider: str,
    mode: str,
    status: int,
    message: str | None,
    headers: dict[str, Any],
    expected: type[SpoutError],
    retry_after: float | None,
) -> None:
    faults.script(error_reply(provider, status, message, request_id=REQUEST_ID, **headers))
    llm = make_llm(provider, faults)
    with no_leaks(faults):
        out = run(llm, mode)
    error = raised(out, expected)
    assert error.provider == llm.provider_name
    assert error.model == llm.model
    assert error.status_code == status
    assert error.request_id == REQUEST_ID
    assert error.retry_after == retry_after
    sent = error_body(provider, status, message)
    shown = message or _message_of(sent)
    assert shown in error.message
    assert shown in str(error.body)
    assert error.partial is None or error.partial.text == ""
    assert len(faults.requests) == 1


def _message_of(body: dict[str, Any]) -> str:
    error = body["error"]
    return str(error["message"] if isinstance(error, dict) else error)


# The context-window errors each provider really sends (from their docs and bug reports).
CONTEXT_ERRORS = [
    pytest.param(
        "openai",
        400,
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your "
                "messages resulted in 130001 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        id="openai",
    ),
    pytest.param(
        "openai_responses",
        400,
        {
            "error": {
                "message": "Your input exceeds the context window of this model. Please adjust your "
                "input and try again.",
                "type": "invalid_request_error",
                "param": "input",
                "code": "context_length_exceeded",
            }
        },
        id="openai_responses",
    ),
    pytest.param(
        "openrouter",
        400,
        {
            "error": {
                "code": 400,
                "message": "This endpoint's maximum context length is 128000 tokens. However, you "
                "requested about 150000 tokens (149000 of text input, 1000 in the output).",
            }
        },
        id="openrouter",
    ),
    pytest.param(
        "anthropic",
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 208310 tokens > 200000 maximum",
            },
        },
        id="anthropic",
    ),
    pytest.param(
        "gemini",
        400,
        {
            "error": {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": "The input token count (1200293) exceeds the maximum number of tokens "
                "allowed (1048576).",
            }
        },
        id="gemini",
    ),
    pytest.param(
        "tgi",
        422,
        {
            "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
            "Given: 4000 `inputs` tokens and 512 `max_new_tokens`",
            "error_type": "validation",
        },
        id="tgi",
    ),
]


@pytest.mark.parametrize(("provider", "status", "body"), CONTEXT_ERRORS)
def test_each_providers_own_context_window_error_is_recognized(
    faults: FaultServer, provider: str, mode: str, status: int, body: dict[str, Any]
) -> None:
    faults.script(error_reply(provider, status, body=body))
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    error = raised(out, spout.ContextWindowExceededError)
    assert error.status_code == status


def test_tgi_queue_full_429_is_overloaded(faults: FaultServer, mode: str) -> None:
    # TGI answers a full queue with 429 and error_type "overloaded" (router/src/infer).
    faults.script(
        error_reply("tgi", 429, body={"error": "Model is overloaded", "error_type": "overloaded"})
    )
    with no_leaks(faults):
        out = run(make_llm("tgi", faults), mode)
    assert raised(out, spout.OverloadedError).status_code == 429


def test_anthropic_request_id_from_the_body(faults: FaultServer, mode: str) -> None:
    faults.script(
        error_reply(
            "anthropic",
            500,
            body={
                "type": "error",
                "error": {"type": "api_error", "message": "Internal server error"},
                "request_id": "req_in_body",
            },
        )
    )
    with no_leaks(faults):
        out = run(make_llm("anthropic", faults), mode)
    assert raised(out, spout.InternalServerError).request_id == "req_in_body"


def test_gemini_retry_delay_from_the_body(faults: FaultServer, mode: str) -> None:
    faults.script(
        error_reply(
            "gemini",
            429,
            body={
                "error": {
                    "code": 429,
                    "message": "You exceeded your current quota.",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"}
                    ],
                }
            },
        )
    )
    with no_leaks(faults):
        out = run(make_llm("gemini", faults), mode)
    assert raised(out, spout.RateLimitError).retry_after == 12.5


def test_an_error_status_whose_body_is_cut_short_still_raises_its_class(
    faults: FaultServer, provider: str, mode: str
) -> None:
    body = error_body(provider, 503)
    reply = error_reply(provider, 503, body=body, request_id=REQUEST_ID)
    reply.content_length = len(json.dumps(body)) + 100  # promise more than is sent...
    reply.end = "drop"  # ...and hang up
    faults.script(reply)
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    error = raised(out, spout.ServiceUnavailableError)
    assert error.status_code == 503 and error.request_id == REQUEST_ID


# -- a 200 stream that goes wrong --------------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "sent", "cut"),
    [("drop", 0, None), ("drop", 2, None), ("drop", 5, 3), ("reset", 2, None), ("reset", 5, 3)],
    ids=["fin-0", "fin-2", "fin-5-cut-every-3-bytes", "rst-2", "rst-5-cut-every-3-bytes"],
)
def test_a_dropped_connection_is_stream_interrupted_with_the_text_so_far(
    faults: FaultServer, provider: str, mode: str, sent: int, cut: int | None, end: str
) -> None:
    s = stream_for(provider)
    faults.script(s.reply(s.upto(sent), end=end, cut=cut))
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    raised(out, spout.StreamInterruptedError)
    assert_partial(out, s.text(sent))


def test_a_drop_in_the_middle_of_an_event_keeps_the_events_before_it(
    faults: FaultServer, provider: str, mode: str
) -> None:
    s = stream_for(provider)
    faults.script(s.reply([*s.upto(2), s.truncated(2)], end="drop"))
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    raised(out, spout.StreamInterruptedError)
    assert_partial(out, s.text(2))


@pytest.mark.parametrize("sent", [0, 3, 5])
def test_a_stream_without_its_terminator_is_stream_interrupted(
    faults: FaultServer, provider: str, mode: str, sent: int
) -> None:
    s = stream_for(provider)
    faults.script(s.reply(s.upto(sent)))  # a proper chunked end, but no finish / [DONE]
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    raised(out, spout.StreamInterruptedError)
    assert_partial(out, s.text(sent))


def test_a_truncated_event_at_the_end_is_stream_interrupted(
    faults: FaultServer, provider: str, mode: str
) -> None:
    s = stream_for(provider)
    faults.script(s.reply([*s.upto(2), s.truncated(2)]))
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    raised(out, spout.StreamInterruptedError)
    assert_partial(out, s.text(2))


@pytest.mark.parametrize("provider", ["openai", "ollama"])  # SSE and NDJSON: the transport's
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_text_that_arrived_before_a_drop_survives_a_slow_reader(
    faults: FaultServer, provider: str, mode: str
) -> None:
    s = stream_for(provider)
    # The first event, then (while the reader is busy with it) the rest and the drop.
    faults.script(s.reply([*s.upto(1), Stall(0.05), *s.texts[1:]], end="drop"))
    out = Outcome()
    llm = make_llm(provider, faults)
    with no_leaks(faults), Runner(mode) as runner:

        def read_slowly(chunk: str) -> Awaitable[None] | None:
            out.chunks.append(chunk)
            return runner.pause(0.25) if len(out.chunks) == 1 else None

        try:
            runner.list(runner.stream(llm, "hi"), each=read_slowly)
        except SpoutError as exc:
            out.error = exc
        finally:
            llm.close()
    raised(out, spout.StreamInterruptedError)
    assert_partial(out, s.text())


@pytest.mark.parametrize("bad", ["malformed-json", "invalid-utf8"])
@pytest.mark.parametrize("sent", [0, 2])
def test_a_bad_event_is_a_protocol_error_holding_its_bytes(
    faults: FaultServer, provider: str, mode: str, bad: str, sent: int
) -> None:
    s = stream_for(provider)
    event = s.malformed() if bad == "malformed-json" else s.invalid_utf8()
    # The server would go on for seconds: the client must not wait for it.
    faults.script(s.reply([*s.upto(sent), event, Stall(5, ping=s.ping, every=0.05), *s.tail]))
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
        assert_left_promptly(faults, out.ended_at)
    error = raised(out, spout.ProtocolError)
    assert error.data == s.payload(event)
    assert_partial(out, s.text(sent))


def test_ollama_raises_a_malformed_line_at_once_when_it_shares_a_read(
    faults: FaultServer, mode: str
) -> None:
    s = stream_for("ollama")
    # One write holds a good line and a bad one; then the server says nothing for a while.
    faults.script(s.reply([*s.upto(1), s.texts[1] + s.malformed(), Stall(1.5), *s.tail]))
    with no_leaks(faults):
        started = time.monotonic()
        out = run(make_llm("ollama", faults), mode)
    raised(out, spout.ProtocolError)
    assert_partial(out, s.text(2))
    assert out.ended_at - started < PROMPTLY, f"raised after {out.ended_at - started:.2f} s"


# (provider, expected class, status_code, error_type) of each provider's default in-stream error
IN_STREAM = {
    "openai": (spout.InternalServerError, None, "server_error"),
    "openrouter": (spout.InternalServerError, None, "server_error"),
    "openai_responses": (spout.InternalServerError, None, "server_error"),
    "anthropic": (spout.OverloadedError, None, "overloaded_error"),
    "gemini": (spout.ServiceUnavailableError, 503, "UNAVAILABLE"),
    "ollama": (spout.InternalServerError, None, None),
    "tgi": (spout.InternalServerError, None, "generation"),
}


@pytest.mark.parametrize("sent", [0, 2, 5])
def test_an_error_event_in_the_stream_raises_its_class_with_the_partial(
    faults: FaultServer, provider: str, mode: str, sent: int
) -> None:
    s = stream_for(provider)
    event = s.error()
    faults.script(s.reply([*s.upto(sent), event, Stall(5, ping=s.ping, every=0.05)]))
    llm = make_llm(provider, faults)
    with no_leaks(faults):
        out = run(llm, mode)
        assert_left_promptly(faults, out.ended_at)
    cls, status, error_type = IN_STREAM[provider]
    error = raised(out, cls)
    assert_partial(out, s.text(sent))
    assert error.provider == llm.provider_name
    assert error.model == llm.model
    assert error.status_code == status
    assert error.error_type == error_type
    assert error.body is not None and error.message in str(error.body)


# Other in-stream errors: (provider, the error event's fields, expected class)
IN_STREAM_KINDS = [
    (
        "openai",
        {"message": "Rate limit reached", "type": "rate_limit_exceeded"},
        spout.RateLimitError,
    ),
    (
        "openai",
        {
            "message": "This model's maximum context length is 8192 tokens",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        },
        spout.ContextWindowExceededError,
    ),
    ("openrouter", {"message": "Upstream overloaded", "code": 502}, spout.ServiceUnavailableError),
    (
        "openai_responses",
        {"message": "Rate limit reached for gpt-4.1", "code": "rate_limit_exceeded"},
        spout.RateLimitError,
    ),
    (
        "anthropic",
        {"type": "api_error", "message": "Internal server error"},
        spout.InternalServerError,
    ),
    ("anthropic", {"type": "rate_limit_error", "message": "Too many tokens"}, spout.RateLimitError),
    (
        "gemini",
        {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
        },
        spout.RateLimitError,
    ),
    (
        "gemini",
        {"code": 500, "message": "An internal error has occurred."},
        spout.InternalServerError,
    ),
    ("tgi", {"message": "Model is overloaded", "error_type": "overloaded"}, spout.OverloadedError),
    (
        "ollama",
        {"message": "the input length exceeds the context length"},
        spout.ContextWindowExceededError,
    ),
]


@pytest.mark.parametrize(
    ("provider", "fields", "expected"),
    IN_STREAM_KINDS,
    ids=[f"{p}-{e.__name__}" for p, _, e in IN_STREAM_KINDS],
)
def test_each_kind_of_in_stream_error_raises_its_class(
    faults: FaultServer,
    provider: str,
    mode: str,
    fields: dict[str, Any],
    expected: type[SpoutError],
) -> None:
    s = stream_for(provider)
    faults.script(s.reply([*s.upto(2), s.error(**fields)]))
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    raised(out, expected)
    assert_partial(out, s.text(2))


def test_a_failed_response_event_raises_with_the_partial(faults: FaultServer, mode: str) -> None:
    s = stream_for("openai_responses")
    failed = (
        b'event: response.failed\ndata: {"type": "response.failed", "response": {"id": '
        b'"resp_fault", "status": "failed", "error": {"code": "server_error", "message": '
        b'"The model failed to generate a response."}}}\n\n'
    )
    faults.script(s.reply([*s.upto(3), failed]))
    with no_leaks(faults):
        out = run(make_llm("openai_responses", faults), mode)
    raised(out, spout.InternalServerError)
    assert_partial(out, s.text(3))


def test_an_in_stream_error_carries_the_request_id_of_its_response(
    faults: FaultServer, provider: str, mode: str
) -> None:
    s = stream_for(provider)
    faults.script(
        s.reply([*s.upto(2), s.error()], headers={request_id_header(provider): REQUEST_ID})
    )
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    assert out.error is not None and isinstance(out.error, spout.ProviderError)
    assert out.error.request_id == REQUEST_ID


# -- stalls ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["before-the-first-event", "between-events"])
def test_a_stall_with_keepalives_ends_in_the_whole_answer(
    faults: FaultServer, provider: str, mode: str, where: str
) -> None:
    s = stream_for(provider)
    at = 0 if where == "before-the-first-event" else 2
    stall = Stall(0.2, ping=s.ping, every=0.03)
    faults.script(s.reply([*s.upto(at), stall, *s.after(at)]))
    with no_leaks(faults):
        out = run(make_llm(provider, faults), mode)
    assert out.error is None, out.error
    assert out.response is not None
    assert out.text == out.response.text == s.text()
    assert out.response.finish_reason == "stop"


# -- stopping early: every way closes the connection at once ----------------------------------

STALLED = 5.0  # how long the server would stall: far longer than any test waits


def stalled_reply(s: ProviderStream, sent: int = 3) -> Any:
    """``sent`` text events, then seconds of keep-alives: a stream the client must stop."""
    return s.reply([*s.upto(sent), Stall(STALLED, ping=s.ping, every=0.05), *s.tail])


@pytest.fixture(params=NOT_OPENAI)
def other_provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


SYNC_STOPS = ["break", "close", "with", "gc"]


@pytest.mark.parametrize("how", SYNC_STOPS)
def test_stopping_a_sync_stream_closes_the_connection(
    faults: FaultServer, other_provider: str, how: str
) -> None:
    s = stream_for(other_provider)
    faults.script(stalled_reply(s))
    with no_leaks(faults):
        llm = make_llm(other_provider, faults)
        stream = llm.generate_stream("hi")
        text = ""
        if how == "break":
            for i, chunk in enumerate(stream):
                text += chunk
                if i == 2:
                    break
        elif how == "with":
            with stream:
                chunks = iter(stream)
                text = "".join(next(chunks) for _ in range(3))
        else:
            chunks = iter(stream)
            text = "".join(next(chunks) for _ in range(3))
            if how == "close":
                stream.close()
            else:
                del chunks, stream
                gc.collect()
        stopped = time.monotonic()
        assert_left_promptly(faults, stopped)
        if how != "gc":
            assert stream.closed
            assert stream.text == stream.response.text == s.text(3)
            assert stream.response.finish_reason is None
        llm.close()
    assert text == s.text(3)


ASYNC_STOPS = ["break", "aclose", "async-with", "gc", "cancel"]


@pytest.mark.parametrize("how", ASYNC_STOPS)
def test_stopping_an_async_stream_closes_the_connection(
    faults: FaultServer, other_provider: str, how: str
) -> None:
    s = stream_for(other_provider)
    faults.script(stalled_reply(s))

    async def main() -> tuple[str, float]:
        llm = make_llm(other_provider, faults)
        try:
            text, stopped = await stop_async(llm, how)
            await wait_for_disconnect(faults)
            return text, stopped
        finally:
            await llm.aclose()

    with no_leaks(faults):
        text, stopped = asyncio.run(main())
        assert_left_promptly(faults, stopped)
    assert text == s.text(3)


async def stop_async(llm: spout.LLM, how: str) -> tuple[str, float]:
    """Read three chunks, then stop the stream ``how``; returns the text and when it stopped."""
    received: list[str] = []
    if how == "break":
        async for chunk in llm.agenerate_stream("hi"):
            received.append(chunk)
            if len(received) == 3:
                break
        return "".join(received), time.monotonic()
    if how == "async-with":
        async with llm.agenerate_stream("hi") as stream:
            chunks = aiter(stream)
            received += [await anext(chunks) for _ in range(3)]
        assert stream.closed
        return "".join(received), time.monotonic()
    if how == "cancel":
        three = asyncio.Event()

        async def consume() -> None:
            async for chunk in llm.agenerate_stream("hi"):
                received.append(chunk)
                if len(received) == 3:
                    three.set()

        task = asyncio.create_task(consume())
        await three.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return "".join(received), time.monotonic()
    stream = llm.agenerate_stream("hi")
    chunks = aiter(stream)
    received += [await anext(chunks) for _ in range(3)]
    if how == "aclose":
        await stream.aclose()
        assert stream.closed and stream.text == "".join(received)
    else:  # gc
        del chunks, stream
        gc.collect()
    return "".join(received), time.monotonic()


async def wait_for_disconnect(server: FaultServer, timeout: float = PROMPTLY + 1) -> None:
    """Let the loop run (a dropped stream is released on it) until the server saw the client go."""
    deadline = time.monotonic() + timeout
    while not server.disconnects and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("where", "keepalives"),
    [
        ("before-headers", False),
        ("before-the-first-event", True),
        ("before-the-first-event", False),
        ("mid-stream", True),
        ("mid-stream", False),
    ],
    ids=[
        "before-headers",
        "before-the-first-event-with-pings",
        "before-the-first-event-silent",
        "mid-stream-with-pings",
        "mid-stream-silent",
    ],
)
def test_cancelling_a_task_waiting_on_a_stalled_server_closes_the_connection(
    faults: FaultServer, provider: str, where: str, keepalives: bool
) -> None:
    s = stream_for(provider)
    ping = s.ping if keepalives else None
    sent = {"before-headers": 0, "before-the-first-event": 0, "mid-stream": 3}[where]
    if where == "before-headers":
        faults.script(s.reply(head_delay=STALLED))
    else:
        faults.script(s.reply([*s.upto(sent), Stall(STALLED, ping=ping, every=0.05), *s.tail]))

    async def main() -> tuple[list[str], float, spout.AsyncStream]:
        llm = make_llm(provider, faults)
        received: list[str] = []
        stream = llm.agenerate_stream("hi")
        try:

            async def consume() -> None:
                async for chunk in stream:
                    received.append(chunk)

            task = asyncio.create_task(consume())
            await asyncio.wait_for(_until(lambda: len(faults.requests) == 1), 2)
            await asyncio.wait_for(_until(lambda: len(received) == sent), 2)
            await asyncio.sleep(0.1)  # now the task waits on the stalled server
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stopped = time.monotonic()
            await wait_for_disconnect(faults)
            return received, stopped, stream
        finally:
            await llm.aclose()

    with no_leaks(faults):
        received, stopped, stream = asyncio.run(main())
        assert_left_promptly(faults, stopped)
    assert "".join(received) == stream.text == s.text(sent)
    assert stream.closed


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("provider", ["openai", "ollama"])  # the bug is in Stream: SSE, NDJSON
def test_closing_a_sync_stream_from_another_thread_while_it_is_stalled(
    faults: FaultServer, provider: str
) -> None:
    s = stream_for(provider)
    faults.script(s.reply([*s.upto(2), Stall(1.5), *s.tail]))
    with no_leaks(faults):
        llm = make_llm(provider, faults)
        stream = llm.generate_stream("hi")
        seen: list[Any] = []

        def read() -> None:
            try:
                seen.extend(stream)
            except BaseException as exc:
                seen.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.2)  # the reader now waits on the stalled server
        try:
            stream.close()
            stopped = time.monotonic()
            assert_left_promptly(faults, stopped)
        finally:
            reader.join(5)
            llm.close()
        assert not reader.is_alive()
    assert all(isinstance(item, str | SpoutError) for item in seen), seen
    assert stream.text == s.text(2)


# -- soak: many concurrent streams, random faults ----------------------------------------------

SOAK_STREAMS = 200
SOAK_FAULTS = ["complete", "drop", "error", "malformed", "no-terminator"]
SOAK_ALPHABET = ["a", "é", "ß", "日", "本", "🙂", " ", "x", "ю", "!"]
#: Streams the soak sends to a hostile upstream (tests/hostile_upstream.py) at the same time,
#: with the error each must end in; the fault server's streams must not notice them.
SOAK_HOSTILE: list[tuple[str, type[SpoutError]]] = [
    ("long-line", spout.ProtocolError),
    ("gzip-bomb", spout.ProtocolError),
    ("endless-arguments", spout.ProtocolError),
    ("keep-alive", spout.FirstTokenTimeout),
    ("redirect", spout.ProviderError),
] * 2


@dataclass
class Plan:
    fault: str
    stream: ProviderStream
    sent: int  # text events sent before the fault
    cut: int | None


def soak_plans(provider: str, rng: random.Random) -> list[Plan]:
    plans = []
    for _ in range(SOAK_STREAMS):
        pieces = [
            "".join(rng.choice(SOAK_ALPHABET) for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(1, 8))
        ]
        plans.append(
            Plan(
                fault=rng.choice(SOAK_FAULTS),
                stream=provider_stream(provider, pieces),
                sent=rng.randint(0, len(pieces)),
                cut=rng.choice([None, None, 1, 5]),
            )
        )
    return plans


def soak_reply(plan: Plan) -> Any:
    s, n = plan.stream, plan.sent
    if plan.fault == "complete":
        return s.reply(cut=plan.cut)
    if plan.fault == "drop":
        return s.reply(s.upto(n), end="drop", cut=plan.cut)
    if plan.fault == "error":
        return s.reply([*s.upto(n), s.error()], cut=plan.cut)
    if plan.fault == "malformed":
        return s.reply([*s.upto(n), s.malformed(), *s.after(n)], cut=plan.cut)
    return s.reply(s.upto(n), cut=plan.cut)


def test_soak_concurrent_streams_under_random_faults(faults: FaultServer, provider: str) -> None:
    rng = random.Random(f"soak-{provider}")
    plans = soak_plans(provider, rng)

    def choose(request: Request) -> Any:
        match = re.search(rb"soak-(\d+)-", request.body)
        assert match, request.body[:200]
        return soak_reply(plans[int(match.group(1))])

    faults.route(choose)

    async def one(llm: spout.LLM, i: int) -> Outcome:
        out = Outcome()
        try:
            stream = llm.agenerate_stream(f"soak-{i}-")
            async for chunk in stream:
                out.chunks.append(chunk)
            out.response = await stream.get_response()
        except SpoutError as exc:
            out.error = exc
        return out

    def hostile_llm(upstream: HostileUpstream, route: str) -> spout.LLM:
        # Small limits, so ten hostile streams at once cost little memory; a keep-alive
        # stream ends at its first-token limit (a ping is not content).
        limits = spout.ResponseLimits(
            max_event_bytes=2**20, max_tool_arguments=2**20, max_body_bytes=4 * 2**20
        )
        timeout = spout.Timeout(first_token=1) if route == "keep-alive" else None
        return create_llm(
            "openai:gpt-4o-mini",
            api_key="sk-soak",
            base_url=upstream.base(route),
            max_retries=0,
            limits=limits,
            timeout=timeout,
        )

    async def hostile(upstream: HostileUpstream, route: str) -> Outcome:
        llm = hostile_llm(upstream, route)
        try:
            return await one(llm, -1)
        finally:
            await llm.aclose()

    async def main(upstream: HostileUpstream) -> list[Outcome]:
        llm = make_llm(provider, faults)
        try:
            return await asyncio.gather(
                *(one(llm, i) for i in range(SOAK_STREAMS)),
                *(hostile(upstream, route) for route, _ in SOAK_HOSTILE),
            )
        finally:
            await llm.aclose()

    with HostileUpstream() as upstream, no_leaks(faults):
        every = asyncio.run(main(upstream))
    outcomes, hostile_outcomes = every[:SOAK_STREAMS], every[SOAK_STREAMS:]
    for (route, error), out in zip(SOAK_HOSTILE, hostile_outcomes, strict=True):
        assert type(out.error) is error, f"hostile {route}: {out.error!r}"
        if error is spout.ProtocolError:  # raised mid-stream (a timeout may come before it)
            assert out.error.partial is not None, route
    assert len(faults.requests) == SOAK_STREAMS
    expected_error = {
        "drop": spout.StreamInterruptedError,
        "no-terminator": spout.StreamInterruptedError,
        "malformed": spout.ProtocolError,
        "error": IN_STREAM[provider][0],
    }
    for i, (plan, out) in enumerate(zip(plans, outcomes, strict=True)):
        where = f"stream {i} ({plan.fault} after {plan.sent}, cut {plan.cut})"
        if plan.fault == "complete":
            assert out.error is None, f"{where}: {out.error!r}"
            assert out.response is not None and out.response.text == plan.stream.text(), where
            assert out.response.finish_reason == "stop", where
            continue
        assert out.error is not None, f"{where}: no error, {out.text!r}"
        assert type(out.error) is expected_error[plan.fault], f"{where}: {out.error!r}"
        assert out.error.partial is not None, where
        assert out.error.partial.text == out.text == plan.stream.text(plan.sent), where
