"""spout: one streaming-first interface to every LLM provider.

Example::

    from spout import create_llm

    llm = create_llm()  # the bundled local model
    for chunk in llm.generate_stream("Write a haiku about rivers."):
        print(chunk, end="", flush=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._capabilities import Capabilities, ModelCapability, has_capability
from ._cost import Prices
from ._errors import (
    AuthenticationError,
    BadRequestError,
    CallbackError,
    ConfigurationError,
    ConnectionError,
    ConnectTimeout,
    ContextWindowExceededError,
    ConversationNotFoundError,
    FirstTokenTimeout,
    IdleTimeout,
    InternalServerError,
    MaxToolRoundsError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    ServiceUnavailableError,
    SpoutError,
    StoreError,
    StreamError,
    StreamInterruptedError,
    StructuredOutputError,
    TimeoutError,
    ToolCallParseError,
    ToolError,
    TotalTimeout,
    TransportError,
)
from ._events import (
    Citation,
    Event,
    FileEnd,
    FileStart,
    Finish,
    FinishReason,
    RawEvent,
    ReasoningDelta,
    RefusalDelta,
    ResponseStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)
from ._files import File
from ._limits import ResponseLimits
from ._llm import LLM, create_llm
from ._otel import continue_trace, instrument
from ._policy import Retry, Timeout
from ._response import Accumulator, Response
from ._stats import StreamStats
from ._stream import AsyncStream, PendingAsyncStream, Stream
from ._tool_loop import AsyncToolStream, ToolStream
from ._turn import Turn
from .tools import Tool, tool

if TYPE_CHECKING:
    from ._tee import AsyncStreamReader, StreamReader
    from .compat import acompletion, completion, stream_chunk_builder
    from .session import AsyncSessionStream, Session, SessionStream

__version__ = "0.1.0"

__all__ = [
    "LLM",
    "Accumulator",
    "AsyncSessionStream",
    "AsyncStream",
    "AsyncStreamReader",
    "AsyncToolStream",
    "AuthenticationError",
    "BadRequestError",
    "CallbackError",
    "Capabilities",
    "Citation",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionError",
    "ContextWindowExceededError",
    "ConversationNotFoundError",
    "Event",
    "File",
    "FileEnd",
    "FileStart",
    "Finish",
    "FinishReason",
    "FirstTokenTimeout",
    "IdleTimeout",
    "InternalServerError",
    "MaxToolRoundsError",
    "ModelCapability",
    "NotFoundError",
    "OverloadedError",
    "PendingAsyncStream",
    "PermissionDeniedError",
    "Prices",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
    "RawEvent",
    "ReasoningDelta",
    "RefusalDelta",
    "Response",
    "ResponseLimits",
    "ResponseStart",
    "Retry",
    "ServiceUnavailableError",
    "Session",
    "SessionStream",
    "SpoutError",
    "StoreError",
    "Stream",
    "StreamError",
    "StreamInterruptedError",
    "StreamReader",
    "StreamStats",
    "StructuredOutputError",
    "TextDelta",
    "Timeout",
    "TimeoutError",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallParseError",
    "ToolCallStart",
    "ToolError",
    "ToolResult",
    "ToolStream",
    "TotalTimeout",
    "TransportError",
    "Turn",
    "Usage",
    "__version__",
    "acompletion",
    "completion",
    "continue_trace",
    "create_llm",
    "has_capability",
    "instrument",
    "stream_chunk_builder",
    "tool",
]


# Loaded on first use, so a program that only streams does not pay for them at import:
# the litellm-style functions, sessions, stream readers, and the stored conversations
# (which load sqlite3).
_LAZY = {
    "acompletion": ".compat",
    "completion": ".compat",
    "stream_chunk_builder": ".compat",
    "Session": ".session",
    "SessionStream": ".session",
    "AsyncSessionStream": ".session",
    "StreamReader": "._tee",
    "AsyncStreamReader": "._tee",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in ("compat", "conversations", "session"):  # submodules, as attributes
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spout' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
