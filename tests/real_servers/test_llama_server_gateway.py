"""The official SDKs through the gateway to llama.cpp's llama-server, on another wire.

Each SDK asks the same question twice: once of llama-server directly, on the SDK's own wire,
and once of the gateway, whose upstream is the same server on a different wire (an OpenAI
client's chat goes to the server's Anthropic Messages endpoint, an Anthropic client's messages
to its chat completions, and so on). The two must give the same text, the same usage and the
same sequence of event types: the gateway's translation is held to the real server's own
rendering of each wire, from real streamed tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anthropic
import openai
import pytest
from gateway_server import RunningGateway, run_gateway

from llama_cpp_server import MODEL, LlamaServer
from spout.gateway import GatewayConfig, Route

pytestmark = [pytest.mark.model, pytest.mark.xdist_group("llama_cpp_server")]

T = TypeVar("T")
PROMPT = "Name three rivers in Europe."
MAX_TOKENS = 24
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]
#: The anthropic SDK installed here takes no temperature= (the body field still exists).
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def gateway(llama_cpp_server: LlamaServer) -> Iterator[RunningGateway]:
    """Routes to the one server on each of its wires: ``via-chat``, ``via-responses``,
    ``via-messages``."""
    server = llama_cpp_server
    options = {"api_key": "sk-local", "max_retries": 0}
    routes = {
        "via-chat": Route(
            name="via-chat", provider="openai", model=MODEL, base_url=server.v1, options=options
        ),
        "via-responses": Route(
            name="via-responses",
            provider="openai",
            model=MODEL,
            base_url=server.v1,
            options={**options, "api": "responses"},
        ),
        "via-messages": Route(
            name="via-messages",
            provider="anthropic",
            model=MODEL,
            base_url=server.url,
            options=options,
        ),
    }
    with run_gateway(GatewayConfig(routes=routes, default="via-chat")) as running:
        yield running


def run(mode: str, make: Callable[[], Any], call: Callable[[Any], Any]) -> Any:
    """``call(client)`` with a sync client, or awaited with an async one, the client closed."""
    if mode == "sync":
        with make() as client:
            return call(client)

    async def main() -> Any:
        async with make() as client:
            result = call(client)
            return await result if isinstance(result, Awaitable) else result

    return asyncio.run(main())


# -- OpenAI chat completions -----------------------------------------------------------------


def openai_client(mode: str, base_url: str) -> Callable[[], Any]:
    cls = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    return lambda: cls(base_url=base_url, api_key="sk-local", max_retries=0)


def chat_chunks(mode: str, base_url: str, model: str) -> list[Any]:
    params: dict[str, Any] = {
        "model": model,
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    def sync(client: openai.OpenAI) -> list[Any]:
        with client.chat.completions.create(**params) as stream:
            return list(stream)

    async def async_(client: openai.AsyncOpenAI) -> list[Any]:
        async with await client.chat.completions.create(**params) as stream:
            return [chunk async for chunk in stream]

    return run(mode, openai_client(mode, base_url), sync if mode == "sync" else async_)  # type: ignore[no-any-return]


def chunk_kind(chunk: Any) -> str:
    """What a chat chunk carries: its role, text, finish reason, usage."""
    if not chunk.choices:
        return "usage" if chunk.usage is not None else "empty"
    choice = chunk.choices[0]
    parts = [
        name
        for name, present in (
            ("role", choice.delta.role is not None),
            ("content", bool(choice.delta.content)),
            ("tool_calls", bool(choice.delta.tool_calls)),
            ("finish", choice.finish_reason is not None),
        )
        if present
    ]
    return "+".join(parts) or "empty"


def collapsed(kinds: list[str]) -> list[str]:
    """Runs of one kind as one: how many pieces a text arrives in is the server's choice."""
    return [kind for i, kind in enumerate(kinds) if i == 0 or kinds[i - 1] != kind]


@pytest.mark.parametrize("upstream", ["via-messages", "via-responses"])
def test_openai_chat_stream_through_another_wire(
    llama_cpp_server: LlamaServer, gateway: RunningGateway, mode: str, upstream: str
) -> None:
    server = llama_cpp_server
    server.warm(PROMPT)
    direct = chat_chunks(mode, server.v1, MODEL)
    server.warm(PROMPT)
    relayed = chat_chunks(mode, f"{gateway.url}/v1", upstream)

    def text(chunks: list[Any]) -> str:
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    def usage(chunks: list[Any]) -> tuple[int, int]:
        (last,) = [c.usage for c in chunks if c.usage is not None]
        return last.prompt_tokens, last.completion_tokens

    assert text(relayed) == text(direct) and text(direct).strip()
    assert usage(relayed) == usage(direct)
    assert usage(direct)[1] == MAX_TOKENS
    assert collapsed([chunk_kind(c) for c in relayed]) == collapsed([chunk_kind(c) for c in direct])


def test_openai_chat_whole_through_the_messages_wire(
    llama_cpp_server: LlamaServer, gateway: RunningGateway, mode: str
) -> None:
    server = llama_cpp_server

    def complete(base_url: str, model: str) -> Any:
        server.warm(PROMPT)
        return run(
            mode,
            openai_client(mode, base_url),
            lambda client: client.chat.completions.create(
                model=model, messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0
            ),
        )

    direct = complete(server.v1, MODEL)
    relayed = complete(f"{gateway.url}/v1", "via-messages")
    assert relayed.choices[0].message.content == direct.choices[0].message.content
    assert relayed.choices[0].finish_reason == direct.choices[0].finish_reason == "length"
    assert (relayed.usage.prompt_tokens, relayed.usage.completion_tokens) == (
        direct.usage.prompt_tokens,
        direct.usage.completion_tokens,
    )


# -- OpenAI Responses ------------------------------------------------------------------------


def response_events(mode: str, base_url: str, model: str) -> list[Any]:
    params: dict[str, Any] = {
        "model": model,
        "input": PROMPT,
        "max_output_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
    }

    def sync(client: openai.OpenAI) -> list[Any]:
        with client.responses.create(**params) as stream:
            return list(stream)

    async def async_(client: openai.AsyncOpenAI) -> list[Any]:
        async with await client.responses.create(**params) as stream:
            return [event async for event in stream]

    return run(mode, openai_client(mode, base_url), sync if mode == "sync" else async_)  # type: ignore[no-any-return]


def test_openai_responses_stream_through_the_messages_wire(
    llama_cpp_server: LlamaServer, gateway: RunningGateway, mode: str
) -> None:
    server = llama_cpp_server
    server.warm(PROMPT)
    direct = response_events(mode, server.v1, MODEL)
    server.warm(PROMPT)
    relayed = response_events(mode, f"{gateway.url}/v1", "via-messages")

    def final(events: list[Any]) -> Any:
        (done,) = [
            e.response for e in events if e.type in ("response.completed", "response.incomplete")
        ]
        return done

    def deltas(events: list[Any]) -> str:
        return "".join(e.delta for e in events if e.type == "response.output_text.delta")

    assert deltas(relayed) == deltas(direct) and deltas(direct).strip()
    assert final(relayed).output_text == final(direct).output_text == deltas(direct)
    assert (final(relayed).usage.input_tokens, final(relayed).usage.output_tokens) == (
        final(direct).usage.input_tokens,
        final(direct).usage.output_tokens,
    )
    # The server's Responses wire says response.completed however the reply ended; cut short
    # by max_output_tokens, the gateway says response.incomplete, as OpenAI does.
    assert final(relayed).status == "incomplete" and final(direct).status == "completed"
    assert collapsed([e.type for e in relayed]) == [
        *collapsed([e.type for e in direct])[:-1],
        "response.incomplete",
    ]


# -- Anthropic Messages ----------------------------------------------------------------------


def anthropic_client(mode: str, base_url: str) -> Callable[[], Any]:
    cls = anthropic.Anthropic if mode == "sync" else anthropic.AsyncAnthropic
    return lambda: cls(base_url=base_url, api_key="sk-local", max_retries=0)


def message_events(mode: str, base_url: str, model: str) -> list[Any]:
    params: dict[str, Any] = {
        "model": model,
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "extra_body": GREEDY,
        "stream": True,
    }

    def sync(client: anthropic.Anthropic) -> list[Any]:
        with client.messages.create(**params) as stream:
            return list(stream)

    async def async_(client: anthropic.AsyncAnthropic) -> list[Any]:
        async with await client.messages.create(**params) as stream:
            return [event async for event in stream]

    return run(mode, anthropic_client(mode, base_url), sync if mode == "sync" else async_)  # type: ignore[no-any-return]


def anthropic_usage(events: list[Any]) -> tuple[int, int, int | None]:
    """(input, output, cache read) as an Anthropic client adds them up: message_start's,
    then message_delta's cumulative counts."""
    (start,) = [e for e in events if e.type == "message_start"]
    usage = start.message.usage
    counts = [usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens]
    for event in events:
        if event.type == "message_delta":
            delta = event.usage
            counts[1] = delta.output_tokens
            if delta.input_tokens is not None:
                counts[0] = delta.input_tokens
            if delta.cache_read_input_tokens is not None:
                counts[2] = delta.cache_read_input_tokens
    return counts[0], counts[1], counts[2]


@pytest.mark.parametrize("upstream", ["via-chat", "via-responses"])
def test_anthropic_stream_through_another_wire(
    llama_cpp_server: LlamaServer, gateway: RunningGateway, mode: str, upstream: str
) -> None:
    server = llama_cpp_server
    server.warm(PROMPT)
    direct = message_events(mode, server.url, MODEL)
    server.warm(PROMPT)
    relayed = message_events(mode, gateway.url, upstream)

    def text(events: list[Any]) -> str:
        return "".join(
            e.delta.text
            for e in events
            if e.type == "content_block_delta" and e.delta.type == "text_delta"
        )

    assert text(relayed) == text(direct) and text(direct).strip()
    assert anthropic_usage(relayed) == anthropic_usage(direct)
    assert collapsed([e.type for e in relayed]) == collapsed([e.type for e in direct])


def test_anthropic_whole_through_the_chat_wire(
    llama_cpp_server: LlamaServer, gateway: RunningGateway, mode: str
) -> None:
    server = llama_cpp_server

    def create(base_url: str, model: str) -> Any:
        server.warm(PROMPT)
        return run(
            mode,
            anthropic_client(mode, base_url),
            lambda client: client.messages.create(
                model=model, messages=MESSAGES, max_tokens=MAX_TOKENS, extra_body=GREEDY
            ),
        )

    direct = create(server.url, MODEL)
    relayed = create(gateway.url, "via-chat")
    assert [b.text for b in relayed.content] == [b.text for b in direct.content]
    assert relayed.stop_reason == direct.stop_reason == "max_tokens"
    assert relayed.usage.input_tokens == direct.usage.input_tokens
    assert relayed.usage.output_tokens == direct.usage.output_tokens
    assert relayed.usage.cache_read_input_tokens == direct.usage.cache_read_input_tokens
