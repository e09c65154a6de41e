"""spout serve: the bundled model behind an HTTP endpoint, used by the official SDKs.

Starts ``spout serve`` (the bundled model, loopback, a free port), then:
1. streams an answer with the ``openai`` SDK, and with its ``chat.completions.stream()`` helper;
2. streams one with the ``anthropic`` SDK's ``messages.stream()``;
3. cuts a stream after a few events and resumes it with ``Last-Event-ID``: nothing missing,
   nothing repeated;
4. cancels a stream with ``DELETE /v1/streams/{id}``.

Run: python examples/gateway.py   (needs spout[gateway,local] and the openai/anthropic SDKs)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import anthropic
import httpx
import openai

QUESTION = [{"role": "user", "content": "Name three rivers in Europe."}]


def start_gateway() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "spout", "serve", "--port", "0", "--resume-window", "5"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"spout serve: (http://\S+)", line)
        if found:
            return process, found.group(1)
    raise SystemExit("spout serve did not start")


def texts(lines: list[str]) -> str:
    """The text of OpenAI chunk events (``data: {...}`` lines)."""
    out = []
    for line in lines:
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


def main() -> None:
    process, url = start_gateway()
    try:
        print(f"spout serve listening on {url}")
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
        print("models:", [model.id for model in client.models.list()])

        print("\n-- openai SDK, stream=True")
        stream = client.chat.completions.create(
            model="local", messages=QUESTION, stream=True, max_tokens=40, temperature=0,
            stream_options={"include_usage": True},
        )  # fmt: skip
        for chunk in stream:
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
            elif chunk.usage:
                print(f"\n(usage: {chunk.usage.completion_tokens} output tokens)")

        print("\n-- openai SDK, chat.completions.stream()")
        # (the helper raises LengthFinishReasonError for a reply cut by max_tokens: room enough)
        with client.chat.completions.stream(
            model="local", messages=[{"role": "user", "content": "Say hello."}], max_tokens=200,
            temperature=0,
        ) as helper:  # fmt: skip
            for event in helper:
                if event.type == "content.delta":
                    print(event.delta, end="", flush=True)
            final = helper.get_final_completion()
        print(f"\n(finish reason: {final.choices[0].finish_reason})")

        print("\n-- anthropic SDK, messages.stream()")
        claude = anthropic.Anthropic(base_url=url, api_key="unused")
        with claude.messages.stream(model="local", max_tokens=40, messages=QUESTION) as messages:
            for text in messages.text_stream:
                print(text, end="", flush=True)
            message = messages.get_final_message()
        print(f"\n(stop reason: {message.stop_reason}, {message.usage.output_tokens} tokens)")

        print("\n-- a cut connection, resumed")
        body = {"model": "local", "messages": QUESTION, "stream": True, "max_tokens": 40,
                "temperature": 0}  # fmt: skip
        with httpx.Client(timeout=60) as http:
            with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
                stream_id = response.headers["x-spout-stream-id"]
                lines = response.iter_lines()
                before = []
                last_id = 0
                for line in lines:
                    before.append(line)
                    if line.startswith("id: "):
                        last_id = int(line[4:])
                    if last_id == 5 and line.startswith("data: "):
                        break  # the connection is closed here, mid-answer
            print(f"read events 1-{last_id}: {texts(before)!r}")
            resumed = http.get(
                f"{url}/v1/streams/{stream_id}", headers={"Last-Event-ID": str(last_id)}
            )
            after = resumed.text.splitlines()
            first_id = next(line for line in after if line.startswith("id: "))
            print(f"resumed from event {first_id[4:]}: {texts(after)!r}")
            print(f"whole answer: {texts(before) + texts(after)!r}")

            print("\n-- a stream cancelled")
            long_body = {**body, "max_tokens": 200}
            with http.stream("POST", url + "/v1/chat/completions", json=long_body) as response:
                stream_id = response.headers["x-spout-stream-id"]
                lines = response.iter_lines()
                for line in lines:
                    if line.startswith("id: 3"):
                        break
                cancelled = http.delete(f"{url}/v1/streams/{stream_id}").json()
                rest = [line for line in lines if line.startswith("data: ")]
            print(f"DELETE /v1/streams/{stream_id}: cancelled={cancelled['cancelled']}")
            print(f"the reader's last event: {rest[-1][6:]}")
        client.close()
        claude.close()
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
