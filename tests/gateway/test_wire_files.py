"""Files and citations through the three wire protocols, checked by the official SDKs.

In: each SDK's own attachment shapes (chat completions' ``image_url`` / ``file`` /
``input_audio``, the Responses API's ``input_image`` / ``input_file`` / ``input_audio``,
Anthropic's ``image`` / ``document`` blocks) reach spout as its portable parts, and a malformed
one is a 400 in the SDK's own error class, naming its place. Out: a file, a citation and
content spout did not recognise, streamed and not, read back by the SDKs' own decoders and
accumulators. The SDKs talk to the protocol modules alone over loopback
(tests/gateway/sdk_loopback.py); test_sdks.py has them through the whole gateway.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anthropic
import openai
import pytest
from sdk_loopback import http_client
from wire_support import Handler, answering, endpoint

from spout import Citation, File, FileEnd, FileStart, Finish, RawEvent, TextDelta, Usage
from spout._events import Event
from spout.gateway import event_from_dict, event_to_dict
from spout.gateway._anthropic import PROTOCOL as MESSAGES
from spout.gateway._openai import PROTOCOL as CHAT
from spout.gateway._responses import PROTOCOL as RESPONSES
from spout.gateway._spout_wire import PROTOCOL as SPOUT
from spout.gateway._spout_wire import response_to_dict
from spout.gateway._wire import Request

# A 1x1 PNG, a WAV header with no samples, the start of a PDF.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
WAV = b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00\x80>\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PNG_URL = f"data:image/png;base64,{b64(PNG)}"
PDF_URL = f"data:application/pdf;base64,{b64(PDF)}"
TEXT_PART = {"type": "text", "text": "What are these?"}


def openai_client(protocol: Any, answer: Handler, seen: list[Request]) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-gw",
        base_url=endpoint(protocol, answer, seen) + "/v1",
        max_retries=0,
        http_client=http_client(),
    )


def anthropic_client(answer: Handler, seen: list[Request]) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="sk-gw",
        base_url=endpoint(MESSAGES, answer, seen),
        max_retries=0,
        http_client=http_client(),
    )


OK: list[Event] = [TextDelta("ok"), Finish("stop", "stop")]


# --- in: each SDK's attachments as spout's portable parts ------------------------------------


def test_chat_completions_file_parts_are_the_portable_form_already() -> None:
    seen: list[Request] = []
    parts: list[Any] = [
        TEXT_PART,
        {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"file_data": PDF_URL, "filename": "report.pdf"}},
        {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}},
    ]
    client = openai_client(CHAT, answering(CHAT, OK, response_id="c1"), seen)
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": parts}])
    assert seen[0].messages == [{"role": "user", "content": parts}]

    # image_url as a bare string, as some clients send it: the object every adapter reads.
    bare = {"type": "image_url", "image_url": PNG_URL}
    request = CHAT.parse(
        {"model": "m", "messages": [{"role": "user", "content": [TEXT_PART, bare]}]}
    )
    assert request.messages[0]["content"][1] == {"type": "image_url", "image_url": {"url": PNG_URL}}


def test_responses_input_parts_become_portable_parts() -> None:
    seen: list[Request] = []
    content: list[Any] = [
        {"type": "input_text", "text": "What are these?"},
        {"type": "input_image", "image_url": PNG_URL, "detail": "high"},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "auto"},
        {"type": "input_file", "file_data": PDF_URL, "filename": "report.pdf"},
        {"type": "input_file", "file_url": "https://example.com/report.pdf"},
        {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}},
    ]
    client = openai_client(RESPONSES, answering(RESPONSES, OK, response_id="resp_1"), seen)
    client.responses.create(model="m", input=[{"role": "user", "content": content}])
    assert seen[0].messages == [
        {
            "role": "user",
            "content": [
                TEXT_PART,
                {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "high"}},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.jpg", "detail": "auto"},
                },
                {"type": "file", "file": {"file_data": PDF_URL, "filename": "report.pdf"}},
                {"type": "file", "file": {"file_data": "https://example.com/report.pdf"}},
                {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}},
            ],
        }
    ]


def test_anthropic_image_and_document_blocks_become_portable_parts() -> None:
    seen: list[Request] = []
    content: list[Any] = [
        {"type": "text", "text": "What are these?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
            "title": "report.pdf",
            "citations": {"enabled": True},
        },
        {"type": "document", "source": {"type": "url", "url": "https://example.com/r.pdf"}},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "Grass is green."},
        },
    ]
    client = anthropic_client(answering(MESSAGES, OK, response_id="msg_1"), seen)
    client.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": content}]
    )
    assert seen[0].messages == [
        {
            "role": "user",
            "content": [
                TEXT_PART,
                {"type": "image_url", "image_url": {"url": PNG_URL}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "file", "file": {"file_data": PDF_URL, "filename": "report.pdf"}},
                {"type": "file", "file": {"file_data": "https://example.com/r.pdf"}},
                {
                    "type": "file",
                    "file": {"file_data": f"data:text/plain;base64,{b64(b'Grass is green.')}"},
                },
            ],
        }
    ]


# A malformed attachment in each protocol: the SDK's own 400, naming the part and the problem.
BAD_CHAT = [
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}, "not valid base64"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64"}}, "needs a comma"),
    ({"type": "file", "file": {"file_id": "file-abc"}}, "file_id"),
    ({"type": "input_audio", "input_audio": {"data": "%%", "format": "wav"}}, "not valid base64"),
    ({"type": "image_url", "image_url": {}}, "needs image_url.url"),
]


@pytest.mark.parametrize(("part", "message"), BAD_CHAT)
def test_a_malformed_chat_attachment_is_a_400(part: dict[str, Any], message: str) -> None:
    client = openai_client(CHAT, answering(CHAT, OK, response_id="c1"), [])
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": [TEXT_PART, part]}],
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["message"].startswith("messages[0].content[1]: ")
    assert message in error["message"] and error["param"] == "messages"


BAD_RESPONSES = [
    ({"type": "input_image", "image_url": "data:image/png;base64,!!", "detail": "auto"}, "base64"),
    ({"type": "input_image", "file_id": "file-abc", "detail": "auto"}, "uploaded to one provider"),
    ({"type": "input_file", "file_id": "file-abc"}, "uploaded to one provider"),
    ({"type": "input_file", "file_data": "not base64 at all!"}, "not valid base64"),
    ({"type": "input_file", "file_url": "ftp://example.com/x.pdf"}, "file_url must be http(s)"),
]


@pytest.mark.parametrize(("part", "message"), BAD_RESPONSES)
def test_a_malformed_responses_attachment_is_a_400(part: dict[str, Any], message: str) -> None:
    client = openai_client(RESPONSES, answering(RESPONSES, OK, response_id="r"), [])
    content = [{"type": "input_text", "text": "Hi"}, part]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="m", input=[{"role": "user", "content": content}])
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["message"].startswith("input[0].content[1]: ") and message in error["message"]


BAD_BLOCKS = [
    (
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "@"}},
        "base64",
    ),
    ({"type": "image", "source": {"type": "base64", "data": b64(PNG)}}, "needs its media_type"),
    (
        {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
        "uploaded to one provider",
    ),
    ({"type": "image", "source": {"type": "url", "url": "file:///etc/passwd"}}, "http(s) url"),
    ({"type": "document", "source": {"type": "content", "content": []}}, "not supported"),
    ({"type": "image"}, "needs a source"),
]


@pytest.mark.parametrize(("block", "message"), BAD_BLOCKS)
def test_a_malformed_anthropic_block_is_a_400(block: dict[str, Any], message: str) -> None:
    client = anthropic_client(answering(MESSAGES, OK, response_id="msg"), [])
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="m",
            max_tokens=5,
            messages=[{"role": "user", "content": [TEXT_PART, block]}],
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "invalid_request_error"
    text = body["error"]["message"]
    assert text.startswith("messages[0].content[1]: ") and message in text


# --- out: files, citations and raw content, read by the SDKs --------------------------------

WEB = Citation(
    "Lisbon is sunny.",
    "https://example.com/weather",
    "Weather",
    0,
    16,
    {"type": "url_citation", "url": "https://example.com/weather"},
)
DOC = Citation("Grass is green.", None, "notes.txt", None, None, {"documentIndex": 0})
RAW = RawEvent("web_search_tool_result", {"type": "web_search_tool_result", "content": []})
IMAGE = File(data=PNG, media_type="image/png")
AUDIO = File(data=WAV, media_type="audio/wav")
PDF_FILE = File(data=PDF, media_type="application/pdf", name="answer.pdf")

ANSWER: list[Event] = [
    Citation(WEB.text, WEB.url, WEB.title, WEB.start, WEB.end, WEB.raw),
    TextDelta("Lisbon is sunny."),
    DOC,
    FileStart(0, "image/png"),
    FileEnd(0, IMAGE),
    FileStart(1, "audio/wav"),
    FileEnd(1, AUDIO),
    FileEnd(2, PDF_FILE),
    RAW,
    Usage(10, 5),
    Finish("stop", "stop"),
]


def check_chat_message(message: Any) -> None:
    """What a chat completion's message holds of ANSWER, as the SDK parsed it."""
    assert message.content == "Lisbon is sunny."
    web, doc = message.annotations
    assert web.type == "url_citation"
    citation = web.url_citation
    assert (citation.url, citation.title, citation.start_index, citation.end_index) == (
        WEB.url,
        "Weather",
        0,
        16,
    )
    assert doc.type == "spout_citation"
    assert doc.model_extra["spout_citation"]["text"] == "Grass is green."
    assert base64.b64decode(message.audio.data) == WAV
    (image,) = message.model_extra["images"]
    assert image["type"] == "image_url" and image["image_url"]["url"] == PNG_URL
    (pdf,) = message.model_extra["spout_files"]
    assert pdf["file"] == {
        "file_data": f"data:application/pdf;base64,{b64(PDF)}",
        "filename": "answer.pdf",
    }
    (raw,) = message.model_extra["spout_raw_events"]
    assert (raw["type"], raw["data"]) == (RAW.type, RAW.data)


def test_chat_completions_stream_files_citations_and_raw_content() -> None:
    client = openai_client(CHAT, answering(CHAT, ANSWER, response_id="chatcmpl-1"), [])
    with client.chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "Hi"}]
    ) as s:
        chunks = [event.chunk for event in s if event.type == "chunk"]
        final = s.get_final_completion()
    check_chat_message(final.choices[0].message)
    assert final.choices[0].finish_reason == "stop"
    # Each arrived in a chunk of its own, as it came.
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    kinds = [
        key
        for delta in deltas
        for key in ("annotations", "audio", "images", "spout_files", "spout_raw_events")
        if (delta.model_extra or {}).get(key) is not None or getattr(delta, key, None)
    ]
    assert kinds == [
        "annotations",
        "annotations",
        "images",
        "audio",
        "spout_files",
        "spout_raw_events",
    ]


def test_chat_completions_body_files_citations_and_raw_content() -> None:
    client = openai_client(CHAT, answering(CHAT, ANSWER, response_id="chatcmpl-1"), [])
    completion = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}]
    )
    check_chat_message(completion.choices[0].message)


def test_an_answer_handed_back_keeps_no_extension_fields() -> None:
    client = openai_client(CHAT, answering(CHAT, ANSWER, response_id="chatcmpl-1"), [])
    completion = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}]
    )
    answer = completion.choices[0].message.model_dump(exclude_none=True)
    request = CHAT.parse({"model": "m", "messages": [{"role": "user", "content": "Hi"}, answer]})
    assert request.messages[1] == {"role": "assistant", "content": "Lisbon is sunny."}


def check_responses_output(response: Any) -> None:
    message, image = response.output
    assert message.type == "message"
    (text,) = message.content
    assert text.text == "Lisbon is sunny."
    web, doc = text.annotations
    assert (web.type, web.url, web.title, web.start_index, web.end_index) == (
        "url_citation",
        WEB.url,
        "Weather",
        0,
        16,
    )
    assert (doc.type, doc.filename, doc.file_id) == ("file_citation", "notes.txt", "")
    assert doc.model_extra["cited_text"] == "Grass is green."
    assert image.type == "image_generation_call" and image.status == "completed"
    assert base64.b64decode(image.result) == PNG and image.output_format == "png"
    # The API has no item for an audio or PDF answer, nor for content spout did not know.
    audio, pdf = response.model_extra["spout_files"]
    assert audio == {"media_type": "audio/wav", "file_data": f"data:audio/wav;base64,{b64(WAV)}"}
    assert pdf["filename"] == "answer.pdf" and pdf["media_type"] == "application/pdf"
    assert response.model_extra["spout_raw_events"] == [{"type": RAW.type, "data": RAW.data}]


def test_responses_stream_files_citations_and_raw_content() -> None:
    client = openai_client(RESPONSES, answering(RESPONSES, ANSWER, response_id="resp_1"), [])
    with client.responses.stream(model="m", input="Hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    check_responses_output(final)
    added = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert [e.annotation_index for e in added] == [0, 1]
    assert added[0].annotation.url == WEB.url
    kinds = [e.type for e in events]
    assert "response.image_generation_call.completed" in kinds
    files = [e.model_extra["file"]["media_type"] for e in events if e.type == "spout.file"]
    assert files == ["audio/wav", "application/pdf"]
    raws = [e.model_extra["raw"] for e in events if e.type == "spout.raw_event"]
    assert raws == [{"type": RAW.type, "data": RAW.data}]


def test_responses_body_files_citations_and_raw_content() -> None:
    client = openai_client(RESPONSES, answering(RESPONSES, ANSWER, response_id="resp_1"), [])
    check_responses_output(client.responses.create(model="m", input="Hi"))


def test_a_responses_output_handed_back_drops_the_generated_image() -> None:
    client = openai_client(RESPONSES, answering(RESPONSES, ANSWER, response_id="resp_1"), [])
    output = client.responses.create(model="m", input="Hi").output
    items = [item.model_dump(exclude_none=True) for item in output]
    request = RESPONSES.parse({"model": "m", "input": [{"role": "user", "content": "Hi"}, *items]})
    assert request.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Lisbon is sunny."},
    ]


def check_anthropic_citations(text_block: Any) -> None:
    web, doc = text_block.citations
    assert web.type == "web_search_result_location"
    assert (web.url, web.title, web.cited_text) == (WEB.url, "Weather", "Lisbon is sunny.")
    assert doc.type == "char_location"
    assert (doc.cited_text, doc.document_index, doc.document_title) == (
        "Grass is green.",
        0,
        "notes.txt",
    )


def test_anthropic_stream_citations_files_and_raw_content() -> None:
    client = anthropic_client(answering(MESSAGES, ANSWER, response_id="msg_1"), [])
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    (text,) = final.content
    assert text.text == "Lisbon is sunny."
    check_anthropic_citations(text)
    assert [e.citation.type for e in events if e.type == "citation"] == [
        "web_search_result_location",
        "char_location",
    ]
    # Files and raw content: spout's own events, passed on by the SDK.
    files = [e.model_extra["content_block"] for e in events if e.type == "spout_file"]
    assert files == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)},
        },
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "audio/wav", "data": b64(WAV)},
        },
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
            "title": "answer.pdf",
        },
    ]
    (raw,) = [e.model_extra["raw"] for e in events if e.type == "spout_raw_event"]
    assert raw == {"type": RAW.type, "data": RAW.data}
    assert final.stop_reason == "end_turn"


def test_anthropic_body_citations_files_and_raw_content() -> None:
    client = anthropic_client(answering(MESSAGES, ANSWER, response_id="msg_1"), [])
    message = client.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
    )
    (text,) = message.content
    check_anthropic_citations(text)
    files = message.model_extra["spout_files"]
    assert [f["type"] for f in files] == ["image", "document", "document"]
    assert base64.b64decode(files[0]["source"]["data"]) == PNG
    assert message.model_extra["spout_raw_events"] == [{"type": RAW.type, "data": RAW.data}]


def test_an_anthropic_citation_from_anthropic_goes_back_as_it_came() -> None:
    own = {
        "type": "char_location",
        "cited_text": "Grass is green.",
        "document_index": 1,
        "document_title": "notes",
        "start_char_index": 4,
        "end_char_index": 19,
        "file_id": None,
    }
    events: list[Event] = [Citation("Grass is green.", None, "notes", None, None, own), *OK]
    client = anthropic_client(answering(MESSAGES, events, response_id="msg_1"), [])
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        final = stream.get_final_message()
    (citation,) = final.content[0].citations
    assert citation.model_dump() == own


# --- spout's own wire: every new event, and the answer, as JSON and back ---------------------


@pytest.mark.parametrize(
    "event",
    [
        FileStart(0, "image/png"),
        FileStart(1),
        FileEnd(0, IMAGE),
        FileEnd(2, PDF_FILE),
        FileEnd(3, File(url="https://example.com/a.png")),
        WEB,
        DOC,
        RAW,
        RawEvent("x", None),
    ],
    ids=repr,
)
def test_spout_wire_round_trip(event: Event) -> None:
    data = json.loads(json.dumps(event_to_dict(event)))
    back = event_from_dict(data)
    assert back == event
    if isinstance(event, Citation):
        assert isinstance(back, Citation) and back.raw == event.raw  # raw is not compared
    if isinstance(event, FileEnd):
        assert isinstance(back, FileEnd) and back.file.data == event.file.data


def test_spout_wire_frames_and_final_answer() -> None:
    request = SPOUT.parse({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
    encoder = SPOUT.encoder(request, response_id="st_1", model="m")
    frames = [frame for event in ANSWER for frame in encoder.feed(event)]
    events = [event_from_dict(json.loads(frame[6:-2])) for frame in frames]
    assert events == ANSWER
    from wire_support import response_of

    answer = response_to_dict(response_of(ANSWER))
    assert [base64.b64decode(f["data"]) for f in answer["files"]] == [PNG, WAV, PDF]
    assert [c["url"] for c in answer["citations"]] == [WEB.url, None]
    assert answer["raw_events"] == [{"event_type": RAW.type, "data": RAW.data}]
