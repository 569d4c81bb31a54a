from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("wrapper", ["lean", "middleware"])
def test_overhead_bench_prints_json(wrapper: str) -> None:
    exe = shutil.which("tokenlean", path=str(Path(sys.executable).parent))
    assert exe
    out = subprocess.run([exe, "bench", "overhead", "--json", "--n", "20", "--wrapper", wrapper],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["n"] == 20 and data["bench"] == "overhead" and data["wrapper"] == wrapper
    assert data["layers"] == ["cache", "templates"]  # the safe preset
    assert {"overhead_ms_p50", "overhead_ms_p99"} <= set(data)
