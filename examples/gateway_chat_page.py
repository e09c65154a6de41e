"""The gateway's chat page and its conversations: a chat kept by the gateway, read back.

Run it with ``python examples/gateway_chat_page.py``: no key and no network needed. It starts
``spout serve``'s app in process (the bundled model, on a free loopback port), streams a
reply the way the chat page at ``/`` does — with the header ``x-spout-conversation: new`` —
and prints the stored conversation from ``GET /v1/conversations``. The store is a temporary
file here (``conversation_store``); by default it is spout's own, where ``spout
conversations list`` finds the page's chats too. Open the page with ``spout serve`` and a
browser at http://127.0.0.1:8000/.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import httpx
import uvicorn

from spout.gateway import GatewayConfig, Route, create_app


async def main() -> None:
    store = Path(tempfile.mkdtemp()) / "conversations.db"
    config = GatewayConfig(
        routes={"smol": Route("smol", provider="local")},  # the bundled SmolLM2, in process
        default="smol",
        conversation_store=store,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            page = await client.get("/")
            print(f"chat page: {url}/ ({page.status_code}, {page.headers['content-type']})")

            body = {
                "model": "smol",
                "messages": [{"role": "user", "content": "Name three rivers, briefly."}],
                "stream": True,
                "temperature": 0,
                "max_tokens": 40,
            }
            headers = {"x-spout-conversation": "new"}
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as response:
                conversation_id = response.headers["x-spout-conversation"]
                print(f"stream {response.headers['x-spout-stream-id']}:")
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        for choice in json.loads(line[6:])["choices"]:
                            print(choice["delta"].get("content") or "", end="", flush=True)
            print()

            listed = (await client.get("/v1/conversations")).json()["data"]
            for summary in listed:
                print(
                    f"stored: {summary['id']}  {summary['title']!r}  model {summary['model']}"
                    f"  {summary['turn_count']} turn(s)"
                )
            stored = (await client.get(f"/v1/conversations/{conversation_id}")).json()
            for message in stored["messages"]:
                print(f"  {message['role']}: {message['content'].strip()[:70]!r}")
    finally:
        server.should_exit = True
        await serving


if __name__ == "__main__":
    asyncio.run(main())
