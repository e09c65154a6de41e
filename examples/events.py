"""Read a stream as typed events (ResponseStart, TextDelta, Usage, Finish...) instead of text.

Run it with ``python examples/events.py``: uses the bundled local model, no key or network.
"""

from __future__ import annotations

from spout import Event, Finish, ResponseStart, TextDelta, Usage, create_llm


def describe(event: Event) -> str:
    match event:
        case ResponseStart(id=response_id, model=model):
            return f"id={response_id} model={model}"
        case TextDelta(text=text):
            return repr(text)
        case Usage(input_tokens=prompt, output_tokens=output):
            return f"{prompt} prompt tokens, {output} output tokens"
        case Finish(reason=reason, raw_reason=raw):
            return f"reason={reason} (raw: {raw})"
        case _:
            return repr(event)  # reasoning and tool-call events, from providers that send them


def main() -> None:
    with create_llm() as llm:
        stream = llm.generate_stream("Name three rivers.", max_tokens=12)
        for event in stream.events():
            print(f"{type(event).__name__:<14} {describe(event)}")


if __name__ == "__main__":
    main()
