"""Stream a haiku from the bundled local model, then print its usage and timings.

Run it with ``python examples/quickstart.py``: no key and no network needed.
"""

from __future__ import annotations

from spout import create_llm


def main() -> None:
    with create_llm() as llm:  # the bundled SmolLM2-135M-Instruct, run in process
        stream = llm.generate_stream("Write a haiku about rivers.", max_tokens=60)
        for chunk in stream:
            print(chunk, end="", flush=True)
        print()

        response = stream.response
        usage = response.usage
        print(f"\nmodel: {response.model}, finish reason: {response.finish_reason}")
        print(f"usage: {usage.input_tokens} prompt tokens, {usage.output_tokens} output tokens")
        print(f"first token after {number(response.time_to_first_token, '.3f')} s")
        print(f"{number(response.duration, '.2f')} s in all")
        print(f"{number(response.output_tokens_per_second, '.1f')} tokens/s while generating")


def number(value: float | None, spec: str) -> str:
    """Timings are None when unknown (a response that never began, say)."""
    return "unknown" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
