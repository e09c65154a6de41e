"""The seeds' own calls: each example of the five documents spout was made from, run with
spout's names on the bundled model.

The seeds (``/work/shared/seeds/``) show the API users expect, written against AbstractLLM,
LLM4S, CLLM (litellm) and ritellm. Each test below keeps its example's shape (its calls,
loops, ``isinstance`` checks and keyword arguments) and asserts what the example promises.
Where a seed names a hosted model ("gpt-4", "claude-3-opus", "llama3", "gpt-3.5-turbo"), the
bundled SmolLM2-135M stands in: it is the one real model here. Its answers are poor, so the
tests assert the mechanics (chunks, types, tool-call shape, results, history), not wisdom.

=================================================  ==========================================
seed and section                                   test
=================================================  ==========================================
000 Capability Declaration                         test_000_capability_declaration
000 Common Interface (sync generator, async gen.)  test_000_basic_usage,
                                                   test_000_async_streaming_iterated,
                                                   test_000_async_streaming_awaited
000 Provider Implementations (the openai,          not run: code inside the library, written
    anthropic, huggingface_hub, ollama SDK calls)  against vendor SDKs; spout's adapters do it
                                                   (tests/providers/, replayed wire bytes)
000 User Interface: Basic Usage                    test_000_basic_usage
000 User Interface: Buffered Streaming             test_001_buffer_options (the same example)
000 User Interface: Asynchronous Streaming         test_000_async_streaming_iterated
000 Testing Strategy: test_streaming(any_provider) test_streaming
001 Basic Streaming: Stream Text Responses         test_001_stream_text_responses
001 Basic Streaming: Stream with Sessions          test_001_stream_with_sessions
001 Streaming with Custom Processing               test_001_custom_processing
001 Async Streaming                                test_001_async_streaming
001 Streaming with Tools                           test_001_streaming_with_tools_sync,
                                                   test_001_streaming_with_tools_async
001 Buffer Options                                 test_001_buffer_options
001 Provider-Specific (OpenAI, Anthropic, Ollama)  test_001_provider_specific_chunk_sizes
001 Real-time Chat Interfaces (chat_loop)          test_001_chat_loop
001 Progress Indicators                            test_001_progress_indicators
001 Early Stopping                                 test_001_early_stopping
001 Error Handling with Streaming                  test_001_error_handling
001 Performance Optimization (stream_handler)      test_001_concurrent_stream_handlers
001 Streaming with Custom Callbacks                 test_001_custom_callbacks
002 (Scala) streamComplete(onChunk=...)            test_002_callbacks
002 (Scala) StreamingOptions(onStart, onChunk,     test_002_callbacks,
    onError, onComplete)                           test_002_on_error
002 (Scala) StreamingAccumulator                   test_002_accumulator
003 LiteLLM Native Streaming (iterator)            test_003_iterator_pattern
003 stream_chunk_builder helper                    test_003_stream_chunk_builder
003 Hybrid approach: client complete()             test_003_hybrid_complete
003 Root Cause: asyncio.run(_async_stream())       test_003_acompletion_in_asyncio_run
003 CLI: echo "test" | cllm --stream               test_003_cli_stream_with_stdin_piped
003 test_streaming_with_conversation (CLI)         test_003_cli_streamed_conversation_is_kept
004 Non-Streaming (dict access)                    test_004_not_streamed
004 Streaming (dict access, chunk format)          test_004_streaming
004 Future: async for ... in await acompletion,    test_004_async_streaming_and_chunk_builder
    stream_chunk_builder(chunks)
=================================================  ==========================================

Where spout differs from a seed, and what it does instead:

- ``create_llm("openai", model="gpt-4")`` and the like: ``create_llm(**BUNDLED)``, the bundled
  model with a budget of tokens and greedy sampling (the example's calls are unchanged).
- ``from abstractllm.tool import Tool, ToolCall``: ``from spout import Tool, ToolCall``
  (``spout.tools`` holds ``Tool`` and ``@tool``; ``ToolCall`` is an event type).
- ``from abstractllm.exceptions import AbstractLLMException``: ``spout.SpoutError``, the root
  of spout's error tree.
- ``from abstractllm.session import Session``: ``from spout.session import Session`` works as
  written (also ``spout.Session``).
- litellm's ``model="gpt-3.5-turbo"`` / ritellm's ``"openai/gpt-3.5-turbo"``:
  ``"local/smollm2"``, the bundled model's litellm-style name.
- AbstractLLM's ``buffer_size`` / ``min_chunk_size`` are spout's own options, as written;
  "Unified Chunking" and Anthropic's "larger chunks" are ``smooth="sentence"``; the seed's
  hand-made progress counters and callbacks have ``stream.stats`` and ``on_chunk=`` beside
  them; LLM4S's ``onStart``/``onChunk``/``onError``/``onComplete`` are ``on_start`` ...
  ``on_complete``; its ``StreamingAccumulator`` is ``spout.Accumulator``; its
  ``Conversation(Seq(UserMessage(...)))`` is ``messages=[{"role": "user", ...}]``.
- The CLI is ``spout`` (``--stream`` is its default; ``--no-stream`` prints at the end), and it
  logs each exchange as a conversation that ``spout -c`` continues.
- The async examples never close their LLM. The bundled model holds no connections; with the
  HTTP providers the seeds name, the same shape is tested in ``tests/test_transport.py``: a
  session left open is closed on its event loop, with no ``ResourceWarning``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import re
import select
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

import spout
from spout import create_llm

#: The bundled model, standing in for whatever model a seed names: a budget of tokens keeps
#: each answer short, and greedy sampling with a seed keeps it the same from run to run (a
#: seed also has llama.cpp evaluate the prompt afresh, so no earlier test's cached prefix
#: changes the numbers).
BUNDLED: dict[str, Any] = {"max_tokens": 32, "temperature": 0, "seed": 1}

#: The bundled model as a litellm-style model string (seeds 003 and 004).
LITELLM_MODEL = "local/smollm2"

pytestmark = pytest.mark.model


def assert_printed(out: str, chunks: list[str]) -> None:
    """What the example printed is its chunks, in order, and there were several."""
    assert len(chunks) > 1, f"the answer came in one piece: {chunks!r}"
    assert all(isinstance(chunk, str) for chunk in chunks)
    assert "".join(chunks).strip()
    assert out.startswith("".join(chunks))


class NoWarnings:
    """Records every warning (``never awaited``, ``ResourceWarning``...) and fails on any,
    after a collection, so one that fires when an object is dropped is seen too."""

    def __enter__(self) -> NoWarnings:
        self._catcher = warnings.catch_warnings(record=True)
        self.caught = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        gc.collect()
        self._catcher.__exit__(exc_type, exc, traceback)
        assert not [str(w.message) for w in self.caught]


# -- 000: AbstractLLM's streaming analysis ---------------------------------------------------------


def test_000_capability_declaration() -> None:
    from spout import ModelCapability, has_capability

    llm = create_llm(**BUNDLED)
    capabilities = llm.get_capabilities()
    assert capabilities[ModelCapability.STREAMING] is True
    assert has_capability(capabilities, ModelCapability.STREAMING)
    assert has_capability(capabilities, "streaming")  # by name, too


def test_000_basic_usage(capsys: pytest.CaptureFixture[str]) -> None:
    llm = create_llm(**BUNDLED)

    # Simple streaming
    chunks = []
    for chunk in llm.generate("Tell me a story", stream=True):
        print(chunk, end="", flush=True)
        chunks.append(chunk)

    assert_printed(capsys.readouterr().out, chunks)


def test_000_async_streaming_iterated(capsys: pytest.CaptureFixture[str]) -> None:
    chunks: list[str] = []

    async def main() -> None:
        llm = create_llm("local", **BUNDLED)  # the seed: create_llm("anthropic", ...)

        # Async streaming
        async for chunk in llm.generate_async("Tell me a story", stream=True):
            print(chunk, end="", flush=True)
            chunks.append(chunk)

        # A loop left early leaves nothing behind either.
        async for _chunk in llm.generate_async("Tell me a story", stream=True):
            break

    with NoWarnings():
        asyncio.run(main())
    assert_printed(capsys.readouterr().out, chunks)


def test_000_async_streaming_awaited(capsys: pytest.CaptureFixture[str]) -> None:
    # Seed 000's generate_async returns its generator from a coroutine: awaited, then iterated.
    chunks: list[str] = []

    async def main() -> spout.Response:
        llm = create_llm(**BUNDLED)
        stream = await llm.generate_async("Tell me a story", stream=True)
        async for chunk in stream:
            print(chunk, end="", flush=True)
            chunks.append(chunk)
        return await stream.get_response()

    with NoWarnings():
        response = asyncio.run(main())
    assert_printed(capsys.readouterr().out, chunks)
    assert response.text == "".join(chunks)


@pytest.fixture
def any_provider() -> spout.LLM:
    return create_llm(**{**BUNDLED, "max_tokens": 40})


def test_streaming(any_provider: spout.LLM) -> None:
    # Seed 000's own test, as written.
    from spout import ModelCapability, has_capability

    capabilities = any_provider.get_capabilities()
    if not has_capability(capabilities, ModelCapability.STREAMING):
        pytest.skip("Provider does not support streaming")

    # Test streaming
    stream = any_provider.generate("Count from 1 to 5", stream=True)

    # Collect chunks
    chunks = []
    for chunk in stream:
        chunks.append(chunk)

    # Verify we got multiple chunks
    assert len(chunks) > 1

    # Verify the combined response makes sense
    full_response = "".join(chunks)
    for num in range(1, 6):
        assert str(num) in full_response


# -- 001: AbstractLLM's streaming guide ------------------------------------------------------------


def test_001_stream_text_responses(capsys: pytest.CaptureFixture[str]) -> None:
    provider = create_llm(**BUNDLED)

    # Get a stream of response chunks
    chunks = []
    for chunk in provider.generate_stream("Write a short poem about mountains."):
        # Print each chunk as it arrives
        print(chunk, end="", flush=True)
        chunks.append(chunk)

    assert_printed(capsys.readouterr().out, chunks)


def test_001_stream_with_sessions(capsys: pytest.CaptureFixture[str]) -> None:
    from spout.session import Session

    provider = create_llm(**BUNDLED)
    session = Session(provider=provider)

    # Add a user message
    session.add_message("user", "Tell me about quantum physics.")

    # Stream the response
    chunks = []
    for chunk in session.generate_stream():
        print(chunk, end="", flush=True)
        chunks.append(chunk)

    # The complete response is automatically added to the session history
    assert_printed(capsys.readouterr().out, chunks)
    assert session.messages == [
        {"role": "user", "content": "Tell me about quantum physics."},
        {"role": "assistant", "content": "".join(chunks)},
    ]
    (turn,) = session.turns
    assert turn.incomplete is None and turn.usage.output_tokens


def test_001_custom_processing(capsys: pytest.CaptureFixture[str]) -> None:
    provider = create_llm(**BUNDLED)

    total_tokens = 0
    word_count = 0

    stream = provider.generate_stream("Explain neural networks briefly.")
    for chunk in stream:
        # Count tokens and words
        total_tokens += 1
        word_count += len(chunk.split())

        # Print with formatting
        print(chunk, end="", flush=True)

    print(f"\n\nStats: {total_tokens} tokens, {word_count} words")

    out = capsys.readouterr().out
    text = stream.response.text
    assert out == f"{text}\n\nStats: {total_tokens} tokens, {word_count} words\n"
    assert total_tokens > 1
    # A word cut across two chunks counts twice; none is missed.
    assert word_count >= len(text.split()) > 0
    # spout keeps the same counts itself, and the model's own token count.
    assert stream.stats.chunks == total_tokens
    assert stream.stats.characters == len(text)
    usage = stream.response.usage
    assert usage.output_tokens is not None and usage.output_tokens >= total_tokens


def test_001_async_streaming(capsys: pytest.CaptureFixture[str]) -> None:
    chunks: list[str] = []

    async def stream_async() -> None:
        provider = create_llm(**BUNDLED)

        async for chunk in provider.agenerate_stream("Write a haiku about programming."):
            print(chunk, end="", flush=True)
            chunks.append(chunk)

        print("\nDone!")

    # Run the async function
    with NoWarnings():
        asyncio.run(stream_async())
    out = capsys.readouterr().out
    assert_printed(out, chunks)
    assert out.endswith("\nDone!\n")


# Seed 001's tool, as written (its bare except included, its annotations left out).
def calculator(expression):  # type: ignore[no-untyped-def]
    """Evaluates a mathematical expression."""
    try:
        return eval(expression)
    except:  # noqa: E722
        return "Error evaluating expression"


def seed_tools() -> list[spout.Tool]:
    from spout import Tool

    # Define tools
    return [
        Tool(
            name="calculator",
            description="Evaluates a mathematical expression",
            parameters={
                "type": "object",
                "properties": {
                    "expression": {
                        "type": "string",
                        "description": "The mathematical expression to evaluate",
                    }
                },
                "required": ["expression"],
            },
            function=calculator,
        )
    ]


#: Room for a call's header and arguments, and for an answer after the result.
TOOL_SETTINGS: dict[str, Any] = {"max_tokens": 64, "temperature": 0, "seed": 1}


def check_tool_stream(items: list[Any], out: str) -> None:
    """What seed 001's tools example promises: text chunks, then each ToolCall the model made
    with the result of the seed's own calculator, all printed as they came."""
    from spout import ToolCall

    calls = [item for item in items if isinstance(item, ToolCall)]
    assert calls, f"the model called no tool: {items!r}"
    assert all(isinstance(item, (str, ToolCall)) for item in items)
    first = calls[0]
    assert first.name == "calculator"
    assert isinstance(first.arguments, dict)
    assert isinstance(first.arguments.get("expression"), str), first
    # The loop ran the seed's function on the model's arguments: its result, no error.
    assert first.error is None
    assert first.result is not None
    assert first.result == calculator(first.arguments["expression"])  # type: ignore[no-untyped-call]
    assert f"[Tool Call: calculator({first.arguments})]\n[Tool Result: {first.result}]\n" in out
    # The model answered after the result came back.
    after = items[items.index(first) + 1 :]
    assert any(isinstance(item, str) and item for item in after), items


def test_001_streaming_with_tools_sync(capsys: pytest.CaptureFixture[str]) -> None:
    from spout import ToolCall

    # Create a provider with tool support
    provider = create_llm(**TOOL_SETTINGS)
    tools = seed_tools()

    # Stream with tool support
    prompt = "What is 123 * 456? Then add 789 to the result."

    items = []
    for chunk in provider.generate_stream_with_tools(prompt, tools=tools):
        items.append(chunk)
        if isinstance(chunk, str):
            # Regular text chunk
            print(chunk, end="", flush=True)
        elif isinstance(chunk, ToolCall):
            # Tool call
            print(f"\n[Tool Call: {chunk.name}({chunk.arguments})]", flush=True)
            print(f"[Tool Result: {chunk.result}]\n", flush=True)

    check_tool_stream(items, capsys.readouterr().out)


def test_001_streaming_with_tools_async(capsys: pytest.CaptureFixture[str]) -> None:
    from spout import ToolCall

    items: list[Any] = []

    async def main() -> None:
        provider = create_llm(**TOOL_SETTINGS)
        tools = seed_tools()
        prompt = "What is 123 * 456? Then add 789 to the result."

        async for chunk in provider.agenerate_stream_with_tools(prompt, tools=tools):
            items.append(chunk)
            if isinstance(chunk, str):
                print(chunk, end="", flush=True)
            elif isinstance(chunk, ToolCall):
                print(f"\n[Tool Call: {chunk.name}({chunk.arguments})]", flush=True)
                print(f"[Tool Result: {chunk.result}]\n", flush=True)

    with NoWarnings():
        asyncio.run(main())
    check_tool_stream(items, capsys.readouterr().out)


def test_001_buffer_options(capsys: pytest.CaptureFixture[str]) -> None:
    # Also seed 000's "Buffered Streaming", the same example.
    provider = create_llm(**BUNDLED)

    # Stream with buffer control
    chunks = []
    stream = provider.generate_stream(
        "List five facts about space.",
        buffer_size=10,  # Buffer up to 10 chunks before yielding
        min_chunk_size=5,  # Only yield chunks of at least 5 characters
    )
    for chunk in stream:
        print(chunk, end="", flush=True)
        chunks.append(chunk)

    assert capsys.readouterr().out == "".join(chunks) == stream.response.text
    # Fewer, larger updates: each release gathers ten of the model's chunks (the last one
    # whatever remained), never fewer than five characters.
    provider_chunks = stream.stats.chunks
    assert provider_chunks > 10
    assert 1 < len(chunks) <= -(-provider_chunks // 10)
    assert all(len(chunk) >= 5 for chunk in chunks[:-1])


def test_001_provider_specific_chunk_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    # "OpenAI returns small chunks, often at the token level"; "Claude typically streams larger
    # chunks" (sentence-level, seed 000). spout streams what the provider sends; the same
    # shaping options cut and gather any provider's stream alike (seed 000's "Unified
    # Chunking"): smooth="sentence" cuts at sentence ends, min_chunk_size gathers.
    provider = create_llm(**{**BUNDLED, "max_tokens": 48})

    small = []
    for chunk in provider.generate_stream("Tell me a short story."):
        print(chunk, end="", flush=True)
        small.append(chunk)

    cut = list(provider.generate_stream("Tell me a short story.", smooth="sentence"))
    larger = list(provider.generate_stream("Tell me a short story.", min_chunk_size=40))

    text = "".join(small)
    assert capsys.readouterr().out == text
    assert len(small) > 10  # token by token
    # The same text, cut elsewhere: no chunk holds a sentence's end before its own end.
    assert "".join(cut) == text
    assert re.search(r"[.!?]\s", text), text
    for chunk in cut:
        assert not re.search(r"[.!?]\s+\S", chunk), cut
    # Gathered: fewer, larger chunks, the same text.
    assert "".join(larger) == text
    assert 1 < len(larger) < len(small) / 4
    assert all(len(chunk) >= 40 for chunk in larger[:-1])


def test_001_chat_loop(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from spout.session import Session

    typed = iter(["My name is Ada.", "What is my name?", "exit"])

    def type_next(prompt: str = "") -> str:
        print(prompt, end="")
        return next(typed)

    monkeypatch.setattr("builtins.input", type_next)

    provider = create_llm(**BUNDLED)
    session = Session(provider=provider)

    # In a real application, this would be in a chat UI
    def chat_loop() -> None:
        while True:
            user_input = input("You: ")
            if user_input.lower() == "exit":
                break

            session.add_message("user", user_input)

            print("AI: ", end="", flush=True)
            for chunk in session.generate_stream():
                print(chunk, end="", flush=True)
            print("\n")

    chat_loop()

    first, second = session.turns
    assert capsys.readouterr().out == (f"You: AI: {first.text}\n\nYou: AI: {second.text}\n\nYou: ")
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    assert first.text and second.text
    # The session remembers: the second reply was asked with the whole first exchange, exactly
    # what the model counts for those three messages.
    assert second.usage.input_tokens == provider.count_tokens(messages=session.messages[:3])
    assert second.usage.input_tokens > provider.count_tokens(messages=session.messages[2:3])


def test_001_progress_indicators(capsys: pytest.CaptureFixture[str]) -> None:
    provider = create_llm(**{**BUNDLED, "max_tokens": 60})

    prompt = "Write a detailed 500-word essay about climate change."

    start_time = time.time()
    total_chars = 0

    print("Generating essay...")
    print("-" * 50)

    stream = provider.generate_stream(prompt)
    for chunk in stream:
        print(chunk, end="", flush=True)
        total_chars += len(chunk)

        # Update progress every 100 characters
        if total_chars % 100 == 0:
            elapsed = time.time() - start_time
            chars_per_second = total_chars / elapsed
            print(
                f"\n[Progress: {total_chars} chars, {chars_per_second:.2f} chars/sec]",
                end="\r",
                flush=True,
            )

    elapsed = time.time() - start_time
    print(f"\n{'-' * 50}")
    print(f"Generation complete: {total_chars} characters in {elapsed:.2f} seconds")

    out = capsys.readouterr().out
    text = stream.response.text
    assert total_chars == len(text) > 0
    assert out.startswith("Generating essay...\n" + "-" * 50 + "\n")
    assert f"Generation complete: {total_chars} characters in " in out
    # spout's live numbers for a progress display: the same characters, and rates.
    stats = stream.stats
    assert stats.characters == total_chars
    assert stats.tokens_per_second and stats.tokens_per_second > 0
    assert 0 < stats.elapsed <= elapsed


def test_001_early_stopping(capsys: pytest.CaptureFixture[str]) -> None:
    provider = create_llm(**{**BUNDLED, "max_tokens": 200})

    target_length = 100
    result = ""

    print("Starting generation (will stop after ~100 characters)...")

    stream = provider.generate_stream("Explain the theory of relativity in detail.")
    for chunk in stream:
        result += chunk
        print(chunk, end="", flush=True)

        # Stop after we reach the target length
        if len(result) >= target_length:
            print("\n\nReached target length. Stopping early.")
            break

    print("\nDone!")

    assert "Reached target length. Stopping early." in capsys.readouterr().out
    assert len(result) >= target_length
    # Leaving the loop stopped the model: the response is what arrived, not finished...
    assert stream.response.text == result
    assert stream.response.finish_reason is None
    # ...and the model is free at once for the next call in this thread.
    assert provider.generate("Say hi", max_tokens=4).usage.output_tokens


def test_001_error_handling(capsys: pytest.CaptureFixture[str]) -> None:
    from spout import SpoutError  # the seed: abstractllm.exceptions.AbstractLLMException

    def run(provider: spout.LLM) -> None:
        try:
            for chunk in provider.generate_stream("Write a short story."):
                print(chunk, end="", flush=True)
        except SpoutError as e:
            print(f"\nError during streaming: {e}")

    run(create_llm(**BUNDLED))
    assert "Error during streaming" not in capsys.readouterr().out

    # A call that cannot finish in time: its error is a SpoutError, caught by the same handler.
    run(create_llm(**BUNDLED, timeout=spout.Timeout(total=0.01)))
    out = capsys.readouterr().out
    assert "\nError during streaming: the call took longer than its total limit" in out


def test_001_concurrent_stream_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    async def stream_handler(prompt: str) -> str:
        provider = create_llm(**BUNDLED)
        result = []

        try:
            async for chunk in provider.agenerate_stream(prompt):
                # Store chunks in memory
                result.append(chunk)
                # In a real app, you'd send each chunk to the client
                # e.g., via websockets

            return "".join(result)
        except Exception as e:
            return f"Error: {e}"

    # Example usage in an async context
    async def main() -> list[str]:
        tasks = [
            stream_handler("Write about AI"),
            stream_handler("Write about ML"),
            stream_handler("Write about NLP"),
        ]

        results = await asyncio.gather(*tasks)
        for result in results:
            print(f"Result length: {len(result)}")
        return list(results)

    # Run the async function
    with NoWarnings():
        results = asyncio.run(main())
    assert len(results) == 3
    for result in results:
        assert result.strip() and not result.startswith("Error:"), results
    assert capsys.readouterr().out == "".join(f"Result length: {len(r)}\n" for r in results)


def test_001_custom_callbacks(capsys: pytest.CaptureFixture[str]) -> None:
    from collections.abc import Callable

    def stream_with_callback(
        provider: spout.LLM, prompt: str, callback: Callable[[str], None]
    ) -> None:
        """Stream with a custom callback for each chunk."""
        for chunk in provider.generate_stream(prompt):
            # Process each chunk with the callback
            callback(chunk)

    # Example usage
    provider = create_llm(**BUNDLED)

    def my_processor(chunk: str) -> None:
        # Custom processing logic
        processed = chunk.upper()  # Just an example - convert to uppercase
        print(processed, end="", flush=True)

    stream_with_callback(provider, "Tell me a joke.", my_processor)
    by_hand = capsys.readouterr().out

    # spout's own option for it: on_chunk= runs the same callback on every chunk.
    stream = provider.generate_stream("Tell me a joke.", on_chunk=my_processor)
    text = stream.response.text
    assert text.strip()
    assert capsys.readouterr().out == by_hand == text.upper()


# -- 002: LLM4S's streaming plan (Scala; its calls in spout's names) -------------------------------


def test_002_callbacks(capsys: pytest.CaptureFixture[str]) -> None:
    # streamComplete(conversation, options, onChunk = ...) and StreamingOptions(onStart,
    # onChunk, onError, onComplete): a call that streams into callbacks and returns the whole
    # completion.
    llm = create_llm(**BUNDLED)
    conversation = [{"role": "user", "content": "Write a story about a robot"}]
    seen: list[Any] = []

    def on_chunk(chunk: str) -> None:
        seen.append(chunk)
        print(chunk, end="")

    completion = llm.generate(
        messages=conversation,
        on_start=lambda: print("Starting stream..."),
        on_chunk=on_chunk,
        on_error=lambda error: print(f"Error: {error}"),
        on_complete=lambda completion: print(f"\nDone! Tokens: {completion.usage}"),
    )

    assert capsys.readouterr().out == (
        f"Starting stream...\n{completion.text}\nDone! Tokens: {completion.usage}\n"
    )
    assert len(seen) > 1 and "".join(seen) == completion.text
    assert completion.usage.output_tokens


def test_002_on_error(capsys: pytest.CaptureFixture[str]) -> None:
    llm = create_llm(**BUNDLED)
    conversation = [{"role": "user", "content": "Write a story about a robot"}]
    completed: list[spout.Response] = []

    with pytest.raises(spout.TimeoutError) as raised:
        for _chunk in llm.generate_stream(
            messages=conversation,
            timeout=spout.Timeout(total=0.01),
            on_error=lambda error: print(f"Error: {error}"),
            on_complete=completed.append,
        ):
            pass

    assert capsys.readouterr().out == f"Error: {raised.value}\n"
    assert not completed
    assert raised.value.partial is not None  # what arrived before the error


def test_002_accumulator() -> None:
    from spout import Accumulator, SpoutError

    llm = create_llm(**BUNDLED)
    conversation = [{"role": "user", "content": "Write a story about a robot"}]
    accumulator = Accumulator()
    ui: list[str] = []

    def on_event(event: spout.Event) -> None:
        accumulator.add(event)
        # Update UI with partial content
        ui.append(accumulator.response().text)

    try:
        completion = llm.generate(messages=conversation, on_event=on_event)
    except SpoutError as error:  # Left(error)
        pytest.fail(f"Error: {error}")

    # Right(completion)
    assert accumulator.response().text == completion.text
    growing = [text for text in ui if text]
    assert len(set(growing)) > 1
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(growing))
    assert accumulator.response().usage.output_tokens == completion.usage.output_tokens


# -- 003: CLLM's litellm streaming decision --------------------------------------------------------


def test_003_iterator_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    from spout import completion

    messages = [{"role": "user", "content": "Write a haiku about rivers."}]
    response = completion(model=LITELLM_MODEL, messages=messages, stream=True, max_tokens=32)
    # A plain iterator, as the seed's sync loop needs (not an async generator).
    assert isinstance(response, Iterator)
    parts = []
    for part in response:
        print(part.choices[0].delta.content or "")
        parts.append(part)

    contents = [part.choices[0].delta.content for part in parts]
    assert capsys.readouterr().out == "".join(f"{c or ''}\n" for c in contents)
    assert sum(1 for c in contents if c) > 1
    # Empty chunks are there, and handled by `or ""`: the last carries only finish_reason.
    assert contents[-1] is None and parts[-1].choices[0].finish_reason in ("stop", "length")


def test_003_stream_chunk_builder(capsys: pytest.CaptureFixture[str]) -> None:
    from spout import completion, stream_chunk_builder

    messages = [{"role": "user", "content": "Write a haiku about rivers."}]
    response = completion(model=LITELLM_MODEL, messages=messages, stream=True, max_tokens=32)

    chunks = []
    for chunk in response:
        chunks.append(chunk)
    rebuilt = stream_chunk_builder(chunks, messages=messages)
    print(rebuilt)

    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert rebuilt.object == "chat.completion"
    assert rebuilt.id == chunks[0].id
    assert rebuilt.choices[0].message.role == "assistant"
    assert rebuilt.choices[0].message.content == text and text.strip()
    assert rebuilt.choices[0].finish_reason == chunks[-1].choices[0].finish_reason
    usage = rebuilt.usage
    assert usage.prompt_tokens and usage.completion_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert str(rebuilt) in capsys.readouterr().out


def test_003_hybrid_complete(capsys: pytest.CaptureFixture[str]) -> None:
    from spout import completion, stream_chunk_builder

    def complete(model: str, messages: Any, stream: bool = False, **kwargs: Any) -> Any:
        """
        Complete a chat interaction.

        Args:
            stream: If True, prints streaming output and returns complete response
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]

        if stream:
            response = completion(model=model, messages=messages, stream=True, **kwargs)
            chunks = []
            for chunk in response:
                chunks.append(chunk)
                content = chunk.choices[0].delta.content or ""
                if content:
                    print(content, end="", flush=True)
            print()  # Final newline
            return stream_chunk_builder(chunks, messages=messages)
        else:
            response = completion(model=model, messages=messages, stream=False, **kwargs)
            return response.choices[0].message.content

    settings: dict[str, Any] = {"max_tokens": 32, "temperature": 0, "seed": 1}
    streamed = complete(LITELLM_MODEL, "Write a haiku about rivers.", stream=True, **settings)
    out = capsys.readouterr().out
    whole = complete(LITELLM_MODEL, "Write a haiku about rivers.", **settings)

    content = streamed.choices[0].message.content
    assert content.strip() and out == content + "\n"
    # Streamed or not, the same settings give the same answer (one accumulator for both).
    assert whole == content


def test_003_acompletion_in_asyncio_run(capsys: pytest.CaptureFixture[str]) -> None:
    from spout import acompletion, stream_chunk_builder

    model = LITELLM_MODEL
    messages = [{"role": "user", "content": "Write a haiku about rivers."}]

    async def _async_stream() -> Any:
        response = await acompletion(model=model, messages=messages, stream=True, max_tokens=32)
        chunks = []
        async for chunk in response:
            chunks.append(chunk)
            content = chunk.get("choices", [{}])[0].get("delta", {}).get("content") or ""
            if content:
                print(content, end="", flush=True)
        return stream_chunk_builder(chunks, messages=messages)

    with NoWarnings():
        complete_response = asyncio.run(_async_stream())
    content = complete_response.choices[0].message.content
    assert content.strip() and capsys.readouterr().out == content


def spout_command() -> str:
    """The ``spout`` console script installed beside this interpreter."""
    command = Path(sys.executable).with_name("spout")
    assert command.exists(), f"no spout command at {command}"
    return shlex.quote(str(command))


def shell_env() -> dict[str, str]:
    """A user's shell: no PYTHONUNBUFFERED (the command must flush to a pipe itself), and
    ``SPOUT_HOME`` the test's own store (set by conftest)."""
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    env.pop("SPOUT_NO_LOG", None)
    return env


def run_piped(command: str, tmp_path: Path) -> tuple[int, list[tuple[float, bytes]], float, str]:
    """Run a shell pipeline; its stdout read as it comes: (status, timed reads, exit, stderr)."""
    timeout = 180
    reads: list[tuple[float, bytes]] = []
    with (
        (tmp_path / "stderr").open("w+") as err,
        subprocess.Popen(
            command, shell=True, stdout=subprocess.PIPE, stderr=err, env=shell_env()
        ) as process,
    ):
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                process.kill()
                pytest.fail(f"no output or end within {timeout} s; read so far: {reads}")
            data = os.read(fd, 65536)
            if not data:
                break
            reads.append((time.monotonic(), data))
        status = process.wait(timeout=timeout)
        exited = time.monotonic()
        err.seek(0)
        return status, reads, exited, err.read()


def test_003_cli_stream_with_stdin_piped(tmp_path: Path) -> None:
    # The seed: echo "test" | cllm --stream, its output appearing in real time.
    command = f'echo "Write a haiku about rivers." | {spout_command()} --stream --max-tokens 40'
    status, reads, exited, stderr = run_piped(command, tmp_path)

    assert status == 0, stderr
    assert stderr == ""
    out = b"".join(data for _, data in reads).decode()
    assert out.strip() and out.endswith("\n")
    # Streamed: the answer reached the pipe in several reads, the first well before the end.
    text_reads = [at for at, data in reads if data.strip()]
    assert len(text_reads) > 1, f"the answer came in one piece: {reads}"
    assert text_reads[0] <= exited - 0.3, f"first text {exited - text_reads[0]:.2f} s before exit"


def _with_final_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def test_003_cli_streamed_conversation_is_kept(tmp_path: Path) -> None:
    # The seed's test_streaming_with_conversation: a streamed answer is saved whole, and the
    # conversation can be loaded and continued.
    from spout import conversations

    first = f'echo "Write a haiku about rivers." | {spout_command()} --stream --max-tokens 24'
    status, reads, _, stderr = run_piped(first, tmp_path)
    assert status == 0, stderr
    answer = b"".join(data for _, data in reads).decode()

    kept = conversations.last()
    assert kept is not None and kept.turn_count == 1
    (turn,) = conversations.turns(kept.id)
    assert turn.messages[0]["role"] == "user"
    assert turn.messages[0]["content"].strip() == "Write a haiku about rivers."
    # The CLI ends the output with a newline where the answer did not.
    assert turn.text.strip() and answer == _with_final_newline(turn.text)
    assert turn.incomplete is None

    again = f'echo "Now one about the sea." | {spout_command()} -c --stream --max-tokens 24'
    status, reads, _, stderr = run_piped(again, tmp_path)
    assert status == 0, stderr
    continued = conversations.get(kept.id)
    assert continued.turn_count == 2
    second = conversations.turns(kept.id)[1]
    assert _with_final_newline(second.text) == b"".join(data for _, data in reads).decode()
    # The continued turn was asked with the first exchange in front of it.
    assert second.usage.input_tokens and turn.usage.input_tokens
    assert second.usage.input_tokens > turn.usage.input_tokens + (turn.usage.output_tokens or 0)


# -- 004: ritellm's streaming summary --------------------------------------------------------------


def test_004_not_streamed() -> None:
    from spout import completion

    response = completion(
        model=LITELLM_MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=16
    )
    content = response["choices"][0]["message"]["content"]
    assert isinstance(content, str) and content.strip()

    # The non-streaming response format the seed shows.
    assert response["object"] == "chat.completion"
    assert response["id"] and isinstance(response["created"], int) and response["model"]
    choice = response["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    usage = response["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_004_streaming(capsys: pytest.CaptureFixture[str]) -> None:
    from spout import completion

    response = completion(
        model=LITELLM_MODEL,
        messages=[{"role": "user", "content": "Write a poem."}],
        stream=True,
        max_tokens=32,
    )

    chunks = []
    for chunk in response:
        chunks.append(chunk)
        content = chunk["choices"][0]["delta"].get("content", "")
        if content:
            print(content, end="", flush=True)

    out = capsys.readouterr().out
    assert out.strip()
    # The streaming chunk format the seed shows: one id, chat.completion.chunk objects, the
    # role in the first delta, the finish reason in the last, after an empty delta.
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks[:-1])
    last = chunks[-1]["choices"][0]
    assert last["finish_reason"] in ("stop", "length") and not last["delta"].get("content")
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == out


def test_004_async_streaming_and_chunk_builder(capsys: pytest.CaptureFixture[str]) -> None:
    from spout import acompletion, stream_chunk_builder

    chunks: list[Any] = []

    async def main() -> None:
        async for chunk in await acompletion(
            model=LITELLM_MODEL,
            messages=[{"role": "user", "content": "Write a poem."}],
            stream=True,
            max_tokens=32,
        ):
            print(chunk)
            chunks.append(chunk)

    with NoWarnings():
        asyncio.run(main())
    assert capsys.readouterr().out == "".join(f"{chunk}\n" for chunk in chunks)

    full_response = stream_chunk_builder(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() and full_response.choices[0].message.content == text
    assert full_response.object == "chat.completion"
