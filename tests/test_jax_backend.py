"""The JAX backend as JAX: grad, jit and vmap through ``simulate``, and ``make_simulator``.

Float64 tests turn JAX's 64-bit mode on for their duration only (the ``jax_x64`` fixture of
``conftest.py``; ``jax_x32`` for the 32-bit tests); neuralmass itself never flips it.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

jax = pytest.importorskip("jax")
eqx = pytest.importorskip("equinox")

import jax.numpy as jnp  # noqa: E402
from helpers import (  # noqa: E402
    STABLE_STATES,
    max_relative_error,
    max_relative_error_per_variable,
    stable_state,
)

import neuralmass as nm  # noqa: E402
from neuralmass.backends.jax import Simulator, make_simulator  # noqa: E402
from neuralmass.errors import ParameterError  # noqa: E402


@functools.cache
def small_connectivity(n: int = 6) -> nm.Connectivity:
    rng = np.random.default_rng(3)
    weights = rng.uniform(0.1, 1.0, (n, n)) * (rng.uniform(size=(n, n)) < 0.6)
    lengths = rng.uniform(0.5, 6.0, (n, n))  # delays of 2 to 20 steps at 3 mm/ms, dt 0.1
    return nm.Connectivity(weights / weights.max(), lengths, speed=3.0)


def mpr_state(n_regions: int = 6) -> np.ndarray:
    return stable_state("montbrio", n_regions, np.random.default_rng(0))


# =========================================================================== grad


def test_grad_matches_central_difference(jax_x64):
    """d/dθ of mean(r over the last 100 of 400 steps) on the bundled 76-region connectome,
    for θ = global_coupling and θ = eta, against (L(θ+h) - L(θ-h)) / 2h with h = 1e-5.

    The central difference's truncation error is ~h² L''' ≈ 1e-10 relative and its
    rounding error ~ε|L|/h ≈ 1e-12 (measured agreement 4e-11 at h = 1e-5, 3e-9 at 1e-3),
    so 1e-4 relative is a loose, robust bound that still catches any wrong derivative
    (a missing coupling or delay term is an O(1) error)."""
    conn = nm.Connectivity.default()
    x0 = stable_state("montbrio", conn.n_regions, np.random.default_rng(0))

    def loss(global_coupling, eta):
        res = nm.simulate("montbrio", conn, {"global_coupling": global_coupling, "eta": eta,
                                             "cv": 0.3},
                          backend="jax", n_steps=400, initial_state=x0)
        return jnp.mean(res.data[-100:, 0])

    g, eta, h = 0.1, -5.0, 1e-5
    d_g, d_eta = jax.grad(loss, argnums=(0, 1))(g, eta)
    fd_g = (loss(g + h, eta) - loss(g - h, eta)) / (2 * h)
    fd_eta = (loss(g, eta + h) - loss(g, eta - h)) / (2 * h)
    assert abs(float(fd_g)) > 1e-3 and abs(float(fd_eta)) > 1e-3  # non-trivial derivatives
    assert float(d_g) == pytest.approx(float(fd_g), rel=1e-4)
    assert float(d_eta) == pytest.approx(float(fd_eta), rel=1e-4)


# =========================================================================== against Numba

_CASES = (
    [(model, "heun", 1e-4, "raw") for model in STABLE_STATES]
    + [(model, integrator, noise, "raw") for model in ("montbrio", "kuramoto")
       for integrator, noise in (("euler", None), ("heun", None), ("rk4", None),
                                 ("euler", 1e-4))]
    + [(model, "heun", 1e-4, monitor) for model in ("montbrio", "epileptor")
       for monitor in ("subsample:0.3", "temporal_average:0.3", "temporal_average:0.5")]
)


@pytest.mark.parametrize(("model", "integrator", "noise", "monitor"), _CASES)
def test_sets_last_layout_equals_numba(jax_x64, model, integrator, noise, monitor):
    """Every bundled model, integrator and monitor, float64, against the Numba backend (an
    independent loop over the same scheme): three sets at two speeds (a batch reading a
    delay per set and edge), delays of 2 to 40 steps, the Philox noise. The 41 steps cover
    blocks of whole samples (raw, subsample), samples of several blocks (a 5-step average
    over blocks of 3 steps) and a padded last chunk. Both sum the same terms in different
    orders: the whole trajectories agree to ~1e-15 relative per variable here; 1e-12 leaves
    room for the chaotic models without hiding a wrong delay or noise counter (O(1e-3))."""
    conn = small_connectivity()
    params = {"global_coupling": np.array([0.05, 0.2, 0.1]),
              "global_speed": np.array([3.0, 1.5, 3.0])}
    kwargs = dict(n_steps=41, integrator=integrator, monitors=monitor, noise=noise, seed=7,
                  initial_state=stable_state(model, conn.n_regions, np.random.default_rng(1)))
    res = nm.simulate(model, conn, params, backend="jax", **kwargs)
    ref = nm.simulate(model, conn, params, backend="numba", **kwargs)
    assert res.data.shape == ref.data.shape and res.data.shape[-1] == 3
    assert max_relative_error_per_variable(res.data, ref.data) <= 1e-12
    if ref.exposures.size:
        assert max_relative_error_per_variable(res.exposures, ref.exposures) <= 1e-12
    np.testing.assert_array_equal(res.first_nonfinite_step, ref.first_nonfinite_step)


@pytest.mark.parametrize("speeds", [
    (3.0, 3.0, 3.0, 3.0),  # one group (G = 1)
    (3.0, 1.5, 2.0, 6.0),  # every set its own group (G = P)
    (3.0, 1.5, 3.0, 6.0, 1.5, 3.0),  # groups of 3, 2 and 1 sets: padded to 3, out of order
])
def test_speed_groups_equal_numba(jax_x64, speeds):
    """Sets grouped by speed, padded and reordered, give the caller's sets in the caller's
    order: every set equals the Numba backend's (Montbrió, Heun, the Philox noise, float64;
    the same 1e-12 as above: the backends agree to ~1e-15 here)."""
    conn = small_connectivity()
    params = {"global_coupling": np.linspace(0.05, 0.3, len(speeds)),
              "global_speed": np.array(speeds)}
    kwargs = dict(n_steps=41, noise=1e-4, seed=11, monitors="temporal_average:0.3",
                  initial_state=mpr_state())
    res = nm.simulate("montbrio", conn, params, backend="jax", **kwargs)
    ref = nm.simulate("montbrio", conn, params, backend="numba", **kwargs)
    assert res.data.shape == ref.data.shape and res.data.shape[-1] == len(speeds)
    assert max_relative_error_per_variable(res.data, ref.data) <= 1e-12
    assert max_relative_error_per_variable(res.exposures, ref.exposures) <= 1e-12


def test_speed_groups_layout():
    """G groups of the largest group's size, in increasing speed, each holding its sets in
    the caller's order and padded with its first set; ``kept`` drops the padding and gives
    the caller's sets in increasing order."""
    from neuralmass.backends.jax._simulator import speed_groups

    groups = speed_groups(np.array([1, 0, 1, 2, 0, 1]))
    np.testing.assert_array_equal(groups.lanes, [[1, 4, 1], [0, 2, 5], [3, 3, 3]])
    np.testing.assert_array_equal(groups.rows, [0, 1, 2])
    np.testing.assert_array_equal(groups.counts, [2, 3, 1])
    assert groups.n_lanes == 9
    sets, keep = groups.kept(slice(0, 3), slice(0, 3))
    np.testing.assert_array_equal(sets, np.arange(6))
    np.testing.assert_array_equal(groups.lanes.ravel()[keep], np.arange(6))
    assert groups.batches(9) == [(slice(0, 3), slice(0, 3))]
    assert groups.batches(6) == [(slice(0, 2), slice(0, 3)), (slice(2, 3), slice(0, 3))]
    assert groups.batches(2) == [(slice(0, 1), slice(0, 2)), (slice(1, 2), slice(0, 2)),
                                 (slice(1, 2), slice(2, 3)), (slice(2, 3), slice(0, 2))]
    one = speed_groups(np.zeros(4, int))  # G = 1: the caller's order, nothing to reorder
    assert one.lanes.shape == (1, 4) and one.kept(slice(0, 1), slice(0, 4))[1] is None
    each = speed_groups(np.arange(4))  # G = P
    assert each.lanes.shape == (4, 1) and each.kept(slice(0, 4), slice(0, 1))[1] is None


def test_grad_through_speed_groups(jax_x64):
    """jax.grad of a loss over three sets at two speeds (grouped, padded, reordered) equals
    the gradients of each set run alone (one group of one set) to 1e-12: the same
    arithmetic per set, the grouping only moves it (measured: equal to ~1e-16)."""
    x0, speeds = mpr_state(), np.array([3.0, 1.5, 3.0])
    weights = jnp.array([1.0, 2.0, 3.0])

    def loss(g):
        res = _mpr({"global_coupling": g, "global_speed": speeds, "cv": 0.3},
                   noise=1e-4, seed=2, initial_state=x0)
        return jnp.sum(jnp.mean(res.data[-20:, 0], axis=(0, 1)) * weights)

    def alone(g, p):
        res = _mpr({"global_coupling": g, "global_speed": speeds[p], "cv": 0.3},
                   noise=1e-4, seed=2, initial_state=x0, set_offset=p)
        return jnp.mean(res.data[-20:, 0]) * weights[p]

    couplings = jnp.array([0.1, 0.3, 0.2])
    grouped = jax.jit(jax.grad(loss))(couplings)
    separate = [float(jax.grad(alone)(couplings[p], p)) for p in range(3)]
    assert max_relative_error(grouped, separate) <= 1e-12
    assert len(set(np.round(separate, 6))) == 3  # the sets differ


# =========================================================================== jit and vmap


def _mpr(params, **kwargs):
    kwargs.setdefault("initial_state", mpr_state())
    return nm.simulate("montbrio", small_connectivity(), params, backend="jax", n_steps=100,
                       **kwargs)


def test_jit_through_simulate(jax_x64):
    """A jitted function of the parameter values returns the Result (a pytree) and equals
    the eager run; a second value reuses the compiled function."""

    @jax.jit
    def run(global_coupling, eta):
        return _mpr({"global_coupling": global_coupling, "eta": eta, "cv": 0.3})

    for g, eta in [(0.2, -5.0), (0.4, -4.8)]:
        jitted = run(g, eta)
        assert isinstance(jitted, nm.Result)
        eager = _mpr({"global_coupling": g, "eta": eta, "cv": 0.3})
        assert max_relative_error(jitted.data, eager.data) <= 1e-12
        assert max_relative_error(jitted.exposures, eager.exposures) <= 1e-12
        np.testing.assert_allclose(jitted.params["eta"], [eta])
        np.testing.assert_allclose(jitted.time, eager.time)
    assert run._cache_size() == 1


def test_vmap_through_simulate(jax_x64):
    """vmap over a parameter equals simulate with an array of parameter sets."""
    couplings = jnp.array([0.1, 0.25, 0.4])
    mapped = jax.vmap(lambda g: _mpr({"global_coupling": g, "cv": 0.3}).data[..., 0])(couplings)
    batched = _mpr({"global_coupling": np.asarray(couplings), "cv": 0.3})
    assert mapped.shape == (3, 100, 2, 6)
    for p in range(3):
        assert max_relative_error(mapped[p], batched.data[..., p]) <= 1e-12


def test_traced_float64_needs_x64(jax_x32):
    with pytest.raises(ParameterError, match=r"dtype='float64' under jax tracing needs JAX's "
                                             r"64-bit mode"):
        jax.jit(lambda g: _mpr({"global_coupling": g}).data)(0.1)


def test_traced_float32_without_x64(jax_x32):
    """float32 is traceable in JAX's default mode, and agrees with float64 to ~1e-6."""
    single = jax.jit(lambda g: _mpr({"global_coupling": g}, dtype="float32").data)(0.3)
    assert single.dtype == jnp.float32
    double = _mpr({"global_coupling": 0.3})  # float64, untraced: works without x64
    assert max_relative_error(single, double.data) <= 1e-4
    assert not jax.config.jax_enable_x64  # and leaves JAX's mode as it was


def test_traced_speed_in_simulate_is_an_error(jax_x64):
    with pytest.raises(ParameterError, match=r"global_speed cannot be traced .* use "
                                             r"neuralmass.backends.jax.make_simulator"):
        jax.jit(lambda s: _mpr({"global_speed": s}).data)(3.0)


# =========================================================================== make_simulator


@functools.cache
def _simulator(min_speed: float | None = None) -> Simulator:
    return make_simulator(nm.load_model("montbrio"), small_connectivity(), dt=0.1,
                          n_steps=100, integrator="heun", min_speed=min_speed)


def test_make_simulator_is_an_equinox_module(jax_x64):
    sim = _simulator()
    assert isinstance(sim, eqx.Module)
    leaves = jax.tree_util.tree_leaves(sim)
    assert leaves and all(isinstance(leaf, jax.Array) for leaf in leaves)
    assert jax.tree_util.tree_structure(sim) == jax.tree_util.tree_structure(
        jax.tree_util.tree_map(lambda x: x, sim))
    assert "global_coupling" in sim.parameter_names and "eta" in sim.parameter_names


def test_make_simulator_equals_simulate(jax_x64):
    sim = _simulator()
    params = {"global_coupling": jnp.array([0.2, 0.4]), "cv": 0.3}
    states, exposures = sim(params, mpr_state())
    res = _mpr({"global_coupling": np.array([0.2, 0.4]), "cv": 0.3})
    assert states.shape == res.data.shape == (100, 2, 6, 2)
    assert max_relative_error(states, res.data) <= 1e-12
    assert max_relative_error(exposures, res.exposures) <= 1e-12
    # with an explicit history
    horizon = sim.max_delay + 1
    history = np.stack([mpr_state() * (1 + 0.01 * k) for k in range(horizon)])
    states, _ = eqx.filter_jit(sim)({"global_coupling": 0.3}, history[-1], history)
    res = _mpr({"global_coupling": 0.3}, initial_history=history, initial_state=history[-1])
    assert max_relative_error(states, res.data) <= 1e-12


def test_grad_through_make_simulator(jax_x64):
    sim = _simulator()

    def loss(g):
        states, _ = sim({"global_coupling": g, "cv": 0.3}, mpr_state())
        return jnp.mean(states[-20:, 0])

    def loss_simulate(g):
        return jnp.mean(_mpr({"global_coupling": g, "cv": 0.3}).data[-20:, 0])

    assert float(jax.grad(loss)(0.3)) == pytest.approx(float(jax.grad(loss_simulate)(0.3)),
                                                        rel=1e-10)


def test_traced_global_speed_with_min_speed(jax_x64):
    """make_simulator(min_speed=1.5) holds the history for speeds ≥ 1.5 mm/ms; a jitted
    function of the speed then equals simulate at that (concrete) speed."""
    sim = _simulator(min_speed=1.5)
    x0 = mpr_state()
    run = jax.jit(lambda s: sim({"global_speed": s, "global_coupling": 0.3, "cv": 0.3}, x0)[0])
    for speed in (1.5, 2.0, 3.0):
        reference = _mpr({"global_speed": speed, "global_coupling": 0.3, "cv": 0.3})
        assert max_relative_error(run(speed), reference.data) <= 1e-12
    assert max_relative_error(run(1.5), run(3.0)) > 1e-4  # the speed matters
    with pytest.raises(Exception, match="delays longer than the history"):
        jax.block_until_ready(run(1.0))
    conn = small_connectivity()
    longest = int(conn.edge_delay_steps(0.1, 1.0).max())
    assert sim.max_delay == int(conn.edge_delay_steps(0.1, 1.5).max()) < longest
    with pytest.raises(ParameterError, match=rf"global_speed 1 mm/ms gives delays of up to "
                                             rf"{longest} steps, longer than the history this "
                                             rf"simulator was built for \({sim.max_delay}\)"):
        sim({"global_speed": 1.0}, x0)


def test_make_simulator_float64_needs_x64(jax_x32):
    with pytest.raises(ParameterError, match=r"dtype='float64' needs JAX's 64-bit mode: "
                                             r"jax.config.update\('jax_enable_x64', True\)"):
        make_simulator(nm.load_model("montbrio"), small_connectivity(), n_steps=10)
    sim = make_simulator(nm.load_model("montbrio"), small_connectivity(), n_steps=10,
                         dtype="float32")
    states, _ = sim({}, mpr_state())
    assert states.dtype == jnp.float32 and states.shape == (10, 2, 6, 1)


def test_make_simulator_argument_errors(jax_x64):
    model, conn = nm.load_model("montbrio"), small_connectivity()
    with pytest.raises(ParameterError, match="dt must be a positive number of ms, but got 0"):
        make_simulator(model, conn, dt=0)
    with pytest.raises(ParameterError, match="min_speed must be > 0 mm/ms, but got -1"):
        make_simulator(model, conn, min_speed=-1)
    with pytest.raises(ParameterError, match="unknown integrator 'rk5'"):
        make_simulator(model, conn, integrator="rk5")
    with pytest.raises(ParameterError, match="unknown parameter 'etta'; valid parameters"):
        _simulator()({"etta": 1.0}, mpr_state())
    with pytest.raises(ParameterError, match=r"initial_state \(n_state, N\[, P\]\) is required"):
        _simulator()({})


# =========================================================================== backend="auto"


def test_auto_backend_is_jax_when_traced(jax_x64):
    """``backend="auto"`` (the default) runs JAX under ``jax.grad``: the gradient equals the
    one of an explicit ``backend="jax"`` run exactly (the same program, float64)."""
    x0 = mpr_state()

    def loss(g, backend):
        res = nm.simulate("montbrio", small_connectivity(), {"global_coupling": g},
                          backend=backend, n_steps=20, initial_state=x0)
        assert res.backend == "jax"
        return jnp.mean(res.data[-1, 0])

    assert float(jax.grad(loss)(0.3, "auto")) == float(jax.grad(loss)(0.3, "jax"))


def test_auto_backend_is_numba_without_gpu(monkeypatch):
    """Concrete values and no GPU: Numba runs, and gives the JAX backend's numbers (float64;
    the two backends agree to ~1e-13 relative on this short run, 1e-11 is a loose bound)."""
    import neuralmass.backends as backends

    monkeypatch.setattr(backends, "gpu_available", lambda: False)
    params = {"global_coupling": np.array([0.1, 0.4])}
    res = nm.simulate("montbrio", small_connectivity(), params, n_steps=20,
                      initial_state=mpr_state())
    assert res.backend == "numba"
    ref = nm.simulate("montbrio", small_connectivity(), params, backend="jax", n_steps=20,
                      initial_state=mpr_state())
    assert ref.backend == "jax"
    assert max_relative_error(res.data, ref.data) < 1e-11
    monkeypatch.setattr(backends, "gpu_available", lambda: True)
    assert backends.choose_backend([np.ones(3), None]) == "cuda"


# =========================================================================== memory


def test_memory_refused_with_the_figure_before_allocating(jax_x64):
    """A tiny global_speed makes delays of ~6e8 steps: a history ring of 2^30 rows × 1
    coupled variable (r) × 6 regions × 8 bytes = 48 GiB per set. The JAX backend refuses it
    with the figure before allocating it (peak RSS grows by less than 1 GiB) and quickly."""
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.perf_counter()
    with pytest.raises(ParameterError, match=r"this run needs ~\S+ GiB \(outputs \S+ GiB: 10 "
                       r"samples × 4 variables × 6 regions × 3 sets × 8 bytes; delay history "
                       r"\S+ GiB\), but only \S+ GiB are available; .* or a larger "
                       r"global_speed"):
        nm.simulate("montbrio", small_connectivity(), {"global_speed": [1e-7, 1.0, 2.0]},
                    backend="jax", n_steps=10, initial_state=mpr_state())
    assert time.perf_counter() - started < 30
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 2**20


def test_gradient_memory_counts_the_checkpoints(jax_x64):
    """Under tracing the estimate adds the checkpointed carries: one history ring per chunk.
    Here T = 400 raw samples and the shortest delay is 3 steps: blocks of 4 steps (4 samples
    per unit), 100 units in 10 chunks of 10 units."""
    from neuralmass.backends.jax import _memory

    sim = make_simulator(nm.load_model("montbrio"), small_connectivity(), n_steps=400)
    table, _ = sim._delay_table(None, 4)
    assert int(table.min()) == 3
    shape = sim.loop_shape(table)
    assert (shape.block, shape.unit_samples, shape.chunk_units, shape.n_chunks) == (4, 4, 10, 10)
    plain, traced = (_memory.estimate(sim, 4, False, shape),
                     _memory.estimate(sim, 4, True, shape))
    assert plain.residuals == 0
    assert traced.residuals >= shape.n_chunks * plain.history / 2  # a ring per chunk
    assert traced.total == plain.total + traced.residuals


def test_loop_shape():
    """Blocks of d_min + 1 steps (at most MAX_BLOCK); a block holds whole samples when they
    are shorter, else a sample is several blocks; a traced speed gives blocks of one step."""
    from neuralmass.backends.jax._loop import MAX_BLOCK, loop_shape

    shape = loop_shape(4000, 1, 43)  # the bundled connectome at its speed, raw
    assert (shape.block, shape.unit_samples, shape.unit_steps) == (44, 44, 44)
    assert shape.n_chunks * shape.chunk_samples >= 4000
    shape = loop_shape(400, 10, 43)  # temporal_average of 10 steps: 4 samples a block
    assert (shape.block, shape.unit_samples, shape.unit_steps) == (44, 4, 40)
    shape = loop_shape(40, 100, 43)  # a sample of 100 steps is 2 blocks of 44 and one of 12
    assert (shape.block, shape.unit_samples, shape.unit_steps) == (44, 1, 100)
    assert loop_shape(10, 1, 10**6).block == MAX_BLOCK
    assert loop_shape(10, 1, 0).block == loop_shape(10, 1, None).block == 1


def test_program_size_does_not_grow_with_steps_or_sets(jax_x64):
    """The jitted program is scans, not unrolled: its jaxpr has the same number of equations
    (lines), within a few (a padded last chunk sliced off, a broadcast or not), for 100 to
    4,000 steps and 2 to 256 sets, so compile time does not grow with n_steps or P
    (benchmarks/jax_cpu.py times it)."""
    model, conn, x0 = nm.load_model("montbrio"), small_connectivity(), mpr_state()

    def size(n_steps, n_sets):
        sim = make_simulator(model, conn, n_steps=n_steps, noise=1e-4)
        jaxpr = jax.make_jaxpr(lambda g: sim({"global_coupling": g}, x0)[0])(
            jnp.linspace(0.0, 0.4, n_sets))
        return str(jaxpr).count("\n")

    sizes = [size(n_steps, n_sets) for n_steps, n_sets in ((100, 2), (1000, 2), (4000, 2),
                                                           (1000, 16), (1000, 256))]
    assert min(sizes) > 100 and max(sizes) - min(sizes) <= 20


@pytest.mark.parametrize(("lanes", "batches"), [
    (4, [(slice(0, 2), slice(0, 2)), (slice(2, 3), slice(0, 2))]),  # whole groups
    (1, [(slice(0, 1), slice(0, 1)), (slice(0, 1), slice(1, 2)), (slice(1, 2), slice(0, 1)),
         (slice(1, 2), slice(1, 2)), (slice(2, 3), slice(0, 1))]),  # pieces of a group
])
def test_sets_run_in_batches_when_they_do_not_fit(jax_x64, monkeypatch, lanes, batches):
    """5 noisy sets at 3 speeds are 3 groups of 2 lanes (the 12 mm/ms group padded). With
    room for the outputs (counted three times: the batches, their concatenation, the
    caller's order) and ``lanes`` lanes of everything else, they run in batches of whole
    groups, or of pieces of one group, and give exactly the numbers of one call (each set's
    noise depends on its global index only)."""
    from neuralmass.backends.jax import _memory
    from neuralmass.backends.jax._simulator import speed_groups

    params = {"global_coupling": np.linspace(0.0, 0.4, 5),
              "global_speed": np.array([3.0, 6.0, 3.0, 12.0, 6.0])}
    kwargs = dict(backend="jax", n_steps=30, noise=1e-4, seed=5, initial_state=mpr_state(),
                  monitors="temporal_average:0.5")
    whole = nm.simulate("montbrio", small_connectivity(), params, **kwargs)
    sim = make_simulator(nm.load_model("montbrio"), small_connectivity(), n_steps=30,
                         noise=1e-4, monitors="temporal_average:0.5")
    table, speed_index = sim._delay_table(params["global_speed"], 5)
    groups, shape = speed_groups(speed_index), sim.loop_shape(table)
    assert groups.lanes.shape == (3, 2)
    kept = _memory.estimate(sim, 5, False, shape, groups, batched=True).outputs
    one = _memory.estimate(sim, 1, False, shape)
    room = kept + lanes * (one.total - one.outputs)
    assert room < _memory.estimate(sim, 5, False, shape, groups).total
    monkeypatch.setattr(_memory, "available_memory", lambda: (room, ""))
    assert _memory.lanes_per_batch(sim, 5, groups, False, shape) == lanes
    assert groups.batches(lanes) == batches
    batched = nm.simulate("montbrio", small_connectivity(), params, **kwargs)
    np.testing.assert_array_equal(batched.data, whole.data)
    np.testing.assert_array_equal(batched.exposures, whole.exposures)
    np.testing.assert_array_equal(batched.first_nonfinite_step, whole.first_nonfinite_step)


def test_memory_refusal_counts_the_padding(jax_x64):
    """Speeds (1e-7, 1, 1e-7) mm/ms are 2 groups padded to 2 lanes each: the refused
    history is 4 lanes' rings, 4/3 of the history of 3 distinct speeds (1e-7, 1, 2), which
    are 3 groups of one lane (the same ring length: the slowest speed sets it)."""
    import re

    def refused_history(speeds) -> float:
        with pytest.raises(ParameterError, match=r"delay history (\S+) GiB") as refused:
            nm.simulate("montbrio", small_connectivity(), {"global_speed": speeds},
                        backend="jax", n_steps=10, initial_state=mpr_state())
        return float(re.search(r"delay history (\S+) GiB", str(refused.value)).group(1))

    assert refused_history([1e-7, 1.0, 1e-7]) == pytest.approx(
        refused_history([1e-7, 1.0, 2.0]) * 4 / 3, rel=1e-2)  # the message's 3 digits


# =========================================================================== compilation cache


def test_persistent_compilation_cache_under_the_cache_root(tmp_path, monkeypatch):
    """Unconfigured, JAX's persistent cache goes to <cache root>/jax; a directory the user
    configured is left as it is."""
    from neuralmass.backends.jax._compilation_cache import enable_compilation_cache

    previous = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("NEURALMASS_CACHE_DIR", str(tmp_path))
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert enable_compilation_cache.__wrapped__() == str(tmp_path / "jax")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
        assert enable_compilation_cache.__wrapped__() == str(tmp_path / "mine")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)


def test_cpu_runs_narrow_speed_groups_in_batches(jax_x64, monkeypatch):
    """On the CPU an untraced call runs whole speed groups in batches of at most
    ``CPU_BATCH_LANES`` lanes (one loop shape, so the equal batches share one compile), with
    exactly the numbers of one batch; a group wider than that is one batch; a traced call is
    one batch."""
    from neuralmass.backends.jax import _simulator

    calls, shapes = [], set()
    run_batch = _simulator._run_batch

    def counted(simulator, shape, values, state, *args):
        calls.append(state.shape[-1])
        shapes.add(shape)
        return run_batch(simulator, shape, values, state, *args)

    monkeypatch.setattr(_simulator, "_run_batch", counted)
    params = {"global_coupling": np.linspace(0.0, 0.4, 12),
              "global_speed": np.tile([3.0, 6.0, 12.0, 4.0], 3)}  # 4 groups of 3 lanes
    sim = make_simulator(nm.load_model("montbrio"), small_connectivity(), min_speed=3.0,
                         n_steps=30, noise=1e-4, monitors="temporal_average:0.5")
    monkeypatch.setattr(_simulator, "CPU_BATCH_LANES", 64)
    whole = sim(params, mpr_state(), seed=5)
    assert calls == [12]
    calls.clear()
    monkeypatch.setattr(_simulator, "CPU_BATCH_LANES", 6)
    batched = sim(params, mpr_state(), seed=5)
    assert calls == [6, 6] and len(shapes) == 1  # every batch the loop of the whole call
    for part, ref in zip(batched, whole, strict=True):
        np.testing.assert_array_equal(part, ref)
    calls.clear()
    monkeypatch.setattr(_simulator, "CPU_BATCH_LANES", 2)  # narrower than a group of 3
    sim(params, mpr_state(), seed=5)
    assert calls == [3, 3, 3, 3]
    calls.clear()
    jax.jit(lambda g: sim({**params, "global_coupling": g}, mpr_state())[0])(
        params["global_coupling"])
    assert calls == [12]
