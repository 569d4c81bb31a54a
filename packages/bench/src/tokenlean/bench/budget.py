"""``tokenlean bench budget PROMPTS.jsonl``: how well predicted ``max_tokens`` fit real answers."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import typer

from tokenlean.budget import LengthPredictor
from tokenlean.core import InvalidRequestError, Message, read_prompts

from .budget_train import TEST, TRAIN, Example, evaluate, load_examples, train


def bench(
    data: str = typer.Argument(..., help="prompts-shaped JSONL ({'messages', 'response', ...})"),
    quantile: float = typer.Option(None, "--quantile", "-q",
                                   help="Quantile to predict (one of the artefact's)."),
    limit: int = typer.Option(None, "--limit", help="Read at most N rows."),
    split: str = typer.Option("auto", "--split",
                              help="test: only prompts of the held-out split; all: every row; "
                                   "auto: test if the artefact was trained on this file's source"),
    fixed_cap: int = typer.Option(4096, "--fixed-cap",
                                  help="The fixed max_tokens to compare with."),
    artefact: str = typer.Option(None, "--artefact",
                                 help="A retrained artefact (default: shipped)."),
    cv: int = typer.Option(0, "--cv", help="K>1: K-fold cross-validation by prompt, retraining "
                                           "on this file (needs scikit-learn)."),
    local_model: int = typer.Option(0, "--local-model",
                                    help="N>0: also generate with the local SmolLM2 model for the "
                                         "first N prompts, with and without concise mode (slow)."),
    local_cap: int = typer.Option(512, "--local-cap",
                                  help="max_new_tokens of the local baseline run."),
    no_model: bool = typer.Option(False, "--no-model",
                                  help="Hide each row's model from the predictor (its path for "
                                       "models it has never seen)."),
    online: bool = typer.Option(False, "--online",
                                help="Stream the rows in file order through the calibrated "
                                     "layer and a SQLite store, learning online."),
    warmup: int = typer.Option(100, "--warmup", help="--online: completions per model "
                                                     "before the prediction is used."),
    leave_one_model_out: bool = typer.Option(
        False, "--leave-one-model-out",
        help="--online: per model of the file, a prior retrained without it (scikit-learn)."),
    prior_data: list[str] = typer.Option(
        None, "--prior-data", help="--leave-one-model-out: the prior's training files (default: "
                                   "the artefact's, next to DATA)."),
    prior_scale: float = typer.Option(1.0, "--prior-scale",
                                      help="--online: multiply the prior's figure (a "
                                           "deliberately mis-specified prior)."),
    app_cap: int = typer.Option(None, "--app-cap",
                                help="--online: the app's own max_tokens on every call."),
    step: float = typer.Option(0.05, "--step", help="--online: the quantile tracker's step."),
) -> None:
    """Coverage, truncation rate and budget size of predicted max_tokens (prints JSON)."""
    if online or leave_one_model_out:
        typer.echo(json.dumps(_online(data, quantile, limit, artefact, warmup,
                                      leave_one_model_out, prior_data or [], prior_scale,
                                      app_cap, step)))
        return
    _run(data, quantile, limit, split, fixed_cap, artefact, cv, local_model, local_cap,
         not no_model)


def _run(data: str, quantile: float | None, limit: int | None, split: str, fixed_cap: int,
         artefact: str | None, cv: int, local_model: int, local_cap: int,
         use_model: bool = True) -> None:
    predictor = LengthPredictor.load(artefact) if artefact else LengthPredictor.default()
    if quantile is not None:
        predictor = predictor.with_quantile(quantile)
    if local_model > 0:
        from .budget_concise import concise_eval

        chats = _first_prompts(data, local_model)
        typer.echo(json.dumps({"data": data, "quantile": predictor.quantile,
                               "concise_local": concise_eval(chats, predictor,
                                                             fixed_cap=local_cap)}))
        return
    examples = load_examples([data], limit=limit)
    if cv > 1:
        typer.echo(json.dumps(_cross_validate(examples, cv, predictor.quantile, fixed_cap,
                                              use_model)))
        return
    trained_on = set(predictor.artefact.get("training", {}).get("sources", []))
    if split == "auto":
        split = "test" if {e.source for e in examples} & trained_on else "all"
    if split not in ("test", "all"):
        raise InvalidRequestError("--split must be auto, test or all")
    rows = [e for e in examples if e.split == TEST] if split == "test" else examples
    result = {"data": data, "split": split, "artefact_version": predictor.version,
              **evaluate(predictor, rows, fixed_cap=fixed_cap, use_model=use_model)}
    result["per_source"] = _per_source(predictor, rows, fixed_cap, use_model)
    typer.echo(json.dumps(result))


def _online(data: str, quantile: float | None, limit: int | None, artefact: str | None,
            warmup: int, lomo: bool, prior_data: list[str], prior_scale: float,
            app_cap: int | None, step: float) -> dict[str, Any]:
    from tokenlean.budget import Calibration

    from .budget_online import ScaledPrior, leave_one_model_out, online_run

    Calibration(warmup=warmup, step=step)  # ConfigError on a bad --warmup / --step
    predictor = LengthPredictor.load(artefact) if artefact else LengthPredictor.default()
    if quantile is not None:
        predictor = predictor.with_quantile(quantile)
    examples = load_examples([data], limit=limit)
    head: dict[str, Any] = {"data": data, "artefact_version": predictor.version}
    if not lomo:
        prior = predictor if prior_scale == 1.0 else ScaledPrior(predictor, prior_scale)
        return {**head, "prior_scale": prior_scale,
                **online_run(examples, prior, warmup=warmup, app_cap=app_cap, step=step)}
    files = prior_data or [str(Path(data).parent / name) for name in
                           predictor.artefact.get("training", {}).get("data", [])]
    if not files:
        raise InvalidRequestError("--leave-one-model-out: the artefact does not name its "
                                  "training files; pass them with --prior-data")
    for name in files:
        if not Path(name).is_file():
            raise InvalidRequestError(f"--leave-one-model-out: the prior's training file "
                                      f"{name} is missing; pass --prior-data")
    return {**head, "prior_data": files, **leave_one_model_out(
        examples, load_examples(files), quantile=predictor.quantile, warmup=warmup,
        app_cap=app_cap, step=step, prior_scale=prior_scale)}


def _per_source(predictor: LengthPredictor, rows: list[Example], fixed_cap: int,
                use_model: bool = True) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Example]] = defaultdict(list)
    for row in rows:
        groups[row.source or "-"].append(row)
    keys = ("rows", "coverage", "mean_predicted", "mean_actual", "predicted_over_actual")
    return {name: {k: v for k, v in evaluate(predictor, group, fixed_cap=fixed_cap,
                                                        use_model=use_model).items()
                   if k in keys} for name, group in sorted(groups.items()) if len(group) >= 20}


def _cross_validate(examples: list[Example], folds: int, quantile: float, fixed_cap: int,
                    use_model: bool = True) -> dict[str, Any]:
    """Retrain per fold (split by prompt hash); each fold's rows are predicted by a model
    that never saw their prompt."""
    out = []
    for fold in range(folds):
        def role(e: Example, fold: int = fold) -> str:
            bucket = int(e.prompt_key[:8], 16) % folds
            if bucket == fold:
                return TEST
            return "calibrate" if bucket == (fold + 1) % folds else TRAIN

        assigned = [dataclasses.replace(e, split=role(e)) for e in examples]
        model = LengthPredictor(train(assigned, quantiles=[quantile], default_quantile=quantile,
                                      use_model=use_model))
        out.append(evaluate(model, [e for e in assigned if e.split == TEST],
                            fixed_cap=fixed_cap, use_model=use_model))
    total = sum(r["rows"] for r in out)
    def weighted(key: str) -> float:
        return round(sum(r[key] * r["rows"] for r in out) / total, 4)
    return {"cv_folds": folds, "quantile": quantile, "rows": total, "use_model": use_model,
            "coverage": weighted("coverage"), "mean_predicted": weighted("mean_predicted"),
            "mean_actual": weighted("mean_actual"),
            "predicted_over_actual": round(weighted("mean_predicted") / weighted("mean_actual"), 3),
            "allocated_vs_fixed": round(weighted("mean_predicted") / fixed_cap, 4),
            "folds": out}


def _first_prompts(path: str, n: int) -> list[tuple[Message, ...]]:
    """The first ``n`` distinct prompts of a prompts file (responses not needed)."""
    seen: dict[str, tuple[Message, ...]] = {}
    for _, messages in read_prompts(path):
        seen.setdefault(json.dumps([m.text for m in messages]), messages)
        if len(seen) >= n:
            break
    return list(seen.values())
