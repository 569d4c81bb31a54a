"""The ``tokenlean`` command.

Every user command is built in: ``count``, ``ledger``, ``audit``, ``demo``,
``serve``, ``prune``, ``distill``, ``budget``, ``templates``. Each command that
needs a layer imports it when it runs, so ``tokenlean --help`` works with only
tokenlean-core and tokenlean-cli installed, and a command whose layer is missing
says which extra to install. Other packages add commands through entry points:

* group ``tokenlean.commands``: ``name = "pkg.module:obj"`` where ``obj`` is a
  ``typer.Typer`` (added as a sub-command group) or a function (a command);
* group ``tokenlean.bench``: the same, added under ``tokenlean bench``
  (tokenlean-bench registers the benchmarks there).

Every command, built in or plugged, reports a ``TokenleanError`` (a bad input
file, a missing extra, an invalid option) the same way: ``error: <message>`` on
stderr and exit status 2, no traceback. Commands need no handler of their own.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import typer

from tokenlean.core import TokenleanError

from ._audit import audit, demo
from ._backend import distill_command, prune
from ._budget import budget
from ._commands import count, fail, ledger, version_callback
from ._serve import serve
from ._templates import app as templates

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


def _reporting_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with a ``TokenleanError`` turned into ``error: ...`` and exit 2
    (``functools.wraps`` keeps the signature typer reads the options from)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TokenleanError as exc:
            raise fail(str(exc)) from None

    return run


def _report_errors_in(group: typer.Typer) -> None:
    """Wrap every command of a plugged ``typer.Typer`` group (and of its sub-groups)."""
    for info in group.registered_commands:
        if info.callback is not None:
            info.callback = _reporting_errors(info.callback)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _report_errors_in(sub.typer_instance)


def _add(target: typer.Typer, name: str, obj: Any) -> None:
    """``obj`` (a function or a ``typer.Typer`` group) as command ``name``, errors reported."""
    if isinstance(obj, typer.Typer):
        _report_errors_in(obj)
        target.add_typer(obj, name=name)
    else:
        target.command(name)(_reporting_errors(obj))


def _names(group: typer.Typer) -> set[str]:
    return ({c.name for c in group.registered_commands if c.name is not None}
            | {g.name for g in group.registered_groups if g.name is not None})


def _plug(target: typer.Typer, group: str) -> None:
    taken = _names(target)
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if ep.name in taken:
            warnings.warn(f"tokenlean command {ep.name!r} from {ep.value} is skipped: the name "
                          "is taken", stacklevel=2)
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            warnings.warn(f"tokenlean command {ep.name!r} could not load: {exc}", stacklevel=2)
            continue
        _add(target, ep.name, obj)


for _name, _command in (("count", count), ("ledger", ledger), ("audit", audit), ("demo", demo),
                        ("serve", serve), ("prune", prune), ("distill", distill_command),
                        ("budget", budget), ("templates", templates)):
    _add(app, _name, _command)
_plug(app, "tokenlean.commands")
_plug(bench_app, "tokenlean.bench")
if bench_app.registered_commands or bench_app.registered_groups:
    app.add_typer(bench_app, name="bench")


def main() -> None:
    app()
