"""A LlamaIndex RAG pipeline, run raw and then through tokenlean, side by side.

Ordinary LlamaIndex: a ``VectorStoreIndex`` over a few local documents
(embedded offline with WordLlama, the weights inside its wheel), a query
engine, an ``OpenAILike`` LLM pointed at tokenlean's local server
(SmolLM2-135M-Instruct). The lean run changes one line:

    engine = index.as_query_engine(llm=llm, similarity_top_k=3)                 # before
    engine = lean_query_engine(index, llm, similarity_top_k=3, preset="max-savings",
                               postprocessors=[TokenleanPostprocessor(ratio=2)])  # after

Both runs are priced as gpt-4o. Run:

    .venv/bin/python examples/llamaindex_rag.py [--questions N] [--base-url URL]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.llms.openai_like import OpenAILike
from pydantic import PrivateAttr

from llama_index.llms.tokenlean import lean, lean_query_engine
from llama_index.postprocessor.tokenlean import TokenleanPostprocessor
from tokenlean.cache import WordLlamaEmbedder
from tokenlean.core import SQLiteLedger
from tokenlean.server import DEFAULT_MODEL_NAME

from _shared import PRICED_AS, local_server, parse_args, report, totals

DOCUMENTS = [
    "The Lumen 3 desk lamp has a 9 W LED that lasts about 25,000 hours. It offers five "
    "brightness levels and a warm-to-cool colour dial from 2700 K to 6500 K.",
    "Lumen lamps come with a two-year warranty. The warranty covers the LED, the switch and "
    "the arm joints; it does not cover damage from dropping the lamp.",
    "The Lumen 3 charges over USB-C and its battery gives six hours of light at medium "
    "brightness. A full charge takes two and a half hours.",
    "Orders from the Lumen web shop ship the next working day. Shipping is free above 50 "
    "euros; below that it costs 4.90 euros inside the EU.",
    "The Lumen Clip is a small reading lamp that clips onto a book or a shelf. It weighs "
    "120 g and runs for ten hours on a charge.",
    "Returns are free within 30 days. Lamps must come back with their USB-C cable and in "
    "their original box.",
]

QUESTIONS = [
    "How long does the Lumen 3 battery last?",
    "What does the warranty cover?",
    "How long does the Lumen 3 battery last?",  # an exact repeat
    "How much is shipping below 50 euros?",
    "What does the Clip weigh?",
    "What does the warranty cover?",
]


class WordLlamaEmbedding(BaseEmbedding):
    """LlamaIndex embedding over tokenlean's offline WordLlama embedder."""

    _embedder: Any = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="wordllama", **kwargs)
        self._embedder = WordLlamaEmbedder()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0].tolist()  # type: ignore[no-any-return]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(__doc__, argv, questions=len(QUESTIONS), max_tokens=40)
    questions = QUESTIONS[: args.questions]

    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCUMENTS],
                                            embed_model=WordLlamaEmbedding())
    with local_server(args.base_url) as base_url, tempfile.TemporaryDirectory() as tmp:
        llm = OpenAILike(model=DEFAULT_MODEL_NAME, api_base=base_url, api_key="local",
                         is_chat_model=True, context_window=2048, max_tokens=args.max_tokens,
                         temperature=0)

        # raw: the app as it is (lean() with preset="off" only keeps the books)
        raw_ledger = SQLiteLedger(Path(tmp) / "raw.sqlite")
        raw = index.as_query_engine(llm=lean(llm, preset="off", model=PRICED_AS,
                                             ledger=raw_ledger), similarity_top_k=3)
        raw_answers = [str(raw.query(q)) for q in questions]

        # lean: one line changed
        lean_ledger = SQLiteLedger(Path(tmp) / "lean.sqlite")
        engine = lean_query_engine(index, llm, similarity_top_k=3, preset="max-savings",
                                   model=PRICED_AS, ledger=lean_ledger,
                                   postprocessors=[TokenleanPostprocessor(ratio=2)])
        lean_answers = [str(engine.query(q)) for q in questions]
        result = {"raw": totals(raw_ledger), "lean": totals(lean_ledger)}

    report(result, questions, raw_answers, lean_answers)
    return result


if __name__ == "__main__":
    main()
