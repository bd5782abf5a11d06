"""Random numbers for the kernels: explicit seeds, no global state, no per-cell storage.

Everything here is a `numba.njit(cache=True)` function over unsigned 64-bit integers (the
functions are callable from Python too, but slowly; the kernels call them from jitted code).

- `splitmix64_mix(z)`: the splitmix64 output function (Steele, Lea & Flood 2014), a bijection
  of the 64-bit integers with full avalanche. Everything else is built on it.
- **Per-chunk generator**: a *splitmix64 sequence*. Its state is one uint64; each draw adds the
  odd constant γ = 0x9E3779B97F4A7C15 and returns `splitmix64_mix(state)`. It passes BigCrush,
  needs no array of state (so every chunk of a parallel loop keeps its own generator in a
  register) and its period is 2^64. A chunk's generator starts at `stream_seed(seed, chunk)`;
  because the map from `chunk` to a starting state is a bijection for a fixed seed, different
  chunks start at different states, and two chunks' sequences (at most a few million draws
  each) overlap only with probability about draws × chunks² / 2^64.
  Draws are threaded through jitted code as `state, value = next_u64(state)`; a batch can
  be drawn at once with `uniform_ahead(state, k)` (the k-th draw) and `skip_ahead`.
- **Uniforms** in the open interval (0, 1) with 53 random bits: `k · 2^-53` for
  `k = x >> 11` in 1 .. 2^53 − 1, and `k = 0` maps to `2^-54` (so `log(u)` is always finite and
  `u < 1` always; the move of one value of probability 2^-53 by 2^-54 is far below anything a
  test could see).
- `stream_seed(seed, stream)`: the starting state of stream `stream` of a seed.
- `cell_uniform(seed, index)`: a *counter-based* uniform: the same `(seed, index)` always gives
  the same value, so a per-cell quantity (a lognormal variability factor) is recomputed where it
  is needed and never stored. It is the `index`-th output of a splitmix64 sequence whose start
  depends on `seed` (through a domain constant), passed once more through MurmurHash3's
  finaliser: even if that sequence ran into the states of a chunk generator (chance about
  bits × chunks / 2^64 per pair of seeds), its values would be unrelated to that chunk's draws.
- `standard_normal_from_uniform(u)`: Φ⁻¹(u) by Wichura's algorithm AS 241 (PPND16), accurate to
  about 1e-15 relative, monotone up to rounding; `cell_normal(seed, index)` combines the two
  (`cell_normals` for an array of indices).
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numpy.typing import NDArray

F = TypeVar("F", bound=Callable[..., Any])

if "NUMBA_THREADING_LAYER" not in os.environ:
    # numba's OpenMP layer shares the OpenMP runtime with torch: after one parallel kernel,
    # torch's own CPU ops ran on another number of threads and summed in another order, so a
    # training step was no longer bit-reproducible. The workqueue layer has no shared state.
    # It must not be called from several Python threads at once; memsim never does that
    # (executors use processes).
    numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]


def jit(fn: F) -> F:
    """`numba.njit(cache=True)` that keeps the function's signature for type checkers."""
    return cast(F, numba.njit(cache=True)(fn))


def jit_parallel(fn: F) -> F:
    """`numba.njit(cache=True, parallel=True)` that keeps the signature for type checkers, and
    runs a serial compilation of the same code when numba has one thread: starting the thread
    pool costs about 0.3 ms a call here, more than a small image's whole read. Results are
    the same either way (the kernels' chunks do not depend on the thread count)."""
    return cast(F, _Twin(numba.njit(cache=True, parallel=True)(fn),
                         numba.njit(cache=True)(_renamed(fn, "_serial"))))


def serial(kernel: F) -> F:
    """The serial compilation of a `jit_parallel` kernel (for work too small to share)."""
    return cast(F, kernel.serial) if isinstance(kernel, _Twin) else kernel


class _Twin:
    """A parallel kernel and its serial twin; calls go to the twin when numba has one
    thread."""

    def __init__(self, parallel: Any, serial: Any) -> None:
        self.parallel = parallel
        self.serial = serial
        self.__doc__ = parallel.__doc__
        self.__name__ = parallel.__name__

    def __call__(self, *args: Any) -> Any:
        if numba.get_num_threads() == 1:
            return self.serial(*args)
        return self.parallel(*args)


def _renamed(fn: Callable[..., Any], suffix: str) -> Callable[..., Any]:
    """A copy of `fn` under another name: numba's cache is keyed by name, not by flags, so
    the serial and parallel compilations need files of their own."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                              fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__module__ = fn.__module__
    return copy


UINT64_LIMIT = 1 << 64
"""Seeds are integers in [0, 2^64)."""

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64 increment (2^64 / golden ratio, odd)
_GAMMA_STREAM = np.uint64(0xD1B54A32D192ED03)  # odd: stream index -> state offset (bijective)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_DOMAIN_STREAM = np.uint64(0x6A09E667F3BCC908)  # domain separation: chunk streams
_DOMAIN_CELL = np.uint64(0xBB67AE8584CAA73B)  # domain separation: per-cell hashes
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S33 = np.uint64(33)
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_TWO_M53 = 2.0**-53
_TWO_M54 = 2.0**-54


@jit
def splitmix64_mix(z: np.uint64) -> np.uint64:
    """The splitmix64 finaliser: a bijective 64-bit mixer."""
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@jit
def murmur3_fmix64(z: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finaliser: a second bijective mixer, unrelated to splitmix64's."""
    z = np.uint64(z)
    z = (z ^ (z >> _S33)) * _FMIX1
    z = (z ^ (z >> _S33)) * _FMIX2
    return z ^ (z >> _S33)


@jit
def u64_to_unit(x: np.uint64) -> float:
    """The top 53 bits of `x` as a uniform in the open interval (0, 1)."""
    k = np.uint64(x) >> _S11
    if k == 0:
        return _TWO_M54
    return float(k) * _TWO_M53


@jit
def next_u64(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    """One step of the splitmix64 sequence: `(new_state, 64 random bits)`."""
    state = np.uint64(state) + _GAMMA
    return state, splitmix64_mix(state)


@jit
def next_uniform(state: np.uint64) -> tuple[np.uint64, float]:
    """One step of the splitmix64 sequence: `(new_state, uniform in (0, 1))`."""
    state = np.uint64(state) + _GAMMA
    return state, u64_to_unit(splitmix64_mix(state))


@jit
def skip_ahead(state: np.uint64, k: int) -> np.uint64:
    """The state after `k` steps (k ≥ 0) of the sequence: `state + k·γ`."""
    return np.uint64(state) + np.uint64(k) * _GAMMA


@jit
def uniform_ahead(state: np.uint64, k: int) -> float:
    """The uniform that the `k`-th step (k ≥ 1) from `state` returns, without stepping: a
    loop can draw a batch at once (and vectorise it) and stay on the same sequence."""
    return u64_to_unit(splitmix64_mix(skip_ahead(state, k)))


@jit
def stream_seed(seed: np.uint64, stream: int) -> np.uint64:
    """Starting state of generator number `stream` (a chunk index, ≥ 0) of `seed`."""
    base = splitmix64_mix(np.uint64(seed) ^ _DOMAIN_STREAM)
    return splitmix64_mix(base + np.uint64(stream) * _GAMMA_STREAM)


@jit
def cell_uniform(seed: np.uint64, index: int) -> float:
    """Counter-based uniform in (0, 1) for cell `index` (≥ 0): a pure function of its inputs."""
    base = splitmix64_mix(np.uint64(seed) ^ _DOMAIN_CELL)
    x = splitmix64_mix(base + (np.uint64(index) + np.uint64(1)) * _GAMMA)
    return u64_to_unit(murmur3_fmix64(x))


# Wichura (1988), Algorithm AS 241 PPND16.
_A = (
    3.3871328727963666080e0,
    1.3314166789178437745e2,
    1.9715909503065514427e3,
    1.3731693765509461125e4,
    4.5921953931549871457e4,
    6.7265770927008700853e4,
    3.3430575583588128105e4,
    2.5090809287301226727e3,
)
_B = (
    1.0,
    4.2313330701600911252e1,
    6.8718700749205790830e2,
    5.3941960214247511077e3,
    2.1213794301586595867e4,
    3.9307895800092710610e4,
    2.8729085735721942674e4,
    5.2264952788528545610e3,
)
_C = (
    1.42343711074968357734e0,
    4.63033784615654529590e0,
    5.76949722146069140550e0,
    3.64784832476320460504e0,
    1.27045825245236838258e0,
    2.41780725177450611770e-1,
    2.27238449892691845833e-2,
    7.74545014278341407640e-4,
)
_D = (
    1.0,
    2.05319162663775882187e0,
    1.67638483018380384940e0,
    6.89767334985100004550e-1,
    1.48103976427480074590e-1,
    1.51986665636164571966e-2,
    5.47593808499534494600e-4,
    1.05075007164441684324e-9,
)
_E = (
    6.65790464350110377720e0,
    5.46378491116411436990e0,
    1.78482653991729133580e0,
    2.96560571828504891230e-1,
    2.65321895265761230930e-2,
    1.24266094738807843860e-3,
    2.71155556874348757815e-5,
    2.01033439929228813265e-7,
)
_F = (
    1.0,
    5.99832206555887937690e-1,
    1.36929880922735805310e-1,
    1.48753612908506148525e-2,
    7.86869131145613259100e-4,
    1.84631831751005468180e-5,
    1.42151175831644588870e-7,
    2.04426310338993978564e-15,
)


@jit
def _poly7(c: tuple[float, ...], x: float) -> float:
    return (
        (((((c[7] * x + c[6]) * x + c[5]) * x + c[4]) * x + c[3]) * x + c[2]) * x + c[1]
    ) * x + c[0]


@jit
def standard_normal_from_uniform(u: float) -> float:
    """Φ⁻¹(u) for u in (0, 1) (AS 241, about 1e-15 relative error)."""
    q = u - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _poly7(_A, r) / _poly7(_B, r)
    r = u if q < 0.0 else 1.0 - u
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r -= 1.6
        val = _poly7(_C, r) / _poly7(_D, r)
    else:
        r -= 5.0
        val = _poly7(_E, r) / _poly7(_F, r)
    return -val if q < 0.0 else val


@jit
def cell_normal(seed: np.uint64, index: int) -> float:
    """Counter-based standard normal for cell `index`: Φ⁻¹(cell_uniform(seed, index))."""
    return standard_normal_from_uniform(cell_uniform(seed, index))


@jit
def cell_normals(seed: np.uint64, index: NDArray[np.int64]) -> NDArray[np.float64]:
    """`cell_normal(seed, i)` for every `i` of an int64 array (tests, chips, diagnostics)."""
    out = np.empty(index.shape[0], np.float64)
    for k in range(index.shape[0]):
        out[k] = cell_normal(seed, index[k])
    return out
