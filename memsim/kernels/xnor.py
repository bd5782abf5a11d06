"""XNOR-popcount kernels: binary (±1) layers computed straight on packed weight words.

Conventions
-----------
- A ±1 value is one bit, 1 for +1 and 0 for −1 (the ``binary`` encoding of
  `memsim.memory.encoding`), for weights and activations alike. `pack_signs` sets the bit when
  the value is > 0, so sign(0) = −1 as in `memsim.workloads.quant.sign_ste`.
- Two ±1 values multiply to −1 exactly when their bits differ, so n of them give the integer
  dot product ``n − 2·popcount(x XOR w)``. Unused bits at the end of a row are 0 in both
  operands and never count.
- Layouts (all uint64, bit ``i % 64`` of word ``i // 64`` holds element ``i``):

  ==================  =============================  ============================================
  array               shape                          element ``i``
  ==================  =============================  ============================================
  vector rows         (N, ceil(F/64))                feature ``i`` of a sample
  channel maps        (N, H, W, ceil(C/64))          channel ``i`` of pixel (y, x)
  linear weights      (ceil(in/64), out)             input ``i`` of output ``o`` (column ``o``)
  conv weights        (kh·kw, ceil(c_in/64), c_out)  input channel ``i`` of tap (ky·kw + kx)
  ==================  =============================  ============================================

  Weights put the output index last so that the popcount loop runs over outputs, which LLVM
  vectorises (AVX-512 has a vector popcount). `linear_weight_words` and `conv_weight_words`
  build them from the stream of a `memsim.memory.MemoryImage` (rows at any bit offset) by
  copying bits, never through bytes or floats.
- A binary layer's next activation is +1 exactly when its pre-activation ``s`` of channel c lies
  in ``[low[c], high[c]]`` (an empty interval has low > high). The caller derives the bounds from
  the float network (batch norm, hard tanh, sign); see `memsim.workloads.packed_bnn`.
- 3×3 convolutions have stride 1 and zero padding 1. A padded tap is 0, neither +1 nor −1: it
  adds nothing, so ``s = 2·(equal bits) − c_in·(valid taps)`` counts only the taps that fall
  inside the image (fewer at the border).
- Pooling is 2×2 with stride 2 (odd last rows and columns dropped), as ``nn.MaxPool2d(2)``.

Float layers (a network's first layer sees real-valued pixels) are here too:
`float_conv3x3` adds the nine taps × input channels in torch's CPU order (taps row by row, the
input channels innermost, from 0) in float32; `memsim.workloads.packed_bnn` checks that order
against torch before relying on it.

The kernels that carry a network's work (`xnor_linear_sign`, `xnor_mlp`, `binary_conv3x3_sign`,
`float_conv3x3_sign`) are parallel over fixed blocks of samples, each writing its own rows, so
results do not depend on the number of threads; the others are serial (small work, or tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from memsim.kernels.flips import popcount64
from memsim.kernels.rng import jit, jit_parallel

__all__ = [
    "CODE_MINUS_ONE",
    "CODE_NAN",
    "CODE_PLUS_ONE",
    "FloatThresholds",
    "LinearStack",
    "binary_conv3x3",
    "binary_conv3x3_sign",
    "conv_weight_words",
    "decode_signs",
    "float_conv3x3",
    "float_conv3x3_sign",
    "float_sign",
    "linear_weight_words",
    "max_pool2x2",
    "pack_signs",
    "xnor_linear",
    "xnor_linear_sign",
    "xnor_mlp",
]

CODE_MINUS_ONE = 0
"""`FloatThresholds` code: a non-finite pre-activation becomes −1."""
CODE_PLUS_ONE = 1
"""`FloatThresholds` code: a non-finite pre-activation becomes +1."""
CODE_NAN = 2
"""`FloatThresholds` code: a non-finite pre-activation becomes NaN, which the next layer spreads
to every logit of the sample: the kernels flag the sample as poisoned (its bit stays 0)."""

_ONE = np.uint64(1)
_BLOCK = 8  # samples per parallel iteration: one scratch allocation serves several samples


@dataclass(frozen=True, eq=False)
class FloatThresholds:
    """When a float pre-activation of channel c becomes +1.

    A finite ``v`` gives +1 iff ``low[c] ≤ v ≤ high[c]``; −inf, +inf and NaN give what
    ``at_minus_inf[c]``, ``at_plus_inf[c]`` and ``at_nan[c]`` say (`CODE_MINUS_ONE`,
    `CODE_PLUS_ONE` or `CODE_NAN`).
    """

    low: NDArray[np.float32]
    high: NDArray[np.float32]
    at_minus_inf: NDArray[np.uint8]
    at_plus_inf: NDArray[np.uint8]
    at_nan: NDArray[np.uint8]
    codes: NDArray[np.uint8] = field(init=False, repr=False)
    """The three codes stacked (3, C), as the kernels take them."""

    def __post_init__(self) -> None:
        names = ("low", "high", "at_minus_inf", "at_plus_inf", "at_nan")
        arrays = [np.ascontiguousarray(getattr(self, name), dtype=dtype) for name, dtype in
                  zip(names, (np.float32, np.float32, np.uint8, np.uint8, np.uint8), strict=True)]
        if any(a.ndim != 1 or a.shape != arrays[0].shape for a in arrays):
            raise ValueError("FloatThresholds: expected five 1-D arrays of one length")
        if any(int(a.max(initial=0)) > CODE_NAN for a in arrays[2:]):
            raise ValueError("FloatThresholds: the codes must be 0, 1 or 2")
        for name, a in zip(names, arrays, strict=True):
            object.__setattr__(self, name, a)
        object.__setattr__(self, "codes", np.stack(arrays[2:]))

    @property
    def n_channels(self) -> int:
        return int(self.low.shape[0])


@dataclass(frozen=True, eq=False)
class LinearStack:
    """Binary linear layers stored in a bit stream, each taking the previous one's outputs
    (what `xnor_mlp` runs): layer i's (out, in) weights start at stream bit ``bit_offsets[i]``,
    and every layer but the last passes on +1 where its sum lies in its interval, given by
    ``low``/``high`` concatenated layer after layer."""

    bit_offsets: NDArray[np.int64]
    in_features: NDArray[np.int64]
    out_features: NDArray[np.int64]
    low: NDArray[np.int32]
    high: NDArray[np.int32]
    pop_low: NDArray[np.int64] = field(init=False, repr=False)
    """The intervals on popcounts: sum ``n − 2p`` in [low, high] iff p in [pop_low, pop_high]."""
    pop_high: NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        offsets, n_in, n_out = (np.array(v, np.int64).reshape(-1) for v in (
            self.bit_offsets, self.in_features, self.out_features))
        if not offsets.size or offsets.shape != n_in.shape or offsets.shape != n_out.shape:
            raise ValueError("LinearStack: expected one or more layers, one offset, input and "
                             "output count each")
        if (offsets < 0).any() or (n_in < 1).any() or (n_out < 1).any() or \
                (n_in[1:] != n_out[:-1]).any():
            raise ValueError(f"LinearStack: each layer must take the previous one's outputs "
                             f"(in {n_in.tolist()}, out {n_out.tolist()})")
        low, high = _bounds(np.asarray(self.low), np.asarray(self.high), int(n_out[:-1].sum()))
        fan_in = np.repeat(n_in[:-1], n_out[:-1])
        pop_low = -((high - fan_in) // 2)  # ceil((n − high) / 2)
        pop_high = (fan_in - low) // 2
        for name, value in (("bit_offsets", offsets), ("in_features", n_in),
                            ("out_features", n_out), ("low", low), ("high", high),
                            ("pop_low", pop_low), ("pop_high", pop_high)):
            object.__setattr__(self, name, value)

    @property
    def end_bit(self) -> int:
        """The stream bit after the furthest layer."""
        return int((self.bit_offsets + self.in_features * self.out_features).max())


# --------------------------------------------------------------------------------------------
# Jitted helpers


@jit
def _read_bits(words: NDArray[np.uint64], start: int, n: int) -> np.uint64:
    """Stream bits [start, start + n) (n ≤ 64) as one word, the first bit least significant."""
    w = start >> 6
    shift = start & 63
    value = words[w] >> np.uint64(shift)
    if shift and w + 1 < words.shape[0]:
        value |= words[w + 1] << np.uint64(64 - shift)
    if n < 64:
        value &= (_ONE << np.uint64(n)) - _ONE
    return np.uint64(value)


@jit
def _set_bit(out: NDArray[np.uint64], n: int, index: int) -> None:
    out[n, index >> 6] |= _ONE << np.uint64(index & 63)


@jit
def _bit_index(c: int, y: int, x: int, height: int, width: int, c_words: int,
               flat: bool) -> int:
    """Where channel c of pixel (y, x) goes: torch's flatten order (c, y, x) for a following
    linear layer, else the channel maps' (y, x, c)."""
    if flat:
        return (c * height + y) * width + x
    return (y * width + x) * c_words * 64 + c


@jit
def _linear_weight_kernel(words: NDArray[np.uint64], bit_offset: int, out_features: int,
                          in_features: int, out: NDArray[np.uint64]) -> None:
    for o in range(out_features):
        start = bit_offset + o * in_features
        for j in range(out.shape[0]):
            out[j, o] = _read_bits(words, start + 64 * j, min(64, in_features - 64 * j))


@jit
def _conv_weight_kernel(words: NDArray[np.uint64], bit_offset: int, out_channels: int,
                        in_channels: int, taps: int, out: NDArray[np.uint64]) -> None:
    # Element (co, ci, t) is stream bit bit_offset + (co·c_in + ci)·taps + t; a word at a time.
    for co in range(out_channels):
        row = bit_offset + co * in_channels * taps
        n_row = in_channels * taps
        for start in range(0, n_row, 64):
            chunk = _read_bits(words, row + start, min(64, n_row - start))
            for k in range(min(64, n_row - start)):
                if (chunk >> np.uint64(k)) & _ONE:
                    ci, t = divmod(start + k, taps)
                    out[t, ci >> 6, co] |= _ONE << np.uint64(ci & 63)


@jit
def _decode_signs_kernel(words: NDArray[np.uint64], bit_offset: int,
                         out: NDArray[np.float32]) -> None:
    n = out.shape[0]
    for j in range((n + 63) >> 6):
        m = min(64, n - 64 * j)
        word = _read_bits(words, bit_offset + 64 * j, m)
        for k in range(m):
            out[64 * j + k] = np.float32((word >> np.uint64(k)) & _ONE) * 2 - 1


@jit
def _pack_signs_kernel(values: NDArray[Any], out: NDArray[np.uint64]) -> None:
    n_features = values.shape[1]
    for n in range(values.shape[0]):
        for j in range(out.shape[1]):
            word = np.uint64(0)
            for k in range(min(64, n_features - 64 * j)):
                word |= np.uint64(values[n, 64 * j + k] > 0) << np.uint64(k)
            out[n, j] = word


@jit
def _pack_interval(v: NDArray[Any], low: NDArray[Any], high: NDArray[Any],
                   out: NDArray[np.uint64], n: int, word0: int) -> None:
    """out[n, word0 …] = the bits of channels 0 … C−1 of one pixel, set where
    low[c] ≤ v[c] ≤ high[c] (branch-free, so the loop over channels is vectorised)."""
    n_channels = v.shape[0]
    for j in range((n_channels + 63) >> 6):
        word = np.uint64(0)
        for k in range(min(64, n_channels - 64 * j)):
            c = 64 * j + k
            inside = (low[c] <= v[c]) & (v[c] <= high[c])
            word |= np.uint64(inside) << np.uint64(k)
        out[n, word0 + j] = word


@jit
def _scatter_interval(v: NDArray[Any], low: NDArray[Any], high: NDArray[Any],
                      out: NDArray[np.uint64], n: int, y: int, x: int, height: int,
                      width: int) -> None:
    """Like `_pack_interval` for torch's flatten order (channel c at bit (c·H + y)·W + x)."""
    for c in range(v.shape[0]):
        if low[c] <= v[c] <= high[c]:
            _set_bit(out, n, (c * height + y) * width + x)


@jit
def _emit_int(v: NDArray[Any], n: int, y: int, x: int, height: int, width: int, c_words: int,
              flat: bool, low: NDArray[np.int32], high: NDArray[np.int32],
              out: NDArray[np.uint64]) -> None:
    if flat:
        _scatter_interval(v, low, high, out, n, y, x, height, width)
    else:
        _pack_interval(v, low, high, out, n, (y * width + x) * c_words)


@jit
def _emit_float(v: NDArray[np.float32], n: int, y: int, x: int, height: int, width: int,
                c_words: int, flat: bool, low: NDArray[np.float32], high: NDArray[np.float32],
                codes: NDArray[np.uint8], out: NDArray[np.uint64],
                poisoned: NDArray[np.bool_]) -> None:
    """The signs of one pixel's float pre-activations v[c]: the finite ones by the interval
    (vectorised), then a rare pass for the non-finite ones by ``codes`` (3, C): the codes at
    −inf, +inf and NaN."""
    if flat:
        _scatter_interval(v, low, high, out, n, y, x, height, width)
    else:
        _pack_interval(v, low, high, out, n, (y * width + x) * c_words)
    finite = True
    for c in range(v.shape[0]):
        finite &= v[c] - v[c] == 0
    if finite:
        return
    for c in range(v.shape[0]):
        if v[c] - v[c] == 0:
            continue
        code = codes[2, c] if v[c] != v[c] else (codes[1, c] if v[c] > 0 else codes[0, c])
        index = _bit_index(c, y, x, height, width, c_words, flat)
        if code == CODE_PLUS_ONE:
            _set_bit(out, n, index)
        else:  # −1, or NaN: its bit stays 0 and the sample is poisoned
            out[n, index >> 6] &= ~(_ONE << np.uint64(index & 63))
            if code == CODE_NAN:
                poisoned[n] = True


@jit
def _xnor_row(x: NDArray[np.uint64], n: int, w: NDArray[np.uint64],
              acc: NDArray[np.int64]) -> None:
    """acc[o] = popcount(x[n] XOR column o of w)."""
    acc[:] = 0
    for j in range(w.shape[0]):
        xv = x[n, j]
        for o in range(w.shape[1]):
            acc[o] += popcount64(xv ^ w[j, o])


@jit
def _xnor_linear_kernel(x: NDArray[np.uint64], w: NDArray[np.uint64], in_features: int,
                        out: NDArray[np.int32]) -> None:
    n_samples = x.shape[0]
    for b in range((n_samples + _BLOCK - 1) // _BLOCK):
        acc = np.empty(w.shape[1], np.int64)
        for n in range(b * _BLOCK, min(n_samples, (b + 1) * _BLOCK)):
            _xnor_row(x, n, w, acc)
            for o in range(w.shape[1]):
                out[n, o] = in_features - 2 * acc[o]


@jit_parallel
def _xnor_linear_sign_kernel(x: NDArray[np.uint64], w: NDArray[np.uint64], in_features: int,
                             low: NDArray[np.int32], high: NDArray[np.int32],
                             out: NDArray[np.uint64]) -> None:
    n_samples = x.shape[0]
    for b in prange((n_samples + _BLOCK - 1) // _BLOCK):
        acc = np.empty(w.shape[1], np.int64)
        for n in range(b * _BLOCK, min(n_samples, (b + 1) * _BLOCK)):
            _xnor_row(x, n, w, acc)
            for o in range(w.shape[1]):
                acc[o] = in_features - 2 * acc[o]
            _pack_interval(acc, low, high, out, n, 0)


@jit_parallel
def _xnor_mlp_kernel(y: NDArray[np.float32], low0: NDArray[np.float32],
                     high0: NDArray[np.float32], codes0: NDArray[np.uint8],
                     words: NDArray[np.uint64], offsets: NDArray[np.int64],
                     n_in: NDArray[np.int64], n_out: NDArray[np.int64],
                     pop_low: NDArray[np.int64], pop_high: NDArray[np.int64],
                     out: NDArray[np.int32], poisoned: NDArray[np.bool_]) -> None:
    n_layers = offsets.shape[0]
    # every layer's weights as linear weights (words, out), one after the other in one buffer
    w_start = np.zeros(n_layers + 1, np.int64)
    b_start = np.zeros(n_layers, np.int64)
    widest = y.shape[1]
    for i in range(n_layers):
        w_start[i + 1] = w_start[i] + ((n_in[i] + 63) >> 6) * n_out[i]
        if i + 1 < n_layers:
            b_start[i + 1] = b_start[i] + n_out[i]
        widest = max(widest, n_out[i])
    weights = np.empty(w_start[n_layers], np.uint64)
    # per-layer views of the weights and intervals, made once
    layer_weights = [weights[w_start[i]:w_start[i + 1]].reshape(((n_in[i] + 63) >> 6, n_out[i]))
                     for i in range(n_layers)]
    lows = [pop_low[b_start[i]:b_start[i] + n_out[i]] for i in range(n_layers - 1)]
    highs = [pop_high[b_start[i]:b_start[i] + n_out[i]] for i in range(n_layers - 1)]
    for i in range(n_layers):
        _linear_weight_kernel(words, offsets[i], n_out[i], n_in[i], layer_weights[i])
    n_samples = y.shape[0]
    c_words = (widest + 63) >> 6
    last = n_layers - 1
    for b in prange((n_samples + _BLOCK - 1) // _BLOCK):
        bits = np.zeros((2, c_words), np.uint64)  # a layer's input and output, alternately
        accs = [np.empty(n_out[i], np.int64) for i in range(n_layers)]
        flag = np.zeros(1, np.bool_)
        for n in range(b * _BLOCK, min(n_samples, (b + 1) * _BLOCK)):
            flag[0] = False
            _emit_float(y[n], 0, 0, 0, 1, 1, c_words, False, low0, high0, codes0, bits, flag)
            poisoned[n] = flag[0]
            for i in range(last):
                # the intervals are on popcounts here: no pass turning them into sums
                _xnor_row(bits, i & 1, layer_weights[i], accs[i])  # `xnor_linear`'s loops
                _pack_interval(accs[i], lows[i], highs[i], bits, 1 - (i & 1), 0)
            pops = accs[last]
            _xnor_row(bits, last & 1, layer_weights[last], pops)
            for o in range(pops.shape[0]):
                out[n, o] = n_in[last] - 2 * pops[o]


@jit
def _valid_taps(i: int, size: int) -> int:
    """Taps of a 3-wide window centred on i that fall inside [0, size)."""
    return (i > 0) + 1 + (i < size - 1)


@jit
def _binary_conv_sums(maps: NDArray[np.uint64], n: int, w: NDArray[np.uint64], in_channels: int,
                      row: NDArray[np.int64], sums: NDArray[np.int32]) -> None:
    """sums[y, x, co]: the 3×3 convolution (padding 1) of sample n's channel maps.

    Tap by tap over a whole output row (row[x, co] holds its popcounts), so that consecutive
    additions to one output are a row apart rather than a dependency chain.
    """
    height, width, c_words = maps.shape[1], maps.shape[2], maps.shape[3]
    c_out = w.shape[2]
    for y in range(height):
        row[:] = 0
        for ky in range(3):
            iy = y + ky - 1
            if iy < 0 or iy >= height:
                continue
            for kx in range(3):
                t = ky * 3 + kx
                for x in range(max(0, 1 - kx), min(width, width + 1 - kx)):
                    for j in range(c_words):
                        av = maps[n, iy, x + kx - 1, j]
                        for co in range(c_out):
                            row[x, co] += popcount64(av ^ w[t, j, co])
        rows = _valid_taps(y, height)
        for x in range(width):
            valid = rows * _valid_taps(x, width) * in_channels
            for co in range(c_out):
                sums[y, x, co] = valid - 2 * row[x, co]


@jit
def _binary_conv_kernel(maps: NDArray[np.uint64], w: NDArray[np.uint64], in_channels: int,
                        out: NDArray[np.int32]) -> None:
    n_samples, height, width = maps.shape[0], maps.shape[1], maps.shape[2]
    for b in range((n_samples + _BLOCK - 1) // _BLOCK):
        row = np.empty((width, w.shape[2]), np.int64)
        sums = np.empty((height, width, w.shape[2]), np.int32)
        for n in range(b * _BLOCK, min(n_samples, (b + 1) * _BLOCK)):
            _binary_conv_sums(maps, n, w, in_channels, row, sums)
            for co in range(w.shape[2]):
                for y in range(height):
                    for x in range(width):
                        out[n, co, y, x] = sums[y, x, co]


@jit_parallel
def _binary_conv_sign_kernel(maps: NDArray[np.uint64], w: NDArray[np.uint64], in_channels: int,
                             low: NDArray[np.int32], high: NDArray[np.int32], pool: bool,
                             flat: bool, out: NDArray[np.uint64]) -> None:
    n_samples, height, width = maps.shape[0], maps.shape[1], maps.shape[2]
    c_out = w.shape[2]
    c_words = (c_out + 63) // 64
    out_h, out_w = (height // 2, width // 2) if pool else (height, width)
    for b in prange((n_samples + _BLOCK - 1) // _BLOCK):
        row = np.empty((width, c_out), np.int64)
        sums = np.empty((height, width, c_out), np.int32)
        pixel = np.empty(c_out, np.int32)
        for n in range(b * _BLOCK, min(n_samples, (b + 1) * _BLOCK)):
            _binary_conv_sums(maps, n, w, in_channels, row, sums)
            for y in range(out_h):
                for x in range(out_w):
                    if pool:
                        for co in range(c_out):
                            pixel[co] = max(
                                max(sums[2 * y, 2 * x, co], sums[2 * y, 2 * x + 1, co]),
                                max(sums[2 * y + 1, 2 * x, co], sums[2 * y + 1, 2 * x + 1, co]))
                    else:
                        pixel[:] = sums[y, x]
                    _emit_int(pixel, n, y, x, out_h, out_w, c_words, flat, low, high, out)


@jit
def _max_pool_kernel(sums: NDArray[np.int32], out: NDArray[np.int32]) -> None:
    for n in range(sums.shape[0]):
        for c in range(sums.shape[1]):
            for y in range(out.shape[2]):
                for x in range(out.shape[3]):
                    out[n, c, y, x] = max(
                        max(sums[n, c, 2 * y, 2 * x], sums[n, c, 2 * y, 2 * x + 1]),
                        max(sums[n, c, 2 * y + 1, 2 * x], sums[n, c, 2 * y + 1, 2 * x + 1]))


@jit
def _float_conv_sample(x: NDArray[np.float32], n: int, w: NDArray[np.float32],
                       plane: NDArray[np.float32]) -> None:
    """plane[y, x, co]: sample n convolved with w (9, c_in, c_out), summed in torch's order.

    Each output starts at 0 and adds its taps row by row, input channels innermost; a padded
    tap is skipped (adding w·0 could only turn a −0 into +0, which no later step tells apart).
    The weights are ±1, so every product is exact and fused or separate multiply-adds agree.
    The loops run tap by tap over a whole output row, output channels innermost (vectorised):
    each output still receives its taps in that order.
    """
    c_in, height, width = x.shape[1], x.shape[2], x.shape[3]
    c_out = w.shape[2]
    for y in range(height):
        plane[y] = 0.0
        for ky in range(3):
            iy = y + ky - 1
            if iy < 0 or iy >= height:
                continue
            for kx in range(3):
                t = ky * 3 + kx
                for ci in range(c_in):
                    for xx in range(max(0, 1 - kx), min(width, width + 1 - kx)):
                        v = x[n, ci, iy, xx + kx - 1]
                        for co in range(c_out):
                            plane[y, xx, co] += w[t, ci, co] * v


@jit
def _float_pool_pixel(plane: NDArray[np.float32], y: int, x: int, pool: bool,
                      pixel: NDArray[np.float32]) -> None:
    """pixel[c] = torch's max pooling of window (y, x) of plane (H, W, C): start at −inf, take a
    larger value or any NaN."""
    if not pool:
        pixel[:] = plane[y, x]
        return
    for c in range(pixel.shape[0]):
        best = np.float32(-np.inf)
        for dy in range(2):
            for dx in range(2):
                v = plane[2 * y + dy, 2 * x + dx, c]
                # `|`, not `or`: no branch, so the loop over channels is vectorised
                best = v if (v > best) | (v != v) else best
        pixel[c] = best


@jit
def _float_conv_kernel(x: NDArray[np.float32], w: NDArray[np.float32],
                       out: NDArray[np.float32]) -> None:
    n_samples, height, width = x.shape[0], x.shape[2], x.shape[3]
    c_out = w.shape[2]
    for b in range((n_samples + _BLOCK - 1) // _BLOCK):
        plane = np.empty((height, width, c_out), np.float32)
        for n in range(b * _BLOCK, min(n_samples, (b + 1) * _BLOCK)):
            _float_conv_sample(x, n, w, plane)
            for co in range(c_out):
                for y in range(height):
                    for xx in range(width):
                        out[n, co, y, xx] = plane[y, xx, co]


@jit_parallel
def _float_conv_sign_kernel(x: NDArray[np.float32], w: NDArray[np.float32], pool: bool,
                            flat: bool, low: NDArray[np.float32], high: NDArray[np.float32],
                            codes: NDArray[np.uint8], out: NDArray[np.uint64],
                            poisoned: NDArray[np.bool_]) -> None:
    n_samples, height, width = x.shape[0], x.shape[2], x.shape[3]
    c_out = w.shape[2]
    c_words = (c_out + 63) // 64
    out_h, out_w = (height // 2, width // 2) if pool else (height, width)
    for b in prange((n_samples + _BLOCK - 1) // _BLOCK):
        plane = np.empty((height, width, c_out), np.float32)
        pixel = np.empty(c_out, np.float32)
        for n in range(b * _BLOCK, min(n_samples, (b + 1) * _BLOCK)):
            _float_conv_sample(x, n, w, plane)
            for y in range(out_h):
                for xx in range(out_w):
                    _float_pool_pixel(plane, y, xx, pool, pixel)
                    _emit_float(pixel, n, y, xx, out_h, out_w, c_words, flat, low, high,
                                codes, out, poisoned)


@jit
def _float_sign_kernel(y: NDArray[np.float32], pool: bool, flat: bool,
                       low: NDArray[np.float32], high: NDArray[np.float32],
                       codes: NDArray[np.uint8], out: NDArray[np.uint64],
                       poisoned: NDArray[np.bool_]) -> None:
    n_samples, n_channels, height, width = y.shape
    c_words = (n_channels + 63) // 64
    out_h, out_w = (height // 2, width // 2) if pool else (height, width)
    for b in range((n_samples + _BLOCK - 1) // _BLOCK):
        pixel = np.empty(n_channels, np.float32)
        for n in range(b * _BLOCK, min(n_samples, (b + 1) * _BLOCK)):
            for py in range(out_h):
                for px in range(out_w):
                    for c in range(n_channels):
                        if pool:
                            best = np.float32(-np.inf)
                            for dy in range(2):
                                for dx in range(2):
                                    v = y[n, c, 2 * py + dy, 2 * px + dx]
                                    best = v if (v > best) | (v != v) else best
                            pixel[c] = best
                        else:
                            pixel[c] = y[n, c, py, px]
                    _emit_float(pixel, n, py, px, out_h, out_w, c_words, flat, low, high,
                                codes, out, poisoned)


@jit
def _float_sign_rows_kernel(y: NDArray[np.float32], low: NDArray[np.float32],
                            high: NDArray[np.float32], codes: NDArray[np.uint8],
                            out: NDArray[np.uint64], poisoned: NDArray[np.bool_]) -> None:
    """`_float_sign_kernel` for one pixel per sample (a linear layer's (N, C) outputs)."""
    c_words = (y.shape[1] + 63) // 64
    for n in range(y.shape[0]):
        _emit_float(y[n], n, 0, 0, 1, 1, c_words, False, low, high, codes, out, poisoned)


# --------------------------------------------------------------------------------------------
# Checked wrappers


def _n_words(n_bits: int) -> int:
    return -(-n_bits // 64)


def _array(name: str, value: Any, dtype: type[np.generic], ndim: int) -> NDArray[Any]:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(value).__name__}")
    if value.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype)}, got {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got {value.ndim}")
    return np.ascontiguousarray(value)


def _count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _stream(words: Any, bit_offset: Any, n_bits: int) -> tuple[NDArray[np.uint64], int]:
    """The words (1-D uint64) and an offset at which `n_bits` bits fit inside them."""
    array = _array("words", words, np.uint64, 1)
    offset = _count("bit_offset", bit_offset, 0)
    if offset + n_bits > 64 * array.shape[0]:
        raise ValueError(f"bits [{offset}, {offset + n_bits}) run past the {64 * array.shape[0]} "
                         f"bits of the words")
    return array, offset


def _bounds(low: Any, high: Any, n_channels: int) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    lo = _array("low", low, np.int32, 1)
    hi = _array("high", high, np.int32, 1)
    if lo.shape[0] != n_channels or hi.shape[0] != n_channels:
        raise ValueError(f"low and high: expected {n_channels} bounds each, got {lo.shape[0]} "
                         f"and {hi.shape[0]}")
    return lo, hi


def _float_bounds(thresholds: Any, n_channels: int) -> FloatThresholds:
    if not isinstance(thresholds, FloatThresholds):
        raise ValueError(f"thresholds: expected FloatThresholds, got {type(thresholds).__name__}")
    if thresholds.n_channels != n_channels:
        raise ValueError(f"thresholds: expected {n_channels} channels, got "
                         f"{thresholds.n_channels}")
    return thresholds


def _sign_output(n_samples: int, channels: int, height: int, width: int, pool: bool,
                 flat: bool) -> tuple[NDArray[np.uint64], tuple[int, ...]]:
    """A zeroed 2-D output of packed signs and the shape the caller sees."""
    out_h, out_w = (height // 2, width // 2) if pool else (height, width)
    if flat:
        words = _n_words(channels * out_h * out_w)
        return np.zeros((n_samples, words), np.uint64), (n_samples, words)
    c_words = _n_words(channels)
    return (np.zeros((n_samples, out_h * out_w * c_words), np.uint64),
            (n_samples, out_h, out_w, c_words))


def _maps(maps: Any, weights: Any) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    m = _array("maps", maps, np.uint64, 4)
    w = _array("weights", weights, np.uint64, 3)
    if w.shape[0] != 9 or w.shape[1] != m.shape[3]:
        raise ValueError(f"weights: expected shape (9, {m.shape[3]}, c_out) for maps of "
                         f"{m.shape[3]} words per pixel, got {w.shape}")
    return m, w


def pack_signs(values: NDArray[Any]) -> NDArray[np.uint64]:
    """Packed rows (N, ceil(F/64)) of 2-D ``values`` (N, F): bit 1 where the value is > 0."""
    if not isinstance(values, np.ndarray) or values.ndim != 2 or values.dtype.kind not in "iuf":
        raise ValueError("values: expected a 2-D numpy array of numbers")
    v = np.ascontiguousarray(values)
    out = np.zeros((v.shape[0], _n_words(v.shape[1])), np.uint64)
    _pack_signs_kernel(v, out)
    return out


def linear_weight_words(words: NDArray[np.uint64], bit_offset: int, out_features: int,
                        in_features: int) -> NDArray[np.uint64]:
    """The (out, in) ±1 matrix stored row by row from stream bit ``bit_offset``, as linear
    weights (ceil(in/64), out): each row's bits copied into whole words, the rest zero."""
    n_out = _count("out_features", out_features)
    n_in = _count("in_features", in_features)
    stream, offset = _stream(words, bit_offset, n_out * n_in)
    out = np.empty((_n_words(n_in), n_out), np.uint64)
    _linear_weight_kernel(stream, offset, n_out, n_in, out)
    return out


def conv_weight_words(words: NDArray[np.uint64], bit_offset: int, out_channels: int,
                      in_channels: int, taps: int = 9) -> NDArray[np.uint64]:
    """The (c_out, c_in, kh, kw) ±1 kernel stored from stream bit ``bit_offset`` (``taps`` =
    kh·kw), as conv weights (taps, ceil(c_in/64), c_out)."""
    n_out = _count("out_channels", out_channels)
    n_in = _count("in_channels", in_channels)
    n_taps = _count("taps", taps)
    stream, offset = _stream(words, bit_offset, n_out * n_in * n_taps)
    out = np.zeros((n_taps, _n_words(n_in), n_out), np.uint64)
    _conv_weight_kernel(stream, offset, n_out, n_in, n_taps, out)
    return out


def decode_signs(words: NDArray[np.uint64], bit_offset: int, n: int) -> NDArray[np.float32]:
    """Stream bits [bit_offset, bit_offset + n) as float32 ±1 (1 → +1, 0 → −1)."""
    count = _count("n", n, 0)
    stream, offset = _stream(words, bit_offset, count)
    out = np.empty(count, np.float32)
    _decode_signs_kernel(stream, offset, out)
    return out


def xnor_linear(x: NDArray[np.uint64], weights: NDArray[np.uint64],
                in_features: int) -> NDArray[np.int32]:
    """Integer dot products (N, out) of packed ±1 rows ``x`` (N, ceil(in/64)) with linear
    weights (ceil(in/64), out)."""
    xs, w, n_in = _linear_args(x, weights, in_features)
    out = np.empty((xs.shape[0], w.shape[1]), np.int32)
    _xnor_linear_kernel(xs, w, n_in, out)
    return out


def xnor_linear_sign(x: NDArray[np.uint64], weights: NDArray[np.uint64], in_features: int,
                     low: NDArray[np.int32], high: NDArray[np.int32]) -> NDArray[np.uint64]:
    """Packed rows (N, ceil(out/64)) of the next activation: output o is +1 where its dot
    product lies in ``[low[o], high[o]]``."""
    xs, w, n_in = _linear_args(x, weights, in_features)
    lo, hi = _bounds(low, high, w.shape[1])
    out = np.zeros((xs.shape[0], _n_words(w.shape[1])), np.uint64)
    _xnor_linear_sign_kernel(xs, w, n_in, lo, hi, out)
    return out


def xnor_mlp(y: NDArray[np.float32], thresholds: FloatThresholds, words: NDArray[np.uint64],
             stack: LinearStack) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """The binary part of an MLP in one pass per sample: the signs of the first layer's float
    pre-activations ``y`` (N, C) by ``thresholds``, then the binary linear layers of ``stack``
    read from ``words``. Returns the last layer's integer sums (N, out) and the samples that
    met a NaN activation (see `float_conv3x3_sign`). Equal to `float_sign`, `xnor_linear_sign`
    per hidden layer and `xnor_linear`, in one call and without intermediate arrays."""
    ys = _array("y", y, np.float32, 2)
    t = _float_bounds(thresholds, ys.shape[1])
    if not isinstance(stack, LinearStack):
        raise ValueError(f"stack: expected a LinearStack, got {type(stack).__name__}")
    if int(stack.in_features[0]) != ys.shape[1]:
        raise ValueError(f"stack: the first layer takes {int(stack.in_features[0])} inputs, "
                         f"y has {ys.shape[1]}")
    stream = _array("words", words, np.uint64, 1)
    if stack.end_bit > 64 * stream.shape[0]:
        raise ValueError(f"stack: its bits run to {stack.end_bit}, past the "
                         f"{64 * stream.shape[0]} bits of the words")
    out = np.empty((ys.shape[0], int(stack.out_features[-1])), np.int32)
    poisoned = np.zeros(ys.shape[0], np.bool_)
    _xnor_mlp_kernel(ys, t.low, t.high, t.codes, stream, stack.bit_offsets, stack.in_features,
                     stack.out_features, stack.pop_low, stack.pop_high, out, poisoned)
    return out, poisoned


def _linear_args(x: Any, weights: Any, in_features: Any) -> tuple[NDArray[np.uint64],
                                                                  NDArray[np.uint64], int]:
    xs = _array("x", x, np.uint64, 2)
    w = _array("weights", weights, np.uint64, 2)
    n_in = _count("in_features", in_features)
    if xs.shape[1] != w.shape[0] or w.shape[0] != _n_words(n_in):
        raise ValueError(f"x has {xs.shape[1]} words per row and weights {w.shape[0]}; "
                         f"{n_in} inputs need {_n_words(n_in)}")
    return xs, w, n_in


def binary_conv3x3(maps: NDArray[np.uint64], weights: NDArray[np.uint64],
                   in_channels: int) -> NDArray[np.int32]:
    """Integer 3×3 convolution (stride 1, zero padding 1) of channel maps (N, H, W, words)
    with conv weights (9, words, c_out), as (N, c_out, H, W)."""
    m, w = _maps(maps, weights)
    c_in = _count("in_channels", in_channels)
    out = np.empty((m.shape[0], w.shape[2], m.shape[1], m.shape[2]), np.int32)
    _binary_conv_kernel(m, w, c_in, out)
    return out


def max_pool2x2(sums: NDArray[np.int32]) -> NDArray[np.int32]:
    """2×2 max pooling, stride 2, of integer maps (N, C, H, W)."""
    s = _array("sums", sums, np.int32, 4)
    out = np.empty((*s.shape[:2], s.shape[2] // 2, s.shape[3] // 2), np.int32)
    _max_pool_kernel(s, out)
    return out


def binary_conv3x3_sign(maps: NDArray[np.uint64], weights: NDArray[np.uint64], in_channels: int,
                        low: NDArray[np.int32], high: NDArray[np.int32], *, pool: bool,
                        flat: bool) -> NDArray[np.uint64]:
    """`binary_conv3x3`, then `max_pool2x2` if ``pool``, then the signs of the next activation
    (channel c is +1 where the sum lies in ``[low[c], high[c]]``), packed as channel maps
    (N, H', W', ceil(c_out/64)), or as vector rows in torch's flatten order if ``flat``."""
    m, w = _maps(maps, weights)
    c_in = _count("in_channels", in_channels)
    lo, hi = _bounds(low, high, w.shape[2])
    out, shape = _sign_output(m.shape[0], w.shape[2], m.shape[1], m.shape[2], pool, flat)
    _binary_conv_sign_kernel(m, w, c_in, lo, hi, bool(pool), bool(flat), out)
    return out.reshape(shape)


def _float_conv_args(x: Any, weights: Any) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The input and the weights as (9, c_in, c_out), output channels innermost."""
    xs = _array("x", x, np.float32, 4)
    w = _array("weights", weights, np.float32, 4)
    if w.shape[1:] != (xs.shape[1], 3, 3):
        raise ValueError(f"weights: expected shape (c_out, {xs.shape[1]}, 3, 3), got {w.shape}")
    return xs, np.ascontiguousarray(w.reshape(w.shape[0], w.shape[1], 9).transpose(2, 1, 0))


def float_conv3x3(x: NDArray[np.float32], weights: NDArray[np.float32]) -> NDArray[np.float32]:
    """float32 3×3 convolution (stride 1, zero padding 1) of ``x`` (N, c_in, H, W) with ±1
    ``weights`` (c_out, c_in, 3, 3), summed in torch's CPU order (see the module docstring)."""
    xs, w = _float_conv_args(x, weights)
    out = np.empty((xs.shape[0], w.shape[2], xs.shape[2], xs.shape[3]), np.float32)
    _float_conv_kernel(xs, w, out)
    return out


def float_conv3x3_sign(x: NDArray[np.float32], weights: NDArray[np.float32],
                       thresholds: FloatThresholds, *, pool: bool,
                       flat: bool) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
    """`float_conv3x3`, then torch's max pooling if ``pool``, then the signs of the next
    activation by ``thresholds``, packed as in `binary_conv3x3_sign`; also which samples met a
    NaN activation (torch's logits are NaN for them)."""
    xs, w = _float_conv_args(x, weights)
    t = _float_bounds(thresholds, w.shape[2])
    out, shape = _sign_output(xs.shape[0], w.shape[2], xs.shape[2], xs.shape[3], pool, flat)
    poisoned = np.zeros(xs.shape[0], np.bool_)
    _float_conv_sign_kernel(xs, w, bool(pool), bool(flat), t.low, t.high, t.codes, out,
                            poisoned)
    return out.reshape(shape), poisoned


def float_sign(y: NDArray[np.float32], thresholds: FloatThresholds, *, pool: bool,
               flat: bool) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
    """The signs of the next activation of float pre-activations ``y`` (N, C, H, W), after
    torch's max pooling if ``pool``, packed as in `float_conv3x3_sign` (a linear layer's
    (N, C) outputs are (N, C, 1, 1) with ``flat``)."""
    ys = _array("y", y, np.float32, 4)
    t = _float_bounds(thresholds, ys.shape[1])
    out, shape = _sign_output(ys.shape[0], ys.shape[1], ys.shape[2], ys.shape[3], pool, flat)
    poisoned = np.zeros(ys.shape[0], np.bool_)
    if ys.shape[2] == ys.shape[3] == 1 and not pool:  # one pixel: channel order = flatten order
        _float_sign_rows_kernel(ys.reshape(ys.shape[:2]), t.low, t.high, t.codes, out,
                                poisoned)
    else:
        _float_sign_kernel(ys, bool(pool), bool(flat), t.low, t.high, t.codes, out, poisoned)
    return out.reshape(shape), poisoned
