"""Every benchmark is a `tokenlean bench` command under the name it always had."""

from __future__ import annotations

from importlib.metadata import distribution

from typer.testing import CliRunner

from tokenlean.cli import app

NAMES = {"accounting", "attention", "backend", "budget", "cache", "compress", "output", "overhead",
         "prune", "reliability", "server", "templates", "templates-cache", "traffic"}


def test_tokenlean_bench_registers_every_benchmark() -> None:
    points = {ep.name: ep for ep in distribution("tokenlean-bench").entry_points
              if ep.group == "tokenlean.bench"}
    assert set(points) == NAMES
    assert all(callable(ep.load()) for ep in points.values())


def test_each_benchmark_answers_help() -> None:
    for name in sorted(NAMES):
        result = CliRunner().invoke(app, ["bench", name, "--help"])
        assert result.exit_code == 0, (name, result.output)
