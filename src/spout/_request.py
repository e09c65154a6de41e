"""An HTTP request as a provider describes it, and what sends it: no sockets, no HTTP library.

Providers build :class:`HTTPRequest` values and read responses' bytes; they do no I/O (the
import-linter contract in ``pyproject.toml`` checks that they never import
:mod:`spout._transport`). The :class:`Sender` they send through is handed to them: spout's own
(:class:`spout._transport.Transport`, httpx for sync and aiohttp for async) is installed by
:mod:`spout._llm` with :func:`send_through`, as an httpx client is handed its transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ._log import request_repr

if TYPE_CHECKING:
    from ._errors import ProviderError
    from ._policy import Deadline

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "ErrorMapper",
    "HTTPRequest",
    "Sender",
    "SenderFactory",
    "header_value",
    "new_sender",
    "send_through",
]

DEFAULT_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Builds the provider's error from a failed response: (status, headers, body) -> error.
ErrorMapper = Callable[[int, Mapping[str, str], bytes], "ProviderError"]


@dataclass(slots=True)
class HTTPRequest:
    """A request as a provider adapter builds it, before anything touches a socket."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def __post_init__(self) -> None:
        # orjson returns small outputs in a 4 KiB buffer; a request lives as long as its
        # response is awaited, so 1,000 concurrent streams would hold 4 MB of slack.
        body = self.body
        if body is not None and len(body) < 4096:
            self.body = bytes(memoryview(body))

    def __repr__(self) -> str:  # the headers hold the API key: never print them whole
        return request_repr(self)


def header_value(headers: Any, *names: str) -> str | None:
    """The first of several headers that is present (request ids go by many names)."""
    for name in names:
        value = headers.get(name)
        if value:
            return str(value)
    return None


class Sender(Protocol):
    """What an HTTP provider sends its requests through, sync and async.

    An error status is raised as ``on_error`` builds it; with a ``deadline``, no wait goes
    past it. The streaming methods return the body's chunks as they arrive, how to close the
    response, and its headers.
    """

    def request(
        self, request: HTTPRequest, on_error: ErrorMapper, deadline: Deadline | None = None
    ) -> bytes: ...

    def stream(
        self, request: HTTPRequest, on_error: ErrorMapper, deadline: Deadline | None = None
    ) -> tuple[Iterator[bytes], Callable[[], None], Mapping[str, str]]: ...

    async def arequest(
        self, request: HTTPRequest, on_error: ErrorMapper, deadline: Deadline | None = None
    ) -> bytes: ...

    async def astream(
        self, request: HTTPRequest, on_error: ErrorMapper, deadline: Deadline | None = None
    ) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]], Mapping[str, str]]: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class SenderFactory(Protocol):
    """Makes one provider's :class:`Sender` from its timeouts and default headers."""

    def __call__(
        self,
        *,
        timeout: float | None = ...,
        connect_timeout: float | None = ...,
        headers: dict[str, str] | None = ...,
    ) -> Sender: ...


_factory: SenderFactory | None = None


def send_through(factory: SenderFactory) -> None:
    """Make every HTTP provider created from now on send through what ``factory`` makes."""
    global _factory
    _factory = factory


def new_sender(
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    headers: dict[str, str] | None = None,
) -> Sender:
    """A sender from the installed factory (``import spout`` installs spout's transport)."""
    if _factory is None:
        raise RuntimeError("no HTTP transport is installed: import spout first")
    return _factory(timeout=timeout, connect_timeout=connect_timeout, headers=headers)
