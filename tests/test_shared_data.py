"""Tests that read ../shared/data skip where it is absent, and fail under CI=true."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

MISSING = "no-such-evaluation-file.jsonl"


def test_a_missing_file_fails_on_ci_and_names_it(shared_data: Callable[[str], Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"{MISSING} not found at .*CI=true"):
        shared_data(MISSING)


def test_a_missing_file_skips_off_ci(shared_data: Callable[[str], Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{MISSING} not found"):
        shared_data(MISSING)


def test_a_present_file_is_its_path(shared_data: Callable[[str], Path]) -> None:
    path = shared_data("README.md")  # the data folder's own README, beside every data file
    assert path.is_file() and path.parent.name == "data" and path.parent.parent.name == "shared"
