"""OpenAI-compatible profiles, model-string routing, and refusals before any network call."""

from __future__ import annotations

import json
from typing import Any

import pytest

import spout
from helpers import Runner
from replay_server import CUTS, ReplayServer, Reply, transcript
from spout import create_llm
from spout._llm import parse_model_string


def test_openrouter_keepalives_cost_and_app_headers(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openrouter", "keepalive_comments")
    replay.replies = [Reply(chunks=CUTS["every_byte"](body))]
    llm = create_llm(
        "openrouter",
        model="openai/gpt-4o-mini",
        base_url=f"{replay.url}/api/v1",
        api_key="sk-or",
        referer="https://app.example",
        title="Spout Tests",
    )
    response = runner.text(llm).response
    assert response.text == expected["text"]
    assert response.usage.extras["cost"] == expected["usage_raw"]["cost"]
    request = replay.requests[-1]
    assert request.path == "/api/v1/chat/completions"
    assert request.headers["HTTP-Referer"] == "https://app.example"
    assert request.headers["X-Title"] == "Spout Tests"
    assert request.headers["Authorization"] == "Bearer sk-or"
    assert request.json()["model"] == "openai/gpt-4o-mini"


def test_openrouter_error_mid_stream_keeps_the_partial(
    replay: ReplayServer, runner: Runner
) -> None:
    # OpenRouter reports an upstream failure after the 200 as a chunk with a top-level error
    # and finish_reason "error" (https://openrouter.ai/docs/api-reference/errors).
    def data(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    body = (
        b": OPENROUTER PROCESSING\n\n"
        + data({"id": "gen-1", "choices": [{"index": 0, "delta": {"content": "Half an"}}]})
        + data(
            {
                "id": "gen-1",
                "error": {"code": 502, "message": "Upstream provider went away"},
                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
            }
        )
    )
    replay.replies = [Reply(chunks=[body])]
    llm = create_llm("openrouter", model="m", base_url=f"{replay.url}/api/v1", api_key="k")
    with pytest.raises(
        spout.ServiceUnavailableError, match="Upstream provider went away"
    ) as caught:
        runner.text(llm)
    assert caught.value.partial is not None and caught.value.partial.text == "Half an"


@pytest.mark.parametrize(
    ("name", "base_url", "key_env"),
    [
        ("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        ("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        ("deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY"),
    ],
)
def test_hosted_profiles_need_their_key(
    name: str, base_url: str, key_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(key_env, raising=False)
    with pytest.raises(spout.ConfigurationError, match=key_env):
        create_llm(name, model="m")
    monkeypatch.setenv(key_env, "sk-env")
    llm = create_llm(name, model="m")
    assert llm.provider.base_url == base_url  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "port"), [("vllm", 8000), ("llamacpp", 8080), ("lmstudio", 1234)])
def test_servers_people_run_need_no_key(name: str, port: int) -> None:
    llm = create_llm(name, model="m")
    assert llm.provider.base_url == f"http://localhost:{port}/v1"  # type: ignore[attr-defined]


def test_a_profile_speaks_the_chat_wire_format(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openai_chat", "parallel_tool_calls")
    replay.replies = [Reply(chunks=CUTS["mid_line"](body))]
    llm = create_llm("vllm", model="m", base_url=f"{replay.url}/v1")
    response = runner.events(llm).response
    assert [c.name for c in response.tool_calls] == [c["name"] for c in expected["tool_calls"]]
    assert "Authorization" not in replay.requests[-1].headers


@pytest.mark.parametrize(
    ("model", "provider", "name"),
    [
        ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
        ("gemini/gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        ("openrouter/openai/gpt-4o", "openrouter", "openai/gpt-4o"),
        ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
    ],
)
def test_a_model_string_picks_its_provider(model: str, provider: str, name: str) -> None:
    llm = create_llm(model=model, api_key="k")
    assert (llm.provider_name, llm.model) == (provider, name)


def test_model_strings_split_only_at_known_providers() -> None:
    assert parse_model_string("anthropic:claude-sonnet-4-5") == ("anthropic", "claude-sonnet-4-5")
    assert parse_model_string("openrouter:openai/gpt-4o") == ("openrouter", "openai/gpt-4o")
    assert parse_model_string("meta-llama/Llama-3") == ("meta-llama/llama-3", None)
    # An explicit provider is never re-routed by its model's slashes.
    llm = create_llm("openrouter", model="anthropic/claude-sonnet-4.5", api_key="k")
    assert (llm.provider_name, llm.model) == ("openrouter", "anthropic/claude-sonnet-4.5")


def test_a_path_is_not_a_provider(tmp_path: Any) -> None:
    with pytest.raises(spout.ConfigurationError, match="no GGUF model file"):
        create_llm(model=str(tmp_path / "missing.gguf"))


def test_tools_on_a_provider_without_tools_fail_before_any_request(replay: ReplayServer) -> None:
    replay.replies = [Reply(chunks=[b"never sent"])]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    llm = create_llm("huggingface", model="tgi", base_url=replay.url)
    with pytest.raises(spout.ConfigurationError, match="cannot call tools"):
        llm.generate_stream("hi", tools=tools)
    assert replay.requests == []


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(spout.ConfigurationError, match=r"known providers: .*anthropic.*openrouter"):
        create_llm("nosuch", model="m")


@pytest.mark.model
def test_an_existing_relative_path_is_not_routed(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, model_path: Any
) -> None:
    # "local/model.gguf" is a file here, not the local provider with model "model.gguf".
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "model.gguf").symlink_to(model_path)
    monkeypatch.chdir(tmp_path)
    llm = create_llm(model="local/model.gguf")
    assert (llm.provider_name, llm.model) == ("local", "local/model.gguf")
