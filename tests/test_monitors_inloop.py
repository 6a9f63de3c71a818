"""Several monitors in one run, and the in-loop BOLD and Balloon monitors, on every backend.

- In-loop BOLD (``"bold:PERIOD"``, every HRF kernel) equals the offline
  :func:`neuralmass.metrics.bold_hrf` of the same run's raw trajectory, and in-loop Balloon
  (every preset) equals :func:`neuralmass.metrics.bold_balloon`: float64, 1e-10 relative, on
  JAX, Numba and the CUDA kernel (host emulation). They differ in summation order only (a
  5000-term dot product per sample against an FFT convolution; SymPy's refolding of the
  Balloon Heun step in the CUDA source): measured 1e-15 to 2e-13.
- The ring of 4-ms bins wraps (runs longer than the 20-s kernel) exactly as the offline
  function's zero-padded convolution.
- End to end against tvb-library: a real ``Simulator`` (Generic2dOscillator, 4 nodes, delays,
  Heun, float64 history) with ``Raw`` and ``Bold`` monitors against neuralmass's run of the
  same network with ``("raw", "bold:100")``: same sample times, BOLD to 1e-10 relative
  (measured 6e-16: a polynomial model, so the trajectories agree to rounding).
- Several monitors in one run give what each gives alone (1e-12 relative; the same
  arithmetic in the same order, measured 0), in the order asked, each with its own time axis.
- Bad monitor specifications raise ParameterError naming what is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import linear_model, max_relative_error
from tvb_reference import _float64_history, _quiet_tvb_logging, tvb_horizon

import neuralmass as nm
from neuralmass.backends import get_backend
from neuralmass.errors import ParameterError
from neuralmass.monitors import Balloon, Bold
from neuralmass.plan import make_plan

BACKENDS = ["numba", "jax", "cuda"]
KERNELS = ("first_order_volterra", "gamma", "double_exponential", "mixture_of_gammas")
PRESETS = ("friston2003", "stephan2007", "tvb")
TOLERANCE = 1e-10  # float64, summation order only (module docstring)


def _network(n: int = 4, seed: int = 1) -> nm.Connectivity:
    rng = np.random.default_rng(seed)
    weights = rng.random((n, n))
    np.fill_diagonal(weights, 0.0)
    return nm.Connectivity(weights, 20.0 * weights + 5.0)


def _run(backend: str, model: str, monitors, **kwargs) -> tuple:
    """Per monitor ``(states, exposures)`` of one run (``(bold, None)`` for BOLD/Balloon)."""
    model = model if isinstance(model, nm.Model) else nm.load_model(model)
    plan = make_plan(model, kwargs.pop("connectivity", _network()),
                     kwargs.pop("params", {"global_coupling": np.array([0.05, 0.2])}),
                     monitors=monitors, dtype="float64", **kwargs)
    if backend == "cuda":
        from neuralmass.backends.cuda import emulate

        states, exposures = emulate(plan, chunk_samples=7)
    else:
        states, exposures = get_backend(backend).run(plan)
    if len(plan.monitors) == 1:
        return ((states, exposures),)
    return tuple(zip(states, exposures, strict=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_inloop_bold_and_balloon_equal_offline(backend):
    """Every kernel and preset, each on a different variable and period, in one run of 1.2 s
    at dt = 1 ms (noisy, so the signal fluctuates) against the offline functions."""
    monitors = ("raw",
                *(Bold(period, kernel=kernel, variables=variables) for kernel, period, variables
                  in zip(KERNELS, (100.0, 200.0, 100.0, 300.0),
                         (None, ("W",), ("V",), ("W", "V")), strict=True)),
                *(Balloon(period, preset=preset, variables=variables) for preset, period, variables
                  in zip(PRESETS, (100.0, 50.0, 200.0), (None, ("W",), ("V",)), strict=True)))
    outputs = _run(backend, "generic2d", monitors, dt=1.0, n_steps=1200, noise=1e-3)
    raw = outputs[0][0]
    names = ("V", "W")
    for monitor, (bold, _) in zip(monitors[1:], outputs[1:], strict=True):
        variables = monitor.variables or names
        assert bold.shape == (1200 // round(monitor.period), len(variables), 4, 2)
        for row, name in enumerate(variables):
            signal = raw[:, names.index(name)]
            if isinstance(monitor, Bold):
                _, expected = nm.metrics.bold_hrf(signal, 1.0, monitor.period, monitor.kernel)
            else:
                _, expected = nm.metrics.bold_balloon(signal, 1.0, monitor.period, monitor.preset)
            assert max_relative_error(bold[:, row], expected) < TOLERANCE, (monitor, name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bold_ring_wraps_after_the_kernel_length(backend):
    """21 s at dt = 4 ms (one step per 4-ms bin): the last two samples (20.3 s, 21 s) weigh
    a ring that has wrapped; a slow linear relaxation with noise keeps the signal moving."""
    outputs = _run(backend, linear_model(), ("raw", "bold:700", Bold(700.0, kernel="gamma")),
                   params={"global_coupling": np.array([0.0, 0.01]), "a": 0.02},
                   dt=4.0, n_steps=5250, noise=1e-2)
    raw = outputs[0][0][:, 0]
    for kernel, (bold, _) in zip(("first_order_volterra", "gamma"), outputs[1:], strict=True):
        _, expected = nm.metrics.bold_hrf(raw, 4.0, 700.0, kernel)
        assert bold.shape == (30, 1, 4, 2)
        assert max_relative_error(bold[:, 0], expected) < TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_monitors_equal_each_alone(backend):
    monitors = ("temporal_average:2", "subsample:3", "raw", "bold:100",
                Balloon(50.0, preset="tvb", variables=("V",)))
    kwargs = dict(dt=1.0, n_steps=400, noise=1e-3)
    together = _run(backend, "generic2d", monitors, **kwargs)
    assert len(together) == len(monitors)
    for monitor, (states, exposures) in zip(monitors, together, strict=True):
        (alone_states, alone_exposures), = _run(backend, "generic2d", (monitor,), **kwargs)
        assert states.shape == alone_states.shape
        assert max_relative_error(states, alone_states) <= 1e-12
        if alone_exposures is not None:
            assert max_relative_error(exposures, alone_exposures) <= 1e-12


@pytest.mark.parametrize("backend", ["numba", "jax"])
def test_simulate_returns_a_tuple_of_results(backend, tmp_path):
    """One Result per monitor, in order, each with its own time axis, names, divergence
    fields and metadata; a 1-tuple gives a Result; a BOLD Result saves and loads."""
    conn = _network()
    results = nm.simulate("generic2d", conn, {"global_coupling": np.array([0.05, 0.2])},
                          backend=backend, dt=1.0, n_steps=400,
                          monitors=("temporal_average:2", "bold:100", "balloon:50"))
    assert isinstance(results, tuple) and len(results) == 3
    tavg, bold, balloon = results
    assert (tavg.monitor, bold.monitor, balloon.monitor) == ("temporal_average", "bold",
                                                             "balloon")
    np.testing.assert_allclose(tavg.time, np.arange(200) * 2.0 + 1.0)
    np.testing.assert_allclose(bold.time, [100.0, 200.0, 300.0, 400.0])
    np.testing.assert_allclose(balloon.time, np.arange(1, 9) * 50.0)
    # every state variable; the exposure V (= state V) is the BOLD of V, copied
    assert bold.state_names == ("V", "W") and bold.exposure_names == ("V",)
    np.testing.assert_array_equal(bold.exposure("V"), bold.state("V"))
    for res in results:
        assert res.diverged.tolist() == [False, False]
        assert res.first_nonfinite_step.tolist() == [-1, -1]
    path = tmp_path / "bold.nc"
    bold.save(path)
    loaded = nm.load_result(path)
    np.testing.assert_array_equal(loaded.data, bold.data)
    assert loaded.monitor == "bold" and loaded.state_names == ("V", "W")
    assert set(bold.to_xarray().data_vars) == {"V", "W", "diverged", "first_nonfinite_step"}
    single = nm.simulate("generic2d", conn, {"global_coupling": 0.05}, backend=backend,
                         dt=1.0, n_steps=400, monitors=("bold:100",))
    assert isinstance(single, nm.Result)
    np.testing.assert_array_equal(single.data[..., 0], bold.data[..., 0])


def test_bold_of_chosen_variables_and_exposures():
    """``variables`` picks state variables and exposures; a non-trivial exposure's BOLD is
    the offline BOLD of that exposure."""
    raw, bold = nm.simulate("montbrio", _network(), backend="numba", dt=0.1, n_steps=2000,
                            monitors=("raw", Bold(100.0, variables=("V", "r"))))
    assert bold.state_names == ("V", "r") and np.isfinite(raw.data).all()
    for name in ("r", "V"):
        _, expected = nm.metrics.bold_hrf(raw.state(name), 0.1, 100.0)
        assert max_relative_error(bold.state(name), expected) < TOLERANCE
    name = "twice_x_plus_a"  # 2 x + a
    raw, bold = nm.simulate(linear_model(), _network(), backend="numba", dt=0.5, n_steps=800,
                            noise=1e-3, monitors=("raw", Bold(100.0, variables=(name,))))
    assert bold.state_names == () and bold.exposure_names == (name,)
    _, expected = nm.metrics.bold_hrf(raw.exposure(name), 0.5, 100.0)
    assert max_relative_error(bold.exposure(name), expected) < TOLERANCE


@pytest.mark.tvb
@pytest.mark.parametrize("backend", ["numba", "jax"])
def test_bold_matches_tvb_simulator(backend):
    """tvb-library's Simulator with Raw and Bold(period=100) monitors (the default
    first-order Volterra kernel) against neuralmass's in-loop BOLD of the same network.
    TVB's clock starts at (H - 1) dt and its monitors fire on multiples of their step counts,
    so the longest delay is chosen as 200 steps (a multiple of the 8-step bin and the 200-step
    period): both then bin and sample the same steps."""
    pytest.importorskip("tvb.simulator")
    from tvb.datatypes import equations
    from tvb.datatypes.connectivity import Connectivity
    from tvb.simulator import coupling, integrators, models, monitors, simulator

    rng = np.random.default_rng(0)
    n, dt, speed, period, n_steps = 4, 0.5, 1.0, 100.0, 2400
    weights = rng.random((n, n))
    np.fill_diagonal(weights, 0.0)
    lengths = rng.uniform(10.0, 100.0, (n, n))
    lengths[0, 1] = 100.0  # 200 steps
    np.fill_diagonal(lengths, 0.0)
    horizon = tvb_horizon(lengths, speed, dt)
    assert horizon - 1 == 200
    history = rng.uniform(-1.0, 1.0, (horizon, 2, n))
    _quiet_tvb_logging()
    model = models.Generic2dOscillator()
    model.variables_of_interest = ("V", "W")
    sim = simulator.Simulator(
        model=model,
        connectivity=Connectivity(weights=weights, tract_lengths=lengths,
                                  region_labels=np.array([f"r{i}" for i in range(n)]),
                                  centres=np.zeros((n, 3)), speed=np.array([speed])),
        coupling=coupling.Linear(a=np.array([0.1])),
        integrator=integrators.HeunDeterministic(dt=dt),
        monitors=[monitors.Bold(period=period, hrf_kernel=equations.FirstOrderVolterra())],
        initial_conditions=history[..., None], simulation_length=n_steps * dt)
    with _float64_history():
        sim.configure()
        (tvb_time, tvb_bold), = sim.run()
    res = nm.simulate("generic2d", nm.Connectivity(weights, lengths, speed=speed),
                      {"global_coupling": 0.1}, backend=backend, dt=dt, n_steps=n_steps,
                      initial_history=history, monitors=f"bold:{period}")
    assert res.data.shape == (n_steps // 200, 2, n, 1)
    np.testing.assert_allclose(res.time, tvb_time[:len(res.time)] - (horizon - 1) * dt,
                               rtol=1e-12)
    assert max_relative_error(res.data[..., 0], tvb_bold[:len(res.time), :, :, 0]) < TOLERANCE


def test_bold_monitor_is_differentiable(jax_x64):
    """d(sum of BOLD)/d(global_coupling) through ``simulate`` equals a central difference
    (step 1e-5, truncation ~1e-10) to 1e-6 relative."""
    import jax

    conn = _network()

    def total(g):
        res = nm.simulate("generic2d", conn, {"global_coupling": g}, backend="jax", dt=1.0,
                          n_steps=300, monitors=("bold:100", Balloon(100.0)))
        return sum(jax.numpy.sum(r.data) for r in res)

    grad = jax.grad(total)(0.1)
    h = 1e-5
    numeric = (total(0.1 + h) - total(0.1 - h)) / (2 * h)
    assert abs(grad - numeric) < 1e-6 * abs(numeric)


@pytest.mark.parametrize("monitors, match", [
    ("bold:abc", "unknown monitor"),
    ("bold:0", "bold period must be a positive multiple"),
    ("bold:0.75", "bold period must be a positive multiple"),
    (Bold(200.0), "n_steps=100 is shorter"),
    (Bold(100.0, kernel="boxcar"), "kernel must be"),
    (Balloon(100.0, preset="nope"), "preset must"),
    (Bold(100.0, variables=("X",)), "variable 'X' is neither"),
    (Bold(100.0, variables=()), "at least one"),
    (Balloon(100.0, variables=("V", "V")), "twice"),
    ((), "at least one monitor"),
    (("raw", "bold:0.75"), "bold period"),
])
def test_bad_monitor_specs(monitors, match):
    with pytest.raises(ParameterError, match=match):
        make_plan(nm.load_model("generic2d"), _network(), dt=0.5, n_steps=100,
                  monitors=monitors)


def test_bold_needs_dt_dividing_4_ms():
    with pytest.raises(ParameterError, match="4-ms BOLD bin"):
        make_plan(nm.load_model("generic2d"), _network(), dt=0.3, n_steps=10_000,
                  monitors="bold:600")


@pytest.mark.nvcc
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernel_with_every_monitor_compiles_with_nvcc(dtype, tmp_path):
    """The kernel of a run with every kind of monitor compiles for sm_90 without warnings."""
    import shutil
    import subprocess

    from neuralmass.backends import cuda

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on the PATH (install the CUDA toolkit to check the kernels)")
    plan = make_plan(nm.load_model("generic2d"), _network(), dt=0.5, n_steps=400, dtype=dtype,
                     noise=1e-3, monitors=("raw", "subsample:2", "tavg:1", "bold:100",
                                           Bold(100.0, kernel="gamma", variables=("W",)),
                                           Balloon(50.0, preset="stephan2007")))
    source = tmp_path / "kernel.cu"
    source.write_text(cuda.build_kernel(plan).source)
    result = subprocess.run(["nvcc", "-cubin", "-arch=sm_90", "-std=c++17", str(source), "-o",
                             str(tmp_path / "kernel.cubin")], capture_output=True, text=True)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
