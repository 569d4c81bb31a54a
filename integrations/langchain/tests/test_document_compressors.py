from __future__ import annotations

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever

from langchain_tokenlean import TokenleanCompressor
from tokenlean.core import ConfigError, InvalidRequestError, count_tokens

DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. It is "
    "named after the engineer Gustave Eiffel, whose company designed and built the tower. It "
    "was constructed from 1887 to 1889 as the centerpiece of the 1889 World's Fair.",
    "The Amazon River in South America is the largest river by discharge volume of water in "
    "the world. The river system originates in the Andes mountains of Peru. It flows into the "
    "Atlantic Ocean.",
    "Johann Sebastian Bach was a German composer of the late Baroque period. He is known for "
    "the Brandenburg Concertos and the St Matthew Passion. Bach was born in Eisenach in 1685 "
    "and died in Leipzig in 1750.",
    "Photosynthesis is a process used by plants to convert light energy into chemical energy. "
    "Photosynthesis is largely responsible for the oxygen content of the atmosphere.",
]


class ListRetriever(BaseRetriever):
    """Returns every document of an in-memory list (the compressor does the work)."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return list(self.docs)


def _docs() -> list[Document]:
    return [Document(page_content=t, metadata={"source": f"doc{i}"}, id=str(i))
            for i, t in enumerate(DOCS)]


def test_is_a_document_compressor() -> None:
    assert isinstance(TokenleanCompressor(), BaseDocumentCompressor)


def test_compresses_documents_and_keeps_metadata() -> None:
    docs = _docs()
    out = TokenleanCompressor(ratio=4).compress_documents(docs, "Where did Bach die?")
    before = sum(count_tokens(d.page_content, model="gpt-4o").tokens for d in docs)
    after = sum(count_tokens(d.page_content, model="gpt-4o").tokens for d in out)
    assert after * 3 < before
    assert any("Leipzig" in d.page_content for d in out)
    bach = next(d for d in out if d.metadata["source"] == "doc2")
    assert bach.id == "2"
    info = bach.metadata["tokenlean_compress"]
    for start, end in info["spans"]:
        assert DOCS[2][start:end] in bach.page_content
    assert 0 < info["retention"] <= 1


async def test_async_twin() -> None:
    c = TokenleanCompressor(ratio=4)
    sync = c.compress_documents(_docs(), "When was Bach born?")
    asyn = await c.acompress_documents(_docs(), "When was Bach born?")
    assert [d.page_content for d in sync] == [d.page_content for d in asyn]


def test_empty_and_bad_input() -> None:
    c = TokenleanCompressor(ratio=4)
    assert c.compress_documents([], "q") == []
    with pytest.raises(InvalidRequestError):
        c.compress_documents(["not a document"], "q")
    with pytest.raises(ConfigError):
        TokenleanCompressor(ratio=0.5)


def test_keep_empty_keeps_one_output_per_document() -> None:
    out = TokenleanCompressor(ratio=4, keep_empty=True).compress_documents(
        _docs(), "Where did Bach die?")
    assert len(out) == len(DOCS)


def test_in_contextual_compression_retriever() -> None:
    classic = pytest.importorskip("langchain_classic.retrievers")
    retriever = classic.ContextualCompressionRetriever(
        base_compressor=TokenleanCompressor(ratio=4), base_retriever=ListRetriever(docs=_docs()))
    out = retriever.invoke("Who designed the Eiffel Tower?")
    assert any("Gustave Eiffel" in d.page_content for d in out)
    assert sum(len(d.page_content) for d in out) < sum(len(t) for t in DOCS) / 2


async def test_in_contextual_compression_retriever_async() -> None:
    classic = pytest.importorskip("langchain_classic.retrievers")
    retriever = classic.ContextualCompressionRetriever(
        base_compressor=TokenleanCompressor(ratio=4), base_retriever=ListRetriever(docs=_docs()))
    out = await retriever.ainvoke("Where does the Amazon river system originate?")
    assert any("Andes" in d.page_content for d in out)
