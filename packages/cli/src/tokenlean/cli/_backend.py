"""`tokenlean prune` / `tokenlean distill`: structured pruning of a local model to a standard
architecture, and more recovery of a pruned one (needs tokenlean-backend)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import typer

from tokenlean.core._optional import require

__all__ = ["distill_command", "prune"]


def _backend(command: str, threads: int) -> ModuleType:
    """tokenlean.backend, with torch set to ``threads`` CPU threads."""
    backend = require("tokenlean.backend", extra="backend", feature=f"tokenlean {command}")
    from tokenlean.backend.loading import _torch_threads

    _torch_threads(f"tokenlean {command}", threads)
    return backend


def prune(
    out: str = typer.Option(..., "--out", "-o", help="Folder to write the pruned model to."),
    calib: str = typer.Option(..., "--calib",
                              help="Calibration JSONL (qa `context`, prompts, or `text` rows), "
                                   "e.g. ../shared/data/qa_squad_dev.jsonl."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="HF folder or .gguf file; default SmolLM2-135M-Instruct."),
    target: float = typer.Option(0.3, "--target", help="Fraction of parameters to remove."),
    method: str = typer.Option("taylor", "--method", help="Importance: taylor or activation."),
    heads_per_group: int | None = typer.Option(None, "--heads-per-group",
                                               help="Query heads kept per KV group."),
    drop_layers: int = typer.Option(0, "--drop-layers", help="Whole layers to remove."),
    blocks: int = typer.Option(32, "--blocks", help="Calibration blocks for importance."),
    seq_len: int = typer.Option(256, "--seq-len", help="Tokens per calibration block."),
    reconstruct: str = typer.Option("attention", "--reconstruct",
                                    help="Least-squares refit: none, attention or all."),
    recover: bool = typer.Option(False, "--recover/--no-recover",
                                 help="Distil from the dense model after pruning."),
    recover_steps: int = typer.Option(40, "--recover-steps", help="Distillation steps."),
    recover_lr: float = typer.Option(1e-4, "--recover-lr", help="Distillation learning rate."),
    recover_batch: int = typer.Option(2, "--recover-batch", help="Blocks per distillation step."),
    recover_calib: list[str] | None = typer.Option(
        None, "--recover-calib",
        help="Distillation text (repeatable; default: --calib after the importance blocks)."),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads."),
    device: str = typer.Option("cpu", "--device", help="torch device."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Prune a model (query heads per KV group, MLP channels, layers) to a standard HF folder."""
    backend = _backend("prune", threads)
    from tokenlean.backend.loading import model_label

    dense, tokenizer = backend.load_model(model, device=device)
    pruned, info = backend.prune_pipeline(
        dense, tokenizer, calib=calib, target=target, method=method, blocks=blocks,
        seq_len=seq_len, heads_per_group=heads_per_group, drop_layers=drop_layers,
        recover=recover, recover_steps=recover_steps, recover_lr=recover_lr,
        recover_batch=recover_batch, recover_calib=recover_calib,
        reconstruct=reconstruct)
    info["source"] = model_label(model)
    folder = backend.save_pruned(pruned, tokenizer, out, info=info, overwrite=overwrite)
    typer.echo(json.dumps({"out": str(folder), **info}))


def distill_command(
    student: str = typer.Argument(..., help="Pruned model folder (e.g. from `tokenlean prune`)."),
    out: str = typer.Option(..., "--out", "-o", help="Folder to write the distilled model to."),
    recover_calib: list[str] = typer.Option(
        ..., "--recover-calib", help="Distillation text, JSONL (repeatable; mixed round-robin)."),
    teacher: str | None = typer.Option(
        None, "--teacher", help="Dense model; default SmolLM2-135M-Instruct."),
    steps: int = typer.Option(40, "--steps", help="Distillation steps."),
    lr: float = typer.Option(1e-4, "--lr", help="Peak learning rate (warm-up, cosine decay)."),
    batch: int = typer.Option(4, "--batch", help="Blocks per step."),
    seq_len: int = typer.Option(256, "--seq-len", help="Tokens per block."),
    skip_blocks: int = typer.Option(
        0, "--skip-blocks", help="Blocks of each file to pass over (already used for training)."),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads."),
    device: str = typer.Option("cpu", "--device", help="torch device."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Distil the dense model into an already pruned folder (more recovery, on new text)."""
    backend = _backend("distill", threads)
    from tokenlean.backend._workflow import PRUNE_INFO_FILE

    model, tokenizer = backend.load_model(student, device=device)
    dense, _ = backend.load_model(teacher, device=device)
    blocks = backend.mixed_blocks(tokenizer, list(recover_calib), seq_len=seq_len,
                                  n_blocks=steps * batch, skip_blocks=skip_blocks)
    run = backend.distill(model, dense, blocks, steps=steps, lr=lr, batch_size=batch)
    run.update({"blocks": int(blocks.shape[0]), "skip_blocks": skip_blocks,
                "files": [Path(f).name for f in recover_calib]})
    info_path = Path(student) / PRUNE_INFO_FILE
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    info.setdefault("further_recovery", []).append(run)
    folder = backend.save_pruned(model, tokenizer, out, info=info, overwrite=overwrite)
    typer.echo(json.dumps({"out": str(folder), **run}))
