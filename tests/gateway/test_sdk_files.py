"""Files and citations through the whole gateway, with the official SDKs as its clients.

In: an attachment in each client's own shape reaches the upstream in the upstream's shape
(the request the loopback upstream received), or fails as a 400 in the client's protocol.
Out: recorded upstream streams (tests/fixtures/wire/) holding a generated image, citations
and content spout does not recognise, re-streamed by the gateway and read back by the SDKs'
own decoders and accumulators; and spout's own wire carrying the image's bytes through the
hub, in memory and in Redis.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from gateway_server import RunningGateway, run_gateway
from redis_server import run_redis

from fault_server import FaultServer, Reply, anthropic_stream, openai_chat_stream
from replay_server import transcript
from spout.gateway import GatewayConfig, Route
from spout.gateway._config import Limits
from spout.providers._base import Call
from spout.providers.anthropic import AnthropicProvider

# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PNG_B64 = base64.b64encode(PNG).decode()
PNG_URL = f"data:image/png;base64,{PNG_B64}"
ASK = "What is in this picture?"
MAX = {"max_tokens": 64}


def recorded(folder: str, case: str) -> tuple[Reply, dict[str, Any]]:
    body, expected = transcript(folder, case)
    events = [event + b"\n\n" for event in body.split(b"\n\n") if event.strip()]
    return Reply(headers={"Content-Type": "text/event-stream"}, body=events), expected


def routes(url: str) -> dict[str, Route]:
    options = {"api_key": "sk-test", "max_retries": 0}
    return {
        "gpt": Route(
            name="gpt", provider="openai", model="gpt-4o", base_url=f"{url}/v1", options=options
        ),
        "gpt-responses": Route(
            name="gpt-responses",
            provider="openai",
            model="gpt-4.1",
            base_url=f"{url}/v1",
            options={**options, "api": "responses"},
        ),
        "claude": Route(
            name="claude",
            provider="anthropic",
            model="claude-sonnet-4-5",
            base_url=url,
            options=options,
        ),
        "gemini": Route(
            name="gemini",
            provider="gemini",
            model="gemini-2.5-flash-image",
            base_url=url,
            options=options,
        ),
    }


@pytest.fixture
def gateway(faults: FaultServer) -> Iterator[RunningGateway]:
    config = GatewayConfig(
        routes=routes(faults.url), default="gpt", limits=Limits(max_body_bytes=64 * 1024)
    )
    with run_gateway(config) as running:
        yield running


def openai_client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-client", max_retries=0)


def anthropic_client(gateway: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="sk-client", max_retries=0)


def chat_final(gateway: RunningGateway, **params: Any) -> Any:
    """The message of ``chat.completions.stream()``'s final completion."""
    with openai_client(gateway) as client, client.chat.completions.stream(**params) as stream:
        return stream.get_final_completion().choices[0].message


def responses_final(gateway: RunningGateway, **params: Any) -> Any:
    """``responses.stream()``'s final response."""
    with openai_client(gateway) as client, client.responses.stream(**params) as stream:
        return stream.get_final_response()


def messages_final(gateway: RunningGateway, **params: Any) -> tuple[list[Any], Any]:
    """``messages.stream()``'s events and final message."""
    with anthropic_client(gateway) as client, client.messages.stream(**MAX, **params) as stream:
        events = list(stream)
        return events, stream.get_final_message()


def upstream_body(faults: FaultServer) -> dict[str, Any]:
    body = faults.requests[-1].json()
    assert isinstance(body, dict)
    return body


# --- in: the client's attachment in the upstream's shape ------------------------------------


def test_an_openai_image_part_reaches_an_anthropic_upstream(
    faults: FaultServer, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Call] = []
    build = AnthropicProvider.build_request

    def spy(self: AnthropicProvider, call: Call, *, stream: bool) -> Any:
        calls.append(call)
        return build(self, call, stream=stream)

    monkeypatch.setattr(AnthropicProvider, "build_request", spy)
    faults.script(anthropic_stream(["A red ", "dot."]).reply())
    parts: list[Any] = [
        {"type": "text", "text": ASK},
        {"type": "image_url", "image_url": {"url": PNG_URL}},
    ]
    with openai_client(gateway) as client:
        chunks = client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": parts}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "A red dot."
    # The Anthropic provider gets spout's portable part, whatever the client spoke...
    (call,) = calls
    assert call.messages[-1] == {"role": "user", "content": parts}
    # ... and Anthropic gets its own image block.
    assert upstream_body(faults)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": ASK},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                },
            ],
        }
    ]


def test_an_anthropic_image_block_reaches_an_openai_upstream_as_image_url(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    faults.script(openai_chat_stream(["A red ", "dot."]).reply())
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
    }
    user = {"role": "user", "content": [{"type": "text", "text": ASK}, image]}
    _, message = messages_final(gateway, model="gpt", messages=[user])
    assert message.content[0].text == "A red dot."
    sent = upstream_body(faults)["messages"]
    assert sent == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": ASK},
                {"type": "image_url", "image_url": {"url": PNG_URL}},
            ],
        }
    ]


def test_an_anthropic_image_block_reaches_an_anthropic_upstream_as_it_was(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    # Through spout's portable form and back into Anthropic's shape.
    faults.script(anthropic_stream(["A red dot."]).reply())
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
    }
    user = {"role": "user", "content": [{"type": "text", "text": ASK}, image]}
    messages_final(gateway, model="claude", messages=[user])
    assert upstream_body(faults)["messages"] == [user]


def test_a_responses_input_image_reaches_a_chat_upstream_as_image_url(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    faults.script(openai_chat_stream(["A red dot."]).reply())
    content: list[Any] = [
        {"type": "input_text", "text": ASK},
        {"type": "input_image", "image_url": PNG_URL, "detail": "low"},
    ]
    response = responses_final(gateway, model="gpt", input=[{"role": "user", "content": content}])
    assert response.output_text == "A red dot."
    (user,) = upstream_body(faults)["messages"]
    assert user["content"] == [
        {"type": "text", "text": ASK},
        {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
    ]


def test_a_responses_input_image_reaches_a_responses_upstream_as_input_image(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    reply, _ = recorded("openai_responses", "text")
    faults.script(reply)
    content: list[Any] = [
        {"type": "input_text", "text": ASK},
        {"type": "input_image", "image_url": PNG_URL, "detail": "low"},
    ]
    responses_final(gateway, model="gpt-responses", input=[{"role": "user", "content": content}])
    (user,) = upstream_body(faults)["input"]
    assert user["content"] == [
        {"type": "input_text", "text": ASK},
        {"type": "input_image", "image_url": PNG_URL, "detail": "low"},
    ]


# A malformed attachment: a 400 in the client's own protocol, nothing sent upstream.
def test_a_bad_attachment_is_a_400_in_each_protocol(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    bad = "data:image/png;base64,not*base64"
    with openai_client(gateway) as client:
        with pytest.raises(openai.BadRequestError) as chat:
            client.chat.completions.create(
                model="gpt",
                messages=[
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": bad}}]}
                ],
            )
        with pytest.raises(openai.BadRequestError) as responses:
            client.responses.create(
                model="gpt",
                input=[
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": bad, "detail": "auto"}],
                    }
                ],
            )
    with anthropic_client(gateway) as client, pytest.raises(anthropic.BadRequestError) as messages:
        client.messages.create(
            model="gpt",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "*"},
                        }
                    ],
                }
            ],
            **MAX,
        )
    for caught, where in ((chat, "messages[0]"), (responses, "input[0]")):
        error = caught.value.body
        assert isinstance(error, dict) and error["type"] == "invalid_request_error"
        assert error["message"] == f"{where}.content[0]: the data: URL is not valid base64"
    body = messages.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("messages[0].content[0]: ")
    assert faults.requests == []


def test_an_image_over_the_body_limit_is_refused_in_the_clients_protocol(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    # The limit counts the request's bytes, base64 and all (64 KiB here).
    big = "data:image/png;base64," + base64.b64encode(PNG + bytes(64 * 1024)).decode()
    with openai_client(gateway) as client, pytest.raises(openai.APIStatusError) as chat:
        client.chat.completions.create(
            model="gpt",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": big}}]}
            ],
        )
    assert chat.value.status_code == 413
    with anthropic_client(gateway) as client, pytest.raises(anthropic.APIStatusError) as messages:
        client.messages.create(
            model="gpt",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": big.partition(",")[2],
                            },
                        }
                    ],
                }
            ],
            **MAX,
        )
    assert messages.value.status_code == 413
    body = messages.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "request_too_large"
    assert faults.requests == []


def test_an_image_to_an_upstream_without_vision_is_a_400_naming_both(
    faults: FaultServer, tmp_path: Path
) -> None:
    # DeepSeek's chat API takes text only (its profile declares no VISION).
    plain = Route(
        name="plain",
        provider="deepseek",
        model="deepseek-chat",
        base_url=faults.url,
        options={"api_key": "sk-test", "max_retries": 0},
    )
    config = GatewayConfig(routes={"plain": plain}, default="plain")
    with (
        run_gateway(config) as gateway,
        openai_client(gateway) as client,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client.chat.completions.create(
            model="plain",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": ASK},
                        {"type": "image_url", "image_url": {"url": PNG_URL}},
                    ],
                }
            ],
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["message"].startswith("provider 'deepseek' cannot take file")
    assert faults.requests == []


# --- out: a recorded image, citations and raw content, read by each SDK -----------------------


def image_bytes(expected: dict[str, Any]) -> tuple[str, str]:
    (file,) = expected["files"]
    return file["media_type"], file["sha256"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_gemini_image_answer_through_each_sdk(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    reply, expected = recorded("gemini", "image_output")
    media_type, digest = image_bytes(expected)
    draw = [{"role": "user", "content": "Draw a small red square."}]

    faults.script(reply)
    message = chat_final(gateway, model="gemini", messages=draw)
    assert message.content == expected["text"]
    (image,) = message.model_extra["images"]
    head, _, data = image["image_url"]["url"].partition(",")
    assert head == f"data:{media_type};base64" and sha(base64.b64decode(data)) == digest

    faults.script(reply)
    response = responses_final(gateway, model="gemini", input=draw)
    assert response.output_text == expected["text"]
    generated = [item for item in response.output if item.type == "image_generation_call"]
    (item,) = generated
    assert sha(base64.b64decode(item.result)) == digest and item.output_format == "png"

    faults.script(reply)
    events, final = messages_final(gateway, model="gemini", messages=draw)
    assert "".join(b.text for b in final.content if b.type == "text") == expected["text"]
    (block,) = [e.model_extra["content_block"] for e in events if e.type == "spout_file"]
    assert block["type"] == "image" and block["source"]["media_type"] == media_type
    assert sha(base64.b64decode(block["source"]["data"])) == digest


def test_an_openai_audio_answer_through_the_chat_sdk(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    reply, expected = recorded("openai_chat", "audio")
    media_type, digest = image_bytes(expected)
    faults.script(reply)
    asked = expected["request"]
    message = chat_final(
        gateway,
        model="gpt",
        messages=[{"role": "user", "content": "Say hello."}],
        modalities=asked["modalities"],
        audio=asked["audio"],
    )
    # The transcript is the answer's text; the audio whole, as OpenAI's own message has it.
    assert message.content == expected["text"] and media_type == "audio/pcm"
    assert sha(base64.b64decode(message.audio.data)) == digest
    sent = upstream_body(faults)
    assert (sent["modalities"], sent["audio"]) == (asked["modalities"], asked["audio"])


def test_gemini_grounding_citations_through_each_sdk(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    reply, expected = recorded("gemini", "grounding")
    cited = [(c["url"], c["title"]) for c in expected["citations"]]
    ask = [{"role": "user", "content": "Who won Euro 2024?"}]

    faults.script(reply)
    message = chat_final(gateway, model="gemini", messages=ask)
    assert message.content == expected["text"]
    assert [(a.url_citation.url, a.url_citation.title) for a in message.annotations] == cited
    # Content spout did not recognise (Google's search entry point), kept and named.
    assert [r["type"] for r in message.model_extra["spout_raw_events"]] == expected["raw_events"]

    faults.script(reply)
    response = responses_final(gateway, model="gemini", input=ask)
    (item,) = [item for item in response.output if item.type == "message"]
    annotations = item.content[0].annotations
    assert [(a.type, a.url, a.title) for a in annotations] == [
        ("url_citation", url, title) for url, title in cited
    ]
    assert [(a.start_index, a.end_index) for a in annotations[:3]] == [
        (c["start"], c["end"]) for c in expected["citations"][:3]
    ]

    faults.script(reply)
    _, final = messages_final(gateway, model="gemini", messages=ask)
    citations = [
        c for block in final.content if block.type == "text" for c in block.citations or []
    ]
    assert [(c.type, c.url, c.title) for c in citations] == [
        ("web_search_result_location", url, title) for url, title in cited
    ]


def test_anthropic_document_citations_through_each_sdk(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    reply, expected = recorded("anthropic", "citations")
    titles = [c["title"] for c in expected["citations"]]
    ask = [{"role": "user", "content": "Tell me about emperor penguins."}]

    # An Anthropic client gets Anthropic's own citations back as they came.
    faults.script(reply)
    events, final = messages_final(gateway, model="claude", messages=ask)
    kinds = [e.citation.type for e in events if e.type == "citation"]
    citations = [
        c for block in final.content if block.type == "text" for c in block.citations or []
    ]
    assert [c.cited_text for c in citations] == [c["text"] for c in expected["citations"]]
    assert kinds == [c.type for c in citations]
    assert {"char_location", "page_location"} <= set(kinds)

    # OpenAI's APIs have no citation of a document: spout's annotation in chat, file_citation
    # in the Responses API.
    faults.script(reply)
    annotations = chat_final(gateway, model="claude", messages=ask).annotations
    assert [a.type for a in annotations] == ["spout_citation"] * len(titles)
    assert [a.model_extra["spout_citation"]["title"] for a in annotations] == titles

    faults.script(reply)
    (item,) = responses_final(gateway, model="claude", input=ask).output
    found = item.content[0].annotations
    assert [(a.type, a.filename) for a in found] == [("file_citation", t) for t in titles]
    assert [a.model_extra["cited_text"] for a in found] == [
        c["text"] for c in expected["citations"]
    ]


def test_anthropic_web_search_blocks_come_as_raw_events_in_each_protocol(
    faults: FaultServer, gateway: RunningGateway
) -> None:
    reply, expected = recorded("anthropic", "web_search")
    ask = [{"role": "user", "content": "How tall are emperor penguins?"}]

    faults.script(reply)
    with openai_client(gateway) as client:
        chunks = list(client.chat.completions.create(model="claude", messages=ask, stream=True))
    raws = [
        entry["type"]
        for chunk in chunks
        if chunk.choices
        for entry in (chunk.choices[0].delta.model_extra or {}).get("spout_raw_events") or []
    ]
    assert raws == expected["raw_events"]

    faults.script(reply)
    response = responses_final(gateway, model="claude", input=ask)
    assert [r["type"] for r in response.model_extra["spout_raw_events"]] == expected["raw_events"]

    faults.script(reply)
    events, final = messages_final(gateway, model="claude", messages=ask)
    raw = [e.model_extra["raw"] for e in events if e.type == "spout_raw_event"]
    assert [r["type"] for r in raw] == expected["raw_events"]
    assert raw[1]["data"]["type"] == "web_search_tool_result"  # Anthropic's own block
    assert final.stop_reason == "end_turn"


# --- spout's own wire, through the hub --------------------------------------------------------


@pytest.mark.parametrize("hub", ["memory", "redis"])
def test_the_spout_wire_carries_the_image_through_the_hub(
    faults: FaultServer, tmp_path: Path, hub: str
) -> None:
    reply, expected = recorded("gemini", "image_output")
    _, digest = image_bytes(expected)
    faults.script(reply)

    def run(settings: dict[str, Any]) -> list[dict[str, Any]]:
        config = GatewayConfig(routes=routes(faults.url), default="gemini", **settings)
        with run_gateway(config) as gateway:
            answer = httpx.post(
                f"{gateway.url}/v1/spout/stream",
                json={"model": "gemini", "messages": [{"role": "user", "content": "Draw"}]},
                timeout=10,
            )
            stream_id = answer.headers["x-spout-stream-id"]
            # A second reader, from the hub's log: the same bytes.
            again = httpx.get(f"{gateway.url}/v1/streams/{stream_id}", timeout=10)
        assert again.content == answer.content
        return [
            json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")
        ]

    if hub == "redis":
        with run_redis(tmp_path) as url:
            events = run({"redis_url": url})
    else:
        events = run({})
    kinds = [event["type"] for event in events]
    assert kinds.index("file_start") < kinds.index("file_end")
    (end,) = [event for event in events if event["type"] == "file_end"]
    assert sha(base64.b64decode(end["file"]["data"])) == digest
    (done,) = [event for event in events if event["type"] == "done"]
    assert [sha(base64.b64decode(f["data"])) for f in done["response"]["files"]] == [digest]
