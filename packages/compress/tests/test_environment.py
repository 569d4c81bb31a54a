"""The compressors leave the app's environment as it was (issue 18, invariant 7)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("llmlingua")


def test_the_direct_llmlingua_reference_names_its_tiktoken_cache_only_while_it_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It used to set TIKTOKEN_CACHE_DIR for the rest of the process. The folder here
    holds no model, so loading fails after the variable was needed: it must be gone."""
    from tokenlean.compress._lingua import DirectLingua

    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(Exception):  # noqa: B017 -- whatever llmlingua raises for no model
        DirectLingua(long=False, model_folder=folder, tiktoken_cache=tmp_path / "tiktoken")
    assert "TIKTOKEN_CACHE_DIR" not in os.environ
