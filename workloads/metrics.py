"""Metrics of a network's outputs and of its tolerance to bit errors.

- Accuracy and the mean logit margin (MLM, Yayla & Kumar 2026): ``MLM = mean_x (z_top1 − z_top2)``
  and the per-sample true-class margin ``z_y − max_{k≠y} z_k`` (negative when wrong).
- The normalised MLM divides each sample's top-1/top-2 gap by the standard deviation of its
  logits over the classes. A bigger raw margin can come from bigger logits alone (scaling every
  logit by c scales the margin by c); the normalised one is invariant to scaling and shifting
  the logits, so it separates "more separated" from "louder".
- BNN tolerance metrics (Buschjäger, …, Yayla 2021; reconstruction, see RESEARCH.md): the
  neuron-level metric is the mean distance of a neuron's pre-activation to the threshold that
  batch normalisation followed by sign folds into, ``τ = μ − β·σ/γ``, divided by the fan-in;
  the inter-neuron metric is the variance over neurons of an importance, here the loss change
  when the neuron's output is zeroed (or sign-flipped) on a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "LogitStats",
    "inter_neuron_importance",
    "logit_stats",
    "logit_stats_stacked",
    "neuron_threshold_margins",
    "top2_gap",
    "true_class_margin",
]


def top2_gap(logits: Tensor) -> Tensor:
    """Per sample: the largest logit minus the second largest (>= 0)."""
    top = torch.topk(logits, 2, dim=1).values
    return top[:, 0] - top[:, 1]


def true_class_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """Per sample: ``z_y − max_{k≠y} z_k``; positive exactly when the sample is right
    (ties count as wrong)."""
    true = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(dim=1).values


def _scale(logits: Tensor) -> Tensor:
    # population std over classes, two-pass (torch's std over a short dim took 10x as long);
    # a constant logit vector has no scale: margin 0 anyway
    deviation = logits - logits.mean(dim=1, keepdim=True)
    return (deviation * deviation).mean(dim=1).sqrt().clamp_min(torch.finfo(logits.dtype).tiny)


@dataclass(frozen=True)
class LogitStats:
    """Summary of a batch of logits against labels."""

    n: int
    accuracy: float
    mlm: float
    """Mean logit margin: mean of top-1 minus top-2 logit."""
    mlm_normalised: float
    """Mean of (top-1 − top-2) / std of the sample's logits."""
    mean_true_margin: float
    """Mean of z_y − max_{k≠y} z_k."""
    margin_quantiles: tuple[float, ...]
    """Quantiles (5, 25, 50, 75, 95 %) of the true-class margin: its distribution."""

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return {"n": self.n, "accuracy": self.accuracy, "mlm": self.mlm,
                "mlm_normalised": self.mlm_normalised, "mean_true_margin": self.mean_true_margin,
                "margin_quantiles": list(self.margin_quantiles)}


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

_PARALLEL_REDUCTION = 32768
"""torch's grain size (``at::internal::GRAIN_SIZE``): a reduction of fewer elements runs on
one thread; a longer single row is split among threads, in another order of additions."""


def logit_stats(logits: Tensor, labels: Tensor, *, quantiles: bool = True) -> LogitStats:
    """Accuracy, raw and normalised MLM, and the distribution of true-class margins
    (`margin_quantiles` empty with ``quantiles=False``, which a sweep's trials use: they
    store only accuracy and the MLMs)."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits (N, C) and labels (N,) expected, got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    return logit_stats_stacked(logits[None], labels, quantiles=quantiles)[0]


def logit_stats_stacked(logits: Tensor, labels: Tensor, *, quantiles: bool = True
                        ) -> list[LogitStats]:
    """`logit_stats` of each of B sets of logits (B, N, C) against the same labels, with the
    per-sample work done once for all sets; set b's figures equal ``logit_stats(logits[b])``
    bit for bit (each set's means are taken over its own contiguous row)."""
    if logits.ndim != 3 or labels.shape != logits.shape[1:2]:
        raise ValueError(f"logits (B, N, C) and labels (N,) expected, got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    if logits.shape[1] == 0:
        raise ValueError("no samples")
    sets, n, classes = logits.shape
    flat = logits.detach().double().reshape(sets * n, classes)
    rows = labels.repeat(sets)
    # one top-2 serves both: z_y − max_{k≠y} z_k is z_y − top2 when z_y is the top value
    # (a tie gives top2 = top1, margin 0) and z_y − top1 otherwise: `true_class_margin`
    # exactly, without a second pass over the logits
    first, where = flat.max(dim=1)
    # the largest logit once its first position is taken out: torch.topk's second value (a
    # tie gives it again), in a third of topk's time on short rows
    second = flat.scatter(1, where[:, None], float("-inf")).max(dim=1).values
    gap = (first - second).reshape(sets, n)
    true = flat.gather(1, rows[:, None])[:, 0]
    margin = (true - torch.where(true >= first, second, first)).reshape(sets, n)
    normalised = gap / _scale(flat).reshape(sets, n)
    per_set = torch.stack([(margin > 0).double(), gap, normalised, margin])
    if n < _PARALLEL_REDUCTION or torch.get_num_threads() == 1:
        # one call instead of four per set: a mean over the last axis adds each row on one
        # thread in the order a mean of that row alone does, when torch does not split it
        accuracy, mlm, mlm_normalised, true_margin = per_set.mean(dim=2).tolist()
    else:  # a long row alone is split among threads: mean each row alone, as `logit_stats`
        accuracy, mlm, mlm_normalised, true_margin = (
            [float(row.mean()) for row in figure] for figure in per_set)
    levels = torch.tensor(QUANTILES, dtype=margin.dtype)
    return [LogitStats(
        n=int(n),
        accuracy=accuracy[b],
        mlm=mlm[b],
        mlm_normalised=mlm_normalised[b],
        mean_true_margin=true_margin[b],
        margin_quantiles=(tuple(float(v) for v in torch.quantile(margin[b], levels).tolist())
                          if quantiles else ()),
    ) for b in range(sets)]


# -- BNN tolerance metrics ----------------------------------------------------------------


def _fan_in(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return int(module.in_features)
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return int(module.in_channels // module.groups * kh * kw)
    raise TypeError(f"no fan-in for {type(module).__name__}")


def _bn_pairs(model: nn.Module) -> list[tuple[str, nn.Module, nn.modules.batchnorm._BatchNorm]]:
    """(name, preceding Linear/Conv2d, BatchNorm) in registration order."""
    pairs = []
    last: nn.Module | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            last = module
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and last is not None:
            pairs.append((name, last, module))
    return pairs


def neuron_threshold_margins(model: nn.Module, inputs: Tensor) -> dict[str, Tensor]:
    """Per batch-norm layer: each neuron's mean ``|a − τ|`` / fan-in over `inputs`.

    ``a`` is the BN input (the pre-activation), ``τ = μ − β·σ/γ`` the threshold where BN's
    output changes sign (σ = sqrt(running_var + eps)); uses the running statistics, so call it
    on a model in eval mode. Channels with γ = 0 have no threshold and give NaN.
    """
    pairs = _bn_pairs(model)
    captured: dict[str, Tensor] = {}
    hooks = []
    for name, _, bn in pairs:
        def hook(_m: nn.Module, args: tuple[Tensor, ...], _out: Tensor, name: str = name) -> None:
            captured[name] = args[0].detach()
        hooks.append(bn.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name, prev, bn in pairs:
        if name not in captured or bn.running_mean is None or bn.running_var is None:
            continue
        a = captured[name]
        sigma = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(sigma)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(sigma)
        with torch.no_grad():
            tau = bn.running_mean - beta * sigma / gamma
            shape = (1, -1) + (1,) * (a.ndim - 2)
            dist = (a - tau.reshape(shape)).abs()
            dims = [d for d in range(a.ndim) if d != 1]
            out[name] = dist.mean(dim=dims) / _fan_in(prev)
    return out


def inter_neuron_importance(
        model: nn.Module, inputs: Tensor, labels: Tensor, *,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        mode: str = "zero", layers: Iterable[str] | None = None,
        max_neurons_per_layer: int | None = None, seed: int = 0) -> dict[str, Tensor]:
    """Per batch-norm layer: each neuron's importance, the loss change when its BN output is
    zeroed (`mode="zero"`) or negated (`"flip"`, a sign flip after a sign activation).

    The inter-neuron metric is the variance of these importances over all neurons
    (`torch.cat(list(result.values())).var()`). `max_neurons_per_layer` samples neurons with
    `seed` to bound the cost (one forward pass per neuron).
    """
    if mode not in ("zero", "flip"):
        raise ValueError(f"mode must be 'zero' or 'flip', got {mode!r}")
    loss_fn = loss_fn or nn.functional.cross_entropy
    wanted = set(layers) if layers is not None else None
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        base = float(loss_fn(model(inputs), labels))
        out: dict[str, Tensor] = {}
        for name, _, bn in _bn_pairs(model):
            if wanted is not None and name not in wanted:
                continue
            n = bn.num_features
            chosen = (torch.randperm(n, generator=generator)[:max_neurons_per_layer].sort().values
                      if max_neurons_per_layer is not None and max_neurons_per_layer < n
                      else torch.arange(n))
            values = torch.empty(chosen.shape[0], dtype=torch.float64)
            for i, c in enumerate(chosen.tolist()):
                def hook(_m: nn.Module, _a: tuple[Tensor, ...], y: Tensor, c: int = c) -> Tensor:
                    y = y.clone()
                    y[:, c] = 0.0 if mode == "zero" else -y[:, c]
                    return y
                handle = bn.register_forward_hook(hook)
                try:
                    values[i] = float(loss_fn(model(inputs), labels)) - base
                finally:
                    handle.remove()
            out[name] = values
    return out
