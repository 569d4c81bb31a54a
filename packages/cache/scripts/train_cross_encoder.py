"""Train the cache guard's cross-encoder delta on the development pair files (CPU).

    OMP_NUM_THREADS=2 .venv/bin/python packages/cache/scripts/train_cross_encoder.py \
        --pairs ../shared/data/pairs_qqp_dev.jsonl ../shared/data/pairs_paws_dev.jsonl \
        --limit 0 3000 --epochs 2 --minutes 14

Only development pair files are read, split by the md5 of the pair id (the rule
``tokenlean bench cache --split`` uses):

* ``md5 % 5 == 0`` (20%): HELD OUT -- never read here (not even loaded);
* ``md5 % 10 == 1``: validation -- chooses the threshold;
* the rest: training (``--limit N`` keeps the first N training rows of a file).

Model: all-MiniLM-L6-v2 from its wheel reading ``[CLS] a [SEP] b [SEP]``
(random order per example), LoRA rank ``--rank`` on every attention and
feed-forward matrix, LayerNorms and a linear head on the mean-pooled last
layer trained; everything else frozen. The delta is written as float16 arrays
to ``src/tokenlean/cache/cross_encoder.npz``; the validation scores are then
computed by loading that file through the serving class
(:class:`tokenlean.cache._cross.CrossEncoder`), so the threshold is chosen on
exactly what ships. Prints one JSON report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

PKG = Path(__file__).resolve().parents[1]
OUT = PKG / "src/tokenlean/cache/cross_encoder.npz"


def bucket(pair_id: str) -> str:
    h = int(hashlib.md5(pair_id.encode()).hexdigest(), 16)
    if h % 5 == 0:
        return "held_out"
    return "val" if h % 10 == 1 else "train"


def load(path: Path, limit: int) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows); held-out rows are skipped unread."""
    train, val = [], []
    with path.open() as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            b = bucket(str(row["id"]))
            if b == "val":
                val.append(row)
            elif b == "train" and (not limit or len(train) < limit):
                train.append(row)
    return train, val


def pr_at(prob: np.ndarray, y: np.ndarray, t: float) -> tuple[float, float, int]:
    hit = prob >= t
    tp, fp = int((hit & (y == 1)).sum()), int((hit & (y == 0)).sum())
    return (tp / (tp + fp) if tp + fp else 1.0), tp / max(int((y == 1).sum()), 1), tp + fp


def choose_threshold(probs: list[np.ndarray], ys: list[np.ndarray], targets: list[float],
                     min_hits: int = 10) -> tuple[float, float]:
    """The threshold with the best worst-file recall where every file reaches
    its validation precision target."""
    best = (0.99, 0.0)
    for t in np.arange(0.05, 0.995, 0.005):
        res = [pr_at(p, y, t) for p, y in zip(probs, ys, strict=True)]
        if all(p >= tg and n >= min_hits for (p, _, n), tg in zip(res, targets, strict=True)):
            worst = min(r for _, r, _ in res)
            if worst > best[1]:
                best = (float(t), worst)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", type=Path, required=True)
    parser.add_argument("--limit", nargs="+", type=int, default=[0])
    parser.add_argument("--targets", nargs="+", type=float, default=None,
                        help="validation precision per file (default 0.94)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=96)
    parser.add_argument("--minutes", type=float, default=14.0, help="stop training after this")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    targets = args.targets or [0.94] * len(args.pairs)
    limits = args.limit * len(args.pairs) if len(args.limit) == 1 else args.limit

    import torch
    from torch import nn

    from tokenlean.cache._cross import CrossEncoder, load_base, mean_pool, pair_batch, target_modules

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    train, vals = [], []
    for path, limit in zip(args.pairs, limits, strict=True):
        tr, va = load(path, limit)
        train += tr
        vals.append(va)

    tokenizer, model = load_base()
    for p in model.parameters():
        p.requires_grad_(False)
    ln_names = [n for n, _ in model.named_parameters() if "LayerNorm" in n]
    for n, p in model.named_parameters():
        if n in ln_names:
            p.requires_grad_(True)
    scale = args.alpha / args.rank
    loras: dict[str, tuple[nn.Parameter, nn.Parameter]] = {}
    for name, linear in target_modules(model).items():
        a = nn.Parameter(torch.empty(args.rank, linear.in_features))
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        b = nn.Parameter(torch.zeros(linear.out_features, args.rank))
        loras[name] = (a, b)

        def hook(mod, inp, out, a=a, b=b):  # type: ignore[no-untyped-def]
            return out + scale * (inp[0] @ a.T @ b.T)

        linear.register_forward_hook(hook)
    head = nn.Linear(model.config.hidden_size, 1)
    drop = nn.Dropout(0.1)
    params = [p for ab in loras.values() for p in ab] + list(head.parameters()) + [
        p for n, p in model.named_parameters() if n in ln_names]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = max(1, int(args.epochs * len(train) / args.batch))
    warm = max(1, steps // 16)
    budget_s, started = 60 * args.minutes, time.time()

    def lr_factor(s: int) -> float:
        """Warm up, then decay linearly to 0 at the planned steps or at the time
        budget, whichever comes first (a shared CPU's speed is unknown)."""
        left = min((steps - s) / max(steps - warm, 1), 1 - (time.time() - started) / budget_s)
        return min((s + 1) / warm, max(0.0, left))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    step, losses = 0, []
    order: list[int] = []
    while step < steps and time.time() - started < budget_s:
        if not order:
            order = list(range(len(train)))
            random.shuffle(order)
        idx, order = order[:args.batch], order[args.batch:]
        rows = [train[i] for i in idx]
        flip = [random.random() < 0.5 for _ in rows]
        first = [r["b"] if f else r["a"] for r, f in zip(rows, flip, strict=True)]
        second = [r["a"] if f else r["b"] for r, f in zip(rows, flip, strict=True)]
        batch = pair_batch(tokenizer, first, second, args.max_len)
        hidden = model(**batch).last_hidden_state
        logits = head(drop(mean_pool(hidden, batch["attention_mask"]))).reshape(-1)
        loss = loss_fn(logits, torch.tensor([float(r["label"]) for r in rows]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        if step % 20 == 0:
            print(f"step {step}/{steps} loss {np.mean(losses[-20:]):.4f} "
                  f"{time.time() - started:.0f}s", file=sys.stderr, flush=True)
    train_s = time.time() - started

    def export(threshold: float) -> None:
        arrays = {f"lora_a:{n}": a.detach().numpy().astype(np.float16) for n, (a, _) in loras.items()}
        arrays |= {f"lora_b:{n}": b.detach().numpy().astype(np.float16) for n, (_, b) in loras.items()}
        named = dict(model.named_parameters())
        arrays |= {f"param:{n}": named[n].detach().numpy().astype(np.float16) for n in ln_names}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            args.out, **arrays, lora_scale=np.asarray(scale), threshold=np.asarray(threshold),
            max_len=np.asarray(args.max_len),
            head_w=head.weight.detach().numpy().reshape(-1).astype(np.float32),
            head_b=head.bias.detach().numpy().astype(np.float32),
            meta_trained_on=np.asarray(",".join(p.name for p in args.pairs)),
            meta_split=np.asarray("held out: md5(id) % 5 == 0 (unread); val: % 10 == 1; "
                                  "rest: train"),
            meta_train_pairs=np.asarray(len(train)), meta_steps=np.asarray(step))

    export(0.5)
    served = CrossEncoder(args.out, threads=args.threads)
    probs, ys = [], []
    for va in vals:
        out = np.empty(len(va), dtype=np.float32)
        for s in range(0, len(va), 64):  # one pair per query, as the guard scores them
            for j, r in enumerate(va[s:s + 64]):
                out[s + j] = served.probabilities(r["b"], [r["a"]])[0]
        probs.append(out)
        ys.append(np.asarray([int(r["label"]) for r in va]))
    threshold, _ = choose_threshold(probs, ys, targets)
    export(threshold)
    report: dict = {"threshold": round(threshold, 3), "train_pairs": len(train), "steps": step,
                    "planned_steps": steps, "train_s": round(train_s), "rank": args.rank,
                    "lr": args.lr, "epochs": args.epochs, "max_len": args.max_len,
                    "final_loss": round(float(np.mean(losses[-50:])), 4), "val": {}}
    for path, p, y in zip(args.pairs, probs, ys, strict=True):
        curve = {}
        for t in (0.3, 0.5, 0.7, 0.9, threshold):
            pv, rv, n = pr_at(p, y, t)
            curve[f"{t:.3f}"] = {"precision": round(pv, 4), "recall": round(rv, 4), "hits": n}
        report["val"][path.stem] = {"n": len(y), "at": curve}
    report["artefact_bytes"] = args.out.stat().st_size
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
