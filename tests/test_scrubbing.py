"""Credentials stay home: an upstream that echoes its key inside a 200 stream, and hostile
``Retry-After`` values (issue #24, points 2 and 10).

A real server on loopback (tests/fault_server.py) answers 200, sends some text, then an error
event quoting the key it was sent, in each provider's own shape. The error spout raises, sync
and async, holds the key nowhere: not its text, repr, ``body``, ``data``, arguments, the
traceback a logger would print, nor its partial response.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import spout
from fault_server import FaultServer, Reply, error_reply, provider_stream
from helpers import Runner
from spout import RateLimitError, Retry, SpoutError, create_llm

#: The key every LLM here is given, and the server echoes back.
KEY = "sk-scrub-SECRET-0123456789abcdef"
#: How providers echo it ("Incorrect API key provided: Bearer sk-...").
ECHO = f"Incorrect API key provided: Bearer {KEY}"
PIECES = ["Grüß", " dich", "!"]

_CONFIG: dict[str, Callable[[str], dict[str, Any]]] = {
    "openai": lambda url: {"provider": "openai", "model": "gpt-4o-mini", "base_url": f"{url}/v1"},
    "openrouter": lambda url: {
        "provider": "openrouter",
        "model": "openai/gpt-4o-mini",
        "base_url": f"{url}/api/v1",
    },
    "openai_responses": lambda url: {
        "provider": "openai",
        "api": "responses",
        "model": "gpt-4.1",
        "base_url": f"{url}/v1",
    },
    "anthropic": lambda url: {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "base_url": url,
    },
    "gemini": lambda url: {"provider": "gemini", "model": "gemini-2.5-flash", "base_url": url},
    "ollama": lambda url: {"provider": "ollama", "model": "llama3.2", "base_url": url},
    "tgi": lambda url: {"provider": "huggingface", "base_url": url},
}
PROVIDERS = list(_CONFIG)


def keyed_llm(provider: str, server: FaultServer, **config: Any) -> spout.LLM:
    """An LLM for ``provider`` at the fault server, holding :data:`KEY`, without retries."""
    settings = {"api_key": KEY, "max_retries": 0, **_CONFIG[provider](server.url), **config}
    return create_llm(settings.pop("provider"), **settings)


def everything_shown(exc: BaseException) -> str:
    """All an error lets out: its text and repr, its arguments and attributes, the traceback
    a logger prints (with every chained error), and its partial response."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    partial = getattr(exc, "partial", None)
    if partial is not None:
        parts += [partial.text, repr(partial), repr(partial.raw_events)]
    return "\n".join(parts)


def assert_no_key(exc: BaseException) -> None:
    shown = everything_shown(exc)
    assert KEY not in shown
    assert KEY.encode().hex() not in shown  # nor as bytes (a repr of b"..." shows ASCII)
    assert "[redacted ...cdef]" in shown  # masked, not dropped: the user sees which key


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_echoed_in_a_stream_error_is_scrubbed(
    faults: FaultServer, runner: Runner, provider: str
) -> None:
    stream = provider_stream(provider, PIECES)
    faults.script(stream.reply([*stream.upto(1), stream.error(message=ECHO)]))
    llm = keyed_llm(provider, faults)
    with pytest.raises(SpoutError) as caught:
        runner.text(llm, "hi")
    assert_no_key(caught.value)
    assert caught.value.partial is not None
    assert caught.value.partial.text == stream.text(1)
    assert faults.requests[0].headers.get("authorization", "").endswith(KEY) or (
        KEY in faults.requests[0].headers.values()
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic", "openai_responses", "gemini"])
def test_a_key_echoed_in_the_first_event_is_scrubbed(
    faults: FaultServer, runner: Runner, provider: str
) -> None:
    stream = provider_stream(provider, PIECES)
    faults.script(stream.reply([*stream.upto(0), stream.error(message=ECHO)]))
    with pytest.raises(SpoutError) as caught:
        runner.text(keyed_llm(provider, faults), "hi")
    assert_no_key(caught.value)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_key_in_a_malformed_event_is_scrubbed_from_its_data(
    faults: FaultServer, runner: Runner, provider: str
) -> None:
    # A broken event is kept on ProtocolError.data as it came: the echo is in those bytes.
    stream = provider_stream(provider, PIECES)
    broken = b'data: {"error": {"message": "' + ECHO.encode() + b'"}\n\n'
    faults.script(stream.reply([*stream.upto(1), broken]))
    with pytest.raises(spout.ProtocolError) as caught:
        runner.text(keyed_llm(provider, faults), "hi")
    assert_no_key(caught.value)
    assert isinstance(caught.value.data, bytes)
    assert b"[redacted ...cdef]" in caught.value.data


def test_a_custom_credential_header_is_scrubbed_too(faults: FaultServer, runner: Runner) -> None:
    # A gateway's own key, given as a header of the caller's: it is as secret as api_key.
    custom = "gw-token-0123456789-SECRET"
    stream = provider_stream("openai", PIECES)
    faults.script(stream.reply([*stream.upto(1), stream.error(message=f"bad {custom}")]))
    llm = keyed_llm("openai", faults, headers={"X-Gateway-Token": custom})
    with pytest.raises(SpoutError) as caught:
        runner.text(llm, "hi")
    assert custom not in everything_shown(caught.value)
    assert faults.requests[0].headers["x-gateway-token"] == custom


def test_a_token_providers_token_is_scrubbed(faults: FaultServer, runner: Runner) -> None:
    token = "ya29.token-from-provider-0123456789"
    stream = provider_stream("openai", PIECES)
    faults.script(stream.reply([*stream.upto(1), stream.error(message=f"bad {token}")]))
    llm = create_llm(
        "azure",
        model="gpt-4o-mini",
        base_url=faults.url,
        token_provider=lambda: token,
        api_version="2024-10-21",
        max_retries=0,
    )
    with pytest.raises(SpoutError) as caught:
        runner.text(llm, "hi")
    assert token not in everything_shown(caught.value)
    assert faults.requests[0].headers["authorization"] == f"Bearer {token}"


# -- Bedrock: eventstream frames, a bearer key or SigV4 credentials -----------------------------


def _bedrock_wire() -> ModuleType:
    """scripts/bedrock_wire.py, which frames ConverseStream events as Bedrock does."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "bedrock_wire.py"
    spec = importlib.util.spec_from_file_location("bedrock_wire_scrubbing", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bedrock_echo(message: str) -> Reply:
    """Some text, then an exception frame whose message is ``message``."""
    wire = _bedrock_wire()
    frames: list[dict[str, Any]] = [
        {"event": "messageStart", "payload": {"role": "assistant"}},
        {
            "event": "contentBlockDelta",
            "payload": {"contentBlockIndex": 0, "delta": {"text": PIECES[0]}},
        },
        {"exception": "validationException", "payload": {"message": message}},
    ]
    return Reply(
        headers={"Content-Type": "application/vnd.amazon.eventstream"},
        body=[bytes(wire.build({"frames": frames}))],
    )


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS setting of the machine's reaches the test."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_aws")
def test_a_bedrock_key_echoed_in_an_exception_frame_is_scrubbed(
    faults: FaultServer, runner: Runner
) -> None:
    faults.script(bedrock_echo(ECHO))
    llm = create_llm(
        "bedrock",
        model="anthropic.claude-3-haiku-20240307-v1:0",
        base_url=faults.url,
        region="us-east-1",
        api_key=KEY,
        max_retries=0,
    )
    with pytest.raises(SpoutError) as caught:
        runner.text(llm, "hi")
    assert_no_key(caught.value)
    assert caught.value.partial is not None and caught.value.partial.text == PIECES[0]
    assert faults.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.usefixtures("no_aws")
def test_a_bedrock_session_token_echoed_is_scrubbed(
    faults: FaultServer, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SigV4: the secret key is never sent, but the session token is, and may come back.
    token = "IQoJb3JpZ2luX2VjEXAMPLE-session-token-0123456789"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE0123456789")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-access-key-EXAMPLE-0123456789")
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    faults.script(bedrock_echo(f"The security token included in the request is invalid: {token}"))
    llm = create_llm(
        "bedrock",
        model="anthropic.claude-3-haiku-20240307-v1:0",
        base_url=faults.url,
        region="us-east-1",
        max_retries=0,
    )
    with pytest.raises(SpoutError) as caught:
        runner.text(llm, "hi")
    assert token not in everything_shown(caught.value)
    assert faults.requests[0].headers["x-amz-security-token"] == token


# -- Retry-After ---------------------------------------------------------------------------------

#: Values a hostile or broken server may send, as ``Retry-After`` (seconds) or
#: ``retry-after-ms``, and the wait spout takes from each (None: ignored, its own backoff).
HOSTILE = [
    ("retry-after", "-5", 0.0),
    ("retry-after-ms", "-5000", 0.0),
    ("retry-after", "-inf", None),
    ("retry-after", "nan", None),
    ("retry-after", "inf", None),
    ("retry-after", "1e400", None),
    ("retry-after-ms", "NaN", None),
]


@pytest.mark.parametrize(("header", "value", "expected"), HOSTILE)
def test_a_hostile_retry_after_is_clamped_or_ignored(
    faults: FaultServer, runner: Runner, header: str, value: str, expected: float | None
) -> None:
    faults.script(error_reply("openai", 429, headers={header: value}))
    with pytest.raises(RateLimitError) as caught:
        runner.text(keyed_llm("openai", faults), "hi")
    got = caught.value.retry_after
    assert got == expected
    assert got is None or math.isfinite(got)


@pytest.mark.parametrize(("header", "value", "expected"), HOSTILE)
def test_a_hostile_retry_after_is_retried_promptly(
    faults: FaultServer, runner: Runner, header: str, value: str, expected: float | None
) -> None:
    # Before, -5 made time.sleep raise a bare ValueError, -inf an OverflowError, and nan,
    # inf and 1e400 stopped the retry the policy allowed.
    stream = provider_stream("openai", PIECES)
    faults.script(error_reply("openai", 429, headers={header: value}), stream.reply())
    retry = Retry(max_retries=1, initial_delay=0.05, max_delay=0.05, jitter=False)
    llm = keyed_llm("openai", faults, max_retries=None, retry=retry)
    started = time.monotonic()
    result = runner.text(llm, "hi")
    assert result.response.text == "".join(PIECES)
    assert time.monotonic() - started < 3
    assert len(faults.requests) == 2


def test_a_huge_retry_after_is_capped() -> None:
    from spout.providers._common import retry_after_seconds

    assert retry_after_seconds({"retry-after": "1e300"}) == 86_400.0
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None


def test_a_policy_never_waits_a_negative_or_endless_time() -> None:
    # A provider of the caller's own may hand any float as retry_after.
    retry = Retry(initial_delay=0.25, jitter=False)
    assert retry.delay(0, -5.0) == 0.0
    assert retry.delay(0, math.nan) == 0.25
    assert retry.delay(0, math.inf) == 0.25
    assert retry.delay(0, -math.inf) == 0.25
    assert retry.delay(0, 3.0) == 3.0
    assert retry.delay(0, 600.0) is None  # longer than max_retry_after: not retried


def test_the_body_of_a_stream_error_is_json_safe(faults: FaultServer) -> None:
    # The scrubbed body is still the provider's object, ready to serialise.
    stream = provider_stream("openai", PIECES)
    faults.script(stream.reply([*stream.upto(1), stream.error(message=ECHO)]))
    with pytest.raises(spout.ProviderError) as caught:
        list(keyed_llm("openai", faults).generate_stream("hi"))
    body = json.loads(json.dumps(caught.value.body))
    assert body["message"].startswith("Incorrect API key provided: Bearer [redacted")
