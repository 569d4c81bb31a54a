"""`tokenlean serve` as a real process, and `tokenlean bench server` on the tiny model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
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


def start_serve(tiny_dir: Path, tmp_path: Path, *options: str,
                env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int, Path]:
    exe = Path(sys.executable).parent / "tokenlean"
    if not exe.exists():
        pytest.skip("the tokenlean console script is not installed in this environment")
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(exe), "serve", "--model", str(tiny_dir), "--port", str(port),
                                 "--max-batch", "2", "--alias", "gpt-4o-mini", "--threads", "1",
                                 "--log-level", "warning", *options], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc, port, log_path
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            raise AssertionError(log_path.read_text()[-3000:])
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


def test_serve_command_runs_a_server(tiny_dir: Path, tmp_path: Path) -> None:
    proc, port, log = start_serve(tiny_dir, tmp_path)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == [tiny_dir.name, "gpt-4o-mini"]
        out = client.chat.completions.create(model="gpt-4o-mini", max_tokens=3,
                                             messages=[{"role": "user", "content": "Hi"}])
        assert out.usage is not None and out.usage.completion_tokens >= 1
        assert "NO API KEYS" in log.read_text()  # the startup line says it is open
        # loopback names on any port, not a rebinding host name
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models",
                         headers={"host": f"localhost:{port}"}).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models",
                         headers={"host": "attacker.example"}).status_code == 403
    finally:
        stop(proc)


def test_serve_with_keys_from_flags_and_environment(tiny_dir: Path, tmp_path: Path) -> None:
    proc, port, log = start_serve(
        tiny_dir, tmp_path, "--api-key", "flag-key-1=acme", "--max-prompt-tokens", "30",
        "--max-body-bytes", "5000", "--allowed-host", "api.example.com",
        env={"TOKENLEAN_API_KEYS": "env-key-1=globex, env-key-2"})
    url = f"http://127.0.0.1:{port}"
    try:
        text = log.read_text()
        assert "3 API key(s) required" in text and "3 tenant(s)" in text
        assert "flag-key-1" not in text and "env-key" not in text  # keys never logged
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0).models.list()
        for key in ("flag-key-1", "env-key-1", "env-key-2"):
            client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
            assert client.completions.create(model="gpt-4o-mini", prompt="Hi", max_tokens=1).usage
        claude = anthropic.Anthropic(base_url=url, api_key="env-key-1", max_retries=0)
        with pytest.raises(anthropic.BadRequestError, match="at most 30"):
            claude.messages.create(model="gpt-4o-mini", max_tokens=1,
                                   messages=[{"role": "user", "content": "word " * 40}])
        big = httpx.post(url + "/v1/messages", headers={"x-api-key": "env-key-1"},
                         json={"model": "gpt-4o-mini", "max_tokens": 1, "pad": "x" * 6000,
                               "messages": [{"role": "user", "content": "Hi"}]})
        assert big.status_code == 413 and big.json()["error"]["type"] == "request_too_large"
        assert httpx.get(url + "/health", headers={"host": "api.example.com"}).status_code == 200
    finally:
        stop(proc)


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


def test_serve_refuses_a_malformed_key_before_loading_anything() -> None:
    from tokenlean.cli import app as cli

    result = CliRunner().invoke(cli, ["serve", "--api-key", "has space=acme"])
    assert result.exit_code == 2 and "error:" in result.output and "API key" in result.output
