"""A real tokenlean server on loopback for the integration tests.

The model is the server tests' tiny random Llama (SmolLM2's real tokenizer,
2 layers, 64 wide): it answers in milliseconds, so LangChain's whole standard
integration suite runs against real HTTP in seconds. The builder is the server
tests' own (loaded by path, not copied).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SERVER_CONFTEST = Path(__file__).resolve().parents[3] / "packages/server/tests/conftest.py"
TINY_NAME = "tiny-llama"
# names the server also answers to: priced ones, so the ledger gets real dollars
ALIASES = ("gpt-4o-mini", "gpt-4.1-nano")


def _server_helpers() -> Any:
    spec = importlib.util.spec_from_file_location("_tokenlean_server_fixtures", SERVER_CONFTEST)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_server_model(pytestconfig: pytest.Config) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # same cache key as packages/server/tests: built once for both
    target = pytestconfig.cache.mkdir("tokenlean-server-tiny-v1") / TINY_NAME
    if not (target / "model.safetensors").exists() or not (target / "tokenizer.json").exists():
        _server_helpers().make_tiny_model_dir(target)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return AutoModelForCausalLM.from_pretrained(target), AutoTokenizer.from_pretrained(target)


@pytest.fixture(scope="module")
def local_server(tiny_server_model: tuple[Any, Any]) -> Iterator[Any]:
    """``tokenlean serve`` in a thread: OpenAI-compatible at ``server.url + '/v1'``."""
    from tokenlean.server import Engine, ServerThread, create_app

    model, tokenizer = tiny_server_model
    app = create_app(Engine(model, tokenizer), model_name=TINY_NAME, aliases=list(ALIASES),
                     default_max_tokens=8)
    with ServerThread(app) as server:
        server.aliases = ALIASES  # type: ignore[attr-defined]
        yield server
