"""The prune -> (recover) -> save -> reload workflow shared by `tokenlean prune` and the benches."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenlean.core import ConfigError, InvalidRequestError

from ._data import mixed_blocks, read_texts, token_blocks
from .pruning import PruneReport, prune_model

__all__ = ["PRUNE_INFO_FILE", "logits_match", "prune_pipeline", "save_pruned"]

PRUNE_INFO_FILE = "tokenlean_prune.json"


def save_pruned(model: Any, tokenizer: Any, out: str | Path, *, info: dict[str, Any] | None = None,
                overwrite: bool = False) -> Path:
    """Write an ordinary HF folder (model, tokenizer, ``tokenlean_prune.json``), atomically."""
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{str(out)!r} exists and is not empty: choose another folder or "
                          "pass overwrite=True (--overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if info is not None:
            (tmp / PRUNE_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def logits_match(a: Any, b: Any, ids: Any, *, atol: float = 0.0) -> bool:
    """Whether two models give the same logits on ``ids`` (exactly, by default)."""
    import torch

    with torch.no_grad():
        la = a(ids.to(next(a.parameters()).device)).logits.cpu()
        lb = b(ids.to(next(b.parameters()).device)).logits.cpu()
    return bool(la.shape == lb.shape and torch.allclose(la, lb, atol=atol, rtol=0.0))


def prune_pipeline(dense: Any, tokenizer: Any, *, calib: str | Path, target: float,
                   method: str = "taylor", calib_rows: int = 200, blocks: int = 32,
                   seq_len: int = 256, heads_per_group: int | None = None, drop_layers: int = 0,
                   recover: bool = False, recover_steps: int = 40, recover_lr: float = 1e-4,
                   recover_batch: int = 2, recover_calib: Sequence[str | Path] | None = None,
                   reconstruct: str = "attention", log: Any = None,
                   before_recovery: Any = None) -> tuple[Any, dict[str, Any]]:
    """Prune ``dense`` on calibration text, optionally distil; returns ``(pruned, info)``.

    Importance uses the first ``blocks`` token blocks of the calibration file
    (from its first ``calib_rows`` rows). Recovery uses ``recover_steps *
    recover_batch`` distinct blocks (cycled only when the text runs out) drawn
    round-robin from ``recover_calib`` (default: the calibration file, after the
    importance blocks), so a longer run sees more text instead of repeating a
    few blocks.
    ``before_recovery(pruned) -> dict``, if given, is called before distillation
    and its result stored under ``info["before_recovery"]``.
    """
    texts = read_texts(calib, limit=calib_rows)
    score_blocks = token_blocks(tokenizer, texts, seq_len=seq_len, max_blocks=blocks)
    # method and reconstruct arrive as the CLI's strings; prune_model checks them (ConfigError)
    pruned, report = prune_model(dense, score_blocks, target=target,
                                 method=method,  # type: ignore[arg-type]
                                 heads_per_group=heads_per_group, drop_layers=drop_layers,
                                 reconstruct=reconstruct)  # type: ignore[arg-type]
    info: dict[str, Any] = {"prune": report.to_dict(),
                            "calibration": {"file": Path(calib).name, "rows": len(texts),
                                            "blocks": int(score_blocks.shape[0]),
                                            "seq_len": seq_len}}
    if recover:
        from .recovery import distill

        if before_recovery is not None:
            info["before_recovery"] = before_recovery(pruned)
        sources = list(recover_calib) if recover_calib else [calib]
        skip = 0 if recover_calib else int(score_blocks.shape[0])
        try:
            kd_blocks = mixed_blocks(tokenizer, sources, seq_len=seq_len,
                                     n_blocks=recover_steps * recover_batch, skip_blocks=skip)
        except InvalidRequestError:  # a small calibration file: reuse the importance blocks
            if recover_calib:
                raise
            kd_blocks = score_blocks
        info["recovery"] = distill(pruned, dense, kd_blocks, steps=recover_steps, lr=recover_lr,
                                   batch_size=recover_batch, log=log)
        info["recovery"]["blocks"] = int(kd_blocks.shape[0])
        info["recovery"]["files"] = [Path(f).name for f in sources]
    return pruned, info


def report_of(info: dict[str, Any]) -> PruneReport:  # pragma: no cover - convenience
    d = dict(info["prune"])
    d.pop("removed_fraction", None)
    return PruneReport(**d)
