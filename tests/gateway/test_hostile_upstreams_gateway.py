"""The gateway in front of a hostile upstream (tests/hostile_upstream.py): every attack ends in
the client's protocol, bounded in memory, and the upstream is let go (issue #24).

The gzip bomb and the endless tool call are in test_gateway_limits.py; here are the redirect,
the line that never ends and the keep-alives that never turn into an event.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_server import run_gateway, upstream_config

from hostile_upstream import HostileUpstream, peak_rss_growth
from spout import ConfigurationError, Timeout
from spout.gateway._config import load_config

CHAT = "/v1/chat/completions"
REQUEST: dict[str, Any] = {"model": "up", "messages": [{"role": "user", "content": "x"}]}


def _last_error(body: str) -> dict[str, Any]:
    """The error object of a stream's last ``data:`` frame."""
    frames = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert frames, body[:500]
    last = json.loads(frames[-1])
    assert "error" in last, frames[-1][:500]
    return last["error"]  # type: ignore[no-any-return]


def _active(url: str) -> int:
    return int(httpx.get(url + "/healthz", timeout=5).json()["active_streams"])


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_a_redirecting_upstream_is_not_followed_and_its_location_not_shown(stream: bool) -> None:
    with HostileUpstream() as upstream:
        config = upstream_config(upstream.base("redirect"), options={"api_key": "sk-up-SECRET"})
        with run_gateway(config) as gateway:
            response = httpx.post(
                gateway.url + CHAT, json={**REQUEST, "stream": stream}, timeout=10
            )
            # Before any event: an HTTP status, the error in OpenAI's shape.
            assert response.status_code == 502, response.text
            message = response.json()["error"]["message"]
            assert "redirect" in message
            assert upstream.other_url.split("//")[1] not in response.text
            assert "sk-up-SECRET" not in response.text
        assert upstream.redirected == []  # the other origin never saw the request (nor its key)


def test_a_line_that_never_ends_is_cut_at_the_event_cap_and_the_upstream_let_go() -> None:
    with HostileUpstream() as upstream, peak_rss_growth() as growth:
        config = upstream_config(upstream.base("long-line"), resume_window=0)
        with run_gateway(config) as gateway:
            started = time.monotonic()
            with httpx.stream(
                "POST", gateway.url + CHAT, json={**REQUEST, "stream": True}, timeout=30
            ) as response:
                body = response.read().decode()
            error = _last_error(body) if response.status_code == 200 else response.json()["error"]
            assert "max_event_bytes" in error["message"], error
            assert time.monotonic() - started < 15
            assert _active(gateway.url) == 0
            served = upstream.wait_for_response("long-line", timeout=5)
            assert served is not None and served.client_left, served
    # The default cap is 16 MiB for one event: the gateway held about that, never the line.
    assert growth[0] < 200 * 1024 * 1024, growth[0]


def test_keep_alives_alone_hold_nothing_and_stop_when_the_client_leaves() -> None:
    # No event ever comes, so the gateway has no status to answer with yet: the client waits
    # for the response head. Once it gives up, the gateway must let the upstream go.
    with HostileUpstream(ping_every=0.01) as upstream, peak_rss_growth() as growth:
        config = upstream_config(upstream.base("keep-alive"), resume_window=0.5)
        with run_gateway(config) as gateway:
            outcome: list[BaseException] = []

            def impatient_client() -> None:
                try:
                    httpx.post(
                        gateway.url + CHAT,
                        json={**REQUEST, "stream": True},
                        timeout=httpx.Timeout(5, read=2.5),
                    )
                except BaseException as exc:  # the read timeout, expected
                    outcome.append(exc)

            client = threading.Thread(target=impatient_client)
            client.start()
            time.sleep(1.5)  # 150 pings: each dropped, none kept
            assert _active(gateway.url) == 1
            client.join(10)
            assert outcome and isinstance(outcome[0], httpx.ReadTimeout), outcome
            served = upstream.wait_for_response("keep-alive", timeout=5)
            assert served is not None and served.client_left, served
            deadline = time.monotonic() + 5
            while _active(gateway.url):
                assert time.monotonic() < deadline, "the stream outlived its client"
                time.sleep(0.05)
    assert growth[0] < 100 * 1024 * 1024, growth[0]


def test_a_routes_idle_timeout_ends_keep_alives_with_the_protocols_error() -> None:
    # Against an upstream it does not trust, an operator gives the route an idle timeout: a
    # comment is not progress, so the timeout fires while the pings go on.
    with HostileUpstream(ping_every=0.05) as upstream:
        config = upstream_config(
            upstream.base("keep-alive"), options={"timeout": Timeout(first_token=1.0)}
        )
        with run_gateway(config) as gateway:
            started = time.monotonic()
            response = httpx.post(gateway.url + CHAT, json={**REQUEST, "stream": True}, timeout=30)
            elapsed = time.monotonic() - started
            if response.status_code == 200:  # the error came as the stream's last frame
                error = _last_error(response.text)
            else:
                error = response.json()["error"]
            assert "time" in error["message"].lower(), error
            assert 0.9 < elapsed < 10, elapsed
            assert upstream.url.split("//")[1] not in response.text
            served = upstream.wait_for_response("keep-alive", timeout=5)
            assert served is not None and served.client_left, served


def test_a_routes_timeout_is_a_table_of_timeouts_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    route = '[models.up]\nprovider = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
    config.write_text(route + "timeout = {first_token = 60, idle = 30}\n")
    loaded = load_config(config)
    loaded.check()
    assert Timeout.coerce(loaded.routes["up"].timeout) == Timeout(first_token=60, idle=30)
    config.write_text(route + "timeout = {first_tokn = 60}\n")
    with pytest.raises(ConfigurationError, match="model 'up': timeout has no setting 'first_tokn'"):
        load_config(config).check()
