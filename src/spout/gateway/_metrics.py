"""The gateway's numbers, in Prometheus' text format (``GET /metrics``).

Counters and histograms are kept in plain dicts: one process's view. With several replicas,
Prometheus scrapes each and sums, as usual.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

__all__ = ["Metrics"]

#: Seconds to the first token.
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Output tokens per second over a stream's generation.
RATE_BUCKETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)


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
        ]
        return "\n".join(lines) + "\n"
