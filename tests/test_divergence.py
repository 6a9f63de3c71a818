"""Divergence: a NaN is never hidden (bounded state variables included), and a sweep in which
some parameter sets diverge keeps the others, on every backend (issue 8, sections 1 and 3).

The CUDA backend runs here as its host emulation: the printed kernel compiled as C++ and
driven by the same host loop (``cuda.emulate``), swapped in for ``cuda.run``.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from helpers import available_backends

import neuralmass as nm
from neuralmass.backends import cuda
from neuralmass.errors import DivergenceWarning, ParameterError, SimulationError

#: ``x`` bounded to [0, 1] with ``dx = sqrt(x - b)``: NaN at the first step when x < b (b = 2),
#: where a clamp printed as ``max(0, nan)`` would give 0. ``y`` unbounded with
#: ``dy = g y + c_pop0`` (linear coupling on y): for g = 1000 Euler multiplies y by
#: 1 + g dt = 101 per step until it overflows.
BOUNDED_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="a bounded x that turns NaN for b > 1, a y that overflows for g > 0">
    <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.0"/>
        <Parameter name="global_speed" dimension="1.0, 10.0"/>
        <Constant name="b" value="-1.0"/>
        <Constant name="g" value="-1.0"/>
        <Exposure name="total" dimension="x + y"/>
        <Dynamics>
            <StateVariable name="x" dimension="0.0, 1.0" exposure="0.0, 1.0"/>
            <StateVariable name="y" dimension="-1.0, 1.0"/>
            <TimeDerivative variable="dx" value="sqrt(x - b)"/>
            <TimeDerivative variable="dy" value="g * y + c_pop0"/>
        </Dynamics>
    </ComponentType>
    <ComponentType name="coupling_y">
        <Parameter name="y_j" dimension="1"/>
        <DerivedParameter name="c_pop0" value="global_coupling"/>
        <Dynamics>
            <DerivedVariable name="pre" value="y_j"/>
        </Dynamics>
    </ComponentType>
</Lems>
"""

DT = 0.1
N_STEPS = 200
#: the sweep: set 0 and 3 stay finite (coupled, with delays), set 1 is NaN at step 1 (x),
#: set 2 overflows (y, uncoupled so that its first inf step is known exactly)
SWEEP = {"b": np.array([-1.0, 2.0, -1.0, -1.0]), "g": np.array([-1.0, -1.0, 1000.0, -0.5]),
         "global_coupling": np.array([0.3, 0.3, 0.0, 0.2])}
FINITE = np.array([0, 3])
BACKENDS = [*available_backends(), "cuda"]


def bounded_model() -> nm.Model:
    return nm.lems.loads(BOUNDED_XML, filename="bounded.xml")


def delayed_ring(n_regions: int = 3) -> nm.Connectivity:
    """Each node driven by the previous one through a 2.5 mm tract (speed 1 mm/ms, dt 0.1 ms:
    25-step delays)."""
    weights = np.roll(np.eye(n_regions), 1, axis=1)
    return nm.Connectivity(weights, 2.5 * weights, speed=1.0)


def first_overflow_step() -> int:
    """The Euler step n at which y = 101**n (y0 = 1) first overflows float64, in NumPy."""
    with np.errstate(over="ignore"):
        growth = np.float64(101.0) ** np.arange(1, 400, dtype=np.float64)
    return int(np.flatnonzero(~np.isfinite(growth))[0]) + 1


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch) -> str:
    """JAX, Numba (where it imports) and the emulated CUDA kernel behind ``backend="cuda"``."""
    if request.param == "cuda":
        monkeypatch.setattr(cuda, "run", functools.partial(cuda.emulate, block=2))
    return request.param


def _simulate(backend, params, **options):
    options = {"dt": DT, "n_steps": N_STEPS, "integrator": "euler", "dtype": "float64",
               "initial_state": np.array([[0.5, 0.4, 0.3], [1.0, 1.0, 1.0]]), **options}
    return nm.simulate(bounded_model(), delayed_ring(), params, backend=backend, **options)


@pytest.mark.parametrize("integrator", ["euler", "heun"])
def test_a_bounded_state_variable_does_not_hide_nan(backend, integrator):
    """sqrt(x - 2) of x in [0, 1] is NaN: the clamp must keep it NaN, after every stage. The
    finite set (b = -1) grows until its bound 1 holds it: the clamp still clamps."""
    with pytest.warns(DivergenceWarning):
        res = _simulate(backend, {"b": np.array([-1.0, 2.0])}, integrator=integrator)
    np.testing.assert_array_equal(res.diverged, [False, True])
    np.testing.assert_array_equal(res.first_nonfinite_step, [-1, 1])
    assert np.isnan(res.data[..., 1]).all() and np.isnan(res.exposures[..., 1]).all()
    assert np.isfinite(res.data[..., 0]).all()
    np.testing.assert_array_equal(res.state("x")[-1, :, 0], 1.0)  # held at its upper bound
    with pytest.raises(SimulationError, match=r"first non-finite value \(nan\) at step 1 "
                       r"\(t = 0.1 ms\), state variable 'x', region 0 \(r0\), parameter set 1 "
                       r"\(b=2\)"):
        _simulate(backend, {"b": np.array([-1.0, 2.0])}, integrator=integrator,
                  on_divergence="raise")


def test_a_partly_diverging_sweep_keeps_the_finite_sets(backend):
    """The finite sets of the sweep equal the same sets run alone to 1e-12 relative in float64
    (the sets share nothing, so they agree to rounding: any leak of a NaN would show as NaN);
    each diverged set is NaN from its first non-finite step on: step 1 for set 1, the NumPy
    overflow step of 101**n for set 2."""
    with pytest.warns(DivergenceWarning, match=r"2 of 4 parameter sets diverged .* the first: "
                      r"first non-finite value \(nan\) at step 1 \(t = 0.1 ms\), state "
                      r"variable 'x', region 0 \(r0\), parameter set 1 \(global_coupling=0.3, "
                      r"b=2, g=-1\)"):
        res = _simulate(backend, SWEEP)
    alone = _simulate(backend, {k: v[FINITE] for k, v in SWEEP.items()})
    overflow = first_overflow_step()
    np.testing.assert_array_equal(res.diverged, [False, True, True, False])
    np.testing.assert_array_equal(res.first_nonfinite_step, [-1, 1, overflow, -1])
    assert alone.diverged.sum() == 0
    np.testing.assert_allclose(res.data[..., FINITE], alone.data, rtol=1e-12, atol=0)
    np.testing.assert_allclose(res.exposures[..., FINITE], alone.exposures, rtol=1e-12, atol=0)
    assert np.ptp(alone.state("y")) > 0.1  # the finite sets do move (coupled, delayed)
    # set 2: finite before its overflow step, NaN from it on (raw: sample n - 1 is step n)
    assert np.isfinite(res.data[:overflow - 1, ..., 2]).all()
    assert np.isnan(res.data[overflow - 1:, ..., 2]).all()
    assert np.isnan(res.exposures[overflow - 1:, ..., 2]).all()


def test_a_monitor_is_nan_from_the_sample_of_the_first_nonfinite_step(backend):
    """Subsampled every 10 steps: NaN from the sample whose window holds the overflow step;
    every backend records the exact step, not the sample's."""
    overflow = first_overflow_step()
    every = 10
    sample = (overflow - 1) // every
    params = {k: v[2:] for k, v in SWEEP.items()}  # the overflowing set and a finite one
    with pytest.warns(DivergenceWarning, match=r"1 of 2 parameter sets diverged .* sample "
                      rf"{sample} \(subsample, steps {sample * every + 1}-{(sample + 1) * every}"):
        res = _simulate(backend, params, monitors=f"subsample:{every * DT}")
    step = res.first_nonfinite_step[0]
    assert overflow % every != 1  # not the window's first step: the samples alone cannot tell
    assert step == overflow and res.first_nonfinite_step[1] == -1
    assert np.isfinite(res.data[:sample, ..., 0]).all()
    assert np.isnan(res.data[sample:, ..., 0]).all()
    assert np.isfinite(res.data[..., 1]).all()


def test_ignore_is_silent_and_a_bad_choice_is_named():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = _simulate("jax", SWEEP, on_divergence="ignore")
    np.testing.assert_array_equal(res.diverged, [False, True, True, False])
    assert np.isnan(res.data[..., 1]).all()
    with pytest.raises(ParameterError, match="on_divergence must be one of 'warn', 'raise', "
                                             "'ignore', but got 'skip'"):
        _simulate("jax", SWEEP, on_divergence="skip")


def test_finite_runs_report_no_divergence_and_save_it(tmp_path):
    res = _simulate("jax", {k: v[FINITE] for k, v in SWEEP.items()})
    np.testing.assert_array_equal(res.diverged, [False, False])
    np.testing.assert_array_equal(res.first_nonfinite_step, [-1, -1])
    res.save(tmp_path / "run.npz")
    saved = nm.load_result(tmp_path / "run.npz")
    np.testing.assert_array_equal(saved.diverged, [False, False])
    np.testing.assert_array_equal(saved.first_nonfinite_step, [-1, -1])


def test_traced_runs_skip_the_bookkeeping(jax_x64):
    """Under jax.jit and jax.grad the values are tracers: no check, the fields are None, and
    the gradient (d/dG of the final y summed) is finite."""
    import jax

    def final_y(coupling):
        res = nm.simulate(bounded_model(), delayed_ring(), {"global_coupling": coupling},
                          backend="jax", dt=DT, n_steps=50, integrator="euler",
                          initial_state=np.array([[0.5, 0.4, 0.3], [1.0, 1.0, 1.0]]))
        return res

    traced = jax.jit(final_y)(0.3)
    assert traced.diverged is None and traced.first_nonfinite_step is None
    gradient = jax.grad(lambda c: final_y(c).state("y")[-1].sum())(0.3)
    assert np.isfinite(gradient) and gradient != 0


def test_the_cli_reports_divergence_and_still_writes(tmp_path):
    from typer.testing import CliRunner

    from neuralmass.cli import app

    model = tmp_path / "bounded.xml"
    model.write_text(BOUNDED_XML)
    output = tmp_path / "sweep.npz"
    result = CliRunner().invoke(app, ["run", str(model), "--grid", "b=-1:2:2", "--steps", "20",
                                      "--backend", "jax", "--monitor", "raw", "-o",
                                      str(output)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 of 2 parameter sets diverged" in text, text
    assert "step 1 (t = 0.1 ms), state variable 'x'" in text and "parameter set 1 (b=2)" in text
    saved = nm.load_result(output)
    np.testing.assert_array_equal(saved.diverged, [False, True])
    assert np.isnan(saved.data[..., 1]).all() and np.isfinite(saved.data[..., 0]).all()
