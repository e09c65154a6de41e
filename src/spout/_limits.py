"""How much of one response spout holds in memory: :class:`ResponseLimits`.

A server is not trusted to be small: a line that never ends, an event of endless ``data:``
lines, a tool call whose arguments never close, or a compressed body that inflates a
thousandfold would otherwise grow memory until the process dies. Past a limit the call raises
:class:`spout.ProtocolError` naming the limit, with the response so far on ``.partial``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["DEFAULT_LIMITS", "ResponseLimits"]

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """Caps on what one response may make spout hold, in bytes (characters for arguments).

    ``max_event_bytes``: one Server-Sent Events line or event (its ``data`` lines together),
    one NDJSON line, one AWS event-stream message. 16 MiB: an event can carry a whole file
    (a generated image, base64, in an OpenAI Responses ``output_item.done`` and again in
    ``response.completed``; Gemini's ``inlineData``), a few MB for a large PNG, and AWS's own
    reader allows 16 MiB a message.

    ``max_tool_arguments``: one tool call's arguments, as streamed. 4 MiB: no model today
    writes more than 128k output tokens (about 512 KB of text) in one answer; 4 MiB is eight
    times that, and far below what would strain memory.

    ``max_body_bytes``: one response's body after decompression (a stream's, or a whole
    answer's, or an error's). 64 MiB: room for several images of the size above, and a cap a
    gzip bomb reaches in a fraction of a second. The body is inflated in pieces of at most
    64 KiB, so memory stays near what was kept, never near what the bomb would inflate to.

    Example::

        llm = create_llm("openai", limits=spout.ResponseLimits(max_body_bytes=256 * 1024**2))
        llm = create_llm("openai", limits={"max_body_bytes": 256 * 1024**2})  # a config's table
    """

    max_event_bytes: int = 16 * _MIB
    max_tool_arguments: int = 4 * _MIB
    max_body_bytes: int = 64 * _MIB

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"ResponseLimits.{spec.name} must be a positive whole number, not {value!r}"
                )

    @classmethod
    def coerce(cls, value: Any) -> ResponseLimits:
        """Limits from what a caller passed: ResponseLimits, a mapping of its fields (a TOML
        table, say; the fields it leaves out keep their defaults) or None (the defaults)."""
        if value is None:
            return DEFAULT_LIMITS
        if isinstance(value, ResponseLimits):
            return value
        if isinstance(value, Mapping):
            names = [spec.name for spec in fields(cls)]
            unknown = [key for key in value if key not in names]
            if unknown:
                raise ValueError(
                    f"limits: no setting {', '.join(map(repr, unknown))}; ResponseLimits has "
                    f"{', '.join(names)}"
                )
            return cls(**value)
        raise TypeError(
            f"limits must be a spout.ResponseLimits or a mapping of its fields, not "
            f"{type(value).__name__}"
        )


#: The limits of an LLM made without ``limits=``.
DEFAULT_LIMITS = ResponseLimits()


def over_limit(what: str, limit: int, setting: str, unit: str = "bytes") -> str:
    """The message of the error raised past a limit: what, the limit, and how to raise it."""
    return (
        f"{what} exceeded {limit} {unit}, the limit of ResponseLimits.{setting}; spout stops "
        "reading rather than hold more. If the server is trusted, raise it: "
        f"create_llm(..., limits=spout.ResponseLimits({setting}=...))"
    )
