"""StreamStats: how a stream is going, computed on demand from a few counters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._cost import Priced

__all__ = ["StreamStats", "estimate_output_tokens", "format_cost", "make_stats"]

TokenSource = Literal["provider", "tokenizer", "estimate"]


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Live numbers for a stream (``stream.stats``), and the final ones (``response.stats``).

    Times are seconds from when the request was sent. ``chunks`` and ``characters`` count the
    text as the provider sent it (before any shaping); a refusal is not text, so it is not
    counted there, though it is in the estimate of output tokens. ``output_tokens`` is the
    provider's count once its usage arrived (``output_tokens_source == "provider"``). Until
    then it is the text so far counted by the model's own tokenizer where spout has it at hand
    (the local llama.cpp and transformers providers: ``"tokenizer"``; counted when the stats
    are read, not per chunk), and otherwise an estimate of one token per four characters
    (``"estimate"``). ``tokens_per_second`` is over the generation phase: from the first
    token to now, or to the end.

    Example::

        stream = llm.generate_stream("Tell me a story")
        for chunk in stream:
            print(stream.stats.tokens_per_second)
        print(stream.response.stats.summary())
    """

    time_to_first_token: float | None
    elapsed: float
    chunks: int
    characters: int
    output_tokens: int
    output_tokens_source: TokenSource
    tokens_per_second: float | None
    _priced: Priced | None = field(default=None, compare=False, repr=False)

    @property
    def cost(self) -> float | None:
        """The cost so far in US dollars (see :attr:`Response.cost`): None where the model
        has no known price. Worked out when read."""
        return None if self._priced is None else self._priced.value[0]

    @property
    def cost_estimated(self) -> bool:
        """Whether :attr:`cost` rests on spout's estimate of some tokens (the stream has not
        reported its usage yet, or was cut before it did)."""
        return False if self._priced is None else self._priced.value[1]

    def summary(self) -> str:
        """One line: ``'42 tokens (estimate) in 1.20 s, first token after 0.31 s, 47.2 tokens/s,
        12 chunks, 170 characters, $0.000435'`` (the cost last, when it is known)."""
        parts = [f"{self.output_tokens} tokens"]
        if self.output_tokens_source != "provider":
            parts[0] += f" ({self.output_tokens_source})"
        parts[0] += f" in {self.elapsed:.2f} s"
        if self.time_to_first_token is not None:
            parts.append(f"first token after {self.time_to_first_token:.2f} s")
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:.1f} tokens/s")
        parts.append(f"{self.chunks} chunks, {self.characters} characters")
        if self.cost is not None:
            parts.append(format_cost(self.cost, self.cost_estimated))
        return ", ".join(parts)


def format_cost(cost: float, estimated: bool = False) -> str:
    """A cost in US dollars to three significant digits, cents at least, never in
    scientific notation: ``'$0.000435'``, ``'$0.0159'``, ``'$1.23'``, ``'$0'``; an estimate
    says so: ``'$0.0012 (estimate)'``.

    >>> format_cost(0.000435), format_cost(4.2e-06), format_cost(12.5), format_cost(0.0)
    ('$0.000435', '$0.0000042', '$12.50', '$0')
    """
    if cost <= 0:
        text = "$0"
    else:
        digits = max(2, 2 - math.floor(math.log10(cost)))
        number = f"{cost:.{digits}f}"
        whole, _, cents = number.partition(".")
        text = f"${whole}.{cents[:2]}{cents[2:].rstrip('0')}"
    return f"{text} (estimate)" if estimated else text


def estimate_output_tokens(characters: int) -> int:
    """About four characters of English to a token, rounded up."""
    return (characters + 3) // 4


def make_stats(
    time_to_first_token: float | None,
    elapsed: float,
    chunks: int,
    characters: int,
    provider_tokens: int | None,
    tokenizer_tokens: int | None = None,
    *,
    refused: int = 0,
    cost: Priced | None = None,
) -> StreamStats:
    """The stats from what a stream counted; ``provider_tokens`` when the provider reported,
    ``tokenizer_tokens`` when the model's tokenizer counted the text. ``refused`` is the
    characters of a refusal: output that is not text, so it counts in the estimate only.
    ``cost`` is the stream's, worked out when read."""
    if provider_tokens is not None:
        tokens, source = provider_tokens, "provider"
    elif tokenizer_tokens is not None:
        tokens, source = tokenizer_tokens, "tokenizer"
    else:
        tokens, source = estimate_output_tokens(characters + refused), "estimate"
    rate = None
    if time_to_first_token is not None and tokens:
        generating = elapsed - time_to_first_token
        if generating > 0:
            rate = tokens / generating
    return StreamStats(
        time_to_first_token,
        elapsed,
        chunks,
        characters,
        tokens,
        source,  # type: ignore[arg-type]
        rate,
        cost,
    )
