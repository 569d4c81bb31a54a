"""Invariant: tokenlean never raises the app's output cap or any other spend setting.

For every preset and every adapter, whichever way the app set its cap (on the
wrapped model, on the call, on a binding, in the provider's extra body), the
body that reaches the provider names one output cap, no higher than the app's,
and every other setting that changes the bill (``n``, ``service_tier``,
reasoning effort) as the app set it. The budget layer may lower a cap; where
the app gave none it may set one (checked in the budget package's tests).
"""

from __future__ import annotations

from typing import Any

import pytest

from tokenlean.core.presets import PRESETS

CAP_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_the_apps_output_cap_is_never_raised(adapter: Any, cap_way: str, preset: str, mode: str,
                                              scripted_openai: Any, spec: Any) -> None:
    adapter(scripted_openai.url).run(mode=mode, kind="plain", cap_way=cap_way, preset=preset,
                                     ledger=False)
    assert scripted_openai.bodies, "the provider was never called"
    for body in scripted_openai.bodies:
        caps = {key: body[key] for key in CAP_KEYS if key in body}
        assert len(caps) == 1, f"the body must name exactly one output cap, got {caps}"
        assert next(iter(caps.values())) <= spec.APP_CAP, \
            f"the app's cap {spec.APP_CAP} was raised: {caps}"
        assert body.get("service_tier") == spec.SETTINGS["service_tier"]
        assert body.get("n", 1) == 1 and "reasoning_effort" not in body
