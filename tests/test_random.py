"""Philox4x32-10 and the noise normals of neuralmass.random (the spec every backend shares):
the Numba scalar, NumPy and ``jax.numpy`` implementations against Random123's known answers and
against the spec written out in plain Python, per dtype."""

import math

import numba
import numpy as np
import pytest

from neuralmass import random as nmr

# Random123's kat_vectors for philox4x32_10: (counter, key, expected output)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_philox_known_answers(counter, key, expected):
    assert tuple(int(x) for x in nmr.philox4x32_10(*counter, *key)) == expected
    assert tuple(nmr.philox4x32_10_numpy(counter, key).tolist()) == expected


@numba.njit
def _philox_jitted(c0, c1, c2, c3, k0, k1):
    return nmr.philox4x32_10(c0, c1, c2, c3, k0, k1)


@numba.njit
def _normals_jitted(k0, k1, step, node, parameter_set, block, like):
    return nmr.normals4(k0, k1, step, node, parameter_set, block, like.dtype.type)


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_philox_compiles_unchanged_under_numba(counter, key, expected):
    assert tuple(int(x) for x in _philox_jitted(*counter, *key)) == expected


def test_numpy_reference_broadcasts():
    counters = np.array([kat[0] for kat in KAT])
    keys = np.array([kat[1] for kat in KAT])
    out = nmr.philox4x32_10_numpy(counters, keys)
    assert out.dtype == np.uint32
    assert out.tolist() == [list(kat[2]) for kat in KAT]


def test_normals_follow_the_spec():
    seed = 0x1234_5678_9ABC
    k0, k1 = nmr.seed_key(seed)
    assert (k0, k1) == (0x5678_9ABC, 0x1234)
    step, node, set_index = 17, 3, 1000
    for block in range(2):
        words = nmr.philox4x32_10(step, node, set_index, block, k0, k1)
        u = [(float(w) + 0.5) * 2.0**-32 for w in words]
        expected = [math.sqrt(-2 * math.log(u[0])) * math.cos(2 * math.pi * u[1]),
                    math.sqrt(-2 * math.log(u[0])) * math.sin(2 * math.pi * u[1]),
                    math.sqrt(-2 * math.log(u[2])) * math.cos(2 * math.pi * u[3]),
                    math.sqrt(-2 * math.log(u[2])) * math.sin(2 * math.pi * u[3])]
        variables = np.arange(4 * block, 4 * block + 4)
        np.testing.assert_allclose(nmr.standard_normal(seed, step, node, set_index, variables),
                                   expected, rtol=1e-13)
        scalar = nmr.normals4(k0, k1, step, node, set_index, block, np.float64)
        assert scalar == pytest.approx(expected, rel=1e-13)
        np.testing.assert_array_equal(
            _normals_jitted(k0, k1, step, node, set_index, block, np.zeros(1)), scalar)



def test_philox_known_answers_in_jax_uint32(jax_x32):
    """The array-generic rounds, traced under ``jax.jit`` in JAX's 32-bit mode (no uint64)."""
    import jax
    import jax.numpy as jnp

    counters = jnp.array([kat[0] for kat in KAT], dtype=jnp.uint32).T
    keys = jnp.array([kat[1] for kat in KAT], dtype=jnp.uint32).T
    words = jax.jit(nmr.philox4x32_10_words)(*counters, *keys)
    assert all(w.dtype == jnp.uint32 for w in words)
    assert np.stack(words, axis=-1).tolist() == [list(kat[2]) for kat in KAT]


def _float32_spec(seed, step, node, set_index, block):
    """The float32 spec written out on NumPy float32 scalars, with log, cos and sin taken in
    float64 and rounded once (correctly rounded to within an ulp)."""
    words = nmr.philox4x32_10(step, node, set_index, block, *nmr.seed_key(seed))
    f32 = np.float32
    u = [(f32(w) + f32(0.5)) * f32(2.0**-32) for w in words]
    radius = [f32(math.sqrt(f32(-2.0) * f32(math.log(u[m])))) for m in (0, 2)]
    angle = [f32(2 * math.pi) * u[m] for m in (1, 3)]
    return [radius[m // 2] * f32((math.cos, math.sin)[m % 2](angle[m // 2])) for m in range(4)]


#: float32 backends may differ by a few float32 ulps of the radius (|z| < 7): each has its own
#: log, cos and sin (numpy's SIMD loops, XLA's, Numba's LLVM intrinsics, CUDA's logf).
FLOAT32_ATOL = 4 * np.finfo(np.float32).eps * 7


def test_float32_normals_follow_the_spec(jax_x32):
    import jax.numpy as jnp

    seed, step, set_index = 2**33 + 99, 5, 12
    nodes = np.arange(64)
    expected = np.array([[_float32_spec(seed, step, i, set_index, b) for b in range(2)]
                         for i in nodes], dtype=np.float32)  # (node, block, m)
    variables = np.arange(8)
    reference = nmr.standard_normal(seed, step, nodes[:, None], set_index, variables[None, :],
                                    dtype=np.float32)
    assert reference.dtype == np.float32
    np.testing.assert_allclose(reference, expected.reshape(64, 8), rtol=0, atol=FLOAT32_ATOL)
    key = tuple(jnp.uint32(k) for k in nmr.seed_key(seed))
    z = nmr.philox_normals(jnp, key, jnp.uint32(step), jnp.arange(64, dtype=jnp.uint32)[:, None],
                           jnp.uint32(set_index), jnp.arange(2, dtype=jnp.uint32)[None, :],
                           jnp.float32)
    assert z[0].dtype == jnp.float32
    np.testing.assert_allclose(np.stack(z, axis=-1).reshape(64, 8), expected.reshape(64, 8),
                               rtol=0, atol=FLOAT32_ATOL)
    for i in nodes[:8]:
        for b in range(2):
            jitted = _normals_jitted(*nmr.seed_key(seed), step, i, set_index, b,
                                     np.zeros(1, np.float32))
            np.testing.assert_allclose(jitted, expected[i, b], rtol=0, atol=FLOAT32_ATOL)


def test_float64_normals_in_jax_match_numpy(jax_x64):
    import jax.numpy as jnp

    seed, steps = 31, np.arange(50)
    key = tuple(jnp.uint32(k) for k in nmr.seed_key(seed))
    z = nmr.philox_normals(jnp, key, jnp.asarray(steps, jnp.uint32), jnp.uint32(4),
                           jnp.uint32(2), jnp.uint32(1), jnp.float64)
    expected = [nmr.standard_normal(seed, steps, 4, 2, 4 + m) for m in range(4)]
    np.testing.assert_allclose(np.stack(z), np.stack(expected), rtol=1e-14, atol=1e-15)

def test_normals_are_standard_normal():
    steps = np.arange(400)[:, None, None, None]
    nodes = np.arange(5)[None, :, None, None]
    sets = np.arange(25)[None, None, :, None]
    variables = np.arange(6)[None, None, None, :]
    z = nmr.standard_normal(7, steps, nodes, sets, variables).ravel()  # 300,000 samples
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z**3)) < 5 * math.sqrt(15 / n)  # skewness
    assert abs(np.mean(z**4) - 3) < 5 * math.sqrt(96 / n)  # kurtosis
    # the fraction beyond 1, 2 sigma (the tails Box-Muller must get right)
    for k, expected in ((1, 0.31731050786), (2, 0.04550026390)):
        share = np.mean(np.abs(z) > k)
        assert abs(share - expected) < 5 * math.sqrt(expected * (1 - expected) / n)
    # neighbouring variables, nodes, sets and steps are uncorrelated
    grid = z.reshape(400, 5, 25, 6)
    for axis in range(4):
        a = np.take(grid, range(grid.shape[axis] - 1), axis=axis).ravel()
        b = np.take(grid, range(1, grid.shape[axis]), axis=axis).ravel()
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(a.size)


def test_seeds_differ():
    a = nmr.standard_normal(0, np.arange(100), 0, 0, 0)
    b = nmr.standard_normal(1, np.arange(100), 0, 0, 0)
    c = nmr.standard_normal(1 << 32, np.arange(100), 0, 0, 0)
    assert not np.allclose(a, b) and not np.allclose(a, c) and not np.allclose(b, c)
