"""The shaping core (spout.shaping) and shaping on live streams: no text lost, duplicated,
reordered or cut inside a grapheme cluster, whatever the chunking."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spout
from helpers import Runner
from replay_server import ReplayServer, Reply
from scripted_turns import (
    openai_call_turn,
    openai_chunk,
    openai_refusal_turn,
    openai_sse,
    openai_text_turn,
    turns,
)
from spout import RefusalDelta, TextDelta, ToolCallStart, create_llm
from spout.shaping import Shaper, safe_cut

# Whole grapheme clusters: multi-byte text, emoji ZWJ sequences, flags, skin tones, combining
# marks, CJK, and the boundaries smoothing cuts on.
CLUSTERS = [
    "a",
    "b",
    "Z",
    "é",
    "e\u0301",
    "n\u0303\u0323",
    "字",
    "漢",
    "ü",
    "ß",
    "👍",
    "👍🏽",
    "👨\u200d👩\u200d👧",
    "🏳\ufe0f\u200d🌈",
    "🇳🇴",
    "🇸🇪",
    "❤\ufe0f",
    "\u0915\u093f",  # Devanagari ki: a spacing mark (Mc)
    " ",
    "\n",
    ".",
    "!",
    "?",
    "。",
    "\r\n",
    ",",
    "\u201d",
]

clusters = st.lists(st.sampled_from(CLUSTERS), max_size=60)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """(the clusters, the same text cut anywhere, even inside clusters, into chunks)."""
    parts = draw(clusters)
    text = "".join(parts)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=20)))
    bounds = [0, *cuts, len(text)]
    return parts, [text[a:b] for a, b in itertools.pairwise(bounds)]


def shape(shaper: Shaper, chunks: list[str], times: list[float] | None = None) -> list[list[str]]:
    """The pieces released after each chunk, then at the flush (the last entry)."""
    out = [shaper.feed(chunk, times[i] if times else 0.0) for i, chunk in enumerate(chunks)]
    out.append(shaper.flush())
    return out


def cluster_ends(parts: list[str]) -> set[int]:
    ends, at = {0}, 0
    for part in parts:
        at += len(part)
        ends.add(at)
    return ends


OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "buffer_size": st.integers(1, 6),
        "min_chunk_size": st.integers(1, 30),
        "debounce": st.floats(0, 0.5),
        "smooth": st.sampled_from(["word", "line", "sentence", re.compile(r",")]),
    },
)


@settings(max_examples=250, deadline=None)
@given(chunked(), OPTIONS, st.lists(st.integers(0, 200), min_size=21, max_size=21))
def test_the_pieces_are_the_text_byte_for_byte(
    case: tuple[list[str], list[str]], options: dict[str, Any], gaps: list[int]
) -> None:
    parts, chunks = case
    times = [sum(gaps[: i + 1]) / 1000 for i in range(len(chunks))]
    released = shape(Shaper(**options), chunks, times)
    pieces = [piece for batch in released for piece in batch]
    assert "".join(pieces) == "".join(chunks)
    assert "".join(pieces).encode() == "".join(parts).encode()
    assert all(pieces)  # never an empty piece


@settings(max_examples=250, deadline=None)
@given(
    chunked(),
    OPTIONS,
    st.lists(st.integers(0, 200), min_size=21, max_size=21),
    st.lists(st.booleans(), min_size=21, max_size=21),
)
def test_ticks_release_due_text_and_keep_it_whole(
    case: tuple[list[str], list[str]],
    options: dict[str, Any],
    gaps: list[int],
    ticks: list[bool],
) -> None:
    """A driver that wakes at each deadline (here: before some chunks) changes when text
    comes out, never what: the pieces are still the text, and a tick releases exactly the
    text that is due."""
    _parts, chunks = case
    shaper = Shaper(**options)
    pieces: list[str] = []
    now = 0.0
    for i, chunk in enumerate(chunks):
        later = now + gaps[i] / 1000
        due = shaper.deadline()
        if ticks[i] and due is not None and due <= later:
            if due - 1e-6 > now:
                assert shaper.tick(due - 1e-6) == []  # not before its time
            held = shaper.held
            out = shaper.tick(due)
            assert out and held.startswith(out[0])
            pieces += out
            assert shaper.deadline() is None  # nothing is due twice
        now = later
        pieces += shaper.feed(chunk, now)
    pieces += shaper.flush()
    assert "".join(pieces) == "".join(chunks)
    assert all(pieces)


def test_deadline_and_tick() -> None:
    shaper = Shaper(debounce=0.1)
    assert shaper.deadline() is None and shaper.tick(5.0) == []  # nothing held
    assert shaper.feed("Hel", 1.0) == []
    assert shaper.deadline() == pytest.approx(1.1)
    assert shaper.tick(1.05) == []  # not yet
    assert shaper.feed("lo", 1.06) == []
    assert shaper.tick(1.1) == ["Hello"]
    assert shaper.deadline() is None
    assert shaper.feed("!", 2.0) == [] and shaper.deadline() == pytest.approx(2.1)


def test_a_deadline_only_once_the_other_conditions_hold() -> None:
    shaper = Shaper(debounce=0.1, min_chunk_size=5)
    shaper.feed("abc", 0.0)
    assert shaper.deadline() is None  # too short: only another chunk can change that
    assert shaper.tick(10.0) == []
    assert shaper.feed("de", 0.05) == []
    assert shaper.deadline() == pytest.approx(0.1)
    assert shaper.tick(0.1) == ["abcde"]
    shaper = Shaper(debounce=0.1, buffer_size=2)
    shaper.feed("a", 0.0)
    assert shaper.deadline() is None
    shaper.feed("b", 0.01)
    assert shaper.tick(0.1) == ["ab"]
    assert Shaper(buffer_size=1).deadline() is None  # no debounce, no timer
    smoothing = Shaper(debounce=0.1, smooth="word")
    smoothing.feed("Hello wor", 0.0)
    assert smoothing.tick(0.1) == ["Hello "]  # the word without its end waits for its boundary
    assert smoothing.deadline() is None and smoothing.held == "wor"


@settings(max_examples=200, deadline=None)
@given(chunked(), st.sampled_from(["word", "line", "sentence", re.compile(r"\s")]))
def test_smoothing_never_cuts_inside_a_grapheme_cluster(
    case: tuple[list[str], list[str]], boundary: Any
) -> None:
    parts, chunks = case
    released = shape(Shaper(smooth=boundary), chunks)
    ends = cluster_ends(parts)
    at = 0
    for piece in [piece for batch in released for piece in batch]:
        at += len(piece)
        assert at in ends, f"a cut inside a cluster at {at}: {released!r}"


@settings(max_examples=200, deadline=None)
@given(chunked(), st.sampled_from(["word", "line", "sentence"]))
def test_smoothing_holds_text_no_later_than_the_next_chunk(
    case: tuple[list[str], list[str]], boundary: Literal["word", "line", "sentence"]
) -> None:
    _parts, chunks = case
    shaper = Shaper(smooth=boundary)
    fed = released = 0
    previous = 0
    for chunk in chunks:
        released += sum(len(p) for p in shaper.feed(chunk))
        # Everything that arrived before this chunk is out, but for one open cluster.
        assert released >= previous - max(len(c) for c in CLUSTERS)
        fed += len(chunk)
        previous = fed
    assert released + sum(len(p) for p in shaper.flush()) == fed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=8), max_size=40), st.integers(1, 5), st.integers(1, 20))
def test_buffering_gathers_whole_chunks_and_both_conditions_hold(
    chunks: list[str], size: int, minimum: int
) -> None:
    shaper = Shaper(buffer_size=size, min_chunk_size=minimum)
    held: list[str] = []
    for chunk in chunks:
        held.append(chunk)
        out = shaper.feed(chunk)
        if out:
            assert out == ["".join(held)]  # whole provider chunks, gathered, never cut
            assert len(held) >= size and len(out[0]) >= minimum
            held = []
    rest = shaper.flush()
    assert rest == (["".join(held)] if "".join(held) else [])


def test_buffer_size_releases_every_n_chunks() -> None:
    shaper = Shaper(buffer_size=3)
    assert [shaper.feed(c) for c in "abcdefg"] == [[], [], ["abc"], [], [], ["def"], []]
    assert shaper.flush() == ["g"]


def test_min_chunk_size_waits_for_enough_characters() -> None:
    shaper = Shaper(min_chunk_size=5)
    assert [shaper.feed(c) for c in ["ab", "cd", "e", "fghijk", "l"]] == [
        [],
        [],
        ["abcde"],
        ["fghijk"],
        [],
    ]
    assert shaper.flush() == ["l"]


def test_debounce_groups_a_time_window() -> None:
    shaper = Shaper(debounce=0.1)
    assert shaper.feed("a", 0.0) == []
    assert shaper.feed("b", 0.05) == []
    assert shaper.feed("c", 0.12) == ["abc"]
    assert shaper.feed("d", 0.13) == []
    assert shaper.flush() == ["d"]


def test_word_smoothing_example() -> None:
    shaper = Shaper(smooth="word")
    assert shaper.feed("Hello wor") == ["Hello "]
    assert shaper.feed("ld, how") == ["world, "]
    assert shaper.feed("ever") == ["how"]  # not later than the next chunk: 'ever' is open
    assert shaper.flush() == ["ever"]


def test_sentence_and_line_smoothing() -> None:
    shaper = Shaper(smooth="sentence")
    assert shaper.feed("It is 3.14 today. Then") == ["It is 3.14 today. "]
    assert shaper.feed("。") == ["Then。"]
    shaper = Shaper(smooth="line")
    assert shaper.feed("one\ntwo\nthr") == ["one\n", "two\n"]
    assert shaper.flush() == ["thr"]


def test_smoothing_by_a_function_and_by_a_regex() -> None:
    shaper = Shaper(smooth=lambda text: 3 if len(text) >= 3 else 0)
    assert shaper.feed("abcdefg") == ["abc", "def"]
    assert shaper.flush() == ["g"]
    shaper = Shaper(smooth=re.compile(r";"))
    assert shaper.feed("a;b;c") == ["a;", "b;"]


def test_grapheme_rule() -> None:
    family = "👨\u200d👩\u200d👧"
    assert [i for i in range(len(family) + 1) if safe_cut(family, i)] == [0, len(family)]
    flags = "🇳🇴🇸🇪"
    assert [i for i in range(5) if safe_cut(flags, i)] == [0, 2, 4]
    assert not safe_cut("e\u0301", 1)
    assert not safe_cut("\r\n", 1)
    # A multi-byte character cannot be split: a str is cut between code points only.
    assert "".join(Shaper(smooth="word").feed("€ 漢字 ")).encode() == "€ 漢字 ".encode()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"buffer_size": 0}, "buffer_size must be a positive int"),
        ({"min_chunk_size": -1}, "min_chunk_size must be a positive int"),
        ({"debounce": -1}, "debounce must be a number of seconds >= 0"),
        ({"smooth": "paragraph"}, "smooth must be 'word'"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Shaper(**options)
    server_free = create_llm("openai", model="m", base_url="http://127.0.0.1:9/v1", api_key="k")
    with pytest.raises(ValueError, match=error):
        server_free.generate_stream("hi", **options)  # refused before anything is sent
    with pytest.raises(ValueError, match="delay must be"):
        server_free.generate_stream("hi", smooth="word", delay=-1)
    with pytest.raises(ValueError, match="shapes a stream"):
        server_free.generate("hi", buffer_size=2)


# -- on live streams ---------------------------------------------------------------------------


def text_reply(pieces: list[str], delay: float = 0.0) -> Reply:
    chunks = [
        b"data: " + json.dumps(openai_chunk({"content": p})).encode() + b"\n\n" for p in pieces
    ]
    chunks.append(openai_sse(openai_chunk({}, "stop")))
    return Reply(chunks=chunks, delay=delay)


def llm_for(server: ReplayServer, *replies: Reply) -> spout.LLM:
    server.replies = list(replies)
    return create_llm("openai", model="m", base_url=f"{server.url}/v1", api_key="k")


def read(
    llm: spout.LLM, runner: Runner, method: str = "stream", **options: Any
) -> tuple[list[Any], Any]:
    """(the events the consumer got, the final response), sync or async."""
    if method == "tools":
        result = runner.tool_events(llm, "hi", tools=[add], **options)
    else:
        result = runner.events(llm, "hi", **options)
    return result.events, result.response


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


WORDS = [
    "Hel",
    "lo wo",
    "rld, ",
    "this is ",
    "a long",
    "er sen",
    "tence.",
    " 👨\u200d",
    "👩",
    " end",
]


def test_word_smoothing_on_a_stream(replay: ReplayServer, runner: Runner) -> None:
    events, response = read(llm_for(replay, text_reply(WORDS)), runner, smooth="word")
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == "".join(WORDS) == response.text  # the response is the raw text
    assert texts[:3] == ["Hello ", "world, ", "this "]
    assert "👨\u200d👩 " in texts  # the ZWJ sequence is never split
    assert response.stats.chunks == len(WORDS)  # stats count what the provider sent


def test_buffering_on_a_stream(replay: ReplayServer, runner: Runner) -> None:
    events, response = read(
        llm_for(replay, text_reply(WORDS)), runner, buffer_size=3, min_chunk_size=12
    )
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == response.text
    assert all(len(t) >= 12 for t in texts[:-1])
    assert isinstance(events[-1], spout.Finish)  # the finish came after the flushed text


def test_a_tool_call_flushes_held_text_first(replay: ReplayServer, runner: Runner) -> None:
    llm = llm_for(replay, *turns(openai_call_turn(), openai_text_turn()))
    events, response = read(llm, runner, "tools", min_chunk_size=1000)
    kinds = [type(e).__name__ for e in events]
    first_call = kinds.index("ToolCallStart")
    assert kinds[first_call - 1] == "TextDelta"  # "Let me check." came out before the call
    assert events[first_call - 1].text == "Let me check."
    assert isinstance(events[first_call], ToolCallStart)
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == response.text


@pytest.mark.parametrize("options", [{"min_chunk_size": 1000}, {"smooth": "sentence"}])
def test_a_refusal_flushes_held_text_and_is_not_shaped(
    replay: ReplayServer, runner: Runner, options: dict[str, Any]
) -> None:
    llm = llm_for(replay, Reply(chunks=[openai_refusal_turn("Let me think")]))
    events, response = read(llm, runner, **options)
    kinds = [type(e).__name__ for e in events]
    first = kinds.index("RefusalDelta")
    assert kinds[first - 1] == "TextDelta" and events[first - 1].text == "Let me think"
    # The refusal passes as the provider sent it, never as text.
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == response.text == "Let me think"
    refusals = [e.text for e in events if isinstance(e, RefusalDelta)]
    assert len(refusals) == 2 and "".join(refusals) == response.refusal


def test_an_error_flushes_held_text_before_raising(replay: ReplayServer, runner: Runner) -> None:
    reply = text_reply(["Hello ", "wor"])
    reply.chunks = reply.chunks[:-1]
    reply.abort = True  # the connection drops mid-answer
    llm = llm_for(replay, reply)
    got: list[str] = []
    with pytest.raises(spout.SpoutError) as caught:
        runner.list(runner.stream(llm, "hi", min_chunk_size=100, max_retries=0), each=got.append)
    assert got == ["Hello wor"]
    assert caught.value.partial is not None and caught.value.partial.text == "Hello wor"


def test_delay_spaces_the_pieces(replay: ReplayServer, runner: Runner) -> None:
    import time

    started = time.monotonic()
    events, _ = read(
        llm_for(replay, text_reply(["one two three four five "])), runner, smooth="word", delay=0.03
    )
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts == ["one ", "two ", "three ", "four ", "five "]
    assert time.monotonic() - started >= 4 * 0.03
