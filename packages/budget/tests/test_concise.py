"""Concise mode gated by task type: the detector, its accuracy on hand-labelled
prompts, and the layer's concise path (instruction only for allowed types, the note)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from tokenlean.budget import (
    CONCISE_TASK_TYPES,
    TASK_TYPES,
    BudgetLayer,
    concise_types,
    detect_task_type,
    length_instruction,
)
from tokenlean.core import (
    ConfigError,
    FunctionProvider,
    Message,
    ModelPrice,
    Pipeline,
    PriceTable,
    Request,
    Response,
    Usage,
    read_prompts,
)

LABELS = Path(__file__).parent / "data" / "task_type_labels.jsonl"
PRICES = PriceTable(overrides={
    "gpt-4o": ModelPrice(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))})


def user(text: str, system: str | None = None) -> list[Message]:
    head = [Message(role="system", content=system)] if system else []
    return [*head, Message(role="user", content=text)]


@pytest.mark.parametrize(("text", "system", "want"), [
    ("Write a function that reverses a linked list.", None, "code"),
    ("Why does this fail?\n```python\nprint(1/0)\n```", None, "code"),
    ("def f(x):\n    return x\nclass A:\n    pass", None, "code"),
    ("Solve for x: 3x + 4 = 19", None, "math"),
    ("What is the probability of rolling two sixes with 2 dice?", None, "math"),
    ("Tom has 3 apples, buys 5 more and gives 2 away. How many are left?", None, "math"),
    ("A riddle: what has keys but cannot open locks?", None, "reasoning"),
    ("When did the war end?", "Answer from this context only.\n\nContext:\n" + "x " * 200,
     "extraction"),
    ("Extract the names of the people in this note: Ann met Bob.", None, "extraction"),
    ("Classify this tweet as positive, negative or neutral: I love it", None,
     "classification"),
    ("Write a poem about autumn leaves.", None, "chat"),
    ("What are some good habits for sleeping well?", None, "chat"),
])
def test_detects_task_types(text: str, system: str | None, want: str) -> None:
    assert detect_task_type(user(text, system)) == want


def test_reads_the_last_user_turn() -> None:
    chat = [Message(role="user", content="Write a Python script to parse logs."),
            Message(role="assistant", content="Here it is."),
            Message(role="user", content="Thanks! Now write a haiku about the sea.")]
    assert detect_task_type(chat) == "chat"
    assert detect_task_type([Message(role="system", content="Be nice.")]) == "chat"


def test_reads_a_bounded_head_of_each_message() -> None:
    fence = "```python\nprint(1)\n```"
    assert detect_task_type(user("word " * 100 + fence)) == "code"
    assert detect_task_type(user("word " * 10_000 + fence)) == "chat"  # past 20,000 chars
    assert detect_task_type(user("<p>hi</p> <b>there</b>")) == "code"


def test_code_math_and_reasoning_need_an_opt_in() -> None:
    assert set(CONCISE_TASK_TYPES) == set(TASK_TYPES) - {"code", "math", "reasoning"}
    assert concise_types() == CONCISE_TASK_TYPES
    assert concise_types(["code", "math"]) == CONCISE_TASK_TYPES | {"code", "math"}
    assert concise_types("math") == CONCISE_TASK_TYPES | {"math"}
    with pytest.raises(ConfigError, match="unknown task type"):
        concise_types(["poetry"])
    with pytest.raises(ConfigError, match="unknown task type"):
        BudgetLayer(predictor=Fixed(), concise=True, concise_task_types=["cod"])


def test_accuracy_on_hand_labelled_prompts(shared_data: Callable[[str], Path]) -> None:
    """100 prompts labelled by hand (MT-Bench's own categories for its 80, writing /
    role-play / STEM / humanities = chat). The rules were written looking at this
    sample, so this is in-sample accuracy: the floor guards against regressions."""
    labels = [json.loads(line) for line in LABELS.read_text().splitlines()]
    want = {(r["file"], r["id"]): r["label"] for r in labels}
    got: dict[tuple[str, str], str] = {}
    for name in sorted({r["file"] for r in labels}):
        for row, messages in read_prompts(shared_data(name)):
            if (name, row["id"]) in want:
                got[(name, row["id"])] = detect_task_type(messages)
    assert set(got) == set(want)
    right = Counter(want[k] for k in want if got[k] == want[k])
    total = Counter(want.values())
    assert sum(right.values()) / len(want) >= 0.8
    for task in ("code", "math"):  # the gated types: missing one would make it concise
        assert right[task] / total[task] >= 0.9, task


def test_qa_rows_are_extraction(shared_data: Callable[[str], Path]) -> None:
    from tokenlean.core import read_jsonl

    rows = [row for _, row in read_jsonl(shared_data("qa_squad_dev.jsonl"), "qa")][:20]
    chats = [user(r["question"], "Answer the question from this context only.\n\n"
                                 f"Context:\n{r['context']}") for r in rows]
    assert all(detect_task_type(c) == "extraction" for c in chats)


class Fixed:
    def predict(self, messages: object) -> int:
        return 200


def _run(layer: BudgetLayer, text: str) -> tuple[Request, dict[str, object]]:
    seen: list[Request] = []

    def complete(request: Request) -> Response:
        seen.append(request)
        return Response(text="ok", usage=Usage(input_tokens=10, output_tokens=1),
                        model=request.model)

    result = Pipeline(provider=FunctionProvider(complete, name="echo"), layers=[layer],
                      prices=PRICES).run(Request(messages=(Message(role="user", content=text),),
                                                 model="gpt-4o"))
    report = next(r for r in result.record.layers if r.layer == "budget")
    return seen[0], dict(report.detail)


def test_the_layer_makes_only_allowed_types_concise() -> None:
    layer = BudgetLayer(predictor=Fixed(), concise=True)
    sent, detail = _run(layer, "Write a short poem about the sea.")
    assert sent.messages[0].role == "system" and "concise" in sent.messages[0].text
    assert detail["concise"] is True and detail["task_type"] == "chat"
    for text, task in (("Write a Python function that adds two numbers.", "code"),
                       ("Solve 2x + 3 = 11 for x.", "math")):
        sent, detail = _run(layer, text)
        assert [m.role for m in sent.messages] == ["user"], task  # unchanged
        assert detail["concise"] is False and detail["task_type"] == task


def test_opting_code_in() -> None:
    layer = BudgetLayer(predictor=Fixed(), concise=True, concise_task_types=["code"])
    sent, detail = _run(layer, "Write a Python function that adds two numbers.")
    assert sent.messages[0].role == "system" and "concise" in sent.messages[0].text
    assert detail == {**detail, "concise": True, "task_type": "code"}


def test_concise_off_leaves_no_concise_note() -> None:
    sent, detail = _run(BudgetLayer(predictor=Fixed()), "Write a short poem.")
    assert [m.role for m in sent.messages] == ["user"]
    assert "concise" not in detail and "task_type" not in detail


def test_lean_keyword_flows_to_the_layer() -> None:
    from tokenlean.core.presets import build_layers

    (layer,) = build_layers(preset="off", budget="concise", concise_task_types=["math"])
    assert isinstance(layer, BudgetLayer) and "math" in layer.concise_types
    with pytest.raises(ConfigError, match="concise"):
        build_layers(preset="max-savings", concise_task_types=["math"])  # budget="predict"
    with pytest.raises(ConfigError, match="concise"):
        build_layers(preset="off", concise_task_types=["math"])  # no budget layer


def test_concise_applies_while_a_calibrated_layer_warms_up() -> None:
    """budget="concise" calibrates: before the first bound the instruction uses the prior
    predictor's figure (it is a soft budget; the app's cap is untouched)."""
    from tokenlean.budget import SQLiteBudgetStore

    store = SQLiteBudgetStore(":memory:")
    try:
        layer = BudgetLayer(predictor=Fixed(), concise=True, calibration=True, store=store)
        sent, detail = _run(layer, "Write a short poem about the sea.")
        assert detail["calibrated_max_tokens"] is None  # still warming up
        assert sent.messages[0].role == "system" and "concise" in sent.messages[0].text
        assert detail["concise"] is True and detail["task_type"] == "chat"
        sent, detail = _run(layer, "Solve 2x + 3 = 11 for x.")
        assert [m.role for m in sent.messages] == ["user"] and detail["concise"] is False
    finally:
        store.close()


@pytest.mark.parametrize("calibration", [False, True])
def test_concise_applies_to_a_call_with_its_own_cap_and_keeps_the_cap(
        calibration: bool) -> None:
    """An app that sets max_tokens (most do) still gets concise mode: the instruction's
    soft budget is the prior's figure, never above the app's cap, and the cap is kept."""
    from tokenlean.budget import SQLiteBudgetStore

    store = SQLiteBudgetStore(":memory:")
    seen: list[Request] = []

    def complete(request: Request) -> Response:
        seen.append(request)
        return Response(text="ok", usage=Usage(input_tokens=10, output_tokens=1),
                        model=request.model)

    try:
        layer = BudgetLayer(predictor=Fixed(), concise=True, calibration=calibration,
                            store=store)
        pipeline = Pipeline(provider=FunctionProvider(complete, name="echo"), layers=[layer],
                            prices=PRICES)
        for cap in (40, 4096):
            result = pipeline.run(Request(messages=(Message(
                role="user", content="Write a short poem about the sea."),),
                model="gpt-4o", max_tokens=cap))
            detail = next(r for r in result.record.layers if r.layer == "budget").detail
            assert seen[-1].max_tokens == cap  # the app's cap: neither raised nor lowered
            assert detail["concise"] is True
            # the soft budget is the prior's 200, or the app's cap where that is lower
            assert seen[-1].messages[0].text == length_instruction(min(200, cap))
    finally:
        store.close()
