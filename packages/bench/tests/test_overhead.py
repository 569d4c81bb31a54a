from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> dict:
    exe = shutil.which("tokenlean", path=str(Path(sys.executable).parent))
    assert exe
    out = subprocess.run([exe, "bench", "overhead", *args], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("wrapper", ["lean", "middleware"])
def test_overhead_bench_prints_json_per_preset(wrapper: str) -> None:
    data = run("--n", "20", "--wrapper", wrapper, "--preset", "safe", "--preset", "off")
    assert data["bench"] == "overhead" and data["wrapper"] == wrapper
    assert set(data["presets"]) == {"safe", "off"}
    safe = data["presets"]["safe"]
    assert safe["layers"] == ["cache", "templates"] and safe["n"] == 20
    assert {"overhead_ms_p50", "overhead_ms_p99", "overhead_ms_per_10k_tokens_p99"} <= set(safe)
    assert set(safe["layers_ms"]) == {"cache", "templates"}
    assert safe["target"]["target_p50_ms"] == 5.0 and "met" in safe["target"]
    assert data["prompt_sizes"]["short"]["tokens_max"] > 0


def test_a_qa_file_is_sent_as_a_rag_prompt(tmp_path: Path) -> None:
    rows = [{"id": str(i), "context": f"Item {i} costs {i * 3} euros. " * 200,
             "question": f"What does item {i} cost?", "answers": [f"{i * 3} euros"]}
            for i in range(3)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = run("--prompts", str(path), "--preset", "safe")
    assert data["calls_per_preset"] == 3
    (size,) = data["prompt_sizes"].values()
    assert size["prompts"] == 3 and size["chars_max"] > 4_000
    assert data["presets"]["safe"]["by_kind"]["qa"]["n"] == 3


def test_a_file_of_no_known_shape_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"text": "hello"}) + "\n")
    exe = shutil.which("tokenlean", path=str(Path(sys.executable).parent))
    assert exe
    out = subprocess.run([exe, "bench", "overhead", "--prompts", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "other.jsonl:1" in out.stderr
