"""litellm's completion(), acompletion() and stream_chunk_builder(), on spout's engine.

Code written against litellm switches by changing one import::

    from spout import completion, acompletion, stream_chunk_builder

    response = completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    print(response.choices[0].message.content)            # attribute access
    print(response["choices"][0]["message"]["content"])   # and item access

    chunks = []
    for chunk in completion(model="anthropic/claude-sonnet-4-5", messages=messages, stream=True):
        chunks.append(chunk)
        print(chunk.choices[0].delta.content or "", end="", flush=True)
    full = stream_chunk_builder(chunks, messages=messages)

Whatever the provider, streams come out as OpenAI ``chat.completion.chunk`` objects, built from
spout's typed events (one chunk per event, about two microseconds each) and non-streamed calls as
an OpenAI ``chat.completion``. Errors are spout's, and each is also the litellm-named class
exported here (``RateLimitError``, ``Timeout``...). What differs from litellm is listed in
docs/migrating-from-litellm.md.
"""

from __future__ import annotations

from .._litellm_errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)
from ._builder import stream_chunk_builder
from ._calls import acompletion, completion
from ._llms import _close_sync_llms as _close_sync_llms  # for tests and bench: between runs
from ._objects import (
    ChatCompletionDeltaToolCall,
    ChatCompletionMessageToolCall,
    Choices,
    Delta,
    Function,
    Message,
    ModelResponse,
    ModelResponseStream,
    OpenAIObject,
    StreamingChoices,
    Usage,
)
from ._streams import AsyncCompletionStream, CompletionStream

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncCompletionStream",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletionDeltaToolCall",
    "ChatCompletionMessageToolCall",
    "Choices",
    "CompletionStream",
    "ContextWindowExceededError",
    "Delta",
    "Function",
    "InternalServerError",
    "Message",
    "ModelResponse",
    "ModelResponseStream",
    "NotFoundError",
    "OpenAIObject",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "StreamingChoices",
    "Timeout",
    "Usage",
    "acompletion",
    "completion",
    "stream_chunk_builder",
]
