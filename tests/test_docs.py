"""The docs site builds with --strict (broken links, bad API references, a page left
out of the nav fail), its nav is in reading order, and the home page's code fits the
page in a real browser (no sideways scrolling)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tokenlean.core.presets import LAYER_ORDER

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return folder


def test_mkdocs_build_strict(site: Path) -> None:
    assert (site / "index.html").is_file()


def _nav() -> list[dict]:
    # mkdocs.yml may hold python tags (!!python/name:...) elsewhere; the nav is plain
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    return config["nav"]


def test_nav_is_in_reading_order() -> None:
    nav = _nav()
    titles = [next(iter(item)) for item in nav]
    assert titles[:7] == ["Getting started", "Layers, in pipeline order", "Integrations",
                          "Accounting", "Audit and demo", "Benchmarks", "API"]
    assert nav[0] == {"Getting started": "index.md"}  # the site opens on it
    layers = [next(iter(item.values())) for item in nav[1]["Layers, in pipeline order"]]
    assert layers[:len(LAYER_ORDER)] == [f"layers/{name}.md" for name in LAYER_ORDER]


_CHECK = """<script>
window.addEventListener("load", () => {
  const blocks = [...document.querySelectorAll(".md-content pre > code")];
  const wide = blocks.filter(c => c.scrollWidth > c.clientWidth + 1)
                     .map(c => c.textContent.split("\\n")[0]);
  document.body.setAttribute("data-code-blocks", String(blocks.length));
  document.body.setAttribute("data-wide-blocks", JSON.stringify(wide));
});
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Debian `chromium` is not installed "
                    "(apt-get install -y chromium); the layout check needs a real browser")
def test_home_page_code_does_not_scroll_sideways(site: Path, tmp_path: Path) -> None:
    page = site / "index-layout-check.html"
    page.write_text((site / "index.html").read_text(encoding="utf-8")
                    .replace("</body>", _CHECK, 1), encoding="utf-8")
    assert CHROMIUM is not None
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--proxy-server=http://127.0.0.1:9", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1280,900", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    blocks = re.search(r'data-code-blocks="(\d+)"', dom.stdout)
    wide = re.search(r'data-wide-blocks="([^"]*)"', dom.stdout)
    assert blocks is not None and wide is not None, "the check script did not run"
    assert int(blocks.group(1)) >= 5  # the diagram and the examples were measured
    assert json.loads(wide.group(1).replace("&quot;", '"')) == []


def test_readme_has_exactly_two_quick_start_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
