"""Counter-based random numbers: Philox4x32-10 and the standard normals of the noise.

Every backend (JAX, Numba, CUDA) computes the same numbers from this spec, so a seed gives the
same run everywhere, in any order, on any number of threads.

Philox4x32-10 (Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as 1, 2,
3"; the constants of Random123 and cuRAND) maps a 128-bit counter ``(c0, c1, c2, c3)`` and a
64-bit key ``(k0, k1)`` (uint32 words) to four uint32 words. One round is::

    hi0:lo0 = 0xD2511F53 * c0        (64-bit product of two uint32)
    hi1:lo1 = 0xCD9E8D57 * c2
    (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

and ten rounds are applied, the key being bumped by the Weyl constants between rounds
(``k0 += 0x9E3779B9``, ``k1 += 0xBB67AE85``, mod 2³²; the first round uses the key as given).

The standard normal sample used as the noise of state variable ``v`` at node ``i`` of
parameter set ``p`` in step ``k`` (the step from t = k·dt to (k+1)·dt, k = 0 … n_steps-1; ``p``
is the global index of the set in the user's order, whatever tiles a backend uses) is:

- key = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF), counter = (k, i, p, v // 4);
- x0, x1, x2, x3 = Philox4x32-10(counter, key);
- u_m = (x_m + 0.5) × 2⁻³², where x_m is first converted to the working dtype (round to
  nearest), then 0.5 added (rounded); × 2⁻³² is exact;
- Box–Muller: z0 = sqrt(-2 ln u0) cos(2π u1), z1 = sqrt(-2 ln u0) sin(2π u1),
  z2 = sqrt(-2 ln u2) cos(2π u3), z3 = sqrt(-2 ln u2) sin(2π u3), with 2π rounded to the
  working dtype;
- the sample is z_{v % 4}.

**Precision.** Every step after the Philox words — u, the logarithm, square root, product,
cosine and sine — is computed in the working dtype of the run (float64 or float32), on every
backend. It is the one rule every backend can follow: JAX's default 32-bit mode has no float64
at all, and a GPU's float32 run should not pay for double-precision transcendentals. In float64
the uniforms are exact and the samples agree between backends to a few float64 ulps; in float32
the uniforms are identical on every backend (one rounding each, the same everywhere; u reaches
1.0 for x_m ≥ 2³² - 128, where the radius is 0), and the samples agree to a few float32 ulps
of the radius (each backend's own ``log``, ``cos``, ``sin``: libm, XLA, CUDA's ``logf``...).

Implementations, one per language:

- :func:`philox_normals` (over :func:`philox4x32_10_words`): vectorised over arrays of any
  array namespace — NumPy (the reference, :func:`standard_normal`) and ``jax.numpy`` (the JAX
  backend, inside ``jit``/``vmap``/``grad``). Only uint32 arithmetic: the 32 × 32 → 64-bit
  products are assembled from 16-bit halves, since JAX has no uint64 outside its 64-bit mode.
- :func:`philox4x32_10` and :func:`normals4`: scalar functions that Numba compiles unchanged
  (``register_jitable``: plain Python, callable from ``@njit`` code).
- the C statements that the CUDA backend prints (``neuralmass.backends.cuda._kernel``).
"""

from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

__all__ = [
    "philox4x32_10",
    "philox4x32_10_words",
    "philox4x32_10_numpy",
    "normals4",
    "philox_normals",
    "standard_normal",
    "seed_key",
]

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10

# The scalar (Numba) version works on uint64 values below 2³², written as NumPy uint64 scalars
# so that the same source is exact in Python and in Numba (a 32 x 32 -> 64-bit product never
# overflows uint64).
_MULTIPLIER_0 = np.uint64(PHILOX_M0)
_MULTIPLIER_1 = np.uint64(PHILOX_M1)
_WEYL_0 = np.uint64(PHILOX_W0)
_WEYL_1 = np.uint64(PHILOX_W1)
_LOW_32 = np.uint64(0xFFFFFFFF)
_SHIFT_32 = np.uint64(32)
_TWO_PI = 2.0 * math.pi
_TWO_TO_MINUS_32 = 2.0**-32
_LOW_16 = 0xFFFF


def seed_key(seed: int) -> tuple[int, int]:
    """The Philox key ``(k0, k1)`` of a non-negative integer seed: its low and high words."""
    seed = int(seed)
    return seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- scalar (Numba)


@register_jitable
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of one counter ``(c0, c1, c2, c3)`` and key ``(k0, k1)`` (uint32 values).

    Returns the four output words as ``np.uint64`` values below 2³². Pure Python over NumPy
    scalars; Numba compiles it as is.
    """
    x0 = np.uint64(c0)
    x1 = np.uint64(c1)
    x2 = np.uint64(c2)
    x3 = np.uint64(c3)
    key0 = np.uint64(k0)
    key1 = np.uint64(k1)
    for round_index in range(PHILOX_ROUNDS):
        if round_index:
            key0 = (key0 + _WEYL_0) & _LOW_32
            key1 = (key1 + _WEYL_1) & _LOW_32
        product0 = _MULTIPLIER_0 * x0
        product1 = _MULTIPLIER_1 * x2
        hi0 = product0 >> _SHIFT_32
        lo0 = product0 & _LOW_32
        hi1 = product1 >> _SHIFT_32
        lo1 = product1 & _LOW_32
        x0 = hi1 ^ x1 ^ key0
        x1 = lo1
        x2 = hi0 ^ x3 ^ key1
        x3 = lo0
    return x0, x1, x2, x3


@register_jitable
def normals4(k0, k1, step, node, parameter_set, block, real):
    """The four standard normals of counter ``(step, node, parameter_set, block)`` under key
    ``(k0, k1)``: the noise of state variables ``4 * block … 4 * block + 3``.

    ``real`` is the working dtype's scalar type (``np.float64`` or ``np.float32``; in Numba
    code ``array.dtype.type``): u and Box–Muller are computed in it, as the spec says. Numba
    compiles it as is (its ``math`` functions keep float32 in float32); run as plain Python,
    each function is evaluated in float64 and rounded to ``real``.
    """
    words = philox4x32_10(step, node, parameter_set, block, k0, k1)
    half = real(0.5)
    scale = real(_TWO_TO_MINUS_32)
    two_pi = real(_TWO_PI)
    minus_two = real(-2.0)
    u0 = (real(words[0]) + half) * scale
    u1 = (real(words[1]) + half) * scale
    u2 = (real(words[2]) + half) * scale
    u3 = (real(words[3]) + half) * scale
    radius0 = real(math.sqrt(minus_two * real(math.log(u0))))
    radius2 = real(math.sqrt(minus_two * real(math.log(u2))))
    angle1 = two_pi * u1
    angle3 = two_pi * u3
    return (radius0 * real(math.cos(angle1)), radius0 * real(math.sin(angle1)),
            radius2 * real(math.cos(angle3)), radius2 * real(math.sin(angle3)))


# ----------------------------------------------------------------------------- any array namespace


def _multiply_high_low(constant: int, x):
    """``(hi, lo)``: the high and low uint32 words of the 64-bit product ``constant * x`` for a
    uint32 ``constant`` and a uint32 array ``x``, in uint32 arithmetic only (16-bit halves;
    no partial sum exceeds 2³² - 1, so nothing wraps but the low word's own product)."""
    c_lo, c_hi = constant & _LOW_16, constant >> 16
    x_lo, x_hi = x & _LOW_16, x >> 16
    lo_lo = x_lo * c_lo
    lo_hi = x_lo * c_hi
    hi_lo = x_hi * c_lo
    carry = (lo_lo >> 16) + (lo_hi & _LOW_16) + (hi_lo & _LOW_16)
    hi = x_hi * c_hi + (lo_hi >> 16) + (hi_lo >> 16) + (carry >> 16)
    return hi, x * _word(x, constant)


def _word(like, value: int):
    """``value`` as a uint32 scalar of ``like``'s dtype: Python integers above 2³¹ - 1 would
    not fit JAX's 32-bit weak integer type."""
    return like.dtype.type(value)


def philox4x32_10_words(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10, vectorised: uint32 arrays (NumPy or ``jax.numpy``, at least 1-d for
    NumPy, broadcasting against each other) → the four uint32 output words.

    Written with operators only (wrapping uint32 ``*``, ``+``, ``^``, ``>>``, ``&``), so the
    same source runs on NumPy and, traced, inside ``jax.jit``/``jax.vmap``.
    """
    for round_index in range(PHILOX_ROUNDS):
        if round_index:
            k0 = k0 + _word(k0, PHILOX_W0)
            k1 = k1 + _word(k1, PHILOX_W1)
        hi0, lo0 = _multiply_high_low(PHILOX_M0, c0)
        hi1, lo1 = _multiply_high_low(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def philox_normals(xp, key, step, node, parameter_set, block, dtype):
    """The four standard normals ``(z0, z1, z2, z3)`` of the spec for each counter
    ``(step, node, parameter_set, block)``: the noise of state variables ``4 * block + m``.

    Args:
        xp: the array namespace, ``numpy`` or ``jax.numpy``.
        key: ``(k0, k1)`` uint32 arrays (scalars) of the seed (:func:`seed_key`).
        step, node, parameter_set, block: uint32 arrays that broadcast against each other
            (for NumPy at least 1-d, so that wrapping arithmetic never meets a scalar).
        dtype: the working dtype (float64 or float32): u and Box–Muller are computed in it.

    Returns four arrays of ``dtype`` of the broadcast shape.
    """
    words = philox4x32_10_words(step, node, parameter_set, block, *key)
    u0, u1, u2, u3 = ((w.astype(dtype) + 0.5) * _TWO_TO_MINUS_32 for w in words)
    radius0 = xp.sqrt(-2.0 * xp.log(u0))
    radius2 = xp.sqrt(-2.0 * xp.log(u2))
    angle1 = _TWO_PI * u1
    angle3 = _TWO_PI * u3
    return (radius0 * xp.cos(angle1), radius0 * xp.sin(angle1),
            radius2 * xp.cos(angle3), radius2 * xp.sin(angle3))


# ----------------------------------------------------------------------------- NumPy reference


def _as_words(name: str, value, shape) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iu" or np.any(array < 0) or np.any(array > 0xFFFFFFFF):
        raise ValueError(f"{name} must be integers in [0, 2**32), but got {value!r}")
    return np.broadcast_to(array.astype(np.uint32), shape).reshape(-1)


def philox4x32_10_numpy(counter, key) -> np.ndarray:
    """Vectorised Philox4x32-10: ``counter`` (..., 4) and ``key`` (..., 2) integer arrays
    (values below 2³², broadcast against each other) → (..., 4) uint32 outputs."""
    counter, key = np.asarray(counter), np.asarray(key)
    if counter.shape[-1:] != (4,) or key.shape[-1:] != (2,):
        raise ValueError(f"counter must have shape (..., 4) and key (..., 2), but got "
                         f"{counter.shape} and {key.shape}")
    shape = np.broadcast_shapes(counter.shape[:-1], key.shape[:-1])
    words = philox4x32_10_words(*(_as_words("counter", counter[..., m], shape) for m in range(4)),
                                *(_as_words("key", key[..., m], shape) for m in range(2)))
    return np.stack(words, axis=-1).reshape(shape + (4,))


def standard_normal(seed: int, step, node, parameter_set, variable,
                    dtype=np.float64) -> np.ndarray:
    """The noise sample z for each ``(step, node, parameter_set, variable)``, computed in
    ``dtype`` (float64 or float32): the NumPy reference of the spec in this module's docstring.
    Index arguments are integer arrays (or scalars) that broadcast against each other."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, but got {dtype}")
    variable = np.asarray(variable)
    shape = np.broadcast_shapes(*(np.shape(a) for a in (step, node, parameter_set, variable)))
    counter = [_as_words(name, value, shape) for name, value in
               (("step", step), ("node", node), ("parameter_set", parameter_set),
                ("variable // 4", variable // 4))]
    key = tuple(np.array([word], dtype=np.uint32) for word in seed_key(seed))
    z = np.stack(philox_normals(np, key, *counter, dtype), axis=-1)
    which = _as_words("variable % 4", variable % 4, shape).astype(np.intp)
    return np.take_along_axis(z, which[:, None], axis=-1).reshape(shape)
