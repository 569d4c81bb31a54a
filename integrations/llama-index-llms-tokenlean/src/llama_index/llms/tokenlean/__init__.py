"""tokenlean for LlamaIndex LLMs: ``lean(llm)`` and ``lean_query_engine(index, llm)``."""

from llama_index.llms.tokenlean.base import LeanLLM, lean, lean_query_engine

__all__ = ["LeanLLM", "lean", "lean_query_engine"]
