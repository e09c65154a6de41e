"""A provider in a package of its own, found through the ``spout.providers`` entry point.

Run it with ``python examples/plugin_provider.py``: no key and no network needed. It writes a
tiny installed package, ``spout_echo`` (a module and its ``.dist-info`` with an
``entry_points.txt``, what ``pip install`` would leave), into a temporary folder on
``sys.path``; spout then finds its provider by name, with no change to spout. The provider
echoes the last message word by word and says three things of itself that spout asks it for:
how it takes a ``response_format``, what litellm calls its models, and its context window.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path

import spout
from spout import create_llm

PLUGIN = '''
"""spout_echo: a spout provider that echoes the last message, word by word."""

import json

from spout import Finish, ResponseStart, TextDelta, Usage
from spout.providers import OutputShape, Provider


class EchoProvider(Provider):
    name = "echo"
    default_model = "parrot"
    # What spout asks of a provider instead of testing its class:
    context_windows = {"parrot": 2048, "cockatoo": 8192, "budgie": 80}  # by model-name prefix
    litellm_models = ("cockatoo",)  # completion(model="cockatoo-1") reaches it

    def __init__(self, model=None, *, loud=False):  # create_llm's own keywords arrive here
        super().__init__(model)
        self.loud = loud

    def output_shape(self, fmt, params):
        # Its native way: an "echo_json" setting, and no instruction in the system prompt.
        return OutputShape({**params, "echo_json": True}, instruct=False)

    def open_stream(self, call):
        return self._events(call), lambda: None  # the events, and how to stop them early

    async def aopen_stream(self, call):
        async def events():
            for event in self._events(call):
                yield event

        async def release():
            pass

        return events(), release

    def _events(self, call):
        yield ResponseStart("echo-1", self.model)
        text = str(call.messages[-1]["content"])
        if text == "how many?":
            yield TextDelta(f"I was sent {len(call.messages)} messages")
        elif call.params.get("echo_json"):
            yield TextDelta(json.dumps({"words": text.split()}))
        else:
            for word in text.split():
                yield TextDelta((word.upper() if self.loud else word) + " ")
        yield Usage(len(text.split()), len(text.split()))
        yield Finish("stop", "end")
'''

ENTRY_POINTS = """
[spout.providers]
echo = spout_echo:EchoProvider
"""


def install(site: Path) -> None:
    """What `pip install spout-echo` leaves in site-packages: the module and its metadata."""
    (site / "spout_echo.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "spout_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spout-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        install(Path(folder))
        sys.path.insert(0, folder)

        llm = create_llm("echo:cockatoo", loud=True)
        print("streamed:", "".join(llm.generate_stream("rivers run to the sea")).strip())
        print("provider:", llm.provider_name, "model:", llm.model)

        answer = llm.generate("rivers run", response_format={"type": "json_object"})
        print("response_format through its output_shape:", answer.text)

        reply = spout.completion(
            model="cockatoo-1", messages=[{"role": "user", "content": "hello plugin"}]
        )
        print("litellm's completion() by its model name:", reply.choices[0].message.content)

        # A session trims its history to the model's context window, which the provider
        # declared: "budgie" has 80 tokens, so only the last turns are sent.
        session = spout.Session(provider=create_llm("echo:budgie"))
        for _ in range(6):
            session.generate("a fairly long sentence about rivers that run down to the sea")
        print("a session on an 80-token model:", session.generate("how many?").text)
        print("the session keeps every turn:", len(session.messages), "messages")

        sys.path.remove(folder)


if __name__ == "__main__":
    main()
