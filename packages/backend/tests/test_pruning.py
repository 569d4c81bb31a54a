from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from tokenlean.backend import (
    count_parameters,
    importance_scores,
    load_model,
    plan_shape,
    prune_model,
    save_pruned,
)
from tokenlean.core import ConfigError

# 6 query heads in 2 KV groups (3 per group), hidden 96 (divisible by 6, 4 and 2 heads)
SHAPE = dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, head_dim=16,
             intermediate_size=128, num_hidden_layers=3)


def _calib(n: int = 4, t: int = 24, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 256, (n, t), generator=g)


def test_count_parameters_matches_the_model(make_tiny) -> None:
    for overrides in ({}, SHAPE, {**SHAPE, "attention_bias": True, "tie_word_embeddings": False}):
        model = make_tiny(**overrides)
        assert count_parameters(model.config) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("method", ["taylor", "activation"])
def test_importance_shapes_and_sign(method: str, make_tiny) -> None:
    model = make_tiny(**SHAPE)
    imp = importance_scores(model, _calib(), method=method, batch_size=2)
    assert imp.heads.shape == (3, 6) and imp.channels.shape == (3, 128)
    assert imp.layers.shape == (3,) and imp.tokens == 4 * 24
    assert (imp.heads >= 0).all() and (imp.channels >= 0).all() and (imp.heads > 0).any()
    # scoring leaves the model as it was: eval mode, gradients on
    assert not model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def _target_for(config, **shape) -> float:
    """The target whose plan is exactly ``shape`` (a hair under, against rounding)."""
    small = transformers.LlamaConfig(**{**config.to_dict(), **shape})
    return 1 - count_parameters(small) / count_parameters(config) - 1e-6


@pytest.mark.parametrize("method", ["taylor", "activation"])
def test_dead_units_score_zero_and_pruning_them_is_lossless(
        method: str, make_tiny) -> None:
    """Heads whose o_proj columns are zero and MLP channels whose down_proj column is
    zero contribute nothing: they must score 0, be the ones pruned, and the pruned
    model must compute the same logits as the dense one."""
    model = make_tiny(seed=5, **SHAPE)
    d = 16
    dead_heads = {0: [1, 5], 1: [0, 3], 2: [2, 4]}  # one per KV group (heads 0-2, 3-5)
    dead_chans = {0: range(0, 32), 1: range(40, 72), 2: range(96, 128)}
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            for h in dead_heads[i]:
                layer.self_attn.o_proj.weight[:, h * d:(h + 1) * d] = 0
            layer.mlp.down_proj.weight[:, list(dead_chans[i])] = 0
    imp = importance_scores(model, _calib(), method=method)
    for i in range(3):
        assert imp.heads[i, dead_heads[i]].abs().max() == 0
        assert imp.channels[i, list(dead_chans[i])].abs().max() == 0
        assert imp.channels[i].count_nonzero() == 96
    target = _target_for(model.config, num_attention_heads=4, intermediate_size=96)
    pruned, report = prune_model(model, importance=imp, target=target, heads_per_group=2,
                                 multiple_of=32, reconstruct="none")
    assert report.heads_per_group == (2, 3) and report.intermediate_size == (96, 128)
    assert pruned.config.num_attention_heads == 4
    assert pruned.config.num_key_value_heads == 2
    assert pruned.config.intermediate_size == 96
    x = _calib(2, 20, seed=9)
    with torch.no_grad():
        dense_logits, pruned_logits = model(x).logits, pruned(x).logits
    assert torch.allclose(dense_logits, pruned_logits, atol=1e-5)
    assert report.params_after == count_parameters(pruned.config)
    assert report.params_after == sum(p.numel() for p in pruned.parameters())


def test_pruning_live_units_changes_the_output_and_reconstruction_reduces_the_error(
        make_tiny) -> None:
    model = make_tiny(seed=5, **SHAPE)
    calib = _calib(8, 32)
    imp = importance_scores(model, calib, covariance=True)
    assert imp.mlp_cov.shape == (3, 128, 128) and imp.attn_cov.shape == (3, 96, 96)
    plain, r_plain = prune_model(model, importance=imp, target=0.3, heads_per_group=2,
                                 reconstruct="none")
    assert r_plain.reconstructed == "none"
    x = _calib(4, 32, seed=9)  # held-out random tokens from the same distribution
    with torch.no_grad():
        dense = model(x).logits
        err_plain = (plain(x).logits - dense).pow(2).mean()
    assert err_plain > 1e-6
    for mode in ("attention", "all"):
        refit, r_refit = prune_model(model, importance=imp, target=0.3, heads_per_group=2,
                                     reconstruct=mode)
        assert r_refit.reconstructed == mode
        with torch.no_grad():
            assert (refit(x).logits - dense).pow(2).mean() < err_plain
    with pytest.raises(ConfigError, match="covariance"):
        prune_model(model, importance=importance_scores(model, calib), target=0.3)
    only_attn = importance_scores(model, calib, covariance="attention")
    assert only_attn.mlp_cov is None and only_attn.attn_cov is not None
    with pytest.raises(ConfigError, match="covariance"):
        prune_model(model, importance=only_attn, target=0.3, reconstruct="all")
    with pytest.raises(ConfigError, match="reconstruct"):
        prune_model(model, importance=imp, target=0.3, reconstruct="yes")  # type: ignore[arg-type]


def test_pruned_model_saves_and_reloads_with_identical_logits(
        tmp_path: Path, make_tiny, tiny_tok) -> None:
    from tokenlean.backend._workflow import PRUNE_INFO_FILE

    model = make_tiny(**SHAPE)
    pruned, report = prune_model(model, _calib(), target=0.3, drop_layers=1, multiple_of=16,
                                 heads_per_group=2)
    assert pruned.config.num_hidden_layers == 2
    assert len(report.dropped_layers) == 1
    assert type(pruned) is type(model)
    folder = save_pruned(pruned, tiny_tok, tmp_path / "out", info={"prune": report.to_dict()})
    assert (folder / PRUNE_INFO_FILE).is_file()
    # a plain transformers load, no tokenlean code involved
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert reloaded.config.num_attention_heads == 4
    assert reloaded.config.intermediate_size == pruned.config.intermediate_size
    x = _calib(2, 20, seed=3)
    with torch.no_grad():
        assert torch.equal(pruned(x).logits, reloaded(x).logits)
    via_tokenlean, tok = load_model(folder)
    with torch.no_grad():
        assert torch.equal(pruned(x).logits, via_tokenlean(x).logits)
    assert tok.decode(tok("abc").input_ids) == "abc"
    with pytest.raises(ConfigError, match="not empty"):
        save_pruned(pruned, tiny_tok, folder)


def test_plan_shape_rules(make_tiny) -> None:
    cfg = make_tiny(**SHAPE).config
    # MLP channels go first; heads only when the MLP alone cannot meet the target
    assert plan_shape(cfg, target=0.05)["heads_per_group"] == 3
    assert plan_shape(cfg, target=0.3)["heads_per_group"] == 3
    assert plan_shape(cfg, target=0.45)["heads_per_group"] == 2
    assert plan_shape(cfg, target=0.3, heads_per_group=1)["num_attention_heads"] == 2
    assert plan_shape(cfg, target=0.0)["intermediate_size"] == 128
    with pytest.raises(ConfigError, match="target"):
        plan_shape(cfg, target=1.0)
    with pytest.raises(ConfigError, match="heads_per_group"):
        plan_shape(cfg, target=0.3, heads_per_group=4)
    with pytest.raises(ConfigError, match="cannot be met"):
        plan_shape(cfg, target=0.95)
    with pytest.raises(ConfigError, match="drop_layers"):
        plan_shape(cfg, target=0.3, drop_layers=3)


def test_prune_needs_calibration_and_a_llama_style_model(
        make_tiny) -> None:
    with pytest.raises(ConfigError, match="calibration"):
        prune_model(make_tiny(**SHAPE), target=0.3)
    with pytest.raises(ConfigError, match="method"):
        importance_scores(make_tiny(**SHAPE), _calib(), method="random")  # type: ignore[arg-type]
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=32))
    with pytest.raises(ConfigError, match="Llama-style"):
        prune_model(gpt2, _calib(1, 8) % 64, target=0.3)
