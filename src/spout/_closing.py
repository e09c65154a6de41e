"""Closing on the way out: ``with`` blocks, and loops that close their source if they stop early."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from types import TracebackType
from typing import TypeVar

__all__ = ["AsyncClosing", "Closing", "aclosing_early", "closing_early"]

_T = TypeVar("_T")
_C = TypeVar("_C", bound="Closing")
_A = TypeVar("_A", bound="AsyncClosing")


class Closing:
    """Leaving a ``with`` block calls :meth:`close`, however the block ends."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave(exc)

    def _leave(self, exc: BaseException | None) -> None:
        """Leaving the ``with`` block, ``exc`` the exception that ended it (None if none)."""
        self.close()


class AsyncClosing:
    """Leaving an ``async with`` block awaits :meth:`aclose`, however the block ends."""

    __slots__ = ()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._aleave(exc)

    async def _aleave(self, exc: BaseException | None) -> None:
        """Leaving the ``async with`` block, ``exc`` the exception that ended it (None if none)."""
        await self.aclose()


def closing_early(items: Iterator[_T], close: Callable[[], None]) -> Generator[_T, None, None]:
    """The items; a loop that stops before their end (``break``, an exception) calls ``close``."""
    done = False
    try:
        yield from items
        done = True
    finally:
        if not done:
            close()


async def aclosing_early(
    items: AsyncIterator[_T], aclose: Callable[[], Awaitable[None]]
) -> AsyncGenerator[_T, None]:
    """The items, ``async``; a loop that stops before their end awaits ``aclose``."""
    done = False
    try:
        async for item in items:
            yield item
        done = True
    finally:
        if not done:
            await aclose()
