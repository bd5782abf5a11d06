"""Weight and activation quantisers with straight-through estimators (STE).

A weight quantiser maps a float *latent* weight tensor ``w`` to integer *codes* ``q`` and
dequantises them to the weights the forward pass uses, ``ŵ = dequantize(q)``. Training sees
the pseudo-gradient ``∂ŵ/∂w`` documented per quantiser (the true derivative of rounding is
zero almost everywhere). Scales and zero points are statistics of the *detached* weights: no
gradient flows through them.

======================  ====  ===========================  ======================  ===========
quantiser               bits  codes emitted                accepted on load        ``ŵ``
======================  ====  ===========================  ======================  ===========
`SignQuantizer`         1     {−1, +1}                     {−1, +1}                ``q``
`SymmetricQuantizer`    2–16  [−(2^(k−1) − 1), 2^(k−1)−1]  [−2^(k−1), 2^(k−1)−1]  ``s·q``
`AsymmetricQuantizer`   2–16  [0, 2^k − 1]                 [0, 2^k − 1]            ``s·(q−z)``
`LearnedStepQuantizer`  2–16  as `SymmetricQuantizer`      as `SymmetricQuantizer` ``s·q``
======================  ====  ===========================  ======================  ===========

`LearnedStepQuantizer` is the exception to "statistics of the detached weights": its step is a
parameter of the layer, trained by the loss (LSQ).

Symmetric codes use the restricted range (no −2^(k−1)) so the grid is symmetric about zero and
fits every signed encoding of `memsim.memory.encoding` (two's complement, offset binary,
sign-magnitude); loading accepts −2^(k−1) too, because a bit flip in a two's complement or
offset-binary word can produce it (it dequantises to −2^(k−1)·s, one step beyond the grid).

Dequantisation is one function per quantiser used by both the training path and the load path,
so loading the codes that `WeightQuantizer.quantize` produced gives bit-identical weights.
Rounding is ``torch.round`` (half to even).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from memsim.errors import MemsimError

__all__ = [
    "AsymmetricQuantizer",
    "LearnedStepQuantizer",
    "QuantizationError",
    "QuantizerSpec",
    "SignActivation",
    "SignQuantizer",
    "SymmetricQuantizer",
    "WeightCodes",
    "WeightQuantizer",
    "as_code_tensor",
    "make_weight_quantizer",
    "needs_gradient",
    "quantizer_fields",
    "resolve_quantizer",
    "sign_ste",
    "straight_through",
]

# A scale is never allowed to reach zero: an all-zero tensor would divide by it.
_MIN_RANGE = 1e-12
_MAX_BITS = 16


class QuantizationError(MemsimError):
    """A quantiser setting, or codes to load, that the quantiser cannot accept."""


def straight_through(value: Tensor, latent: Tensor, mask: Tensor | None = None) -> Tensor:
    """``value`` in the forward pass, gradient ``mask`` (1 where None) towards ``latent``.

    Returns ``value.detach() + (latent − latent.detach())·mask``: the second term is exactly
    zero in the forward pass, so the result equals ``value`` bit for bit (unlike the common
    ``latent + (value − latent).detach()``, which rounds).
    """
    delta = latent - latent.detach()
    if mask is not None:
        delta = delta * mask
    return value.detach() + delta


def needs_gradient(x: Tensor) -> bool:
    """Whether autograd will trace an op on ``x`` (grad mode on and ``x`` requires grad):
    without it a straight-through estimator's value is all that counts, and inference (a
    sweep's trials) skips the estimator's arithmetic."""
    return torch.is_grad_enabled() and x.requires_grad


def sign_ste(x: Tensor, ste_clip: float = 1.0) -> Tensor:
    """Binarise with sign(0) = −1 and the clipped straight-through estimator.

    Forward:  ``q(x) = +1 if x > 0 else −1``.
    Pseudo-gradient:  ``∂q/∂x = 1 if |x| ≤ ste_clip else 0`` (the hard-tanh STE of Hubara et
    al. 2016, larq's ``ste_sign`` with ``clip_value = ste_clip``).
    """
    # 2·[x > 0] − 1: torch.where(x > 0, 1.0, -1.0) exactly, in under half its time
    value = (x > 0).to(x.dtype).mul_(2).sub_(1)
    if not needs_gradient(x):
        return value  # what the STE form computes, bit for bit, without its four extra ops
    mask = (x.abs() <= ste_clip).to(x.dtype)
    return straight_through(value, x, mask)


class SignActivation(nn.Module):
    """Binarised activation: `sign_ste` (forward sign with sign(0) = −1, gradient 1_{|x|≤clip})."""

    def __init__(self, ste_clip: float = 1.0) -> None:
        super().__init__()
        if not ste_clip > 0:
            raise QuantizationError(f"ste_clip must be > 0, got {ste_clip!r}")
        self.ste_clip = float(ste_clip)

    def forward(self, x: Tensor) -> Tensor:
        return sign_ste(x, self.ste_clip)

    def extra_repr(self) -> str:
        return f"ste_clip={self.ste_clip}"


@dataclass(frozen=True, eq=False)
class WeightCodes:
    """One quantised weight tensor as the memory sees it.

    ``ŵ = scale·(codes − zero_point)``, with ``scale`` and ``zero_point`` broadcast along
    ``channel_axis`` (per-channel) or applied to the whole tensor (per-tensor).
    """

    codes: Tensor
    """int32, the weight's shape."""
    scale: Tensor
    """Float (the weight's dtype), shape (1,) per tensor or (C,) per channel."""
    zero_point: Tensor
    """int32, the shape of ``scale``; zeros for signed and sign quantisers."""
    quantizer: WeightQuantizer
    """The quantiser that made the codes (bits, signedness, scheme)."""

    @property
    def bits(self) -> int:
        return self.quantizer.bits

    @property
    def signed(self) -> bool:
        return self.quantizer.signed

    @property
    def scheme(self) -> str:
        """``sign``, ``symmetric`` or ``asymmetric``."""
        return self.quantizer.name

    @property
    def channel_axis(self) -> int | None:
        """0 (output channels) for per-channel scales, None for one scale per tensor."""
        return 0 if self.quantizer.per_channel else None

    @property
    def encoding(self) -> str:
        """The `memsim.memory.Encoding` that stores these codes without loss by default."""
        return self.quantizer.default_encoding

    @property
    def load_range(self) -> tuple[int, int]:
        """Smallest and largest code that `dequantize` and the layers' loaders accept."""
        return self.quantizer.load_range

    def dequantize(self, codes: Tensor | NDArray[Any] | None = None) -> Tensor:
        """The float weights of ``codes`` (default: these codes) at this scale and zero point."""
        codes = self.codes if codes is None else as_code_tensor(codes)
        self.quantizer.check_codes(codes, tuple(self.codes.shape))
        return self.quantizer.dequantize(codes, self.scale, self.zero_point)


_WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)


def as_code_tensor(codes: Tensor | NDArray[Any]) -> Tensor:
    """Integer codes from a tensor or a numpy array, as a signed integer tensor.

    Unsigned arrays (e.g. the uint32 words of `memsim.memory.encoding.encode`) become int64,
    since torch lacks comparisons on wide unsigned types; values beyond int64 are refused rather
    than wrapped into valid-looking codes. Non-integer input is refused.
    """
    if isinstance(codes, Tensor) and codes.dtype in _WIDE_UNSIGNED:
        codes = codes.cpu().numpy()
    if isinstance(codes, np.ndarray):
        if codes.dtype.kind not in "iu":
            raise QuantizationError(f"codes must be integers, got an array of dtype {codes.dtype}")
        if codes.dtype.kind == "u" and codes.size and int(codes.max()) > np.iinfo(np.int64).max:
            raise QuantizationError(f"code {int(codes.max())} is beyond any code range")
        return torch.from_numpy(np.ascontiguousarray(codes).astype(np.int64))
    if not isinstance(codes, Tensor):
        raise QuantizationError(f"codes must be a tensor or an array, got {type(codes).__name__}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise QuantizationError(f"codes must be an integer tensor, got dtype {codes.dtype}")
    return codes


def _broadcast(param: Tensor, ndim: int) -> Tensor:
    """A (1,) or (C,) parameter shaped to broadcast along axis 0 of an ``ndim`` tensor."""
    return param.reshape((-1,) + (1,) * (ndim - 1)) if ndim > 0 else param.reshape(())


def _abs_max(w: Tensor, per_channel: bool) -> Tensor:
    if per_channel and w.dim() > 0:
        return w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
    return w.detach().abs().amax().reshape(1)


def _min_max(w: Tensor, per_channel: bool) -> tuple[Tensor, Tensor]:
    flat = w.detach().reshape(w.shape[0], -1) if per_channel and w.dim() > 0 else \
        w.detach().reshape(1, -1)
    return flat.amin(dim=1), flat.amax(dim=1)


class WeightQuantizer(ABC):
    """Base of weight quantisers: codes, scale parameters, dequantisation and the STE mask.

    Subclasses are frozen dataclasses, so equal settings compare equal and survive deepcopy.
    """

    learned_step: ClassVar[bool] = False
    """True: the scale is a trained parameter of the layer (``weight_step``), not a statistic
    of the weights (`LearnedStepQuantizer`)."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def bits(self) -> int:
        """Bits per code."""

    @property
    @abstractmethod
    def signed(self) -> bool:
        """Whether codes are signed integers."""

    @property
    @abstractmethod
    def per_channel(self) -> bool:
        """One scale per output channel (axis 0) rather than one per tensor."""

    @property
    @abstractmethod
    def code_range(self) -> tuple[int, int]:
        """Smallest and largest code `quantize` emits."""

    @property
    def load_range(self) -> tuple[int, int]:
        """Smallest and largest code accepted when loading (what a memory can hand back)."""
        return self.code_range

    @property
    @abstractmethod
    def default_encoding(self) -> str:
        """Name of the `memsim.memory.Encoding` that holds every loadable code."""

    @abstractmethod
    def params(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        """Scale (weight dtype) and zero point (int32), each (1,) or (C,), from detached weights."""

    @abstractmethod
    def encode(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        """int32 codes of ``weight`` at the given scale and zero point."""

    @abstractmethod
    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        """Float weights (the scale's dtype) of integer ``codes``."""

    @abstractmethod
    def ste_mask(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        """The pseudo-gradient ``∂ŵ/∂w`` (0 or 1 per element, the weight's dtype)."""

    def quantize(self, weight: Tensor) -> WeightCodes:
        """The codes, scale and zero point of ``weight`` (no gradient)."""
        with torch.no_grad():
            scale, zero_point = self.params(weight)
            codes = self.encode(weight.detach(), scale, zero_point)
        return WeightCodes(codes, scale, zero_point, self)

    def fake_quantize(self, weight: Tensor) -> Tensor:
        """``ŵ = dequantize(encode(w))`` in the forward pass, `ste_mask` as its gradient."""
        scale, zero_point = self.params(weight)
        codes = self.encode(weight.detach(), scale, zero_point)
        value = self.dequantize(codes, scale, zero_point)
        if not needs_gradient(weight):
            return value
        return straight_through(value, weight, self.ste_mask(weight, scale, zero_point))

    def check_codes(self, codes: Tensor, shape: tuple[int, ...]) -> None:
        """Raise `QuantizationError` unless ``codes`` are integers of ``shape`` in `load_range`."""
        codes = as_code_tensor(codes)
        if tuple(codes.shape) != shape:
            raise QuantizationError(
                f"codes have shape {tuple(codes.shape)}, the weight has shape {shape}")
        lo, hi = self.load_range
        if codes.numel() == 0:
            return
        bad = (codes < lo) | (codes > hi)
        if self.name == SignQuantizer.name:
            bad = bad | (codes == 0)
        if bool(bad.any()):
            value = int(codes[bad].reshape(-1)[0])
            allowed = "±1" if self.name == SignQuantizer.name else f"[{lo}, {hi}]"
            raise QuantizationError(
                f"{self.describe()} codes must lie in {allowed}; got {value}")

    def describe(self) -> str:
        """A short explicit name, e.g. ``int4_per_channel`` (what `resolve_quantizer` takes)."""
        return self.name


@dataclass(frozen=True)
class SignQuantizer(WeightQuantizer):
    """Binary (BNN) weights ±1, as in the MCEL authors' code: sign(0) = −1.

    Forward:  ``ŵ = q = +1 if w > 0 else −1`` (scale 1, no zero point).
    Pseudo-gradient:  ``∂ŵ/∂w = 1 if |w| ≤ ste_clip else 0`` (hard-tanh STE, Hubara et al. 2016).
    """

    name: ClassVar[str] = "sign"
    ste_clip: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.ste_clip, int | float) and self.ste_clip > 0):
            raise QuantizationError(f"sign quantizer: ste_clip must be > 0, got {self.ste_clip!r}")

    @property
    def bits(self) -> int:
        return 1

    @property
    def signed(self) -> bool:
        return True

    @property
    def per_channel(self) -> bool:
        return False

    @property
    def code_range(self) -> tuple[int, int]:
        return -1, 1

    @property
    def default_encoding(self) -> str:
        return "binary"

    def params(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        return (torch.ones(1, dtype=weight.dtype, device=weight.device),
                torch.zeros(1, dtype=torch.int32, device=weight.device))

    def encode(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        return torch.where(weight > 0, 1, -1).to(torch.int32)

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        return codes.to(scale.dtype) * _broadcast(scale, codes.dim())

    def ste_mask(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        return (weight.detach().abs() <= self.ste_clip).to(weight.dtype)


def _check_uniform(what: str, bits: object, clip: object, fixed_range: object = False) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= _MAX_BITS:
        raise QuantizationError(
            f"{what} quantizer takes 2 to {_MAX_BITS} bits, got {bits!r} (1 bit is 'sign')")
    if clip is not None and not (isinstance(clip, int | float) and not isinstance(clip, bool)
                                 and math.isfinite(clip) and clip > 0):
        raise QuantizationError(f"{what} quantizer: clip must be a finite number > 0 or None, "
                                f"got {clip!r}")
    if not isinstance(fixed_range, bool):
        raise QuantizationError(f"{what} quantizer: fixed_range must be true or false, got "
                                f"{fixed_range!r}")
    if fixed_range and clip is None:
        raise QuantizationError(f"{what} quantizer: a fixed range needs clip (the range)")


@dataclass(frozen=True)
class SymmetricQuantizer(WeightQuantizer):
    """Uniform signed k-bit weights on a grid symmetric about zero, per tensor or per channel.

    With ``Q = 2^(k−1) − 1`` and range ``r = min(max|w|, clip)`` (max over the tensor, or over
    each output channel, axis 0), or ``r = clip`` whatever the weights with ``fixed_range``
    (a fixed step ``clip/Q``, so that a flipped bit moves a weight by the same amount however
    the trained weights spread):

    Forward:  ``s = r/Q``,  ``q = clamp(round(w/s), −Q, Q)``,  ``ŵ = s·q``.
    Pseudo-gradient:  ``∂ŵ/∂w = 1 if |w| ≤ r else 0`` (1 everywhere unless ``clip`` cuts the
    range; weights beyond the clip saturate and get no gradient).
    """

    name: ClassVar[str] = "symmetric"
    bits: int = 8
    per_channel: bool = False
    clip: float | None = None
    fixed_range: bool = False

    def __post_init__(self) -> None:
        _check_uniform("symmetric", self.bits, self.clip, self.fixed_range)

    @property
    def signed(self) -> bool:
        return True

    @property
    def q_max(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def code_range(self) -> tuple[int, int]:
        return -self.q_max, self.q_max

    @property
    def load_range(self) -> tuple[int, int]:
        return -(1 << (self.bits - 1)), self.q_max

    @property
    def default_encoding(self) -> str:
        return "twos_complement"

    def _range(self, weight: Tensor) -> Tensor:
        r = _abs_max(weight, self.per_channel)
        if self.fixed_range:
            assert self.clip is not None
            return torch.full_like(r, self.clip)
        if self.clip is not None:
            r = r.clamp(max=self.clip)
        return r.clamp(min=_MIN_RANGE)

    def params(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        scale = self._range(weight) / self.q_max
        return scale, torch.zeros(scale.shape, dtype=torch.int32, device=weight.device)

    def encode(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        s = _broadcast(scale, weight.dim())
        return torch.round(weight / s).clamp(-self.q_max, self.q_max).to(torch.int32)

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        return codes.to(scale.dtype) * _broadcast(scale, codes.dim())

    def ste_mask(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        # s·Q rounds; recompute r so that the mask is exactly |w| ≤ r.
        r = _broadcast(self._range(weight), weight.dim())
        return (weight.detach().abs() <= r).to(weight.dtype)

    def describe(self) -> str:
        name = f"int{self.bits}" + ("_per_channel" if self.per_channel else "")
        return name + _describe_range(self.clip, self.fixed_range)


def _describe_range(clip: float | None, fixed_range: bool) -> str:
    if clip is None:
        return ""
    return f" (fixed range ±{clip:g})" if fixed_range else f" (clip {clip:g})"


class _LearnedStepFunction(torch.autograd.Function):
    """``ŵ = s·clamp(round(w/s), −Q, Q)`` with LSQ's pseudo-gradients (Esser et al. 2020)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, step: Tensor, q_max: int,
                grad_scale: float) -> Tensor:
        s = _broadcast(step, weight.dim())
        codes = torch.round(weight / s).clamp(-q_max, q_max).to(torch.int32)
        ctx.save_for_backward(weight, step)
        ctx.q_max, ctx.grad_scale = q_max, grad_scale
        return codes.to(step.dtype) * s  # exactly SymmetricQuantizer's dequantize

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = grads
        weight, step = ctx.saved_tensors
        q_max = ctx.q_max
        v = weight / _broadcast(step, weight.dim())
        inside = v.abs() <= q_max
        grad_weight = grad * inside.to(grad.dtype)
        # ∂ŵ/∂s: round(v) − v inside the range, ±Q at the saturated ends
        d_step = torch.where(inside, torch.round(v) - v, torch.sign(v) * q_max)
        per_element = grad * d_step * ctx.grad_scale
        grad_step = (per_element.reshape(step.numel(), -1).sum(dim=1) if step.numel() > 1
                     else per_element.sum().reshape(1))
        return grad_weight, grad_step, None, None


@dataclass(frozen=True)
class LearnedStepQuantizer(SymmetricQuantizer):
    """Uniform signed k-bit weights whose step ``s`` is trained with the loss (LSQ, Esser et
    al. 2020), per tensor or per output channel.

    The step is a parameter of the layer (``weight_step``), initialised to ``2·mean|w|/√Q``;
    codes and dequantisation are `SymmetricQuantizer`'s at that step.

    Forward:  ``q = clamp(round(w/s), −Q, Q)``,  ``ŵ = s·q``.
    Pseudo-gradients:  ``∂ŵ/∂w = 1 if |w/s| ≤ Q else 0``;  ``∂ŵ/∂s = round(w/s) − w/s``
    inside the range and ``±Q`` outside, scaled by ``1/√(N·Q)`` (N weights per step).
    """

    learned_step: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_uniform("learned-step", self.bits, self.clip, self.fixed_range)
        if self.clip is not None or self.fixed_range:
            raise QuantizationError("a learned-step quantizer takes no clip or fixed range: "
                                    "its range is the trained step times Q")

    def params(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        raise QuantizationError("a learned step is a parameter of its layer: use the layer's "
                                "quant_params(), weight_codes() or quantized_weight()")

    def initial_step(self, weight: Tensor) -> Tensor:
        """LSQ's initial step ``2·mean|w|/√Q``, (1,) or (C,)."""
        w = weight.detach().abs()
        mean = (w.reshape(w.shape[0], -1).mean(dim=1) if self.per_channel and w.dim() > 0
                else w.mean().reshape(1))
        return (2.0 * mean / math.sqrt(self.q_max)).clamp(min=_MIN_RANGE)

    @staticmethod
    def step_scale(step: Tensor) -> Tensor:
        """The scale a (trained) step stands for: positive, detached."""
        return step.detach().abs().clamp(min=_MIN_RANGE)

    def fake_quantize_with_step(self, weight: Tensor, step: Tensor) -> Tensor:
        """``ŵ`` of the latent weights at ``step``, with the LSQ pseudo-gradients to both."""
        s = step.abs().clamp(min=_MIN_RANGE)
        n = weight.numel() // max(s.numel(), 1)
        grad_scale = 1.0 / math.sqrt(max(n, 1) * self.q_max)
        out: Tensor = _LearnedStepFunction.apply(  # type: ignore[no-untyped-call]
            weight, s, self.q_max, grad_scale)
        return out

    def ste_mask(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        r = _broadcast(scale, weight.dim()) * self.q_max
        return (weight.detach().abs() <= r).to(weight.dtype)

    def describe(self) -> str:
        return f"int{self.bits}" + ("_per_channel" if self.per_channel else "") + \
            " (learned step)"


@dataclass(frozen=True)
class AsymmetricQuantizer(WeightQuantizer):
    """Uniform unsigned k-bit weights with a zero point (RandBET's robust asymmetric scheme).

    The range ``[lo, hi] = [min(min w, 0), max(max w, 0)]`` (per tensor or per output channel)
    always contains 0 so that zero is exact (PyTorch's affine convention; Stutz et al. map
    ``[min w, max w]`` itself, which differs only by the rounding of the zero point when the
    weights straddle zero, as trained weights do). ``clip`` narrows it to ``[−clip, clip]``;
    with ``fixed_range`` it is ``[−clip, clip]`` whatever the weights (a fixed step).
    The grid ``s·([0, N] − z)`` covers ``[lo, hi]`` up to half a step, since z is rounded.
    With ``N = 2^k − 1``:

    Forward:  ``s = (hi − lo)/N``,  ``z = clamp(round(−lo/s), 0, N)``,
    ``q = clamp(round(w/s) + z, 0, N)``,  ``ŵ = s·(q − z)``.
    Pseudo-gradient:  ``∂ŵ/∂w = 1 if lo ≤ w ≤ hi else 0``.
    """

    name: ClassVar[str] = "asymmetric"
    bits: int = 8
    per_channel: bool = False
    clip: float | None = None
    fixed_range: bool = False

    def __post_init__(self) -> None:
        _check_uniform("asymmetric", self.bits, self.clip, self.fixed_range)

    @property
    def signed(self) -> bool:
        return False

    @property
    def n_max(self) -> int:
        return (1 << self.bits) - 1

    @property
    def code_range(self) -> tuple[int, int]:
        return 0, self.n_max

    @property
    def default_encoding(self) -> str:
        return "unsigned"

    def _bounds(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = _min_max(weight, self.per_channel)
        if self.fixed_range:
            assert self.clip is not None
            return torch.full_like(lo, -self.clip), torch.full_like(hi, self.clip)
        lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
        if self.clip is not None:
            lo, hi = lo.clamp(min=-self.clip), hi.clamp(max=self.clip)
        return lo, hi

    def params(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = self._bounds(weight)
        scale = (hi - lo).clamp(min=_MIN_RANGE) / self.n_max
        zero_point = torch.round(-lo / scale).clamp(0, self.n_max).to(torch.int32)
        return scale, zero_point

    def encode(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        s = _broadcast(scale, weight.dim())
        z = _broadcast(zero_point, weight.dim()).to(weight.dtype)
        return (torch.round(weight / s) + z).clamp(0, self.n_max).to(torch.int32)

    def dequantize(self, codes: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        shifted = codes.to(torch.int32) - _broadcast(zero_point, codes.dim())
        return shifted.to(scale.dtype) * _broadcast(scale, codes.dim())

    def ste_mask(self, weight: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        lo, hi = self._bounds(weight)
        w = weight.detach()
        inside = (w >= _broadcast(lo, w.dim())) & (w <= _broadcast(hi, w.dim()))
        return inside.to(weight.dtype)

    def describe(self) -> str:
        name = f"uint{self.bits}" + ("_per_channel" if self.per_channel else "")
        return name + _describe_range(self.clip, self.fixed_range)


SCHEMES = ("symmetric", "asymmetric")


def make_weight_quantizer(bits: int, *, scheme: str = "symmetric", per_channel: bool = False,
                          clip: float | None = None, ste_clip: float = 1.0,
                          fixed_range: bool = False,
                          learned_step: bool = False) -> WeightQuantizer:
    """The quantiser for ``bits``-bit weights: 1 → `SignQuantizer`, 2–16 → ``scheme``.

    ``scheme`` is ``symmetric`` (signed codes, `SymmetricQuantizer`) or ``asymmetric``
    (unsigned codes with a zero point, `AsymmetricQuantizer`); ``ste_clip`` is used by sign;
    ``fixed_range``: the range is ``clip`` whatever the weights; ``learned_step``: a symmetric
    quantiser whose step is trained (`LearnedStepQuantizer`).
    """
    if scheme not in SCHEMES:
        raise QuantizationError(f"unknown weight scheme {scheme!r}; valid: {', '.join(SCHEMES)}")
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise QuantizationError(f"weight bits must be an integer, got {bits!r}")
    if bits == 1:
        if scheme != "symmetric" or per_channel or clip is not None or fixed_range or \
                learned_step:
            raise QuantizationError(
                "1-bit weights use the sign quantizer, which takes no scheme, per_channel, "
                "clip, fixed range or learned step (clip latent weights with "
                "layers.clip_weights_ instead)")
        return SignQuantizer(ste_clip=ste_clip)
    if learned_step:
        if scheme != "symmetric":
            raise QuantizationError("a learned step is for symmetric weights only")
        return LearnedStepQuantizer(bits, per_channel, clip, fixed_range)
    if scheme == "symmetric":
        return SymmetricQuantizer(bits, per_channel, clip, fixed_range)
    return AsymmetricQuantizer(bits, per_channel, clip, fixed_range)


QuantizerSpec = str | Mapping[str, Any] | WeightQuantizer
"""What `resolve_quantizer` takes: an explicit name, a dict, or a quantiser."""

_NAME = re.compile(r"^(u?int)(\d+)(_per_channel)?$")
_VALID_NAMES = "sign, int<k>, uint<k>, int<k>_per_channel, uint<k>_per_channel (k = 2 to 16)"
_DICT_KEYS = ("name", "bits", "scheme", "per_channel", "clip", "fixed_range", "learned_step",
              "ste_clip")


def resolve_quantizer(spec: QuantizerSpec) -> WeightQuantizer:
    """Turn an explicit name, a dict or a quantiser into a `WeightQuantizer`.

    Names: ``sign``; ``int<k>`` (symmetric signed), ``uint<k>`` (asymmetric unsigned), each
    optionally ``_per_channel``. A dict takes either ``name`` or ``bits`` (+ ``scheme``,
    ``per_channel``) and optional ``clip``, ``fixed_range``, ``learned_step`` and ``ste_clip``,
    e.g.
    ``{"bits": 4, "scheme": "asymmetric", "clip": 0.1}`` or ``{"name": "int8", "clip": 0.1}``.
    """
    if isinstance(spec, WeightQuantizer):
        return spec
    if isinstance(spec, str):
        return resolve_quantizer({"name": spec})
    if not isinstance(spec, Mapping):
        raise QuantizationError(
            f"a quantizer is a name, a dict or a WeightQuantizer, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(_DICT_KEYS))
    if unknown:
        raise QuantizationError(
            f"unknown quantizer field {unknown[0]!r}; valid: {', '.join(_DICT_KEYS)}")
    clip = spec.get("clip")
    fixed_range = spec.get("fixed_range", False)
    learned_step = spec.get("learned_step", False)
    if not isinstance(learned_step, bool):
        raise QuantizationError(f"learned_step must be true or false, got {learned_step!r}")
    ste_clip = float(spec.get("ste_clip", 1.0))
    if "name" in spec:
        if {"bits", "scheme", "per_channel"} & set(spec):
            raise QuantizationError("give a quantizer either 'name' or 'bits'/'scheme'/"
                                    "'per_channel', not both")
        name = spec["name"]
        if name in ("sign", "binary"):
            return make_weight_quantizer(1, clip=clip, ste_clip=ste_clip, fixed_range=fixed_range,
                                         learned_step=learned_step)
        match = _NAME.match(name) if isinstance(name, str) else None
        if match is None:
            raise QuantizationError(f"unknown quantizer {name!r}; valid: {_VALID_NAMES}")
        # Not make_weight_quantizer: "int1" must fail rather than mean sign.
        cls: type[SymmetricQuantizer | AsymmetricQuantizer] = (
            SymmetricQuantizer if match.group(1) == "int" else AsymmetricQuantizer)
        if learned_step:
            if cls is AsymmetricQuantizer:
                raise QuantizationError("a learned step is for symmetric weights only")
            cls = LearnedStepQuantizer
        return cls(int(match.group(2)), match.group(3) is not None, clip, fixed_range)
    if "bits" not in spec:
        raise QuantizationError("a quantizer dict needs 'name' or 'bits'")
    return make_weight_quantizer(spec["bits"], scheme=spec.get("scheme", "symmetric"),
                                 per_channel=bool(spec.get("per_channel", False)), clip=clip,
                                 ste_clip=ste_clip, fixed_range=fixed_range,
                                 learned_step=learned_step)


def quantizer_fields(quantizer: WeightQuantizer) -> dict[str, Any]:
    """The quantiser as a dict that `resolve_quantizer` turns back into an equal quantiser."""
    if isinstance(quantizer, SignQuantizer):
        return {"bits": 1, "ste_clip": quantizer.ste_clip}
    return {"bits": quantizer.bits, "scheme": quantizer.name,
            "per_channel": quantizer.per_channel, "clip": getattr(quantizer, "clip", None),
            "fixed_range": getattr(quantizer, "fixed_range", False),
            "learned_step": quantizer.learned_step}
