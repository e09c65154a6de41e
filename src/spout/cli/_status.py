"""``--stats`` and the live status line: both on stderr, so stdout stays the answer only."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .. import StreamStats

#: Redraw the live line at most this often (seconds).
INTERVAL = 0.1
#: Carriage return, then clear to the end of the line: the line is redrawn in place.
_REDRAW = "\r\x1b[K"


def add_stats_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stats",
        action="store_true",
        help="print a summary line on stderr at the end of each answer (characters, tokens, "
        "time to first token, tokens/s, time, cost)",
    )


def summary_line(stats: StreamStats) -> str:
    """``[412 chars, 96 tokens (provider), first token 0.21 s, 58.3 tokens/s, 1.90 s,
    $0.001440]``: the cost last, where the model's price is known."""
    parts = [
        f"{stats.characters} chars",
        f"{stats.output_tokens} tokens ({stats.output_tokens_source})",
    ]
    if stats.time_to_first_token is not None:
        parts.append(f"first token {stats.time_to_first_token:.2f} s")
    if stats.tokens_per_second is not None:
        parts.append(f"{stats.tokens_per_second:.1f} tokens/s")
    parts.append(f"{stats.elapsed:.2f} s")
    if stats.cost is not None:
        parts.append(cost_text(stats.cost, stats.cost_estimated))
    return f"[{', '.join(parts)}]"


def cost_text(cost: float, estimated: bool = False) -> str:
    """US dollars to the millionth (``$0.001440``), where a call's cost shows; an estimate
    says so (``$0.001440 (estimate)``)."""
    return f"${cost:.6f}" + (" (estimate)" if estimated else "")


def _live_text(stats: StreamStats) -> str:
    parts = [f"{stats.output_tokens} tokens"]
    if stats.output_tokens_source != "provider":
        parts[0] += f" ({stats.output_tokens_source})"
    if stats.tokens_per_second is not None:
        parts.append(f"{stats.tokens_per_second:.1f} tokens/s")
    parts.append(f"{stats.elapsed:.1f} s")
    return "spout: " + ", ".join(parts)


def live_wanted(stdout: TextIO, stderr: TextIO) -> bool:
    """The live line shows only when stderr is a terminal and stdout is not one.

    With both on the terminal it would interleave with the answer as it streams; with stderr
    redirected it would fill a file with redraws.
    """
    return _isatty(stderr) and not _isatty(stdout)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class StatusLine:
    """A line on stderr redrawn in place as a stream goes, at most every :data:`INTERVAL`."""

    def __init__(self, stderr: TextIO, enabled: bool) -> None:
        self._stderr = stderr
        self.enabled = enabled
        self._shown = False
        self._last = 0.0

    def update(self, stats: StreamStats) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._shown and now - self._last < INTERVAL:
            return
        self._last = now
        self._write(_REDRAW + _live_text(stats))
        self._shown = True

    def clear(self) -> None:
        """Erase the line, if shown; the cursor is left at the start of the empty line."""
        if self._shown:
            self._shown = False
            self._write(_REDRAW)

    def _write(self, text: str) -> None:
        try:
            self._stderr.write(text)
            self._stderr.flush()
        except (OSError, ValueError):
            self.enabled = False  # stderr went away: the answer matters more than the line


def status_for(stdout: TextIO | None = None, stderr: TextIO | None = None) -> StatusLine:
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    return StatusLine(err, live_wanted(out, err))


def print_summary(stats: StreamStats | None, stderr: TextIO | None = None) -> None:
    if stats is not None:
        print(summary_line(stats), file=sys.stderr if stderr is None else stderr, flush=True)
