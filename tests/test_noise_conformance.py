"""neuralmass's stochastic schemes against tvb-library's ``EulerStochastic`` and
``HeunStochastic`` with ``noise.Additive``, fed the same normal samples.

tvb-library draws its noise with ``random_stream.normal(size=(n_state, N, 1))`` once per step
(``Noise.white``) and scales it by ``sqrt(dt)`` and ``gfun = sqrt(2 nsig)``. Here its
``random_stream`` is a :class:`PhiloxStream` whose k-th call returns neuralmass's sample
``z(seed, k, node, set 0, variable)`` (:func:`neuralmass.random.standard_normal`, which the
backends are pinned to in ``tests/test_noise.py``), so both simulators integrate the same
Wiener increments. Matching tvb-library then pins σ = sqrt(2 D dt) per state variable (each
variable has its own D here, so a transposed layout would show), the single sample shared by
Heun's two stages, and clamping after each stage (MPR's r ≥ 0 is hit, checked below).

Setup as in ``tests/test_conformance_tvb.py``: tvb-data's 76-region connectome (weights
normalised by their maximum), speed 3 mm/ms, 1,000 steps, one identical initial history of
H = max delay + 1 rows, tvb-library's history patched to float64 (its stock float32 coupling
sum alone would differ by ~1e-7 per step, see ``tests/tvb_reference.py``).

Tolerance: 1e-9 relative to each state variable's largest magnitude, float64. The two codes
differ only in the order of floating-point operations (measured ~1e-14, printed with ``-s``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip(
    "tvb.simulator", reason="tvb-library is not installed (install the 'tvb' extra)"
)
pytest.importorskip("tvb_data", reason="tvb-data is not installed (install the 'tvb' extra)")

from helpers import max_relative_error_per_variable, on_one_worker, stable_history  # noqa: E402
from tvb_reference import (  # noqa: E402
    _float64_history,
    _quiet_tvb_logging,
    connectivity_76,
    tvb_horizon,
)

import neuralmass as nm  # noqa: E402
from neuralmass.models import tvb_names  # noqa: E402
from neuralmass.random import standard_normal  # noqa: E402

pytestmark = pytest.mark.tvb

SPEED = 3.0  # mm/ms
N_STEPS = 1000
SEED = 2024
TOLERANCE = 1e-9  # see the module docstring
INTEGRATORS = {"euler": "EulerStochastic", "heun": "HeunStochastic"}

# model -> (dt in ms, parameters (TVB names; global_coupling = the coupling's a),
#           diffusion D per state variable (TVB's nsig))
CASES = {
    # r's noise drives it onto its bound r = 0 (clamped) now and then
    "montbrio": (0.1, dict(global_coupling=0.1, cv=0.5), (0.02, 0.01)),
    # six variables: two Philox blocks of four
    "epileptor": (0.05, dict(global_coupling=1.0, Ks=-0.2, Kf=0.1, Kvf=0.1),
                  (3e-3, 2e-3, 1e-5, 3e-3, 1e-3, 1e-5)),
    "rwongwang": (0.1, dict(global_coupling=0.5), (1e-3, 2e-3)),
}

MEASURED: dict[tuple[str, str, str], float] = {}


class PhiloxStream(np.random.RandomState):
    """tvb-library's ``Noise.random_stream``, returning neuralmass's samples: call k of
    ``normal(size=(n_state, N, 1))`` gives ``z(seed, k, node, 0, variable)``."""

    def __init__(self, seed: int, shape: tuple[int, int, int]):
        super().__init__(0)
        self.philox_seed, self.shape, self.calls = seed, shape, 0

    def normal(self, loc=0.0, scale=1.0, size=None):
        assert (loc, scale, tuple(size)) == (0.0, 1.0, self.shape)
        n_state, n_nodes, _ = self.shape
        z = standard_normal(self.philox_seed, self.calls, np.arange(n_nodes)[None, :], 0,
                            np.arange(n_state)[:, None])
        self.calls += 1
        return z[..., None]


def run_tvb_stochastic(model: str, integrator: str, history: np.ndarray) -> np.ndarray:
    """tvb-library's stochastic run of ``CASES[model]`` from ``history`` (H, n_state, N), row
    H-1 being t = 0: the raw monitor's (N_STEPS, n_state, N) of all state variables."""
    from tvb.datatypes.connectivity import Connectivity
    from tvb.simulator import coupling, integrators, models, monitors, noise, simulator

    _quiet_tvb_logging()
    dt, params, diffusion = CASES[model]
    weights, lengths = connectivity_76()
    model_name, coupling_name = tvb_names(model)
    params = dict(params)
    tvb_model = getattr(models, model_name)(
        **{name: np.array([value]) for name, value in params.items() if name != "global_coupling"})
    tvb_model.variables_of_interest = tuple(tvb_model.state_variables)
    n_state, n_nodes = len(tvb_model.state_variables), weights.shape[0]
    stream = PhiloxStream(SEED, (n_state, n_nodes, 1))
    sim = simulator.Simulator(
        model=tvb_model,
        connectivity=Connectivity(weights=weights, tract_lengths=lengths,
                                  region_labels=np.array([f"r{i}" for i in range(n_nodes)]),
                                  centres=np.zeros((n_nodes, 3)), speed=np.array([SPEED])),
        coupling=getattr(coupling, coupling_name)(a=np.array([params["global_coupling"]])),
        integrator=getattr(integrators, INTEGRATORS[integrator])(
            dt=dt, noise=noise.Additive(nsig=np.array(diffusion), random_stream=stream)),
        monitors=[monitors.Raw()], initial_conditions=history[..., np.newaxis],
        simulation_length=N_STEPS * dt)
    with _float64_history():
        sim.configure()
        (_, data), = sim.run(simulation_length=N_STEPS * dt)
    assert stream.calls >= N_STEPS  # one draw per step (tvb-library may run one step more)
    return data[:N_STEPS, :, :, 0]


@functools.cache
def _history(model: str) -> np.ndarray:
    dt, _, _ = CASES[model]
    weights, lengths = connectivity_76()
    rows = tvb_horizon(lengths, SPEED, dt)
    return stable_history(model, rows, weights.shape[0], np.random.default_rng(4321))


@functools.cache
def _tvb(model: str, integrator: str) -> np.ndarray:
    data = run_tvb_stochastic(model, integrator, _history(model))
    assert np.isfinite(data).all()
    return data


def _neuralmass(model: str, integrator: str, backend: str, **options) -> np.ndarray:
    dt, params, diffusion = CASES[model]
    weights, lengths = connectivity_76()
    options = {"noise": diffusion, "seed": SEED, **options}
    res = nm.simulate(model, nm.Connectivity(weights, lengths, speed=SPEED), params,
                      backend=backend, dt=dt, n_steps=N_STEPS, integrator=integrator,
                      initial_history=_history(model), **options)
    return res.data[..., 0]


@pytest.fixture(scope="module", autouse=True)
def conformance_table():
    """Print the measured errors as a table after the module (visible with ``-s``)."""
    yield
    if MEASURED:
        lines = ["", "tvb-library stochastic conformance (same normals): max relative error per "
                     f"state variable ({N_STEPS} steps, float64, tolerance {TOLERANCE:g})",
                 f"{'model':<11} {'integrator':<10} {'backend':<8} max rel. error"]
        lines += [f"{m:<11} {i:<10} {b:<8} {e:.2e}" for (m, i, b), e in sorted(MEASURED.items())]
        print("\n".join(lines))


@pytest.mark.parametrize("integrator", sorted(INTEGRATORS))
@pytest.mark.parametrize("model", [on_one_worker(f"noise-conformance-{model}", model)
                                   for model in sorted(CASES)])
def test_stochastic_run_matches_tvb_library(model, integrator, backend):
    reference = _tvb(model, integrator)
    error = max_relative_error_per_variable(_neuralmass(model, integrator, backend), reference)
    MEASURED[(model, integrator, backend)] = error
    assert error <= TOLERANCE, (
        f"{model}/{integrator}/{backend}: max relative error {error:.3e} > {TOLERANCE:g}")


@pytest.mark.parametrize("integrator", [on_one_worker("noise-conformance-montbrio", integrator)
                                        for integrator in sorted(INTEGRATORS)])
def test_the_comparison_pins_the_noise(integrator):
    """The match is not vacuous: MPR's r hits its bound (clamped to 0), and another seed, or
    σ = sqrt(D dt) instead of sqrt(2 D dt), differs from tvb-library's run by far more than the
    tolerance."""
    reference = _tvb("montbrio", integrator)
    assert np.sum(reference[:, 0] == 0.0) > 0  # r clamped at 0
    _, _, diffusion = CASES["montbrio"]
    for options in ({"seed": SEED + 1}, {"noise": tuple(d / 2 for d in diffusion)}):
        other = _neuralmass("montbrio", integrator, "jax", **options)
        assert max_relative_error_per_variable(other, reference) > 1e4 * TOLERANCE
