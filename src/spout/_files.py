"""Files a call sends and an answer holds: :class:`File`, and its portable form in messages.

A file travels inside a user message as an OpenAI chat content part, the portable form every
provider translates into its own shape: ``image_url`` (a data URL or an http(s) URL),
``file`` (``file_data`` a data URL or an URL, with ``filename``) and ``input_audio``
(base64 ``data`` with its ``format``). ``files=`` on a call adds such parts to the user turn;
messages may carry them directly, as OpenAI's SDK writes them.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from ._capabilities import ModelCapability, has_capability
from ._errors import ConfigurationError

__all__ = [
    "FILE_PART_TYPES",
    "MAX_FILE_BYTES",
    "File",
    "FileKind",
    "attach_files",
    "check_files",
    "file_from_part",
    "files_in",
    "unsupported",
]

#: The largest file spout reads or decodes, in bytes: above every provider's own request
#: limit (Anthropic's 32 MB, OpenAI's 50 MB per request, Bedrock's 3.75 MB an image, 4.5 MB a
#: document), so a file past it could never be sent anyway.
MAX_FILE_BYTES = 50 * 1024 * 1024

#: The content-part types that carry a file in the portable form.
FILE_PART_TYPES = frozenset(("image_url", "file", "input_audio"))

FileKind = Literal["image", "pdf", "audio", "video", "text", "other"]

# Magic numbers, for bytes that come with no name (https://mimesniff.spec.whatwg.org/).
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"ID3", 0, "audio/mpeg"),
    (b"fLaC", 0, "audio/flac"),
    (b"OggS", 0, "audio/ogg"),
)
_BRANDS = {
    b"M4A ": "audio/mp4",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"avif": "image/avif",
    b"qt  ": "video/quicktime",
}
# Types Python's table lacks or spells otherwise than the providers do.
_BY_SUFFIX = {
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".md": "text/markdown",
}
# input_audio's "format" and the media type it names, both ways.
_AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg"}
_AUDIO_FORMAT_OF = {
    **{media: fmt for fmt, media in _AUDIO_FORMATS.items()},
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/mp3": "mp3",
}


def _sniff(data: bytes) -> str | None:
    for magic, offset, media_type in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        # ISO base media files tell what they hold by their major brand (ISO/IEC 14496-12).
        return _BRANDS.get(data[8:12], "video/mp4")
    return None


def _guess_by_name(name: str | None) -> str | None:
    if not name:
        return None
    suffix = PurePosixPath(name).suffix.lower()
    return _BY_SUFFIX.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0]


def _decode_base64(text: str, what: str) -> bytes:
    if len(text) > MAX_FILE_BYTES * 4 // 3 + 4:
        raise ConfigurationError(f"{what} is larger than {MAX_FILE_BYTES:,} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{what} is not valid base64") from None


def _parse_data_url(url: str) -> tuple[bytes, str | None]:
    """A ``data:`` URL's bytes and media type (RFC 2397); base64 or percent-encoded."""
    head, comma, payload = url.partition(",")
    if not comma:
        raise ConfigurationError("a data: URL needs a comma before its data")
    params = head[5:].split(";")
    media_type = params[0].strip().lower() or None
    if "base64" in (p.strip().lower() for p in params[1:]):
        return _decode_base64(payload, "the data: URL"), media_type
    data = unquote(payload).encode()
    if len(data) > MAX_FILE_BYTES:
        raise ConfigurationError(f"the data: URL is larger than {MAX_FILE_BYTES:,} bytes")
    return data, media_type


class File:
    """A file to send with a prompt, or one a model answered with.

    Give exactly one of ``path`` (read now), ``data`` (bytes) or ``url`` (an ``http(s)``
    URL the provider fetches, or a ``data:`` URL). ``media_type`` is guessed from the name,
    else from the bytes, when it is not given.

    Example::

        from spout import File, create_llm

        llm = create_llm("anthropic", model="claude-sonnet-4-5")
        llm.generate("What is in this picture?", files=[File(path="cat.png")])
        llm.generate("Summarize it", files=["report.pdf"])             # a path works too
        llm.generate("Describe", files=[File(url="https://example.com/a.jpg")])
        File(data=png_bytes).media_type                                   # 'image/png'
    """

    __slots__ = ("data", "media_type", "name", "url")

    data: bytes | None
    url: str | None
    media_type: str
    name: str | None

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        data: bytes | None = None,
        url: str | None = None,
        media_type: str | None = None,
        name: str | None = None,
    ) -> None:
        given = [what for what, value in (("path", path), ("data", data), ("url", url)) if value]
        if len(given) != 1:
            raise ConfigurationError(
                "a File needs exactly one of path=, data= or url=, "
                f"not {' and '.join(given) if given else 'none'}"
            )
        self.url = None
        if path is not None:
            where = Path(path)
            name = name or where.name
            try:
                size = where.stat().st_size
                if size > MAX_FILE_BYTES:
                    raise ConfigurationError(
                        f"file {str(where)!r} is {size:,} bytes; spout sends files of at most "
                        f"{MAX_FILE_BYTES:,} bytes"
                    )
                data = where.read_bytes()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read file {str(where)!r}: {exc.strerror or exc}"
                ) from None
        elif url is not None:
            if not isinstance(url, str):
                raise ConfigurationError(f"File url= must be a str, not {type(url).__name__}")
            if url.startswith("data:"):
                data, in_url = _parse_data_url(url)
                media_type = media_type or in_url
            elif urlsplit(url).scheme in ("http", "https"):
                self.url = url
                name = name or (PurePosixPath(urlsplit(url).path).name or None)
            else:
                raise ConfigurationError(
                    f"File url= must be an http(s) or data: URL, not {url[:60]!r}"
                )
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise ConfigurationError(f"File data= must be bytes, not {type(data).__name__}")
        if data is not None:
            data = bytes(data)
            if len(data) > MAX_FILE_BYTES:
                raise ConfigurationError(
                    f"file {name or ''!r} is {len(data):,} bytes; spout sends files of at most "
                    f"{MAX_FILE_BYTES:,} bytes"
                )
        self.data = data
        self.name = name
        guessed = media_type or _guess_by_name(name) or (_sniff(data) if data else None)
        self.media_type = (guessed or "application/octet-stream").lower()

    @classmethod
    def coerce(cls, value: File | str | os.PathLike[str]) -> File:
        """A :class:`File` from what ``files=`` takes: a File, a path, or an http(s) or
        ``data:`` URL."""
        if isinstance(value, File):
            return value
        if isinstance(value, str) and value.startswith(("http://", "https://", "data:")):
            return cls(url=value)
        if isinstance(value, (str, os.PathLike)):
            return cls(value)
        raise ConfigurationError(
            f"files= takes spout.File objects, paths and URLs, not {type(value).__name__}"
        )

    @property
    def kind(self) -> FileKind:
        """What sort of file it is, as providers sort them: ``"image"``, ``"pdf"``,
        ``"audio"``, ``"video"``, ``"text"`` or ``"other"``."""
        media_type = self.media_type
        if media_type == "application/pdf":
            return "pdf"
        top = media_type.partition("/")[0]
        if top in ("image", "audio", "video", "text"):
            return top  # type: ignore[return-value]
        return "other"

    @property
    def size(self) -> int | None:
        """The size in bytes; None for a file given by its URL."""
        return None if self.data is None else len(self.data)

    def base64(self) -> str:
        """The bytes in base64 (a file given by URL has none: ConfigurationError)."""
        return base64.b64encode(self._bytes()).decode("ascii")

    def data_url(self) -> str:
        """The file as a ``data:`` URL, or its http(s) URL when it was given by one."""
        if self.url is not None:
            return self.url
        return f"data:{self.media_type};base64,{self.base64()}"

    def describe(self) -> str:
        """How errors name the file: its name, else its URL, else its type and size."""
        if self.name:
            return repr(self.name)
        if self.url:
            return repr(self.url[:80])
        return f"the {self.media_type} data of {self.size:,} bytes"

    def _bytes(self) -> bytes:
        if self.data is None:
            raise ConfigurationError(
                f"file {self.describe()} was given by URL and this needs its bytes: give "
                "File(path=...) or File(data=...)"
            )
        return self.data

    def audio_format(self) -> str:
        """The ``input_audio`` format of an audio file (``"wav"``, ``"mp3"``...)."""
        fmt = _AUDIO_FORMAT_OF.get(self.media_type)
        return fmt or self.media_type.partition("/")[2]

    def part(self) -> dict[str, Any]:
        """The file as a portable content part (OpenAI chat's shape)."""
        kind = self.kind
        if kind == "image":
            return {"type": "image_url", "image_url": {"url": self.data_url()}}
        if kind == "audio" and self.data is not None:
            return {
                "type": "input_audio",
                "input_audio": {"data": self.base64(), "format": self.audio_format()},
            }
        file: dict[str, Any] = {"file_data": self.data_url()}
        if self.name:
            file["filename"] = self.name
        return {"type": "file", "file": file}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, File):
            return NotImplemented
        return (self.data, self.url, self.media_type, self.name) == (
            other.data,
            other.url,
            other.media_type,
            other.name,
        )

    def __hash__(self) -> int:
        return hash((self.data, self.url, self.media_type, self.name))

    def __repr__(self) -> str:
        where = f"url={self.url!r}" if self.url else f"{len(self.data or b''):,} bytes"
        name = f"name={self.name!r}, " if self.name else ""
        return f"File({name}media_type={self.media_type!r}, {where})"


def file_from_part(part: Mapping[str, Any]) -> File | None:
    """The :class:`File` a portable content part carries; None for a part that carries none
    (text). A part of a file type whose contents are malformed raises ConfigurationError."""
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str) or not url:
            raise ConfigurationError("an image_url part needs image_url.url")
        image = File(url=url)
        if image.kind != "image":
            # A URL with no telling suffix: the part's type says it is an image, of a type
            # only the server that serves it knows.
            image.media_type = "image/*"
        return image
    if kind == "file":
        file = part.get("file")
        if not isinstance(file, Mapping):
            raise ConfigurationError("a file part needs a file object")
        filename = file.get("filename")
        name = filename if isinstance(filename, str) and filename else None
        data = file.get("file_data")
        if isinstance(data, str) and data:
            if data.startswith(("data:", "http://", "https://")):
                return File(url=data, name=name)
            # Bare base64, as some clients send it: the type then comes from the name.
            return File(data=_decode_base64(data, "a file part's file_data"), name=name)
        if file.get("file_id"):
            raise ConfigurationError(
                "a file part with a file_id refers to a file uploaded to one provider; spout "
                "sends files by their contents: give file_data (or files=[File(...)])"
            )
        raise ConfigurationError("a file part needs file.file_data")
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, Mapping) or not isinstance(audio.get("data"), str):
            raise ConfigurationError("an input_audio part needs input_audio.data (base64)")
        fmt = str(audio.get("format") or "wav").lower()
        return File(
            data=_decode_base64(audio["data"], "an input_audio part's data"),
            media_type=_AUDIO_FORMATS.get(fmt, f"audio/{fmt}"),
        )
    return None


def files_in(messages: Sequence[Mapping[str, Any]]) -> Iterator[File]:
    """Every file the messages' content parts carry, in order."""
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("type") in FILE_PART_TYPES:
                    file = file_from_part(part)
                    if file is not None:
                        yield file


def attach_files(
    messages: list[dict[str, Any]], files: Sequence[File | str | os.PathLike[str]]
) -> list[File]:
    """Add ``files`` to the last user message, as parts after its text (a message of its
    own when the conversation does not end with one); returns them as :class:`File` objects."""
    if isinstance(files, (str, os.PathLike, File)):
        files = [files]
    attached = [File.coerce(file) for file in files]
    parts = [file.part() for file in attached]
    if not parts:
        return attached
    if messages and messages[-1].get("role") == "user":
        message = messages[-1] = dict(messages[-1])
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = [*content, *parts]
        elif content:
            message["content"] = [{"type": "text", "text": content}, *parts]
        else:
            message["content"] = parts
    else:
        messages.append({"role": "user", "content": parts})
    return attached


# What a provider declares when it takes a kind of file.
_NEEDS: dict[str, ModelCapability] = {
    "image": ModelCapability.VISION,
    "pdf": ModelCapability.PDF_INPUT,
    "audio": ModelCapability.AUDIO_INPUT,
}


def check_files(
    messages: Sequence[Mapping[str, Any]],
    provider: str,
    capabilities: Callable[[], Mapping[Any, Any]],
    named: Sequence[File] = (),
) -> None:
    """Refuse, before anything is sent, a file of a kind (image, PDF, audio) the provider does
    not declare it takes (``capabilities`` are asked only when a message carries a file);
    the error names the file and the provider (by its name when it is one of ``named``, the
    files given to the call, since a part keeps no name). Other kinds are for the provider's
    own translation to take or refuse."""
    declared: Mapping[Any, Any] | None = None
    for file in files_in(messages):
        needed = _NEEDS.get(file.kind)
        if needed is None:
            continue
        if declared is None:
            declared = capabilities()
        if not has_capability(declared, needed):
            file = next(
                (given for given in named if (given.data, given.url) == (file.data, file.url)),
                file,
            )
            raise unsupported(
                provider,
                file,
                f"it does not take {file.kind} input ({needed.name} is not among its capabilities)",
            )


def unsupported(provider: str, file: File, why: str = "") -> ConfigurationError:
    """The error for a file a provider cannot take, naming both (raised before sending)."""
    reason = f": {why}" if why else ""
    return ConfigurationError(
        f"provider {provider!r} cannot take file {file.describe()} ({file.media_type}){reason}"
    )
