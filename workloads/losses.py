"""Training losses: CE, MCEL, the modified hinge loss and consistency regularisation.

Each loss is an ``nn.Module``; the first three are called as ``loss(logits, target)`` with
logits (N, C) and integer class targets (N,), and return the mean over the batch. Formulas
follow /work/shared/RESEARCH.md, "Methods"; reconstructed parts are marked as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from memsim.errors import MemsimError
from memsim.workloads.layers import QuantizedWeightLayer

__all__ = [
    "ConsistencyRegularization",
    "ConsistencyTerms",
    "CrossEntropyLoss",
    "LossError",
    "MarginCrossEntropyLoss",
    "ModifiedHingeLoss",
    "loss_names",
    "resolve_loss",
]


class LossError(MemsimError):
    """A loss setting out of range, or an unknown loss name."""


def _check_targets(logits: Tensor, target: Tensor) -> None:
    if logits.dim() != 2:
        raise LossError(f"logits must have shape (batch, classes), got {tuple(logits.shape)}")
    if target.shape != logits.shape[:1]:
        raise LossError(f"targets must have shape ({logits.shape[0]},), got "
                        f"{tuple(target.shape)}")


class CrossEntropyLoss(nn.Module):
    """Cross-entropy ``mean_i −log softmax(z_i)_{y_i}``."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_targets(logits, target)
        return F.cross_entropy(logits, target)


class MarginCrossEntropyLoss(nn.Module):
    """MCEL, the margin cross-entropy loss (Yayla & Kumar, arXiv 2603.05048, 2026).

    Reconstruction (consistent across three secondary sources; RESEARCH.md):

    - bounded logits ``z̃_k = L·tanh(z_k/L)`` (``logit_bound`` L, default 100), so that the
      margin cannot be met by shifting or scaling all logits;
    - margin on the true class only: ``z̃_y ← z̃_y − m`` (``margin`` m);
    - loss ``−log softmax(z̃)_y``: the shifted true logit is also in the denominator, as in
      additive-margin softmax; no feature or weight normalisation.

    The model's forward pass is unchanged: only the loss applies tanh and the margin. With
    ``m = 0`` and ``L = inf`` (tanh skipped) it is exactly cross-entropy. The paper's grid is
    m ∈ {1, 2, 4, …, 128, 192}; m ≈ 32–128 was best on FashionMNIST. The relative logit
    separation is ``m/(2L)`` (`relative_logit_separation`).
    """

    def __init__(self, margin: float = 32.0, logit_bound: float = 100.0) -> None:
        super().__init__()
        if not (math.isfinite(margin) and margin >= 0):
            raise LossError(f"MCEL margin m must be a finite number >= 0, got {margin!r}")
        if not logit_bound > 0:
            raise LossError(f"MCEL logit bound L must be > 0 (inf allowed), got {logit_bound!r}")
        self.margin = float(margin)
        self.logit_bound = float(logit_bound)

    @property
    def relative_logit_separation(self) -> float:
        """``RLS = m/(2L)``."""
        return self.margin / (2 * self.logit_bound)

    def bounded_logits(self, logits: Tensor) -> Tensor:
        """``L·tanh(z/L)`` (the logits themselves when L is infinite)."""
        if math.isinf(self.logit_bound):
            return logits
        return self.logit_bound * torch.tanh(logits / self.logit_bound)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_targets(logits, target)
        bounded = self.bounded_logits(logits)
        shift = F.one_hot(target, bounded.shape[1]).to(bounded.dtype) * self.margin
        return F.cross_entropy(bounded - shift, target)

    def extra_repr(self) -> str:
        return f"margin={self.margin:g}, logit_bound={self.logit_bound:g}"


class ModifiedHingeLoss(nn.Module):
    """The modified hinge loss (MHL; Buschjäger et al., DATE 2021), the BNN baseline of MCEL.

    ``ℓ(z, y) = mean_k max(0, b − z_k·(2·onehot_k(y) − 1)) / b`` with ``b = margin``
    (default 128), averaged over the batch: the true logit is pushed above b, the others below
    −b, each term normalised by b.
    """

    def __init__(self, margin: float = 128.0) -> None:
        super().__init__()
        if not (math.isfinite(margin) and margin > 0):
            raise LossError(f"MHL margin b must be a finite number > 0, got {margin!r}")
        self.margin = float(margin)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_targets(logits, target)
        signs = 2 * F.one_hot(target, logits.shape[1]).to(logits.dtype) - 1
        return (torch.clamp(self.margin - logits * signs, min=0) / self.margin).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin:g}"


@dataclass(frozen=True)
class ConsistencyTerms:
    """The parts of one `ConsistencyRegularization` evaluation."""

    loss: Tensor
    """``task + λ·consistency`` (what to back-propagate)."""
    task: Tensor
    """The task loss on the noisy network's logits."""
    consistency: Tensor
    """``Σ_l ‖h_l(noisy) − h_l(clean)‖²`` (reduced as configured)."""
    logits: Tensor
    """The noisy network's logits."""


_FEATURE_REDUCTIONS = ("sum", "mean")


class ConsistencyRegularization(nn.Module):
    """Consistency regularisation against weight noise (Hou, Zhang, Wang, Wu, Mach. Learn.:
    Sci. Technol. 2024, doi 10.1088/2632-2153/ad734a).

    Reconstruction (RESEARCH.md):
    ``loss = task(f(x; W+ΔW), y) + λ·Σ_l ‖h_l(x; W+ΔW) − h_l(x; W)‖²``, with the clean features
    ``h_l(x; W)`` from a no-grad pass (detached), fresh ``ΔW_l ~ N(0, (η·max|W_l|)²)`` for every
    weight layer at each call, η = 0.2 in the paper. ``task`` is cross-entropy by default.

    - Noise acts on the weights the forward pass uses: the effective (quantised or loaded)
      weight of each quantised layer, the weight of each plain ``nn.Linear``/``nn.Conv2d``.
      Gradients reach the latent weights through the quantisers' STE. Noise is drawn layer by
      layer in ``named_modules`` order from ``generator`` (or torch's global generator).
    - ``layers``: names of the modules whose outputs are matched (default: every weight layer,
      also a reconstruction). ``feature_reduction="sum"`` is the squared L2 norm per sample,
      averaged over the batch (the formula); ``"mean"`` averages over feature elements too.
    - Both passes run in the model's current mode: in training mode batch norm uses batch
      statistics in both and updates its running statistics twice per call.
    """

    def __init__(self, model: nn.Module, *, lam: float, eta: float = 0.2,
                 layers: Sequence[str] | None = None, task_loss: nn.Module | None = None,
                 feature_reduction: str = "sum", generator: torch.Generator | None = None
                 ) -> None:
        super().__init__()
        if not (math.isfinite(lam) and lam >= 0):
            raise LossError(f"consistency weight λ must be a finite number >= 0, got {lam!r}")
        if not (math.isfinite(eta) and eta >= 0):
            raise LossError(f"noise scale η must be a finite number >= 0, got {eta!r}")
        if feature_reduction not in _FEATURE_REDUCTIONS:
            raise LossError(f"unknown feature_reduction {feature_reduction!r}; valid: "
                            f"{', '.join(_FEATURE_REDUCTIONS)}")
        # Held outside the module tree so that the model's parameters are not this loss's.
        self._model = [model]
        self.lam = float(lam)
        self.eta = float(eta)
        self.task_loss = task_loss if task_loss is not None else CrossEntropyLoss()
        self.feature_reduction = feature_reduction
        self.generator = generator
        self.weight_layers = [name for name, module in model.named_modules()
                              if _is_weight_layer(module)]
        modules = dict(model.named_modules())
        chosen = list(self.weight_layers if layers is None else layers)
        unknown = [name for name in chosen if name not in modules]
        if unknown:
            raise LossError(f"no module named {unknown[0]!r} in the model; weight layers: "
                            f"{', '.join(self.weight_layers) or '(none)'}")
        self.layers = chosen

    @property
    def model(self) -> nn.Module:
        return self._model[0]

    def draw_noise(self) -> dict[str, Tensor]:
        """One ``ΔW`` per weight layer (named_modules order), ``N(0, (η·max|W_l|)²)``."""
        noise: dict[str, Tensor] = {}
        modules = dict(self.model.named_modules())
        for name in self.weight_layers:
            with torch.no_grad():
                w = _weight_in_use(modules[name])
            sigma = self.eta * w.abs().max()
            draw = torch.randn(w.shape, generator=self.generator, dtype=w.dtype, device=w.device)
            noise[name] = draw * sigma
        return noise

    def terms(self, inputs: Tensor, target: Tensor,
              noise: Mapping[str, Tensor] | None = None) -> ConsistencyTerms:
        """All parts of the loss; ``noise`` (per weight layer) defaults to `draw_noise`."""
        if noise is None:
            noise = self.draw_noise()
        model = self.model
        with torch.no_grad(), _capture(model, self.layers) as clean:
            model(inputs)
        with _weight_noise(model, noise), _capture(model, self.layers) as noisy:
            logits: Tensor = _forward_with_plain_noise(model, inputs, noise)
        consistency = logits.new_zeros(())
        for name in self.layers:
            for h_noisy, h_clean in zip(noisy[name], clean[name], strict=True):
                diff = (h_noisy - h_clean.detach()).pow(2)
                if self.feature_reduction == "sum":
                    consistency = consistency + diff.sum() / max(1, diff.shape[0])
                else:
                    consistency = consistency + diff.mean()
        task: Tensor = self.task_loss(logits, target)
        return ConsistencyTerms(task + self.lam * consistency, task, consistency, logits)

    def forward(self, inputs: Tensor, target: Tensor) -> Tensor:
        return self.terms(inputs, target).loss

    def extra_repr(self) -> str:
        return (f"lam={self.lam:g}, eta={self.eta:g}, layers={self.layers}, "
                f"feature_reduction={self.feature_reduction}")


def _is_weight_layer(module: nn.Module) -> bool:
    return isinstance(module, QuantizedWeightLayer) or type(module) in (nn.Linear, nn.Conv2d)


def _weight_in_use(module: nn.Module) -> Tensor:
    if isinstance(module, QuantizedWeightLayer):
        return module.effective_weight()
    weight = module.weight
    assert isinstance(weight, Tensor)  # a Linear/Conv2d, by _is_weight_layer
    return weight


@contextmanager
def _capture(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, list[Tensor]]]:
    """Record the outputs of the named modules (every call) while the block runs."""
    outputs: dict[str, list[Tensor]] = {name: [] for name in names}
    modules = dict(model.named_modules())
    handles = []

    def hook_for(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if not isinstance(output, Tensor):
                raise LossError(f"consistency: module {name!r} does not return a tensor")
            outputs[name].append(output)
        return hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(hook_for(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _weight_noise(model: nn.Module, noise: Mapping[str, Tensor]) -> Iterator[None]:
    """Add ``noise[name]`` to the effective weight of each named quantised layer."""
    touched: list[QuantizedWeightLayer] = []
    try:
        for name, module in model.named_modules():
            if isinstance(module, QuantizedWeightLayer) and name in noise:
                if module.weight_perturbation is not None:
                    raise LossError(f"layer {name!r} already has a weight perturbation")
                delta = noise[name]
                module.weight_perturbation = lambda w, d=delta: w + d
                touched.append(module)
        yield
    finally:
        for module in touched:
            module.weight_perturbation = None


def _forward_with_plain_noise(model: nn.Module, inputs: Tensor,
                              noise: Mapping[str, Tensor]) -> Tensor:
    """The forward pass with ``W + ΔW`` in place of each noisy plain Linear/Conv2d weight."""
    plain = {f"{name}.weight": module.weight + noise[name]
             for name, module in model.named_modules()
             if name in noise and not isinstance(module, QuantizedWeightLayer)}
    if not plain:
        out: Tensor = model(inputs)
        return out
    out = torch.func.functional_call(model, plain, (inputs,))
    return out


_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropyLoss,
    "mcel": MarginCrossEntropyLoss,
    "mhl": ModifiedHingeLoss,
}


def loss_names() -> tuple[str, ...]:
    """The names `resolve_loss` takes (consistency regularisation needs the model: build it
    with `ConsistencyRegularization`)."""
    return tuple(_LOSSES)


def resolve_loss(spec: str | Mapping[str, Any] | nn.Module) -> nn.Module:
    """A loss from a name (``ce``, ``mcel``, ``mhl``), a dict ``{"name": ..., **kwargs}`` (e.g.
    ``{"name": "mcel", "margin": 32, "logit_bound": 100}``) or a module (returned as is)."""
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise LossError("a loss is a name, a dict with 'name', or an nn.Module")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    if name not in _LOSSES:
        raise LossError(f"unknown loss {name!r}; valid: {', '.join(_LOSSES)}")
    try:
        return _LOSSES[name](**kwargs)
    except TypeError as error:
        raise LossError(f"loss {name!r}: {error}") from None
