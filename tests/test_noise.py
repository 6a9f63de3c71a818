"""The same noise on every backend: JAX, Numba and the emulated CUDA kernel draw the Philox
normals that :mod:`neuralmass.random` specifies, in the working dtype, so that a stochastic run
with a seed gives the same numbers on each.

1. Known answers per dtype: with zero drift, Euler step k adds exactly σ z(seed, k, node, set,
   variable); every backend's samples are compared with the NumPy reference
   :func:`neuralmass.random.standard_normal` computed in the run's dtype. The float32 case
   includes a sample whose float32 uniform rounds to 1 (so z = 0 exactly) where float64 gives
   |z| ≈ 1.5e-4: it tells "Box–Muller in the working dtype" from "float64, then cast".
2. Stochastic runs of every bundled model, Euler–Maruyama and stochastic Heun, 1,000 steps of
   an 8-region connectome with delays and 3 parameter sets, float64: Numba and the emulated
   CUDA kernel against JAX to 1e-9 of each variable's largest magnitude.

Run with ``pytest -s tests/test_noise.py`` to print the measured agreement.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    available_backends,
    max_relative_error_per_variable,
    noise_only_model,
    stable_state,
    uncoupled_connectivity,
)

import neuralmass as nm
from neuralmass import random as nmr
from neuralmass.errors import BackendUnavailableError
from neuralmass.plan import make_plan

BACKENDS = ["jax", *(["numba"] if "numba" in available_backends() else []), "cuda"]


def run_backend(backend: str, plan):
    """``(states, exposures)`` of ``plan`` on ``backend`` ("cuda": the emulated kernel, with
    partial blocks, several batches and chunks; "cuda-gpu": the real one, skipped without CuPy
    and a GPU)."""
    if backend == "cuda-gpu":
        from neuralmass.backends import cuda
        from neuralmass.backends.cuda._cupy import require_cupy

        try:
            require_cupy()
        except BackendUnavailableError as error:
            pytest.skip(str(error))
        return cuda.run(plan, block=3, batch_sets=2, chunk_samples=7)
    if backend == "cuda":
        from neuralmass.backends import cuda

        return cuda.emulate(plan, block=3, batch_sets=2, chunk_samples=7)
    if backend == "numba":
        from neuralmass.backends import numba as numba_backend

        return numba_backend.run(plan)
    from neuralmass.backends import jax as jax_backend

    return jax_backend.run(plan)


# =========================================================================== known answers

#: A seed above 2³² (both key words) for which the run below meets counter (step 13, node 2,
#: set 6, block 0) whose word x2 ≥ 2³² - 128: in float32 u2 rounds to 1.0, so z2 = z3 = 0.
SEED = 2**33 + 5470
N_STEPS, N_NODES, N_SETS, N_VARIABLES = 20, 3, 7, 5
DIFFUSION, DT = 1.0, 0.125  # σ = sqrt(2 D dt) = 0.5 exactly: σ z is exact in either dtype


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    """The working dtype; JAX runs float32 in its default 32-bit mode."""
    if request.param == "float32":
        request.getfixturevalue("jax_x32")
    return request.param


@pytest.mark.parametrize("backend", [*BACKENDS, pytest.param("cuda-gpu", marks=pytest.mark.gpu)])
def test_noise_samples_are_the_specified_philox_normals(backend, dtype):
    """Five variables cover two Philox blocks; 7 sets over several batches and tiles check
    that the set index is global. Tolerance: float64 1e-12 (differencing float64 states);
    float32 eps32 × (2 max|x| + 28 σ): the differences of float32 states round to an ulp of
    |x|, and each backend's own log, cos, sin (CUDA's logf, cosf, sinf on a GPU) differ by a
    few float32 ulps of z (|z| < 7)."""
    plan = make_plan(noise_only_model(), uncoupled_connectivity(N_NODES),
                     {"zero": np.zeros(N_SETS)}, dt=DT, n_steps=N_STEPS, integrator="euler",
                     noise=DIFFUSION, seed=SEED, initial_state=np.zeros((N_VARIABLES, N_NODES)),
                     dtype=dtype)
    states, _ = run_backend(backend, plan)
    assert states.dtype == np.dtype(dtype)
    states = np.asarray(states, dtype=np.float64)
    steps = np.diff(np.concatenate([np.zeros((1,) + states.shape[1:]), states]), axis=0)
    k, v, i, p = np.meshgrid(np.arange(N_STEPS), np.arange(N_VARIABLES), np.arange(N_NODES),
                             np.arange(N_SETS), indexing="ij")
    sigma = np.sqrt(2 * DIFFUSION * DT)
    expected = sigma * nmr.standard_normal(SEED, k, i, p, v, dtype=dtype)
    if dtype == "float64":
        atol = 1e-12
    else:
        atol = np.finfo(np.float32).eps * (2 * np.abs(states).max() + 28 * sigma)
    np.testing.assert_allclose(steps, expected, rtol=0, atol=atol)
    if dtype == "float32":
        # the rule is "in the working dtype", not "float64, then cast"
        in_float64 = sigma * nmr.standard_normal(SEED, 13, 2, 6, [2, 3])
        assert np.all(np.abs(in_float64) > 5e-5)
        np.testing.assert_array_equal(steps[13, 2:4, 2, 6], 0.0)


def test_float32_uniform_rounds_to_one_at_the_seed_used_above():
    """The premise of the float32 check: x2 of that counter is ≥ 2³² - 128."""
    words = nmr.philox4x32_10_numpy((13, 2, 6, 0), nmr.seed_key(SEED))
    assert int(words[2]) >= 2**32 - 128
    assert np.float32((np.float32(words[2]) + np.float32(0.5)) * np.float32(2**-32)) == 1.0


# =========================================================================== stochastic runs

RUN_STEPS, RUN_SETS = 1000, 3
#: Per model: a coupled, non-chaotic regime (3 parameter sets), dt and the diffusion D
#: (large enough to move the run by far more than the tolerance, small enough to stay there).
REGIMES = {
    "epileptor": dict(params={"Ks": -0.2, "Kf": 0.1, "x0": np.linspace(-1.6, -2.0, RUN_SETS)},
                      dt=0.05, noise=1e-4),
    "generic2d": dict(params={"a": np.linspace(-2.0, -1.0, RUN_SETS), "global_coupling": 0.05},
                      dt=0.1, noise=1e-3),
    "kuramoto": dict(params={"global_coupling": np.linspace(0.0, 0.5, RUN_SETS)},
                     dt=0.1, noise=1e-3),
    "montbrio": dict(params={"eta": np.linspace(-5.0, -4.0, RUN_SETS),
                             "cv": np.linspace(0.0, 0.1, RUN_SETS)}, dt=0.1, noise=1e-3),
    "rwongwang": dict(params={"G": np.linspace(0.5, 2.0, RUN_SETS), "I_o": 0.45, "W_i": 0.5},
                      dt=0.1, noise=1e-4),
}
RUN_TOLERANCE = 1e-9  # float64; rounding only (measured ~1e-13, see MEASURED with -s)
MEASURED: dict[tuple[str, str, str], float] = {}


def small_connectome() -> nm.Connectivity:
    """8 regions, dense positive weights (max 1), tracts 5–40 mm at 3 mm/ms: delays of
    17–133 steps at dt = 0.1 ms."""
    rng = np.random.default_rng(8)
    weights = rng.uniform(0.0, 1.0, (8, 8))
    np.fill_diagonal(weights, 0.0)
    lengths = rng.uniform(5.0, 40.0, (8, 8))
    return nm.Connectivity(weights / weights.max(), (lengths + lengths.T) / 2, speed=3.0)


def stochastic_plan(model: str, integrator: str, seed: int = 42):
    regime = REGIMES[model]
    connectivity = small_connectome()
    return make_plan(nm.load_model(model), connectivity, regime["params"], dt=regime["dt"],
                     n_steps=RUN_STEPS, integrator=integrator, noise=regime["noise"], seed=seed,
                     initial_state=stable_state(model, connectivity.n_regions,
                                                np.random.default_rng(3)))


@pytest.fixture(scope="module", autouse=True)
def agreement_table():
    """Print the measured agreement after the module (visible with ``-s``)."""
    yield
    if MEASURED:
        lines = ["", f"stochastic runs against JAX ({RUN_STEPS} steps, float64): max relative "
                     "error per state variable",
                 f"{'model':<11} {'integrator':<10} {'backend':<8} max rel. error"]
        lines += [f"{m:<11} {i:<10} {b:<8} {e:.2e}" for (m, i, b), e in sorted(MEASURED.items())]
        print("\n".join(lines))


@pytest.mark.parametrize("integrator", ["euler", "heun"])
@pytest.mark.parametrize("model", sorted(REGIMES))
def test_stochastic_run_is_the_same_on_every_backend(model, integrator):
    plan = stochastic_plan(model, integrator)
    reference, reference_exposures = run_backend("jax", plan)
    assert np.isfinite(reference).all()
    # the noise matters: another seed moves the run by far more than the tolerance
    other, _ = run_backend("jax", stochastic_plan(model, integrator, seed=43))
    assert max_relative_error_per_variable(other, reference) > 1e4 * RUN_TOLERANCE
    for backend in BACKENDS[1:]:
        states, exposures = run_backend(backend, plan)
        error = max(max_relative_error_per_variable(states, reference),
                    max_relative_error_per_variable(exposures, reference_exposures))
        MEASURED[(model, integrator, backend)] = error
        assert error <= RUN_TOLERANCE, f"{backend}: max relative error {error:.3g}"


# =========================================================================== JAX: still JAX


def test_gradient_and_jit_through_a_stochastic_run(jax_x64):
    """The Philox draw is traceable and independent of the parameters: jax.grad of a stochastic
    run matches the central difference of the same-seed runs, and jax.jit of the run gives the
    eager run's numbers. Tolerance 1e-4 relative: h = 1e-5, truncation ~h² and rounding ~ε/h
    (measured ~1e-9); a derivative through the noise or a missing term would be O(1) off."""
    import jax
    import jax.numpy as jnp

    connectivity = small_connectome()
    state = stable_state("montbrio", connectivity.n_regions, np.random.default_rng(3))

    def loss(global_coupling):
        res = nm.simulate("montbrio", connectivity, {"global_coupling": global_coupling,
                                                     "cv": 0.3},
                          backend="jax", n_steps=200, integrator="heun", noise=1e-3, seed=7,
                          initial_state=state)
        return jnp.mean(res.data[-50:, 0])

    g, h = 0.2, 1e-5
    derivative = jax.grad(loss)(g)
    central = (loss(g + h) - loss(g - h)) / (2 * h)
    assert abs(float(central)) > 1e-4
    assert float(derivative) == pytest.approx(float(central), rel=1e-4)
    assert float(jax.jit(loss)(g)) == pytest.approx(float(loss(g)), rel=1e-13)


def test_seed_may_be_traced(jax_x64):
    """``make_simulator``'s seed may be a traced integer (e.g. ``jax.vmap`` over seeds): the
    same numbers as the Python seed, its low and high words included."""
    import jax
    import jax.numpy as jnp

    from neuralmass.backends.jax import make_simulator

    connectivity = uncoupled_connectivity(N_NODES)
    simulator = make_simulator(noise_only_model(), connectivity, dt=DT, n_steps=4,
                               integrator="euler", noise=DIFFUSION)
    state = np.zeros((N_VARIABLES, N_NODES))
    for seed in (5, 2**33 + 5):
        eager, _ = simulator({}, state, seed=seed)
        traced, _ = jax.jit(lambda s: simulator({}, state, seed=s))(jnp.int64(seed))
        np.testing.assert_array_equal(np.asarray(traced), np.asarray(eager))
    seeds = jnp.arange(3, dtype=jnp.int64)
    batched, _ = jax.vmap(lambda s: simulator({}, state, seed=s))(seeds)
    for seed in range(3):
        np.testing.assert_array_equal(np.asarray(batched[seed]),
                                      np.asarray(simulator({}, state, seed=seed)[0]))
