"""The docs say what the code does: the provider capabilities table is generated from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.model  # the local providers' rows are the bundled model's capabilities
def test_provider_table_matches_declared_capabilities() -> None:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "docs" / "gen_providers_table.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = (ROOT / "docs" / "providers.md").read_text()
    assert gen.render(text) == text, (
        "docs/providers.md is stale: run python docs/gen_providers_table.py"
    )
    for _, _, example in gen.PROVIDERS:
        assert (ROOT / example).is_file(), example
