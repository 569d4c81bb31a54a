from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tokenlean.core import CallRecord, SQLiteLedger, Usage, price

EXE = shutil.which("tokenlean", path=str(Path(sys.executable).parent))


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    assert EXE, "the tokenlean console script is not installed"
    return subprocess.run([EXE, *args], input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
def test_count_hello_world(model: str) -> None:
    out = run("count", "--model", model, "--json", stdin="hello world\n")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["tokens"] == 2 and data["exact"] is True
    expected = price(Usage(input_tokens=2), model=model)
    assert expected is not None and data["cost_usd"] == pytest.approx(float(expected.input_usd))


def test_count_chat_json_file(tmp_path: Path) -> None:
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}]}))
    data = json.loads(run("count", "--model", "gpt-4o", "--json", str(chat)).stdout)
    assert data["kind"] == "chat"
    # 3 messages x (3 framing + role + content) + 3 priming; roles and these contents are
    # 1 token each in o200k except "Be brief." (3) and "Hello!" (2).
    assert data["tokens"] == 3 * 3 + 3 + (3 + 1 + 2) + 3


def test_count_errors_are_clear() -> None:
    out = run("count", "--model", "gpt-4o", "/no/such/file")
    assert out.returncode == 2 and "cannot read" in out.stderr
    out = run("count", "--model", "gpt-4o", "--json",
              stdin=json.dumps([{"role": "wizard", "content": "x"}]))
    assert out.returncode == 2 and "wizard" in out.stderr


def test_ledger_totals(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = SQLiteLedger(path)
    usage = Usage(input_tokens=1000, output_tokens=100)
    for tenant in ("a", "a", "b"):
        ledger.record(CallRecord(request_id=tenant, model="gpt-4o", tenant=tenant, usage=usage,
                                 cost=price(usage, model="gpt-4o")))
    data = json.loads(run("ledger", "--path", str(path), "--by", "tenant", "--json").stdout)
    assert [(r["key"], r["calls"]) for r in data] == [("a", 2), ("b", 1)]
    table = run("ledger", "--path", str(path), "--by", "tenant")
    assert table.returncode == 0 and "tenant" in table.stdout
    assert run("ledger", "--path", str(path), "--by", "colour").returncode == 2


def test_ledger_shows_the_reasoning_share_of_the_output(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = SQLiteLedger(path)
    for reasoning in (30, 12):
        usage = Usage(input_tokens=100, output_tokens=50, reasoning_tokens=reasoning)
        ledger.record(CallRecord(request_id=str(reasoning), model="o3-mini", usage=usage))
    [row] = json.loads(run("ledger", "--path", str(path), "--json").stdout)
    assert (row["output_tokens"], row["reasoning_tokens"]) == (100, 42)
    table = run("ledger", "--path", str(path))
    assert table.returncode == 0 and "reasoning" in table.stdout and "42" in table.stdout


def test_ledger_shows_an_unpriced_cost_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = SQLiteLedger(path)
    usage = Usage(input_tokens=1000, output_tokens=100)
    ledger.record(CallRecord(request_id="a", model="gpt-4o", tenant="t", usage=usage,
                             cost=price(usage, model="gpt-4o")))
    ledger.record(CallRecord(request_id="b", model="house-model", tenant="t", usage=usage))
    (row,) = json.loads(run("ledger", "--path", str(path), "--by", "tenant", "--json").stdout)
    assert row["cost_usd"] is None and row["unpriced_calls"] == 1
    assert row["priced_cost_usd"] > 0
    table = run("ledger", "--path", str(path), "--by", "tenant").stdout
    assert "unknown (priced: 0.003500)" in table  # the cost cell: never $0


def test_version_and_plugged_commands() -> None:
    assert "tokenlean-core" in run("--version").stdout
    listing = run("--help").stdout
    for command in ("count", "ledger", "demo"):
        assert command in listing
    bench = run("bench", "--help")
    assert bench.returncode == 0 and "overhead" in bench.stdout
