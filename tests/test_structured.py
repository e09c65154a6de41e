"""Structured output: response_format in each provider's shape, partial objects, validation."""

from __future__ import annotations

import dataclasses
from itertools import pairwise
from typing import Any, TypedDict

import pytest
from pydantic import BaseModel, Field

from helpers import Runner
from replay_server import (
    ReplayServer,
    Reply,
    cut_every_byte,
    cut_inside_utf8,
    cut_mid_line,
    transcript,
)
from scripted_turns import (
    anthropic_text_turn,
    gemini_sse,
    ollama_ndjson,
    openai_chunk,
    openai_single_call,
    openai_sse,
    openai_usage,
    responses_text_turn,
    turns,
)
from spout import LLM, Response, StructuredOutputError, create_llm
from spout._structured import (
    PartialObjects,
    find_json,
    output_format,
    request_for,
    schema_problems,
)
from spout.providers import Call, OutputShape, Provider


class Weather(BaseModel):
    city: str
    temperature: int
    conditions: list[str] = []


WEATHER_JSON = '{"city": "Oslo", "temperature": 21, "conditions": ["sunny", "mild"]}'


def openai_json_turn(text: str = WEATHER_JSON, size: int = 9) -> bytes:
    """The JSON streamed as content deltas of ``size`` characters, as OpenAI sends it."""
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    return openai_sse(
        openai_chunk({"role": "assistant", "content": ""}),
        *(openai_chunk({"content": piece}) for piece in pieces),
        openai_chunk({}, "stop"),
        openai_usage(60, 25),
    )


def openai_llm(replay: ReplayServer) -> LLM:
    return create_llm("openai", model="gpt-4o-mini", base_url=f"{replay.url}/v1", api_key="k")


def run(llm: LLM, runner: Runner, **kwargs: Any) -> tuple[list[Any], Response]:
    """Stream with response_format, collecting partial objects, sync or async."""
    stream = runner.stream(llm, "Weather in Oslo?", **kwargs)
    return runner.list(stream.partial_objects()), runner.response(stream)


def parsed(llm: LLM, response_format: Any) -> Any:
    return llm.generate_stream("x", response_format=response_format).response.parsed


def grows(before: Any, after: Any) -> bool:
    """Whether ``after`` completes ``before``: members kept, strings and lists extended."""
    if isinstance(before, dict):
        return isinstance(after, dict) and all(
            key in after and grows(value, after[key]) for key, value in before.items()
        )
    if isinstance(before, list):
        return (
            isinstance(after, list)
            and len(after) >= len(before)
            and all(grows(a, b) for a, b in zip(before, after, strict=False))
        )
    if isinstance(before, str):
        return isinstance(after, str) and after.startswith(before)
    if isinstance(before, int) and isinstance(after, int):
        return str(after).startswith(str(before))
    return bool(before == after)


# -- OpenAI chat: native json_schema ------------------------------------------------------------


def test_openai_partial_objects_complete_progressively(
    replay: ReplayServer, runner: Runner
) -> None:
    replay.replies = turns(openai_json_turn())
    objects, response = run(openai_llm(replay), runner, response_format=Weather)

    body = replay.requests[0].json()
    assert body["response_format"]["type"] == "json_schema"
    spec = body["response_format"]["json_schema"]
    assert spec["name"] == "Weather" and spec["strict"] is True
    # Strict mode: every object closed, every property required (a default one too).
    assert spec["schema"]["additionalProperties"] is False
    assert spec["schema"]["required"] == ["city", "temperature", "conditions"]
    assert body["messages"] == [{"role": "user", "content": "Weather in Oslo?"}]  # no instruction

    assert response.parsed == Weather(city="Oslo", temperature=21, conditions=["sunny", "mild"])
    assert len(objects) >= 6
    assert objects[0] == {}
    # A string shows as it streams.
    assert {"city": "Oslo", "temperature": 21, "conditions": ["su"]} in objects
    assert all(grows(a, b) for a, b in pairwise(objects))
    assert all(a != b for a, b in pairwise(objects))
    assert objects[-1] == response.parsed.model_dump()


@pytest.mark.parametrize("cut", [cut_every_byte, cut_mid_line, cut_inside_utf8])
def test_recorded_structured_stream(replay: ReplayServer, runner: Runner, cut: Any) -> None:
    body, expected = transcript("openai_chat", "structured_output")
    replay.replies = [Reply(chunks=cut(body))]
    objects, response = run(openai_llm(replay), runner, response_format=Weather)
    assert response.text == expected["text"]
    assert response.usage.output_tokens == expected["usage"]["output_tokens"]
    assert response.parsed == Weather(
        city="Zürich", temperature=21, conditions=["sunny", 'mild "breeze"']
    )
    # One object per change: the deltas split keys (no change), strings, an escape, a number.
    assert objects == [
        {},
        {"city": ""},
        {"city": "Z"},
        {"city": "Zür"},
        {"city": "Zürich"},
        {"city": "Zürich", "temperature": 2},
        {"city": "Zürich", "temperature": 21},
        {"city": "Zürich", "temperature": 21, "conditions": [""]},
        {"city": "Zürich", "temperature": 21, "conditions": ["sun"]},
        {"city": "Zürich", "temperature": 21, "conditions": ["sunny"]},
        {"city": "Zürich", "temperature": 21, "conditions": ["sunny", ""]},
        {"city": "Zürich", "temperature": 21, "conditions": ["sunny", "mild"]},
        {"city": "Zürich", "temperature": 21, "conditions": ["sunny", 'mild "']},
        {"city": "Zürich", "temperature": 21, "conditions": ["sunny", 'mild "bre']},
        {"city": "Zürich", "temperature": 21, "conditions": ["sunny", 'mild "breeze']},
        {"city": "Zürich", "temperature": 21, "conditions": ["sunny", 'mild "breeze"']},
    ]
    assert objects[-1] == response.parsed.model_dump()


def test_partial_objects_continue_a_stream_already_read(replay: ReplayServer) -> None:
    replay.replies = turns(openai_json_turn(size=4))
    stream = openai_llm(replay).generate_stream("Weather?", response_format=Weather)
    events = stream.events()
    for _ in range(6):
        next(events)
    read = stream.text
    assert 0 < len(read) < len(WEATHER_JSON)
    so_far = PartialObjects("{")
    so_far.feed(read)
    objects = list(stream.partial_objects())
    assert objects[0] == so_far.value  # it starts from what was read
    assert objects[-1] == stream.response.parsed.model_dump()
    # Read to its end, the stream gives its final value once more.
    assert list(stream.partial_objects()) == [objects[-1]]


def test_non_streamed_call_is_parsed(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(
        b'{"id": "c", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [{"index": 0,'
        b' "message": {"role": "assistant", "content": "{\\"city\\": \\"Oslo\\", '
        b'\\"temperature\\": 21}"}, "finish_reason": "stop"}]}',
        content_type="application/json",
    )
    response = runner.generate(openai_llm(replay), response_format=Weather)
    assert response.parsed == Weather(city="Oslo", temperature=21)


def test_validation_failure_raises_with_the_text(replay: ReplayServer, runner: Runner) -> None:
    bad = '{"city": "Oslo", "temperature": "warm"}'
    replay.replies = turns(openai_json_turn(bad))
    with pytest.raises(StructuredOutputError) as caught:
        run(openai_llm(replay), runner, response_format=Weather)
    error = caught.value
    assert error.raw == bad
    assert error.value == {"city": "Oslo", "temperature": "warm"}
    assert error.partial is not None and error.partial.text == bad
    assert error.partial.finish_reason == "stop"
    assert "temperature" in str(error) and ".raw" in str(error)


def test_a_refusal_raises_with_the_refusal_on_partial(replay: ReplayServer, runner: Runner) -> None:
    body, expected = transcript("openai_chat", "refusal")  # a json_schema request, refused
    replay.replies = [Reply(chunks=cut_mid_line(body))]
    with pytest.raises(StructuredOutputError, match="refusal") as caught:
        run(openai_llm(replay), runner, response_format=Weather)
    error = caught.value
    assert error.raw == "" and ".partial.refusal" in str(error)
    assert error.partial is not None and error.partial.refusal == expected["refusal"]
    assert error.partial.finish_reason == "refusal"


def test_cut_json_raises_and_says_so(replay: ReplayServer) -> None:
    text = '{"city": "Oslo", "tempera'
    replay.replies = turns(
        openai_sse(openai_chunk({"role": "assistant", "content": text}), openai_chunk({}, "length"))
    )
    stream = openai_llm(replay).generate_stream("Weather?", response_format=Weather)
    with pytest.raises(StructuredOutputError, match="cut at max_tokens") as caught:
        for _ in stream:
            pass
    assert caught.value.raw == text
    assert caught.value.value == {"city": "Oslo"}


def test_openai_native_dicts_are_sent_as_given(replay: ReplayServer) -> None:
    replay.replies = turns(openai_json_turn('{"a": 1}'), openai_json_turn('{"b": [2]}'))
    llm = openai_llm(replay)
    native = {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": {"type": "object"}, "strict": False},
    }
    assert parsed(llm, native) == {"a": 1}
    assert replay.requests[0].json()["response_format"] == native
    # JSON mode: any object; OpenAI requires the word JSON in the messages, so it is told.
    assert parsed(llm, {"type": "json_object"}) == {"b": [2]}
    body = replay.requests[1].json()
    assert body["response_format"] == {"type": "json_object"}
    assert "JSON" in body["messages"][0]["content"]


def test_plain_schema_is_checked_lightly(replay: ReplayServer) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    replay.replies = turns(
        openai_json_turn('{"name": "Ada", "age": 36}'), openai_json_turn('{"name": "Ada"}')
    )
    llm = openai_llm(replay)
    assert parsed(llm, schema) == {"name": "Ada", "age": 36}
    # Not strict-ready (no additionalProperties: false), so sent with strict false, as given.
    sent = replay.requests[0].json()["response_format"]["json_schema"]
    assert sent == {"name": "response", "schema": schema, "strict": False}
    with pytest.raises(StructuredOutputError, match="missing required property 'age'"):
        parsed(llm, schema)


@dataclasses.dataclass
class Place:
    city: str
    country: str = "?"


class Point(TypedDict):
    x: int
    y: int


def test_dataclass_and_typeddict(replay: ReplayServer) -> None:
    replay.replies = turns(
        openai_json_turn('{"city": "Oslo"}'), openai_json_turn('{"x": 1, "y": 2}')
    )
    llm = openai_llm(replay)
    assert parsed(llm, Place) == Place("Oslo")
    assert parsed(llm, Point) == {"x": 1, "y": 2}
    assert replay.requests[0].json()["response_format"]["json_schema"]["name"] == "Place"


# -- the other providers --------------------------------------------------------------------------


def test_gemini_uses_response_json_schema(replay: ReplayServer, runner: Runner) -> None:
    pieces = [WEATHER_JSON[:20], WEATHER_JSON[20:45], WEATHER_JSON[45:]]
    replay.replies = turns(
        gemini_sse(
            *(
                {
                    "candidates": [
                        {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
                    ],
                    "modelVersion": "gemini-2.5-flash",
                }
                for piece in pieces[:-1]
            ),
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": pieces[-1]}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 9,
                    "candidatesTokenCount": 20,
                    "totalTokenCount": 29,
                },
                "modelVersion": "gemini-2.5-flash",
            },
        )
    )
    llm = create_llm("gemini", model="gemini-2.5-flash", base_url=replay.url, api_key="k")
    objects, response = run(
        llm,
        runner,
        response_format=Weather,
        temperature=0,
        generationConfig={"thinkingConfig": {"thinkingBudget": 0}},
    )
    body = replay.requests[0].json()
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"]["city"] == {"title": "City", "type": "string"}
    assert config["temperature"] == 0 and config["thinkingConfig"] == {"thinkingBudget": 0}
    assert "systemInstruction" not in body  # Google advises against repeating the schema
    assert response.parsed.city == "Oslo"
    assert len(objects) == 3 and objects[-1] == response.parsed.model_dump()


def test_ollama_uses_format(replay: ReplayServer, runner: Runner) -> None:
    pieces = [WEATHER_JSON[i : i + 11] for i in range(0, len(WEATHER_JSON), 11)]
    replay.replies = turns(
        ollama_ndjson(
            *(
                {
                    "model": "llama3.2",
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
                for piece in pieces
            ),
            {
                "model": "llama3.2",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 50,
                "eval_count": 20,
            },
        ),
        content_type="application/x-ndjson",
    )
    llm = create_llm("ollama", model="llama3.2", base_url=replay.url)
    objects, response = run(llm, runner, response_format=Weather, system_prompt="Be brief.")
    body = replay.requests[0].json()
    assert body["format"] == output_format(Weather).schema
    system = body["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\nAnswer with")
    assert '"temperature":{"title":"Temperature","type":"integer"}' in system["content"]
    assert response.parsed.temperature == 21
    assert all(grows(a, b) for a, b in pairwise(objects))


def test_anthropic_is_instructed_and_parsed_tolerantly(
    replay: ReplayServer, runner: Runner
) -> None:
    # Anthropic's Messages API has no response_format: the system prompt asks for the JSON,
    # and a model that wraps it in prose and a code fence is still understood.
    answer = f"Here is the weather:\n```json\n{WEATHER_JSON}\n```\nEnjoy {{Oslo}}!"
    replay.replies = turns(anthropic_text_turn(answer))
    llm = create_llm("anthropic", model="claude-sonnet-4-5", base_url=replay.url, api_key="k")
    objects, response = run(llm, runner, response_format=Weather)
    body = replay.requests[0].json()
    assert "response_format" not in body
    system = body["system"] if isinstance(body["system"], str) else body["system"][0]["text"]
    assert system.startswith("Answer with only a JSON value that conforms to this JSON Schema")
    assert '"required":["city","temperature"]' in system
    assert response.parsed == Weather(city="Oslo", temperature=21, conditions=["sunny", "mild"])
    assert objects == [response.parsed.model_dump()]  # the whole answer came in one delta


def test_responses_api_uses_text_format(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = turns(responses_text_turn(WEATHER_JSON))
    llm = create_llm(
        "openai", model="gpt-4.1", api="responses", base_url=f"{replay.url}/v1", api_key="k"
    )
    _, response = run(llm, runner, response_format=Weather)
    text_format = replay.requests[0].json()["text"]["format"]
    assert text_format["type"] == "json_schema"
    assert text_format["name"] == "Weather" and text_format["strict"] is True
    assert text_format["schema"]["additionalProperties"] is False
    assert response.parsed.conditions == ["sunny", "mild"]


def test_tgi_uses_a_json_grammar(replay: ReplayServer) -> None:
    replay.replies = [
        Reply(
            status=400,
            chunks=[b'{"error": "stop here"}'],
            headers={"Content-Type": "application/json"},
        )
    ]
    llm = create_llm("huggingface", model="tgi", base_url=replay.url, max_retries=0)
    with pytest.raises(Exception, match="stop here"):
        llm.generate_stream("Weather?", response_format=Weather)
    body = replay.requests[0].json()
    assert body["parameters"]["grammar"] == {"type": "json", "value": output_format(Weather).schema}
    assert "Answer with only a JSON value" in body["inputs"]


def test_a_fallback_gets_the_format_in_its_own_shape(replay: ReplayServer) -> None:
    replay.replies = [
        Reply(
            status=503,
            chunks=[b'{"error": {"message": "down"}}'],
            headers={"Content-Type": "application/json"},
        ),
        *turns(anthropic_text_turn(WEATHER_JSON)),
    ]
    backup = create_llm("anthropic", model="claude-sonnet-4-5", base_url=replay.url, api_key="k")
    llm = create_llm(
        "openai",
        model="gpt-4o-mini",
        base_url=f"{replay.url}/v1",
        api_key="k",
        max_retries=0,
        fallbacks=[backup],
    )
    response = llm.generate_stream("Weather?", response_format=Weather).response
    first, second = (request.json() for request in replay.requests)
    assert "response_format" in first
    assert "response_format" not in second and "JSON Schema" in str(second["system"])
    assert response.parsed.city == "Oslo" and response.provider == "anthropic"


def test_a_provider_that_says_nothing_gets_the_instruction() -> None:
    class Plain(Provider):
        name = "plain"

    messages = [{"role": "user", "content": "Weather?"}]
    call = Call(messages, {"temperature": 0}, output_format=output_format(Weather))
    shaped = request_for(Plain("m"), call)
    assert shaped.params == {"temperature": 0}
    system = shaped.messages[0]
    assert system["role"] == "system" and system["content"].startswith("Answer with only a JSON")
    assert shaped.messages[1:] == messages and call.messages == messages  # the given call kept


def test_the_provider_says_how_it_takes_the_format() -> None:
    class Native(Provider):
        name = "native"

        def output_shape(self, fmt: Any, params: Any) -> OutputShape:
            return OutputShape({**params, "schema": fmt.schema}, instruct=False)

    fmt = output_format(Weather)
    messages = [{"role": "user", "content": "Weather?"}]
    shaped = request_for(Native("m"), Call(messages, {"seed": 1}, output_format=fmt))
    assert shaped.params == {"seed": 1, "schema": fmt.schema}
    assert shaped.messages == messages
    # No format: the call as it was.
    plain = Call(messages)
    assert request_for(Native("m"), plain) is plain


def test_tool_loop_validates_the_final_answer(replay: ReplayServer) -> None:
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"21 degrees and sunny in {city}"

    replay.replies = turns(
        openai_single_call("call_1", "get_weather", '{"city": "Oslo"}'), openai_json_turn()
    )
    loop = openai_llm(replay).generate_stream_with_tools(
        "Weather in Oslo?", tools=[get_weather], response_format=Weather
    )
    items = list(loop)
    assert [item.result for item in items if not isinstance(item, str)] == [
        "21 degrees and sunny in Oslo"
    ]
    assert "".join(item for item in items if isinstance(item, str)) == WEATHER_JSON
    assert all("response_format" in request.json() for request in replay.requests[:2])
    assert loop.response.parsed == Weather(
        city="Oslo", temperature=21, conditions=["sunny", "mild"]
    )


def test_a_bad_response_format_fails_before_sending() -> None:
    llm = create_llm("openai", model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TypeError, match="response_format must be"):
        llm.generate_stream("x", response_format=42)
    with pytest.raises(Exception, match="needs its schema"):
        llm.generate_stream("x", response_format={"type": "json_schema", "json_schema": {}})


# -- the pure pieces --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ("  [1, 2]\n", "[1, 2]"),
        ('```json\n{"a": [1, {"b": "}"}]}\n```', '{"a": [1, {"b": "}"}]}'),
        ('Sure, {here} it is: {"a": 1} -- hope it helps {', '{"a": 1}'),
        ('{"a": 1', None),
        ("no json here", None),
    ],
)
def test_find_json(text: str, found: str | None) -> None:
    assert find_json(text) == found


def test_partial_objects_skip_prose_and_stray_brackets() -> None:
    objects = PartialObjects("{")
    seen = []
    for piece in ["Here is the {JSON}", ":\n```json\n", '{"a": "x', 'y", "b": [1', "]}", "\n```"]:
        if objects.feed(piece):
            seen.append(objects.value)
    assert seen == [{"a": "x"}, {"a": "xy", "b": [1]}]


def test_schema_problems() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["a", "b"]},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["kind"],
        "additionalProperties": False,
        "$defs": {
            "Item": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
        },
    }
    assert schema_problems({"kind": "a", "items": [{"n": 1}], "note": None}, schema) == []
    assert schema_problems({"kind": "c", "items": [{"n": 1.5}, {}], "note": 3, "x": 0}, schema) == [
        "$.kind: 'c' is not one of ['a', 'b']",
        "$.items[0].n: expected integer, got number",
        "$.items[1]: missing required property 'n'",
        "$.note: matches none of the anyOf options",
        "$: unexpected property 'x'",
    ]
    assert schema_problems(True, {"type": "integer"}) == ["$: expected integer, got boolean"]


# -- the bundled model ------------------------------------------------------------------------


class Capital(BaseModel):
    city: str = Field(max_length=20)
    country: str = Field(max_length=20)


@pytest.mark.model
def test_bundled_model_writes_valid_json(runner: Runner) -> None:
    # A grammar made from the schema constrains llama.cpp's sampling, so even SmolLM2-135M
    # writes JSON that validates.
    objects, response = run(
        create_llm(), runner, response_format=Capital, max_tokens=60, temperature=0, seed=1
    )
    assert isinstance(response.parsed, Capital)
    assert response.finish_reason == "stop"
    assert objects and objects[-1] == response.parsed.model_dump()
    assert all(grows(a, b) for a, b in pairwise(objects))
