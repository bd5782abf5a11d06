"""Models with quantised weights: MLP, VGG3, VGG7, MobileNetV2 and ResNet18, and `build_model`.

Every Linear and Conv2d (first and last layers, shortcuts and depthwise convolutions included)
is a quantised layer, so every weight a model has lives in the memory image; biases, batch-norm
parameters and the output scale stay float. ``weight_bits=None`` builds the same network with
plain float layers (for a float baseline or `memsim.workloads.ptq.quantize_model`).

===============  =============================  =============================================
name             input (the MCEL paper's use)   architecture
===============  =============================  =============================================
``mlp``          1×8×8 (built-in digits)        2 hidden FC layers (256), BN, hard tanh, scale
``vgg3``         1×28×28 (FashionMNIST)         2 conv (64) + 2 FC (2048), the authors' code
``vgg7``         3×32×32 (SVHN)                 6 conv (128–512) + 2 FC (1024), their code
``mobilenetv2``  3×32×32 (CIFAR-10)             MobileNetV2, CIFAR stem (stride 1)
``resnet18``     3×32×32, 3×64×64 (Imagenette)  ResNet18, CIFAR stem (3×3, stride 1, no pool)
===============  =============================  =============================================

VGG3/VGG7 follow the MCEL authors' public code: bias-free layers, max pooling before batch
norm, hard tanh, and a learnable scalar output scale (init 1e-3 there). The MLP is built the
same way. The output scale starts at 1e-3 for sign (BNN) weights, whose logits are integer sums
up to the fan-in, and at 1 otherwise (reconstruction: their code uses 1e-3 throughout).
``output_scale=`` a number fixes it instead: the float scale then cannot supply the logit gaps
a loss asks for, and the stored weights must (see docs/mcel-study.md).
With ``binary_activations`` a `SignActivation` binarises each hidden activation (after the hard
tanh in MLP/VGG, in place of ReLU/ReLU6 in MobileNetV2/ResNet18); the input is never binarised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from memsim.errors import MemsimError
from memsim.workloads.layers import QuantizedConv2d, QuantizedLinear
from memsim.workloads.quant import SignActivation, WeightQuantizer, make_weight_quantizer

__all__ = [
    "MLP",
    "VGG3",
    "VGG7",
    "LayerFactory",
    "MobileNetV2",
    "ModelError",
    "OutputScale",
    "ResNet18",
    "build_model",
    "model_names",
]


class ModelError(MemsimError):
    """An unknown model name or a shape the model cannot take."""


class OutputScale(nn.Module):
    """Multiplies the logits by one float: learnable (the MCEL authors' ``Scale``) or fixed.

    The scale is a float outside the simulated memory, so no bit error reaches it. Learnable, it
    lets a loss enlarge every logit gap for free; fixed, the gaps a loss asks for have to come
    from the stored weights.
    """

    def __init__(self, init: float = 1e-3, learnable: bool = True) -> None:
        super().__init__()
        value = torch.tensor([float(init)])
        if learnable:
            self.scale = nn.Parameter(value)
        else:
            self.register_buffer("scale", value)
        self.learnable = learnable

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        # empty when learnable: the repr is part of a model's identity in result stores
        # (`runner.model_hash`), which must not change for models built before this option
        return "" if self.learnable else f"fixed={float(self.scale):g}"


@dataclass(frozen=True)
class LayerFactory:
    """Makes the weight layers and activations of one model from one quantiser setting."""

    weight_quantizer: WeightQuantizer | None
    binary_activations: bool = False
    output_scale: float | None = None
    """None: a learnable output scale; a number: the logits' fixed scale."""

    def linear(self, in_features: int, out_features: int, bias: bool = False) -> nn.Linear:
        if self.weight_quantizer is None:
            return nn.Linear(in_features, out_features, bias)
        return QuantizedLinear(in_features, out_features, bias,
                               weight_quantizer=self.weight_quantizer)

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0, groups: int = 1, bias: bool = False) -> nn.Conv2d:
        if self.weight_quantizer is None:
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                             groups=groups, bias=bias)
        return QuantizedConv2d(in_channels, out_channels, kernel_size, stride, padding,
                               groups=groups, bias=bias, weight_quantizer=self.weight_quantizer)

    def activation(self, kind: str) -> nn.Module:
        """``hardtanh`` (followed by sign if binary), ``relu`` or ``relu6`` (sign if binary)."""
        if kind == "hardtanh":
            if self.binary_activations:
                return nn.Sequential(nn.Hardtanh(), SignActivation())
            return nn.Hardtanh()
        if self.binary_activations:
            return SignActivation()
        return nn.ReLU6() if kind == "relu6" else nn.ReLU()

    def output_scale_layer(self) -> OutputScale:
        """The output scale: fixed at `output_scale`, else learnable, starting at 1e-3 for a
        BNN (whose logits are sums of ±1 products, up to the fan-in) and at 1 otherwise."""
        if self.output_scale is not None:
            return OutputScale(self.output_scale, learnable=False)
        q = self.weight_quantizer
        return OutputScale(1e-3 if q is not None and q.bits == 1 else 1.0)


def _width(channels: int, multiplier: float) -> int:
    return max(1, round(channels * multiplier))


def _check_divisible(name: str, image_size: int, factor: int) -> None:
    if image_size < factor or image_size % factor:
        raise ModelError(f"{name} needs an image size divisible by {factor}, got {image_size}")


class MLP(nn.Module):
    """Flatten → [Linear → BN → hard tanh (→ sign)] per hidden layer → Linear → output scale."""

    def __init__(self, factory: LayerFactory, *, in_features: int, num_classes: int,
                 hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for units in hidden:
            layers += [factory.linear(width, units), nn.BatchNorm1d(units),
                       factory.activation("hardtanh")]
            width = units
        layers.append(factory.linear(width, num_classes))
        self.body = nn.Sequential(*layers)
        self.scale = factory.output_scale_layer()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.scale(self.body(x))
        return out


def _vgg_block(factory: LayerFactory, cin: int, cout: int, pool: bool) -> list[nn.Module]:
    # Max pooling before batch norm, as in the authors' VGG3/VGG7.
    layers: list[nn.Module] = [factory.conv(cin, cout, 3, padding=1)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return [*layers, nn.BatchNorm2d(cout), factory.activation("hardtanh")]


def _vgg_head(factory: LayerFactory, flat: int, units: int, num_classes: int) -> nn.Sequential:
    """Flatten, FC, BN, hard tanh, FC: the classifier of VGG3 and VGG7."""
    return nn.Sequential(nn.Flatten(), factory.linear(flat, units), nn.BatchNorm1d(units),
                         factory.activation("hardtanh"), factory.linear(units, num_classes))


class VGG3(nn.Module):
    """Two 3×3 conv layers (64, pool after each) and two FC layers (2048, classes)."""

    def __init__(self, factory: LayerFactory, *, in_channels: int, num_classes: int,
                 image_size: int, width_multiplier: float = 1.0) -> None:
        super().__init__()
        _check_divisible("vgg3", image_size, 4)
        c, units = _width(64, width_multiplier), _width(2048, width_multiplier)
        self.features = nn.Sequential(*_vgg_block(factory, in_channels, c, True),
                                      *_vgg_block(factory, c, c, True))
        flat = c * (image_size // 4) ** 2
        self.classifier = _vgg_head(factory, flat, units, num_classes)
        self.scale = factory.output_scale_layer()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.scale(self.classifier(self.features(x)))
        return out


class VGG7(nn.Module):
    """Six 3×3 conv layers (128, 128, 256, 256, 512, 512; pool after every second) and two FC
    layers (1024, classes)."""

    def __init__(self, factory: LayerFactory, *, in_channels: int, num_classes: int,
                 image_size: int, width_multiplier: float = 1.0) -> None:
        super().__init__()
        _check_divisible("vgg7", image_size, 8)
        widths = [_width(c, width_multiplier) for c in (128, 128, 256, 256, 512, 512)]
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate(widths):
            layers += _vgg_block(factory, cin, cout, pool=i % 2 == 1)
            cin = cout
        self.features = nn.Sequential(*layers)
        units = _width(1024, width_multiplier)
        flat = cin * (image_size // 8) ** 2
        self.classifier = _vgg_head(factory, flat, units, num_classes)
        self.scale = factory.output_scale_layer()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.scale(self.classifier(self.features(x)))
        return out


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand → 3×3 depthwise → 1×1 linear projection (+ identity)."""

    def __init__(self, factory: LayerFactory, cin: int, cout: int, stride: int,
                 expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [factory.conv(cin, hidden, 1), nn.BatchNorm2d(hidden),
                       factory.activation("relu6")]
        layers += [factory.conv(hidden, hidden, 3, stride, 1, groups=hidden),
                   nn.BatchNorm2d(hidden), factory.activation("relu6"),
                   factory.conv(hidden, cout, 1), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) for 32×32 inputs: stride-1 stem and first strided
    stage at stride 1 (the usual CIFAR variant), so 32×32 ends at 4×4 before pooling."""

    # (expansion t, output channels c, repeats n, first stride s) per stage.
    STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, factory: LayerFactory, *, in_channels: int, num_classes: int,
                 width_multiplier: float = 1.0) -> None:
        super().__init__()
        stem = _width(32, width_multiplier)
        layers: list[nn.Module] = [factory.conv(in_channels, stem, 3, 1, 1),
                                   nn.BatchNorm2d(stem), factory.activation("relu6")]
        cin = stem
        for t, c, n, s in self.STAGES:
            cout = _width(c, width_multiplier)
            for i in range(n):
                layers.append(_InvertedResidual(factory, cin, cout, s if i == 0 else 1, t))
                cin = cout
        # The last 1×1 conv keeps 1280 channels for multipliers ≤ 1, as in the paper.
        last = _width(1280, max(1.0, width_multiplier))
        layers += [factory.conv(cin, last, 1), nn.BatchNorm2d(last), factory.activation("relu6"),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = factory.linear(last, num_classes, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(self.features(x))
        return out


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convs; a 1×1 conv shortcut when the shape changes."""

    def __init__(self, factory: LayerFactory, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            factory.conv(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout),
            factory.activation("relu"),
            factory.conv(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(factory.conv(cin, cout, 1, stride),
                                          nn.BatchNorm2d(cout))
        self.act = factory.activation("relu")

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(self.body(x) + self.shortcut(x))
        return out


class ResNet18(nn.Module):
    """ResNet18 (He et al. 2016) with the CIFAR stem (3×3 conv, stride 1, no max pool): four
    stages of two basic blocks (64, 128, 256, 512 channels), global average pooling, FC.
    The same network serves 64×64 Imagenette (reconstruction: the MCEL paper does not give
    its stem), ending at 8×8 before pooling."""

    def __init__(self, factory: LayerFactory, *, in_channels: int, num_classes: int,
                 width_multiplier: float = 1.0) -> None:
        super().__init__()
        widths = [_width(c, width_multiplier) for c in (64, 128, 256, 512)]
        layers: list[nn.Module] = [factory.conv(in_channels, widths[0], 3, 1, 1),
                                   nn.BatchNorm2d(widths[0]), factory.activation("relu")]
        cin = widths[0]
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers += [_BasicBlock(factory, cin, cout, stride), _BasicBlock(factory, cout, cout, 1)]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = factory.linear(cin, num_classes, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(self.features(x))
        return out


@dataclass(frozen=True)
class _Shape:
    num_classes: int
    in_channels: int
    image_size: int
    width_multiplier: float


def _mlp(f: LayerFactory, s: _Shape) -> nn.Module:
    hidden = (_width(256, s.width_multiplier),) * 2
    return MLP(f, in_features=s.in_channels * s.image_size ** 2, num_classes=s.num_classes,
               hidden=hidden)


_BUILDERS: dict[str, Callable[[LayerFactory, _Shape], nn.Module]] = {
    "mlp": _mlp,
    "vgg3": lambda f, s: VGG3(f, in_channels=s.in_channels, num_classes=s.num_classes,
                              image_size=s.image_size, width_multiplier=s.width_multiplier),
    "vgg7": lambda f, s: VGG7(f, in_channels=s.in_channels, num_classes=s.num_classes,
                              image_size=s.image_size, width_multiplier=s.width_multiplier),
    "mobilenetv2": lambda f, s: MobileNetV2(f, in_channels=s.in_channels,
                                            num_classes=s.num_classes,
                                            width_multiplier=s.width_multiplier),
    "resnet18": lambda f, s: ResNet18(f, in_channels=s.in_channels, num_classes=s.num_classes,
                                      width_multiplier=s.width_multiplier),
}


_HAS_OUTPUT_SCALE = ("mlp", "vgg3", "vgg7")


def model_names() -> tuple[str, ...]:
    """The names `build_model` takes."""
    return tuple(_BUILDERS)


def _positive_int(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"{what} must be a positive integer, got {value!r}")
    return value


WEIGHT_RANGES = ("max", "fixed", "learned")
"""How a k-bit quantiser's range is set: each tensor's max |w|, a fixed ±weight_clip, or a
trained step (LSQ)."""


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: int,
                weight_bits: int | None, weight_scheme: str = "symmetric",
                per_channel: bool = False, weight_clip: float | None = None,
                weight_range: str = "max", binary_activations: bool = False,
                width_multiplier: float = 1.0, output_scale: float | None = None) -> nn.Module:
    """Build model ``name`` (see `model_names`) with ``weight_bits``-bit weights.

    ``weight_bits``: 1 = BNN (sign), 2–16 = uniform k-bit with ``weight_scheme``
    (``symmetric`` signed or ``asymmetric`` unsigned), ``per_channel`` scales and quantiser
    range ``weight_clip``; None = float layers. ``weight_range``: ``max`` (each tensor's
    max |w|, cut at ``weight_clip``), ``fixed`` (``±weight_clip`` whatever the weights) or
    ``learned`` (a step trained with the loss, LSQ; symmetric weights). ``width_multiplier``
    scales every hidden width (1 = the published architecture). ``image_size`` is the side of
    a square input.
    ``output_scale``: None = a learnable scale on the logits (MLP, VGG3, VGG7), a number = that
    scale, fixed (so the logit gaps a loss asks for must come from the weights; at 1, a BNN with
    binary activations has integer logits).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _BUILDERS:
        raise ModelError(f"unknown model {name!r}; valid: {', '.join(_BUILDERS)}")
    shape = _Shape(_positive_int("num_classes", num_classes),
                   _positive_int("in_channels", in_channels),
                   _positive_int("image_size", image_size), float(width_multiplier))
    if not shape.width_multiplier > 0:
        raise ModelError(f"width_multiplier must be > 0, got {width_multiplier!r}")
    if output_scale is not None:
        if key not in _HAS_OUTPUT_SCALE:
            raise ModelError(f"{key} has no output scale to fix; models with one: "
                             f"{', '.join(_HAS_OUTPUT_SCALE)}")
        if isinstance(output_scale, bool) or not isinstance(output_scale, int | float) or \
                not (math.isfinite(output_scale) and output_scale > 0):
            raise ModelError(f"output_scale must be a finite number > 0, got {output_scale!r}")
    if weight_range not in WEIGHT_RANGES:
        raise ModelError(f"weight_range must be one of {', '.join(WEIGHT_RANGES)}, got "
                         f"{weight_range!r}")
    quantizer = None if weight_bits is None else make_weight_quantizer(
        weight_bits, scheme=weight_scheme, per_channel=per_channel, clip=weight_clip,
        fixed_range=weight_range == "fixed", learned_step=weight_range == "learned")
    factory = LayerFactory(quantizer, binary_activations,
                           None if output_scale is None else float(output_scale))
    return _BUILDERS[key](factory, shape)
