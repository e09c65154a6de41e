"""The bundled model in process: streaming, usage, stopping, sharing, and the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import spout
from helpers import Runner
from spout import ModelCapability, create_llm, has_capability

pytestmark = pytest.mark.model

PROMPT = "Count from 1 to 5"


@pytest.fixture(scope="module")
def llm() -> spout.LLM:
    return create_llm()


def test_streams_text_with_usage(llm: spout.LLM, runner: Runner) -> None:
    result = runner.text(llm, "Write a haiku about rivers.", seed=1, max_tokens=60)
    response = result.response
    assert len(result.chunks) > 1
    assert "".join(result.chunks) == response.text and response.text.strip()
    assert response.usage.input_tokens and response.usage.input_tokens > 5
    assert response.usage.output_tokens and response.usage.output_tokens >= len(result.chunks) - 1
    assert response.finish_reason in ("stop", "length")
    assert response.model == "SmolLM2-135M-Instruct.Q4_1"
    assert response.id and response.id.startswith("local-")
    assert response.time_to_first_token is not None and response.output_tokens_per_second


def test_max_tokens_ends_with_length(llm: spout.LLM, runner: Runner) -> None:
    response = runner.events(
        llm, "Tell me a long story about a dragon.", max_tokens=5, seed=2
    ).response
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 5


def test_same_seed_same_text_streamed_or_not(llm: spout.LLM, runner: Runner) -> None:
    streamed = runner.text(llm, PROMPT, seed=7, max_tokens=40).response
    whole = runner.generate(llm, PROMPT, seed=7, max_tokens=40)
    assert streamed.text == whole.text
    assert streamed.usage.output_tokens == whole.usage.output_tokens


def test_matches_llama_cpp_called_directly(llm: spout.LLM) -> None:
    # The same prompt template and sampling settings as llama-cpp-python's own chat API.
    llama = llm.provider._model().llama  # type: ignore[attr-defined]
    llama.reset()  # no cached prefix: spout evaluates afresh when given a seed
    direct = "".join(
        chunk["choices"][0]["delta"].get("content") or ""
        for chunk in llama.create_chat_completion(
            [{"role": "user", "content": PROMPT}], seed=11, max_tokens=40, stream=True
        )
    )
    assert llm.generate(PROMPT, seed=11, max_tokens=40).text == direct


def test_system_prompt_changes_the_answer(llm: spout.LLM) -> None:
    plain = llm.generate("What is your name?", seed=4, max_tokens=30).text
    pirate = llm.generate(
        "What is your name?",
        system_prompt="You are a pirate named Redbeard.",
        seed=4,
        max_tokens=30,
    ).text
    assert plain != pirate


def test_stop_strings_cut_the_text(llm: spout.LLM, runner: Runner) -> None:
    full = runner.text(llm, PROMPT, seed=3, max_tokens=40).response.text
    assert "3" in full
    stopped = runner.text(llm, PROMPT, seed=3, max_tokens=40, stop=["3"]).response
    assert stopped.text == full[: full.index("3")]
    assert stopped.finish_reason == "stop"


def test_model_loads_once_per_process(llm: spout.LLM) -> None:
    other = create_llm("local")
    assert other.provider._model().llama is llm.provider._model().llama  # type: ignore[attr-defined]


def test_close_stops_generation_within_a_token(llm: spout.LLM) -> None:
    model = llm.provider._model()  # type: ignore[attr-defined]
    stream_ = llm.generate_stream("Tell me a long story about a dragon.", max_tokens=500)
    chunks = iter(stream_)
    for _ in range(3):
        next(chunks)
    stream_.close()
    evaluated = model.llama.n_tokens
    time.sleep(0.3)  # ~20 tokens' time at this model's speed
    assert model.llama.n_tokens == evaluated, "llama.cpp kept generating after close()"
    assert model.lock.acquire(blocking=False), "the model was not released"
    model.lock.release()
    assert stream_.response.finish_reason is None and stream_.text


def test_cancelling_an_async_stream_stops_generation(llm: spout.LLM) -> None:
    model = llm.provider._model()  # type: ignore[attr-defined]

    async def main() -> None:
        started = asyncio.Event()

        async def consume() -> None:
            count = 0
            async for _ in llm.agenerate_stream("Tell me a long story.", max_tokens=500):
                count += 1
                if count == 3:
                    started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # the worker finishes the token it is on

    asyncio.run(main())
    evaluated = model.llama.n_tokens
    time.sleep(0.3)
    assert model.llama.n_tokens == evaluated
    assert model.lock.acquire(blocking=False)
    model.lock.release()


def test_async_streaming_does_not_block_the_event_loop(llm: spout.LLM) -> None:
    async def main() -> tuple[int, int]:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.002)

        tick_task = asyncio.create_task(ticker())
        chunks = 0
        async for _ in llm.agenerate_stream(PROMPT, max_tokens=30, seed=5):
            chunks += 1
        done = True
        await tick_task
        return ticks, chunks

    ticks, chunks = asyncio.run(main())
    # Generation took tens of milliseconds per few tokens; a blocked loop would tick ~once.
    assert ticks > chunks


def test_two_threads_take_turns(llm: spout.LLM) -> None:
    results: dict[int, str] = {}

    def run(seed: int) -> None:
        results[seed] = llm.generate(PROMPT, seed=seed, max_tokens=20).text

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (21, 22)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results[21] == llm.generate(PROMPT, seed=21, max_tokens=20).text
    assert results[22] == llm.generate(PROMPT, seed=22, max_tokens=20).text


def test_a_second_open_stream_in_one_thread_is_refused(llm: spout.LLM) -> None:
    first = llm.generate_stream(PROMPT, max_tokens=10)
    with pytest.raises(spout.ConfigurationError, match="close"):
        llm.generate_stream(PROMPT, max_tokens=10)
    first.close()
    assert llm.generate_stream(PROMPT, max_tokens=3).response.text


def test_bad_settings_are_named(llm: spout.LLM) -> None:
    with pytest.raises(spout.ConfigurationError, match="frequency_pen"):
        llm.generate(PROMPT, frequency_pen=1.0)
    with pytest.raises(spout.ConfigurationError, match="no GGUF model file"):
        create_llm("local", model="/nonexistent/model.gguf")
    with pytest.raises(spout.ConfigurationError, match="does not take 'api_key'"):
        create_llm("local", api_key="sk-nothing")


def test_prompt_longer_than_the_context_window() -> None:
    small = create_llm("local", n_ctx=64)
    with pytest.raises(spout.ContextWindowExceededError, match="context window is 64"):
        small.generate("rivers " * 200)


def test_capabilities(llm: spout.LLM) -> None:
    caps = llm.get_capabilities()
    assert all(isinstance(key, ModelCapability) for key in caps)
    assert has_capability(caps, ModelCapability.STREAMING)
    assert has_capability(caps, "usage_in_stream")
    assert not has_capability(caps, ModelCapability.REASONING)
    assert caps[ModelCapability.CONTEXT_WINDOW] == 2048


def test_any_gguf_file_by_path(llm: spout.LLM, model_path: object) -> None:
    by_path = create_llm("local", model=str(model_path))
    assert by_path.model == str(model_path)
    # The same file and settings: the already loaded model is reused, not loaded again.
    assert by_path.provider._model().llama is llm.provider._model().llama  # type: ignore[attr-defined]
    assert (
        by_path.generate(PROMPT, seed=9, max_tokens=10).text
        == llm.generate(PROMPT, seed=9, max_tokens=10).text
    )


def test_a_dropped_async_stream_frees_the_model(llm: spout.LLM) -> None:
    async def main() -> str:
        stream = await llm.generate_async(PROMPT, stream=True, max_tokens=5)  # holds the model
        del stream
        import gc

        gc.collect()
        # Without the release, this would wait for the model forever.
        response = await asyncio.wait_for(llm.generate_async(PROMPT, max_tokens=3), timeout=30)
        return response.text

    assert asyncio.run(main())


def test_a_cut_never_falls_inside_a_character(llm: spout.LLM) -> None:
    # An emoji is several tokens of bytes: max_tokens ending between them drops the
    # unfinished bytes instead of showing U+FFFD.
    for n in range(1, 7):
        text = llm.generate("Write emoji: 🌟🌟🌟🌟", max_tokens=n, seed=1).text
        assert "\ufffd" not in text
        text.encode("utf-8")


def test_a_process_with_warnings_as_errors_ends_cleanly() -> None:
    # llama-cpp-python leaves two os.devnull files open at exit; spout closes them.
    import subprocess
    import sys

    code = "from spout import create_llm; print(create_llm().generate('hi', max_tokens=2).text)"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "ResourceWarning" not in result.stderr and "Exception ignored" not in result.stderr
