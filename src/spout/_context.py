"""The context window: how big it is, how many tokens messages take, and trimming to fit."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ._capabilities import ModelCapability
from ._files import FILE_PART_TYPES

if TYPE_CHECKING:
    from ._llm import LLM

__all__ = [
    "context_window",
    "count_tokens",
    "estimate_tokens",
    "fit_messages",
    "history_budget",
    "known_context_window",
    "trim_history",
]

Message = dict[str, Any]

#: What the estimate adds for each message (its role and the template's delimiters) and once
#: for the whole prompt (the assistant's turn opened for the reply).
MESSAGE_OVERHEAD = 4
PROMPT_OVERHEAD = 2

#: What the estimate counts for an image: about what Anthropic counts for the largest image it
#: takes unscaled, 1.15 megapixels (docs.anthropic.com, "Vision", "Evaluate image size": tokens
#: = width * height / 750); OpenAI counts at most 765 for a detailed 1024 px image. Counted as
#: its base64, an image of 1 MB would take some 330,000 tokens and be trimmed off the history.
IMAGE_TOKENS = 1600
#: Bytes of audio per estimated token: Gemini counts 32 tokens a second of audio
#: (ai.google.dev, "Audio understanding"), and 128 kbit/s MP3 holds 16,000 bytes a second.
AUDIO_BYTES_PER_TOKEN = 500

#: Roles a trim never drops.
_KEPT_ROLES = frozenset(("system", "developer"))


def estimate_tokens(messages: Sequence[Message]) -> int:
    """An estimate of the tokens ``messages`` take as a prompt, for models without a tokenizer.

    The rule: each message costs ``ceil(utf8_bytes / 4)`` of its text plus 4, and the prompt 2
    more. A message's text is its ``content`` (a string; of a list of parts, each part's
    ``text``, or the part as JSON when it has none), its ``reasoning`` and ``refusal``, each
    tool call's name and arguments, and a tool result's content (as JSON when it is not a
    string). Ids and signatures are not counted.

    Byte-pair tokenizers average about four characters of English per token, so the estimate
    over- rather than under-counts English prose once the overheads are added, and errs on
    the side of trimming. Counting UTF-8 bytes, not characters, charges more for text beyond
    ASCII, which tokenizes less well; code, numbers and non-Latin scripts are still
    over-counted less than prose, and may be under-counted.
    A file part counts :data:`IMAGE_TOKENS` for an image, a token per
    :data:`AUDIO_BYTES_PER_TOKEN` bytes of audio, and a token per 4 bytes of anything else (a
    PDF), which errs high.
    The count is additive: a list's estimate is :data:`PROMPT_OVERHEAD` plus each message's.

    >>> estimate_tokens([{"role": "user", "content": "Hello, world"}])  # 12 bytes: 3 + 4 + 2
    9
    """
    total = PROMPT_OVERHEAD
    for message in messages:
        content = message.get("content")
        size = len(_text(content)) + 4 * _file_tokens(content)
        reasoning = message.get("reasoning")
        if isinstance(reasoning, str):
            size += len(reasoning.encode())
        refusal = message.get("refusal")
        if isinstance(refusal, str):
            size += len(refusal.encode())
        for call in message.get("tool_calls") or ():
            function = call.get("function") or call if isinstance(call, dict) else None
            if isinstance(function, dict):
                size += len(_text(function.get("name"))) + len(_text(function.get("arguments")))
        total += MESSAGE_OVERHEAD + -(-size // 4)
    return total


def _text(value: Any) -> bytes:
    """A message's content as the UTF-8 bytes a tokenizer would see (files apart)."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"].encode())
            elif not (isinstance(part, dict) and part.get("type") in FILE_PART_TYPES):
                parts.append(_text(part))
        return b"".join(parts)
    return orjson.dumps(value, default=str)


def _file_tokens(content: Any) -> int:
    """The estimate for the files among a message's content parts (see estimate_tokens)."""
    if not isinstance(content, list):
        return 0
    tokens = 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in FILE_PART_TYPES:
            continue
        inner = part.get(kind)
        key = _FILE_SLOTS[kind]
        value = inner.get(key) if isinstance(inner, dict) else None
        text = value if isinstance(value, str) else ""
        if kind == "image_url" or text.startswith("data:image/"):
            tokens += IMAGE_TOKENS
            continue
        encoded = text.partition(",")[2] if text.startswith("data:") else text
        size = len(encoded.rstrip("=")) * 3 // 4  # the bytes its base64 holds
        if kind == "input_audio" or text.startswith("data:audio/"):
            tokens += -(-size // AUDIO_BYTES_PER_TOKEN)
        else:
            tokens += -(-size // 4)
    return tokens


# Where each portable file part holds its data URL, URL or base64.
_FILE_SLOTS = {"image_url": "url", "file": "file_data", "input_audio": "data"}


def known_context_window(model: str, windows: Mapping[str, int] | None = None) -> int | None:
    """The context window the providers declare for a model name, or None.

    Each provider module declares its vendor's models' windows
    (:attr:`Provider.context_windows <spout.providers.Provider.context_windows>`), by the start
    of their names; they are looked up here all together (a model's window does not depend on
    who serves it), with ``windows`` added (the serving provider's own, which a provider from
    another package may declare). The longest matching prefix wins, case ignored; an
    organisation or router prefix (``anthropic/``, ``meta-llama/``, ``models/``) is ignored.

    >>> known_context_window("anthropic/claude-sonnet-4-5")
    200000
    """
    from .providers._registry import known_context_windows

    table = {**known_context_windows(), **(windows or {})}
    name = model.rsplit("/", 1)[-1].lower()
    best: str | None = None
    for prefix in table:
        if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return table[best] if best is not None else None


def context_window(llm: LLM) -> int | None:
    """The model's context window in tokens: as its provider declares it for this model
    (:attr:`ModelCapability.CONTEXT_WINDOW`), else as the providers declare it for the
    model's name (:func:`known_context_window`), else None.

    Example::

        context_window(create_llm())                                   # 2048, the local n_ctx
        context_window(create_llm("openai", model="gpt-4o-mini"))      # 128000
    """
    declared = llm.get_capabilities().get(ModelCapability.CONTEXT_WINDOW)
    if isinstance(declared, int) and not isinstance(declared, bool) and declared > 0:
        return declared
    return known_context_window(llm.model, type(llm.provider).context_windows)


def history_budget(window: int, max_tokens: int | None = None) -> int:
    """How many tokens of a ``window`` the prompt may take, leaving room for the reply.

    The room kept is ``max_tokens`` when the call sets it, else a quarter of the window up to
    1024 tokens. Never below 0.

    >>> history_budget(8192)
    7168
    >>> history_budget(2048, max_tokens=100)
    1948
    """
    reserve = max_tokens if max_tokens is not None else min(1024, window // 4)
    return max(0, window - reserve)


def fit_messages(
    messages: Sequence[Message], budget: int, count: Callable[[list[Message]], int]
) -> list[Message]:
    """The newest messages that fit ``budget`` tokens by ``count``, dropping whole turns.

    System (and developer) messages are always kept. The others are grouped in turns: a turn
    starts at each user message and holds the assistant and tool messages after it, so a tool
    call and its result go together; messages before the first user message are a turn of
    their own. Turns are dropped from the oldest until ``count`` of what is left fits. The last
    turn is always kept: if it alone is over budget, it is returned anyway, and the provider
    will answer with its context-window error.

    ``count`` sees each candidate list whole, as the provider would render it: a tokenizer's
    count is not the sum of its parts (a chat template may add a default system prompt, or
    tokens may merge across a boundary), so no sum is assumed. The fewest turns to drop are
    found by bisection, which calls ``count`` about ``log2(turns) + 1`` times; it assumes that
    dropping a turn never adds tokens, and what it returns fits (or is the last turn) either
    way. Returns a new list of the same message dicts; ``messages`` is not changed.

    Example::

        kept = fit_messages(history, budget=4000, count=estimate_tokens)
    """
    messages = list(messages)
    turn_of = _turns(messages)
    turns = max(turn_of, default=-1) + 1
    if turns <= 1 or count(messages) <= budget:
        return messages

    def keep(first: int) -> list[Message]:
        """The messages without the turns before ``first``."""
        return [m for m, turn in zip(messages, turn_of, strict=True) if turn < 0 or turn >= first]

    # The fewest turns dropped, in [1, last], such that the rest fits; all but the last if
    # none does.
    low, high = 1, turns - 1
    best = keep(high)
    while low <= high:
        middle = (low + high) // 2
        candidate = keep(middle)
        if count(candidate) <= budget:
            best, high = candidate, middle - 1
        else:
            low = middle + 1
    return best


def _turns(messages: list[Message]) -> list[int]:
    """Each message's turn, numbered from 0, or -1 for the messages a trim never drops."""
    numbers: list[int] = []
    turn = -1
    for message in messages:
        role = message.get("role")
        if role in _KEPT_ROLES:
            numbers.append(-1)
            continue
        if role == "user" or turn < 0:
            turn += 1
        numbers.append(turn)
    return numbers


def count_tokens(llm: LLM, messages: list[Message]) -> int:
    """The tokens ``messages`` take at ``llm``: its provider's tokenizer, else the estimate."""
    from .providers._base import refusals_as_text

    provider = llm.provider
    # Counted as sent: a refusal goes as text to a provider without a field for it.
    counted = provider.count_tokens(
        messages if provider.takes_refusal() else refusals_as_text(messages)
    )
    return counted if counted is not None else estimate_tokens(messages)


def trim_history(
    llm: LLM,
    messages: Sequence[Message],
    *,
    max_history_tokens: int | None = None,
    max_tokens: int | None = None,
) -> list[Message]:
    """``messages`` trimmed to fit the model's context window, as a session sends them.

    The budget is ``max_history_tokens`` when given, else :func:`history_budget` of the
    :func:`context_window`; with neither, nothing is trimmed. Tokens are counted by the
    provider's tokenizer where it has one, else estimated (:func:`estimate_tokens`).

    Example::

        messages = trim_history(llm, history, max_tokens=500)
    """
    if max_history_tokens is not None:
        budget = max_history_tokens
    else:
        window = context_window(llm)
        if window is None:
            return list(messages)
        budget = history_budget(window, max_tokens)
    return fit_messages(messages, budget, lambda kept: count_tokens(llm, kept))
