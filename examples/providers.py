"""Every remote provider through one interface, each pointed at a server on loopback.

Run it with ``python examples/providers.py``: no key and no network needed. A small local
server speaks each provider's own wire format (a short canned answer in Anthropic's,
Gemini's, Ollama's, TGI's and the OpenAI Responses API's streaming framing), and spout
reaches it through ``base_url``, exactly as it would reach a proxy or a self-hosted server.
The same loop then streams from each and prints the rebuilt response.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from spout import create_llm


def sse(*events: tuple[str | None, dict[str, Any]], crlf: bool = False) -> bytes:
    end = "\r\n\r\n" if crlf else "\n\n"
    out = ""
    for name, data in events:
        out += (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}{end}"
    return out.encode()


ANSWER = ["Rivers ", "run ", "to ", "the ", "sea."]

STREAMS: dict[str, tuple[str, bytes]] = {
    # path prefix -> (content type, body)
    "/v1/messages": (
        "text/event-stream",
        sse(
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-demo",
                        "content": [],
                        "usage": {"input_tokens": 12, "output_tokens": 1},
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            *[
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": t},
                    },
                )
                for t in ANSWER
            ],
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 6},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ),
    ),
    "/v1beta/models/": (
        "text/event-stream",
        sse(
            *[
                (None, {"candidates": [{"content": {"role": "model", "parts": [{"text": t}]}}]})
                for t in ANSWER[:-1]
            ],
            (
                None,
                {
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": [{"text": ANSWER[-1]}]},
                            "finishReason": "STOP",
                        }
                    ],
                    "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 6},
                },
            ),
            crlf=True,
        ),
    ),
    "/api/chat": (
        "application/x-ndjson",
        b"".join(
            [
                json.dumps(
                    {
                        "model": "llama3",
                        "message": {"role": "assistant", "content": t},
                        "done": False,
                    }
                ).encode()
                + b"\n"
                for t in ANSWER
            ]
            + [
                json.dumps(
                    {
                        "model": "llama3",
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "done_reason": "stop",
                        "prompt_eval_count": 12,
                        "eval_count": 6,
                    }
                ).encode()
                + b"\n"
            ]
        ),
    ),
    "/generate_stream": (
        "text/event-stream",
        b"".join(
            [
                b"data:"
                + json.dumps(
                    {
                        "token": {"id": i, "text": t, "logprob": -0.1, "special": False},
                        "generated_text": None,
                        "details": None,
                    }
                ).encode()
                + b"\n\n"
                for i, t in enumerate(ANSWER[:-1])
            ]
            + [
                b"data:"
                + json.dumps(
                    {
                        "token": {"id": 9, "text": ANSWER[-1], "logprob": -0.1, "special": False},
                        "generated_text": "".join(ANSWER),
                        "details": {
                            "finish_reason": "eos_token",
                            "generated_tokens": 6,
                            "input_length": 12,
                        },
                    }
                ).encode()
                + b"\n\n"
            ]
        ),
    ),
    "/v1/responses": (
        "text/event-stream",
        sse(
            (
                "response.created",
                {
                    "type": "response.created",
                    "response": {
                        "id": "resp_1",
                        "object": "response",
                        "model": "gpt-demo",
                        "status": "in_progress",
                    },
                },
            ),
            *[
                (
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "item_id": "msg_1",
                        "output_index": 0,
                        "content_index": 0,
                        "delta": t,
                    },
                )
                for t in ANSWER
            ],
            (
                "response.completed",
                {
                    "type": "response.completed",
                    "response": {
                        "id": "resp_1",
                        "object": "response",
                        "model": "gpt-demo",
                        "status": "completed",
                        "output": [
                            {
                                "type": "message",
                                "id": "msg_1",
                                "role": "assistant",
                                "content": [{"type": "output_text", "text": "".join(ANSWER)}],
                            }
                        ],
                        "usage": {"input_tokens": 12, "output_tokens": 6, "total_tokens": 18},
                    },
                },
            ),
        ),
    ),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type, body = next(
            value for prefix, value in STREAMS.items() if self.path.startswith(prefix)
        )
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        llms = {
            "anthropic": create_llm("anthropic", model="claude-demo", base_url=url, api_key="k"),
            "gemini": create_llm("gemini", model="gemini-demo", base_url=url, api_key="k"),
            "ollama": create_llm("ollama", model="llama3", base_url=url),
            "huggingface (TGI)": create_llm("huggingface", model="tgi", base_url=url),
            "openai (Responses API)": create_llm(
                "openai", model="gpt-demo", base_url=f"{url}/v1", api_key="k", api="responses"
            ),
        }
        for name, llm in llms.items():
            with llm:
                stream = llm.generate_stream("Where do rivers go?")
                text = "".join(stream)
                response = stream.response
                print(
                    f"{name:24s} {text!r}  finish={response.finish_reason} "
                    f"usage={response.usage.input_tokens}/{response.usage.output_tokens}"
                )
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
