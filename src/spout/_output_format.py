"""What a ``response_format`` asks for, and how an answer is checked against it; no I/O.

A caller's ``response_format`` (a pydantic model, a dataclass or TypedDict, a JSON Schema, or
OpenAI's own ``{"type": "json_schema", ...}`` / ``{"type": "json_object"}`` dicts) becomes one
:class:`OutputFormat`. :meth:`OutputFormat.parse` finds the JSON in an answer's text,
tolerantly (code fences and prose around it are skipped), and validates it;
:class:`PartialObjects` gives progressively completed values while the text arrives. This
sits below providers and responses, which both hold an :class:`OutputFormat`; how each
provider is asked for one is in :mod:`spout._structured`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigurationError, StructuredOutputError
from ._events import Finish
from ._partial_json import PartialJSON
from ._schema import json_kind

__all__ = [
    "OutputFormat",
    "PartialObjects",
    "find_json",
    "output_format",
    "schema_problems",
]

#: How many times a stream's parser starts again at a later bracket when the text before the
#: JSON held a stray one ("Here is the {JSON}: {...").
_MAX_RESTARTS = 16


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """What a ``response_format`` asks for, before any provider's wire shape.

    ``schema`` is None for OpenAI's ``{"type": "json_object"}`` (any JSON object). ``native``
    is the OpenAI-shaped dict a caller gave, sent as it is to OpenAI-compatible servers.
    ``model`` is the pydantic model validated into; ``convert`` turns checked JSON into the
    caller's type (a dataclass, say).
    """

    schema: dict[str, Any] | None
    name: str = "response"
    #: Whether ``wire_schema`` meets OpenAI's strict mode (every object closed, every
    #: property required), so ``strict: true`` can be sent.
    strict: bool = False
    #: The schema as sent: for a type spout described, made strict-ready.
    wire_schema: dict[str, Any] | None = None
    native: dict[str, Any] | None = None
    model: Any = None
    convert: Callable[[Any], Any] | None = None

    @property
    def openers(self) -> str:
        """The characters the JSON document can start with, by the schema's top-level type."""
        kind = (self.schema or {"type": "object"}).get("type")
        if kind == "object" or (kind is None and "properties" in (self.schema or {})):
            return "{"
        if kind == "array":
            return "["
        return "{["

    def openai_chat(self) -> dict[str, Any]:
        """The ``response_format`` of OpenAI chat completions (and compatible servers)."""
        if self.native is not None:
            return self.native
        if self.schema is None:
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.wire_schema, "strict": self.strict},
        }

    def instruction(self) -> str:
        """What the system prompt gains where a provider has no native structured output."""
        if self.schema is None:
            return "Answer with only a JSON object: no other text, no code fence."
        schema = json.dumps(self.schema, separators=(",", ":"), ensure_ascii=False)
        return (
            "Answer with only a JSON value that conforms to this JSON Schema: no other text, "
            f"no code fence.\n{schema}"
        )

    def parse(self, text: str, finish: Finish | None = None) -> Any:
        """The answer's JSON, validated; raises :class:`StructuredOutputError` with the text."""
        if finish is not None and finish.reason == "tool_calls":
            return None  # the model asked for tools: the answer comes in a later round
        if finish is not None and finish.reason in ("refusal", "content_filter"):
            why = f"the model gave no answer to parse ({finish.reason})"
            if finish.reason == "refusal":
                why += " (a refusal's own words, not text, are on .partial.refusal)"
            raise self._error(why, text)
        snippet = find_json(text, self.openers)
        if snippet is None:
            cut = finish is not None and finish.reason == "length"
            why = (
                "the answer was cut at max_tokens before its JSON was complete"
                if cut
                else "the answer holds no complete JSON value"
            )
            raise self._error(why, text)
        if self.model is not None:
            from pydantic import ValidationError

            try:
                return self.model.model_validate_json(snippet)
            except ValidationError as exc:
                raise self._error(_first_lines(str(exc)), text) from exc
        value = json.loads(snippet)
        if self.schema is None:
            problems = (
                [] if isinstance(value, dict) else [f"expected an object, got {json_kind(value)}"]
            )
        else:
            problems = schema_problems(value, self.schema)
        if problems:
            raise self._error("; ".join(problems[:3]), text)
        if self.convert is not None:
            try:
                return self.convert(value)
            except (TypeError, ValueError) as exc:
                raise self._error(str(exc), text) from exc
        return value

    def _error(self, why: str, text: str) -> StructuredOutputError:
        objects = PartialObjects(self.openers)
        objects.feed(text)
        return StructuredOutputError(
            f"the answer does not match the response_format {self.name!r}: {why}; "
            "its text is kept on .raw",
            raw=text,
            value=objects.value,
        )


def output_format(value: Any) -> OutputFormat:
    """A caller's ``response_format`` as an :class:`OutputFormat`.

    Example::

        output_format({"type": "object", "properties": {"city": {"type": "string"}}})
        output_format(Weather)                     # a pydantic model, dataclass or TypedDict
    """
    if isinstance(value, OutputFormat):
        return value
    if isinstance(value, dict):
        return _from_dict(value)
    if isinstance(value, type) or _is_type_hint(value):
        return _from_type(value)
    raise TypeError(
        "response_format must be a pydantic model, a dataclass, a TypedDict, a JSON Schema "
        f"dict or an OpenAI response_format dict, not {type(value).__name__}"
    )


def _from_dict(value: dict[str, Any]) -> OutputFormat:
    kind = value.get("type")
    if kind == "json_object":
        return OutputFormat(None, native=value)
    if kind == "json_schema":
        # OpenAI chat's {"type": "json_schema", "json_schema": {...}}, or the flat shape of the
        # Responses API's text.format ({"type": "json_schema", "name":, "schema":}).
        inner = value.get("json_schema", value)
        schema = inner.get("schema") if isinstance(inner, dict) else None
        if not isinstance(schema, dict):
            raise ConfigurationError(
                "a response_format of type 'json_schema' needs its schema: "
                '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}'
            )
        name = str(inner.get("name") or "response")
        native = (
            value
            if "json_schema" in value
            else {
                "type": "json_schema",
                "json_schema": {k: v for k, v in value.items() if k != "type"},
            }
        )
        strict = bool(inner.get("strict", False))
        return OutputFormat(schema, name, strict, schema, native=native)
    if kind == "text":
        raise ConfigurationError(
            "response_format {'type': 'text'} asks for no structure: leave response_format out"
        )
    # A plain JSON Schema: sent as given, strict only when it already meets strict mode.
    name = str(value.get("title") or "response")
    return OutputFormat(value, _wire_name(name), _is_strict(value), value)


def _from_type(tp: Any) -> OutputFormat:
    from ._schema import SchemaBuilder, is_pydantic_model

    name = _wire_name(getattr(tp, "__name__", None) or "response")
    builder = SchemaBuilder(name)
    builder.where = f"response_format {name}"
    schema, convert = builder.describe(tp)
    if builder.defs:
        schema = {**schema, "$defs": builder.defs}
    model = tp if isinstance(tp, type) and is_pydantic_model(tp) else None
    wire = _strictly(schema)
    return OutputFormat(
        schema,
        name,
        _is_strict(wire),
        wire,
        model=model,
        convert=None if model is not None else convert,
    )


def _is_type_hint(value: Any) -> bool:
    # list[Item], Item | None...: a generic alias or a union, which _schema.py describes too.
    return type(value).__module__ in ("typing", "types") and not isinstance(value, dict)


def _wire_name(name: str) -> str:
    # OpenAI: "a-z, A-Z, 0-9, or contain underscores and dashes, with a maximum length of 64".
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64]
    return cleaned or "response"


def _strictly(schema: Any) -> Any:
    """A copy of a schema spout described, with every object closed and every property
    required, as OpenAI's strict mode asks (docs: "Supported schemas", Structured Outputs).

    A property with a default becomes required on the wire: the model then writes the value
    out, and validation still accepts it.
    """
    if isinstance(schema, list):
        return [_strictly(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strictly(item) for key, item in schema.items()}
    if out.get("type") == "object" and isinstance(out.get("properties"), dict):
        out.setdefault("additionalProperties", False)
        out["required"] = list(out["properties"])
    return out


def _is_strict(schema: Any) -> bool:
    if isinstance(schema, list):
        return all(_is_strict(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties")
        if not isinstance(properties, dict) or schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
    return all(_is_strict(item) for item in schema.values() if isinstance(item, (dict, list)))


# -- parsing --------------------------------------------------------------------------------------


def find_json(text: str, openers: str = "{[") -> str | None:
    """The first complete JSON value in ``text``, as text; None when there is none.

    The whole text is tried first; then, from each opening bracket in turn, the longest JSON
    value that starts there, so a code fence (```json) or prose around the value is skipped.

    >>> find_json('Sure! ```json\\n{"a": 1}\\n```')
    '{"a": 1}'
    """
    stripped = text.strip()
    try:
        json.loads(stripped)
        return stripped
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    at = _next_opener(text, openers, 0)
    tries = 0
    while at >= 0 and tries <= _MAX_RESTARTS:
        try:
            _, end = decoder.raw_decode(text, at)
            return text[at:end]
        except ValueError:
            tries += 1
            at = _next_opener(text, openers, at + 1)
    return None


def _next_opener(text: str, openers: str, start: int) -> int:
    found = [i for i in (text.find(c, start) for c in openers) if i >= 0]
    return min(found) if found else -1


class PartialObjects:
    """The JSON in a text fed in pieces, as progressively completed values.

    Text before the first opening bracket (prose, a code fence) is skipped; a bracket that
    turns out not to start JSON is passed over. Each :meth:`feed` costs time linear in the
    text given, plus the size of the value when it is rebuilt.

    Example::

        objects = PartialObjects("{")
        for piece in ['```json\\n{"ci', 'ty": "Os', 'lo"}\\n```']:
            if objects.feed(piece):
                print(objects.value)
        # {}
        # {'city': 'Os'}
        # {'city': 'Oslo'}
    """

    __slots__ = ("_openers", "_parser", "_restarts", "value")

    def __init__(self, openers: str = "{[") -> None:
        self._openers = openers
        self._parser: PartialJSON | None = None
        self._restarts = 0
        #: The value so far: None until a JSON value began.
        self.value: Any = None

    def feed(self, text: str) -> bool:
        """Take the next piece of text; True when :attr:`value` changed."""
        if not text:
            return False
        parser = self._parser
        if parser is None:
            at = _next_opener(text, self._openers, 0)
            if at < 0:
                return False
            parser = self._parser = PartialJSON()
            text = text[at:]
        parser.feed(text)
        while parser.error is not None and not parser.complete and self._restarts < _MAX_RESTARTS:
            # A stray bracket before the JSON: start again at the next one.
            self._restarts += 1
            rest = parser.text
            at = _next_opener(rest, self._openers, 1)
            if at < 0:
                self._parser = None
                return False
            parser = self._parser = PartialJSON()
            parser.feed(rest[at:])
        if parser.error is not None and not parser.complete:
            return False
        value = parser.value()
        if value is None or value == self.value:
            return False
        self.value = value
        return True


# -- a light JSON Schema check ----------------------------------------------------------------


def schema_problems(
    value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = "$"
) -> list[str]:
    """What is wrong with ``value`` under ``schema``, by a light check (no dependency).

    It checks ``type``, ``enum``, ``const``, ``properties``, ``required``,
    ``additionalProperties: false``, ``items``, ``anyOf`` / ``oneOf`` (one must match),
    ``allOf`` and local ``$ref``s (``#/$defs/...``); it ignores formats, patterns, lengths
    and bounds.

    >>> schema_problems({"a": "x"}, {"type": "object", "required": ["a", "b"]})
    ["$: missing required property 'b'"]
    """
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    problems: list[str] = []
    expected = schema.get("type")
    if expected is not None:
        kinds = expected if isinstance(expected, list) else [expected]
        if not any(_is_kind(value, kind) for kind in kinds):
            return [f"{path}: expected {' or '.join(map(str, kinds))}, got {json_kind(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: expected {schema['const']!r}, got {value!r}")
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if (
            isinstance(options, list)
            and options
            and not any(not schema_problems(value, option, root, path) for option in options)
        ):
            problems.append(f"{path}: matches none of the {key} options")
    for option in schema.get("allOf") or ():
        problems.extend(schema_problems(value, option, root, path))
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                problems.append(f"{path}: missing required property {name!r}")
        for name, item in value.items():
            if name in properties:
                problems.extend(schema_problems(item, properties[name], root, f"{path}.{name}"))
            elif schema.get("additionalProperties") is False:
                problems.append(f"{path}: unexpected property {name!r}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems.extend(schema_problems(item, schema["items"], root, f"{path}[{index}]"))
    return problems


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return json_kind(value) == kind


def _first_lines(text: str, lines: int = 4) -> str:
    return " ".join(line.strip() for line in text.splitlines()[:lines])
