"""What a call cost in US dollars: its usage priced by a public price list or the caller's prices.

The public prices are those of ``genai-prices`` (https://github.com/pydantic/genai-prices),
a maintained list of every major provider's per-token prices, cache and reasoning prices and
price tiers (Gemini's prompts over 200k tokens, Claude's long context) included; spout keeps
no table of its own. It is the ``spout[cost]`` extra, loaded on the first call that needs it
(it takes about a third of a second), and a cost is worked out when it is first read
(:class:`Priced`), so a call whose cost nobody reads never loads it. Without it, a listed
model's cost is None, and the ``"spout"`` logger says once how to install it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._events import Usage

__all__ = ["FREE", "UNKNOWN", "Priced", "Prices", "Pricing", "add_costs"]

_MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Prices:
    """Your own prices for a model, in US dollars per million tokens: for a model no public
    list prices, or a deal of your own. Given to :func:`spout.create_llm` as ``prices=``,
    they price every call of that LLM in place of the list.

    ``input`` prices the input not read from the cache; ``cache_read`` and ``cache_write``
    the input read from and written to the provider's prompt cache (as ``input`` when None);
    ``output`` the output, and ``reasoning`` the part of it spent thinking (as ``output``
    when None).

    Example::

        llm = create_llm("vllm", model="my-finetune", prices=Prices(input=0.2, output=0.6))
        print(llm.generate("Hi").cost)   # e.g. 4.2e-06

        Prices(input=3, output=15, cache_read=0.3, cache_write=3.75).cost(
            Usage(10_000, 500, cache_read_tokens=8_000)
        )   # 0.0159
    """

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_read", "cache_write", "reasoning"):
            value = getattr(self, name)
            if value is None and name not in ("input", "output"):
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"Prices.{name} must be a non-negative number of US dollars per million "
                    f"tokens, not {value!r}"
                )

    def cost(self, usage: Usage) -> float:
        """What ``usage`` costs at these prices, in US dollars (unknown counts count 0)."""
        read = usage.cache_read_tokens or 0
        written = usage.cache_write_tokens or 0
        uncached = max((usage.input_tokens or 0) - read - written, 0)
        output = usage.output_tokens or 0
        reasoning = min(usage.reasoning_tokens or 0, output) if self.reasoning is not None else 0
        total = (
            uncached * self.input
            + read * (self.input if self.cache_read is None else self.cache_read)
            + written * (self.input if self.cache_write is None else self.cache_write)
            + (output - reasoning) * self.output
            + reasoning * (self.reasoning or 0.0)
        )
        return total / _MILLION


@dataclass(frozen=True, slots=True)
class Pricing:
    """How one provider's calls are priced (:meth:`spout.providers.Provider.pricing`).

    ``price_list`` is the provider's id in genai-prices (``"anthropic"``), ``model`` the
    model asked for, ``base_url`` the endpoint when it is not the provider's default (a
    service the list knows by its URL, such as Groq's behind the ``openai`` provider, is
    then priced as that service). ``free``: the model runs on the caller's own hardware,
    so a call costs 0. ``prices``: the caller's own, which win over everything.
    """

    price_list: str | None = None
    model: str | None = None
    base_url: str | None = None
    free: bool = False
    prices: Prices | None = None

    def cost(self, usage: Usage, model: str | None = None) -> float | None:
        """What ``usage`` costs, in US dollars; None when nothing prices this model.

        ``model`` is the model the response named (a dated version, or the model behind an
        Azure deployment), tried before the model asked for.
        """
        if self.prices is not None:
            return self.prices.cost(usage)
        if self.free:
            return 0.0
        if self.price_list is None and self.base_url is None:
            return None
        listed = _price_list()
        if listed is None:
            return None
        tokens = _listed_usage(listed, usage)
        if tokens is None:
            return None
        for name in dict.fromkeys(m for m in (model, self.model) if m):
            for where in self._where():
                key = (name, *where.items())
                if key in _UNLISTED:
                    continue
                try:
                    price = listed.calc_price(tokens, name, **where)
                except LookupError:
                    _unlisted(key)
                    continue
                except ValueError:
                    return None  # counts the list cannot price (more cached than input)
                return float(price.total_price)
        return None

    def _where(self) -> Iterable[dict[str, Any]]:
        if self.base_url is not None:
            yield {"provider_api_url": self.base_url}
        if self.price_list is not None:
            yield {"provider_id": self.price_list}


class Priced:
    """A cost in US dollars and whether it rests on an estimate, worked out when first read.

    What :attr:`spout.Response.cost` and :attr:`spout.StreamStats.cost` read. The work is a
    function of values taken when the response or stats were made, so reading later gives
    what was true then.
    """

    __slots__ = ("_value", "_work")

    def __init__(
        self,
        work: Callable[[], tuple[float | None, bool]] | None = None,
        value: tuple[float | None, bool] = (None, False),
    ) -> None:
        self._work = work
        self._value = value

    @property
    def value(self) -> tuple[float | None, bool]:
        """``(cost, estimated)``."""
        work = self._work
        if work is not None:
            self._value = work()
            self._work = None
        return self._value

    @classmethod
    def total(cls, parts: Sequence[Priced]) -> Priced:
        """Several requests' costs as one (see :func:`add_costs`), worked out when read."""
        if len(parts) == 1:
            return parts[0]
        return cls(lambda: add_costs(part.value for part in parts))

    def __repr__(self) -> str:
        return f"Priced({self.value!r})"


#: The cost of a call to a model with no known price, and of a free one.
UNKNOWN = Priced()
FREE = Priced(value=(0.0, False))


def add_costs(costs: Iterable[tuple[float | None, bool]]) -> tuple[float | None, bool]:
    """Several requests' costs as one: None when any is unknown; estimated when any is."""
    total: float | None = 0.0
    estimated = False
    for cost, guessed in costs:
        estimated = estimated or guessed
        total = None if total is None or cost is None else total + cost
    return total, estimated


def _listed_usage(listed: Any, usage: Usage) -> Any:
    """``usage`` in genai-prices' terms; None when it holds nothing to price."""
    counts = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }
    reasoning = usage.reasoning_tokens
    if reasoning is not None and reasoning <= (usage.output_tokens or 0):
        # Part of output_tokens (see Usage); priced apart only where the list says so.
        counts["output_reasoning_tokens"] = reasoning
    known = {key: value for key, value in counts.items() if value is not None and value >= 0}
    if not known:
        return None
    return listed.Usage(**known)


_missing_noted = False

#: The (model, where) pairs the price list has no price for, looked up once: a miss scans the
#: whole list (~190 µs), and a self-hosted model (a gateway's llama.cpp or vLLM upstream)
#: misses on every response. Bounded: the models one process serves are few.
_UNLISTED: set[tuple[Any, ...]] = set()
_UNLISTED_MAX = 4096


def _unlisted(key: tuple[Any, ...]) -> None:
    if len(_UNLISTED) >= _UNLISTED_MAX:
        _UNLISTED.clear()
    _UNLISTED.add(key)


def _price_list() -> Any:
    """The genai-prices module, or None when it is not installed (said once, in the log)."""
    global _missing_noted
    try:
        import genai_prices
    except ImportError:
        if not _missing_noted:
            _missing_noted = True
            logging.getLogger("spout").warning(
                "spout: costs need the price list: pip install 'spout[cost]' (genai-prices)"
            )
        return None
    return genai_prices


def with_tokens(usage: Usage, input_tokens: int, output_tokens: int) -> Usage:
    """``usage`` with its input and output counts replaced (estimates filled in)."""
    return dataclasses.replace(usage, input_tokens=input_tokens, output_tokens=output_tokens)
