"""The Bedrock provider against event-stream transcripts replayed over loopback HTTP, and its
SigV4 signatures against botocore's own client and an independent verifier."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import importlib.util
import json
import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest

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
    usage_counts,
)
from replay_server import CUTS, WIRE, ReplayServer, Reply, transcript
from spout import (
    Finish,
    ModelCapability,
    ReasoningDelta,
    Response,
    Retry,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    create_llm,
)
from spout.providers._base import Call
from spout.providers.bedrock import BedrockProvider

MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
ENCODED = "us.anthropic.claude-3-5-haiku-20241022-v1%3A0"
KEY_ID = "AKIDWIRE0000EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWIREEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEWIRE//session/token=="
FAST = Retry(max_retries=2, initial_delay=0.01, max_delay=0.05, jitter=False)
EVENTSTREAM = {"Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": "req-WIRE"}

CASES = sorted(
    path.name.removesuffix(".expected.json") for path in (WIRE / "bedrock").glob("*.expected.json")
)


def _load_script() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "bedrock_wire.py"
    spec = importlib.util.spec_from_file_location("bedrock_wire", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wire = _load_script()


# -- an AWS environment of the test's own -------------------------------------------------------


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS setting of the machine's reaches a test: its config and credentials files are
    the test's (empty) ones, instance metadata is off, and keys are the test's."""
    for name in list(__import__("os").environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    return tmp_path


def bedrock(server: ReplayServer, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here unless a test asks.
    config.setdefault("max_retries", 0)
    config.setdefault("region", "us-east-1")
    return made(create_llm("bedrock", model=MODEL, base_url=server.url, **config))


def reply(body: bytes | list[bytes], **headers: str) -> Reply:
    return Reply(
        chunks=body if isinstance(body, list) else [body], headers={**EVENTSTREAM, **headers}
    )


def ev(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event": kind, "payload": payload}


def stream_of(
    *texts: str, stop_reason: str | None = "end_turn", end: bool = True, metadata: bool = True
) -> bytes:
    """A ConverseStream body of one text block, framed as Bedrock frames it."""
    frames = [ev("messageStart", {"role": "assistant"})]
    frames += [
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}}) for t in texts
    ]
    if end:
        frames.append(ev("contentBlockStop", {"contentBlockIndex": 0}))
        frames.append(ev("messageStop", {"stopReason": stop_reason}))
        if metadata:
            usage = {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}
            frames.append(ev("metadata", {"usage": usage, "metrics": {"latencyMs": 99}}))
    return bytes(wire.build({"frames": frames}))


def exception(kind: str, message: str = "went wrong") -> bytes:
    return bytes(wire.build({"frames": [{"exception": kind, "payload": {"message": message}}]}))


def headers_of(request: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


# -- cuts for a binary body ---------------------------------------------------------------------


def frames_in(body: bytes) -> list[bytes]:
    """The body's messages, each whole, by the total length in its prelude."""
    out, at = [], 0
    while at < len(body):
        (total,) = struct.unpack("!I", body[at : at + 4])
        out.append(body[at : at + total])
        at += total
    return out


def cut_in_prelude(body: bytes) -> list[bytes]:
    """Each message cut inside its 12-byte prelude: within the total length and within the
    prelude's CRC."""
    chunks = []
    for message in frames_in(body):
        chunks += [message[:3], message[3:10], message[10:]]
    return chunks


def cut_in_crc(body: bytes) -> list[bytes]:
    """Each message cut inside its closing CRC, the rest of which starts the next chunk."""
    chunks, carry = [], b""
    for message in frames_in(body):
        chunks.append(carry + message[:-2])
        carry = message[-2:]
    return [*chunks, carry]


#: The hostile cuts of tests/replay_server.py that keep the bytes as they are, and three of a
#: binary body's own. ("cr_lf" rewrites line ends: for a text body only; a 0x0A byte here is
#: a length or a CRC.)
FRAME_CUTS: dict[str, Cut] = {
    **{name: cut for name, cut in CUTS.items() if name != "cr_lf"},
    "by_frame": frames_in,
    "in_prelude": cut_in_prelude,
    "in_crc": cut_in_crc,
}


@pytest.fixture(params=sorted(FRAME_CUTS))
def frame_cut(request: pytest.FixtureRequest) -> Cut:
    return FRAME_CUTS[request.param]


# -- transcripts --------------------------------------------------------------------------------


def check_response(response: Response, expected: dict[str, Any]) -> None:
    """The rebuilt response, field by field, against a transcript's expected result."""
    assert response.text == expected["text"]
    assert [
        {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_raw": c.arguments_raw}
        for c in response.tool_calls
    ] == expected["tool_calls"]
    if expected["error"] is None:
        assert response.finish_reason == expected["finish_reason"]
        assert response.raw_finish_reason == expected["finish_reason_raw"]
        assert response.usage.extras == expected["usage_raw"]
    else:
        assert response.finish_reason is None  # the error, not a Finish, ended it
    assert usage_counts(response) == expected["usage"]
    assert response.reasoning == expected.get("reasoning", "")
    assert response.reasoning_signature == expected.get("reasoning_signature")
    assert response.model == MODEL and response.provider == "bedrock"


def test_transcripts_are_what_their_sources_build_and_botocore_reads() -> None:
    for case in CASES:
        body, _ = transcript("bedrock", case)
        source = json.loads((WIRE / "bedrock" / f"{case}.frames.json").read_text())
        assert wire.build(source) == body, f"{case}: run python scripts/bedrock_wire.py"
        read = wire.botocore_reads(body)
        assert [json.loads(payload) for _, payload in read] == [
            frame["payload"] for frame in source["frames"]
        ]


@pytest.mark.parametrize("case", CASES)
def test_transcript(replay: ReplayServer, runner: Runner, case: str, frame_cut: Cut) -> None:
    body, expected = transcript("bedrock", case)
    replay.replies = [reply(frame_cut(body))]
    if expected["error"] is None:
        streamed = runner.events(bedrock(replay))
        check_response(streamed.response, expected)
        check_outputs(streamed.response, expected, streamed.events)
        return
    with pytest.raises(spout.ProviderError) as caught:
        runner.events(bedrock(replay))
    exc = caught.value
    assert (exc.error_type, exc.message) == (
        expected["error"]["type"],
        expected["error"]["message"],
    )
    assert exc.provider == "bedrock" and exc.status_code is None  # no status was sent
    assert exc.request_id == "req-WIRE"  # from the 200 response's headers
    assert exc.partial is not None
    check_response(exc.partial, expected)


def test_tool_call_events_in_order(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("bedrock", "tool_use")
    replay.replies = [reply(CUTS["every_byte"](body))]
    events = runner.events(bedrock(replay)).events
    tool_events = [e for e in events if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))]
    assert tool_events[0] == ToolCallStart(0, "tooluse_WIRE0000000000000000001", "get_weather")
    assert isinstance(tool_events[-1], ToolCallEnd) and tool_events[-1].index == 0
    joined = "".join(e.arguments for e in tool_events if isinstance(e, ToolCallDelta))
    assert joined == expected["tool_calls"][0]["arguments_raw"]
    assert events[-1] == Finish("tool_calls", "tool_use")


def test_signature_arrives_whole(replay: ReplayServer) -> None:
    body, expected = transcript("bedrock", "reasoning_signature")
    replay.replies = [reply(CUTS["every_byte"](body))]
    events = list(bedrock(replay).generate_stream("hi").events())
    signatures = [e.signature for e in events if isinstance(e, ReasoningDelta) and e.signature]
    assert signatures == [expected["reasoning_signature"]]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_model_output", "stop"),
    ],
)
def test_stop_reasons(replay: ReplayServer, stop_reason: str, finish_reason: str) -> None:
    replay.replies = [reply(stream_of("ok", stop_reason=stop_reason))]
    response = stream_text(bedrock(replay), "sync").response
    assert (response.finish_reason, response.raw_finish_reason) == (finish_reason, stop_reason)


@pytest.mark.parametrize(
    ("exception_type", "error_class"),
    [
        ("throttlingException", spout.RateLimitError),
        ("serviceUnavailableException", spout.ServiceUnavailableError),
        ("internalServerException", spout.InternalServerError),
        ("modelStreamErrorException", spout.InternalServerError),
        ("validationException", spout.BadRequestError),
        ("someFutureException", spout.ProviderError),
    ],
)
def test_exception_frames_raise_the_matching_error(
    replay: ReplayServer,
    runner: Runner,
    exception_type: str,
    error_class: type[spout.ProviderError],
) -> None:
    body = stream_of("Half", end=False) + exception(exception_type)
    replay.replies = [reply(FRAME_CUTS["in_crc"](body))]
    with pytest.raises(error_class) as caught:
        runner.text(bedrock(replay))
    assert type(caught.value) is error_class
    assert caught.value.error_type == exception_type
    assert caught.value.message == "went wrong"
    assert caught.value.body == {"message": "went wrong"}
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


def test_an_error_message_frame_raises_with_its_code(replay: ReplayServer) -> None:
    # The framing's own error form (botocore reads :error-code and :error-message headers).
    error = wire.frame(
        [
            (":error-code", "InternalFailure"),
            (":error-message", "the stream broke"),
            (":message-type", "error"),
        ],
        b"",
    )
    replay.replies = [reply(stream_of("Half", end=False) + error)]
    with pytest.raises(spout.ProviderError) as caught:
        stream_text(bedrock(replay), "sync")
    assert caught.value.message == "the stream broke"
    assert caught.value.error_type == "internalFailure"
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


@pytest.mark.parametrize("exception_type", ["throttlingException", "serviceUnavailableException"])
def test_a_transient_exception_before_the_first_token_is_retried(
    replay: ReplayServer, runner: Runner, exception_type: str
) -> None:
    refused = wire.build({"frames": [ev("messageStart", {"role": "assistant"})]}) + exception(
        exception_type
    )
    replay.replies = [reply(refused), reply(stream_of("fine"))]
    result = runner.events(bedrock(replay, retry=FAST, max_retries=2))
    assert result.response.text == "fine" and result.response.retries == 1
    assert len(replay.requests) == 2
    # Each attempt is signed anew.
    assert all(headers_of(r)["authorization"].startswith("AWS4-HMAC") for r in replay.requests)


def test_a_model_stream_error_before_the_first_token_is_not_retried(
    replay: ReplayServer,
) -> None:
    replay.replies = [reply(exception("modelStreamErrorException")), reply(stream_of("fine"))]
    with pytest.raises(spout.InternalServerError):
        stream_text(bedrock(replay, retry=FAST, max_retries=2), "sync")
    assert len(replay.requests) == 1


def test_a_throttling_exception_after_text_is_raised(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("bedrock", "throttling_exception")
    replay.replies = [reply(body), reply(stream_of("fine"))]
    with pytest.raises(spout.RateLimitError) as caught:
        runner.text(bedrock(replay, retry=FAST, max_retries=2))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "Once upon a time, in a château"
    assert len(replay.requests) == 1


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        (stream_of("All of it", end=False), "messageStop"),
        (stream_of("All of it", metadata=False), "metadata"),
        (stream_of("All of it")[:-20], "metadata"),  # cut inside the last message
    ],
    ids=["no_message_stop", "no_metadata", "inside_a_message"],
)
def test_a_stream_ending_early_is_an_interruption(
    replay: ReplayServer, runner: Runner, body: bytes, missing: str
) -> None:
    replay.replies = [reply(body)]
    with pytest.raises(spout.StreamInterruptedError, match=f"no {missing}") as caught:
        runner.text(bedrock(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "All of it"


def test_connection_dropped_mid_stream_is_an_interruption(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = [Reply(chunks=[stream_of("Half", end=False)], abort=True, headers=EVENTSTREAM)]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(bedrock(replay))
    assert caught.value.partial is not None and caught.value.partial.text == "Half"


def test_a_corrupt_message_is_a_protocol_error(replay: ReplayServer) -> None:
    body = bytearray(stream_of("Hello", " there"))
    first = frames_in(bytes(body))[0]
    body[len(first) + 20] ^= 0xFF  # a byte of the second message's headers: its CRC fails
    replay.replies = [reply(bytes(body))]
    with pytest.raises(spout.ProtocolError, match="CRC"):
        stream_text(bedrock(replay), "sync")


# -- requests -----------------------------------------------------------------------------------


def test_request_path_headers_and_body(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [reply(stream_of("ok"))]
    llm = bedrock(replay, headers={"X-Title": "spout tests"}, temperature=0.5)
    runner.text(
        llm, "Count from 1 to 5", system_prompt="Be brief.", max_tokens=20, stop=["6"], top_p=0.9
    )
    request = replay.requests[-1]
    # The model id's ":" is sent percent-encoded, by httpx and aiohttp alike, as botocore does.
    assert (request.method, request.path) == ("POST", f"/model/{ENCODED}/converse-stream")
    headers = headers_of(request)
    assert headers["content-type"] == "application/json"
    assert headers["x-title"] == "spout tests"
    assert headers["x-amz-security-token"] == TOKEN
    assert re.fullmatch(r"\d{8}T\d{6}Z", headers["x-amz-date"])
    assert re.fullmatch(
        rf"AWS4-HMAC-SHA256 Credential={KEY_ID}/{headers['x-amz-date'][:8]}/us-east-1/bedrock/"
        r"aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "
        r"Signature=[0-9a-f]{64}",
        headers["authorization"],
    )
    assert request.json() == {
        "messages": [{"role": "user", "content": [{"text": "Count from 1 to 5"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {
            "maxTokens": 20,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["6"],
        },
    }


def test_other_keywords_go_into_the_body(replay: ReplayServer) -> None:
    replay.replies = [reply(stream_of("ok"))]
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    stream_text(
        bedrock(replay),
        "sync",
        "hi",
        stop="END",
        additionalModelRequestFields=thinking,
        inferenceConfig={"maxTokens": 3000},
    )
    sent = replay.requests[-1].json()
    assert sent["additionalModelRequestFields"] == thinking
    assert sent["inferenceConfig"] == {"maxTokens": 3000, "stopSequences": ["END"]}
    assert "system" not in sent and "toolConfig" not in sent


def test_seed_is_refused_before_any_request(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [reply(stream_of("ok"))]
    with pytest.raises(spout.ConfigurationError, match="Bedrock does not take seed"):
        runner.text(bedrock(replay), "hi", seed=7)
    assert replay.requests == []


def test_messages_are_translated(replay: ReplayServer) -> None:
    replay.replies = [reply(stream_of("ok"))]
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Bergen?", "name": "ann"},
        {
            "role": "assistant",
            "content": "",
            "reasoning": "Two cities: two calls.",
            "reasoning_signature": "sig-WIRE==",
            "tool_calls": [
                {
                    "id": "tooluse_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "tooluse_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "tooluse_1", "content": "4 °C"},
        {"role": "tool", "tool_call_id": "tooluse_2", "content": "no such city", "is_error": True},
        {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
        {"role": "assistant", "content": "You're welcome."},
        {"role": "user", "content": "And tomorrow?"},
    ]
    stream_text(bedrock(replay), "sync", None, messages=history, system_prompt="Answer in English.")
    sent = replay.requests[-1].json()
    assert sent["system"] == [{"text": "Answer in English."}, {"text": "Be brief."}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Oslo and Bergen?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "reasoningContent": {
                        "reasoningText": {
                            "text": "Two cities: two calls.",
                            "signature": "sig-WIRE==",
                        }
                    }
                },
                {
                    "toolUse": {
                        "toolUseId": "tooluse_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    }
                },
                {
                    "toolUse": {
                        "toolUseId": "tooluse_2",
                        "name": "get_weather",
                        "input": {"city": "Bergen"},
                    }
                },
            ],
        },
        {
            # Both results in one user turn, and the user's next words with them: Converse
            # asks the roles to alternate.
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "4 °C"}]}},
                {
                    "toolResult": {
                        "toolUseId": "tooluse_2",
                        "content": [{"text": "no such city"}],
                        "status": "error",
                    }
                },
                {"text": "Thanks!"},
            ],
        },
        {"role": "assistant", "content": [{"text": "You're welcome."}]},
        {"role": "user", "content": [{"text": "And tomorrow?"}]},
    ]


def test_a_json_tool_result_goes_as_json(replay: ReplayServer) -> None:
    replay.replies = [reply(stream_of("ok"))]
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "t1", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": {"celsius": 4}},
    ]
    stream_text(bedrock(replay), "sync", None, messages=history)
    sent = replay.requests[-1].json()
    assert sent["messages"][-1] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"celsius": 4}}]}}],
    }


def get_weather(city: str, unit: str = "celsius") -> str:
    """The weather in a city.

    Args:
        city: The city's name.
        unit: celsius or fahrenheit.
    """
    return "4 °C"


SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city's name."},
                    "unit": {
                        "type": "string",
                        "description": "celsius or fahrenheit.",
                        "default": "celsius",
                    },
                },
                "required": ["city"],
            }
        },
    }
}


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        (None, {"tools": [SPEC]}),
        ("auto", {"tools": [SPEC], "toolChoice": {"auto": {}}}),
        ("required", {"tools": [SPEC], "toolChoice": {"any": {}}}),
        ("get_weather", {"tools": [SPEC], "toolChoice": {"tool": {"name": "get_weather"}}}),
        ("none", None),
    ],
)
def test_tool_config(replay: ReplayServer, tool_choice: str | None, expected: Any) -> None:
    replay.replies = [reply(stream_of("ok"))]
    llm = bedrock(replay)
    list(llm.generate_stream("hi", tools=[get_weather], tool_choice=tool_choice))
    sent = replay.requests[-1].json()
    assert sent.get("toolConfig") == expected


def test_tool_choice_none_keeps_the_tools_a_history_of_calls_needs(replay: ReplayServer) -> None:
    # Bedrock refuses toolUse and toolResult blocks without a toolConfig; Converse has no
    # "none", so the tools go with no toolChoice.
    replay.replies = [reply(stream_of("ok"))]
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "t1", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "4 °C"},
    ]
    list(bedrock(replay).generate_stream(messages=history, tools=[get_weather], tool_choice="none"))
    assert replay.requests[-1].json()["toolConfig"] == {"tools": [SPEC]}


def test_a_tool_loop_sends_the_calls_and_results_back(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("bedrock", "tool_use")
    replay.replies = [reply(body), reply(stream_of("It is 4 °C in Oslo."))]
    result = runner.tool_events(bedrock(replay), "Weather in Oslo?", tools=[get_weather])
    assert result.response.text.endswith("It is 4 °C in Oslo.")
    second = replay.requests[-1].json()
    assert second["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"text": "I'll check the weather in Oslo for you."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_WIRE0000000000000000001",
                        "name": "get_weather",
                        "input": {"city": "Oslo", "unit": "celsius"},
                    }
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "tooluse_WIRE0000000000000000001",
                        "content": [{"text": "4 °C"}],
                    }
                }
            ],
        },
    ]


# -- SigV4 -----------------------------------------------------------------------------------------

FROZEN = datetime.datetime(2025, 3, 14, 15, 9, 26)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's signer reads the time through botocore.auth.get_current_datetime: frozen
    there, spout's signature and botocore's client's are made at the same second."""
    import botocore.auth

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FROZEN)


def botocore_sends(operation: str, model: str, body: bytes, endpoint_url: str | None = None) -> Any:
    """The request botocore's own bedrock-runtime client sends for ``operation`` on ``model``,
    with these body bytes (put in before it signs: its serializer spaces JSON otherwise),
    captured before anything leaves the process."""
    import botocore.session
    from botocore.awsrequest import AWSResponse

    session = botocore.session.Session()
    client = session.create_client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=endpoint_url
    )
    captured: dict[str, Any] = {}

    def before_sign(request: Any, **_: Any) -> None:
        request.data = body

    def before_send(request: Any, **_: Any) -> AWSResponse:
        captured["request"] = request
        return AWSResponse(request.url, 500, {}, None)

    client.meta.events.register(f"before-sign.bedrock-runtime.{operation}", before_sign)
    client.meta.events.register("before-send", before_send)
    call: Callable[..., Any] = getattr(
        client, {"ConverseStream": "converse_stream", "Converse": "converse"}[operation]
    )
    with pytest.raises(Exception):  # noqa: B017 - the fake response is an error; only the request matters
        call(modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    client.close()
    return captured["request"]


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("stream", [True, False], ids=["converse-stream", "converse"])
@pytest.mark.parametrize(
    "model",
    [
        MODEL,
        "anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-WIRE-v1:0",
    ],
)
def test_the_signature_is_botocores(model: str, stream: bool) -> None:
    provider = BedrockProvider(model, region="us-east-1")
    request = provider.build_request(Call([{"role": "user", "content": "hi"}]), stream=stream)
    assert request.body is not None
    theirs = botocore_sends("ConverseStream" if stream else "Converse", model, request.body)
    assert request.url == theirs.url
    assert request.url.startswith("https://bedrock-runtime.us-east-1.amazonaws.com/model/")
    ours = {k.lower(): v for k, v in request.headers.items()}
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "Content-Type"):
        value = theirs.headers[name]
        assert ours[name.lower()] == (value.decode() if isinstance(value, bytes) else value)


@pytest.mark.usefixtures("frozen_clock")
def test_the_signature_sent_is_botocores(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [reply(stream_of("ok"))]
    runner.text(bedrock(replay), "hi")
    sent = replay.requests[-1]
    theirs = botocore_sends("ConverseStream", MODEL, sent.body, endpoint_url=replay.url)
    assert f"{replay.url}{sent.path}" == theirs.url
    assert headers_of(sent)["authorization"] == theirs.headers["Authorization"].decode()


def verify_sigv4(request: Any, secret: str) -> None:
    """Check a request's SigV4 signature as AWS does, from what arrived: the canonical request
    (the path URI-encoded once more, the signed headers' values, the body's hash), the string
    to sign, and the key derived from the secret (AWS's "Create a signed AWS API request"),
    with no botocore."""
    headers = headers_of(request)
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        headers["authorization"],
    )
    assert match, headers["authorization"]
    _, day, region, service, signed, signature = match.groups()
    path, _, query = request.path.partition("?")
    canonical = "\n".join(
        [
            request.method,
            quote(path, safe="/~"),  # every service but S3 encodes the path twice
            query,
            *(f"{name}:{' '.join(headers[name].split())}" for name in signed.split(";")),
            "",
            signed,
            hashlib.sha256(request.body).hexdigest(),
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            headers["x-amz-date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    assert signature == expected, "the signature does not match what arrived"
    assert (region, service) == ("us-east-1", "bedrock")


def test_the_server_can_verify_the_signature(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [reply(stream_of("ok")), json_reply(converse_response("text"))]
    llm = bedrock(replay)
    runner.text(llm, "Weather in Tromsø? ☔", system_prompt="Be brief.")
    runner.generate(llm, "hi")
    assert len(replay.requests) == 2
    for request in replay.requests:
        verify_sigv4(request, SECRET)
    # The check itself can fail: a changed body breaks the signature.
    tampered = replay.requests[-1]
    tampered.body = tampered.body.replace(b"hi", b"ho")
    with pytest.raises(AssertionError, match="does not match"):
        verify_sigv4(tampered, SECRET)


# -- credentials and region ------------------------------------------------------------------


def test_a_bedrock_api_key_is_a_bearer_token_and_is_not_signed(
    replay: ReplayServer, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    replay.replies = [reply(stream_of("ok"))]
    runner.text(bedrock(replay, api_key="ABSKWIREbedrockapikey0000"), "hi")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKWIREfromtheenvironment")
    runner.text(bedrock(replay), "hi")
    first, second = (headers_of(r) for r in replay.requests)
    assert first["authorization"] == "Bearer ABSKWIREbedrockapikey0000"
    assert second["authorization"] == "Bearer ABSKWIREfromtheenvironment"
    for headers in (first, second):
        assert "x-amz-date" not in headers and "x-amz-security-token" not in headers
    assert replay.requests[-1].path == f"/model/{ENCODED}/converse-stream"


def test_a_bearer_key_needs_no_botocore(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "botocore", None)  # as if not installed
    replay.replies = [reply(stream_of("ok"))]
    llm = bedrock(replay, api_key="ABSKWIREbedrockapikey0000")
    assert stream_text(llm, "sync").response.text == "ok"


def test_signing_without_botocore_asks_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore", None)
    with pytest.raises(spout.ConfigurationError) as caught:
        create_llm("bedrock", model=MODEL, region="us-east-1")
    assert "pip install 'spout[bedrock]'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_region_chain(monkeypatch: pytest.MonkeyPatch, aws: Path) -> None:
    (aws / "config").write_text(
        "[default]\nregion = eu-west-3\n[profile other]\nregion = ap-south-1\n"
    )

    def provider(**config: Any) -> BedrockProvider:
        provider = made(create_llm("bedrock", model=MODEL, **config)).provider
        assert isinstance(provider, BedrockProvider)
        return provider

    def host() -> str:
        return provider().base_url

    assert host() == "https://bedrock-runtime.eu-west-3.amazonaws.com"  # the profile's
    monkeypatch.setenv("AWS_PROFILE", "other")
    assert host() == "https://bedrock-runtime.ap-south-1.amazonaws.com"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert host() == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert host() == "https://bedrock-runtime.us-west-2.amazonaws.com"
    assert provider(region="ca-central-1").base_url == (
        "https://bedrock-runtime.ca-central-1.amazonaws.com"
    )
    assert provider(region="ca-central-1", profile="other").region == "ca-central-1"


def test_no_region_anywhere_is_a_configuration_error() -> None:
    with pytest.raises(spout.ConfigurationError, match=r"needs a region.*AWS_REGION"):
        create_llm("bedrock", model=MODEL)
    # A signature covers the region: a base_url of one's own does not make it needless.
    with pytest.raises(spout.ConfigurationError, match=r"needs a region"):
        create_llm("bedrock", model=MODEL, base_url="http://127.0.0.1:9")
    # A key sent to a base_url of one's own needs none.
    create_llm("bedrock", model=MODEL, base_url="http://127.0.0.1:9", api_key="ABSKWIRE0000")


def test_the_region_signs_even_with_a_base_url(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    replay.replies = [reply(stream_of("ok"))]
    llm = made(create_llm("bedrock", model=MODEL, base_url=replay.url, max_retries=0))
    stream_text(llm, "sync")
    assert "/eu-north-1/bedrock/aws4_request" in headers_of(replay.requests[-1])["authorization"]


def test_credentials_from_a_shared_credentials_file_profile(
    replay: ReplayServer, runner: Runner, monkeypatch: pytest.MonkeyPatch, aws: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIDWIREDEFAULT\naws_secret_access_key = s3cretDEFAULT\n"
        "[work]\naws_access_key_id = AKIDWIREWORK\naws_secret_access_key = s3cretWORK\n"
    )
    replay.replies = [reply(stream_of("ok"))]
    runner.text(bedrock(replay), "hi")
    runner.text(bedrock(replay, profile="work"), "hi")
    monkeypatch.setenv("AWS_PROFILE", "work")
    runner.text(bedrock(replay), "hi")
    default, named, from_env = (headers_of(r) for r in replay.requests)
    assert "Credential=AKIDWIREDEFAULT/" in default["authorization"]
    assert "Credential=AKIDWIREWORK/" in named["authorization"]
    assert "Credential=AKIDWIREWORK/" in from_env["authorization"]
    assert "x-amz-security-token" not in default  # no session token in that profile
    verify_sigv4(replay.requests[1], "s3cretWORK")


def test_credentials_from_the_environment(replay: ReplayServer) -> None:
    replay.replies = [reply(stream_of("ok"))]
    stream_text(bedrock(replay), "sync")
    headers = headers_of(replay.requests[-1])
    assert f"Credential={KEY_ID}/" in headers["authorization"]
    assert headers["x-amz-security-token"] == TOKEN


def test_credentials_are_looked_for_on_the_first_request(
    replay: ReplayServer, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    llm = bedrock(replay)  # no credentials anywhere, and yet made: the chain runs on first use
    replay.replies = [reply(stream_of("ok"))]
    with pytest.raises(spout.ConfigurationError, match="no AWS credentials"):
        runner.text(llm, "hi")
    assert replay.requests == []
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDWIRELATER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cretLATER")
    assert runner.text(llm, "hi").response.text == "ok"
    assert "Credential=AKIDWIRELATER/" in headers_of(replay.requests[-1])["authorization"]


# -- not streamed, and HTTP errors ------------------------------------------------------------


def converse_response(case: str) -> dict[str, Any]:
    """The Converse API response for the same turn as a transcript."""
    _, expected = transcript("bedrock", case)
    content: list[dict[str, Any]] = []
    if expected.get("reasoning"):
        content.append(
            {
                "reasoningContent": {
                    "reasoningText": {
                        "text": expected["reasoning"],
                        "signature": expected["reasoning_signature"],
                    }
                }
            }
        )
    content.append({"text": expected["text"]})
    for call in expected["tool_calls"]:
        content.append(
            {"toolUse": {"toolUseId": call["id"], "name": call["name"], "input": call["arguments"]}}
        )
    raw = dict(expected["usage_raw"])
    metrics = {"latencyMs": raw.pop("latencyMs")}
    usage = {
        "inputTokens": expected["usage"]["input_tokens"],
        "outputTokens": expected["usage"]["output_tokens"],
        **raw,
    }
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": expected["finish_reason_raw"],
        "usage": usage,
        "metrics": metrics,
    }


def compared(response: Response) -> dict[str, Any]:
    # A tool call is compared by id, name and arguments: the whole response has no raw JSON text.
    return comparable(response, "reasoning_signature") | {
        "tool_calls": [(c.id, c.name, c.arguments) for c in response.tool_calls]
    }


@pytest.mark.parametrize("case", ["text", "tool_use", "reasoning_signature", "max_tokens"])
def test_not_streamed_gives_the_streamed_response(
    replay: ReplayServer, runner: Runner, case: str
) -> None:
    body, _ = transcript("bedrock", case)
    replay.replies = [reply(body), json_reply(converse_response(case))]
    streamed = runner.events(bedrock(replay)).response
    whole = runner.generate(bedrock(replay))
    assert compared(whole) == compared(streamed)
    assert all(call.arguments_raw is None for call in whole.tool_calls)
    sent = replay.requests[-1]
    assert sent.path == f"/model/{ENCODED}/converse"
    verify_sigv4(sent, SECRET)


@pytest.mark.parametrize(
    ("status", "error_type", "error_class"),
    [
        (400, "ValidationException", spout.BadRequestError),
        (403, "AccessDeniedException", spout.PermissionDeniedError),
        (404, "ResourceNotFoundException", spout.NotFoundError),
        (429, "ThrottlingException", spout.RateLimitError),
        (500, "InternalServerException", spout.InternalServerError),
        (503, "ServiceUnavailableException", spout.ServiceUnavailableError),
    ],
)
def test_http_errors_raise_before_streaming(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    error_type: str,
    error_class: type[spout.ProviderError],
) -> None:
    error = {"message": f"status {status} for you"}
    replay.replies = [
        json_reply(
            error,
            status,
            {
                "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                "x-amzn-RequestId": "4f1c-WIRE",
                "Retry-After": "7",
            },
        )
    ]
    exc = raised_on_start(runner, bedrock(replay), error_class)
    assert exc.status_code == status
    assert exc.request_id == "4f1c-WIRE"
    assert exc.body == error
    assert exc.error_type == error_type[0].lower() + error_type[1:]
    assert exc.message == f"status {status} for you"
    if status == 429:
        assert exc.retry_after == 7.0


def test_an_error_named_in_the_body(replay: ReplayServer) -> None:
    error = {"__type": "com.amazon.bedrock#AccessDeniedException", "Message": "no access"}
    replay.replies = [json_reply(error, 403)]
    with pytest.raises(spout.PermissionDeniedError) as caught:
        bedrock(replay).generate("hi")
    assert (caught.value.error_type, caught.value.message) == ("accessDeniedException", "no access")


@pytest.mark.parametrize(
    "message",
    [
        "Input is too long for requested model.",
        "prompt is too long: 208736 tokens > 200000 maximum",  # Claude's, passed through
    ],
)
def test_a_context_window_error_is_recognized(replay: ReplayServer, message: str) -> None:
    replay.replies = [
        json_reply({"message": message}, 400, {"x-amzn-ErrorType": "ValidationException"})
    ]
    with pytest.raises(spout.ContextWindowExceededError):
        bedrock(replay).generate("x")


def test_capabilities() -> None:
    llm = made(create_llm("bedrock", model=MODEL, region="us-east-1"))
    assert llm.get_capabilities() == {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: True,
        ModelCapability.TOOL_STREAMING: True,
        ModelCapability.USAGE_IN_STREAM: True,
        ModelCapability.REASONING: True,
        ModelCapability.SYSTEM_PROMPT: True,
        ModelCapability.VISION: False,
        ModelCapability.PDF_INPUT: True,
        ModelCapability.AUDIO_INPUT: False,
    }


def test_credentials_that_expire_are_renewed_before_a_request(
    replay: ReplayServer, runner: Runner, monkeypatch: pytest.MonkeyPatch, aws: Path
) -> None:
    # A profile's credential_process gives refreshable credentials: these expire in five
    # minutes, inside botocore's window for a mandatory refresh, so each request asks the
    # process again, and is signed with what it gives (a new key each time).
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    counter = aws / "count"
    counter.write_text("0")
    process = aws / "credentials.py"
    process.write_text(
        "import datetime, json, pathlib\n"
        f"counter = pathlib.Path({str(counter)!r})\n"
        "n = int(counter.read_text()) + 1\n"
        "counter.write_text(str(n))\n"
        "expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': f'AKIDWIREPROCESS{n}',\n"
        "    'SecretAccessKey': f's3cret{n}', 'SessionToken': f'token{n}',\n"
        "    'Expiration': expires.isoformat()}))\n"
    )
    (aws / "config").write_text(f"[default]\ncredential_process = {sys.executable} {process}\n")
    replay.replies = [reply(stream_of("ok"))]
    llm = bedrock(replay)
    runner.text(llm, "hi")
    runner.text(llm, "hi")
    numbers = []
    for request in replay.requests:
        headers = headers_of(request)
        number = headers["x-amz-security-token"].removeprefix("token")
        assert f"Credential=AKIDWIREPROCESS{number}/" in headers["authorization"]
        verify_sigv4(request, f"s3cret{number}")
        numbers.append(int(number))
    assert numbers[1] > numbers[0]  # renewed between the two requests


def test_litellm_names_bedrock_and_its_converse_route(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    replay.replies = [json_reply(converse_response("text"))]
    _, expected = transcript("bedrock", "text")
    for model in (f"bedrock/{MODEL}", f"bedrock/converse/{MODEL}"):
        answer = spout.completion(
            model=model, messages=[{"role": "user", "content": "hi"}], api_base=replay.url
        )
        assert answer.choices[0].message.content == expected["text"]
    assert [r.path for r in replay.requests] == [f"/model/{ENCODED}/converse"] * 2


def test_a_model_string_names_bedrock_and_a_model_id_with_a_colon() -> None:
    for given in (f"bedrock:{MODEL}", f"bedrock/{MODEL}"):
        llm = made(create_llm(given, region="us-east-1"))
        assert (llm.provider.name, llm.provider.model) == ("bedrock", MODEL)
    llm = made(create_llm(model=f"bedrock/{MODEL}", region="us-east-1"))
    assert (llm.provider.name, llm.provider.model) == ("bedrock", MODEL)


def test_litellm_names_the_region_aws_region_name(replay: ReplayServer) -> None:
    """completion(model="bedrock/...", aws_region_name=...) signs for that region, as
    litellm's callers give it; it is not sent in the body."""
    replay.replies = [json_reply(converse_response("text"))]
    spout.completion(
        model=f"bedrock/{MODEL}",
        messages=[{"role": "user", "content": "hi"}],
        api_base=replay.url,
        aws_region_name="ap-southeast-2",
    )
    (request,) = replay.requests
    assert "/ap-southeast-2/bedrock/aws4_request" in headers_of(request)["authorization"]
    assert "aws_region_name" not in request.json()


def converse_from_frames(case: str) -> dict[str, Any]:
    """The Converse response a transcript's frames fold into: text blocks (with their
    citations as a citationsContent block), image blocks and other blocks as they started."""
    source = json.loads((WIRE / "bedrock" / f"{case}.frames.json").read_text())
    blocks: dict[int, dict[str, Any]] = {}
    answer: dict[str, Any] = {}
    for frame in source["frames"]:
        payload = {k: v for k, v in frame["payload"].items() if k != "p"}
        index = payload.get("contentBlockIndex", -1)
        block = blocks.setdefault(index, {"text": "", "citations": [], "bytes": "", "start": {}})
        if frame["event"] == "contentBlockStart":
            block["start"] = payload["start"]
        elif frame["event"] == "contentBlockDelta":
            delta = payload["delta"]
            block["text"] += delta.get("text", "")
            block["citations"] += [delta["citation"]] if "citation" in delta else []
            block["bytes"] += delta.get("image", {}).get("source", {}).get("bytes", "")
        elif frame["event"] in ("messageStop", "metadata"):
            answer.update(payload)
    content: list[dict[str, Any]] = []
    for index in sorted(i for i in blocks if i >= 0):
        block = blocks[index]
        if "image" in block["start"]:
            image = {**block["start"]["image"], "source": {"bytes": block["bytes"]}}
            content.append({"image": image})
        elif block["start"]:
            content.append(block["start"])
        elif block["citations"]:
            cited = {"content": [{"text": block["text"]}], "citations": block["citations"]}
            content.append({"citationsContent": cited})
        else:
            content.append({"text": block["text"]})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": answer["stopReason"],
        "usage": answer["usage"],
        "metrics": answer["metrics"],
    }


@pytest.mark.parametrize("case", ["citations", "image_output"])
def test_not_streamed_gives_the_streamed_outputs(
    replay: ReplayServer, runner: Runner, case: str
) -> None:
    body, expected = transcript("bedrock", case)
    replay.replies = [reply(body), json_reply(converse_from_frames(case))]
    streamed = runner.events(bedrock(replay)).response
    whole = runner.generate(bedrock(replay))
    assert comparable(whole, "files", "citations") == comparable(streamed, "files", "citations")
    check_outputs(whole, expected)


def test_citation_spans_its_block_and_unknown_deltas_are_raw(
    replay: ReplayServer, runner: Runner
) -> None:
    body, _ = transcript("bedrock", "citations")
    replay.replies = [reply(body)]
    response = runner.events(bedrock(replay)).response
    (citation,) = response.citations
    assert (
        response.text[citation.start or 0 : citation.end] == "the office opens at 8:00 on weekdays"
    )
    assert citation.raw["location"] == {
        "documentChar": {"documentIndex": 0, "start": 112, "end": 169}
    }
    # Reasoning the vendor redacted is kept to go back; a delta spout does not know, as sent.
    redacted = {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVk"}}
    frames = [
        ev("messageStart", {"role": "assistant"}),
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": redacted}),
        ev("contentBlockStop", {"contentBlockIndex": 0}),
        ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Hi"}}),
        ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"sparkle": {"x": 1}}}),
        ev("contentBlockStop", {"contentBlockIndex": 1}),
        ev("messageStop", {"stopReason": "end_turn"}),
        ev("metadata", {"usage": {"inputTokens": 5, "outputTokens": 7}, "metrics": {}}),
    ]
    replay.replies = [reply(bytes(wire.build({"frames": frames})))]
    response = runner.events(bedrock(replay)).response
    assert [(e.type, e.data) for e in response.raw_events] == [("sparkle", {"x": 1})]
    assert response.reasoning_blocks == ({"redacted": "ZW5jcnlwdGVk"},)
    assert (response.text, response.finish_reason) == ("Hi", "stop")


def test_reasoning_and_redacted_content_go_back_in_order_before_the_call(
    replay: ReplayServer, runner: Runner
) -> None:
    def delta(index: int, value: dict[str, Any]) -> dict[str, Any]:
        return ev("contentBlockDelta", {"contentBlockIndex": index, "delta": value})

    def stop(index: int) -> dict[str, Any]:
        return ev("contentBlockStop", {"contentBlockIndex": index})

    call = {"toolUse": {"toolUseId": "tooluse_WIRE1", "name": "get_weather"}}
    frames = [
        ev("messageStart", {"role": "assistant"}),
        delta(0, {"reasoningContent": {"text": "Weather: use the tool."}}),
        delta(0, {"reasoningContent": {"signature": "sig-WIRE-1=="}}),
        stop(0),
        delta(1, {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVkV0lSRQ=="}}),
        stop(1),
        delta(2, {"reasoningContent": {"text": "Oslo."}}),
        delta(2, {"reasoningContent": {"signature": "sig-WIRE-2=="}}),
        stop(2),
        ev("contentBlockStart", {"contentBlockIndex": 3, "start": call}),
        delta(3, {"toolUse": {"input": '{"city": "Oslo"}'}}),
        stop(3),
        ev("messageStop", {"stopReason": "tool_use"}),
        ev("metadata", {"usage": {"inputTokens": 20, "outputTokens": 30}, "metrics": {}}),
    ]
    replay.replies = [reply(bytes(wire.build({"frames": frames}))), reply(stream_of("Mild."))]
    runner.tool_events(bedrock(replay), "Weather in Oslo?", tools=[spout.tool(get_weather)])
    second = replay.requests[1].json()
    assert second["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "reasoningContent": {
                        "reasoningText": {
                            "text": "Weather: use the tool.",
                            "signature": "sig-WIRE-1==",
                        }
                    }
                },
                {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVkV0lSRQ=="}},
                {
                    "reasoningContent": {
                        "reasoningText": {"text": "Oslo.", "signature": "sig-WIRE-2=="}
                    }
                },
                {
                    "toolUse": {
                        "toolUseId": "tooluse_WIRE1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    }
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "tooluse_WIRE1",
                        "content": [{"text": "4 °C"}],
                    }
                }
            ],
        },
    ]


# -- prompt-cache markers ------------------------------------------------------------------------

EPHEMERAL = {"type": "ephemeral"}
POINT = {"cachePoint": {"type": "default"}}


def test_cache_control_becomes_a_cache_point_after_what_it_marks(
    replay: ReplayServer, runner: Runner
) -> None:
    # Anthropic's cache_control on a system block, a message (litellm's place for it), a
    # user block, a file part and a Tool: a Converse cachePoint right after each, where the
    # service model's SystemContentBlock, ContentBlock and Tool unions take one.
    replay.replies = [reply(stream_of("ok"))]
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
    messages: list[dict[str, Any]] = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "<the contract>", "cache_control": EPHEMERAL}],
        },
        {"role": "user", "content": "Summarise clause 1.", "cache_control": EPHEMERAL},
        {"role": "assistant", "content": "Clause 1 names the parties."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": png}, "cache_control": EPHEMERAL},
                {"type": "text", "text": "And this?", "cache_control": {**EPHEMERAL, "ttl": "1h"}},
            ],
        },
    ]
    weather = spout.Tool.from_function(get_weather)
    tools = [dataclasses.replace(weather, cache_control=EPHEMERAL)]
    sonnet = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # one that takes images
    llm = made(create_llm("bedrock", model=sonnet, base_url=replay.url, region="us-east-1"))
    runner.text(llm, None, messages=messages, tools=tools)
    sent = replay.requests[-1].json()
    assert sent["system"] == [{"text": "<the contract>"}, POINT]
    assert sent["messages"] == [
        {"role": "user", "content": [{"text": "Summarise clause 1."}, POINT]},
        {"role": "assistant", "content": [{"text": "Clause 1 names the parties."}]},
        {
            "role": "user",
            "content": [
                {"image": {"format": "png", "source": {"bytes": png.split(",")[1]}}},
                POINT,
                {"text": "And this?"},
                {"cachePoint": {"type": "default", "ttl": "1h"}},
            ],
        },
    ]
    assert sent["toolConfig"] == {"tools": [SPEC, POINT]}


def test_a_tool_without_cache_control_has_no_cache_point(replay: ReplayServer) -> None:
    replay.replies = [reply(stream_of("ok"))]
    list(bedrock(replay).generate_stream("hi", tools=[get_weather]))
    assert replay.requests[-1].json()["toolConfig"] == {"tools": [SPEC]}
