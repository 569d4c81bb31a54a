"""The ``tokenlean`` command.

Built-in commands live here (``count``, ``ledger``, ``demo``). Layer packages
add their own through entry points, so installing a layer adds its commands:

* group ``tokenlean.commands``: ``name = "pkg.module:obj"`` where ``obj`` is a
  ``typer.Typer`` (added as a sub-command group) or a function (a command);
* group ``tokenlean.bench``: the same, added under ``tokenlean bench``.
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

import typer

from ._commands import count, demo, ledger, version_callback

__all__ = ["app", "main"]

app = typer.Typer(name="tokenlean", no_args_is_help=True, add_completion=False,
                  help="Cut what LLM applications pay per answer.")
bench_app = typer.Typer(no_args_is_help=True,
                        help="Benchmarks: each prints JSON; see docs/benchmarks/.")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Print the versions of the installed tokenlean packages."),
) -> None:
    """tokenlean: compress, rewrite, serve lean, budget and cache LLM calls."""


app.command("count")(count)
app.command("ledger")(ledger)


def _plug(target: typer.Typer, group: str) -> None:
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            warnings.warn(f"tokenlean command {ep.name!r} could not load: {exc}", stacklevel=2)
            continue
        if isinstance(obj, typer.Typer):
            target.add_typer(obj, name=ep.name)
        else:
            target.command(ep.name)(obj)


_plug(app, "tokenlean.commands")
if not any(ep.name == "demo" for ep in entry_points(group="tokenlean.commands")):
    app.command("demo")(demo)  # placeholder until tokenlean-audit provides the real demo
_plug(bench_app, "tokenlean.bench")
if bench_app.registered_commands or bench_app.registered_groups:
    app.add_typer(bench_app, name="bench")


def main() -> None:
    app()
