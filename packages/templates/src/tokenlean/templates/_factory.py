"""``lean(..., templates=...)``: the layer a keyword asks for (the ``tokenlean.layers``
entry point; see :mod:`tokenlean.core.presets`)."""

from __future__ import annotations

from tokenlean.core import ConfigError

from ._layer import TemplatesLayer


def make_layer(choice: bool | str) -> TemplatesLayer:
    """``True`` / ``"safe"``: the safe passes with the MiniLM meaning check;
    ``"whitespace"``: whitespace only (cannot change meaning: no check needed)."""
    mode = "safe" if choice is True else choice
    if mode not in {"safe", "whitespace"}:
        raise ConfigError(f"templates= takes True, 'safe' or 'whitespace', got {choice!r}")
    return TemplatesLayer(mode=mode, scorer=None if mode == "whitespace" else "minilm")
