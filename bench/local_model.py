"""The bundled model through spout against llama-cpp-python's own streaming API; JSON.

Usage: python bench/local_model.py ROUNDS MAX_TOKENS
"""

from __future__ import annotations

import json
import statistics
import sys
import time

PROMPT = "Write a long story about a lighthouse keeper and a storm."


def main() -> None:
    rounds, max_tokens = int(sys.argv[1]), int(sys.argv[2])
    import spout

    llm = spout.create_llm()
    llama = llm.provider._model().llama  # type: ignore[attr-defined]
    messages = [{"role": "user", "content": PROMPT}]
    spout_rates, direct_rates = [], []
    llm.generate("warm up", max_tokens=4)
    for seed in range(1, rounds + 1):
        start = time.perf_counter()
        stream = llm.generate_stream(PROMPT, seed=seed, max_tokens=max_tokens)
        text = "".join(stream)
        spout_time = time.perf_counter() - start
        tokens = stream.response.usage.output_tokens or 0

        llama.reset()  # as spout does when given a seed: no cached prefix
        start = time.perf_counter()
        direct = "".join(
            chunk["choices"][0]["delta"].get("content") or ""
            for chunk in llama.create_chat_completion(
                messages, seed=seed, max_tokens=max_tokens, stream=True
            )
        )
        direct_time = time.perf_counter() - start
        if direct != text:
            raise SystemExit(f"outputs differ for seed {seed}: {text[:60]!r} / {direct[:60]!r}")
        spout_rates.append(tokens / spout_time)
        direct_rates.append(tokens / direct_time)
    print(
        json.dumps(
            {
                "spout": statistics.median(spout_rates),
                "direct": statistics.median(direct_rates),
                "ratio": statistics.median(
                    s / d for s, d in zip(spout_rates, direct_rates, strict=True)
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
