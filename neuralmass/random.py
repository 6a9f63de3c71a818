"""Counter-based random numbers: Philox4x32-10 and the standard normals of the noise.

Every backend that draws noise (Numba, CUDA) computes the same numbers from this spec, so a
seed gives the same run everywhere, in any order, on any number of threads.

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
- u_m = (x_m + 0.5) × 2⁻³², computed in float64 (so 0 < u_m < 1);
- Box–Muller: z0 = sqrt(-2 ln u0) cos(2π u1), z1 = sqrt(-2 ln u0) sin(2π u1),
  z2 = sqrt(-2 ln u2) cos(2π u3), z3 = sqrt(-2 ln u2) sin(2π u3);
- the sample is z_{v % 4}, computed in float64 and then cast to the working dtype.

:func:`philox4x32_10` and :func:`normals4` are scalar functions that Numba compiles unchanged
(they are ``register_jitable``: plain Python, and callable from ``@njit`` code);
:func:`philox4x32_10_numpy` and :func:`standard_normal` are the vectorised NumPy reference that
other implementations are tested against.
"""

from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

__all__ = [
    "philox4x32_10",
    "philox4x32_10_numpy",
    "normals4",
    "standard_normal",
    "seed_key",
]

# Written as NumPy uint64 scalars so that the same source is exact in Python and in Numba
# (a 32 x 32 -> 64-bit product never overflows uint64).
_MULTIPLIER_0 = np.uint64(0xD2511F53)
_MULTIPLIER_1 = np.uint64(0xCD9E8D57)
_WEYL_0 = np.uint64(0x9E3779B9)
_WEYL_1 = np.uint64(0xBB67AE85)
_LOW_32 = np.uint64(0xFFFFFFFF)
_SHIFT_32 = np.uint64(32)
_TWO_PI = 2.0 * math.pi
_TWO_TO_MINUS_32 = 2.0**-32
_ROUNDS = 10


def seed_key(seed: int) -> tuple[int, int]:
    """The Philox key ``(k0, k1)`` of a non-negative integer seed: its low and high words."""
    seed = int(seed)
    return seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF


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
    for round_index in range(_ROUNDS):
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
def normals4(k0, k1, step, node, parameter_set, block):
    """The four standard normals (float64) of counter ``(step, node, parameter_set, block)``
    under key ``(k0, k1)``: the noise of state variables ``4 * block … 4 * block + 3``.

    Numba compiles it as is.
    """
    x0, x1, x2, x3 = philox4x32_10(step, node, parameter_set, block, k0, k1)
    u0 = (np.float64(x0) + 0.5) * _TWO_TO_MINUS_32
    u1 = (np.float64(x1) + 0.5) * _TWO_TO_MINUS_32
    u2 = (np.float64(x2) + 0.5) * _TWO_TO_MINUS_32
    u3 = (np.float64(x3) + 0.5) * _TWO_TO_MINUS_32
    radius0 = math.sqrt(-2.0 * math.log(u0))
    radius2 = math.sqrt(-2.0 * math.log(u2))
    return (radius0 * math.cos(_TWO_PI * u1), radius0 * math.sin(_TWO_PI * u1),
            radius2 * math.cos(_TWO_PI * u3), radius2 * math.sin(_TWO_PI * u3))


def philox4x32_10_numpy(counter, key) -> np.ndarray:
    """Vectorised Philox4x32-10: ``counter`` (..., 4) and ``key`` (..., 2) integer arrays
    (values below 2³², broadcast against each other) → (..., 4) uint32 outputs."""
    counter = np.asarray(counter, dtype=np.uint64)
    key = np.asarray(key, dtype=np.uint64)
    if counter.shape[-1:] != (4,) or key.shape[-1:] != (2,):
        raise ValueError(f"counter must have shape (..., 4) and key (..., 2), but got "
                         f"{counter.shape} and {key.shape}")
    shape = np.broadcast_shapes(counter.shape[:-1], key.shape[:-1])
    x = [np.broadcast_to(counter[..., m], shape).copy() for m in range(4)]
    key0 = np.broadcast_to(key[..., 0], shape).copy()
    key1 = np.broadcast_to(key[..., 1], shape).copy()
    for round_index in range(_ROUNDS):
        if round_index:
            key0 = (key0 + _WEYL_0) & _LOW_32
            key1 = (key1 + _WEYL_1) & _LOW_32
        product0 = _MULTIPLIER_0 * x[0]
        product1 = _MULTIPLIER_1 * x[2]
        x = [(product1 >> _SHIFT_32) ^ x[1] ^ key0, product1 & _LOW_32,
             (product0 >> _SHIFT_32) ^ x[3] ^ key1, product0 & _LOW_32]
    return np.stack(x, axis=-1).astype(np.uint32)


def standard_normal(seed: int, step, node, parameter_set, variable) -> np.ndarray:
    """The noise sample z (float64) for each ``(step, node, parameter_set, variable)``: the
    NumPy reference of the spec in this module's docstring. Index arguments are integer
    arrays (or scalars) that broadcast against each other."""
    step, node, parameter_set, variable = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.int64) for a in (step, node, parameter_set, variable)))
    if any(np.any(a < 0) or np.any(a > 0xFFFFFFFF) for a in (step, node, parameter_set)):
        raise ValueError("step, node and parameter_set must lie in [0, 2**32)")
    k0, k1 = seed_key(seed)
    counter = np.stack([step, node, parameter_set, variable // 4], axis=-1)
    words = philox4x32_10_numpy(counter, np.array([k0, k1])).astype(np.float64)
    u = (words + 0.5) * _TWO_TO_MINUS_32
    radius = np.sqrt(-2.0 * np.log(u[..., [0, 0, 2, 2]]))
    angle = _TWO_PI * u[..., [1, 1, 3, 3]]
    z = radius * np.where(np.arange(4) % 2 == 0, np.cos(angle), np.sin(angle))
    return np.take_along_axis(z, (variable % 4)[..., None], axis=-1)[..., 0]
