"""Sync and async HTTP for every provider; the only place httpx is called or its errors seen."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._errors import (
    ConnectionError,
    ConnectTimeout,
    FirstTokenTimeout,
    IdleTimeout,
    ProtocolError,
    ProviderError,
    SpoutError,
    StreamInterruptedError,
    TimeoutError,
    TransportError,
)

__all__ = ["HTTPRequest", "Transport"]

DEFAULT_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Builds the provider's error from a failed response: (status, headers, body) -> error.
ErrorMapper = Callable[[int, httpx.Headers, bytes], ProviderError]


@dataclass(slots=True)
class HTTPRequest:
    """A request as a provider adapter builds it, before anything touches a socket."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


def _translate(exc: httpx.HTTPError, *, streaming: bool) -> SpoutError:
    """One httpx exception as the spout error it means; ``streaming`` once the body began."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimeout(f"could not connect in time: {detail}")
    if isinstance(exc, httpx.ReadTimeout):
        if streaming:
            return IdleTimeout(f"the stream sent nothing for too long: {detail}")
        return FirstTokenTimeout(f"the server did not answer in time: {detail}")
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError(f"timed out: {detail}")
    if isinstance(exc, httpx.DecodingError):
        return ProtocolError(f"the response body could not be decoded: {detail}")
    if streaming and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError)):
        return StreamInterruptedError(f"the connection was lost mid-stream: {detail}")
    if isinstance(exc, (httpx.ConnectError, httpx.ReadError, httpx.WriteError,
                        httpx.RemoteProtocolError)):
        return ConnectionError(f"connection failed: {detail}")
    return TransportError(f"HTTP transport failed: {detail}")


class Transport:
    """Owns the connection pools (one sync client, one async client per event loop)."""

    def __init__(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._headers = headers or {}
        self._client: httpx.Client | None = None
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, httpx.AsyncClient
        ] = weakref.WeakKeyDictionary()

    # -- clients -------------------------------------------------------------------------------

    def _sync_client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, headers=self._headers)
        return self._client

    def _async_client(self) -> httpx.AsyncClient:
        # An AsyncClient's connections belong to the loop that opened them.
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
            self._async_clients[loop] = client
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __del__(self) -> None:
        # An LLM dropped without close() must not leave its pooled sockets to the collector.
        with contextlib.suppress(Exception):
            self.close()

    async def aclose(self) -> None:
        self.close()
        loop = asyncio.get_running_loop()
        client = self._async_clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    # -- sync ----------------------------------------------------------------------------------

    def request(self, request: HTTPRequest, on_error: ErrorMapper) -> bytes:
        """Send a request and return the body of a successful response."""
        client = self._sync_client()
        try:
            response = client.request(
                request.method, request.url, headers=request.headers, content=request.body
            )
        except httpx.HTTPError as exc:
            raise _translate(exc, streaming=False) from exc
        if response.status_code >= 400:
            raise on_error(response.status_code, response.headers, response.content)
        return response.content

    def stream(
        self, request: HTTPRequest, on_error: ErrorMapper
    ) -> tuple[Iterator[bytes], Callable[[], None]]:
        """Send a request; returns the body's chunks as they arrive and how to close it.

        The request is sent before this returns, so a refused connection or an error status
        raises here, not on the first read.
        """
        client = self._sync_client()
        try:
            response = client.send(
                client.build_request(
                    request.method, request.url, headers=request.headers, content=request.body
                ),
                stream=True,
            )
        except httpx.HTTPError as exc:
            raise _translate(exc, streaming=False) from exc
        if response.status_code >= 400:
            try:
                body = response.read()
            except httpx.HTTPError:
                body = b""
            finally:
                response.close()
            raise on_error(response.status_code, response.headers, body)
        return _chunks(response), response.close

    # -- async ---------------------------------------------------------------------------------

    async def arequest(self, request: HTTPRequest, on_error: ErrorMapper) -> bytes:
        """Send a request and return the body of a successful response."""
        client = self._async_client()
        try:
            response = await client.request(
                request.method, request.url, headers=request.headers, content=request.body
            )
        except httpx.HTTPError as exc:
            raise _translate(exc, streaming=False) from exc
        if response.status_code >= 400:
            raise on_error(response.status_code, response.headers, response.content)
        return response.content

    async def astream(
        self, request: HTTPRequest, on_error: ErrorMapper
    ) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        """Send a request; returns the body's chunks as they arrive and how to close it."""
        client = self._async_client()
        try:
            response = await client.send(
                client.build_request(
                    request.method, request.url, headers=request.headers, content=request.body
                ),
                stream=True,
            )
        except httpx.HTTPError as exc:
            raise _translate(exc, streaming=False) from exc
        if response.status_code >= 400:
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await response.aclose()
            raise on_error(response.status_code, response.headers, body)
        return _achunks(response), response.aclose


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes()
    except httpx.HTTPError as exc:
        raise _translate(exc, streaming=True) from exc


async def _achunks(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_bytes():
            yield chunk
    except httpx.HTTPError as exc:
        raise _translate(exc, streaming=True) from exc


def header_value(headers: Any, *names: str) -> str | None:
    """The first of several headers that is present (request ids go by many names)."""
    for name in names:
        value = headers.get(name)
        if value:
            return str(value)
    return None
