"""``TokenleanPostprocessor``: compress retrieved nodes for the query.

    from llama_index.postprocessor.tokenlean import TokenleanPostprocessor

    engine = index.as_query_engine(node_postprocessors=[TokenleanPostprocessor(ratio=5)])

Text nodes are compressed together to the target (the best sentences of all of
them, question-aware); nodes of which nothing survived are dropped; other node
kinds (images) pass through. Each compressed node carries
``metadata["tokenlean_compress"]`` (kept character spans of its original text,
token counts, retention estimate), excluded from what the LLM and the embedder
see.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import (
    ImageNode,
    MetadataMode,
    NodeWithScore,
    QueryBundle,
    TextNode,
)

from tokenlean.compress import Compressor, CompressResult
from tokenlean.core import InvalidRequestError

__all__ = ["TokenleanPostprocessor"]

_META_KEY = "tokenlean_compress"


class TokenleanPostprocessor(BaseNodePostprocessor):
    """Question-aware compression of retrieved nodes (tokenlean layer 1).

    Args:
        ratio: keep about ``1/ratio`` of the nodes' tokens (default 5 when
            ``max_tokens`` is not given either).
        max_tokens: hard cap on the compressed nodes' tokens.
        method: ``"tokenlean"`` (embedded default), ``"embeddings"``, ``"random"``,
            ``"llmlingua"``, ``"longllmlingua"``.
        model: whose tokenizer counts tokens (default ``gpt-4o``).
        keep_empty: keep nodes of which nothing survived (with empty text).
    """

    ratio: float | None = Field(default=None, description="Target compression ratio (> 1).")
    max_tokens: int | None = Field(default=None, description="Hard cap on kept tokens.")
    method: str = Field(default="tokenlean", description="Compression method.")
    model: str = Field(default="gpt-4o", description="Model whose tokenizer counts tokens.")
    force: tuple[str, ...] = Field(default=(), description="Force presets or regexes.")
    keep_empty: bool = Field(default=False, description="Keep nodes emptied by compression.")
    _compressor: Compressor = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # built after validation so a bad option raises tokenlean's ConfigError
        # (hence `method` is a plain str field, checked by Compressor)
        self._compressor = Compressor(method=self.method,  # type: ignore[arg-type]
                                      ratio=self.ratio, max_tokens=self.max_tokens,
                                      model=self.model, force=self.force)

    @classmethod
    def class_name(cls) -> str:
        return "TokenleanPostprocessor"

    # ---- pure helpers (template method: validate, then _do) ---------------

    @staticmethod
    def _split(nodes: list[NodeWithScore]) -> tuple[list[int], list[str]]:
        idx, texts = [], []
        for i, nws in enumerate(nodes):
            if not isinstance(nws, NodeWithScore):
                raise InvalidRequestError(f"nodes[{i}] is {type(nws).__name__}, not NodeWithScore")
            if isinstance(nws.node, TextNode) and not isinstance(nws.node, ImageNode):
                idx.append(i)
                texts.append(nws.node.get_content(metadata_mode=MetadataMode.NONE))
        return idx, texts

    @staticmethod
    def _query(query_bundle: QueryBundle | None) -> str | None:
        return query_bundle.query_str if query_bundle is not None else None

    def _rebuild(self, nodes: list[NodeWithScore], idx: list[int],
                 result: CompressResult) -> list[NodeWithScore]:
        replaced: dict[int, NodeWithScore | None] = {}
        for k, i in enumerate(idx):
            text = result.documents[k]
            if not text and not self.keep_empty:
                replaced[i] = None
                continue
            node = nodes[i].node.model_copy(deep=True)
            node.set_content(text)
            node.metadata[_META_KEY] = {
                "method": result.method,
                "spans": [(s.start, s.end) for s in result.kept if s.doc == k],
                "tokens_before_all": result.tokens_before,
                "tokens_after_all": result.tokens_after,
                "retention": result.retention,
            }
            for keys in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
                if _META_KEY not in keys:
                    keys.append(_META_KEY)
            replaced[i] = NodeWithScore(node=node, score=nodes[i].score)
        out: list[NodeWithScore] = []
        for i, nws in enumerate(nodes):
            new = replaced.get(i, nws)
            if new is not None:
                out.append(new)
        return out

    # ---- BaseNodePostprocessor -------------------------------------------

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        idx, texts = self._split(list(nodes))
        if not texts:
            return list(nodes)
        result = self._compressor.compress(texts, self._query(query_bundle))
        return self._rebuild(list(nodes), idx, result)

    async def _apostprocess_nodes(self, nodes: list[NodeWithScore],
                                  query_bundle: QueryBundle | None = None
                                  ) -> list[NodeWithScore]:
        idx, texts = self._split(list(nodes))
        if not texts:
            return list(nodes)
        result = await self._compressor.acompress(texts, self._query(query_bundle))
        return self._rebuild(list(nodes), idx, result)
