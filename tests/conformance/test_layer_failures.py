"""Invariant 3(c) for every adapter, every preset and each of its layers: a layer that
raises, or overruns its time budget, passes the request through unchanged, with one
warning.

Each real layer of each preset is made to fail in turn (a stand-in that raises, or
that blocks until the call is over while its time budget is 0.05 s). The body the
provider gets must be the one it gets when that layer is not there at all, and the
app sees exactly one ``TokenleanWarning``.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import pytest

from tokenlean.core import TokenleanWarning
from tokenlean.core.presets import PRESETS, build_layers

LAYERS = sorted((preset, name) for preset, layers in PRESETS.items()
                for name, choice in layers.items() if choice)


class Failing:
    """``layer`` whose ``process`` raises (``how="raises"``) or blocks past its time
    budget (``how="overruns"``); its hooks are the real layer's."""

    def __init__(self, layer: Any, how: str) -> None:
        self._layer, self.how, self.name = layer, how, layer.name
        self.released = threading.Event()
        if how == "overruns":
            self.time_budget_s = 0.05

    def process(self, request: Any) -> Any:
        if self.how == "raises":
            raise RuntimeError("index file vanished")
        self.released.wait(30)
        return self._layer.process(request)

    async def aprocess(self, request: Any) -> Any:
        return self.process(request) if self.how == "raises" else await self._sleep(request)

    async def _sleep(self, request: Any) -> Any:
        import asyncio

        while not self.released.is_set():
            await asyncio.sleep(0.01)
        return await self._layer.aprocess(request)

    def __getattr__(self, attribute: str) -> Any:  # the real layer's hooks
        return getattr(self._layer, attribute)


def _without_volatile(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in {"user", "metadata"}}


@pytest.mark.parametrize(("preset", "layer_name"), LAYERS)
@pytest.mark.parametrize("how", ["raises", "overruns"])
@pytest.mark.parametrize("mode", ["invoke", "astream"])
def test_a_failing_layer_passes_the_request_through_with_one_warning(
        adapter: Any, preset: str, layer_name: str, how: str, mode: str,
        scripted_openai: Any) -> None:
    def layers(failing: bool) -> list[Any]:
        built = build_layers(preset=preset)
        if failing:
            return [Failing(layer, how) if layer.name == layer_name else layer
                    for layer in built]
        return [layer for layer in built if layer.name != layer_name]

    adapter(scripted_openai.url).run(mode=mode, kind="plain", layers=layers(False),
                                     ledger=False)
    chosen = layers(True)
    (failing,) = [layer for layer in chosen if isinstance(layer, Failing)]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            adapter(scripted_openai.url).run(mode=mode, kind="plain", layers=chosen,
                                             ledger=False)
    finally:
        failing.released.set()
    without, with_failing = scripted_openai.bodies
    assert _without_volatile(with_failing) == _without_volatile(without)
    ours = [str(w.message) for w in caught if issubclass(w.category, TokenleanWarning)]
    assert len(ours) == 1 and layer_name in ours[0], ours
    assert ("time budget" if how == "overruns" else "index file vanished") in ours[0]
