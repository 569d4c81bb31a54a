from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
import typer
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface
from typer.testing import CliRunner

from tokenlean.backend import load_model, prune_model, save_pruned, select_attn_implementation
from tokenlean.backend.attention import (
    ATTN_IMPLEMENTATION,
    attention_kernel,
    register_attention,
    tokenlean_attention_forward,
    tokenlean_attention_mask,
)
from tokenlean.bench.attention import bench_attention
from tokenlean.core import ConfigError

IMPLS = ("eager", "sdpa", "tokenlean")


def _logits(model, ids, mask=None, impls=IMPLS):
    out = {}
    for impl in impls:
        model.set_attn_implementation(impl)
        with torch.no_grad():
            out[impl] = model(input_ids=ids, attention_mask=mask).logits
    return out


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=1e-4, rtol=1e-4)


# --- the dispatch rule, a pure function ---------------------------------------------------

@pytest.mark.parametrize(("device", "dtype", "flash", "kernel"), [
    ("cuda", torch.float16, True, "flash_attention_2"),
    ("cuda", torch.bfloat16, True, "flash_attention_2"),
    ("cuda", "bfloat16", True, "flash_attention_2"),
    ("cuda", torch.float32, True, "sdpa"),        # FlashAttention-2 has no fp32 kernels
    ("cuda", torch.float16, False, "sdpa"),       # flash-attn not installed
    ("cpu", torch.float16, True, "sdpa"),
    ("cpu", torch.float32, False, "sdpa"),
    ("mps", torch.bfloat16, True, "sdpa"),
])
def test_attention_kernel_rule(device: str, dtype: object, flash: bool, kernel: str) -> None:
    assert attention_kernel(device, dtype, flash) == kernel


def test_registration_is_idempotent() -> None:
    assert register_attention() == ATTN_IMPLEMENTATION == "tokenlean"
    n_attn, n_mask = len(AttentionInterface()), len(AttentionMaskInterface())
    assert register_attention() == "tokenlean"
    assert select_attn_implementation("cuda:0") == "tokenlean"
    assert (len(AttentionInterface()), len(AttentionMaskInterface())) == (n_attn, n_mask)
    assert AttentionInterface()["tokenlean"] is tokenlean_attention_forward
    assert AttentionMaskInterface()["tokenlean"] is tokenlean_attention_mask


def test_cpu_mask_is_sdpa_format() -> None:
    register_attention()
    pad = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    mask = tokenlean_attention_mask(batch_size=2, q_length=4, kv_length=4, attention_mask=pad,
                                    device=torch.device("cpu"), dtype=torch.float16)
    assert mask.shape == (2, 1, 4, 4) and mask.dtype == torch.bool
    assert not mask[0, 0, :, 0].any() and mask[1, 0, 3].all() and not mask[1, 0, 0, 1]


# --- logits equal eager and SDPA ----------------------------------------------------------

@pytest.mark.parametrize("kv_heads", [1, 2, 4])  # MQA, GQA (4 query heads), MHA
@pytest.mark.parametrize("padded", [False, True])
def test_logits_match_eager_and_sdpa(kv_heads: int, padded: bool, make_tiny) -> None:
    register_attention()
    model = make_tiny(seed=3, num_key_value_heads=kv_heads)
    torch.manual_seed(0)
    ids = torch.randint(3, 256, (2, 24))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, :5] = 0  # left padding on the second row
    out = _logits(model, ids, mask)
    keep = mask.bool()
    assert _close(out["tokenlean"][keep], out["eager"][keep])
    assert _close(out["tokenlean"][keep], out["sdpa"][keep])
    assert out["tokenlean"].abs().max() > 0
    if padded:  # the mask is applied: the padded row differs from an unmasked run
        plain = _logits(model, ids, None, impls=("tokenlean",))["tokenlean"]
        assert not _close(plain[1, 5:], out["tokenlean"][1, 5:])
        assert _close(plain[0], out["tokenlean"][0])


def test_kv_cache_decode_matches_eager(make_tiny) -> None:
    register_attention()
    model = make_tiny(seed=5)
    torch.manual_seed(1)
    ids = torch.randint(3, 256, (2, 10))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding: batched generation
    runs = {}
    for impl in ("eager", "tokenlean"):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            runs[impl] = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8,
                                        do_sample=False, output_logits=True,
                                        return_dict_in_generate=True, pad_token_id=0)
    assert torch.equal(runs["eager"].sequences, runs["tokenlean"].sequences)
    for a, b in zip(runs["eager"].logits, runs["tokenlean"].logits, strict=True):
        assert _close(a, b)
    # the cached steps equal a full forward over the generated sequence
    seq = runs["tokenlean"].sequences
    full_mask = torch.cat([mask, torch.ones(2, 8, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        full = model(input_ids=seq, attention_mask=full_mask).logits
    assert _close(full[:, -2], runs["tokenlean"].logits[-1])


def test_sliding_window_matches_eager() -> None:
    register_attention()
    cfg = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, head_dim=16,
               max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.MistralForCausalLM(transformers.MistralConfig(sliding_window=4, **cfg))
    model.eval()
    ids = torch.randint(3, 256, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    out = _logits(model, ids, mask)
    keep = mask.bool()
    assert _close(out["tokenlean"][keep], out["eager"][keep])
    model.config.sliding_window = None  # the window really changes the result
    full = _logits(model, ids, mask, impls=("tokenlean",))["tokenlean"]
    assert not _close(full[keep], out["tokenlean"][keep])


# --- the function itself: masks, dropout, errors ------------------------------------------

def _attn_module(make_tiny):
    return make_tiny(seed=0).model.layers[0].self_attn  # 4 query heads, 2 KV heads


def test_padding_mask_in_flash_format_runs_on_sdpa(make_tiny) -> None:
    module = _attn_module(make_tiny)
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 4, 6, 16), torch.randn(2, 2, 6, 16), torch.randn(2, 2, 6, 16)
    pad = torch.ones(2, 6, dtype=torch.long)
    pad[1, :2] = 0
    four_d = tokenlean_attention_mask(batch_size=2, q_length=6, kv_length=6,
                                      attention_mask=pad.bool(), device=q.device, dtype=q.dtype,
                                      allow_is_causal_skip=False)
    out2, _ = tokenlean_attention_forward(module, q, k, v, pad, scaling=0.25)
    out4, _ = tokenlean_attention_forward(module, q, k, v, four_d, scaling=0.25)
    assert out2.shape == (2, 6, 4, 16)
    assert _close(out2[:, 2:], out4[:, 2:]) and _close(out2[0], out4[0])


def test_dropout_is_off_in_eval_and_softcap_errs(make_tiny) -> None:
    module = _attn_module(make_tiny)
    q, k, v = torch.randn(1, 4, 5, 16), torch.randn(1, 2, 5, 16), torch.randn(1, 2, 5, 16)
    base, _ = tokenlean_attention_forward(module, q, k, v, None)
    dropped, _ = tokenlean_attention_forward(module, q, k, v, None, dropout=0.9)
    assert torch.equal(base, dropped)
    module.train()
    torch.manual_seed(0)
    trained, _ = tokenlean_attention_forward(module, q, k, v, None, dropout=0.9)
    assert not torch.equal(base, trained)
    module.eval()
    with pytest.raises(ConfigError, match="eager"):
        tokenlean_attention_forward(module, q, k, v, None, softcap=30.0)


# --- loading, pruning, saving -------------------------------------------------------------

def test_load_model_defaults_to_tokenlean_and_stays_overridable(tiny_dir: Path) -> None:
    model, _ = load_model(str(tiny_dir))
    assert model.config._attn_implementation == "tokenlean"
    eager, _ = load_model(str(tiny_dir), attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"


def test_pruned_model_runs_tokenlean_and_saved_folder_loads_without_it(
        tiny_dir: Path, tiny_tok, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dense, _ = load_model(str(tiny_dir))
    torch.manual_seed(0)
    calib = torch.randint(3, 256, (4, 16))
    pruned, _ = prune_model(dense, calib, target=0.3, heads_per_group=1, multiple_of=16)
    assert pruned.config._attn_implementation == "tokenlean"
    assert pruned.config.num_attention_heads == 2 and pruned.config.num_key_value_heads == 2
    ids = torch.randint(3, 256, (2, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    out = _logits(pruned, ids, mask)
    keep = mask.bool()
    assert _close(out["tokenlean"][keep], out["eager"][keep])

    pruned.set_attn_implementation("tokenlean")
    folder = tmp_path / "pruned"
    save_pruned(pruned, tiny_tok, folder)
    assert "tokenlean" not in (folder / "config.json").read_text()
    # a process without tokenlean: nothing registered under "tokenlean"
    monkeypatch.delitem(AttentionInterface._global_mapping, "tokenlean")
    monkeypatch.delitem(AttentionMaskInterface._global_mapping, "tokenlean")
    plain = transformers.AutoModelForCausalLM.from_pretrained(str(folder))
    plain.eval()
    assert plain.config._attn_implementation == "sdpa"
    with torch.no_grad():
        reloaded = plain(input_ids=ids, attention_mask=mask).logits
    assert _close(reloaded[keep], out["tokenlean"][keep])


# --- the benchmark command ----------------------------------------------------------------

def test_bench_attention_small(tiny_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": f"text {i} about hills and rivers. " * 8}) + "\n"
                            for i in range(4)))
    app = typer.Typer()
    app.command()(bench_attention)
    res = CliRunner().invoke(app, [
        str(data), "--model", str(tiny_dir), "--contexts", "32", "--contexts", "64",
        "--impls", "eager", "--impls", "sdpa", "--impls", "flash_attention_2",
        "--impls", "tokenlean", "--runs", "1", "--threads", "1", "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["device"] == "cpu" and result["contexts"] == [32, 64]
    rows = {(r["impl"], r["context"]): r for r in result["results"]}
    assert set(rows) == {(i, c) for i in ("eager", "sdpa", "flash_attention_2", "tokenlean")
                         for c in (32, 64)}
    for ctx in (32, 64):
        flash = rows[("flash_attention_2", ctx)]
        assert flash["status"] == "unavailable" and "CUDA" in flash["reason"]
        assert rows[("eager", ctx)]["max_abs_logit_diff_vs_eager"] == 0.0
        for impl in ("sdpa", "tokenlean"):
            row = rows[(impl, ctx)]
            assert row["status"] == "ok" and row["prefill_s_median"] > 0
            assert row["tokens_per_s"] == pytest.approx(ctx / row["prefill_s_median"], rel=0.01)
            assert row["max_abs_logit_diff_vs_eager"] < 1e-3
        assert rows[("tokenlean", ctx)]["kernel"] == "sdpa"
    assert result["memory_metric"].startswith("peak RSS")
