"""4 processes x 4 threads appending to one embedded ledger: nothing lost, nothing torn."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tokenlean.core import open_ledger

WORKER = textwrap.dedent("""
    import sys, threading
    from tokenlean.core import CallRecord, Usage, open_ledger
    path, proc = sys.argv[1], sys.argv[2]
    ledger = open_ledger(path)

    def work(t):
        for i in range(50):
            ledger.record(CallRecord(request_id=f"{proc}-{t}-{i}", model="gpt-4o",
                                     tenant=f"tenant{proc}",
                                     usage=Usage(input_tokens=i + 1, output_tokens=1)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
""")


@pytest.mark.parametrize("suffix", [".sqlite", ".jsonl"])
def test_four_processes_four_threads(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ledger{suffix}"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(p)]) for p in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    records = list(open_ledger(path).records())
    ids = [r.request_id for r in records]
    assert len(ids) == len(set(ids)) == 4 * 4 * 50
    totals = {t.key: t for t in open_ledger(path).totals(by="tenant")}
    assert all(totals[f"tenant{p}"].input_tokens == 4 * sum(range(1, 51)) for p in range(4))
    # a tenant-scoped query sees only that tenant's rows
    assert {r.tenant for r in open_ledger(path).records(tenant="tenant2")} == {"tenant2"}
