"""Every script in examples/ runs to its end, without keys or network, and shows what it says."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# What each example must print (regular expressions, searched line by line). A new example
# needs an entry: an example that runs but shows nothing useful is broken too.
CHECKS: dict[str, list[str]] = {
    "quickstart": [
        r"\A\s*\S",  # the haiku comes first
        r"^usage: \d+ prompt tokens, \d+ output tokens$",
        r"^finish reason: (stop|length)$|finish reason: (stop|length)",
        r"^first token after \d+\.\d+ s$",
        r"^\d+\.\d+ tokens/s",
    ],
    "async_streaming": [
        r"^-- agenerate_stream.*\n\s*\S",
        r"^-- generate_async\(stream=True\).*\n\s*\S",
        r"^\(\d+ tokens, finish reason: (stop|length)\)$",
        r"^-- generate_async: .*\n\s*\S",
    ],
    "events": [
        r"\AResponseStart +id=\S+",
        r"^TextDelta +'.+'$",
        r"^Usage +\d+ prompt tokens, \d+ output tokens$",
        r"^Finish +reason=(stop|length) .*\n\Z",  # the last event
    ],
    "openai_compatible": [
        r"\A\s*\S",  # the streamed answer comes first
        r"^finish reason: (stop|length) ",
        r"^usage(, not streamed)?: \d+ prompt tokens, \d+ output tokens$",
    ],
    "callbacks": [
        r"^-- a progress indicator\n\s*\S",
        r"^done: \d+ tokens in \d+\.\d\d s, first token after \d+\.\d\d s, [\d.]+ tokens/s, "
        # the bundled model runs here: its cost is 0
        r"\d+ chunks, \d+ characters, \$0$",
        r"^stopped: True, words: 8, finish reason: None, on_complete called: False$",
        r"^counted \d+ words; events: \{'ResponseStart': 1, 'TextDelta': \d+, 'Usage': 1, "
        r"'Finish': 1\}$",
        r"^stats: \d+ chunks, \d+ tokens \(provider\)$",
        r"^CallbackError from on_chunk: ValueError\(\"no e allowed: .*\"\); kept \d+ characters$",
    ],
    "concurrency": [
        r"^rivers: 'Rivers carry water .*go\.' \(8 chunks, first token after \d\.\d\d s\)$",
        r"^stars: 'Stars are huge .*helium\.' \(7 chunks",
        # (how long, on a busy machine, is checked below: about as long as the slowest one)
        r"^all three in \d+\.\d\d s \(the slowest of them took \d+\.\d\d s\)$",
        r"^display: 'Rivers carry water from the hills down to the sea, carving valleys as they go\.'$",
        r"^counter: 15 words$",
        r"^log: ResponseStart, 8 TextDelta, Finish$",
        r"^stats: 20 tokens \(estimate\) in \d\.\d\d s, first token after .* 8 chunks, "
        r"78 characters$",
    ],
    "shaping": [
        r"^-- as the provider sends it: 5 chunks$",
        r"^-- buffer_size=2, min_chunk_size=60: 3 chunks$",
        r"^-- debounce=0\.07: [1-4] chunks$",  # by the clock: how many depends on the machine
        r"^-- smooth='word', delay=0\.005: 46 chunks\n   'Space '\n   'is '$",
        r"^-- smooth=re\.compile\(r'\[:,\.\]\\s\+'\): 7 chunks\n   'Space is almost silent: '$",
        r"^same text: True$",
    ],
    "cancel": [
        r"^closed: True$",
        r"^kept: (['\"]).+\1$",
        r"^finish reason: None ",
    ],
    "errors": [
        r"^ConfigurationError: unknown provider 'nosuch'",
        r"^ConnectionError: .*[Rr]efused",
    ],
    "cloud": [
        # each provider's answer, then how it finished and what authenticated the request
        *(
            rf"^{name} +{model}: 'Rivers run to the sea\.'\n +finish stop, 12\+5 tokens, sent {auth}$"
            for name, model, auth in (
                ("bedrock", r"us\.anthropic\.claude-3-5-haiku-20241022-v1:0", "SigV4 signature"),
                (
                    "bedrock",
                    r"us\.anthropic\.claude-3-5-haiku-20241022-v1:0",
                    r"bearer token \(bedrock-api-key-demo\)",
                ),
                ("vertex", "gemini-2.5-flash", r"bearer token \(ya29\.demo\)"),
                ("vertex", "claude-sonnet-4-5", r"bearer token \(ya29\.demo\)"),
                ("azure", "my-gpt-4o-deployment", r"api-key header \(azure-key-demo\)"),
                ("mistral", "mistral-small-latest", r"bearer token \(mistral-key-demo\)"),
                ("xai", "grok-4", r"bearer token \(xai-key-demo\)"),
                ("cohere", "command-a-03-2025", r"bearer token \(cohere-key-demo\)"),
            )
        ),
    ],
    "cost_and_tracing": [
        # Claude Sonnet 4.5 at its public prices ($3 in, $0.30 cache read, $3.75 cache write,
        # $15 out per 1M): 1000 * 3 + 5000 * 0.3 + 2000 * 3.75 + 150 * 15 = $0.01425
        r"^usage: 8000 input tokens \(5000 read from the cache, 2000 written to it\), 150 output$",
        r"^cost: \$0\.014250$",
        r"^cost so far: \$0\.01\d{4} \(estimated: True\)$",
        r"^cut after 2 chunks: \$0\.01\d{4} \(estimated: True\)$",
        # your own prices: 2000 * 0.2 + 100 * 0.6 per 1M = $0.00046
        r"^my-finetune: 40 characters, cost \$0\.000460$",
        r"^span 'chat claude-sonnet-4-5': UNSET$",
        r"^    gen_ai\.usage\.cache_read\.input_tokens = 5000$",
        r"^    spout\.stream\.end = closed$",
        r"^    spout\.cost\.usd = 0\.01425$",
        r"^span 'chat my-finetune': UNSET$",
    ],
    "files": [
        # each provider was sent the files in its own shape
        r"^anthropic was sent: image block \(base64, image/png\); document block \(base64, "
        r"application/pdf, title 'q3-report\.pdf'\)$",
        r"^gemini was sent: inlineData \(image/png\)$",
        # what came back: a citation, an unknown block kept, an image, web citations
        r"^citation: 'Revenue grew 12% in Q3\.' from 'q3-report\.pdf'$",
        r"^unrecognised content kept: future_widget \{'type': 'future_widget'",
        r"^anthropic answered: 'Revenue grew 12%; the chart agrees\.'$",
        r"^file arrived: image/png, \d+ bytes$",
        r"^gemini's image saved: kite\.png, \d+ bytes$",
        r"^gemini cites https://example\.org/kites for 'Here is a red kite\.'$",
        r"^gemini cites https://example\.net/red for 'Here is a red kite\.'$",
    ],
    "providers": [
        rf"^{name} +'Rivers run to the sea\.'  finish=stop usage=12/6$"
        for name in (
            "anthropic",
            "gemini",
            "ollama",
            r"huggingface \(TGI\)",
            r"openai \(Responses API\)",
        )
    ],
    "plugin_provider": [
        r"^streamed: RIVERS RUN TO THE SEA$",
        r"^provider: echo model: cockatoo$",
        r'^response_format through its output_shape: \{"words": \["rivers", "run"\]\}$',
        r"^litellm's completion\(\) by its model name: hello plugin\s*$",
        # 6 turns of 2 messages and the question: only the question and the last turn fit
        r"^a session on an 80-token model: I was sent 3 messages$",
        r"^the session keeps every turn: 14 messages$",
    ],
    "reliability": [
        r"^Rivers carve canyons over millions of years\.$",
        r"^retries: 1, resumed: 1$",
        r"^IdleTimeout: no content arrived for the idle limit of 0\.5 s \(kept: 'Thinking'\)$",
        r"^The backup answers\. \(answered by the model 'backup'\)$",
    ],
    "sessions": [
        r"\A\S",  # the first reply streams first
        r"^kept: (['\"]).+\1 \(incomplete: closed\)$",
        r"^turn 3 read \d\d+ prompt tokens: the whole conversation$",
        r"^loaded \w{26}: 3 turns, title 'Tell me about rivers\.'$",
        r"^stored: \w{26}  3 turns  models \['local:smollm2'\]$",
        r"^# Tell me about rivers\.$",
    ],
    "structured": [
        r"\Apartial: \{\}$",  # the object grows from empty as the JSON streams
        r"^partial: \{'city': '[^']+', 'country': '[^']*'\}$",
        r"^parsed: Capital\(city='[^']+', country='[^']+'\)$",
        r"^finish reason: stop, \d+ tokens$",
        r"^parsed \(JSON Schema\): \{'title': '[^']*', 'year': -?\d+\}$",
        r"^StructuredOutputError: .*'Capital': the answer was cut at max_tokens",
        r"^raw: '\{.*', parsed so far: \{.*\}$",
        r"^async: Capital\(city='[^']*', country='[^']*'\) after \d+ partial objects$",
    ],
    "gateway": [
        r"^spout serve listening on http://127\.0\.0\.1:\d+$",
        r"^models: \['local'\]$",
        r"^-- openai SDK, stream=True\n\s*\S",
        r"^\(usage: \d+ output tokens\)$",
        r"^\(finish reason: (stop|length)\)$",
        r"^-- anthropic SDK, messages.stream\(\)\n\s*\S",
        r"^\(stop reason: (end_turn|max_tokens), \d+ tokens\)$",
        r"^read events 1-5: (['\"]).*\1$",
        r"^resumed from event 6: (['\"]).+\1$",
        r"^whole answer: (['\"]).+\1$",
        r"^DELETE /v1/streams/st_\w+: cancelled=True$",
        r"^the reader's last event: .*the stream was cancelled",
    ],
    "gateway_keys": [
        r"^keys file: demo:sha256:[0-9a-f]+\.\.\. \(the key itself in it: False\)$",
        r"^log: POST /v1/chat/completions 401 identity=- \d+\.\d+s$",
        r"^without a valid key: AuthenticationError 401$",
        r"^request 1 with the key: (['\"]).+\1$",
        r"^log: POST /v1/chat/completions 200 identity=demo stream=st_\w+ \d+\.\d+s$",
        r"^request 3: RateLimitError 429, Retry-After: \d+ s$",
    ],
    "gateway_replicas": [
        r"^redis-server on redis://127\.0\.0\.1:\d+/0$",
        r"^replica A on http://127\.0\.0\.1:\d+, replica B on http://127\.0\.0\.1:\d+$",
        r"^read on A, events 1-5: (['\"]).*\1$",
        r"^resumed on B from event 6: (['\"]).+\1$",
        r"^events 1-\d+, none missing or repeated: True$",
        r"^A and B sent the same bytes: True \(\d+ bytes\)$",
        r"^DELETE on A: cancelled=True$",
        r"^the reader on B got, last: \{\"error\":\{\"message\":\"the stream was cancelled",
    ],
    "gateway_workers": [
        r"^spout serve --workers 2 on http://127\.0\.0\.1:\d+$",
        r"^a connection on each worker: two processes: True$",
        r"^read on worker 0, events 1-5: (['\"]).*\1$",
        r"^resumed on worker 1 from event 6: (['\"]).+\1$",
        r"^events 1-\d+, none missing or repeated: True$",
        r"^DELETE on worker 0: cancelled=True$",
        r"^the reader on worker 1 got, last: \{\"error\":\{\"message\":\"the stream was cancelled",
    ],
    "gateway_websocket": [
        r"^-- one answer, event by event\n\(stream st_\w+: ",
        r"^events: \{'response_start': 1, 'text': \d+, 'usage': 1, 'finish': 1\}$",
        r"^done: finish reason (stop|length), \d+ output tokens$",
        r"^long: error \(cancelled\), kept (['\"]).+\1$",
        r"^short: done, (['\"]).+\1$",
    ],
    "litellm_compat": [
        r"\A\s*\S",  # the answer streams first
        r"^chunks: \d+, finish_reason: (stop|length), usage: \d+ prompt \+ \d+ completion tokens$",
        r'^first chunk: \{"id": "[^"]+", "created": \d+, "model": "[^"]+", '
        r'"object": "chat\.completion\.chunk", .*"delta": \{"content": ',
        r"^same answer not streamed: True$",
        r"^mocked: 'It is sunny in Oslo\.' in \d+ chunks; last: choices=\[\] "
        r"usage=\{'completion_tokens': \d+, 'prompt_tokens': \d+, 'total_tokens': \d+\}$",
        r"^caught RateLimitError \(also spout\.RateLimitError: True\): this is a mock rate limit error$",
        r"^async: \d+ chunks, finish_reason: (stop|length)$",
    ],
    "tools": [
        r"^schema of get_weather: \{'type': 'object', 'properties': \{'city': \{'type': 'string', "
        r"'description': 'The city to report on",
        r"^streamed call: get_weather\(\{'city': '[^']+'.*\}\) in \d\d+ deltas$",
        r"^\[get_weather\(\{'city': '[^']+'.*\}\) -> 'It is 21 degrees \w+ and sunny in [^']+\.'\]$",
        r"^rounds: [23], tool calls run: [12]$",
        r"^conversation: user -> assistant -> tool -> assistant",
    ],
    "mcp": [
        r"^model sees tools: \['shout', 'weather'\]$",
        r"^\[weather\(\{'city': 'Oslo'\}\) -> \{'city': 'Oslo', 'degrees': 21, 'sky': 'sunny'\}\]$",
        r"^It is 21 degrees and sunny\.$",
        r"^rounds: 2$",
    ],
    "local_tools": [
        r"^tools: True, streamed: True$",
        r"^call started: calculator \(call_\w+\)$",
        r"^streamed call: calculator\(\{'expression': '[^']+'\}\) in \d\d+ deltas, "
        r"finish reason: tool_calls$",
        r"^\[Tool Call: calculator\(\{'expression': .+\}\)\]$",
        r"^\[Tool Result: .+\]$",
        r"^async: tool results \[.+\]$",
    ],
    "gateway_chat_page": [
        r"^chat page: http://127\.0\.0\.1:\d+/ \(200, text/html; charset=utf-8\)$",
        r"^stream st_[0-9a-f]+:\n\s*\S",  # the reply streams
        r"^stored: \w{26}  'Name three rivers, briefly\.'  model smol  1 turn\(s\)$",
        r"^  user: 'Name three rivers, briefly\.'$",
        r"^  assistant: (['\"]).+\1$",
    ],
    "transformers_local": [
        r"\A1\. 1$",  # the greedy answer streams first
        r"^model: SmolLM2-135M-Instruct\.Q4_1, finish reason: (stop|length)$",
        r"^usage: \d+ prompt tokens, \d+ output tokens$",
    ],
}


def run(path: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run an example to its end, in a process group of its own.

    An example that does not end in time is killed with every process it started (a gateway,
    a redis-server): killing it alone would leave them running, loading the machine for the
    tests that follow.
    """
    with subprocess.Popen(
        [sys.executable, str(path)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(
                f"{path.name} did not end within {timeout:g} s; it printed:\n{stdout}{stderr}"
            )
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_there_are_examples() -> None:
    assert {path.stem for path in EXAMPLES} == set(CHECKS)


# The examples that run the bundled model (in process, or behind a server they start).
USE_THE_MODEL = {
    "async_streaming", "callbacks", "cancel", "events", "gateway", "gateway_chat_page",
    "gateway_keys", "gateway_replicas", "gateway_websocket", "gateway_workers", "litellm_compat",
    "local_tools",
    "openai_compatible", "quickstart", "sessions", "structured", "tools", "transformers_local",
}  # fmt: skip


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(
            path, id=path.stem, marks=[pytest.mark.model] if path.stem in USE_THE_MODEL else []
        )
        for path in EXAMPLES
    ],
)
def test_example_runs(path: Path) -> None:
    env = dict(os.environ)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):  # an example must not need them
        env.pop(name, None)
    result = run(path, env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert path.stem in CHECKS, f"add what {path.name} must print to CHECKS"
    for pattern in CHECKS[path.stem]:
        assert re.search(pattern, result.stdout, re.MULTILINE), (
            f"{path.name} did not print {pattern!r}:\n{result.stdout}"
        )
    if path.stem == "concurrency":
        # The three streams ran at once: together they took about as long as the slowest of
        # them, where one after the other would take about three times as long.
        found = re.search(r"^all three in (\S+) s \(the slowest of them took (\S+) s\)$",
                          result.stdout, re.MULTILINE)  # fmt: skip
        assert found, result.stdout
        took, slowest = map(float, found.groups())
        assert took < 2 * slowest, result.stdout
