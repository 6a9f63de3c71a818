"""nm.analysis: equilibria, stability labels, network stability and continuation, checked
against closed forms (Hopf normal form, Montbrió–Pazó–Roxin, Generic2dOscillator, a linear
network), a finite-difference Jacobian of the whole network, and simulations."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from helpers import available_backends, linear_model, uncoupled_connectivity
from typer.testing import CliRunner

import neuralmass as nm
from neuralmass.cli import app
from neuralmass.errors import ParameterError
from neuralmass.model import symbol

#: The supercritical Hopf normal form (TVB's SupHopf without coupling):
#: dx = (a - x² - y²) x - w y, dy = (a - x² - y²) y + w x. The origin is the only equilibrium,
#: with eigenvalues a ± i w: a stable focus for a < 0, a Hopf point at a = 0 of frequency w.
HOPF_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="supercritical Hopf normal form">
    <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.0"/>
        <Parameter name="global_speed" dimension="1.0, 10.0"/>
        <Constant name="a" value="-0.5"/>
        <Constant name="w" value="2.0"/>
        <Dynamics>
            <StateVariable name="x" dimension="-1.0, 1.0"/>
            <StateVariable name="y" dimension="-1.0, 1.0"/>
            <TimeDerivative variable="dx" value="(a - x * x - y * y) * x - w * y"/>
            <TimeDerivative variable="dy" value="(a - x * x - y * y) * y + w * x"/>
        </Dynamics>
    </ComponentType>
</Lems>
"""


def hopf_model() -> nm.Model:
    return nm.lems.loads(HOPF_XML, filename="hopf.xml")


# --------------------------------------------------------------------------- Hopf normal form


@pytest.mark.parametrize(("a", "label"), [(-0.5, "stable focus"), (0.5, "unstable focus"),
                                          (0.0, "non-hyperbolic")])
def test_hopf_normal_form_origin_is_the_only_equilibrium_with_eigenvalues_a_pm_iw(a, label):
    points = nm.analysis.fixed_points(hopf_model(), {"a": a, "w": 2.0})
    assert len(points) == 1
    (point,) = points
    assert point.exact  # the Gröbner elimination finds it too
    # the Jacobian at the origin is [[a, -w], [w, a]] exactly: rounding only
    np.testing.assert_allclose(point.state, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(point.eigenvalues, [a + 2j, a - 2j], atol=1e-12)
    assert point.stability == label
    assert point.stable == (a < 0)


def test_hopf_normal_form_continuation_finds_the_hopf_point_at_a_0_with_frequency_w():
    result = nm.analysis.continuation(hopf_model(), "a", (-1.0, 1.0), n=50)
    assert len(result.branches) == 1
    branch = result.branches[0]
    np.testing.assert_array_equal(branch.stable, branch.parameter < 0)
    (hopf,) = result.points
    assert hopf.kind == "hopf"
    # bisection to 1e-14 of the scaled arclength: the crossing is linear in a (measured 2e-14)
    assert abs(hopf.parameter) < 1e-12
    np.testing.assert_allclose(hopf.omega, 2.0, rtol=1e-10)
    np.testing.assert_allclose(hopf.frequency_hz, 2.0 / (2 * np.pi) * 1e3, rtol=1e-10)


# --------------------------------------------------------------------------- Montbrió–Pazó–Roxin


def mpr_equilibria_closed_form(eta, J=15.0, Delta=1.0, tau=1.0, current=0.0):
    """Equilibria of the MPR firing-rate equations (Montbrió, Pazó & Roxin, Phys. Rev. X 5,
    021028, 2015): ṙ = 0 gives r* = -Δ / (2π τ V*), and then V̇ = 0,
    V² - π² τ² r² + η + J τ r + I = 0 (I: ``current``), times V² is the quartic
    V⁴ + (η + I) V² - (J Δ / 2π) V - Δ² / 4 = 0, whose roots with V* < 0 (r* > 0) are the
    equilibria. Returns (k, 2) rows (r*, V*) sorted by r*."""
    roots = np.roots([1.0, 0.0, eta + current, -J * Delta / (2 * np.pi), -Delta**2 / 4])
    v = np.sort(roots[(np.abs(roots.imag) < 1e-12) & (roots.real < 0)].real)
    r = -Delta / (2 * np.pi * tau * v)
    return np.column_stack([r, v])[np.argsort(r)]


def mpr_saddle_nodes_closed_form(J=15.0, Delta=1.0, tau=1.0, current=0.0):
    """Folds of the MPR equilibria: with V* eliminated, η(r) = π² τ² r² - J τ r
    - Δ² / (4 π² τ² r²) - I along the curve of equilibria (I: ``current``), and dη/dr = 0 is
    2 π² τ² r⁴ - J τ r³ + Δ² / (2 π² τ²) = 0. Returns (η, r) at its positive roots, sorted
    by η."""
    a = 2 * np.pi**2 * tau**2
    roots = np.roots([a, -J * tau, 0.0, 0.0, Delta**2 / a])
    r = np.sort(roots[(np.abs(roots.imag) < 1e-12) & (roots.real > 0)].real)
    eta = np.pi**2 * tau**2 * r**2 - J * tau * r - Delta**2 / (4 * np.pi**2 * tau**2 * r**2)
    eta -= current
    order = np.argsort(eta)
    return eta[order], r[order]


def test_montbrio_equilibria_match_the_closed_form():
    model = nm.load_model("montbrio")
    points = nm.analysis.fixed_points(model)  # TVB's defaults: η = -5, J = 15, Δ = τ = 1
    expected = mpr_equilibria_closed_form(-5.0)
    assert len(expected) == 3  # the bistable range: low state, saddle, high state
    # Newton-polished roots against np.roots of the quartic: both at rounding level
    # (measured 2e-16)
    np.testing.assert_allclose([p.state for p in points], expected, rtol=1e-12)
    assert [p.stability for p in points] == ["stable node", "saddle", "stable focus"]


def test_montbrio_coupling_input_shifts_eta_one_value_per_term():
    # dV/dt has ... + eta + cr * c_pop0 + cv * c_pop1 with cr = 1, cv = 0 by default
    model = nm.load_model("montbrio")
    shifted = nm.analysis.fixed_points(model, {"cv": 0.5}, coupling=(0.4, 0.2))
    expected = mpr_equilibria_closed_form(-5.0 + 0.4 + 0.5 * 0.2)
    np.testing.assert_allclose([p.state for p in shifted], expected, rtol=1e-9)


def test_montbrio_continuation_finds_the_saddle_node_pair_of_the_closed_form():
    result = nm.analysis.continuation(nm.load_model("montbrio"), "eta", (-10.0, 0.0), n=200)
    folds = [p for p in result.points if p.kind == "saddle-node"]
    assert [p.kind for p in result.points] == ["saddle-node", "saddle-node"]
    eta, r = mpr_saddle_nodes_closed_form()
    # the fold's parameter is quadratic in the arclength error (bisection to 1e-14), its
    # state linear: measured 2e-16 and 2e-14
    np.testing.assert_allclose([p.parameter for p in folds], eta, rtol=1e-12)
    np.testing.assert_allclose([p.state[0] for p in folds], r, rtol=1e-10)
    # between the folds three equilibria, one of them unstable; outside them one, stable
    for branch in result.branches:
        inside = (branch.parameter > eta[0] + 0.01) & (branch.parameter < eta[1] - 0.01)
        outside = (branch.parameter < eta[0] - 0.01) | (branch.parameter > eta[1] + 0.01)
        assert np.all(branch.stable[outside])
        assert 0 < np.count_nonzero(~branch.stable[inside]) < np.count_nonzero(inside)


# --------------------------------------------------------------------------- Generic2dOscillator


def test_generic2d_default_equilibrium_and_hopf_points_match_the_analytic_ones():
    """TVB's defaults (a=-2, b=-10, c=0, d=0.02, e=3, f=1, g=0, α=β=γ=τ=1), derived here
    from the equations: the nullclines W = V³ - 3V² - I and W = -2 - 10V meet where
    V³ - 3V² + 10V + 2 - I = 0; the Jacobian d·[[-3V² + 6V, 1], [-10, -1]] has trace
    d(-3V² + 6V - 1) and determinant d²(3V² - 6V + 10) > 0, so Hopf points are at
    3V² - 6V + 1 = 0, V = 1 ± √6/3, I = V³ - 3V² + 10V + 2 (≈ 3.7402 and 16.2598), with
    ω = √det = d·√9 = 0.06 rad/ms (9.549 Hz)."""
    model = nm.load_model("generic2d")
    (point,) = nm.analysis.fixed_points(model)
    roots = np.roots([1.0, -3.0, 10.0, 2.0])
    v = roots[np.abs(roots.imag) < 1e-12].real[0]
    np.testing.assert_allclose(point.state, [v, -2.0 - 10.0 * v], rtol=1e-10)
    assert point.stability == "stable focus"

    result = nm.analysis.continuation(model, "I", (0.0, 20.0), n=200)
    hopf = [p for p in result.points if p.kind == "hopf"]
    v_h = 1 + np.array([-1.0, 1.0]) * np.sqrt(6) / 3
    np.testing.assert_allclose([p.parameter for p in hopf], v_h**3 - 3 * v_h**2 + 10 * v_h + 2,
                               rtol=1e-12)  # bisection on a linear crossing: measured 4e-15
    np.testing.assert_allclose([p.state[0] for p in hopf], v_h, rtol=1e-10)
    np.testing.assert_allclose([p.omega for p in hopf], 0.06, rtol=1e-12)
    assert len(result.points) == 2


# --------------------------------------------------------------------------- network stability


def test_linear_network_eigenvalues_are_minus_a_plus_g_lambda_w():
    # dx = -a x + G Σ_j w_ij x_j: x* = 0 whatever the (unequal) row sums, Jacobian -a I + G W
    rng = np.random.default_rng(3)
    weights = rng.uniform(0.0, 1.0, (6, 6))
    np.fill_diagonal(weights, 0.0)
    conn = nm.Connectivity(weights, np.zeros((6, 6)))
    result = nm.analysis.network_stability(linear_model(), conn,
                                           {"a": 1.5, "global_coupling": 0.1},
                                           coupling_range=(0.0, 2.0))
    assert result.delays_ignored
    assert result.coupling_matrix == "weights"
    lam_w = np.linalg.eigvals(weights)
    expected = -1.5 + 0.1 * lam_w
    np.testing.assert_allclose(result.state, [0.0], atol=1e-12)
    # eigvals of the same W twice: identical up to rounding
    np.testing.assert_allclose(result.eigenvalues[:, 0], expected, atol=1e-12)
    assert result.most_unstable_mode == int(np.argmax(expected.real))
    assert result.stable
    # the Perron root of W (real, largest real part) crosses 0 at G = a / λ_max
    np.testing.assert_allclose(result.critical_coupling, 1.5 / lam_w.real.max(), rtol=1e-10)
    assert result.critical_kind == "eigenvalue crossing"


def network_jacobian(model, weights, params, state, h=1e-6):
    """The full (n_state·N)² Jacobian of the delay-free network by central differences,
    evaluating c_k[i] = G Σ_j w_ij pre_k(x_i, x_j) directly (linear post, scale G)."""
    values = {symbol(k): v for k, v in {**model.defaults, **params}.items() if v is not None}
    f = sympy.lambdify([*model.state_symbols, *model.coupling_symbols],
                       [e.xreplace(values) for e in model.drift])
    pres = [sympy.lambdify([*model.state_symbols, *t.delayed], t.pre.xreplace(values))
            for t in model.coupling_terms]
    for t in model.coupling_terms:
        assert t.post == 1 and t.scale == symbol("global_coupling")
    g, n, size = values[symbol("global_coupling")], len(model.state_names), len(weights)

    def rhs(flat):
        x = flat.reshape(n, size)
        inputs = []
        for t, pre in zip(model.coupling_terms, pres, strict=True):
            sources = [x[model.state_names.index(s)][None, :] for s in t.sources]
            edge = pre(*(x[k][:, None] for k in range(n)), *sources)
            inputs.append(g * (weights * np.broadcast_to(edge, weights.shape)).sum(axis=1))
        return np.array([np.broadcast_to(v, (size,)) for v in f(*x, *inputs)]).ravel()

    x0 = np.repeat(np.asarray(state, dtype=float)[:, None], size, axis=1).ravel()
    columns = []
    for k in range(len(x0)):
        step = np.zeros_like(x0)
        step[k] = h
        columns.append((rhs(x0 + step) - rhs(x0 - step)) / (2 * h))
    return np.array(columns).T, rhs(x0)


def assert_same_spectrum(actual, expected, atol):
    actual, expected = np.ravel(actual), np.ravel(expected)
    assert actual.shape == expected.shape
    for values, others in ((actual, expected), (expected, actual)):
        distance = np.abs(values[:, None] - others[None, :]).min(axis=1)
        assert distance.max() < atol, distance.max()


@pytest.mark.parametrize(("name", "params", "normalise"), [
    ("montbrio", {"global_coupling": 0.3}, True),   # equal row sums: x* moves with G·ρ
    ("epileptor", {"global_coupling": 0.2}, False),  # differences: Laplacian, any row sums
    ("jansen_rit", {"global_coupling": 1.0}, True),  # one term of two delayed variables
])
def test_network_spectrum_matches_a_finite_difference_jacobian_of_the_whole_network(
        name, params, normalise):
    model = nm.load_model(name)
    rng = np.random.default_rng(5)
    weights = rng.uniform(0.0, 1.0, (4, 4))
    np.fill_diagonal(weights, 0.0)
    if normalise:
        weights /= weights.sum(axis=1, keepdims=True)
    result = nm.analysis.network_stability(model, nm.Connectivity(weights, np.zeros((4, 4))),
                                           params)
    jacobian, residual = network_jacobian(model, weights, params, result.state)
    # x* is an equilibrium of the whole network (Newton-converged: rounding level)
    assert np.abs(residual).max() < 1e-9
    # central differences with h = 1e-6: O(h²) truncation plus O(eps/h) rounding; measured
    # 2e-10 for montbrio and epileptor
    assert_same_spectrum(result.eigenvalues, np.linalg.eigvals(jacobian), atol=1e-7)


def test_montbrio_network_critical_coupling_where_the_low_state_folds_away():
    """With equal row sums ρ, linear coupling of r adds G ρ r* to dV/dt: the homogeneous
    equilibria are those of one node with J' = J + G ρ, so they move with G. The low state
    at η = -5 disappears when the upper fold of the closed form, η_SN(J'), reaches -5."""
    def upper_fold_eta(j):
        return mpr_saddle_nodes_closed_form(J=j)[0][-1]

    lo, hi = 15.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if upper_fold_eta(mid) > -5.0 else (lo, mid)
    rho = 2.0
    weights = np.ones((3, 3)) - np.eye(3)  # row sums 2, modes 2, -1, -1
    result = nm.analysis.network_stability(
        nm.load_model("montbrio"), nm.Connectivity(weights, np.zeros((3, 3))),
        {"global_coupling": 0.0}, coupling_range=(0.0, 10.0))
    np.testing.assert_allclose(result.state, mpr_equilibria_closed_form(-5.0)[0], rtol=1e-9)
    assert result.stable
    # bisection (60 halvings of a 0.05 step) on the existence of the followed equilibrium:
    # measured 1e-15 relative
    np.testing.assert_allclose(result.critical_coupling, (lo - 15.0) / rho, rtol=1e-9)
    assert result.critical_kind in ("equilibrium lost", "eigenvalue crossing")


def test_network_stability_refuses_an_inexact_case_with_an_explanation():
    weights = np.array([[0.0, 1.0], [2.0, 0.0]])  # row sums 1 and 2; pre = V_j, V* != 0
    with pytest.raises(ParameterError, match="row sums of the weights differ"):
        nm.analysis.network_stability(nm.load_model("generic2d"),
                                      nm.Connectivity(weights, np.zeros((2, 2))))


# --------------------------------------------------------------------------- against simulation


@pytest.mark.skipif("numba" not in available_backends(), reason="numba backend unavailable")
def test_simulation_stays_near_a_stable_equilibrium_and_leaves_a_saddle():
    model = nm.load_model("montbrio")
    low, saddle, _ = nm.analysis.fixed_points(model)
    assert (low.stability, saddle.stability) == ("stable node", "saddle")
    offset = np.array([1e-3, -1e-3])
    start = np.stack([low.state + offset, saddle.state + offset], axis=-1)[:, None, :]
    result = nm.simulate(model, uncoupled_connectivity(1), backend="numba", dt=0.01,
                         n_steps=2000, integrator="heun", initial_state=start)
    final = np.asarray(result.data)[-1, :, 0, :]  # (n_state, set)
    # 20 ms at the slowest rate 2.45/ms: the offset shrinks by e^-49, Heun's error at
    # dt = 0.01 does not move an equilibrium
    np.testing.assert_allclose(final[:, 0], low.state, atol=1e-9)
    # the saddle's unstable rate 1.64/ms amplifies 1e-3 by e^33: it has left
    assert np.abs(final[:, 1] - saddle.state).max() > 0.1


# --------------------------------------------------------------------------- errors and CLI


def test_wrong_parameters_and_coupling_are_clear_errors():
    model = nm.load_model("montbrio")
    with pytest.raises(ParameterError, match="unknown parameter 'etaa'; did you mean 'eta'"):
        nm.analysis.fixed_points(model, {"etaa": 1.0})
    with pytest.raises(ParameterError, match="one number per coupling term"):
        nm.analysis.fixed_points(model, coupling=(1.0, 2.0, 3.0))
    with pytest.raises(ParameterError, match="lo < hi"):
        nm.analysis.continuation(model, "eta", (0.0, -1.0))


def test_cli_analyze_prints_equilibria_and_saddle_nodes_and_draws_the_diagram(tmp_path):
    out = tmp_path / "bifurcation.png"
    result = CliRunner().invoke(app, ["analyze", "montbrio", "--param", "eta=-10:0:60",
                                      "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert "stable node" in result.output and "saddle" in result.output
    assert result.output.count("saddle-node at eta=") == 2
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["analyze", "montbrio", "--param", "eta=-10:0"])
    assert bad.exit_code == 2 and "expected NAME=LO:HI:N" in bad.output
