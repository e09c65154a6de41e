"""The gateway's numbers, in Prometheus' text format (``GET /metrics``).

Counters and histograms are kept in plain dicts: one process's view. With several replicas,
Prometheus scrapes each and sums, as usual.

Tokens and cost are labelled by ``model`` (the route a client asked for, one of the
configured ones) and ``key`` (the name of the caller's key; empty without keys, so that client
addresses never become labels): the series are bounded by routes times keys.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .. import Usage

__all__ = ["Metrics"]

#: Seconds to the first token.
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Output tokens per second over a stream's generation.
RATE_BUCKETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
#: The kinds of token counted, and the :class:`spout.Usage` field each is read from. Input
#: is the whole input: cache_read and cache_write are parts of it, as reasoning is of output.
TOKEN_TYPES = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("cache_write", "cache_write_tokens"),
    ("reasoning", "reasoning_tokens"),
)


class _Histogram:
    __slots__ = ("buckets", "count", "counts", "total")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.total += value

    def lines(self, name: str, labels: str = "") -> list[str]:
        out = []
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append(f'{name}_bucket{{{labels}le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{{labels}le="+Inf"}} {self.count}')
        plain = "{" + labels.rstrip(",") + "}" if labels else ""
        out.append(f"{name}_sum{plain} {self.total:.6g}")
        out.append(f"{name}_count{plain} {self.count}")
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """What ``/metrics`` reports.

    Example::

        metrics.request("/v1/chat/completions", 200)
        metrics.first_token(0.12)
        print(metrics.render(active_streams=3))
    """

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.upstream_errors: defaultdict[str, int] = defaultdict(int)
        self.streams_total = 0
        self.cancelled: defaultdict[str, int] = defaultdict(int)
        self.output_tokens = 0
        self.ttft = _Histogram(TTFT_BUCKETS)
        self.rate = _Histogram(RATE_BUCKETS)
        #: (model, key, token type) -> tokens.
        self.tokens: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        #: (model, key) -> USD.
        self.cost: defaultdict[tuple[str, str], float] = defaultdict(float)
        #: (model, key) -> responses whose cost is not known (a model with no price).
        self.unpriced: defaultdict[tuple[str, str], int] = defaultdict(int)

    def request(self, route: str, status: int) -> None:
        self.requests[(route, status)] += 1

    def upstream_error(self, kind: str) -> None:
        self.upstream_errors[kind] += 1

    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def stream_done(self, output_tokens: int | None, tokens_per_second: float | None) -> None:
        self.streams_total += 1
        if output_tokens:
            self.output_tokens += output_tokens
        if tokens_per_second is not None:
            self.rate.observe(tokens_per_second)

    def stopped(self, reason: str) -> None:
        self.cancelled[reason] += 1

    def usage(self, model: str, key: str, usage: Usage, cost: float | None) -> None:
        """Count what one response used, whole or cut short: its tokens and its cost (None:
        not known) for the route ``model`` and the key named ``key`` (``""`` without keys)."""
        for kind, field in TOKEN_TYPES:
            count = getattr(usage, field, None)
            if count:
                self.tokens[(model, key, kind)] += count
        if cost is None:
            if usage.input_tokens or usage.output_tokens:
                self.unpriced[(model, key)] += 1
        else:
            self.cost[(model, key)] += cost

    def render(self, *, active_streams: int) -> str:
        lines = [
            "# HELP spout_active_streams Streams reading from upstream now.",
            "# TYPE spout_active_streams gauge",
            f"spout_active_streams {active_streams}",
            "# HELP spout_requests_total Requests by route and HTTP status.",
            "# TYPE spout_requests_total counter",
        ]
        for (route, status), count in sorted(self.requests.items()):
            lines.append(
                f'spout_requests_total{{route="{_escape(route)}",status="{status}"}} {count}'
            )
        lines += [
            "# HELP spout_upstream_errors_total Errors from upstream providers, by type.",
            "# TYPE spout_upstream_errors_total counter",
        ]
        for kind, count in sorted(self.upstream_errors.items()):
            lines.append(f'spout_upstream_errors_total{{type="{_escape(kind)}"}} {count}')
        lines += [
            "# HELP spout_streams_stopped_total Streams stopped before their end, by reason.",
            "# TYPE spout_streams_stopped_total counter",
        ]
        for reason, count in sorted(self.cancelled.items()):
            lines.append(f'spout_streams_stopped_total{{reason="{_escape(reason)}"}} {count}')
        lines += [
            "# HELP spout_streams_total Streams that ended.",
            "# TYPE spout_streams_total counter",
            f"spout_streams_total {self.streams_total}",
            "# HELP spout_output_tokens_total Output tokens streamed to clients.",
            "# TYPE spout_output_tokens_total counter",
            f"spout_output_tokens_total {self.output_tokens}",
            "# HELP spout_time_to_first_token_seconds Time from request to the first token.",
            "# TYPE spout_time_to_first_token_seconds histogram",
            *self.ttft.lines("spout_time_to_first_token_seconds"),
            "# HELP spout_tokens_per_second Output tokens per second of each stream.",
            "# TYPE spout_tokens_per_second histogram",
            *self.rate.lines("spout_tokens_per_second"),
            "# HELP spout_tokens_total Tokens used by responses (cut ones too), by model, key "
            "and type (input is the whole input; cache_read and cache_write are parts of it).",
            "# TYPE spout_tokens_total counter",
        ]
        for (model, key, kind), count in sorted(self.tokens.items()):
            lines.append(f'spout_tokens_total{{{_labels(model, key)},type="{kind}"}} {count}')
        lines += [
            "# HELP spout_cost_usd_total What responses cost (cut ones too), in USD, by model "
            "and key.",
            "# TYPE spout_cost_usd_total counter",
        ]
        for (model, key), usd in sorted(self.cost.items()):
            lines.append(f"spout_cost_usd_total{{{_labels(model, key)}}} {usd!r}")
        lines += [
            "# HELP spout_unpriced_responses_total Responses whose cost is not known (no "
            "price for the model), by model and key.",
            "# TYPE spout_unpriced_responses_total counter",
        ]
        for (model, key), count in sorted(self.unpriced.items()):
            lines.append(f"spout_unpriced_responses_total{{{_labels(model, key)}}} {count}")
        return "\n".join(lines) + "\n"


def _labels(model: str, key: str) -> str:
    return f'model="{_escape(model)}",key="{_escape(key)}"'
