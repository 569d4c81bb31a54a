from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch

from tokenlean.backend import default_gguf_path, load_model, tokenlean_home
from tokenlean.core import ConfigError, MissingExtraError


def test_load_hf_folder(tiny_dir: Path) -> None:
    model, tok = load_model(tiny_dir)
    assert not model.training
    assert model.config.num_hidden_layers == 2
    # the shared attention path (attention.py)
    assert model.config._attn_implementation == "tokenlean"
    ids = tok("hello world", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 256)
    assert logits.dtype == torch.float32


def test_load_bfloat16_and_eager(tiny_dir: Path) -> None:
    model, _ = load_model(str(tiny_dir), dtype="bfloat16", attn_implementation="eager")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"


def test_missing_path_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere"):
        load_model(tmp_path / "nowhere")


def test_folder_without_config_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_model(tmp_path)


def test_not_a_causal_lm_is_config_error(tmp_path: Path) -> None:
    import transformers

    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, image_size=32, patch_size=16)
    transformers.ViTModel(cfg).save_pretrained(tmp_path / "vision")
    with pytest.raises(ConfigError, match="vision"):
        load_model(tmp_path / "vision")


def test_folder_without_weights_is_config_error(tiny_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "noweights"
    empty.mkdir()
    (empty / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(ConfigError, match="noweights"):
        load_model(empty)


def test_bad_dtype_is_config_error(tiny_dir: Path) -> None:
    with pytest.raises(ConfigError, match="dtype"):
        load_model(tiny_dir, dtype="float8")


def test_missing_torch_names_the_extra(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingExtraError, match="backend"):
        load_model(tiny_dir)


def test_home_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENLEAN_HOME", str(tmp_path))
    assert tokenlean_home() == tmp_path


def test_default_gguf_is_found() -> None:
    path = default_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
