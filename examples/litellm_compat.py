"""litellm's completion() API on spout: code written for litellm, with only the import changed.

Runs on the bundled model (model="local/...") and on mock_response: no key, no network.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import spout
from spout import acompletion, completion, stream_chunk_builder
from spout.compat import RateLimitError  # litellm's exception names, for existing except clauses

messages = [{"role": "user", "content": "Write one sentence about rivers."}]
# The same answer every run.
settings: dict[str, Any] = {"max_tokens": 40, "seed": 1, "temperature": 0}

# Streaming: OpenAI chat.completion.chunk objects, whatever the provider.
chunks = []
for chunk in completion(model="local/smollm2", messages=messages, stream=True, **settings):
    chunks.append(chunk)
    print(chunk.choices[0].delta.content or "", end="", flush=True)
print()

# The chunks rebuilt into the complete response; attribute and item access both work.
full = stream_chunk_builder(chunks, messages=messages)
usage = full["usage"]
print(
    f"chunks: {len(chunks)}, finish_reason: {full.choices[0].finish_reason}, "
    f"usage: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens"
)
print("first chunk:", json.dumps(chunks[0].model_dump()))

# Not streamed: a chat.completion, the same answer.
response = completion(model="local/smollm2", messages=messages, **settings)
print(
    "same answer not streamed:",
    response.choices[0].message.content == full.choices[0].message.content,
)

# mock_response, for your own tests: streamed through the same chunk path, no network.
mocked = list(
    completion(
        model="openai/gpt-4o-mini",
        messages=messages,
        stream=True,
        mock_response="It is sunny in Oslo.",
        stream_options={"include_usage": True},
    )
)
text = "".join(c.choices[0].delta.content for c in mocked if c.choices)
print(
    f"mocked: {text!r} in {len(mocked)} chunks; last: choices={mocked[-1].choices} "
    f"usage={mocked[-1].usage.model_dump()}"
)

# Errors are spout's, and also litellm's names for them.
try:
    completion(
        model="openai/gpt-4o-mini", messages=messages, mock_response="litellm.RateLimitError"
    )
except RateLimitError as exc:
    also = isinstance(exc, spout.RateLimitError)
    print(f"caught RateLimitError (also spout.RateLimitError: {also}): {exc.message}")


# Async: the same chunks from acompletion.
async def main() -> None:
    received = []
    async for chunk in await acompletion(
        model="local/smollm2", messages=messages, stream=True, **settings
    ):
        received.append(chunk)
    built = stream_chunk_builder(received)
    print(f"async: {len(received)} chunks, finish_reason: {built.choices[0].finish_reason}")


asyncio.run(main())
