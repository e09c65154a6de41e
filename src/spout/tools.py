"""Tools a model can call: described as JSON Schema, built from Python functions, and run.

A :class:`Tool` is what every provider needs to offer a function to a model — a name, a
description and the JSON Schema of its arguments — plus, optionally, the function to run when
the model calls it. :func:`tool` (or :meth:`Tool.from_function`) builds all of it from a
function's signature, type hints and docstring.

How type hints become JSON Schema is tabled in :mod:`spout._schema`, which builds it;
parameters' descriptions come from the docstring (:mod:`spout._docstring`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, overload

from ._docstring import parse_docstring
from ._schema import ArgumentsConverter, SchemaBuilder, unwrap_partial

__all__ = ["Tool", "as_tool", "tool"]

# The name rule OpenAI, Anthropic and Gemini all accept (Gemini also allows dots and wants a
# letter or underscore first; the shared subset is what travels between providers).
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _empty_object() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool a model can call: its name, description, argument schema and, optionally, function.

    Describe one by hand, with the JSON Schema of its arguments::

        calculator = Tool(
            name="calculator",
            description="Evaluates an arithmetic expression",
            parameters={
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
            function=calculate,
        )
        calculator.run({"expression": "2 + 2"})

    or let :func:`tool` build it from a function. A Tool without a function only describes the
    tool to the model; running the call is then up to you.

    ``cache_control`` marks the end of a cacheable prefix of the request, as Anthropic's
    prompt caching takes it: ``Tool(..., cache_control={"type": "ephemeral"})`` on the last
    tool caches the tools (and the system prompt before them). Anthropic gets it on the tool as
    it is, Bedrock a ``cachePoint`` after the tool; providers that cache by themselves
    (OpenAI, Gemini) leave it out.
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=_empty_object)
    function: Callable[..., Any] | None = None
    cache_control: dict[str, Any] | None = field(default=None, kw_only=True)
    # Turns the model's JSON arguments into what the function's annotations ask for
    # (dataclass and pydantic instances, enum members, tuples); set by from_function.
    _convert: ArgumentsConverter | None = field(
        default=None, repr=False, compare=False, kw_only=True
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"tool name {self.name!r} is not allowed: a tool name is 1 to 64 letters, digits,"
                " '_' or '-'"
            )
        if not isinstance(self.description, str):
            raise ValueError(
                f"tool {self.name!r}: description must be a string, got {self.description!r:.80}"
            )
        if not isinstance(self.parameters, dict) or self.parameters.get("type") != "object":
            raise ValueError(
                f"tool {self.name!r}: parameters must be the JSON Schema of an object"
                f' ({{"type": "object", ...}}), got {self.parameters!r:.80}'
            )
        if self.function is not None and not callable(self.function):
            raise ValueError(
                f"tool {self.name!r}: function must be callable, got {self.function!r:.80}"
            )

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Tool:
        """Build a tool from a function's signature, type hints and docstring.

        The name defaults to the function's name, the description to its docstring's summary,
        and each parameter's description comes from an ``Annotated[X, "text"]`` hint or from the
        docstring's ``Args:`` (Google), ``Parameters`` (NumPy) or ``:param:`` (Sphinx) entries.
        Pass a bound method to describe a method: ``self`` is then already gone.

        >>> def add(a: int, b: int = 1) -> int:
        ...     '''Adds two numbers.'''
        ...     return a + b
        >>> add_tool = Tool.from_function(add)
        >>> add_tool.parameters["required"], add_tool.run({"a": 2})
        (['a'], 3)
        """
        if not callable(fn):
            raise TypeError(f"cannot make a tool from {type(fn).__name__} {fn!r:.80}: not callable")
        tool_name = _name_of(fn) if name is None else name
        summary, documented = parse_docstring(_doc_of(fn))
        parameters, convert = SchemaBuilder(tool_name).parameters(fn, documented)
        return cls(
            name=tool_name,
            description=summary if description is None else description,
            parameters=parameters,
            function=fn,
            _convert=convert,
        )

    @property
    def is_async(self) -> bool:
        """Whether the function is a coroutine function (run it with ``await tool.arun(...)``)."""
        return self.function is not None and _is_async(self.function)

    def run(self, arguments: Mapping[str, Any] | None = None) -> Any:
        """Call the function with the model's arguments, given as keywords, and return its result.

        Arguments typed as dataclasses, pydantic models, enums, tuples or sets are converted
        from their JSON form first.

        >>> Tool.from_function(lambda city: f"Sunny in {city}", name="weather").run({"city": "Oslo"})
        'Sunny in Oslo'
        """
        function = self._function()
        if self.is_async:
            raise TypeError(f"tool {self.name!r} is async: use `await tool.arun(arguments)`")
        return function(**self._arguments(arguments))

    async def arun(self, arguments: Mapping[str, Any] | None = None) -> Any:
        """Like :meth:`run`, awaiting an async function; a sync one runs in a worker thread.

        ``await tool.arun({"city": "Oslo"})``
        """
        function = self._function()
        kwargs = self._arguments(arguments)
        if self.is_async:
            return await function(**kwargs)
        # A sync tool may block on I/O or compute for long; in a worker thread it leaves the
        # event loop free, and several tool calls of one response run at the same time.
        import asyncio  # here, not at the top: `import spout` stays light

        result = await asyncio.to_thread(function, **kwargs)
        if inspect.isawaitable(result):  # a sync wrapper around an async function
            result = await result
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, so a decorated function stays usable as one."""
        return self._function()(*args, **kwargs)

    def _function(self) -> Callable[..., Any]:
        if self.function is None:
            raise TypeError(
                f"tool {self.name!r} has no function to run: it only describes the tool to the model"
            )
        return self.function

    def _arguments(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        if arguments is None:
            return {}
        if not isinstance(arguments, Mapping):
            raise TypeError(
                f"tool {self.name!r}: arguments must be a mapping of names to values,"
                f" got {type(arguments).__name__}"
            )
        return dict(arguments) if self._convert is None else self._convert(arguments)


ToolLike: TypeAlias = Tool | Callable[..., Any] | Mapping[str, Any]
"""What ``as_tool`` accepts: a Tool, a function, or a tool definition as a dict."""


@overload
def tool(
    fn: Callable[..., Any], /, *, name: str | None = None, description: str | None = None
) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a :class:`Tool`; the result is still callable as the function.

    Use it bare or with a name and description that replace the function's own::

        @tool
        def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
            '''Current weather for a city.'''
            ...

        @tool(name="weather", description="Today's weather")
        def get_weather_today(city: str) -> str: ...

        get_weather("Oslo")  # still the function
    """
    if fn is not None:
        return Tool.from_function(fn, name=name, description=description)

    def decorate(fn: Callable[..., Any]) -> Tool:
        return Tool.from_function(fn, name=name, description=description)

    return decorate


def as_tool(obj: ToolLike) -> Tool:
    """Turn anything that names a tool into a :class:`Tool`.

    A Tool is returned as it is; a function goes through :meth:`Tool.from_function`; a dict may
    be OpenAI's ``{"type": "function", "function": {"name", "description", "parameters"}}``,
    or the bare ``{"name", "description", "parameters"}`` (Anthropic's ``"input_schema"`` is
    read as ``"parameters"``), and gives a Tool without a function; a ``cache_control`` beside
    either (litellm's place for it in OpenAI's shape) is kept.

    >>> as_tool({"name": "now", "description": "The time"}).parameters
    {'type': 'object', 'properties': {}}
    """
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, Mapping):
        spec = obj
        if obj.get("type") == "function" and isinstance(obj.get("function"), Mapping):
            spec = obj["function"]
        if "name" not in spec:
            raise TypeError(f"cannot make a tool from a dict without a 'name': {dict(obj)!r:.120}")
        parameters = spec.get("parameters", spec.get("input_schema"))
        return Tool(
            name=spec["name"],
            description=spec.get("description") or "",
            parameters=_empty_object() if parameters is None else parameters,
            cache_control=obj.get("cache_control") or spec.get("cache_control"),
        )
    if callable(obj):
        return Tool.from_function(obj)
    raise TypeError(
        f"cannot make a tool from {type(obj).__name__} {obj!r:.80}: expected a Tool, a function"
        " or a tool definition dict"
    )


def _is_async(fn: Callable[..., Any]) -> bool:
    # A callable object with `async def __call__` is a coroutine function in all but name.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the attribute itself is what is inspected
    )


def _name_of(fn: Callable[..., Any]) -> str:
    inner = unwrap_partial(fn)
    name = getattr(inner, "__name__", None)
    return name if isinstance(name, str) else type(inner).__name__


def _doc_of(fn: Callable[..., Any]) -> str | None:
    # A partial's own docstring describes functools.partial, not the tool.
    return inspect.getdoc(unwrap_partial(fn))
