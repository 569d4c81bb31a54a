from __future__ import annotations

import json


def test_bench_prints_one_json_object(tmp_path, capsys) -> None:
    from tokenlean.bench.accounting import bench

    data = tmp_path / "prompts.jsonl"
    rows = [{"id": str(i), "messages": [{"role": "user", "content": f"question {i}?"}],
             "response": "an answer " * (i + 1), "model": "gpt-4o-mini", "source": "t"}
            for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench(data=str(data), limit=2, model=None)
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 2 and out["unpriced_rows"] == 0
    assert out["tokens"]["output"] == 3 + 5  # "an answer " once (3 tokens), twice (5)
    assert out["agreement"]["otel_tokens_equal"] and out["agreement"]["prometheus_tokens_equal"]
    assert out["agreement"]["prometheus_usd_abs_diff"] < 1e-12
