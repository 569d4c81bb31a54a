"""Keywords and presets resolve to the real layer packages (all installed in the workspace)."""

from __future__ import annotations

import pytest

from tokenlean.core import ConfigError
from tokenlean.core.presets import LAYER_ORDER, build_layers


def names(layers: list) -> list[str]:
    return [layer.name for layer in layers]


def test_safe_preset_turns_on_only_answer_preserving_layers() -> None:
    from tokenlean.core import Message, Request

    layers = build_layers()
    assert names(layers) == ["cache", "templates"]
    system = "I want you to act as   a translator.\n\n\n\nPlease   be concise."
    request = Request(model="gpt-4o", messages=[Message(role="system", content=system),
                                                Message(role="user", content="Bonjour")])
    out = layers[1].process(request)
    text = out.messages[0].text
    assert text.split() == system.split()  # whitespace only: every word kept, in order
    assert len(text) < len(system)


def test_max_savings_turns_everything_on_in_pipeline_order() -> None:
    assert names(build_layers(preset="max-savings")) == list(LAYER_ORDER)


def test_keywords_override_the_preset() -> None:
    assert names(build_layers(preset="off", compress=True)) == ["compress"]
    assert names(build_layers(cache=False, templates=False)) == []


@pytest.mark.parametrize("kwargs", [{"preset": "fastest"}, {"cache": "fuzzy"},
                                    {"templates": "aggressive"}, {"budget": 7},
                                    {"speed": True}])
def test_bad_choices_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        build_layers(**kwargs)


def test_layers_resolve_only_through_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no ``tokenlean.layers`` entry point (as when no layer package is installed) a
    preset leaves its layers out and a keyword names the extra to install."""
    from tokenlean.core import MissingExtraError, presets

    monkeypatch.setattr(presets, "entry_points", lambda **_: [])
    assert build_layers(preset="max-savings") == []
    with pytest.raises(MissingExtraError) as info:
        build_layers(preset="off", cache=True)
    assert info.value.extra == "cache" and "tokenlean[cache]" in str(info.value)


def test_max_false_hit_rate_reaches_the_semantic_cache_built_here() -> None:
    cache = build_layers(cache="semantic", max_false_hit_rate=0.01)[0]
    assert cache.name == "cache" and cache.max_false_hit_rate == 0.01
    assert build_layers(preset="max-savings", max_false_hit_rate=0.2)[0].max_false_hit_rate == 0.2
    # not given: the cache's own default
    from tokenlean.cache import ResponseCache

    default = ResponseCache().max_false_hit_rate
    assert build_layers(cache="semantic")[0].max_false_hit_rate == default


@pytest.mark.parametrize("bad", [0, 1.5, True, "tight"])
def test_a_bad_max_false_hit_rate_is_a_config_error_naming_it(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_false_hit_rate"):
        build_layers(cache="semantic", max_false_hit_rate=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"preset": "off"}, {"cache": False},
                                    {"cache": "exact"}, {}],
                         ids=["off", "no-cache", "exact", "safe-is-exact"])
def test_max_false_hit_rate_needs_a_semantic_cache_built_here(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="max_false_hit_rate=0.01"):
        build_layers(max_false_hit_rate=0.01, **kwargs)


def test_max_false_hit_rate_with_a_cache_object_is_a_config_error() -> None:
    from tokenlean.cache import ResponseCache

    with pytest.raises(ConfigError, match="takes it itself"):
        build_layers(cache=ResponseCache(semantic=False), max_false_hit_rate=0.01)
