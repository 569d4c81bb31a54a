"""`tokenlean bench attention`: prefill latency of attention implementations, prints JSON.

The same command (and JSON) on CPU and on CUDA: for each implementation x
context, the median prefill latency, tokens/s, peak memory and the largest
logit difference against eager attention at the same context.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import threading
import time
from typing import Any

import typer

from tokenlean.core import ConfigError

_DEFAULT_CONTEXTS = [1024, 2048, 4096, 8192]
_DEFAULT_IMPLS = ["eager", "sdpa", "flash_attention_2", "tokenlean"]
_CPU_MEMORY = ("peak RSS above the pre-run RSS, sampled every 2 ms from /proc/self/statm; glibc "
               "set to mmap blocks >= 64 KiB and trimmed before each run, so freed tensors "
               "leave the RSS")
_CUDA_MEMORY = "torch.cuda.max_memory_allocated above the pre-run allocation"
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


@functools.cache
def _libc() -> Any:
    """glibc through ctypes (looked up once), or None (another C library: the RSS then
    keeps freed memory)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


class _RssPeak:
    """Peak resident set size while the block runs, sampled by a thread (Linux /proc)."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self.base = self.peak = self._rss()

    def _rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * self._page

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> _RssPeak:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def _unavailable(impl: str, device: str, dtype: str) -> str | None:
    """Why ``impl`` cannot run here, or None."""
    from tokenlean.backend import flash_attn_available

    if impl.startswith("flash_attention"):
        if device != "cuda":
            return f"FlashAttention needs a CUDA device (device is {device})"
        if impl == "flash_attention_2" and not flash_attn_available():
            return "the flash-attn package is not installed"
        if dtype not in ("float16", "bfloat16"):
            return f"FlashAttention needs float16/bfloat16 (dtype is {dtype})"
    return None


def _time_prefill(model: Any, ids: Any, *, runs: int, warmup: int, keep: int, device: str
                  ) -> tuple[list[float], Any, int | None]:
    """(latencies, logits of the last ``keep`` positions, peak bytes) of ``runs`` prefills."""
    import torch

    def once() -> Any:
        with torch.inference_mode():
            return model(input_ids=ids, use_cache=False, logits_to_keep=keep).logits

    for _ in range(warmup):
        once()
    times: list[float] = []
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(runs):
            start = time.perf_counter()
            logits = once()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return times, logits.float().cpu(), torch.cuda.max_memory_allocated() - base
    peak: int | None = None
    libc = _libc()
    for _ in range(runs):
        if libc is not None:
            libc.malloc_trim(0)
        try:
            rss: _RssPeak | None = _RssPeak()
        except (OSError, ValueError):  # no /proc (not Linux): no memory number
            rss = None
        start = time.perf_counter()
        if rss is None:
            logits = once()
        else:
            with rss:
                logits = once()
        times.append(time.perf_counter() - start)
        if rss is not None:
            peak = max(peak or 0, rss.peak - rss.base)
        del rss
    return times, logits.float(), peak


def _run(model: Any, ids: Any, impl: str, *, device: str, dtype: str, runs: int, warmup: int,
         keep: int) -> dict[str, Any]:
    import torch

    from tokenlean.backend.attention import _kernel_for

    row: dict[str, Any] = {"impl": impl, "context": int(ids.shape[1])}
    reason = _unavailable(impl, device, dtype)
    if reason is None:
        try:
            model.set_attn_implementation(impl)
        except (ValueError, ImportError, KeyError) as exc:
            reason = f"transformers refused it: {exc}"
    if reason is not None:
        row.update(status="unavailable", reason=reason)
        return row
    if impl == "tokenlean":
        row["kernel"] = _kernel_for(device, dtype)  # the kernel the tokenlean path picks here
    try:
        times, logits, peak = _time_prefill(model, ids, runs=runs, warmup=warmup, keep=keep,
                                            device=device)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        if device == "cuda":
            torch.cuda.empty_cache()
        row.update(status="unavailable", reason=f"out of memory: {str(exc)[:200]}")
        return row
    median = statistics.median(times)
    row.update(status="ok", prefill_s_median=round(median, 6),
               prefill_s_runs=[round(t, 6) for t in times],
               tokens_per_s=round(ids.numel() / median, 1), peak_memory_bytes=peak)
    row["_logits"] = logits
    return row


def bench_attention(
    data: str = typer.Argument(
        ..., help="JSONL whose texts fill the contexts (qa / prompts / text)."),
    model: str | None = typer.Option(None, "--model", "-m",
                                     help="HF model folder; default SmolLM2-135M-Instruct."),
    contexts: list[int] = typer.Option(_DEFAULT_CONTEXTS, "--contexts",
                                       help="Context lengths in tokens (repeat the option)."),
    impls: list[str] = typer.Option(_DEFAULT_IMPLS, "--impls",
                                    help="Attention implementations (repeat the option)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda; default cuda if any."),
    dtype: str | None = typer.Option(None, "--dtype",
                                     help="float32 / float16 / bfloat16; default float32 on "
                                          "CPU, bfloat16 on CUDA."),
    runs: int = typer.Option(3, "--runs", help="Timed prefills per implementation x context."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed prefills before the timed ones."),
    batch: int = typer.Option(1, "--batch", help="Sequences per prefill."),
    keep: int = typer.Option(64, "--logits", help="Last positions whose logits are compared."),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads."),
    as_json: bool = typer.Option(True, "--json/--no-json", help="Always JSON (accepted)."),
) -> None:
    """Prefill latency, tokens/s, peak memory and logit drift of attention implementations."""
    from tokenlean.backend import load_model
    from tokenlean.backend.loading import _torch_threads, model_label

    torch = _torch_threads("the attention benchmark", threads)
    libc = _libc()
    if libc is not None:  # big tensors get their own mappings, returned on free
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 16)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but torch sees no CUDA device")
    dtype = dtype or ("bfloat16" if device == "cuda" else "float32")
    if runs < 1 or batch < 1 or keep < 1 or not contexts or not impls:
        raise ConfigError("--runs, --batch and --logits must be >= 1, and --contexts and "
                          "--impls non-empty")
    from tokenlean.backend import read_texts, token_blocks

    loaded, tokenizer = load_model(model, dtype=dtype, device=device)
    limit = getattr(loaded.config, "max_position_embeddings", None)
    if limit is not None and max(contexts) > limit:
        raise ConfigError(f"context {max(contexts)} exceeds the model's "
                          f"max_position_embeddings ({limit})")
    blocks = token_blocks(tokenizer, read_texts(data, limit=2000), seq_len=max(contexts),
                          max_blocks=batch)
    if blocks.shape[0] < batch:
        raise ConfigError(f"{data} has text for {blocks.shape[0]} sequence(s) of "
                          f"{max(contexts)} tokens, not --batch {batch}")
    order = sorted(dict.fromkeys(impls), key=lambda i: i != "eager")  # eager first
    results: list[dict[str, Any]] = []
    for ctx in sorted(contexts):
        ids = blocks[:, :ctx].to(device)
        reference = None
        for impl in order:
            row = _run(loaded, ids, impl, device=device, dtype=dtype, runs=runs,
                       warmup=warmup, keep=min(keep, ctx))
            logits = row.pop("_logits", None)
            if impl == "eager":
                reference = logits
            if logits is not None and reference is not None:
                row["max_abs_logit_diff_vs_eager"] = round(
                    float((logits - reference).abs().max()), 6)
            elif row["status"] == "ok":
                row["max_abs_logit_diff_vs_eager"] = None
            results.append(row)
    import transformers

    from tokenlean.backend import flash_attn_available

    result = {
        "benchmark": "attention", "model": model_label(model),
        "data": data, "device": device,
        "device_name": (torch.cuda.get_device_name() if device == "cuda" else "cpu"),
        "dtype": dtype, "threads": threads, "batch": batch, "runs": runs, "warmup": warmup,
        "logits_compared": keep, "contexts": sorted(contexts),
        "memory_metric": _CUDA_MEMORY if device == "cuda" else _CPU_MEMORY,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "flash_attn_installed": flash_attn_available(), "results": results,
    }
    typer.echo(json.dumps(result))
