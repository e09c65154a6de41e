"""StreamStats: how a stream is going, computed on demand from a few counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["StreamStats", "estimate_output_tokens", "make_stats"]

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
    #: The cost so far in US dollars (see :attr:`Response.cost`): None where the model has
    #: no known price; ``cost_estimated`` while it rests on spout's estimate of the tokens.
    cost: float | None = None
    cost_estimated: bool = False

    def summary(self) -> str:
        """One line: ``'42 tokens (estimate) in 1.20 s, first token after 0.31 s, 47.2 tokens/s,
        12 chunks, 170 characters'``."""
        parts = [f"{self.output_tokens} tokens"]
        if self.output_tokens_source != "provider":
            parts[0] += f" ({self.output_tokens_source})"
        parts[0] += f" in {self.elapsed:.2f} s"
        if self.time_to_first_token is not None:
            parts.append(f"first token after {self.time_to_first_token:.2f} s")
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:.1f} tokens/s")
        parts.append(f"{self.chunks} chunks, {self.characters} characters")
        return ", ".join(parts)


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
) -> StreamStats:
    """The stats from what a stream counted; ``provider_tokens`` when the provider reported,
    ``tokenizer_tokens`` when the model's tokenizer counted the text. ``refused`` is the
    characters of a refusal: output that is not text, so it counts in the estimate only."""
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
    )
