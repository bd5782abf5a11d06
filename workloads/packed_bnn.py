"""BNN inference straight on the packed, possibly corrupted, weight words of a `MemoryImage`.

`PackedBNN(model, model_image)` compiles a BNN with binary activations (an `MLP`, `VGG3` or
`VGG7` built with ``weight_bits=1`` and ``binary_activations=True``) for the layout of its
`ModelImage`; ``packed.logits(image, images)`` then gives the logits of a (corrupted) image of
that layout, bit-identical to ``model_image.load(model, image); predict(model, images)``,
without unpacking the binary layers' weights: each binary layer reads its rows from the words
and computes ``in − 2·popcount(x XOR w)`` (`memsim.kernels.xnor`).

Why the logits are bit-identical:

- **Binary layers.** Their inputs and weights are ±1, so torch's float32 sums are exact
  integers (fan-in < 2^24), whatever order it adds them in; the XNOR-popcount sums are the same
  integers, max pooling of integers too. What follows (batch norm in eval mode, hard tanh,
  sign) is not re-derived: at construction, torch's own modules are run on *every* integer a
  layer can produce (−fan-in … fan-in), on a tensor of the layer's real shape, and the set of
  values that give +1 is kept per channel as an interval (checked to be one, and checked to be
  the same at every position of the tensor, i.e. for torch's vectorised body and tail alike).
- **The first layer** sees float pixels. A linear first layer runs through torch's
  ``F.linear`` on the weights decoded from the words, in the chunks `predict` uses. A 3×3
  convolution runs in numba, adding its taps in torch's order (`xnor.float_conv3x3`); before
  the first use of each chunk size (and torch thread count) it is compared bit for bit with
  torch's ``F.conv2d`` on random inputs of that size that spread over 25 binary orders of
  magnitude (where a different order of additions shows), and torch runs the convolution
  itself if they differ. Its pre-activations are floats: each channel's sign decision after
  batch norm and hard tanh is monotone in the value (every rounded step is), so the values that
  give +1 form an interval of floats, found by bisection over the float32 bit patterns with
  torch's modules as the oracle, plus what ±inf and NaN give (a NaN activation, should
  torch's sign give one, would make every logit of the sample NaN: the packed path returns NaN
  for that sample too).
- **The last layer's** integer sums are converted to float32 (exact) and multiplied by the
  output scale with torch's own multiplication, as `OutputScale` does.

Limits: CPU, float32 models whose every Linear/Conv2d is a bias-free sign-quantised layer stored
in the model image, 3×3 convolutions with stride 1 and padding 1, 2×2 max pooling, batch norm in
eval mode with running statistics, and hidden activations hard tanh → sign (or sign alone). The
batch-norm intervals and the output scale are read at construction: build a new `PackedBNN`
after the model's parameters change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn
from torch.nn import functional as F

from memsim.errors import MemsimError
from memsim.kernels.xnor import (
    CODE_MINUS_ONE,
    CODE_NAN,
    CODE_PLUS_ONE,
    FloatThresholds,
    LinearStack,
    binary_conv3x3_sign,
    conv_weight_words,
    decode_signs,
    float_conv3x3,
    float_conv3x3_sign,
    float_sign,
    linear_weight_words,
    xnor_linear,
    xnor_linear_sign,
    xnor_mlp,
)
from memsim.memory.encoding import Encoding
from memsim.memory.image import MemoryImage, Region
from memsim.workloads.bridge import ModelImage, region_name
from memsim.workloads.layers import QuantizedConv2d, QuantizedLinear, aligned
from memsim.workloads.models import MLP, VGG3, VGG7, OutputScale
from memsim.workloads.quant import SignActivation, SignQuantizer

__all__ = ["PackedBNN", "PackedBNNError"]

DEFAULT_BATCH_SIZE = 512
"""`memsim.workloads.training.predict`'s default: the first layer runs in chunks of this size."""

_MAX_FAN_IN = 1 << 24  # integer sums of ±1 are exact in float32 below this
_ORACLE_ELEMENTS = 1 << 22  # floats per batch-norm evaluation (bounds the temporaries)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_PROBE_EXPONENTS = 12  # probe inputs span 2^-12 … 2^12 (an order of additions shows there)


class PackedBNNError(MemsimError):
    """A model the packed BNN path cannot run, or an image or input that does not fit it."""


# --------------------------------------------------------------------------------------------
# The compiled layers


@dataclass(frozen=True)
class _Activation:
    """Batch norm (eval mode) → binary activation of one layer, evaluated by torch itself."""

    layer: str
    bn: nn.modules.batchnorm._BatchNorm
    act: nn.Module
    spatial: tuple[int, ...]
    """(H, W) of the batch norm's input for BatchNorm2d, () for BatchNorm1d."""

    def codes(self, values: Tensor) -> NDArray[np.uint8]:
        """0 (−1), 1 (+1) or 2 (NaN) of per-channel pre-activations ``values`` (K, C), each
        put at every position of the layer's real shape (the decision must not depend on it)."""
        k, c = values.shape
        ones = (1,) * len(self.spatial)
        x = values.reshape(k, c, *ones).expand(k, c, *self.spatial).contiguous()
        bn = self.bn
        with torch.no_grad():
            y = self.act(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                      False, 0.0, bn.eps)).reshape(k, c, -1)
        first = y[:, :, :1]
        if not bool(((y == first) | (y.isnan() & first.isnan())).all()):
            raise PackedBNNError(f"layer {self.layer!r}: torch's batch norm gives different "
                                 f"signs at different positions; cannot match it exactly")
        f = first[:, :, 0]
        if not bool(((f == 1) | (f == -1) | f.isnan()).all()):
            raise PackedBNNError(f"layer {self.layer!r}: the activation does not give ±1")
        codes = torch.where(f.isnan(), CODE_NAN, torch.where(f > 0, CODE_PLUS_ONE,
                                                             CODE_MINUS_ONE))
        return np.asarray(codes.numpy(), dtype=np.uint8)

    def integer_bounds(self, fan_in: int) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """Per channel, the interval of integer sums in [−fan_in, fan_in] that give +1."""
        n_channels = self.bn.num_features
        values = np.arange(-fan_in, fan_in + 1, dtype=np.int64)
        per_call = max(1, _ORACLE_ELEMENTS // (n_channels * max(1, math.prod(self.spatial))))
        codes = np.concatenate([
            self.codes(torch.from_numpy(
                np.repeat(values[i:i + per_call, None], n_channels, 1).astype(np.float32)))
            for i in range(0, values.size, per_call)])
        if (codes == CODE_NAN).any():
            raise PackedBNNError(f"layer {self.layer!r}: batch norm gives NaN for an integer "
                                 f"input (its parameters are not finite)")
        plus = codes == CODE_PLUS_ONE
        count = plus.sum(0)
        first = plus.argmax(0)
        last = values.size - 1 - plus[::-1].argmax(0)
        if ((count > 0) & (count != last - first + 1)).any():
            raise PackedBNNError(f"layer {self.layer!r}: the sums that give +1 are not an "
                                 f"interval; cannot threshold them")
        low = np.where(count > 0, values[first], fan_in + 1).astype(np.int32)
        high = np.where(count > 0, values[last], -fan_in - 1).astype(np.int32)
        return low, high

    def float_thresholds(self) -> FloatThresholds:
        """Per channel, the interval of finite float32 pre-activations that give +1 (by
        bisection over the ordered bit patterns; the decision is monotone in the value), and
        what ±inf and NaN give."""
        c = self.bn.num_features

        def at(values: NDArray[np.float32]) -> NDArray[np.uint8]:
            one_row = torch.from_numpy(np.ascontiguousarray(values, np.float32))[None]
            codes: NDArray[np.uint8] = self.codes(one_row)[0]
            return codes

        def finite(values: NDArray[np.float32]) -> NDArray[np.uint8]:
            codes = at(values)
            if (codes == CODE_NAN).any():
                raise PackedBNNError(f"layer {self.layer!r}: batch norm gives NaN for a finite "
                                     f"input (its parameters are not finite)")
            return codes

        g_min = finite(np.full(c, -_FLOAT32_MAX, np.float32))
        g_max = finite(np.full(c, _FLOAT32_MAX, np.float32))
        rising = (g_min == CODE_MINUS_ONE) & (g_max == CODE_PLUS_ONE)
        falling = (g_min == CODE_PLUS_ONE) & (g_max == CODE_MINUS_ONE)
        # Invariant: the decision at key `a` is g_min's, at key `b` g_max's.
        a = np.full(c, _key(np.float32(-_FLOAT32_MAX)), np.int64)
        b = np.full(c, _key(np.float32(_FLOAT32_MAX)), np.int64)
        while True:
            active = (rising | falling) & (b - a > 1)
            if not active.any():
                break
            mid = (a + b) // 2
            g = finite(_from_key(mid))
            to_b = active & (g == g_max)
            b = np.where(to_b, mid, b)
            a = np.where(active & ~to_b, mid, a)
        constant_plus = ~rising & ~falling & (g_min == CODE_PLUS_ONE)
        low = np.where(rising, _from_key(b), np.where(falling | constant_plus, -_FLOAT32_MAX,
                                                      np.inf)).astype(np.float32)
        high = np.where(falling, _from_key(a), np.where(rising | constant_plus, _FLOAT32_MAX,
                                                        -np.inf)).astype(np.float32)
        thresholds = FloatThresholds(low, high, at(np.full(c, -np.inf, np.float32)),
                                     at(np.full(c, np.inf, np.float32)),
                                     at(np.full(c, np.nan, np.float32)))
        self._check_float(thresholds)
        return thresholds

    def _check_float(self, t: FloatThresholds) -> None:
        """Spot check of the intervals: their ends, the floats next to them, and random values."""
        rng = np.random.default_rng(0)
        bits = rng.integers(0, 0x7F800000, size=(16, t.n_channels), dtype=np.int64)
        signs = rng.integers(0, 2, size=bits.shape, dtype=np.int64) << 31
        probes = [(bits | signs).astype(np.uint32).view(np.float32)]
        for end in (t.low, t.high):
            e = np.clip(end, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)
            with np.errstate(over="ignore"):  # next to ±max is ±inf, clipped below
                probes += [e[None], np.nextafter(e, np.float32(-np.inf))[None],
                           np.nextafter(e, np.float32(np.inf))[None]]
        values = np.clip(np.concatenate(probes), -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)
        got = self.codes(torch.from_numpy(values))
        want = ((t.low <= values) & (values <= t.high)).astype(np.int8)
        if not np.array_equal(got, want):
            raise PackedBNNError(f"layer {self.layer!r}: the activation is not monotone in its "
                                 f"input; cannot threshold it")


def _key(v: Any) -> Any:
    """float32 → int64 keys ordered like the floats (−0 and +0 share key 0)."""
    bits = np.asarray(v, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


def _from_key(k: NDArray[np.int64]) -> NDArray[np.float32]:
    bits = np.where(k >= 0, k, (-k) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


@dataclass(frozen=True)
class _Layer:
    """One weight layer and what the packed path does with it."""

    name: str
    region: Region
    kind: str
    """``linear`` or ``conv``."""
    n_in: int
    """in_features, or input channels."""
    n_out: int
    height: int = 1
    """Input height and width of a convolution."""
    width: int = 1
    pool: bool = False
    flat: bool = False
    """A convolution whose output feeds a linear layer (packed in torch's flatten order)."""
    activation: _Activation | None = None
    """None for the last layer."""

    @property
    def fan_in(self) -> int:
        return self.n_in * 9 if self.kind == "conv" else self.n_in

    @property
    def out_spatial(self) -> tuple[int, ...]:
        if self.kind != "conv":
            return ()
        return (self.height // 2, self.width // 2) if self.pool else (self.height, self.width)


@dataclass(frozen=True)
class _Hidden:
    """A binary layer and the integer intervals of its next activation."""

    layer: _Layer
    low: NDArray[np.int32]
    high: NDArray[np.int32]


# --------------------------------------------------------------------------------------------
# Reading the model


def _children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(model, MLP):
        parts: list[tuple[str, nn.Module]] = [("body", model.body)]
    elif isinstance(model, VGG3 | VGG7):
        parts = [("features", model.features), ("classifier", model.classifier)]
    else:
        raise PackedBNNError(f"packed BNN inference runs MLP, VGG3 and VGG7 models, not "
                             f"{type(model).__name__}")
    out = [(f"{prefix}.{name}", m) for prefix, seq in parts for name, m in seq.named_children()]
    return [*out, ("scale", model.scale)]


def _is_binary_activation(m: nn.Module) -> bool:
    if isinstance(m, SignActivation):
        return True
    return (isinstance(m, nn.Sequential) and len(m) > 0 and isinstance(m[-1], SignActivation)
            and all(isinstance(x, nn.Hardtanh) for x in list(m)[:-1]))


def _pair(v: Any) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, tuple | list) else (v, v)


def _check_weight_layer(name: str, m: nn.Module) -> None:
    if not isinstance(m, QuantizedConv2d | QuantizedLinear):
        raise PackedBNNError(f"layer {name!r} ({type(m).__name__}) has float weights outside "
                             f"the memory image; packed inference needs sign-quantised layers")
    if not isinstance(m.weight_quantizer, SignQuantizer):
        raise PackedBNNError(f"layer {name!r} has {m.weight_quantizer.describe()} weights; "
                             f"packed BNN inference needs sign (1-bit) weights")
    if m.bias is not None:
        raise PackedBNNError(f"layer {name!r} has a bias; packed BNN inference needs "
                             f"bias-free layers")
    if m.weight.dtype != torch.float32 or m.weight.device.type != "cpu":
        raise PackedBNNError(f"layer {name!r} is {m.weight.dtype} on {m.weight.device}; "
                             f"packed BNN inference matches torch's float32 CPU path")
    if not bool(torch.isfinite(m.weight).all()):
        raise PackedBNNError(f"layer {name!r} has non-finite latent weights")
    if isinstance(m, QuantizedConv2d) and (
            _pair(m.kernel_size) != (3, 3) or _pair(m.stride) != (1, 1)
            or _pair(m.padding) != (1, 1) or _pair(m.dilation) != (1, 1) or m.groups != 1
            or m.padding_mode != "zeros"):
        raise PackedBNNError(f"layer {name!r}: packed BNN inference runs 3x3 convolutions "
                             f"with stride 1 and zero padding 1 only")


def _is_pool(m: nn.Module) -> bool:
    if not isinstance(m, nn.MaxPool2d):
        return False
    stride = m.stride if m.stride is not None else m.kernel_size
    if (_pair(m.kernel_size) != (2, 2) or _pair(stride) != (2, 2) or _pair(m.padding) != (0, 0)
            or _pair(m.dilation) != (1, 1) or m.ceil_mode or m.return_indices):
        raise PackedBNNError(f"{m!r}: packed BNN inference pools 2x2 with stride 2 only")
    return True


def _batch_norm(name: str, m: nn.Module, kind: str, channels: int
                ) -> nn.modules.batchnorm._BatchNorm:
    want = nn.BatchNorm2d if kind == "conv" else nn.BatchNorm1d
    if not isinstance(m, want) or m.num_features != channels:
        raise PackedBNNError(f"layer {name!r}: expected {want.__name__}({channels}) after the "
                             f"weight layer, got {m!r}")
    if m.running_mean is None or m.running_var is None:
        raise PackedBNNError(f"layer {name!r}: batch norm without running statistics (eval "
                             f"mode would use batch statistics)")
    return m


def _parse(model: nn.Module, model_image: ModelImage, image_size: int | None
           ) -> tuple[list[_Layer], OutputScale | None, tuple[int, ...]]:
    """The weight layers in order, the output scale, and the input shape (without batch)."""
    items = _children(model)
    stored = set(model_image.layers)
    specs: list[dict[str, Any]] = []
    scale: OutputScale | None = None
    flatten_before = False
    i = 0
    while i < len(items):
        name, m = items[i]
        i += 1
        if isinstance(m, nn.Flatten):
            flatten_before = True
            continue
        if isinstance(m, OutputScale):
            if i != len(items):
                raise PackedBNNError(f"{name!r}: the output scale must come last")
            scale = m
            continue
        if isinstance(m, nn.Linear | nn.Conv2d):
            _check_weight_layer(name, m)
        else:
            if _is_binary_activation(m) or isinstance(m, nn.Hardtanh | nn.ReLU | nn.ReLU6):
                raise PackedBNNError(f"{name!r} ({type(m).__name__}) is not a binary "
                                     f"activation after batch norm; packed BNN inference needs "
                                     f"a model built with binary_activations=True")
            raise PackedBNNError(f"{name!r}: packed BNN inference cannot run "
                                 f"{type(m).__name__} layers")
        if name not in stored:
            raise PackedBNNError(f"layer {name!r} is not in the model image; packed inference "
                                 f"reads every layer's weights from it")
        kind = "conv" if isinstance(m, nn.Conv2d) else "linear"
        if kind == "conv" and flatten_before:
            raise PackedBNNError(f"layer {name!r}: a convolution after Flatten")
        spec: dict[str, Any] = {"name": name, "kind": kind, "module": m, "pool": False,
                                "flatten_before": flatten_before}
        flatten_before = False
        if i < len(items) and _is_pool(items[i][1]):
            if kind != "conv":
                raise PackedBNNError(f"{items[i][0]!r}: max pooling after a linear layer")
            spec["pool"] = True
            i += 1
        if i < len(items) and isinstance(items[i][1], nn.modules.batchnorm._BatchNorm):
            channels = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            spec["bn"] = _batch_norm(items[i][0], items[i][1], kind, channels)
            i += 1
            if i >= len(items) or not _is_binary_activation(items[i][1]):
                after = items[i][0] if i < len(items) else "the end"
                raise PackedBNNError(f"{after!r} after layer {name!r}'s batch norm is not a "
                                     f"binary activation; packed BNN inference needs a model "
                                     f"built with binary_activations=True")
            spec["act"] = items[i][1]
            i += 1
        specs.append(spec)
    if not specs or "bn" in specs[-1] or specs[-1]["pool"]:
        raise PackedBNNError("packed BNN inference needs a last linear layer without batch "
                             "norm, giving the logits")
    if len(specs) < 2:
        raise PackedBNNError("packed BNN inference needs at least one hidden layer")
    if any("bn" not in s for s in specs[:-1]):
        bad = next(s["name"] for s in specs[:-1] if "bn" not in s)
        raise PackedBNNError(f"layer {bad!r} is not followed by batch norm and a binary "
                             f"activation")
    return _shapes(specs, model_image, image_size), scale, _input_shape(specs, image_size)


def _input_shape(specs: list[dict[str, Any]], image_size: int | None) -> tuple[int, ...]:
    first = specs[0]["module"]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    side = _image_side(specs, image_size)
    return (first.in_channels, side, side)


def _image_side(specs: list[dict[str, Any]], image_size: int | None) -> int:
    """The input side of a square image: given, or inferred from the first linear layer."""
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise PackedBNNError(f"image_size must be a positive integer, got {image_size!r}")
        return image_size
    convs = [s for s in specs if s["kind"] == "conv"]
    head = next(s["module"] for s in specs if s["kind"] == "linear")
    channels: int = convs[-1]["module"].out_channels
    inputs: int = head.in_features
    side = math.isqrt(inputs // channels)
    if side * side * channels != inputs:
        raise PackedBNNError("cannot infer the image size; pass image_size")
    return side << sum(bool(s["pool"]) for s in convs)  # each pool halves the side


def _shapes(specs: list[dict[str, Any]], model_image: ModelImage, image_size: int | None
            ) -> list[_Layer]:
    layers: list[_Layer] = []
    h = w = 0
    if specs[0]["kind"] == "conv":
        h = w = _image_side(specs, image_size)
    for k, s in enumerate(specs):
        m = s["module"]
        region = model_image.image.region(region_name(s["name"]))
        if region.encoding is not Encoding.BINARY or region.shape != tuple(m.weight.shape):
            raise PackedBNNError(f"layer {s['name']!r}: the image holds {region.shape} "
                                 f"{region.encoding} weights, expected {tuple(m.weight.shape)} "
                                 f"binary")
        nxt: dict[str, Any] = specs[k + 1] if k + 1 < len(specs) else {"kind": None}
        if s["kind"] == "conv":
            layer = _Layer(s["name"], region, "conv", m.in_channels, m.out_channels, h, w,
                           s["pool"], nxt["kind"] == "linear")
            h, w = layer.out_spatial
            if layer.flat and not nxt["flatten_before"]:
                raise PackedBNNError(f"layer {nxt['name']!r}: a linear layer after a "
                                     f"convolution without Flatten")
            if layer.flat and nxt["module"].in_features != m.out_channels * h * w:
                raise PackedBNNError(f"layer {nxt['name']!r} takes {nxt['module'].in_features} "
                                     f"inputs, the convolutions give {m.out_channels * h * w}")
        else:
            layer = _Layer(s["name"], region, "linear", m.in_features, m.out_features)
        if layer.fan_in >= _MAX_FAN_IN:
            raise PackedBNNError(f"layer {s['name']!r}: fan-in {layer.fan_in} is too large for "
                                 f"exact float32 sums")
        if "bn" in s:
            layer = replace(layer, activation=_Activation(s["name"], s["bn"], s["act"],
                                                          layer.out_spatial))
        layers.append(layer)
    return layers


# --------------------------------------------------------------------------------------------
# The runner


@dataclass(frozen=True, eq=False)
class PackedBNN:
    """A BNN compiled for the layout of its `ModelImage`: `logits` runs it on the packed words
    of any image of that layout (see the module docstring for what is exact and why).

    ``image_size`` is the side of the square input of a convolutional model (default: inferred
    from the first linear layer's inputs).
    """

    model: nn.Module = field(repr=False)
    model_image: ModelImage = field(repr=False)
    image_size: int | None = None
    _first: _Layer = field(init=False, repr=False)
    _first_thresholds: FloatThresholds = field(init=False, repr=False)
    _hidden: tuple[_Hidden, ...] = field(init=False, repr=False)
    _last: _Layer = field(init=False, repr=False)
    _scale: Tensor | None = field(init=False, repr=False)
    _input_shape: tuple[int, ...] = field(init=False, repr=False)
    _conv_order: dict[tuple[int, int], bool] = field(init=False, repr=False)
    _mlp: LinearStack | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        layers, scale, shape = _parse(self.model, self.model_image, self.image_size)
        first = layers[0]
        assert first.activation is not None  # _parse: every layer but the last has one
        hidden = []
        for layer in layers[1:-1]:
            assert layer.activation is not None
            low, high = layer.activation.integer_bounds(layer.fan_in)
            hidden.append(_Hidden(layer, low, high))
        set_ = object.__setattr__  # frozen: the compiled layers are set once, here
        set_(self, "_first", first)
        set_(self, "_first_thresholds", first.activation.float_thresholds())
        set_(self, "_hidden", tuple(hidden))
        set_(self, "_last", layers[-1])
        set_(self, "_scale", None if scale is None else scale.scale.detach().clone())
        set_(self, "_input_shape", shape)
        # The one mutable part: which chunk sizes the numba convolution was checked at.
        set_(self, "_conv_order", {})
        # All linear (an MLP): the binary layers run in one kernel call (`xnor_mlp`), which
        # saves the per-call overheads that dominate at the demo's size.
        mlp = None
        if all(layer.kind == "linear" for layer in layers):
            binary = layers[1:]
            mlp = LinearStack(np.array([la.region.bit_offset for la in binary], np.int64),
                              np.array([la.n_in for la in binary], np.int64),
                              np.array([la.n_out for la in binary], np.int64),
                              np.concatenate([h.low for h in hidden] or [np.zeros(0, np.int32)]),
                              np.concatenate([h.high for h in hidden] or [np.zeros(0, np.int32)]))
        set_(self, "_mlp", mlp)

    @property
    def layers(self) -> tuple[str, ...]:
        """The weight layers, in order."""
        return (self._first.name, *(h.layer.name for h in self._hidden), self._last.name)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape (channels, height, width), or (features,) for an MLP."""
        return self._input_shape

    def __repr__(self) -> str:
        return (f"PackedBNN({type(self.model).__name__}, input {self._input_shape}, layers "
                f"{' -> '.join(self.layers)})")

    def logits(self, image: MemoryImage, images: Tensor,
               batch_size: int = DEFAULT_BATCH_SIZE) -> Tensor:
        """The model's logits (float32, CPU) for ``images`` with the weights of ``image``.

        Bit-identical to ``model_image.load(model, image); predict(model, images, batch_size)``.
        """
        if image.regions != self.model_image.image.regions:
            raise PackedBNNError("the image's layout differs from the model image's")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise PackedBNNError(f"batch_size must be a positive integer, got {batch_size!r}")
        x = self._inputs(images)
        if x.shape[0] == 0:
            return torch.empty(0, self._last.n_out)
        words = image.words
        if self._mlp is not None:
            sums, poisoned = xnor_mlp(self._first_linear(words, x, batch_size),
                                      self._first_thresholds, words, self._mlp)
            return self._output(sums, poisoned)
        packed, poisoned = self._first_conv(words, x, batch_size)
        for h in self._hidden:
            layer = h.layer
            if layer.kind == "conv":
                w = conv_weight_words(words, layer.region.bit_offset, layer.n_out, layer.n_in)
                packed = binary_conv3x3_sign(packed, w, layer.n_in, h.low, h.high,
                                             pool=layer.pool, flat=layer.flat)
            else:
                w = linear_weight_words(words, layer.region.bit_offset, layer.n_out, layer.n_in)
                packed = xnor_linear_sign(packed, w, layer.n_in, h.low, h.high)
        last = self._last
        w = linear_weight_words(words, last.region.bit_offset, last.n_out, last.n_in)
        return self._output(xnor_linear(packed, w, last.n_in), poisoned)

    def _output(self, sums: NDArray[np.int32], poisoned: NDArray[np.bool_]) -> Tensor:
        """Logits from the last layer's integer sums (exact in float32), as `OutputScale`."""
        out = torch.from_numpy(sums.astype(np.float32))
        if self._scale is not None:
            out = out * self._scale  # OutputScale's own multiplication
        if poisoned.any():
            out[torch.from_numpy(poisoned)] = float("nan")
        return out

    def _inputs(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.dtype != torch.float32:
            raise PackedBNNError("images must be a float32 tensor")
        x = images.detach().cpu()
        if x.dim() < 2 or (self._first.kind == "conv" and tuple(x.shape[1:]) != self._input_shape
                           ) or (self._first.kind == "linear"
                                 and math.prod(x.shape[1:]) != self._input_shape[0]):
            raise PackedBNNError(f"images have shape {tuple(x.shape)}; this model takes "
                                 f"(N, {', '.join(map(str, self._input_shape))})")
        return x

    def _first_conv(self, words: NDArray[np.uint64], x: Tensor, batch_size: int
                    ) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
        """A convolutional first layer's signs (packed) and poisoned samples: numba where it
        adds as torch does at these chunk sizes, else torch's F.conv2d."""
        layer = self._first
        n = x.shape[0]
        signs = decode_signs(words, layer.region.bit_offset, layer.region.n_elements)
        weight = signs.reshape(layer.region.shape)
        chunks = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
        t = self._first_thresholds
        if self._numba_conv_matches_torch({b - a for a, b in chunks}):
            return float_conv3x3_sign(x.contiguous().numpy(), weight, t, pool=layer.pool,
                                      flat=layer.flat)
        w = torch.from_numpy(weight)
        parts = [F.conv2d(aligned(x[a:b]), w, None, 1, 1) for a, b in chunks]
        y = parts[0] if len(parts) == 1 else torch.cat(parts)
        return float_sign(y.contiguous().numpy(), t, pool=layer.pool, flat=layer.flat)

    def _first_linear(self, words: NDArray[np.uint64], x: Tensor, batch_size: int
                      ) -> NDArray[np.float32]:
        """A linear first layer's float outputs: torch's F.linear on the decoded weights, in
        `predict`'s chunks."""
        layer = self._first
        signs = decode_signs(words, layer.region.bit_offset, layer.region.n_elements)
        w = torch.from_numpy(signs.reshape(layer.region.shape))
        n = x.shape[0]
        parts = [F.linear(aligned(x[a:a + batch_size]).flatten(1), w)
                 for a in range(0, n, batch_size)]
        y = parts[0] if len(parts) == 1 else torch.cat(parts)
        return np.asarray(y.numpy(), dtype=np.float32)

    def _numba_conv_matches_torch(self, sizes: set[int]) -> bool:
        """Whether `float_conv3x3` gives torch's ``F.conv2d`` bit for bit on chunks of these
        sizes at the current torch thread count (probed once per size, on random inputs)."""
        threads = torch.get_num_threads()
        for size in sorted(sizes):
            key = (size, threads)
            if key not in self._conv_order:
                self._conv_order[key] = _probe_conv_order(self._first, size)
        return all(self._conv_order[(size, threads)] for size in sizes)


def _probe_conv_order(layer: _Layer, size: int) -> bool:
    g = torch.Generator().manual_seed(size)
    shape = (size, layer.n_in, layer.height, layer.width)
    exponents = torch.randint(-_PROBE_EXPONENTS, _PROBE_EXPONENTS + 1, shape, generator=g)
    x = (torch.rand(shape, generator=g) * 2 - 1) * torch.exp2(exponents.float())
    w = torch.where(torch.rand(layer.n_out, layer.n_in, 3, 3, generator=g) < 0.5, -1.0, 1.0)
    with torch.no_grad():
        want = F.conv2d(x, w, None, 1, 1).numpy()
    return bool(np.array_equal(float_conv3x3(x.numpy(), w.numpy()), want))

