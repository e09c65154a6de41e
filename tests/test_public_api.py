"""The public surface: exactly these names, each importable from `spout`."""

from __future__ import annotations

import subprocess
import sys

import spout

PUBLIC = [
    "LLM", "Accumulator", "AsyncStream", "AsyncToolStream", "AuthenticationError",
    "BadRequestError", "MaxToolRoundsError", "Tool", "ToolCallParseError", "ToolError",
    "ToolResult", "ToolStream", "tool", "Retry", "Timeout",
    "Capabilities", "ConfigurationError", "ConnectTimeout", "ConnectionError",
    "ContextWindowExceededError", "Event", "Finish", "FinishReason", "FirstTokenTimeout",
    "IdleTimeout", "InternalServerError", "ModelCapability", "NotFoundError", "OverloadedError",
    "PermissionDeniedError", "ProtocolError", "ProviderError", "RateLimitError",
    "ReasoningDelta", "Response", "ResponseStart", "ServiceUnavailableError", "SpoutError",
    "Stream", "StreamError", "StreamInterruptedError", "TextDelta", "TimeoutError", "ToolCall",
    "ToolCallDelta", "ToolCallEnd", "ToolCallStart", "TotalTimeout", "TransportError", "Usage",
    "__version__", "create_llm", "has_capability",
    "Session", "SessionStream", "AsyncSessionStream", "Turn", "StoreError",
    "ConversationNotFoundError",
    "CallbackError", "StreamStats", "StreamReader", "AsyncStreamReader",
    "StructuredOutputError",
    "completion", "acompletion", "stream_chunk_builder",
]


def test_all_is_the_public_api() -> None:
    # A change here is a change to what users can rely on: make it on purpose.
    assert sorted(spout.__all__) == sorted(PUBLIC)
    for name in spout.__all__:
        assert getattr(spout, name) is not None


def test_decoders_are_public_modules() -> None:
    from spout.ndjson import NDJSONDecoder
    from spout.sse import ServerSentEvent, SSEDecoder

    assert SSEDecoder().feed(b"data: x\n\n") == [ServerSentEvent("x")]
    assert NDJSONDecoder().feed(b'{"a": 1}\n') == [{"a": 1}]


def test_every_error_is_a_spout_error() -> None:
    errors = [
        getattr(spout, n) for n in PUBLIC if n.endswith(("Error", "Timeout")) and n != "Timeout"
    ]
    assert all(issubclass(e, spout.SpoutError) for e in errors)
    assert issubclass(spout.ContextWindowExceededError, spout.BadRequestError)
    assert issubclass(spout.OverloadedError, spout.ServiceUnavailableError)


def test_import_is_light() -> None:
    # Providers and optional extras load on first use, not on `import spout`.
    code = (
        "import sys, spout; "
        "print(sorted(m for m in ('llama_cpp', 'spout.providers.local', 'spout.providers.openai',"
        " 'numpy', 'asyncio', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
