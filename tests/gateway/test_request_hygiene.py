"""What the gateway takes from a request it does not trust yet (issue #24, points 6, 7, 9, 10).

A real gateway (``run_gateway``, or ``spout serve`` as a process where its own server
settings or its stderr matter) in front of a loopback upstream (``FaultServer``), called over
real connections: httpx, or a raw socket where a browser's or an attacker's bytes matter.

* the log: control characters in a request's path are escaped, one request one line;
* ``/metrics``: requests are counted by route template, whatever paths are sent;
* POST routes take ``application/json`` only (a cross-site ``text/plain`` POST needs no
  preflight), and only Host names the gateway serves (DNS rebinding);
* a WebSocket from a page whose name resolves to the gateway is refused;
* JSON nested too deeply in a field is a 400 naming the field, on every wire;
* ``X-Forwarded-For`` is believed only from ``--trusted-proxy`` peers.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_server import run_gateway, upstream_config

from fault_server import FaultServer, openai_chat_stream
from spout import ConfigurationError
from spout.gateway import GatewayConfig
from spout.gateway._hygiene import MAX_JSON_DEPTH
from spout.gateway._keys import add_key

CHAT = "/v1/chat/completions"
PIECES = ["All ", "good."]
JSON = {"content-type": "application/json"}


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    """An upstream answering every request with the same short chat completions stream."""
    with FaultServer() as server:
        server.route(lambda request: openai_chat_stream(PIECES).reply())
        yield server


def chat_body(**more: Any) -> dict[str, Any]:
    return {"model": "up", "messages": [{"role": "user", "content": "hi"}], "stream": True, **more}


@contextmanager
def serve(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``spout serve ARGS --port 0`` as a process; yields it and its base URL. Its stderr
    (the access log) is left to read once it is stopped."""
    process = subprocess.Popen(
        [sys.executable, "-m", "spout", "serve", "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "UPSTREAM_KEY": "sk-upstream"},
    )
    assert process.stderr is not None
    seen = []
    url = None
    for line in process.stderr:
        seen.append(line)
        found = re.search(r"spout serve: (http://\S+)", line)
        if found:
            url = found.group(1)
            break
    try:
        assert url, "spout serve did not say where it listens:\n" + "".join(seen)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        process.stderr.close()


def stop(process: subprocess.Popen[str]) -> str:
    """Stop a ``serve`` process and return what it wrote on stderr since it started."""
    process.terminate()
    _, rest = process.communicate(timeout=15)
    return rest


def upstream_args(faults: FaultServer) -> list[str]:
    return ["-m", "openai:up", "--base-url", faults.url + "/v1", "--api-key-env", "UPSTREAM_KEY"]


# -- point 6: the log ----------------------------------------------------------------------------

# A newline then what looks like a log line of its own; a NUL; a carriage return; an ANSI
# escape (clears a terminal); NEL (U+0085) and LINE SEPARATOR (U+2028), line breaks to some
# log readers; a right-to-left override (reorders what a reader sees).
FORGED = "INFO:     GET /v1/models 200 identity=admin"
HOSTILE_PATH = (
    "/v1/conversations/x%0a" + FORGED.replace(" ", "%20") + "%00%0d%1b[2J%c2%85%e2%80%a8%e2%80%ae"
)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202e]")


def test_a_path_with_control_characters_writes_one_escaped_log_line(faults: FaultServer) -> None:
    with serve(*upstream_args(faults)) as (process, url):
        response = httpx.get(url + HOSTILE_PATH, timeout=10)
        assert response.status_code == 404
        # The same characters sent raw, not %-encoded, are refused by the HTTP parser.
        raw = b"GET /v1/conversations/y\x1b[2J\xc2\x85 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        assert _raw(url, raw).startswith(b"HTTP/1.1 400")
        logged = stop(process)
    [line] = [line for line in logged.splitlines() if "/v1/conversations/" in line]
    assert line.startswith("INFO:     GET /v1/conversations/x\\x0aINFO:     GET /v1/models")
    assert "\\x00\\x0d\\x1b[2J\\x85\\u2028\\u202e 404 identity=" in line
    assert not [line for line in logged.splitlines() if line.startswith(FORGED)]
    assert not CONTROL.search(logged.replace("\n", ""))


def test_every_field_of_the_access_log_record_is_escaped(
    faults: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spout.gateway")
    with run_gateway(upstream_config(faults.url + "/v1", log_prompts=True)) as gateway:
        assert httpx.get(gateway.url + HOSTILE_PATH, timeout=10).status_code == 404
        prompt = {"role": "user", "content": "line one\nline two\u2028"}
        answered = httpx.post(gateway.url + CHAT, json=chat_body(messages=[prompt]), timeout=10)
        assert answered.status_code == 200
    records = [record for record in caplog.records if record.name == "spout.gateway"]
    assert len(records) == 2
    for record in records:
        assert not CONTROL.search(record.getMessage()), record.getMessage()
        for name in ("path", "prompt", "method", "identity"):
            value = record.__dict__.get(name)
            assert value is None or not CONTROL.search(value), (name, value)
    assert records[0].__dict__["path"].startswith("/v1/conversations/x\\x0aINFO:")
    assert records[1].__dict__["prompt"] == "line one\\x0aline two\\u2028"


def test_a_traceback_logged_by_the_gateway_keeps_each_message_on_its_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception the gateway did not expect is logged with its traceback; its message may
    quote a request (a model name, a field)."""
    import spout.gateway._guard  # noqa: F401  (installs the filter on the gateway's logger)

    caplog.set_level(logging.ERROR, logger="spout.gateway")
    try:
        try:
            raise KeyError("model\nINFO:     forged")
        except KeyError as exc:
            raise ValueError("no model 'm\r\nINFO:     forged\u2028'") from exc
    except ValueError:
        logging.getLogger("spout.gateway").exception("unexpected error for %s", "a\nb")
    lines = caplog.text.splitlines()
    assert not [line for line in lines if line.startswith("INFO:     forged")], lines
    assert "unexpected error for a\\x0ab" in caplog.text
    assert "KeyError: 'model\\nINFO:     forged'" in lines  # repr: already escaped
    assert "ValueError: no model 'm\\x0d\\x0aINFO:     forged\\u2028'" in lines
    assert "The above exception was the direct cause of the following exception:" in lines
    assert any(line.startswith('  File "') for line in lines)


# -- point 6: metrics ----------------------------------------------------------------------------


def test_metrics_count_requests_by_route_template_not_by_path(
    faults: FaultServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    key = add_key(keys, "alice")
    ids = [secrets.token_hex(8) for _ in range(150)]
    with (
        run_gateway(upstream_config(faults.url + "/v1", keys_file=keys)) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        for number, conversation in enumerate(ids):
            # Without a key (401), with one (404), and one 8 KB path.
            headers = {"authorization": f"Bearer {key}"} if number % 2 else {}
            response = client.get(f"{gateway.url}/v1/conversations/{conversation}", headers=headers)
            assert response.status_code == (404 if number % 2 else 401)
        long = client.get(f"{gateway.url}/v1/conversations/{'x' * 8000}")
        assert long.status_code == 401
        assert client.get(gateway.url + "/v1/conversations").status_code == 401
        page = client.get(gateway.url + "/metrics").text
    series = [line for line in page.splitlines() if line.startswith("spout_requests_total{")]
    assert sorted(series) == [
        'spout_requests_total{route="/v1/conversations",status="401"} 1',
        'spout_requests_total{route="/v1/conversations/{conversation_id}",status="401"} 76',
        'spout_requests_total{route="/v1/conversations/{conversation_id}",status="404"} 75',
    ]
    assert not [conversation for conversation in ids if conversation in page]
    assert "xxxxxxxx" not in page
    assert len(page) < 10_000


# -- point 7: JSON bodies only, served Host names only ---------------------------------------------

POST_ROUTES = {
    CHAT: chat_body(),
    "/v1/messages": {**chat_body(), "max_tokens": 16},
    "/v1/responses": {"model": "up", "input": "hi", "stream": True},
    "/v1/spout/stream": chat_body(),
}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_post_that_is_not_declared_json_is_refused_unread(
    faults: FaultServer, content_type: str | None
) -> None:
    """What a page on another site may send with ``fetch(..., {mode: "no-cors"})`` and no
    preflight: the body is JSON, the Content-Type is not."""
    headers = {"origin": "https://evil.example"}
    if content_type is not None:
        headers["content-type"] = content_type
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        for path, body in POST_ROUTES.items():
            response = client.post(gateway.url + path, content=json.dumps(body), headers=headers)
            assert response.status_code == 415, (path, response.text)
            error = response.json()["error"]
            assert "Content-Type: application/json" in error["message"]
            assert (content_type or "none") in error["message"]
            if path == "/v1/messages":  # in the client's protocol's shape
                assert response.json()["type"] == "error"
                assert error["type"] == "invalid_request_error"
        declared = client.post(
            gateway.url + CHAT,
            content=json.dumps(chat_body()),
            headers={"content-type": "Application/JSON; charset=utf-8"},
        )
        assert declared.status_code == 200
    assert len(faults.requests) == 1


def _raw(url: str, request: bytes) -> bytes:
    """Send ``request`` as it is on a new connection to ``url``; the answer's first bytes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_a_host_name_the_gateway_does_not_serve_is_refused(faults: FaultServer) -> None:
    """DNS rebinding: a page at http://evil.example:PORT whose name now resolves to 127.0.0.1
    calls the gateway as a same-origin page, sending ``Host: evil.example:PORT``."""
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        port = gateway.url.rsplit(":", 1)[1]
        for host in (f"evil.example:{port}", "127.0.0.1.evil.example", "localhost:x", "[::2]"):
            response = client.post(gateway.url + CHAT, json=chat_body(), headers={"host": host})
            assert response.status_code == 421, (host, response.text)
            assert "does not answer to the host name" in response.json()["error"]["message"]
            assert "--allowed-host" in response.json()["error"]["message"]
            assert client.get(gateway.url + "/", headers={"host": host}).status_code == 421
        for host in (f"localhost:{port}", "LOCALHOST.", f"127.0.0.1:{port}", f"[::1]:{port}"):
            response = client.post(gateway.url + CHAT, json=chat_body(), headers={"host": host})
            assert response.status_code == 200, (host, response.text)
        # A client with no Host at all is no browser: served.
        answer = _raw(gateway.url, b"GET /healthz HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), answer
    assert len(faults.requests) == 4


def test_allowed_hosts_and_a_wildcard_address_serve_more_names(
    faults: FaultServer, tmp_path: Path
) -> None:
    base = faults.url + "/v1"
    allowed = upstream_config(base, allowed_hosts=("gw.example.com", "*.corp.example"))
    with run_gateway(allowed) as gateway:
        for host, status in (
            ("gw.example.com", 200),
            ("GW.example.com:8443", 200),
            ("a.b.corp.example", 200),
            ("corp.example", 421),
            ("evil.example", 421),
        ):
            got = httpx.get(gateway.url + "/healthz", headers={"host": host}, timeout=10)
            assert got.status_code == status, host
    # On every interface (keys required), the name a client uses is not known: any is served.
    keys = tmp_path / "keys.txt"
    add_key(keys, "alice")
    with run_gateway(upstream_config(base, host="0.0.0.0", keys_file=keys)) as gateway:
        got = httpx.get(gateway.url + "/healthz", headers={"host": "203.0.113.9:80"}, timeout=10)
        assert got.status_code == 200


def test_allowed_hosts_and_trusted_proxies_that_cannot_work_are_refused_by_name() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"allowed_hosts": ("https://gw.example.com",)}, "allowed_hosts: 'https://gw.example"),
        ({"allowed_hosts": ("gw.example.com:443",)}, "no scheme or port"),
        ({"trusted_proxies": ("proxy.example",)}, "trusted_proxies: 'proxy.example'"),
    ]
    for settings, named in cases:
        with pytest.raises(ConfigurationError, match=re.escape(named)):
            upstream_config("http://127.0.0.1:9/v1", **settings).check()
    upstream_config(
        "http://127.0.0.1:9/v1",
        allowed_hosts=("[fd00::1]", "*"),
        trusted_proxies=("10.0.0.0/8", "::1", "*"),
    ).check()


def _handshake(url: str, host: str, origin: str) -> bytes:
    """A browser's WebSocket handshake to ``/v1/ws``, from a page at ``origin``."""
    return _raw(
        url,
        (
            f"GET /v1/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        ).encode(),
    )


def test_a_websocket_from_a_rebound_page_is_refused(faults: FaultServer) -> None:
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        port = gateway.url.rsplit(":", 1)[1]
        evil = f"evil.example:{port}"
        refused = _handshake(gateway.url, evil, f"http://{evil}")
        assert refused.startswith(b"HTTP/1.1 403"), refused
        own = _handshake(gateway.url, f"127.0.0.1:{port}", gateway.url)
        assert own.startswith(b"HTTP/1.1 101"), own


# -- point 9: JSON nested too deeply -------------------------------------------------------------

DEPTH = 1010
DEEP = '{"a":' * DEPTH + "1" + "}" * DEPTH
PART = {"type": "text", "text": "hi", "cache_control": "DEEP"}
SCHEMA = {"type": "object", "properties": "DEEP"}
RESPONSES_TOOL = {"type": "function", "name": "f", "parameters": SCHEMA}

# route -> (body with "DEEP" where the nesting goes, the field the 400 must name)
DEEP_BODIES = {
    "openai tool": (
        CHAT,
        chat_body(tools=[{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}]),
        "tools[0].function.parameters",
    ),
    "openai part": (CHAT, chat_body(messages=[{"role": "user", "content": [PART]}]), None),
    "anthropic tool": (
        "/v1/messages",
        {**chat_body(max_tokens=16), "tools": [{"name": "f", "input_schema": SCHEMA}]},
        "tools[0].input_schema",
    ),
    "anthropic part": (
        "/v1/messages",
        {**chat_body(max_tokens=16), "messages": [{"role": "user", "content": [PART]}]},
        None,
    ),
    "responses tool": (
        "/v1/responses",
        {"model": "up", "input": "hi", "stream": True, "tools": [RESPONSES_TOOL]},
        "tools[0].parameters",
    ),
    "responses part": (
        "/v1/responses",
        {"model": "up", "input": [{"role": "user", "content": [PART]}], "stream": True},
        "input[0].content[0]",
    ),
    "spout tool": (
        "/v1/spout/stream",
        chat_body(tools=[{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}]),
        "tools[0].function.parameters",
    ),
}


@pytest.mark.parametrize("case", sorted(DEEP_BODIES))
def test_json_nested_too_deeply_in_a_field_is_a_400_naming_it(
    faults: FaultServer, case: str
) -> None:
    path, body, field = DEEP_BODIES[case]
    field = field or "messages[0].content[0]"
    raw = json.dumps(body).replace('"DEEP"', DEEP)
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        httpx.Client(timeout=10) as client,
    ):
        headers = {**JSON, "x-spout-conversation": "new"}
        response = client.post(gateway.url + path, content=raw, headers=headers)
        assert response.status_code == 400, response.text
        message = response.json()["error"]["message"]
        assert message.startswith(f"{field}"), message
        assert f"nested too deeply: a request's JSON may nest at most {MAX_JSON_DEPTH}" in message
        # Nothing was kept, nothing sent upstream.
        assert client.get(gateway.url + "/v1/conversations").json()["data"] == []
        # A schema as deep as the limit allows still goes through.
        shallow = json.dumps(body).replace('"DEEP"', '{"a":' * 40 + "1" + "}" * 40)
        assert client.post(gateway.url + path, content=shallow, headers=JSON).status_code == 200
    assert len(faults.requests) == 1


def test_a_websocket_request_nested_too_deeply_is_an_error_naming_the_field(
    faults: FaultServer,
) -> None:
    from websockets.sync.client import connect

    tools = [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}]
    message = json.dumps({"type": "request", "id": "r1", **chat_body(tools=tools)})
    with (
        run_gateway(upstream_config(faults.url + "/v1")) as gateway,
        connect(gateway.url.replace("http", "ws", 1) + "/v1/ws") as ws,
    ):
        ws.send(message.replace('"DEEP"', DEEP))
        answer = json.loads(ws.recv(timeout=10))
    assert answer["type"] == "error", answer
    assert answer["error"]["message"].startswith("tools[0].function.parameters is nested too")
    assert answer["error"]["param"] == "tools[0].function.parameters"
    assert not faults.requests


# -- point 10: X-Forwarded-For -------------------------------------------------------------------


def _limited_config(faults: FaultServer, tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
default = "up"
[models.up]
provider = "openai"
model = "m"
base_url = "{faults.url}/v1"
api_key = "sk-test"
max_retries = 0
[limits]
requests_per_minute = 2
""",
        encoding="utf-8",
    )
    return path


def _statuses(url: str) -> list[int]:
    """Three requests, each claiming another client address."""
    with httpx.Client(timeout=10) as client:
        return [
            client.post(
                url + CHAT, json=chat_body(), headers={"x-forwarded-for": f"203.0.113.{n}"}
            ).status_code
            for n in range(3)
        ]


def test_x_forwarded_for_from_a_peer_not_trusted_changes_nothing(
    faults: FaultServer, tmp_path: Path
) -> None:
    """Without keys a caller is its address: a local client naming another one in
    X-Forwarded-For must not get a fresh rate limit each time."""
    with serve("--config", str(_limited_config(faults, tmp_path))) as (_, url):
        assert _statuses(url) == [200, 200, 429]


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(
    faults: FaultServer, tmp_path: Path
) -> None:
    config = str(_limited_config(faults, tmp_path))
    with serve("--config", config, "--trusted-proxy", "127.0.0.1") as (_, url):
        assert _statuses(url) == [200, 200, 200]
    refused = subprocess.run(
        [sys.executable, "-m", "spout", "serve", "--config", config, "--trusted-proxy", "lb"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "trusted_proxies: 'lb' is not an IP address or network" in refused.stderr


def test_a_config_file_sets_allowed_hosts_and_trusted_proxies(tmp_path: Path) -> None:
    from spout.gateway._config import load_config

    path = tmp_path / "gateway.toml"
    path.write_text(
        'allowed_hosts = ["gw.example.com"]\ntrusted_proxies = ["10.0.0.5"]\n', encoding="utf-8"
    )
    config = load_config(path)
    assert config.allowed_hosts == ("gw.example.com",)
    assert config.trusted_proxies == ("10.0.0.5",)
    assert GatewayConfig().allowed_hosts == GatewayConfig().trusted_proxies == ()
    path.write_text('allowed_hosts = "gw.example.com"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="allowed_hosts must be a list of strings"):
        load_config(path)
