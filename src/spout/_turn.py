"""Turn: one exchange of a conversation, as a session keeps it and the store writes it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._events import Usage

__all__ = ["Incomplete", "Turn", "total_cost"]

#: Why a turn stopped before its end: the caller stopped reading (``closed``), its task was
#: cancelled (``cancelled``), Ctrl-C (``interrupted``), a time limit (``timeout``), or an
#: error (``error``, with the message in :attr:`Turn.error`).
Incomplete = Literal["closed", "cancelled", "interrupted", "timeout", "error"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One exchange: the messages it added to the conversation and how the reply went.

    ``messages`` are spout's provider-neutral message dicts, in order: usually the user's
    message, then the assistant's reply; in the tool loop, each round's assistant message
    (with its ``tool_calls``) and the ``tool`` messages holding the results. A turn made by
    :meth:`Session.add_message` alone has no ``model``.

    ``incomplete`` says why a reply stopped early (None when it ended normally); its messages
    then hold what arrived before that.

    ``cost`` is what the reply cost in US dollars as :attr:`spout.Response.cost` gave it when
    the turn was kept (prices change; the turn keeps what it cost then): None where the
    model's price is unknown, and for a turn with no reply. ``cost_estimated`` says it rests on
    spout's estimate of some tokens (a reply cut before its usage arrived).

    Files sent with the turn are content parts of its user message (spout's portable form,
    see :class:`spout.File`); a part keeps no file name, so ``file_names`` keeps the names
    they were given by, keyed by the SHA-256 of their bytes (hex).

    Example::

        for turn in session.turns:
            print(turn.model, turn.usage.output_tokens, turn.incomplete)
    """

    messages: tuple[dict[str, Any], ...]
    model: str | None = None
    provider: str | None = None
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    response_id: str | None = None
    time_to_first_token: float | None = None
    duration: float | None = None
    incomplete: Incomplete | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    file_names: dict[str, str] = field(default_factory=dict)
    cost: float | None = None
    cost_estimated: bool = False

    @property
    def text(self) -> str:
        """The assistant's text in this turn, every round joined (a refusal is not text)."""
        return "".join(
            m.get("content") or ""
            for m in self.messages
            if m.get("role") == "assistant" and isinstance(m.get("content"), str)
        )

    @property
    def refusal(self) -> str | None:
        """The assistant's refusal in this turn (its messages' ``refusal``), or None.

        A refused reply is kept as OpenAI shapes one: an assistant message whose ``refusal``
        holds why the model declined, beside its (usually empty) ``content``.
        """
        refusals = [
            m["refusal"]
            for m in self.messages
            if m.get("role") == "assistant" and isinstance(m.get("refusal"), str)
        ]
        return "".join(refusals) if refusals else None

    def to_dict(self) -> dict[str, Any]:
        """The turn as plain JSON-ready data (what the store and JSON export write)."""
        data: dict[str, Any] = {"messages": [dict(m) for m in self.messages]}
        if self.model is not None:
            data["model"] = self.model
        if self.provider is not None:
            data["provider"] = self.provider
        usage = self.usage
        if usage.input_tokens is not None or usage.output_tokens is not None or usage.extras:
            data["usage"] = {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                **({"extras": usage.extras} if usage.extras else {}),
            }
        for key in (
            "finish_reason",
            "response_id",
            "time_to_first_token",
            "duration",
            "incomplete",
            "error",
        ):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        data["created_at"] = self.created_at
        if self.file_names:
            data["file_names"] = dict(self.file_names)
        if self.cost is not None:
            data["cost"] = self.cost
            if self.cost_estimated:
                data["cost_estimated"] = True
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Turn:
        """A turn from :meth:`to_dict`'s data; a clear ValueError names what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a turn must be an object, not {type(data).__name__}")
        messages = data.get("messages")
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
        ):
            raise ValueError("a turn's 'messages' must be a list of objects, each with a 'role'")
        raw_usage = data.get("usage") or {}
        if not isinstance(raw_usage, dict):
            raise ValueError("a turn's 'usage' must be an object")
        incomplete = data.get("incomplete")
        if incomplete not in (None, "closed", "cancelled", "interrupted", "timeout", "error"):
            raise ValueError(f"unknown 'incomplete' reason {incomplete!r}")
        created_at = data.get("created_at", time.time())
        if not isinstance(created_at, (int, float)):
            raise ValueError("a turn's 'created_at' must be a number (seconds since the epoch)")
        file_names = data.get("file_names") or {}
        if not isinstance(file_names, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in file_names.items()
        ):
            raise ValueError("a turn's 'file_names' must be an object of strings")
        cost = data.get("cost")
        if cost is not None and (
            isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0
        ):
            raise ValueError("a turn's 'cost' must be a non-negative number (US dollars)")
        return cls(
            messages=tuple(dict(m) for m in messages),
            model=_optional_str(data, "model"),
            provider=_optional_str(data, "provider"),
            usage=Usage(
                raw_usage.get("input_tokens"),
                raw_usage.get("output_tokens"),
                dict(raw_usage.get("extras") or {}),
            ),
            finish_reason=_optional_str(data, "finish_reason"),
            response_id=_optional_str(data, "response_id"),
            time_to_first_token=data.get("time_to_first_token"),
            duration=data.get("duration"),
            incomplete=incomplete,
            error=_optional_str(data, "error"),
            created_at=float(created_at),
            file_names=dict(file_names),
            cost=None if cost is None else float(cost),
            cost_estimated=cost is not None and data.get("cost_estimated") is True,
        )


def total_cost(turns: Iterable[Turn]) -> float | None:
    """The turns' known costs added; None when none is known."""
    known = [turn.cost for turn in turns if turn.cost is not None]
    return sum(known) if known else None


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"a turn's {key!r} must be a string, not {type(value).__name__}")
    return value
