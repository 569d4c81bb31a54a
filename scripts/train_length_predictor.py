"""Train tokenlean-budget's output-length predictor (needs `tokenlean[budget-train]`:
tokenlean-bench and scikit-learn).

    python scripts/train_length_predictor.py \
        ../shared/data/prompts_arena_hard_v01.jsonl ../shared/data/prompts_alpaca_eval.jsonl \
        --out packages/budget/src/tokenlean/budget/_data/length_predictor_v1.json

Any JSONL file of the prompts shape works ({"messages", "response", ...}), e.g.
a log of your own prompts and the answers your model gave: retrain on it and
load the result with ``LengthPredictor.load(path)``. The split is by prompt
(a hash of its messages): 60% train, 20% calibrate, 20% test; the held-out test
metrics are printed as JSON and stored in the artefact.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenlean.bench.budget_train import TEST, evaluate, load_examples, train
from tokenlean.budget import LengthPredictor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="prompts-shaped JSONL files")
    parser.add_argument("--out", required=True, help="where to write the artefact (JSON)")
    parser.add_argument("--quantiles", default="0.5,0.8,0.9,0.95")
    parser.add_argument("--default-quantile", type=float, default=0.9)
    parser.add_argument("--trees", type=int, default=150)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--version", default="1")
    parser.add_argument("--limit", type=int, default=None, help="read at most N rows (a smoke run)")
    args = parser.parse_args(argv)
    examples = load_examples(args.data, limit=args.limit)
    sources = sorted({e.source for e in examples if e.source})
    artefact = train(examples, quantiles=[float(q) for q in args.quantiles.split(",")],
                     default_quantile=args.default_quantile, n_estimators=args.trees,
                     max_depth=args.depth, learning_rate=args.learning_rate,
                     version=args.version, sources=sources)
    predictor = LengthPredictor(artefact)
    test = [e for e in examples if e.split == TEST]
    metrics = {str(q): evaluate(predictor, test, quantile=q)
               for q in predictor.available_quantiles} if test else {}
    artefact["training"]["test_metrics"] = metrics
    artefact["training"]["data"] = [Path(p).name for p in args.data]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(artefact, separators=(",", ":")), encoding="utf-8")
    json.dump({"out": args.out, "bytes": Path(args.out).stat().st_size,
               "rows": len(examples), "test_metrics": metrics}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
