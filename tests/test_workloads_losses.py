"""Losses against hand-computed values: CE, MCEL, modified hinge, consistency regularisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from memsim.errors import MemsimError
from memsim.workloads.layers import QuantizedLinear
from memsim.workloads.losses import (
    ConsistencyRegularization,
    CrossEntropyLoss,
    LossError,
    MarginCrossEntropyLoss,
    ModifiedHingeLoss,
    loss_names,
    resolve_loss,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Two samples, three classes; targets 0 and 2.
LOGITS = torch.tensor([[2.0, 1.0, 0.1], [0.5, -1.0, 3.0]])
TARGET = torch.tensor([0, 2])

# Hand computation, sample 1: −2 + ln(e² + e¹ + e^0.1) = 0.4170300163;
# sample 2: −3 + ln(e^0.5 + e^−1 + e³) = 0.0956743294.
CE = (0.4170300162778333 + 0.09567432941438225) / 2


def test_cross_entropy_hand_value() -> None:
    assert float(CrossEntropyLoss()(LOGITS, TARGET)) == pytest.approx(CE, rel=1e-6)


def test_mcel_hand_value() -> None:
    # L = 2, m = 1. Sample 1: z̃ = 2·tanh([1, 0.5, 0.05]) = [1.5231883, 0.9242343, 0.0999167],
    # true class shifted: 0.5231883; loss = ln(e^0.5231883 + e^0.9242343 + e^0.0999167)
    # − 0.5231883 = 1.1468584. Sample 2: z̃ = [0.4898373, −0.9242343, 1.8102965 − 1]
    # → loss = 0.6430630.
    loss = MarginCrossEntropyLoss(margin=1.0, logit_bound=2.0)(LOGITS, TARGET)
    assert float(loss) == pytest.approx((1.1468584094356407 + 0.6430629767854299) / 2, rel=1e-6)


def test_mcel_reduces_to_cross_entropy() -> None:
    ce = CrossEntropyLoss()(LOGITS, TARGET)
    exact = MarginCrossEntropyLoss(margin=0.0, logit_bound=math.inf)(LOGITS, TARGET)
    assert torch.equal(exact, ce)
    # L → ∞: L·tanh(z/L) = z − z³/(3L²) + …, so the gap shrinks like 1/L².
    gaps = [abs(float(MarginCrossEntropyLoss(0.0, bound)(LOGITS, TARGET)) - float(ce))
            for bound in (10.0, 100.0, 1000.0)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[1] < 1e-3 and gaps[2] < 1e-5


def test_mcel_margin_raises_the_loss_and_its_gradient_matches_the_formula() -> None:
    ce = float(CrossEntropyLoss()(LOGITS, TARGET))
    losses = [float(MarginCrossEntropyLoss(m, 100.0)(LOGITS, TARGET)) for m in (1.0, 4.0, 32.0)]
    assert ce < losses[0] < losses[1] < losses[2]
    # d/dz of the mean loss: (softmax(z̃ − m·onehot) − onehot)·(1 − tanh²(z/L)) / N.
    bound, margin = 3.0, 2.0
    z = LOGITS.clone().requires_grad_(True)
    torch.autograd.backward(MarginCrossEntropyLoss(margin, bound)(z, TARGET))
    onehot = F.one_hot(TARGET, 3).float()
    shifted = bound * torch.tanh(LOGITS / bound) - margin * onehot
    hand = (torch.softmax(shifted, dim=1) - onehot) * (1 - torch.tanh(LOGITS / bound) ** 2) / 2
    assert z.grad is not None and torch.allclose(z.grad, hand, atol=1e-7)
    # Descent raises the true logits and lowers the others.
    assert bool((z.grad[onehot.bool()] < 0).all()) and bool((z.grad[~onehot.bool()] > 0).all())


def test_mcel_relative_logit_separation() -> None:
    assert MarginCrossEntropyLoss(32.0, 100.0).relative_logit_separation == pytest.approx(0.16)


def test_modified_hinge_hand_value_and_gradient() -> None:
    # b = 2.5. Sample 1 (y = 0, signs [+, −, −]): 2.5 − 2, 2.5 + 1, 2.5 + 0.1
    # → (0.5 + 3.5 + 2.6)/3/2.5 = 0.88. Sample 2 (y = 2, signs [−, −, +]): 2.5 + 0.5, 2.5 − 1,
    # max(0, 2.5 − 3) = 0 → 4.5/3/2.5 = 0.6.
    z = LOGITS.clone().requires_grad_(True)
    loss = ModifiedHingeLoss(margin=2.5)(z, TARGET)
    assert float(loss.detach()) == pytest.approx((0.88 + 0.6) / 2, rel=1e-6)
    torch.autograd.backward(loss)
    # Active terms contribute −sign/(b·C·N) = −sign/15; the saturated one nothing.
    hand = torch.tensor([[-1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]) / 15
    assert z.grad is not None and torch.allclose(z.grad, hand)


def test_modified_hinge_is_zero_beyond_the_margin() -> None:
    logits = torch.tensor([[200.0, -150.0, -300.0]])
    assert float(ModifiedHingeLoss()(logits, torch.tensor([0]))) == 0.0
    assert float(ModifiedHingeLoss()(logits, torch.tensor([1]))) > 0.0


@pytest.mark.parametrize(("spec", "expected"), [
    ("ce", CrossEntropyLoss),
    ({"name": "mcel", "margin": 64, "logit_bound": 100}, MarginCrossEntropyLoss),
    ({"name": "mhl", "margin": 128}, ModifiedHingeLoss),
])
def test_resolve_loss(spec: object, expected: type[nn.Module]) -> None:
    assert isinstance(resolve_loss(spec), expected)  # type: ignore[arg-type]
    assert loss_names() == ("ce", "mcel", "mhl")


@pytest.mark.parametrize(("make", "message"), [
    (lambda: resolve_loss("focal"), "unknown loss 'focal'; valid: ce, mcel, mhl"),
    (lambda: resolve_loss({"name": "mcel", "m": 3}), "loss 'mcel':"),
    (lambda: MarginCrossEntropyLoss(margin=-1.0), "margin m must be"),
    (lambda: MarginCrossEntropyLoss(logit_bound=0.0), "bound L must be > 0"),
    (lambda: ModifiedHingeLoss(margin=0.0), "margin b must be"),
    (lambda: CrossEntropyLoss()(LOGITS, TARGET[:1]), "targets must have shape"),
])
def test_bad_loss_settings_fail(make: object, message: str) -> None:
    with pytest.raises(LossError, match=message):
        make()  # type: ignore[operator]
    assert issubclass(LossError, MemsimError)


# --------------------------------------------------------------------------------------------
# consistency regularisation


def _quantized_mlp() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(QuantizedLinear(4, 5, weight_quantizer="int8"), nn.ReLU(),
                         QuantizedLinear(5, 3, weight_quantizer="int8"))


def _layers(model: nn.Sequential) -> tuple[QuantizedLinear, QuantizedLinear]:
    first, second = model[0], model[2]
    assert isinstance(first, QuantizedLinear) and isinstance(second, QuantizedLinear)
    return first, second


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(4)
    return torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])


def test_consistency_without_noise_is_the_task_loss() -> None:
    model = _quantized_mlp()
    x, y = _batch()
    terms = ConsistencyRegularization(model, lam=10.0, eta=0.0).terms(x, y)
    assert float(terms.consistency.detach()) == 0.0
    assert torch.equal(terms.loss, F.cross_entropy(model(x), y))


def test_consistency_matches_a_hand_computation() -> None:
    model = _quantized_mlp()
    x, y = _batch()
    lam, eta = 0.5, 0.2
    loss_fn = ConsistencyRegularization(model, lam=lam, eta=eta,
                                        generator=torch.Generator().manual_seed(9))
    assert loss_fn.layers == loss_fn.weight_layers == ["0", "2"]
    terms = loss_fn.terms(x, y)
    torch.autograd.backward(terms.loss)
    layer1, layer2 = _layers(model)

    # By hand, with the same draws: ΔW_l = η·max|ŵ_l|·N(0, 1), layer "0" first.
    w1_latent = layer1.weight.detach().clone().requires_grad_(True)
    w2_latent = layer2.weight.detach().clone().requires_grad_(True)
    q1, q2 = layer1.weight_codes().dequantize(), layer2.weight_codes().dequantize()
    generator = torch.Generator().manual_seed(9)
    d1 = torch.randn(q1.shape, generator=generator) * eta * q1.abs().max()
    d2 = torch.randn(q2.shape, generator=generator) * eta * q2.abs().max()
    assert layer1.bias is not None and layer2.bias is not None
    b1, b2 = layer1.bias.detach(), layer2.bias.detach()
    h1_clean = F.linear(x, q1, b1)
    h2_clean = F.linear(torch.relu(h1_clean), q2, b2)
    # The STE makes ŵ's gradient the latent weight's gradient (no clipping here).
    w1 = q1 + (w1_latent - w1_latent.detach())
    w2 = q2 + (w2_latent - w2_latent.detach())
    h1 = F.linear(x, w1 + d1, b1)
    h2 = F.linear(torch.relu(h1), w2 + d2, b2)
    consistency = ((h1 - h1_clean) ** 2).sum() / 6 + ((h2 - h2_clean) ** 2).sum() / 6
    expected = F.cross_entropy(h2, y) + lam * consistency
    torch.autograd.backward(expected)

    assert torch.allclose(terms.consistency, consistency, rtol=1e-5)
    assert torch.allclose(terms.loss, expected, rtol=1e-5)
    assert torch.allclose(terms.logits, h2, atol=1e-6)
    assert layer1.weight.grad is not None and w1_latent.grad is not None
    assert layer2.weight.grad is not None and w2_latent.grad is not None
    assert torch.allclose(layer1.weight.grad, w1_latent.grad, atol=1e-6)
    assert torch.allclose(layer2.weight.grad, w2_latent.grad, atol=1e-6)
    # The perturbation is removed afterwards.
    assert layer1.weight_perturbation is None and layer2.weight_perturbation is None


def test_consistency_on_a_plain_float_model_and_chosen_layers() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = _batch()
    loss_fn = ConsistencyRegularization(model, lam=2.0, layers=["1"], feature_reduction="mean")
    noise = {"0": torch.full((5, 4), 0.1), "2": torch.full((3, 5), -0.2)}
    terms = loss_fn.terms(x, y, noise=noise)
    w1, b1, w2, b2 = (p.detach() for p in model.parameters())
    h_clean = torch.tanh(F.linear(x, w1, b1))
    h_noisy = torch.tanh(F.linear(x, w1 + noise["0"], b1))
    logits = F.linear(h_noisy, w2 + noise["2"], b2)
    consistency = ((h_noisy - h_clean) ** 2).mean()
    assert torch.allclose(terms.consistency, consistency, rtol=1e-5)
    assert torch.allclose(terms.loss, F.cross_entropy(logits, y) + 2.0 * consistency, rtol=1e-5)
    # The model's own weights were not modified.
    assert torch.equal(next(model.parameters()).detach(), w1)


def test_consistency_noise_scales_with_eta_and_is_seeded() -> None:
    model = _quantized_mlp()
    draws = []
    for eta in (0.1, 0.2, 0.2):
        loss_fn = ConsistencyRegularization(model, lam=1.0, eta=eta,
                                            generator=torch.Generator().manual_seed(1))
        draws.append(loss_fn.draw_noise())
    generator = torch.Generator().manual_seed(1)
    for name, layer in zip(("0", "2"), _layers(model), strict=True):
        assert torch.equal(draws[1][name], draws[2][name])
        assert torch.allclose(draws[1][name], 2 * draws[0][name])
        # ΔW = η·max|ŵ|·N(0, 1), drawn layer by layer from the generator.
        q = layer.weight_codes().dequantize()
        standard = torch.randn(q.shape, generator=generator)
        assert torch.allclose(draws[1][name], standard * 0.2 * q.abs().max())


def test_consistency_with_mcel_as_task_loss() -> None:
    model = _quantized_mlp()
    x, y = _batch()
    mcel = MarginCrossEntropyLoss(margin=4.0, logit_bound=10.0)
    terms = ConsistencyRegularization(model, lam=1.0, eta=0.0, task_loss=mcel).terms(x, y)
    assert torch.equal(terms.task, mcel(model(x), y))


def test_consistency_rejects_unknown_layers_and_settings() -> None:
    model = _quantized_mlp()
    with pytest.raises(LossError, match="no module named 'fc' in the model; weight layers: 0, 2"):
        ConsistencyRegularization(model, lam=1.0, layers=["fc"])
    with pytest.raises(LossError, match="λ must be"):
        ConsistencyRegularization(model, lam=-1.0)
    with pytest.raises(LossError, match="η must be"):
        ConsistencyRegularization(model, lam=1.0, eta=math.nan)
    with pytest.raises(LossError, match="valid: sum, mean"):
        ConsistencyRegularization(model, lam=1.0, feature_reduction="max")
