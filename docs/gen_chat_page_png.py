"""Write docs/chat-page.png: the gateway's chat page with a real conversation, rendered.

Run: python docs/gen_chat_page_png.py (needs the gateway and local extras, Playwright's Python
package and Debian's /usr/bin/chromium; no browser is downloaded). It serves the bundled model
with a throwaway conversation store, asks a question in the page as a user would, waits for
the streamed answer to end, and takes the screenshot.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from spout.gateway import GatewayConfig, Route, create_app

OUT = Path(__file__).with_name("chat-page.png")
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROMPTS = [
    "Write a short Markdown list of three famous rivers, each with one **bold** fact.",
    "Show a one-line Python `print` call in a fenced code block.",
]


def main() -> None:
    store = Path(tempfile.mkdtemp()) / "conversations.db"
    options = {"temperature": 0, "max_tokens": 120}
    config = GatewayConfig(
        routes={"smollm2": Route("smollm2", provider="local", options=options)},
        default="smollm2",
        conversation_store=store,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1180, "height": 760})
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            for count, prompt in enumerate(PROMPTS, start=1):
                page.fill("#prompt", prompt)
                page.click("#send")
                page.wait_for_selector(f".message.assistant >> nth={count - 1}", state="attached")
                page.wait_for_function(
                    "n => { const r = document.querySelectorAll('.message.assistant');"
                    " return r.length === n && r[n - 1].dataset.state !== 'streaming'"
                    " && r[n - 1].dataset.state !== 'resuming'; }",
                    arg=count,
                    timeout=180_000,
                )
            page.wait_for_selector("#conversations button")
            page.screenshot(path=str(OUT))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(30)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
