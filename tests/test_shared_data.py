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


def test_a_present_file_is_its_path(shared_data: Callable[[str], Path],
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import conftest  # the repository root's, which defines the fixture

    (tmp_path / "rows.jsonl").write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path)
    assert shared_data("rows.jsonl") == tmp_path / "rows.jsonl"
