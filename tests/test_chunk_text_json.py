"""ChunkEncoder.text_json: a text chunk's JSON from a template, the bytes orjson gives the
chunk itself (the gateway's relay path sends these)."""

from __future__ import annotations

import orjson
import pytest

from spout.compat.chunks import ChunkEncoder

TEXTS = ["hi", 'a "quote", a \\ and a\nline', "ü € 😀", "\x00spout-text\x00", "</script>"]


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("litellm", [False, True])
def test_text_json_is_the_chunk_s_json(include_usage: bool, litellm: bool) -> None:
    templated = ChunkEncoder("m", include_usage=include_usage, response_id="r1", litellm=litellm)
    plain = ChunkEncoder("m", include_usage=include_usage, response_id="r1", litellm=litellm)
    plain._created = templated._created  # the same second, whenever each was made
    # The first text carries the role (no template yet); the rest come from the template.
    for text in ["first", *TEXTS, ""]:
        chunk = plain.text(text)
        assert templated.text_json(text) == (None if chunk is None else orjson.dumps(chunk))
    # The characters counted for an estimated usage are the same too.
    assert templated.end() == plain.end()
