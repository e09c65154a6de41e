"""The gateway's WebSocket: several streamed requests on one connection, spout's own events.

Runs the gateway in this process (``create_app`` on uvicorn, the bundled model, a free
loopback port), then, over one WebSocket to ``/v1/ws``:

1. streams an answer event by event, and prints the final response the gateway sends;
2. starts a long answer and a short one at once, cancels the long one after a few events
   (its upstream stops at once), and lets the short one finish.

Run: python examples/gateway_websocket.py   (needs spout[gateway,local])
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from spout.gateway import GatewayConfig, Route, create_app


def request(request_id: str, prompt: str, max_tokens: int) -> str:
    return json.dumps(
        {
            "type": "request",
            "id": request_id,
            "model": "local",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
    )


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def stream_one(ws: ClientConnection) -> None:
    print("-- one answer, event by event")
    await ws.send(request("r1", "Name three rivers in Europe.", 40))
    kinds: dict[str, int] = {}
    while True:
        message = await receive(ws)
        if message["type"] == "start":
            print(f"(stream {message['stream_id']}: GET /v1/streams/<id> follows it too)")
        elif message["type"] == "event":
            event = message["event"]
            kinds[event["type"]] = kinds.get(event["type"], 0) + 1
            if event["type"] == "text":
                print(event["text"], end="", flush=True)
        else:
            break
    response = message["response"]
    print(f"\nevents: {kinds}")
    print(
        f"done: finish reason {response['finish_reason']}, "
        f"{response['usage']['output_tokens']} output tokens"
    )


async def cancel_one(ws: ClientConnection) -> None:
    print("\n-- two at once, the long one cancelled")
    await ws.send(request("long", "Tell me a long story about a dragon.", 300))
    await ws.send(request("short", "Say hello.", 12))
    texts = {"long": "", "short": ""}
    ended: dict[str, dict[str, Any]] = {}
    cancel_sent = False
    while len(ended) < 2:
        message = await receive(ws)
        request_id = message["id"]
        if message["type"] == "event" and message["event"]["type"] == "text":
            texts[request_id] += message["event"]["text"]
            if request_id == "long" and message["n"] >= 5 and not cancel_sent:
                await ws.send(json.dumps({"type": "cancel", "id": "long"}))
                cancel_sent = True
        elif message["type"] in ("done", "error"):
            ended[request_id] = message
    long_end = ended["long"]
    print(f"long: {long_end['type']} ({long_end['error']['type']}), kept {texts['long']!r}")
    print(f"short: {ended['short']['type']}, {ended['short']['response']['text']!r}")


async def main() -> None:
    config = GatewayConfig(routes={"local": Route("local", provider="local")}, default="local")
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}/v1/ws") as ws:
            await stream_one(ws)
            await cancel_one(ws)
    finally:
        server.should_exit = True
        await serving


if __name__ == "__main__":
    asyncio.run(main())
