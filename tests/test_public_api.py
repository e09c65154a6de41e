"""The public surface: exactly these names, each importable from `spout`."""

from __future__ import annotations

import subprocess
import sys

import spout

PUBLIC = [
    "LLM",
    "Accumulator",
    "AsyncStream",
    "AsyncToolStream",
    "AuthenticationError",
    "BadRequestError",
    "MaxToolRoundsError",
    "Tool",
    "ToolCallParseError",
    "ToolError",
    "ToolResult",
    "ToolStream",
    "tool",
    "Retry",
    "Timeout",
    "ResponseLimits",
    "Capabilities",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionError",
    "ContextWindowExceededError",
    "Event",
    "File",
    "FileStart",
    "FileEnd",
    "Citation",
    "RawEvent",
    "Finish",
    "FinishReason",
    "FirstTokenTimeout",
    "IdleTimeout",
    "InternalServerError",
    "ModelCapability",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
    "ReasoningDelta",
    "RefusalDelta",
    "Response",
    "ResponseStart",
    "Prices",
    "ServiceUnavailableError",
    "SpoutError",
    "Stream",
    "StreamError",
    "StreamInterruptedError",
    "TextDelta",
    "TimeoutError",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "TotalTimeout",
    "TransportError",
    "Usage",
    "__version__",
    "create_llm",
    "has_capability",
    "instrument",
    "continue_trace",
    "Session",
    "SessionStream",
    "AsyncSessionStream",
    "Turn",
    "StoreError",
    "ConversationNotFoundError",
    "CallbackError",
    "StreamStats",
    "StreamReader",
    "AsyncStreamReader",
    "StructuredOutputError",
    "PendingAsyncStream",
    "completion",
    "acompletion",
    "stream_chunk_builder",
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
        " 'numpy', 'asyncio', 'pydantic', 'spout.compat', 'spout.session', 'spout._tee',"
        " 'sqlite3', 'opentelemetry') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_names_loaded_on_first_use_work_every_way() -> None:
    # The litellm-style functions, sessions and readers load on first use; every way of
    # reaching them works in a fresh interpreter.
    code = (
        "import spout\n"
        "from spout import Session, completion\n"
        "from spout.compat import completion as c2\n"
        "assert completion is c2 is spout.completion is spout.compat.completion\n"
        "assert Session is spout.session.Session\n"
        "assert spout.StreamReader.__module__ == 'spout._tee'\n"
        "assert {'Session', 'acompletion', 'StreamReader'} <= set(dir(spout))\n"
        "try:\n"
        "    spout.Sesion\n"
        "except AttributeError as exc:\n"
        "    assert 'Sesion' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('a misspelt name must be an AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
