"""Files in and out: an image and a PDF to Anthropic, an image to Gemini; an image, citations
and an unknown block back.

Run it with ``python examples/files.py``: no key and no network needed. A local server speaks
Anthropic's and Gemini's wires, and the example prints what spout sent each provider (every
file in its own shape), then what came back:
- a document citation from Anthropic;
- an image and web citations from Gemini;
- a block spout does not know, which arrives as a ``RawEvent`` and is never dropped.
"""

from __future__ import annotations

import base64
import json
import struct
import tempfile
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from spout import Citation, File, FileEnd, RawEvent, create_llm


def png(red: int, green: int, blue: int, size: int = 4) -> bytes:
    """A small one-colour PNG, made by hand (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack("!I", zlib.crc32(kind + data))
        return struct.pack("!I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + bytes([red, green, blue]) * size for _ in range(size))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack("!IIBBBBB", size, size, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def sse(events: list[tuple[str | None, dict[str, Any]]]) -> bytes:
    out = ""
    for name, data in events:
        out += (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
    return out.encode()


def anthropic_answer() -> bytes:
    """A text block that cites the PDF (char_location), then a block type spout does not
    know (as a newer API might send)."""
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [],
        "usage": {"input_tokens": 1200, "output_tokens": 1},
    }
    citation = {
        "type": "char_location",
        "cited_text": "Revenue grew 12% in Q3.",
        "document_index": 0,
        "document_title": "q3-report.pdf",
        "start_char_index": 0,
        "end_char_index": 23,
    }
    return sse([
        ("message_start", {"type": "message_start", "message": message}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": "", "citations": []}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "citations_delta", "citation": citation}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Revenue grew 12%; "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "the chart agrees."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "future_widget", "payload": {"x": 1}}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 9}}),
        ("message_stop", {"type": "message_stop"}),
    ])  # fmt: skip


def gemini_answer() -> bytes:
    """Text, an image (inlineData), and grounding metadata citing two web pages."""
    text = "Here is a red kite."
    image = base64.b64encode(png(220, 30, 30)).decode()
    grounding = {
        "groundingChunks": [
            {"web": {"uri": "https://example.org/kites", "title": "example.org"}},
            {"web": {"uri": "https://example.net/red", "title": "example.net"}},
        ],
        "groundingSupports": [
            {"segment": {"endIndex": len(text), "text": text}, "groundingChunkIndices": [0, 1]}
        ],
    }
    return sse([
        (None, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]}),
        (None, {"candidates": [{"content": {"role": "model", "parts": [
            {"inlineData": {"mimeType": "image/png", "data": image}}]}}]}),
        (None, {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                                "finishReason": "STOP", "groundingMetadata": grounding}],
                "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 1290}}),
    ])  # fmt: skip


SENT: dict[str, Any] = {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        if self.path.startswith("/v1/messages"):
            SENT["anthropic"], answer = body, anthropic_answer()
        else:
            SENT["gemini"], answer = body, gemini_answer()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


def shapes(provider: str) -> list[str]:
    """What each provider was sent for the files, in its own words (no base64 shown)."""
    content = SENT[provider]["contents" if provider == "gemini" else "messages"][-1]
    out = []
    for part in content.get("parts") or content.get("content"):
        if provider == "anthropic" and part["type"] != "text":
            source = part["source"]
            title = f", title {part['title']!r}" if "title" in part else ""
            out.append(f"{part['type']} block ({source['type']}, {source['media_type']}{title})")
        elif "inlineData" in part:
            out.append(f"inlineData ({part['inlineData']['mimeType']})")
    return out


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    folder = Path(tempfile.mkdtemp())
    chart = folder / "chart.png"
    chart.write_bytes(png(30, 90, 200))
    report = File(data=PDF, name="q3-report.pdf")  # a File from bytes; a path works as well

    claude = create_llm("anthropic", model="claude-sonnet-4-5", base_url=url, api_key="demo")
    gemini = create_llm("gemini", model="gemini-2.5-flash-image", base_url=url, api_key="demo")
    try:
        # Files in: the same call for both; each gets them in its own shape.
        question = "Does the chart match the report?"
        with claude.generate_stream(question, files=[chart, report]) as stream:
            for event in stream.events():
                if isinstance(event, Citation):
                    print(f"citation: {event.text!r} from {event.title!r}")
                elif isinstance(event, RawEvent):
                    print(f"unrecognised content kept: {event.type} {event.data}")
        print("anthropic was sent:", "; ".join(shapes("anthropic")))
        print(f"anthropic answered: {stream.response.text!r}")

        with gemini.generate_stream("Draw a red kite", files=[chart]) as stream:
            for event in stream.events():
                if isinstance(event, FileEnd):  # each file arrives once, whole
                    print(f"file arrived: {event.file.media_type}, {event.file.size} bytes")
        response = stream.response
        print("gemini was sent:", "; ".join(shapes("gemini")))
        print(f"gemini answered: {response.text!r}, finish {response.finish_reason}")
        for file in response.files:  # the same files, kept in the response
            path = folder / f"kite.{file.media_type.split('/')[1]}"
            path.write_bytes(file.data or b"")
            print(f"gemini's image saved: {path.name}, {path.stat().st_size} bytes")
        for citation in response.citations:
            print(f"gemini cites {citation.url} for {citation.text!r}")
    finally:
        claude.close()
        gemini.close()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
