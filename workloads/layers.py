"""Quantised Linear and Conv2d layers, and model-wide helpers over them.

A quantised layer keeps float *latent* weights (what the optimiser updates) and a
`WeightQuantizer`. Its forward pass uses the *effective* weight:

1. the quantised latent weight ``ŵ = dequantize(encode(w))`` with the quantiser's STE, or,
   after `load_weight_codes`, the weight dequantised from the loaded codes (for instance codes
   read back from an approximate memory). Loaded codes keep the STE link to the latent weights
   (same mask), so a backward pass through corrupted weights updates the clean latent weights,
   as bit-flip injection training and RandBET need; `clear_weight_codes` restores path 1;
2. then ``weight_perturbation`` if set (a callable on the effective weight, e.g. additive
   Gaussian noise for noise-aware training or consistency regularisation).

Biases stay float and are not part of the codes. `iter_quantized_layers` lists a model's
quantised layers in `nn.Module.named_modules` order (registration order, stable across runs
and copies of the model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn
from torch.nn import functional as F

from memsim.workloads.quant import (
    LearnedStepQuantizer,
    QuantizationError,
    WeightCodes,
    WeightQuantizer,
    as_code_tensor,
    needs_gradient,
    resolve_quantizer,
    straight_through,
)

__all__ = [
    "ALIGNMENT_BYTES",
    "CodesLike",
    "QuantizedConv2d",
    "QuantizedLinear",
    "QuantizedWeightLayer",
    "aligned",
    "clear_weight_codes",
    "clip_weights_",
    "iter_quantized_layers",
    "load_weight_codes",
    "stacked_input",
    "weight_codes",
]

CodesLike = Tensor | NDArray[np.integer[Any]] | WeightCodes
"""Codes to load: an integer tensor or array of the weight's shape, or a `WeightCodes`."""


class QuantizedWeightLayer(nn.Module):
    """The interface shared by `QuantizedLinear` and `QuantizedConv2d` (not used on its own)."""

    weight: Tensor
    weight_quantizer: WeightQuantizer
    weight_step: nn.Parameter | None
    """The trained step of a `LearnedStepQuantizer` (shape of its scale); None otherwise."""
    weight_perturbation: Callable[[Tensor], Tensor] | None
    _loaded_weight: Tensor | None

    def _init_quantization(self, weight_quantizer: WeightQuantizer | Any) -> None:
        self.weight_quantizer = resolve_quantizer(weight_quantizer)
        self.weight_perturbation = None
        # A buffer so that .to() moves it; not persistent: a checkpoint holds latent weights only.
        self.register_buffer("_loaded_weight", None, persistent=False)
        q = self.weight_quantizer
        if isinstance(q, LearnedStepQuantizer):
            self.weight_step = nn.Parameter(q.initial_step(self.weight))
        else:
            self.register_parameter("weight_step", None)

    def reset_weight_step(self) -> None:
        """Set a learned step to its initial value for the current latent weights (after
        weights were copied in); no-op for other quantisers."""
        q = self.weight_quantizer
        if isinstance(q, LearnedStepQuantizer) and self.weight_step is not None:
            with torch.no_grad():
                self.weight_step.copy_(q.initial_step(self.weight))

    def quant_params(self) -> tuple[Tensor, Tensor]:
        """Scale and zero point of the latent weights (detached): the quantiser's statistics,
        or the learned step."""
        q = self.weight_quantizer
        if isinstance(q, LearnedStepQuantizer):
            assert self.weight_step is not None
            scale = q.step_scale(self.weight_step)
            return scale, torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)
        return q.params(self.weight)

    def quantized_weight(self) -> Tensor:
        """The quantised latent weight ``ŵ`` with its STE (ignores loaded codes and noise)."""
        q = self.weight_quantizer
        if isinstance(q, LearnedStepQuantizer):
            assert self.weight_step is not None
            return q.fake_quantize_with_step(self.weight, self.weight_step)
        return q.fake_quantize(self.weight)

    def effective_weight(self) -> Tensor:
        """The weight the forward pass uses: loaded codes or ``ŵ``, then the perturbation."""
        if self._loaded_weight is None:
            w = self.quantized_weight()
        elif not needs_gradient(self.weight):
            w = self._loaded_weight  # the STE form's value, bit for bit
        else:
            q = self.weight_quantizer
            scale, zero_point = self.quant_params()
            w = straight_through(self._loaded_weight, self.weight,
                                  q.ste_mask(self.weight, scale, zero_point))
        if self.weight_perturbation is not None:
            w = self.weight_perturbation(w)
        return w

    def weight_codes(self) -> WeightCodes:
        """Codes, scale and zero point of the latent weights (what a memory image stores)."""
        q = self.weight_quantizer
        with torch.no_grad():
            scale, zero_point = self.quant_params()
            codes = q.encode(self.weight.detach(), scale, zero_point)
        return WeightCodes(codes, scale, zero_point, q)

    def load_weight_codes(self, codes: CodesLike, scale: Tensor | None = None,
                          zero_point: Tensor | None = None) -> None:
        """Run the forward pass on the weights dequantised from ``codes``.

        ``scale`` and ``zero_point`` default to those of a `WeightCodes` argument, else to those
        of the current latent weights (what `weight_codes` returned, while they are unchanged),
        so loading unchanged codes reproduces `quantized_weight` bit for bit.
        """
        q = self.weight_quantizer
        if isinstance(codes, WeightCodes):
            if codes.quantizer != q:
                raise QuantizationError(
                    f"codes made by {codes.quantizer.describe()} cannot be loaded into a layer "
                    f"quantised with {q.describe()}")
            scale = codes.scale if scale is None else scale
            zero_point = codes.zero_point if zero_point is None else zero_point
            codes = codes.codes
        tensor = as_code_tensor(codes).to(self.weight.device)
        q.check_codes(tensor, tuple(self.weight.shape))
        if scale is None or zero_point is None:
            own_scale, own_zero = self.quant_params()
            scale = own_scale if scale is None else scale
            zero_point = own_zero if zero_point is None else zero_point
        with torch.no_grad():
            weight = q.dequantize(tensor, scale.to(self.weight.device).to(self.weight.dtype),
                                  zero_point.to(self.weight.device))
        self._loaded_weight = weight

    def load_stacked_weight(self, weights: Tensor) -> None:
        """Run inference on several weight sets at once: ``weights`` is (B, *weight shape), and
        the forward pass takes an input of B equal groups along its first axis (`stacked_input`),
        group b going through set b. Each group gets what the layer computes with that set
        loaded alone, bit for bit: the products and convolutions run per set with the unstacked
        shapes; the element-wise layers between them run once over all sets (the tests check
        that these give the same bits). Inference only: `clear_weight_codes` returns to the
        latent weights."""
        shape = tuple(self.weight.shape)
        if weights.dim() != len(shape) + 1 or tuple(weights.shape[1:]) != shape:
            raise QuantizationError(f"stacked weights must have shape (B, {shape}), got "
                                    f"{tuple(weights.shape)}")
        self._loaded_weight = weights.to(device=self.weight.device, dtype=self.weight.dtype)

    @property
    def stacked_sets(self) -> int:
        """The number of stacked weight sets loaded (0 when none)."""
        w = self._loaded_weight
        return int(w.shape[0]) if w is not None and w.dim() == self.weight.dim() + 1 else 0

    def _stacked_weight(self) -> Tensor:
        if needs_gradient(self.weight):
            raise QuantizationError("stacked weights are for inference (no gradient)")
        w = self._loaded_weight
        assert w is not None
        return w if self.weight_perturbation is None else self.weight_perturbation(w)

    def clear_weight_codes(self) -> None:
        """Forget loaded codes: the forward pass quantises the latent weights again."""
        self._loaded_weight = None

    @property
    def has_loaded_codes(self) -> bool:
        return self._loaded_weight is not None

    def _quant_repr(self) -> str:
        loaded = ", codes loaded" if self.has_loaded_codes else ""
        return f"weight_quantizer={self.weight_quantizer.describe()}{loaded}"


class QuantizedLinear(QuantizedWeightLayer, nn.Linear):
    """`nn.Linear` whose forward pass uses `effective_weight` (float bias)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weight_quantizer: WeightQuantizer | Any,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._init_quantization(weight_quantizer)

    def forward(self, x: Tensor) -> Tensor:
        sets = self.stacked_sets
        if not sets:
            return F.linear(x, self.effective_weight(), self.bias)
        # one F.linear per set, of the unstacked shape, so each set sums as it would alone
        # (a batched GEMM measured no faster on the demo's models, and is not promised to sum
        # alike); the element-wise layers between run once over all sets
        w = self._stacked_weight()
        groups = x.reshape(sets, x.shape[0] // sets, *x.shape[1:])
        return torch.cat([F.linear(aligned(groups[b]), w[b], self.bias) for b in range(sets)])

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._quant_repr()}"


class QuantizedConv2d(QuantizedWeightLayer, nn.Conv2d):
    """`nn.Conv2d` whose forward pass uses `effective_weight` (float bias); per-channel scales
    are per output channel."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, bias: bool = True,
                 padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros", *,
                 weight_quantizer: WeightQuantizer | Any,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                           dilation, groups, bias, padding_mode, device=device, dtype=dtype)
        self._init_quantization(weight_quantizer)

    def forward(self, x: Tensor) -> Tensor:
        sets = self.stacked_sets
        if not sets:
            out: Tensor = self._conv_forward(x, self.effective_weight(), self.bias)
            return out
        # one convolution per set, of the unstacked shape: a grouped convolution over all sets
        # picked other algorithms (other sums) for some shapes on this project's machine
        w = self._stacked_weight()
        groups = x.reshape(sets, x.shape[0] // sets, *x.shape[1:])
        return torch.cat([self._conv_forward(aligned(groups[b]), w[b], self.bias)
                          for b in range(sets)])

    def extra_repr(self) -> str:
        # nn.Conv2d.extra_repr is untyped; the fields that matter here, spelled out.
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"bias={self.bias is not None}, {self._quant_repr()}")


ALIGNMENT_BYTES = 64
"""The address alignment of torch's CPU allocations."""


def aligned(x: Tensor) -> Tensor:
    """``x``, or a copy of it at an aligned address if it starts elsewhere (a view into the
    middle of a tensor). CPU kernels choose their summation path by the address: F.linear of
    the same values measured other last bits at an unaligned offset. Inputs of products are
    aligned (`predict`, stacked layers) so that a result never depends on where it lay."""
    if x.device.type == "cpu" and x.data_ptr() % ALIGNMENT_BYTES:
        return x.clone()
    return x


def stacked_input(x: Tensor, sets: int) -> Tensor:
    """``x`` repeated as ``sets`` groups along the first axis: the input of a model whose
    layers hold ``sets`` stacked weight sets (`QuantizedWeightLayer.load_stacked_weight`)."""
    return x.unsqueeze(0).expand(sets, *x.shape).reshape(sets * x.shape[0], *x.shape[1:])


def iter_quantized_layers(model: nn.Module) -> Iterator[tuple[str, QuantizedWeightLayer]]:
    """``(name, layer)`` for every quantised layer, in `named_modules` order."""
    for name, module in model.named_modules():
        if isinstance(module, QuantizedWeightLayer):
            yield name, module


def weight_codes(model: nn.Module) -> dict[str, WeightCodes]:
    """The `WeightCodes` of every quantised layer, keyed by module name, in a stable order."""
    return {name: layer.weight_codes() for name, layer in iter_quantized_layers(model)}


def load_weight_codes(model: nn.Module, codes: Mapping[str, CodesLike]) -> None:
    """Load codes into the named quantised layers; an unknown name lists the valid ones.

    Layers not named keep their current state. All names are checked before anything loads.
    """
    layers = dict(iter_quantized_layers(model))
    unknown = [name for name in codes if name not in layers]
    if unknown:
        valid = ", ".join(layers) or "(none)"
        raise QuantizationError(f"no quantised layer named {unknown[0]!r}; valid: {valid}")
    for name, layer_codes in codes.items():
        layers[name].load_weight_codes(layer_codes)


def clear_weight_codes(model: nn.Module) -> None:
    """Return every quantised layer to its latent weights."""
    for _, layer in iter_quantized_layers(model):
        layer.clear_weight_codes()


def clip_weights_(model: nn.Module, w_max: float) -> None:
    """Project the latent weights of every quantised layer into ``[−w_max, w_max]`` in place.

    RandBET's weight clipping (Stutz et al. 2021, w_max = 0.1 in the main setting), applied
    after each optimiser step; with a symmetric quantiser it also bounds the scale.
    """
    if not (isinstance(w_max, int | float) and not isinstance(w_max, bool) and w_max > 0):
        raise QuantizationError(f"w_max must be a number > 0, got {w_max!r}")
    with torch.no_grad():
        for _, layer in iter_quantized_layers(model):
            layer.weight.clamp_(-w_max, w_max)
