"""An API key never shows: not in a repr, an error, its body, its chain, a log line or the CLI."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

import spout
from helpers import Runner
from replay_server import ReplayServer, Reply
from spout import ConfigurationError, SpoutError, TransportError, create_llm
from spout._log import mask, redact_headers, redact_url, scrub_error, secrets_in
from spout.providers._base import Call, HTTPProvider

KEY = "sk-test-SECRET-0123456789"
SHOWN = "[redacted ...6789]"  # what may be shown of it: the last four characters

# Every provider that takes a key, as create_llm arguments (the replay server's URL is added).
PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {"provider": "openai", "model": "gpt-x"},
    "openai_responses": {"provider": "openai", "model": "gpt-x", "api": "responses"},
    "anthropic": {"provider": "anthropic", "model": "claude-x"},
    "gemini": {"provider": "gemini", "model": "gemini-x"},
    "huggingface": {"provider": "huggingface", "model": "tgi"},
    "huggingface_chat": {"provider": "huggingface", "model": "m", "api": "chat"},
    "ollama": {"provider": "ollama", "model": "llama-x"},
    "openrouter": {"provider": "openrouter", "model": "x/y"},
    "vllm": {"provider": "vllm", "model": "x"},
    "llamacpp": {"provider": "llamacpp", "model": "x"},
    "lmstudio": {"provider": "lmstudio", "model": "x"},
    "together": {"provider": "together", "model": "x"},
    "groq": {"provider": "groq", "model": "x"},
    "deepseek": {"provider": "deepseek", "model": "x"},
}

# A 401 whose body echoes the key, as some servers do; one JSON shape every adapter reads
# its message from (OpenAI's, Anthropic's and Google's all keep it under "error").
ECHO = {
    "type": "error",
    "error": {
        "message": f"Incorrect API key provided: {KEY}. You sent {KEY!r}.",
        "type": "authentication_error",
        "code": 401,
        "status": "UNAUTHENTICATED",
        "param": {"api_key": KEY},
    },
}


def llm_for(name: str, server: ReplayServer, **config: Any) -> spout.LLM:
    args = dict(PROVIDERS[name])
    base_url = server.url
    if name in ("openai", "openai_responses", "huggingface_chat") or args["provider"] in (
        "openrouter",
        "vllm",
        "llamacpp",
        "lmstudio",
        "together",
        "groq",
        "deepseek",
    ):
        base_url += "/v1"
    return create_llm(args.pop("provider"), base_url=base_url, api_key=KEY, **args, **config)


@pytest.fixture
def llms() -> Iterator[list[spout.LLM]]:
    made: list[spout.LLM] = []
    yield made
    for llm in made:
        llm.close()


def shown(*objects: Any) -> str:
    """Everything a user could see of some objects: str, repr, and a traceback for errors."""
    parts = []
    for obj in objects:
        parts += [str(obj), repr(obj)]
        if isinstance(obj, BaseException):
            parts.append("".join(traceback.format_exception(obj)))
            parts += [repr(vars(obj)), repr(obj.args)]
    return "\n".join(parts)


def openai_stream(*texts: str) -> bytes:
    chunks = [{"choices": [{"index": 0, "delta": {"content": t}}]} for t in texts]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )


def openai_completion(text: str) -> Reply:
    body = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ]
    }
    return Reply(chunks=[json.dumps(body).encode()], headers={"Content-Type": "application/json"})


# -- reprs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_no_repr_shows_the_key(name: str, replay: ReplayServer, llms: list[spout.LLM]) -> None:
    llm = llm_for(name, replay)
    llms.append(llm)
    provider = llm.provider
    assert isinstance(provider, HTTPProvider)
    call = Call([{"role": "user", "content": "hi"}], {"max_tokens": 5})
    requests = [provider.build_request(call, stream=s) for s in (True, False)]
    # The requests do carry the key (else this test would prove nothing)...
    assert all(KEY in json.dumps(r.headers) for r in requests)
    # ...and no object shows it.
    text = shown(llm, provider, provider.transport, *requests, llm.get_capabilities())
    assert KEY not in text
    assert SHOWN in repr(requests[0])
    assert "body=<" in repr(requests[0])


def test_stream_reprs_and_responses_hold_no_key(
    replay: ReplayServer, llms: list[spout.LLM]
) -> None:
    replay.replies = [Reply(chunks=[openai_stream("Hello", "!")])]
    llm = llm_for("openai", replay)
    llms.append(llm)
    stream = llm.generate_stream("hi")
    before = repr(stream)
    text = "".join(stream)
    assert text == "Hello!"
    response = stream.response
    assert KEY not in shown(
        before, stream, response, vars(response) if hasattr(response, "__dict__") else None
    )

    async def run() -> str:
        s = llm.agenerate_stream("hi")
        seen = repr(s)
        chunks = [c async for c in s]
        seen += repr(s) + repr(await s.get_response()) + "".join(chunks)
        await llm.aclose()
        return seen

    assert KEY not in asyncio.run(run())


# -- errors --------------------------------------------------------------------------------------


def raise_from(llm: spout.LLM, mode: str) -> SpoutError:
    """The error of one call: ``stream``, ``complete``, ``astream`` or ``acomplete``."""
    runner = Runner("async" if mode.startswith("a") else "sync")
    with runner, pytest.raises(SpoutError) as caught:
        if mode.endswith("stream"):
            runner.text(llm)
        else:
            runner.generate(llm)
    return caught.value


@pytest.mark.parametrize("mode", ["stream", "complete", "astream", "acomplete"])
@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_an_error_echoing_the_key_is_redacted(
    name: str, mode: str, replay: ReplayServer, llms: list[spout.LLM]
) -> None:
    replay.replies = [
        Reply(
            status=401,
            chunks=[json.dumps(ECHO).encode()],
            headers={"Content-Type": "application/json"},
        )
    ]
    llm = llm_for(name, replay)
    llms.append(llm)
    error = raise_from(llm, mode)
    assert isinstance(error, spout.AuthenticationError)
    assert KEY not in shown(error)
    body = error.body
    assert KEY not in repr(body)
    # Redacted, not dropped: the message still says what went wrong, and with which key.
    assert f"Incorrect API key provided: {SHOWN}" in str(error)
    assert len(replay.requests) == 1


@pytest.mark.parametrize("mode", ["stream", "acomplete"])
def test_a_plain_text_error_echoing_the_key_is_redacted(
    mode: str, replay: ReplayServer, llms: list[spout.LLM]
) -> None:
    replay.replies = [
        Reply(
            status=403,
            chunks=[f"forbidden for Bearer {KEY}".encode()],
            headers={"Content-Type": "text/plain"},
        )
    ]
    llm = llm_for("anthropic", replay)
    llms.append(llm)
    error = raise_from(llm, mode)
    assert isinstance(error, spout.PermissionDeniedError)
    assert KEY not in shown(error)
    assert SHOWN in str(error)


def test_a_header_the_http_library_refuses_is_not_quoted(
    replay: ReplayServer, llms: list[spout.LLM]
) -> None:
    # httpx (h11) refuses a header value with a newline, quoting the value in its error.
    token = "tok-SECRET-9876543210"
    llm = create_llm(
        "openai",
        model="x",
        base_url=f"{replay.url}/v1",
        headers={"X-Proxy-Token": f"{token}\n"},
    )
    llms.append(llm)
    with pytest.raises(TransportError) as caught:
        llm.generate("hi")
    assert token not in shown(caught.value)
    assert "[redacted" in str(caught.value)
    assert replay.requests == []


def test_a_key_ending_in_a_newline_is_sent_without_it(
    replay: ReplayServer, llms: list[spout.LLM]
) -> None:
    # A key read from a file or a Windows .env file: the line end is not part of the key.
    replay.replies = [Reply(chunks=[openai_stream("ok")])]
    llm = create_llm("openai", model="x", base_url=f"{replay.url}/v1", api_key=f" {KEY}\r\n")
    llms.append(llm)
    assert "".join(llm.generate_stream("hi")) == "ok"
    assert replay.requests[0].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "bad", [f"{KEY[:6]}\x00{KEY[6:]}", f"{KEY}\u2019", f"{KEY[:4]}\n{KEY[4:]}"]
)
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "ollama", "huggingface"])
def test_a_key_no_header_can_carry_is_refused_without_echoing_it(bad: str, provider: str) -> None:
    with pytest.raises(ConfigurationError, match="API key has a character") as caught:
        create_llm(provider, model="x", base_url="http://127.0.0.1:9", api_key=bad)
    assert KEY[6:] not in shown(caught.value) and KEY[:6] not in str(caught.value)


def test_a_key_that_is_not_a_str_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="api_key must be a str, not int"):
        create_llm("anthropic", model="x", api_key=1234567890123)


def test_missing_key_errors_name_the_variable_not_a_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        create_llm("anthropic", model="x")
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        create_llm("gemini", model="x")


def test_gemini_sends_the_key_in_a_header_not_the_url(
    replay: ReplayServer, llms: list[spout.LLM]
) -> None:
    llm = llm_for("gemini", replay)
    llms.append(llm)
    provider = llm.provider
    assert isinstance(provider, HTTPProvider)
    for stream in (True, False):
        request = provider.build_request(Call([{"role": "user", "content": "hi"}]), stream=stream)
        assert KEY not in request.url
        assert request.headers["x-goog-api-key"] == KEY


# -- logs ----------------------------------------------------------------------------------------


def test_debug_logs_each_request_redacted(
    runner: Runner, replay: ReplayServer, llms: list[spout.LLM], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="spout")
    replay.replies = [Reply(chunks=[openai_stream("Hi")]), openai_completion("Hi")]
    llm = create_llm(
        "openai",
        model="x",
        base_url=f"{replay.url}/v1",
        api_key=KEY,
        headers={"X-Custom-Auth": KEY, "X-Trace": "visible"},
    )
    llms.append(llm)
    assert "".join(runner.text(llm).chunks) == "Hi"
    runner.generate(llm)
    records = [r for r in caplog.records if r.name == "spout"]
    messages = [r.getMessage() for r in records]
    requests = [m for m in messages if m.startswith("HTTP request:")]
    responses = [m for m in messages if m.startswith("HTTP response:")]
    assert len(requests) == 2 and len(responses) == 2, messages
    assert all(r.levelno == logging.DEBUG for r in records)
    first = requests[0]
    assert f"POST {replay.url}/v1/chat/completions" in first
    assert f"'Authorization': 'Bearer {SHOWN}'" in first
    assert f"'X-Custom-Auth': '{SHOWN}'" in first
    assert "'X-Trace': 'visible'" in first
    assert "bytes" in first and '"hi"' not in first  # the body's size, not the prompt
    assert responses[0].endswith("-> 200")
    assert KEY not in caplog.text
    assert all(KEY not in repr(r.args) and KEY not in str(r.msg) for r in records)


def test_no_log_record_is_made_when_debug_is_off(
    replay: ReplayServer, llms: list[spout.LLM], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spout")
    replay.replies = [openai_completion("Hi")]
    llm = llm_for("openai", replay)
    llms.append(llm)
    llm.generate("hi")
    assert [r for r in caplog.records if r.name == "spout"] == []


def test_redact_headers() -> None:
    headers = {
        "Authorization": f"Bearer {KEY}",
        "x-api-key": KEY,
        "x-goog-api-key": KEY,
        "api-key": KEY,
        "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        "X-Session-Token": "short",
        "Cookie": "session=abc",
        "X-Client-Secret": KEY,
        "Content-Type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    out = redact_headers(headers)
    assert out == {
        "Authorization": f"Bearer {SHOWN}",
        "x-api-key": SHOWN,
        "x-goog-api-key": SHOWN,
        "api-key": SHOWN,
        "Proxy-Authorization": "Basic [redacted]",
        "X-Session-Token": "[redacted]",
        "Cookie": "[redacted]",
        "X-Client-Secret": SHOWN,
        "Content-Type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    assert mask("short") == "[redacted]"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://h/v1/models/m:generate?key=AIzaXYZ",
            "https://h/v1/models/m:generate?key=[redacted]",
        ),
        ("https://h/p?alt=sse&api_key=abc&x=1", "https://h/p?alt=sse&api_key=[redacted]&x=1"),
        ("https://h/p?access_token=abc#frag", "https://h/p?access_token=[redacted]#frag"),
        ("https://h/p?sig=abc&se=2030", "https://h/p?sig=[redacted]&se=2030"),
        ("https://user:pa55@h/p", "https://user:[redacted]@h/p"),
        ("https://h/p?alt=sse", "https://h/p?alt=sse"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_scrub_error_reaches_the_whole_chain() -> None:
    try:
        try:
            raise ValueError(f"inner {KEY}")
        except ValueError as inner:
            raise spout.ProviderError(f"outer {KEY}", body={"k": [KEY.encode()]}) from inner
    except spout.ProviderError as exc:
        error = exc
    scrub_error(error, secrets_in({"Authorization": f"Bearer {KEY}"}))
    assert KEY not in shown(error)
    assert error.body == {"k": [SHOWN.encode()]}
    assert str(error.__cause__) == f"inner {SHOWN}"


def test_scrub_error_cuts_a_cause_it_cannot_rewrite() -> None:
    class Stubborn(Exception):
        def __str__(self) -> str:
            return f"stubborn {KEY}"

    try:
        try:
            raise Stubborn()
        except Stubborn as inner:
            raise SpoutError("failed") from inner
    except SpoutError as exc:
        error = exc
    scrub_error(error, {KEY})
    assert error.__cause__ is None and error.__suppress_context__
    assert KEY not in shown(error)


def test_short_strings_are_not_hunted_in_error_text() -> None:
    # A header such as "X-Auth-Mode: 1" must not turn every "1" of a message into [redacted].
    assert secrets_in({"X-Auth-Mode": "1", "Authorization": "Bearer abc"}) == set()


# -- everything a user could see ------------------------------------------------------------------


def test_nothing_spout_prints_or_logs_shows_the_key(
    replay: ReplayServer,
    llms: list[spout.LLM],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A representative run (streams, errors, the CLI), everything captured, grepped for the key."""
    caplog.set_level(logging.DEBUG)  # every logger, not only spout's
    seen: list[str] = []
    echo = Reply(
        status=401, chunks=[json.dumps(ECHO).encode()], headers={"Content-Type": "application/json"}
    )
    ok = Reply(chunks=[openai_stream("Hello", " there")])

    # A stream, a whole response and errors, through the API.
    replay.replies = [ok, openai_completion("Hi")]
    llm = llm_for("openai", replay)
    llms.append(llm)
    stream = llm.generate_stream("hi")
    seen += [repr(stream), *stream, repr(stream), repr(stream.response)]
    seen.append(repr(llm.generate("hi", max_tokens=5)))
    replay.replies = [echo]
    for name in ("openai", "anthropic", "gemini", "ollama"):
        other = llm_for(name, replay)
        llms.append(other)
        for mode in ("stream", "acomplete"):
            seen.append(shown(raise_from(other, mode)))

    # The CLI, in process: --help, a 401 echoing the key, a key from the environment.
    from spout.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(SystemExit):
        main(["--help"])
    assert main(["-m", "openai:x", "--base-url", f"{replay.url}/v1", "hi"]) == 1
    replay.replies = [openai_completion("Hello there")]
    assert main(["-m", "openai:x", "--base-url", f"{replay.url}/v1", "--no-stream", "hi"]) == 0
    printed = capsys.readouterr()
    assert f"Incorrect API key provided: {SHOWN}" in printed.err
    assert "Hello there" in printed.out

    everything = "\n".join([*seen, printed.out, printed.err, caplog.text])
    everything += "".join(repr(r.args) for r in caplog.records)
    assert KEY not in everything
    assert SHOWN in caplog.text  # the requests were logged, redacted


def test_the_cli_as_a_process_never_prints_the_key(replay: ReplayServer) -> None:
    replay.replies = [
        Reply(
            status=401,
            chunks=[json.dumps(ECHO).encode()],
            headers={"Content-Type": "application/json"},
        )
    ]
    env = {**os.environ, "OPENAI_API_KEY": f"{KEY}\n", "PYTHONWARNINGS": "default"}
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        env.pop(name, None)
    runs = {
        "--help": ["--help"],
        "Incorrect API key provided: [redacted ...6789]": [
            "-m",
            "openai:x",
            "--base-url",
            f"{replay.url}/v1",
            "hi",
        ],
        "needs an API key": ["-m", "anthropic:x", "hi"],
    }
    for expected, args in runs.items():
        done = subprocess.run(
            [sys.executable, "-m", "spout", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert KEY not in done.stdout + done.stderr, args
        assert expected in done.stdout + done.stderr, (args, done.stderr)
