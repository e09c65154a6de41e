"""The clients compared: raw HTTP stacks, the official SDKs, litellm, and spout.

Each client streams one response from the load server and yields the text pieces it gets: the
same job for all, as a user would do it. Raw clients read lines and parse JSON with orjson;
they are the floor each library is measured against. A client is made once per measurement
(``make(base_url)`` returns ``(texts, close)``) and reused across its runs, as an application
would reuse it.
"""

from __future__ import annotations

import http.client
import importlib.util
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

MODEL = "bench"


def messages(run: str) -> list[dict[str, str]]:
    """The load server reads what to send (``burst-20000``...) from the prompt."""
    return [{"role": "user", "content": run}]


ANTHROPIC_HEADERS = {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"}


@dataclass(frozen=True)
class Client:
    name: str
    fmt: str  # "openai" or "anthropic"
    is_async: bool
    make: Callable[[str], tuple[Any, Any]]
    needs: str  # the module it is built on, to tell whether it is installed

    @property
    def available(self) -> bool:
        return importlib.util.find_spec(self.needs) is not None

    @property
    def label(self) -> str:
        return f"{self.name} {'async' if self.is_async else 'sync'}"


def _openai_text(line: bytes | str) -> str | None:
    if line[:6] not in (b"data: ", "data: "):
        return None
    data = line[6:]
    if data in (b"[DONE]", "[DONE]"):
        return None
    choices = orjson.loads(data)["choices"]
    return choices[0]["delta"].get("content") if choices else None


def _anthropic_text(line: bytes | str) -> str | None:
    if line[:6] not in (b"data: ", "data: "):
        return None
    event = orjson.loads(line[6:])
    if event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta":
        return str(event["delta"]["text"])
    return None


def _request(fmt: str, run: str) -> tuple[str, dict[str, Any]]:
    if fmt == "anthropic":
        return "/v1/messages", {
            "model": MODEL,
            "max_tokens": 1024,
            "messages": messages(run),
            "stream": True,
        }
    return "/v1/chat/completions", {"model": MODEL, "messages": messages(run), "stream": True}


# -- raw clients -----------------------------------------------------------------------------


def raw_httpx(fmt: str) -> Callable[[str], tuple[Any, Any]]:
    def make(base: str) -> tuple[Callable[[str], Iterator[str]], Callable[[], None]]:
        import httpx

        client = httpx.Client(timeout=60, headers=ANTHROPIC_HEADERS)
        parse = _anthropic_text if fmt == "anthropic" else _openai_text

        def texts(run: str) -> Iterator[str]:
            path, body = _request(fmt, run)
            with client.stream("POST", base + path, json=body) as response:
                for line in response.iter_lines():
                    text = parse(line)
                    if text:
                        yield text

        return texts, client.close

    return make


def raw_httpx_async(fmt: str) -> Callable[[str], tuple[Any, Any]]:
    def make(
        base: str,
    ) -> tuple[Callable[[str], AsyncIterator[str]], Callable[[], Awaitable[None]]]:
        import httpx

        client = httpx.AsyncClient(
            timeout=60, headers=ANTHROPIC_HEADERS, limits=httpx.Limits(max_connections=None)
        )
        parse = _anthropic_text if fmt == "anthropic" else _openai_text

        async def texts(run: str) -> AsyncIterator[str]:
            path, body = _request(fmt, run)
            async with client.stream("POST", base + path, json=body) as response:
                lines = response.aiter_lines()
                try:
                    async for line in lines:
                        text = parse(line)
                        if text:
                            yield text
                finally:
                    await lines.aclose()  # else httpx's inner generators are finalized late

        return texts, client.aclose

    return make


def raw_aiohttp(fmt: str) -> Callable[[str], tuple[Any, Any]]:
    def make(
        base: str,
    ) -> tuple[Callable[[str], AsyncIterator[str]], Callable[[], Awaitable[None]]]:
        import aiohttp

        sessions: list[Any] = []
        parse = _anthropic_text if fmt == "anthropic" else _openai_text

        async def texts(run: str) -> AsyncIterator[str]:
            if not sessions:  # a session belongs to the running loop
                sessions.append(
                    aiohttp.ClientSession(
                        headers=ANTHROPIC_HEADERS, connector=aiohttp.TCPConnector(limit=0)
                    )
                )
            path, body = _request(fmt, run)
            async with sessions[0].post(base + path, json=body) as response:
                async for line in response.content:
                    text = parse(line.rstrip(b"\r\n"))
                    if text:
                        yield text

        async def close() -> None:
            if sessions:
                await sessions[0].close()

        return texts, close

    return make


def raw_http_client(base: str) -> tuple[Callable[[str], Iterator[str]], Callable[[], None]]:
    parsed = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=60)

    def texts(run: str) -> Iterator[str]:
        path, body = _request("openai", run)
        connection.request("POST", path, orjson.dumps(body), {"Content-Type": "application/json"})
        for line in connection.getresponse():
            text = _openai_text(line.rstrip(b"\r\n"))
            if text:
                yield text

    return texts, connection.close


# -- libraries -------------------------------------------------------------------------------


def spout_client(fmt: str, is_async: bool) -> Callable[[str], tuple[Any, Any]]:
    def make(base: str) -> tuple[Any, Any]:
        import spout

        provider = "anthropic" if fmt == "anthropic" else "openai"
        base_url = base if fmt == "anthropic" else f"{base}/v1"
        llm = spout.create_llm(provider, model=MODEL, base_url=base_url, api_key="sk-bench")

        if not is_async:

            def texts(run: str) -> Iterator[str]:
                stream = llm.generate_stream(run)
                yield from stream
                stream.response  # noqa: B018 - the Response is rebuilt too, as in real use

            return texts, llm.close

        async def atexts(run: str) -> AsyncIterator[str]:
            stream = llm.agenerate_stream(run)
            async for text in stream:
                yield text
            await stream.get_response()

        return atexts, llm.aclose

    return make


def openai_sdk(is_async: bool) -> Callable[[str], tuple[Any, Any]]:
    def make(base: str) -> tuple[Any, Any]:
        import openai

        if not is_async:
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-bench", max_retries=0)

            def texts(run: str) -> Iterator[str]:
                stream = client.chat.completions.create(
                    model=MODEL, messages=messages(run), stream=True
                )  # type: ignore[arg-type]
                with stream:
                    for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            yield chunk.choices[0].delta.content

            return texts, client.close

        aclient = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-bench", max_retries=0)

        async def atexts(run: str) -> AsyncIterator[str]:
            stream = await aclient.chat.completions.create(
                model=MODEL, messages=messages(run), stream=True
            )  # type: ignore[arg-type]
            try:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
            finally:
                await stream.close()

        return atexts, aclient.close

    return make


def anthropic_sdk(is_async: bool) -> Callable[[str], tuple[Any, Any]]:
    def make(base: str) -> tuple[Any, Any]:
        import anthropic

        if not is_async:
            client = anthropic.Anthropic(base_url=base, api_key="sk-bench", max_retries=0)

            def texts(run: str) -> Iterator[str]:
                with client.messages.stream(
                    model=MODEL, max_tokens=1024, messages=messages(run)
                ) as stream:  # type: ignore[arg-type]
                    yield from stream.text_stream

            return texts, client.close

        aclient = anthropic.AsyncAnthropic(base_url=base, api_key="sk-bench", max_retries=0)

        async def atexts(run: str) -> AsyncIterator[str]:
            async with aclient.messages.stream(
                model=MODEL, max_tokens=1024, messages=messages(run)
            ) as stream:  # type: ignore[arg-type]
                async for text in stream.text_stream:
                    yield text

        return atexts, aclient.close

    return make


def litellm_client(is_async: bool) -> Callable[[str], tuple[Any, Any]]:
    def make(base: str) -> tuple[Any, Any]:
        import litellm

        settings = {"api_base": f"{base}/v1", "api_key": "sk-bench", "stream": True}

        if not is_async:

            def texts(run: str) -> Iterator[str]:
                for chunk in litellm.completion(
                    model=f"openai/{MODEL}", messages=messages(run), **settings
                ):
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content

            return texts, lambda: None

        async def atexts(run: str) -> AsyncIterator[str]:
            async for chunk in await litellm.acompletion(
                model=f"openai/{MODEL}", messages=messages(run), **settings
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content

        async def aclose() -> None:
            return None

        return atexts, aclose

    return make


def spout_compat_client(is_async: bool) -> Callable[[str], tuple[Any, Any]]:
    """litellm's API on spout: the litellm client's code, with ``from spout import``."""

    def make(base: str) -> tuple[Any, Any]:
        from spout import acompletion, completion
        from spout.compat import _close_sync_llms

        settings = {"api_base": f"{base}/v1", "api_key": "sk-bench", "stream": True}

        if not is_async:

            def texts(run: str) -> Iterator[str]:
                for chunk in completion(
                    model=f"openai/{MODEL}", messages=messages(run), **settings
                ):
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content

            return texts, _close_sync_llms

        async def atexts(run: str) -> AsyncIterator[str]:
            async for chunk in await acompletion(
                model=f"openai/{MODEL}", messages=messages(run), **settings
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content

        async def aclose() -> None:
            return None  # its connections close when the event loop shuts down

        return atexts, aclose

    return make


CLIENTS = [
    # OpenAI format
    Client("httpx (raw)", "openai", False, raw_httpx("openai"), "httpx"),
    Client("http.client (raw)", "openai", False, raw_http_client, "http"),
    Client("spout", "openai", False, spout_client("openai", False), "spout"),
    Client("openai", "openai", False, openai_sdk(False), "openai"),
    Client("litellm", "openai", False, litellm_client(False), "litellm"),
    Client("spout.compat", "openai", False, spout_compat_client(False), "spout"),
    Client("httpx (raw)", "openai", True, raw_httpx_async("openai"), "httpx"),
    Client("aiohttp (raw)", "openai", True, raw_aiohttp("openai"), "aiohttp"),
    Client("spout", "openai", True, spout_client("openai", True), "spout"),
    Client("openai", "openai", True, openai_sdk(True), "openai"),
    Client("litellm", "openai", True, litellm_client(True), "litellm"),
    Client("spout.compat", "openai", True, spout_compat_client(True), "spout"),
    # Anthropic format
    Client("httpx (raw)", "anthropic", False, raw_httpx("anthropic"), "httpx"),
    Client("spout", "anthropic", False, spout_client("anthropic", False), "spout"),
    Client("anthropic", "anthropic", False, anthropic_sdk(False), "anthropic"),
    Client("httpx (raw)", "anthropic", True, raw_httpx_async("anthropic"), "httpx"),
    Client("aiohttp (raw)", "anthropic", True, raw_aiohttp("anthropic"), "aiohttp"),
    Client("spout", "anthropic", True, spout_client("anthropic", True), "spout"),
    Client("anthropic", "anthropic", True, anthropic_sdk(True), "anthropic"),
]


def find(name: str, fmt: str, is_async: bool) -> Client:
    for client in CLIENTS:
        if (client.name, client.fmt, client.is_async) == (name, fmt, is_async):
            return client
    raise KeyError((name, fmt, is_async))
