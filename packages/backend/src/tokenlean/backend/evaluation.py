"""Evaluate a (pruned) model: perplexity, agreement and KL against a reference, speed, size."""

from __future__ import annotations

import time
from typing import Any

from tokenlean.core import ConfigError

__all__ = ["compare_speed", "evaluate", "model_size", "quality", "speculative", "speed"]


def model_size(model: Any) -> dict[str, int]:
    """``{"params": ..., "memory_bytes": ...}`` (parameters + buffers, tied weights once)."""
    params = sum(p.numel() for p in model.parameters())
    mem = sum(p.numel() * p.element_size() for p in model.parameters())
    mem += sum(b.numel() * b.element_size() for b in model.buffers())
    return {"params": int(params), "memory_bytes": int(mem)}


def _encode(tokenizer: Any, texts: list[str], max_tokens: int) -> list[Any]:
    import torch

    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
        if len(ids) >= 2:
            out.append(torch.tensor([ids], dtype=torch.long))
    if not out:
        raise ConfigError("no evaluation text has at least 2 tokens")
    return out


def quality(model: Any, tokenizer: Any, texts: list[str], *, reference: Any = None,
            max_tokens: int = 256) -> dict[str, float]:
    """Perplexity on ``texts``; with a ``reference`` model also its perplexity,
    top-1 next-token agreement and mean KL(reference || model) per token.

    Each text is scored on its own (no packing), truncated to ``max_tokens``.
    """
    import torch
    import torch.nn.functional as F

    nll = ref_nll = kl = agree = 0.0
    n = 0
    dev = next(model.parameters()).device
    with torch.no_grad():
        for ids in _encode(tokenizer, texts, max_tokens):
            ids = ids.to(dev)
            logp = F.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
            target = ids[0, 1:]
            nll += -logp.gather(1, target[:, None]).sum().item()
            if reference is not None:
                rdev = next(reference.parameters()).device
                ref_logp = F.log_softmax(reference(ids.to(rdev)).logits[0, :-1].float(),
                                         dim=-1).to(dev)
                ref_nll += -ref_logp.gather(1, target[:, None]).sum().item()
                kl += (ref_logp.exp() * (ref_logp - logp)).sum().item()
                agree += (ref_logp.argmax(-1) == logp.argmax(-1)).sum().item()
            n += target.numel()
    result = {"ppl": float(torch.tensor(nll / n).exp()), "eval_tokens": n}
    if reference is not None:
        result.update({"ppl_reference": float(torch.tensor(ref_nll / n).exp()),
                       "agreement": agree / n, "kl": kl / n})
    return result


def _time_one(model: Any, ids: Any, new_tokens: int, pad: int) -> tuple[float, float]:
    """Seconds for a prefill of ``ids`` and for ``new_tokens`` greedy tokens after it."""
    import torch

    sync = torch.cuda.synchronize if ids.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    model(ids, use_cache=True)
    sync()
    t1 = time.perf_counter()
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
    sync()
    t2 = time.perf_counter()
    return t1 - t0, max((t2 - t1) - (t1 - t0), 1e-9)


def compare_speed(models: list[Any], tokenizer: Any, texts: list[str], *, prompt_tokens: int = 128,
                  new_tokens: int = 32, runs: int = 3, repeats: int = 1) -> list[dict[str, float]]:
    """Prefill and greedy-decode tokens/s at batch size 1 for several models, interleaved.

    The models take turns on every prompt (model 1, model 2, ..., then the next
    prompt), so a change in machine load during the measurement hits all of them
    alike instead of whichever ran last. Prefill: one forward pass over
    ``prompt_tokens`` tokens; decode: ``new_tokens`` generated tokens after that
    prompt with the KV cache, timed as generate time minus one prefill. Each
    model's figure is the **median** over the ``runs`` prompts x ``repeats``.
    """
    import statistics

    import torch

    if runs < 1 or repeats < 1 or new_tokens < 2:
        raise ConfigError("runs and repeats must be >= 1 and new_tokens >= 2")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [ids[:, :prompt_tokens] for ids in _encode(tokenizer, texts[:runs], prompt_tokens)]
    samples: list[tuple[list[float], list[float]]] = [([], []) for _ in models]
    devices = [next(model.parameters()).device for model in models]
    with torch.no_grad():
        for model, device in zip(models, devices, strict=True):  # warm-up
            model(prompts[0][:, :8].to(device))
        for _ in range(repeats):
            for ids in prompts:
                for model, device, (pre, dec) in zip(models, devices, samples, strict=True):
                    pre_s, dec_s = _time_one(model, ids.to(device), new_tokens, pad)
                    pre.append(ids.shape[1] / pre_s)
                    dec.append((new_tokens - 1) / dec_s)  # token 1 comes from the prefill
    return [{"prefill_tok_s": statistics.median(pre), "decode_tok_s": statistics.median(dec),
             "timed_runs": len(pre)} for pre, dec in samples]


def speed(model: Any, tokenizer: Any, texts: list[str], *, prompt_tokens: int = 128,
          new_tokens: int = 32, runs: int = 3) -> dict[str, float]:
    """Prefill and greedy-decode tokens/s of one model (:func:`compare_speed` with one model)."""
    return compare_speed([model], tokenizer, texts, prompt_tokens=prompt_tokens,
                         new_tokens=new_tokens, runs=runs)[0]


def speculative(model: Any, draft: Any, tokenizer: Any, texts: list[str], *,
                prompt_tokens: int = 64, new_tokens: int = 32, runs: int = 3,
                draft_tokens: int | None = None) -> dict[str, Any]:
    """Greedy decoding of ``model`` alone vs with ``draft`` as assistant (speculative).

    Uses transformers' assisted generation (``generate(assistant_model=draft)``),
    which verifies every drafted token with ``model``, so greedy output is
    unchanged; ``identical`` checks that on every prompt. ``draft_tokens``: a
    constant number of drafted tokens per round (default: transformers'
    heuristic schedule). Returns tokens/s for both and the speed-up.

    A bound worth knowing: if a draft token costs the fraction ``c`` of a dense
    decode step, speculative decoding can be at most ``1 / c`` times faster,
    even when every drafted token is accepted and verification is free.
    """
    if draft_tokens is not None and draft_tokens < 1:
        raise ConfigError("draft_tokens must be >= 1")
    config = draft.generation_config
    saved = (getattr(config, "num_assistant_tokens", None),
             getattr(config, "num_assistant_tokens_schedule", None))
    if draft_tokens is not None:
        config.num_assistant_tokens = draft_tokens
        config.num_assistant_tokens_schedule = "constant"
    try:
        result = _assisted(model, draft, tokenizer, texts, prompt_tokens=prompt_tokens,
                           new_tokens=new_tokens, runs=runs)
    finally:
        config.num_assistant_tokens, config.num_assistant_tokens_schedule = saved
    result["draft_tokens"] = draft_tokens if draft_tokens is not None else "heuristic"
    return result


def _assisted(model: Any, draft: Any, tokenizer: Any, texts: list[str], *, prompt_tokens: int,
              new_tokens: int, runs: int) -> dict[str, Any]:
    import torch

    dev = next(model.parameters()).device
    prompts = [ids[:, :prompt_tokens].to(dev)
               for ids in _encode(tokenizer, texts[:runs], prompt_tokens)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    plain_t = spec_t = 0.0
    tokens = 0
    identical = True
    with torch.no_grad():
        for ids in prompts:
            kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                          do_sample=False, pad_token_id=pad)
            sync()
            t0 = time.perf_counter()
            plain = model.generate(ids, **kwargs)
            sync()
            t1 = time.perf_counter()
            spec = model.generate(ids, assistant_model=draft, **kwargs)
            sync()
            t2 = time.perf_counter()
            identical = identical and torch.equal(plain, spec)
            tokens += plain.shape[1] - ids.shape[1]
            plain_t += t1 - t0
            spec_t += t2 - t1
    return {"identical": identical, "tok_s_plain": tokens / plain_t,
            "tok_s_speculative": tokens / spec_t, "speedup": plain_t / spec_t,
            "prompts": len(prompts), "new_tokens": new_tokens}


def evaluate(model: Any, tokenizer: Any, texts: list[str], *, reference: Any = None,
             max_tokens: int = 256, speed_runs: int = 3, new_tokens: int = 32) -> dict[str, Any]:
    """Size, quality (vs ``reference`` when given) and speed of ``model`` on ``texts``."""
    result: dict[str, Any] = dict(model_size(model))
    result.update(quality(model, tokenizer, texts, reference=reference, max_tokens=max_tokens))
    if speed_runs > 0:
        result.update(speed(model, tokenizer, texts, runs=speed_runs, new_tokens=new_tokens))
    return result
