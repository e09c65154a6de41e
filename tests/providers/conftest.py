"""What the provider tests share: the hostile cuts of a transcript, and LLMs closed after each test.

The loopback server (``replay``) and the sync/async ``runner`` come from tests/conftest.py and
tests/helpers.py; the transcripts are tests/fixtures/wire/ (see its README).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import Cut, close_made
from replay_server import CUTS


@pytest.fixture(params=sorted(CUTS))
def cut(request: pytest.FixtureRequest) -> Cut:
    """A recorded body cut where a client's decoder is most likely to break (every test runs
    once for each cut in ``replay_server.CUTS``): ``Reply(chunks=cut(body))``."""
    return CUTS[request.param]


@pytest.fixture(autouse=True)
def _close_made_llms() -> Iterator[None]:
    """The LLMs a test built with ``helpers.made`` are closed when it ends, however it ends."""
    yield
    close_made()
