"""Training and evaluating the length predictor (tokenlean.bench.budget_train), the numpy
export of its trees, and `tokenlean bench budget`."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenlean.bench.budget_train import _export, evaluate, load_examples, train
from tokenlean.budget import LengthPredictor
from tokenlean.budget._predictor import _Ensemble
from tokenlean.cli import app
from tokenlean.core import ConfigError, Message


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def test_numpy_trees_match_sklearn_exactly() -> None:
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = x[:, 0] * 2 + np.sin(x[:, 1]) + rng.normal(scale=0.3, size=300)
    model = GradientBoostingRegressor(loss="quantile", alpha=0.9, n_estimators=30, max_depth=3,
                                      learning_rate=0.1, random_state=0).fit(x, y)
    spec = {"init": float(model.init_.constant_[0][0]), "learning_rate": 0.1,
            "trees": json.loads(json.dumps(_export(model)))}
    ours = _Ensemble(spec).raw(x)
    np.testing.assert_allclose(ours, model.predict(x), atol=1e-4)


def _synthetic_rows(n_prompts: int = 240) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for i in range(n_prompts):
        if i % 2:
            prompt, length = f"Answer in one word: what colour is item {i}?", rng.randint(1, 5)
        else:
            prompt = f"Write a detailed 800 word essay about topic {i}."
            length = rng.randint(600, 1100)
        for model in ("a", "b"):
            rows.append({"id": f"{i}-{model}", "messages": [{"role": "user", "content": prompt}],
                         "response": " ".join(["word"] * length), "model": model,
                         "source": "synthetic"})
    return rows


@pytest.fixture
def synthetic_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _synthetic_rows()), encoding="utf-8")
    return path


def test_train_roundtrip_and_coverage(synthetic_file: Path, tmp_path: Path) -> None:
    examples = load_examples([synthetic_file])
    artefact = train(examples, quantiles=[0.5, 0.9], n_estimators=40,
                                      sources=["synthetic"])
    out = tmp_path / "model.json"
    out.write_text(json.dumps(artefact), encoding="utf-8")
    predictor = LengthPredictor.load(out)
    short = predictor.predict(user("Answer in one word: what colour is item 777?"))
    long = predictor.predict(user("Write a detailed 800 word essay about topic 777."))
    assert short < 60 < 600 < long
    assert predictor.predict(user("Write a detailed 800 word essay about topic 7."),
                             quantile=0.5) <= long
    test = [e for e in examples if e.split == "test"]
    metrics = evaluate(predictor, test)
    assert metrics["coverage"] >= 0.8
    assert metrics["mean_predicted"] < 4096 * 0.5
    with pytest.raises(ConfigError, match="quantile"):
        predictor.with_quantile(0.77)


def test_model_table_reads_the_answering_model(synthetic_file: Path) -> None:
    # model "terse" answers every prompt in a few words, "verbose" at length
    rows = [json.loads(line) for line in synthetic_file.read_text().splitlines()]
    for row in rows:
        if row["model"] == "a":
            row["model"], row["response"] = "terse-2024-01-01", "word " * 3
        else:
            row["model"] = "verbose"
    path = synthetic_file.with_name("models.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    predictor = LengthPredictor(train(load_examples([path]), quantiles=[0.9],
                                                       default_quantile=0.9, n_estimators=40))
    assert set(predictor.model_table or {}) == {"terse", "verbose"}
    assert predictor.knows_model("openai/terse") and not predictor.knows_model("other")
    essay = user("Write a detailed 800 word essay about topic 777.")
    terse = predictor.predict(essay, model="terse")
    verbose = predictor.predict(essay, model="verbose")
    unknown = predictor.predict(essay, model="never-seen")
    assert terse < 100 < 600 < verbose
    # a model it never saw gets the model-agnostic bound: it covers the verbose answers too
    assert unknown >= 600 and unknown == predictor.predict(essay)
    hidden = evaluate(predictor, load_examples([path]), use_model=False)
    assert hidden["model_known_share"] == 0.0 and hidden["coverage"] >= 0.8


def test_version_1_artefact_without_model_table_still_loads(synthetic_file: Path) -> None:
    artefact = train(load_examples([synthetic_file]), quantiles=[0.9],
                                      n_estimators=20, use_model=False)
    assert "model_table" not in artefact and "model_log_length" not in artefact["feature_names"]
    predictor = LengthPredictor(artefact)
    assert predictor.model_table is None
    assert predictor.predict(user("Name a colour."), model="gpt-4o") == \
        predictor.predict(user("Name a colour."))


def test_bench_command_prints_json(synthetic_file: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "budget", str(synthetic_file), "--split", "all",
                                      "--quantile", "0.9"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["rows"] == 480 and out["split"] == "all"
    for key in ("coverage", "truncation_rate", "mean_predicted", "mean_actual",
                "allocated_vs_fixed", "mean_shortest_answer", "per_source"):
        assert key in out


def test_shipped_predictor_on_held_out_arena_prompts(
        shared_data: Callable[[str], Path]) -> None:
    examples = [e for e in load_examples([shared_data("prompts_arena_hard_v01.jsonl")])
                if e.split == "test"]
    metrics = evaluate(LengthPredictor.default(), examples)
    assert metrics["coverage"] >= 0.85
    assert metrics["predicted_over_actual"] <= 2.5


def test_bench_budget_online_learns_on_the_stream(synthetic_file: Path) -> None:
    """`--online`: the real layer and a SQLite store learn from the rows in file order; the
    synthetic models are unknown to the shipped prior, and the calibrated bound still
    lets the answers after warm-up finish."""
    result = CliRunner().invoke(app, ["bench", "budget", str(synthetic_file), "--online",
                                      "--warmup", "40"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["rows"] == 480 and out["rows_after_warmup"] == 480 - 2 * 40
    assert set(out["per_model"]) == {"a", "b"}
    assert out["coverage_after_warmup"] >= 0.85
    assert out["coverage"] >= out["coverage_after_warmup"]  # warm-up rows are never capped
    assert out["mean_predicted"] > 0 and out["predicted_over_actual_after_warmup"] > 0
    assert out["oracle_constant_over_actual_after_warmup"] > 0
    bad = CliRunner().invoke(app, ["bench", "budget", str(synthetic_file), "--online",
                                   "--warmup", "0"])
    assert bad.exit_code == 2 and "warmup" in bad.output


def test_bench_budget_leave_one_model_out_retrains_the_prior(synthetic_file: Path) -> None:
    pytest.importorskip("sklearn")
    result = CliRunner().invoke(app, ["bench", "budget", str(synthetic_file), "--online",
                                      "--leave-one-model-out", "--warmup", "40",
                                      "--prior-data", str(synthetic_file)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["leave_one_model_out"] and set(out["per_model"]) == {"a", "b"}
    for run in out["per_model"].values():
        assert run["rows"] == 240 and run["coverage_after_warmup"] is not None
    assert out["min_coverage_after_warmup"] == min(
        r["coverage_after_warmup"] for r in out["per_model"].values())


def test_oracle_constant_width_is_the_coverage_quantile_over_the_mean() -> None:
    from tokenlean.bench.budget_online import _oracle_constant
    # ten answers 1..10 tokens, mean 5.5: 90% of them fit under 9 tokens
    assert _oracle_constant(list(range(1, 11)), 0.9) == round(9 / 5.5, 3)
    assert _oracle_constant([7] * 20, 0.92) == 1.0  # equal lengths: a constant fits exactly
    assert _oracle_constant([], 0.9) is None
