"""Who may call the gateway and how much: keys, rate limits, body size, CORS, the access log.

A real gateway (``run_gateway``) in front of a loopback upstream (``FaultServer``) replaying
a chat completions stream, called by the official ``openai`` and ``anthropic`` SDKs where a
client's view matters (their ``AuthenticationError`` and ``RateLimitError``), by httpx
where the raw HTTP does (headers, chunked bodies, CORS). Shared counters run against a real
``redis-server`` the tests start on a free loopback port.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anthropic
import httpx
import openai
import pytest
from gateway_server import free_port, run_gateway, upstream_config
from sdk_loopback import http_client
from starlette.requests import Request as HTTPRequest

from fault_server import FaultServer, openai_chat_stream
from spout._errors import ConfigurationError
from spout.cli import main as cli_main
from spout.gateway import GatewayConfig, Limits
from spout.gateway._guard import Denied, Guard
from spout.gateway._keys import add_key, hash_key, read_keys
from spout.gateway._ratelimit import Counters, MemoryCounters, RedisCounters

CHAT = "/v1/chat/completions"
PIECES = ["The ", "quick ", "brown ", "fox."]
PROMPT = "Tell me the secret plan of the purple walrus"


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    """An upstream answering every request with the same short stream (4 output tokens)."""
    with FaultServer() as server:
        server.route(lambda request: openai_chat_stream(PIECES).reply())
        yield server


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A keys file with alice (the gateway's limits) and bob (1 request per minute)."""
    path = tmp_path / "keys.txt"
    made = {
        "alice": add_key(path, "alice"),
        "bob": add_key(path, "bob", requests_per_minute=1),
    }
    return path, made


def config(faults: FaultServer, **settings: Any) -> GatewayConfig:
    return upstream_config(faults.url + "/v1", **settings)


def chat_body(stream: bool = True, prompt: str = "hi") -> dict[str, object]:
    return {"model": "up", "messages": [{"role": "user", "content": prompt}], "stream": stream}


def sdk(gateway_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway_url + "/v1", api_key=key, max_retries=0, http_client=http_client()
    )


def streamed_text(client: openai.OpenAI, prompt: str = "hi") -> str:
    chunks = client.chat.completions.create(
        model="up", messages=[{"role": "user", "content": prompt}], stream=True
    )
    with chunks:
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


# -- keys ----------------------------------------------------------------------------------------


def test_keys_add_prints_the_key_once_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.txt"
    assert cli_main(["serve", "keys", "add", "alice", "--keys", str(path)]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("sk-spout-") and len(key) > 40
    assert key not in err and "alice" in err
    text = path.read_text()
    assert key not in text
    assert key[9:] not in text and key[9:30] not in text  # not even a part of it
    assert f"alice:sha256:{hash_key(key)}" in text
    assert path.stat().st_mode & 0o777 == 0o600

    assert (
        cli_main(["serve", "keys", "add", "bob", "--keys", str(path), "--tokens-per-minute", "500"])
        == 0
    )
    bob = capsys.readouterr().out.strip()
    assert bob != key and bob not in path.read_text()
    assert cli_main(["serve", "keys", "list", "--keys", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "alice  spent=$0.000000",
        "bob  tokens_per_minute=500  spent=$0.000000",
    ]

    assert cli_main(["serve", "keys", "add", "alice", "--keys", str(path)]) == 2
    assert "already has a key named 'alice'" in capsys.readouterr().err
    assert cli_main(["serve", "keys", "remove", "alice", "--keys", str(path)]) == 0
    assert [entry.name for entry in read_keys(path)] == ["bob"]
    assert cli_main(["serve", "keys", "remove", "alice", "--keys", str(path)]) == 1


def test_a_key_pasted_into_the_keys_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("alice:sk-spout-oops-this-is-a-key\n")
    with pytest.raises(ConfigurationError, match="line 1: expected name:sha256") as caught:
        read_keys(path)
    assert "oops" not in str(caught.value)
    path.write_text(f"alice:sha256:{hash_key('k')} requests_per_hour=3\n")
    with pytest.raises(ConfigurationError, match="'requests_per_hour' is not a limit"):
        read_keys(path)
    with pytest.raises(ConfigurationError, match="cannot read the keys file"):
        Guard(GatewayConfig(keys_file=tmp_path / "missing.txt"))


def test_no_key_or_a_wrong_one_is_401_in_each_protocol(
    faults: FaultServer, keys: tuple[Path, dict[str, str]]
) -> None:
    path, _ = keys
    with run_gateway(config(faults, keys_file=path)) as gateway:
        bare = httpx.post(gateway.url + CHAT, json=chat_body(), timeout=10)
        assert bare.status_code == 401
        assert bare.json()["error"]["type"] == "authentication_error"
        assert "Authorization: Bearer" in bare.json()["error"]["message"]

        with pytest.raises(openai.AuthenticationError, match="not valid"):
            streamed_text(sdk(gateway.url, "sk-spout-wrong"))

        claude = anthropic.Anthropic(
            base_url=gateway.url, api_key="sk-spout-wrong", max_retries=0, http_client=http_client()
        )
        with pytest.raises(anthropic.AuthenticationError) as caught:
            claude.messages.create(
                model="up", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.body["error"]["type"] == "authentication_error"

        for method, path_ in [
            ("GET", "/v1/models"),
            ("GET", "/v1/streams/st_x"),
            ("DELETE", "/v1/streams/st_x"),
        ]:
            assert httpx.request(method, gateway.url + path_, timeout=10).status_code == 401
        assert httpx.get(gateway.url + "/healthz", timeout=10).status_code == 200
    assert not faults.requests  # nothing reached the upstream


def test_a_valid_key_works_the_way_each_sdk_sends_it(
    faults: FaultServer, keys: tuple[Path, dict[str, str]]
) -> None:
    path, made = keys
    with run_gateway(config(faults, keys_file=path)) as gateway:
        client = sdk(gateway.url, made["alice"])  # Authorization: Bearer
        assert streamed_text(client) == "".join(PIECES)
        assert [model.id for model in client.models.list()] == ["up"]

        claude = anthropic.Anthropic(
            base_url=gateway.url, api_key=made["alice"], max_retries=0, http_client=http_client()
        )
        with claude.messages.stream(  # x-api-key
            model="up", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert stream.get_final_text() == "".join(PIECES)

        stream_id = httpx.post(
            gateway.url + CHAT,
            json=chat_body(),
            headers={"authorization": f"Bearer {made['alice']}"},
            timeout=10,
        ).headers["x-spout-stream-id"]
        again = httpx.get(
            f"{gateway.url}/v1/streams/{stream_id}",
            headers={"x-api-key": made["alice"]},
            timeout=10,
        )
        assert again.status_code == 200 and "fox" in again.text
    for request in faults.requests:  # the gateway's key never goes upstream
        assert made["alice"] not in str(request.headers)


def test_a_key_added_while_the_gateway_runs_works_at_once(
    faults: FaultServer, keys: tuple[Path, dict[str, str]]
) -> None:
    path, _ = keys
    with run_gateway(config(faults, keys_file=path)) as gateway:
        late = add_key(path, "carol")
        assert streamed_text(sdk(gateway.url, late)) == "".join(PIECES)


# -- rate limits --------------------------------------------------------------------------------


def test_requests_per_minute_then_429_with_retry_after(
    faults: FaultServer, keys: tuple[Path, dict[str, str]]
) -> None:
    path, made = keys
    limits = Limits(requests_per_minute=3)
    with run_gateway(config(faults, keys_file=path, limits=limits)) as gateway:
        alice = sdk(gateway.url, made["alice"])
        for _ in range(3):
            assert streamed_text(alice) == "".join(PIECES)
        with pytest.raises(openai.RateLimitError, match="3 requests per minute") as caught:
            streamed_text(alice)
        retry_after = int(caught.value.response.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert caught.value.body["type"] == "rate_limit_error"

        # bob's own limit (1 per minute) overrides the gateway's, and is counted apart
        bob = sdk(gateway.url, made["bob"])
        assert streamed_text(bob) == "".join(PIECES)
        with pytest.raises(openai.RateLimitError, match="1 requests per minute for 'bob'"):
            streamed_text(bob)
        # the Anthropic SDK sees its own RateLimitError
        claude = anthropic.Anthropic(
            base_url=gateway.url, api_key=made["bob"], max_retries=0, http_client=http_client()
        )
        with pytest.raises(anthropic.RateLimitError) as refused:
            claude.messages.create(
                model="up", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
            )
        assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
    assert len(faults.requests) == 4  # the refused ones never reached the upstream


def test_tokens_per_minute_then_429(faults: FaultServer, keys: tuple[Path, dict[str, str]]) -> None:
    path, made = keys
    limits = Limits(tokens_per_minute=6)  # each answer is 4 output tokens
    with run_gateway(config(faults, keys_file=path, limits=limits)) as gateway:
        alice = sdk(gateway.url, made["alice"])
        assert streamed_text(alice) == "".join(PIECES)  # 4 used
        assert streamed_text(alice) == "".join(PIECES)  # 8: over, counted once it ended
        with pytest.raises(openai.RateLimitError, match="6 output tokens per minute") as caught:
            streamed_text(alice)
        assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
        # another key's tokens are counted apart
        assert streamed_text(sdk(gateway.url, made["bob"])) == "".join(PIECES)


def test_without_keys_the_caller_is_its_address(faults: FaultServer) -> None:
    with run_gateway(config(faults, limits=Limits(requests_per_minute=1))) as gateway:
        assert httpx.post(gateway.url + CHAT, json=chat_body(), timeout=10).status_code == 200
        refused = httpx.post(gateway.url + CHAT, json=chat_body(), timeout=10)
        assert refused.status_code == 429
        assert "for '127.0.0.1'" in refused.json()["error"]["message"]


@pytest.fixture(params=["memory", "redis"])
def counters(request: pytest.FixtureRequest) -> Iterator[Counters]:
    if request.param == "memory":
        yield MemoryCounters(window=0.5)
    else:
        yield RedisCounters(request.getfixturevalue("redis_url"), window=0.5)


async def test_the_window_frees_and_retry_after_says_when(counters: Counters) -> None:
    try:
        assert await counters.admit("a", 2, 0) is None
        assert await counters.admit("a", 2, 0) is None
        refusal = await counters.admit("a", 2, 0)
        assert refusal is not None and refusal.limit == "requests"
        assert 0 < refusal.retry_after <= 0.5
        assert await counters.admit("b", 2, 0) is None  # another caller, its own count
        time.sleep(refusal.retry_after + 0.05)
        assert await counters.admit("a", 2, 0) is None

        await counters.charge("t", 7)
        await counters.charge("t", 5)
        refusal = await counters.admit("t", 0, 10)
        assert refusal is not None and refusal.limit == "tokens"
        assert 0 < refusal.retry_after <= 0.5
        time.sleep(refusal.retry_after + 0.05)
        assert await counters.admit("t", 0, 10) is None  # the first charge aged out
    finally:
        await counters.aclose()


async def test_redis_unreachable_is_503_not_an_open_door(tmp_path: Path) -> None:
    settings = GatewayConfig(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    settings.limits = Limits(requests_per_minute=5)
    guard = Guard(settings)
    scope = {
        "type": "http",
        "method": "POST",
        "path": CHAT,
        "headers": [],
        "client": ("127.0.0.1", 5000),
    }
    try:
        with pytest.raises(Denied) as caught:
            await guard.admit(HTTPRequest(scope))
        assert caught.value.status == 503 and caught.value.retry_after == 1
    finally:
        await guard.aclose()


# -- shared counts across replicas, through Redis --------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[str]:
    """A real redis-server on a free loopback port, for this module."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The module's Redis, emptied for this test."""
    host, port = redis_server.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(16).startswith(b"+OK")
    return redis_server


def redis_keys(url: str, pattern: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return list(cast("list[bytes]", client.keys(pattern)))  # no decode_responses: bytes
    finally:
        client.close()


def test_two_replicas_share_one_callers_counts_through_redis(
    faults: FaultServer, keys: tuple[Path, dict[str, str]], redis_url: str
) -> None:
    path, made = keys
    # The hub stays in memory: this is about the counters (the Redis hub is tested apart).
    settings = config(
        faults,
        keys_file=path,
        redis_url=redis_url,
        limits=Limits(requests_per_minute=3, tokens_per_minute=100),
    )
    other = dataclasses.replace(settings)
    with (
        run_gateway(settings, hub=_memory_hub()) as one,
        run_gateway(other, hub=_memory_hub()) as two,
    ):
        assert streamed_text(sdk(one.url, made["alice"])) == "".join(PIECES)
        assert streamed_text(sdk(two.url, made["alice"])) == "".join(PIECES)
        assert streamed_text(sdk(one.url, made["alice"])) == "".join(PIECES)
        for gateway in (one, two):
            with pytest.raises(openai.RateLimitError, match="3 requests per minute"):
                streamed_text(sdk(gateway.url, made["alice"]))
        assert redis_keys(redis_url, "spout:limits:{alice}:*")

        # tokens: carol (no request limit, 10 tokens) spends 4 + 4 + 4 = 12 through both
        # replicas, then neither admits her
        carol = add_key(path, "carol", requests_per_minute=0, tokens_per_minute=10)
        for gateway in (one, two, one):
            assert streamed_text(sdk(gateway.url, carol)) == "".join(PIECES)
        _wait_for_tokens(redis_url, "carol", 12)
        for gateway in (two, one):
            with pytest.raises(openai.RateLimitError, match="10 output tokens per minute"):
                streamed_text(sdk(gateway.url, carol))


def _memory_hub() -> object:
    from spout.gateway._hub import MemoryHub

    return MemoryHub(resume_window=10, retention=60, max_events=1000)


def _wait_for_tokens(url: str, name: str, total: int, timeout: float = 5) -> None:
    """Tokens are charged after a stream's last event is sent: wait until Redis has them."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            members = cast("list[bytes]", client.zrange(f"spout:limits:{{{name}}}:tokens", 0, -1))
            if sum(int(member.split(b":")[0]) for member in members) >= total:
                return
            assert time.monotonic() < deadline, f"{name}'s tokens never reached {total}"
            time.sleep(0.02)
    finally:
        client.close()


# -- body size -----------------------------------------------------------------------------------


def test_an_oversized_body_is_413_declared_or_chunked(faults: FaultServer) -> None:
    limits = Limits(max_body_bytes=2000)
    big = chat_body(prompt="x" * 5000)
    with run_gateway(config(faults, limits=limits)) as gateway:
        declared = httpx.post(gateway.url + CHAT, json=big, timeout=10)
        assert declared.status_code == 413
        assert "the limit is 2000" in declared.json()["error"]["message"]

        def pieces() -> Iterator[bytes]:
            raw = httpx.Request("POST", "http://x", json=big).read()
            for start in range(0, len(raw), 500):
                yield raw[start : start + 500]

        chunked = httpx.post(
            gateway.url + CHAT,
            content=pieces(),
            timeout=10,
            headers={"content-type": "application/json"},
        )
        assert chunked.request.headers.get("transfer-encoding") == "chunked"
        assert chunked.status_code == 413
        assert "over the limit of 2000 bytes" in chunked.json()["error"]["message"]

        small = httpx.post(gateway.url + CHAT, json=chat_body(prompt="x" * 100), timeout=10)
        assert small.status_code == 200
    assert len(faults.requests) == 1


# -- CORS ----------------------------------------------------------------------------------------

APP = "https://app.example.com"
EVIL = "https://evil.example.net"
SDK_HEADERS = (
    "authorization, content-type, x-stainless-lang, x-stainless-retry-count, x-stainless-os"
)


def test_cors_allows_the_listed_origins_with_the_sdk_headers(faults: FaultServer) -> None:
    with run_gateway(config(faults, cors_origins=(APP,))) as gateway:
        preflight = httpx.options(
            gateway.url + CHAT,
            headers={
                "origin": APP,
                "access-control-request-method": "POST",
                "access-control-request-headers": SDK_HEADERS,
            },
            timeout=10,
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == APP
        allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {h.strip() for h in SDK_HEADERS.split(",")} <= {h.lower() for h in allowed}
        assert "POST" in preflight.headers["access-control-allow-methods"]

        anthropic_preflight = httpx.options(
            gateway.url + "/v1/messages",
            headers={
                "origin": APP,
                "access-control-request-method": "POST",
                "access-control-request-headers": "x-api-key, anthropic-version, "
                "anthropic-dangerous-direct-browser-access, content-type",
            },
            timeout=10,
        )
        assert anthropic_preflight.status_code == 200

        answer = httpx.post(
            gateway.url + CHAT, json=chat_body(), headers={"origin": APP}, timeout=10
        )
        assert answer.headers["access-control-allow-origin"] == APP
        assert "x-spout-stream-id" in answer.headers["access-control-expose-headers"]

        for response in (
            httpx.options(
                gateway.url + CHAT,
                timeout=10,
                headers={
                    "origin": EVIL,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization",
                },
            ),
            httpx.post(gateway.url + CHAT, json=chat_body(), headers={"origin": EVIL}, timeout=10),
            httpx.get(gateway.url + "/v1/models", headers={"origin": EVIL}, timeout=10),
        ):
            assert not [name for name in response.headers if name.startswith("access-control")]


def test_no_cors_headers_without_an_allow_list(faults: FaultServer) -> None:
    with run_gateway(config(faults)) as gateway:
        response = httpx.post(
            gateway.url + CHAT, json=chat_body(), headers={"origin": APP}, timeout=10
        )
        assert response.status_code == 200
        assert not [name for name in response.headers if name.startswith("access-control")]


# -- the access log ------------------------------------------------------------------------------


def _server_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the gateway's side logged (the clients' own debug logs show what they
    send, keys included: not the gateway's business)."""
    return "\n".join(
        f"{record.name} {record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if record.name.startswith(("spout", "uvicorn", "starlette"))
    )


def test_the_access_log_has_one_line_per_request_and_no_key_or_prompt(
    faults: FaultServer, keys: tuple[Path, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path, made = keys
    with run_gateway(config(faults, keys_file=path)) as gateway:
        alice = sdk(gateway.url, made["alice"])
        assert streamed_text(alice, PROMPT) == "".join(PIECES)
        with pytest.raises(openai.AuthenticationError):
            streamed_text(sdk(gateway.url, made["alice"] + "x"), PROMPT)
        models = httpx.get(
            gateway.url + "/v1/models?api_key=" + made["bob"],
            headers={"x-api-key": made["bob"]},
            timeout=10,
        )
        assert models.status_code == 200
    access = [record for record in caplog.records if record.name == "spout.gateway"]
    lines = [record.getMessage() for record in access]
    assert len(lines) == 3, lines
    assert lines[0].startswith("POST /v1/chat/completions 200 identity=alice stream=st_")
    assert access[0].__dict__["stream_id"].startswith("st_")
    assert lines[1].startswith("POST /v1/chat/completions 401 identity=- ")
    assert lines[2].startswith("GET /v1/models 200 identity=bob ")
    everything = _server_logged(caplog)
    for secret in (made["alice"], made["bob"], made["alice"][9:30], PROMPT, "purple walrus"):
        assert secret not in everything


def test_log_prompts_logs_the_last_user_message_cut_short(
    faults: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spout.gateway")
    long_prompt = PROMPT + " " + "and more " * 100
    with run_gateway(config(faults, log_prompts=True)) as gateway:
        assert streamed_text(sdk(gateway.url, "unused"), long_prompt) == "".join(PIECES)
    [record] = [record for record in caplog.records if record.name == "spout.gateway"]
    assert record.__dict__["prompt"] == long_prompt[:200]
    assert f"prompt={long_prompt[:200]!r}" in record.getMessage()
    assert long_prompt[:201] not in record.getMessage()
