"""The tests against real servers: llama.cpp's llama-server (tests/llama_cpp_server.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from llama_cpp_server import llama_cpp_server

# The SDK tests put the in-thread gateway of tests/gateway/gateway_server.py in front of it.
GATEWAY_TESTS = Path(__file__).resolve().parents[1] / "gateway"
if str(GATEWAY_TESTS) not in sys.path:
    sys.path.append(str(GATEWAY_TESTS))

__all__ = ["llama_cpp_server"]
