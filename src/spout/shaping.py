"""Shaping a stream's text: buffering and smoothing, as a pure core with no I/O and no clock.

A :class:`Shaper` takes the text of each provider chunk (and the time it arrived, for
``debounce``) and returns the pieces to hand the consumer now; :meth:`Shaper.flush` returns
what it still holds. The stream drivers call it for every text event and flush it before any
other event (a tool call, reasoning, the finish), at the end, and before an error, so the
concatenation of the pieces is always the text that arrived, byte for byte, in order.

Buffering (``buffer_size``, ``min_chunk_size``, ``debounce``) only gathers provider chunks;
it never cuts one. Smoothing (``smooth=``) cuts the text again, on word, line or sentence
boundaries, a regex's matches, or where a function says.

Where a cut may fall. spout's text is already decoded ``str``, so no cut can fall inside a
UTF-8 sequence: a ``str`` is cut between code points, never inside one. Smoothing also keeps
grapheme clusters whole by a small, conservative rule (the standard library has no grapheme
segmentation): it never cuts before a combining mark (categories Mn, Mc, Me), a zero-width
joiner, a variation selector, an emoji skin-tone modifier or a tag character; never after a
zero-width joiner; never between ``\\r`` and ``\\n``; and never inside a pair of regional
indicators (a flag). When smoothing releases text that has no boundary yet (so that a long
word does not stall the output: the text of one chunk goes out when the next arrives), it
cuts where that chunk ended, or before the cluster the next chunk goes on with. Hangul jamo sequences and other rare clusters are not recognized.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Literal

__all__ = ["Boundary", "Shaper", "safe_cut"]

#: What ``smooth=`` takes: a named boundary, a regex whose matches end pieces, or a function
#: ``split(text) -> int`` giving how many leading characters of ``text`` make a whole piece
#: (0 while none does).
Boundary = Literal["word", "line", "sentence"] | re.Pattern[str] | Callable[[str], int]

_NAMED: dict[str, re.Pattern[str]] = {
    # A piece ends after the whitespace that follows a word ("Hello ", "world.\n").
    "word": re.compile(r"(?<=\S)\s+"),
    "line": re.compile(r"\n"),
    # After ., ! or ? (and closing quotes or brackets) and whitespace, or after a CJK stop.
    "sentence": re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+|[\u3002\uff01\uff1f]+"),
}

_ZWJ = "\u200d"


def _extends(char: str) -> bool:
    """Whether ``char`` belongs to the cluster before it."""
    code = ord(char)
    if code < 0x300:  # nothing below U+0300 combines: the common case, checked first
        return False
    return (
        char == _ZWJ
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
        or 0xE0100 <= code <= 0xE01EF  # variation selectors supplement
        or unicodedata.category(char) in ("Mn", "Mc", "Me")
    )


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def safe_cut(text: str, index: int) -> bool:
    """Whether cutting ``text`` at ``index`` keeps every grapheme cluster whole, by the rule
    in this module's docstring. Both ends of the text are safe.

    >>> safe_cut("e\\u0301!", 1), safe_cut("e\\u0301!", 2)
    (False, True)
    """
    if index <= 0 or index >= len(text):
        return True
    before, after = text[index - 1], text[index]
    if before == _ZWJ or _extends(after) or (before == "\r" and after == "\n"):
        return False
    if _regional(before) and _regional(after):
        run = 0
        i = index - 1
        while i >= 0 and _regional(text[i]):
            run += 1
            i -= 1
        return run % 2 == 0  # an odd run: ``before`` opens a flag that ``after`` closes
    return True


def _open_end(text: str) -> bool:
    """Whether the last character surely continues in the next chunk's text: a ``\\r``
    (before its ``\\n``), a zero-width joiner, or the first half of a flag."""
    last = text[-1]
    if last in "\r\u200d":
        return True
    if _regional(last):
        run = len(text) - len(text.rstrip("".join(chr(c) for c in range(0x1F1E6, 0x1F200))))
        return run % 2 == 1
    return False


class _Smoother:
    """Cuts text into pieces on boundaries, holding the unfinished rest for the next chunk."""

    __slots__ = ("_pattern", "_pending", "_split")

    def __init__(self, boundary: Boundary) -> None:
        self._pattern: re.Pattern[str] | None = None
        self._split: Callable[[str], int] | None = None
        if isinstance(boundary, str):
            try:
                self._pattern = _NAMED[boundary]
            except KeyError:
                raise ValueError(
                    f"smooth must be 'word', 'line', 'sentence', a re.Pattern or a function, "
                    f"not {boundary!r}"
                ) from None
        elif isinstance(boundary, re.Pattern):
            self._pattern = boundary
        elif callable(boundary):
            self._split = boundary
        else:
            raise TypeError(
                f"smooth must be 'word', 'line', 'sentence', a re.Pattern or a function, "
                f"not {type(boundary).__name__}"
            )
        self._pending = ""

    def feed(self, text: str) -> list[str]:
        older = len(self._pending)
        buf = self._pending + text
        pieces: list[str] = []
        start = 0
        for cut in self._cuts(buf):
            if cut <= start:
                continue
            while cut < len(buf) and not safe_cut(buf, cut):
                cut += 1
            if cut == len(buf) and _open_end(buf):
                break  # the boundary's cluster goes on in the next chunk
            pieces.append(buf[start:cut])
            start = cut
        if start < older:
            # Text from an earlier chunk still has no boundary: release it now, so a long word
            # is never later than one chunk, but not the end of a cluster this chunk goes on.
            cut = older
            while cut > start and not safe_cut(buf, cut):
                cut -= 1
            if cut > start and not (cut == len(buf) and _open_end(buf)):
                pieces.append(buf[start:cut])
                start = cut
        self._pending = buf[start:]
        return pieces

    def _cuts(self, buf: str) -> list[int]:
        if self._pattern is not None:
            return [m.end() for m in self._pattern.finditer(buf) if m.end() > 0]
        assert self._split is not None
        cuts: list[int] = []
        start = 0
        while start < len(buf):
            taken = self._split(buf[start:])
            if isinstance(taken, bool) or not isinstance(taken, int):
                raise TypeError(
                    f"a smooth= function must return an int (characters to release), "
                    f"not {type(taken).__name__}"
                )
            if taken <= 0:
                break
            start = min(start + taken, len(buf))
            cuts.append(start)
        return cuts

    def flush(self) -> str:
        held, self._pending = self._pending, ""
        return held

    @property
    def held(self) -> str:
        return self._pending


class Shaper:
    """Re-chunks a stream's text: gathered (buffering), re-cut (smoothing), or both.

    - ``buffer_size=N``: release what is held once N provider chunks are held.
    - ``min_chunk_size=N``: never release fewer than N characters, except at a flush.
    - ``debounce=seconds``: release what is held once that long has passed since the first
      chunk held: when a chunk arrives, or when the driver calls :meth:`tick` at
      :meth:`deadline` (the shaper has no timer: it is told the time).
    - ``smooth=``: ``"word"``, ``"line"``, ``"sentence"``, a ``re.Pattern`` (each match ends
      a piece) or a function ``split(text) -> int``; each piece is released as soon as its
      boundary arrives, and text without a boundary no later than the next chunk.

    Given several buffering options, all must hold before text is released; with smoothing
    too, the smoothed pieces are what is gathered. :meth:`flush` returns everything held.

    Example::

        shaper = Shaper(smooth="word")
        shaper.feed("Hello wor")       # ['Hello ']
        shaper.feed("ld, how")         # ['world, ']  ('how' waits for its boundary)
        shaper.feed("ever")            # ['how']      (or for the next chunk)
        shaper.flush()                 # ['how']
    """

    __slots__ = (
        "_buffer_size",
        "_buffering",
        "_count",
        "_debounce",
        "_held",
        "_held_len",
        "_min_chunk_size",
        "_since",
        "_smoother",
    )

    def __init__(
        self,
        *,
        buffer_size: int | None = None,
        min_chunk_size: int | None = None,
        debounce: float | None = None,
        smooth: Boundary | None = None,
    ) -> None:
        for name, value in (("buffer_size", buffer_size), ("min_chunk_size", min_chunk_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if debounce is not None:
            if isinstance(debounce, bool) or not isinstance(debounce, (int, float)):
                raise TypeError(f"debounce must be a number of seconds, not {debounce!r}")
            if not 0 <= debounce < float("inf"):
                raise ValueError(f"debounce must be a number of seconds >= 0, not {debounce!r}")
        self._buffer_size = buffer_size
        self._min_chunk_size = min_chunk_size
        self._debounce = debounce
        self._buffering = not (buffer_size is None and min_chunk_size is None and debounce is None)
        self._smoother = None if smooth is None else _Smoother(smooth)
        self._held: list[str] = []
        self._held_len = 0
        self._count = 0
        self._since = 0.0

    def feed(self, text: str, now: float = 0.0) -> list[str]:
        """One provider chunk's text, arrived at ``now`` (seconds, any clock): the pieces to
        release now, in order (none empty)."""
        pieces = [text] if self._smoother is None else self._smoother.feed(text)
        if not self._buffering:
            return [piece for piece in pieces if piece]
        if self._count == 0:
            self._since = now
        self._count += 1
        for piece in pieces:
            if piece:
                self._held.append(piece)
                self._held_len += len(piece)
        if self._held_len and self._ready(now):
            return [self._release()]
        return []

    def deadline(self) -> float | None:
        """When the held text becomes due by ``debounce`` alone (on the clock :meth:`feed` was
        given), so that a driver can wake then and call :meth:`tick`; None when nothing is held,
        there is no ``debounce``, or another buffering condition does not hold yet (all must:
        only a new chunk can change those).

        Text smoothing still holds (a word without its boundary) is not part of it: it waits
        for the next chunk, or a flush.
        """
        if self._debounce is None or not self._held_len:
            return None
        if (self._buffer_size is not None and self._count < self._buffer_size) or (
            self._min_chunk_size is not None and self._held_len < self._min_chunk_size
        ):
            return None
        return self._since + self._debounce

    def tick(self, now: float) -> list[str]:
        """No chunk arrived, but the time is ``now``: the held text if it is due (see
        :meth:`deadline`), else nothing.

        Example::

            shaper = Shaper(debounce=0.1)
            shaper.feed("Hel", now=1.0)    # []
            shaper.deadline()              # 1.1
            shaper.tick(1.1)               # ['Hel']
        """
        if self._held_len and self._debounce is not None and self._ready(now):
            return [self._release()]
        return []

    def _ready(self, now: float) -> bool:
        return (
            (self._buffer_size is None or self._count >= self._buffer_size)
            and (self._min_chunk_size is None or self._held_len >= self._min_chunk_size)
            # as deadline() computes it, so that tick(deadline()) releases, rounding and all
            and (self._debounce is None or now >= self._since + self._debounce)
        )

    def _release(self) -> str:
        text = "".join(self._held)
        self._held.clear()
        self._held_len = 0
        self._count = 0
        return text

    def flush(self) -> list[str]:
        """Everything held, to release now: at the end, before another event, an error."""
        if self._smoother is not None:
            rest = self._smoother.flush()
            if not self._buffering:
                return [rest] if rest else []
            if rest:
                self._held.append(rest)
                self._held_len += len(rest)
        if not self._held_len:
            self._count = 0
            return []
        return [self._release()]

    @property
    def held(self) -> str:
        """The text held back so far."""
        smoothing = "" if self._smoother is None else self._smoother.held
        return "".join(self._held) + smoothing
