"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from memsim.workloads.metrics import (
    inter_neuron_importance,
    logit_stats,
    neuron_threshold_margins,
    top2_gap,
    true_class_margin,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOGITS = torch.tensor([[3.0, 1.0, 0.0],    # right (y=0), gap 2, margin 2
                       [0.0, 5.0, 4.0],    # wrong (y=2), gap 1, margin -1
                       [1.0, 1.0, -2.0]])  # tie (y=1): wrong, gap 0, margin 0
LABELS = torch.tensor([0, 2, 1])


def test_margins_by_hand() -> None:
    assert top2_gap(LOGITS).tolist() == [2.0, 1.0, 0.0]
    assert true_class_margin(LOGITS, LABELS).tolist() == [2.0, -1.0, 0.0]


def test_logit_stats_by_hand() -> None:
    s = logit_stats(LOGITS, LABELS)
    assert s.n == 3
    assert s.accuracy == pytest.approx(1 / 3)
    assert s.mlm == pytest.approx(1.0)
    assert s.mean_true_margin == pytest.approx(1 / 3)

    def std(v: list[float]) -> float:
        m = sum(v) / len(v)
        return math.sqrt(sum((x - m) ** 2 for x in v) / len(v))

    expected = (2 / std([3, 1, 0]) + 1 / std([0, 5, 4]) + 0 / std([1, 1, -2])) / 3
    assert s.mlm_normalised == pytest.approx(expected)
    assert s.margin_quantiles[2] == pytest.approx(0.0)  # the median margin


def test_normalised_margin_ignores_scale_and_shift_raw_does_not() -> None:
    a = logit_stats(LOGITS, LABELS)
    b = logit_stats(LOGITS * 7 + 3, LABELS)
    assert b.mlm == pytest.approx(7 * a.mlm)
    assert b.mlm_normalised == pytest.approx(a.mlm_normalised)
    assert b.accuracy == a.accuracy


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        logit_stats(LOGITS, LABELS[:2])
    with pytest.raises(ValueError, match="no samples"):
        logit_stats(LOGITS[:0], LABELS[:0])


def bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    bn = net[1]
    assert isinstance(bn, nn.BatchNorm1d)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 0.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
        bn.weight.copy_(torch.tensor([2.0, -1.0, 0.5]))
        bn.bias.copy_(torch.tensor([1.0, 0.0, -0.5]))
    return net.eval()


def test_neuron_threshold_margin_by_hand() -> None:
    net = bn_net()
    x = torch.randn(16, 4)
    a = net[0](x).detach()
    bn = net[1]
    sigma = torch.sqrt(torch.tensor([4.0, 1.0, 0.25]) + bn.eps)
    tau = torch.tensor([0.5, -1.0, 0.0]) - torch.tensor([1.0, 0.0, -0.5]) * sigma / torch.tensor(
        [2.0, -1.0, 0.5])
    expected = (a - tau).abs().mean(dim=0) / 4  # fan-in of the first Linear
    got = neuron_threshold_margins(net, x)
    assert list(got) == ["1"]
    assert torch.allclose(got["1"], expected, atol=1e-6)
    # the threshold is where BN's output changes sign
    with torch.no_grad():
        at_tau = bn(tau.repeat(2, 1))
    assert torch.allclose(at_tau, torch.zeros_like(at_tau), atol=1e-5)


def test_inter_neuron_importance_is_the_loss_change() -> None:
    net = bn_net()
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    got = inter_neuron_importance(net, x, y)["1"]
    loss = nn.functional.cross_entropy
    with torch.no_grad():
        base = loss(net(x), y)
        h = net[1](net[0](x))
        for c in range(3):
            hz = h.clone()
            hz[:, c] = 0
            assert float(got[c]) == pytest.approx(float(loss(net[2](hz), y) - base), abs=1e-6)
    flipped = inter_neuron_importance(net, x, y, mode="flip", max_neurons_per_layer=2)["1"]
    assert flipped.shape == (2,)
    with pytest.raises(ValueError, match="mode"):
        inter_neuron_importance(net, x, y, mode="drop")


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(2, 12), st.integers(0, 2**32 - 1), st.booleans())
def test_one_pass_margins_equal_the_definition(n: int, classes: int, seed: int,
                                               ties: bool) -> None:
    """`logit_stats` finds the true-class margin from one top-2; it must match
    `true_class_margin` bit for bit, ties (counted wrong) included."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g, dtype=torch.float64)
    if ties:  # few distinct values: top-1 ties, and ties with the true class
        logits = torch.round(logits * 1.5)
    labels = torch.randint(0, classes, (n,), generator=g)
    margin = true_class_margin(logits, labels)
    s = logit_stats(logits, labels)
    assert s.accuracy == float((margin > 0).double().mean())
    assert s.mean_true_margin == float(margin.mean())
    assert s.mlm == float(top2_gap(logits).mean())
    lean = logit_stats(logits, labels, quantiles=False)
    assert lean.margin_quantiles == () and len(s.margin_quantiles) == 5
    assert (lean.accuracy, lean.mlm, lean.mlm_normalised, lean.mean_true_margin) == (
        s.accuracy, s.mlm, s.mlm_normalised, s.mean_true_margin)
