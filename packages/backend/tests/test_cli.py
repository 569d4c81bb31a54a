from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from typer.testing import CliRunner

from tokenlean.cli import app


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_prune_command_then_bench(tiny_dir: Path, tmp_path: Path) -> None:
    calib = _jsonl(tmp_path / "calib.jsonl",
                   [f"calibration sentence number {i} about rivers and hills. " * 6
                    for i in range(20)])
    held = _jsonl(tmp_path / "held.jsonl",
                  [f"held out text {i}, about cities, trains and the sea. " * 6 for i in range(5)])
    out = tmp_path / "pruned"
    res = CliRunner().invoke(app, ["prune",
        "--model", str(tiny_dir), "--target", "0.3", "--out", str(out), "--calib", str(calib),
        "--blocks", "4", "--seq-len", "32", "--threads", "1", "--recover", "--heads-per-group", "1",
        "--recover-steps", "2"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["prune"]["heads_per_group"] == [1, 2]
    assert info["recovery"]["steps"] == 2
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_attention_heads == 2
    assert sum(p.numel() for p in model.parameters()) == info["prune"]["params_after"]

    res = CliRunner().invoke(app, ["bench", "backend",
        str(held), "--model", str(out), "--reference", str(tiny_dir), "--limit", "3",
        "--max-tokens", "40", "--speed-runs", "1", "--new-tokens", "3", "--threads", "1",
        "--speculative", "1"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["params_pruned"] < result["params_dense"]
    assert 0.0 <= result["agreement"] <= 1.0 and result["kl"] > 0
    assert result["eval_texts"] == 3 and result["decode_tok_s_pruned"] > 0
    assert result["speculative"]["identical"] is True
    assert torch.get_num_threads() == 1


def test_prune_command_reports_errors(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["prune",
        "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
        "--calib", str(tmp_path / "c.jsonl")])
    assert res.exit_code == 2
    assert "does not exist" in res.output


def test_prune_distils_on_separate_recovery_text(tiny_dir: Path, tmp_path: Path) -> None:
    calib = _jsonl(tmp_path / "calib.jsonl",
                   [f"calibration sentence number {i} about rivers and hills. " * 6
                    for i in range(20)])
    extra = _jsonl(tmp_path / "extra.jsonl",
                   [f"distillation text {i}: harbours, ferries and lighthouses. " * 6
                    for i in range(20)])
    out = tmp_path / "pruned"
    res = CliRunner().invoke(app, ["prune",
        "--model", str(tiny_dir), "--target", "0.3", "--out", str(out), "--calib", str(calib),
        "--blocks", "2", "--seq-len", "32", "--threads", "1", "--recover", "--recover-steps", "3",
        "--recover-batch", "2", "--recover-calib", str(extra), "--recover-calib", str(calib)])
    assert res.exit_code == 0, res.output
    recovery = json.loads(res.stdout)["recovery"]
    assert recovery["files"] == ["extra.jsonl", "calib.jsonl"]
    assert recovery["blocks"] == 6 and recovery["batch_size"] == 2  # 3 steps x 2, all distinct


def test_bench_prune_refuses_to_evaluate_on_recovery_text(tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "data.jsonl", ["some held out text " * 20])
    other = _jsonl(tmp_path / "other.jsonl", ["some calibration text " * 20])
    res = CliRunner().invoke(app, ["bench", "prune",
        str(data), "--calib", str(other), "--recover", "--recover-calib", str(data)])
    assert res.exit_code == 2
    assert "never evaluate on calibration text" in res.output


def test_distill_command_continues_recovery_of_a_pruned_folder(tiny_dir: Path,
                                                                tmp_path: Path) -> None:
    calib = _jsonl(tmp_path / "calib.jsonl",
                   [f"calibration sentence number {i} about rivers and hills. " * 6
                    for i in range(20)])
    pruned, again = tmp_path / "pruned", tmp_path / "again"
    res = CliRunner().invoke(app, ["prune",
        "--model", str(tiny_dir), "--target", "0.3", "--out", str(pruned), "--calib", str(calib),
        "--blocks", "2", "--seq-len", "32", "--threads", "1"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["distill",
        str(pruned), "--out", str(again), "--recover-calib", str(calib), "--teacher",
        str(tiny_dir), "--steps", "3", "--batch", "2", "--seq-len", "32", "--skip-blocks", "2",
        "--lr", "1e-3", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["blocks"] == 6
    info = json.loads((again / "tokenlean_prune.json").read_text())
    assert info["prune"]["target"] == 0.3  # the pruning record is kept
    assert [r["skip_blocks"] for r in info["further_recovery"]] == [2]
    before = transformers.AutoModelForCausalLM.from_pretrained(pruned)
    after = transformers.AutoModelForCausalLM.from_pretrained(again)
    assert before.config.to_dict()["intermediate_size"] == after.config.intermediate_size
    ids = torch.randint(0, before.config.vocab_size, (1, 16))
    assert not torch.allclose(before(ids).logits, after(ids).logits)  # it trained

    res = CliRunner().invoke(app, ["distill",
        str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--recover-calib", str(calib)])
    assert res.exit_code == 2 and "error:" in res.output
