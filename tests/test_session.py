"""Sessions: every turn kept, cut streams kept as incomplete, providers switched mid-way."""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import spout
from helpers import Runner
from replay_server import ReplayServer, Reply
from scripted_turns import (
    anthropic_text_turn,
    anthropic_thinking_call_turn,
    gemini_call_turn,
    gemini_text_turn,
    openai_call_turn,
    openai_chunk,
    openai_refusal_turn,
    openai_sse,
    openai_text_turn,
    turns,
)
from spout import Session, Tool, create_llm, tool
from spout._store import Store


def calculator_fn(expression: str) -> str:
    if not set(expression) <= set("0123456789+-*/(). "):
        raise ValueError(f"not arithmetic: {expression!r}")
    return str(eval(expression))


calculator = Tool(
    name="calculator",
    description="Evaluates an arithmetic expression",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
    function=calculator_fn,
)


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"{city}: 21 degrees"


@pytest.fixture(scope="module")
def local() -> Iterator[spout.LLM]:
    llm = create_llm("local")
    yield llm
    llm.close()


def openai_at(server: ReplayServer) -> spout.LLM:
    return create_llm(
        "openai", model="gpt-4o-mini", base_url=f"{server.url}/v1", api_key="k", max_retries=0
    )


def drain(session: Session, runner: Runner, prompt: str | None, **params: Any) -> list[Any]:
    """One streamed turn, read to its end, sync or async."""
    return runner.list(runner.stream(session, prompt, **params))


def drain_tools(session: Session, runner: Runner, prompt: str, **params: Any) -> list[Any]:
    return runner.list(runner.stream_with_tools(session, prompt, **params))


# -- the bundled model: several turns, the model sees the earlier ones ---------------------------


@pytest.mark.model
def test_local_turns_carry_the_history(local: spout.LLM, runner: Runner) -> None:
    session = Session(local, system_prompt="Be brief.", temperature=0, max_tokens=16)
    first = drain(session, runner, "My name is Ada.")
    second = drain(session, runner, "What is my name?")
    third = runner.generate(session, "Say goodbye.")

    assert [turn.text for turn in session.turns] == ["".join(first), "".join(second), third.text]
    assert [m["role"] for m in session.messages] == ["user", "assistant"] * 3
    assert session.messages[0] == {"role": "user", "content": "My name is Ada."}
    # The model saw the earlier turns: the second request's prompt is exactly the system
    # prompt, the first exchange and the new question, counted by the model's tokenizer.
    sent_second = session.messages[:3]
    assert session.turns[1].usage.input_tokens == local.count_tokens(
        messages=sent_second, system_prompt="Be brief."
    )
    assert session.turns[2].usage.input_tokens == local.count_tokens(
        messages=session.messages[:5], system_prompt="Be brief."
    )
    for turn in session.turns:
        assert turn.incomplete is None
        assert turn.provider == "local" and turn.model == local.model
        assert turn.usage.output_tokens and turn.duration and turn.duration > 0
        assert turn.time_to_first_token is not None


@pytest.mark.model
def test_add_message_then_stream_with_no_prompt(local: spout.LLM) -> None:
    session = Session(local, temperature=0, max_tokens=8)
    session.add_message("user", "Tell me about quantum physics.")
    assert session.messages == [{"role": "user", "content": "Tell me about quantum physics."}]
    text = "".join(session.generate_stream())
    assert session.messages[-1] == {"role": "assistant", "content": text}
    assert len(session.turns) == 1 and session.turns[0].messages[0]["role"] == "user"


@pytest.mark.model
def test_a_loop_left_early_keeps_what_was_shown(local: spout.LLM) -> None:
    session = Session(local, temperature=0, max_tokens=60)
    shown = []
    for chunk in session.generate_stream("Count from 1 to 30."):
        shown.append(chunk)
        if len(shown) == 3:
            break
    turn = session.turns[-1]
    assert turn.incomplete == "closed"
    assert turn.text == "".join(shown)
    assert session.messages[-1] == {"role": "assistant", "content": "".join(shown)}
    # The model was released: the next turn runs, and sends the cut reply as history.
    session.generate("Go on.", max_tokens=4)
    assert session.turns[-1].incomplete is None
    assert session.turns[-1].usage.input_tokens == local.count_tokens(messages=session.messages[:3])


@pytest.mark.model
def test_a_stream_left_open_is_kept_at_the_next_call(local: spout.LLM) -> None:
    session = Session(local, temperature=0, max_tokens=40)
    stream = session.generate_stream("Count from 1 to 30.")
    iterator = iter(stream)
    got = next(iterator) + next(iterator)
    session.generate("Stop.", max_tokens=2)  # the open stream is kept as it stands first
    assert [t.incomplete for t in session.turns] == ["closed", None]
    assert session.turns[0].text == got


@pytest.mark.model
def test_ctrl_c_in_the_loop_body_is_kept_as_interrupted(local: spout.LLM) -> None:
    session = Session(local, temperature=0, max_tokens=60)
    shown: list[str] = []
    with (
        pytest.raises(KeyboardInterrupt),
        session.generate_stream("Count from 1 to 30.") as stream,
    ):
        for chunk in stream:
            shown.append(chunk)
            if len(shown) == 2:
                raise KeyboardInterrupt
    turn = session.turns[-1]
    assert turn.incomplete == "interrupted" and turn.text == "".join(shown)
    # Without ``with``, a loop left by an exception of the caller's is kept as "closed".
    with pytest.raises(RuntimeError):
        for _chunk in session.generate_stream("Again."):
            raise RuntimeError("the caller's own error")
    assert session.turns[-1].incomplete == "closed"


@pytest.mark.model
def test_cancelled_task_keeps_its_partial_turn(local: spout.LLM) -> None:
    session = Session(local, temperature=0, max_tokens=200)
    shown: list[str] = []

    async def read() -> None:
        async for chunk in session.agenerate_stream("Count from 1 to 100."):
            shown.append(chunk)

    async def main() -> None:
        task = asyncio.create_task(read())
        while len(shown) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    turn = session.turns[-1]
    assert turn.incomplete == "cancelled"
    assert turn.text == "".join(shown)


@pytest.mark.model
def test_discarded_incomplete_turn_leaves_the_prompt_to_resend(local: spout.LLM) -> None:
    session = Session(local, temperature=0, max_tokens=40, keep_incomplete=False)
    for _ in session.generate_stream("Count from 1 to 30."):
        break
    assert session.turns == []
    assert session.messages == [{"role": "user", "content": "Count from 1 to 30."}]
    text = session.generate(max_tokens=4).text
    assert session.messages == [
        {"role": "user", "content": "Count from 1 to 30."},
        {"role": "assistant", "content": text},
    ]


@pytest.mark.model
def test_stream_and_generate_keep_the_same_turn(local: spout.LLM) -> None:
    streamed = Session(local, temperature=0, max_tokens=12, seed=3)
    plain = Session(local, temperature=0, max_tokens=12, seed=3)
    "".join(streamed.generate_stream("Name a river."))
    plain.generate("Name a river.")
    assert streamed.messages == plain.messages


# -- trimming to the context window ---------------------------------------------------------------


@pytest.mark.model
def test_history_trimmed_to_a_small_context(tmp_path: Path) -> None:
    small = create_llm("local", n_ctx=512)
    try:
        session = Session(small, system_prompt="You are terse.", temperature=0, max_tokens=8)
        filler = "The river runs past the old mill and on to the sea. " * 6
        for i in range(12):
            session.add_message("user", f"Note {i}: {filler}")
            session.add_message("assistant", f"Noted {i}.")
        everything = [*session.messages, {"role": "user", "content": "Which note was last?"}]
        assert small.count_tokens(messages=everything, system_prompt="You are terse.") > 512

        sending = session.messages_to_send("Which note was last?")
        assert sending[-1] == {"role": "user", "content": "Which note was last?"}
        assert sending[-3:-1] == everything[-3:-1]  # the newest exchange kept whole
        assert sending == everything[len(everything) - len(sending) :]  # oldest dropped first
        budget = 512 - 8  # the window less the reply's max_tokens
        assert small.count_tokens(messages=sending, system_prompt="You are terse.") <= budget

        response = session.generate("Which note was last?")
        assert response.usage.input_tokens is not None and response.usage.input_tokens <= budget
        assert len(session.messages) == len(everything) + 1  # the session keeps everything

        untrimmed = Session(small, system_prompt="You are terse.", max_history_tokens=100_000)
        for message in everything[:-1]:
            untrimmed.add_message(message["role"], message["content"])
        with pytest.raises(spout.ContextWindowExceededError):
            untrimmed.generate("Which note was last?", max_tokens=8)
    finally:
        small.close()


def test_trimming_never_splits_a_call_from_its_result(replay: ReplayServer) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn(), openai_text_turn("Ok."))
    session = Session(openai_at(replay), system_prompt="Sys.")
    drain_tools(session, Runner("sync"), "Sums and weather", tools=[calculator, get_weather])
    tool_turn = list(session.turns[0].messages)
    assert [m["role"] for m in tool_turn] == ["user", "assistant", "tool", "tool", "assistant"]

    # A budget the tool turn does not fit in: it goes whole, never the call without its result.
    session.max_history_tokens = (
        spout._context.estimate_tokens(
            [{"role": "system", "content": "Sys."}, {"role": "user", "content": "Thanks!"}]
        )
        + 5
    )
    "".join(session.generate_stream("Thanks!"))
    sent = replay.requests[-1].json()["messages"]
    assert sent == [
        {"role": "system", "content": "Sys."},
        {"role": "user", "content": "Thanks!"},
    ]
    # With room for it, the turn is sent whole.
    session.max_history_tokens = None
    assert session.messages_to_send("More?")[:5] == tool_turn


# -- tool turns, and switching provider with tool history ----------------------------------------


def test_tool_turn_kept_whole(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn())
    session = Session(openai_at(replay))
    items = drain_tools(session, runner, "Sums and weather", tools=[calculator, get_weather])
    assert [i for i in items if isinstance(i, str)][-1]
    (turn,) = session.turns
    assert turn.incomplete is None
    assert list(turn.messages) == [
        {"role": "user", "content": "Sums and weather"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_calc",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "123 * 456"}'},
                },
                {
                    "id": "call_wx",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo \\u00e9\\""}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_calc", "name": "calculator", "content": "56088"},
        {
            "role": "tool",
            "tool_call_id": "call_wx",
            "name": "get_weather",
            "content": 'Oslo é": 21 degrees',
        },
        {"role": "assistant", "content": "123 * 456 = 56088, and Oslo is mild."},
    ]
    # Both rounds' usage, summed.
    assert (turn.usage.input_tokens, turn.usage.output_tokens) == (140, 32)
    assert turn.text == "Let me check.123 * 456 = 56088, and Oslo is mild."


def test_switch_to_anthropic_sends_tool_history_in_its_shape(replay: ReplayServer) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn())
    session = Session(openai_at(replay), system_prompt="Be brief.")
    drain_tools(session, Runner("sync"), "Sums and weather", tools=[calculator, get_weather])

    other = ReplayServer().start()
    try:
        other.replies = turns(anthropic_text_turn("Glad to help."))
        session.provider = create_llm(
            "anthropic",
            model="claude-sonnet-4-5",
            base_url=other.url,
            api_key="k",
            max_retries=0,
        )
        assert "".join(session.generate_stream("Thanks!", max_tokens=50)) == "Glad to help."
        body = other.requests[0].json()
    finally:
        other.stop()
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": "Sums and weather"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "call_calc",
                    "name": "calculator",
                    "input": {"expression": "123 * 456"},
                },
                {
                    "type": "tool_use",
                    "id": "call_wx",
                    "name": "get_weather",
                    "input": {"city": 'Oslo é"'},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_calc", "content": "56088"},
                {"type": "tool_result", "tool_use_id": "call_wx", "content": 'Oslo é": 21 degrees'},
            ],
        },
        {"role": "assistant", "content": "123 * 456 = 56088, and Oslo is mild."},
        {"role": "user", "content": "Thanks!"},
    ]
    assert [t.provider for t in session.turns] == ["openai", "anthropic"]


def test_switch_from_gemini_gives_calls_unique_ids_and_drops_its_signatures(
    replay: ReplayServer,
) -> None:
    # Gemini numbers calls per response (call_0, call_1): two rounds reuse the same ids.
    replay.replies = turns(gemini_call_turn(), gemini_call_turn(), gemini_text_turn())
    gemini = create_llm(
        "gemini", model="gemini-2.5-flash", base_url=replay.url, api_key="k", max_retries=0
    )
    session = Session(gemini)
    drain_tools(session, Runner("sync"), "Weather and sums", tools=[calculator, get_weather])
    ids = [c["id"] for m in session.messages for c in m.get("tool_calls", ())]
    assert ids == ["call_0", "call_1", "call_0", "call_1"]
    assert session.messages[1]["tool_calls"][0]["signature"] == "CpwCAdHtim9signature"

    other = ReplayServer().start()
    try:
        other.replies = turns(openai_text_turn("Done."))
        session.provider = openai_at(other)
        "".join(session.generate_stream("Thanks"))
        sent = other.requests[0].json()["messages"]
    finally:
        other.stop()
    calls = [c for m in sent if m["role"] == "assistant" for c in m.get("tool_calls", ())]
    results = [m["tool_call_id"] for m in sent if m["role"] == "tool"]
    assert len({c["id"] for c in calls}) == 4  # unique across the conversation
    assert results == [c["id"] for c in calls]  # each result still names its call
    assert all("signature" not in c for c in calls)
    # Back on Gemini, its own turns keep their signatures.
    session.provider = gemini
    assert session.messages_to_send("again")[1]["tool_calls"][0]["signature"] == (
        "CpwCAdHtim9signature"
    )


# -- broken streams are kept as incomplete -------------------------------------------------------


def cut_reply() -> Reply:
    body = openai_sse(
        openai_chunk({"role": "assistant", "content": "The first half"}),
        openai_chunk({"content": " and some more"}),
    )
    # The connection drops before the stream says it finished.
    return Reply(chunks=[body[: body.index(b"data: [DONE]")]], abort=True)


def test_broken_stream_stored_incomplete_with_its_partial_text(
    replay: ReplayServer, runner: Runner, tmp_path: Path
) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn("Hello there.")]), cut_reply()]
    session = Session(openai_at(replay), store=tmp_path / "c.db", autosave=True)
    drain(session, runner, "Hi")
    shown: list[str] = []
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.list(runner.stream(session, "Tell me more"), each=shown.append)
    assert caught.value.partial is not None
    turn = session.turns[-1]
    assert turn.incomplete == "error" and turn.error and "StreamInterruptedError" in turn.error
    assert turn.text == "".join(shown) == "The first half and some more"
    session.close()

    with Store(tmp_path / "c.db") as store:
        stored = store.turns(session.id)
    assert [t.to_dict() for t in stored] == [t.to_dict() for t in session.turns]
    assert stored[-1].incomplete == "error"


def test_error_before_any_text_keeps_the_prompt(replay: ReplayServer) -> None:
    replay.replies = [
        Reply(
            status=400,
            chunks=[b'{"error": {"message": "bad"}}'],
            headers={"Content-Type": "application/json"},
        )
    ]
    session = Session(openai_at(replay))
    with pytest.raises(spout.BadRequestError):
        session.generate_stream("Hi")
    (turn,) = session.turns
    assert turn.incomplete == "error"
    assert list(turn.messages) == [{"role": "user", "content": "Hi"}]


@pytest.mark.model
def test_bad_input_changes_nothing(local: spout.LLM) -> None:
    session = Session(local)
    with pytest.raises(TypeError, match="prompt must be a str"):
        session.generate_stream(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="temperature"):
        session.generate("hi", temperature="hot")
    assert session.turns == [] and session.messages == []
    with pytest.raises(ValueError, match="system_prompt="):
        session.add_message("system", "no")
    with pytest.raises(ValueError, match="tool_call_id"):
        session.add_message("tool", "42")
    with pytest.raises(ValueError, match="max_history_tokens"):
        Session(local, max_history_tokens=0)


# -- storing and loading --------------------------------------------------------------------------


def test_saved_session_loads_and_goes_on(replay: ReplayServer, tmp_path: Path) -> None:
    replay.replies = turns(openai_call_turn(), openai_text_turn(), openai_text_turn("Again."))
    path = tmp_path / "conversations.db"
    session = Session(openai_at(replay), system_prompt="Be brief.", store=path)
    drain_tools(session, Runner("sync"), "Sums and weather", tools=[calculator, get_weather])
    assert session.unsaved == 1
    session.save()
    assert session.unsaved == 0
    session.close()

    again = Session.load(session.id[:8], provider=openai_at(replay), store=path)
    assert again.id == session.id and again.system_prompt == "Be brief."
    assert again.messages == session.messages
    assert "".join(again.generate_stream("And again?")) == "Again."
    sent = replay.requests[-1].json()["messages"]
    assert [m["role"] for m in sent] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
    ]
    assert [m["content"] for m in sent[1:6]] == [m["content"] for m in session.messages]
    again.save()
    again.close()

    latest = Session.last(provider=openai_at(replay), store=path)
    assert len(latest.turns) == 2 and latest.title == "Sums and weather"
    latest.close()


REFUSAL = "I can\u2019t help with that."


def test_a_refusal_is_kept_as_one_and_goes_back_as_each_provider_takes_it(
    replay: ReplayServer, runner: Runner, tmp_path: Path
) -> None:
    replay.replies = turns(openai_refusal_turn(), openai_text_turn("Because it is unsafe."))
    path = tmp_path / "c.db"
    session = Session(openai_at(replay), store=path, autosave=True)
    assert drain(session, runner, "How do I pick a lock?") == []  # a refusal is not text
    (turn,) = session.turns
    refused = {"role": "assistant", "content": "", "refusal": REFUSAL}
    assert list(turn.messages) == [{"role": "user", "content": "How do I pick a lock?"}, refused]
    assert (turn.text, turn.refusal, turn.finish_reason) == ("", REFUSAL, "refusal")
    session.close()

    # Saved and loaded, it is still a refusal; the Markdown export marks it as one.
    again = Session.load(session.id, provider=openai_at(replay), store=path, autosave=True)
    assert again.messages == session.messages and again.turns[0].refusal == REFUSAL
    markdown = spout.conversations.export(session.id, "md", store=path)
    assert f"> **Refusal**\n>\n> {REFUSAL}" in markdown
    exported = spout.conversations.export(session.id, "json", store=path)
    assert '"refusal":' in exported

    # This server is not OpenAI's own: the refusal goes as the assistant's text.
    assert "".join(again.generate_stream("Why not?")) == "Because it is unsafe."
    assert replay.requests[-1].json()["messages"][1] == {"role": "assistant", "content": REFUSAL}

    # Anthropic has no refusal field, and refuses an empty assistant turn: the text again.
    other = ReplayServer().start()
    try:
        other.replies = turns(anthropic_text_turn("Understood."))
        again.provider = create_llm(
            "anthropic",
            model="claude-sonnet-4-5",
            base_url=other.url,
            api_key="k",
            max_retries=0,
        )
        assert "".join(again.generate_stream("OK.", max_tokens=50)) == "Understood."
        body = other.requests[0].json()
    finally:
        other.stop()
    assert body["messages"][1] == {"role": "assistant", "content": REFUSAL}
    again.close()


def test_a_cut_refusal_is_kept_incomplete(replay: ReplayServer, runner: Runner) -> None:
    body = openai_refusal_turn()
    replay.replies = [
        Reply(chunks=[body[: body.index(b'"stop"')].rsplit(b"\n\n", 1)[0] + b"\n\n"], abort=True)
    ]
    session = Session(openai_at(replay))
    with pytest.raises(spout.StreamInterruptedError):
        drain(session, runner, "How do I pick a lock?")
    (turn,) = session.turns
    assert turn.incomplete == "error"
    assert turn.messages[-1] == {"role": "assistant", "content": "", "refusal": REFUSAL}


def test_the_tool_loop_keeps_a_refusal(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(openai_refusal_turn())
    session = Session(openai_at(replay))
    items = drain_tools(session, runner, "Weather at the secret base?", tools=[get_weather])
    assert items == []
    (turn,) = session.turns
    assert turn.refusal == REFUSAL and turn.messages[-1]["refusal"] == REFUSAL
    assert turn.finish_reason == "refusal"


def test_last_with_nothing_stored(tmp_path: Path) -> None:
    with pytest.raises(spout.ConversationNotFoundError, match="no conversation"):
        Session.last(store=tmp_path / "empty.db")


def test_failed_autosave_keeps_the_turn_and_the_store(
    replay: ReplayServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spout._store, "BUSY_TIMEOUT", 0.2)
    replay.replies = turns(openai_text_turn("One."), openai_text_turn("Two."))
    path = tmp_path / "c.db"
    session = Session(openai_at(replay), store=path, autosave=True)
    "".join(session.generate_stream("first"))
    before = [t.to_dict() for t in Store(path).turns(session.id)]

    # Another process holds the write lock for longer than the store waits.
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(spout.StoreError, match="locked"):
            "".join(session.generate_stream("second"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [t.text for t in session.turns] == ["One.", "Two."]  # nothing lost in memory
    assert session.unsaved == 1
    with Store(path) as store:
        assert [t.to_dict() for t in store.turns(session.id)] == before
    session.save()
    with Store(path) as store:
        assert [t.text for t in store.turns(session.id)] == ["One.", "Two."]
    session.close()


# -- a process stopped mid-stream ------------------------------------------------------------------

_CHILD = """
import sys
from spout import Session, create_llm

llm = create_llm("openai", model="m", base_url=sys.argv[1], api_key="k", max_retries=0)
session = Session(llm, store=sys.argv[2], autosave=True)
"".join(session.generate_stream("first"))
print("saved", session.id, flush=True)
with session.generate_stream("second") as stream:
    for chunk in stream:
        print("chunk", repr(chunk), flush=True)
"""


def slow_reply(words: int = 40) -> Reply:
    body = [
        openai_sse(openai_chunk({"content": f"w{i} "})).removesuffix(b"data: [DONE]\n\n")
        for i in range(words)
    ]
    return Reply(chunks=[*body, openai_sse(openai_chunk({}, "stop"))], delay=0.1)


def start_child(replay: ReplayServer, path: Path) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, f"{replay.url}/v1", str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    saved = child.stdout.readline().split()
    assert saved[0] == "saved", saved
    return child, saved[1]


def read_chunks(child: subprocess.Popen[str], count: int) -> list[str]:
    assert child.stdout is not None
    return [ast.literal_eval(child.stdout.readline().split(" ", 1)[1]) for _ in range(count)]


def test_process_killed_mid_stream_leaves_a_readable_store(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn("Hello.")]), slow_reply()]
    path = tmp_path / "c.db"
    child, conversation_id = start_child(replay, path)
    try:
        read_chunks(child, 3)
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    with Store(path) as store:
        stored = store.turns(conversation_id)
    # As it was before the cut turn: the first turn whole, nothing half-written.
    assert [t.text for t in stored] == ["Hello."]
    assert stored[0].incomplete is None


def test_ctrl_c_mid_stream_stores_the_turn_as_interrupted(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.replies = [Reply(chunks=[openai_text_turn("Hello.")]), slow_reply()]
    path = tmp_path / "c.db"
    child, conversation_id = start_child(replay, path)
    try:
        shown = read_chunks(child, 3)
        child.send_signal(signal.SIGINT)
        assert child.stdout is not None
        rest = child.stdout.read()
        assert child.wait(timeout=10) != 0  # KeyboardInterrupt ended it, after the turn was saved
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdout is not None
        child.stdout.close()
    shown += [ast.literal_eval(line.split(" ", 1)[1]) for line in rest.splitlines()]
    with Store(path) as store:
        stored = store.turns(conversation_id)
    assert [t.incomplete for t in stored] == [None, "interrupted"]
    assert stored[1].text == "".join(shown)
    assert stored[1].messages[0] == {"role": "user", "content": "second"}


# -- reasoning kept with its signature -------------------------------------------------------------


def test_thinking_turn_keeps_reasoning_and_sends_it_back(replay: ReplayServer) -> None:
    replay.replies = turns(
        anthropic_thinking_call_turn(), anthropic_text_turn(), anthropic_text_turn("Bye.")
    )
    llm = create_llm(
        "anthropic", model="claude-sonnet-4-5", base_url=replay.url, api_key="k", max_retries=0
    )
    session = Session(llm)
    drain_tools(
        session,
        Runner("sync"),
        "Weather in Oslo?",
        tools=[get_weather],
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    calling = session.messages[1]
    assert calling["reasoning"] == "The user wants weather."
    assert calling["reasoning_signature"] == "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"
    "".join(
        session.generate_stream(
            "Thanks", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024}
        )
    )
    sent = replay.requests[-1].json()["messages"]
    assert sent[1]["content"][0] == {
        "type": "thinking",
        "thinking": "The user wants weather.",
        "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h",
    }


# -- files ----------------------------------------------------------------------------------------

# A PNG's signature and a little more: enough for its type to be found from its bytes.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)


def png_part(data: bytes = PNG) -> dict[str, Any]:
    """The portable part a PNG is sent as (OpenAI chat's own shape)."""
    encoded = base64.b64encode(data).decode()
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}


def test_files_go_with_the_user_turn_and_again_after_a_reload(
    replay: ReplayServer, runner: Runner, tmp_path: Path
) -> None:
    replay.replies = turns(openai_text_turn("A cat."), openai_text_turn("Still a cat."))
    path = tmp_path / "c.db"
    session = Session(openai_at(replay), store=path, autosave=True)
    cat = spout.File(data=PNG, name="cat.png")
    drain(session, runner, "What is in this picture?", files=[cat])
    asked = {
        "role": "user",
        "content": [{"type": "text", "text": "What is in this picture?"}, png_part()],
    }
    assert replay.requests[0].json()["messages"] == [asked]
    assert session.messages[0] == asked
    assert session.turns[0].file_names == {hashlib.sha256(PNG).hexdigest(): "cat.png"}
    session.close()

    again = Session.load(session.id, provider=openai_at(replay), store=path, autosave=True)
    assert again.messages[0] == asked
    assert "".join(runner.list(runner.stream(again, "And now?"))) == "Still a cat."
    sent = replay.requests[-1].json()["messages"]
    # The same bytes went out again, in the portable form, with the rest of the history.
    assert sent == [
        asked,
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And now?"},
    ]
    again.close()


def test_add_message_takes_files_for_a_user_message_only(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.replies = turns(openai_text_turn("Two cats."))
    (tmp_path / "cat.png").write_bytes(PNG)
    session = Session(openai_at(replay))
    with pytest.raises(ValueError, match="user message"):
        session.add_message("assistant", "Here", files=[tmp_path / "cat.png"])
    session.add_message(
        "user", "Compare these", files=[tmp_path / "cat.png", str(tmp_path / "cat.png")]
    )
    assert session.messages == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Compare these"}, png_part(), png_part()],
        }
    ]
    "".join(session.generate_stream())
    assert replay.requests[0].json()["messages"] == session.messages[:1]
    assert session.turns[0].file_names == {hashlib.sha256(PNG).hexdigest(): "cat.png"}


def test_files_on_a_call_without_a_prompt_join_the_pending_message(replay: ReplayServer) -> None:
    replay.replies = turns(openai_text_turn("A cat."))
    session = Session(openai_at(replay))
    session.add_message("user", "Look:")
    "".join(session.generate_stream(files=[spout.File(data=PNG)]))
    sent = replay.requests[0].json()["messages"]
    assert sent == [{"role": "user", "content": [{"type": "text", "text": "Look:"}, png_part()]}]


def test_a_file_the_provider_cannot_take_leaves_the_session_as_it_was(
    replay: ReplayServer, runner: Runner, tmp_path: Path
) -> None:
    llm = create_llm(
        "anthropic", model="claude-sonnet-4-5", base_url=replay.url, api_key="k", max_retries=0
    )
    session = Session(llm, store=tmp_path / "c.db", autosave=True)
    session.add_message("user", "Listen to this")
    with pytest.raises(spout.ConfigurationError, match=r"'anthropic'.*'song.wav'"):
        runner.stream(session, "What is it?", files=[spout.File(data=WAV, name="song.wav")])
    with pytest.raises(spout.ConfigurationError, match=r"cannot read file .*missing\.png"):
        runner.generate(session, "And this?", files=[tmp_path / "missing.png"])
    # Nothing sent, no turn kept, and the message added before waits as it was.
    assert replay.requests == []
    assert session.turns == []
    assert session.messages == [{"role": "user", "content": "Listen to this"}]


def test_a_file_past_the_stores_limit_is_refused_before_it_is_sent(
    replay: ReplayServer, tmp_path: Path
) -> None:
    replay.replies = turns(openai_text_turn("A cat."), openai_text_turn("The same cat."))
    store = Store(tmp_path / "c.db", max_conversation_file_bytes=len(PNG) + 10)
    session = Session(openai_at(replay), store=store, autosave=True)
    "".join(session.generate_stream("One", files=[spout.File(data=PNG)]))
    before = [t.to_dict() for t in store.turns(session.id)]
    other = PNG + b"another picture"
    with pytest.raises(spout.StoreError, match=r"over the 218 a conversation may keep"):
        session.generate_stream("Two", files=[spout.File(data=other)])
    assert len(replay.requests) == 1  # refused before the call, not after the reply
    assert [t.to_dict() for t in session.turns] == before
    assert [t.to_dict() for t in store.turns(session.id)] == before
    # The same file again takes no more room: it is kept once.
    assert (
        "".join(session.generate_stream("Again", files=[spout.File(data=PNG)])) == "The same cat."
    )
    assert len(store.turns(session.id)) == 2
    session.close()
    store.close()


def test_files_in_the_history_go_to_the_next_provider_in_its_shape(replay: ReplayServer) -> None:
    replay.replies = turns(openai_text_turn("A cat."))
    session = Session(openai_at(replay))
    "".join(session.generate_stream("What is this?", files=[spout.File(data=PNG)]))
    other = ReplayServer().start()
    try:
        other.replies = turns(anthropic_text_turn("Yes, a cat."))
        session.provider = create_llm(
            "anthropic", model="claude-sonnet-4-5", base_url=other.url, api_key="k", max_retries=0
        )
        assert "".join(session.generate_stream("Sure?")) == "Yes, a cat."
        sent = other.requests[0].json()["messages"]
    finally:
        other.stop()
    # Anthropic's image block (docs.anthropic.com, "Vision": a base64 source).
    assert sent[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(PNG).decode(),
            },
        },
    ]
