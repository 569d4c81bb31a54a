"""`tokenlean bench backend` / `tokenlean bench prune`: evaluate pruned models, print JSON."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from tokenlean.core import TokenleanError


def _setup(threads: int) -> Any:
    from tokenlean.backend.loading import _torch_threads

    torch = _torch_threads("the backend benchmarks", threads)
    torch.manual_seed(0)
    return torch


def _compare(model: Any, dense: Any, tokenizer: Any, texts: list[str], *, max_tokens: int,
             speed_runs: int, new_tokens: int, speed_repeats: int = 1) -> dict[str, Any]:
    from tokenlean.backend import compare_speed, model_size, quality

    size_d, size_p = model_size(dense), model_size(model)
    q = quality(model, tokenizer, texts, reference=dense, max_tokens=max_tokens)
    result: dict[str, Any] = {
        "params_dense": size_d["params"], "params_pruned": size_p["params"],
        "params_removed": round(1 - size_p["params"] / size_d["params"], 4),
        "memory_bytes_dense": size_d["memory_bytes"], "memory_bytes_pruned": size_p["memory_bytes"],
        "ppl_dense": round(q["ppl_reference"], 3), "ppl_pruned": round(q["ppl"], 3),
        "ppl_ratio": round(q["ppl"] / q["ppl_reference"], 3),
        "agreement": round(q["agreement"], 4), "kl": round(q["kl"], 4),
        "eval_texts": len(texts), "eval_tokens": q["eval_tokens"],
    }
    if speed_runs > 0:
        sd, sp = compare_speed([dense, model], tokenizer, texts, runs=speed_runs,
                               new_tokens=new_tokens, repeats=speed_repeats)
        result.update({
            "prefill_tok_s_dense": round(sd["prefill_tok_s"], 1),
            "prefill_tok_s_pruned": round(sp["prefill_tok_s"], 1),
            "decode_tok_s_dense": round(sd["decode_tok_s"], 1),
            "decode_tok_s_pruned": round(sp["decode_tok_s"], 1),
            "decode_speedup": round(sp["decode_tok_s"] / sd["decode_tok_s"], 3),
            "prefill_speedup": round(sp["prefill_tok_s"] / sd["prefill_tok_s"], 3),
            "speed_timed_runs": sd["timed_runs"], "speed_statistic": "median, interleaved",
        })
    return result


def bench_backend(
    data: str = typer.Argument(..., help="Evaluation JSONL (prompts / qa / text rows)."),
    model: str = typer.Option(..., "--model", "-m", help="The (pruned) model folder to evaluate."),
    reference: str | None = typer.Option(None, "--reference",
                                         help="Dense model; default SmolLM2-135M-Instruct."),
    limit: int = typer.Option(50, "--limit", help="Evaluation texts (rows of DATA)."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Tokens scored per text."),
    speed_runs: int = typer.Option(3, "--speed-runs", help="Prompts timed (0: no speed test)."),
    speed_repeats: int = typer.Option(
        1, "--speed-repeats", help="Times each timed prompt is run (dense and pruned alternate)."),
    new_tokens: int = typer.Option(32, "--new-tokens", help="Tokens decoded per timed prompt."),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads."),
    speculative_runs: int = typer.Option(
        0, "--speculative", help="Prompts for dense-with-pruned-draft decoding (0: skip)."),
    draft_tokens: int | None = typer.Option(
        None, "--draft-tokens",
        help="Drafted tokens per speculative round (default: transformers' heuristic)."),
) -> None:
    """Evaluate a model folder against the dense model on DATA; prints one JSON object."""
    _setup(threads)
    from tokenlean.backend import load_model, read_texts
    from tokenlean.backend.loading import model_label

    texts = read_texts(data, limit=limit)
    pruned, tokenizer = load_model(model)
    dense, _ = load_model(reference)
    result = {"model": model, "reference": model_label(reference),
              "data": data, "threads": threads}
    result.update(_compare(pruned, dense, tokenizer, texts, max_tokens=max_tokens,
                           speed_runs=speed_runs, new_tokens=new_tokens,
                           speed_repeats=speed_repeats))
    if speculative_runs > 0:
        from tokenlean.backend import speculative

        spec = speculative(dense, pruned, tokenizer, texts, runs=speculative_runs,
                           new_tokens=new_tokens, draft_tokens=draft_tokens)
        result["speculative"] = {k: round(v, 3) if isinstance(v, float) else v
                                 for k, v in spec.items()}
    typer.echo(json.dumps(result))


def bench_prune(
    data: str = typer.Argument(..., help="Evaluation JSONL (prompts / qa / text rows)."),
    calib: str = typer.Option(..., "--calib", help="Calibration JSONL (a different file)."),
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="Dense model; default SmolLM2-135M-Instruct."),
    target: float = typer.Option(0.3, "--target", help="Fraction of parameters to remove."),
    method: str = typer.Option("taylor", "--method", help="Importance: taylor or activation."),
    heads_per_group: int | None = typer.Option(None, "--heads-per-group"),
    drop_layers: int = typer.Option(0, "--drop-layers"),
    blocks: int = typer.Option(32, "--blocks", help="Calibration blocks for importance."),
    reconstruct: str = typer.Option("attention", "--reconstruct",
                                    help="Least-squares refit: none, attention or all."),
    recover: bool = typer.Option(False, "--recover/--no-recover", help="Distil after pruning."),
    recover_steps: int = typer.Option(40, "--recover-steps"),
    recover_lr: float = typer.Option(1e-4, "--recover-lr"),
    recover_batch: int = typer.Option(2, "--recover-batch", help="Blocks per distillation step."),
    recover_calib: list[str] | None = typer.Option(
        None, "--recover-calib",
        help="Distillation text (repeatable; default: --calib after the importance blocks)."),
    limit: int = typer.Option(50, "--limit", help="Evaluation texts (rows of DATA)."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Tokens scored per text."),
    speed_runs: int = typer.Option(3, "--speed-runs", help="Prompts timed (0: no speed test)."),
    speed_repeats: int = typer.Option(
        1, "--speed-repeats", help="Times each timed prompt is run (dense and pruned alternate)."),
    new_tokens: int = typer.Option(32, "--new-tokens"),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads."),
    as_json: bool = typer.Option(True, "--json/--no-json", help="Always JSON (accepted)."),
) -> None:
    """Prune (and optionally recover), save, reload from disk, evaluate; prints one JSON object."""
    torch = _setup(threads)
    from tokenlean.backend import (
        load_model,
        logits_match,
        prune_pipeline,
        quality,
        read_texts,
        save_pruned,
    )
    from tokenlean.backend.loading import model_label

    if any(Path(data).resolve() == Path(f).resolve() for f in [calib, *(recover_calib or [])]):
        raise TokenleanError("DATA must differ from --calib and --recover-calib: never "
                             "evaluate on calibration text")
    texts = read_texts(data, limit=limit)
    dense, tokenizer = load_model(model)

    def before(pruned: Any) -> dict[str, Any]:
        q = quality(pruned, tokenizer, texts, reference=dense, max_tokens=max_tokens)
        return {"ppl_pruned": round(q["ppl"], 3), "agreement": round(q["agreement"], 4),
                "kl": round(q["kl"], 4)}

    start = time.perf_counter()
    pruned, info = prune_pipeline(
        dense, tokenizer, calib=calib, target=target, method=method, blocks=blocks,
        heads_per_group=heads_per_group, drop_layers=drop_layers, recover=recover,
        recover_steps=recover_steps, recover_lr=recover_lr, recover_batch=recover_batch,
        recover_calib=recover_calib, reconstruct=reconstruct,
        before_recovery=before)
    prune_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="tokenlean-prune-") as tmp:
        folder = save_pruned(pruned, tokenizer, f"{tmp}/pruned", info=info)
        reloaded, _ = load_model(folder)
        probe = torch.randint(0, int(dense.config.vocab_size), (2, 64))
        loads = logits_match(pruned, reloaded, probe)
        del pruned
        result: dict[str, Any] = {
            "model": model_label(model), "data": data, "calib": calib,
            "target": target, "method": method, "recover": recover, "threads": threads,
            "loads_with_from_pretrained": loads,
            "config": {k: getattr(reloaded.config, k) for k in (
                "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "head_dim", "intermediate_size", "hidden_size")},
            "prune_seconds": round(prune_s, 1), **info,
        }
        result.update(_compare(reloaded, dense, tokenizer, texts, max_tokens=max_tokens,
                               speed_runs=speed_runs, new_tokens=new_tokens,
                               speed_repeats=speed_repeats))
    typer.echo(json.dumps(result))
