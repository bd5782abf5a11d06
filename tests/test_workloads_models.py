"""Models (shapes, quantised layers, forward and backward) and post-training quantisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from memsim.errors import MemsimError
from memsim.workloads.layers import QuantizedConv2d, QuantizedLinear, iter_quantized_layers
from memsim.workloads.models import ModelError, OutputScale, build_model, model_names
from memsim.workloads.ptq import quantize_model
from memsim.workloads.quant import QuantizationError, SignActivation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# (name, in_channels, image_size, width_multiplier): the paper's inputs; the big networks at a
# reduced width to keep the test fast (their full size is checked by parameter count below).
CASES = [
    ("mlp", 1, 8, 1.0),
    ("vgg3", 1, 28, 0.25),
    ("vgg7", 3, 32, 0.125),
    ("mobilenetv2", 3, 32, 0.25),
    ("resnet18", 3, 32, 0.125),
    ("resnet18", 3, 64, 0.125),
]


def _weight_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def test_model_names() -> None:
    assert model_names() == ("mlp", "vgg3", "vgg7", "mobilenetv2", "resnet18")


@pytest.mark.parametrize(("name", "channels", "size", "width"), CASES)
@pytest.mark.parametrize("bits", [1, 4])
def test_forward_backward_on_a_tiny_batch(name: str, channels: int, size: int, width: float,
                                          bits: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, in_channels=channels, image_size=size,
                        weight_bits=bits, width_multiplier=width)
    x = torch.randn(2, channels, size, size)
    logits = model(x)
    assert logits.shape == (2, 7) and bool(torch.isfinite(logits).all())
    logits.square().sum().backward()
    layers = dict(iter_quantized_layers(model))
    # Every weight layer is quantised, with the requested bits, and receives a gradient.
    assert len(layers) == len(_weight_modules(model)) >= 3
    for layer in layers.values():
        codes = layer.weight_codes()
        assert codes.bits == bits
        lo, hi = codes.quantizer.code_range
        assert lo <= int(codes.codes.min()) and int(codes.codes.max()) <= hi
        assert layer.weight.grad is not None and bool(layer.weight.grad.abs().sum() > 0)


def test_bnn_weights_are_plus_minus_one_and_activations_binary() -> None:
    torch.manual_seed(1)
    model = build_model("vgg3", num_classes=10, in_channels=1, image_size=28, weight_bits=1,
                        binary_activations=True, width_multiplier=0.125)
    for _, layer in iter_quantized_layers(model):
        assert set(torch.unique(layer.weight_codes().codes).tolist()) == {-1, 1}
        assert torch.equal(layer.quantized_weight().abs(),
                           torch.ones_like(layer.weight))
    seen: list[torch.Tensor] = []
    sign_modules = [m for m in model.modules() if isinstance(m, SignActivation)]
    assert len(sign_modules) == 3  # after each hidden layer, not on the input
    for module in sign_modules:
        module.register_forward_hook(lambda _m, _i, out: seen.append(out))
    model(torch.randn(2, 1, 28, 28))
    assert len(seen) == 3 and all(bool((t.abs() == 1).all()) for t in seen)
    scale = model.scale
    assert isinstance(scale, OutputScale) and float(scale.scale.detach()) == pytest.approx(1e-3)


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet18"])
def test_binary_activations_replace_relus(name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=3, image_size=32, weight_bits=1,
                        binary_activations=True, width_multiplier=0.125)
    assert not any(isinstance(m, nn.ReLU | nn.ReLU6) for m in model.modules())
    assert any(isinstance(m, SignActivation) for m in model.modules())


def test_float_models_have_no_quantised_layers() -> None:
    model = build_model("vgg7", num_classes=10, in_channels=3, image_size=32, weight_bits=None,
                        width_multiplier=0.125)
    assert list(iter_quantized_layers(model)) == []
    assert len(_weight_modules(model)) == 8
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_quantiser_options_reach_every_layer() -> None:
    model = build_model("mlp", num_classes=10, in_channels=1, image_size=8, weight_bits=2,
                        weight_scheme="asymmetric", per_channel=True, weight_clip=0.1)
    for _, layer in iter_quantized_layers(model):
        q = layer.weight_quantizer
        assert (q.bits, q.signed, q.per_channel, q.describe()) == \
            (2, False, True, "uint2_per_channel (clip 0.1)")
    fixed = build_model("mlp", num_classes=10, in_channels=1, image_size=8, weight_bits=4,
                        weight_clip=0.25, weight_range="fixed")
    assert {layer.weight_quantizer.describe() for _, layer in iter_quantized_layers(fixed)} == \
        {"int4 (fixed range ±0.25)"}
    with pytest.raises(ModelError, match="weight_range must be one of max, fixed, learned"):
        build_model("mlp", num_classes=10, in_channels=1, image_size=8, weight_bits=4,
                    weight_range="lsq")


@pytest.mark.parametrize(("name", "channels", "size", "expected"), [
    # Published counts (10 classes): ResNet18 for CIFAR (11.17 M); MobileNetV2 (torchvision's
    # layer shapes, 2.24 M); VGG3 = 576 + 36864 + 3136·2048 + 2048·10 weights + 4352 BN + scale.
    ("resnet18", 3, 32, 11_173_962),
    ("resnet18", 3, 64, 11_173_962),
    ("mobilenetv2", 3, 32, 2_236_682),
    ("vgg3", 1, 28, 576 + 36_864 + 3_136 * 2_048 + 2_048 * 10 + 4_352 + 1),
])
def test_full_size_architectures(name: str, channels: int, size: int, expected: int) -> None:
    model = build_model(name, num_classes=10, in_channels=channels, image_size=size,
                        weight_bits=8)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_vgg7_layout_follows_the_authors() -> None:
    model = build_model("vgg7", num_classes=10, in_channels=3, image_size=32, weight_bits=4)
    shapes = [tuple(layer.weight.shape) for _, layer in iter_quantized_layers(model)]
    assert shapes[:6] == [(128, 3, 3, 3), (128, 128, 3, 3), (256, 128, 3, 3), (256, 256, 3, 3),
                          (512, 256, 3, 3), (512, 512, 3, 3)]
    assert shapes[6:] == [(1024, 8192), (10, 1024)]
    assert all(layer.bias is None for _, layer in iter_quantized_layers(model))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "alexnet"}, "unknown model 'alexnet'; valid: mlp, vgg3, vgg7, mobilenetv2, "
                          "resnet18"),
    ({"name": "vgg3", "image_size": 30}, "divisible by 4, got 30"),
    ({"name": "vgg7", "image_size": 28}, "divisible by 8, got 28"),
    ({"name": "mlp", "num_classes": 0}, "num_classes must be a positive integer"),
    ({"name": "mlp", "width_multiplier": 0.0}, "width_multiplier must be > 0"),
    ({"name": "mlp", "output_scale": 0.0}, "output_scale must be a finite number > 0, got 0.0"),
    ({"name": "mlp", "output_scale": float("inf")}, "output_scale must be a finite number > 0"),
    ({"name": "resnet18", "output_scale": 1.0}, "resnet18 has no output scale to fix; models "
                                                "with one: mlp, vgg3, vgg7"),
])
def test_build_model_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"num_classes": 10, "in_channels": 1, "image_size": 8,
                               "weight_bits": 4}
    args.update(kwargs)
    with pytest.raises(ModelError, match=message):
        build_model(**args)  # type: ignore[arg-type]
    assert issubclass(ModelError, MemsimError)


def test_fixed_output_scale_is_a_buffer_that_training_cannot_move() -> None:
    torch.manual_seed(0)
    fixed = build_model("mlp", num_classes=10, in_channels=1, image_size=8, weight_bits=1,
                        width_multiplier=0.125, output_scale=1.0, binary_activations=True)
    learned = build_model("mlp", num_classes=10, in_channels=1, image_size=8, weight_bits=1,
                          width_multiplier=0.125)
    assert "scale.scale" in dict(fixed.named_buffers())
    assert "scale.scale" not in dict(fixed.named_parameters())
    assert "scale.scale" in dict(learned.named_parameters())
    assert set(fixed.state_dict()) == set(learned.state_dict())  # same checkpoint layout
    optimizer = torch.optim.Adam(fixed.parameters(), lr=0.1)
    x = torch.randn(16, 1, 8, 8)
    fixed.train()
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(fixed(x), torch.arange(16) % 10).backward()
        optimizer.step()
    assert float(fixed.scale.scale) == 1.0
    # Fixed at 1, the logits of a BNN with binary activations are integer sums of ±1 products.
    fixed.eval()
    with torch.no_grad():
        logits = fixed(x)
    assert torch.equal(logits, logits.round()) and float(logits.abs().max()) >= 1
    assert repr(fixed.scale) == "OutputScale(fixed=1)" and repr(learned.scale) == "OutputScale()"


def test_build_model_rejects_bad_weight_bits() -> None:
    with pytest.raises(QuantizationError, match="2 to 16 bits"):
        build_model("mlp", num_classes=10, in_channels=1, image_size=8, weight_bits=17)


# --------------------------------------------------------------------------------------------
# post-training quantisation


class _Net(nn.Module):
    """A plain CNN + MLP with a shared layer and a layer type PTQ leaves alone."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False,
                            padding_mode="reflect")
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU())
        self.shared = nn.Linear(16, 16)
        self.alias = self.shared  # one layer registered under two names
        self.out = nn.Linear(16, 5)
        self.norm = nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(torch.relu(self.dw(torch.relu(self.conv(x)))))
        h = self.norm(torch.relu(self.shared(torch.relu(self.shared(h)))))
        out: torch.Tensor = self.out(h)
        return out


def _float_net() -> _Net:
    torch.manual_seed(2)
    return _Net().eval()


def test_ptq_at_8_bits_stays_close_to_the_float_model() -> None:
    net = _float_net()
    x = torch.randn(16, 3, 8, 8)
    errors = {}
    with torch.no_grad():
        reference = net(x)
        for bits in (8, 4):
            quantized = quantize_model(net, weight_bits=bits)
            errors[bits] = float((quantized(x) - reference).abs().max() / reference.abs().max())
    assert errors[8] < 0.02
    assert errors[8] < errors[4] < 0.5


def test_ptq_replaces_linear_and_conv_with_codes_in_range() -> None:
    net = _float_net()
    original = {k: v.clone() for k, v in net.state_dict().items()}
    quantized = quantize_model(net, weight_bits=4, weight_scheme="asymmetric")
    names = [name for name, _ in iter_quantized_layers(quantized)]
    assert names == ["conv", "dw", "head.1", "shared", "out"]
    assert isinstance(quantized.conv, QuantizedConv2d) and isinstance(quantized.out,
                                                                       QuantizedLinear)
    assert quantized.dw.padding_mode == "reflect" and quantized.dw.groups == 8
    assert isinstance(quantized.norm, nn.LayerNorm)
    assert quantized.alias is quantized.shared
    assert not quantized.training
    for _, layer in iter_quantized_layers(quantized):
        codes = layer.weight_codes()
        assert codes.bits == 4 and not codes.signed and codes.scale.shape == (
            layer.weight.shape[0],)
        assert int(codes.codes.min()) >= 0 and int(codes.codes.max()) <= 15
    # The latent weights and biases are the pretrained ones; the original model is unchanged.
    assert torch.equal(quantized.conv.bias, original["conv.bias"])  # type: ignore[arg-type]
    assert torch.equal(quantized.out.weight, original["out.weight"])
    for key, value in net.state_dict().items():
        assert torch.equal(value, original[key])
    assert type(net.conv) is nn.Conv2d


def test_ptq_exclude_keeps_layers_float() -> None:
    quantized = quantize_model(_float_net(), weight_bits=8, exclude=["conv", "out"])
    assert [n for n, _ in iter_quantized_layers(quantized)] == ["dw", "head.1", "shared"]
    with pytest.raises(QuantizationError, match="exclude names 'norm'"):
        quantize_model(_float_net(), exclude=["norm"])


def test_ptq_of_a_bare_layer_and_to_binary() -> None:
    torch.manual_seed(4)
    layer = nn.Linear(4, 3)
    quantized = quantize_model(layer, weight_bits=1)
    assert isinstance(quantized, QuantizedLinear)
    x = torch.randn(2, 4)
    expected = x @ torch.where(layer.weight > 0, 1.0, -1.0).T + layer.bias
    assert torch.allclose(quantized(x), expected, atol=1e-6)


def test_ptq_model_runs_on_loaded_codes() -> None:
    quantized = quantize_model(_float_net(), weight_bits=8)
    x = torch.randn(4, 3, 8, 8)
    before = quantized(x)
    for _, layer in iter_quantized_layers(quantized):
        layer.load_weight_codes(layer.weight_codes().codes)
    assert torch.equal(quantized(x), before)
