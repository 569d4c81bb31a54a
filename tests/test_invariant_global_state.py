"""Invariant 7 of issue 18: importing or using a layer changes nothing global in the
app's process: the root logger (level, handlers), logging's global switch, the
warnings filters, torch's thread count, the environment, the global random
generators, the exception hooks.

A fresh interpreter imports what an app would already have (torch, numpy,
LangChain), takes a snapshot, then builds and uses every layer option of every
preset: the exact and the semantic cache (a hit through the false-hit guard),
both template modes (the MiniLM meaning check runs), the compressor, both
budget options, and ``lean()`` with ``preset="max-savings"`` around a LangChain
chat model. The snapshot after must equal the one before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = r'''
import json, logging, os, random, sys, threading, warnings

import numpy as np
import torch
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage


def snapshot():
    root = logging.getLogger()
    return {
        "root_level": root.level,
        "root_handlers": [type(h).__name__ for h in root.handlers],
        "root_disabled": root.disabled,
        "logging_disable": logging.root.manager.disable,
        "warnings_filters": [repr(f) for f in warnings.filters],
        "environ": dict(os.environ),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "random_state": repr(random.getstate())[:2000],
        "numpy_random_state": repr(np.random.get_state())[:2000],
        "excepthook": repr(sys.excepthook),
        "threading_excepthook": repr(threading.excepthook),
    }


before = snapshot()

from tokenlean.core import FunctionProvider, Message, Pipeline, Request, Response, Usage
from tokenlean.core.presets import build_layers


def answer(request):
    return Response(text="Paris is the capital of France.", model=request.model,
                    usage=Usage(input_tokens=30, output_tokens=8))


CONTEXT = " ".join(f"Fact {i}: the museum on street {i} opens at {8 + i % 4} am and closes "
                   f"at {5 + i % 3} pm on weekdays." for i in range(60))
SYSTEM = ("I want you to act as a travel guide.   Please be brief and kind.\n\n\n\n"
          "Do not write explanations. Do not use emojis.")


def ask(question, system=SYSTEM):
    return Request(model="gpt-4o-mini", temperature=0, messages=[
        Message(role="system", content=system),
        Message(role="user", content=f"{CONTEXT}\n\nQuestion: {question}")])


options = [dict(cache="exact"), dict(cache="semantic"), dict(templates="whitespace"),
           dict(templates="safe"), dict(compress=True), dict(budget="predict"),
           dict(budget="concise")]
for choice in options:
    pipe = Pipeline(provider=FunctionProvider(answer), layers=build_layers(preset="off", **choice))
    for question in ("What is the capital of France?", "what's the capital of France?"):
        pipe.run(ask(question))

from langchain_tokenlean import lean

model = GenericFakeChatModel(messages=iter([AIMessage("Paris.")] * 4))
wrapped = lean(model, preset="max-savings", ledger=False, model="gpt-4o-mini")
wrapped.invoke([("system", SYSTEM), ("human", CONTEXT)])

after = snapshot()
print(json.dumps({"before": before, "after": after}))
'''


def test_using_every_layer_changes_no_global_state(tmp_path: Path) -> None:
    env = {**os.environ, "TOKENLEAN_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=900, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    states: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    before, after = states["before"], states["after"]
    changed = {key: {"before": before[key], "after": after[key]}
               for key in before if before[key] != after[key]}
    if "environ" in changed:  # name only the variables that changed
        b, a = before["environ"], after["environ"]
        changed["environ"] = {k: (b.get(k), a.get(k)) for k in set(a) | set(b)
                              if a.get(k) != b.get(k)}
    assert changed == {}
    # and nothing about it reached the app's output: no INFO lines, no progress bars
    assert "INFO" not in out.stderr and "Loading weights" not in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("module", ["wordllama", "sentence_transformers"])
def test_importing_a_layer_dependency_through_tokenlean_keeps_the_root_logger(
        module: str) -> None:
    """What ``require`` imports (wordllama calls logging.basicConfig(level=INFO) when it
    is imported; sentence-transformers adds a warnings filter) leaves no trace."""
    script = (
        "import json, logging, warnings\n"
        "before = (logging.getLogger().level, len(logging.getLogger().handlers),"
        " len(warnings.filters))\n"
        "from tokenlean.core._optional import require\n"
        f"require({module!r}, extra='x', feature='y')\n"
        "after = (logging.getLogger().level, len(logging.getLogger().handlers),"
        " len(warnings.filters))\n"
        "print(json.dumps([before, after]))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert after == before
