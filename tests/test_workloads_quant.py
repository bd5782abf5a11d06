"""Quantisers (forward, STE, codes) and quantised layers (codes round trip, loading)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from memsim.errors import MemsimError
from memsim.memory.encoding import decode, encode, value_range
from memsim.workloads.layers import (
    QuantizedConv2d,
    QuantizedLinear,
    clear_weight_codes,
    clip_weights_,
    iter_quantized_layers,
    load_weight_codes,
    weight_codes,
)
from memsim.workloads.ptq import quantized_copy_of_layer
from memsim.workloads.quant import (
    AsymmetricQuantizer,
    LearnedStepQuantizer,
    QuantizationError,
    SignActivation,
    SignQuantizer,
    SymmetricQuantizer,
    WeightQuantizer,
    make_weight_quantizer,
    quantizer_fields,
    resolve_quantizer,
    sign_ste,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


ALL_UNIFORM = [
    (cls, bits, per_channel)
    for cls in (SymmetricQuantizer, AsymmetricQuantizer)
    for bits in (2, 4, 8)
    for per_channel in (False, True)
]


def _grad(fn: object, w: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """d(sum(upstream · fn(w)))/dw by autograd."""
    w = w.clone().requires_grad_(True)
    out = fn(w)  # type: ignore[operator]
    (out * upstream).sum().backward()
    assert w.grad is not None
    return w.grad


# --------------------------------------------------------------------------------------------
# sign


def test_sign_forward_maps_zero_to_minus_one() -> None:
    w = torch.tensor([-2.0, -0.3, 0.0, 1e-8, 0.7, 3.0])
    expected = torch.tensor([-1, -1, -1, 1, 1, 1], dtype=torch.int32)
    codes = SignQuantizer().quantize(w)
    assert torch.equal(codes.codes, expected)
    assert torch.equal(SignQuantizer().fake_quantize(w), expected.float())
    assert torch.equal(sign_ste(w), expected.float())


@pytest.mark.parametrize("ste_clip", [1.0, 0.5])
def test_sign_pseudo_gradient_is_clipped_identity(ste_clip: float) -> None:
    w = torch.tensor([-2.0, -1.0, -0.5, -0.2, 0.0, 0.3, 0.5, 0.9, 1.0, 1.5])
    upstream = torch.arange(1.0, 11.0)
    hand = upstream * (w.abs() <= ste_clip).float()
    assert torch.equal(_grad(SignQuantizer(ste_clip).fake_quantize, w, upstream), hand)
    assert torch.equal(_grad(lambda x: sign_ste(x, ste_clip), w, upstream), hand)
    assert torch.equal(_grad(SignActivation(ste_clip), w, upstream), hand)


# --------------------------------------------------------------------------------------------
# uniform: hand-computed examples


def test_symmetric_hand_example_rounds_half_to_even() -> None:
    # 3 bits: Q = 3, s = max|w|/Q = 0.5; w/s = [3, -1.5, 0.5, 0, -1.1] -> [3, -2, 0, 0, -1].
    w = torch.tensor([1.5, -0.75, 0.25, 0.0, -0.55])
    codes = SymmetricQuantizer(3).quantize(w)
    assert torch.equal(codes.codes, torch.tensor([3, -2, 0, 0, -1], dtype=torch.int32))
    assert torch.equal(codes.scale, torch.tensor([0.5]))
    assert torch.equal(codes.zero_point, torch.tensor([0], dtype=torch.int32))
    assert torch.equal(codes.dequantize(), torch.tensor([1.5, -1.0, 0.0, 0.0, -0.5]))


def test_asymmetric_hand_example() -> None:
    # 2 bits: N = 3, [lo, hi] = [-0.5, 1.0], s = 0.5, z = round(0.5/0.5) = 1,
    # q = round(w/s) + z = [-1, 2, 0 (0.5 -> 0), 0] + 1.
    w = torch.tensor([-0.5, 1.0, 0.25, 0.1])
    codes = AsymmetricQuantizer(2).quantize(w)
    assert torch.equal(codes.codes, torch.tensor([0, 3, 1, 1], dtype=torch.int32))
    assert torch.equal(codes.scale, torch.tensor([0.5]))
    assert torch.equal(codes.zero_point, torch.tensor([1], dtype=torch.int32))
    assert torch.equal(codes.dequantize(), torch.tensor([-0.5, 1.0, 0.0, 0.0]))


def test_asymmetric_range_contains_zero() -> None:
    # All weights positive: lo is 0, so zero point 0 and 0.0 is exact.
    w = torch.tensor([0.2, 0.5, 0.8])
    codes = AsymmetricQuantizer(4).quantize(w)
    assert int(codes.zero_point) == 0
    assert torch.allclose(codes.scale, torch.tensor([0.8 / 15]))
    assert int(codes.codes.max()) == 15


# --------------------------------------------------------------------------------------------
# uniform: round trips, ranges, per channel


@pytest.mark.parametrize(("cls", "bits", "per_channel"), ALL_UNIFORM)
def test_codes_round_trip_and_lie_in_range(cls: type[WeightQuantizer], bits: int,
                                           per_channel: bool) -> None:
    torch.manual_seed(bits * 2 + per_channel)
    w = torch.randn(6, 3, 3, 3) * torch.logspace(-2, 0, 6).reshape(6, 1, 1, 1)
    q = cls(bits, per_channel)  # type: ignore[call-arg]
    codes = q.quantize(w)
    lo, hi = q.code_range
    assert codes.codes.dtype == torch.int32 and codes.codes.shape == w.shape
    assert lo <= int(codes.codes.min()) and int(codes.codes.max()) <= hi
    assert codes.scale.shape == ((6,) if per_channel else (1,))
    assert codes.bits == bits and codes.signed == (cls is SymmetricQuantizer)
    # The training path and the load path give the same floats, bit for bit.
    assert torch.equal(codes.dequantize(), q.fake_quantize(w))
    # Quantisation error at most half a step.
    step = codes.scale.reshape(-1, 1, 1, 1) if per_channel else codes.scale
    assert bool(((codes.dequantize() - w).abs() <= step / 2 * (1 + 1e-5)).all())


@pytest.mark.parametrize(("cls", "bits", "per_channel"), ALL_UNIFORM)
def test_uniform_pseudo_gradient_is_identity_without_clip(cls: type[WeightQuantizer],
                                                          bits: int, per_channel: bool) -> None:
    torch.manual_seed(7)
    w = torch.randn(4, 5)
    upstream = torch.randn(4, 5)
    q = cls(bits, per_channel)  # type: ignore[call-arg]
    assert torch.equal(_grad(q.fake_quantize, w, upstream), upstream)


def test_symmetric_clip_saturates_and_masks_gradient() -> None:
    w = torch.tensor([-0.5, -0.1, -0.05, 0.0, 0.02, 0.1, 0.3])
    q = SymmetricQuantizer(4, clip=0.1)
    codes = q.quantize(w)
    # Q = 7, s = 0.1/7: beyond the clip the codes saturate at ±7.
    assert torch.equal(codes.codes, torch.tensor([-7, -7, -4, 0, 1, 7, 7], dtype=torch.int32))
    assert float(codes.dequantize().abs().max()) <= 0.1 + 1e-7
    upstream = torch.arange(1.0, 8.0)
    hand = upstream * (w.abs() <= 0.1).float()
    assert torch.equal(_grad(q.fake_quantize, w, upstream), hand)


@pytest.mark.parametrize("cls", [SymmetricQuantizer, AsymmetricQuantizer])
def test_a_fixed_range_keeps_its_step_whatever_the_weights(cls: type[WeightQuantizer]) -> None:
    """With fixed_range the step is clip/Q (clip/N) for small weights and large ones alike,
    where the max-|w| range would move with the weights."""
    q = cls(4, clip=0.5, fixed_range=True)  # type: ignore[call-arg]
    small, large = torch.tensor([-0.05, 0.0, 0.05]), torch.tensor([-2.0, 0.0, 2.0, 0.25])
    assert float(q.quantize(small).scale) == float(q.quantize(large).scale)
    assert float(q.quantize(small).scale) == pytest.approx(
        0.5 / 7 if cls is SymmetricQuantizer else 1.0 / 15)
    moving = cls(4, clip=0.5)  # type: ignore[call-arg]
    assert float(moving.quantize(small).scale) < float(q.quantize(small).scale)
    codes = q.quantize(large)
    # saturated at the range (the asymmetric grid covers it up to half a step, z being rounded)
    slack = 0.0 if cls is SymmetricQuantizer else float(codes.scale) / 2
    assert float(codes.dequantize().abs().max()) <= 0.5 + slack + 1e-6
    upstream = torch.ones(4)
    assert torch.equal(_grad(q.fake_quantize, large, upstream),
                       (large.abs() <= 0.5).float())
    assert "fixed range ±0.5" in q.describe()
    assert resolve_quantizer(quantizer_fields(q)) == q


@pytest.mark.parametrize("per_channel", [False, True])
def test_a_learned_step_trains_with_lsq_gradients(per_channel: bool) -> None:
    """The layer's step starts at 2·mean|w|/√Q; ŵ is the codes at that step bit for bit, and
    the pseudo-gradients are LSQ's: 1 to the weights inside the range, and to the step
    (round(w/s) − w/s inside, ±Q outside) scaled by 1/√(N·Q)."""
    torch.manual_seed(3)
    q = LearnedStepQuantizer(4, per_channel)
    layer = QuantizedLinear(16, 3, weight_quantizer=q)
    with torch.no_grad():
        layer.weight[0, 0] = 5.0  # far outside any range: saturated
    layer.reset_weight_step()
    assert layer.weight_step is not None
    w = layer.weight.detach()
    rows = w.reshape(3, -1) if per_channel else w.reshape(1, -1)
    expected_step = 2 * rows.abs().mean(dim=1) / 7 ** 0.5
    assert torch.allclose(layer.weight_step.detach(), expected_step)
    out = layer.quantized_weight()
    codes = layer.weight_codes()
    assert torch.equal(codes.dequantize(), out.detach())
    assert int(codes.codes[0, 0]) == 7
    upstream = torch.randn(3, 16)
    (out * upstream).sum().backward()
    s = layer.weight_step.detach().reshape(-1, 1) if per_channel else layer.weight_step.detach()
    v = w / s
    inside = v.abs() <= 7
    assert layer.weight.grad is not None and layer.weight_step.grad is not None
    assert torch.equal(layer.weight.grad, upstream * inside.float())
    d_step = torch.where(inside, torch.round(v) - v, torch.sign(v) * 7)
    n = 16 if per_channel else 48  # weights per step
    per_element = upstream * d_step
    hand = per_element.sum(dim=1) if per_channel else per_element.sum().reshape(1)
    assert torch.allclose(layer.weight_step.grad, hand / (n * 7) ** 0.5, atol=1e-6)
    # the step is the layer's: the quantiser alone cannot quantise
    with pytest.raises(QuantizationError, match="parameter of its layer"):
        q.quantize(w)


def test_a_learned_step_round_trips_and_refuses_a_range() -> None:
    q = LearnedStepQuantizer(4)
    assert resolve_quantizer(quantizer_fields(q)) == q
    assert resolve_quantizer({"name": "int4", "learned_step": True}) == q
    assert make_weight_quantizer(4, learned_step=True, per_channel=True) == \
        LearnedStepQuantizer(4, True)
    assert q != SymmetricQuantizer(4) and q.describe() == "int4 (learned step)"
    # a copied float layer gets the step of its own weights
    plain = nn.Linear(6, 2)
    copied = quantized_copy_of_layer(plain, q)
    assert copied.weight_step is not None and torch.equal(copied.weight, plain.weight)
    assert torch.allclose(copied.weight_step.detach(), q.initial_step(plain.weight))
    for spec, message in (({"bits": 4, "learned_step": True, "clip": 0.1}, "no clip"),
                          ({"bits": 4, "scheme": "asymmetric", "learned_step": True},
                           "symmetric weights only"),
                          ({"name": "uint4", "learned_step": True}, "symmetric weights only"),
                          ({"bits": 4, "learned_step": 1}, "learned_step must be true"),
                          ({"bits": 1, "learned_step": True}, "sign quantizer")):
        with pytest.raises(QuantizationError, match=message):
            resolve_quantizer(spec)


def test_asymmetric_clip_masks_gradient_outside_range() -> None:
    w = torch.tensor([-0.4, -0.2, 0.0, 0.1, 0.25])
    q = AsymmetricQuantizer(8, clip=0.2)
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    hand = upstream * ((w >= -0.2) & (w <= 0.2)).float()
    assert torch.equal(_grad(q.fake_quantize, w, upstream), hand)
    # The grid spans [-0.2, 0.2] up to half a step: the zero point z = round(127.5) = 128.
    codes = q.quantize(w)
    assert int(codes.zero_point) == 128
    s = float(codes.scale)
    assert s == pytest.approx(0.4 / 255)
    assert torch.allclose(codes.dequantize(), s * (codes.codes - 128).float())
    assert torch.equal(codes.codes[:2], torch.tensor([0, 0], dtype=torch.int32))
    assert -0.2 - s / 2 <= float(codes.dequantize().min()) < -0.2


def test_per_channel_scales_follow_each_channel() -> None:
    torch.manual_seed(3)
    w = torch.randn(4, 8) * torch.tensor([[0.01], [0.1], [1.0], [10.0]])
    per_channel = SymmetricQuantizer(4, per_channel=True).quantize(w)
    per_tensor = SymmetricQuantizer(4).quantize(w)
    assert torch.allclose(per_channel.scale, w.abs().amax(dim=1) / 7)
    assert torch.allclose(per_tensor.scale, w.abs().max().reshape(1) / 7)
    # Every channel uses its full grid per channel; the small channels round to 0 per tensor.
    assert torch.equal(per_channel.codes.abs().amax(dim=1), torch.full((4,), 7, dtype=torch.int32))
    assert int(per_tensor.codes[0].abs().max()) == 0
    err_c = (per_channel.dequantize() - w).abs().amax(dim=1)
    err_t = (per_tensor.dequantize() - w).abs().amax(dim=1)
    assert bool((err_c <= err_t + 1e-7).all()) and bool((err_c[:3] < err_t[:3]).all())


def test_zero_tensor_quantises_to_zero_codes() -> None:
    for q in (SymmetricQuantizer(4), AsymmetricQuantizer(4), SymmetricQuantizer(8, True)):
        codes = q.quantize(torch.zeros(3, 2))
        assert torch.equal(codes.dequantize(), torch.zeros(3, 2))
        assert bool(torch.isfinite(codes.scale).all())


def test_float64_weights_keep_their_dtype() -> None:
    w = torch.randn(3, 4, dtype=torch.float64)
    codes = SymmetricQuantizer(8).quantize(w)
    assert codes.scale.dtype == torch.float64
    assert torch.equal(codes.dequantize(), SymmetricQuantizer(8).fake_quantize(w))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_codes_survive_memsim_encodings(bits: int) -> None:
    # The code ranges promised to the bridge fit the memory layer's encodings.
    torch.manual_seed(bits)
    w = torch.randn(5, 7)
    sym = SymmetricQuantizer(bits).quantize(w)
    assert sym.encoding == "twos_complement"
    lo, hi = value_range("twos_complement", bits)
    assert (lo, hi) == sym.load_range
    for enc in ("twos_complement", "sign_magnitude", "offset_binary"):
        back = decode(encode(sym.codes.numpy(), enc, bits), enc, bits)
        assert np.array_equal(back, sym.codes.numpy())
    asym = AsymmetricQuantizer(bits).quantize(w)
    assert asym.encoding == "unsigned" and asym.load_range == value_range("unsigned", bits)
    sign = SignQuantizer().quantize(w)
    back = decode(encode(sign.codes.numpy(), "binary", 1), "binary", 1)
    assert sign.encoding == "binary" and np.array_equal(back, sign.codes.numpy())


# --------------------------------------------------------------------------------------------
# resolver and settings


def test_resolver_names_dicts_and_instances() -> None:
    assert resolve_quantizer("sign") == SignQuantizer()
    assert resolve_quantizer("int4") == SymmetricQuantizer(4)
    assert resolve_quantizer("uint8_per_channel") == AsymmetricQuantizer(8, True)
    assert resolve_quantizer({"name": "int2", "clip": 0.1}) == SymmetricQuantizer(2, clip=0.1)
    assert resolve_quantizer({"bits": 4, "scheme": "asymmetric", "per_channel": True}) == \
        AsymmetricQuantizer(4, True)
    q = SymmetricQuantizer(8, True, 0.5)
    assert resolve_quantizer(q) is q
    for quantizer in (SignQuantizer(0.5), SymmetricQuantizer(3, True, 0.2), AsymmetricQuantizer(6)):
        assert resolve_quantizer(quantizer_fields(quantizer)) == quantizer


@pytest.mark.parametrize(("spec", "message"), [
    ("int", "valid: sign, int<k>"),
    ("int1", "2 to 16 bits"),
    ("uint17", "2 to 16 bits"),
    ({"bits": 4, "colour": 1}, "unknown quantizer field 'colour'; valid: name, bits"),
    ({"bits": 4, "scheme": "log"}, "valid: symmetric, asymmetric"),
    ({"name": "int4", "bits": 4}, "not both"),
    ({"bits": 1, "per_channel": True}, "sign quantizer"),
    ({"name": "int4", "clip": -1.0}, "clip must be"),
    ({"name": "int4", "clip": True}, "clip must be"),
    ({"name": "int4", "fixed_range": True}, "fixed range needs clip"),
    ({"bits": 4, "clip": 0.1, "fixed_range": "yes"}, "fixed_range must be true or false"),
    ({"bits": 1, "fixed_range": True}, "sign quantizer"),
])
def test_resolver_rejects_bad_specs(spec: object, message: str) -> None:
    with pytest.raises(QuantizationError, match=message.replace("<", ".").replace(">", ".")):
        resolve_quantizer(spec)  # type: ignore[arg-type]
    assert issubclass(QuantizationError, MemsimError)


def test_make_weight_quantizer_dispatches_on_bits() -> None:
    assert make_weight_quantizer(1) == SignQuantizer()
    assert make_weight_quantizer(4) == SymmetricQuantizer(4)
    assert make_weight_quantizer(2, scheme="asymmetric", per_channel=True) == \
        AsymmetricQuantizer(2, True)
    with pytest.raises(QuantizationError, match="integer"):
        make_weight_quantizer(True)


# --------------------------------------------------------------------------------------------
# layers


def _conv(quantizer: str = "int4_per_channel") -> QuantizedConv2d:
    torch.manual_seed(11)
    return QuantizedConv2d(3, 4, 3, padding=1, bias=True, weight_quantizer=quantizer)


def test_layers_match_their_float_counterparts_on_quantised_weights() -> None:
    layer = _conv()
    x = torch.randn(2, 3, 6, 6)
    plain = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        plain.weight.copy_(layer.weight_codes().dequantize())
        assert plain.bias is not None and layer.bias is not None
        plain.bias.copy_(layer.bias)
    assert torch.allclose(layer(x), plain(x), atol=1e-6)
    lin = QuantizedLinear(5, 3, weight_quantizer="uint8")
    ref = nn.functional.linear(x.reshape(2, -1)[:, :5], lin.weight_codes().dequantize(), lin.bias)
    assert torch.allclose(lin(x.reshape(2, -1)[:, :5]), ref, atol=1e-6)


@pytest.mark.parametrize("quantizer", ["sign", "int2", "int8_per_channel", "uint4",
                                       "uint8_per_channel"])
def test_loading_unchanged_codes_reproduces_outputs_exactly(quantizer: str) -> None:
    layer = _conv(quantizer)
    x = torch.randn(2, 3, 5, 5)
    before = layer(x)
    codes = layer.weight_codes()
    for loaded in (codes, codes.codes, codes.codes.numpy().astype(np.int64)):
        layer.load_weight_codes(loaded)
        assert layer.has_loaded_codes
        assert torch.equal(layer.effective_weight(), layer.quantized_weight())
        assert torch.equal(layer(x), before)
    layer.clear_weight_codes()
    assert not layer.has_loaded_codes and torch.equal(layer(x), before)


def test_loaded_codes_drive_the_forward_pass_and_keep_the_ste() -> None:
    layer = QuantizedLinear(3, 2, bias=False, weight_quantizer="int4")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.7, -0.35, 0.1], [0.0, 0.2, -0.7]]))
    codes = layer.weight_codes()
    s = float(codes.scale)
    corrupted = codes.codes.clone()
    # -8 lies outside the symmetric grid; a flip can make it (0000 -> 1000, two's complement).
    corrupted[0, 0] = -8
    layer.load_weight_codes(corrupted)
    x = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.allclose(layer(x), torch.tensor([[-8 * s, 0.0]]))
    # Gradients still reach the latent weights, with the clean quantiser's mask (all ones).
    layer(torch.ones(1, 3)).sum().backward()
    assert layer.weight.grad is not None
    assert torch.equal(layer.weight.grad, torch.ones(2, 3))


def test_weight_perturbation_applies_to_the_effective_weight() -> None:
    layer = QuantizedLinear(3, 2, bias=False, weight_quantizer="int8")
    delta = torch.full((2, 3), 0.25)
    layer.weight_perturbation = lambda w: w + delta
    x = torch.randn(4, 3)
    expected = x @ (layer.weight_codes().dequantize() + delta).T
    assert torch.allclose(layer(x), expected, atol=1e-6)


@pytest.mark.parametrize(("quantizer", "codes", "message"), [
    ("int4", torch.full((4, 3, 3, 3), 8, dtype=torch.int32), r"\[-8, 7\]; got 8"),
    ("uint4", torch.full((4, 3, 3, 3), -1, dtype=torch.int32), r"\[0, 15\]; got -1"),
    ("sign", torch.zeros((4, 3, 3, 3), dtype=torch.int32), "±1; got 0"),
    ("int4", torch.zeros((4, 3, 3, 3)), "integer tensor"),
    ("int4", torch.zeros((4, 3, 3), dtype=torch.int32), "shape"),
])
def test_loading_bad_codes_fails(quantizer: str, codes: torch.Tensor, message: str) -> None:
    layer = _conv(quantizer)
    with pytest.raises(QuantizationError, match=message):
        layer.load_weight_codes(codes)
    assert not layer.has_loaded_codes


def test_codes_of_another_quantizer_are_refused() -> None:
    codes = _conv("int4").weight_codes()
    with pytest.raises(QuantizationError, match="int4 cannot be loaded into a layer quantised "
                                                "with int8"):
        _conv("int8").load_weight_codes(codes)


def test_model_helpers_list_load_clear_and_clip() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(
        QuantizedConv2d(1, 2, 3, weight_quantizer="int8"), nn.ReLU(), nn.Flatten(),
        nn.Sequential(QuantizedLinear(8, 3, weight_quantizer="sign")), nn.Linear(3, 2))
    names = [name for name, _ in iter_quantized_layers(model)]
    assert names == ["0", "3.0"]
    codes = weight_codes(model)
    assert list(codes) == names and codes["3.0"].bits == 1
    x = torch.randn(2, 1, 4, 4)
    before = model(x)
    flipped = -codes["3.0"].codes
    load_weight_codes(model, {"3.0": flipped})
    assert not torch.equal(model(x), before)
    clear_weight_codes(model)
    assert torch.equal(model(x), before)
    message = re.escape("no quantised layer named '4'; valid: 0, 3.0")
    with pytest.raises(QuantizationError, match=message):
        load_weight_codes(model, {"4": flipped})
    clip_weights_(model, 0.0625)  # a binary fraction, so float32 holds it exactly
    for _, layer in iter_quantized_layers(model):
        assert float(layer.weight.detach().abs().max()) == 0.0625
    plain = model[4]
    assert isinstance(plain, nn.Linear)
    assert float(plain.weight.detach().abs().max()) > 0.0625  # plain layers are untouched
    with pytest.raises(QuantizationError, match="w_max must be"):
        clip_weights_(model, 0.0)


def test_layers_load_memory_arrays() -> None:
    # What the bridge hands back: int64 values from `decode`, or raw uint32 unsigned codes.
    layer = QuantizedLinear(6, 4, weight_quantizer="uint4")
    codes = layer.weight_codes()
    raw = encode(codes.codes.numpy(), "unsigned", 4)
    assert raw.dtype == np.uint32
    for array in (raw, decode(raw, "unsigned", 4), torch.from_numpy(raw)):
        layer.load_weight_codes(array)
        assert torch.equal(layer.effective_weight(), layer.quantized_weight())
    assert torch.equal(codes.dequantize(raw), codes.dequantize())
    with pytest.raises(QuantizationError, match="beyond any code range"):
        layer.load_weight_codes(np.full((4, 6), 2**64 - 1, dtype=np.uint64))
    with pytest.raises(QuantizationError, match="must be integers"):
        layer.load_weight_codes(np.zeros((4, 6)))  # type: ignore[arg-type]
