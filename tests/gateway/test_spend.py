"""Spend limits and the usage metrics: what each key's responses cost, kept and enforced.

A real gateway (``run_gateway``) in front of a loopback upstream (``FaultServer``) that
replays OpenAI's and Anthropic's streams with a known usage, so a known cost from the
models' public prices: gpt-4o-mini at $0.15 / $0.60 per million input / output tokens,
claude-sonnet-4-5 at $3 / $15. Called by the official ``openai`` and ``anthropic`` SDKs,
whose exceptions are what a client sees. Spend shared by replicas runs against a real
``redis-server``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from gateway_server import run_gateway
from redis_server import run_redis
from sdk_loopback import http_client

from fault_server import (
    FaultServer,
    Reply,
    Request,
    Stall,
    anthropic_stream,
    openai_chat_stream,
)
from spout._errors import ConfigurationError
from spout.cli import main as cli_main
from spout.gateway import GatewayConfig, Route
from spout.gateway._hub import MemoryHub
from spout.gateway._keys import add_key, read_keys
from spout.gateway._spend import FileLedger, RedisLedger, spend_path, to_nano

PIECES = ["The ", "quick ", "brown ", "fox."]
#: 9 input and 4 output tokens of gpt-4o-mini.
GPT_COST = 9 * 0.15e-6 + 4 * 0.60e-6
#: 9 input and 4 output tokens of claude-sonnet-4-5.
CLAUDE_COST = 9 * 3e-6 + 4 * 15e-6
USER = [{"role": "user", "content": "hi"}]


def openai_json() -> Reply:
    body = {
        "id": "chatcmpl-WIREspend",
        "object": "chat.completion",
        "created": 1735689600,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(PIECES)},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
    return Reply(body=[json.dumps(body).encode()], framing="length")


def anthropic_json() -> Reply:
    body = {
        "id": "msg_WIREspend",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "".join(PIECES)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 4},
    }
    return Reply(body=[json.dumps(body).encode()], framing="length")


def answer(request: Request) -> Reply:
    """The upstream: Anthropic's messages on /v1/messages, else OpenAI's; streamed or not."""
    if request.path.endswith("/messages"):
        if not request.json().get("stream"):
            return anthropic_json()
        return anthropic_stream(PIECES).reply()
    if not request.json().get("stream"):
        return openai_json()
    return openai_chat_stream(PIECES).reply()


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        server.route(answer)
        yield server


def routes(faults: FaultServer) -> dict[str, Route]:
    options = {"api_key": "sk-test", "max_retries": 0}
    return {
        "gpt": Route(
            "gpt", provider="openai", model="gpt-4o-mini", base_url=f"{faults.url}/v1",
            options=options,
        ),
        "claude": Route(
            "claude", provider="anthropic", model="claude-sonnet-4-5", base_url=faults.url,
            options=options,
        ),
    }  # fmt: skip


def config(faults: FaultServer, keys: Path, **settings: Any) -> GatewayConfig:
    return GatewayConfig(routes=routes(faults), default="gpt", keys_file=keys, **settings)


def openai_client(url: str, key: str, **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=url + "/v1", api_key=key, http_client=http_client(), **options)


def anthropic_client(url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, http_client=http_client())


def streamed(client: openai.OpenAI) -> str:
    with client.chat.completions.create(model="gpt", messages=USER, stream=True) as chunks:
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def spent(keys: Path) -> dict[str, float]:
    ledger = FileLedger(spend_path(keys))
    try:
        return ledger.totals()
    finally:
        ledger.close()


def nano(totals: dict[str, float], name: str) -> int:
    return to_nano(totals.get(name, 0.0))


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


# -- spend accrues, and a key at its limit is refused ---------------------------------------------


def test_spend_accrues_per_response_and_a_key_at_its_limit_gets_insufficient_quota(
    faults: FaultServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    # Three responses reach the limit (3 x 3.75e-6 = 1.125e-5); the fourth request is refused.
    alice = add_key(keys, "alice", max_spend=1.1e-5)
    bob = add_key(keys, "bob")
    with run_gateway(config(faults, keys)) as gateway:
        client = openai_client(gateway.url, alice)
        assert streamed(client) == "".join(PIECES)
        # counted before the stream's end reached the client
        assert nano(spent(keys), "alice") == to_nano(GPT_COST)
        completion = client.chat.completions.create(model="gpt", messages=USER)
        assert completion.choices[0].message.content == "".join(PIECES)
        assert nano(spent(keys), "alice") == to_nano(GPT_COST) * 2
        assert streamed(client) == "".join(PIECES)
        assert nano(spent(keys), "alice") == to_nano(GPT_COST) * 3
        upstream_calls = len(faults.requests)

        # The SDK's own retries stay off for it (x-should-retry: false): it would not help.
        retrying = openai_client(gateway.url, alice, max_retries=2)
        with pytest.raises(openai.RateLimitError) as caught:
            streamed(retrying)
        assert caught.value.status_code == 429
        assert caught.value.code == "insufficient_quota"
        assert caught.value.type == "insufficient_quota"
        assert "'alice' has spent $0.000011 of its $0.000011 limit" in caught.value.message
        assert caught.value.response.headers["x-should-retry"] == "false"
        with pytest.raises(openai.RateLimitError) as caught:
            retrying.responses.create(model="gpt", input="hi")
        assert caught.value.code == "insufficient_quota"
        metrics = httpx.get(gateway.url + "/metrics").text
        assert 'spout_requests_total{route="/v1/chat/completions",status="429"} 1' in metrics
        assert 'spout_requests_total{route="/v1/responses",status="429"} 1' in metrics

        # Anthropic's API answers a spend limit you set with 400 invalid_request_error.
        with pytest.raises(anthropic.BadRequestError) as refused:
            anthropic_client(gateway.url, alice).messages.create(
                model="claude", max_tokens=20, messages=USER
            )
        assert refused.value.status_code == 400
        assert refused.value.body["error"]["type"] == "invalid_request_error"
        assert "max_spend" in refused.value.message
        assert len(faults.requests) == upstream_calls  # none of them reached the upstream

        # another key is not limited by alice's spend
        assert streamed(openai_client(gateway.url, bob)) == "".join(PIECES)
    totals = spent(keys)
    assert nano(totals, "alice") == to_nano(GPT_COST) * 3
    assert nano(totals, "bob") == to_nano(GPT_COST)


def test_anthropic_spend_counts_and_the_limit_holds_for_each_protocol(
    faults: FaultServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    carol = add_key(keys, "carol", max_spend=CLAUDE_COST)
    with run_gateway(config(faults, keys)) as gateway:
        client = anthropic_client(gateway.url, carol)
        with client.messages.stream(model="claude", max_tokens=20, messages=USER) as stream:
            assert "".join(stream.text_stream) == "".join(PIECES)
        assert nano(spent(keys), "carol") == to_nano(CLAUDE_COST)
        with pytest.raises(anthropic.BadRequestError, match="spent"):
            client.messages.create(model="claude", max_tokens=20, messages=USER)
        with pytest.raises(openai.RateLimitError) as caught:
            streamed(openai_client(gateway.url, carol))
        assert caught.value.code == "insufficient_quota"


# -- cut streams ------------------------------------------------------------------------------


def test_a_stream_cut_by_the_client_or_the_upstream_still_counts(
    faults: FaultServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    dave = add_key(keys, "dave")
    long = [f"w{i} " for i in range(200)]
    stream = openai_chat_stream(long)
    faults.route(None)
    faults.script(
        stream.reply(body=[*stream.upto(3), Stall(30)]),  # the client leaves meanwhile
        stream.reply(body=[*stream.upto(3), stream.error()]),  # the upstream fails mid-stream
    )
    with run_gateway(config(faults, keys, resume_window=0)) as gateway:
        client = openai_client(gateway.url, dave)
        with client.chat.completions.create(model="gpt", messages=USER, stream=True) as chunks:
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
        assert faults.wait_for_disconnect(timeout=5) is not None
        wait_for(lambda: nano(spent(keys), "dave") > 0)
        after_cut = nano(spent(keys), "dave")
        # what 3 words and the prompt cost: something, and less than a whole answer of 200
        assert 0 < after_cut < to_nano(9 * 0.15e-6 + 200 * 0.60e-6)

        with (
            pytest.raises(openai.APIError),
            client.chat.completions.create(model="gpt", messages=USER, stream=True) as chunks,
        ):
            for _ in chunks:
                pass
        assert nano(spent(keys), "dave") > after_cut
        metrics = httpx.get(gateway.url + "/metrics").text
    cost = next(line for line in metrics.splitlines() if line.startswith("spout_cost_usd_total"))
    assert cost.startswith('spout_cost_usd_total{model="gpt",key="dave"} ')
    assert to_nano(float(cost.split()[-1])) == pytest.approx(nano(spent(keys), "dave"), abs=2)


# -- kept across restarts, and shared through Redis --------------------------------------------


def test_spend_survives_a_restart(faults: FaultServer, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    erin = add_key(keys, "erin", max_spend=GPT_COST * 1.5)
    with run_gateway(config(faults, keys)) as gateway:
        assert streamed(openai_client(gateway.url, erin)) == "".join(PIECES)
    ledger = spend_path(keys)
    assert ledger.exists() and ledger.stat().st_mode & 0o777 == 0o600
    # A new app on the same files: erin's spend is still there, and so is under her limit...
    with run_gateway(config(faults, keys)) as gateway:
        assert streamed(openai_client(gateway.url, erin)) == "".join(PIECES)
    # ...and after this second response, past it, in a third app.
    with run_gateway(config(faults, keys)) as gateway:
        with pytest.raises(openai.RateLimitError) as caught:
            streamed(openai_client(gateway.url, erin))
        assert caught.value.code == "insufficient_quota"
        # spout's own wire says the same
        refused = httpx.post(
            gateway.url + "/v1/spout/stream",
            json={"model": "gpt", "messages": USER},
            headers={"authorization": f"Bearer {erin}"},
        )
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "insufficient_quota"
    assert nano(spent(keys), "erin") == to_nano(GPT_COST) * 2


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


def redis_spent(url: str, name: str) -> float:
    async def read() -> float:
        ledger = RedisLedger(url)
        try:
            return await ledger.spent(name)
        finally:
            await ledger.aclose()

    return asyncio.run(read())


def test_two_replicas_share_spend_through_redis(
    faults: FaultServer, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.txt"
    # Each replica answers once, at the same time: both count, then neither admits frank.
    frank = add_key(keys, "frank", max_spend=GPT_COST * 2)
    settings = config(faults, keys, redis_url=redis_url)
    faults.route(lambda request: openai_chat_stream(PIECES).reply(delay=0.05))
    with (
        run_gateway(settings, hub=MemoryHub()) as one,
        run_gateway(dataclasses.replace(settings), hub=MemoryHub()) as two,
    ):
        texts: list[str] = []
        threads = [
            threading.Thread(target=lambda g=g: texts.append(streamed(openai_client(g.url, frank))))
            for g in (one, two)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert texts == ["".join(PIECES)] * 2
        assert to_nano(redis_spent(redis_url, "frank")) == to_nano(GPT_COST) * 2
        for gateway in (one, two):
            with pytest.raises(openai.RateLimitError) as caught:
                streamed(openai_client(gateway.url, frank))
            assert caught.value.code == "insufficient_quota"
    assert not spend_path(keys).exists()  # with Redis, the spend is kept there only

    capsys.readouterr()
    assert cli_main(["serve", "keys", "list", "--keys", str(keys), "--redis", redis_url]) == 0
    assert capsys.readouterr().out == (
        f"frank  max_spend={GPT_COST * 2:.7f}  spent=$0.000008 (limit reached: refused)\n"
    )


def test_the_file_ledger_counts_every_charge_of_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt.spend"
    ledgers = [FileLedger(path), FileLedger(path)]  # as two processes on one host would

    def charge(ledger: FileLedger) -> None:
        for _ in range(200):
            ledger.charge("g", 0.000001)

    threads = [threading.Thread(target=charge, args=(ledger,)) for ledger in ledgers * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert ledgers[0].totals() == {"g": 0.0008}
        assert ledgers[1].spent_now("g") == 0.0008
        assert ledgers[1].spent_now("nobody") == 0.0
    finally:
        for ledger in ledgers:
            ledger.close()


async def test_the_redis_ledger_counts_every_charge_of_concurrent_writers(redis_url: str) -> None:
    ledgers = [
        RedisLedger(redis_url, prefix="test:spend:"),
        RedisLedger(redis_url, prefix="test:spend:"),
    ]
    try:
        for _ in range(20):
            await asyncio.gather(
                *(ledger.add("h", 0.000001) for ledger in ledgers for _ in range(10))
            )
        assert await ledgers[0].spent("h") == 0.0004
        assert await ledgers[1].spent("nobody") == 0.0
    finally:
        for ledger in ledgers:
            await ledger.aclose()


# -- the keys file and the CLI ------------------------------------------------------------------


def test_keys_add_max_spend_and_list_shows_spend_against_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.txt"
    assert (
        cli_main(["serve", "keys", "add", "gina", "--keys", str(keys), "--max-spend", "2.5"]) == 0
    )
    assert cli_main(["serve", "keys", "add", "hal", "--keys", str(keys), "--max-spend", "1"]) == 0
    assert cli_main(["serve", "keys", "add", "ivy", "--keys", str(keys)]) == 0
    capsys.readouterr()
    assert [(e.name, e.max_spend) for e in read_keys(keys)] == [
        ("gina", 2.5),
        ("hal", 1.0),
        ("ivy", None),
    ]
    assert " max_spend=2.5\n" in keys.read_text()

    ledger = FileLedger(spend_path(keys))
    ledger.charge("gina", 1.2345674)
    ledger.charge("hal", 1.0)
    ledger.close()
    assert cli_main(["serve", "keys", "list", "--keys", str(keys)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "gina  max_spend=2.5  spent=$1.234567 (49% of the limit)",
        "hal  max_spend=1  spent=$1.000000 (limit reached: refused)",
        "ivy  spent=$0.000000",
    ]

    for bad in ("0", "-3", "lots", "nan", "inf"):
        with pytest.raises(SystemExit) as exited:
            cli_main(["serve", "keys", "add", "j", "--keys", str(keys), "--max-spend", bad])
        assert exited.value.code == 2
        assert f"an amount in USD more than 0, not '{bad}'" in capsys.readouterr().err
    assert [e.name for e in read_keys(keys)] == ["gina", "hal", "ivy"]


def test_a_spend_limit_in_the_keys_file_must_be_an_amount(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    add_key(keys, "kim")
    line = keys.read_text().splitlines()[-1]
    for bad in ("max_spend=", "max_spend=0", "max_spend=ten", "max_spend=-1"):
        keys.write_text(f"{line} {bad}\n")
        with pytest.raises(ConfigurationError, match="line 1: max_spend must be an amount"):
            read_keys(keys)
    keys.write_text(f"{line} max_spend=0.75 requests_per_minute=3\n")
    (entry,) = read_keys(keys)
    assert (entry.max_spend, entry.requests_per_minute) == (0.75, 3)


# -- metrics ------------------------------------------------------------------------------------


def test_metrics_count_tokens_and_cost_by_model_and_key(
    faults: FaultServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    lee = add_key(keys, "lee")
    with run_gateway(config(faults, keys)) as gateway:
        streamed(openai_client(gateway.url, lee))
        streamed(openai_client(gateway.url, lee))
        anthropic_client(gateway.url, lee).messages.create(
            model="claude", max_tokens=20, messages=USER
        )
        text = httpx.get(gateway.url + "/metrics").text
    lines = text.splitlines()
    for line in (
        'spout_tokens_total{model="gpt",key="lee",type="input"} 18',
        'spout_tokens_total{model="gpt",key="lee",type="output"} 8',
        'spout_tokens_total{model="claude",key="lee",type="input"} 9',
        'spout_tokens_total{model="claude",key="lee",type="output"} 4',
        "# TYPE spout_tokens_total counter",
        "# TYPE spout_cost_usd_total counter",
    ):
        assert line in lines
    costs = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in lines
        if line.startswith("spout_cost_usd_total{")
    }
    assert costs.keys() == {
        'spout_cost_usd_total{model="gpt",key="lee"}',
        'spout_cost_usd_total{model="claude",key="lee"}',
    }
    assert costs['spout_cost_usd_total{model="gpt",key="lee"}'] == pytest.approx(2 * GPT_COST)
    assert costs['spout_cost_usd_total{model="claude",key="lee"}'] == pytest.approx(CLAUDE_COST)
    assert lee not in text


def test_without_keys_metrics_have_no_address_labels(faults: FaultServer) -> None:
    settings = GatewayConfig(routes=routes(faults), default="gpt")
    with run_gateway(settings) as gateway:
        streamed(openai_client(gateway.url, "anything"))
        text = httpx.get(gateway.url + "/metrics").text
    assert 'spout_tokens_total{model="gpt",key="",type="output"} 4' in text.splitlines()
    assert "127.0.0.1" not in text
