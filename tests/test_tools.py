"""Tools: the JSON Schema built from a function, the docstring it reads, and running the call."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import json
import math
import subprocess
import sys
import threading
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, NewType, Optional, TypedDict, Union

import pydantic
import pytest

from spout.tools import Tool, as_tool, tool

JSON_TYPES = {"string", "number", "integer", "boolean", "null", "array", "object"}


def assert_valid_schema(schema: dict[str, Any]) -> None:
    """What can be checked without jsonschema (not a dependency): JSON, known types, live refs."""
    assert json.loads(json.dumps(schema, allow_nan=False)) == schema

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "type" in node and not isinstance(node["type"], dict):
                assert node["type"] in JSON_TYPES, node
            if "$ref" in node:
                prefix, _, name = node["$ref"].rpartition("/")
                assert prefix == "#/$defs" and name in schema.get("$defs", {}), node
            if isinstance(node.get("properties"), dict):
                assert set(node.get("required", [])) <= set(node["properties"]), node
                for value in node["properties"].values():
                    walk(value)
            for key, value in node.items():
                if key not in ("properties", "default", "enum"):
                    walk(value)

    walk(schema)


def parameters_of(fn: Any, **options: Any) -> dict[str, Any]:
    parameters = Tool.from_function(fn, **options).parameters
    assert_valid_schema(parameters)
    return parameters


def schema_of(annotation: Any) -> dict[str, Any]:
    """The property schema of one required parameter annotated with ``annotation``."""

    def fn(x):  # type: ignore[no-untyped-def]
        return x

    fn.__annotations__ = {"x": annotation}
    parameters = parameters_of(fn)
    assert parameters["required"] == ["x"]
    return typing.cast(dict[str, Any], parameters["properties"]["x"])


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


UserId = NewType("UserId", int)


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (Any, {}),
        (object, {}),
        (UserId, {"type": "integer"}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (typing.List[str], {"type": "array", "items": {"type": "string"}}),  # noqa: UP006
        (Sequence[float], {"type": "array", "items": {"type": "number"}}),
        (Iterable[bool], {"type": "array", "items": {"type": "boolean"}}),
        (list, {"type": "array"}),
        (set[str], {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        (frozenset[int], {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 2,
                "maxItems": 2,
            },
        ),
        (tuple[float, ...], {"type": "array", "items": {"type": "number"}}),
        (tuple, {"type": "array"}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (
            Mapping[str, list[str]],
            {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        ),
        (dict[str, Any], {"type": "object"}),
        (dict, {"type": "object"}),
        (Literal["celsius", "fahrenheit"], {"type": "string", "enum": ["celsius", "fahrenheit"]}),
        (Literal[1, 2, 3], {"type": "integer", "enum": [1, 2, 3]}),
        (Literal[True], {"type": "boolean", "enum": [True]}),
        (
            Literal["auto", 0, None],
            {
                "anyOf": [
                    {"type": "string", "enum": ["auto"]},
                    {"type": "integer", "enum": [0]},
                    {"type": "null"},
                ],
            },
        ),
        (Color, {"type": "string", "enum": ["red", "green"]}),
        (Level, {"type": "integer", "enum": [1, 2]}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),  # noqa: UP045
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),  # noqa: UP007
        (
            list[str] | None,
            {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        ),
        (Annotated[str, "The city's name"], {"type": "string", "description": "The city's name"}),
        (
            list[Annotated[int, "An id"]],
            {
                "type": "array",
                "items": {"type": "integer", "description": "An id"},
            },
        ),
    ],
    ids=repr,
)
def test_type_hints_become_json_schema(annotation: Any, expected: dict[str, Any]) -> None:
    assert schema_of(annotation) == expected


def test_the_issue_example() -> None:
    @tool
    def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
        """Current weather for a city."""
        return f"12 degrees {unit} in {city}"

    assert isinstance(get_weather, Tool)
    assert get_weather.name == "get_weather"
    assert get_weather.description == "Current weather for a city."
    assert get_weather.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        },
        "required": ["city"],
    }
    assert get_weather("Oslo") == "12 degrees celsius in Oslo"
    assert (
        get_weather.run({"city": "Oslo", "unit": "fahrenheit"}) == "12 degrees fahrenheit in Oslo"
    )


def test_a_parameter_with_a_default_is_optional_and_records_a_json_default() -> None:
    marker = object()

    def fn(  # type: ignore[no-untyped-def]  # `a` is unannotated on purpose
        a,
        b: int = 3,
        c: int | None = None,
        d: tuple[int, int] = (1, 2),
        e: Color = Color.GREEN,
        f: Any = marker,
        g: float = math.nan,
        h: str | None = None,
    ):
        """Anything."""

    parameters = parameters_of(fn)
    properties = parameters["properties"]
    assert parameters["required"] == ["a"]
    assert properties["a"] == {}  # no annotation, no constraint
    assert properties["b"] == {"type": "integer", "default": 3}
    assert properties["c"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
    assert properties["d"]["default"] == [1, 2]
    assert properties["e"]["default"] == "green"
    assert "default" not in properties["f"]  # not JSON: left out rather than made up
    assert "default" not in properties["g"]  # NaN is not JSON either


def test_an_optional_parameter_without_a_default_is_required() -> None:
    def fn(note: str | None) -> None: ...

    assert parameters_of(fn)["required"] == ["note"]


def test_no_parameters_gives_an_empty_object_without_required() -> None:
    def now() -> str:
        return "noon"

    assert parameters_of(now) == {"type": "object", "properties": {}}
    assert Tool.from_function(now).run() == "noon"


def test_unsupported_types_are_refused_naming_the_parameter() -> None:
    def raw(data: bytes) -> None: ...

    def keyed(counts: dict[int, str]) -> None: ...

    with pytest.raises(TypeError, match=r"tool 'raw', parameter 'data'.*bytes"):
        Tool.from_function(raw)
    with pytest.raises(TypeError, match=r"parameter 'counts'.*keys"):
        Tool.from_function(keyed)


def test_enum_and_tuple_arguments_are_converted_before_the_call() -> None:
    seen: list[Any] = []

    def paint(color: Color, levels: set[Level], at: tuple[int, int], tag: Color | str) -> None:
        seen.extend([color, levels, at, tag])

    Tool.from_function(paint).run({"color": "red", "levels": [1, 2], "at": [3, 4], "tag": "blue"})
    assert seen == [Color.RED, {Level.LOW, Level.HIGH}, (3, 4), "blue"]
    with pytest.raises(ValueError, match="purple"):
        Tool.from_function(paint).run({"color": "purple", "levels": [], "at": [0, 0], "tag": "x"})


# Dataclasses and TypedDicts: nested object schemas.


@dataclasses.dataclass
class Point:
    """A point on the map.

    Attributes:
        lat: Latitude in degrees.
    """

    lat: float
    lon: Annotated[float, "Longitude in degrees"]
    label: str = ""
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Route:
    start: Point
    stops: list[Point]
    mode: Color | None = None


POINT_SCHEMA = {
    "type": "object",
    "description": "A point on the map.",
    "properties": {
        "lat": {"type": "number", "description": "Latitude in degrees."},
        "lon": {"type": "number", "description": "Longitude in degrees"},
        "label": {"type": "string", "default": ""},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["lat", "lon"],
}


def test_a_dataclass_parameter_is_a_nested_object() -> None:
    def plan(route: Route) -> None: ...

    assert parameters_of(plan)["properties"]["route"] == {
        "type": "object",  # no description: @dataclass's made-up docstring is not one
        "properties": {
            "start": POINT_SCHEMA,
            "stops": {"type": "array", "items": POINT_SCHEMA},
            "mode": {
                "anyOf": [{"type": "string", "enum": ["red", "green"]}, {"type": "null"}],
                "default": None,
            },
        },
        "required": ["start", "stops"],
    }


def test_run_turns_dicts_into_dataclass_instances() -> None:
    def plan(route: Route, home: Point | None = None) -> tuple[Route, Point | None]:
        return route, home

    arguments = {
        "route": {"start": {"lat": 1, "lon": 2}, "stops": [{"lat": 3, "lon": 4}], "mode": "red"},
        "home": None,
    }
    route, home = Tool.from_function(plan).run(arguments)
    assert route == Route(Point(1, 2), [Point(3, 4)], Color.RED)
    assert home is None
    # An instance passed in (a caller, not a model) is kept as it is.
    assert Tool.from_function(plan).run({"route": route})[0] is route
    with pytest.raises(TypeError, match="altitude"):
        Tool.from_function(plan).run({"route": {"start": {"lat": 1, "lon": 2, "altitude": 3}}})


def test_a_recursive_dataclass_is_refused() -> None:
    def walk(tree: Tree) -> None: ...

    with pytest.raises(TypeError, match="Tree contains itself"):
        Tool.from_function(walk)


@dataclasses.dataclass
class Tree:
    children: list[Tree]


class Address(TypedDict):
    street: str
    number: int


class Filters(TypedDict, total=False):
    """Search filters."""

    color: Color
    near: Address


def test_a_typeddict_parameter_is_a_nested_object() -> None:
    def search(filters: Filters) -> Any:
        return filters

    address = {
        "type": "object",
        "properties": {"street": {"type": "string"}, "number": {"type": "integer"}},
        "required": ["street", "number"],
    }
    assert parameters_of(search)["properties"]["filters"] == {
        "type": "object",
        "description": "Search filters.",
        "properties": {"color": {"type": "string", "enum": ["red", "green"]}, "near": address},
    }
    assert Tool.from_function(search).run({"filters": {"color": "green"}}) == {"color": Color.GREEN}


# pydantic models: their own schema, $defs inlined where they can be.


class Item(pydantic.BaseModel):
    """A line of an order."""

    sku: str
    quantity: int = 1


class Order(pydantic.BaseModel):
    items: list[Item]
    note: str | None = None


class Category(pydantic.BaseModel):
    name: str
    children: list[Category] = []


def test_a_pydantic_parameter_has_its_model_schema_with_definitions_inlined() -> None:
    def place(order: Order) -> None:
        """Places an order.

        Args:
            order: What to order.
        """

    item = {
        "description": "A line of an order.",
        "properties": {
            "sku": {"title": "Sku", "type": "string"},
            "quantity": {"default": 1, "title": "Quantity", "type": "integer"},
        },
        "required": ["sku"],
        "title": "Item",
        "type": "object",
    }
    assert parameters_of(place) == {
        "type": "object",
        "properties": {
            "order": {
                "description": "What to order.",
                "properties": {
                    "items": {"items": item, "title": "Items", "type": "array"},
                    "note": {
                        "anyOf": [{"type": "string"}, {"type": "null"}],
                        "default": None,
                        "title": "Note",
                    },
                },
                "required": ["items"],
                "title": "Order",
                "type": "object",
            }
        },
        "required": ["order"],
    }


def test_a_recursive_pydantic_model_keeps_its_definition_at_the_top() -> None:
    def file(category: Category) -> None: ...

    parameters = parameters_of(file)  # checks that every $ref resolves
    children = {
        "default": [],
        "items": {"$ref": "#/$defs/Category"},
        "title": "Children",
        "type": "array",
    }
    category = {
        "properties": {"name": {"title": "Name", "type": "string"}, "children": children},
        "required": ["name"],
        "title": "Category",
        "type": "object",
    }
    assert parameters["properties"]["category"] == category
    assert parameters["$defs"] == {"Category": category}


def test_run_turns_dicts_into_pydantic_models() -> None:
    def place(order: Order) -> Order:
        return order

    placed = Tool.from_function(place).run({"order": {"items": [{"sku": "A1", "quantity": 2}]}})
    assert placed == Order(items=[Item(sku="A1", quantity=2)])
    with pytest.raises(pydantic.ValidationError):
        Tool.from_function(place).run({"order": {"items": [{"quantity": 2}]}})


def test_pydantic_is_not_imported_to_build_or_run_tools() -> None:
    # Every check that could meet a pydantic model runs: a class no other rule takes, a default
    # that is not JSON.
    code = (
        "import sys\n"
        "from spout.tools import tool\n"
        "@tool\n"
        "def add(a: int, b: list[int], c: object = object()) -> int:\n"
        "    return a + sum(b)\n"
        "assert add.run({'a': 1, 'b': [2]}) == 3\n"
        "def raw(data: bytes) -> None: ...\n"
        "try:\n"
        "    tool(raw)\n"
        "except TypeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('bytes became a schema')\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# Docstrings: the summary is the description, parameter entries describe the parameters.


def test_google_docstring() -> None:
    def forecast(city: str, days: int = 3, *, hourly: bool = False) -> str:
        """Forecast for a city.

        Looks a few days ahead.

        Args:
            city (str): The city's name,
                as the locals spell it.
            days: How many days.
            hourly (bool, optional): Hour by hour.

        Returns:
            The forecast.
        """
        return city

    made = Tool.from_function(forecast)
    assert made.description == "Forecast for a city.\n\nLooks a few days ahead."
    assert made.parameters["properties"] == {
        "city": {"type": "string", "description": "The city's name, as the locals spell it."},
        "days": {"type": "integer", "description": "How many days.", "default": 3},
        "hourly": {"type": "boolean", "description": "Hour by hour.", "default": False},
    }


def test_google_docstring_with_an_arguments_heading_and_an_undocumented_parameter() -> None:
    def move(x: int, y: int) -> None:
        """Moves.

        Arguments:
            x: Across.

        Raises:
            ValueError: y is not a parameter.
        """

    made = Tool.from_function(move)
    assert made.description == "Moves."
    assert made.parameters["properties"] == {
        "x": {"type": "integer", "description": "Across."},
        "y": {"type": "integer"},
    }


def test_numpy_docstring() -> None:
    def scale(x: float, y: float, factor: float = 2.0) -> float:
        """Scales a point.

        Parameters
        ----------
        x, y : float
            The point's coordinates,
            in metres.
        factor : float, optional
            How much.

        Returns
        -------
        float
            Not a parameter.
        """
        return x

    made = Tool.from_function(scale)
    assert made.description == "Scales a point."
    assert made.parameters["properties"] == {
        "x": {"type": "number", "description": "The point's coordinates, in metres."},
        "y": {"type": "number", "description": "The point's coordinates, in metres."},
        "factor": {"type": "number", "description": "How much.", "default": 2.0},
    }


def test_sphinx_docstring() -> None:
    def greet(name: str, loud: bool) -> str:
        """Greets someone.

        :param str name: Who,
            by first name.
        :param loud: Shout.
        :returns: The greeting.
        """
        return name

    made = Tool.from_function(greet)
    assert made.description == "Greets someone."
    assert made.parameters["properties"] == {
        "name": {"type": "string", "description": "Who, by first name."},
        "loud": {"type": "boolean", "description": "Shout."},
    }


def test_an_annotated_description_wins_over_the_docstring() -> None:
    def find(city: Annotated[str, "From the hint"]) -> None:
        """Finds.

        Args:
            city: From the docstring.
        """

    assert parameters_of(find)["properties"]["city"]["description"] == "From the hint"


def test_name_and_description_can_be_given() -> None:
    def f(x: int) -> int:
        """Ignored."""
        return x

    made = Tool.from_function(f, name="identity", description="Returns x")
    assert (made.name, made.description) == ("identity", "Returns x")


# The decorator, and what a tool can be made from.


def test_tool_decorator_with_and_without_arguments() -> None:
    @tool
    def bare(x: int) -> int:
        return x + 1

    @tool()
    def empty_call(x: int) -> int:
        return x + 2

    @tool(name="renamed", description="Adds three")
    def named(x: int) -> int:
        """Original."""
        return x + 3

    assert (bare.name, empty_call.name, named.name) == ("bare", "empty_call", "renamed")
    assert named.description == "Adds three"
    assert (bare(1), empty_call(1), named(x=1)) == (2, 3, 4)  # still the functions


def test_bound_methods_partials_and_callable_objects() -> None:
    class Shop:
        def price(self, sku: str) -> int:
            """The price of a product."""
            return len(sku)

    class Counter:
        """Counts letters."""

        def __call__(self, text: str) -> int:
            return len(text)

    def convert(amount: float, currency: str) -> str:
        """Converts money."""
        return f"{amount} {currency}"

    method = Tool.from_function(Shop().price)
    assert (method.name, method.description) == ("price", "The price of a product.")
    assert method.parameters["properties"] == {"sku": {"type": "string"}}  # no self
    assert method.run({"sku": "abc"}) == 3

    partial = Tool.from_function(functools.partial(convert, currency="NOK"))
    assert (partial.name, partial.description) == ("convert", "Converts money.")
    assert partial.run({"amount": 2}) == "2 NOK"

    counter = Tool.from_function(Counter())
    assert (counter.name, counter.description) == ("Counter", "Counts letters.")
    assert counter.parameters["properties"] == {"text": {"type": "string"}}


def test_parameters_a_model_cannot_pass_are_refused() -> None:
    def star(*items: int) -> None: ...

    def double_star(**options: int) -> None: ...

    def positional(x: int, /) -> None: ...

    class Shop:
        def price(self, sku: str) -> None: ...

    with pytest.raises(ValueError, match=r"tool 'star': parameter \*items"):
        Tool.from_function(star)
    with pytest.raises(ValueError, match=r"parameter \*\*options"):
        Tool.from_function(double_star)
    with pytest.raises(ValueError, match="positional-only"):
        Tool.from_function(positional)
    with pytest.raises(ValueError, match="bound method"):
        Tool.from_function(Shop.price)


@pytest.mark.parametrize("name", ["", "get weather", "a" * 65, "wéather", "name\n", 42])
def test_a_name_providers_reject_is_refused(name: Any) -> None:
    with pytest.raises(ValueError, match="tool name"):
        Tool(name=name)


def test_lambdas_need_a_name() -> None:
    with pytest.raises(ValueError, match="'<lambda>'"):
        Tool.from_function(lambda: None)
    assert Tool.from_function(lambda: 1, name="one").run() == 1


def test_accepted_names_and_the_default_schema() -> None:
    made = Tool(name="A-z_0" + "x" * 59)
    assert made.parameters == {"type": "object", "properties": {}}
    assert made.description == ""
    assert made.function is None


@pytest.mark.parametrize(
    "parameters", [{"type": "string"}, {"properties": {}}, [{"type": "object"}], None]
)
def test_parameters_must_describe_an_object(parameters: Any) -> None:
    with pytest.raises(ValueError, match="tool 'calculator': parameters must be"):
        Tool(name="calculator", parameters=parameters)


def test_a_function_must_be_callable() -> None:
    with pytest.raises(ValueError, match="callable"):
        Tool(name="calculator", function="eval")  # type: ignore[arg-type]


# Running.


def calculate(expression: str) -> float:
    left, _, right = expression.partition("+")
    return float(left) + float(right)


CALCULATOR = Tool(
    name="calculator",
    description="Evaluates an arithmetic expression",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
    function=calculate,
)


def test_a_hand_written_tool_runs_its_function() -> None:
    assert CALCULATOR.run({"expression": "2 + 2"}) == 4
    assert CALCULATOR("1+1") == 2
    assert not CALCULATOR.is_async


def test_a_tool_without_a_function_cannot_run() -> None:
    described = Tool(name="lookup")
    with pytest.raises(TypeError, match="'lookup' has no function"):
        described.run({})
    with pytest.raises(TypeError, match="no function"):
        described()


async def test_a_tool_without_a_function_cannot_arun() -> None:
    with pytest.raises(TypeError, match="no function"):
        await Tool(name="lookup").arun({})


def test_wrong_arguments_fail_as_the_call_would() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'expr'"):
        CALCULATOR.run({"expr": "1+1"})
    with pytest.raises(TypeError, match="must be a mapping"):
        CALCULATOR.run(["1+1"])  # type: ignore[arg-type]


async def test_an_async_tool_is_awaited() -> None:
    @tool
    async def fetch(url: str) -> str:
        """Fetches a page."""
        await asyncio.sleep(0)
        return url.upper()

    assert fetch.is_async
    assert fetch.description == "Fetches a page."
    assert await fetch.arun({"url": "a"}) == "A"
    assert await fetch("b") == "B"
    with pytest.raises(TypeError, match="'fetch' is async"):
        fetch.run({"url": "a"})


async def test_a_callable_object_with_async_call_is_async() -> None:
    class Fetcher:
        async def __call__(self, url: str) -> str:
            return url

    made = Tool.from_function(Fetcher())
    assert made.is_async
    assert await made.arun({"url": "x"}) == "x"


async def test_arun_runs_a_sync_tool_in_a_worker_thread() -> None:
    @tool
    def where() -> int:
        return threading.get_ident()

    assert not where.is_async
    assert await where.arun() != threading.get_ident()


async def test_slow_sync_tools_run_at_the_same_time() -> None:
    # Each call waits for the other: run one after the other, the barrier times out.
    barrier = threading.Barrier(2, timeout=5)

    @tool
    def meet(who: str) -> str:
        barrier.wait()
        return who

    assert list(await asyncio.gather(meet.arun({"who": "a"}), meet.arun({"who": "b"}))) == [
        "a",
        "b",
    ]


async def test_arun_converts_arguments_too() -> None:
    @tool
    async def locate(point: Point) -> Point:
        return point

    assert await locate.arun({"point": {"lat": 1, "lon": 2}}) == Point(1, 2)


# as_tool: everything that can name a tool.


def test_as_tool_returns_a_tool_as_it_is() -> None:
    assert as_tool(CALCULATOR) is CALCULATOR


def test_as_tool_makes_a_function_a_tool() -> None:
    made = as_tool(calculate)
    assert made.name == "calculate"
    assert made.function is calculate
    assert made.parameters == CALCULATOR.parameters
    assert made.run({"expression": "1+2"}) == 3


@pytest.mark.parametrize(
    "definition",
    [
        {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": "Evaluates an arithmetic expression",
                "parameters": CALCULATOR.parameters,
            },
        },
        {
            "name": "calculator",
            "description": "Evaluates an arithmetic expression",
            "parameters": CALCULATOR.parameters,
        },
        {
            "name": "calculator",
            "description": "Evaluates an arithmetic expression",
            "input_schema": CALCULATOR.parameters,
        },
    ],
    ids=["openai", "bare", "anthropic"],
)
def test_as_tool_reads_tool_definitions(definition: dict[str, Any]) -> None:
    made = as_tool(definition)
    assert made == dataclasses.replace(CALCULATOR, function=None)


def test_as_tool_fills_in_a_definition_without_parameters() -> None:
    assert as_tool({"name": "now"}) == Tool(name="now")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "int"),
        ("calculator", "str"),
        ({"description": "no name"}, "without a 'name'"),
        ({"type": "function", "function": {"description": "no name"}}, "without a 'name'"),
    ],
)
def test_as_tool_refuses_anything_else(value: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        as_tool(value)
