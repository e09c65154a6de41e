"""What a model can do, declared as data and queried by name."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

__all__ = ["Capabilities", "ModelCapability", "has_capability"]


class ModelCapability(str, enum.Enum):
    """A thing a provider and model may support.

    Example::

        caps = llm.get_capabilities()
        if has_capability(caps, ModelCapability.TOOL_STREAMING):
            ...
    """

    STREAMING = "streaming"
    """Text arrives as it is generated."""
    ASYNC = "async"
    """``generate_async`` and ``agenerate_stream`` run without blocking the event loop."""
    TOOLS = "tools"
    """The model can call tools."""
    TOOL_STREAMING = "tool_streaming"
    """Tool-call arguments arrive piece by piece while they are generated."""
    USAGE_IN_STREAM = "usage_in_stream"
    """A stream reports token usage."""
    REASONING = "reasoning"
    """The model's reasoning (thinking) text is streamed apart from its answer."""
    SYSTEM_PROMPT = "system_prompt"
    """The model takes a system prompt."""
    VISION = "vision"
    """The model takes images in a prompt (:class:`~spout.File`, ``image_url`` parts)."""
    PDF_INPUT = "pdf_input"
    """The model takes PDF documents in a prompt."""
    AUDIO_INPUT = "audio_input"
    """The model takes audio in a prompt (``input_audio`` parts)."""
    MAX_TOKENS = "max_tokens"
    """The largest number of output tokens the model supports (an int), when known."""
    CONTEXT_WINDOW = "context_window"
    """The model's context size in tokens (an int), when known."""


Capabilities = dict[ModelCapability, Any]


def has_capability(capabilities: Mapping[Any, Any], capability: ModelCapability | str) -> bool:
    """Whether ``capabilities`` declares ``capability`` (by enum member or by its name).

    >>> has_capability({ModelCapability.STREAMING: True}, "streaming")
    True
    """
    cap = ModelCapability(capability)
    return bool(capabilities.get(cap, capabilities.get(cap.value, False)))
