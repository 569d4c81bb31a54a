"""`tokenlean bench templates`: the rewrite passes measured on a file and on the prompts
LlamaIndex ships."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tokenlean.bench.templates import run_bench
from tokenlean.cli import app
from tokenlean.templates._frameworks import llamaindex_corpus


def test_bench_cli_passes_all(tmp_path):
    rows = tmp_path / "t.jsonl"
    rows.write_text("\n".join(json.dumps({"id": str(i), "template": t, "type": "TEXT"}) for i, t in
                              enumerate(["I want you to act as a poet. I will give you a topic "
                                         "and you will write a poem about the topic.",
                                         "## Steps\n\n- Read the file\n- Do not guess"])),
                    encoding="utf-8")
    outs = {}
    for p in ("safe", "all"):
        result = CliRunner().invoke(app, ["bench", "templates", "--corpus", str(rows), "--passes",
                                          p, "--no-similarity", "--json"])
        assert result.exit_code == 0, result.output
        outs[p] = json.loads(result.output)
    assert outs["all"]["invariant_violations"] == 0 == outs["safe"]["invariant_violations"]
    assert outs["all"]["saved_ratio"] > outs["safe"]["saved_ratio"] > 0
    assert outs["all"]["per_pass"]["markdown"]["saved_tokens"] > 0
    assert "markdown" not in outs["safe"]["per_pass"]


def test_llamaindex_default_prompts_corpus_rewrites_cleanly():
    pytest.importorskip("llama_index.core")
    rows = llamaindex_corpus()
    assert len(rows) >= 20 and all("{" in r["template"] or r["template"] for r in rows)
    out = run_bench(rows, similarity=False)
    assert out["invariant_violations"] == 0 and out["variables_lost"] == 0
    assert 0 <= out["saved_ratio"] < 0.1  # framework prompts are already terse
