"""The Mistral and xAI profiles against recorded transcripts replayed over loopback HTTP."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

import spout
from helpers import Cut, Runner, comparable, json_reply, made, raised_on_start, usage_counts
from replay_server import CUTS, WIRE, ReplayServer, Reply, transcript
from spout import (
    ModelCapability,
    ReasoningDelta,
    Response,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    create_llm,
)
from spout.providers.profiles import mistral_tool_ids

MISTRAL_CASES = sorted(
    p.name.removesuffix(".expected.json") for p in (WIRE / "mistral").glob("*.expected.json")
)
NINE = re.compile(r"[a-zA-Z0-9]{9}")


def mistral(server: ReplayServer, model: str = "mistral-small-latest", **config: Any) -> spout.LLM:
    # What one response becomes: no retries here (they are tested in tests/test_retries.py).
    config.setdefault("max_retries", 0)
    config.setdefault("api_key", "mistral-test-key")
    return made(create_llm("mistral", model=model, base_url=f"{server.url}/v1", **config))


def xai(server: ReplayServer, model: str = "grok-3-mini", **config: Any) -> spout.LLM:
    config.setdefault("max_retries", 0)
    config.setdefault("api_key", "xai-test-key")
    return made(create_llm("xai", model=model, base_url=f"{server.url}/v1", **config))


def headers_of(request: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


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
    assert response.reasoning == expected.get("reasoning", "")
    assert response.id is not None and "WIRE" in response.id


# -- Mistral ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", MISTRAL_CASES)
def test_mistral_transcript(replay: ReplayServer, runner: Runner, case: str, cut: Cut) -> None:
    body, expected = transcript("mistral", case)
    replay.replies = [Reply(chunks=cut(body))]
    response = runner.events(mistral(replay)).response
    check_response(response, expected)
    assert response.usage.extras["total_tokens"] == expected["usage_raw"]["total_tokens"]
    assert response.model is not None and response.model.startswith(("mistral-", "magistral-"))


def test_mistral_tool_call_arrives_whole_with_its_id(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("mistral", "tool_call")
    replay.replies = [Reply(chunks=CUTS["mid_line"](body))]
    events = runner.events(mistral(replay)).events
    tool_events = [e for e in events if isinstance(e, (ToolCallStart, ToolCallDelta, ToolCallEnd))]
    assert [type(e).__name__ for e in tool_events] == [
        "ToolCallStart",
        "ToolCallDelta",
        "ToolCallEnd",
    ]
    start = tool_events[0]
    assert isinstance(start, ToolCallStart) and start.id == "WIREa1b2c" and NINE.fullmatch(start.id)


def test_mistral_thinking_parts_come_in_order(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("mistral", "thinking_parts")
    replay.replies = [Reply(chunks=[body])]
    events = runner.events(mistral(replay, "magistral-medium-2509")).events
    kinds = [type(e).__name__ for e in events if isinstance(e, (TextDelta, ReasoningDelta))]
    # every piece of thinking before the first piece of the answer, none lost or merged away
    assert kinds == ["ReasoningDelta"] * 6 + ["TextDelta"] * 5


def test_mistral_request(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("mistral", "text")
    replay.replies = [Reply(chunks=[body])]
    llm = mistral(replay, headers={"X-Title": "spout tests"})
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
    runner.text(
        llm,
        "Hi",
        system_prompt="Be brief.",
        max_tokens=20,
        temperature=0.3,
        top_p=0.9,
        stop=["\n\n"],
        seed=7,
        tools=tools,
        tool_choice="required",
    )
    request = replay.requests[-1]
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    headers = headers_of(request)
    assert headers["authorization"] == "Bearer mistral-test-key"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "text/event-stream"
    assert headers["x-title"] == "spout tests"
    # Mistral's names: random_seed, tool_choice "any"; no stream_options, which it refuses.
    assert request.json() == {
        "model": "mistral-small-latest",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "max_tokens": 20,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "random_seed": 7,
        "tools": tools,
        "tool_choice": "any",
        "stream": True,
    }


HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Oslo and Bergen?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_WIRE_oslo",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            },
            {
                "id": "toolu_WIRE_bergen",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'},
            },
            {
                "id": "WIREkept1",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_WIRE_bergen", "content": "7 °C"},
    {"role": "tool", "tool_call_id": "call_WIRE_oslo", "content": "4 °C"},
    {"role": "tool", "tool_call_id": "WIREkept1", "content": "12:00"},
    {"role": "assistant", "content": "Oslo 4 °C, Bergen 7 °C."},
    {"role": "user", "content": "And tomorrow?"},
]


def test_mistral_rewrites_foreign_tool_call_ids(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("mistral", "text")
    replay.replies = [Reply(chunks=[body])]
    history = copy.deepcopy(HISTORY)
    runner.text(mistral(replay), None, messages=history)
    sent = replay.requests[-1].json()["messages"]
    calls = [c["id"] for c in sent[1]["tool_calls"]]
    results = [m["tool_call_id"] for m in sent[2:5]]
    # Every id is one Mistral takes; an id that already was one is kept.
    assert all(NINE.fullmatch(i) for i in calls + results)
    assert calls[2] == "WIREkept1"
    # Each result answers the call it answered before (results came in another order).
    assert results == [calls[1], calls[0], calls[2]]
    assert len(set(calls)) == 3
    # The rest of the conversation is sent as it was.
    assert [m["content"] for m in sent[2:]] == [m["content"] for m in HISTORY[2:]]
    # The caller's messages keep their ids.
    assert history == HISTORY


def test_mistral_tool_ids_are_the_same_in_every_request(replay: ReplayServer) -> None:
    # The same history gives the same body (a provider's prompt cache keys on it).
    first = mistral_tool_ids(copy.deepcopy(HISTORY))
    again = mistral_tool_ids(copy.deepcopy(HISTORY))
    assert first == again and first != HISTORY
    # A history whose ids all fit is sent as it is, not copied.
    fitting = [{"role": "tool", "tool_call_id": "abcDEF123", "content": "1"}]
    assert mistral_tool_ids(fitting) is fitting


def test_mistral_tool_ids_never_collide_with_kept_ones() -> None:
    # A foreign id whose derived id is already taken by a kept one gets another.
    from spout.providers.profiles import MISTRAL_TOOL_IDS

    taken = MISTRAL_TOOL_IDS.derive("call_WIRE_1", 0)
    messages: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": taken, "function": {"name": "f", "arguments": "{}"}},
                {"id": "call_WIRE_1", "function": {"name": "f", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_WIRE_1", "content": "x"},
        {"role": "tool", "tool_call_id": taken, "content": "y"},
    ]
    sent = mistral_tool_ids(messages)
    ids = [c["id"] for c in sent[0]["tool_calls"]]
    assert ids[0] == taken and ids[1] != taken and NINE.fullmatch(ids[1])
    assert [m["tool_call_id"] for m in sent[1:]] == [ids[1], taken]


def test_mistral_tool_loop_answers_with_the_calls_own_id(
    replay: ReplayServer, runner: Runner
) -> None:
    calls, _ = transcript("mistral", "tool_call")
    answer, _ = transcript("mistral", "text")
    replay.replies = [Reply(chunks=[calls]), Reply(chunks=[answer])]

    def get_weather(city: str, unit: str = "celsius") -> str:
        """The weather in a city."""
        return f"18 {unit} in {city}"

    result = runner.tool_events(mistral(replay), "Weather in Paris?", tools=[get_weather])
    assert result.response.text == "La tour Eiffel mesure environ 330 mètres."
    second = replay.requests[-1].json()["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "WIREa1b2c"
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": "WIREa1b2c",
        "content": "18 celsius in Paris",
    }


def whole_mistral(case: str) -> dict[str, Any]:
    """The chat.completion for the same turn as a transcript: its chunks merged."""
    body, _ = transcript("mistral", case)
    chunks = [
        json.loads(line[6:]) for line in body.decode().split("\n") if line.startswith("data: {")
    ]
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if isinstance(c["choices"][0]["delta"].get("content"), str)
    )
    tool_calls = [t for c in chunks for t in c["choices"][0]["delta"].get("tool_calls") or ()]
    last = chunks[-1]
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [{k: v for k, v in t.items() if k != "index"} for t in tool_calls]
    return {
        "id": last["id"],
        "object": "chat.completion",
        "created": last["created"],
        "model": last["model"],
        "choices": [
            {"index": 0, "message": message, "finish_reason": last["choices"][0]["finish_reason"]}
        ],
        "usage": last["usage"],
    }


@pytest.mark.parametrize("case", ["text", "tool_call"])
def test_mistral_not_streamed_gives_the_streamed_response(
    replay: ReplayServer, runner: Runner, case: str
) -> None:
    body, _ = transcript("mistral", case)
    replay.replies = [Reply(chunks=[body]), json_reply(whole_mistral(case))]
    streamed = runner.events(mistral(replay)).response
    whole = runner.generate(mistral(replay))
    assert comparable(whole) == comparable(streamed)
    assert "stream" not in replay.requests[-1].json()


def test_mistral_reasoning_not_streamed(replay: ReplayServer, runner: Runner) -> None:
    completion = {
        "id": "WIRE-mistral-whole",
        "object": "chat.completion",
        "model": "magistral-small-2509",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": [{"type": "text", "text": "Easy."}]},
                        {"type": "text", "text": "4"},
                    ],
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }
    replay.replies = [json_reply(completion)]
    response = runner.generate(mistral(replay, "magistral-small-2509"))
    assert (response.reasoning, response.text) == ("Easy.", "4")


@pytest.mark.parametrize(
    ("status", "body", "error_class", "message"),
    [
        # https://docs.mistral.ai/api: errors are not wrapped in "error".
        (
            401,
            {"message": "Unauthorized", "request_id": "WIRE-req-401"},
            spout.AuthenticationError,
            "Unauthorized",
        ),
        (401, {"detail": "Unauthorized"}, spout.AuthenticationError, "Unauthorized"),
        (
            429,
            {
                "object": "error",
                "message": "Rate limit exceeded",
                "type": "rate_limited",
                "param": None,
                "code": "1300",
            },
            spout.RateLimitError,
            "Rate limit exceeded",
        ),
        (
            422,
            {
                "object": "error",
                "message": {
                    "detail": [
                        {
                            "type": "extra_forbidden",
                            "loc": ["body", "stream_options"],
                            "msg": "Extra inputs are not permitted",
                            "input": {"include_usage": True},
                        }
                    ]
                },
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
            spout.BadRequestError,
            "body.stream_options: Extra inputs are not permitted",
        ),
    ],
)
def test_mistral_http_errors(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    body: dict[str, Any],
    error_class: type[spout.ProviderError],
    message: str,
) -> None:
    replay.replies = [json_reply(body, status, {"retry-after": "3"})]
    exc = raised_on_start(runner, mistral(replay), error_class)
    assert exc.status_code == status and exc.provider == "mistral"
    assert exc.message == message
    if status == 429:
        assert exc.retry_after == 3.0 and exc.error_type == "rate_limited"
    if "request_id" in body:
        assert exc.request_id == body["request_id"]


def test_mistral_litellm_max_completion_tokens_is_max_tokens(replay: ReplayServer) -> None:
    # Mistral refuses max_completion_tokens (extra_forbidden).
    llm = mistral(replay)
    assert llm.provider.litellm_params({"max_completion_tokens": 9}) == {"max_tokens": 9}


# -- xAI ----------------------------------------------------------------------------------------


def test_xai_reasoning_transcript(replay: ReplayServer, runner: Runner, cut: Cut) -> None:
    body, expected = transcript("xai", "reasoning")
    replay.replies = [Reply(chunks=cut(body))]
    result = runner.events(xai(replay))
    response = result.response
    check_response(response, expected)
    assert response.model == "grok-3-mini"
    details = expected["usage_raw"]["completion_tokens_details"]
    assert response.usage.extras["completion_tokens_details"] == details
    # The reasoning arrives as reasoning, before the answer, and never as text.
    kinds = [type(e).__name__ for e in result.events if isinstance(e, (TextDelta, ReasoningDelta))]
    assert kinds == ["ReasoningDelta"] * 16 + ["TextDelta"] * 6
    assert "".join(result.chunks) == expected["text"]


def test_xai_request(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("xai", "reasoning")
    replay.replies = [Reply(chunks=[body])]
    runner.text(xai(replay), "Is 1013 prime?", max_tokens=200, reasoning_effort="low", seed=3)
    request = replay.requests[-1]
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert headers_of(request)["authorization"] == "Bearer xai-test-key"
    assert request.json() == {
        "model": "grok-3-mini",
        "messages": [{"role": "user", "content": "Is 1013 prime?"}],
        "max_tokens": 200,
        "reasoning_effort": "low",
        "seed": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_xai_not_streamed_keeps_the_reasoning(replay: ReplayServer, runner: Runner) -> None:
    _, expected = transcript("xai", "reasoning")
    completion = {
        "id": "WIRE0xai0whole",
        "object": "chat.completion",
        "model": "grok-3-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": expected["text"],
                    "reasoning_content": expected["reasoning"],
                    "refusal": None,
                },
                "finish_reason": "stop",
            }
        ],
        "usage": expected["usage_raw"],
        "system_fingerprint": "fp_WIRE0001",
    }
    replay.replies = [json_reply(completion)]
    response = runner.generate(xai(replay))
    assert (response.reasoning, response.text) == (expected["reasoning"], expected["text"])
    # xAI's completion_tokens (6) leaves out the 16 reasoning tokens: output_tokens holds them.
    assert usage_counts(response) == expected["usage"]
    assert response.usage.total_tokens == expected["usage_raw"]["total_tokens"] == 36


@pytest.mark.parametrize(
    ("status", "body", "error_class", "error_type"),
    [
        # docs.x.ai "Debugging Errors": a wrong key is a 400, a missing one a 401; the body
        # is {"code": <the status in words>, "error": <message>}.
        (
            400,
            {
                "code": "Client specified an invalid argument",
                "error": "Incorrect API key provided: xa***ey. You can obtain an API key from https://console.x.ai.",
            },
            spout.AuthenticationError,
            "Client specified an invalid argument",
        ),
        (
            401,
            {
                "code": "The request does not have valid authentication credentials for the operation",
                "error": "No authorization header or an invalid authorization token is provided.",
            },
            spout.AuthenticationError,
            "The request does not have valid authentication credentials for the operation",
        ),
        (
            429,
            {
                "code": "Some resource has been exhausted",
                "error": "Too many requests: rate limit of your team reached.",
            },
            spout.RateLimitError,
            "Some resource has been exhausted",
        ),
        (
            400,
            {
                "code": "Client specified an invalid argument",
                "error": "This model's maximum prompt length is 131072 but the request contains 179111 tokens.",
            },
            spout.ContextWindowExceededError,
            "Client specified an invalid argument",
        ),
    ],
)
def test_xai_http_errors(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    body: dict[str, Any],
    error_class: type[spout.ProviderError],
    error_type: str,
) -> None:
    replay.replies = [json_reply(body, status, {"x-request-id": "WIRE-req-x"})]
    exc = raised_on_start(runner, xai(replay), error_class)
    assert exc.status_code == status and exc.provider == "xai"
    assert exc.message == body["error"] and exc.error_type == error_type
    assert exc.request_id == "WIRE-req-x"


# -- both ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base_url", "key_env"),
    [
        ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
        ("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    ],
)
def test_a_key_is_required(
    name: str, base_url: str, key_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(key_env, raising=False)
    with pytest.raises(spout.ConfigurationError, match=key_env):
        create_llm(name, model="m")
    monkeypatch.setenv(key_env, "from-env")
    llm = create_llm(name, model="m")
    assert llm.provider.base_url == base_url  # type: ignore[attr-defined]
    assert llm.provider.api_key == "from-env"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "model", "reasoning"),
    [
        ("mistral", "mistral-large-latest", False),
        ("mistral", "magistral-medium-2509", True),
        ("xai", "grok-4", False),
        ("xai", "grok-3-mini", True),
    ],
)
def test_capabilities(name: str, model: str, reasoning: bool) -> None:
    llm = create_llm(name, model=model, api_key="k")
    assert llm.get_capabilities() == {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: True,
        # A tool call arrives whole, in one chunk.
        ModelCapability.TOOL_STREAMING: False,
        ModelCapability.USAGE_IN_STREAM: True,
        ModelCapability.REASONING: reasoning,
        ModelCapability.SYSTEM_PROMPT: True,
        # Images both; documents (document_url) Mistral only; audio only Voxtral (below).
        ModelCapability.VISION: True,
        ModelCapability.PDF_INPUT: name == "mistral",
        ModelCapability.AUDIO_INPUT: False,
    }


def test_mistral_parts_without_text_are_raw_events(replay: ReplayServer, runner: Runner) -> None:
    # A reference part (ReferenceChunk in mistralai's client-python: the ids of the sources a
    # web search or library tool found) has no text; it is kept, not dropped.
    reference = {"type": "reference", "reference_ids": [0, 2]}
    chunks = [
        {
            "id": "WIREref",
            "model": "mistral-medium-latest",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": [{"type": "text", "text": "Paris."}, reference]},
                    "finish_reason": None,
                }
            ],
        },
        {
            "id": "WIREref",
            "model": "mistral-medium-latest",
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
        },
    ]
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    replay.replies = [Reply(chunks=[body + b"data: [DONE]\n\n"])]
    response = runner.events(mistral(replay)).response
    assert response.text == "Paris."
    assert response.raw_events == (spout.RawEvent("reference", reference),)
