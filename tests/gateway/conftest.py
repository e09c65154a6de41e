"""What every gateway test gets: the loopback servers of sdk_loopback closed after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sdk_loopback


@pytest.fixture(autouse=True)
def close_sdk_loopback() -> Iterator[None]:
    yield
    sdk_loopback.close_all()
