"""Tests for spout._partial_json.PartialJSON: the partial value of JSON text fed in pieces."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spout import _partial_json
from spout._partial_json import PartialJSON

_INT_PREFIX = re.compile(r"-?[0-9]+")
_FLOAT_PREFIX = re.compile(r"-?[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|-?[0-9]+[eE][-+]?[0-9]+")


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (``1 == 1.0`` is not enough) and key order."""
    return a == b and repr(a) == repr(b)


def fed(pieces: Iterable[str]) -> PartialJSON:
    parser = PartialJSON()
    for piece in pieces:
        parser.feed(piece)
    return parser


def number_prefix_values(final: int | float) -> list[int | float]:
    """What a number may read as while its text (as json.dumps writes it) is arriving."""
    text = json.dumps(final)
    values: list[int | float] = []
    for end in range(1, len(text) + 1):
        prefix = text[:end]
        if _INT_PREFIX.fullmatch(prefix):
            values.append(int(prefix))
        elif _FLOAT_PREFIX.fullmatch(prefix):
            values.append(float(prefix))
    return values


def consistent(partial: Any, final: Any) -> bool:
    """Whether ``partial`` can be what the parser shows on the way to ``final``.

    Dicts hold a subset of the final keys, each value consistent; lists are a prefix whose
    members are final except the last, which may be partial; strings are a prefix; numbers read
    as a prefix of their text; other scalars are final.
    """
    if isinstance(final, dict):
        return (
            isinstance(partial, dict)
            and partial.keys() <= final.keys()
            and all(consistent(value, final[key]) for key, value in partial.items())
        )
    if isinstance(final, list):
        if not isinstance(partial, list) or len(partial) > len(final):
            return False
        if not partial:
            return True
        done = len(partial) - 1
        return same(partial[:done], final[:done]) and consistent(partial[done], final[done])
    if isinstance(final, str):
        return isinstance(partial, str) and final.startswith(partial)
    if isinstance(final, (int, float)) and not isinstance(final, bool):
        return any(same(partial, value) for value in number_prefix_values(final))
    return same(partial, final)


def split(text: str, cuts: Iterable[int]) -> list[str]:
    bounds = [0, *sorted(cuts), len(text)]
    return [text[start:end] for start, end in pairwise(bounds)]


def assert_partials_lead_to_json_loads(text: str, pieces: list[str]) -> None:
    """Feed ``pieces``: each partial value is consistent with the final one, which is exactly
    ``json.loads(text)``, and no error is ever reported."""
    final = json.loads(text)
    parser = PartialJSON()
    started = False
    for piece in pieces:
        parser.feed(piece)
        assert parser.error is None
        partial = parser.value()
        if partial is None and final is not None:
            # None until the value has begun; after that only an exponent in progress (a
            # top-level "1e") takes it away again.
            assert not started or isinstance(final, float), parser.text
        else:
            started = True
            assert consistent(partial, final), (parser.text, partial)
    assert same(parser.value(), final)
    assert parser.text == text


# Characters that stress the string decoder: quotes, backslashes, control characters (always
# escaped by json.dumps), astral characters (a surrogate pair under ensure_ascii) and lone
# surrogates, which json.dumps writes as \udXXX escapes that may look like half a pair.
_tricky_text = st.text(
    st.sampled_from(
        ['"', "\\", "/", "\x00", "\n", "\x1f", "\x7f", "é", "😀", "\ud83d", "\ude00", "a"]
    )
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | _tricky_text,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text() | _tricky_text, children, max_size=5)
    ),
    max_leaves=20,
)
dumps_options = st.fixed_dictionaries(
    {"ensure_ascii": st.booleans(), "indent": st.none() | st.sampled_from([0, 2])}
)


@settings(max_examples=400, deadline=None, database=None)
@given(value=json_values, options=dumps_options, data=st.data())
def test_any_split_gives_consistent_partials_and_the_json_loads_value(
    value: Any, options: dict[str, Any], data: st.DataObject
) -> None:
    text = json.dumps(value, **options)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=len(text) + 1))
    assert_partials_lead_to_json_loads(text, split(text, cuts))


@settings(max_examples=200, deadline=None, database=None)
@given(value=json_values, options=dumps_options)
def test_every_character_boundary_gives_a_consistent_partial(
    value: Any, options: dict[str, Any]
) -> None:
    text = json.dumps(value, **options)
    assert_partials_lead_to_json_loads(text, list(text))


def test_tool_call_deltas() -> None:
    parser = PartialJSON()
    seen = []
    for delta in ['{"ci', 'ty": "Lis', 'bon", "no', 'te": "say \\', '"hi\\""}']:
        parser.feed(delta)
        seen.append(parser.value())
    assert seen == [
        {},
        {"city": "Lis"},
        {"city": "Lisbon"},
        {"city": "Lisbon", "note": "say "},
        {"city": "Lisbon", "note": 'say "hi"'},
    ]
    assert parser.error is None
    assert parser.text == '{"city": "Lisbon", "note": "say \\"hi\\""}'


@pytest.mark.parametrize(
    ("pieces", "partial"),
    [
        (['{"a": "x\\'], {"a": "x"}),
        (['{"a": "x\\', "n"], {"a": "x\n"}),
        (['"tab\\', "t", "end"], "tab\tend"),
        (['"\\u00', "e9"], "é"),
        (['"\\', "u", "0", "0", "e", "9"], "é"),
        (['"\\u00e9'], "é"),
        (['"a\\u'], "a"),
    ],
)
def test_escapes_are_held_back_until_complete(pieces: list[str], partial: Any) -> None:
    assert fed(pieces).value() == partial


def test_a_surrogate_pair_split_across_feeds_becomes_one_character() -> None:
    parser = PartialJSON()
    partials = []
    for piece in ['"x\\ud8', "3d", "\\", "ud", "e00", "y"]:
        parser.feed(piece)
        partials.append(parser.value())
    # The high half is held back until the low half arrives: no lone surrogate is ever shown.
    assert partials == ["x", "x", "x", "x", "x😀", "x😀y"]
    parser.feed('"')
    assert parser.value() == "x😀y" == json.loads(parser.text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"\\ud83d"', "\ud83d"),  # a lone high surrogate stays one, as json.loads keeps it
        ('"\\ud83dz"', "\ud83dz"),
        ('"\\ud83d\\u0041"', "\ud83dA"),
        ('"\\ud83d\\n"', "\ud83d\n"),
        ('"\\ude00"', "\ude00"),
    ],
)
def test_lone_surrogates_decode_as_json_loads_does(text: str, expected: str) -> None:
    assert json.loads(text) == expected
    assert fed(text).value() == expected
    assert fed(text).error is None


@pytest.mark.parametrize(
    ("text", "partial"),
    [
        ("1", 1),
        ("12", 12),
        ("-", None),
        ("-1", -1),
        ("0", 0),
        ("1.", 1.0),
        ("1.5", 1.5),
        ("1e", None),
        ("1e+", None),
        ("1e+2", 100.0),
        ("1.5E-", None),
        ('{"n": -', {}),
        ('{"n": 12', {"n": 12}),
        ('{"n": 12.', {"n": 12.0}),
        ('{"n": 12.5e', {}),
        ("[1, 2", [1, 2]),
        ("[1, 2e", [1]),
    ],
)
def test_numbers_in_progress(text: str, partial: Any) -> None:
    parser = fed(text)
    assert same(parser.value(), partial)
    assert parser.error is None


def test_a_number_ends_only_at_a_delimiter() -> None:
    parser = fed(["[12", "3"])
    assert parser.value() == [123]
    parser.feed("]")
    assert parser.value() == [123]


@pytest.mark.parametrize(
    "text",
    [
        "-0",
        "-0.0",
        "0.5",
        "1E400",
        "12345678901234567890123456789012345678901234567890",
        "-1.5e-7",
        "3.0",
        "1e5",
    ],
)
def test_complete_numbers_are_typed_like_json_loads(text: str) -> None:
    assert same(fed(text).value(), json.loads(text))
    assert same(fed([f"[{text}", "]"]).value(), json.loads(f"[{text}]"))


@pytest.mark.parametrize(
    ("text", "partial"),
    [
        ("t", None),
        ("tru", None),
        ("true", True),
        ("[fals", []),
        ("[false", [False]),
        ('{"a": nul', {}),
        ('{"a": null', {"a": None}),
    ],
)
def test_literals_appear_only_when_complete(text: str, partial: Any) -> None:
    parser = fed(text)
    assert same(parser.value(), partial)
    assert parser.error is None


@pytest.mark.parametrize(
    ("text", "partial"),
    [
        ("", None),
        ("  \n", None),
        ("{", {}),
        ('{"', {}),
        ('{"ke', {}),
        ('{"key"', {}),
        ('{"key":', {}),
        ('{"key": ', {}),
        ('{"key": "', {"key": ""}),
        ('{"a": {"b": [1, {"c": "d', {"a": {"b": [1, {"c": "d"}]}}),
        ('{"a": {"b": [1, {"c": "d"}], "e', {"a": {"b": [1, {"c": "d"}]}}),
        ("[[[", [[[]]]),
        ("[[1], [", [[1], []]),
        ('[{"a": 1}, {', [{"a": 1}, {}]),
        ('"top', "top"),
        ('"top"', "top"),
        (" 42 ", 42),
    ],
)
def test_containers_keys_and_top_level_values_in_progress(text: str, partial: Any) -> None:
    parser = fed(text)
    assert same(parser.value(), partial)
    assert parser.error is None


def test_duplicate_keys_keep_the_last_value_like_json_loads() -> None:
    text = '{"a": 1, "b": 2, "a": [3]}'
    assert same(fed(text).value(), json.loads(text))


def test_mutating_a_returned_value_does_not_affect_the_parser() -> None:
    parser = fed('{"done": {"x": [1, 2]}, "list": [[0]], "open": [1')
    first = parser.value()
    first["done"]["x"].append(99)
    first["list"][0].clear()
    first["open"].append(2)
    first["new"] = True
    assert parser.value() == {"done": {"x": [1, 2]}, "list": [[0]], "open": [1]}
    parser.feed("]}")
    complete = parser.value()
    complete["done"]["x"].clear()
    assert parser.value() == {"done": {"x": [1, 2]}, "list": [[0]], "open": [1]}


@pytest.mark.parametrize(
    ("pieces", "position", "last_good"),
    [
        (['{"a" 1}'], 5, {}),
        (["{]"], 1, {}),
        (["[1,,2]"], 3, [1]),
        (['{"a":1}x'], 7, {"a": 1}),
        (['{"a":1}', "  x"], 9, {"a": 1}),
        (["[1,", "]"], 3, [1]),
        (['{"a": 1,}'], 8, {"a": 1}),
        (["[01]"], 2, [0]),
        (["[1.]"], 3, [1.0]),
        (["[-x"], 2, []),
        (["[tru", "e", "x"], 5, [True]),
        (["[nul", "x"], 4, []),
        (['["a\x01'], 3, ["a"]),
        (['["a\\q"]'], 3, ["a"]),
        (['["a\\u12G4"]'], 3, ["a"]),
        (['["a\\', "x"], 3, ["a"]),
        (["NaN"], 0, None),
        (["[1] [2]"], 4, [1]),
        (['{"a": 1 "b": 2}'], 8, {"a": 1}),
        (["{1: 2}"], 1, {}),
    ],
)
def test_invalid_text_sets_error_and_keeps_the_last_good_value(
    pieces: list[str], position: int, last_good: Any
) -> None:
    parser = fed(pieces)
    assert parser.error is not None
    assert parser.error.startswith(f"position {position}: ")
    assert same(parser.value(), last_good)
    # orjson, not json.loads, as the reference: json.loads accepts NaN, which is not JSON.
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(parser.text)


def test_feeding_after_an_error_is_accepted_and_changes_nothing() -> None:
    parser = fed(["[1,,"])
    error = parser.error
    assert error is not None
    parser.feed('2, "more"]')
    parser.feed("")
    assert parser.error == error
    assert parser.value() == [1]
    assert parser.text == '[1,,2, "more"]'


def test_feeding_an_empty_string_changes_nothing() -> None:
    parser = fed(['{"a": "b', "", "c"])
    assert parser.value() == {"a": "bc"}
    assert parser.text == '{"a": "bc'


class _CountingPattern:
    """Wraps a compiled pattern, counting the characters its matches span."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.spanned = 0

    def match(self, string: str, pos: int = 0) -> re.Match[str] | None:
        found = self.pattern.match(string, pos)
        if found:
            self.spanned += found.end() - pos
        return found

    def fullmatch(self, string: str) -> re.Match[str] | None:
        found = self.pattern.fullmatch(string)
        if found:
            self.spanned += len(string)
        return found


def test_feed_scans_only_the_new_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # White-box: every pattern the parser scans with counts the characters it covers. Parsing
    # the whole buffer again on each delta would cover about n²/2 characters over n deltas.
    counters = []
    for name, pattern in vars(_partial_json).items():
        if isinstance(pattern, re.Pattern):
            counter = _CountingPattern(pattern)
            monkeypatch.setattr(_partial_json, name, counter)
            counters.append(counter)
    code = 'def f(x):\n    return x * 2  # "quoted" \\ and \u00e9\n' * 400
    text = json.dumps({"path": "a.py", "code": code, "sizes": [12345] * 50})
    assert len(text) > 20_000
    parser = PartialJSON()
    for i, char in enumerate(text):
        parser.feed(char)
        if i % 1000 == 0:
            assert consistent(parser.value(), json.loads(text))
    assert parser.value() == json.loads(text)
    assert sum(counter.spanned for counter in counters) <= 2 * len(text)
