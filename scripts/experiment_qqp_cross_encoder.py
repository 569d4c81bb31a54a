"""Experiment (not shipped): fully fine-tune all-MiniLM-L6-v2 as a cross-encoder on
the development pairs' training split and report validation precision.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/experiment_qqp_cross_encoder.py \
        --pairs ../shared/data/pairs_qqp_dev.jsonl --epochs 5 --eval-every 108

Split by the md5 of the pair id, as ``tokenlean bench cache --split`` and
``scripts/train_cache_verifier.py`` do: ``% 5 == 0`` held out (never read
here), ``% 10 == 1`` validation, the rest training. Every weight but the word
embeddings is trained; a linear head reads the mean-pooled last layer of
``[CLS] a [SEP] b [SEP]`` (random pair order in training, both orders averaged
in validation). Prints one JSON object: per evaluation, precision at recall 0.5
and the best recall at precision 0.85 / 0.90 / 0.92 / 0.95; and the
``--top`` validation pairs the model is surest of, with their labels (how many
of them the file calls "different").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_cache_verifier import bucket  # the same split rule


def load(path: Path) -> tuple[list[dict], list[dict]]:
    from tokenlean.core import read_jsonl

    train, val = [], []
    for _, row in read_jsonl(path, "pairs"):
        split = bucket(str(row["id"]))
        if split != "held_out":
            (val if split == "val" else train).append(row)
    return train, val


def curve(prob: np.ndarray, y: np.ndarray) -> dict:
    order = np.argsort(-prob)
    tp = np.cumsum(y[order])
    precision = tp / np.arange(1, len(y) + 1)
    recall = tp / max(int(y.sum()), 1)
    at_half = precision[min(int(np.searchsorted(recall, 0.5)), len(y) - 1)]
    return {"precision_at_recall_0.5": round(float(at_half), 4),
            "recall_at_precision": {str(t): round(float(recall[precision >= t].max()), 4)
                                    if (precision >= t).any() else 0.0
                                    for t in (0.85, 0.9, 0.92, 0.95)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--lr", type=float, default=6e-5, help="encoder; the head gets 20x")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=96)
    parser.add_argument("--eval-every", type=int, default=0, help="steps (0: at the end only)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from torch import nn
    from transformers import AutoModel, AutoTokenizer

    from tokenlean.cache._embed import minilm_path

    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(args.threads)
    train, val = load(args.pairs)
    folder = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    model.embeddings.word_embeddings.weight.requires_grad_(False)
    head = nn.Linear(model.config.hidden_size, 1)

    def logits(first: list[str], second: list[str]) -> torch.Tensor:
        enc = tokenizer(first, second, truncation=True, max_length=args.max_len, padding=True,
                        return_tensors="pt")
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (model(**enc).last_hidden_state * mask).sum(1) / mask.sum(1)
        return head(nn.functional.dropout(pooled, 0.1, model.training)).reshape(-1)

    def validate() -> np.ndarray:
        model.eval()
        out = []
        with torch.inference_mode():
            for s in range(0, len(val), 64):
                a, b = [r["a"] for r in val[s:s + 64]], [r["b"] for r in val[s:s + 64]]
                out.append(torch.sigmoid((logits(a, b) + logits(b, a)) / 2).numpy())
        model.train()
        return np.concatenate(out)

    encoder = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": encoder, "lr": args.lr},
                             {"params": head.parameters(), "lr": args.lr * 20}],
                            weight_decay=0.01)
    steps = int(args.epochs * len(train) / args.batch)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(steps - warm, 1))))
    loss_fn = nn.BCEWithLogitsLoss()
    y = np.asarray([int(r["label"]) for r in val])
    evaluations, losses, batches = [], [], []
    size = [len(r["a"]) + len(r["b"]) for r in train]
    started = time.time()
    model.train()
    for step in range(1, steps + 1):
        if not batches:  # length-bucketed batches in random order
            order = list(range(len(train)))
            random.shuffle(order)
            for c in range(0, len(order), 50 * args.batch):
                chunk = sorted(order[c:c + 50 * args.batch], key=lambda i: size[i])
                batches += [chunk[j:j + args.batch] for j in range(0, len(chunk), args.batch)]
            random.shuffle(batches)
        rows = [train[i] for i in batches.pop()]
        flip = [random.random() < 0.5 for _ in rows]
        first = [r["b"] if f else r["a"] for r, f in zip(rows, flip, strict=True)]
        second = [r["a"] if f else r["b"] for r, f in zip(rows, flip, strict=True)]
        loss = loss_fn(logits(first, second), torch.tensor([float(r["label"]) for r in rows]))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(encoder, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (args.eval_every and step % args.eval_every == 0) or step == steps:
            evaluations.append({"step": step, "train_loss": round(float(np.mean(losses[-50:])), 4),
                                **curve(validate(), y)})
            print(json.dumps(evaluations[-1]), file=sys.stderr, flush=True)
    prob = validate()
    top = np.argsort(-prob)[:args.top]
    report = {"train_pairs": len(train), "val_pairs": len(val), "steps": steps,
              "train_s": round(time.time() - started), "evaluations": evaluations,
              "top": {"n": len(top), "labelled_different": int((y[top] == 0).sum()),
                      "lowest_probability": round(float(prob[top[-1]]), 4),
                      "pairs": [{"label": int(y[i]), "p": round(float(prob[i]), 4),
                                 "a": val[i]["a"], "b": val[i]["b"]} for i in top]}}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
