"""The load server: streams OpenAI- or Anthropic-format SSE on loopback, as fast as asked.

The request's prompt (its last message) says what to send, so any client, SDKs included,
can drive it with one model and one client for a whole run:
``burst-20000`` is 20,000 events written in 64 KiB writes back to back; ``paced-2000`` is
2,000 events, one per write, ``--pace`` seconds apart (``paced-40:0.05`` sets the pace for one
response: 40 events, 50 ms apart), so that a client reads one event per
socket read (what a real model at ~100 tokens/s looks like to a client). The path picks the
format: ``/v1/chat/completions`` (OpenAI) or ``/v1/messages`` (Anthropic).

Run: ``python bench/server.py --port 0`` prints the port it listens on, then serves until
killed. It runs in its own process, so its CPU is not counted against the clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

WRITE = 64 * 1024


def openai_events(n: int) -> list[bytes]:
    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        payload = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1735689600,
            "model": "bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": f" tok{i % 100}"}) for i in range(n)]
    events.append(chunk({}, "stop"))
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1735689600,
        "model": "bench",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10},
    }
    events.append(b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events(n: int) -> list[bytes]:
    def event(name: str, payload: dict[str, object]) -> bytes:
        data = json.dumps({"type": name, **payload}, separators=(",", ":"))
        return f"event: {name}\ndata: {data}\n\n".encode()

    message = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "bench",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    events = [
        event("message_start", {"message": message}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("ping", {}),
    ]
    events += [
        event(
            "content_block_delta",
            {"index": 0, "delta": {"type": "text_delta", "text": f" tok{i % 100}"}},
        )
        for i in range(n)
    ]
    events.append(event("content_block_stop", {"index": 0}))
    events.append(
        event(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            },
        )
    )
    events.append(event("message_stop", {}))
    return events


_cache: dict[tuple[str, int], list[bytes]] = {}


def events_for(path: str, n: int) -> list[bytes]:
    kind = "anthropic" if path.startswith("/v1/messages") else "openai"
    key = (kind, n)
    if key not in _cache:
        _cache[key] = anthropic_events(n) if kind == "anthropic" else openai_events(n)
    return _cache[key]


def spec(request: dict[str, object]) -> str:
    """The run asked for, e.g. ``burst-20000``: the last message's text, else the model."""
    messages = request.get("messages")
    if isinstance(messages, list) and messages:
        content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
        if isinstance(content, list):  # content blocks
            content = next((b.get("text") for b in content if isinstance(b, dict)), None)
        if isinstance(content, str) and "-" in content:
            return content
    return str(request.get("model", "burst-100"))


def frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# Connections open now and the most open at once since the last ``GET /_peak``, which answers
# with that figure and starts counting again: how a benchmark checks that its streams really
# were open side by side.
connections = {"open": 0, "peak": 0}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pace: float) -> None:
    peak_before = connections["peak"]  # for /_peak, which must not count its own connection
    connections["open"] += 1
    connections["peak"] = max(connections["peak"], connections["open"])
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            if method == "GET":
                payload = b'{"object":"list","data":[]}'
                if path == "/_peak":
                    payload = b'{"peak":%d}' % max(peak_before, connections["open"] - 1)
                    connections["peak"] = connections["open"] - 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                await writer.drain()
                continue
            mode, _, count = spec(json.loads(body or b"{}")).partition("-")
            count, _, own_pace = count.partition(":")
            events = events_for(path, int(count or 100))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            if mode == "paced":
                for event in events:
                    writer.write(frame(event))
                    await writer.drain()
                    await asyncio.sleep(float(own_pace) if own_pace else pace)
            else:
                data = b"".join(events)
                for start in range(0, len(data), WRITE):
                    writer.write(frame(data[start : start + WRITE]))
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        connections["open"] -= 1
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pace", type=float, default=0.0005)
    args = parser.parse_args()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.pace), "127.0.0.1", args.port, backlog=2048
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    sys.stdout.close()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
