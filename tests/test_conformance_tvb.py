"""neuralmass against tvb-library itself: every bundled model × {Heun, Euler} × backend.

Setup (the same for both simulators): tvb-data's 76-region connectome normalised by its
maximum weight, speed 3 mm/ms, 1,000 steps of dt = 0.1 ms (0.05 ms for the Epileptor, as in
TVB's epilepsy demos), and one identical initial history of H = max delay + 1 rows (TVB's
horizon, ``tvb_horizon``; row H-1 is t = 0) of all state variables, every row drawn
independently near the model's attractor so that the delayed values differ from the current
ones. Parameters are chosen so that the long-range coupling changes the trajectories (checked
below, not assumed).

Tolerance: max relative error ≤ 1e-6 per state variable, in float64. Stock tvb-library
computes the coupling sum in float32 (its history buffer is declared ``'f'``), which alone
gives 1e-8 to 1e-5 relative after 1,000 steps; ``tests/tvb_reference.run_tvb`` patches that
buffer to float64 (``/work/shared/tvb-conventions.md``), after which the two codes differ only
by the order of floating-point operations: measured agreement is ~1e-15 to 1e-14. 1e-6 leaves
room for rounding to be amplified by the dynamics on other machines, yet is far below the
real differences ``test_coupling_matters`` measures: dropping the coupling changes the runs
by 9e-2 to 26 relative, shifting the history by one step (a delay off by one) by 3e-4
(Generic2dOscillator) to 1e-2.

Run with ``pytest -s tests/test_conformance_tvb.py`` to print the measured table.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip(
    "tvb.simulator", reason="tvb-library is not installed (install the 'tvb' extra)"
)
pytest.importorskip("tvb_data", reason="tvb-data is not installed (install the 'tvb' extra)")

from helpers import max_relative_error_per_variable, stable_history  # noqa: E402
from tvb_reference import connectivity_76, run_tvb, tvb_horizon  # noqa: E402

import neuralmass as nm  # noqa: E402

pytestmark = pytest.mark.tvb

SPEED = 3.0  # mm/ms
N_STEPS = 1000
TOLERANCE = 1e-6  # see the module docstring

# model -> (dt in ms, parameters: TVB names, global_coupling = the coupling function's a)
CASES = {
    "kuramoto": (0.1, dict(global_coupling=0.1)),
    # cv > 0 so that both coupling terms (through r and through V) act
    "montbrio": (0.1, dict(global_coupling=0.1, cv=0.5)),
    "generic2d": (0.1, dict(global_coupling=0.05)),
    "rwongwang": (0.1, dict(global_coupling=0.5)),
    # TVB's epilepsy demo coupling (Ks, Kf) plus Kvf so all three coupling paths act
    "epileptor": (0.05, dict(global_coupling=1.0, Ks=-0.2, Kf=0.1, Kvf=0.1)),
}
INTEGRATORS = ("heun", "euler")

MEASURED: dict[tuple[str, str, str], float] = {}


@pytest.fixture(scope="module", autouse=True)
def conformance_table():
    """Print the measured errors as a table after the module (visible with ``-s``)."""
    yield
    if MEASURED:
        lines = ["", "tvb-library conformance: max relative error per state variable "
                     f"({N_STEPS} steps, float64, tolerance {TOLERANCE:g})",
                 f"{'model':<11} {'integrator':<10} {'backend':<8} max rel. error"]
        lines += [f"{m:<11} {i:<10} {b:<8} {e:.2e}" for (m, i, b), e in sorted(MEASURED.items())]
        print("\n".join(lines))


@functools.cache
def _connectome():
    weights, lengths = connectivity_76()
    return weights, lengths


@functools.cache
def _history(model: str) -> np.ndarray:
    dt, _ = CASES[model]
    weights, lengths = _connectome()
    rows = tvb_horizon(lengths, SPEED, dt)
    return stable_history(model, rows, weights.shape[0], np.random.default_rng(1234))


@functools.cache
def _tvb(model: str, integrator: str) -> np.ndarray:
    dt, params = CASES[model]
    weights, lengths = _connectome()
    time, data = run_tvb(model, weights, lengths, speed=SPEED, dt=dt, n_steps=N_STEPS,
                         integrator=integrator, initial_history=_history(model), params=params)
    assert np.isfinite(data).all()
    return data


def _neuralmass(model: str, integrator: str, backend: str, **overrides) -> nm.Result:
    dt, params = CASES[model]
    weights, lengths = _connectome()
    return nm.simulate(model, nm.Connectivity(weights, lengths, speed=SPEED),
                       {**params, **overrides}, backend=backend, dt=dt, n_steps=N_STEPS,
                       integrator=integrator, initial_history=_history(model))


@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("model", sorted(CASES))
def test_matches_tvb_library(model, integrator, backend):
    dt, _ = CASES[model]
    reference = _tvb(model, integrator)
    res = _neuralmass(model, integrator, backend)
    assert res.data.shape == (N_STEPS,) + reference.shape[1:] + (1,)
    np.testing.assert_allclose(res.time, dt * np.arange(1, N_STEPS + 1), rtol=1e-12)
    error = max_relative_error_per_variable(res.data[..., 0], reference)
    MEASURED[(model, integrator, backend)] = error
    assert error <= TOLERANCE, (
        f"{model}/{integrator}/{backend}: max relative error {error:.3e} > {TOLERANCE:g}")


@pytest.mark.parametrize("model", sorted(CASES))
def test_coupling_matters(model):
    """The comparison is meaningful: without coupling (global_coupling = 0), or for MPR
    without the V coupling (cv = 0), the run differs from TVB's coupled one by far more than
    the tolerance (measured ≥ 9e-2). A one-step shift of the past (every delay off by one)
    differs by more than 100× the tolerance (measured 3e-4 to 1e-2)."""
    reference = _tvb(model, "heun")
    uncoupled = _neuralmass(model, "heun", "jax", global_coupling=0.0)
    assert max_relative_error_per_variable(uncoupled.data[..., 0], reference) > 1e3 * TOLERANCE
    if model == "montbrio":
        no_cv = _neuralmass(model, "heun", "jax", cv=0.0)
        assert max_relative_error_per_variable(no_cv.data[..., 0], reference) > 1e3 * TOLERANCE
    dt, params = CASES[model]
    weights, lengths = _connectome()
    history = _history(model)
    shifted = np.concatenate([history[:1], history[:-1]])  # x(t - dt) where x(t) was
    shifted[-1] = history[-1]  # same initial state
    res = nm.simulate(model, nm.Connectivity(weights, lengths, speed=SPEED), params, dt=dt,
                      n_steps=N_STEPS, integrator="heun", initial_history=shifted)
    assert max_relative_error_per_variable(res.data[..., 0], reference) > 1e2 * TOLERANCE
