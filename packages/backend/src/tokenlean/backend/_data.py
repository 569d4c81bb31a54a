"""Text for calibration and evaluation: read JSONL files of the documented shapes, tokenise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenlean.core import InvalidRequestError, read_jsonl

__all__ = ["mixed_blocks", "read_texts", "token_blocks"]


def _text_of(row: dict[str, Any]) -> str | None:
    if isinstance(context := row.get("context"), str):  # qa shape: the passage
        return context
    if isinstance(row.get("messages"), list):  # prompts shape: prompt, then the response
        parts = [m.get("content", "") for m in row["messages"] if isinstance(m, dict)]
        if isinstance(row.get("response"), str):
            parts.append(row["response"])
        return "\n\n".join(p for p in parts if isinstance(p, str) and p)
    for key in ("text", "template", "a"):  # plain {"text"}, templates, pairs
        if isinstance(value := row.get(key), str):
            return value
    return None


def read_texts(path: str | Path, *, limit: int | None = None, skip: int = 0,
               min_chars: int = 200) -> list[str]:
    """Texts from a JSONL file (qa: ``context``; prompts: prompt + ``response``; ``text``).

    Rows are read in file order; the first ``skip`` usable rows are passed over
    (so calibration and evaluation can take disjoint rows of one file), texts
    shorter than ``min_chars`` and exact repeats are ignored (SQuAD repeats a
    context for each of its questions).
    """
    texts: list[str] = []
    seen: set[str] = set()
    skipped = 0
    for _, row in read_jsonl(path):
        text = _text_of(row)
        if text is None or len(text) < min_chars or text in seen:
            continue
        seen.add(text)
        if skipped < skip:
            skipped += 1
            continue
        texts.append(text)
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise InvalidRequestError(f"{path} has no usable text rows (qa `context`, prompts "
                                  f"`messages`+`response`, or `text`, >= {min_chars} chars)")
    return texts


def token_blocks(tokenizer: Any, texts: list[str], *, seq_len: int, max_blocks: int | None = None
                 ) -> Any:
    """Concatenate the texts (EOS between them) and cut into ``[N, seq_len]`` token blocks."""
    import torch

    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    ids: list[int] = []
    needed = None if max_blocks is None else max_blocks * seq_len
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(eos)
        if needed is not None and len(ids) >= needed:
            break
    n = len(ids) // seq_len
    if max_blocks is not None:
        n = min(n, max_blocks)
    if n == 0:
        raise InvalidRequestError(f"not enough text for one block of {seq_len} tokens")
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def mixed_blocks(tokenizer: Any, paths: list[str | Path], *, seq_len: int, n_blocks: int,
                 skip_blocks: int = 0) -> Any:
    """Up to ``n_blocks`` distinct ``[N, seq_len]`` blocks drawn round-robin from several files.

    Each file is read in order and cut into blocks (:func:`token_blocks`); its
    first ``skip_blocks`` blocks are left out (they were used for something
    else, e.g. importance scores). Interleaving the files keeps the mix even
    whatever ``n_blocks`` is, so a distillation run that stops early still saw
    every kind of text. Fewer blocks come back when the files run out.
    """
    import torch

    if not paths:
        raise InvalidRequestError("no calibration files given")
    per_file = -(-n_blocks // len(paths)) + skip_blocks
    pools = []
    for path in paths:
        blocks = token_blocks(tokenizer, read_texts(path), seq_len=seq_len,
                              max_blocks=per_file)[skip_blocks:]
        if blocks.shape[0] == 0:
            raise InvalidRequestError(f"{path} has no calibration text left after "
                                      f"{skip_blocks} blocks")
        pools.append(blocks)
    rows = [pool[i] for i in range(max(p.shape[0] for p in pools)) for pool in pools
            if i < pool.shape[0]]
    return torch.stack(rows[:n_blocks])
