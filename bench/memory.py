"""One long spout stream in a fresh process: peak memory, and the Accumulator's time; JSON.

Usage: python bench/memory.py BASE_URL CHUNKS
"""

from __future__ import annotations

import gc
import json
import sys
import time


def status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    # Writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0),
    # so the peak measured is the stream's, not the imports'.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def main() -> None:
    base, chunks = sys.argv[1], int(sys.argv[2])
    import spout

    llm = spout.create_llm("openai", model=f"burst-{chunks}", base_url=f"{base}/v1", api_key="sk")
    llm.generate_stream("warm").close()
    gc.collect()
    reset_peak()
    before = status_mb("VmRSS")
    stream = llm.generate_stream("Say something.")
    for _ in stream:
        pass
    response = stream.response
    peak = status_mb("VmHWM")
    text_mb = len(response.text.encode()) / 2**20
    assert response.usage.output_tokens == chunks
    del stream, response
    gc.collect()

    events = [spout.TextDelta(f" tok{i % 100}") for i in range(chunks)]
    start = time.perf_counter()
    accumulator = spout.Accumulator()
    for event in events:
        accumulator.add(event)
    accumulator.response()
    accumulate = time.perf_counter() - start
    print(json.dumps({"growth_mb": peak - before, "text_mb": text_mb, "accumulate_s": accumulate}))


if __name__ == "__main__":
    main()
