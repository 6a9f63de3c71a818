"""The catalogue of tvb-library models, each against tvb-library itself, and its names.

As ``test_conformance_tvb.py``: tvb-data's 76-region connectome normalised by its maximum
weight, delays at 3 mm/ms, Heun, 1,000 steps, one identical initial history of H = max delay + 1
rows (each row drawn independently around a point of the model's phase space, so that the
delayed values differ from the current ones), float64 coupling in tvb-library
(``tvb_reference.run_tvb``). Tolerance: max relative error <= 1e-6 per state variable, the
same as for the five original models and for the same reason (the two codes differ only by the
order of floating-point operations; measured ~1e-15 to 1e-13). ``test_coupling_matters`` checks
that the coupling changes each run by far more than that tolerance.

Run with ``pytest -s tests/test_catalogue_tvb.py`` to print the measured table.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import max_relative_error_per_variable, on_one_worker

import neuralmass as nm
from neuralmass.models import available, load_model, snake_case, tvb_names

SPEED = 3.0  # mm/ms
N_STEPS = 1000
TOLERANCE = 1e-6  # see the module docstring

# model -> (dt in ms, parameters (TVB names; global_coupling = the coupling's a),
#           centre and half-width of the initial history per state variable)
CASES = {
    "linear": (0.1, dict(global_coupling=0.1), (0.0,), (1.0,)),
    "hopfield": (0.1, dict(global_coupling=0.5), (0.5, 0.5), (0.5, 0.5)),
    "sup_hopf": (0.1, dict(global_coupling=0.1), (0.0, 0.0), (1.0, 1.0)),
    "coombes_byrne2d": (0.01, dict(global_coupling=0.1), (0.5, -0.5), (0.2, 0.3)),
    "reduced_wong_wang": (0.1, dict(global_coupling=0.5), (0.5,), (0.5,)),
    "wilson_cowan": (0.1, dict(global_coupling=0.5), (0.5, 0.5), (0.5, 0.5)),
    "coombes_byrne": (0.01, dict(global_coupling=0.1), (1.0, 0.0, 1.5, 0.1), (0.5, 1.0, 0.5, 0.5)),
    # M_i = 1.5: with TVB's M_i = 1 it is ReducedWongWangExcInh (rwongwang) again
    "deco_balanced_exc_inh": (0.1, dict(global_coupling=1.0, M_i=1.5), (0.5, 0.5), (0.5, 0.5)),
    "dumont_gutkin": (0.01, dict(global_coupling=0.1), (0.5, -0.5, 0.0, 0.0, 0.5, -0.5, 0.0, 0.0),
                      (0.3, 1.0, 0.5, 0.5, 0.3, 1.0, 0.5, 0.5)),
    # cv = 0.5: both of TVB's coupling terms (r and V) are exercised
    "gast_schmidt_knosche_sd": (0.01, dict(global_coupling=0.1, cv=0.5), (1.0, -1.0, 0.2, 0.0),
                                (0.5, 1.0, 0.2, 0.2)),
    "gast_schmidt_knosche_sf": (0.01, dict(global_coupling=0.1, cv=0.5), (1.0, -0.5, 0.0, 0.0),
                                (0.5, 1.0, 0.5, 0.5)),
    # history: V on both sides of Vstar = -31 mV (both branches of the dfun), and
    # K_o = K_o0 - 3 DKi + Kg > 0 (TVB's dfun takes log(K_o / K_i))
    "k_ion_ex": (0.01, dict(global_coupling=0.1), (0.5, -40.0, 0.3, -5.0, -7.0),
                 (0.3, 25.0, 0.2, 2.0, 2.0)),
    "larter_breakspear": (0.2, dict(global_coupling=0.5), (-0.2, 0.2, 0.0), (0.3, 0.2, 0.2)),
    "epileptor2d": (0.05, dict(global_coupling=0.1, Ks=-0.2, Kvf=0.1), (-1.5, 3.2), (0.1, 0.05)),
    "epileptor_resting_state": (0.05, dict(global_coupling=0.1, Ks=-0.2, Kf=0.1),
                                (-1.6, -12.5, 3.8, -1.0, 0.005, 0.0, 1.0, 0.0),
                                (0.2, 2.5, 0.2, 0.1, 0.004, 0.5, 1.0, 2.0)),
    # dt = 2**-4 ms as TVB's Jansen-Rit demos; y1 - y2 on both sides of the coupling sigmoid's
    # midpoint (6 mV), so SigmoidalJansenRit's two delayed variables both matter
    "jansen_rit": (2.0**-4, dict(global_coupling=1.0), (0.08, 15.0, 10.0, 0.0, 0.0, 0.0),
                   (0.05, 5.0, 5.0, 0.5, 2.0, 2.0)),
    # dt as Jansen-Rit's; v6 (the coupled variable, v2 - v3 at rest) near the sigmoid's rho_2
    "zetterberg_jansen": (2.0**-4, dict(global_coupling=1.0),
                          (4.0, 0.0, 8.0, 0.0, 10.0, 0.0, 4.0, 0.0, 1.0, 0.0, 2.0, 3.0),
                          (2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 1.0, 2.0, 2.0)),
    # dt = 2^-4 ms as TVB's EpileptorCodim3 notebook; Ks = 1: with TVB's Ks = 0 the
    # nodes are uncoupled
    "epileptor_codim3": (0.0625, dict(global_coupling=0.5, Ks=1.0), (0.5, 0.0, 0.075),
                         (0.1, 0.1, 0.075)),
    # dt as epileptor_codim3's, Ks = 1 for the same reason; not a fixed point: x, y around the
    # resting branch and z on the arc drift (dx = -y, dz != 0), and uA, uB (drawn in 0 .. 1
    # rad, so each node's arc end points A, B differ) grow by cA, cB per ms
    "epileptor_codim3_slow_mod": (0.0625, dict(global_coupling=0.5, Ks=1.0),
                                  (0.5, 0.0, 0.075, 0.5, 0.5), (0.1, 0.1, 0.075, 0.5, 0.5)),
    "zerlaut_adaptation_first_order": (0.1, dict(global_coupling=0.5),
                                       (0.05, 0.05, 50.0, 0.0, 0.0), (0.04, 0.04, 40.0, 0.0, 0.0)),
    "zerlaut_adaptation_second_order": (0.1, dict(global_coupling=0.5),
                                        (0.05, 0.05, 2e-4, 0.0, 2e-4, 50.0, 0.0, 0.0),
                                        (0.04, 0.04, 2e-4, 2e-4, 2e-4, 40.0, 0.0, 0.0)),
}

#: each model's cases on one worker, which runs its tvb-library reference once (``_tvb``)
MODELS = [on_one_worker(f"catalogue-{model}", model) for model in CASES]

MEASURED: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module", autouse=True)
def catalogue_table():
    """Print the measured errors after the module (visible with ``-s``)."""
    yield
    if MEASURED:
        lines = ["", f"catalogue vs tvb-library: max relative error ({N_STEPS} Heun steps, "
                     f"float64, tolerance {TOLERANCE:g})",
                 f"{'model':<26} {'backend':<14} max rel. error"]
        lines += [f"{m:<26} {b:<14} {e:.2e}" for (m, b), e in sorted(MEASURED.items())]
        print("\n".join(lines))


@functools.cache
def _setup(model: str):
    from tvb_reference import connectivity_76, tvb_horizon

    weights, lengths = connectivity_76()
    dt, _, centre, spread = CASES[model]
    rows = tvb_horizon(lengths, SPEED, dt)
    rng = np.random.default_rng(1234)
    centre = np.asarray(centre)[None, :, None]
    spread = np.asarray(spread)[None, :, None]
    history = centre + spread * rng.uniform(-1.0, 1.0, (rows, centre.shape[1], len(weights)))
    return weights, lengths, history


@functools.cache
def _tvb(model: str) -> np.ndarray:
    from tvb_reference import run_tvb

    dt, params, _, _ = CASES[model]
    weights, lengths, history = _setup(model)
    _, data = run_tvb(model, weights, lengths, speed=SPEED, dt=dt, n_steps=N_STEPS,
                      integrator="heun", initial_history=history, params=params)
    assert np.isfinite(data).all()
    return data


def _neuralmass(model: str, backend: str, **overrides) -> nm.Result:
    dt, params, _, _ = CASES[model]
    weights, lengths, history = _setup(model)
    return nm.simulate(model, nm.Connectivity(weights, lengths, speed=SPEED),
                       {**params, **overrides}, backend=backend, dt=dt, n_steps=N_STEPS,
                       integrator="heun", initial_history=history)


@pytest.mark.tvb
@pytest.mark.parametrize("model", MODELS)
def test_matches_tvb_library(model, backend):
    pytest.importorskip("tvb.simulator", reason="tvb-library is not installed (the 'tvb' extra)")
    pytest.importorskip("tvb_data", reason="tvb-data is not installed (the 'tvb' extra)")
    reference = _tvb(model)
    res = _neuralmass(model, backend)
    error = max_relative_error_per_variable(res.data[..., 0], reference)
    MEASURED[(model, backend)] = error
    assert error <= TOLERANCE, f"{model}/{backend}: max relative error {error:.3e}"


def _cuda_plan(model: str):
    from neuralmass.plan import make_plan

    dt, params, _, _ = CASES[model]
    weights, lengths, history = _setup(model)
    return make_plan(load_model(model), nm.Connectivity(weights, lengths, speed=SPEED), params,
                     dt=dt, n_steps=N_STEPS, integrator="heun", initial_history=history,
                     dtype="float64")


@pytest.mark.tvb
@pytest.mark.nvcc
@pytest.mark.parametrize("model", MODELS)
def test_cuda_kernel_compiles_and_its_emulation_matches_tvb_library(model, tmp_path):
    """The float64 CUDA kernel of the same run compiles with nvcc (PTX for sm_80) and, compiled
    as host C++ (``neuralmass.backends.cuda.emulate``), matches tvb-library with the same
    tolerance: every catalogue model, the whole 1,000 steps, one parameter set."""
    import shutil
    import subprocess

    from neuralmass.backends import cuda

    pytest.importorskip("tvb.simulator", reason="tvb-library is not installed (the 'tvb' extra)")
    pytest.importorskip("tvb_data", reason="tvb-data is not installed (the 'tvb' extra)")
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on the PATH (install the CUDA toolkit to check the kernels)")
    plan = _cuda_plan(model)
    source = tmp_path / f"{model}.cu"
    source.write_text(cuda.generated_source(plan))
    compiled = subprocess.run(["nvcc", "-ptx", "-arch=sm_80", "-std=c++17", str(source), "-o",
                               str(tmp_path / f"{model}.ptx")], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    states = np.asarray(cuda.emulate(plan)[0])
    error = max_relative_error_per_variable(states[..., 0], _tvb(model))
    MEASURED[(model, "cuda-emulated")] = error
    assert error <= TOLERANCE, f"{model}/cuda (emulated): max relative error {error:.3e}"


@pytest.mark.tvb
@pytest.mark.parametrize("model", MODELS)
def test_coupling_matters(model):
    """Without the coupling (global_coupling = 0) the run differs from TVB's coupled one by
    more than 1,000 times the tolerance."""
    pytest.importorskip("tvb.simulator", reason="tvb-library is not installed (the 'tvb' extra)")
    pytest.importorskip("tvb_data", reason="tvb-data is not installed (the 'tvb' extra)")
    uncoupled = _neuralmass(model, "jax", global_coupling=0.0)
    error = max_relative_error_per_variable(uncoupled.data[..., 0], _tvb(model))
    assert error > 1e3 * TOLERANCE


@pytest.mark.tvb
@pytest.mark.parametrize("model", available())
def test_declares_tvb_state_variables_cvar_and_defaults(model):
    """State variables in TVB's order, TVB's cvar as the coupled variables, TVB's parameter
    defaults, ranges and boundaries."""
    models = pytest.importorskip("tvb.simulator.models",
                                 reason="tvb-library is not installed (the 'tvb' extra)")
    tvb_model, tvb_coupling = tvb_names(model)
    assert tvb_coupling is not None
    reference = getattr(models, tvb_model)()
    ours = load_model(model)
    assert ours.state_names == tuple(reference.state_variables)
    assert ours.coupled_variables == tuple(reference.state_variables[i] for i in reference.cvar)
    for sv in ours.state_variables:
        assert sv.initial_range == pytest.approx(tuple(reference.state_variable_range[sv.name]))
    tvb_bounds = dict(getattr(reference, "state_variable_boundaries", None) or {})
    for sv in ours.state_variables:
        # TVB stores an open side as +-float max
        lo, hi = (v if abs(v) < 1e300 else np.copysign(np.inf, v)
                  for v in tvb_bounds.get(sv.name, (-np.inf, np.inf)))
        ours_lo, ours_hi = sv.bounds or (None, None)
        assert (-np.inf if ours_lo is None else ours_lo) == lo
        assert (np.inf if ours_hi is None else ours_hi) == hi
    for p in ours.parameters:
        if p.kind != "implicit" and hasattr(reference, p.name) and p.name != "global_coupling":
            assert p.default == pytest.approx(float(np.ravel(getattr(reference, p.name))[0]),
                                              rel=1e-12), p.name


def test_names_resolve_to_the_bundled_files():
    """File names, TVB class names in any case and their snake_case all find the file."""
    assert snake_case("ReducedWongWangExcInh") == "reduced_wong_wang_exc_inh"
    assert snake_case("KIonEx") == "k_ion_ex"
    assert snake_case("GastSchmidtKnosche_SD") == "gast_schmidt_knosche_sd"
    assert snake_case("EpileptorCodim3SlowMod") == "epileptor_codim3_slow_mod"
    for alias in ("rwongwang", "ReducedWongWangExcInh", "reducedwongwangexcinh",
                  "reduced_wong_wang_exc_inh"):
        assert load_model(alias).name == "rwongwang"
    for alias in ("montbrio", "MontbrioPazoRoxin", "montbrio_pazo_roxin"):
        assert load_model(alias).name == "montbrio"
    assert load_model("SupHopf").name == load_model("sup_hopf").name == "sup_hopf"
    for name in available():
        tvb_model, _ = tvb_names(name)
        assert load_model(tvb_model.upper()).name == name
        assert nm.models.path(snake_case(tvb_model)) == nm.models.path(name)
    with pytest.raises(nm.errors.ModelError, match="unknown model 'SupHopff'"):
        load_model("SupHopff")


def test_new_files_are_named_in_snake_case():
    """Every file beyond the five original ones (kept as aliases) is its TVB class in
    snake_case."""
    originals = {"kuramoto", "montbrio", "epileptor", "rwongwang", "generic2d"}
    for name in set(available()) - originals:
        assert name == snake_case(tvb_names(name)[0])
