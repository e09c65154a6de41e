"""The LLMs that serve calls: one per endpoint and model, pooled per thread or event loop."""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

from .._llm import LLM
from ._request import _Request

_MAX_LLMS = 64

# Sync calls share one LLM per endpoint, key and model, so connections are pooled across calls.
# An LLM dropped from the cache is not closed here: a stream may still read from it, and it
# closes its connections when the last stream lets it go.
_sync_llms: OrderedDict[tuple[Any, ...], LLM] = OrderedDict()
_sync_lock = threading.Lock()


def _sync_llm(request: _Request) -> LLM:
    key = request.cache_key()
    with _sync_lock:
        llm = _sync_llms.get(key)
        if llm is not None:
            _sync_llms.move_to_end(key)
            return llm
    llm = request.make_llm()
    with _sync_lock:
        if not _sync_llms:
            # Closed while the interpreter is whole: at its teardown, sockets can no longer be.
            atexit.register(_close_sync_llms)
        llm = _sync_llms.setdefault(key, llm)
        while len(_sync_llms) > _MAX_LLMS:
            _sync_llms.popitem(last=False)
    return llm


def _close_sync_llms() -> None:
    """Close the LLMs sync calls share (at exit; tests call it between tests)."""
    with _sync_lock:
        llms = list(_sync_llms.values())
        _sync_llms.clear()
        atexit.unregister(_close_sync_llms)
    for llm in llms:
        with contextlib.suppress(Exception):
            llm.close()


class _LoopLLMs:
    """The LLMs async calls use on one event loop: connections belong to the loop that opened
    them. They are closed when the loop shuts down (see :func:`_close_at_loop_end`)."""

    __slots__ = ("closed", "keeper", "llms", "retired")

    def __init__(self) -> None:
        self.llms: OrderedDict[tuple[Any, ...], LLM] = OrderedDict()
        self.retired: list[LLM] = []
        self.keeper: AsyncGenerator[None, None] | None = None
        self.closed = False


_loop_llms: weakref.WeakKeyDictionary[Any, _LoopLLMs] = weakref.WeakKeyDictionary()
_loop_lock = threading.Lock()


async def _close_at_loop_end(loop: Any, cache: _LoopLLMs) -> AsyncGenerator[None, None]:
    """Suspended for the loop's life; resumed by its ``shutdown_asyncgens()``.

    ``asyncio.run``, ``asyncio.Runner`` and pytest-asyncio call ``shutdown_asyncgens()`` before
    they close a loop: that is the last moment the loop's connections can be closed on it, and
    an async generator it knows of is the only thing it calls then.
    """
    try:
        yield
    finally:
        cache.closed = True
        cache.keeper = None
        with _loop_lock:
            if _loop_llms.get(loop) is cache:
                del _loop_llms[loop]
        for llm in [*cache.llms.values(), *cache.retired]:
            with contextlib.suppress(Exception):
                await llm.aclose()
        cache.llms.clear()
        cache.retired.clear()


async def _async_llm(request: _Request) -> LLM:
    import asyncio

    loop = asyncio.get_running_loop()
    with _loop_lock:
        cache = _loop_llms.get(loop)
        fresh = cache is None or cache.closed
        if fresh:
            cache = _loop_llms[loop] = _LoopLLMs()
    assert cache is not None
    if fresh:
        keeper = _close_at_loop_end(loop, cache)
        await keeper.asend(None)  # now the loop knows of it (its first-iteration hook ran)
        cache.keeper = keeper
    key = request.cache_key()
    llm = cache.llms.get(key)
    if llm is not None:
        cache.llms.move_to_end(key)
        return llm
    llm = cache.llms[key] = request.make_llm()
    while len(cache.llms) > _MAX_LLMS:
        # Not closed now (a stream may still read from it): at the loop's end.
        cache.retired.append(cache.llms.popitem(last=False)[1])
    return llm
