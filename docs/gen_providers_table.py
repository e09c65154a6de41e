"""Write the capabilities table in docs/providers.md from what each provider declares.

Run: python docs/gen_providers_table.py (tests/test_docs.py fails when the table is stale).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from spout import ModelCapability, create_llm

DOC = Path(__file__).with_name("providers.md")
START, END = "<!-- capabilities:start -->", "<!-- capabilities:end -->"

# A configuration that builds each provider without network or keys in the environment.
PROVIDERS: list[tuple[str, dict[str, object], str]] = [
    ("local", {}, "examples/local_tools.py"),
    ("transformers", {}, "examples/transformers_local.py"),
    ("openai", {"model": "gpt-4o-mini", "api_key": "k"}, "examples/openai_compatible.py"),
    ("openai", {"model": "gpt-4.1", "api_key": "k", "api": "responses"}, "examples/providers.py"),
    ("anthropic", {"model": "claude-sonnet-4-5", "api_key": "k"}, "examples/providers.py"),
    ("gemini", {"model": "gemini-2.5-flash", "api_key": "k"}, "examples/providers.py"),
    ("ollama", {"model": "llama3"}, "examples/providers.py"),
    ("huggingface", {"model": "tgi", "base_url": "http://localhost:8080"}, "examples/providers.py"),
    ("huggingface", {"model": "m", "api": "chat", "api_key": "k"}, "examples/openai_compatible.py"),
    (
        "openrouter",
        {"model": "openai/gpt-4o-mini", "api_key": "k"},
        "examples/openai_compatible.py",
    ),
    ("vllm", {"model": "m"}, "examples/openai_compatible.py"),
    ("llamacpp", {"model": "m"}, "examples/openai_compatible.py"),
    ("lmstudio", {"model": "m"}, "examples/openai_compatible.py"),
    ("together", {"model": "m", "api_key": "k"}, "examples/openai_compatible.py"),
    ("groq", {"model": "m", "api_key": "k"}, "examples/openai_compatible.py"),
    ("deepseek", {"model": "m", "api_key": "k"}, "examples/openai_compatible.py"),
    ("mistral", {"model": "mistral-small-latest", "api_key": "k"}, "examples/cloud.py"),
    ("xai", {"model": "grok-3-mini", "api_key": "k"}, "examples/cloud.py"),
    ("cohere", {"model": "command-a-03-2025", "api_key": "k"}, "examples/cloud.py"),
    (
        "azure",
        {"model": "my-deployment", "base_url": "https://r.openai.azure.com", "api_key": "k"},
        "examples/cloud.py",
    ),
    (
        "bedrock",
        {
            "model": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "region": "us-east-1",
            "api_key": "k",
        },
        "examples/cloud.py",
    ),
    (
        "vertex",
        {"model": "gemini-2.5-flash", "project": "p", "token_provider": lambda: "t"},
        "examples/cloud.py",
    ),
    (
        "vertex",
        {"model": "claude-sonnet-4-5", "project": "p", "token_provider": lambda: "t"},
        "examples/cloud.py",
    ),
]

COLUMNS = [
    (ModelCapability.STREAMING, "streams"),
    (ModelCapability.ASYNC, "async"),
    (ModelCapability.TOOLS, "tools"),
    (ModelCapability.TOOL_STREAMING, "tool args streamed"),
    (ModelCapability.USAGE_IN_STREAM, "usage in stream"),
    (ModelCapability.REASONING, "reasoning"),
    (ModelCapability.SYSTEM_PROMPT, "system prompt"),
]


def table() -> str:
    head = "| provider | " + " | ".join(label for _, label in COLUMNS) + " | example |"
    rows = [head, "|" + " --- |" * (len(COLUMNS) + 2)]
    for name, config, example in PROVIDERS:
        config = dict(config)
        api = config.get("api")
        caps = create_llm(name, **config).get_capabilities()  # type: ignore[arg-type]
        label = f"`{name}`" + (f" `api={api!r}`" if api else "")
        if sum(row[0] == name and "api" not in row[1] for row in PROVIDERS) > 1:
            label += f" `{config['model']}`"  # a provider whose routes differ by model
        marks = ["yes" if caps.get(cap) else "no" for cap, _ in COLUMNS]
        rows.append(f"| {label} | " + " | ".join(marks) + f" | `{example}` |")
    return "\n".join(rows)


def render(text: str) -> str:
    block = f"{START}\n{table()}\n{END}"
    if START in text:
        return re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    return text.rstrip() + "\n\n## What each provider does\n\n" + block + "\n"


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text()))
    sys.exit(0)
