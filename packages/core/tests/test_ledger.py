from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tokenlean.core import (
    CallRecord,
    ConfigError,
    JSONLLedger,
    LayerReport,
    SQLiteLedger,
    TokenleanWarning,
    Usage,
    open_ledger,
    price,
)


def rec(i: int, *, tenant: str = "t1", model: str = "gpt-4o", cached: bool = False) -> CallRecord:
    usage = Usage(input_tokens=100 + i, output_tokens=10)
    return CallRecord(
        request_id=f"r{i}", model=model, tenant=tenant, usage=usage,
        cost=price(usage, model=model), cached=cached, started_at=1_700_000_000 + 86_400 * (i % 2),
        layers=(LayerReport(layer="compress", saved_input_tokens=50, saved_usd=Decimal("0.001")),),
    )


@pytest.mark.parametrize("suffix", [".sqlite", ".jsonl"])
def test_totals_by_every_key(tmp_path: Path, suffix: str) -> None:
    ledger = open_ledger(tmp_path / f"ledger{suffix}")
    for i in range(4):
        ledger.record(rec(i, tenant="t1" if i < 3 else "t2"))
    by_tenant = {t.key: t for t in ledger.totals(by="tenant")}
    assert by_tenant["t1"].calls == 3 and by_tenant["t2"].calls == 1
    assert by_tenant["t1"].input_tokens == 100 + 101 + 102
    (model_row,) = ledger.totals(by="model")
    assert model_row.cost_usd == sum(rec(i).cost_usd for i in range(4))
    (layer_row,) = ledger.totals(by="layer")
    assert layer_row.key == "compress" and layer_row.saved_tokens == 200
    assert layer_row.saved_usd == Decimal("0.004")
    assert [t.key for t in ledger.totals(by="day")] == ["2023-11-14", "2023-11-15"]
    only_t2 = ledger.totals(by="model", tenant="t2")
    assert only_t2[0].calls == 1
    round_trip = list(ledger.records(tenant="t2"))[0]
    assert round_trip == rec(3, tenant="t2")
    with pytest.raises(ConfigError):
        ledger.totals(by="colour")  # type: ignore[arg-type]


def test_unpriced_calls_are_counted_apart(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    ledger.record(CallRecord(request_id="x", model="house-model", usage=Usage(input_tokens=5)))
    (row,) = ledger.totals()
    assert row.unpriced_calls == 1 and row.cost_usd == 0


def test_unwritable_path_is_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError):
        SQLiteLedger(blocker / "ledger.sqlite")


def test_jsonl_skips_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = JSONLLedger(path)
    ledger.record(rec(1))
    with path.open("a") as fh:
        fh.write('{"request_id": "torn", "mod')
    with pytest.warns(TokenleanWarning, match="torn"):
        assert [r.request_id for r in ledger.records()] == ["r1"]


WRITER = textwrap.dedent("""
    import sys, threading
    from tokenlean.core import CallRecord, Usage, open_ledger
    ledger = open_ledger(sys.argv[1])
    lock = threading.Lock()

    def work(t):
        i = 0
        while True:
            rid = f"{t}-{i}"
            ledger.record(CallRecord(request_id=rid, model="gpt-4o",
                                     usage=Usage(input_tokens=i, output_tokens=1)))
            with lock:  # printed only after the commit returned
                sys.stdout.write(rid + "\\n")
                sys.stdout.flush()
            i += 1

    for t in range(4):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
""")


@pytest.mark.parametrize("suffix", [".sqlite", ".jsonl"])
def test_kill_9_during_four_thread_appends_loses_no_committed_row(tmp_path: Path,
                                                                  suffix: str) -> None:
    path = tmp_path / f"ledger{suffix}"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    committed: list[str] = []
    deadline = time.monotonic() + 60
    while len(committed) < 400 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    committed += [line for line in rest.splitlines() if line]
    assert proc.returncode == -signal.SIGKILL
    assert len(committed) >= 400, "writer did not get going"
    if suffix == ".sqlite":
        check = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0]
        assert check == "ok"
    stored = {r.request_id for r in open_ledger(path).records()} if suffix == ".sqlite" else None
    if stored is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TokenleanWarning)  # a torn last line is allowed
            stored = {r.request_id for r in open_ledger(path).records()}
    missing = [rid for rid in committed if rid not in stored]
    assert missing == []
    assert {rid.split("-")[0] for rid in committed} == {"0", "1", "2", "3"}
