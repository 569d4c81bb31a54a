from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tokenlean.backend import (
    distill,
    evaluate,
    model_size,
    prune_model,
    quality,
    speculative,
    read_texts,
    token_blocks,
)
from tokenlean.core import ConfigError, InvalidRequestError

SHAPE = dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, head_dim=16,
             intermediate_size=128, num_hidden_layers=2)
TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank. " * 4,
         "Pack my box with five dozen liquor jugs, then sail across the bay. " * 4,
         "How vexingly quick daft zebras jump when the night is warm and long. " * 4]


def test_quality_against_itself_is_perfect(
        make_tiny, tiny_tok) -> None:  # type: ignore[no-untyped-def]
    model = make_tiny(**SHAPE)
    q = quality(model, tiny_tok, TEXTS, reference=model, max_tokens=64)
    assert q["agreement"] == 1.0 and abs(q["kl"]) < 1e-6
    assert q["ppl"] == pytest.approx(q["ppl_reference"])
    assert q["eval_tokens"] == 3 * 63
    # a random 256-token model is close to uniform: perplexity near the vocabulary size
    assert 100 < q["ppl"] < 600


def test_evaluate_reports_size_and_speed(
        make_tiny, tiny_tok) -> None:  # type: ignore[no-untyped-def]
    model = make_tiny(**SHAPE)
    result = evaluate(model, tiny_tok, TEXTS, speed_runs=2, new_tokens=4, max_tokens=32)
    assert result["params"] == sum(p.numel() for p in model.parameters())
    assert result["memory_bytes"] >= 4 * result["params"]
    assert result["prefill_tok_s"] > 0 and result["decode_tok_s"] > 0
    assert model_size(model.to(torch.bfloat16))["memory_bytes"] < result["memory_bytes"]


def test_distillation_moves_the_student_towards_the_teacher(
        make_tiny, tiny_tok) -> None:  # type: ignore[no-untyped-def]
    teacher = make_tiny(seed=2, initializer_range=0.2, **SHAPE)  # peaked, not uniform, outputs
    blocks = token_blocks(tiny_tok, TEXTS * 4, seq_len=32)
    student, _ = prune_model(teacher, blocks[:4], target=0.35, reconstruct="none")
    emb_before = student.get_input_embeddings().weight.detach().clone()
    before = quality(student, tiny_tok, TEXTS, reference=teacher, max_tokens=64)["kl"]
    info = distill(student, teacher, blocks, steps=30, lr=3e-3, batch_size=2)
    after = quality(student, tiny_tok, TEXTS, reference=teacher, max_tokens=64)["kl"]
    assert after < before * 0.9
    assert info["loss_last"] < info["loss_first"]
    assert not student.training
    assert torch.equal(student.get_input_embeddings().weight, emb_before)  # frozen
    assert all(p.requires_grad for p in student.parameters())  # restored
    with pytest.raises(ConfigError):
        distill(student, teacher, blocks, steps=0)


def test_read_texts_shapes_skip_and_errors(tmp_path: Path) -> None:
    rows = [{"id": 1, "context": "c" * 300, "question": "q", "answers": ["a"]},
            {"id": 2, "context": "c" * 300, "question": "q2", "answers": ["a"]},  # repeat
            {"id": 3, "messages": [{"role": "user", "content": "p" * 150}],
             "response": "r" * 150, "model": "m", "source": "s"},
            {"id": 4, "text": "short"},
            {"id": 5, "text": "t" * 250}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    texts = read_texts(path)
    assert texts == ["c" * 300, "p" * 150 + "\n\n" + "r" * 150, "t" * 250]
    assert read_texts(path, skip=1, limit=1) == [texts[1]]
    with pytest.raises(InvalidRequestError, match="no usable"):
        read_texts(path, skip=3)
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(InvalidRequestError, match="bad.jsonl:1"):
        read_texts(tmp_path / "bad.jsonl")
    with pytest.raises(InvalidRequestError, match="cannot read"):
        read_texts(tmp_path / "missing.jsonl")


def test_token_blocks(tiny_tok) -> None:  # type: ignore[no-untyped-def]
    blocks = token_blocks(tiny_tok, TEXTS, seq_len=50, max_blocks=3)
    assert blocks.shape == (3, 50) and blocks.dtype == torch.long
    with pytest.raises(InvalidRequestError, match="not enough"):
        token_blocks(tiny_tok, ["ab"], seq_len=50)


def test_speculative_decoding_with_a_pruned_draft_is_lossless(
        make_tiny, tiny_tok) -> None:  # type: ignore[no-untyped-def]
    dense = make_tiny(seed=4, initializer_range=0.2, **SHAPE)
    draft, _ = prune_model(dense, token_blocks(tiny_tok, TEXTS, seq_len=32), target=0.3,
                           heads_per_group=2)
    result = speculative(dense, draft, tiny_tok, TEXTS, prompt_tokens=16, new_tokens=12, runs=2)
    assert result["identical"] is True
    assert result["prompts"] == 2 and result["tok_s_speculative"] > 0
