"""Response.cost and stream.stats.cost: recorded transcripts priced as genai-prices prices them
(and two checked by hand against the published prices), price tiers, models with no known
price, local and self-hosted models, streams cut short, the caller's own prices, the tool loop,
and sessions that keep each turn's cost and add them up."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import genai_prices
import pytest

import spout
from helpers import Runner, made
from replay_server import ReplayServer, Reply, transcript
from scripted_turns import (
    openai_call_turn,
    openai_chunk,
    openai_sse,
    openai_text_turn,
    openai_usage,
)
from spout import Prices, Session, Usage, create_llm
from spout._context import estimate_tokens

SSE = {"Content-Type": "text/event-stream"}
EVENTSTREAM = {"Content-Type": "application/vnd.amazon.eventstream"}


def streamed(runner: Runner, llm: spout.LLM) -> spout.Response:
    """The response of a stream read to its end (the replies here are streams)."""
    stream = runner.stream(llm)
    runner.list(stream)
    return runner.response(stream)


def listed(usage: Usage, model: str, provider_id: str) -> float:
    """What genai-prices itself says ``usage`` costs at ``model``."""
    counts: dict[str, int] = {
        "input_tokens": usage.input_tokens or 0,
        "output_tokens": usage.output_tokens or 0,
    }
    if usage.cache_read_tokens:
        counts["cache_read_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        counts["cache_write_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        counts["output_reasoning_tokens"] = usage.reasoning_tokens
    price = genai_prices.calc_price(
        genai_prices.Usage(**counts), model, provider_id=provider_id
    ).total_price
    return float(price)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Bedrock signs with these keys, and nothing of the machine's AWS setup is read."""
    for name in list(__import__("os").environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDWIRE0000EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wire-secret")


def vertex_token() -> str:
    return "ya29.WIRE-token"


# provider, model asked for, the transcript (folder, case), the price list's id for it, and
# the create_llm settings besides the server's URL (a callable of the URL).
Case = tuple[str, str, str, str, str, Callable[[str], dict[str, Any]]]
CASES: list[Case] = [
    ("anthropic", "claude-sonnet-4-5", "anthropic", "prompt_cache", "anthropic",
     lambda url: {"base_url": url, "api_key": "k"}),
    ("anthropic", "claude-sonnet-4-5", "anthropic", "thinking_signature", "anthropic",
     lambda url: {"base_url": url, "api_key": "k"}),
    ("openai", "gpt-4o-mini", "openai_chat", "text_then_tool_call", "openai",
     lambda url: {"base_url": f"{url}/v1", "api_key": "k"}),
    ("openai", "gpt-4o-mini", "openai_chat", "prompt_cache", "openai",
     lambda url: {"base_url": f"{url}/v1", "api_key": "k"}),
    ("openai", "o4-mini", "openai_responses", "reasoning_summary", "openai",
     lambda url: {"base_url": f"{url}/v1", "api_key": "k", "api": "responses"}),
    ("gemini", "gemini-2.5-pro", "gemini", "thoughts", "google",
     lambda url: {"base_url": url, "api_key": "k"}),
    ("gemini", "gemini-2.5-flash", "gemini", "prompt_cache", "google",
     lambda url: {"base_url": url, "api_key": "k"}),
    ("azure", "my-gpt-4o", "azure", "tool_calls", "azure",
     lambda url: {"base_url": url, "api_key": "k"}),
    ("bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", "bedrock", "prompt_cache", "aws",
     lambda url: {"base_url": url, "region": "us-east-1"}),
    ("vertex", "claude-sonnet-4-5@20250929", "vertex", "claude_text", "google",
     lambda url: {"base_url": url, "project": "p", "location": "us-east5",
                  "token_provider": vertex_token}),
    ("mistral", "mistral-small-latest", "mistral", "text", "mistral",
     lambda url: {"base_url": f"{url}/v1", "api_key": "k"}),
    ("xai", "grok-3-mini", "xai", "reasoning", "x-ai",
     lambda url: {"base_url": f"{url}/v1", "api_key": "k"}),
    ("cohere", "command-a-03-2025", "cohere", "text", "cohere",
     lambda url: {"base_url": url, "api_key": "k"}),
    ("openrouter", "openai/gpt-4o-mini", "openrouter", "keepalive_comments", "openrouter",
     lambda url: {"base_url": f"{url}/v1", "api_key": "k"}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[f"{c[2]}/{c[3]}" for c in CASES])
def test_a_recorded_stream_costs_what_the_price_list_says(
    case: Case, replay: ReplayServer, runner: Runner, request: pytest.FixtureRequest
) -> None:
    provider, model, folder, name, price_list, settings = case
    if provider == "bedrock":
        request.getfixturevalue("aws")
    body, expected = transcript(folder, name)
    replay.replies = [Reply(chunks=[body], headers=EVENTSTREAM if provider == "bedrock" else SSE)]
    llm = made(create_llm(provider, model=model, max_retries=0, **settings(replay.url)))
    stream = runner.stream(llm)
    runner.list(stream)
    response = runner.response(stream)

    assert response.usage.input_tokens == expected["usage"]["input_tokens"]
    # Priced by the model the response names (a dated version; the model behind an Azure
    # deployment), which the price list knows, else by the model asked for.
    named = response.model if folder not in ("bedrock", "vertex") else model
    assert named is not None
    assert response.cost == listed(response.usage, named, price_list)
    assert response.cost is not None and response.cost > 0
    assert response.cost_estimated is False
    assert response.stats is not None and response.stats.cost == response.cost
    assert stream.stats.cost == response.cost


def test_two_costs_checked_by_hand_against_the_published_prices(
    replay: ReplayServer, runner: Runner
) -> None:
    # Claude Sonnet 4.5: $3 per million input tokens, $0.30 cache reads, $3.75 cache writes
    # (5 minutes), $15 output. The transcript: 8,000 input of which 5,000 read from the
    # cache and 2,000 written to it, and 50 output.
    replay.replies = [Reply(chunks=[transcript("anthropic", "prompt_cache")[0]])]
    claude = made(create_llm("anthropic", model="claude-sonnet-4-5", base_url=replay.url,
                             api_key="k"))  # fmt: skip
    response = streamed(runner, claude)
    by_hand = (1_000 * 3 + 5_000 * 0.30 + 2_000 * 3.75 + 50 * 15) / 1e6
    assert response.cost == pytest.approx(by_hand, rel=1e-12) == 0.01275

    # GPT-4o mini: $0.15 per million input tokens, $0.60 output; 187 in and 64 out.
    replay.replies = [Reply(chunks=[transcript("openai_chat", "text_then_tool_call")[0]])]
    gpt = made(create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1",
                          api_key="k"))  # fmt: skip
    assert streamed(runner, gpt).cost == pytest.approx((187 * 0.15 + 64 * 0.60) / 1e6)


def gemini_body(prompt_tokens: int, output_tokens: int) -> bytes:
    chunk = {
        "candidates": [
            {"content": {"parts": [{"text": "Done."}], "role": "model"}, "finishReason": "STOP"}
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        },
        "modelVersion": "gemini-2.5-pro",
        "responseId": "WIREtier",
    }
    return b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"


@pytest.mark.parametrize(
    ("prompt_tokens", "by_hand"),
    [
        # Gemini 2.5 Pro: $1.25 in and $10 out per million up to 200k tokens of prompt, and
        # $2.50 and $15 for all the tokens of a longer prompt.
        (100_000, (100_000 * 1.25 + 100 * 10) / 1e6),
        (250_000, (250_000 * 2.50 + 100 * 15) / 1e6),
    ],
)
def test_a_longer_prompt_is_priced_at_its_tier(
    prompt_tokens: int, by_hand: float, replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = [Reply(chunks=[gemini_body(prompt_tokens, 100)])]
    llm = made(create_llm("gemini", model="gemini-2.5-pro", base_url=replay.url, api_key="k"))
    assert streamed(runner, llm).cost == pytest.approx(by_hand)


def test_claude_long_context_is_priced_at_its_tier(replay: ReplayServer, runner: Runner) -> None:
    # Claude Sonnet 4.5 over 200k input tokens: $6 in and $22.50 out per million.
    replay.replies = [Reply(chunks=[anthropic_stream(300_000, 10, "Done.")])]
    llm = made(create_llm("anthropic", model="claude-sonnet-4-5", base_url=replay.url,
                          api_key="k"))  # fmt: skip
    assert streamed(runner, llm).cost == pytest.approx((300_000 * 6 + 10 * 22.5) / 1e6)


def anthropic_stream(
    input_tokens: int, output_tokens: int, text: str, *, end: bool = True
) -> bytes:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    message: dict[str, Any] = {
        "id": "msg_WIRE",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # Anthropic's first count of the output is 1; the real one comes at the end.
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    body = event("message_start", {"type": "message_start", "message": message})
    body += event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    body += event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )
    if end:
        body += event("content_block_stop", {"type": "content_block_stop", "index": 0})
        body += event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
        body += event("message_stop", {"type": "message_stop"})
    return body


# -- no known price, and no price at all ----------------------------------------------------------


def test_a_model_with_no_known_price_costs_none(replay: ReplayServer, runner: Runner) -> None:
    chunk = openai_chunk({"content": "Hello."}, "stop", model="my-own-finetune")
    usage = {**openai_chunk({}), "model": "my-own-finetune", "choices": [],
             "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}  # fmt: skip
    replay.replies = [Reply(chunks=[openai_sse(chunk, usage)])]
    llm = made(create_llm("openai", model="my-own-finetune", base_url=f"{replay.url}/v1",
                          api_key="k"))  # fmt: skip
    stream = runner.stream(llm)
    runner.list(stream)
    response = runner.response(stream)
    assert response.usage.input_tokens == 5  # the usage is there: only the price is not
    assert response.cost is None and stream.stats.cost is None
    assert response.stats is not None and "$" not in response.stats.summary()


@pytest.mark.parametrize(
    ("provider", "folder", "case", "path"),
    [
        ("ollama", "ollama", "chat_text", ""),
        ("vllm", "openai_chat", "text_then_tool_call", "/v1"),
        ("llamacpp", "openai_chat", "text_then_tool_call", "/v1"),
        ("lmstudio", "openai_chat", "text_then_tool_call", "/v1"),
        ("huggingface", "tgi", "generate_stream", ""),
    ],
)
def test_a_self_hosted_model_costs_nothing(
    provider: str, folder: str, case: str, path: str, replay: ReplayServer, runner: Runner
) -> None:
    # Even one that answers under a priced model's name (the chat transcript names
    # gpt-4o-mini): the server is the caller's own.
    body, expected = transcript(folder, case)
    content_type = "application/x-ndjson" if provider == "ollama" else "text/event-stream"
    replay.replies = [Reply(chunks=[body], headers={"Content-Type": content_type})]
    llm = made(create_llm(provider, model="gpt-4o-mini", base_url=f"{replay.url}{path}"))
    response = streamed(runner, llm)
    assert response.usage.output_tokens == expected["usage"]["output_tokens"]
    assert (response.cost, response.cost_estimated) == (0.0, False)


def test_the_bundled_and_in_process_models_cost_nothing() -> None:
    # Priced without running the model: the price does not depend on what it says.
    local = create_llm("local")
    assert local.provider.pricing().cost(Usage(1_000, 100)) == 0.0
    from spout.providers.transformers import TransformersProvider

    assert TransformersProvider.in_process


def test_the_router_of_hugging_face_prices_by_the_provider_it_names() -> None:
    routed = create_llm("huggingface", model="openai/gpt-oss-120b:groq", api="chat", api_key="k")
    usage = Usage(1_000, 100)
    assert routed.provider.pricing().cost(usage) == listed(usage, "openai/gpt-oss-120b",
                                                          "huggingface_groq")  # fmt: skip
    unrouted = create_llm("huggingface", model="openai/gpt-oss-120b", api="chat", api_key="k")
    assert unrouted.provider.pricing().cost(usage) is None


def test_an_endpoint_the_list_knows_by_its_url_is_priced_as_that_service() -> None:
    groq = create_llm("openai", model="llama-3.3-70b-versatile",
                      base_url="https://api.groq.com/openai/v1", api_key="k")  # fmt: skip
    usage = Usage(1_000, 100)
    assert groq.provider.pricing().cost(usage) == listed(usage, "llama-3.3-70b-versatile", "groq")


# -- streams cut short ----------------------------------------------------------------------------


def test_a_stream_cut_before_its_usage_costs_an_estimate(
    replay: ReplayServer, runner: Runner
) -> None:
    text = "Half of an answer that never ends"
    replay.replies = [
        Reply(chunks=[openai_sse(openai_chunk({"content": text})).removesuffix(b"data: [DONE]\n\n")],
              abort=True)
    ]  # fmt: skip
    llm = made(create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1",
                          api_key="k"))  # fmt: skip
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.list(runner.stream(llm, "Tell me everything"))
    partial = caught.value.partial
    assert partial is not None and partial.text == text
    # No usage arrived: spout's estimate of the input it sent, and of the output by its
    # characters (one token per four, rounded up).
    sent = [{"role": "user", "content": "Tell me everything"}]
    estimate = Usage(estimate_tokens(sent), -(-len(text) // 4))
    assert partial.cost == listed(estimate, "gpt-4o-mini", "openai")
    assert partial.cost_estimated is True


def test_a_stream_left_by_break_costs_what_it_used(replay: ReplayServer, runner: Runner) -> None:
    text = "Forty characters of a longer answer here"
    replay.replies = [Reply(chunks=[anthropic_stream(1_200, 0, text, end=False)], delay=0.05)]
    llm = made(create_llm("anthropic", model="claude-sonnet-4-5", base_url=replay.url,
                          api_key="k"))  # fmt: skip
    stream = runner.stream(llm)
    runner.next(stream)  # the first chunk, then the caller stops reading
    runner.close(stream)
    response = stream.response
    # The input as Anthropic counted it in message_start; the output not yet counted (its
    # first count is 1), so spout's estimate of the 40 characters that arrived.
    assert response.usage.input_tokens == 1_200
    assert response.cost == listed(Usage(1_200, 10), "claude-sonnet-4-5", "anthropic")
    assert response.cost_estimated is True


def test_live_stats_cost_grows_and_ends_at_the_providers_figure(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn()], delay=0.0)]
    llm = made(create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1",
                          api_key="k"))  # fmt: skip
    stream = runner.stream(llm)
    seen: list[tuple[float | None, bool]] = []
    runner.list(
        stream, each=lambda _: seen.append((stream.stats.cost, stream.stats.cost_estimated))
    )
    assert seen and all(cost is not None and estimated for cost, estimated in seen)
    final = runner.response(stream)
    assert (final.cost, final.cost_estimated) == (listed(Usage(90, 12), "gpt-4o-mini", "openai"),
                                                  False)  # fmt: skip


def test_a_resumed_stream_costs_both_requests(replay: ReplayServer, runner: Runner) -> None:
    done = b"data: [DONE]\n\n"
    cut = openai_sse(openai_chunk({"content": "The river runs to"})).removesuffix(done)
    rest = openai_sse(
        openai_chunk({"content": "river runs to the sea."}, "stop"), openai_usage(30, 6)
    )
    replay.replies = [Reply(chunks=[cut], abort=True), Reply(chunks=[rest])]
    llm = made(create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1", api_key="k",
                          resume=True, retry=spout.Retry(initial_delay=0.01, jitter=False)))  # fmt: skip
    response = streamed(runner, llm)
    assert response.resumed == 1
    # Each request priced on its own: the cut one as spout estimates it (no usage came: the
    # prompt, and 17 characters of output, 5 tokens), the one that finished as reported.
    first = Usage(estimate_tokens([{"role": "user", "content": "hi"}]), 5)
    expected = listed(first, "gpt-4o-mini", "openai") + listed(
        Usage(30, 6), "gpt-4o-mini", "openai"
    )
    assert response.cost == pytest.approx(expected)
    assert response.cost_estimated is True


# -- the caller's own prices -----------------------------------------------------------------------


def test_your_own_prices_price_your_model(replay: ReplayServer, runner: Runner) -> None:
    # 187 input tokens (none cached) and 64 output at $0.20 and $0.60 per million.
    replay.replies = [Reply(chunks=[transcript("openai_chat", "text_then_tool_call")[0]])]
    mine = Prices(input=0.2, output=0.6)
    llm = made(create_llm("vllm", model="my-finetune", base_url=f"{replay.url}/v1", prices=mine))
    assert streamed(runner, llm).cost == pytest.approx((187 * 0.2 + 64 * 0.6) / 1e6)


def test_your_own_prices_win_over_the_list(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [Reply(chunks=[transcript("anthropic", "prompt_cache")[0]])]
    deal = Prices(input=1, output=5, cache_read=0.1, cache_write=1.25)
    llm = made(create_llm("anthropic", model="claude-sonnet-4-5", base_url=replay.url,
                          api_key="k", prices=deal))  # fmt: skip
    by_hand = (1_000 * 1 + 5_000 * 0.1 + 2_000 * 1.25 + 50 * 5) / 1e6
    assert streamed(runner, llm).cost == pytest.approx(by_hand)


def test_prices_for_cache_and_reasoning_default_to_input_and_output() -> None:
    usage = Usage(10_000, 500, cache_read_tokens=8_000, cache_write_tokens=1_000,
                  reasoning_tokens=300)  # fmt: skip
    assert Prices(input=2, output=8).cost(usage) == pytest.approx((10_000 * 2 + 500 * 8) / 1e6)
    split = Prices(input=2, output=8, cache_read=0.5, cache_write=2.5, reasoning=4)
    assert split.cost(usage) == pytest.approx(
        (1_000 * 2 + 8_000 * 0.5 + 1_000 * 2.5 + 200 * 8 + 300 * 4) / 1e6
    )


@pytest.mark.parametrize(
    "bad",
    [{"input": -1, "output": 1}, {"input": 1, "output": float("nan")},
     {"input": True, "output": 1}, {"input": 1, "output": 1, "cache_read": "0.1"}],
)  # fmt: skip
def test_prices_must_be_dollars_per_million_tokens(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="per million tokens"):
        Prices(**bad)


def test_prices_must_be_a_prices_object() -> None:
    with pytest.raises(TypeError, match=r"a spout\.Prices"):
        create_llm("vllm", model="m", prices={"input": 1, "output": 2})


# -- the tool loop, and without the price list ------------------------------------------------------


def test_a_tool_loop_costs_its_rounds_added(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [Reply(chunks=[openai_call_turn()]), Reply(chunks=[openai_text_turn()])]
    llm = made(create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1",
                          api_key="k"))  # fmt: skip

    def calculator(expression: str) -> str:
        """Work out an arithmetic expression."""
        return "56088"

    def weather(city: str) -> str:
        """Current weather for a city."""
        return "mild"

    stream = runner.stream_with_tools(llm, tools=[calculator, weather])
    runner.list(stream)
    response = runner.response(stream)
    rounds = stream.rounds
    assert len(rounds) == 2 and all(r.cost for r in rounds)
    assert response.cost == pytest.approx(sum(r.cost for r in rounds))


def test_without_the_price_list_a_listed_model_costs_none_and_says_why(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import spout._cost

    monkeypatch.setitem(sys.modules, "genai_prices", None)  # as if not installed
    monkeypatch.setattr(spout._cost, "_missing_noted", False)
    replay.replies = [Reply(chunks=[openai_text_turn()])]
    llm = made(create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1",
                          api_key="k"))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="spout"):
        assert llm.generate_stream("hi").response.cost is None
        assert llm.generate_stream("hi").response.cost is None
    hints = [r.getMessage() for r in caplog.records if "spout[cost]" in r.getMessage()]
    assert len(hints) == 1  # said once


# -- sessions ---------------------------------------------------------------------------------------


def test_a_session_keeps_each_turns_cost_and_adds_them_up(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn("One.")]),
                      Reply(chunks=[openai_text_turn("Two.")])]  # fmt: skip
    llm = made(create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1",
                          api_key="k"))  # fmt: skip
    each = listed(Usage(90, 12), "gpt-4o-mini", "openai")
    database = tmp_path / "conversations.db"
    with Session(provider=llm, store=database, autosave=True) as session:
        assert session.cost is None  # nothing asked yet
        session.generate_stream("first").response  # noqa: B018 - read to its end
        for _ in session.generate_stream("second"):
            pass
        assert [turn.cost for turn in session.turns] == [each, each]
        assert session.cost == pytest.approx(2 * each)
        conversation_id = session.id

    with Session.load(conversation_id, store=database, provider=llm) as again:
        assert [turn.cost for turn in again.turns] == [each, each]
        assert again.cost == pytest.approx(2 * each)
    with spout.conversations.Store(database) as store:
        assert store.get(conversation_id).cost == pytest.approx(2 * each)


def test_a_cut_turn_keeps_its_estimated_cost(replay: ReplayServer, tmp_path: Path) -> None:
    cut = openai_sse(openai_chunk({"content": "Half"})).removesuffix(b"data: [DONE]\n\n")
    replay.replies = [Reply(chunks=[cut], abort=True)]
    llm = made(create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1",
                          api_key="k", max_retries=0))  # fmt: skip
    database = tmp_path / "conversations.db"
    with Session(provider=llm, store=database, autosave=True) as session:
        with pytest.raises(spout.StreamInterruptedError):
            for _ in session.generate_stream("Tell me"):
                pass
        turn = session.turns[-1]
        assert turn.incomplete == "error"
        assert turn.cost is not None and turn.cost > 0 and turn.cost_estimated
        conversation_id = session.id
    with Session.load(conversation_id, store=database, provider=llm) as again:
        assert (again.turns[-1].cost, again.turns[-1].cost_estimated) == (turn.cost, True)


def test_a_model_the_list_does_not_price_is_looked_up_once_and_others_still_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from spout import _cost

    monkeypatch.setattr(_cost, "_UNLISTED", set())
    asked: list[str] = []
    real = genai_prices.calc_price

    def counting(usage: Any, model: str, **where: Any) -> Any:
        asked.append(model)
        return real(usage, model, **where)

    monkeypatch.setattr(genai_prices, "calc_price", counting)
    usage = Usage(input_tokens=1000, output_tokens=500)
    local = _cost.Pricing(price_list="openai", model="my-finetune", base_url="http://10.0.0.5/v1")
    assert local.cost(usage) is None
    first = len(asked)
    assert first >= 1
    assert local.cost(usage) is None
    assert len(asked) == first  # a self-hosted model: the miss is remembered
    listed = _cost.Pricing(price_list="openai", model="gpt-4o-mini")
    expected = real(_cost._listed_usage(genai_prices, usage), "gpt-4o-mini", provider_id="openai")
    assert listed.cost(usage) == pytest.approx(float(expected.total_price))
