"""Structured pruning to a standard architecture.

What is removed, and why the result stays an ordinary model:

* **query heads**, the same number in every KV group of every layer (SmolLM2:
  9 query heads in 3 KV groups -> keep 2 per group = 6 heads). Key/value heads
  are kept, so grouped-query attention still maps query head ``i`` to KV head
  ``i // kept_per_group`` and the config just says ``num_attention_heads=6``
  with the original ``head_dim``.
* **MLP channels**, the same number in every layer -> ``intermediate_size``.
* optionally **whole layers** -> ``num_hidden_layers``.

The pruned weights are copied into a model built fresh from the new config, so
``save_pretrained`` writes a folder that ``AutoModelForCausalLM.from_pretrained``
(and vLLM / llama.cpp's converter) load with no custom code.

Importance comes from calibration text:

* ``"taylor"`` (default): first-order Taylor estimate of the loss change when a
  unit is removed, ``|sum_t a_t * dL/da_t|`` per sequence, summed over
  sequences, for each MLP channel (input of ``down_proj``) and each query head
  (its slice of the ``o_proj`` input).
* ``"activation"``: size of each unit's contribution to the residual stream:
  ``mean_t |a_j| * ||W_down[:, j]||`` for channels, ``mean_t ||W_o,h a_h||``
  for heads (no backward pass).
* layers (either method): block influence ``1 - cos(h_in, h_out)`` averaged over
  tokens (ShortGPT); the lowest-influence layers go first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tokenlean.core import ConfigError

__all__ = ["Importance", "PruneReport", "count_parameters", "importance_scores", "prune_model",
           "plan_shape"]

Method = Literal["taylor", "activation"]
Reconstruct = Literal["none", "attention", "all"]


@dataclass(frozen=True)
class Importance:
    """Per-unit scores (higher = keep): ``heads[L][H]``, ``channels[L][I]``, ``layers[L]``."""

    heads: Any
    channels: Any
    layers: Any
    method: str
    tokens: int
    mlp_cov: Any = None  # [L, I, I] second moments of the down_proj inputs (for reconstruction)
    attn_cov: Any = None  # [L, H*d, H*d] second moments of the o_proj inputs


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune_model` did (also saved as ``tokenlean_prune.json``)."""

    method: str
    target: float
    params_before: int
    params_after: int
    heads_per_group: tuple[int, int]  # (kept, original)
    intermediate_size: tuple[int, int]
    num_hidden_layers: tuple[int, int]
    dropped_layers: list[int] = field(default_factory=list)
    calibration_tokens: int = 0
    reconstructed: str = "none"

    @property
    def removed_fraction(self) -> float:
        return 1.0 - self.params_after / self.params_before

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["removed_fraction"] = round(self.removed_fraction, 4)
        return d


def _layers(model: Any) -> Any:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or len(layers) == 0:
        raise ConfigError(f"{type(model).__name__} is not a Llama-style decoder (model.layers); "
                          "structured pruning supports Llama, Mistral, Qwen2 and similar")
    first = layers[0]
    for path in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
        obj = first
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"{type(model).__name__} has no {path}: structured pruning supports "
                              "Llama-style decoders (q/k/v/o and gate/up/down projections)")
    return layers


def _shape(config: Any) -> tuple[int, int, int, int]:
    """(num_heads, num_kv_heads, head_dim, intermediate_size)."""
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return heads, kv, head_dim, config.intermediate_size


def count_parameters(config: Any) -> int:
    """Parameter count of a Llama-style config (embeddings counted once when tied)."""
    h: int = config.hidden_size
    vocab: int = config.vocab_size
    n_layers: int = config.num_hidden_layers
    heads, kv, d, inter = _shape(config)
    attn_bias = bool(getattr(config, "attention_bias", False))
    mlp_bias = bool(getattr(config, "mlp_bias", False))
    attn = h * heads * d + 2 * h * kv * d + heads * d * h
    if attn_bias:
        attn += heads * d + 2 * kv * d + h
    mlp = 3 * h * inter + ((2 * inter + h) if mlp_bias else 0)
    per_layer = attn + mlp + 2 * h
    embed = vocab * h * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    return embed + h + n_layers * per_layer


def _batches(calibration: Any, batch_size: int) -> list[Any]:
    if hasattr(calibration, "shape"):
        return [calibration[i:i + batch_size] for i in range(0, calibration.shape[0], batch_size)]
    return list(calibration)


def importance_scores(model: Any, calibration: Any, *, method: Method = "taylor",
                      batch_size: int = 4, covariance: bool | str = False) -> Importance:
    """Score heads, MLP channels and layers of ``model`` on ``calibration`` token blocks.

    ``calibration``: a ``[N, T]`` LongTensor (see :func:`tokenlean.backend.token_blocks`)
    or an iterable of such batches. ``covariance=True`` also collects the second
    moments of the ``o_proj`` and ``down_proj`` inputs that :func:`prune_model`'s
    ``reconstruct`` needs (``"attention"``: ``o_proj`` only).
    """
    import torch

    if method not in ("taylor", "activation"):
        raise ConfigError(f"method must be 'taylor' or 'activation', not {method!r}")
    layers = _layers(model)
    n_layers = len(layers)
    heads, _, head_dim, inter = _shape(model.config)
    dev = next(model.parameters()).device
    head_s = torch.zeros(n_layers, heads, dtype=torch.float64)
    chan_s = torch.zeros(n_layers, inter, dtype=torch.float64)
    layer_s = torch.zeros(n_layers, dtype=torch.float64)
    mlp_cov = torch.zeros(n_layers, inter, inter) if covariance in (True, "all") else None
    attn_cov = (torch.zeros(n_layers, heads * head_dim, heads * head_dim)
                if covariance in (True, "all", "attention") else None)
    captured: dict[tuple[str, int], Any] = {}
    hooks = []

    def grab(kind: str, i: int) -> Callable[[Any, tuple[Any, ...]], None]:
        def hook(_module: Any, args: tuple[Any, ...]) -> None:
            x = args[0]
            if method == "taylor":
                x.retain_grad()
            captured[(kind, i)] = x
        return hook

    for i, layer in enumerate(layers):
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(grab("mlp", i)))
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(grab("attn", i)))
    was_training = model.training
    model.eval()
    tokens = 0
    requires = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        if method == "taylor":
            for p in model.parameters():  # only activation gradients are needed
                p.requires_grad_(False)
        for batch in _batches(calibration, batch_size):
            batch = batch.to(dev)
            tokens += batch.numel()
            with torch.set_grad_enabled(method == "taylor"):
                if method == "taylor":
                    emb = model.get_input_embeddings()(batch).detach().requires_grad_(True)
                    out = model(inputs_embeds=emb, labels=batch, output_hidden_states=True)
                    out.loss.backward()
                else:
                    out = model(input_ids=batch, output_hidden_states=True)
            with torch.no_grad():
                hs = out.hidden_states
                for i in range(n_layers):
                    cos = torch.nn.functional.cosine_similarity(hs[i].float(), hs[i + 1].float(),
                                                                dim=-1)
                    layer_s[i] += (1 - cos).sum().double().cpu()
                    a_m = captured[("mlp", i)]
                    a_h = captured[("attn", i)]
                    b, t = a_h.shape[:2]
                    if mlp_cov is not None:
                        am = a_m.detach().float().flatten(0, 1)
                        mlp_cov[i] += (am.T @ am).cpu()
                    if attn_cov is not None:
                        ah2 = a_h.detach().float().flatten(0, 1)
                        attn_cov[i] += (ah2.T @ ah2).cpu()
                    if method == "taylor":
                        chan_s[i] += (a_m * a_m.grad).sum(1).abs().sum(0).double().cpu()
                        prod = (a_h * a_h.grad).view(b, t, heads, head_dim)
                        head_s[i] += prod.sum((1, 3)).abs().sum(0).double().cpu()
                    else:
                        w_down = layers[i].mlp.down_proj.weight.float().norm(dim=0)
                        chan_s[i] += (a_m.float().abs().sum((0, 1)) * w_down).double().cpu()
                        w_o = layers[i].self_attn.o_proj.weight.float()
                        ah = a_h.float().view(b, t, heads, head_dim)
                        for h in range(heads):
                            contrib = ah[:, :, h] @ w_o[:, h * head_dim:(h + 1) * head_dim].T
                            head_s[i, h] += contrib.norm(dim=-1).sum().double().cpu()
            captured.clear()
            del out
    finally:
        for hook in hooks:
            hook.remove()
        for n, p in model.named_parameters():
            p.requires_grad_(requires[n])
        model.train(was_training)
    if tokens == 0:
        raise ConfigError("calibration is empty: pass at least one block of tokens")
    return Importance(heads=head_s / tokens, channels=chan_s / tokens, layers=layer_s / tokens,
                      method=method, tokens=tokens,
                      mlp_cov=None if mlp_cov is None else mlp_cov / tokens,
                      attn_cov=None if attn_cov is None else attn_cov / tokens)


def _refit(weight: Any, cov: Any, keep: Any, damp: float) -> Any:
    """Least-squares refit of a projection after removing inputs.

    Minimises ``E||W a - W' a_K||^2`` over calibration inputs ``a``:
    ``W' = W C[:, K] (C[K, K] + damp * mean(diag) I)^-1`` with ``C = E[a a^T]``.
    """
    import torch

    c = cov.double()
    ckk = c[keep][:, keep]
    ckk = ckk + damp * ckk.diagonal().mean() * torch.eye(len(keep), dtype=c.dtype)
    rhs = weight.double() @ c[:, keep]
    return torch.linalg.solve(ckk, rhs.T).T.to(weight.dtype)


def plan_shape(config: Any, *, target: float, heads_per_group: int | None = None,
               drop_layers: int = 0, multiple_of: int = 32) -> dict[str, int]:
    """The uniform shape that removes about ``target`` of the parameters.

    Heads: ``heads_per_group`` query heads kept per KV group (default: all of
    them unless the MLP alone cannot meet the target; on SmolLM2 at -20%,
    pruning MLP channels only gave perplexity 56 where 2 of 3 heads per group
    plus fewer channels gave 97, see docs/benchmarks/backend.md). Layers: ``drop_layers`` removed.
    MLP: the largest ``intermediate_size`` (a multiple of ``multiple_of``) that
    meets the target with the heads and layers above.
    """
    if not 0.0 <= target < 1.0:
        raise ConfigError(f"target is the fraction of parameters to remove, in [0, 1): {target}")
    heads, kv, head_dim, inter = _shape(config)
    if heads % kv:
        raise ConfigError(f"{heads} query heads do not split evenly into {kv} KV groups")
    group = heads // kv
    if heads_per_group is None:  # MLP channels first (measured: cheaper in quality than heads)
        heads_per_group = group
        while heads_per_group > 1 and not _fits(config, target, heads_per_group * kv,
                                                 drop_layers, multiple_of):
            heads_per_group -= 1
    if not 1 <= heads_per_group <= group:
        raise ConfigError(f"heads_per_group must be in [1, {group}], not {heads_per_group}")
    if config.hidden_size % (heads_per_group * kv):
        raise ConfigError(f"{heads_per_group * kv} query heads do not divide hidden_size "
                          f"{config.hidden_size}, which transformers requires of this config: "
                          "choose another heads_per_group")
    n_layers = config.num_hidden_layers
    if not 0 <= drop_layers < n_layers:
        raise ConfigError(f"drop_layers must be in [0, {n_layers - 1}], not {drop_layers}")
    before = count_parameters(config)
    budget = before * (1 - target)
    probe = copy.deepcopy(config)
    probe.num_attention_heads = heads_per_group * kv
    probe.head_dim = head_dim
    probe.num_hidden_layers = n_layers - drop_layers
    probe.intermediate_size = 0
    fixed = count_parameters(probe)
    per_channel = (count_parameters(_with(probe, intermediate_size=1)) - fixed)
    size = math.floor((budget - fixed) / per_channel / multiple_of) * multiple_of
    size = min(inter, size)
    if size < multiple_of:
        raise ConfigError(f"target {target} cannot be met by pruning MLP channels with "
                          f"{heads_per_group} heads per group and {drop_layers} layers dropped: "
                          "drop more layers or heads, or lower the target")
    return {"heads_per_group": heads_per_group, "num_attention_heads": heads_per_group * kv,
            "intermediate_size": size, "num_hidden_layers": n_layers - drop_layers}


def _fits(config: Any, target: float, n_heads: int, drop_layers: int, multiple_of: int) -> bool:
    small = _with(config, num_attention_heads=n_heads, intermediate_size=multiple_of,
                  num_hidden_layers=config.num_hidden_layers - drop_layers,
                  head_dim=_shape(config)[2])
    return count_parameters(small) <= count_parameters(config) * (1 - target)


def _with(config: Any, **changes: Any) -> Any:
    c = copy.deepcopy(config)
    for k, v in changes.items():
        setattr(c, k, v)
    return c


def _top(scores: Any, k: int) -> Any:
    import torch

    return torch.sort(torch.topk(scores, k).indices).values


def prune_model(model: Any, calibration: Any = None, *, target: float = 0.3,
                importance: Importance | None = None, method: Method = "taylor",
                heads_per_group: int | None = None, drop_layers: int = 0,
                multiple_of: int = 32, batch_size: int = 4,
                reconstruct: Reconstruct = "attention",
                damp: float = 0.01) -> tuple[Any, PruneReport]:
    """Return ``(pruned_model, report)``; ``model`` is left unchanged.

    Give either ``calibration`` token blocks (scores are computed with ``method``)
    or precomputed ``importance``. The pruned model is a fresh instance of the
    same class built from an ordinary config (see the module docs).

    ``reconstruct``: after choosing what to keep, refit ``o_proj`` (``"attention"``,
    the default) or ``o_proj`` and ``down_proj`` (``"all"``) by least squares so
    that, on the calibration activations, the kept heads / channels reproduce the
    dense layer's output as well as they can (a closed-form solve per layer; no
    training); ``"none"`` only slices. The MLP refit has 1536 inputs per layer on
    SmolLM2 and overfits a few thousand calibration tokens (measured: worse
    perplexity), hence the default. Needs the covariances, collected when scores
    are computed here or with ``importance_scores(..., covariance=True)``.
    """
    import torch
    import transformers

    layers = _layers(model)
    config = model.config
    plan = plan_shape(config, target=target, heads_per_group=heads_per_group,
                      drop_layers=drop_layers, multiple_of=multiple_of)
    if reconstruct not in ("none", "attention", "all"):
        raise ConfigError(f"reconstruct must be 'none', 'attention' or 'all', not {reconstruct!r}")
    if importance is None:
        if calibration is None:
            raise ConfigError("prune_model needs calibration token blocks or an importance")
        importance = importance_scores(model, calibration, method=method, batch_size=batch_size,
                                       covariance=False if reconstruct == "none" else reconstruct)
    if reconstruct != "none" and importance.attn_cov is None:
        raise ConfigError(f"reconstruct={reconstruct!r} needs importance_scores(..., "
                          "covariance=True), or pass reconstruct='none'")
    if reconstruct == "all" and importance.mlp_cov is None:
        raise ConfigError("reconstruct='all' needs importance_scores(..., covariance=True)")
    heads, kv, head_dim, inter = _shape(config)
    group, keep_h = heads // kv, plan["heads_per_group"]
    n_layers = len(layers)
    dropped = sorted(_top(-importance.layers, drop_layers).tolist()) if drop_layers else []
    kept_layers = [i for i in range(n_layers) if i not in dropped]

    new_config = _with(config, num_attention_heads=plan["num_attention_heads"], head_dim=head_dim,
                       num_key_value_heads=kv, intermediate_size=plan["intermediate_size"],
                       num_hidden_layers=len(kept_layers))
    if isinstance(getattr(new_config, "layer_types", None), list):
        new_config.layer_types = [config.layer_types[i] for i in kept_layers]
    for attr in ("quantization_config",):
        if hasattr(new_config, attr):
            delattr(new_config, attr)

    state = model.state_dict()
    new_state: dict[str, Any] = {}
    prefix = "model.layers."
    for key, tensor in state.items():
        if not key.startswith(prefix):
            new_state[key] = tensor
    for new_i, old_i in enumerate(kept_layers):
        # query heads: the top `keep_h` of each KV group, in their original order
        hs = importance.heads[old_i].view(kv, group)
        keep_heads = torch.cat([g * group + _top(hs[g], keep_h) for g in range(kv)])
        rows = (keep_heads[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)
        chans = _top(importance.channels[old_i], plan["intermediate_size"])
        src, dst = f"{prefix}{old_i}.", f"{prefix}{new_i}."
        for key, tensor in state.items():
            if not key.startswith(src):
                continue
            name = key[len(src):]
            if name in ("self_attn.q_proj.weight", "self_attn.q_proj.bias"):
                tensor = tensor[rows]
            elif name == "self_attn.o_proj.weight":
                tensor = (_refit(tensor, importance.attn_cov[old_i], rows, damp)
                          if reconstruct != "none" else tensor[:, rows])
            elif name in ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.gate_proj.bias",
                          "mlp.up_proj.bias"):
                tensor = tensor[chans]
            elif name == "mlp.down_proj.weight":
                tensor = (_refit(tensor, importance.mlp_cov[old_i], chans, damp)
                          if reconstruct == "all" else tensor[:, chans])
            new_state[dst + name] = tensor.clone()

    dtype = next(model.parameters()).dtype
    pruned = transformers.AutoModelForCausalLM.from_config(
        new_config, dtype=dtype, attn_implementation=config._attn_implementation)
    missing, unexpected = pruned.load_state_dict(new_state, strict=False)
    tied = {"lm_head.weight"} if getattr(new_config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ConfigError(f"pruned weights do not fit the pruned config (missing "
                          f"{sorted(set(missing) - tied)[:4]}, "
                          f"unexpected {sorted(unexpected)[:4]})")
    if tied:
        pruned.tie_weights()
    if getattr(model, "generation_config", None) is not None:
        pruned.generation_config = copy.deepcopy(model.generation_config)
    pruned.to(next(model.parameters()).device)
    pruned.eval()
    report = PruneReport(
        method=importance.method, target=target,
        params_before=sum(p.numel() for p in model.parameters()),
        params_after=sum(p.numel() for p in pruned.parameters()),
        heads_per_group=(keep_h, group), intermediate_size=(plan["intermediate_size"], inter),
        num_hidden_layers=(len(kept_layers), n_layers), dropped_layers=dropped,
        calibration_tokens=importance.tokens, reconstructed=reconstruct)
    return pruned, report
