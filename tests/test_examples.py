"""The examples run end to end against the real local server (SmolLM2, offline).

One server (``examples/_shared.py``, the examples' own helper) serves every
example in this module; each example gets its URL through ``--base-url``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.server


def load(name: str):
    if str(EXAMPLES) not in sys.path:  # the examples import their shared helpers by name
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the example's annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with load("_shared").local_server() as url:
        yield url


def check_raw_vs_lean(result: dict[str, Any], calls: int) -> None:
    raw, lean = result["raw"], result["lean"]
    assert raw["calls"] == lean["calls"] == calls
    assert lean["cache_hits"] >= 1 and raw["cache_hits"] == 0
    assert 0 < lean["cost_usd"] < raw["cost_usd"]


def test_langchain_rag_raw_vs_lean(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    example = load("langchain_rag")
    # questions 1-4 include one exact repeat (question 4 repeats question 2)
    result = example.main(["--questions", "4", "--max-tokens", "24", "--base-url", base_url])
    check_raw_vs_lean(result, 4)
    assert result["lean"]["input_tokens"] < result["raw"]["input_tokens"]
    assert "cost_usd" in capsys.readouterr().out


def test_langchain_agent_middleware_raw_vs_lean(base_url: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    result = load("langchain_agent").main(["--questions", "2", "--max-tokens", "16",
                                           "--base-url", base_url])
    check_raw_vs_lean(result, 2)
    assert result["answers_match"]  # the lossless miss answered exactly as the raw app did
    assert "cost_usd" in capsys.readouterr().out


def test_llamaindex_rag_raw_vs_lean(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # questions 1-3: question 3 repeats question 1
    result = load("llamaindex_rag").main(["--questions", "3", "--max-tokens", "16",
                                          "--base-url", base_url])
    check_raw_vs_lean(result, 3)
    assert result["lean"]["input_tokens"] < result["raw"]["input_tokens"]
    assert "cost_usd" in capsys.readouterr().out


# llama-index-workflows walks the agent with inspect.getmembers, which touches
# every attribute, deprecated ones included (pydantic's, its own is_running):
# third-party DeprecationWarnings, not ours
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_llamaindex_agent_raw_vs_lean(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # questions 1-2: the second user asks what the first asked
    result = load("llamaindex_agent").main(["--questions", "2", "--max-tokens", "24",
                                            "--base-url", base_url])
    check_raw_vs_lean(result, 2)
    assert result["answers_match"]  # one changed line, lossless layers: the same answers
    assert "cost_usd" in capsys.readouterr().out


def test_llamaindex_telemetry(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = load("llamaindex_telemetry").main(["--questions", "2", "--max-tokens", "8",
                                                "--base-url", base_url])
    raw, lean = result["raw"], result["lean"]
    assert raw["calls"] == lean["calls"] == 2
    assert 0 < lean["cost_usd"] < raw["cost_usd"]  # the repeat was a cache hit: no spend
    assert result["otel_spans"] == 4  # one span per call, both runs
    series = "\n".join(result["prometheus_lines"])
    assert 'tokenlean_calls_total{cached="true",model="gpt-4o",priced="true",tenant="lean"} 1.0' \
        in series
    assert "Prometheus" in capsys.readouterr().out
