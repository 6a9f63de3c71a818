"""End-to-end tests of ``neuralmass.simulate``: delays, analytic solutions, parameter sets,
monitors, initial conditions, noise, errors, divergence and the Result.

Backend-independent behaviour runs on every backend of ``helpers.available_backends()`` (the
``backend`` fixture). Shapes are reused where possible: each new shape, dt or integrator is a
new compilation for JAX.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from helpers import (
    LINEAR_XML,
    OU_XML,
    available_backends,
    chain_connectivity,
    linear_model,
    max_relative_error,
    oscillator_model,
    ou_model,
    stable_state,
    uncoupled_connectivity,
)

import neuralmass as nm
from neuralmass.errors import ModelError, ParameterError, SimulationError
from neuralmass.plan import make_plan

DT = 0.1


@functools.cache
def small_connectivity(n: int = 6, seed: int = 3) -> nm.Connectivity:
    """A random, ~60 % dense, asymmetric network with delays of 0 to 20 steps at
    speed 3 mm/ms and dt 0.1 ms, and one self-connection of length 0 (delay 0)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.1, 1.0, (n, n)) * (rng.uniform(size=(n, n)) < 0.6)
    weights[0, 0] = 0.5
    lengths = rng.uniform(0.5, 6.0, (n, n))
    lengths[0, 0] = 0.0
    return nm.Connectivity(weights / weights.max(), lengths, speed=3.0)


def mpr_state(n_regions: int = 6, seed: int = 0) -> np.ndarray:
    return stable_state("montbrio", n_regions, np.random.default_rng(seed))


# =========================================================================== delays

# to node i from node j: tract length in mm; with speed 10 mm/ms and dt 0.1 ms a length of
# L mm is a delay of exactly L steps. Node 3 listens to node 2 with zero delay.
PULSE_EDGES = {(1, 0): 3.0, (2, 0): 7.0, (3, 2): 0.0}
PULSE_DELAYS = {(1, 0): 3, (2, 0): 7, (3, 2): 0}
PULSE_SPEED = 10.0
PULSE_STEPS = 40  # > 2 × the ring buffer (8 rows for max delay 7): a wrap-around would show


def _pulse_history(rows: int, pulse_step: int) -> np.ndarray:
    """(rows, 1, 4) zeros with a 1 at node 0 at time ``pulse_step * dt`` (≤ 0)."""
    history = np.zeros((rows, 1, 4))
    history[rows - 1 + pulse_step, 0, 0] = 1.0
    return history


def _first_nonzero(trace: np.ndarray) -> int | None:
    nonzero = np.flatnonzero(trace != 0.0)
    return int(nonzero[0]) if nonzero.size else None


def test_pulse_connectivity_has_the_intended_integer_delays():
    conn = chain_connectivity(PULSE_EDGES, 4, speed=PULSE_SPEED)
    delays = conn.delay_steps(DT)
    for (i, j), d in PULSE_DELAYS.items():
        assert delays[i, j] == d
    assert conn.max_delay_steps(DT) == 7


@pytest.mark.parametrize("pulse_step", [0, -2, -3, -7])
def test_pulse_arrives_after_exactly_the_delay(backend, pulse_step):
    """``dx_i/dt = Σ_j w_ij x_j(t - d_ij)`` (a = 0, Euler, g = w = 1): a unit pulse of node 0
    at time p·dt is seen by the coupling of node i at step k = p + d_i0 exactly, so x_i is 0.0
    up to sample k - 1 and dt (exactly) from sample k (time (k+1)·dt) on; a pulse older than
    the delay (p + d < 0) is never seen. x_0 gets no input, so it is 0 after a past pulse and
    stays 1 after a pulse at t = 0. Node 3 reads node 2 with delay 0, i.e. at the step after
    x_2 changed."""
    conn = chain_connectivity(PULSE_EDGES, 4, speed=PULSE_SPEED)
    res = nm.simulate(linear_model(), conn, {"a": 0.0, "global_coupling": 1.0},
                      backend=backend, dt=DT, n_steps=PULSE_STEPS, integrator="euler",
                      initial_history=_pulse_history(8, pulse_step))
    x = res.data[:, 0, :, 0]
    for i in (1, 2):
        arrival = pulse_step + PULSE_DELAYS[(i, 0)]
        if arrival < 0:
            assert _first_nonzero(x[:, i]) is None, f"node {i} saw a pulse older than its delay"
            continue
        assert _first_nonzero(x[:, i]) == arrival, f"node {i}"
        if pulse_step < 0:  # a single-step pulse: x_i jumps by dt once and stays there
            np.testing.assert_allclose(x[arrival:, i], DT, rtol=1e-15)
        else:  # node 0 holds 1 from t = 0: x_i grows by dt per step
            np.testing.assert_allclose(x[arrival:, i], DT * np.arange(1, PULSE_STEPS - arrival + 1),
                                       rtol=1e-13)
    arrival_2 = pulse_step + PULSE_DELAYS[(2, 0)]
    if arrival_2 >= 0:
        assert _first_nonzero(x[:, 3]) == arrival_2 + 1
    np.testing.assert_array_equal(x[:, 0], 1.0 if pulse_step == 0 else 0.0)


def test_pulse_delay_scales_with_per_set_speed(backend):
    """Two parameter sets at 10 and 5 mm/ms: the second set's delays are twice as long."""
    conn = chain_connectivity(PULSE_EDGES, 4, speed=PULSE_SPEED)
    pulse_step = -2
    res = nm.simulate(linear_model(), conn,
                      {"a": 0.0, "global_speed": np.array([10.0, 5.0])},
                      backend=backend, dt=DT, n_steps=PULSE_STEPS, integrator="euler",
                      initial_history=_pulse_history(15, pulse_step))
    x = res.data[:, 0]
    for i in (1, 2):
        d = PULSE_DELAYS[(i, 0)]
        assert _first_nonzero(x[:, i, 0]) == pulse_step + d
        assert _first_nonzero(x[:, i, 1]) == pulse_step + 2 * d


def test_per_set_speeds_equal_each_set_alone(backend):
    """MPR on a random 6-node network with delays: sets at three speeds (one repeated) give
    the same trajectories as three separate runs. Tolerance 1e-12 relative: the same
    arithmetic in a batched loop, which a compiler may order differently."""
    conn = small_connectivity()
    speeds = np.array([3.0, 1.5, 6.0, 1.5])
    x0 = mpr_state()
    params = {"global_coupling": 0.3, "cv": 0.3}
    batched = nm.simulate("montbrio", conn, {**params, "global_speed": speeds},
                          backend=backend, n_steps=200, initial_state=x0)
    assert batched.data.shape == (200, 2, 6, 4)
    for p, speed in enumerate(speeds):
        alone = nm.simulate("montbrio", conn, {**params, "global_speed": speed},
                            backend=backend, n_steps=200, initial_state=x0)
        assert max_relative_error(batched.data[..., p], alone.data[..., 0]) <= 1e-12
    # the speed matters: the delays differ between sets
    assert max_relative_error(batched.data[..., 1], batched.data[..., 0]) > 1e-4


# =========================================================================== analytic cases


@pytest.mark.parametrize("integrator", ["euler", "heun", "rk4"])
def test_uncoupled_kuramoto_phase_grows_linearly(backend, integrator):
    """With global_coupling 0, dθ/dt = ω: every integrator is exact up to rounding, so
    θ(t) = θ0 + ω t to 1e-12 relative (1,000 steps; rounding accumulates to ~1e-14)."""
    conn = small_connectivity()
    rng = np.random.default_rng(5)
    theta0 = rng.uniform(0, 2 * np.pi, (1, 6))
    omega = np.array([0.5, 1.0, 2.0])
    res = nm.simulate("kuramoto", conn, {"global_coupling": 0.0, "omega": omega},
                      backend=backend, n_steps=1000, integrator=integrator,
                      initial_state=theta0)
    t = res.time[:, None, None, None]
    exact = theta0[None, :, :, None] + omega * t
    assert max_relative_error(res.data, exact) <= 1e-12


# expected order of accuracy p: halving dt divides the global error by 2**p
ORDERS = {"euler": 1, "heun": 2, "rk4": 4}


def _global_error(model: nm.Model, exact, x0: np.ndarray, integrator: str, dt: float,
                  t_end: float = 2.0) -> float:
    res = nm.simulate(model, uncoupled_connectivity(x0.shape[1]), {"global_coupling": 0.0},
                      dt=dt, n_steps=round(t_end / dt), integrator=integrator,
                      initial_state=x0)
    return float(np.abs(res.data[..., 0] - exact(res.time)).max())


@pytest.mark.parametrize("integrator", ["euler", "heun", "rk4"])
def test_linear_decay_order_of_accuracy(integrator):
    """dx/dt = -a x, x(t) = x0 exp(-a t), over 2 ms with dt = 0.05 and 0.025 ms: the ratio
    of the maximum errors is 2**p within 10 % (exact only as dt → 0; at a·dt = 0.1 the next
    term of the error expansion shifts it by 2 to 4 %)."""
    a = 2.0
    model = linear_model().with_defaults(a=a)
    x0 = np.array([[1.0, -0.5]])

    def exact(time):
        return x0[None] * np.exp(-a * time)[:, None, None]

    coarse = _global_error(model, exact, x0, integrator, 0.05)
    fine = _global_error(model, exact, x0, integrator, 0.025)
    assert coarse < 0.1
    ratio = coarse / fine
    assert ratio == pytest.approx(2.0 ** ORDERS[integrator], rel=0.1)


@pytest.mark.parametrize("integrator", ["euler", "heun", "rk4"])
def test_oscillator_order_of_accuracy(integrator):
    """dx = ω y, dy = -ω x against x0 cos ωt + y0 sin ωt (and y), over 2 ms (ω = 2)."""
    model = oscillator_model().with_defaults(omega=2.0)
    x0 = np.array([[1.0, 0.3], [0.0, -0.8]])  # (x, y) × 2 nodes

    def exact(time):
        c, s = np.cos(2.0 * time)[:, None], np.sin(2.0 * time)[:, None]
        return np.stack([x0[0] * c + x0[1] * s, x0[1] * c - x0[0] * s], axis=1)

    coarse = _global_error(model, exact, x0, integrator, 0.05)
    fine = _global_error(model, exact, x0, integrator, 0.025)
    assert coarse < 0.5
    assert coarse / fine == pytest.approx(2.0 ** ORDERS[integrator], rel=0.1)


# =========================================================================== parameter sets


def test_grid_order_and_lengths():
    g = nm.grid(a=[1.0, 2.0, 3.0], b=[10.0, 20.0])
    assert list(g) == ["a", "b"]
    np.testing.assert_array_equal(g["a"], [1, 1, 2, 2, 3, 3])  # first axis slowest
    np.testing.assert_array_equal(g["b"], [10, 20, 10, 20, 10, 20])
    g3 = nm.grid(x=np.linspace(0, 1, 4), y=[0.0, 1.0, 2.0], z=[5.0, 6.0])
    assert {len(v) for v in g3.values()} == {24}
    np.testing.assert_array_equal(g3["x"][:6], 0.0)
    np.testing.assert_array_equal(g3["z"][:4], [5, 6, 5, 6])


@pytest.mark.parametrize("axes, match", [
    ({}, "at least one axis"),
    ({"a": []}, "non-empty 1-D"),
    ({"a": [[1.0, 2.0]]}, r"non-empty 1-D sequence, but got shape \(1, 2\)"),
])
def test_grid_errors(axes, match):
    with pytest.raises(ParameterError, match=match):
        nm.grid(**axes)


def test_grid_sets_equal_single_runs(backend):
    """Each set of a grid run equals a run with that set's scalars, and res.params says
    which values each set had."""
    conn = small_connectivity()
    theta0 = np.random.default_rng(1).uniform(0, 2 * np.pi, (1, 6))
    params = nm.grid(global_coupling=[0.0, 0.5], omega=[0.8, 1.0, 1.2])
    res = nm.simulate("kuramoto", conn, params, backend=backend, n_steps=100,
                      initial_state=theta0)
    assert res.data.shape == (100, 1, 6, 6)
    np.testing.assert_array_equal(res.params["global_coupling"], [0, 0, 0, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(res.params["omega"], [0.8, 1.0, 1.2] * 2)
    for p in (0, 4):
        alone = nm.simulate("kuramoto", conn, {"global_coupling": params["global_coupling"][p],
                                               "omega": params["omega"][p]},
                            backend=backend, n_steps=100, initial_state=theta0)
        assert max_relative_error(res.data[..., p], alone.data[..., 0]) <= 1e-12


# =========================================================================== monitors


@functools.cache
def _monitored(backend: str, monitor: str, n_steps: int = 52):
    conn = small_connectivity()
    return nm.simulate("montbrio", conn, {"global_coupling": np.array([0.2, 0.4]), "cv": 0.3},
                       backend=backend, n_steps=n_steps, initial_state=mpr_state(),
                       monitors=monitor)


def test_subsample_monitor(backend):
    """Every 5th raw state (period 0.5 ms): raw[4::5], at times 0.5, 1.0, ... ms; 52 steps
    give 10 samples (trailing steps after the last sample are dropped). Same arithmetic as
    the raw run, compiled separately: 1e-13 relative."""
    raw = _monitored(backend, "raw")
    sub = _monitored(backend, "subsample:0.5")
    assert sub.monitor == "subsample"
    assert sub.data.shape == (10, 2, 6, 2) and sub.exposures.shape == (10, 2, 6, 2)
    np.testing.assert_allclose(sub.time, 0.5 * np.arange(1, 11), rtol=1e-12)
    np.testing.assert_allclose(raw.time, DT * np.arange(1, 53), rtol=1e-12)
    assert max_relative_error(sub.data, raw.data[4:50:5]) <= 1e-13
    assert max_relative_error(sub.exposures, raw.exposures[4:50:5]) <= 1e-13


def test_temporal_average_monitor(backend):
    """The mean of each window of 5 raw states, stamped at the window's end minus half a
    period: (5k - 2.5)·dt = 0.25, 0.75, ... ms (neuralmass.monitors, TVB's convention)."""
    raw = _monitored(backend, "raw")
    tavg = _monitored(backend, "temporal_average:0.5")
    assert tavg.monitor == "temporal_average"
    assert tavg.data.shape == (10, 2, 6, 2)
    np.testing.assert_allclose(tavg.time, 0.5 * np.arange(1, 11) - 0.25, rtol=1e-12)
    windows = raw.data[:50].reshape(10, 5, 2, 6, 2).mean(axis=1)
    assert max_relative_error(tavg.data, windows) <= 1e-13
    windows_exposures = raw.exposures[:50].reshape(10, 5, 2, 6, 2).mean(axis=1)
    assert max_relative_error(tavg.exposures, windows_exposures) <= 1e-13


def test_monitor_spellings_are_equivalent():
    ref = _monitored("jax", "temporal_average:0.5")
    for spec in ("tavg:0.5", nm.monitors.TemporalAverage(0.5), (nm.monitors.TemporalAverage(0.5),)):
        res = _monitored("jax", spec)
        np.testing.assert_array_equal(res.data, ref.data)
    np.testing.assert_array_equal(_monitored("jax", nm.monitors.Subsample(0.5)).data,
                                  _monitored("jax", "subsample:0.5").data)
    np.testing.assert_array_equal(_monitored("jax", nm.monitors.Raw()).data,
                                  _monitored("jax", "raw").data)


# =========================================================================== initial conditions


def test_initial_state_is_broadcast_over_sets(backend):
    conn = small_connectivity()
    x0 = mpr_state()
    params = {"global_coupling": np.array([0.1, 0.3, 0.5])}
    shared = nm.simulate("montbrio", conn, params, backend=backend, n_steps=52,
                         initial_state=x0)
    explicit = nm.simulate("montbrio", conn, params, backend=backend, n_steps=52,
                           initial_state=np.repeat(x0[..., None], 3, axis=-1))
    np.testing.assert_array_equal(shared.data, explicit.data)


def test_initial_state_per_set(backend):
    """(n_state, N, P): set p starts from x0[..., p]; with scalar parameters P comes from
    the initial state (an ensemble of initial conditions), with arrays it must match them."""
    conn = small_connectivity()
    x0 = np.stack([mpr_state(seed=s) for s in range(3)], axis=-1)  # (2, 6, 3)
    res = nm.simulate("montbrio", conn, {"global_coupling": 0.3}, backend=backend,
                      n_steps=52, initial_state=x0)
    assert res.data.shape == (52, 2, 6, 3)
    np.testing.assert_array_equal(res.params["global_coupling"], [0.3] * 3)
    swept = nm.simulate("montbrio", conn, {"global_coupling": np.array([0.3, 0.3, 0.5])},
                        backend=backend, n_steps=52, initial_state=x0)
    for p in range(3):
        alone = nm.simulate("montbrio", conn, {"global_coupling": 0.3}, backend=backend,
                            n_steps=52, initial_state=x0[..., p])
        assert max_relative_error(res.data[..., p], alone.data[..., 0]) <= 1e-12
        if p < 2:
            assert max_relative_error(swept.data[..., p], alone.data[..., 0]) <= 1e-12
    with pytest.raises(ParameterError, match=r"initial_state must have shape \(2, 6\) or "
                                             r"\(2, 6, 2\) .*but got \(2, 6, 3\)"):
        nm.simulate("montbrio", conn, {"eta": [-5.0, -4.0]}, backend=backend, n_steps=52,
                    initial_state=x0)


def test_history_and_state_broadcast_over_sets(backend):
    """A 3-D history is shared by all sets, a 4-D one is per set; either combines with a
    shared or a per-set initial state (which replaces the history's t = 0 row)."""
    conn, history, params = _epileptor_setup()
    history = history[:, [0, 3]]  # the coupled variables x1, x2
    x0 = np.repeat(_epileptor_setup()[1][-1][..., None], 2, axis=-1)
    x0[:, :, 1] += 0.01
    sets = {**params, "Ks": np.array([-0.2, -0.3])}
    kwargs = dict(backend=backend, dt=0.05, n_steps=100)
    shared = nm.simulate("epileptor", conn, sets, initial_history=history, initial_state=x0,
                         **kwargs)
    explicit = nm.simulate("epileptor", conn, sets,
                           initial_history=np.repeat(history[..., None], 2, axis=-1),
                           initial_state=x0, **kwargs)
    np.testing.assert_array_equal(shared.data, explicit.data)
    shared_state = nm.simulate("epileptor", conn, sets,
                               initial_history=np.repeat(history[..., None], 2, axis=-1),
                               initial_state=x0[..., 0], **kwargs)
    assert max_relative_error(shared_state.data[..., 0], shared.data[..., 0]) <= 1e-12


@functools.cache
def _epileptor_setup():
    conn = small_connectivity()
    horizon = int(conn.edge_delay_steps(0.05).max()) + 1  # over the non-zero weights
    rng = np.random.default_rng(7)
    history = np.stack([stable_state("epileptor", 6, rng) for _ in range(horizon)])
    params = {"global_coupling": 1.0, "Ks": -0.2, "Kf": 0.1, "Kvf": 0.1}
    return conn, history, params


def _epileptor(backend, **kwargs):
    conn, _, params = _epileptor_setup()
    return nm.simulate("epileptor", conn, params, backend=backend, dt=0.05, n_steps=100,
                       **kwargs)


def test_history_of_coupled_or_all_state_variables(backend):
    """The Epileptor's history holds x1 and x2 (its coupled variables): a history of all 6
    state variables gives the same run as its x1, x2 rows plus initial_state = last row."""
    _, history, _ = _epileptor_setup()
    full = _epileptor(backend, initial_history=history)
    coupled = _epileptor(backend, initial_history=history[:, [0, 3]],
                         initial_state=history[-1])
    np.testing.assert_array_equal(full.data, coupled.data)
    # extra leading rows are ignored
    longer = _epileptor(backend, initial_history=np.concatenate([history[:5] + 1, history]))
    np.testing.assert_array_equal(longer.data, full.data)
    # the history matters: a constant past (initial_state only) differs
    constant = _epileptor(backend, initial_state=history[-1])
    assert max_relative_error(constant.data, full.data) > 1e-6


def test_history_errors():
    _, history, _ = _epileptor_setup()
    horizon = history.shape[0]
    with pytest.raises(ParameterError, match=rf"at least H = max delay \+ 1 = {horizon} rows"
                                             rf".*but got {horizon - 1}"):
        _epileptor("jax", initial_history=history[1:])
    with pytest.raises(ParameterError, match=r"holds only the coupled variables \(x1, x2\): "
                                             "give initial_state too"):
        _epileptor("jax", initial_history=history[:, [0, 3]])
    with pytest.raises(ParameterError, match=r"initial_history must have shape \(H, n_var, 6"
                                             r".*but got \(.*, 3, 6\)"):
        _epileptor("jax", initial_history=history[:, :3])


def test_initial_conditions_are_clipped_to_bounds(backend):
    """MPR's r is bounded below by 0: r < 0 in initial_state or in any history row is
    clipped to 0, so it gives the same run as the clipped input."""
    conn = small_connectivity()
    x0 = mpr_state()
    below = x0.copy()
    below[0, :3] = -0.4
    clipped = below.copy()
    clipped[0, :3] = 0.0
    a = nm.simulate("montbrio", conn, {"global_coupling": 0.3}, backend=backend, n_steps=52,
                    initial_state=below)
    b = nm.simulate("montbrio", conn, {"global_coupling": 0.3}, backend=backend, n_steps=52,
                    initial_state=clipped)
    np.testing.assert_array_equal(a.data, b.data)
    horizon = conn.max_delay_steps(DT) + 1
    history = np.repeat(x0[None], horizon, axis=0)
    history[::3, 0, :] = -1.0
    history_clipped = np.maximum(history, [[0.0], [-np.inf]])
    c = nm.simulate("montbrio", conn, {"global_coupling": 0.3}, backend=backend, n_steps=52,
                    initial_history=history)
    d = nm.simulate("montbrio", conn, {"global_coupling": 0.3}, backend=backend, n_steps=52,
                    initial_history=history_clipped)
    np.testing.assert_array_equal(c.data, d.data)


def test_random_initial_state_from_seed():
    """With neither initial_state nor initial_history the state is uniform in each state
    variable's range, from the seed."""
    model = nm.load_model("epileptor")
    conn = small_connectivity()
    plan = make_plan(model, conn, seed=11)
    again = make_plan(model, conn, seed=11)
    other = make_plan(model, conn, seed=12)
    np.testing.assert_array_equal(plan.initial_state, again.initial_state)
    assert not np.array_equal(plan.initial_state, other.initial_state)
    assert plan.initial_state.shape == (6, 6)
    for sv, values in zip(model.state_variables, plan.initial_state, strict=True):
        lo, hi = sv.initial_range
        assert np.all((values >= lo) & (values <= hi)), sv.name


# =========================================================================== noise


@functools.cache
def _noisy(backend: str, seed: int, integrator: str = "heun"):
    return nm.simulate("montbrio", small_connectivity(), {"global_coupling": 0.3},
                       backend=backend, n_steps=52, integrator=integrator, noise=1e-3,
                       seed=seed, initial_state=mpr_state())


def test_noise_seed_reproducible(backend):
    a, c = _noisy(backend, 0), _noisy(backend, 1)
    again = nm.simulate("montbrio", small_connectivity(), {"global_coupling": 0.3},
                        backend=backend, n_steps=52, noise=1e-3, seed=0,
                        initial_state=mpr_state())
    np.testing.assert_array_equal(a.data, again.data)
    assert max_relative_error(c.data, a.data) > 1e-5
    deterministic = nm.simulate("montbrio", small_connectivity(), {"global_coupling": 0.3},
                                backend=backend, n_steps=52, initial_state=mpr_state())
    assert max_relative_error(a.data, deterministic.data) > 1e-5


def test_zero_noise_is_deterministic(backend):
    kwargs = dict(backend=backend, n_steps=52, initial_state=mpr_state())
    zero = nm.simulate("montbrio", small_connectivity(), {"global_coupling": 0.3}, noise=0.0,
                       **kwargs)
    none = nm.simulate("montbrio", small_connectivity(), {"global_coupling": 0.3}, **kwargs)
    np.testing.assert_array_equal(zero.data, none.data)


def test_rk4_with_noise_is_an_error():
    with pytest.raises(ParameterError, match="integrator 'rk4' is deterministic only; with "
                                             "noise use 'euler'"):
        nm.simulate("montbrio", small_connectivity(), n_steps=10, integrator="rk4", noise=0.01)


def test_noise_argument_errors():
    with pytest.raises(ParameterError, match=r"shape \(2,\) for r, V, but got \[1, 2, 3\]"):
        nm.simulate("montbrio", small_connectivity(), n_steps=10, noise=[1, 2, 3])
    with pytest.raises(ParameterError, match="noise D must be finite and >= 0, but got -1"):
        nm.simulate("montbrio", small_connectivity(), n_steps=10, noise=-1.0)


def _ou_stationary_variance(integrator: str, theta: float, diffusion: float, dt: float):
    """Exact stationary variance of the discrete OU recursion x' = A x + B σ z (σ² = 2 D dt):
    Euler–Maruyama A = 1 - θdt, B = 1; stochastic Heun with the same z in both stages
    A = 1 - θdt + (θdt)²/2, B = 1 - θdt/2. Both tend to D/θ as dt → 0."""
    h = theta * dt
    a, b = (1 - h, 1.0) if integrator == "euler" else (1 - h + h * h / 2, 1 - h / 2)
    return 2 * diffusion * dt * b * b / (1 - a * a)


@pytest.mark.parametrize("integrator", ["euler", "heun"])
def test_ou_stationary_variance(backend, integrator):
    """dx = -θ x dt + sqrt(2D) dW has stationary variance D/θ. Started from that stationary
    distribution, 256 trajectories (32 nodes × 8 sets) × 2,000 steps of 0.05 ms (100
    correlation times each) give the variance to ~0.9 % (standard error of the sample
    variance of an AR(1) process with ρ = 0.95: sqrt(2/n · (1+ρ²)/(1-ρ²)); measured -0.9 %).
    We check it against the exact variance of the discrete scheme within 5 % (> 5 standard
    errors) and against D/θ within 5 % + the scheme's O(θ dt) bias (2.6 % for Euler)."""
    theta, diffusion, dt = 1.0, 0.5, 0.05
    variance = diffusion / theta
    x0 = np.random.default_rng(3).normal(0, math.sqrt(variance), (1, 32, 8))
    res = nm.simulate(ou_model(), uncoupled_connectivity(32),
                      {"theta": theta, "global_coupling": np.zeros(8)}, backend=backend,
                      dt=dt, n_steps=2000, integrator=integrator, noise=diffusion, seed=4,
                      initial_state=x0)
    measured = res.data.var()
    assert abs(res.data.mean()) < 0.05  # its standard error is 0.006
    assert measured == pytest.approx(_ou_stationary_variance(integrator, theta, diffusion, dt),
                                     rel=0.05)
    bias = 1 / (1 - theta * dt / 2) - 1 if integrator == "euler" else 0.0
    assert measured == pytest.approx(variance, rel=0.05 + bias)


def test_model_noise_component_equals_noise_argument(backend):
    """A model's own <ComponentType name="noise"> gives per-step σ = nsig; noise=D gives
    σ = sqrt(2 D dt): with nsig = sqrt(2 D dt) and the same seed the runs agree to rounding."""
    nsig, dt, diffusion = 0.02, 0.05, 0.02**2 / (2 * 0.05)
    xml = OU_XML.replace("</Lems>", '<ComponentType name="noise">'
                                    f'<Constant name="nsig" value="{nsig}"/>'
                                    "</ComponentType></Lems>")
    noisy_model = nm.lems.loads(xml)
    kwargs = dict(backend=backend, dt=dt, n_steps=52, seed=9, initial_state=np.zeros((1, 4)))
    own = nm.simulate(noisy_model, uncoupled_connectivity(4), **kwargs)
    given = nm.simulate(ou_model(), uncoupled_connectivity(4), noise=diffusion, **kwargs)
    assert np.ptp(own.data) > 0.01
    assert max_relative_error(own.data, given.data) <= 1e-12


# =========================================================================== errors


def _run(backend="jax", **kwargs):
    arguments = dict(model="montbrio", connectivity=small_connectivity(), n_steps=10,
                     backend=backend, initial_state=mpr_state())
    arguments.update(kwargs)  # may replace the backend
    return nm.simulate(arguments.pop("model"), arguments.pop("connectivity"), **arguments)


ERRORS = [
    (dict(params={"etaa": 1.0}),
     r"unknown parameter 'etaa'; did you mean 'eta'\? Valid parameters: .*tau.*eta"),
    (dict(params={"global_coupling": [0.1, 0.2], "eta": [1.0, 2.0, 3.0]}),
     r"same length .*global_coupling: 2, eta: 3; use neuralmass.grid"),
    (dict(params={"eta": np.ones((2, 2))}),
     r"parameter 'eta' must be a scalar or a 1-D array .* but got shape \(2, 2\)"),
    (dict(params={"eta": [1.0, np.nan]}), r"parameter 'eta' must be finite, but set 1 has nan"),
    (dict(params={"eta": np.inf}), r"parameter 'eta' must be finite"),
    (dict(params={"eta": "high"}), r"parameter 'eta' must be a number"),
    (dict(params={"global_speed": -1.0}), r"global_speed must be > 0 mm/ms"),
    (dict(dt=0.0), r"dt must be a positive number of ms, but got 0.0"),
    (dict(dt=-0.1), r"dt must be a positive number of ms, but got -0.1"),
    (dict(dt=float("nan")), r"dt must be a positive number of ms, but got nan"),
    (dict(n_steps=0), r"n_steps must be an integer >= 1, but got 0"),
    (dict(n_steps=2.5), r"n_steps must be an integer >= 1, but got 2.5"),
    (dict(backend="tensorflow"), r"unknown backend 'tensorflow'; valid backends are auto, jax, "
                                 "numba, cuda"),
    (dict(integrator="rk45"), r"unknown integrator 'rk45'; valid integrators are euler, heun, "
                              "rk4"),
    (dict(monitors="bolt"), r"unknown monitor 'bolt'; use 'raw', 'subsample:PERIOD'"),
    (dict(monitors=()), r"monitors must name at least one monitor"),
    (dict(monitors=("raw", "tavg:x")), r"unknown monitor 'tavg:x'"),
    (dict(monitors="raw:1"), r"monitor 'raw' takes no period"),
    (dict(monitors="subsample:0.25"),
     r"the subsample period must be a positive multiple of dt=0.1 ms, but got 0.25 ms"),
    (dict(monitors="tavg:-1"), r"temporal_average period must be a positive multiple"),
    (dict(monitors="subsample:2.0"), r"n_steps=10 is shorter than one subsample period"),
    (dict(initial_state=np.zeros((2, 5))),
     r"initial_state must have shape \(2, 6\) or \(2, 6, 1\) .*but got \(2, 5\)"),
    (dict(initial_state=np.zeros((6, 2))), r"initial_state must have shape \(2, 6\)"),
    (dict(initial_state=np.full((2, 6), np.nan)),
     r"initial_state must be finite, but initial_state\[0, 0\] is nan"),
    (dict(dtype="float16"), r"dtype must be 'float32' or 'float64', but got 'float16'"),
    (dict(seed=-1), r"seed must be an integer >= 0"),
]


@pytest.mark.parametrize("kwargs, match", ERRORS,
                         ids=[f"{next(iter(k))}-{i}" for i, (k, _) in enumerate(ERRORS)])
def test_argument_errors(backend, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        _run(**{"backend": backend, **kwargs})


def test_errors_are_value_errors():
    assert issubclass(ParameterError, ValueError)
    with pytest.raises(ValueError):
        _run(params={"nope": 1.0})


def test_unknown_model_name():
    with pytest.raises(ModelError, match="unknown model 'kuramotto'; bundled models are "):
        nm.simulate("kuramotto", n_steps=10)


# =========================================================================== divergence


def test_divergence_names_step_region_set_and_values(backend):
    """dx = -a x with a = -1000 grows by 1 - a·dt = 101 per Euler step: from x = 1 (region 2
    only; the others stay exactly 0) the first inf is at the step n where 101**n overflows,
    computed here in NumPy. Set 0 (a = -1) stays finite; the message names set 1, a = -1000."""
    x0 = np.zeros((1, 4))
    x0[0, 2] = 1.0
    with np.errstate(over="ignore"):
        growth = np.float64(101.0) ** np.arange(1, 400, dtype=np.float64)
    first_inf = int(np.flatnonzero(~np.isfinite(growth))[0]) + 1
    assert 150 < first_inf < 160
    with pytest.raises(SimulationError) as info:
        nm.simulate(linear_model(), uncoupled_connectivity(4),
                    {"a": np.array([-1.0, -1000.0]), "global_coupling": 0.0}, backend=backend,
                    dt=DT, n_steps=200, integrator="euler", initial_state=x0,
                    on_divergence="raise")
    message = str(info.value)
    assert f"at step {first_inf} (t = {first_inf * DT:g} ms)" in message, message
    assert "state variable 'x', region 2 (r2), parameter set 1 (a=-1000)" in message, message
    assert "try a smaller dt" in message


def test_divergence_with_subsampling_names_the_window(backend):
    x0 = np.ones((1, 4))
    with pytest.raises(SimulationError,
                       match=r"sample 15 \(subsample, steps 151-160, t ≤ 16 ms\), state "
                             r"variable 'x', region 0 \(r0\), parameter set 0 "
                             r"\(global_coupling=0\)"):
        nm.simulate(linear_model(), uncoupled_connectivity(4),
                    {"a": -1000.0, "global_coupling": np.array([0.0, 0.0])}, backend=backend,
                    dt=DT, n_steps=200, integrator="euler", initial_state=x0,
                    monitors="subsample:1.0", on_divergence="raise")


# =========================================================================== Result


def test_result_shapes_exposures_and_params(backend):
    """Epileptor's exposures: lfp = x2 - x1 and z, evaluated on the recorded states."""
    _, history, _ = _epileptor_setup()
    res = _epileptor(backend, initial_history=history)
    assert res.data.shape == (100, 6, 6, 1)
    assert res.exposures.shape == (100, 2, 6, 1)
    assert res.state_names == ("x1", "y1", "z", "x2", "y2", "g")
    assert res.exposure_names == ("lfp", "z")
    np.testing.assert_allclose(res.exposure("lfp"), res.state("x2") - res.state("x1"),
                               rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(res.exposure("z"), res.state("z"))
    assert res.n_sets == 1
    assert set(res.params) == set(nm.load_model("epileptor").parameter_names)
    np.testing.assert_array_equal(res.params["Ks"], [-0.2])
    np.testing.assert_array_equal(res.params["global_speed"], [3.0])  # the connectivity's
    assert res.region_labels == small_connectivity().labels


def test_exposure_expression_with_parameters(backend):
    """The linear model's exposure ``2 x + a`` uses a swept parameter per set."""
    res = nm.simulate(linear_model(), uncoupled_connectivity(3), {"a": np.array([0.5, 2.0])},
                      backend=backend, n_steps=10, initial_state=np.ones((1, 3)))
    np.testing.assert_allclose(res.exposure("twice_x_plus_a"),
                               2 * res.state("x") + np.array([0.5, 2.0]), rtol=1e-15)


def test_result_save_round_trip(tmp_path):
    res = _monitored("jax", "temporal_average:0.5")
    path = tmp_path / "run.npz"
    res.save(path)
    saved = nm.load_result(path)
    np.testing.assert_array_equal(saved.time, res.time)
    np.testing.assert_array_equal(saved.data, res.data)
    np.testing.assert_array_equal(saved.exposures, res.exposures)
    assert saved.state_names == res.state_names
    assert saved.exposure_names == res.exposure_names
    assert saved.region_labels == res.region_labels
    assert saved.monitor == "temporal_average"
    for name, value in res.params.items():
        np.testing.assert_array_equal(saved.params[name], value)


def test_simulate_by_name_with_default_connectivity():
    res = nm.simulate("kuramoto", n_steps=20)
    default = nm.Connectivity.default()
    assert res.data.shape == (20, 1, default.n_regions, 1)
    assert res.region_labels == default.labels
    assert np.isfinite(res.data).all()
    # the same as passing the model and the connectivity explicitly (same random state)
    explicit = nm.simulate(nm.load_model("kuramoto"), default, n_steps=20)
    np.testing.assert_array_equal(res.data, explicit.data)


def test_model_from_xml_path(tmp_path):
    path = tmp_path / "linear.xml"
    path.write_text(LINEAR_XML)
    res = nm.simulate(str(path), uncoupled_connectivity(2), n_steps=5,
                      initial_state=np.ones((1, 2)))
    assert res.state_names == ("x",)


def test_float32_close_to_float64(backend):
    """MPR near its fixed point (a contracting, non-chaotic run) for 500 steps: float32
    rounding (ε = 6e-8 per operation) does not grow, so single and double precision agree
    to ~1e-6 (measured 4e-7); we allow 1e-4 relative per state variable."""
    conn = small_connectivity()
    kwargs = dict(backend=backend, n_steps=500, initial_state=mpr_state())
    params = {"global_coupling": 0.3, "cv": 0.3}
    single = nm.simulate("montbrio", conn, params, dtype="float32", **kwargs)
    double = nm.simulate("montbrio", conn, params, dtype="float64", **kwargs)
    assert np.asarray(single.data).dtype == np.float32
    assert np.asarray(double.data).dtype == np.float64
    for k in range(2):
        assert max_relative_error(single.data[:, k], double.data[:, k]) <= 1e-4


def test_to_xarray():
    res = _monitored("jax", "raw")
    ds = res.to_xarray()
    np.testing.assert_array_equal(ds["r"].values, res.state("r"))
    assert ds.attrs["monitor"] == "raw"



def test_backend_matrix():
    """JAX always; never CUDA here (no GPU); Numba once its backend exposes run()."""
    backends = available_backends()
    assert backends[0] == "jax" and "cuda" not in backends
    assert set(backends) <= {"jax", "numba"}
