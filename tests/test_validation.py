"""Bad input from the caller fails before any request, with an error that names the field."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import spout
from replay_server import ReplayServer, Reply
from spout import Tool, create_llm, tool


@pytest.fixture
def llm(replay: ReplayServer) -> Iterator[spout.LLM]:
    replay.replies = [Reply(chunks=[_stream("ok")])]
    made = create_llm("openai", model="x", base_url=f"{replay.url}/v1", api_key="sk-test")
    yield made
    made.close()


def _stream(text: str) -> bytes:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": text}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)


def _sync_stream(llm: spout.LLM, prompt: Any, **kw: Any) -> None:
    "".join(llm.generate_stream(prompt, **kw))


def _async_stream(llm: spout.LLM, prompt: Any, **kw: Any) -> None:
    async def run() -> None:
        try:
            "".join([c async for c in llm.agenerate_stream(prompt, **kw)])
        finally:
            await llm.aclose()

    asyncio.run(run())


def _async_generate(llm: spout.LLM, prompt: Any, **kw: Any) -> None:
    async def run() -> None:
        try:
            await llm.generate_async(prompt, **kw)
        finally:
            await llm.aclose()

    asyncio.run(run())


ENTRIES: dict[str, Callable[..., None]] = {
    "generate_stream": _sync_stream,
    "agenerate_stream": _async_stream,
    "generate_async": _async_generate,
}


@pytest.fixture(params=sorted(ENTRIES))
def run(request: pytest.FixtureRequest) -> Callable[..., None]:
    return ENTRIES[request.param]


def _not_json() -> None:  # a function inside a schema cannot be sent
    pass


BAD: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    # (id, keywords, error type, text the message must hold)
    ("empty prompt", {"prompt": ""}, ValueError, "prompt is empty"),
    ("blank prompt", {"prompt": " \n\t"}, ValueError, "prompt is only whitespace"),
    ("prompt not str", {"prompt": 42}, TypeError, "prompt must be a str, not int"),
    ("prompt bytes", {"prompt": b"hi"}, TypeError, "prompt must be a str, not bytes"),
    ("messages str", {"messages": "hi"}, TypeError, "messages must be a list of dicts, not str"),
    (
        "messages dict",
        {"messages": {"role": "user", "content": "hi"}},
        TypeError,
        "messages must be a list of dicts, not dict",
    ),
    (
        "message not dict",
        {"messages": [{"role": "user", "content": "a"}, "b"]},
        TypeError,
        "messages[1] must be a dict, not str",
    ),
    ("no role", {"messages": [{"content": "hi"}]}, ValueError, "messages[0] has no 'role'"),
    (
        "unknown role",
        {"messages": [{"role": "human", "content": "hi"}]},
        ValueError,
        "messages[0]['role'] must be one of 'system', 'developer', 'user', 'assistant', 'tool', "
        "not 'human'",
    ),
    (
        "role not str",
        {"messages": [{"role": 1, "content": "hi"}]},
        ValueError,
        "messages[0]['role'] must be one of",
    ),
    (
        "content int",
        {"messages": [{"role": "user", "content": 5}]},
        TypeError,
        "messages[0]['content'] must be a str or a list of content parts, not int",
    ),
    (
        "content dict",
        {"messages": [{"role": "user", "content": {"text": "hi"}}]},
        TypeError,
        "messages[0]['content'] must be a str or a list of content parts, not dict",
    ),
    (
        "content part int",
        {"messages": [{"role": "user", "content": ["a", 3]}]},
        TypeError,
        "messages[0]['content'][1] must be a str or a dict",
    ),
    (
        "user without content",
        {"messages": [{"role": "user"}]},
        ValueError,
        "messages[0] (user) has no 'content'",
    ),
    (
        "system content None",
        {"messages": [{"role": "system", "content": None}, {"role": "user", "content": "hi"}]},
        ValueError,
        "messages[0] (system) has content None",
    ),
    (
        "tool without id",
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "content": "42"},
            ]
        },
        ValueError,
        "messages[2] is a tool result without 'tool_call_id'",
    ),
    (
        "tool id empty",
        {"messages": [{"role": "tool", "tool_call_id": "", "content": "1"}]},
        ValueError,
        "without 'tool_call_id'",
    ),
    (
        "tool_calls not list",
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": {"id": "c1"}},
            ]
        },
        TypeError,
        "messages[1]['tool_calls'] must be a list of dicts",
    ),
    ("system_prompt int", {"system_prompt": 3}, TypeError, "system_prompt must be a str, not int"),
    ("max_tokens 0", {"max_tokens": 0}, ValueError, "max_tokens must be a positive int, not 0"),
    ("max_tokens -1", {"max_tokens": -1}, ValueError, "max_tokens must be a positive int, not -1"),
    (
        "max_tokens float",
        {"max_tokens": 10.0},
        TypeError,
        "max_tokens must be a positive int, not 10.0",
    ),
    (
        "max_tokens str",
        {"max_tokens": "10"},
        TypeError,
        "max_tokens must be a positive int, not '10'",
    ),
    (
        "max_tokens bool",
        {"max_tokens": True},
        TypeError,
        "max_tokens must be a positive int, not True",
    ),
    (
        "temperature negative",
        {"temperature": -0.1},
        ValueError,
        "temperature must be a number >= 0, not -0.1",
    ),
    ("temperature nan", {"temperature": math.nan}, ValueError, "temperature must be a number >= 0"),
    ("temperature inf", {"temperature": math.inf}, ValueError, "temperature must be a number >= 0"),
    ("temperature str", {"temperature": "0.5"}, TypeError, "temperature must be a number, not str"),
    (
        "temperature bool",
        {"temperature": False},
        TypeError,
        "temperature must be a number, not bool",
    ),
    ("top_p above 1", {"top_p": 1.5}, ValueError, "top_p must be a number from 0 to 1, not 1.5"),
    ("top_p negative", {"top_p": -0.5}, ValueError, "top_p must be a number from 0 to 1"),
    ("top_p str", {"top_p": "1"}, TypeError, "top_p must be a number, not str"),
    ("stop int", {"stop": 5}, TypeError, "stop must be a str or a list of str, not 5"),
    ("stop list of int", {"stop": ["a", 1]}, TypeError, "stop must be a str or a list of str"),
    ("seed float", {"seed": 1.5}, TypeError, "seed must be an int, not float"),
    ("seed bool", {"seed": True}, TypeError, "seed must be an int, not bool"),
    (
        "tool schema with a set",
        {
            "tools": [
                Tool(
                    name="lookup",
                    parameters={"type": "object", "properties": {"x": {"enum": {1, 2}}}},
                )
            ]
        },
        TypeError,
        "tool 'lookup': its parameters cannot be sent as JSON",
    ),
    (
        "tool schema with a function",
        {
            "tools": [
                Tool(
                    name="hook",
                    parameters={"type": "object", "properties": {"x": {"default": _not_json}}},
                )
            ]
        },
        TypeError,
        "tool 'hook': its parameters cannot be sent as JSON",
    ),
    (
        "native tool dict",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "native", "parameters": {"type": "object", "x": {1, 2}}},
                }
            ]
        },
        TypeError,
        "tool 'native'",
    ),
]


@pytest.mark.parametrize(
    ("keywords", "error", "text"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_fails_before_any_request(
    keywords: dict[str, Any],
    error: type[Exception],
    text: str,
    llm: spout.LLM,
    replay: ReplayServer,
    run: Callable[..., None],
) -> None:
    keywords = dict(keywords)
    prompt = keywords.pop("prompt", None if "messages" in keywords else "hi")
    with pytest.raises(error) as caught:
        run(llm, prompt, **keywords)
    assert text in str(caught.value)
    assert type(caught.value) is error  # plain ValueError / TypeError, not a spout error
    assert replay.requests == []


def test_a_bad_default_is_named_on_the_call(replay: ReplayServer) -> None:
    llm = create_llm("openai", model="x", base_url=f"{replay.url}/v1", max_tokens=0)
    try:
        with pytest.raises(ValueError, match="max_tokens must be a positive int, not 0"):
            llm.generate("hi")
        # A call's own setting replaces the default, and is what is checked.
        replay.replies = [Reply(chunks=[_stream("ok")])]
        assert "".join(llm.generate_stream("hi", max_tokens=5)) == "ok"
    finally:
        llm.close()
    assert len(replay.requests) == 1


def test_the_tool_loop_checks_its_input_too(llm: spout.LLM, replay: ReplayServer) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    with pytest.raises(ValueError, match="max_tokens must be a positive int"):
        list(llm.generate_stream_with_tools("hi", tools=[add], max_tokens=-5))
    with pytest.raises(ValueError, match="prompt is empty"):
        list(llm.generate_stream_with_tools("", tools=[add]))
    assert replay.requests == []


GOOD: list[tuple[str, dict[str, Any]]] = [
    ("prompt", {"prompt": "hi"}),
    ("prompt with spaces around", {"prompt": "  hi  "}),
    ("messages tuple", {"messages": ({"role": "user", "content": "hi"},)}),
    (
        "every role",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "w", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": {"temp": 4}},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": [{"type": "text", "text": "Thanks"}, "and bye"]},
            ]
        },
    ),
    (
        "consecutive user turns",
        {"messages": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]},
    ),
    ("gemini parts", {"messages": [{"role": "user", "parts": [{"text": "hi"}]}]}),
    (
        "assistant without content",
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant"},
                {"role": "user", "content": "again"},
            ]
        },
    ),
    ("empty content in a message", {"messages": [{"role": "user", "content": ""}]}),
    (
        "settings at their limits",
        {"prompt": "hi", "max_tokens": 1, "temperature": 0, "top_p": 0, "seed": 0, "stop": []},
    ),
    (
        "settings as floats",
        {"prompt": "hi", "temperature": 1.7, "top_p": 1.0, "seed": -1, "stop": ("END", "STOP")},
    ),
    ("high temperature", {"prompt": "hi", "temperature": 5}),
    ("stop str", {"prompt": "hi", "stop": "\n"}),
    ("None settings are left out", {"prompt": "hi", "max_tokens": None, "temperature": None}),
    ("system_prompt blocks", {"prompt": "hi", "system_prompt": [{"type": "text", "text": "x"}]}),
    (
        "tools",
        {
            "prompt": "hi",
            "tools": [
                Tool(
                    name="t", parameters={"type": "object", "properties": {"x": {"enum": [1, 2]}}}
                ),
                {"type": "function", "function": {"name": "n", "parameters": {"type": "object"}}},
            ],
        },
    ),
]


@pytest.mark.parametrize("keywords", [g[1] for g in GOOD], ids=[g[0] for g in GOOD])
def test_good_input_is_sent(
    keywords: dict[str, Any], llm: spout.LLM, replay: ReplayServer, run: Callable[..., None]
) -> None:
    keywords = dict(keywords)
    prompt = keywords.pop("prompt", None)
    if run is _async_generate:  # a whole response, not a stream
        answer = {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ]
        }
        replay.replies = [
            Reply(
                chunks=[json.dumps(answer).encode()], headers={"Content-Type": "application/json"}
            )
        ]
    run(llm, prompt, **keywords)
    assert len(replay.requests) == 1


def test_validation_is_cheap() -> None:
    # One pass with a few type checks per message: a long conversation costs microseconds.
    import timeit

    from spout._validate import validate_call

    messages = [{"role": ("user", "assistant")[i % 2], "content": "x" * 50} for i in range(1000)]
    params = {"max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": ["a"], "seed": 1}
    seconds = (
        min(
            timeit.repeat(
                lambda: validate_call(None, messages, None, params, {}), number=10, repeat=3
            )
        )
        / 10
    )
    assert seconds < 0.005, seconds
