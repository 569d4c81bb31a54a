"""LlamaIndex node postprocessor for tokenlean (layer 1: compression)."""

from llama_index.postprocessor.tokenlean.base import TokenleanPostprocessor

__all__ = ["TokenleanPostprocessor"]
