"""An incremental JSON parser: tool-call arguments fed as text deltas, the partial value on demand."""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["PartialJSON"]

# Parser states: what the text may continue with.
_VALUE: Final = 0  # a value (at the start, after ':' or after ',' in an array)
_ARRAY_FIRST: Final = 1  # just after '[': a value or ']'
_OBJECT_FIRST: Final = 2  # just after '{': a key or '}'
_KEY: Final = 3  # after ',' in an object: a key
_COLON: Final = 4  # after a key: ':'
_AFTER: Final = 5  # after a member: ',' or the closing bracket
_END: Final = 6  # the document is complete: whitespace only
_STRING: Final = 7  # inside a string (a key or a value)
_NUMBER: Final = 8  # inside a number
_LITERAL: Final = 9  # inside true, false or null

# Number states, named by what was read last. MINUS, DOT, EXP_MARK and EXP_SIGN need a digit
# before the number can end; the others can end where they are.
_N_MINUS: Final = 0
_N_ZERO: Final = 1
_N_INT: Final = 2
_N_DOT: Final = 3
_N_FRAC: Final = 4
_N_EXP_MARK: Final = 5
_N_EXP_SIGN: Final = 6
_N_EXP: Final = 7
_N_NEEDS_DIGIT: Final = frozenset({_N_MINUS, _N_DOT, _N_EXP_MARK, _N_EXP_SIGN})
_N_DIGIT_RUN: Final = frozenset({_N_INT, _N_FRAC, _N_EXP})

_DIGIT_CHARS: Final = "0123456789"
# Whitespace as RFC 8259 (and json.loads) defines it; Unicode spaces are not allowed.
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
# A run of string characters needing no decoding. Raw control characters are invalid in a JSON
# string (json.loads rejects them too), so they stop the run and are reported.
_PLAIN: Final = re.compile(r'[^"\\\x00-\x1f]*')
_DIGITS: Final = re.compile(r"[0-9]*")
_HEX4: Final = re.compile(r"[0-9a-fA-F]{4}")
_HEX_PREFIX: Final = re.compile(r"[0-9a-fA-F]{0,3}")
_LOW_SURROGATE: Final = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
# What may follow a high surrogate's escape while its low half is still arriving.
_LOW_SURROGATE_PREFIX: Final = re.compile(r"(?:\\(?:u(?:[dD](?:[c-fC-F][0-9a-fA-F]?)?)?)?)?")

_ESCAPES: Final = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_LITERALS: Final[dict[str, Any]] = {"true": True, "false": False, "null": None}
_CONTAINER_TYPES: Final = (dict, list)


class _Missing:
    """The in-progress member has no meaningful value yet."""


_MISSING: Final = _Missing()


class _Invalid(Exception):
    """The text can no longer be valid JSON; ``index`` is relative to the text being fed."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(index, problem)
        self.index = index
        self.problem = problem


class PartialJSON:
    """Parses JSON text fed in pieces; ``value()`` is the best-effort object so far.

    Each ``feed`` does work proportional to the text it is given: the parser keeps a stack of
    the open containers and the token in progress, never the text to scan again.

    What ``value()`` returns for a prefix of a document:

    - Open objects and arrays are dicts and lists holding the members complete so far, plus the
      member in progress when it has a meaningful partial value. An open container always has
      one: ``{"a": [`` gives ``{"a": []}``.
    - A string in progress is included as far as it has been decoded: an escape sequence still
      arriving (a trailing ``\\`` or ``\\u00``) is left out until complete, and so is a high
      surrogate (``\\ud83d``) until its low half shows whether they form one character.
    - An object key in progress, or a key whose value has not started yet, is omitted.
    - A number in progress is included when the text so far has a value: ``12`` gives ``12``
      (it may still become ``123``), ``1.`` gives ``1.0`` (a fraction must follow, so the final
      value is a float close to it), ``1e+2`` gives ``100.0``; ``-``, ``1e`` and ``1.5e+`` are
      omitted (the exponent's digits still to come change the value by orders of magnitude).
    - ``true``, ``false`` and ``null`` are omitted until complete.
    - Before any value has started, ``value()`` is ``None``.

    Once the text is a complete document, ``value()`` equals ``json.loads(text)``: duplicate
    keys keep the last value, numbers are ``int`` or ``float`` as ``json.loads`` makes them,
    big integers are exact. Only strict JSON is accepted (no ``NaN`` or ``Infinity``).

    When the text can no longer be valid JSON, ``error`` says where and why; later text is
    still accepted (and kept in ``text``) but ignored, so ``value()`` stays the last partial
    value from before the error. ``feed`` never raises on bad or incomplete input.

    Each ``value()`` call builds a fresh structure (cost proportional to the value, not the
    text), so callers may mutate what they get.

    Example::

        parser = PartialJSON()
        for delta in ['{"ci', 'ty": "Lis', 'bon", "no', 'te": "say \\\\', '"hi\\\\""}']:
            parser.feed(delta)
            print(parser.value())
        # {}
        # {'city': 'Lis'}
        # {'city': 'Lisbon'}
        # {'city': 'Lisbon', 'note': 'say '}
        # {'city': 'Lisbon', 'note': 'say "hi"'}
    """

    __slots__ = (
        "_chunks",
        "_error",
        "_escape",
        "_is_key",
        "_keys",
        "_nested",
        "_number_pieces",
        "_number_state",
        "_offset",
        "_pieces",
        "_result",
        "_stack",
        "_state",
        "_word",
        "_word_length",
    )

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._offset = 0  # characters fed before the current chunk
        self._error: str | None = None
        self._state: int = _VALUE
        # The open containers, outermost first, each holding its complete members; _keys[i] is
        # the key of the member in progress when _stack[i] is a dict ("" when there is none yet;
        # the states make sure it is only read once set).
        self._stack: list[dict[str, Any] | list[Any]] = []
        self._keys: list[str] = []
        self._result: Any = None  # the complete document, in state _END
        # The ids of the containers (open or complete) that hold a container: value() copies
        # every other one with a shallow copy, which for them is as good as a deep one. An id of
        # a container dropped for a duplicate key can linger and be reused by a flat container;
        # that container is then copied the slow way, which is still right.
        self._nested: set[int] = set()
        # The string in progress: decoded pieces, joined lazily, and a partial escape sequence
        # held back until the next feed completes it.
        self._pieces: list[str] = []
        self._escape = ""
        self._is_key = False
        self._number_pieces: list[str] = []
        self._number_state: int = _N_MINUS
        self._word = ""
        self._word_length = 0

    @property
    def text(self) -> str:
        """Everything fed so far."""
        chunks = self._chunks
        if len(chunks) > 1:
            chunks[:] = ["".join(chunks)]
        return chunks[0] if chunks else ""

    @property
    def error(self) -> str | None:
        """Why the text can no longer be valid JSON (with the position), or ``None``."""
        return self._error

    @property
    def complete(self) -> bool:
        """Whether a whole JSON document has been read (text after it is an error)."""
        return self._state == _END

    def feed(self, text: str) -> None:
        """Parse the next piece of the document."""
        if not text:
            return
        self._chunks.append(text)
        if self._error is None:
            try:
                self._scan(text)
            except _Invalid as invalid:
                self._error = f"position {self._offset + invalid.index}: {invalid.problem}"
        self._offset += len(text)

    def value(self) -> Any:
        """The document so far as a fresh Python object (``None`` before any value started)."""
        state = self._state
        if state == _END:
            result = self._result
            return _copy(result, self._nested) if isinstance(result, _CONTAINER_TYPES) else result
        partial: Any = _MISSING
        if state == _STRING:
            if not self._is_key:
                partial = self._string_so_far()
        elif state == _NUMBER:
            try:
                partial = self._number_so_far()
            except ValueError:  # more digits than int() converts; json.loads refuses them too
                partial = _MISSING
        keys = self._keys
        nested = self._nested
        for depth in range(len(self._stack) - 1, -1, -1):
            container = self._stack[depth]
            if isinstance(container, list):
                copied_list: list[Any] = _copy(container, nested)
                if partial is not _MISSING:
                    copied_list.append(partial)
                partial = copied_list
            else:
                copied_dict: dict[str, Any] = _copy(container, nested)
                if partial is not _MISSING:
                    copied_dict[keys[depth]] = partial
                partial = copied_dict
        return None if partial is _MISSING else partial

    def _scan(self, text: str) -> None:
        i = 0
        n = len(text)
        while i < n:
            state = self._state
            if state == _STRING:
                i = self._scan_string(text, i)
            elif state == _NUMBER:
                i = self._scan_number(text, i)
            elif state == _LITERAL:
                i = self._scan_literal(text, i)
            else:
                i = _WHITESPACE.match(text, i).end()  # type: ignore[union-attr]  # `*` always matches
                if i < n:
                    self._structural(text[i], i)
                    i += 1

    def _structural(self, char: str, i: int) -> None:
        """Act on one character outside any string, number or literal."""
        state = self._state
        if state == _AFTER:
            in_list = isinstance(self._stack[-1], list)
            if char == ",":
                self._state = _VALUE if in_list else _KEY
            elif char == ("]" if in_list else "}"):
                self._close()
            else:
                closer = "]" if in_list else "}"
                raise _Invalid(i, f"expected ',' or '{closer}', found {char!r}")
        elif state == _COLON:
            if char != ":":
                raise _Invalid(i, f"expected ':', found {char!r}")
            self._state = _VALUE
        elif state in (_OBJECT_FIRST, _KEY):
            if char == '"':
                self._start_string(is_key=True)
            elif char == "}" and state == _OBJECT_FIRST:
                self._close()
            else:
                raise _Invalid(i, f"expected a key, found {char!r}")
        elif state == _END:
            raise _Invalid(i, f"unexpected {char!r} after the JSON document")
        elif char == "]" and state == _ARRAY_FIRST:
            self._close()
        elif char == "{":
            self._stack.append({})
            self._keys.append("")
            self._state = _OBJECT_FIRST
        elif char == "[":
            self._stack.append([])
            self._keys.append("")
            self._state = _ARRAY_FIRST
        elif char == '"':
            self._start_string(is_key=False)
        elif char == "-" or char in _DIGIT_CHARS:
            self._number_pieces = [char]
            self._number_state = _N_MINUS if char == "-" else _N_ZERO if char == "0" else _N_INT
            self._state = _NUMBER
        elif char in "tfn":
            self._word = "true" if char == "t" else "false" if char == "f" else "null"
            self._word_length = 1
            self._state = _LITERAL
        else:
            raise _Invalid(i, f"expected a value, found {char!r}")

    def _complete(self, value: Any) -> None:
        """Store a finished value in its container, or as the document."""
        stack = self._stack
        if not stack:
            self._result = value
            self._state = _END
            return
        container = stack[-1]
        if type(value) in _CONTAINER_TYPES:
            self._nested.add(id(container))
        if isinstance(container, list):
            container.append(value)
        else:
            container[self._keys[-1]] = value
        self._state = _AFTER

    def _close(self) -> None:
        self._keys.pop()
        self._complete(self._stack.pop())

    # Strings

    def _start_string(self, *, is_key: bool) -> None:
        self._pieces = []
        self._is_key = is_key
        self._state = _STRING

    def _string_so_far(self) -> str:
        pieces = self._pieces
        if len(pieces) == 1:
            return pieces[0]
        joined = "".join(pieces)
        # Keep the join: the next call then only joins what arrived since.
        pieces[:] = [joined]
        return joined

    def _scan_string(self, text: str, i: int) -> int:
        n = len(text)
        if self._escape:
            i = self._finish_escape(text)
            if self._escape:
                return n
        pieces = self._pieces
        while True:
            end = _PLAIN.match(text, i).end()  # type: ignore[union-attr]  # `*` always matches
            if end > i:
                pieces.append(text[i:end])
            if end == n:
                return n
            char = text[end]
            if char == '"':
                self._end_string()
                return end + 1
            if char != "\\":
                raise _Invalid(end, f"control character {char!r} in a string")
            decoded = _decode_escape(text, end)
            if decoded is None:
                self._escape = text[end:]
                return n
            pieces.append(decoded[0])
            i = decoded[1]

    def _finish_escape(self, text: str) -> int:
        """Complete the escape held back from earlier text; return where ``text`` resumes.

        The held text is the exact tail of everything fed, so indexes into ``held + text``
        minus ``len(held)`` are indexes into ``text`` (negative ones point back before it).
        """
        held = self._escape
        length = len(held)
        # An escape is at most 12 characters (a surrogate pair), so this is enough to finish it.
        joined = held + text[:12]
        at = 0
        while at < length:
            try:
                decoded = _decode_escape(joined, at)
            except _Invalid as invalid:
                raise _Invalid(invalid.index - length, invalid.problem) from None
            if decoded is None:
                # Only possible when all of text fit in `joined`: the escape is still arriving.
                self._escape = joined[at:]
                return len(text)
            self._pieces.append(decoded[0])
            at = decoded[1]
        self._escape = ""
        return at - length

    def _end_string(self) -> None:
        value = "".join(self._pieces)
        self._pieces = []
        if self._is_key:
            self._keys[-1] = value
            self._state = _COLON
        else:
            self._complete(value)

    # Numbers and literals

    def _scan_number(self, text: str, i: int) -> int:
        n = len(text)
        start = i
        state = self._number_state
        try:
            while i < n:
                char = text[i]
                if char in _DIGIT_CHARS:
                    if state in _N_DIGIT_RUN:
                        i = _DIGITS.match(text, i).end()  # type: ignore[union-attr]
                        continue
                    if state == _N_ZERO:
                        raise _Invalid(i, "leading zero in a number")
                    if state == _N_MINUS:
                        state = _N_ZERO if char == "0" else _N_INT
                    elif state == _N_DOT:
                        state = _N_FRAC
                    else:  # after the exponent mark or its sign
                        state = _N_EXP
                elif char == ".":
                    if state not in (_N_ZERO, _N_INT):
                        raise _Invalid(i, "unexpected '.' in a number")
                    state = _N_DOT
                elif char in "eE":
                    if state not in (_N_ZERO, _N_INT, _N_FRAC):
                        raise _Invalid(i, f"unexpected {char!r} in a number")
                    state = _N_EXP_MARK
                elif char in "+-":
                    if state != _N_EXP_MARK:
                        raise _Invalid(i, f"unexpected {char!r} in a number")
                    state = _N_EXP_SIGN
                else:
                    break
                i += 1
        finally:
            # Keep what was valid, also when raising, so value() shows the number up to the error.
            if i > start:
                self._number_pieces.append(text[start:i])
            self._number_state = state
        if i < n:  # a character that is not part of a number: the number ended before it
            if state in _N_NEEDS_DIGIT:
                raise _Invalid(i, f"expected a digit, found {text[i]!r}")
            try:
                number = self._number_so_far()
            except ValueError:
                raise _Invalid(i, "number has too many digits to convert") from None
            self._complete(number)
        return i

    def _number_so_far(self) -> Any:
        """The number in progress as json.loads would read it now, or _MISSING."""
        state = self._number_state
        if state in (_N_MINUS, _N_EXP_MARK, _N_EXP_SIGN):
            return _MISSING
        pieces = self._number_pieces
        if len(pieces) > 1:
            pieces[:] = ["".join(pieces)]
        text = pieces[0]
        if state in (_N_ZERO, _N_INT):
            return int(text)
        return float(text)  # float("1.") is 1.0, the value _N_DOT promises

    def _scan_literal(self, text: str, i: int) -> int:
        word = self._word
        needed = word[self._word_length :]
        got = text[i : i + len(needed)]
        if not needed.startswith(got):
            bad = next(k for k, char in enumerate(got) if char != needed[k])
            raise _Invalid(i + bad, f"expected {word!r}, found {got[bad]!r}")
        self._word_length += len(got)
        if self._word_length == len(word):
            self._complete(_LITERALS[word])
        return i + len(got)


def _decode_escape(text: str, at: int) -> tuple[str, int] | None:
    """Decode the escape sequence at ``text[at]`` (a backslash): the characters and the index
    after it, or None while it is incomplete."""
    if at + 1 >= len(text):
        return None
    kind = text[at + 1]
    simple = _ESCAPES.get(kind)
    if simple is not None:
        return simple, at + 2
    if kind != "u":
        raise _Invalid(at, f"invalid escape {text[at : at + 2]!r}")
    digits = text[at + 2 : at + 6]
    if len(digits) < 4:
        if _HEX_PREFIX.fullmatch(digits):
            return None
        raise _Invalid(at, f"invalid escape {text[at : at + 6]!r}")
    if not _HEX4.fullmatch(digits):
        raise _Invalid(at, f"invalid escape {text[at : at + 6]!r}")
    code = int(digits, 16)
    if 0xD800 <= code < 0xDC00:
        # A high surrogate joins a directly following escaped low surrogate into one character;
        # otherwise it stays a lone surrogate, as json.loads does.
        after = text[at + 6 : at + 12]
        if _LOW_SURROGATE.fullmatch(after):
            low = int(after[2:], 16)
            return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), at + 12
        if len(after) < 6 and _LOW_SURROGATE_PREFIX.fullmatch(after):
            return None
    return chr(code), at + 6


def _copy(value: dict[str, Any] | list[Any], nested: set[int]) -> Any:
    """A copy of a container the parser built, deep enough that mutating it cannot reach it."""
    if id(value) not in nested:
        return value.copy()  # only scalars inside, which are immutable
    if isinstance(value, list):
        return [_copy(item, nested) if type(item) in _CONTAINER_TYPES else item for item in value]
    copied = value.copy()
    for key, item in value.items():
        if type(item) in _CONTAINER_TYPES:
            copied[key] = _copy(item, nested)
    return copied
