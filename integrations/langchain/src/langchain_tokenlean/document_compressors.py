"""``TokenleanCompressor``: a LangChain ``BaseDocumentCompressor``.

Drop it into ``ContextualCompressionRetriever`` to cut retrieved documents to a
token target for the query::

    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_tokenlean import TokenleanCompressor

    retriever = ContextualCompressionRetriever(
        base_compressor=TokenleanCompressor(ratio=5), base_retriever=base)

Each returned document keeps its metadata plus ``tokenlean_compress``: the
token counts before/after, the kept character spans of the original
``page_content`` (for citations) and the retention estimate. Documents of which
nothing was kept are dropped (``keep_empty=True`` keeps them, empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr

from tokenlean.compress import Compressor, CompressResult
from tokenlean.core import InvalidRequestError

__all__ = ["TokenleanCompressor"]


class TokenleanCompressor(BaseDocumentCompressor):
    """Question-aware compression of retrieved documents (tokenlean layer 1).

    Args:
        ratio: keep about ``1/ratio`` of the documents' tokens (default 5 when
            ``max_tokens`` is not given either).
        max_tokens: hard cap on the compressed documents' tokens.
        method: ``"tokenlean"`` (embedded default), ``"embeddings"``,
            ``"random"``, ``"llmlingua"``, ``"longllmlingua"``.
        model: whose tokenizer counts tokens (default ``gpt-4o``).
        keep_empty: keep documents of which nothing survived (as empty documents).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=False)

    ratio: float | None = None
    max_tokens: int | None = None
    method: str = "tokenlean"
    model: str = "gpt-4o"
    force: tuple[str, ...] = Field(default_factory=tuple)
    keep_empty: bool = False
    _compressor: Compressor = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # built here, not in a validator, so a bad option raises tokenlean's ConfigError
        # (hence `method` is a plain str field, checked by Compressor)
        self._compressor = Compressor(method=self.method,  # type: ignore[arg-type]
                                      ratio=self.ratio, max_tokens=self.max_tokens,
                                      model=self.model, force=self.force)

    # ---- pure helpers shared by the sync and async paths -------------------

    @staticmethod
    def _texts(documents: Sequence[Document]) -> list[str]:
        texts = []
        for i, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise InvalidRequestError(
                    f"documents[{i}] is {type(doc).__name__}, not a langchain Document")
            texts.append(doc.page_content)
        return texts

    def _documents(self, documents: Sequence[Document],
                   result: CompressResult) -> list[Document]:
        out: list[Document] = []
        for i, (doc, text) in enumerate(zip(documents, result.documents, strict=True)):
            if not text and not self.keep_empty:
                continue
            spans = [(s.start, s.end) for s in result.kept if s.doc == i]
            meta = {**doc.metadata, "tokenlean_compress": {
                "method": result.method,
                "spans": spans,
                "tokens_before_all": result.tokens_before,
                "tokens_after_all": result.tokens_after,
                "retention": result.retention,
            }}
            out.append(Document(page_content=text, metadata=meta, id=doc.id))
        return out

    # ---- BaseDocumentCompressor -------------------------------------------

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        """Compress ``documents`` for ``query`` to the target."""
        if not documents:
            return []
        result = self._compressor.compress(self._texts(documents), query or None)
        return self._documents(documents, result)

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Callbacks | None = None) -> Sequence[Document]:
        """Async twin of :meth:`compress_documents`."""
        if not documents:
            return []
        result = await self._compressor.acompress(self._texts(documents), query or None)
        return self._documents(documents, result)
