"""The Vertex AI provider against recorded transcripts replayed over loopback HTTP: Gemini and
Claude models, Bearer tokens from a token_provider or from Google's default credentials."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import spout
from helpers import (
    Cut,
    Runner,
    check_outputs,
    comparable,
    json_reply,
    made,
    raised_on_start,
    stream_text,
)
from replay_server import WIRE, ReplayServer, Reply, transcript
from spout import ToolCallDelta, ToolCallEnd, ToolCallStart, create_llm
from spout.providers.vertex import ApplicationDefaultCredentials

CASES = sorted(
    path.name.removesuffix(".expected.json") for path in (WIRE / "vertex").glob("*.expected.json")
)
GEMINI = "gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"
PROJECT = "wire-project"
LOCATION = "us-central1"
PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers"
GEMINI_STREAM = f"{PREFIX}/google/models/{GEMINI}:streamGenerateContent?alt=sse"
CLAUDE_STREAM = f"{PREFIX}/anthropic/models/{CLAUDE}:streamRawPredict"
TOKEN = "ya29.WIRE-token-from-the-provider"


def a_token() -> str:
    return TOKEN


def model_of(case: str) -> str:
    return CLAUDE if case.startswith("claude") else GEMINI


def vertex(server: ReplayServer, model: str = GEMINI, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here (they are tested in tests/test_retries.py).
    config.setdefault("max_retries", 0)
    config.setdefault("project", PROJECT)
    config.setdefault("location", LOCATION)
    config.setdefault("token_provider", a_token)
    return made(create_llm("vertex", model=model, base_url=server.url, **config))


def headers_of(request: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def check_response(response: spout.Response, expected: dict[str, Any]) -> None:
    """The rebuilt response, field by field, against a transcript's expected result."""
    assert response.text == expected["text"]
    assert [
        {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_raw": c.arguments_raw}
        for c in response.tool_calls
    ] == expected["tool_calls"]
    assert response.finish_reason == expected["finish_reason"]
    assert response.raw_finish_reason == expected["finish_reason_raw"]
    assert response.usage.input_tokens == expected["usage"]["input_tokens"]
    assert response.usage.output_tokens == expected["usage"]["output_tokens"]
    for key, value in expected["usage_raw"].items():
        if key not in ("promptTokenCount", "candidatesTokenCount"):
            assert response.usage.extras[key] == value
    assert response.id is not None and "WIRE" in response.id
    assert response.model is not None
    assert response.model.startswith("claude-" if expected["case"].startswith("claude") else "gem")
    assert response.provider == "vertex"


# -- the streams --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_transcript(replay: ReplayServer, runner: Runner, case: str, cut: Cut) -> None:
    body, expected = transcript("vertex", case)
    replay.replies = [Reply(chunks=cut(body))]
    streamed = runner.events(vertex(replay, model_of(case)))
    check_response(streamed.response, expected)
    check_outputs(streamed.response, expected, streamed.events)


def test_gemini_function_call_keeps_its_thought_signature(replay: ReplayServer) -> None:
    body, _ = transcript("vertex", "gemini_function_call")
    replay.replies = [Reply(chunks=[body])]
    (call,) = stream_text(vertex(replay), "sync").response.tool_calls
    # It goes back on the call's part with the result (the tool loop sends it).
    assert call.signature is not None and "WIRE" in call.signature


def test_claude_tool_arguments_stream_in_pieces(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("vertex", "claude_tool_use")
    replay.replies = [Reply(chunks=[body])]
    events = runner.events(vertex(replay, CLAUDE)).events
    tool_events = [e for e in events if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))]
    assert type(tool_events[0]) is ToolCallStart and type(tool_events[-1]) is ToolCallEnd
    deltas = [e.arguments for e in tool_events if isinstance(e, ToolCallDelta)]
    assert len(deltas) > 1 and "".join(deltas) == expected["tool_calls"][0]["arguments_raw"]


def test_stream_cut_before_its_end_is_an_interruption(replay: ReplayServer, runner: Runner) -> None:
    # Gemini's stream ends with the chunk that says why; Claude's with message_stop.
    for case, last in (("gemini_text", b"data: "), ("claude_text", b"event: message_stop")):
        body, _ = transcript("vertex", case)
        replay.replies = [Reply(chunks=[body[: body.rindex(last)]])]
        with pytest.raises(spout.StreamInterruptedError) as caught:
            runner.text(vertex(replay, model_of(case)))
        assert caught.value.partial is not None and caught.value.partial.text


# -- the requests -------------------------------------------------------------------------------


def test_gemini_request(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("vertex", "gemini_text")
    replay.replies = [Reply(chunks=[body])]
    llm = vertex(replay, headers={"X-Title": "spout tests"})
    runner.text(llm, "Wo liegt Zürich?", system_prompt="Kurz.", max_tokens=64, temperature=0.2)
    request = replay.requests[-1]
    assert request.method == "POST" and request.path == GEMINI_STREAM
    headers = headers_of(request)
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "text/event-stream"
    assert headers["x-title"] == "spout tests"
    # A token is the only credential: no API key header of either API, none in the query.
    assert not {"x-goog-api-key", "x-api-key", "api-key"} & set(headers)
    assert "key=" not in request.path
    assert request.json() == {
        "contents": [{"role": "user", "parts": [{"text": "Wo liegt Zürich?"}]}],
        "systemInstruction": {"parts": [{"text": "Kurz."}]},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 64},
    }


def test_claude_request(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("vertex", "claude_text")
    replay.replies = [Reply(chunks=[body])]
    llm = vertex(replay, CLAUDE)
    runner.text(llm, "Wie fließt die Aare?", system_prompt="Kurz.", max_tokens=64, stop="\n\n")
    request = replay.requests[-1]
    assert request.method == "POST" and request.path == CLAUDE_STREAM
    headers = headers_of(request)
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["accept"] == "text/event-stream"
    assert not {"x-goog-api-key", "x-api-key", "api-key"} & set(headers)
    # The Messages body less its model (it is in the path), with Vertex's anthropic_version.
    assert request.json() == {
        "anthropic_version": "vertex-2023-10-16",
        "messages": [{"role": "user", "content": "Wie fließt die Aare?"}],
        "system": "Kurz.",
        "max_tokens": 64,
        "stop_sequences": ["\n\n"],
        "stream": True,
    }


def test_exactly_one_authorization_header(replay: ReplayServer) -> None:
    body, _ = transcript("vertex", "gemini_text")
    replay.replies = [Reply(chunks=[body])]
    stream_text(vertex(replay), "sync")
    names = [name.lower() for name in replay.requests[-1].headers]
    assert names.count("authorization") == 1


@pytest.mark.parametrize(
    ("case", "path"),
    [
        ("gemini_text", f"{PREFIX}/google/models/{GEMINI}:generateContent"),
        ("claude_text", f"{PREFIX}/anthropic/models/{CLAUDE}:rawPredict"),
    ],
)
def test_not_streamed_gives_the_streamed_response(
    replay: ReplayServer, runner: Runner, case: str, path: str
) -> None:
    body, _ = transcript("vertex", case)
    replay.replies = [Reply(chunks=[body]), json_reply(whole_response(case))]
    streamed = runner.events(vertex(replay, model_of(case))).response
    whole = runner.generate(vertex(replay, model_of(case)))
    assert comparable(whole) == comparable(streamed)
    request = replay.requests[-1]
    assert request.path == path
    assert "stream" not in request.json()


def whole_response(case: str) -> dict[str, Any]:
    """The answer not streamed to the same call as a transcript, in the route's shape."""
    body, expected = transcript("vertex", case)
    if case.startswith("gemini"):
        chunks = [
            json.loads(line[6:]) for line in body.decode().split("\r\n") if line[:6] == "data: "
        ]
        text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
        final = chunks[-1]
        candidate = {
            **final["candidates"][0],
            "content": {"role": "model", "parts": [{"text": text}]},
        }
        return {**final, "candidates": [candidate]}
    # rawPredict answers with a Message, as in the logs of Vertex's Claude calls.
    return {
        "model": "claude-sonnet-4-5-20250929",
        "id": "msg_vrtx_01WIRE0000000000000000001",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": expected["text"]}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 21,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 14,
        },
    }


@pytest.mark.parametrize(
    ("location", "url"),
    [
        ("us-central1", "https://us-central1-aiplatform.googleapis.com"),
        ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
        ("global", "https://aiplatform.googleapis.com"),
    ],
)
def test_default_base_url(location: str, url: str) -> None:
    llm = create_llm("vertex", model=GEMINI, project="p", location=location, token_provider=a_token)
    assert llm.provider.base_url == url  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
def test_global_location_path(replay: ReplayServer, model: str) -> None:
    case = "claude_text" if model == CLAUDE else "gemini_text"
    body, _ = transcript("vertex", case)
    replay.replies = [Reply(chunks=[body])]
    stream_text(vertex(replay, model, location="global"), "sync")
    publisher = "anthropic" if model == CLAUDE else "google"
    assert replay.requests[-1].path.startswith(
        f"/v1/projects/{PROJECT}/locations/global/publishers/{publisher}/models/{model}:"
    )


@dataclass
class City:
    name: str


def test_structured_output_per_route(replay: ReplayServer) -> None:
    # Gemini's route asks natively (responseJsonSchema); Claude's states the format in the
    # system prompt, as Anthropic's adapter does.
    body, _ = transcript("vertex", "gemini_text")
    replay.replies = [Reply(chunks=[body])]
    with pytest.raises(spout.StructuredOutputError):
        stream_text(vertex(replay), "sync", "Eine Stadt?", response_format=City)
    config = replay.requests[-1].json()["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"] == {"name": {"type": "string"}}
    body, _ = transcript("vertex", "claude_text")
    replay.replies = [Reply(chunks=[body])]
    with pytest.raises(spout.StructuredOutputError):
        stream_text(vertex(replay, CLAUDE), "sync", "Eine Stadt?", response_format=City)
    sent = replay.requests[-1].json()
    assert "generationConfig" not in sent and "name" in sent["system"]


# -- where project and location come from ---------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_project_and_location_from_the_environment(
    replay: ReplayServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    clean_env.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    body, _ = transcript("vertex", "gemini_text")
    replay.replies = [Reply(chunks=[body])]
    llm = made(create_llm("vertex", model=GEMINI, base_url=replay.url, token_provider=a_token))
    stream_text(llm, "sync")
    assert replay.requests[-1].path.startswith(
        "/v1/projects/env-project/locations/europe-west4/publishers/google/"
    )
    # Arguments win over the environment.
    stream_text(vertex(replay), "sync")
    assert replay.requests[-1].path == GEMINI_STREAM


def test_location_defaults_to_global(clean_env: pytest.MonkeyPatch) -> None:
    llm = create_llm("vertex", model=CLAUDE, project="p", token_provider=a_token)
    assert llm.provider.location == "global"  # type: ignore[attr-defined]
    assert llm.provider.base_url == "https://aiplatform.googleapis.com"  # type: ignore[attr-defined]


def test_a_project_is_required(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(spout.ConfigurationError) as caught:
        create_llm("vertex", model=GEMINI, token_provider=a_token)
    assert "project=" in str(caught.value) and "GOOGLE_CLOUD_PROJECT" in str(caught.value)


def test_a_project_is_required_when_no_credentials_name_one(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Default credentials are looked for only to learn the project: unfound, the error says
    # both ways to give one, and why the credentials could not.
    clean_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(spout.ConfigurationError) as caught:
        create_llm("vertex", model=GEMINI)
    message = str(caught.value)
    assert "project=" in message and "GOOGLE_CLOUD_PROJECT" in message
    assert "missing.json" in message


def test_google_auth_missing_gives_the_install_hint(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setitem(sys.modules, "google.auth.transport.requests", None)  # import fails
    with pytest.raises(spout.ConfigurationError, match=r"pip install 'spout\[vertex\]'"):
        create_llm("vertex", model=GEMINI, project="p")
    # A token_provider needs no google-auth.
    create_llm("vertex", model=GEMINI, project="p", token_provider=a_token)


def test_capabilities_are_each_routes_wire() -> None:
    gemini = create_llm("gemini", model=GEMINI, api_key="k").get_capabilities()
    anthropic = create_llm("anthropic", model="claude-sonnet-4-5", api_key="k").get_capabilities()
    assert create_llm(
        "vertex", model=GEMINI, project="p", token_provider=a_token
    ).get_capabilities() == (gemini)
    assert create_llm(
        "vertex", model=CLAUDE, project="p", token_provider=a_token
    ).get_capabilities() == (anthropic)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
@pytest.mark.parametrize(
    ("status", "grpc_status", "error_class"),
    [
        (400, "INVALID_ARGUMENT", spout.BadRequestError),
        (403, "PERMISSION_DENIED", spout.PermissionDeniedError),
        (404, "NOT_FOUND", spout.NotFoundError),
        (429, "RESOURCE_EXHAUSTED", spout.RateLimitError),
        (503, "UNAVAILABLE", spout.ServiceUnavailableError),
    ],
)
def test_google_errors(
    replay: ReplayServer,
    runner: Runner,
    model: str,
    status: int,
    grpc_status: str,
    error_class: type[spout.ProviderError],
) -> None:
    # Vertex refuses a call in Google's shape, whichever publisher's model it was for.
    error = google_error(status, grpc_status, f"Vertex says {status}")
    replay.replies = [json_reply(error, status)]
    exc = raised_on_start(runner, vertex(replay, model), error_class)
    assert (exc.status_code, exc.error_type, exc.body) == (status, grpc_status, error["error"])
    assert f"Vertex says {status}" in str(exc)


@pytest.mark.parametrize(
    ("status", "error_type", "error_class"),
    [
        (400, "invalid_request_error", spout.BadRequestError),
        (429, "rate_limit_error", spout.RateLimitError),
        (529, "overloaded_error", spout.OverloadedError),
    ],
)
def test_claude_errors_in_anthropics_shape(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    error_type: str,
    error_class: type[spout.ProviderError],
) -> None:
    error = {"type": "error", "error": {"type": error_type, "message": "Claude says no"}}
    replay.replies = [json_reply(error, status, {"request-id": "req_vrtx_WIRE1"})]
    exc = raised_on_start(runner, vertex(replay, CLAUDE), error_class)
    assert (exc.status_code, exc.error_type, exc.request_id) == (
        status,
        error_type,
        "req_vrtx_WIRE1",
    )
    assert "Claude says no" in str(exc)


def test_claude_error_inside_the_stream(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("vertex", "claude_text")
    cut = body[: body.index(b"event: content_block_stop")]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    replay.replies = [Reply(chunks=[cut + f"event: error\ndata: {json.dumps(error)}\n\n".encode()])]
    with pytest.raises(spout.ServiceUnavailableError) as caught:
        runner.text(vertex(replay, CLAUDE))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "Die Aare fließt durch Bern — grün und schnell."


def test_gemini_error_inside_the_stream(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("vertex", "gemini_text")
    first = body[: body.index(b"data: ", 1)]
    error = google_error(500, "INTERNAL", "Internal error encountered.")
    replay.replies = [Reply(chunks=[first + f"data: {json.dumps(error)}\r\n\r\n".encode()])]
    with pytest.raises(spout.InternalServerError) as caught:
        runner.text(vertex(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "Zürich liegt am"


def test_the_token_is_scrubbed_from_errors(replay: ReplayServer) -> None:
    error = google_error(400, "INVALID_ARGUMENT", f"Bad request with token {TOKEN}")
    replay.replies = [json_reply(error, 400)]
    with pytest.raises(spout.BadRequestError) as caught:
        vertex(replay).generate("hi")
    assert TOKEN not in str(caught.value) and TOKEN not in json.dumps(caught.value.body)


# -- tokens: a token_provider, and Google's default credentials -------------------------------


class Tokens:
    """A token_provider that hands out numbered tokens and counts what it was told."""

    def __init__(self) -> None:
        self.given = 0
        self.invalidated = 0

    def __call__(self) -> str:
        self.given += 1
        return f"ya29.WIRE-{self.given}"

    def invalidate(self) -> None:
        self.invalidated += 1


def unauthenticated() -> Reply:
    return json_reply(google_error(401, "UNAUTHENTICATED", "Request had invalid credentials."), 401)


@pytest.mark.parametrize("case", ["gemini_text", "claude_text"])
def test_token_refreshed_once_after_a_401(replay: ReplayServer, runner: Runner, case: str) -> None:
    body, expected = transcript("vertex", case)
    replay.replies = [unauthenticated(), Reply(chunks=[body])]
    tokens = Tokens()
    response = runner.text(vertex(replay, model_of(case), token_provider=tokens)).response
    assert response.text == expected["text"]
    sent = [headers_of(r)["authorization"] for r in replay.requests]
    assert sent == ["Bearer ya29.WIRE-1", "Bearer ya29.WIRE-2"]
    assert (tokens.given, tokens.invalidated) == (2, 1)


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
def test_a_second_401_is_the_answer(replay: ReplayServer, runner: Runner, model: str) -> None:
    replay.replies = [unauthenticated()]
    tokens = Tokens()
    exc = raised_on_start(
        runner, vertex(replay, model, token_provider=tokens), spout.AuthenticationError
    )
    assert exc.status_code == 401
    assert len(replay.requests) == 2 and tokens.given == 2


def test_the_token_provider_is_asked_before_each_request(replay: ReplayServer) -> None:
    body, _ = transcript("vertex", "gemini_text")
    replay.replies = [Reply(chunks=[body])]
    tokens = Tokens()
    llm = vertex(replay, token_provider=tokens)
    stream_text(llm, "sync")
    stream_text(llm, "async")
    sent = [headers_of(r)["authorization"] for r in replay.requests]
    assert sent == ["Bearer ya29.WIRE-1", "Bearer ya29.WIRE-2"]


@pytest.fixture
def token_server() -> Iterator[ReplayServer]:
    """Google's OAuth token endpoint on loopback: each token request gets the next token."""
    server = ReplayServer().start()
    server.replies = [
        json_reply(
            {"access_token": f"ya29.WIRE-adc-{n}", "expires_in": 3600, "token_type": "Bearer"}
        )
        for n in (1, 2, 3)
    ]
    yield server
    server.stop()
    assert not server.errors


@pytest.fixture
def service_account(
    tmp_path: Path, token_server: ReplayServer, clean_env: pytest.MonkeyPatch
) -> Path:
    """A service account key of a fresh RSA key, its token_uri the loopback token server, named
    by GOOGLE_APPLICATION_CREDENTIALS as Application Default Credentials."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "adc-project",
        "private_key_id": "WIRE0000000000000000000000000000000000key",
        "private_key": pem,
        "client_email": "spout-tests@adc-project.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": f"{token_server.url}/token",
    }
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(info))
    clean_env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


@pytest.mark.usefixtures("service_account")
def test_default_credentials_reach_vertex_and_refresh_after_a_401(
    replay: ReplayServer, token_server: ReplayServer, runner: Runner
) -> None:
    body, expected = transcript("vertex", "gemini_text")
    replay.replies = [unauthenticated(), Reply(chunks=[body])]
    # No project given: the service account's own is used.
    llm = made(create_llm("vertex", model=GEMINI, location=LOCATION, base_url=replay.url))
    assert runner.text(llm).response.text == expected["text"]
    # The 401 made the credentials fetch a new token, once; the request was sent again with it.
    assert [r.path for r in token_server.requests] == ["/token", "/token"]
    assert [headers_of(r)["authorization"] for r in replay.requests] == [
        "Bearer ya29.WIRE-adc-1",
        "Bearer ya29.WIRE-adc-2",
    ]
    assert replay.requests[-1].path.startswith("/v1/projects/adc-project/locations/us-central1/")
    # The token request is a signed JWT for the cloud-platform scope (RFC 7523).
    form = token_server.requests[0].body.decode()
    assert "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in form
    assert "assertion=" in form
    # A token still valid is used again: no third token request.
    replay.replies = [Reply(chunks=[body])]
    runner.text(llm)
    assert len(token_server.requests) == 2
    assert headers_of(replay.requests[-1])["authorization"] == "Bearer ya29.WIRE-adc-2"


@pytest.mark.usefixtures("service_account")
def test_application_default_credentials_directly(token_server: ReplayServer) -> None:
    credentials = ApplicationDefaultCredentials()
    try:
        assert credentials.project == "adc-project"
        assert credentials() == credentials() == "ya29.WIRE-adc-1"
        credentials.invalidate()
        assert credentials() == "ya29.WIRE-adc-2"
        assert len(token_server.requests) == 2
    finally:
        credentials.close()


@pytest.mark.usefixtures("service_account")
async def test_a_refresh_in_async_code_leaves_the_event_loop_serving(
    token_server: ReplayServer,
) -> None:
    """The token endpoint takes 0.5 s to answer: meanwhile, the event loop goes on (a ticker
    task runs), because the refresh runs in a worker thread; a valid token costs no thread."""
    token_server.replies = [
        Reply(
            chunks=[b'{"access_token": "ya29.WIRE-slow", "expires_in": 3600}'],
            headers={"Content-Type": "application/json"},
            delay=0.5,
        )
    ]
    credentials = ApplicationDefaultCredentials()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        assert await credentials.atoken() == "ya29.WIRE-slow"
        during = ticks
        assert await credentials.atoken() == "ya29.WIRE-slow"  # still valid: no request
    finally:
        task.cancel()
        credentials.close()
    assert during >= 10, f"the event loop ran only {during} ticks during a 0.5 s refresh"
    assert len(token_server.requests) == 1


@pytest.mark.usefixtures("service_account")
def test_litellm_names_vertex_ai_its_project_and_location(replay: ReplayServer) -> None:
    """completion(model="vertex_ai/<model>", vertex_project=..., vertex_location=...), with
    Application Default Credentials, as litellm's callers write it."""
    body, expected = transcript("vertex", "gemini_text")
    replay.replies = [Reply(chunks=[body])]
    chunks = spout.completion(
        model=f"vertex_ai/{GEMINI}",
        messages=[{"role": "user", "content": "hi"}],
        api_base=replay.url,
        vertex_project="litellm-project",
        vertex_location="europe-west4",
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == expected["text"]
    (request,) = replay.requests
    assert request.path == (
        "/v1/projects/litellm-project/locations/europe-west4/publishers/google/models/"
        f"{GEMINI}:streamGenerateContent?alt=sse"
    )
    assert headers_of(request)["authorization"] == "Bearer ya29.WIRE-adc-1"
    assert not {"vertex_project", "vertex_location"} & set(request.json())


@pytest.mark.usefixtures("service_account")
def test_closing_the_llm_closes_the_connection_tokens_came_over(replay: ReplayServer) -> None:
    """The default credentials' refreshes keep a connection pool (requests'): closed with the
    LLM, never left for the garbage collector to find open."""
    body, _ = transcript("vertex", "gemini_text")
    replay.replies = [Reply(chunks=[body])]
    llm = create_llm("vertex", model=GEMINI, location=LOCATION, base_url=replay.url)
    stream_text(llm, "sync")
    credentials = llm.provider._default_credentials  # type: ignore[attr-defined]
    transport = credentials._transport
    pool = transport.session.get_adapter("http://").poolmanager
    assert len(pool.pools) == 1  # the token endpoint's connection, kept for the next refresh
    llm.close()
    assert len(pool.pools) == 0 and credentials._transport is None
