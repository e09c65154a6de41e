"""Stream from the bundled SmolLM2 GGUF run by Hugging Face transformers, then print usage.

Run it with ``python examples/transformers_local.py``: no key and no network needed, only the
``transformers`` extra (``pip install "spout[transformers]"``). transformers dequantizes the
GGUF file on first use, which takes a while on a small CPU; the model then stays loaded for
the rest of the process.
"""

from __future__ import annotations

from spout import create_llm


def main() -> None:
    # model= could be a folder saved by transformers, or any GGUF file it can read.
    with create_llm("transformers") as llm:
        stream = llm.generate_stream("Count from 1 to 5", temperature=0, max_tokens=32)
        for chunk in stream:
            print(chunk, end="", flush=True)
        print()

        response = stream.response
        usage = response.usage
        print(f"\nmodel: {response.model}, finish reason: {response.finish_reason}")
        print(f"usage: {usage.input_tokens} prompt tokens, {usage.output_tokens} output tokens")


if __name__ == "__main__":
    main()
