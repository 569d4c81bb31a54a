from __future__ import annotations

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.llms.mock import MockLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode

from llama_index.postprocessor.tokenlean import TokenleanPostprocessor
from tokenlean.core import ConfigError, InvalidRequestError, count_tokens

TEXTS = [
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


def _nodes() -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata={"source": f"doc{i}"}),
                          score=1.0 - i / 10) for i, t in enumerate(TEXTS)]


class ListRetriever(BaseRetriever):
    """Returns every node of an in-memory list."""

    def __init__(self, nodes: list[NodeWithScore]) -> None:
        super().__init__()
        self._nodes = nodes

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return list(self._nodes)


def _tokens(nodes: list[NodeWithScore]) -> int:
    return sum(count_tokens(n.node.get_content(metadata_mode=MetadataMode.LLM),
                            model="gpt-4o").tokens for n in nodes)


def test_is_a_node_postprocessor() -> None:
    assert isinstance(TokenleanPostprocessor(), BaseNodePostprocessor)


def test_compresses_nodes_for_the_query() -> None:
    nodes = _nodes()
    out = TokenleanPostprocessor(ratio=4).postprocess_nodes(nodes, query_str="Where did Bach die?")
    assert _tokens(out) * 3 < _tokens(nodes)
    bach = next(n for n in out if n.node.node_id == "n2")
    assert "Leipzig" in bach.node.get_content() and bach.score == pytest.approx(0.8)
    info = bach.node.metadata["tokenlean_compress"]
    for start, end in info["spans"]:
        assert TEXTS[2][start:end] in bach.node.get_content()
    # our metadata never reaches the LLM's context
    assert "tokenlean_compress" not in bach.node.get_content(metadata_mode=MetadataMode.LLM)
    assert nodes[2].node.get_content() == TEXTS[2]  # the input nodes are not modified


async def test_async_twin() -> None:
    pp = TokenleanPostprocessor(ratio=4)
    sync = pp.postprocess_nodes(_nodes(), query_str="When was Bach born?")
    asyn = await pp.apostprocess_nodes(_nodes(), query_str="When was Bach born?")
    assert [n.node.get_content() for n in sync] == [n.node.get_content() for n in asyn]


def test_in_a_query_engine() -> None:
    engine = RetrieverQueryEngine.from_args(
        retriever=ListRetriever(_nodes()), llm=MockLLM(),
        node_postprocessors=[TokenleanPostprocessor(ratio=4)])
    response = engine.query("Who designed the Eiffel Tower?")
    texts = [n.node.get_content() for n in response.source_nodes]
    assert any("Gustave Eiffel" in t for t in texts)
    assert sum(map(len, texts)) < sum(map(len, TEXTS)) / 2


async def test_in_a_query_engine_async() -> None:
    engine = RetrieverQueryEngine.from_args(
        retriever=ListRetriever(_nodes()), llm=MockLLM(),
        node_postprocessors=[TokenleanPostprocessor(ratio=4)])
    response = await engine.aquery("Where does the Amazon river system originate?")
    assert any("Andes" in n.node.get_content() for n in response.source_nodes)


def test_non_text_nodes_pass_through_and_bad_input() -> None:
    image = NodeWithScore(node=ImageNode(image_url="file:///x.png", id_="img"), score=0.5)
    out = TokenleanPostprocessor(ratio=4).postprocess_nodes(
        [*_nodes(), image], query_str="Where did Bach die?")
    assert out[-1] is image
    assert TokenleanPostprocessor().postprocess_nodes([], query_str="q") == []
    with pytest.raises(InvalidRequestError):
        TokenleanPostprocessor().postprocess_nodes(["text"], query_str="q")  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        TokenleanPostprocessor(ratio=1)
