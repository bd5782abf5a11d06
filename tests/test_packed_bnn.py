"""BNN inference on the packed words: the XNOR-popcount kernels against numpy references, and
`PackedBNN` bit for bit against the torch path (`ModelImage.load` + `predict`) on clean and
corrupted images, odd shapes, non-finite inputs, and the models it refuses."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from torch import nn

from memsim.errors import MemsimError
from memsim.kernels import xnor
from memsim.memory.image import MemoryImage
from memsim.workloads import packed_bnn
from memsim.workloads.bridge import ModelImage, clear
from memsim.workloads.models import MLP, VGG3, LayerFactory, build_model
from memsim.workloads.packed_bnn import PackedBNN, PackedBNNError
from memsim.workloads.quant import SignQuantizer
from memsim.workloads.training import predict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BNN = {"weight_bits": 1, "binary_activations": True}


# --------------------------------------------------------------------------------------------
# helpers


def signs(rng: np.random.Generator, shape: tuple[int, ...]) -> NDArray[np.int64]:
    return rng.choice(np.array([-1, 1]), shape)


def stream_of(bits: NDArray[np.integer], offset: int, rng: np.random.Generator
              ) -> NDArray[np.uint64]:
    """Words holding `offset` random bits, then `bits`, then random bits up to a word end."""
    tail = (-(offset + bits.size)) % 64 + 64
    stream = np.concatenate([rng.integers(0, 2, offset), bits.reshape(-1),
                             rng.integers(0, 2, tail)]).astype(np.uint8)
    return np.packbits(stream, bitorder="little").view("<u8").astype(np.uint64)


def channel_maps(a: NDArray[np.int64]) -> NDArray[np.uint64]:
    """±1 maps (N, C, H, W) packed as (N, H, W, words)."""
    n, c, h, w = a.shape
    rows = xnor.pack_signs(a.transpose(0, 2, 3, 1).reshape(n * h * w, c).astype(np.float32))
    return rows.reshape(n, h, w, -(-c // 64))


def unpack_rows(words: NDArray[np.uint64], n_bits: int) -> NDArray[np.uint8]:
    bits = np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :n_bits]


def conv_reference(a: NDArray[np.int64], k: NDArray[np.int64]) -> NDArray[np.int64]:
    """3×3 correlation with zero padding 1: (N, C, H, W) × (O, C, 3, 3) → (N, O, H, W)."""
    n, _, h, w = a.shape
    padded = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, k.shape[0], h, w), np.int64)
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("nchw,oc->nohw", padded[:, :, ky:ky + h, kx:kx + w], k[:, :, ky, kx])
    return out


def pool_reference(s: NDArray[np.generic]) -> NDArray[np.generic]:
    n, c, h, w = s.shape
    return s[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def float_conv_reference(x: NDArray[np.float32], w: NDArray[np.float32]) -> NDArray[np.float32]:
    """float32, each output from 0 adding taps row by row, input channels innermost."""
    n, c, h, wd = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    acc = np.zeros((n, w.shape[0], h, wd), np.float32)
    for ky in range(3):
        for kx in range(3):
            for ci in range(c):
                acc = acc + w[None, :, ci, ky, kx, None, None] * padded[:, ci:ci + 1, ky:ky + h,
                                                                      kx:kx + wd]
    return acc


def interval_bits(v: NDArray[np.generic], low: NDArray[np.generic], high: NDArray[np.generic],
                  axis: int = 1) -> NDArray[np.bool_]:
    shape = [1] * v.ndim
    shape[axis] = -1
    return (low.reshape(shape) <= v) & (v <= high.reshape(shape))


def randomise_batch_norm(model: nn.Module, seed: int) -> None:
    """Non-trivial eval-mode statistics: thresholds anywhere in the sums' range, some negative
    gammas (falling thresholds), a zero gamma (a constant channel), and channels whose batch
    norm is exactly 0 at an integer (where sign(0) = −1 decides)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_((torch.rand(c, generator=g) * 2 - 1) * 6)
                m.running_var.copy_(torch.rand(c, generator=g) * 20 + 0.1)
                m.weight.copy_(torch.randn(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
                m.weight[0] = 0.0
                exact = slice(1, max(2, c // 4))
                m.running_mean[exact] = torch.round(m.running_mean[exact])
                m.bias[exact] = 0.0


def corrupt(image: MemoryImage, rate: float, seed: int) -> MemoryImage:
    """Every stored bit flipped with probability `rate` (numpy, independent of memsim's kernels)."""
    rng = np.random.default_rng(seed)
    words = image.words.copy()
    flips = np.flatnonzero(rng.random(image.n_bits) < rate)
    np.bitwise_xor.at(words, flips // 64, np.uint64(1) << (flips % 64).astype(np.uint64))
    return image.with_words(words)


def torch_logits(model: nn.Module, model_image: ModelImage, image: MemoryImage,
                 images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model_image.load(model, image)
    try:
        return predict(model, images, batch_size)
    finally:
        clear(model)


def assert_same(model: nn.Module, model_image: ModelImage, packed: PackedBNN,
                image: MemoryImage, images: torch.Tensor, batch_size: int = 512) -> None:
    want = torch_logits(model, model_image, image, images, batch_size)
    got = packed.logits(image, images, batch_size)
    assert got.dtype == torch.float32 and got.shape == want.shape
    g, w = got.numpy(), want.numpy()
    assert np.array_equal(np.isnan(g), np.isnan(w))  # NaN where torch has NaN
    assert np.array_equal(g[~np.isnan(w)].view(np.int32), w[~np.isnan(w)].view(np.int32))


def bnn(name: str, seed: int, **options: object) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, num_classes=10, **{**BNN, **options})  # type: ignore[arg-type]
    randomise_batch_norm(model, seed)
    return model.eval()


@pytest.fixture
def numba_threads() -> Iterator[None]:
    threads = numba.get_num_threads()
    yield
    numba.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# kernels


def test_pack_signs_sets_the_bit_of_positive_values_only() -> None:
    values = np.array([[1.0, -1.0, 0.0, -0.0, np.nan, 2.5, -np.inf, np.inf] * 9 + [1.0]],
                      np.float32)
    packed = xnor.pack_signs(values)
    assert packed.shape == (1, 2)
    bits = unpack_rows(packed, values.shape[1])[0]
    assert np.array_equal(bits, (values[0] > 0).astype(np.uint8))
    assert unpack_rows(packed, 128)[0, 73:].sum() == 0  # the padding stays 0


@settings(max_examples=40, deadline=None)
@given(out_features=st.integers(1, 70), in_features=st.integers(1, 200),
       offset=st.integers(0, 130), seed=st.integers(0, 2**32 - 1))
def test_linear_weights_and_dot_products_match_numpy(out_features: int, in_features: int,
                                                     offset: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = signs(rng, (out_features, in_features))
    words = stream_of((w > 0).astype(np.uint8), offset, rng)
    packed = xnor.linear_weight_words(words, offset, out_features, in_features)
    assert packed.shape == (-(-in_features // 64), out_features)
    # column o holds row o's bits, then zeros
    assert np.array_equal(unpack_rows(packed.T.copy(), 64 * packed.shape[0]),
                          np.pad((w > 0).astype(np.uint8), ((0, 0), (0, 64 * packed.shape[0]
                                                                     - in_features))))
    x = signs(rng, (5, in_features))
    dots = xnor.xnor_linear(xnor.pack_signs(x.astype(np.float32)), packed, in_features)
    assert np.array_equal(dots, x @ w.T)
    low = rng.integers(-in_features - 1, in_features + 1, out_features).astype(np.int32)
    high = rng.integers(-in_features - 1, in_features + 1, out_features).astype(np.int32)
    next_signs = xnor.xnor_linear_sign(xnor.pack_signs(x.astype(np.float32)), packed,
                                       in_features, low, high)
    assert np.array_equal(unpack_rows(next_signs, out_features),
                          interval_bits(x @ w.T, low, high).astype(np.uint8))


def test_weight_rows_read_straight_from_an_image_region() -> None:
    rng = np.random.default_rng(3)
    first = signs(rng, (3, 7))
    second = signs(rng, (11, 100))
    image = MemoryImage.pack({"a": (first, "binary", 1), "b": (second, "binary", 1)})
    region = image.region("b")
    assert region.bit_offset % 64 != 0
    packed = xnor.linear_weight_words(image.words, region.bit_offset, 11, 100)
    back = unpack_rows(packed.T.copy(), 128)[:, :100].astype(np.int64) * 2 - 1
    assert np.array_equal(back, image.unpack("b"))
    decoded = xnor.decode_signs(image.words, region.bit_offset, region.n_elements)
    assert decoded.dtype == np.float32
    assert np.array_equal(decoded.reshape(11, 100), image.unpack("b"))


@pytest.mark.parametrize(("c_in", "c_out", "h", "w", "offset"),
                         [(1, 8, 6, 5, 0), (5, 3, 4, 4, 37), (64, 16, 7, 7, 64),
                          (70, 65, 3, 9, 13), (3, 2, 1, 1, 5), (2, 4, 2, 1, 0)])
def test_binary_conv_matches_numpy(c_in: int, c_out: int, h: int, w: int, offset: int) -> None:
    rng = np.random.default_rng(c_in * 100 + c_out)
    a = signs(rng, (4, c_in, h, w))
    k = signs(rng, (c_out, c_in, 3, 3))
    weights = xnor.conv_weight_words(stream_of((k > 0).astype(np.uint8), offset, rng), offset,
                                     c_out, c_in)
    assert weights.shape == (9, -(-c_in // 64), c_out)
    sums = xnor.binary_conv3x3(channel_maps(a), weights, c_in)
    want = conv_reference(a, k)
    assert np.array_equal(sums, want)
    assert np.array_equal(xnor.max_pool2x2(sums), pool_reference(want))
    low = rng.integers(-9 * c_in, 9 * c_in, c_out).astype(np.int32)
    high = (low + rng.integers(0, 9 * c_in, c_out)).astype(np.int32)
    for pool in (False, True):
        pre = pool_reference(want) if pool else want
        bits = interval_bits(pre, low, high)  # (N, C, H', W')
        flat = xnor.binary_conv3x3_sign(channel_maps(a), weights, c_in, low, high, pool=pool,
                                        flat=True)
        assert np.array_equal(unpack_rows(flat, bits[0].size), bits.reshape(4, -1))
        maps = xnor.binary_conv3x3_sign(channel_maps(a), weights, c_in, low, high, pool=pool,
                                        flat=False)
        assert np.array_equal(maps, channel_maps(np.where(bits, 1, -1)))


def test_padding_counts_only_the_taps_inside_the_image() -> None:
    """All-ones input and weights: a corner sees 4 taps, an edge 6, the inside 9."""
    a = np.ones((1, 3, 4, 5), np.int64)
    k = np.ones((1, 3, 3, 3), np.int64)
    rng = np.random.default_rng(0)
    weights = xnor.conv_weight_words(stream_of((k > 0).astype(np.uint8), 0, rng), 0, 1, 3)
    sums = xnor.binary_conv3x3(channel_maps(a), weights, 3)[0, 0]
    assert sums[0, 0] == 12 and sums[0, 2] == 18 and sums[2, 2] == 27 and sums[3, 4] == 12


def wide_floats(rng: np.random.Generator, shape: tuple[int, ...]) -> NDArray[np.float32]:
    return ((rng.random(shape) * 2 - 1) * np.exp2(rng.integers(-12, 13, shape))).astype(
        np.float32)


@pytest.mark.parametrize(("c_in", "c_out", "h", "w"), [(1, 8, 7, 6), (3, 5, 4, 4), (2, 70, 3, 5)])
def test_float_conv_adds_in_torchs_order(c_in: int, c_out: int, h: int, w: int) -> None:
    rng = np.random.default_rng(c_in + c_out)
    x = wide_floats(rng, (3, c_in, h, w))
    k = signs(rng, (c_out, c_in, 3, 3)).astype(np.float32)
    got = xnor.float_conv3x3(x, k)
    assert np.array_equal(got, float_conv_reference(x, k))
    with torch.no_grad():
        want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(k), None, 1, 1)
    assert np.array_equal(got, want.numpy())  # what PackedBNN probes before relying on it


def float_sign_reference(y: NDArray[np.float32], t: xnor.FloatThresholds, pool: bool
                         ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Signs (N, C, H', W') and poisoned samples of float pre-activations, torch's pooling."""
    if pool:
        n, c, h, w = y.shape
        windows = y[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
        windows = windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        y = np.where(np.isnan(windows).any(-1), np.nan, windows.max(-1)).astype(np.float32)
    finite = interval_bits(y, t.low, t.high) & np.isfinite(y)
    codes = np.full(y.shape, -1)
    for where, code in ((y == -np.inf, t.at_minus_inf), (y == np.inf, t.at_plus_inf),
                        (np.isnan(y), t.at_nan)):
        codes[where] = np.broadcast_to(code[None, :, None, None], y.shape)[where]
    bits = finite | (codes == xnor.CODE_PLUS_ONE)
    poisoned = (codes == xnor.CODE_NAN).reshape(y.shape[0], -1).any(1)
    return bits, poisoned


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("flat", [False, True])
def test_float_signs_match_numpy_with_infinities_and_nan(pool: bool, flat: bool) -> None:
    rng = np.random.default_rng(5)
    n, c_in, c_out, h, w = 6, 2, 67, 5, 4
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    x[1, 0, 2, 2] = np.inf
    x[2, 1, 0, 0] = -np.inf
    x[4, 1, 1, 1] = np.nan
    k = signs(rng, (c_out, c_in, 3, 3)).astype(np.float32)
    low = rng.standard_normal(c_out).astype(np.float32)
    high = (low + rng.random(c_out) * 3).astype(np.float32)
    low[:3], high[:3] = -np.inf, np.float32(0.5)  # falling thresholds
    low[3], high[3] = np.inf, -np.inf  # never +1
    codes = rng.integers(0, 3, (3, c_out)).astype(np.uint8)
    codes[2, 4] = xnor.CODE_NAN
    t = xnor.FloatThresholds(low, high, *codes)
    y = float_conv_reference(x, k)
    bits, poisoned = float_sign_reference(y, t, pool)
    for packed, got_poisoned in (xnor.float_conv3x3_sign(x, k, t, pool=pool, flat=flat),
                                 xnor.float_sign(y, t, pool=pool, flat=flat)):
        if flat:
            assert np.array_equal(unpack_rows(packed, bits[0].size), bits.reshape(n, -1))
        else:
            assert np.array_equal(packed, channel_maps(np.where(bits, 1, -1)))
        assert np.array_equal(got_poisoned, poisoned)
    assert poisoned[4] and not poisoned[0]
    dropped = y.copy()
    dropped[0, 4, 4, 0] = np.nan  # the last of 5 rows: pooling never reads it
    assert xnor.float_sign(dropped, t, pool=pool, flat=flat)[1][0] == (not pool)


def test_float_signs_of_linear_outputs() -> None:
    rng = np.random.default_rng(6)
    y = rng.standard_normal((9, 130)).astype(np.float32)
    y[2, 5] = np.nan
    t = xnor.FloatThresholds(np.zeros(130, np.float32), np.full(130, np.inf, np.float32),
                             np.zeros(130, np.uint8), np.ones(130, np.uint8),
                             np.full(130, xnor.CODE_NAN, np.uint8))
    packed, poisoned = xnor.float_sign(y.reshape(9, 130, 1, 1), t, pool=False, flat=True)
    assert np.array_equal(unpack_rows(packed, 130), (y > 0).astype(np.uint8))
    assert poisoned.tolist() == [i == 2 for i in range(9)]


@pytest.mark.parametrize("sizes", [(64, 128, 128, 10), (9, 13, 100, 7, 5), (70, 3)])
def test_fused_mlp_equals_the_layer_kernels(sizes: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(sizes))
    n = 23
    y = rng.standard_normal((n, sizes[0])).astype(np.float32)
    y[3, 1] = np.nan
    t = xnor.FloatThresholds(rng.standard_normal(sizes[0]).astype(np.float32),
                             np.full(sizes[0], 1.5, np.float32), np.zeros(sizes[0], np.uint8),
                             np.ones(sizes[0], np.uint8), np.full(sizes[0], 2, np.uint8))
    shapes = list(itertools.pairwise(sizes))  # (in, out) of the binary layers
    matrices = [signs(rng, (o, i)) for i, o in shapes]
    offset = 5
    words = stream_of(np.concatenate([(m > 0).reshape(-1) for m in matrices]).astype(np.uint8),
                      offset, rng)
    offsets = offset + np.cumsum([0] + [m.size for m in matrices[:-1]])
    lows = [rng.integers(-i, i + 1, o).astype(np.int32) for i, o in shapes[:-1]]
    highs = [(lo + rng.integers(0, 2 * i, lo.size)).astype(np.int32)
             for lo, (i, _) in zip(lows, shapes, strict=False)]
    stack = xnor.LinearStack(offsets, [i for i, _ in shapes], [o for _, o in shapes],
                             np.concatenate(lows or [np.zeros(0, np.int32)]),
                             np.concatenate(highs or [np.zeros(0, np.int32)]))
    sums, poisoned = xnor.xnor_mlp(y, t, words, stack)
    packed, want_poisoned = xnor.float_sign(y.reshape(n, -1, 1, 1), t, pool=False, flat=True)
    for k, (i, o) in enumerate(shapes[:-1]):
        w = xnor.linear_weight_words(words, int(offsets[k]), o, i)
        packed = xnor.xnor_linear_sign(packed, w, i, lows[k], highs[k])
    i, o = shapes[-1]
    want = xnor.xnor_linear(packed, xnor.linear_weight_words(words, int(offsets[-1]), o, i), i)
    assert np.array_equal(sums, want) and np.array_equal(poisoned, want_poisoned)
    assert poisoned[3] and poisoned.sum() == 1


def test_linear_stack_is_checked() -> None:
    with pytest.raises(ValueError, match="previous one's outputs"):
        xnor.LinearStack(np.array([0, 10]), np.array([4, 5]), np.array([3, 2]),
                         np.zeros(3, np.int32), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="bounds"):
        xnor.LinearStack(np.array([0, 12]), np.array([4, 3]), np.array([3, 2]),
                         np.zeros(2, np.int32), np.zeros(2, np.int32))
    stack = xnor.LinearStack(np.array([0]), np.array([4]), np.array([3]), np.zeros(0, np.int32),
                             np.zeros(0, np.int32))
    def thresholds(c: int) -> xnor.FloatThresholds:
        return xnor.FloatThresholds(*(np.zeros(c, dt) for dt in (np.float32, np.float32,
                                                                 np.uint8, np.uint8, np.uint8)))

    with pytest.raises(ValueError, match="takes 4 inputs, y has 5"):
        xnor.xnor_mlp(np.zeros((1, 5), np.float32), thresholds(5), np.zeros(1, np.uint64), stack)
    with pytest.raises(ValueError, match="past the 0 bits"):
        xnor.xnor_mlp(np.zeros((1, 4), np.float32), thresholds(4), np.zeros(0, np.uint64), stack)


def test_kernels_do_not_depend_on_the_thread_count(numba_threads: None) -> None:
    rng = np.random.default_rng(7)
    a = signs(rng, (37, 20, 6, 6))
    k = signs(rng, (30, 20, 3, 3))
    weights = xnor.conv_weight_words(stream_of((k > 0).astype(np.uint8), 3, rng), 3, 30, 20)
    low = np.full(30, -3, np.int32)
    high = np.full(30, 40, np.int32)
    x = wide_floats(rng, (37, 2, 6, 6))
    t = xnor.FloatThresholds(np.zeros(30, np.float32), np.full(30, 1.0, np.float32),
                             np.zeros(30, np.uint8), np.ones(30, np.uint8),
                             np.zeros(30, np.uint8))
    rows = xnor.pack_signs(signs(rng, (37, 100)).astype(np.float32))
    words = stream_of(rng.integers(0, 2, 100 * 30 + 30 * 7), 0, rng)
    linear = xnor.linear_weight_words(words, 0, 30, 100)
    stack = xnor.LinearStack(np.array([0, 3000]), np.array([100, 30]), np.array([30, 7]), low,
                             high)
    y = rng.standard_normal((37, 100)).astype(np.float32)
    t100 = xnor.FloatThresholds(np.zeros(100, np.float32), np.ones(100, np.float32),
                                *np.zeros((3, 100), np.uint8))
    results = []
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):  # type: ignore[attr-defined]
        numba.set_num_threads(threads)
        results.append((xnor.binary_conv3x3_sign(channel_maps(a), weights, 20, low, high,
                                                 pool=True, flat=True),
                        xnor.float_conv3x3_sign(x, k[:, :2].astype(np.float32), t, pool=True,
                                                flat=False)[0],
                        xnor.xnor_linear_sign(rows, linear, 100, low, high),
                        xnor.xnor_mlp(y, t100, words, stack)[0]))
    for r in results[1:]:
        assert all(np.array_equal(p, q) for p, q in zip(r, results[0], strict=True))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: xnor.linear_weight_words(np.zeros(2, np.uint64), 100, 1, 64), "run past"),
    (lambda: xnor.linear_weight_words(np.zeros(2, np.int64), 0, 1, 64), "dtype uint64"),
    (lambda: xnor.xnor_linear(np.zeros((1, 2), np.uint64), np.zeros((1, 3), np.uint64), 64),
     "words per row"),
    (lambda: xnor.binary_conv3x3(np.zeros((1, 2, 2, 1), np.uint64),
                                 np.zeros((9, 2, 3), np.uint64), 5), "weights: expected shape"),
    (lambda: xnor.xnor_linear_sign(np.zeros((1, 1), np.uint64), np.zeros((1, 3), np.uint64), 64,
                                   np.zeros(2, np.int32), np.zeros(3, np.int32)), "bounds"),
    (lambda: xnor.FloatThresholds(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2),
                                  np.full(2, 3)), "codes"),
    (lambda: xnor.pack_signs(np.zeros(3)), "2-D"),
])
def test_kernel_arguments_are_checked(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


# --------------------------------------------------------------------------------------------
# PackedBNN against the torch path


@pytest.mark.parametrize(("seed", "rate"), [(0, 0.0), (1, 0.01), (2, 0.1), (3, 0.5)])
def test_demo_mlp_is_bit_exact(seed: int, rate: float) -> None:
    """The demo's BNN shape (64 → 128 → 128 → 10, learnable output scale) on 360 inputs."""
    model = bnn("mlp", seed, in_channels=1, image_size=8, width_multiplier=0.5)
    model_image = ModelImage.of(model)
    packed = PackedBNN(model, model_image)
    assert packed.layers == ("body.1", "body.4", "body.7") and packed.input_shape == (64,)
    images = torch.randn(360, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    assert_same(model, model_image, packed, corrupt(model_image.image, rate, seed), images)


def test_trained_mlp_on_digits_is_bit_exact() -> None:
    """A few training steps on the built-in digits give realistic batch-norm statistics."""
    from memsim.workloads.data import load_dataset

    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mlp", num_classes=10, in_channels=1, image_size=8, width_multiplier=0.5,
                        output_scale=1.0, **BNN)  # type: ignore[arg-type]
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for step in range(30):
        batch = slice(64 * step % 1400, 64 * step % 1400 + 64)
        loss = nn.functional.cross_entropy(model(data.train.images[batch]),
                                           data.train.labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    model_image = ModelImage.of(model)
    packed = PackedBNN(model, model_image)
    for seed, rate in ((0, 0.0), (1, 0.02), (2, 0.2)):
        assert_same(model, model_image, packed, corrupt(model_image.image, rate, seed),
                    data.test.images)


def test_odd_shapes_unaligned_regions_and_odd_fan_in() -> None:
    """in_features 9, hidden 13 and 100 (not multiples of 64), 7 and 5 outputs: every region
    after the first starts mid-word and every row straddles words."""
    torch.manual_seed(4)
    factory = LayerFactory(SignQuantizer(), binary_activations=True)
    model = MLP(factory, in_features=9, num_classes=5, hidden=(13, 100, 7))
    randomise_batch_norm(model, 4)
    model.eval()
    model_image = ModelImage.of(model)
    assert [r.bit_offset % 64 for r in model_image.image.regions] == [0, 117 % 64,
                                                                      (117 + 1300) % 64,
                                                                      (117 + 1300 + 700) % 64]
    packed = PackedBNN(model, model_image)
    images = torch.randn(50, 3, 3, generator=torch.Generator().manual_seed(4))
    for seed, rate in ((0, 0.0), (1, 0.05), (2, 0.3)):
        assert_same(model, model_image, packed, corrupt(model_image.image, rate, seed), images,
                    batch_size=16)


@pytest.mark.parametrize(("seed", "rate"), [(0, 0.0), (1, 0.01), (2, 0.2)])
def test_vgg3_is_bit_exact(seed: int, rate: float) -> None:
    model = bnn("vgg3", seed, in_channels=1, image_size=28, width_multiplier=0.125)
    model_image = ModelImage.of(model)
    packed = PackedBNN(model, model_image)
    assert packed.input_shape == (1, 28, 28)
    images = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    image = corrupt(model_image.image, rate, seed)
    assert_same(model, model_image, packed, image, images)
    assert_same(model, model_image, packed, image, images, batch_size=16)  # chunks 16, 16, 8


def test_vgg3_with_unaligned_regions_and_partial_channel_words() -> None:
    """5 channels (a word mostly padding), 164 hidden units, regions starting mid-word."""
    model = bnn("vgg3", 5, in_channels=1, image_size=8, width_multiplier=0.08)
    model_image = ModelImage.of(model)
    assert any(r.bit_offset % 64 for r in model_image.image.regions)
    packed = PackedBNN(model, model_image)
    images = torch.randn(30, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    for seed, rate in ((0, 0.0), (1, 0.1)):
        assert_same(model, model_image, packed, corrupt(model_image.image, rate, seed), images)


def test_vgg7_with_several_input_channels_and_two_channel_words() -> None:
    model = bnn("vgg7", 6, in_channels=3, image_size=8, width_multiplier=0.25)  # up to 128 ch.
    model_image = ModelImage.of(model)
    packed = PackedBNN(model, model_image)
    images = torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    for seed, rate in ((0, 0.0), (1, 0.05)):
        assert_same(model, model_image, packed, corrupt(model_image.image, rate, seed), images)


def test_first_convolution_falls_back_to_torch_when_its_order_differs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = bnn("vgg3", 7, in_channels=1, image_size=8, width_multiplier=0.125)
    model_image = ModelImage.of(model)
    packed = PackedBNN(model, model_image)
    images = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    image = corrupt(model_image.image, 0.05, 7)
    assert packed._numba_conv_matches_torch({20})  # on this machine torch adds in that order

    def column_major(x: NDArray[np.float32], w: NDArray[np.float32]) -> NDArray[np.float32]:
        return float_conv_reference(x.transpose(0, 1, 3, 2).copy(),
                                    w.transpose(0, 1, 3, 2).copy()).transpose(0, 1, 3, 2)

    monkeypatch.setattr(packed_bnn, "float_conv3x3", column_major)
    fresh = PackedBNN(model, model_image)
    assert not fresh._numba_conv_matches_torch({20})  # the probe sees another order
    assert_same(model, model_image, fresh, image, images)  # and torch convolves


@pytest.mark.parametrize("name", ["mlp", "vgg3"])
def test_non_finite_inputs_match_torch(name: str) -> None:
    model = bnn(name, 8, in_channels=1, image_size=8, width_multiplier=0.125)
    model_image = ModelImage.of(model)
    packed = PackedBNN(model, model_image)
    images = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    images[1, 0, 3, 3] = float("nan")
    images[2, 0, 0, 0] = float("inf")
    images[3, 0, 5, 2] = -float("inf")
    images[4] = float("inf")
    assert_same(model, model_image, packed, model_image.image, images)


# --------------------------------------------------------------------------------------------
# what it refuses


def refusal(model: nn.Module, model_image: ModelImage | None = None) -> str:
    with pytest.raises(PackedBNNError) as info:
        PackedBNN(model, model_image or ModelImage.of(model))
    message = str(info.value)
    assert isinstance(info.value, MemsimError) and "\n" not in message
    return message


def test_refuses_non_binary_activations() -> None:
    model = build_model("mlp", num_classes=10, in_channels=1, image_size=8, weight_bits=1)
    assert "binary_activations=True" in refusal(model)


def test_refuses_non_sign_weights() -> None:
    model = build_model("vgg3", num_classes=10, in_channels=1, image_size=8, weight_bits=4,
                        binary_activations=True, width_multiplier=0.125)
    assert "sign (1-bit) weights" in refusal(model)


def test_refuses_unknown_models_and_layers() -> None:
    model = build_model("resnet18", num_classes=10, in_channels=3, image_size=8, weight_bits=1,
                        binary_activations=True, width_multiplier=0.125)
    assert "MLP, VGG3 and VGG7" in refusal(model)
    mlp = bnn("mlp", 0, in_channels=1, image_size=8, width_multiplier=0.125)
    mlp.body.insert(1, nn.Dropout())
    assert "cannot run Dropout" in refusal(mlp)


def test_refuses_layers_missing_from_the_image() -> None:
    model = bnn("mlp", 0, in_channels=1, image_size=8, width_multiplier=0.125)
    assert "'body.4' is not in the model image" in refusal(
        model, ModelImage.of(model, layers=["body.1", "body.7"]))


def test_refuses_batch_norm_without_running_statistics() -> None:
    torch.manual_seed(0)
    factory = LayerFactory(SignQuantizer(), binary_activations=True)
    model = MLP(factory, in_features=4, num_classes=3, hidden=(5,))
    model.body[2] = nn.BatchNorm1d(5, track_running_stats=False)
    assert "running statistics" in refusal(model)


def test_refuses_images_and_inputs_that_do_not_fit() -> None:
    model = bnn("vgg3", 0, in_channels=1, image_size=8, width_multiplier=0.125)
    model_image = ModelImage.of(model)
    packed = PackedBNN(model, model_image)
    other = ModelImage.of(bnn("mlp", 0, in_channels=1, image_size=8, width_multiplier=0.125))
    with pytest.raises(PackedBNNError, match="layout differs"):
        packed.logits(other.image, torch.zeros(1, 1, 8, 8))
    with pytest.raises(PackedBNNError, match=r"this model takes \(N, 1, 8, 8\)"):
        packed.logits(model_image.image, torch.zeros(1, 1, 9, 9))
    with pytest.raises(PackedBNNError, match="float32"):
        packed.logits(model_image.image, torch.zeros(1, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(PackedBNNError, match="batch_size"):
        packed.logits(model_image.image, torch.zeros(1, 1, 8, 8), batch_size=0)
    assert packed.logits(model_image.image, torch.zeros(0, 1, 8, 8)).shape == (0, 10)


def test_image_size_is_inferred_or_given() -> None:
    model = bnn("vgg3", 0, in_channels=1, image_size=16, width_multiplier=0.125)
    model_image = ModelImage.of(model)
    assert PackedBNN(model, model_image).input_shape == (1, 16, 16)
    assert PackedBNN(model, model_image, image_size=16).input_shape == (1, 16, 16)
    with pytest.raises(PackedBNNError, match="takes 128 inputs, the convolutions give 72"):
        PackedBNN(model, model_image, image_size=12)
    assert isinstance(model, VGG3)
