"""The chat page at ``/``, in headless Chromium: streaming, stop, safe Markdown, the model
picker, stored conversations, and resuming after a dropped connection.

The browser is Debian's ``/usr/bin/chromium`` driven by Playwright's sync API (no downloaded
browser). The gateway runs in a thread (gateway_server.run_gateway) in front of the loopback
FaultServer, paced so the page is read while the upstream is still sending.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_server import RunningGateway, run_gateway, upstream_config
from playwright.sync_api import Browser, FilePayload, Page, sync_playwright

from fault_server import FaultServer, Reply, openai_chat_stream
from replay_server import transcript
from spout import Turn
from spout.conversations import Store, new_id
from spout.gateway import GatewayConfig, Route

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PIECES = [f"w{i} " for i in range(40)]
FULL = "".join(PIECES)
LAST_REPLY = ".message.assistant >> nth=-1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def page_errors() -> list[str]:
    return []


def open_page(browser: Browser, gateway: RunningGateway, errors: list[str], **context: Any) -> Page:
    page = browser.new_context(**context).new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gateway.url + "/")
    page.wait_for_selector("body[data-ready=true]")
    return page


def ask(page: Page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.click("#send")


def reply_text(page: Page) -> str:
    return page.locator(LAST_REPLY).get_attribute("data-text") or ""


def reply_state(page: Page) -> str | None:
    return page.locator(LAST_REPLY).get_attribute("data-state")


def wait_for_reply(page: Page, pattern: str, timeout: float = 10_000) -> None:
    """Until the last reply's text matches ``pattern`` (a regular expression)."""
    page.wait_for_function(
        "pattern => { const all = document.querySelectorAll('.message.assistant');"
        " const last = all[all.length - 1];"
        " return !!last && new RegExp(pattern).test(last.dataset.text || ''); }",
        arg=pattern,
        timeout=timeout,
    )


def wait_for_state(page: Page, state: str, timeout: float = 10_000) -> None:
    """Wait until the latest reply is in ``state`` (an earlier one already in it is no sign)."""
    page.wait_for_function(
        """state => {
            const replies = document.querySelectorAll(".message.assistant");
            return replies.length > 0 && replies[replies.length - 1].dataset.state === state;
        }""",
        arg=state,
        timeout=timeout,
    )


def drop_connections(gateway: RunningGateway) -> int:
    """Abort every TCP connection the gateway holds open, as a network failure would."""

    async def drop() -> int:
        connections = list(gateway.server.server_state.connections)
        for connection in connections:
            connection.transport.abort()
        return len(connections)

    return int(gateway.call(drop()))


def test_tokens_show_as_they_arrive_and_the_chat_is_kept(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.05))
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        page = open_page(browser, gateway, page_errors)
        ask(page, "Count to forty.")
        wait_for_reply(page, r"w3 ")
        # Read while the upstream is still sending: part of the text is on the page already.
        partial = reply_text(page)
        assert reply_state(page) == "streaming"
        assert FULL.startswith(partial) and partial != FULL
        assert "w3" in page.locator(LAST_REPLY).inner_text()
        assert not faults.disconnects

        wait_for_state(page, "done")
        assert reply_text(page) == FULL
        assert page.locator(".message.user").inner_text().endswith("Count to forty.")
        # The chat is stored and listed, under its first prompt.
        page.wait_for_selector("#conversations button:has-text('Count to forty.')")
        assert page.locator("#conversations button.current").count() == 1
        (request,) = faults.requests
        assert request.json()["stream"] is True
    assert not page_errors


def test_a_refusal_shows_marked_and_goes_back_with_the_chat(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    body, expected = transcript("openai_chat", "refusal")
    events = [event + b"\n\n" for event in body.split(b"\n\n") if event.strip()]
    faults.script(
        Reply(headers={"Content-Type": "text/event-stream"}, body=events, delay=0.01),
        openai_chat_stream(["Because ", "it is unsafe."]).reply(),
    )
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        page = open_page(browser, gateway, page_errors)
        ask(page, "How do I pick my neighbour's lock?")
        wait_for_state(page, "done")
        # Shown, and marked as a refusal: it came as delta.refusal, not as text.
        assert reply_text(page) == expected["refusal"]
        assert page.locator(LAST_REPLY).locator(".note").inner_text() == "the model refused"
        ask(page, "Why not?")
        wait_for_reply(page, "it is unsafe")
        wait_for_state(page, "done")
        # The history the page sends keeps it as a refusal; this upstream (not OpenAI's own
        # API) gets it as the assistant's text.
        sent = faults.requests[-1].json()["messages"]
        assert {"role": "assistant", "content": expected["refusal"]} in sent

        # Stored as a refusal, and shown as one when the conversation is loaded again.
        again = open_page(browser, gateway, page_errors)
        again.locator("#conversations button >> nth=0").click()
        again.wait_for_selector(".message.assistant >> nth=1")
        first = again.locator(".message.assistant >> nth=0")
        assert first.get_attribute("data-text") == expected["refusal"]
        assert first.locator(".note").inner_text() == "the model refused"
    with Store() as store:
        (conversation,) = store.list()
        turns = store.turns(conversation.id)
    assert [(turn.text, turn.refusal) for turn in turns] == [
        ("", expected["refusal"]),
        ("Because it is unsafe.", None),
    ]
    assert not page_errors


def test_stop_cancels_the_upstream_and_keeps_the_partial_text(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    stream = openai_chat_stream(PIECES)
    faults.script(stream.reply(delay=0.05))
    # A long resume window: only the explicit cancel can stop the upstream this fast.
    config = upstream_config(faults.url + "/v1", resume_window=30)
    with run_gateway(config) as gateway:
        page = open_page(browser, gateway, page_errors)
        deletes: list[str] = []
        page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)
        ask(page, "Count slowly.")
        wait_for_reply(page, r"w2 ")
        page.click("#stop")

        disconnect = faults.wait_for_disconnect(timeout=2)
        assert disconnect is not None, "the upstream kept sending after stop"
        assert disconnect.events_sent < len(stream.complete())
        wait_for_state(page, "stopped")
        shown = reply_text(page)
        assert shown and FULL.startswith(shown) and shown != FULL
        assert page.locator(LAST_REPLY).locator(".note").inner_text() == "stopped"
        stream_id = page.locator("#messages").get_attribute("data-stream-id")
        assert deletes == [f"{gateway.url}/v1/streams/{stream_id}"]
        assert page.locator("#send").is_enabled()

        # Kept in the store, marked as Session marks a cut turn.
        with httpx.Client(base_url=gateway.url) as client:
            (summary,) = client.get("/v1/conversations").json()["data"]
            stored = client.get(f"/v1/conversations/{summary['id']}").json()
        assistant = stored["messages"][-1]
        assert assistant["incomplete"] == "cancelled"
        assert assistant["content"].startswith(shown)
    assert not page_errors


HOSTILE = (
    "# Title\n\n"
    "Some **bold**, *italic* and `<b>code</b>`.\n\n"
    "<script>window.__pwned = 'script'</script>\n\n"
    "<img src=x onerror=\"window.__pwned = 'img'\">\n\n"
    "[click me](javascript:window.__pwned='link') and [safe](https://example.com/a?b=1)\n\n"
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)\n\n"
    "- one\n- two <svg onload=\"window.__pwned = 'svg'\"></svg>\n\n"
    "```html\n<iframe src=\"javascript:window.__pwned = 'iframe'\"></iframe>\n```\n"
)


def test_markdown_renders_and_model_output_cannot_run_script(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    # Cut at awkward places, so tags and links arrive in pieces while the page re-renders.
    pieces = [HOSTILE[i : i + 7] for i in range(0, len(HOSTILE), 7)]
    faults.script(openai_chat_stream(pieces).reply(delay=0.005))
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        # The page's CSP is bypassed here, so only the renderer stands between the model and
        # the page: what is checked is that it never makes markup from text.
        page = open_page(browser, gateway, page_errors, bypass_csp=True)
        page.evaluate("window.__pwned = undefined")
        ask(page, "Say something nasty.")
        wait_for_state(page, "done")
        assert reply_text(page) == HOSTILE
        reply = page.locator(LAST_REPLY)
        page.locator(LAST_REPLY).get_by_text("click me", exact=False).click()
        assert page.evaluate("window.__pwned") is None

        assert page.locator("#messages script, #messages img, #messages svg").count() == 0
        assert page.locator("#messages iframe").count() == 0
        hrefs = reply.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert hrefs == ["https://example.com/a?b=1"]
        assert reply.locator("a").get_attribute("rel") == "noopener noreferrer nofollow"
        assert reply.locator("h1").inner_text() == "Title"
        assert reply.locator("strong").inner_text() == "bold"
        assert reply.locator("em").inner_text() == "italic"
        assert reply.locator("p code").inner_text() == "<b>code</b>"
        assert reply.locator("li").all_inner_texts() == [
            "one",
            "two <svg onload=\"window.__pwned = 'svg'\"></svg>",
        ]
        assert "<iframe src=" in reply.locator("pre code").inner_text()
        text = reply.locator(".body").inner_text()
        assert "<script>window.__pwned = 'script'</script>" in text
        assert "<img src=x onerror=" in text
        assert "[click me](javascript:window.__pwned='link')" in text
        assert "[data](data:text/html;base64," in text
    assert not page_errors


def test_the_page_is_served_with_a_strict_content_security_policy(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        page = browser.new_context().new_page()
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        response = page.goto(gateway.url + "/")
        assert response is not None and response.ok
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        page.wait_for_selector("body[data-ready=true]")
        # Inline script does not run on the page, whoever put it there.
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.__inline = 1'; document.body.append(s); }"
        )
        assert page.evaluate("window.__inline") is None
        with httpx.Client(base_url=gateway.url) as client:
            script = client.get("/static/chat.js")
            assert script.headers["content-type"].startswith("text/javascript")
            assert "innerHTML" not in script.text.replace("no innerHTML", "")
            assert client.get("/static/nothing.js").status_code == 404
    assert not page_errors


def test_the_model_picker_lists_the_models_and_picks_one(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    faults.script(openai_chat_stream(["Hi."]).reply())
    options = {"api_key": "sk-test", "max_retries": 0}
    base = faults.url + "/v1"
    config = GatewayConfig(
        routes={
            "up": Route("up", provider="openai", model="m", base_url=base, options=options),
            "big": Route("big", provider="openai", model="m-big", base_url=base, options=options),
        },
        default="up",
    )
    with run_gateway(config) as gateway:
        page = open_page(browser, gateway, page_errors)
        names = page.locator("#model option").evaluate_all("options => options.map(o => o.value)")
        assert names == ["big", "up"]
        page.select_option("#model", "big")
        ask(page, "Hello?")
        wait_for_state(page, "done")
        (request,) = faults.requests
        assert request.json()["model"] == "m-big"
    assert not page_errors


def test_the_conversation_list_shows_stored_ones_and_loads_one(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    conversation_id = new_id()
    with Store() as store:  # the test's own SPOUT_HOME, the gateway's default store
        store.append_turns(
            conversation_id,
            [
                Turn(
                    messages=(
                        {"role": "user", "content": "Name a river."},
                        {"role": "assistant", "content": "The **Danube**."},
                    ),
                    model="m",
                    provider="openai",
                )
            ],
        )
    faults.script(openai_chat_stream(["It flows east."]).reply())
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        page = open_page(browser, gateway, page_errors)
        entry = page.locator(f"#conversations button[data-id='{conversation_id}']")
        assert entry.locator(".title").inner_text() == "Name a river."
        assert "up" in entry.locator(".meta").inner_text()
        entry.click()
        page.wait_for_selector(".message.assistant strong")
        assert page.locator(".message.assistant strong").inner_text() == "Danube"
        assert page.locator(".message.user").inner_text().endswith("Name a river.")

        # Going on with it sends the history and adds a turn to the same conversation.
        ask(page, "Which way?")
        wait_for_state(page, "done", timeout=10_000)
        page.wait_for_selector(".message.assistant >> nth=1")
        (request,) = faults.requests
        assert [m["content"] for m in request.json()["messages"]] == [
            "Name a river.",
            "The **Danube**.",
            "Which way?",
        ]
        assert request.headers.get("x-spout-conversation") is None  # not sent upstream
    with Store() as store:
        turns = store.turns(conversation_id)
    assert [turn.text for turn in turns] == ["The **Danube**.", "It flows east."]
    assert turns[1].messages[0] == {"role": "user", "content": "Which way?"}
    assert not page_errors


def test_a_dropped_connection_resumes_without_missing_or_repeated_text(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.05))
    with run_gateway(upstream_config(faults.url + "/v1", resume_window=10)) as gateway:
        page = open_page(browser, gateway, page_errors)
        resumes: list[dict[str, str]] = []
        page.on(
            "request",
            lambda r: (
                resumes.append(r.headers) if "/v1/streams/" in r.url and r.method == "GET" else None
            ),
        )
        ask(page, "Count, and survive a network cut.")
        wait_for_reply(page, r"w5 ")
        assert drop_connections(gateway) >= 1

        wait_for_state(page, "done", timeout=15_000)
        assert reply_text(page) == FULL
        assert re.fullmatch(
            r"(w\d+ ){40}", page.locator(LAST_REPLY).locator(".body").inner_text() + " "
        )
        assert resumes, "the page did not resume through /v1/streams"
        assert int(resumes[0]["last-event-id"]) > 0
        # The upstream was read once, to its end: nobody paid for a second answer.
        assert len(faults.requests) == 1
        assert not faults.disconnects
        with httpx.Client(base_url=gateway.url) as client:
            (summary,) = client.get("/v1/conversations").json()["data"]
            stored = client.get(f"/v1/conversations/{summary['id']}").json()
        assert stored["messages"][-1] == {"role": "assistant", "content": FULL}
    assert not page_errors


def test_a_reload_mid_answer_picks_the_reply_up_again(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    faults.script(openai_chat_stream(PIECES).reply(delay=0.05))
    with run_gateway(upstream_config(faults.url + "/v1", resume_window=10)) as gateway:
        page = open_page(browser, gateway, page_errors)
        ask(page, "Count, and survive a reload.")
        wait_for_reply(page, r"w5 ")
        page.reload()
        # The chat is back (the prompt, then the reply following the same stream again).
        page.wait_for_selector(".message.user")
        assert page.locator(".message.user").inner_text().endswith("Count, and survive a reload.")
        wait_for_state(page, "done", timeout=15_000)
        assert reply_text(page) == FULL
        assert page.locator(".message.assistant").count() == 1
        # The upstream was read once, to its end, through the reload.
        assert len(faults.requests) == 1
        assert not faults.disconnects
        # And once done, a second reload does not pick anything up again.
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert page.locator(".message").count() == 0
    assert not page_errors


def test_a_gateway_with_keys_asks_the_page_for_one(
    browser: Browser, faults: FaultServer, page_errors: list[str], tmp_path: Path
) -> None:
    from spout.gateway._keys import add_key

    keys = tmp_path / "keys.txt"
    key = add_key(keys, "page")
    faults.script(openai_chat_stream(PIECES[:5]).reply())
    config = upstream_config(faults.url + "/v1", keys_file=keys)
    with run_gateway(config) as gateway:
        page = open_page(browser, gateway, page_errors)
        # the page's own calls were refused: it asks for the key, and lists nothing
        page.wait_for_selector("#api-key.wanted")
        assert page.locator("#model option").count() == 0
        page.fill("#api-key", key)
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("#model option", state="attached")
        ask(page, "Count.")
        wait_for_state(page, "done")
        assert reply_text(page) == "".join(PIECES[:5])
        # the key is kept for the tab, never shown
        assert page.input_value("#api-key") == ""
        (request,) = faults.requests
        assert request.json()["messages"][-1]["content"] == "Count."


# --- images: attached by the picker or by drag and drop, and answered with ----------------------

# A 1x1 PNG.
DOT_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
DOT = base64.b64decode(DOT_URL.partition(",")[2])


def decoded_images(page: Page, selector: str) -> list[int]:
    """The natural widths of the images ``selector`` finds: 0 for one that did not load."""
    widths: list[int] = page.locator(selector).evaluate_all(
        "images => images.map(i => i.complete ? i.naturalWidth : 0)"
    )
    return widths


def test_an_image_attached_with_the_picker_goes_with_the_prompt_and_shows(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    faults.script(openai_chat_stream(["A ", "red ", "dot."]).reply())
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        page = open_page(browser, gateway, page_errors)
        dot: FilePayload = {"name": "dot.png", "mimeType": "image/png", "buffer": DOT}
        page.set_input_files("#attach-file", files=[dot])
        page.wait_for_selector("#attachments img.thumb")
        assert page.get_attribute("#attachments img.thumb", "alt") == "dot.png"
        ask(page, "What is this?")
        wait_for_state(page, "done")
        assert reply_text(page) == "A red dot."
        # The user's turn shows the image, loaded (the CSP lets data: images in), and the
        # composer no longer holds it.
        page.wait_for_function("document.querySelector('.message.user img.thumb')?.complete")
        assert decoded_images(page, ".message.user img.thumb") == [1]
        assert page.locator("#attachments img").count() == 0
    sent = faults.requests[-1].json()["messages"]
    assert sent == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": DOT_URL}},
            ],
        }
    ]
    assert not page_errors


DROP = """([name, type, bytes]) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
    const target = document.querySelector("main");
    for (const kind of ["dragenter", "dragover", "drop"]) {
        target.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }
}"""


def test_an_image_dropped_on_the_page_is_attached_and_other_files_are_refused(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    faults.script(openai_chat_stream(["Seen."]).reply(), openai_chat_stream(["Again."]).reply())
    with run_gateway(upstream_config(faults.url + "/v1")) as gateway:
        page = open_page(browser, gateway, page_errors)
        page.evaluate(DROP, ["notes.txt", "text/plain", list(b"hello")])
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('notes.txt')"
        )
        assert "not an image" in (page.text_content("#status") or "")
        assert page.locator("#attachments img").count() == 0
        page.evaluate(DROP, ["dot.png", "image/png", list(DOT)])
        page.wait_for_selector("#attachments img.thumb")
        # Taken off again with its button, then dropped again: one image goes.
        page.click("#attachments button")
        assert page.locator("#attachments img").count() == 0
        page.evaluate(DROP, ["dot.png", "image/png", list(DOT)])
        page.wait_for_selector("#attachments img.thumb")
        # An image alone is a prompt.
        page.click("#send")
        wait_for_state(page, "done")
        assert decoded_images(page, ".message.user img.thumb") == [1]
        # The next turn sends the chat with the image again, as the user sent it.
        ask(page, "And now?")
        wait_for_reply(page, "Again.")
        wait_for_state(page, "done")
    first, second = (request.json()["messages"] for request in faults.requests)
    assert first == [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": DOT_URL}}]}
    ]
    assert second[0] == first[0] and second[-1] == {"role": "user", "content": "And now?"}
    assert not page_errors


def test_an_image_the_model_answers_with_shows_in_its_reply(
    browser: Browser, faults: FaultServer, page_errors: list[str]
) -> None:
    body, expected = transcript("gemini", "image_output")
    faults.script(Reply(headers={"Content-Type": "text/event-stream"}, body=[body]))
    route = Route(
        "draw",
        provider="gemini",
        model="gemini-2.5-flash-image",
        base_url=faults.url,
        options={"api_key": "k", "max_retries": 0},
    )
    with run_gateway(GatewayConfig(routes={"draw": route}, default="draw")) as gateway:
        page = open_page(browser, gateway, page_errors)
        ask(page, "Draw a small red square.")
        wait_for_state(page, "done")
        assert reply_text(page) == expected["text"]
        page.wait_for_function(
            "document.querySelector('.message.assistant img.answer')?.naturalWidth > 0"
        )
        assert len(decoded_images(page, ".message.assistant img.answer")) == 1
    assert not page_errors
