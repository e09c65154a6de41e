"""Files sent to Anthropic, Gemini, Vertex AI, Bedrock and Cohere: each request in the provider's
documented shape, exactly, whether the files came as ``files=`` or as portable parts in
``messages``; and a type a provider cannot take refused before anything is sent."""

from __future__ import annotations

import base64
from typing import Any

import pytest

import spout
from helpers import Runner, made
from replay_server import ReplayServer, Reply, transcript
from spout import File, ModelCapability, create_llm

PNG = b"\x89PNG\r\n\x1a\n" + b"WIRE-png-pixels"
PDF = b"%PDF-1.7\nWIRE pdf\n%%EOF\n"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt WIRE-wav"
MP4 = b"\x00\x00\x00\x18ftypmp42WIRE-video"
HEIC = b"\x00\x00\x00\x18ftypheicWIRE-heic"
DOCX = b"PK\x03\x04WIRE-docx"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{b64(data)}"


#: Files as OpenAI's SDK writes them in a message (the portable form), beside their text.
PORTABLE = [
    {"type": "text", "text": "Compare these."},
    {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}},
    # A URL that names no type is an image all the same: the part says so.
    {"type": "image_url", "image_url": {"url": "https://example.com/photo?id=7"}},
    {"type": "file", "file": {"file_data": data_url("application/pdf", PDF), "filename": "a.pdf"}},
]


def refused(runner: Runner, llm: spout.LLM, replay: ReplayServer, *words: str, **kw: Any) -> None:
    """The call fails before any request, with an error naming each of ``words``."""
    with pytest.raises(spout.ConfigurationError) as caught:
        runner.text(llm, "What is this?", **kw)
    for word in words:
        assert word in str(caught.value)
    assert replay.requests == []


# -- Anthropic --------------------------------------------------------------------------------


def anthropic(replay: ReplayServer, model: str = "claude-sonnet-4-5") -> spout.LLM:
    body, _ = transcript("anthropic", "max_tokens_keepalive")
    replay.replies = [Reply(chunks=[body])]
    return made(
        create_llm("anthropic", model=model, base_url=replay.url, api_key="k", max_retries=0)
    )


def test_anthropic_files(replay: ReplayServer, runner: Runner) -> None:
    files = [
        File(data=PNG, name="cat.png"),
        File(url="https://example.com/cat.jpg"),
        File(data=PDF, name="report.pdf"),
        File(url="https://example.com/paper.pdf"),
        File(data="Grüße\n".encode(), name="notes.md"),
    ]
    runner.text(anthropic(replay), "Describe them.", files=files)
    # https://docs.anthropic.com/en/docs/build-with-claude/vision, .../pdf-support
    assert replay.requests[-1].json()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe them."},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
                    "title": "report.pdf",
                },
                {
                    "type": "document",
                    "source": {"type": "url", "url": "https://example.com/paper.pdf"},
                    "title": "paper.pdf",
                },
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "Grüße\n"},
                    "title": "notes.md",
                },
            ],
        }
    ]


def test_an_openai_image_part_reaches_anthropic_as_an_image_block(
    replay: ReplayServer, runner: Runner
) -> None:
    # What a gateway's OpenAI client sends: Anthropic answered it with a 400 before.
    native = {"type": "image", "source": {"type": "url", "url": "https://example.com/b.png"}}
    messages = [
        {"role": "user", "content": [*PORTABLE, native]},
        {"role": "assistant", "content": "A cat and a report."},
        {"role": "user", "content": "And now?"},
    ]
    runner.text(anthropic(replay), None, messages=messages)
    assert replay.requests[-1].json()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)},
                },
                {
                    "type": "image",
                    "source": {"type": "url", "url": "https://example.com/photo?id=7"},
                },
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
                    "title": "a.pdf",
                },
                native,  # already in Anthropic's shape: as it was
            ],
        },
        {"role": "assistant", "content": "A cat and a report."},
        {"role": "user", "content": "And now?"},
    ]


@pytest.mark.parametrize(
    ("file", "words"),
    [
        (File(data=WAV, name="talk.wav"), ("'anthropic'", "audio")),  # AUDIO_INPUT is False
        (File(data=HEIC, name="x.heic"), ("'anthropic'", "image/heic", "JPEG, PNG, GIF")),
        (File(data=DOCX, name="memo.docx"), ("'anthropic'", "'memo.docx'", DOCX_TYPE)),
        (File(url="https://example.com/notes.txt"), ("'anthropic'", "notes.txt", "by URL")),
    ],
    ids=["audio", "heic", "docx", "text-url"],
)
def test_anthropic_refuses_before_sending(
    replay: ReplayServer, runner: Runner, file: File, words: tuple[str, ...]
) -> None:
    refused(runner, anthropic(replay), replay, *words, files=[file])


def test_anthropic_declares_images_and_pdfs_not_audio() -> None:
    caps = create_llm("anthropic", model="claude-opus-4-1", api_key="k").get_capabilities()
    assert (caps[ModelCapability.VISION], caps[ModelCapability.PDF_INPUT]) == (True, True)
    assert caps[ModelCapability.AUDIO_INPUT] is False


# -- Gemini -----------------------------------------------------------------------------------


def gemini(replay: ReplayServer, model: str = "gemini-2.5-flash") -> spout.LLM:
    body, _ = transcript("gemini", "text")
    replay.replies = [Reply(chunks=[body])]
    return made(create_llm("gemini", model=model, base_url=replay.url, api_key="k", max_retries=0))


def test_gemini_files(replay: ReplayServer, runner: Runner) -> None:
    files = [
        File(data=PNG, name="cat.png"),
        File(url="https://example.com/cat.jpg"),
        File(data=PDF, name="report.pdf"),
        File(data=WAV, name="talk.wav"),
        File(data=MP4, name="clip.mp4"),
        File(url="https://example.com/paper.pdf"),
    ]
    runner.text(gemini(replay), "Describe them.", files=files)
    # https://ai.google.dev/gemini-api/docs/file-input-methods
    assert replay.requests[-1].json()["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Describe them."},
                {"inlineData": {"mimeType": "image/png", "data": b64(PNG)}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
                {"inlineData": {"mimeType": "application/pdf", "data": b64(PDF)}},
                {"inlineData": {"mimeType": "audio/wav", "data": b64(WAV)}},
                {"inlineData": {"mimeType": "video/mp4", "data": b64(MP4)}},
                {
                    "fileData": {
                        "mimeType": "application/pdf",
                        "fileUri": "https://example.com/paper.pdf",
                    }
                },
            ],
        }
    ]


def test_gemini_portable_parts(replay: ReplayServer, runner: Runner) -> None:
    files_api = "https://generativelanguage.googleapis.com/v1beta/files/WIRE-abc123"
    messages = [
        {
            "role": "user",
            "content": [
                *PORTABLE,
                {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}},
                # A Files API URI names no type: the API knows the file's own.
                {"type": "file", "file": {"file_data": files_api}},
            ],
        },
        {"role": "assistant", "content": "Seen."},
    ]
    runner.text(gemini(replay), None, messages=messages)
    assert replay.requests[-1].json()["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Compare these."},
                {"inlineData": {"mimeType": "image/png", "data": b64(PNG)}},
                {"fileData": {"fileUri": "https://example.com/photo?id=7"}},
                {"inlineData": {"mimeType": "application/pdf", "data": b64(PDF)}},
                {"inlineData": {"mimeType": "audio/wav", "data": b64(WAV)}},
                {"fileData": {"fileUri": files_api}},
            ],
        },
        {"role": "model", "parts": [{"text": "Seen."}]},
    ]


@pytest.mark.parametrize(
    ("file", "words"),
    [
        (File(data=DOCX, name="memo.docx"), ("'gemini'", "'memo.docx'", DOCX_TYPE)),
        (File(data=b"\x00\x01WIRE"), ("'gemini'", "application/octet-stream", "media_type=")),
    ],
    ids=["docx", "unknown-bytes"],
)
def test_gemini_refuses_before_sending(
    replay: ReplayServer, runner: Runner, file: File, words: tuple[str, ...]
) -> None:
    refused(runner, gemini(replay), replay, *words, files=[file])


@pytest.mark.parametrize(
    ("model", "vision", "pdf", "audio"),
    [
        ("gemini-2.5-pro", True, True, True),
        ("gemma-3-27b-it", True, False, False),
        ("gemma-3n-e4b-it", True, False, True),
        ("gemma-3-1b-it", False, False, False),
    ],
)
def test_gemini_declares_what_each_model_takes(
    model: str, vision: bool, pdf: bool, audio: bool
) -> None:
    caps = create_llm("gemini", model=model, api_key="k").get_capabilities()
    assert [caps[c] for c in (ModelCapability.VISION, ModelCapability.PDF_INPUT)] == [vision, pdf]
    assert caps[ModelCapability.AUDIO_INPUT] is audio


# -- Vertex AI: each route in its own wire's shape ----------------------------------------------


def vertex(replay: ReplayServer, model: str) -> spout.LLM:
    case = "claude_text" if model.startswith("claude") else "gemini_text"
    body, _ = transcript("vertex", case)
    replay.replies = [Reply(chunks=[body])]
    return made(
        create_llm(
            "vertex",
            model=model,
            project="wire-project",
            location="us-central1",
            base_url=replay.url,
            token_provider=lambda: "ya29.WIRE",
            max_retries=0,
        )
    )


def test_vertex_gemini_files(replay: ReplayServer, runner: Runner) -> None:
    files = [File(data=PNG), File(url="https://storage.googleapis.com/wire/a.pdf")]
    runner.text(vertex(replay, "gemini-2.5-flash"), "Describe them.", files=files)
    assert replay.requests[-1].json()["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Describe them."},
                {"inlineData": {"mimeType": "image/png", "data": b64(PNG)}},
                {
                    "fileData": {
                        "mimeType": "application/pdf",
                        "fileUri": "https://storage.googleapis.com/wire/a.pdf",
                    }
                },
            ],
        }
    ]


def test_vertex_gemini_needs_a_urls_media_type(replay: ReplayServer, runner: Runner) -> None:
    # Vertex AI's fileData.mimeType is required, where the Gemini API's is not.
    llm = vertex(replay, "gemini-2.5-flash")
    refused(
        runner,
        llm,
        replay,
        "'vertex'",
        "'photo'",
        "media_type=",
        messages=[{"role": "user", "content": PORTABLE[:3]}],
    )


def test_vertex_claude_files(replay: ReplayServer, runner: Runner) -> None:
    llm = vertex(replay, "claude-sonnet-4-5@20250929")
    runner.text(llm, None, messages=[{"role": "user", "content": PORTABLE}])
    sent = replay.requests[-1].json()
    assert sent["anthropic_version"] == "vertex-2023-10-16"
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)},
                },
                {
                    "type": "image",
                    "source": {"type": "url", "url": "https://example.com/photo?id=7"},
                },
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
                    "title": "a.pdf",
                },
            ],
        }
    ]


def test_vertex_claude_refuses_audio_naming_vertex(replay: ReplayServer, runner: Runner) -> None:
    llm = vertex(replay, "claude-sonnet-4-5@20250929")
    refused(
        runner,
        llm,
        replay,
        "'vertex'",
        "'talk.wav'",
        "audio",
        files=[File(data=WAV, name="talk.wav")],
    )


def test_vertex_routes_declare_their_vendors_files() -> None:
    def caps(model: str) -> list[Any]:
        llm = create_llm("vertex", model=model, project="p", token_provider=lambda: "t")
        got = llm.get_capabilities()
        return [
            got[c]
            for c in (
                ModelCapability.VISION,
                ModelCapability.PDF_INPUT,
                ModelCapability.AUDIO_INPUT,
            )
        ]

    assert caps("gemini-2.5-flash") == [True, True, True]
    assert caps("claude-sonnet-4-5@20250929") == [True, True, False]


# -- Bedrock ----------------------------------------------------------------------------------

CLAUDE_ON_BEDROCK = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"


def bedrock(replay: ReplayServer, model: str = CLAUDE_ON_BEDROCK) -> spout.LLM:
    body, _ = transcript("bedrock", "text")
    replay.replies = [
        Reply(chunks=[body], headers={"Content-Type": "application/vnd.amazon.eventstream"})
    ]
    # A Bedrock API key: no signature, no AWS credentials needed for what is tested here.
    return made(
        create_llm(
            "bedrock",
            model=model,
            region="us-east-1",
            base_url=replay.url,
            api_key="WIRE-bedrock-key",
            max_retries=0,
        )
    )


def test_bedrock_files(replay: ReplayServer, runner: Runner) -> None:
    files = [
        File(data=PNG, name="cat.png"),
        File(data=PDF, name="Q3 report_final.v2.pdf"),
        File(data=PDF, name="Q3 report_final.v2.pdf"),  # the same name: made unique
        File(data=b"# Notes\n", name="Résumé (draft).md"),
        File(data=MP4, name="clip.mp4"),
    ]
    runner.text(bedrock(replay), "Describe them.", files=files)
    # ImageBlock, DocumentBlock and VideoBlock in botocore's bedrock-runtime service model
    assert replay.requests[-1].json()["messages"] == [
        {
            "role": "user",
            "content": [
                {"text": "Describe them."},
                {"image": {"format": "png", "source": {"bytes": b64(PNG)}}},
                {
                    "document": {
                        "format": "pdf",
                        "name": "Q3 report final v2",
                        "source": {"bytes": b64(PDF)},
                    }
                },
                {
                    "document": {
                        "format": "pdf",
                        "name": "Q3 report final v2 (2)",
                        "source": {"bytes": b64(PDF)},
                    }
                },
                {
                    "document": {
                        "format": "md",
                        "name": "Resume (draft)",
                        "source": {"bytes": b64(b"# Notes\n")},
                    }
                },
                {"video": {"format": "mp4", "source": {"bytes": b64(MP4)}}},
            ],
        }
    ]


def test_bedrock_portable_parts(replay: ReplayServer, runner: Runner) -> None:
    messages = [
        {"role": "user", "content": [PORTABLE[0], PORTABLE[1], PORTABLE[3]]},
        {"role": "assistant", "content": "A cat and a report."},
        {"role": "user", "content": "More?"},
    ]
    runner.text(bedrock(replay), None, messages=messages)
    assert replay.requests[-1].json()["messages"] == [
        {
            "role": "user",
            "content": [
                {"text": "Compare these."},
                {"image": {"format": "png", "source": {"bytes": b64(PNG)}}},
                {"document": {"format": "pdf", "name": "a", "source": {"bytes": b64(PDF)}}},
            ],
        },
        {"role": "assistant", "content": [{"text": "A cat and a report."}]},
        {"role": "user", "content": [{"text": "More?"}]},
    ]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (
            {"files": [File(url="https://example.com/cat.png")]},
            ("'bedrock'", "cat.png", "not a URL"),
        ),
        ({"files": [File(data=WAV, name="talk.wav")]}, ("'bedrock'", "'talk.wav'", "audio")),
        (
            {"files": [File(data=HEIC, name="x.heic")]},
            ("'bedrock'", "image/heic", "PNG, JPEG, GIF"),
        ),
        (
            {"messages": [{"role": "user", "content": [PORTABLE[3]]}]},
            ("'bedrock'", "'a.pdf'", "text beside a document"),
        ),
    ],
    ids=["url", "audio", "heic", "document-alone"],
)
def test_bedrock_refuses_before_sending(
    replay: ReplayServer, runner: Runner, kwargs: dict[str, Any], words: tuple[str, ...]
) -> None:
    llm = bedrock(replay)
    with pytest.raises(spout.ConfigurationError) as caught:
        runner.text(llm, None if "messages" in kwargs else "What is this?", **kwargs)
    for word in words:
        assert word in str(caught.value)
    assert replay.requests == []


@pytest.mark.parametrize(
    ("model", "vision", "documents"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", True, True),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", True, True),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", False, True),  # AWS's table: no vision
        ("us.amazon.nova-pro-v1:0", True, True),
        ("amazon.nova-micro-v1:0", False, False),
        ("us.meta.llama3-2-90b-instruct-v1:0", True, True),
        ("meta.llama3-1-70b-instruct-v1:0", False, True),
        ("mistral.pixtral-large-2502-v1:0", True, True),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/wire42", True, True),
    ],
)
def test_bedrock_declares_what_each_model_takes(model: str, vision: bool, documents: bool) -> None:
    caps = create_llm("bedrock", model=model, region="us-east-1", api_key="k").get_capabilities()
    assert (caps[ModelCapability.VISION], caps[ModelCapability.PDF_INPUT]) == (vision, documents)
    assert caps[ModelCapability.AUDIO_INPUT] is False


def test_bedrock_model_without_vision_refuses_an_image(
    replay: ReplayServer, runner: Runner
) -> None:
    llm = bedrock(replay, "us.anthropic.claude-3-5-haiku-20241022-v1:0")
    refused(
        runner,
        llm,
        replay,
        "'bedrock'",
        "'cat.png'",
        "image",
        files=[File(data=PNG, name="cat.png")],
    )


# -- Cohere -----------------------------------------------------------------------------------


def cohere(replay: ReplayServer, model: str = "command-a-vision-07-2025") -> spout.LLM:
    body, _ = transcript("cohere", "text")
    replay.replies = [Reply(chunks=[body])]
    return made(create_llm("cohere", model=model, base_url=replay.url, api_key="k", max_retries=0))


def test_cohere_images(replay: ReplayServer, runner: Runner) -> None:
    detailed = {
        "type": "image_url",
        "image_url": {"url": data_url("image/png", PNG), "detail": "low"},
    }
    messages = [{"role": "user", "content": [PORTABLE[0], detailed]}]
    runner.text(
        cohere(replay), None, messages=messages, files=[File(url="https://example.com/a.jpg")]
    )
    # https://docs.cohere.com/docs/image-inputs: a data URL or an http(s) URL, and "detail"
    assert replay.requests[-1].json()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {
                    "type": "image_url",
                    "image_url": {"url": data_url("image/png", PNG), "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("model", "kwargs", "words"),
    [
        (
            "command-a-vision-07-2025",
            {"files": [File(data=PDF, name="r.pdf")]},
            ("'cohere'", "'r.pdf'"),
        ),
        (
            "command-a-vision-07-2025",
            {"files": [File(data=WAV, name="t.wav")]},
            ("'cohere'", "'t.wav'"),
        ),
        (
            "command-a-03-2025",
            {"files": [File(data=PNG, name="cat.png")]},
            ("'cohere'", "'cat.png'"),
        ),
        # An image by a URL of no telling type is an image all the same.
        (
            "command-a-03-2025",
            {"messages": [{"role": "user", "content": PORTABLE[:3:2]}]},
            ("'cohere'", "'photo'", "image input"),
        ),
    ],
    ids=["pdf", "audio", "image-without-vision", "image-url-without-vision"],
)
def test_cohere_refuses_before_sending(
    replay: ReplayServer, runner: Runner, model: str, kwargs: dict[str, Any], words: tuple[str, ...]
) -> None:
    llm = cohere(replay, model)
    with pytest.raises(spout.ConfigurationError) as caught:
        runner.text(llm, None if "messages" in kwargs else "What is this?", **kwargs)
    for word in words:
        assert word in str(caught.value)
    assert replay.requests == []


def test_cohere_declares_vision_only_for_its_vision_models() -> None:
    def vision(model: str) -> Any:
        return create_llm("cohere", model=model, api_key="k").get_capabilities()[
            ModelCapability.VISION
        ]

    assert vision("command-a-vision-07-2025") and vision("c4ai-aya-vision-32b")
    assert not vision("command-a-03-2025") and not vision("command-r-plus-08-2024")
