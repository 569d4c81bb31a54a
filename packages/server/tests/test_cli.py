"""`tokenlean serve` as a real process, and `tokenlean bench server` on the tiny model."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import typer
from typer.testing import CliRunner

from tokenlean.bench.server import bench


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_command_runs_a_server(tiny_dir: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "tokenlean"
    if not exe.exists():
        pytest.skip("the tokenlean console script is not installed in this environment")
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(exe), "serve", "--model", str(tiny_dir), "--port", str(port),
                             "--max-batch", "2", "--alias", "gpt-4o-mini", "--threads", "1",
                             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                raise AssertionError((tmp_path / "serve.log").read_text()[-3000:])
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == [tiny_dir.name, "gpt-4o-mini"]
        out = client.chat.completions.create(model="gpt-4o-mini", max_tokens=3,
                                             messages=[{"role": "user", "content": "Hi"}])
        assert out.usage is not None and out.usage.completion_tokens >= 1
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_bench_prints_one_json_object(tiny_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "prompts.jsonl"
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"Question number {i}?"}],
             "response": "An answer that goes on for a while. " * 5} for i in range(6)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    app = typer.Typer()
    app.command()(bench)
    result = CliRunner().invoke(app, [str(data), "--model", str(tiny_dir), "--limit", "4",
                                      "--max-tokens", "4", "--concurrency", "1,8",
                                      "--prefix-tokens", "96", "--prefix-rounds", "2",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(out["levels"]) == {"1", "8"}
    assert out["levels"]["8"]["requests"] == 4 and out["levels"]["1"]["completion_tokens"] > 0
    assert out["speedup_at_8"] > 0
    assert out["prefix"]["prefix_hit_rate"] == 1.0
    assert out["prefix"]["cached_tokens_per_hit"] >= 80
