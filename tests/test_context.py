"""The context window: the token estimate, known windows, trimming whole turns, real counts."""

from __future__ import annotations

import doctest
import json
from typing import Any, ClassVar

import pytest

import spout
from spout import ModelCapability, _context, create_llm
from spout._capabilities import Capabilities
from spout._context import (
    context_window,
    estimate_tokens,
    fit_messages,
    history_budget,
    known_context_window,
    trim_history,
)
from spout.providers._base import Provider

Message = dict[str, Any]


def user(text: str) -> Message:
    return {"role": "user", "content": text}


def assistant(text: str) -> Message:
    return {"role": "assistant", "content": text}


def tool_call(call_id: str, name: str = "lookup") -> Message:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}
        ],
    }


def tool_result(call_id: str, text: str, name: str = "lookup") -> Message:
    return {"role": "tool", "tool_call_id": call_id, "name": name, "content": text}


def test_docstring_examples() -> None:
    failed, tried = doctest.testmod(_context)
    assert tried >= 4 and failed == 0


# -- the estimate -------------------------------------------------------------------------------


def test_estimate_is_bytes_over_four_rounded_up_plus_overheads() -> None:
    assert estimate_tokens([]) == 2
    assert estimate_tokens([user("")]) == 2 + 4
    assert estimate_tokens([user("abcd")]) == 2 + 4 + 1
    assert estimate_tokens([user("abcde")]) == 2 + 4 + 2
    # UTF-8 bytes, not characters: "é" is two bytes, "日本" six.
    assert estimate_tokens([user("é" * 4)]) == 2 + 4 + 2
    assert estimate_tokens([user("日本")]) == 2 + 4 + 2
    # Additive: PROMPT_OVERHEAD once, then each message.
    assert estimate_tokens([user("abcd"), assistant("abcdefgh")]) == 2 + (4 + 1) + (4 + 2)


def test_estimate_counts_reasoning_tool_calls_results_and_parts() -> None:
    call = {
        "role": "assistant",
        "content": "ok",  # 2 bytes
        "reasoning": "hmmm",  # 4
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
            },  # 7 + 16
        ],
        "reasoning_signature": "not counted" * 100,
    }
    assert estimate_tokens([call]) == 2 + 4 + -(-(2 + 4 + 7 + 16) // 4)
    # A result that is not text counts as its JSON, as providers send it.
    result = {"role": "tool", "tool_call_id": "call_1", "name": "weather", "content": {"t": 21}}
    assert estimate_tokens([result]) == 2 + 4 + -(-len(b'{"t":21}') // 4)
    parts = {"role": "user", "content": [{"type": "text", "text": "abcd"}, "efgh"]}
    assert estimate_tokens([parts]) == 2 + 4 + 2


def test_estimate_counts_files_by_what_they_are_not_as_base64() -> None:
    # An image of a megabyte is ~1,600 tokens to a model, not the 330,000 its base64 would be:
    # counted as text, it would be trimmed off a session's history at the next call.
    big = spout.File(data=b"\x89PNG\r\n\x1a\n" + bytes(1_000_000))
    by_url = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    message = {"role": "user", "content": [{"type": "text", "text": "abcd"}, big.part(), by_url]}
    assert estimate_tokens([message]) == 2 + 4 + 1 + 2 * _context.IMAGE_TOKENS
    # A minute of 128 kbit/s MP3 is about 1,920 tokens (Gemini's 32 a second).
    mp3 = spout.File(data=b"ID3" + bytes(16_000 * 60 - 3))
    assert estimate_tokens([user_parts(mp3.part())]) == 2 + 4 + 1_920
    pdf = spout.File(data=b"%PDF-" + bytes(995), name="a.pdf")
    assert estimate_tokens([user_parts(pdf.part())]) == 2 + 4 + 250


def user_parts(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


@pytest.mark.model
def test_estimate_over_counts_english(local: spout.LLM) -> None:
    # Against the bundled model's real tokenizer, a BPE like those of the hosted models.
    text = (
        "The river wound through the valley, carrying snowmelt from the mountains past "
        "villages and fields until it reached the sea, where fishermen mended their nets."
    )
    messages = [user(text), assistant(text), user(text)]
    assert estimate_tokens(messages) >= local.count_tokens(messages=messages)


# -- context windows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("claude-sonnet-4-5", 200_000),
        ("claude-3-5-haiku-latest", 200_000),
        ("anthropic/claude-3.7-sonnet", 200_000),  # OpenRouter's name
        ("gpt-4o", 128_000),
        ("gpt-4o-mini", 128_000),
        ("openai/gpt-4o-mini", 128_000),
        ("gpt-4.1-nano", 1_047_576),
        ("o1", 200_000),
        ("o1-mini", 128_000),  # longer prefix wins over "o1"
        ("o4-mini", 200_000),
        ("gpt-3.5-turbo", 16_385),
        ("gpt-3.5-turbo-instruct", 4_096),
        ("gemini-1.5-pro", 2_097_152),
        ("models/gemini-2.5-flash", 1_048_576),
        ("llama3.1:8b", 131_072),
        ("meta-llama/Llama-3.3-70B-Instruct", 131_072),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", 8_192),
        ("my-finetune", None),
        ("gpt-5", None),
    ],
)
def test_known_windows_by_longest_prefix(model: str, window: int | None) -> None:
    assert known_context_window(model) == window


def remote(model: str) -> spout.LLM:
    """A remote LLM that is never sent anything."""
    return create_llm("openai", model=model, api_key="x", base_url="http://127.0.0.1:9")


class DeclaringProvider(Provider):
    name = "declaring"

    def __init__(self, model: str, window: Any) -> None:
        super().__init__(model)
        self.window = window

    def capabilities(self) -> Capabilities:
        return {ModelCapability.CONTEXT_WINDOW: self.window}


def test_context_window_prefers_the_declared_capability() -> None:
    assert context_window(spout.LLM(DeclaringProvider("gpt-4o", 4096))) == 4096
    # Declared as unknown: the table by name.
    assert context_window(spout.LLM(DeclaringProvider("gpt-4o", None))) == 128_000
    with remote("gpt-4o-mini") as llm:
        assert context_window(llm) == 128_000
    with remote("a-model-nobody-knows") as llm:
        assert context_window(llm) is None


class WindowedProvider(Provider):
    name = "windowed"
    context_windows: ClassVar[dict[str, int]] = {"house-": 12_000, "house-big": 64_000}


def test_a_provider_declares_its_own_models_windows() -> None:
    assert context_window(spout.LLM(WindowedProvider("house-model-2"))) == 12_000
    assert context_window(spout.LLM(WindowedProvider("org/House-Big-1"))) == 64_000
    # Every provider's table still answers for the models it knows.
    assert context_window(spout.LLM(WindowedProvider("gpt-4o"))) == 128_000
    # Its windows are its own LLMs' alone.
    assert known_context_window("house-model-2") is None


def test_history_budget_leaves_room_for_the_reply() -> None:
    assert history_budget(2048) == 2048 - 512  # a quarter of a small window
    assert history_budget(200_000) == 200_000 - 1024  # at most 1024
    assert history_budget(2048, max_tokens=100) == 1948
    assert history_budget(100, max_tokens=500) == 0


# -- trimming -----------------------------------------------------------------------------------


class Counter:
    """The estimate, with the number of calls kept."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, messages: list[Message]) -> int:
        self.calls += 1
        return estimate_tokens(messages)


def conversation(turns: int) -> list[Message]:
    messages: list[Message] = [{"role": "system", "content": "Be brief."}]
    for n in range(turns):
        messages += [user(f"question {n} " * 10), assistant(f"answer {n} " * 10)]
    return messages


def test_everything_kept_when_it_fits() -> None:
    messages = conversation(3)
    kept = fit_messages(messages, estimate_tokens(messages), estimate_tokens)
    assert kept == messages and kept is not messages


def test_drops_oldest_turns_first_and_keeps_the_system_prompt() -> None:
    messages = conversation(6)
    budget = estimate_tokens([messages[0], *messages[-4:]])  # the system prompt, 2 turns
    counter = Counter()
    kept = fit_messages(messages, budget, counter)
    assert kept == [messages[0], *messages[-4:]]
    assert estimate_tokens(kept) <= budget
    # One more token and a third turn would not fit either: the fewest turns are dropped.
    assert fit_messages(messages, budget + 1, estimate_tokens) == kept
    assert counter.calls <= 4  # bisection over 6 turns, plus the first count


def test_system_messages_anywhere_are_never_dropped() -> None:
    note = {"role": "developer", "content": "Now answer in French."}
    messages = [user("a" * 400), assistant("b" * 400), note, user("c"), assistant("d")]
    kept = fit_messages(
        messages, estimate_tokens([note, user("c"), assistant("d")]), estimate_tokens
    )
    assert kept == [note, user("c"), assistant("d")]


def test_a_tool_call_is_never_cut_from_its_result() -> None:
    messages = [
        {"role": "system", "content": "You look things up."},
        user("Look up Oslo"),
        tool_call("call_1"),
        tool_result("call_1", "x" * 400),
        assistant("Oslo is in Norway."),
        user("And Bergen?"),
        tool_call("call_2"),
        tool_result("call_2", "y" * 40),
        assistant("Bergen is too."),
    ]
    # Budgets from "the last turn alone" up to "all of it": every cut falls between turns.
    for budget in range(
        estimate_tokens([messages[0], *messages[5:]]), estimate_tokens(messages) + 1
    ):
        kept = fit_messages(messages, budget, estimate_tokens)
        assert kept in (messages, [messages[0], *messages[5:]])
        calls = {c["id"] for m in kept for c in m.get("tool_calls", ())}
        results = {m["tool_call_id"] for m in kept if m["role"] == "tool"}
        assert calls == results


def test_messages_before_the_first_user_message_are_a_turn() -> None:
    messages = [assistant("Hello! Ask me anything." * 20), user("Hi"), assistant("Hello")]
    assert fit_messages(messages, estimate_tokens(messages[1:]), estimate_tokens) == messages[1:]


def test_the_last_turn_is_kept_even_over_budget() -> None:
    messages = conversation(3)
    kept = fit_messages(messages, 1, estimate_tokens)
    assert kept == [messages[0], *messages[-2:]]
    lone = [user("x" * 1000)]
    assert fit_messages(lone, 1, estimate_tokens) == lone


def test_input_is_not_changed() -> None:
    messages = conversation(5)
    before = json.dumps(messages)
    copy = list(messages)
    fit_messages(messages, 50, estimate_tokens)
    assert json.dumps(messages) == before and messages == copy
    assert all(a is b for a, b in zip(messages, copy, strict=True))


def one_more_turn(messages: list[Message], kept: list[Message]) -> list[Message]:
    """What a trim of ``conversation()`` kept, with the turn before it back."""
    return [messages[0], *messages[-(len(kept) + 1) :]]


def test_trim_history_uses_max_history_tokens_then_the_window() -> None:
    messages = conversation(40)  # ~2800 estimated tokens
    with remote("gpt-4o-mini") as llm:
        assert trim_history(llm, messages) == messages  # 128k window: all of it fits
        kept = trim_history(llm, messages, max_history_tokens=300)
        assert kept[0] == messages[0] and kept[-1] == messages[-1]
        assert estimate_tokens(kept) <= 300 < estimate_tokens(one_more_turn(messages, kept))
    small = spout.LLM(DeclaringProvider("x", 1000))
    kept = trim_history(small, messages, max_tokens=500)
    assert estimate_tokens(kept) <= 500 < estimate_tokens(one_more_turn(messages, kept))
    with remote("unknown-model") as llm:
        assert trim_history(llm, messages) == messages  # no window known: nothing trimmed


# -- counting -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> spout.LLM:
    """The bundled model (it loads in about a second)."""
    return create_llm("local")


@pytest.mark.model
def test_local_counts_with_its_own_tokenizer(local: spout.LLM) -> None:
    messages = [{"role": "system", "content": "Be brief."}, user("Name three rivers.")]
    loaded = local.provider._model()  # type: ignore[attr-defined]
    formatted = loaded.formatter(messages=messages)
    expected = len(
        loaded.llama.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )
    )
    assert local.count_tokens(messages=messages) == expected
    assert local.count_tokens("Name three rivers.", system_prompt="Be brief.") == expected
    assert (
        local.count_tokens("Name three rivers, and their lengths.", system_prompt="Be brief.")
        > expected
    )
    # The count is what generation reports as its input.
    response = local.generate(messages=messages, max_tokens=1)
    assert response.usage.input_tokens == expected


@pytest.mark.model
def test_local_trims_by_its_tokenizer(local: spout.LLM) -> None:
    messages = conversation(60)  # far over the 2048-token window
    assert local.count_tokens(messages=messages) > 2048
    kept = trim_history(local, messages)
    assert kept[0] == messages[0] and kept[-2:] == messages[-2:]
    assert (
        local.count_tokens(messages=kept)
        <= history_budget(2048)
        < local.count_tokens(messages=one_more_turn(messages, kept))
    )


def test_remote_count_is_the_estimate() -> None:
    with remote("gpt-4o-mini") as llm:
        assert llm.provider.count_tokens([user("hi")]) is None
        assert llm.count_tokens("Hello, world") == estimate_tokens([user("Hello, world")]) == 9
        assert llm.count_tokens("Hi", system_prompt="Be brief.") == estimate_tokens(
            [{"role": "system", "content": "Be brief."}, user("Hi")]
        )
    with create_llm(
        "openai",
        model="gpt-4o-mini",
        api_key="x",
        base_url="http://127.0.0.1:9",
        system_prompt="Be brief.",
    ) as llm:
        assert llm.count_tokens("Hi") == estimate_tokens(
            [{"role": "system", "content": "Be brief."}, user("Hi")]
        )
    with remote("gpt-4o-mini") as llm, pytest.raises(ValueError, match="nothing to generate"):
        llm.count_tokens()
