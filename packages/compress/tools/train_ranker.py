"""Train the default method's segment ranker on the development QA splits.

    .venv/bin/python packages/compress/tools/train_ranker.py \
        ../shared/data/qa_squad_dev.jsonl ../shared/data/qa_nq_dev.jsonl

Labels: a segment is positive when a gold answer appears in it verbatim
(case/whitespace-insensitive). Loss: listwise softmax over each context's
segments (-log of the probability mass on positive segments). Rows whose index
is a multiple of 5 are held out and reported; the rest train. Writes
``src/tokenlean/compress/_ranker.npz``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from tokenlean.compress._relevance import Ranker, features
from tokenlean.compress._text import split_segments
from tokenlean.core import read_jsonl


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def load(paths: list[str]) -> tuple[list[tuple[np.ndarray, np.ndarray]], list]:
    train, hold = [], []
    for path in paths:
        for number, row in read_jsonl(path, "qa"):
            segs = split_segments(row["context"])
            answers = [_norm(a) for a in row["answers"]]
            y = np.array([any(a in _norm(s.text) for a in answers) for s in segs], float)
            if len(segs) < 2 or not y.any():
                continue
            x = features(row["question"], segs).matrix
            (hold if (number - 1) % 5 == 0 else train).append((x, y))  # the bench's holdout
    return train, hold


def loss_and_grads(p: dict[str, np.ndarray], data: list[tuple[np.ndarray, np.ndarray]]):
    xs = np.vstack([x for x, _ in data])
    ys = np.concatenate([y for _, y in data])
    idx = np.cumsum([0] + [len(x) for x, _ in data])
    h = np.tanh(xs @ p["w1"] + p["b1"])
    z = h @ p["w2"] + xs @ p["w"]
    dz = np.zeros_like(z)
    loss = 0.0
    for k in range(len(data)):
        s, e = idx[k], idx[k + 1]
        zz = z[s:e] - z[s:e].max()
        prob = np.exp(zz)
        prob /= prob.sum()
        pos = prob * ys[s:e]
        mass = pos.sum() + 1e-12
        loss -= np.log(mass)
        dz[s:e] = prob - pos / mass
    dz /= len(data)
    grads = {"w2": h.T @ dz, "w": xs.T @ dz}
    da = np.outer(dz, p["w2"]) * (1 - h**2)
    grads["w1"], grads["b1"] = xs.T @ da, da.sum(0)
    return loss / len(data), grads


def train(data, hidden: int = 16, iters: int = 600, lr: float = 0.02, l2: float = 1e-3,
          seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = data[0][0].shape[1]
    p = {"w1": rng.normal(0, 0.3, (f, hidden)), "b1": np.zeros(hidden),
         "w2": rng.normal(0, 0.3, hidden), "w": np.zeros(f)}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    for it in range(iters):
        loss, g = loss_and_grads(p, data)
        for k in p:
            gk = g[k] + l2 * p[k]
            m[k] = 0.9 * m[k] + 0.1 * gk
            v[k] = 0.999 * v[k] + 0.001 * gk * gk
            m_hat, v_hat = m[k] / (1 - 0.9 ** (it + 1)), v[k] / (1 - 0.999 ** (it + 1))
            p[k] -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        if it % 100 == 0:
            print(f"iter {it} loss {loss:.4f}", file=sys.stderr)
    return p


def top1(p, data) -> float:
    r = Ranker(p["w1"], p["b1"], p["w2"], p["w"])
    return float(np.mean([y[int(np.argmax(r.logits(x)))] for x, y in data]))


def main() -> None:
    train_rows, hold_rows = load(sys.argv[1:])
    params = train(train_rows)
    print(json.dumps({"train_rows": len(train_rows), "holdout_rows": len(hold_rows),
                      "train_top1": round(top1(params, train_rows), 4),
                      "holdout_top1": round(top1(params, hold_rows), 4)}))
    out = Path(__file__).resolve().parents[1] / "src/tokenlean/compress/_ranker.npz"
    np.savez(out, **{k: v.astype(np.float32) for k, v in params.items()})
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
