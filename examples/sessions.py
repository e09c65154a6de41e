"""A conversation with the bundled model: turns kept, one cut short, stored, reloaded, exported.

Run it with ``python examples/sessions.py``: no key and no network needed. The conversation
is stored in a temporary file here; without ``store=`` it goes to spout's data directory
(``$SPOUT_HOME``, else ``$XDG_DATA_HOME/spout``), where ``spout conversations list`` finds it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from spout import Session, conversations, create_llm


def main() -> None:
    store = Path(tempfile.mkdtemp()) / "conversations.db"
    llm = create_llm()  # the bundled SmolLM2-135M-Instruct, run in process
    session = Session(
        llm, system_prompt="Be brief.", store=store, autosave=True, temperature=0, max_tokens=40
    )

    session.add_message("user", "Tell me about rivers.")
    for chunk in session.generate_stream():
        print(chunk, end="", flush=True)
    print("\n")

    # A reply cut short is kept, marked with why it stopped.
    with session.generate_stream("And about the sea?") as stream:
        for count, chunk in enumerate(stream):
            print(chunk, end="", flush=True)
            if count == 4:
                break
    print("\n")
    last = session.turns[-1]
    print(f"kept: {last.text!r} (incomplete: {last.incomplete})")

    # The next turn sends everything before it, the cut reply included.
    reply = session.generate("In one sentence?")
    print(f"turn 3 read {reply.usage.input_tokens} prompt tokens: the whole conversation")
    session.close()

    # Later, or in another process: the stored conversation, to go on with.
    again = Session.load(session.id, provider=llm, store=store)
    print(f"loaded {again.id}: {len(again.turns)} turns, title {again.title!r}")
    for summary in conversations.list(store=store):
        print(f"stored: {summary.id}  {summary.turn_count} turns  models {list(summary.models)}")
    markdown = conversations.export(again.id, format="md", store=store)
    print(markdown.splitlines()[0])
    again.close()
    llm.close()


if __name__ == "__main__":
    main()
