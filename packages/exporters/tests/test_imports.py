from __future__ import annotations

import subprocess
import sys

import tokenlean.exporters as exporters


def test_all_is_pinned() -> None:
    assert exporters.__all__ == [
        "Fanout",
        "LangfuseExporter",
        "OTelExporter",
        "PrometheusExporter",
        "Sink",
        "langfuse_cost_details",
        "langfuse_usage_details",
    ]


def test_import_does_not_load_sdks() -> None:
    code = ("import sys, tokenlean.exporters; "
            "print(sorted(m for m in ('opentelemetry', 'prometheus_client', 'langfuse') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_extra_names_it(monkeypatch) -> None:
    import pytest

    from tokenlean.core import MissingExtraError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtraError, match=r"tokenlean\[prometheus\]"):
        exporters.PrometheusExporter()
