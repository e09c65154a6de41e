"""Files in the three client protocols: a client's attachments as spout's portable parts, and
the files and citations of an answer in each protocol's own shape.

In: chat completions' ``image_url`` / ``file`` / ``input_audio`` parts are spout's portable
form already (checked, and an ``image_url`` given as a bare string made an object); the
Responses API's ``input_image`` / ``input_file`` / ``input_audio`` and Anthropic's ``image`` /
``document`` blocks become such parts. The upstream provider's adapter then writes them in its
own shape. A part whose contents are malformed (bad base64, a bad ``data:`` URL, a file known
only by an id uploaded to one provider) is a :class:`RequestError` naming its place.

Out: :func:`file_url` and :func:`file_part` give a :class:`~spout.File` as a data URL or a
portable part; :func:`url_citation` and :func:`anthropic_citation` a :class:`~spout.Citation`
as OpenAI's annotation and Anthropic's citation.
"""

from __future__ import annotations

from typing import Any

from .. import Citation, ConfigurationError, File
from .._files import file_from_part
from ._wire import RequestError

__all__ = [
    "ANTHROPIC_CITATIONS",
    "anthropic_block",
    "anthropic_citation",
    "chat_annotation",
    "chat_part",
    "file_part",
    "file_url",
    "raw_object",
    "responses_annotation",
    "responses_part",
    "url_citation",
]


def _checked(part: dict[str, Any], where: str, param: str) -> dict[str, Any]:
    """``part`` (portable), once its file is known to decode: a 400 naming ``where`` if not."""
    try:
        file_from_part(part)
    except ConfigurationError as exc:
        raise RequestError(f"{where}: {exc}", param=param) from None
    return part


def chat_part(part: dict[str, Any], where: str, param: str = "messages") -> dict[str, Any]:
    """A chat completions content part: a file part checked (``image_url`` as a bare string
    becomes ``{"url": ...}``, the form every provider's adapter reads); any other as it is."""
    kind = part.get("type")
    if kind == "image_url" and isinstance(part.get("image_url"), str):
        part = {**part, "image_url": {"url": part["image_url"]}}
    if kind in ("image_url", "file", "input_audio"):
        return _checked(part, where, param)
    return part


def responses_part(part: dict[str, Any], where: str) -> dict[str, Any] | None:
    """A Responses API input part (``input_image``, ``input_file``, ``input_audio``) as a
    portable part; None for a part of another type."""
    kind = part.get("type")
    if kind == "input_image":
        if part.get("file_id") and not part.get("image_url"):
            raise _uploaded(where, "input_image", "image_url", "input")
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise RequestError(f"{where}: an input_image needs an image_url", param="input")
        image: dict[str, Any] = {"url": url}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return _checked({"type": "image_url", "image_url": image}, where, "input")
    if kind == "input_file":
        url = part.get("file_url")
        if url and not part.get("file_data") and not str(url).startswith(("http://", "https://")):
            raise RequestError(f"{where}: an input_file's file_url must be http(s)", param="input")
        data = part.get("file_data") or url
        if not data and part.get("file_id"):
            raise _uploaded(where, "input_file", "file_data or file_url", "input")
        if not isinstance(data, str) or not data:
            raise RequestError(f"{where}: an input_file needs file_data or file_url", param="input")
        file: dict[str, Any] = {"file_data": data}
        if isinstance(part.get("filename"), str) and part["filename"]:
            file["filename"] = part["filename"]
        return _checked({"type": "file", "file": file}, where, "input")
    if kind == "input_audio":
        return _checked(
            {"type": "input_audio", "input_audio": part.get("input_audio")}, where, "input"
        )
    return None


def anthropic_block(block: dict[str, Any], where: str) -> dict[str, Any] | None:
    """An Anthropic ``image`` or ``document`` block as a portable part; None for a block of
    another type.

    A ``base64`` source is a ``data:`` URL of its ``media_type``; a ``url`` source its URL; a
    document's ``text`` source a ``text/plain`` file. A document's ``title`` is the file's
    name. Sources the portable form has no place for (a ``file`` uploaded to Anthropic, a
    document of ``content`` blocks) are refused, named.
    """
    kind = block.get("type")
    if kind not in ("image", "document"):
        return None
    source = block.get("source")
    if not isinstance(source, dict):
        raise RequestError(f"{where}: an {kind} block needs a source", param="messages")
    shape = source.get("type")
    if shape == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not media_type:
            raise RequestError(f"{where}: a base64 source needs its media_type", param="messages")
        if not isinstance(data, str):
            raise RequestError(f"{where}: a base64 source needs its data", param="messages")
        url = f"data:{media_type};base64,{data}"
    elif shape == "url":
        given = source.get("url")
        if not isinstance(given, str) or not given.startswith(("http://", "https://")):
            raise RequestError(f"{where}: a url source needs an http(s) url", param="messages")
        url = given
    elif shape == "text" and kind == "document":
        text = source.get("data")
        if not isinstance(text, str):
            raise RequestError(f"{where}: a text source needs its data", param="messages")
        media_type = str(source.get("media_type") or "text/plain")
        url = File(data=text.encode(), media_type=media_type).data_url()
    elif shape == "file":
        raise _uploaded(where, kind, "a base64 or url source", "messages")
    else:
        raise RequestError(
            f"{where}: an {kind} block's source of type {shape!r:.40} is not supported "
            "(base64, url" + (", text)" if kind == "document" else ")"),
            param="messages",
        )
    if kind == "image":
        return _checked({"type": "image_url", "image_url": {"url": url}}, where, "messages")
    file: dict[str, Any] = {"file_data": url}
    if isinstance(block.get("title"), str) and block["title"]:
        file["filename"] = block["title"]
    return _checked({"type": "file", "file": file}, where, "messages")


def _uploaded(where: str, kind: str, instead: str, param: str) -> RequestError:
    return RequestError(
        f"{where}: an {kind} given by a file id refers to a file uploaded to one provider; "
        f"the gateway sends files by their contents: give {instead}",
        param=param,
    )


# -- out -------------------------------------------------------------------------------------


def file_url(file: File) -> str:
    """A file the model answered with as a ``data:`` URL (its URL, if it came as one)."""
    return file.data_url()


def file_part(file: File) -> dict[str, Any]:
    """A file as a portable ``file`` part: how a protocol with no shape of its own for a
    file's kind carries it (spout's extension fields)."""
    part: dict[str, Any] = {"file_data": file.data_url()}
    if file.name:
        part["filename"] = file.name
    return {"type": "file", "file": part}


def responses_annotation(citation: Citation) -> dict[str, Any]:
    """A citation as the Responses API's annotation: ``url_citation`` (``url``, ``title``,
    ``start_index``, ``end_index``) for a source with a URL; else ``file_citation``, the API's
    citation of a file (a document the client sent), whose ``filename`` is the source's title,
    ``index`` where the cited span ends in the text, ``file_id`` empty (the gateway keeps no
    files) and ``cited_text``, spout's, the text cited."""
    if citation.url:
        return url_citation(citation)
    return {
        "type": "file_citation",
        "file_id": "",
        "filename": citation.title or "",
        "index": citation.end if citation.end is not None else (citation.start or 0),
        "cited_text": citation.text,
    }


def url_citation(citation: Citation) -> dict[str, Any]:
    """A citation as OpenAI's annotation, flat: ``url_citation`` (``url``, ``title``,
    ``start_index``, ``end_index``) for a source with a URL; else spout's ``spout_citation``
    (``text``, ``title``, ``start_index``, ``end_index``), as chat completions has no
    citation of a source without a URL."""
    if citation.url:
        return {
            "type": "url_citation",
            "url": citation.url,
            "title": citation.title or "",
            "start_index": citation.start or 0,
            "end_index": citation.end or 0,
        }
    return {
        "type": "spout_citation",
        "text": citation.text,
        "title": citation.title,
        "start_index": citation.start,
        "end_index": citation.end,
    }


def chat_annotation(citation: Citation) -> dict[str, Any]:
    """A citation as a chat completion's annotation: OpenAI's ``url_citation`` nests its
    fields under its type (``{"type": "url_citation", "url_citation": {...}}``), as does
    spout's ``spout_citation`` for a source without a URL."""
    flat = url_citation(citation)
    kind = flat.pop("type")
    return {"type": kind, kind: flat}


#: Anthropic's own citation types (anthropic-sdk-python types/text_citation.py).
ANTHROPIC_CITATIONS = frozenset(
    (
        "char_location",
        "page_location",
        "content_block_location",
        "web_search_result_location",
        "search_result_location",
    )
)


def anthropic_citation(citation: Citation) -> dict[str, Any]:
    """A citation as Anthropic's: the upstream's own when it is one (an Anthropic upstream);
    a source with a URL as ``web_search_result_location``; any other as ``char_location`` of
    the first document, the one kind a citation of a document the client sent takes when the
    upstream named no place in it (``start_char_index`` and ``end_char_index`` then 0)."""
    raw = citation.raw
    if raw.get("type") in ANTHROPIC_CITATIONS:
        return raw
    if citation.url:
        return {
            "type": "web_search_result_location",
            "cited_text": citation.text or "",
            "url": citation.url,
            "title": citation.title,
            "encrypted_index": "",
        }
    return {
        "type": "char_location",
        "cited_text": citation.text or "",
        "document_index": 0,
        "document_title": citation.title,
        "start_char_index": 0,
        "end_char_index": 0,
    }


def raw_object(type_: str, data: Any) -> dict[str, Any]:
    """A :class:`~spout.RawEvent` as spout's extension object: ``{"type": ..., "data": ...}``."""
    return {"type": type_, "data": data}
