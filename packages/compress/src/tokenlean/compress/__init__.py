"""tokenlean.compress: layer 1, question-aware input compression.

```python
from tokenlean.compress import Compressor

result = Compressor(ratio=5).compress(documents, question="Who won in 1901?")
result.text, result.tokens_before, result.tokens_after, result.kept, result.retention
```

The default method (``"tokenlean"``) is embedded: rarity-weighted BM25, WordLlama
static embeddings, answer-type cues and entity following, combined by a small
trained ranker; no torch, nothing downloaded. Baselines (``"random"``,
``"embeddings"``) and the LLMLingua family (``"llmlingua"``, ``"longllmlingua"``)
are methods of the same interface. :class:`CompressLayer` plugs it into a
:class:`tokenlean.core.Pipeline`.
"""

from ._compressor import Compressor, CompressResult, Method, Span, compress
from ._history import HistoryCompressor, HistoryResult
from ._layer import CompressLayer

__all__ = [
    "CompressLayer",
    "CompressResult",
    "Compressor",
    "HistoryCompressor",
    "HistoryResult",
    "Method",
    "Span",
    "compress",
]
