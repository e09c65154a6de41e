"""Azure OpenAI against recorded transcripts replayed over loopback HTTP, and bearer tokens
from a ``token_provider`` (asked before each request, and once more after a 401)."""

from __future__ import annotations

import gc
import json
import warnings
from typing import Any

import pytest

import spout
from helpers import Cut, Runner, comparable, json_reply, made, raised_on_start, usage_counts
from replay_server import CUTS, WIRE, ReplayServer, Reply, transcript
from spout import (
    Finish,
    ModelCapability,
    Response,
    ResponseStart,
    TextDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    create_llm,
)
from spout.providers._registry import provider_class

CASES = sorted(
    path.name.removesuffix(".expected.json") for path in (WIRE / "azure").glob("*.expected.json")
)
DEPLOYMENT = "my-gpt-4o"
KEY = "azure-key-WIRE-0123456789abcdef"
PATH = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
V1_PATH = "/openai/v1/chat/completions"
#: The variables the provider reads, cleared for every test: the machine's own must not leak in.
ENV = (
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_API_BASE",
    "AZURE_OPENAI_API_KEY",
    "AZURE_API_KEY",
    "OPENAI_API_VERSION",
    "AZURE_API_VERSION",
)


@pytest.fixture(autouse=True)
def _no_azure_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def azure(server: ReplayServer, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here unless a test asks for them.
    config.setdefault("max_retries", 0)
    if "token_provider" not in config:
        config.setdefault("api_key", KEY)
    config.setdefault("base_url", server.url)
    return made(create_llm("azure", model=DEPLOYMENT, **config))


def sse(*payloads: Any) -> bytes:
    body = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)
    return body + b"data: [DONE]\n\n"


def headers_of(request: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def error_reply(status: int, message: str, **headers: str) -> Reply:
    """An error as Azure answers one: the status as a string ``code`` (Azure's API gateway)."""
    return json_reply({"error": {"code": str(status), "message": message}}, status, headers)


def check_response(response: Response, expected: dict[str, Any]) -> None:
    """The rebuilt response, field by field, against a transcript's expected result."""
    assert response.text == expected["text"]
    assert [
        {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_raw": c.arguments_raw}
        for c in response.tool_calls
    ] == expected["tool_calls"]
    assert response.finish_reason == expected["finish_reason"]
    assert response.raw_finish_reason == expected["finish_reason_raw"]
    assert usage_counts(response) == expected["usage"]
    assert response.usage.extras["total_tokens"] == expected["usage_raw"]["total_tokens"]
    # From the model's chunks: the filter's chunks have an empty id and model.
    assert response.id is not None and "WIRE" in response.id
    assert response.model == "gpt-4o-2024-11-20"
    assert response.provider == "azure"


# -- the stream ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_transcript(replay: ReplayServer, runner: Runner, case: str, cut: Cut) -> None:
    body, expected = transcript("azure", case)
    replay.replies = [Reply(chunks=cut(body))]
    result = runner.events(azure(replay))
    check_response(result.response, expected)
    assert "".join(result.chunks) == expected["text"]


def test_filter_chunks_give_no_events(replay: ReplayServer, runner: Runner) -> None:
    # The prompt's filter results, the annotations between the tokens and those after the
    # finish: none of them is output, and the response starts once, with the model's id.
    body, expected = transcript("azure", "filter_after_finish")
    replay.replies = [Reply(chunks=CUTS["mid_line"](body))]
    events = runner.events(azure(replay)).events
    assert events[0] == ResponseStart("chatcmpl-WIREazasync00000000000000004", "gpt-4o-2024-11-20")
    assert [type(e) for e in events] == [
        ResponseStart,
        *[TextDelta] * 8,
        Usage,
        Finish,
    ]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == expected["text"]
    assert events[-1] == Finish("stop", "stop")


def test_tool_call_events(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("azure", "tool_calls")
    replay.replies = [Reply(chunks=[body])]
    events = runner.events(azure(replay)).events
    calls = [
        (type(e).__name__, e.index) for e in events if isinstance(e, ToolCallStart | ToolCallEnd)
    ]
    # The first call ends as the second starts: a caller sees it whole while the next streams.
    assert calls == [
        ("ToolCallStart", 0),
        ("ToolCallEnd", 0),
        ("ToolCallStart", 1),
        ("ToolCallEnd", 1),
    ]


def test_the_asynchronous_filter_ends_a_stream_with_an_annotation(
    replay: ReplayServer, runner: Runner
) -> None:
    # Azure's Asynchronous Filter sends its verdict in an annotation chunk (empty id, no
    # delta) after the text it flags: the text stays, the finish is content_filter.
    flagged = {"protected_material_text": {"detected": True, "filtered": True}}
    model_chunk = {
        "id": "chatcmpl-WIREazblocked",
        "object": "chat.completion.chunk",
        "created": 1699587397,
        "model": "gpt-35-turbo",
    }
    offsets = {"check_offset": 65, "start_offset": 65, "end_offset": 1056}
    body = sse(
        {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
            "choices": [],
            "usage": None,
        },
        {
            **model_chunk,
            "choices": [{"index": 0, "finish_reason": None, "delta": {"role": "assistant"}}],
        },
        {
            **model_chunk,
            "choices": [{"index": 0, "finish_reason": None, "delta": {"content": "Hey"}}],
        },
        {
            **model_chunk,
            "choices": [{"index": 0, "finish_reason": None, "delta": {"content": " Jude"}}],
        },
        {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "content_filter",
                    "content_filter_results": flagged,
                    "content_filter_offsets": offsets,
                }
            ],
            "usage": None,
        },
    )
    replay.replies = [Reply(chunks=[body])]
    response = runner.text(azure(replay)).response
    assert (response.text, response.finish_reason) == ("Hey Jude", "content_filter")
    assert (response.id, response.model) == ("chatcmpl-WIREazblocked", "gpt-35-turbo")


def test_not_streamed_gives_the_streamed_response(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("azure", "text")
    completion = {
        "choices": [
            {
                "content_filter_results": {
                    "hate": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": False, "severity": "safe"},
                },
                "finish_reason": "stop",
                "index": 0,
                "logprobs": None,
                "message": {"content": expected["text"], "refusal": None, "role": "assistant"},
            }
        ],
        "created": 1735689600,
        "id": "chatcmpl-WIREaztext0000000000000001",
        "model": "gpt-4o-2024-11-20",
        "object": "chat.completion",
        "prompt_filter_results": [{"content_filter_results": {}, "prompt_index": 0}],
        "system_fingerprint": "fp_WIRE00az01",
        "usage": expected["usage_raw"],
    }
    replay.replies = [Reply(chunks=[body]), json_reply(completion)]
    streamed = runner.events(azure(replay)).response
    whole = runner.generate(azure(replay))
    assert comparable(whole) == comparable(streamed)
    sent = replay.requests[-1]
    assert sent.path == PATH
    assert "stream" not in sent.json() and "stream_options" not in sent.json()


# -- the request -----------------------------------------------------------------------------------


def test_request_to_a_deployment(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = azure(replay, headers={"x-ms-useragent": "spout-tests"}, temperature=0.5)
    runner.text(llm, "Count from 1 to 5", system_prompt="Be brief.", max_tokens=20, seed=7)
    request = replay.requests[-1]
    assert request.method == "POST" and request.path == PATH
    headers = headers_of(request)
    assert headers["api-key"] == KEY
    assert "authorization" not in headers  # a key never goes as a bearer token
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "text/event-stream"
    assert headers["x-ms-useragent"] == "spout-tests"
    # "model" rides along as openai-python's AzureOpenAI sends it; the path names the deployment.
    assert request.json() == {
        "model": DEPLOYMENT,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Count from 1 to 5"},
        ],
        "temperature": 0.5,
        "max_tokens": 20,
        "seed": 7,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_request_to_the_v1_api(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    runner.text(azure(replay, api_version="v1"), "Hi")
    request = replay.requests[-1]
    # No api-version: the v1 API names the deployment in the body's "model".
    assert request.path == V1_PATH
    assert headers_of(request)["api-key"] == KEY
    assert "authorization" not in headers_of(request)
    assert request.json() == {
        "model": DEPLOYMENT,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("suffix", "api_version", "path"),
    [
        ("/", None, PATH),
        ("/openai", None, PATH),
        ("/openai/", "2024-10-21", PATH),
        # As Azure's v1 examples give the OpenAI client its base URL:
        ("/openai/v1/", None, V1_PATH),
        ("/openai/v1", "v1", V1_PATH),
    ],
)
def test_endpoint_given_with_a_path(
    replay: ReplayServer, suffix: str, api_version: str | None, path: str
) -> None:
    body, _ = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    azure(replay, base_url=replay.url + suffix, api_version=api_version).generate_stream(
        "hi"
    ).close()
    assert replay.requests[-1].path == path


def test_a_v1_endpoint_with_a_dated_version_is_refused(replay: ReplayServer) -> None:
    with pytest.raises(spout.ConfigurationError, match="/openai/v1"):
        azure(replay, base_url=f"{replay.url}/openai/v1", api_version="2024-10-21")


def test_deployment_and_version_are_quoted_in_the_path(replay: ReplayServer) -> None:
    body, _ = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = made(
        create_llm(
            "azure",
            model="a/b c",
            base_url=replay.url,
            api_key=KEY,
            api_version="2025-01-01-preview",
        )
    )
    llm.generate_stream("hi").close()
    assert replay.requests[-1].path == (
        "/openai/deployments/a%2Fb%20c/chat/completions?api-version=2025-01-01-preview"
    )


@pytest.mark.parametrize(
    ("version", "usage"),
    [
        ("2024-06-01", False),
        ("2024-08-01-preview", False),
        ("2024-09-01-preview", True),
        ("2024-10-21", True),
        ("2025-04-01-preview", True),
        ("v1", True),
    ],
)
def test_usage_is_asked_for_where_the_version_takes_it(
    replay: ReplayServer, version: str, usage: bool
) -> None:
    # stream_options came in 2024-09-01-preview; an older version refuses the argument.
    body, _ = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = azure(replay, api_version=version)
    assert llm.get_capabilities()[ModelCapability.USAGE_IN_STREAM] is usage
    llm.generate_stream("hi").close()
    assert ("stream_options" in replay.requests[-1].json()) is usage


def test_capabilities(replay: ReplayServer) -> None:
    assert azure(replay).get_capabilities() == {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: True,
        ModelCapability.TOOL_STREAMING: True,
        ModelCapability.USAGE_IN_STREAM: True,
        ModelCapability.REASONING: False,
        ModelCapability.SYSTEM_PROMPT: True,
        # What Azure documents for any deployment: images and input_audio, no PDFs.
        ModelCapability.VISION: True,
        ModelCapability.PDF_INPUT: False,
        ModelCapability.AUDIO_INPUT: True,
    }
    assert (
        azure(replay, stream_usage=False).get_capabilities()[ModelCapability.USAGE_IN_STREAM]
        is False
    )


# -- configuration and the environment -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "version"),
    [
        ({"AZURE_OPENAI_ENDPOINT": "{url}", "AZURE_OPENAI_API_KEY": KEY}, "2024-10-21"),
        (
            {
                "AZURE_OPENAI_ENDPOINT": "{url}/",
                "AZURE_OPENAI_API_KEY": KEY,
                "OPENAI_API_VERSION": "2025-03-01-preview",
            },
            "2025-03-01-preview",
        ),
        # litellm's names, for code that moves from it:
        (
            {"AZURE_API_BASE": "{url}", "AZURE_API_KEY": KEY, "AZURE_API_VERSION": "2024-06-01"},
            "2024-06-01",
        ),
    ],
)
def test_endpoint_key_and_version_from_the_environment(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], version: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(url=replay.url))
    body, _ = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    made(create_llm("azure", model=DEPLOYMENT)).generate_stream("hi").close()
    request = replay.requests[-1]
    assert request.path == (
        f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={version}"
    )
    assert headers_of(request)["api-key"] == KEY


def test_arguments_beat_the_environment(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "env-key-0123456789")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-06-01")
    body, _ = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    azure(replay, api_version="2025-01-01-preview").generate_stream("hi").close()
    request = replay.requests[-1]
    assert request.path.endswith("?api-version=2025-01-01-preview")
    assert headers_of(request)["api-key"] == KEY


def test_the_environment_is_part_of_what_tells_llms_apart() -> None:
    # spout.completion keeps one LLM per endpoint, key and environment.
    assert set(ENV) <= set(provider_class("azure").env_names())


def test_a_deployment_is_required(replay: ReplayServer) -> None:
    with pytest.raises(spout.ConfigurationError, match="deployment"):
        create_llm("azure", base_url=replay.url, api_key=KEY)


def test_an_endpoint_is_required() -> None:
    with pytest.raises(spout.ConfigurationError, match="AZURE_OPENAI_ENDPOINT") as caught:
        create_llm("azure", model=DEPLOYMENT, api_key=KEY)
    assert "base_url=" in str(caught.value)


def test_credentials_are_required_and_both_ways_are_named(replay: ReplayServer) -> None:
    with pytest.raises(spout.ConfigurationError) as caught:
        create_llm("azure", model=DEPLOYMENT, base_url=replay.url)
    message = str(caught.value)
    assert "api_key=" in message and "AZURE_OPENAI_API_KEY" in message
    assert "token_provider=" in message and "Entra ID" in message


@pytest.mark.parametrize("header", ["api-key", "Authorization", "Ocp-Apim-Subscription-Key"])
def test_credentials_given_as_a_header(replay: ReplayServer, header: str) -> None:
    # An API Management gateway in front of the resource takes its own key, say.
    body, _ = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = made(
        create_llm(
            "azure", model=DEPLOYMENT, base_url=replay.url, headers={header: "hdr-key-0123456789"}
        )
    )
    llm.generate_stream("hi").close()
    assert headers_of(replay.requests[-1])[header.lower()] == "hdr-key-0123456789"


def test_a_key_and_a_token_provider_are_not_both_taken(replay: ReplayServer) -> None:
    with pytest.raises(spout.ConfigurationError, match="not both"):
        create_llm(
            "azure", model=DEPLOYMENT, base_url=replay.url, api_key=KEY, token_provider=lambda: "t"
        )


def test_a_token_provider_must_be_callable(replay: ReplayServer) -> None:
    with pytest.raises(spout.ConfigurationError, match="callable"):
        create_llm("azure", model=DEPLOYMENT, base_url=replay.url, token_provider="a-token")


def test_only_the_chat_api(replay: ReplayServer) -> None:
    with pytest.raises(spout.ConfigurationError, match="'chat'"):
        create_llm("azure", model=DEPLOYMENT, base_url=replay.url, api_key=KEY, api="responses")


# -- errors ----------------------------------------------------------------------------------------

CONTENT_FILTER_ERROR = {
    "error": {
        "message": (
            "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry. To learn more about our "
            "content filtering policies please read our documentation: "
            "https://go.microsoft.com/fwlink/?linkid=2198766"
        ),
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": False, "severity": "safe"},
                "jailbreak": {"filtered": False, "detected": False},
                "self_harm": {"filtered": False, "severity": "safe"},
                "sexual": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": True, "severity": "medium"},
            },
        },
    }
}


def test_a_prompt_the_content_filter_refuses(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [json_reply(CONTENT_FILTER_ERROR, 400, {"apim-request-id": "WIRE-apim-1"})]
    exc = raised_on_start(runner, azure(replay), spout.BadRequestError)
    assert exc.error_type == "content_filter"
    assert exc.status_code == 400 and exc.request_id == "WIRE-apim-1"
    # The message says what was flagged, before Azure's own words.
    assert exc.message.startswith("Azure's content filter refused the prompt: violence (medium).")
    assert "content management policy" in exc.message
    assert exc.body == CONTENT_FILTER_ERROR["error"]  # innererror kept for the caller
    assert len(replay.requests) == 1  # not retried: the same prompt is refused again


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, spout.BadRequestError),
        (401, spout.AuthenticationError),
        (403, spout.PermissionDeniedError),
        (404, spout.NotFoundError),
        (429, spout.RateLimitError),
        (500, spout.InternalServerError),
        (503, spout.ServiceUnavailableError),
    ],
)
def test_http_errors_raise_before_streaming(
    replay: ReplayServer, runner: Runner, status: int, error_class: type[spout.ProviderError]
) -> None:
    replay.replies = [
        error_reply(
            status,
            f"status {status} for you",
            **{"apim-request-id": "WIRE-apim-2", "x-request-id": "x"},
        )
    ]
    exc = raised_on_start(runner, azure(replay), error_class)
    assert exc.status_code == status
    assert exc.request_id == "WIRE-apim-2"  # Azure's gateway's id comes first
    assert exc.provider == "azure" and exc.model == DEPLOYMENT
    assert f"status {status} for you" in str(exc)


def test_request_id_from_x_request_id(replay: ReplayServer) -> None:
    replay.replies = [error_reply(404, "DeploymentNotFound", **{"x-request-id": "WIRE-x-3"})]
    with pytest.raises(spout.NotFoundError) as caught:
        azure(replay).generate("hi")
    assert caught.value.request_id == "WIRE-x-3"


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "6500", "retry-after": "7"}, 6.5),  # the finer one wins
    ],
)
def test_rate_limit_says_when_to_come_back(
    replay: ReplayServer, runner: Runner, headers: dict[str, str], wait: float
) -> None:
    message = (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
        "2024-10-21 have exceeded token rate limit of your current AIServices S0 pricing tier. "
        "Please retry after 7 seconds."
    )
    replay.replies = [error_reply(429, message, **headers)]
    exc = raised_on_start(runner, azure(replay), spout.RateLimitError)
    assert exc.retry_after == wait
    assert "exceeded token rate limit" in exc.message


def test_a_rate_limit_is_retried_after_the_wait_it_names(replay: ReplayServer) -> None:
    body, expected = transcript("azure", "text")
    replay.replies = [
        error_reply(429, "slow down", **{"retry-after-ms": "10"}),
        Reply(chunks=[body]),
    ]
    assert "".join(azure(replay, max_retries=1).generate_stream("hi")) == expected["text"]
    assert len(replay.requests) == 2


# -- tokens from a token_provider ------------------------------------------------------------------


class Tokens:
    """A token provider that hands out a new token each time it is asked, and counts."""

    def __init__(self) -> None:
        self.asked = 0
        self.invalidated: list[int] = []  # how many times it had been asked, at each invalidate

    def token(self, n: int) -> str:
        return f"eyJ0eXAiOiJKV1QiWIRE.token-{n}.c2lnbmF0dXJl"

    def __call__(self) -> str:
        self.asked += 1
        return self.token(self.asked)

    def invalidate(self) -> None:
        self.invalidated.append(self.asked)


class AsyncTokens(Tokens):
    """The same, as a coroutine function: what an async credential gives."""

    async def __call__(self) -> str:  # type: ignore[override]
        return super().__call__()


def bearer(request: Any) -> str | None:
    return headers_of(request).get("authorization")


def test_a_token_is_asked_before_each_request(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    tokens = Tokens()
    llm = azure(replay, token_provider=tokens)
    assert tokens.asked == 0  # not when the LLM is made
    assert runner.text(llm).response.text == expected["text"]
    assert tokens.asked == 1
    assert runner.text(llm).response.text == expected["text"]
    assert tokens.asked == 2
    first, second = replay.requests
    assert (bearer(first), bearer(second)) == (
        f"Bearer {tokens.token(1)}",
        f"Bearer {tokens.token(2)}",
    )
    assert tokens.invalidated == []  # nothing was refused


def test_a_token_goes_as_a_bearer_and_no_key_with_it(
    replay: ReplayServer, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A key in the environment is not sent beside a token the caller gave.
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "env-key-0123456789")
    body, _ = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    tokens = Tokens()
    runner.text(azure(replay, token_provider=tokens))
    headers = headers_of(replay.requests[-1])
    assert headers["authorization"] == f"Bearer {tokens.token(1)}"
    assert "api-key" not in headers


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "generate"])
def test_a_401_asks_again_and_resends_once(
    replay: ReplayServer, runner: Runner, streamed: bool
) -> None:
    body, expected = transcript("azure", "text")
    completion = {
        "id": "chatcmpl-WIRE401",
        "model": "gpt-4o-2024-11-20",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
    }
    success = Reply(chunks=[body]) if streamed else json_reply(completion)
    replay.replies = [
        error_reply(
            401,
            "Unauthorized. Access token is missing, invalid, audience is incorrect, or have expired.",
        ),
        success,
    ]
    tokens = Tokens()
    # max_retries=0: the resend is not a retry.
    llm = azure(replay, token_provider=tokens)
    if streamed:
        assert runner.text(llm).response.text == expected["text"]
    else:
        assert runner.generate(llm).text == "ok"
    assert len(replay.requests) == 2
    assert [bearer(r) for r in replay.requests] == [
        f"Bearer {tokens.token(1)}",
        f"Bearer {tokens.token(2)}",
    ]
    # Told the token was refused before it was asked again.
    assert tokens.invalidated == [1] and tokens.asked == 2


def test_a_second_401_is_the_answer(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [error_reply(401, "Unauthorized. Access token has expired.")]
    tokens = Tokens()
    llm = azure(replay, token_provider=tokens, max_retries=3)
    exc = raised_on_start(runner, llm, spout.AuthenticationError)
    assert exc.status_code == 401
    # One request, one resend with a fresh token, and no retries on top.
    assert len(replay.requests) == 2
    assert tokens.asked == 2 and tokens.invalidated == [1]


def test_without_a_token_provider_a_401_is_not_resent(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [error_reply(401, "Access denied due to invalid subscription key.")]
    raised_on_start(runner, azure(replay, max_retries=3), spout.AuthenticationError)
    assert len(replay.requests) == 1


def test_a_403_is_not_a_stale_token(replay: ReplayServer, runner: Runner) -> None:
    # The token was good, its identity lacks the role: asking again would not help.
    replay.replies = [error_reply(403, "The principal lacks the required data action.")]
    tokens = Tokens()
    raised_on_start(runner, azure(replay, token_provider=tokens), spout.PermissionDeniedError)
    assert len(replay.requests) == 1 and tokens.asked == 1


def test_a_retry_asks_for_a_token_again(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("azure", "text")
    replay.replies = [
        error_reply(429, "slow down", **{"retry-after-ms": "10"}),
        Reply(chunks=[body]),
    ]
    tokens = Tokens()
    assert (
        runner.text(azure(replay, token_provider=tokens, max_retries=1)).response.text
        == (expected["text"])
    )
    assert tokens.asked == 2
    assert [bearer(r) for r in replay.requests] == [
        f"Bearer {tokens.token(1)}",
        f"Bearer {tokens.token(2)}",
    ]


def test_the_token_never_shows_in_an_error(replay: ReplayServer, runner: Runner) -> None:
    tokens = Tokens()
    # A server that echoes what it was sent.
    replay.replies = [
        error_reply(401, f"Bad token: Bearer {tokens.token(1)}"),
        error_reply(401, f"Bad token: Bearer {tokens.token(2)}"),
    ]
    exc = raised_on_start(runner, azure(replay, token_provider=tokens), spout.AuthenticationError)
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None:
        chain.append(current)
        current = current.__cause__ or current.__context__
    shown = " ".join(f"{e} {e!r} {e.args!r} {vars(e)!r}" for e in chain)
    assert "Bad token" in shown
    for n in (1, 2):
        assert tokens.token(n) not in shown


def test_an_async_token_provider(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("azure", "text")
    replay.replies = [error_reply(401, "Unauthorized."), Reply(chunks=[body])]
    tokens = AsyncTokens()
    llm = azure(replay, token_provider=tokens)
    if runner.is_async:
        # Awaited before the request, and again after the 401.
        assert runner.text(llm).response.text == expected["text"]
        assert [bearer(r) for r in replay.requests] == [
            f"Bearer {tokens.token(1)}",
            f"Bearer {tokens.token(2)}",
        ]
        assert tokens.invalidated == [1]
        return
    # Sync code cannot wait on it: refused, nothing sent, and the coroutine closed, not
    # left to warn that it was never awaited.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(spout.ConfigurationError, match="async") as refused:
            runner.text(llm)
        del refused
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert replay.requests == []


@pytest.mark.parametrize("value", [None, "", "   ", 42, b"eyJ0eXAiOiJKV1Qi"])
def test_a_token_that_is_not_a_token(replay: ReplayServer, runner: Runner, value: Any) -> None:
    llm = azure(replay, token_provider=lambda: value)
    with pytest.raises(spout.ConfigurationError, match="token_provider returned"):
        runner.text(llm)
    assert replay.requests == []


def test_a_token_provider_error_is_raised_as_it_is(replay: ReplayServer, runner: Runner) -> None:
    class CredentialUnavailableError(Exception):
        pass

    def broken() -> str:
        raise CredentialUnavailableError("DefaultAzureCredential failed to retrieve a token")

    with pytest.raises(CredentialUnavailableError, match="DefaultAzureCredential"):
        runner.text(azure(replay, token_provider=broken))
    assert replay.requests == []


def test_litellm_gives_the_api_version_and_a_token_provider(
    replay: ReplayServer, runner: Runner
) -> None:
    """completion(model="azure/<deployment>", api_version=..., azure_ad_token_provider=...):
    litellm's names for the version and for Entra ID's tokens configure the provider, and
    neither is sent in the body."""
    body, expected = transcript("azure", "text")
    replay.replies = [Reply(chunks=[body])]
    chunks = runner.call(
        spout.completion,
        spout.acompletion,
        model=f"azure/{DEPLOYMENT}",
        messages=[{"role": "user", "content": "hi"}],
        api_base=replay.url,
        api_version="2024-06-01",
        azure_ad_token_provider=lambda: "entra-WIRE-token",
        stream=True,
    )
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in runner.list(chunks) if chunk.choices
    )
    assert text == expected["text"]
    (request,) = replay.requests
    assert (
        request.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-06-01"
    )
    assert headers_of(request)["authorization"] == "Bearer entra-WIRE-token"
    assert not {"api_version", "azure_ad_token_provider"} & set(request.json())
