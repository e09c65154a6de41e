"""The cloud providers behind the gateway: Bedrock, Vertex AI, Azure, Mistral, xAI and Cohere.

Each upstream is a loopback server replaying the provider's recorded stream
(tests/fixtures/wire/); the gateway re-streams it to the official OpenAI and Anthropic SDKs,
and to a `spout serve` process started as a user starts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest
from gateway_server import run_gateway
from sdk_loopback import http_client
from test_serve_cli import serve

from replay_server import ReplayServer, Reply, transcript
from spout.gateway import GatewayConfig, Route

EVENT_STREAM = {"Content-Type": "application/vnd.amazon.eventstream"}
BEDROCK_MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


@dataclass(frozen=True)
class Upstream:
    """A provider, one of its recorded streams, and what its request must look like."""

    provider: str
    model: str
    case: str  # tests/fixtures/wire/<folder>/<case>
    folder: str
    options: dict[str, Any]
    path: str  # the request path the provider must call (query included)
    auth: tuple[str, str]  # the header that must carry the credentials, and its value
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/event-stream"})


UPSTREAMS = [
    Upstream(
        "bedrock",
        BEDROCK_MODEL,
        "text",
        "bedrock",
        {"api_key": "bedrock-key", "region": "us-east-1"},
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream",
        ("authorization", "Bearer bedrock-key"),
        EVENT_STREAM,
    ),
    Upstream(
        "vertex",
        "gemini-2.5-flash",
        "gemini_text",
        "vertex",
        {"project": "proj", "location": "us-central1", "token_provider": lambda: "ya29.gw"},
        "/v1/projects/proj/locations/us-central1/publishers/google/models/"
        "gemini-2.5-flash:streamGenerateContent?alt=sse",
        ("authorization", "Bearer ya29.gw"),
    ),
    Upstream(
        "vertex",
        "claude-sonnet-4-5",
        "claude_text",
        "vertex",
        {"project": "proj", "location": "us-east5", "token_provider": lambda: "ya29.gw"},
        "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5:streamRawPredict",
        ("authorization", "Bearer ya29.gw"),
    ),
    Upstream(
        "azure",
        "my-deployment",
        "text",
        "azure",
        {"api_key": "azure-key", "api_version": "2024-10-21"},
        "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21",
        ("api-key", "azure-key"),
    ),
    Upstream(
        "mistral",
        "mistral-small-latest",
        "text",
        "mistral",
        {"api_key": "mistral-key"},
        "/v1/chat/completions",
        ("authorization", "Bearer mistral-key"),
    ),
    Upstream(
        "xai",
        "grok-3-mini",
        "reasoning",
        "xai",
        {"api_key": "xai-key"},
        "/v1/chat/completions",
        ("authorization", "Bearer xai-key"),
    ),
    Upstream(
        "cohere",
        "command-a-03-2025",
        "text",
        "cohere",
        {"api_key": "cohere-key"},
        "/v2/chat",
        ("authorization", "Bearer cohere-key"),
    ),
]
IDS = [f"{u.provider}-{u.case}" for u in UPSTREAMS]


@pytest.fixture
def upstream_server() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    try:
        yield server
    finally:
        server.stop()


def gateway_config(upstream: Upstream, server: ReplayServer) -> GatewayConfig:
    base_url = server.url + ("/v1" if upstream.provider in ("mistral", "xai") else "")
    options = {"max_retries": 0, **upstream.options}
    route = Route(
        name="cloud",
        provider=upstream.provider,
        model=upstream.model,
        base_url=base_url,
        options=options,
    )
    return GatewayConfig(routes={"cloud": route}, default="cloud")


def check_upstream_request(upstream: Upstream, server: ReplayServer) -> None:
    (request,) = server.requests
    assert request.path == upstream.path
    header, value = upstream.auth
    headers = {name.lower(): v for name, v in request.headers.items()}
    assert headers[header] == value


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=IDS)
def test_openai_sdk_streams_each_cloud_provider_through_the_gateway(
    upstream: Upstream, upstream_server: ReplayServer
) -> None:
    body, expected = transcript(upstream.folder, upstream.case)
    # Cut in threes: the gateway reads the upstream at awkward boundaries too.
    chunks = [body[i : i + 3] for i in range(0, len(body), 3)]
    upstream_server.replies = [Reply(chunks=chunks, headers=upstream.headers)]
    with run_gateway(gateway_config(upstream, upstream_server)) as gateway:
        client = openai.OpenAI(
            base_url=gateway.url + "/v1", api_key="unused", max_retries=0, http_client=http_client()
        )
        stream = client.chat.completions.create(
            model="cloud",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, usage = "", None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        client.close()
    assert text == expected["text"]
    assert finish == expected["finish_reason"]
    assert usage is not None
    assert usage.prompt_tokens == expected["usage"]["input_tokens"]
    assert usage.completion_tokens == expected["usage"]["output_tokens"]
    check_upstream_request(upstream, upstream_server)


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=IDS)
def test_anthropic_sdk_streams_each_cloud_provider_through_the_gateway(
    upstream: Upstream, upstream_server: ReplayServer
) -> None:
    body, expected = transcript(upstream.folder, upstream.case)
    upstream_server.replies = [Reply(chunks=[body], headers=upstream.headers)]
    with run_gateway(gateway_config(upstream, upstream_server)) as gateway:
        client = anthropic.Anthropic(
            base_url=gateway.url, api_key="unused", max_retries=0, http_client=http_client()
        )
        with client.messages.stream(
            model="cloud", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join(stream.text_stream)
            message = stream.get_final_message()
        client.close()
    assert text == expected["text"]
    assert message.usage.output_tokens == expected["usage"]["output_tokens"]
    check_upstream_request(upstream, upstream_server)


def test_an_exception_frame_inside_bedrocks_stream_reaches_the_client_after_the_text_before_it(
    upstream_server: ReplayServer,
) -> None:
    """A throttlingException frame mid-stream (HTTP 200): the client gets the text so far,
    then an error it can tell from a normal end."""
    body, expected = transcript("bedrock", "throttling_exception")
    assert expected["text"] and expected["error"]
    upstream_server.replies = [Reply(chunks=[body], headers=EVENT_STREAM)]
    upstream = UPSTREAMS[0]
    with run_gateway(gateway_config(upstream, upstream_server)) as gateway:
        client = openai.OpenAI(
            base_url=gateway.url + "/v1", api_key="unused", max_retries=0, http_client=http_client()
        )
        stream = client.chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = ""
        with pytest.raises(openai.APIError) as raised:
            for chunk in stream:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
        client.close()
    assert text == expected["text"]
    assert expected["error"]["message"] in str(raised.value)


def test_spout_serve_m_bedrock_reaches_bedrock_with_the_key_from_the_environment(
    upstream_server: ReplayServer,
) -> None:
    """``spout serve -m bedrock:<model id>`` as a user runs it: the model id keeps its colon,
    the key comes from AWS_BEARER_TOKEN_BEDROCK and the region from AWS_REGION."""
    body, expected = transcript("bedrock", "text")
    upstream_server.replies = [Reply(chunks=[body], headers=EVENT_STREAM)]
    env = {"AWS_BEARER_TOKEN_BEDROCK": "bedrock-env-key", "AWS_REGION": "eu-west-3"}
    args = ["-m", f"bedrock:{BEDROCK_MODEL}", "--base-url", upstream_server.url]
    with serve(*args, env=env) as (_, url):
        client = openai.OpenAI(
            base_url=url + "/v1", api_key="unused", max_retries=0, http_client=http_client()
        )
        assert [m.id for m in client.models.list()] == [BEDROCK_MODEL]
        stream = client.chat.completions.create(
            model=BEDROCK_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        client.close()
    assert text == expected["text"]
    (request,) = upstream_server.requests
    assert request.path == f"/model/{BEDROCK_MODEL.replace(':', '%3A')}/converse-stream"
    assert request.headers["Authorization"] == "Bearer bedrock-env-key"
