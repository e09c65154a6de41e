"""Stop a stream early: leaving the loop closes it, and what arrived is kept.

Run it with ``python examples/cancel.py``: uses the bundled local model, no key or network.
"""

from __future__ import annotations

from spout import create_llm


def main() -> None:
    with create_llm() as llm:
        stream = llm.generate_stream("Tell me a long story about a dragon.", max_tokens=300)
        for count, chunk in enumerate(stream, start=1):
            print(chunk, end="", flush=True)
            if count == 5:
                break  # closes the stream: the local model stops within a token
        print("\n")

        response = stream.response  # no further reading: the response as far as it got
        print(f"closed: {stream.closed}")
        print(f"kept: {response.text!r}")
        print(f"finish reason: {response.finish_reason} (the answer was cut off)")


if __name__ == "__main__":
    main()
