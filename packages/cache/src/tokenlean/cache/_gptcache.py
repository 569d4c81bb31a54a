"""For GPTCache users: tokenlean's embedders and false-hit guard inside a GPTCache
setup, and tokenlean reading a GPTCache SQLite store.

GPTCache (``pip install tokenlean-cache[gptcache]``, which also brings
``faiss-cpu`` so GPTCache never pip-installs it at run time) stays optional:
nothing here imports it. Its plug points are duck-typed:

* :class:`GPTCacheEmbedding` -- ``embedding_func=`` (``to_embeddings`` +
  ``dimension``), backed by WordLlama, MiniLM or any tokenlean embedder;
* :class:`GuardEvaluation` -- ``similarity_evaluation=``: 1.0 when tokenlean's
  guard accepts the stored question for the new one, else 0.0, so GPTCache's
  ``similarity_threshold`` (any value in (0, 1]) serves exactly the guard's
  hits instead of every neighbour within a distance;
* :func:`import_gptcache_sqlite` -- copies the question/answer rows of a
  GPTCache SQLite store (``CacheBase("sqlite")``) into a :class:`ResponseCache`;
  :func:`read_gptcache_sqlite` only reads them (plain ``sqlite3``).

What GPTCache does by default, for comparison (gptcache 0.1.44): ``cache.init()``
with no arguments is an *exact* cache (the raw prompt string is the key). Its
documented semantic setup (an embedding, ``CacheBase("sqlite")`` +
``VectorBase("faiss")``, ``SearchDistanceEvaluation()``) serves the nearest
stored question whenever ``4 - squared L2 >= 4 * similarity_threshold`` with
``similarity_threshold=0.8``: for unit vectors ``cosine >= 0.6``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tokenlean.core import ConfigError, InvalidRequestError, Message, Request, Response

from ._embed import Embedder, get_embedder
from ._guard import FalseHitGuard

__all__ = ["GPTCacheEmbedding", "GuardEvaluation", "import_gptcache_sqlite",
           "read_gptcache_sqlite"]


class GPTCacheEmbedding:
    """A tokenlean embedder as GPTCache's ``embedding_func`` (unit float32 vectors)."""

    def __init__(self, embedder: str | Embedder | Any = "wordllama") -> None:
        self.embedder = get_embedder(embedder)

    @property
    def dimension(self) -> int:
        return int(self.embedder.dim)

    def to_embeddings(self, data: Any, **_: Any) -> np.ndarray:
        return self.embedder.embed([str(data)])[0]

    __call__ = to_embeddings


class GuardEvaluation:
    """tokenlean's false-hit guard as GPTCache's ``similarity_evaluation``."""

    def __init__(self, guard: FalseHitGuard | None = None) -> None:
        self.guard = guard if guard is not None else FalseHitGuard()

    def evaluation(self, src_dict: dict[str, Any], cache_dict: dict[str, Any],
                   **_: Any) -> float:
        query, stored = src_dict.get("question"), cache_dict.get("question")
        if not isinstance(query, str) or not isinstance(stored, str):
            return 0.0
        return 1.0 if self.guard.check(query, [stored])[0].accepted else 0.0

    def range(self) -> tuple[float, float]:
        return 0.0, 1.0


def read_gptcache_sqlite(path: str | Path, *, table_prefix: str = "gptcache"
                         ) -> Iterator[tuple[str, str]]:
    """(question, answer) of every live row of a GPTCache SQLite store
    (string answers only; deleted rows skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no GPTCache SQLite store at {path}")
    if not table_prefix.isidentifier():
        raise ConfigError(f"table_prefix must be an identifier, got {table_prefix!r}")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            f"SELECT q.question, a.answer FROM {table_prefix}_question q "
            f"JOIN {table_prefix}_answer a ON a.question_id = q.id "
            "WHERE COALESCE(q.deleted, 0) = 0 AND a.answer_type = 0 ORDER BY q.id, a.id"
        ).fetchall()
    except sqlite3.Error as exc:
        raise InvalidRequestError(f"{path} is not a GPTCache SQLite store: {exc}") from exc
    finally:
        con.close()
    for question, answer in rows:
        if isinstance(question, str) and isinstance(answer, str):
            yield question, answer


def import_gptcache_sqlite(cache: Any, path: str | Path, *, model: str,
                           tenant: str = "default", temperature: float | None = 0.0,
                           table_prefix: str = "gptcache") -> int:
    """Store each (question, answer) of a GPTCache SQLite store in ``cache`` (a
    :class:`ResponseCache`) as a one-turn ``model`` request of ``tenant`` at
    ``temperature``; returns how many were stored. GPTCache keeps no model or
    parameters: choose them (a sampled temperature stores nothing unless the cache
    has ``cache_sampled=True``)."""
    n = 0
    for question, answer in read_gptcache_sqlite(path, table_prefix=table_prefix):
        request = Request(messages=(Message(role="user", content=question),), model=model,
                          tenant=tenant, temperature=temperature)
        n += cache.update(request, Response(text=answer, model=model)) is None
    return n
