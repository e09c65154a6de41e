"""JSON Schema from Python type hints, and converters from JSON back to those types.

What :func:`spout.tools.tool` describes a function's parameters with, and what a
``response_format`` given as a type becomes (:mod:`spout._structured`). How type hints become JSON Schema:

=============================================  ===============================================
``str`` ``int`` ``float`` ``bool`` ``None``    ``{"type": "string"}`` … ``{"type": "null"}``
no annotation, ``Any``, ``object``             ``{}`` (no constraint)
``list[X]``, ``Sequence[X]``, ``Iterable[X]``  ``{"type": "array", "items": X}``
``set[X]``, ``frozenset[X]``                   the same with ``"uniqueItems": true``
``tuple[X, Y]`` / ``tuple[X, ...]``            ``"prefixItems"`` with a fixed length / ``"items"``
``dict[str, X]``, ``Mapping[str, X]``          ``{"type": "object", "additionalProperties": X}``
``Literal[...]``, an ``Enum`` subclass         ``{"type": ..., "enum": [...]}``; values of
                                               several JSON types become an ``anyOf``, one
                                               branch per type
``X | Y``, ``Union[X, Y]``, ``Optional[X]``    ``{"anyOf": [X, Y]}``; ``None`` is the branch
                                               ``{"type": "null"}``, always spelled this way
``Annotated[X, "text"]``                       X with ``"description": "text"``
a dataclass, a ``TypedDict``                   a nested object schema, inlined
a pydantic ``BaseModel``                       its ``model_json_schema()``, ``$defs`` inlined;
                                               only recursive definitions stay in ``$defs`` at
                                               the top of the parameters schema
=============================================  ===============================================

A parameter is required exactly when it has no default, whatever its type (an ``Optional``
parameter without a default is required: the model must say ``null``). ``"required"`` is left
out when no parameter is required. A default that is JSON is recorded as ``"default"``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import inspect
import json
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from ._docstring import parse_docstring

__all__ = [
    "ArgumentsConverter",
    "Converter",
    "SchemaBuilder",
    "is_pydantic_model",
    "json_kind",
    "unwrap_partial",
]

#: Turns one JSON value into what a type hint asks for (a dataclass, an enum member, ...).
Converter = Callable[[Any], Any]
#: Turns a model's JSON arguments into a function's keyword arguments.
ArgumentsConverter = Callable[[Mapping[str, Any]], dict[str, Any]]

_UNSET: Any = object()


def unwrap_partial(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _hints_of(fn: Callable[..., Any], tool_name: str) -> dict[str, Any]:
    inner = unwrap_partial(fn)
    if inspect.isroutine(inner):
        source: Any = inner
    elif isinstance(inner, type):
        source = typing.cast(Any, inner).__init__  # what calling the class runs
    else:  # a callable object
        source = type(inner).__call__
    try:
        return typing.get_type_hints(source, include_extras=True)
    except NameError as error:
        raise TypeError(f"tool {tool_name!r}: cannot resolve its type hints ({error})") from error
    except TypeError:
        return {}  # a builtin or extension function: it has no annotations to read


class SchemaBuilder:
    """Builds one tool's parameters schema and the converter for its arguments."""

    def __init__(self, tool_name: str) -> None:
        self.tool_name = tool_name
        self.where = f"tool {tool_name!r}"
        self.defs: dict[str, Any] = {}
        self._hoisted: dict[str, Any] = {}
        self._building: list[type] = []

    def parameters(
        self, fn: Callable[..., Any], documented: Mapping[str, str]
    ) -> tuple[dict[str, Any], ArgumentsConverter | None]:
        signature = inspect.signature(fn)
        hints = _hints_of(fn, self.tool_name)
        fields: list[_Field] = []
        for index, parameter in enumerate(signature.parameters.values()):
            self.where = f"tool {self.tool_name!r}, parameter {parameter.name!r}"
            if (
                parameter.kind is parameter.VAR_POSITIONAL
                or parameter.kind is parameter.VAR_KEYWORD
            ):
                stars = "*" if parameter.kind is parameter.VAR_POSITIONAL else "**"
                raise ValueError(
                    f"tool {self.tool_name!r}: parameter {stars}{parameter.name} cannot be"
                    " described to a model, which passes named arguments only"
                )
            if parameter.kind is parameter.POSITIONAL_ONLY:
                raise ValueError(
                    f"tool {self.tool_name!r}: parameter {parameter.name!r} is positional-only,"
                    " and a model passes arguments by name"
                )
            if (
                index == 0
                and parameter.name in ("self", "cls")
                and parameter.annotation is parameter.empty
            ):
                raise ValueError(
                    f"tool {self.tool_name!r}: its first parameter is {parameter.name!r}; make the"
                    " tool from the bound method (Tool.from_function(obj.method)) instead"
                )
            if parameter.name in hints:
                annotation = hints[parameter.name]
            elif parameter.annotation is not parameter.empty:
                annotation = parameter.annotation
            else:
                annotation = Any
            fields.append(
                _Field(
                    parameter.name,
                    annotation,
                    required=parameter.default is parameter.empty,
                    default=_UNSET if parameter.default is parameter.empty else parameter.default,
                    doc=documented.get(parameter.name),
                )
            )
        schema, converters = self._object(fields)
        schema.setdefault("properties", {})
        if self.defs:
            # Refs point at "#/$defs/...", which the parameters schema is the root of.
            schema["$defs"] = self.defs
        if not converters:
            return schema, None

        def convert(arguments: Mapping[str, Any]) -> dict[str, Any]:
            return {
                key: converters[key](value) if key in converters else value
                for key, value in arguments.items()
            }

        return schema, convert

    def describe(self, tp: Any) -> tuple[dict[str, Any], Converter | None]:
        """The JSON Schema for a type hint, and how to convert JSON into it (None: as it is)."""
        if tp is Any or tp is object:
            return {}, None
        if tp is None or tp is type(None):
            return {"type": "null"}, None
        origin, args = get_origin(tp), get_args(tp)
        if origin is Annotated:
            schema, convert = self.describe(args[0])
            text = _annotated_text(tp)
            return ({**schema, "description": text} if text else schema), convert
        if origin is not None and origin in _QUALIFIERS:
            return self.describe(args[0])
        if origin is Union or origin is types.UnionType:
            return self._union(args)
        if origin is Literal:
            return self._literal(args)
        if isinstance(tp, typing.NewType):
            return self.describe(tp.__supertype__)
        if origin is not None:
            return self._container(tp, origin, args)
        if isinstance(tp, type):
            if issubclass(tp, enum.Enum):
                return self._enum(tp)
            if tp in _PRIMITIVES:
                return {"type": _PRIMITIVES[tp]}, None
            if tp in _BARE:
                return self.describe(_BARE[tp])
            if dataclasses.is_dataclass(tp):
                return self._dataclass(tp)
            if typing.is_typeddict(tp):
                return self._typeddict(tp)
            if is_pydantic_model(tp):
                return self._pydantic(tp)
        raise TypeError(
            f"{self.where}: cannot describe the type {tp!r} as JSON Schema (supported: str, int,"
            " float, bool, None, lists, tuples, sets, dicts, Literal, Enum, unions, dataclasses,"
            " TypedDicts and pydantic models)"
        )

    def _object(self, fields: list[_Field]) -> tuple[dict[str, Any], dict[str, Converter]]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        converters: dict[str, Converter] = {}
        for item in fields:
            schema, convert = self.describe(item.type)
            if item.doc and not _annotated_text(item.type):
                schema = {**schema, "description": item.doc}
            default = _json_value(item.default)
            if default is not _UNSET:
                schema = {**schema, "default": default}
            properties[item.name] = schema
            if item.required:
                required.append(item.name)
            if convert is not None:
                converters[item.name] = convert
        schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema, converters

    def _union(self, args: tuple[Any, ...]) -> tuple[dict[str, Any], Converter | None]:
        described = [self.describe(arg) for arg in args]
        schema = {"anyOf": [member for member, _ in described]}
        converters = [convert for _, convert in described if convert is not None]
        if not converters:
            return schema, None
        accepts_none = type(None) in args
        # A member without a converter takes its JSON value as it is (str, int, a plain dict).
        plain_member = any(
            convert is None and arg is not type(None)
            for arg, (_, convert) in zip(args, described, strict=True)
        )

        def convert(value: Any) -> Any:
            if value is None and accepts_none:
                return None
            error: Exception | None = None
            for member in converters:
                try:
                    return member(value)
                except (TypeError, ValueError) as failure:  # pydantic's ValidationError too
                    error = failure
            if plain_member or error is None:
                return value
            raise error

        return schema, convert

    def _literal(self, args: tuple[Any, ...]) -> tuple[dict[str, Any], Converter | None]:
        values = [arg.value if isinstance(arg, enum.Enum) else arg for arg in args]
        schema = self._enum_schema(values, f"Literal{list(args)!r}")
        members = {arg.value: arg for arg in args if isinstance(arg, enum.Enum)}
        if not members:
            return schema, None
        return schema, lambda value: members.get(value, value)

    def _enum(self, cls: type[enum.Enum]) -> tuple[dict[str, Any], Converter | None]:
        schema = self._enum_schema([member.value for member in cls], cls.__name__)
        return schema, lambda value: value if isinstance(value, cls) else cls(value)

    def _enum_schema(self, values: list[Any], what: str) -> dict[str, Any]:
        by_type: dict[str, list[Any]] = {}
        for value in values:
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise TypeError(f"{self.where}: {what} has the value {value!r}, which is not JSON")
            by_type.setdefault(json_kind(value), []).append(value)
        branches = [
            {"type": "null"} if json_type == "null" else {"type": json_type, "enum": listed}
            for json_type, listed in by_type.items()
        ]
        return branches[0] if len(branches) == 1 else {"anyOf": branches}

    def _container(
        self, tp: Any, origin: Any, args: tuple[Any, ...]
    ) -> tuple[dict[str, Any], Converter | None]:
        if origin is tuple:
            return self._tuple(args)
        if origin in _ARRAYS or origin in _SETS:
            items, convert_item = self.describe(args[0] if args else Any)
            schema: dict[str, Any] = {"type": "array"}
            if items:
                schema["items"] = items
            if origin in _SETS:
                schema["uniqueItems"] = True
                make = frozenset if origin is frozenset else set
                return schema, _array_converter(convert_item, make)
            if convert_item is None:
                return schema, None
            return schema, _array_converter(convert_item, list)
        if origin in _MAPPINGS:
            key = args[0] if args else str
            if key not in (str, Any):
                raise TypeError(f"{self.where}: {tp!r} has keys other than str; JSON keys are text")
            values, convert_value = self.describe(args[1] if args else Any)
            schema = {"type": "object"}
            if values:
                schema["additionalProperties"] = values
            if convert_value is None:
                return schema, None
            return schema, _mapping_converter(convert_value)
        raise TypeError(f"{self.where}: cannot describe the type {tp!r} as JSON Schema")

    def _tuple(self, args: tuple[Any, ...]) -> tuple[dict[str, Any], Converter | None]:
        if len(args) == 2 and args[1] is Ellipsis:
            items, convert_item = self.describe(args[0])
            schema: dict[str, Any] = {"type": "array"}
            if items:
                schema["items"] = items
            return schema, _array_converter(convert_item, tuple)
        if args == ((),):  # typing.Tuple[()] on Python 3.10
            args = ()
        described = [self.describe(arg) for arg in args]
        schema = {"type": "array", "minItems": len(args), "maxItems": len(args)}
        if described:
            schema["prefixItems"] = [member for member, _ in described]
        converters = [convert for _, convert in described]

        def convert(value: Any) -> Any:
            if not isinstance(value, (list, tuple)) or len(value) != len(converters):
                raise TypeError(f"expected an array of {len(converters)} items, got {value!r:.80}")
            return tuple(
                item if each is None else each(item)
                for item, each in zip(value, converters, strict=True)
            )

        return schema, convert

    def _dataclass(self, cls: type) -> tuple[dict[str, Any], Converter | None]:
        hints = self._enter(cls)
        try:
            summary, documented = parse_docstring(_own_doc(cls))
            fields = [
                _Field(
                    item.name,
                    hints.get(item.name, Any),
                    required=item.default is dataclasses.MISSING
                    and item.default_factory is dataclasses.MISSING,
                    default=_UNSET if item.default is dataclasses.MISSING else item.default,
                    doc=documented.get(item.name),
                )
                for item in dataclasses.fields(cls)
                if item.init
            ]
            schema, converters = self._object(fields)
        finally:
            self._building.pop()
        if summary:
            schema["description"] = summary

        def convert(value: Any) -> Any:
            if isinstance(value, cls):
                return value
            if not isinstance(value, Mapping):
                raise TypeError(
                    f"expected an object for {cls.__name__}, got {type(value).__name__}"
                )
            return cls(
                **{
                    key: converters[key](item) if key in converters else item
                    for key, item in value.items()
                }
            )

        return schema, convert

    def _typeddict(self, cls: type) -> tuple[dict[str, Any], Converter | None]:
        hints = self._enter(cls)
        try:
            summary, documented = parse_docstring(_own_doc(cls))
            required_keys: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
            fields = [
                _Field(name, hint, required=name in required_keys, doc=documented.get(name))
                for name, hint in hints.items()
            ]
            schema, converters = self._object(fields)
        finally:
            self._building.pop()
        if summary:
            schema["description"] = summary
        if not converters:
            return schema, None
        return schema, _mapping_converter(lambda item: item, converters)

    def _enter(self, cls: type) -> dict[str, Any]:
        if cls in self._building:
            raise TypeError(
                f"{self.where}: {cls.__name__} contains itself; a recursive dataclass or TypedDict"
                " cannot be inlined (a recursive pydantic model can)"
            )
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except NameError as error:
            raise TypeError(
                f"{self.where}: cannot resolve the type hints of {cls.__name__} ({error})"
            ) from error
        self._building.append(cls)
        return hints

    def _pydantic(self, model: Any) -> tuple[dict[str, Any], Converter | None]:
        schema = model.model_json_schema()
        defs = schema.pop("$defs", {})
        resolved = self._resolve(schema, defs, ())

        def convert(value: Any) -> Any:
            return value if isinstance(value, model) else model.model_validate(value)

        return resolved, convert

    def _resolve(self, node: Any, defs: Mapping[str, Any], stack: tuple[str, ...]) -> Any:
        """Inline pydantic's ``$ref``s; a definition that contains itself is kept in ``$defs``."""
        if isinstance(node, list):
            return [self._resolve(item, defs, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if not (isinstance(ref, str) and ref.startswith("#/$defs/")):
            return {key: self._resolve(value, defs, stack) for key, value in node.items()}
        name = ref[len("#/$defs/") :]
        siblings = {
            key: self._resolve(value, defs, stack) for key, value in node.items() if key != "$ref"
        }
        if name in stack:
            self._hoist(name, defs)
            return {"$ref": ref, **siblings}
        return {**self._resolve(defs[name], defs, (*stack, name)), **siblings}

    def _hoist(self, name: str, defs: Mapping[str, Any]) -> None:
        raw = defs[name]
        if name in self._hoisted:
            if self._hoisted[name] != raw:
                raise TypeError(
                    f"{self.where}: two different pydantic models are both named {name!r}"
                )
            return
        self._hoisted[name] = raw
        self.defs[name] = self._resolve(raw, defs, (name,))


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    type: Any
    required: bool
    default: Any = _UNSET
    doc: str | None = None


_PRIMITIVES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_BARE: dict[type, Any] = {
    list: list[Any],
    tuple: tuple[Any, ...],
    set: set[Any],
    frozenset: frozenset[Any],
    dict: dict[str, Any],
}
_ARRAYS = {
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Collection,
    collections.abc.Iterable,
}
_SETS = {set, frozenset, collections.abc.Set, collections.abc.MutableSet}
_MAPPINGS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}
# TypedDict key qualifiers, kept by get_type_hints(include_extras=True); not all Pythons have all.
_QUALIFIERS = {
    qualifier
    for qualifier in (
        getattr(typing, name, None) for name in ("Required", "NotRequired", "ReadOnly")
    )
    if qualifier is not None
}


def _annotated_text(tp: Any) -> str | None:
    if get_origin(tp) is Annotated:
        return next((meta for meta in tp.__metadata__ if isinstance(meta, str)), None)
    return None


def json_kind(value: Any) -> str:
    """The JSON Schema type of a Python value (``"integer"``, ``"array"``...), else its class's
    name."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "boolean"
    if isinstance(value, (int, float)):
        return "integer" if isinstance(value, int) else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _array_converter(convert_item: Converter | None, make: Callable[[Any], Any]) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        return make(value if convert_item is None else (convert_item(item) for item in value))

    return convert


def _mapping_converter(
    convert_value: Converter, by_key: Mapping[str, Converter] | None = None
) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return {
            key: (by_key.get(key, convert_value) if by_key is not None else convert_value)(item)
            for key, item in value.items()
        }

    return convert


def is_pydantic_model(tp: type) -> bool:
    # pydantic stays optional: a class can only be a pydantic model if pydantic is imported.
    if "pydantic" not in sys.modules:
        return False
    from pydantic import BaseModel

    return issubclass(tp, BaseModel)


def _own_doc(cls: type) -> str | None:
    doc = cls.__dict__.get("__doc__")
    # @dataclass gives an undocumented class its signature as a docstring; that is no description.
    if not isinstance(doc, str) or (
        dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(")
    ):
        return None
    return doc


def _json_value(value: Any) -> Any:
    """The value as JSON data, or _UNSET when it has no JSON form."""
    if value is _UNSET:
        return _UNSET
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=_to_json))
    except (TypeError, ValueError):
        return _UNSET


def _to_json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if "pydantic" in sys.modules:
        from pydantic import BaseModel

        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON")
