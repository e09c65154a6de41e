"""The bundled GGUF through transformers in process: streaming, usage, stopping, sharing."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import spout
from helpers import Runner
from spout import ModelCapability, create_llm, has_capability
from spout.providers import transformers as provider

# The bundled GGUF file, dequantized by transformers; loaded once, by one xdist worker.
pytestmark = [pytest.mark.model, pytest.mark.xdist_group("transformers")]

PROMPT = "Count from 1 to 5"
LONG = "Tell me a long story about a dragon."
YES_OR_NO = "Reply with one word: yes or no. Is the sky blue?"


@pytest.fixture(scope="module")
def llm() -> spout.LLM:
    llm = create_llm("transformers")
    loaded(llm)  # transformers reads and dequantizes the GGUF file: ~30 s, once
    return llm


def loaded(llm: spout.LLM) -> Any:
    return llm.provider._model()  # type: ignore[attr-defined]


def assert_idle(model: Any, within: float = 2.0) -> None:
    """The model's lock is free and its worker has stopped generating."""
    assert model.lock.acquire(blocking=False), "the model was not released"
    model.lock.release()
    started = time.monotonic()
    model.worker.submit(lambda: None).result(timeout=within)  # queued behind any generation
    assert time.monotonic() - started < within


def test_streams_text_with_exact_usage(llm: spout.LLM, runner: Runner) -> None:
    result = runner.text(llm, PROMPT, temperature=0, max_tokens=6)
    response = result.response
    assert len(result.chunks) > 1
    assert "".join(result.chunks) == response.text and response.text.startswith("1.")
    prompt = loaded(llm).tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_dict=True
    )
    assert response.usage.input_tokens == len(prompt["input_ids"])
    assert response.usage.output_tokens == 6
    assert response.finish_reason == "length"
    assert response.model == "SmolLM2-135M-Instruct.Q4_1"
    assert response.id and response.id.startswith("tf-")


def test_events(llm: spout.LLM, runner: Runner) -> None:
    events = runner.events(llm, PROMPT, temperature=0, max_tokens=4).events
    assert isinstance(events[0], spout.ResponseStart)
    assert all(isinstance(event, spout.TextDelta) and event.text for event in events[1:-2])
    assert isinstance(events[-2], spout.Usage) and events[-2].output_tokens == 4
    assert events[-1] == spout.Finish("length", "length")


def test_end_of_answer_finishes_with_stop(llm: spout.LLM, runner: Runner) -> None:
    response = runner.text(llm, YES_OR_NO, temperature=0, max_tokens=10).response
    assert response.finish_reason == "stop"
    assert response.text.strip()
    # The end token is not counted, as in the local provider.
    assert 0 < response.usage.output_tokens < 10  # type: ignore[operator]


def test_matches_transformers_called_directly(llm: spout.LLM) -> None:
    model = loaded(llm)
    inputs = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    tokens = output[0, inputs["input_ids"].shape[1] :]
    response = llm.generate(PROMPT, temperature=0, max_tokens=6)
    assert response.text == model.tokenizer.decode(tokens, skip_special_tokens=True)
    assert response.usage.output_tokens == len(tokens) == 6


def test_same_seed_same_text_streamed_or_not(llm: spout.LLM, runner: Runner) -> None:
    settings: dict[str, Any] = {"temperature": 0.9, "seed": 7, "max_tokens": 5}
    streamed = runner.text(llm, LONG, **settings).response
    whole = runner.generate(llm, LONG, **settings)
    assert streamed.text == whole.text
    assert streamed.usage.output_tokens == whole.usage.output_tokens
    greedy = {"temperature": 0, "max_tokens": 4}
    assert (
        runner.text(llm, LONG, **greedy).response.text == runner.generate(llm, LONG, **greedy).text
    )


def test_the_seed_leaves_torch_random_state_alone(llm: spout.LLM) -> None:
    import torch

    state = torch.random.get_rng_state()
    llm.generate(PROMPT, temperature=0.9, seed=3, max_tokens=2)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_stop_strings_cut_the_text(llm: spout.LLM, runner: Runner) -> None:
    full = "1. 1\n2. 2\n"  # the greedy answer, as the direct test shows
    stopped = runner.text(llm, PROMPT, temperature=0, max_tokens=12, stop=["\n2"])
    assert stopped.response.text == "1. 1"
    assert "".join(stopped.chunks) == "1. 1"  # the "\n" was held back, then dropped
    assert stopped.response.finish_reason == "stop"
    # Generation stopped at the token that completed the stop string, and counted it.
    tokenizer = loaded(llm).tokenizer
    expected = len(tokenizer.encode(full[: full.index("\n2") + 2], add_special_tokens=False))
    assert stopped.response.usage.output_tokens == expected


def test_close_stops_generation_promptly(llm: spout.LLM) -> None:
    model = loaded(llm)
    stream_ = llm.generate_stream(LONG, temperature=0, max_tokens=400)
    chunks = iter(stream_)
    next(chunks)
    next(chunks)
    started = time.monotonic()
    stream_.close()
    assert time.monotonic() - started < 2, "close() waited for more than a token"
    assert_idle(model, within=0.5)
    assert stream_.response.finish_reason is None and stream_.text


def test_break_and_garbage_collection_stop_generation(llm: spout.LLM) -> None:
    model = loaded(llm)
    for _ in llm.generate_stream(LONG, temperature=0, max_tokens=400):
        break
    assert_idle(model, within=0.5)

    abandoned = llm.generate_stream(LONG, temperature=0, max_tokens=400)
    next(iter(abandoned))
    del abandoned
    gc.collect()
    assert_idle(model)


def test_cancelling_an_async_stream_stops_generation(llm: spout.LLM) -> None:
    model = loaded(llm)

    async def main() -> None:
        started = asyncio.Event()

        async def consume() -> None:
            count = 0
            async for _ in llm.agenerate_stream(LONG, temperature=0, max_tokens=400):
                count += 1
                if count == 2:
                    started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert_idle(model, within=0.5)


def test_an_async_stream_started_then_dropped_frees_the_model(llm: spout.LLM) -> None:
    model = loaded(llm)

    async def main() -> None:
        stream_ = await llm.generate_async(LONG, stream=True, temperature=0, max_tokens=400)
        assert not model.lock.acquire(blocking=False)
        del stream_
        gc.collect()

    asyncio.run(main())
    assert_idle(model)


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
        async for _ in llm.agenerate_stream(PROMPT, temperature=0, max_tokens=8):
            chunks += 1
        done = True
        await tick_task
        return ticks, chunks

    ticks, chunks = asyncio.run(main())
    assert ticks > chunks


def test_two_threads_take_turns(llm: spout.LLM) -> None:
    results: dict[int, str] = {}

    def run(index: int) -> None:
        results[index] = llm.generate(PROMPT, temperature=0, max_tokens=4).text

    threads = [threading.Thread(target=run, args=(index,)) for index in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results[1] == results[2] == "1. 1"


def test_a_second_open_stream_in_one_thread_is_refused(llm: spout.LLM) -> None:
    first = llm.generate_stream(PROMPT, temperature=0, max_tokens=200)
    with pytest.raises(spout.ConfigurationError, match="close"):
        llm.generate_stream(PROMPT, max_tokens=2)
    first.close()
    assert_idle(loaded(llm), within=0.5)


def test_a_failing_generate_is_a_provider_error(
    llm: spout.LLM, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = loaded(llm)

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("out of tensors")

    monkeypatch.setattr(model.model, "generate", broken)
    with pytest.raises(spout.ProviderError, match="transformers failed: out of tensors") as info:
        runner.events(llm, PROMPT, max_tokens=2)
    assert info.value.partial is not None  # the stream had begun
    assert_idle(model)


def test_model_loads_once_per_process(
    llm: spout.LLM, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = loaded(llm)

    def read_again(*args: Any) -> Any:
        raise AssertionError("the model was loaded a second time")

    monkeypatch.setattr(provider, "_read", read_again)
    assert loaded(create_llm("transformers")) is model
    by_path = create_llm("transformers", model=str(model_path))
    assert by_path.model == str(model_path)
    assert loaded(by_path) is model


def test_capabilities(llm: spout.LLM, model_path: Path, tmp_path: Path) -> None:
    caps = llm.get_capabilities()
    assert has_capability(caps, ModelCapability.STREAMING)
    assert has_capability(caps, ModelCapability.ASYNC)
    assert has_capability(caps, "usage_in_stream")
    assert not has_capability(caps, ModelCapability.TOOLS)
    assert caps[ModelCapability.CONTEXT_WINDOW] == loaded(llm).model.config.max_position_embeddings
    # Known before loading, from the GGUF header or config.json, as transformers reads them.
    assert provider._context_window(model_path) == 8192
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 4096}')
    assert provider._context_window(tmp_path) == 4096
    assert provider._context_window(tmp_path / "config.json") is None  # not a GGUF file


def test_configuration_errors(llm: spout.LLM, tmp_path: Path) -> None:
    with pytest.raises(spout.ConfigurationError, match="no model at"):
        create_llm("transformers", model="/nonexistent/model.gguf")
    with pytest.raises(spout.ConfigurationError, match="could not load the model"):
        create_llm("transformers", model=str(tmp_path)).generate(PROMPT)  # an empty folder
    with pytest.raises(spout.ConfigurationError, match="dtype must be one of"):
        create_llm("transformers", dtype="float8")
    with pytest.raises(spout.ConfigurationError, match="frequency_penalty"):
        llm.generate(PROMPT, frequency_penalty=1.0)
    assert_idle(loaded(llm))


def test_prompt_longer_than_the_context_window(llm: spout.LLM) -> None:
    with pytest.raises(spout.ContextWindowExceededError, match="context window is 8192"):
        llm.generate("rivers " * 9000)


def test_counts_tokens_with_the_tokenizer_once_loaded(llm: spout.LLM, model_path: Path) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    prompt = loaded(llm).tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True
    )
    assert llm.count_tokens(PROMPT) == len(prompt["input_ids"])
    # Not loaded: no count (loading is seconds), and the LLM estimates.
    fresh = provider.TransformersProvider(str(model_path), dtype="float16")
    assert fresh.count_tokens(messages) is None


def test_missing_extra_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(spout.ConfigurationError, match=r'pip install "spout\[transformers\]"'):
        create_llm("transformers")


def test_torch_is_imported_only_when_the_model_loads() -> None:
    code = (
        "import sys, spout; spout.create_llm('transformers').get_capabilities(); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
