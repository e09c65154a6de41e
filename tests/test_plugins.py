"""Providers from other packages: declared in the ``spout.providers`` entry-point group, found
by ``create_llm`` with no change to spout."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import spout
from spout import create_llm
from spout.providers._registry import BUILT_IN, ENTRY_POINT_GROUP

# A provider as a third-party package would write it: only the public protocol.
PLUGIN = '''
"""An echo provider, as a package of its own would ship it."""

import json

from spout import Finish, ResponseStart, TextDelta, Usage
from spout.providers import AsyncSource, Call, OutputShape, Provider, SyncSource


def _events(call: Call):
    words = str(call.messages[-1]["content"]).split()
    yield ResponseStart("echo-1", "echo")
    for word in words:
        yield TextDelta(word + " ")
    yield Usage(len(words), len(words), {})
    yield Finish("stop", "end")


class EchoProvider(Provider):
    name = "echo"
    default_model = "parrot"

    def __init__(self, model=None, *, loud=False):
        super().__init__(model)
        self.loud = loud

    def open_stream(self, call: Call) -> SyncSource:
        return _events(call), lambda: None

    async def aopen_stream(self, call: Call) -> AsyncSource:
        async def events():
            for event in _events(call):
                yield event

        async def release():
            return None

        return events(), release


class NotAProvider:
    pass


class MirrorProvider(Provider):
    """Answers with what it was sent, as JSON; says how it takes what spout asks of it."""

    name = "mirror"
    default_model = "glass-1"
    context_windows = {"glass-": 3000}
    litellm_prefixes = ("mirror_ai",)
    litellm_models = ("glass-",)

    def output_shape(self, fmt, params):
        # Its own field for the schema, and no instruction in the prompt.
        return OutputShape({**params, "mirror_schema": fmt.schema}, instruct=False)

    def litellm_params(self, params):
        params = dict(params)
        if "max_completion_tokens" in params:
            params["budget"] = params.pop("max_completion_tokens")
        return params

    def _events(self, call: Call):
        system = [m["content"] for m in call.messages if m["role"] == "system"]
        seen = {"model": self.model, "params": call.params, "system": system}
        yield ResponseStart("mirror-1", self.model)
        yield TextDelta(json.dumps(seen, default=str))
        yield Finish("stop", "end")

    def open_stream(self, call: Call) -> SyncSource:
        return self._events(call), lambda: None

    async def aopen_stream(self, call: Call) -> AsyncSource:
        async def events():
            for event in self._events(call):
                yield event

        async def release():
            return None

        return events(), release
'''


def _install(root: Path, entry_points: str) -> Path:
    """A package installed as pip would leave it: its module, and a dist-info folder."""
    (root / "spout_echo_plugin.py").write_text(PLUGIN)
    info = root / "spout_echo_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spout-echo-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")
    return root


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = _install(
        tmp_path,
        "echo = spout_echo_plugin:EchoProvider\n"
        "mirror = spout_echo_plugin:MirrorProvider\n"
        "broken = spout_echo_plugin:NotAProvider\n"
        "missing = spout_echo_plugin_gone:Nothing\n"
        "openai = spout_echo_plugin:EchoProvider",
    )
    monkeypatch.syspath_prepend(str(root))
    yield root
    sys.modules.pop("spout_echo_plugin", None)


def test_a_package_adds_a_provider(plugin: Path, mode: str) -> None:
    llm = create_llm("echo", loud=True)
    assert llm.provider_name == "echo" and llm.model == "parrot"
    assert llm.provider.loud is True  # type: ignore[attr-defined]
    if mode == "sync":
        chunks = list(llm.generate_stream("say these words"))
    else:

        async def run() -> list[str]:
            return [chunk async for chunk in llm.agenerate_stream("say these words")]

        chunks = asyncio.run(run())
    assert chunks == ["say ", "these ", "words "]
    response = llm.generate("two words")
    assert response.text == "two words " and response.usage.output_tokens == 2
    assert response.finish_reason == "stop"


def test_a_plugin_is_reached_by_every_way_of_naming_a_model(plugin: Path) -> None:
    assert create_llm("echo:cockatoo").model == "cockatoo"
    assert create_llm(model="echo/cockatoo").provider_name == "echo"
    # The litellm-style entry point too.
    response = spout.completion(model="echo/cockatoo", messages=[{"role": "user", "content": "hi"}])
    assert response.choices[0].message.content == "hi "


def test_a_plugin_cannot_take_a_built_in_name(plugin: Path) -> None:
    from spout.providers.openai import OpenAIProvider

    llm = create_llm("openai", model="gpt-4o-mini", api_key="sk-test")
    assert type(llm.provider) is OpenAIProvider


def test_a_bad_plugin_is_named_in_the_error(plugin: Path) -> None:
    with pytest.raises(
        spout.ConfigurationError,
        match=r"'broken' \(from spout-echo-plugin\) .*"
        r"not a subclass of spout\.providers\.Provider",
    ):
        create_llm("broken")
    with pytest.raises(
        spout.ConfigurationError,
        match=r"'missing' .*could not be loaded: "
        r"ModuleNotFoundError",
    ):
        create_llm("missing")
    with pytest.raises(
        spout.ConfigurationError,
        match=r"unknown provider 'nope'; known providers: "
        r".*\becho\b.*\blocal\b",
    ):
        create_llm("nope")


def test_a_plugin_works_in_a_fresh_process_with_no_change_to_spout(plugin: Path) -> None:
    code = textwrap.dedent("""
        from spout import create_llm
        print("".join(create_llm("echo").generate_stream("from another process")))
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(plugin), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from another process \n"


#: What the mirror answers: its JSON, whatever it saw.
SEEN = {"type": "object", "required": ["model", "params", "system"]}


def test_a_plugin_takes_response_format_its_own_way(plugin: Path, mode: str) -> None:
    llm = create_llm("mirror")
    if mode == "sync":
        response = llm.generate("what did you see?", response_format=SEEN)
    else:

        async def run() -> spout.Response:
            stream = llm.agenerate_stream("what did you see?", response_format=SEEN)
            return await stream.get_response()

        response = asyncio.run(run())
    seen = response.parsed
    assert seen["params"]["mirror_schema"] == SEEN
    assert seen["system"] == []  # it asked for no instruction in the prompt


def test_compat_asks_a_plugin_how_it_maps_litellm(plugin: Path) -> None:
    messages = [{"role": "user", "content": "hi"}]

    def seen(model: str, **kwargs: Any) -> dict[str, Any]:
        response = spout.completion(model=model, messages=messages, **kwargs)
        answer = json.loads(response.choices[0].message.content)
        assert isinstance(answer, dict)
        return answer

    # litellm's name for it, and its own mapping of litellm's parameters.
    answer = seen(model="mirror_ai/glass-2", max_completion_tokens=7)
    assert answer["model"] == "glass-2"
    assert answer["params"] == {"budget": 7}
    # A bare model name, by how the plugin's models begin.
    assert seen(model="glass-3")["model"] == "glass-3"
    # response_format through compat, in the plugin's shape.
    fmt = {"type": "json_schema", "json_schema": {"name": "seen", "schema": SEEN}}
    answer = seen(model="mirror/glass-2", response_format=fmt)
    assert answer["params"]["mirror_schema"] == SEEN


def test_the_context_window_is_the_plugins_own(plugin: Path) -> None:
    from spout._context import context_window, trim_history

    llm = create_llm("mirror", model="glass-2")
    assert context_window(llm) == 3000
    assert context_window(create_llm("mirror", model="other")) is None
    # A history past the window is trimmed to it.
    history = []
    for turn in range(12):
        history += [
            {"role": "user", "content": f"question {turn} " + "word " * 200},
            {"role": "assistant", "content": "answer " * 200},
        ]
    kept = trim_history(llm, history)
    assert 0 < len(kept) < len(history) and kept[-1] == history[-1]


def test_spout_declares_its_own_providers_as_entry_points() -> None:
    # The table spout reads first and the entry points it installs say the same.
    declared = {
        entry.name: entry.value
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        if entry.dist is not None and entry.dist.name == "spout"
    }
    assert declared == {name: f"{module}:{cls}" for name, (module, cls) in BUILT_IN.items()}
