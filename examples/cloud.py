"""The clouds teams run on, and three more services, through one interface, on loopback.

Run it with ``python examples/cloud.py``: no account, key or network needed. One local server
speaks each provider's own streaming wire: AWS Bedrock's binary event stream (ConverseStream),
Vertex AI's Gemini and Claude routes, Azure OpenAI's deployments (with its content-filter
chunks), Mistral's and xAI's OpenAI-compatible chat, and Cohere's v2 chat events. spout reaches
each through ``base_url``, with the credentials that provider takes (a Bedrock API key, a
token from a ``token_provider``, Azure's ``api-key`` header, bearer keys), and the same loop
streams each answer and prints what the server was sent to authenticate.

Against the real services, leave ``base_url`` out and let each provider find its
credentials (docs/providers.md): AWS's chain for Bedrock, Google's Application Default
Credentials for Vertex AI, ``AZURE_OPENAI_API_KEY`` / ``AZURE_OPENAI_ENDPOINT`` for Azure.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from spout import create_llm

ANSWER = ["Rivers ", "run ", "to ", "the ", "sea."]


def sse(events: list[tuple[str | None, dict[str, Any]]]) -> bytes:
    """Server-Sent Events: an optional ``event:`` line, then the JSON ``data:``."""
    out = ""
    for name, data in events:
        out += (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
    return out.encode()


def event_stream(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    """AWS's event-stream framing: a prelude (total length, headers length, their CRC32),
    string headers, the JSON payload, and a CRC32 of everything before it."""
    out = b""
    for kind, payload in events:
        headers = b""
        for name, value in ((":event-type", kind), (":message-type", "event")):
            headers += bytes([len(name)]) + name.encode() + struct.pack("!BH", 7, len(value))
            headers += value.encode()
        body = json.dumps(payload).encode()
        prelude = struct.pack("!II", 12 + len(headers) + len(body) + 4, len(headers))
        message = prelude + struct.pack("!I", zlib.crc32(prelude)) + headers + body
        out += message + struct.pack("!I", zlib.crc32(message))
    return out


def openai_chat(model: str, *, azure: bool = False) -> bytes:
    """Chat completion chunks; Azure's first chunk has no choices, only the prompt's filter
    results, and its chunks carry content_filter_results."""
    filtered = {"hate": {"filtered": False, "severity": "safe"}}
    chunks: list[tuple[str | None, dict[str, Any]]] = []
    if azure:
        chunks.append(
            (
                None,
                {
                    "id": "",
                    "object": "",
                    "created": 0,
                    "model": "",
                    "choices": [],
                    "prompt_filter_results": [
                        {"prompt_index": 0, "content_filter_results": filtered}
                    ],
                },
            )
        )
    for i, piece in enumerate([*ANSWER, None]):
        choice: dict[str, Any] = {
            "index": 0,
            "delta": {"content": piece} if piece else {},
            "finish_reason": None if piece else "stop",
        }
        if azure and piece:
            choice["content_filter_results"] = filtered
        chunks.append(
            (
                None,
                {
                    "id": f"chatcmpl-{i}",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [choice],
                },
            )
        )
    chunks.append(
        (
            None,
            {
                "id": "chatcmpl-u",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            },
        )
    )
    return sse(chunks) + b"data: [DONE]\n\n"


def anthropic() -> bytes:
    """Anthropic's Messages events, as Vertex AI relays them for Claude."""
    message = {
        "id": "msg_vrtx_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "usage": {"input_tokens": 12, "output_tokens": 1},
    }
    events: list[tuple[str | None, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    events += [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )
        for piece in ANSWER
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 5},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return sse(events)


def gemini() -> bytes:
    """Gemini's chunks, as Vertex AI sends them (the last one counts the tokens)."""
    chunks: list[tuple[str | None, dict[str, Any]]] = []
    for i, piece in enumerate(ANSWER):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}}
        chunk: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": "gemini-2.5-flash",
            "responseId": "vertex-1",
        }
        if i == len(ANSWER) - 1:
            candidate["finishReason"] = "STOP"
            chunk["usageMetadata"] = {
                "promptTokenCount": 12,
                "candidatesTokenCount": 5,
                "totalTokenCount": 17,
            }
        chunks.append((None, chunk))
    return sse(chunks)


def bedrock() -> bytes:
    """ConverseStream's events."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    events += [
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
        for piece in ANSWER
    ]
    events += [
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        (
            "metadata",
            {
                "usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
                "metrics": {"latencyMs": 120},
            },
        ),
    ]
    return event_stream(events)


def cohere() -> bytes:
    """Cohere's v2 chat events."""
    events: list[tuple[str | None, dict[str, Any]]] = [
        (
            "message-start",
            {"id": "c-1", "type": "message-start", "delta": {"message": {"role": "assistant"}}},
        ),
        (
            "content-start",
            {
                "type": "content-start",
                "index": 0,
                "delta": {"message": {"content": {"type": "text", "text": ""}}},
            },
        ),
    ]
    events += [
        (
            "content-delta",
            {
                "type": "content-delta",
                "index": 0,
                "delta": {"message": {"content": {"text": piece}}},
            },
        )
        for piece in ANSWER
    ]
    events += [
        ("content-end", {"type": "content-end", "index": 0}),
        (
            "message-end",
            {
                "type": "message-end",
                "delta": {
                    "finish_reason": "COMPLETE",
                    "usage": {
                        "billed_units": {"input_tokens": 12, "output_tokens": 5},
                        "tokens": {"input_tokens": 12, "output_tokens": 5},
                    },
                },
            },
        ),
    ]
    return sse(events)


# How each request is told apart (by its path), and what it is answered with.
ROUTES: list[tuple[str, str, bytes]] = [
    ("/converse-stream", "application/vnd.amazon.eventstream", bedrock()),
    (":streamGenerateContent", "text/event-stream", gemini()),
    (":streamRawPredict", "text/event-stream", anthropic()),
    ("/openai/deployments/", "text/event-stream", openai_chat("gpt-4o", azure=True)),
    ("/v2/chat", "text/event-stream", cohere()),
    ("/chat/completions", "text/event-stream", openai_chat("m")),
]

# What each request carried to authenticate, in order.
SEEN: list[str] = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        auth = self.headers.get("Authorization", "")
        SEEN.append(
            f"api-key header ({self.headers['api-key']})"
            if self.headers.get("api-key")
            else "SigV4 signature"
            if auth.startswith("AWS4-HMAC-SHA256")
            else f"bearer token ({auth.removeprefix('Bearer ')})"
        )
        for marker, content_type, body in ROUTES:
            if marker in self.path:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
        self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    # AWS's credential chain starts with these variables (then the shared files, SSO and
    # instance roles); set here so the signed request below needs no AWS account.
    os.environ.pop("AWS_BEARER_TOKEN_BEDROCK", None)  # an API key would be used instead
    os.environ["AWS_ACCESS_KEY_ID"] = "AKIDEXAMPLE"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    model_id = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    llms = [
        # Signed with SigV4 by botocore (pip install 'spout[bedrock]')...
        create_llm("bedrock", model=model_id, region="us-east-1", base_url=url),
        # ...or a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK), sent as a bearer token.
        create_llm(
            "bedrock",
            model=model_id,
            region="us-east-1",
            base_url=url,
            api_key="bedrock-api-key-demo",
        ),
        # token_provider: any callable that returns a token (here a fixed one; in production,
        # leave it out and Google's Application Default Credentials are used).
        create_llm(
            "vertex",
            model="gemini-2.5-flash",
            project="my-project",
            location="us-central1",
            base_url=url,
            token_provider=lambda: "ya29.demo",
        ),
        create_llm(
            "vertex",
            model="claude-sonnet-4-5",
            project="my-project",
            location="us-east5",
            base_url=url,
            token_provider=lambda: "ya29.demo",
        ),
        create_llm(
            "azure",
            model="my-gpt-4o-deployment",
            base_url=url,
            api_version="2024-10-21",
            api_key="azure-key-demo",
        ),
        create_llm(
            "mistral",
            model="mistral-small-latest",
            base_url=url + "/v1",
            api_key="mistral-key-demo",
        ),
        create_llm("xai", model="grok-4", base_url=url + "/v1", api_key="xai-key-demo"),
        create_llm("cohere", model="command-a-03-2025", base_url=url, api_key="cohere-key-demo"),
    ]
    try:
        for llm in llms:
            with llm.generate_stream("Where do rivers go?") as stream:
                text = "".join(stream)
            response = stream.response
            usage = response.usage
            tokens = f"{usage.input_tokens}+{usage.output_tokens} tokens" if usage else "no usage"
            print(f"{llm.provider_name:8} {llm.model}: {text!r}")
            print(f"         finish {response.finish_reason}, {tokens}, sent {SEEN[-1]}")
    finally:
        for llm in llms:
            llm.close()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
