from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tokenlean.backend import (
    compare_speed,
    distill,
    evaluate,
    mixed_blocks,
    model_size,
    prune_model,
    quality,
    read_texts,
    speculative,
    token_blocks,
)
from tokenlean.core import ConfigError, InvalidRequestError

SHAPE = dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, head_dim=16,
             intermediate_size=128, num_hidden_layers=2)
TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank. " * 4,
         "Pack my box with five dozen liquor jugs, then sail across the bay. " * 4,
         "How vexingly quick daft zebras jump when the night is warm and long. " * 4]


def test_quality_against_itself_is_perfect(
        make_tiny, tiny_tok) -> None:
    model = make_tiny(**SHAPE)
    q = quality(model, tiny_tok, TEXTS, reference=model, max_tokens=64)
    assert q["agreement"] == 1.0 and abs(q["kl"]) < 1e-6
    assert q["ppl"] == pytest.approx(q["ppl_reference"])
    assert q["eval_tokens"] == 3 * 63
    # a random 256-token model is close to uniform: perplexity near the vocabulary size
    assert 100 < q["ppl"] < 600


def test_evaluate_reports_size_and_speed(
        make_tiny, tiny_tok) -> None:
    model = make_tiny(**SHAPE)
    result = evaluate(model, tiny_tok, TEXTS, speed_runs=2, new_tokens=4, max_tokens=32)
    assert result["params"] == sum(p.numel() for p in model.parameters())
    assert result["memory_bytes"] >= 4 * result["params"]
    assert result["prefill_tok_s"] > 0 and result["decode_tok_s"] > 0
    assert model_size(model.to(torch.bfloat16))["memory_bytes"] < result["memory_bytes"]


def test_distillation_moves_the_student_towards_the_teacher(
        make_tiny, tiny_tok) -> None:
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


def test_token_blocks(tiny_tok) -> None:
    blocks = token_blocks(tiny_tok, TEXTS, seq_len=50, max_blocks=3)
    assert blocks.shape == (3, 50) and blocks.dtype == torch.long
    with pytest.raises(InvalidRequestError, match="not enough"):
        token_blocks(tiny_tok, ["ab"], seq_len=50)


def test_speculative_decoding_with_a_pruned_draft_is_lossless(
        make_tiny, tiny_tok) -> None:
    dense = make_tiny(seed=4, initializer_range=0.2, **SHAPE)
    draft, _ = prune_model(dense, token_blocks(tiny_tok, TEXTS, seq_len=32), target=0.3,
                           heads_per_group=2)
    result = speculative(dense, draft, tiny_tok, TEXTS, prompt_tokens=16, new_tokens=12, runs=2)
    assert result["identical"] is True
    assert result["prompts"] == 2 and result["tok_s_speculative"] > 0
    assert result["draft_tokens"] == "heuristic"
    schedule = draft.generation_config.num_assistant_tokens_schedule
    fixed = speculative(dense, draft, tiny_tok, TEXTS, prompt_tokens=16, new_tokens=12, runs=2,
                        draft_tokens=2)
    assert fixed["identical"] is True and fixed["draft_tokens"] == 2
    assert draft.generation_config.num_assistant_tokens_schedule == schedule  # restored
    with pytest.raises(ConfigError):
        speculative(dense, draft, tiny_tok, TEXTS, draft_tokens=0)


def test_mixed_blocks_interleave_files_and_skip_used_blocks(
        tmp_path: Path, tiny_tok) -> None:
    rivers = tmp_path / "rivers.jsonl"
    cities = tmp_path / "cities.jsonl"
    rivers.write_text("".join(json.dumps({"text": f"river {i} flows past the hills. " * 12}) + "\n"
                              for i in range(6)))
    cities.write_text("".join(json.dumps({"text": f"city {i} has trains and a port. " * 12}) + "\n"
                              for i in range(6)))
    own_r = token_blocks(tiny_tok, read_texts(rivers), seq_len=16)
    own_c = token_blocks(tiny_tok, read_texts(cities), seq_len=16)
    mixed = mixed_blocks(tiny_tok, [rivers, cities], seq_len=16, n_blocks=5, skip_blocks=2)
    assert mixed.shape == (5, 16)
    # round-robin, each file's first two blocks left out
    expected_rows = [own_r[2], own_c[2], own_r[3], own_c[3], own_r[4]]
    for row, expected in zip(mixed, expected_rows, strict=True):
        assert torch.equal(row, expected)
    everything = mixed_blocks(tiny_tok, [rivers], seq_len=16, n_blocks=10_000)
    assert torch.equal(everything, own_r)  # the text runs out: fewer blocks, no repeats
    with pytest.raises(InvalidRequestError, match="no calibration text left"):
        mixed_blocks(tiny_tok, [rivers], seq_len=16, n_blocks=4, skip_blocks=own_r.shape[0])
    with pytest.raises(InvalidRequestError):
        mixed_blocks(tiny_tok, [], seq_len=16, n_blocks=4)


def test_compare_speed_alternates_models_on_every_prompt(
        make_tiny, tiny_tok) -> None:
    a, b = make_tiny(seed=1, **SHAPE), make_tiny(seed=2, **SHAPE)
    calls: list[str] = []
    a.model.register_forward_pre_hook(lambda *_: calls.append("a"))
    b.model.register_forward_pre_hook(lambda *_: calls.append("b"))
    results = compare_speed([a, b], tiny_tok, TEXTS, prompt_tokens=16, new_tokens=3, runs=2,
                            repeats=2)
    assert [r["timed_runs"] for r in results] == [4, 4]
    assert all(r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 for r in results)
    # warm-up a, b; then per prompt: a's prefill + 3 decode forwards... then b's
    runs = [c for i, c in enumerate(calls) if i == 0 or calls[i - 1] != c]
    assert runs == ["a", "b"] * 5
    with pytest.raises(ConfigError):
        compare_speed([a], tiny_tok, TEXTS, new_tokens=1)
