"""The Hugging Face provider: TGI's native API over loopback replay, and the chat profile."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

import spout
from helpers import Cut, Runner, comparable, json_reply, made, raised_on_start, usage_counts
from replay_server import CUTS, ReplayServer, Reply, transcript
from spout import ModelCapability, Response, TextDelta, create_llm
from spout.providers.huggingface import (
    HuggingFaceChatProvider,
    HuggingFaceProvider,
    render_prompt,
)

CASES = ["generate_stream", "length", "stream_error"]
ERRORS: dict[str, type[spout.ProviderError]] = {"generation": spout.InternalServerError}


@pytest.fixture(autouse=True)
def _no_hf_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_BASE_URL", raising=False)


def tgi(server: ReplayServer, **config: Any) -> spout.LLM:
    # What one response becomes: no retries here (they are tested in tests/test_retries.py).
    config.setdefault("max_retries", 0)
    return made(create_llm("huggingface", base_url=server.url, **config))


def sse(*payloads: Any) -> bytes:
    """An SSE body as TGI frames it: ``data:`` with no space."""
    return b"".join(b"data:" + json.dumps(p).encode() + b"\n\n" for p in payloads)


def token(text: str, special: bool = False, **last: Any) -> dict[str, Any]:
    return {
        "index": 1,
        "token": {"id": 1, "text": text, "logprob": -0.1, "special": special},
        "generated_text": last.pop("generated_text", None),
        "details": last or None,
    }


def check(response: Response, expected: dict[str, Any]) -> None:
    """The rebuilt response, field by field, against a transcript's expected result."""
    assert response.text == expected["text"]
    assert response.tool_calls == ()
    if expected["error"] is None:
        assert response.finish_reason == expected["finish_reason"]
        assert response.raw_finish_reason == expected["finish_reason_raw"]
    else:
        assert response.finish_reason is None
    assert usage_counts(response) == expected["usage"]
    assert response.provider == "huggingface"
    assert response.model == "tgi"


@pytest.mark.parametrize("case", CASES)
def test_transcripts(replay: ReplayServer, runner: Runner, case: str, cut: Cut) -> None:
    body, expected = transcript("tgi", case)
    replay.replies = [Reply(chunks=cut(body))]
    if expected["error"] is not None:
        with pytest.raises(ERRORS[expected["error"]["type"]]) as caught:
            runner.events(tgi(replay))
        exc = caught.value
        assert exc.message == expected["error"]["message"]
        assert exc.error_type == expected["error"]["type"] and exc.status_code is None
        assert exc.partial is not None
        check(exc.partial, expected)
        return
    result = runner.events(tgi(replay))
    check(result.response, expected)
    assert "".join(result.chunks) == expected["text"]
    # The end-of-sequence token is special: it is not text.
    assert all("<|" not in chunk for chunk in result.chunks)


@pytest.mark.parametrize(
    ("error_type", "error_class"),
    [
        ("overloaded", spout.OverloadedError),
        ("validation", spout.BadRequestError),
        ("incomplete_generation", spout.InternalServerError),
        ("template_error", spout.BadRequestError),
        ("something_new", spout.ProviderError),
    ],
)
def test_error_events(
    replay: ReplayServer, runner: Runner, error_type: str, error_class: type[spout.ProviderError]
) -> None:
    body = sse(token("Hi"), {"error": f"{error_type} happened", "error_type": error_type})
    replay.replies = [Reply(chunks=[body])]
    with pytest.raises(error_class) as caught:
        runner.text(tgi(replay))
    assert type(caught.value) is error_class
    assert caught.value.partial is not None and caught.value.partial.text == "Hi"


def test_request_body_and_headers(replay: ReplayServer, runner: Runner) -> None:
    body, _ = transcript("tgi", "generate_stream")
    replay.replies = [Reply(chunks=[body])]
    llm = tgi(replay, api_key="hf_test", headers={"X-Title": "spout tests"}, temperature=0.5)
    runner.text(
        llm,
        "Count from 1 to 5",
        system_prompt="Be brief.",
        max_tokens=20,
        stop="6",
        seed=7,
        top_p=0.9,
        top_k=10,
    )
    request = replay.requests[-1]
    assert request.method == "POST" and request.path == "/generate_stream"
    assert request.headers["Authorization"] == "Bearer hf_test"
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["X-Title"] == "spout tests"
    assert request.json() == {
        "inputs": "system: Be brief.\nuser: Count from 1 to 5\nassistant:",
        "parameters": {
            "temperature": 0.5,
            "do_sample": True,
            "max_new_tokens": 20,
            "stop": ["6"],
            "seed": 7,
            "top_p": 0.9,
            "top_k": 10,
            "details": True,
        },
    }


def test_greedy_and_defaults(replay: ReplayServer) -> None:
    # TGI rejects temperature 0 and top_p 1 (router/src/validation.rs): greedy is do_sample false.
    body, _ = transcript("tgi", "generate_stream")
    replay.replies = [Reply(chunks=[body])]
    tgi(replay).generate_stream("Hi", temperature=0, top_p=1.0).close()
    request = replay.requests[-1]
    assert "Authorization" not in request.headers  # a local TGI needs no key
    assert request.json() == {"inputs": "Hi", "parameters": {"do_sample": False, "details": True}}


def test_prompt_template(replay: ReplayServer) -> None:
    def chatml(messages: Sequence[Mapping[str, Any]]) -> str:
        turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return turns + "<|im_start|>assistant\n"

    body, _ = transcript("tgi", "generate_stream")
    replay.replies = [Reply(chunks=[body])]
    tgi(replay, prompt_template=chatml).generate_stream("Hi", system_prompt="Be brief.").close()
    assert replay.requests[-1].json()["inputs"] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_render_prompt() -> None:
    assert render_prompt([{"role": "user", "content": "Hi"}]) == "Hi"
    assert (
        render_prompt(
            [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "And now?"},
            ]
        )
        == "user: Hi\nassistant: Hello!\nuser: And now?\nassistant:"
    )


def test_not_streamed_is_the_same_response(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("tgi", "generate_stream")
    replay.replies = [Reply(chunks=[body])]
    streamed = runner.events(tgi(replay)).response
    answer = {
        "generated_text": expected["text"],
        "details": {
            "finish_reason": "eos_token",
            "generated_tokens": 10,
            "seed": None,
            "prefill": [{"id": i, "text": "x", "logprob": None} for i in range(7)],
            "tokens": [],
        },
    }
    replay.replies = [json_reply(answer)]
    response = runner.generate(tgi(replay), decoder_input_details=True)
    request = replay.requests[-1]
    assert request.path == "/generate"
    assert request.json()["parameters"]["decoder_input_details"] is True
    assert comparable(response) == comparable(streamed)


def test_not_streamed_without_prefill_has_no_input_count(
    replay: ReplayServer, runner: Runner
) -> None:
    # /generate's details carry no input_length (only an x-prompt-tokens header does).
    answer = {
        "generated_text": "Hello",
        "details": {
            "finish_reason": "length",
            "generated_tokens": 2,
            "seed": 42,
            "prefill": [],
            "tokens": [],
        },
    }
    replay.replies = [Reply(chunks=[json.dumps(answer).encode()])]
    response = runner.generate(tgi(replay))
    assert (response.text, response.finish_reason) == ("Hello", "length")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (None, 2)
    assert response.usage.extras == {"seed": 42}


@pytest.mark.parametrize(
    ("status", "error", "error_type", "error_class"),
    [
        (401, "Invalid credentials in Authorization header", None, spout.AuthenticationError),
        (404, "Not Found", None, spout.NotFoundError),
        (
            422,
            "Input validation error: `inputs` must have less than 4096 tokens. Given: 5000",
            "validation",
            spout.BadRequestError,
        ),
        (
            424,
            "Request failed during generation: Server error: out of memory",
            "generation",
            spout.InternalServerError,
        ),
        (429, "Model is overloaded", "overloaded", spout.OverloadedError),
        (500, "Incomplete generation", "incomplete_generation", spout.InternalServerError),
        (503, "unhealthy", "healthcheck", spout.ServiceUnavailableError),
    ],
)
def test_http_errors(
    replay: ReplayServer,
    runner: Runner,
    status: int,
    error: str,
    error_type: str | None,
    error_class: type[spout.ProviderError],
) -> None:
    payload: dict[str, Any] = {"error": error}
    if error_type:
        payload["error_type"] = error_type
    replay.replies = [json_reply(payload, status, {"x-request-id": "req_9", "retry-after": "3"})]
    exc = raised_on_start(runner, tgi(replay), error_class)
    assert (exc.status_code, exc.message, exc.error_type) == (status, error, error_type)
    assert exc.body == payload and exc.request_id == "req_9" and exc.retry_after == 3.0


@pytest.mark.parametrize("dropped", [False, True])
def test_stream_cut_before_its_end_is_an_interruption(
    replay: ReplayServer, runner: Runner, dropped: bool
) -> None:
    body, _ = transcript("tgi", "generate_stream")
    events = body.split(b"\n\n")
    replay.replies = [Reply(chunks=[b"\n\n".join(events[:4]) + b"\n\n"], abort=dropped)]
    with pytest.raises(spout.StreamInterruptedError) as caught:
        runner.text(tgi(replay))
    assert caught.value.partial is not None
    assert caught.value.partial.text == "Deep learning is a"


def test_special_tokens_are_not_text(replay: ReplayServer, runner: Runner) -> None:
    body = sse(
        token("<s>", special=True),
        token("Hi"),
        token(
            "</s>",
            special=True,
            generated_text="Hi",
            finish_reason="eos_token",
            generated_tokens=2,
            input_length=3,
        ),
    )
    replay.replies = [Reply(chunks=[body])]
    result = runner.events(tgi(replay))
    assert [e.text for e in result.events if isinstance(e, TextDelta)] == ["Hi"]
    assert result.response.usage.total_tokens == 5


def test_without_details_the_finish_is_still_known(replay: ReplayServer, runner: Runner) -> None:
    body = sse(token("Hi"), token("!", generated_text="Hi!"))
    replay.replies = [Reply(chunks=[body])]
    response = runner.text(tgi(replay)).response
    assert (response.text, response.finish_reason, response.raw_finish_reason) == (
        "Hi!",
        "stop",
        None,
    )
    assert response.usage.input_tokens is None


def test_base_url_and_token_from_environment(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_BASE_URL", replay.url)
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    body, _ = transcript("tgi", "generate_stream")
    replay.replies = [Reply(chunks=[body])]
    llm = made(create_llm("huggingface"))
    assert isinstance(llm.provider, HuggingFaceProvider) and llm.model == "tgi"
    llm.generate_stream("hi").close()
    assert replay.requests[-1].headers["Authorization"] == "Bearer hf_env"


# -- the OpenAI-compatible route ------------------------------------------------------------------


def test_chat_route_is_the_openai_adapter(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openai_chat", "text")
    replay.replies = [Reply(chunks=CUTS["mid_line"](body))]
    llm = made(
        create_llm(
            "huggingface",
            model="meta-llama/Llama-3.1-8B-Instruct",
            api="chat",
            base_url=f"{replay.url}/v1",
            api_key="hf_test",
        )
    )
    assert type(llm.provider) is HuggingFaceChatProvider
    response = runner.text(llm, "hi", system_prompt="Be brief.").response
    assert response.text == expected["text"] and response.provider == "huggingface"
    request = replay.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer hf_test"
    assert request.json()["messages"][0] == {"role": "system", "content": "Be brief."}


def test_a_v1_base_url_means_chat(replay: ReplayServer) -> None:
    llm = create_llm("huggingface", model="m", base_url=f"{replay.url}/v1/")
    assert type(llm.provider) is HuggingFaceChatProvider
    assert type(create_llm("huggingface", base_url=replay.url).provider) is HuggingFaceProvider
    native = create_llm("huggingface", base_url=f"{replay.url}/v1", api="generate")
    assert type(native.provider) is HuggingFaceProvider


def test_router_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(spout.ConfigurationError, match="HF_TOKEN"):
        create_llm("huggingface", model="openai/gpt-oss-120b", api="chat")
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    llm = create_llm("huggingface", model="openai/gpt-oss-120b", api="chat")
    assert llm.provider.base_url == "https://router.huggingface.co/v1"  # type: ignore[attr-defined]
    assert llm.provider.api_key == "hf_env"  # type: ignore[attr-defined]


def test_unknown_api() -> None:
    with pytest.raises(spout.ConfigurationError, match="'generate'"):
        create_llm("huggingface", api="responses")


def test_capabilities(replay: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tgi(replay).get_capabilities() == {
        ModelCapability.STREAMING: True,
        ModelCapability.ASYNC: True,
        ModelCapability.TOOLS: False,
        ModelCapability.TOOL_STREAMING: False,
        ModelCapability.USAGE_IN_STREAM: True,
        ModelCapability.REASONING: False,
        ModelCapability.SYSTEM_PROMPT: True,
        # The native API takes one text prompt: no files.
        ModelCapability.VISION: False,
        ModelCapability.PDF_INPUT: False,
        ModelCapability.AUDIO_INPUT: False,
    }
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    chat = create_llm("huggingface", model="m", api="chat").get_capabilities()
    assert chat[ModelCapability.TOOLS] and chat[ModelCapability.TOOL_STREAMING]
    assert chat[ModelCapability.VISION] and not chat[ModelCapability.PDF_INPUT]
    assert not chat[ModelCapability.AUDIO_INPUT]
    assert chat[ModelCapability.USAGE_IN_STREAM]  # the router is the profile's default endpoint
