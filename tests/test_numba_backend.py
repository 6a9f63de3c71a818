"""The Numba backend against the JAX backend, the noise spec and its own guarantees.

- float64 agreement with JAX to 1e-9 of each variable's largest magnitude on every bundled
  model × Euler/Heun/RK4 over 1,000 steps with delays, sets differing in coupling and speed
  (several sets per speed, so that tiles hold several SIMD lanes and padding);
- float32 against float64; every monitor; an explicit initial history; an XML model;
- noise: same seed same run, and an Ornstein–Uhlenbeck process has its stationary variance
  (the samples themselves are checked against the spec in ``test_noise.py``);
- a sweep over speeds equals the sets run one by one;
- the disk cache (a second process loads instead of compiling), the memory check, progress,
  Ctrl-C.

The tvb-library conformance of this backend is in ``test_conformance_tvb.py`` (parametrised
over every backend, marked ``tvb``).
"""

from __future__ import annotations

import _thread
import json
import os
import subprocess
import sys
import textwrap
from unittest import mock

import numpy as np
import pytest
from helpers import (
    available_backends,
    linear_model,
    max_relative_error_per_variable,
    on_one_worker,
    ou_model,
    stable_history,
    stable_state,
    uncoupled_connectivity,
)

import neuralmass as nm
from neuralmass.errors import ParameterError
from neuralmass.plan import make_plan

pytestmark = pytest.mark.skipif("numba" not in available_backends(),
                                reason="the Numba backend does not import here")

if "numba" in available_backends():
    from neuralmass.backends import _memory
    from neuralmass.backends import numba as numba_backend
    from neuralmass.backends.numba import _lower, _run

CONNECTIVITY = nm.Connectivity.default()
N = CONNECTIVITY.n_regions
MODELS = ("kuramoto", "montbrio", "epileptor", "rwongwang", "generic2d")
#: 8 sets at 3 speeds (3, 3 and 2 sets): float64 tiles of 4 lanes, one partly padded
SPEEDS = np.array([2.0, 3.0, 5.0, 2.0, 3.0, 5.0, 2.0, 3.0])
SCALE = np.linspace(0.5, 2.0, len(SPEEDS))


def same_kernels(model: str):
    """A model's cases that compile the same kernels (its regime in float64 with Heun) on one
    xdist worker, which compiles them once (the module's cache folder is per worker)."""
    return on_one_worker(f"numba-{model}", model)


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Compile into a fresh cache directory, not the user's."""
    saved = os.environ.get("NEURALMASS_CACHE_DIR")
    os.environ["NEURALMASS_CACHE_DIR"] = str(tmp_path_factory.mktemp("neuralmass-cache"))
    yield
    if saved is None:
        os.environ.pop("NEURALMASS_CACHE_DIR")
    else:
        os.environ["NEURALMASS_CACHE_DIR"] = saved


def regime(model: str):
    """Parameters (coupling and speed per set), dt and initial state of a non-chaotic run
    (TVB's epilepsy demo for the Epileptor; MPR near r = 0.1, V = -2)."""
    default = nm.load_model(model).defaults["global_coupling"]
    params = {"global_coupling": default * SCALE, "global_speed": SPEEDS}
    dt = 0.1
    if model == "epileptor":
        params.update(Ks=-0.2, Kf=0.1)
        dt = 0.05
    if model == "rwongwang":
        params.update(I_o=0.45, W_i=0.5)  # x_e, x_i away from the 0/0 of H(x)
    state = stable_state(model, N, np.random.default_rng(7))
    return params, dt, state


def simulate_both(model, params, **options):
    numba = nm.simulate(model, CONNECTIVITY, params, backend="numba", **options)
    jax = nm.simulate(model, CONNECTIVITY, params, backend="jax", **options)
    return numba, jax


def assert_agree(numba, jax, rtol):
    assert numba.data.shape == jax.data.shape
    assert numba.data.dtype == jax.data.dtype
    np.testing.assert_array_equal(numba.time, jax.time)
    assert max_relative_error_per_variable(numba.data, jax.data) < rtol
    if jax.exposures.shape[1]:
        assert max_relative_error_per_variable(numba.exposures, jax.exposures) < rtol


# ============================================================================ against JAX


@pytest.mark.parametrize("integrator", ["euler", "heun", "rk4"])
@pytest.mark.parametrize("model", [same_kernels(model) for model in MODELS])
def test_agrees_with_jax_in_float64(model, integrator):
    params, dt, state = regime(model)
    numba, jax = simulate_both(model, params, dt=dt, n_steps=1000, integrator=integrator,
                               initial_state=state, dtype="float64")
    assert_agree(numba, jax, 1e-9)


def test_both_montbrio_couplings_when_cv_is_swept():
    """With cv = 0 the coupling through V is not computed (c_pop1 is dead); swept, it is."""
    params, dt, state = regime("montbrio")
    params["cv"] = np.linspace(0.0, 1.0, len(SPEEDS))
    numba, jax = simulate_both("montbrio", params, dt=dt, n_steps=1000, initial_state=state)
    assert_agree(numba, jax, 1e-9)


#: float32 against float64 after 1,000 steps. A stable (contracting) run keeps the per-step
#: rounding of ~6e-8 relative from growing: MPR and the 2D oscillator stay within 1e-5 of each
#: variable's range. A Kuramoto phase grows without bound, so every step rounds it at
#: ulp(θ) and the errors add up: up to 1,000 × 2⁻²⁴ ≈ 6e-5 of |θ|, more with the coupling's
#: feedback (measured 1.0e-4).
FLOAT32_RTOL = {"montbrio": 1e-5, "generic2d": 1e-5, "kuramoto": 3e-4}


@pytest.mark.parametrize("model", [same_kernels(model) for model in sorted(FLOAT32_RTOL)])
def test_float32_close_to_float64(model):
    params, dt, state = regime(model)
    options = dict(dt=dt, n_steps=1000, initial_state=state, backend="numba")
    single = nm.simulate(model, CONNECTIVITY, params, dtype="float32", **options)
    double = nm.simulate(model, CONNECTIVITY, params, dtype="float64", **options)
    assert single.data.dtype == np.float32 and single.exposures.dtype == np.float32
    assert max_relative_error_per_variable(single.data, double.data) < FLOAT32_RTOL[model]


@pytest.mark.xdist_group("numba-montbrio")  # see same_kernels
@pytest.mark.parametrize("monitor", ["raw", "subsample:0.5", "temporal_average:0.5",
                                     "temporal_average:0.7"])
def test_monitors_agree_with_jax(monitor):
    params, dt, state = regime("montbrio")
    numba, jax = simulate_both("montbrio", params, dt=dt, n_steps=1003, initial_state=state,
                               monitors=monitor)
    assert numba.monitor == jax.monitor
    assert_agree(numba, jax, 1e-9)


@pytest.mark.xdist_group("numba-generic2d")  # see same_kernels
@pytest.mark.parametrize("variables", ["coupled", "all"])
def test_explicit_initial_history(variables):
    """A past that varies in time (so the delays matter), of the coupled variables only or of
    every state variable, per set."""
    model = nm.load_model("generic2d")
    params, dt, _ = regime("generic2d")
    rows = CONNECTIVITY.max_delay_steps(dt, SPEEDS.min()) + 1
    rng = np.random.default_rng(3)
    history = np.stack([stable_history("generic2d", rows, N, rng) for _ in SPEEDS], axis=-1)
    state = history[-1]
    if variables == "coupled":
        history = history[:, [model.state_names.index(c) for c in model.coupled_variables]]
    numba, jax = simulate_both(model, params, dt=dt, n_steps=1000, initial_state=state,
                               initial_history=history)
    assert_agree(numba, jax, 1e-9)


def test_xml_model_from_a_string():
    model = linear_model()
    params = {"global_coupling": np.linspace(0.0, 0.02, 5), "a": np.linspace(0.5, 1.5, 5),
              "global_speed": np.array([2.0, 2.0, 4.0, 4.0, 4.0])}
    state = np.random.default_rng(1).uniform(-1, 1, (1, N))
    numba, jax = simulate_both(model, params, dt=0.1, n_steps=1000, integrator="rk4",
                               initial_state=state)
    assert_agree(numba, jax, 1e-9)


@pytest.mark.xdist_group("numba-montbrio")  # see same_kernels
def test_sweep_over_speeds_equals_sets_run_one_by_one():
    """Each set of a sweep in which sets differ in speed (grouped into tiles by speed, lanes
    side by side) is the run of that set alone."""
    params, dt, state = regime("montbrio")
    options = dict(dt=dt, n_steps=1000, initial_state=state, backend="numba")
    sweep = nm.simulate("montbrio", CONNECTIVITY, params, **options)
    for p in range(len(SPEEDS)):
        # one-element arrays: the same generated module for every set
        alone = nm.simulate("montbrio", CONNECTIVITY, {k: v[p:p + 1] for k, v in params.items()},
                            **options)
        np.testing.assert_allclose(sweep.data[..., p:p + 1], alone.data, rtol=1e-13, atol=0)


# ============================================================================ noise



@pytest.mark.parametrize("integrator", ["euler", "heun"])
def test_same_seed_same_run_other_seed_other_run(integrator):
    params, dt, state = regime("montbrio")
    options = dict(dt=dt, n_steps=300, initial_state=state, backend="numba",
                   integrator=integrator, noise=1e-3)
    first = nm.simulate("montbrio", CONNECTIVITY, params, seed=5, **options)
    again = nm.simulate("montbrio", CONNECTIVITY, params, seed=5, **options)
    other = nm.simulate("montbrio", CONNECTIVITY, params, seed=6, **options)
    np.testing.assert_array_equal(first.data, again.data)
    assert np.abs(first.data - other.data).max() > 1e-3


def test_ornstein_uhlenbeck_stationary_variance():
    """dx = -θ x dt + sqrt(2 D) dW: stationary variance D / θ (stochastic Heun with dt θ =
    0.05 is within 0.1 % of it; 64 nodes × 8 sets × 300 samples 1 ms apart after 100 ms)."""
    theta, diffusion, dt = 1.0, 0.5, 0.05
    res = nm.simulate(ou_model(), uncoupled_connectivity(64), {"theta": np.full(8, theta)},
                      backend="numba", dt=dt, n_steps=8000, integrator="heun", noise=diffusion,
                      seed=11, initial_state=np.zeros((1, 64)), monitors="subsample:1.0")
    samples = res.data[100:, 0]  # (300, 64, 8)
    assert abs(samples.mean()) < 0.02
    assert samples.var() == pytest.approx(diffusion / theta, rel=0.03)


# ============================================================================ code, cache, limits


def test_generated_source_and_coupling_channels():
    plan = make_plan(nm.load_model("kuramoto"), CONNECTIVITY,
                     {"global_coupling": np.linspace(0, 1, 16)})
    source = numba_backend.generated_source(plan)
    assert "def nm_node(" in source and "def nm_edge(" in source and "nm_sin(" in source
    compile(source, "<generated>", "exec")
    # sin(theta_j - theta) splits: the history holds sin(theta) and cos(theta)
    assert set(_run._lowering(plan, 16).channels) == {"sin(theta)", "cos(theta)"}
    # Montbrio's coupling through V is dead with cv = 0: only r is kept
    montbrio = make_plan(nm.load_model("montbrio"), CONNECTIVITY)
    assert _run._lowering(montbrio, 1).channels == ("r",)
    # the memo on disk gives the same lowering without printing again
    assert _run._lowering(montbrio, 1) == _lower.lower(
        montbrio, 1, header=_run._lowering(montbrio, 1).source.splitlines()[0])


CACHE_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import neuralmass as nm
    res = nm.simulate("kuramoto", nm.Connectivity.default(),
                      {"global_coupling": np.linspace(0, 1, 4)}, backend="numba",
                      n_steps=200, dt=0.1, seed=1)
    print(json.dumps({"checksum": float(np.abs(res.data).sum())}))
""")


@pytest.mark.xdist_group("subprocesses")  # with the other tests that start processes
def test_second_process_loads_the_compiled_code_from_disk(tmp_path):
    """The first start compiles and saves machine code, the second only loads it (Numba's own
    cache log, NUMBA_DEBUG_CACHE, says which; how long each takes is in benchmarks/sweep.py)."""
    environment = dict(os.environ, NEURALMASS_CACHE_DIR=str(tmp_path), NUMBA_DEBUG_CACHE="1")

    def start():
        out = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=environment,
                             capture_output=True, text=True, check=True, timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout

    (first, first_log), (second, second_log) = start(), start()
    assert list((tmp_path / "numba").glob("*.py"))
    assert list((tmp_path / "numba" / "__pycache__").glob("*.nbi"))
    assert second["checksum"] == first["checksum"]
    assert "[cache] data saved" in first_log
    assert "[cache] data loaded" in second_log and "[cache] data saved" not in second_log


def test_memory_check_refuses_before_allocating():
    plan = make_plan(nm.load_model("montbrio"), CONNECTIVITY,
                     {"global_coupling": np.linspace(0, 1, 10_000)}, n_steps=100_000,
                     monitors="raw")
    # refused before compiling (and so before allocating, which comes after)
    with mock.patch.object(_run, "compile_kernels", side_effect=AssertionError("compiled")), \
            pytest.raises(ParameterError, match=r"this run needs ~\S+ GiB \(outputs \S+ GiB: "
                          r"100000 samples × 4 variables × 76 regions × 10000 sets × 8 bytes.*"
                          r"only \S+ GiB are available; use monitors='temporal_average"):
        numba_backend.run(plan)


def test_memory_estimate_message_and_fit():
    estimate = _memory.MemoryEstimate(outputs=3 * 2**30, history=2**30, work=0,
                                      output_shape=(10, 4, 76, 100), itemsize=8)
    _memory.check_memory(estimate, available=5 * 2**30)
    with pytest.raises(ParameterError, match=r"needs ~4 GiB .* only 2 GiB are available"):
        _memory.check_memory(estimate, available=2 * 2**30)


def test_progress_bar(capsys):
    params, dt, state = regime("montbrio")
    res = nm.simulate("montbrio", CONNECTIVITY, params, backend="numba", dt=dt, n_steps=200,
                      initial_state=state, progress=True)
    assert np.isfinite(res.data).all()
    assert "montbrio" in capsys.readouterr().out


def test_ctrl_c_stops_between_calls_with_one_line(monkeypatch):
    """A Ctrl-C (here: an interrupt of the main thread from a worker after its first call)
    stops the run and raises a KeyboardInterrupt without chained tracebacks."""
    original = _run.Prepared.advance_tile
    calls = []

    def advance_then_interrupt(self, t, k_start, k_stop):
        original(self, t, k_start, k_stop)
        if k_stop > k_start:
            calls.append(t)
            if len(calls) == 1:
                _thread.interrupt_main()

    monkeypatch.setattr(_run.Prepared, "advance_tile", advance_then_interrupt)
    plan = make_plan(nm.load_model("montbrio"), CONNECTIVITY,
                     {"global_coupling": np.linspace(0, 0.01, 64)}, n_steps=20_000)
    with pytest.raises(KeyboardInterrupt, match="simulation interrupted after") as caught:
        numba_backend.run(plan)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert len(calls) < 20  # stopped early, not after every tile and step
