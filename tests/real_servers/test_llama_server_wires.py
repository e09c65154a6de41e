"""spout's OpenAI chat, Responses and Anthropic adapters against llama.cpp's own llama-server.

One server, one model, three wires: ``/v1/chat/completions``, ``/v1/responses`` and
``/v1/messages``, each streamed and not, sync and async, at temperature 0. The server turns the
Responses and Messages requests into the same chat request and renders them with the same
template, so the three must give the same greedy text and spout must count the same tokens on
each, though the server reports them differently on each wire (docs/providers.md, "llama.cpp's
llama-server").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import spout
from helpers import Runner
from llama_cpp_server import MODEL, LlamaServer
from spout import create_llm

# One llama-server a session: its tests share the worker that started it.
pytestmark = [pytest.mark.model, pytest.mark.xdist_group("llama_cpp_server")]

WIRES = ("openai", "openai_responses", "anthropic")
PROMPT = "Name three rivers in Europe."
#: Few enough to stay quick, enough to end on max_tokens on every wire alike.
MAX_TOKENS = 24
MESSAGES = [{"role": "user", "content": PROMPT}]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def llm_on(server: LlamaServer, wire: str) -> spout.LLM:
    """spout's adapter for ``wire``, pointed at the server (each takes its base URL as its
    official SDK does: Anthropic's without ``/v1``)."""
    base_url = server.url if wire == "anthropic" else server.v1
    return create_llm(wire, model=MODEL, base_url=base_url, api_key="sk-local", max_retries=0)


@dataclass(frozen=True)
class Answer:
    """What must be equal across wires."""

    text: str
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    finish_reason: str | None


def answer_of(response: spout.Response) -> Answer:
    usage = response.usage
    return Answer(
        response.text,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        response.finish_reason,
    )


def ask(
    server: LlamaServer, runner: Runner, wire: str, *, streamed: bool, **params: Any
) -> spout.Response:
    """One call on one wire, from the cache state warm() leaves; a stream's text is checked to
    be what its chunks say."""
    server.warm(PROMPT)
    llm = llm_on(server, wire)
    try:
        if not streamed:
            return runner.generate(llm, PROMPT, max_tokens=MAX_TOKENS, temperature=0, **params)
        result = runner.events(llm, PROMPT, max_tokens=MAX_TOKENS, temperature=0, **params)
        assert "".join(result.chunks) == result.response.text
        return result.response
    finally:
        if not runner.is_async:
            llm.close()


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_three_wires_give_the_same_greedy_text_and_counts(
    llama_cpp_server: LlamaServer, runner: Runner, streamed: bool
) -> None:
    server = llama_cpp_server
    # The server's own counts on its OpenAI wire, asked directly, are the reference.
    server.warm(PROMPT)
    reference = server.chat(PROMPT, max_tokens=MAX_TOKENS, temperature=0)
    usage = reference["usage"]
    expected = Answer(
        reference["choices"][0]["message"]["content"],
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["prompt_tokens_details"]["cached_tokens"],
        "length",
    )
    # The prompt really is read from the cache (all but its last token), so what the
    # Anthropic wire reports apart as cache_read_input_tokens is in play.
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] - 1 > 20
    assert expected.output_tokens == MAX_TOKENS and expected.text.strip()

    answers = {wire: answer_of(ask(server, runner, wire, streamed=streamed)) for wire in WIRES}
    # One real difference: the server's Responses wire says "completed" however the reply
    # ended (OpenAI's says "incomplete", reason max_output_tokens), so spout can only say "stop".
    cut_short_unsaid = dataclasses.replace(expected, finish_reason="stop")
    assert answers == {**dict.fromkeys(WIRES, expected), "openai_responses": cut_short_unsaid}


def test_anthropic_wire_counts_the_cached_prompt_as_input(
    llama_cpp_server: LlamaServer, runner: Runner
) -> None:
    # On /v1/messages the server says input_tokens 1 and cache_read_input_tokens 35 for a
    # prompt of 36 tokens read from its cache, as Anthropic counts: input_tokens there is only
    # what came after the cache. spout's input_tokens is the whole input on every wire.
    server = llama_cpp_server
    server.warm(PROMPT)
    body = {"model": MODEL, "max_tokens": MAX_TOKENS, "temperature": 0, "messages": MESSAGES}
    raw = httpx.post(f"{server.url}/v1/messages", json=body, timeout=120).json()["usage"]
    assert raw["input_tokens"] == 1 and raw["cache_read_input_tokens"] > 20
    response = ask(server, runner, "anthropic", streamed=True)
    assert response.usage.cache_read_tokens == raw["cache_read_input_tokens"]
    assert response.usage.input_tokens == 1 + raw["cache_read_input_tokens"]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_tools_reach_the_prompt_alike_on_every_wire(
    llama_cpp_server: LlamaServer, runner: Runner, streamed: bool
) -> None:
    # spout writes the one tool in each wire's own shape; the server renders all three into
    # the same prompt (the template lists the tools), so the counts and the text agree. No
    # wire gives a tool call from this model, even forced: "required" lets the reply begin
    # with any text before the call's opening tag, and SmolLM2-135M never writes that tag
    # (docs/providers.md, "llama.cpp's llama-server").
    answers = {
        wire: answer_of(
            ask(
                llama_cpp_server,
                runner,
                wire,
                streamed=streamed,
                tools=[WEATHER_TOOL],
                tool_choice="required",
            )
        )
        for wire in WIRES
    }
    plain = answer_of(ask(llama_cpp_server, runner, "openai", streamed=streamed))
    first = answers["openai"]
    # The tool's description is in the prompt: many more input tokens than without it.
    assert first.input_tokens is not None and plain.input_tokens is not None
    assert first.input_tokens > plain.input_tokens + 50
    responses = dataclasses.replace(first, finish_reason="stop")
    assert answers == {**dict.fromkeys(WIRES, first), "openai_responses": responses}
