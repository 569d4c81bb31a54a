"""The built-in commands with only tokenlean-core and tokenlean-cli installed: ``--help``
lists them all, and each one whose layer is missing says which extra to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Run the CLI in a fresh interpreter that cannot import any layer package and sees no
# plugged commands: what a `pip install tokenlean` (core + cli) machine has.
_ONLY_CORE_AND_CLI = """
import importlib.metadata, sys
from importlib.abc import MetaPathFinder

ABSENT = ("tokenlean.cache", "tokenlean.compress", "tokenlean.budget", "tokenlean.templates",
          "tokenlean.backend", "tokenlean.server", "tokenlean.exporters", "tokenlean.audit",
          "tokenlean.bench", "langchain_tokenlean", "langchain_openai", "torch")

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == a or name.startswith(a + ".") for a in ABSENT):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
importlib.metadata.entry_points = lambda **_: []
sys.argv = ["tokenlean", *ARGS]
from tokenlean.cli import main
main()
"""


def run_bare(*args: str) -> subprocess.CompletedProcess[str]:
    code = _ONLY_CORE_AND_CLI.replace("ARGS", json.dumps(list(args)))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_help_lists_every_built_in_command_without_any_layer() -> None:
    out = run_bare("--help")
    assert out.returncode == 0, out.stderr
    for command in ("count", "ledger", "audit", "demo", "serve", "prune", "distill", "budget",
                    "templates"):
        assert f" {command} " in out.stdout, command
    assert " bench " not in out.stdout  # no benchmark installed: no bench group
    assert run_bare("count", "--model", "gpt-4o", "--text", "hello world", "--json"
                    ).returncode == 0


@pytest.mark.parametrize(("args", "extra"), [
    (["serve"], "server"),
    (["prune", "--out", "o", "--calib", "c.jsonl"], "backend"),
    (["distill", "s", "--out", "o", "--recover-calib", "c.jsonl"], "backend"),
    (["budget", "show"], "budget"),
    (["templates", "lint", "--from-llamaindex", "installed"], "templates"),
    (["audit", "LOG"], "audit"),
    (["demo"], "demo"),
], ids=lambda v: v if isinstance(v, str) else v[0])
def test_a_command_without_its_layer_names_the_extra(args: list[str], extra: str,
                                                     tmp_path: Path) -> None:
    args = [str(tmp_path / "log.jsonl") if a == "LOG" else a for a in args]
    (tmp_path / "log.jsonl").write_text("{}\n")
    out = run_bare(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"pip install 'tokenlean[{extra}]'" in out.stderr
    assert "Traceback" not in out.stderr
