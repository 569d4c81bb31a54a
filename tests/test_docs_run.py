"""Docs that run: every code block of README.md and docs/ marked runnable is executed.

A block is runnable when its info string is ```` ```python {.runnable} ```` or
```` ```bash {.runnable} ```` (docs/contributing.md, "Docs that run"). Each page's
runnable blocks run top to bottom in one fresh interpreter
(``tests/doc_blocks_runner.py``), offline, in the setting the getting-started
page describes: tokenlean's local server (SmolLM2-135M-Instruct, answering to
the name ``gpt-4o``) behind ``OPENAI_BASE_URL`` / ``OPENAI_API_BASE``, a fresh
``TOKENLEAN_HOME``, and a scratch working folder that links the repository's
top-level entries (so ``examples/traffic.jsonl`` and ``.venv/bin/tokenlean``
resolve, and whatever a block writes lands in the scratch folder).

Every ``tokenlean ...`` command line in a bash block, runnable or not, must at
least parse against the real CLI (options and arguments), so a documented
command cannot drift from the command (the README once showed ``tokenlean
prune`` without its required ``--calib``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = re.compile(r"^(?P<lang>\w+)\s*\{\s*\.runnable\s*\}\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*?)\s*$")
SERVED_AS = ["gpt-4o", "gpt-4o-mini"]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    info: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return RUNNABLE.match(self.info) is not None

    @property
    def lang(self) -> str:
        match = RUNNABLE.match(self.info)
        return match.group("lang") if match else (self.info.split() or [""])[0]


def code_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with their info strings."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence)
                                      and not lines[j].strip().strip(fence[0])):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        blocks.append(Block(page, i + 1, opening.group("info"), "\n".join(body) + "\n"))
        i = j + 1
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in code_blocks(page)]
RUNNABLE_PAGES = sorted({block.page for block in ALL_BLOCKS if block.runnable})


def test_the_block_reader_finds_fences_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python {.runnable}\nx = 1\n```\n\n1. a step:\n\n"
                    "   ```bash\n   echo hi\n   ```\n\n````markdown\n```python\n```\n````\n")
    blocks = code_blocks(page)
    assert [(b.line, b.lang, b.runnable) for b in blocks] == [
        (3, "python", True), (9, "bash", False), (13, "markdown", False)]
    assert blocks[0].code == "x = 1\n" and blocks[1].code == "echo hi\n"
    assert blocks[2].code == "```python\n```\n"


def test_runnable_markers_are_well_formed() -> None:
    """Only python and bash blocks run, and a marker the docs site would not render
    (```` ```python runnable ````, a typo) is an error, not a silently skipped block."""
    for block in ALL_BLOCKS:
        if "runnable" in block.info:
            assert block.runnable and block.lang in {"python", "bash"}, (
                f"{block.where}: write ```python {{.runnable}} or ```bash {{.runnable}}, "
                f"got ```{block.info}")


def test_the_getting_started_page_runs_what_it_shows() -> None:
    langs = {b.lang for b in code_blocks(ROOT / "docs" / "index.md") if b.runnable}
    assert langs == {"python", "bash"}
    assert ROOT / "README.md" in RUNNABLE_PAGES


# ---- every documented command parses ---------------------------------------------------

_OPERATORS = {"&&", "||", "|", ";", "&", "(", ")"}


def tokenlean_commands(code: str) -> Iterator[list[str]]:
    """The argument lists of the ``tokenlean`` commands in a shell block. Synopsis lines
    (``[--option]`` brackets) are not commands, and a command with a shell variable
    (``--ratio $R`` in a loop) cannot be checked before the shell expands it: both are
    left out."""
    joined = re.sub(r"\\\n", " ", code)
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unterminated quote: a heredoc body, not a command line
            continue
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token not in _OPERATORS:
                command.append(token)
                continue
            if command and Path(command[0]).name == "tokenlean" \
                    and not any(t.startswith("[") or "$" in t for t in command):
                yield command[1:]
            command = []


def parse_cli(args: list[str]) -> None:
    """Parse ``tokenlean ARGS`` as the CLI would, without running the command."""
    from tokenlean.cli import app

    command: Any = typer.main.get_command(app)  # typer's own copy of click
    parent: Any = None
    name = "tokenlean"
    while True:
        ctx = command.make_context(name, list(args), parent=parent)
        if not hasattr(command, "resolve_command"):  # a command, not a group
            return
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        command, parent = sub, ctx


DOCUMENTED = [(block.where, args) for block in ALL_BLOCKS
              if block.lang in {"bash", "sh", "shell", "console"}
              for args in tokenlean_commands(block.code)]


def test_the_command_reader_finds_commands() -> None:
    code = ("make setup && .venv/bin/tokenlean count --model gpt-4o --text 'hi there'  # c\n"
            "tokenlean prune --target 0.3 \\\n  --out pruned/\n"
            "tokenlean templates lint prompt.txt [--passes safe|all] [--json]\n"
            "for R in 2 5; do\n  tokenlean bench compress --ratio $R\ndone\n")
    assert list(tokenlean_commands(code)) == [
        ["count", "--model", "gpt-4o", "--text", "hi there"],
        ["prune", "--target", "0.3", "--out", "pruned/"]]
    with pytest.raises(typer.TyperException, match="calib"):
        parse_cli(["prune", "--target", "0.3", "--out", "pruned/"])
    with pytest.raises(typer.TyperException, match="No such option: --layers"):
        parse_cli(["audit", "LOG", "--layers", "cache"])


def test_there_are_documented_commands_to_check() -> None:
    assert len(DOCUMENTED) >= 50


@pytest.mark.parametrize(("where", "args"), DOCUMENTED,
                         ids=[f"{w} {' '.join(a[:2])}" for w, a in DOCUMENTED])
def test_every_documented_command_parses(where: str, args: list[str]) -> None:
    try:
        parse_cli(args)
    except typer.TyperException as exc:  # click's usage errors, as typer raises them
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        pytest.fail(f"{where}: `tokenlean {shlex.join(args)}` does not parse: {message}")


# ---- running the runnable blocks -----------------------------------------------------


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory, _shared_models: Path) -> Iterator[str]:
    """tokenlean.server with SmolLM2-135M-Instruct, answering to the names the docs use."""
    from tokenlean.server import DEFAULT_MODEL_NAME, Engine, ServerThread, create_app, load_model

    home = tmp_path_factory.mktemp("docs_server_home")
    (home / "models").symlink_to(_shared_models, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOKENLEAN_HOME", str(home))
        model, tokenizer = load_model()
    # short answers keep the pages fast; the docs never depend on an answer's length
    app = create_app(Engine(model, tokenizer), model_name=DEFAULT_MODEL_NAME, aliases=SERVED_AS,
                     default_max_tokens=24)
    with ServerThread(app) as server:
        yield f"{server.url}/v1"


def _scratch(folder: Path) -> Path:
    """A working folder that sees the repository's top-level entries, writes elsewhere."""
    folder.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return folder


def _run_blocks(blocks: list[dict[str, str]], folder: Path,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    spec = folder / "blocks.json"
    spec.write_text(json.dumps(blocks), encoding="utf-8")
    return subprocess.run([sys.executable, str(ROOT / "tests" / "doc_blocks_runner.py"),
                           str(spec)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=900, check=False)


def test_the_runner_shares_a_page_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    run = _run_blocks([
        {"lang": "python", "code": "x = 41\n", "where": "page.md:1"},
        {"lang": "bash", "code": "echo from-bash > out.txt\n", "where": "page.md:5"},
        {"lang": "python", "code": "print(x + 1, open('out.txt').read().strip())\n",
         "where": "page.md:9"},
        {"lang": "bash", "code": "false\necho never\n", "where": "page.md:13"},
        {"lang": "python", "code": "print('not reached')\n", "where": "page.md:17"},
    ], tmp_path)
    assert run.returncode == 1
    assert "42 from-bash" in run.stdout and "never" not in run.stdout
    assert "not reached" not in run.stdout
    assert "FAILED: the bash block at page.md:13" in run.stderr
    warned = _run_blocks([{"lang": "python", "code": (
        "import warnings\nfrom tokenlean.core import TokenleanWarning\n"
        "warnings.warn('a documented example warned', TokenleanWarning)\n"),
        "where": "page.md:1"}], tmp_path)
    assert warned.returncode == 1 and "a documented example warned" in warned.stderr


@pytest.mark.server
@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_blocks_run(page: Path, local_server: str, tmp_path: Path) -> None:
    blocks = [{"lang": b.lang, "code": b.code, "where": b.where}
              for b in code_blocks(page) if b.runnable]
    env = {**os.environ,
           "OPENAI_BASE_URL": local_server, "OPENAI_API_BASE": local_server,
           "OPENAI_API_KEY": "sk-local-docs-test",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "TOKENLEAN_HOME": str(tmp_path / "home"), "NO_COLOR": "1", "COLUMNS": "120"}
    env.pop("PYTEST_CURRENT_TEST", None)
    run = _run_blocks(blocks, _scratch(tmp_path / "work"), env)
    assert run.returncode == 0, (run.stdout[-6000:] + "\n" + run.stderr[-6000:])
    assert run.stdout.count("----- ") == len(blocks)
