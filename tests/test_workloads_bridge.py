"""The model <-> memory image bridge: exact sizes, identical logits, one bit = one weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import memsim
from memsim.memory import Chip
from memsim.workloads.bridge import BridgeError, ModelImage, clear, region_name
from memsim.workloads.layers import iter_quantized_layers
from memsim.workloads.models import build_model
from memsim.workloads.ptq import quantize_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CASES = [  # (bits, scheme, per_channel, encoding or None for the default)
    (1, "symmetric", False, None),
    (4, "symmetric", False, None),
    (4, "symmetric", True, "sign_magnitude"),
    (2, "symmetric", False, "offset_binary"),
    (8, "symmetric", True, None),
    (4, "asymmetric", False, None),
    (4, "asymmetric", True, "offset_binary"),
    (8, "asymmetric", False, None),
]


def mlp(bits: int, scheme: str, per_channel: bool) -> nn.Module:
    torch.manual_seed(bits)
    return build_model("mlp", num_classes=10, in_channels=1, image_size=8, weight_bits=bits,
                       weight_scheme=scheme, per_channel=per_channel).eval()


def inputs() -> torch.Tensor:
    return torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def flip_bit(image: memsim.memory.MemoryImage, k: int) -> memsim.memory.MemoryImage:
    words = np.array(image.words)
    words[k // 64] ^= np.uint64(1) << np.uint64(k % 64)
    return image.with_words(words)


@pytest.mark.parametrize(("bits", "scheme", "per_channel", "encoding"), CASES)
def test_fault_free_image_gives_identical_logits(bits: int, scheme: str, per_channel: bool,
                                                 encoding: str | None) -> None:
    model = mlp(bits, scheme, per_channel)
    x = inputs()
    with torch.no_grad():
        before = model(x)
    mi = ModelImage.of(model, encoding=encoding)
    n_weights = sum(layer.weight.numel() for _, layer in iter_quantized_layers(model))
    assert mi.n_weights == n_weights
    assert mi.image.n_bits == n_weights * bits  # exactly: no padding between regions
    with mi.loaded(model), torch.no_grad():
        assert torch.equal(model(x), before)
    assert not any(layer.has_loaded_codes for _, layer in iter_quantized_layers(model))


@pytest.mark.parametrize(("bits", "scheme", "per_channel", "encoding"), CASES)
def test_one_flipped_bit_changes_one_weight_by_what_the_encoding_predicts(
        bits: int, scheme: str, per_channel: bool, encoding: str | None) -> None:
    model = mlp(bits, scheme, per_channel)
    mi = ModelImage.of(model, encoding=encoding)
    clean = mi.weights_of(mi.image)
    rng = np.random.default_rng(bits)
    for k in rng.choice(mi.image.n_bits, size=40, replace=False):
        region, element, bit = mi.image.region_of_bit(int(k))
        layer = region.name.removesuffix(".weight")
        codes = mi.codes(layer)
        code = int(codes.codes.reshape(-1)[element])
        enc = mi.encoding(layer).value
        # the value the code's stored word holds, and after flipping bit `bit`
        if enc == "binary":
            word = (code + 1) // 2
        elif enc == "offset_binary" and scheme == "asymmetric":
            word = code
        elif enc in ("twos_complement", "offset_binary"):
            word = code % (1 << bits) if enc == "twos_complement" else code + (1 << (bits - 1))
        elif enc == "sign_magnitude":
            word = abs(code) | ((1 << (bits - 1)) if code < 0 else 0)
        else:  # unsigned
            word = code
        new_word = word ^ (1 << bit)
        if enc == "binary":
            new_code = 2 * new_word - 1
        elif enc == "twos_complement":
            new_code = new_word - (1 << bits) if new_word >> (bits - 1) else new_word
        elif enc == "offset_binary" and scheme != "asymmetric":
            new_code = new_word - (1 << (bits - 1))
        elif enc == "sign_magnitude":
            mag = new_word & ((1 << (bits - 1)) - 1)
            new_code = -mag if new_word >> (bits - 1) else mag
        else:
            new_code = new_word
        flipped = mi.weights_of(flip_bit(mi.image, int(k)))
        for name, w in flipped.items():
            diff = (w != clean[name]).reshape(-1)
            if name != layer:
                assert not diff.any()
                continue
            if new_code == code:  # sign-magnitude -0 <-> +0
                assert not diff.any()
                continue
            assert diff.nonzero().reshape(-1).tolist() == [element]
            scale = codes.scale.reshape(-1)
            zero = codes.zero_point.reshape(-1)
            channel = element // (codes.codes[0].numel()) if per_channel else 0
            s = float(scale[channel if scale.numel() > 1 else 0])
            z = int(zero[channel if zero.numel() > 1 else 0])
            expected = s * (new_code - z) if bits > 1 else float(new_code)
            assert float(w.reshape(-1)[element]) == pytest.approx(expected, rel=1e-6)


def test_placement_subsets_and_errors() -> None:
    model = mlp(4, "symmetric", False)
    names = [n for n, _ in iter_quantized_layers(model)]
    first = ModelImage.of(model, layers=names[:1])
    assert first.layers == tuple(names[:1])
    assert [r.name for r in first.image.regions] == [region_name(names[0])]
    with pytest.raises(BridgeError, match="no quantised layer named 'nope'"):
        ModelImage.of(model, layers=["nope"])
    with pytest.raises(BridgeError, match="cannot be stored as unsigned"):
        ModelImage.of(model, encoding="unsigned")
    with pytest.raises(BridgeError, match="no quantised layers"):
        ModelImage.of(nn.Linear(3, 2))
    other = ModelImage.of(model, layers=names[1:])
    with pytest.raises(BridgeError, match="layout differs"):
        first.load(model, other.image)


def test_ptq_model_runs_through_a_chip() -> None:
    torch.manual_seed(0)
    float_model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    model = quantize_model(float_model, weight_bits=8).eval()
    x = inputs()
    mi = ModelImage.of(model)
    device = memsim.load_device("sram-14nm")
    chip = Chip.for_image(device, mi.image, seed=2)
    result = chip.read(mi.image, {"v_rel": 0.8}, seed=0)
    assert result.bit_errors > 0
    with torch.no_grad():
        clean = model(x)
        mi.load(model, result.image)
        corrupted = model(x)
        clear(model)
        assert torch.equal(model(x), clean)
    assert not torch.equal(corrupted, clean)
