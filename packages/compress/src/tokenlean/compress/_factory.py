"""``lean(..., compress=...)``: the layer a keyword asks for (the ``tokenlean.layers``
entry point; see :mod:`tokenlean.core.presets`)."""

from __future__ import annotations

from ._layer import CompressLayer


def make_layer(choice: bool | str) -> CompressLayer:
    """``True``: the default method; a string names the method (``"llmlingua"``, ...)."""
    if choice is True:
        return CompressLayer()
    return CompressLayer(method=choice)  # type: ignore[arg-type]  # Compressor checks the name
