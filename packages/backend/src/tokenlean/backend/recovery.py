"""Recovery after pruning: short knowledge distillation from the dense model.

The pruned student is trained to match the dense teacher's next-token
distribution, ``KL(teacher || student)`` at temperature ``temperature``, on
calibration token blocks. Embeddings (tied with the output head in SmolLM2)
are frozen: they were not pruned, and freezing them keeps the optimizer state
small. A few dozen steps on a CPU take minutes; a GPU makes longer runs cheap.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tokenlean.core import ConfigError

__all__ = ["distill"]


def distill(student: Any, teacher: Any, blocks: Any, *, steps: int = 40, lr: float = 1e-4,
            batch_size: int = 2, temperature: float = 1.0, train_embeddings: bool = False,
            seed: int = 0, log: Any = None) -> dict[str, Any]:
    """Distil ``teacher`` into ``student`` in place; returns ``{"steps", "loss_first", ...}``.

    ``blocks``: a ``[N, T]`` LongTensor of calibration tokens (cycled if ``steps``
    needs more). Learning rate: linear warm-up over 10% of the steps, cosine decay.
    """
    import torch
    import torch.nn.functional as F

    if steps < 1 or batch_size < 1 or lr <= 0 or temperature <= 0:
        raise ConfigError("steps and batch_size must be >= 1, lr and temperature > 0")
    if not hasattr(blocks, "shape") or blocks.ndim != 2 or blocks.shape[0] == 0:
        raise ConfigError("blocks must be a non-empty [N, T] tensor of token ids")
    dev = next(student.parameters()).device
    tdev = next(teacher.parameters()).device
    frozen = {id(student.get_input_embeddings().weight)}
    out_emb = student.get_output_embeddings()
    if out_emb is not None:
        frozen.add(id(out_emb.weight))
    params = [p for p in student.parameters()
              if train_embeddings or id(p) not in frozen]
    saved = {id(p): p.requires_grad for p in student.parameters()}
    for p in student.parameters():
        p.requires_grad_(train_embeddings or id(p) not in frozen)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, steps // 10)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(blocks.shape[0], generator=gen)
    losses: list[float] = []
    teacher.eval()
    student.train()
    start = time.perf_counter()
    try:
        for step in range(steps):
            idx = torch.tensor([order[(step * batch_size + j) % len(order)].item()
                                for j in range(batch_size)])
            batch = blocks[idx]
            with torch.no_grad():
                t_logits = teacher(batch.to(tdev)).logits.to(dev).float()
            s_logits = student(batch.to(dev)).logits.float()
            t_logp = F.log_softmax(t_logits / temperature, dim=-1)
            s_logp = F.log_softmax(s_logits / temperature, dim=-1)
            loss = F.kl_div(s_logp.flatten(0, 1), t_logp.flatten(0, 1), log_target=True,
                            reduction="batchmean") * temperature**2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if log is not None:
                log(step, losses[-1])
    finally:
        student.eval()
        for p in student.parameters():
            p.requires_grad_(saved[id(p)])
    tail = losses[-max(1, steps // 5):]
    return {"steps": steps, "batch_size": batch_size, "seq_len": int(blocks.shape[1]),
            "lr": lr, "loss_first": losses[0], "loss_last": sum(tail) / len(tail),
            "seconds": round(time.perf_counter() - start, 1)}
