"""Files sent to OpenAI's chat completions and its profiles, Azure, the Responses API, Ollama,
Hugging Face and the in-process models: the exact request each documents, through the loopback
server, and a file a provider cannot take refused before anything is sent."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

import spout
from helpers import Runner, made
from replay_server import ReplayServer, Reply
from spout import File, ModelCapability, create_llm
from spout.providers.openai import OpenAIProvider

PNG = b"\x89PNG\r\n\x1a\n" + b"WIRE" * 4
PDF = b"%PDF-1.4\n% WIRE\n%%EOF\n"
WAV = b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + b"\x00" * 24
PROMPT = "What is in it?"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{b64(data)}"


def chat_reply() -> Reply:
    """A short chat completions stream: the answer matters less than the request."""
    chunks = [
        {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d}]}
        for d in ({"role": "assistant", "content": "A cat."},)
    ]
    chunks.append(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
    )
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return Reply(chunks=[body + b"data: [DONE]\n\n"])


def user_turn(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": PROMPT}, *parts]}]


def sent_messages(replay: ReplayServer) -> Any:
    (request,) = replay.requests
    return request.json()["messages"]


@pytest.fixture
def at_openai(replay: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The loopback server stands at OpenAI's own address: what spout declares and sends for
    OpenAI itself (by model) applies there."""
    url = f"{replay.url}/v1"
    monkeypatch.setattr(OpenAIProvider, "default_base_url", url)
    return url


def openai(base_url: str, model: str = "gpt-4o-mini", **config: Any) -> spout.LLM:
    config.setdefault("max_retries", 0)
    return made(create_llm("openai", model=model, base_url=base_url, api_key="sk-test", **config))


def profile(name: str, replay: ReplayServer, model: str = "m", **config: Any) -> spout.LLM:
    config.setdefault("max_retries", 0)
    return made(create_llm(name, model=model, base_url=f"{replay.url}/v1", api_key="k", **config))


def refused(
    runner: Runner, llm: spout.LLM, match: str, prompt: str | None = PROMPT, **kwargs: Any
) -> str:
    """The ConfigurationError a call raises before sending anything; its message."""
    with pytest.raises(spout.ConfigurationError, match=match) as caught:
        runner.text(llm, prompt, **kwargs)
    return str(caught.value)


# -- OpenAI's chat completions: the portable form is its own --------------------------------------


def test_image_bytes_and_url(replay: ReplayServer, runner: Runner, at_openai: str) -> None:
    replay.replies = [chat_reply()]
    files = [File(data=PNG), "https://example.com/cat.jpg"]
    assert runner.text(openai(at_openai), PROMPT, files=files).response.text == "A cat."
    assert sent_messages(replay) == user_turn(
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    )


def test_a_path_in_files_is_read_and_sent(
    replay: ReplayServer, runner: Runner, at_openai: str, tmp_path: Path
) -> None:
    # The bug in #20: files= went into the JSON body as it was, and a Path is no JSON
    # ("TypeError: Type is not JSON serializable: PosixPath").
    (tmp_path / "report.pdf").write_bytes(PDF)
    replay.replies = [chat_reply()]
    runner.text(openai(at_openai, model="gpt-4o"), PROMPT, files=[tmp_path / "report.pdf"])
    body = replay.requests[0].json()
    assert "files" not in body
    assert body["messages"] == user_turn(
        {
            "type": "file",
            "file": {"filename": "report.pdf", "file_data": data_url("application/pdf", PDF)},
        }
    )


def test_pdf_without_a_name_is_given_one(
    replay: ReplayServer, runner: Runner, at_openai: str
) -> None:
    # OpenAI refuses file_data without a filename ("Missing required parameter").
    replay.replies = [chat_reply()]
    runner.text(openai(at_openai), PROMPT, files=[File(data=PDF)])
    (part,) = sent_messages(replay)[0]["content"][1:]
    assert part == {
        "type": "file",
        "file": {"filename": "file.pdf", "file_data": data_url("application/pdf", PDF)},
    }


def test_audio(replay: ReplayServer, runner: Runner, at_openai: str) -> None:
    replay.replies = [chat_reply()]
    llm = openai(at_openai, model="gpt-4o-audio-preview")
    runner.text(llm, PROMPT, files=[File(data=WAV, name="clip.wav")])
    assert sent_messages(replay) == user_turn(
        {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}}
    )


def test_portable_parts_in_messages_pass_as_they_are(
    replay: ReplayServer, runner: Runner, at_openai: str
) -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG), "detail": "low"}},
        {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": data_url("application/pdf", PDF)},
        },
    ]
    replay.replies = [chat_reply()]
    runner.text(openai(at_openai), None, messages=user_turn(*parts))
    assert sent_messages(replay) == user_turn(*parts)


def test_refused_before_sending(replay: ReplayServer, runner: Runner, at_openai: str) -> None:
    llm = openai(at_openai, model="gpt-4o")
    # Chat completions take a PDF's bytes only (no file URL: OpenAI's file-inputs guide).
    message = refused(runner, llm, "cannot take file", files=["https://example.com/paper.pdf"])
    assert "'openai'" in message and "'paper.pdf'" in message and "URL" in message
    # Image types OpenAI does not list, video, text: PDFs are the only documents here.
    refused(
        runner,
        llm,
        "image/heic.*it takes images of image/gif",
        files=[File(data=PNG, name="photo.heic")],
    )
    refused(runner, llm, "'clip.mp4'", files=[File(data=b"\0\0\0\x18ftypmp42", name="clip.mp4")])
    refused(runner, llm, "'notes.txt'.*not text", files=[File(data=b"hi", name="notes.txt")])
    # Audio only to an audio model, and only wav or mp3.
    refused(runner, llm, "AUDIO_INPUT", files=[File(data=WAV, name="clip.wav")])
    audio = openai(at_openai, model="gpt-4o-audio-preview")
    refused(
        runner,
        audio,
        "audio/flac.*it takes audio as mp3, wav",
        files=[File(data=b"fLaC", name="clip.flac")],
    )
    # A model that reads text alone.
    refused(runner, openai(at_openai, model="gpt-3.5-turbo"), "VISION", files=[File(data=PNG)])
    assert replay.requests == []


@pytest.mark.parametrize(
    ("model", "vision", "pdf", "audio"),
    [
        ("gpt-4o-mini", True, True, False),
        ("gpt-4.1", True, True, False),
        ("o3", True, True, False),
        ("gpt-5", True, True, False),
        ("o3-mini", False, False, False),
        ("gpt-3.5-turbo", False, False, False),
        ("gpt-4", False, False, False),
        ("gpt-4o-audio-preview", False, False, True),
        ("gpt-audio-mini", False, False, True),
    ],
)
def test_openai_declares_files_by_model(model: str, vision: bool, pdf: bool, audio: bool) -> None:
    caps = create_llm("openai", model=model, api_key="k").get_capabilities()
    assert caps[ModelCapability.VISION] is vision
    assert caps[ModelCapability.PDF_INPUT] is pdf
    assert caps[ModelCapability.AUDIO_INPUT] is audio


def test_a_server_elsewhere_takes_images_only(replay: ReplayServer, runner: Runner) -> None:
    llm = openai(f"{replay.url}/v1", model="qwen2.5-vl")
    caps = llm.get_capabilities()
    assert caps[ModelCapability.VISION] and not caps[ModelCapability.PDF_INPUT]
    refused(runner, llm, "PDF_INPUT", files=[File(data=PDF, name="a.pdf")])
    assert replay.requests == []
    replay.replies = [chat_reply()]
    runner.text(llm, PROMPT, files=[File(data=PNG, name="a.png")])
    assert sent_messages(replay) == user_turn(
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}}
    )


# -- the profiles -----------------------------------------------------------------------------------


def test_openrouter_pdf_by_url_and_audio(replay: ReplayServer, runner: Runner) -> None:
    # OpenRouter takes a PDF's URL as file_data, and audio in formats its providers decode.
    replay.replies = [chat_reply()]
    llm = profile("openrouter", replay, model="google/gemini-2.5-flash")
    files = ["https://example.com/paper.pdf", File(data=b"fLaC", name="clip.flac")]
    runner.text(llm, PROMPT, files=files)
    assert sent_messages(replay) == user_turn(
        {"type": "file", "file": {"filename": "paper.pdf", "file_data": files[0]}},
        {"type": "input_audio", "input_audio": {"data": b64(b"fLaC"), "format": "flac"}},
    )


def test_openrouter_refuses_audio_by_url(replay: ReplayServer, runner: Runner) -> None:
    # "Audio files must be base64-encoded - direct URLs are not supported."
    llm = profile("openrouter", replay)
    refused(runner, llm, "'openrouter'.*'talk.mp3'.*URL", files=["https://example.com/talk.mp3"])
    assert replay.requests == []


def test_mistral_shapes(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [chat_reply()]
    llm = profile("mistral", replay, model="voxtral-small-latest")
    files = [
        File(data=PNG),
        File(data=PDF, name="report.pdf"),
        "https://example.com/paper.pdf",
        File(data=WAV, name="clip.wav"),
    ]
    runner.text(llm, PROMPT, files=files)
    assert sent_messages(replay) == user_turn(
        {"type": "image_url", "image_url": data_url("image/png", PNG)},
        {
            "type": "document_url",
            "document_url": data_url("application/pdf", PDF),
            "document_name": "report.pdf",
        },
        {
            "type": "document_url",
            "document_url": "https://example.com/paper.pdf",
            "document_name": "paper.pdf",
        },
        {"type": "input_audio", "input_audio": b64(WAV)},
    )


def test_mistral_image_detail_and_audio_models(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [chat_reply()]
    part = {"type": "image_url", "image_url": {"url": "https://example.com/a", "detail": "high"}}
    runner.text(profile("mistral", replay), None, messages=user_turn(part))
    assert sent_messages(replay) == user_turn(part)
    # Audio is for Voxtral: another model refuses it before sending.
    refused(runner, profile("mistral", replay), "AUDIO_INPUT", files=[File(data=WAV)])
    assert len(replay.requests) == 1


def test_xai_images_are_jpeg_or_png(replay: ReplayServer, runner: Runner) -> None:
    llm = profile("xai", replay, model="grok-4")
    refused(runner, llm, "'xai'.*'a.webp'.*image/jpeg, image/png", files=["https://x.test/a.webp"])
    refused(runner, llm, "PDF_INPUT", files=[File(data=PDF)])
    assert replay.requests == []
    replay.replies = [chat_reply()]
    runner.text(llm, PROMPT, files=["https://example.com/a.jpg"])
    assert sent_messages(replay) == user_turn(
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}
    )


def test_vllm_takes_audio_deepseek_nothing(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [chat_reply()]
    runner.text(profile("vllm", replay), PROMPT, files=[File(data=WAV, name="a.wav")])
    assert sent_messages(replay) == user_turn(
        {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}}
    )
    refused(runner, profile("deepseek", replay), "'deepseek'.*VISION", files=[File(data=PNG)])
    assert len(replay.requests) == 1


@pytest.mark.parametrize(
    ("name", "pdf", "audio"),
    [
        ("openrouter", True, True),
        ("vllm", False, True),
        ("llamacpp", False, True),
        ("lmstudio", False, False),
        ("together", False, False),
        ("groq", False, False),
    ],
)
def test_profiles_declare_what_their_services_document(name: str, pdf: bool, audio: bool) -> None:
    caps = create_llm(name, model="m", api_key="k").get_capabilities()
    assert caps[ModelCapability.VISION] is True
    assert caps[ModelCapability.PDF_INPUT] is pdf
    assert caps[ModelCapability.AUDIO_INPUT] is audio
    deepseek = create_llm("deepseek", model="deepseek-chat", api_key="k").get_capabilities()
    assert not any(deepseek[c] for c in (ModelCapability.VISION, ModelCapability.AUDIO_INPUT))


def test_azure_images_and_audio_not_pdfs(replay: ReplayServer, runner: Runner) -> None:
    llm = made(create_llm("azure", model="dep", base_url=replay.url, api_key="k", max_retries=0))
    refused(runner, llm, "'azure'.*PDF_INPUT", files=[File(data=PDF, name="a.pdf")])
    assert replay.requests == []
    replay.replies = [chat_reply()]
    runner.text(llm, PROMPT, files=[File(data=PNG), File(data=WAV, name="a.wav")])
    assert sent_messages(replay) == user_turn(
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}},
        {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}},
    )


def test_tgi_chat_takes_images(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [chat_reply()]
    llm = made(create_llm("huggingface", model="tgi", base_url=f"{replay.url}/v1", max_retries=0))
    runner.text(llm, PROMPT, files=[File(data=PNG)])
    assert sent_messages(replay) == user_turn(
        {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}}
    )
    refused(runner, llm, "PDF_INPUT", files=[File(data=PDF)])
    assert len(replay.requests) == 1


# -- the Responses API --------------------------------------------------------------------------------


def responses_reply() -> Reply:
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": "r", "status": "in_progress"}},
        {"type": "response.output_text.delta", "item_id": "m", "delta": "A cat."},
        {"type": "response.completed", "response": {"id": "r", "status": "completed"}},
    ]
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    return Reply(chunks=[body])


def responses(base_url: str, model: str = "gpt-4.1") -> spout.LLM:
    return made(
        create_llm(
            "openai", model=model, api="responses", base_url=base_url, api_key="k", max_retries=0
        )
    )


def test_responses_shapes(replay: ReplayServer, runner: Runner, at_openai: str) -> None:
    replay.replies = [responses_reply()]
    files = [
        File(data=PNG),
        "https://example.com/cat.jpg",
        File(data=PDF, name="report.pdf"),
        "https://example.com/paper.pdf",
        File(data=b"a,b\n1,2\n", name="table.csv"),
    ]
    assert runner.text(responses(at_openai), PROMPT, files=files).response.text == "A cat."
    (request,) = replay.requests
    assert request.json()["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": PROMPT},
                {"type": "input_image", "image_url": data_url("image/png", PNG), "detail": "auto"},
                {"type": "input_image", "image_url": files[1], "detail": "auto"},
                {
                    "type": "input_file",
                    "filename": "report.pdf",
                    "file_data": data_url("application/pdf", PDF),
                },
                {"type": "input_file", "file_url": files[3]},
                {
                    "type": "input_file",
                    "filename": "table.csv",
                    "file_data": data_url("text/csv", b"a,b\n1,2\n"),
                },
            ],
        }
    ]


def test_responses_translates_portable_parts(
    replay: ReplayServer, runner: Runner, at_openai: str
) -> None:
    replay.replies = [responses_reply()]
    messages = user_turn(
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
        {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": data_url("application/pdf", PDF)},
        },
    )
    runner.text(responses(at_openai), None, messages=messages)
    assert replay.requests[0].json()["input"][0]["content"] == [
        {"type": "input_text", "text": PROMPT},
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"},
        {"type": "input_file", "filename": "a.pdf", "file_data": data_url("application/pdf", PDF)},
    ]


def test_responses_refuses_audio(replay: ReplayServer, runner: Runner, at_openai: str) -> None:
    # input_audio is not among a Responses message's content parts.
    llm = responses(at_openai)
    assert not llm.get_capabilities()[ModelCapability.AUDIO_INPUT]
    refused(runner, llm, "AUDIO_INPUT", files=[File(data=WAV, name="a.wav")])
    part = {"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}}
    refused(runner, llm, "'openai'.*audio", messages=user_turn(part), prompt=None)
    refused(runner, llm, "video", files=[File(data=b"\0\0\0\x18ftypmp42", name="a.mp4")])
    assert replay.requests == []


# -- Ollama: bare base64 in message.images ------------------------------------------------------------


def ollama_reply() -> Reply:
    lines = [
        {"model": "llava", "message": {"role": "assistant", "content": "A cat."}, "done": False},
        {"model": "llava", "message": {"role": "assistant", "content": ""}, "done": True},
    ]
    return Reply(chunks=[b"".join(json.dumps(x).encode() + b"\n" for x in lines)])


def ollama(replay: ReplayServer) -> spout.LLM:
    return made(create_llm("ollama", model="llava", base_url=replay.url, max_retries=0))


def test_ollama_images(replay: ReplayServer, runner: Runner, tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(PNG)
    replay.replies = [ollama_reply()]
    files = [tmp_path / "cat.png", File(data=PNG + b"2")]
    assert runner.text(ollama(replay), PROMPT, files=files).response.text == "A cat."
    assert sent_messages(replay) == [
        {"role": "user", "content": PROMPT, "images": [b64(PNG), b64(PNG + b"2")]}
    ]


def test_ollama_translates_portable_parts(replay: ReplayServer, runner: Runner) -> None:
    replay.replies = [ollama_reply()]
    part = {"type": "image_url", "image_url": {"url": data_url("image/png", PNG)}}
    runner.text(ollama(replay), None, messages=user_turn(part))
    assert sent_messages(replay) == [{"role": "user", "content": PROMPT, "images": [b64(PNG)]}]


def test_ollama_refuses_urls_and_other_files(replay: ReplayServer, runner: Runner) -> None:
    llm = ollama(replay)
    refused(runner, llm, "'ollama'.*'cat.jpg'.*no URL", files=["https://example.com/cat.jpg"])
    refused(runner, llm, "PDF_INPUT", files=[File(data=PDF)])
    refused(runner, llm, "'notes.txt'.*images", files=[File(data=b"hi", name="notes.txt")])
    assert replay.requests == []


# -- no files at all: TGI's native API and the models run here ----------------------------------------


def test_tgi_native_takes_no_file(replay: ReplayServer, runner: Runner) -> None:
    llm = made(create_llm("huggingface", base_url=replay.url, max_retries=0))
    assert not llm.get_capabilities()[ModelCapability.VISION]
    refused(runner, llm, "'huggingface'.*VISION", files=[File(data=PNG)])
    # A kind no capability names (text) is refused by the provider itself.
    refused(runner, llm, "'notes.txt'.*api='chat'", files=[File(data=b"hi", name="notes.txt")])
    assert replay.requests == []


@pytest.mark.parametrize("name", ["local", "transformers"])
def test_in_process_models_take_no_file(name: str, runner: Runner, tmp_path: Path) -> None:
    # A model file that is not one: the refusal comes before anything loads it.
    model = tmp_path / ("m.gguf" if name == "local" else "m")
    if name == "local":
        model.write_bytes(b"not a model")
    else:
        model.mkdir()
    llm = made(create_llm(name, model=str(model)))
    caps = llm.get_capabilities() if name == "local" else {}
    assert not caps.get(ModelCapability.VISION)
    refused(runner, llm, f"'{name}'.*VISION", files=[File(data=PNG)])
    refused(
        runner,
        llm,
        f"'{name}'.*'notes.txt'.*text alone",
        files=[File(data=b"hi", name="notes.txt")],
    )
