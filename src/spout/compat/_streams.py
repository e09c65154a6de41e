"""The stream objects ``completion(..., stream=True)`` and its async twin return."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

from .._closing import AsyncClosing, Closing, aclosing_early, closing_early
from ._objects import ModelResponseStream


class CompletionStream(Closing):
    """What ``completion(..., stream=True)`` returns: iterate it for :class:`ModelResponseStream`
    chunks (litellm's ``CustomStreamWrapper``).

    A ``for`` loop that stops early closes the connection, as do :meth:`close` and leaving a
    ``with`` block. An error after the stream began (a dropped connection, an error event)
    raises from the loop, never ends it quietly.

    Example::

        for chunk in completion(model="local/smollm2", messages=messages, stream=True):
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    """

    __slots__ = ("__weakref__", "_chunks", "_close", "model")

    def __init__(
        self, chunks: Iterator[ModelResponseStream], close: Callable[[], None], model: str
    ) -> None:
        self._chunks = chunks
        self._close = close
        #: the model as asked for
        self.model = model

    def __iter__(self) -> Iterator[ModelResponseStream]:
        return closing_early(self._chunks, self.close)

    def __next__(self) -> ModelResponseStream:
        return next(self._chunks)

    def close(self) -> None:
        """Stop the stream and release its connection now."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._close()

    def __repr__(self) -> str:
        return f"<spout.compat.CompletionStream model={self.model!r}>"


class AsyncCompletionStream(AsyncClosing):
    """What ``await acompletion(..., stream=True)`` returns: ``async for`` gives the chunks.

    The request was sent before the await returned. A loop that stops early, :meth:`aclose`,
    leaving an ``async with`` block or cancelling the reading task closes the connection.

    Example::

        async for chunk in await acompletion(model="local/smollm2", messages=m, stream=True):
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    """

    __slots__ = ("__weakref__", "_aclose", "_chunks", "model")

    def __init__(
        self,
        chunks: AsyncGenerator[ModelResponseStream, None],
        aclose: Callable[[], Any],
        model: str,
    ) -> None:
        self._chunks = chunks
        self._aclose = aclose
        #: the model as asked for
        self.model = model

    def __aiter__(self) -> AsyncIterator[ModelResponseStream]:
        return aclosing_early(self._chunks, self.aclose)

    async def __anext__(self) -> ModelResponseStream:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and release its connection now."""
        await self._chunks.aclose()
        await self._aclose()

    def __repr__(self) -> str:
        return f"<spout.compat.AsyncCompletionStream model={self.model!r}>"
