"""The HTML report: structure, escaping, and a real headless browser (Debian chromium)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tokenlean.audit import read_embedded, render_html

CHARTS = {"waterfall", "bars", "histogram", "compression", "budget"}
DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img" / "report-sample.png"


def sample_report() -> dict:
    return {
        "title": "tokenlean audit", "kind": "audit", "price_as": "gpt-4o",
        "preset": "max-savings", "layer_order": ["cache", "templates", "compress", "budget"],
        "generated_at": "2026-11-23T00:00:00+00:00",
        "source": {"path": "traffic.jsonl", "format": "openai", "mode": "replayed"},
        "requests": 40, "cost_usd_before": 0.5, "cost_usd_after": 0.31,
        "cost_per_mtok_before": 8.5, "cost_per_mtok_after": 5.27, "saved_ratio": 0.38,
        "tokens_before": {"input": 40000, "output": 20000},
        "tokens_after": {"input": 25000, "output": 12000},
        "layers": [
            {"layer": "templates", "status": "ran", "saved_input_tokens": 1200,
             "saved_output_tokens": 0, "saved_usd": 0.003, "saved_per_mtok": 0.05,
             "requests_changed": 30, "quality": {"similarity": 0.96}, "note": ""},
            {"layer": "compress", "status": "ran", "saved_input_tokens": 9000,
             "saved_output_tokens": 0, "saved_usd": 0.0225, "saved_per_mtok": 0.375,
             "requests_changed": 20, "quality": {"retention": 0.93}, "note": ""},
            {"layer": "budget", "status": "ran", "saved_input_tokens": 0,
             "saved_output_tokens": 800, "saved_usd": 0.008, "saved_per_mtok": 0.13,
             "requests_changed": 2, "quality": {"coverage": 0.91}, "note": ""},
            {"layer": "cache", "status": "ran", "saved_input_tokens": 5000,
             "saved_output_tokens": 7000, "saved_usd": 0.1575, "saved_per_mtok": 2.62,
             "requests_changed": 9, "quality": {"similarity": 0.97}, "note": ""},
            {"layer": "backend", "status": "skipped", "note": "not replayed offline"},
        ],
        "cache": {"lookups": 40, "hits": 9,
                  "accepted": [1.0, 1.0, 0.97, 0.95, 0.93, 0.91, 0.99, 1.0, 0.88],
                  "rejected": [0.72, 0.81, 0.66],
                  "examples": [{"kind": "semantic", "similarity": 0.95, "verifier": 0.91,
                                "query": "How tall is the Eiffel tower?",
                                "matched": "What is the height of the Eiffel Tower?"}]},
        "compression": {"points": [[2.1, 0.97], [3.0, 0.94], [4.2, 0.9], [2.7, 1.0]]},
        "budget": {"coverage": 0.91, "quantile": 0.9,
                   "points": [[300, 120], [500, 610], [120, 80], [900, 400], [60, 20]]},
        "answers": [{"question": "What is </script><script>alert(1)</script>?",
                     "raw": "An answer <b>bold</b>", "lean": "Same answer", "cached": True,
                     "similarity": 0.97}],
        "notes": ["Layers applied in pipeline order.", "A note with <tags> & ampersands."],
    }


def test_page_has_every_chart_and_the_json_round_trips() -> None:
    report = sample_report()
    html = render_html(report)
    assert set(re.findall(r'<svg class="chart" data-chart="([a-z]+)"', html)) == CHARTS
    assert read_embedded(html)["layers"] == report["layers"]
    assert read_embedded(html)["answers"][0]["question"] == report["answers"][0]["question"]
    # each layer that ran has a bar in the waterfall, plus before and after
    waterfall = re.search(r'data-chart="waterfall".*?</svg>', html, re.S).group(0)
    assert waterfall.count('class="bar"') == 2 + 4
    # the page loads nothing: no src/href to another document, no @import, no url()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?[a-z]*:?//""", html, re.I)
    assert "@import" not in html and "url(" not in html


def test_the_page_says_which_preset_it_replayed() -> None:
    html = render_html(sample_report())
    sub = re.search(r'<p class="sub">(.*?)</p>', html).group(1)
    assert "preset max-savings (cache → templates → compress → budget)" in sub
    assert "preset" not in re.search(r'<p class="sub">(.*?)</p>', render_html(
        {"kind": "demo", "layers": []})).group(1)


def test_user_text_cannot_break_out_of_the_page() -> None:
    html = render_html(sample_report())
    # the only script elements are the data block and our own small script
    assert html.count("<script") == 2
    assert "<script>alert(1)" not in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html


def test_empty_and_non_finite_values_render() -> None:
    html = render_html({"cost_per_mtok_before": float("nan"), "layers": [],
                        "budget": {"points": [[float("inf"), 3]]}})
    assert read_embedded(html)["cost_per_mtok_before"] is None
    assert html.count('class="chart"') == len(CHARTS)
    assert html.count('data-empty="1"') >= 3
    with pytest.raises(TypeError):
        render_html([1, 2])  # type: ignore[arg-type]


# ---- a real browser -----------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run",
          # any network fetch the page tried would fail and be logged as a console error
          "--proxy-server=http://127.0.0.1:9", "--enable-logging=stderr", "--v=0"]


def _chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    return subprocess.run([CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *extra,
                           page.as_uri()], capture_output=True, text=True, timeout=120,
                          check=False)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian `chromium` is not installed (apt-get install -y chromium); "
    "the browser test of the HTML report needs it")


@needs_chromium
def test_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>missingFunction();</script></body></html>")
    result = _chromium(bad, tmp_path, "--dump-dom")
    assert any("missingFunction" in line for line in _console(result.stderr))


@needs_chromium
def test_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(sample_report()), encoding="utf-8")
    dom = _chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == [], _console(dom.stderr)
    # our script parsed the embedded JSON as the browser read it
    assert 'data-report-ok="1"' in dom.stdout
    assert 'data-report-layers="5"' in dom.stdout
    assert set(re.findall(r'<svg class="chart" data-chart="([a-z]+)"', dom.stdout)) == CHARTS
    assert len(re.findall(r'<circle class="point"', dom.stdout)) == 4 + 5
    shot = tmp_path / "report.png"
    result = _chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2000")
    assert _console(result.stderr) == [], _console(result.stderr)
    assert _png_size(shot) == (1200, 2000)
    assert shot.stat().st_size > 40_000  # a blank page of that size compresses to ~10 kB
    if os.environ.get("TOKENLEAN_UPDATE_DOCS_IMG"):
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMG)
