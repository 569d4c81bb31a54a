"""`tokenlean bench output`: the arm registry, the report's arithmetic on scripted arms,
the file shapes, and one real run of the local model (one row, a few tokens)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenlean.bench import output
from tokenlean.bench.output import ARMS, Row, read_rows, resolve_arm, run_output
from tokenlean.budget import detect_task_type
from tokenlean.cli import app
from tokenlean.core import InvalidRequestError, Message


def row(text: str, answers: tuple[str, ...] | None = None) -> Row:
    messages = [Message(role="user", content=text)]
    return Row(text[:10], messages, answers, detect_task_type(messages))


ROWS = [row("Write a poem about rain."),
        row("Write a Python function that adds two numbers."),
        row("Who wrote Hamlet? Answer from the context.", ("Shakespeare",))]


def scripted(words: Callable[[int], int]) -> Callable[..., list[tuple[str, int, str]]]:
    """An arm answering row i with ``words(i)`` words (one token each); row 2 names the
    gold answer only when it has room for more than 3 words."""
    def arm(chats: list[list[Message]], budgets: list[int]) -> list[tuple[str, int, str]]:
        assert len(budgets) == len(chats)
        out = []
        for i, _ in enumerate(chats):
            n = words(i)
            text = " ".join(["w"] * (n - 1) + (["SHAKESPEARE"] if n > 3 else ["x"]))
            out.append((text, n, "stop"))
        return out
    return arm


class Scorer:
    def similarities(self, pairs: list[tuple[str, str]]) -> list[float]:
        return [min(len(a), len(b)) / max(len(a), len(b), 1) for a, b in pairs]


def test_report_compares_each_arm_with_unconstrained(monkeypatch: pytest.MonkeyPatch) -> None:
    before = [40, 60, 10]
    after = [10, 30, 2]
    monkeypatch.setitem(ARMS, "unconstrained", scripted(lambda i: before[i]))
    monkeypatch.setitem(ARMS, "concise", scripted(lambda i: after[i]))
    report = run_output(ROWS, [50, 50, 50], ["concise"], Scorer())
    assert [r.task_type for r in ROWS] == ["chat", "code", "extraction"]
    assert report["output_tokens_before"] == sum(before)
    assert report["output_tokens_after"] == sum(after)
    assert report["output_cut"] == pytest.approx(1 - sum(after) / sum(before), abs=1e-4)
    # the default policy leaves code as asked: its tokens count unchanged
    policy_after = after[0] + before[1] + after[2]
    assert report["policy_output_cut"] == pytest.approx(1 - policy_after / sum(before), abs=1e-4)
    by_type = report["by_task_type"]
    assert by_type["code"]["concise_by_default"] is False
    assert by_type["chat"]["output_ratio"] == pytest.approx(after[0] / before[0], abs=1e-4)
    assert by_type["extraction"]["qa_containment_before"] == 1.0
    assert by_type["extraction"]["qa_containment_after"] == 0.0
    assert "similarity_to_unconstrained" not in by_type["extraction"]  # qa rows: containment
    chat_sim = Scorer().similarities([(ARMS["unconstrained"]([[]] * 1, [0])[0][0],
                                       ARMS["concise"]([[]] * 1, [0])[0][0])])[0]
    assert by_type["chat"]["similarity_to_unconstrained"] == pytest.approx(chat_sim, abs=1e-4)
    assert report["task_types"] == {"chat": 1, "code": 1, "extraction": 1}


def test_optional_arm_is_loaded_when_present(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidRequestError, match="unknown arm"):
        resolve_arm("nope")
    monkeypatch.setitem(output.OPTIONAL_ARMS, "early-stop", "tokenlean_no_such_module_x")
    assert str(resolve_arm("early-stop")).startswith("unavailable")
    (tmp_path / "my_early_stop.py").write_text(
        "def generate(chats, budgets):\n"
        "    return [('short', 1, 'stop') for _ in chats]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(output.OPTIONAL_ARMS, "early-stop", "my_early_stop")
    monkeypatch.setitem(ARMS, "unconstrained", scripted(lambda i: 5))
    report = run_output(ROWS, [9, 9, 9], ["early-stop"], None)
    block = report["arms"]["early-stop"]
    assert block["output_tokens_before"] == 15 and block["output_tokens_after"] == 3
    assert "output_cut" not in report  # the top level is the concise arm's


def test_rows_of_both_shapes(tmp_path: Path, shared_data: Callable[[str], Path]) -> None:
    qa = read_rows(shared_data("qa_squad_dev.jsonl"), 3)
    assert len(qa) == 3 and all(r.answers and r.task_type == "extraction" for r in qa)
    spread = read_rows(shared_data("prompts_mt_bench.jsonl"), 16, stride=5)
    assert len(spread) == 16 and len({r.task_type for r in spread}) >= 4
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": "q"}\n')
    with pytest.raises(InvalidRequestError, match="bad.jsonl:1"):
        read_rows(bad, 1)
    result = CliRunner().invoke(app, ["bench", "output", str(bad), "--limit", "1"])
    assert result.exit_code == 2 and "bad.jsonl:1" in result.output


def test_real_local_model_run(shared_data: Callable[[str], Path]) -> None:
    """SmolLM2 from its wheel, one qa row, 4 new tokens per arm: the command end to end."""
    pytest.importorskip("torch")
    result = CliRunner().invoke(app, ["bench", "output", str(shared_data("qa_squad_dev.jsonl")),
                                      "--limit", "1", "--max-new-tokens", "4",
                                      "--no-similarity", "--arm", "concise"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rows"] == 1 and report["max_new_tokens"] == 4
    assert 1 <= report["output_tokens_before"] <= 4
    assert 1 <= report["output_tokens_after"] <= 4
    assert set(report["by_task_type"]) == {"extraction"}
    assert report["qa_containment_before"] in (0.0, 1.0)
