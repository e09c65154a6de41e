"""spout.File, its portable form in messages, files= on a call, and files, citations and
unrecognised content in the events and the Response."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import spout
from helpers import Runner
from replay_server import ReplayServer
from spout import (
    Citation,
    ConfigurationError,
    Event,
    File,
    FileEnd,
    FileStart,
    Finish,
    ModelCapability,
    RawEvent,
    TextDelta,
    create_llm,
)
from spout._files import attach_files, file_from_part, files_in
from spout._response import Accumulator
from spout.providers import AsyncSource, Call, Provider, SyncSource


def png(width: int = 1, height: int = 1) -> bytes:
    """A real PNG (a white image), built by hand: signature, IHDR, IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))
        )

    header = struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\xff\xff" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png()
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
WAV = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + b"\x00" * 24


# -- File ----------------------------------------------------------------------------------------


def test_a_file_from_a_path_reads_its_bytes_and_takes_its_name_and_type(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    path.write_bytes(PNG)
    file = File(path)
    assert (file.data, file.name, file.media_type, file.kind) == (
        PNG,
        "chart.png",
        "image/png",
        "image",
    )
    assert file.size == len(PNG) and file.url is None
    assert File(str(path)) == file


@pytest.mark.parametrize(
    ("data", "media_type", "kind"),
    [
        (PNG, "image/png", "image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 16, "image/jpeg", "image"),
        (b"GIF89a" + b"\x00" * 8, "image/gif", "image"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp", "image"),
        (PDF, "application/pdf", "pdf"),
        (WAV, "audio/wav", "audio"),
        (b"ID3\x03\x00", "audio/mpeg", "audio"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image/heic", "image"),
        (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00", "audio/mp4", "audio"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00", "video/mp4", "video"),
        (b"plain words", "application/octet-stream", "other"),
    ],
)
def test_bytes_with_no_name_get_their_type_from_their_first_bytes(
    data: bytes, media_type: str, kind: str
) -> None:
    file = File(data=data)
    assert (file.media_type, file.kind) == (media_type, kind)


def test_a_given_media_type_wins_and_a_name_gives_one() -> None:
    assert File(data=PNG, media_type="IMAGE/PNG").media_type == "image/png"
    assert File(data=b"a,b\n1,2\n", name="table.csv").media_type == "text/csv"
    assert File(data=b"# hi", name="notes.md").kind == "text"


def test_a_url_is_kept_and_a_data_url_is_decoded() -> None:
    remote = File(url="https://example.com/img/cat.jpg?size=large")
    assert (remote.url, remote.data, remote.name, remote.media_type) == (
        "https://example.com/img/cat.jpg?size=large",
        None,
        "cat.jpg",
        "image/jpeg",
    )
    inline = File(url="data:image/png;base64," + base64.b64encode(PNG).decode())
    assert (inline.data, inline.url, inline.media_type) == (PNG, None, "image/png")
    text = File(url="data:text/plain,caf%C3%A9")
    assert (text.data, text.media_type) == ("café".encode(), "text/plain")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: File(), "exactly one of path=, data= or url=, not none"),
        (lambda: File(data=PNG, url="https://x.example/a.png"), "not data and url"),
        (lambda: File(url="ftp://x.example/a.png"), "http\\(s\\) or data: URL"),
        (lambda: File(url="data:image/png;base64,@@@"), "not valid base64"),
        (lambda: File(url="data:image/png;base64"), "needs a comma"),
        (lambda: File(data="text"), "data= must be bytes, not str"),  # type: ignore[arg-type]
    ],
)
def test_a_file_given_wrongly_says_what_is_wrong(make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_an_unreadable_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(ConfigurationError, match=r"cannot read file '.*nope\.png': No such file"):
        File(missing)


def test_a_file_past_the_cap_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spout._files, "MAX_FILE_BYTES", 100)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 101)
    with pytest.raises(
        ConfigurationError, match=r"'.*big\.bin' is 101 bytes; .* at most 100 bytes"
    ):
        File(big)
    with pytest.raises(ConfigurationError, match="at most 100 bytes"):
        File(data=b"x" * 101)
    with pytest.raises(ConfigurationError, match="larger than 100 bytes"):
        File(url="data:text/plain;base64," + base64.b64encode(b"x" * 200).decode())


def test_the_repr_never_prints_the_bytes() -> None:
    assert repr(File(data=PNG, name="a.png")) == (
        f"File(name='a.png', media_type='image/png', {len(PNG):,} bytes)"
    )


# -- the portable form -----------------------------------------------------------------------------


def test_each_kind_of_file_becomes_the_part_openai_chat_takes() -> None:
    b64 = base64.b64encode(PNG).decode()
    assert File(data=PNG).part() == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{b64}"},
    }
    assert File(url="https://x.example/a.png").part() == {
        "type": "image_url",
        "image_url": {"url": "https://x.example/a.png"},
    }
    assert File(data=PDF, name="r.pdf").part() == {
        "type": "file",
        "file": {
            "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
            "filename": "r.pdf",
        },
    }
    assert File(data=WAV).part() == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(WAV).decode(), "format": "wav"},
    }


@pytest.mark.parametrize(
    "file",
    [
        File(data=PNG),
        File(url="https://x.example/a.png"),
        File(data=PDF, name="r.pdf"),
        File(data=WAV),
        File(data=b"\xff\xfb\x90", media_type="audio/mpeg"),
    ],
    ids=["image", "image url", "pdf", "wav", "mp3"],
)
def test_a_part_gives_back_the_file_it_was_made_from(file: File) -> None:
    back = file_from_part(file.part())
    assert back is not None
    assert (back.data, back.url, back.media_type) == (file.data, file.url, file.media_type)


def test_parts_as_clients_write_them() -> None:
    assert file_from_part({"type": "text", "text": "hi"}) is None
    # An image URL that does not say its type is an image all the same.
    image = file_from_part(
        {"type": "image_url", "image_url": {"url": "https://x.example/img?id=7"}}
    )
    assert image is not None and (image.media_type, image.kind) == ("image/*", "image")
    # Bare base64 file_data: the type comes from the filename.
    bare = {
        "type": "file",
        "file": {"file_data": base64.b64encode(PDF).decode(), "filename": "x.pdf"},
    }
    back = file_from_part(bare)
    assert back is not None and (back.data, back.media_type, back.name) == (
        PDF,
        "application/pdf",
        "x.pdf",
    )
    with pytest.raises(
        ConfigurationError, match="file_id refers to a file uploaded to one provider"
    ):
        file_from_part({"type": "file", "file": {"file_id": "file-abc"}})
    with pytest.raises(ConfigurationError, match=r"needs image_url\.url"):
        file_from_part({"type": "image_url", "image_url": {}})


def test_files_attach_to_the_last_user_turn(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is this?"}]
    attach_files(messages, [tmp_path / "a.png", "https://x.example/b.jpg"])
    assert messages[-1]["content"] == [
        {"type": "text", "text": "What is this?"},
        File(data=PNG).part(),
        {"type": "image_url", "image_url": {"url": "https://x.example/b.jpg"}},
    ]
    assert list(files_in(messages)) == [
        File(data=PNG, media_type="image/png"),
        File(url="https://x.example/b.jpg"),
    ]
    # After an answer: the files make a user turn of their own.
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]
    attach_files(history, [File(data=PDF)])
    assert history[-1]["role"] == "user" and history[0]["content"] == "hi"
    with pytest.raises(
        ConfigurationError, match=r"takes spout\.File objects, paths and URLs, not int"
    ):
        attach_files(history, [3])  # type: ignore[list-item]


# -- files= on a call ------------------------------------------------------------------------------


class Recorder(Provider):
    """Answers with fixed events and keeps the calls it was asked; declares what it is told."""

    name = "recorder"

    def __init__(self, events: list[Any], **capabilities: bool) -> None:
        super().__init__("m")
        self.events = events
        self.calls: list[Call] = []
        self.declared = {ModelCapability(name): on for name, on in capabilities.items()}

    def capabilities(self) -> dict[ModelCapability, Any]:
        return self.declared

    def open_stream(self, call: Call) -> SyncSource:
        self.calls.append(call)
        return iter(self.events), lambda: None

    async def aopen_stream(self, call: Call) -> AsyncSource:
        self.calls.append(call)

        async def events() -> AsyncIterator[Any]:
            for event in self.events:
                yield event

        async def release() -> None:
            pass

        return events(), release


TEXT = [TextDelta("ok"), Finish("stop")]


def test_files_reach_the_provider_as_parts_of_the_user_turn(tmp_path: Path, runner: Runner) -> None:
    (tmp_path / "r.pdf").write_bytes(PDF)
    provider = Recorder(TEXT, pdf_input=True, vision=True)
    llm = spout.LLM(provider)
    runner.text(llm, "Summarize", files=[tmp_path / "r.pdf", File(data=PNG)])
    (call,) = provider.calls
    assert call.messages[-1]["content"] == [
        {"type": "text", "text": "Summarize"},
        File(data=PDF, name="r.pdf").part(),
        File(data=PNG).part(),
    ]
    assert "files" not in call.params


def test_a_file_the_provider_does_not_take_fails_before_anything_is_sent(runner: Runner) -> None:
    provider = Recorder(TEXT, vision=True)  # images, but no PDFs and no audio
    llm = spout.LLM(provider)
    with pytest.raises(
        ConfigurationError,
        match=r"provider 'recorder' cannot take file 'r\.pdf' \(application/pdf\): it does not "
        r"take pdf input \(PDF_INPUT",
    ):
        runner.text(llm, "Summarize", files=[File(data=PDF, name="r.pdf")])
    # The same goes for a part written into the messages.
    with pytest.raises(ConfigurationError, match=r"cannot take file .*audio/wav.*AUDIO_INPUT"):
        runner.text(llm, messages=[{"role": "user", "content": [File(data=WAV).part()]}])
    assert provider.calls == []


def test_a_text_only_server_refuses_a_file_and_no_request_is_sent(
    replay: ReplayServer, tmp_path: Path
) -> None:
    """TGI's native API takes text only: the image never leaves the process."""
    (tmp_path / "cat.png").write_bytes(PNG)
    llm = create_llm("huggingface", model="tgi", base_url=replay.url, max_retries=0)
    try:
        with pytest.raises(ConfigurationError, match=r"'huggingface' cannot take file 'cat\.png'"):
            llm.generate("What is this?", files=[tmp_path / "cat.png"])
    finally:
        llm.close()
    assert replay.requests == []


# -- files, citations and unrecognised content in the answer ------------------------------------


def test_files_citations_and_raw_content_fold_into_the_response() -> None:
    image = File(data=PNG)
    citation = Citation("the sky is blue", url="https://x.example", title="Sky", start=0, end=3)
    acc = Accumulator()
    events: list[Event] = [
        TextDelta("Sky"),
        citation,
        FileStart(0, "image/png"),
        FileEnd(0, image),
        RawEvent("server_tool_use", {"id": "t1"}),
        Finish("stop"),
    ]
    for event in events:
        assert not acc.add(event)
    response = acc.response()
    assert response.files == (image,)
    assert response.citations == (citation,)
    assert response.raw_events == (RawEvent("server_tool_use", {"id": "t1"}),)
    assert response.finish_reason == "stop"


def test_a_file_alone_is_an_answer() -> None:
    acc = Accumulator()
    acc.add(FileStart(0))
    assert acc.started
    acc.add(FileEnd(0, File(data=PNG)))
    assert not acc.add(Finish("stop"))
    assert acc.response().finish_reason == "stop"


def test_a_stream_of_nothing_but_unrecognised_content_does_not_pass_for_a_stop(
    runner: Runner,
) -> None:
    raw = RawEvent("web_search_tool_result", {"content": []})
    llm = spout.LLM(Recorder([raw, Finish("stop", "end_turn")]))
    streamed = runner.events(llm, "hi")
    assert streamed.events[-1] == Finish("unrecognized", "end_turn")
    response = runner.generate(llm, "hi")
    assert (response.finish_reason, response.raw_finish_reason) == ("unrecognized", "end_turn")
    assert response.raw_events == (raw,) and response.text == ""
    # With text beside it, the answer is the text, and a stop is a stop.
    llm = spout.LLM(Recorder([raw, TextDelta("hi"), Finish("stop")]))
    assert runner.generate(llm, "hi").finish_reason == "stop"


def test_iterating_a_stream_for_text_leaves_files_and_citations_out() -> None:
    events: list[Any] = [
        TextDelta("a"),
        FileStart(0, "image/png"),
        FileEnd(0, File(data=PNG)),
        Citation("c"),
        RawEvent("x"),
        TextDelta("b"),
        Finish("stop"),
    ]
    llm = spout.LLM(Recorder(events))
    with llm.generate_stream("hi") as stream:
        chunks: Iterator[str] = iter(stream)
        assert list(chunks) == ["a", "b"]
    assert stream.response.files == (File(data=PNG),)
