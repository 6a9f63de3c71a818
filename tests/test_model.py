"""The model IR of the bundled models against The Virtual Brain's equations.

The expected right-hand sides are written out here from tvb-library's ``dfun``s (see
``shared/tvb-conventions.md``, "Model right-hand sides"); ReducedWongWangExcInh from its
description in ``neuralmass/models/rwongwang.xml``. ``model.drift`` is evaluated at random
points with every parameter drawn around its default and compared as floats.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy

from neuralmass.errors import ModelError
from neuralmass.lems import loads
from neuralmass.model import symbol
from neuralmass.models import available, load_model


def where(condition, if_true, if_false):
    return if_true if condition else if_false


def kuramoto(s, p, c):
    return [p["omega"] + c[0]]


def montbrio(s, p, c):
    r, V = s["r"], s["V"]
    tau = p["tau"]
    return [
        (p["Delta"] / (math.pi * tau) + 2 * V * r) / tau,
        (V**2 - math.pi**2 * tau**2 * r**2 + p["eta"] + p["J"] * tau * r + p["I"]
         + p["cr"] * c[0] + p["cv"] * c[1]) / tau,
    ]


def epileptor(s, p, c):
    x1, y1, z, x2, y2, g = (s[n] for n in ("x1", "y1", "z", "x2", "y2", "g"))
    tt = p["tt"]
    f1 = where(x1 < 0, -p["a"] * x1**2 + p["b"] * x1,
               p["slope"] - x2 + 0.6 * (z - 4.0) ** 2)
    if p["modification"]:
        h = p["x0"] + 3.0 / (1.0 + math.exp(-(x1 + 0.5) / 0.1))
    else:
        h = 4 * (x1 - p["x0"]) + where(z < 0, -0.1 * z**7, 0.0)
    f2 = where(x2 < -0.25, 0.0, p["aa"] * (x2 + 0.25))
    return [
        tt * (y1 - z + p["Iext"] + p["Kvf"] * c[0] + f1 * x1),
        tt * (p["c"] - p["d"] * x1**2 - y1),
        tt * p["r"] * (h - z + p["Ks"] * c[0]),
        tt * (-y2 + x2 - x2**3 + p["Iext2"] + p["bb"] * g - 0.3 * (z - 3.5) + p["Kf"] * c[1]),
        tt * (-y2 + f2) / p["tau"],
        tt * (-0.01 * (g - 0.1 * x1)),
    ]


def generic2d(s, p, c):
    V, W = s["V"], s["W"]
    return [
        p["d"] * p["tau"] * (p["alpha"] * W - p["f"] * V**3 + p["e"] * V**2 + p["g"] * V
                             + p["gamma"] * p["I"] + p["gamma"] * c[0]),
        p["d"] * (p["a"] + p["b"] * V + p["c"] * V**2 - p["beta"] * W) / p["tau"],
    ]


def rwongwang(s, p, c):
    # TVB's ReducedWongWangExcInh (Deco et al. 2014), local coupling 0; the long-range
    # input is scaled by G * J_N and reaches the inhibitory population through lamda.
    S_e, S_i = s["S_e"], s["S_i"]
    coupling = p["G"] * p["J_N"] * c[0]
    x_e = p["a_e"] * (p["w_p"] * p["J_N"] * S_e - p["J_i"] * S_i + p["W_e"] * p["I_o"]
                      + coupling + p["I_ext"]) - p["b_e"]
    H_e = x_e / (1 - math.exp(-p["d_e"] * x_e))
    x_i = p["a_i"] * (p["J_N"] * S_e - S_i + p["W_i"] * p["I_o"] + p["lamda"] * coupling) \
        - p["b_i"]
    H_i = x_i / (1 - math.exp(-p["d_i"] * x_i))
    return [
        -S_e / p["tau_e"] + (1 - S_e) * H_e * p["gamma_e"],
        -S_i / p["tau_i"] + H_i * p["gamma_i"],
    ]


TVB = {
    "kuramoto": kuramoto,
    "montbrio": montbrio,
    "epileptor": epileptor,
    "generic2d": generic2d,
    "rwongwang": rwongwang,
}


def test_every_bundled_model_has_a_reference():
    # the catalogue's newer models are checked against tvb-library in test_catalogue_tvb.py
    assert set(TVB) <= set(available())


def random_point(model, rng):
    """States drawn in (and a little beyond) their ranges, parameters around their defaults
    (zero defaults such as Epileptor's Ks get a value too), coupling values in [-1, 1]."""
    states = {}
    for sv in model.state_variables:
        lo, hi = sv.initial_range
        states[sv.name] = float(rng.uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)))
    params = {}
    for p in model.parameters:
        default = 3.0 if p.default is None else p.default
        params[p.name] = float(default * rng.uniform(0.8, 1.2) + 0.1 * rng.standard_normal())
    if "modification" in params:
        params["modification"] = float(rng.integers(0, 2))
    coupling = [float(rng.uniform(-1, 1)) for _ in model.coupling_terms]
    return states, params, coupling


def substitute(model, expr, states, params, coupling, *, dt=0.1, n_node=76):
    numbers = {**states, **params, "dt": dt, "n_node": n_node}
    numbers.update({f"c_pop{t.index}": c for t, c in zip(model.coupling_terms, coupling,
                                                          strict=True)})
    free = {s.name for s in expr.free_symbols}
    assert free <= set(numbers), f"unexpected symbols {free - set(numbers)}"
    return float(expr.xreplace({symbol(n): sympy.Float(v) for n, v in numbers.items()}))


@pytest.mark.parametrize("name", sorted(TVB))
def test_drift_equals_tvb(name):
    model = load_model(name)
    rng = np.random.default_rng(42)
    for _ in range(20):
        states, params, coupling = random_point(model, rng)
        got = [substitute(model, d, states, params, coupling) for d in model.drift]
        expected = TVB[name](states, params, coupling)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12), (states, params)


@pytest.mark.parametrize("name", sorted(TVB))
def test_drift_uses_states_parameters_and_coupling_only(name):
    model = load_model(name)
    allowed = set(model.state_symbols) | set(model.parameter_symbols) \
        | set(model.coupling_symbols) | {symbol("dt"), symbol("n_node")}
    for derivative in model.drift:
        assert derivative.free_symbols <= allowed


@pytest.mark.parametrize("name", sorted(TVB))
def test_jacobian_matches_finite_differences(name):
    model = load_model(name)
    jacobian = model.jacobian()
    n = len(model.state_variables)
    assert jacobian.shape == (n, n)
    rng = np.random.default_rng(7)
    for _ in range(3):
        states, params, coupling = random_point(model, rng)
        for k, sv in enumerate(model.state_variables):
            h = 1e-6 * max(1.0, abs(states[sv.name]))
            up = {**states, sv.name: states[sv.name] + h}
            down = {**states, sv.name: states[sv.name] - h}
            for i, derivative in enumerate(model.drift):
                difference = (substitute(model, derivative, up, params, coupling)
                              - substitute(model, derivative, down, params, coupling)) / (2 * h)
                exact = substitute(model, jacobian[i, k], states, params, coupling)
                assert exact == pytest.approx(difference, rel=1e-5, abs=1e-7), (i, k)


def test_jacobian_of_a_linear_model():
    model = loads(LINEAR)
    assert model.jacobian() == sympy.Matrix([[-symbol("a"), symbol("b")], [0, -symbol("a")]])


@pytest.mark.parametrize("name", sorted(TVB))
def test_str_shows_every_equation(name):
    model = load_model(name)
    text = str(model)
    assert text.startswith(f"Model {name!r}: {model.description}")
    for sv in model.state_variables:
        assert f"d{sv.name}/dt = {sympy.sstr(sv.derivative)}" in text
    for d in model.derived_variables + model.derived_parameters:
        assert f"{d.name} = {sympy.sstr(d.expression)}" in text
    for p in model.parameters:
        assert f"    {p.name} = " in text
    for t in model.coupling_terms:
        assert f"c_pop{t.index} = {sympy.sstr(t.scale)} * " in text
        (delayed,), (source,) = t.delayed, t.sources
        assert f"({delayed} = {source}[j](t - d_ij))" in text
    for e in model.exposures:
        assert f"    {e.name} = {sympy.sstr(e.expression)}" in text


def test_str_of_bounds_noise_and_post():
    text = str(loads(LINEAR))
    assert "dx/dt = -a*x + b*y + c_pop0   bounds [0, inf]" in text
    assert "dy/dt = -a*y   bounds [-inf, 1]" in text
    assert "noise: additive, per-step std nsig = 0.1*a" in text
    assert "c_pop0 = 2*global_coupling * tanh(Σ_j w_ij·(x_j))" in text
    assert "k = 2*a" in text


def test_with_defaults():
    model = load_model("montbrio")
    changed = model.with_defaults(eta=-4.6, global_speed=5)
    assert changed.defaults["eta"] == -4.6
    assert changed.defaults["global_speed"] == 5.0
    assert changed.defaults["J"] == model.defaults["J"]
    assert model.defaults["eta"] == -5.0  # the original is untouched
    assert model.defaults["global_speed"] is None
    assert changed.drift == model.drift
    with pytest.raises(ModelError, match="model 'montbrio' has no parameter 'etta'; parameters "
                                         "are global_coupling, global_speed, tau, I, Delta"):
        model.with_defaults(etta=1.0)


@pytest.mark.parametrize("name", sorted(TVB))
def test_parameter_names_include_the_global_ones(name):
    model = load_model(name)
    assert {"global_coupling", "global_speed"} <= set(model.parameter_names)
    assert model.parameter_symbols == tuple(symbol(n) for n in model.parameter_names)
    assert set(model.defaults) == set(model.parameter_names)
    with pytest.raises(KeyError):
        model.parameter("nope")


@pytest.mark.parametrize(
    ("name", "coupled"),
    [("epileptor", ("x1", "x2")), ("montbrio", ("r", "V")), ("kuramoto", ("theta",)),
     ("generic2d", ("V",)), ("rwongwang", ("S_e",))],
)
def test_coupled_variables(name, coupled):
    model = load_model(name)
    assert model.coupled_variables == coupled
    assert model.coupling_symbols == tuple(symbol(f"c_pop{k}") for k in range(len(coupled)))


def test_bundled_tvb_coupling_functions():
    # Kuramoto: sin(theta_j - theta); Epileptor: Difference (x_j - x_i); others: Linear.
    theta, theta_j = symbol("theta"), symbol("theta_j")
    (term,) = load_model("kuramoto").coupling_terms
    assert term.pre == sympy.sin(theta_j - theta)
    first, second = load_model("epileptor").coupling_terms
    assert first.pre == symbol("x1_j") - symbol("x1")
    assert second.pre == symbol("x2_j") - symbol("x2")
    for name in ("montbrio", "generic2d", "rwongwang"):
        for term in load_model(name).coupling_terms:
            assert (term.pre,) == term.delayed
            assert term.post == 1
            assert term.scale == symbol("global_coupling")


def test_bounds_and_ranges_of_bundled_models():
    assert load_model("montbrio").state_variables[0].bounds == (0.0, None)
    assert [sv.bounds for sv in load_model("rwongwang").state_variables] == [(0.0, 1.0)] * 2
    theta = load_model("kuramoto").state_variables[0]
    assert theta.initial_range == (0.0, pytest.approx(2 * math.pi))
    assert theta.bounds is None


def test_resolve_substitutes_derived_parameters_and_rec_speed_dt():
    model = loads(LINEAR)
    assert model.resolve(symbol("k") * 3) == 6 * symbol("a")
    assert model.resolve(symbol("rec_speed_dt")) == 1 / (symbol("global_speed") * symbol("dt"))
    assert model.exposure_expressions == (2 * symbol("a") * symbol("x"),)


LINEAR = """<Lems description="linear">
  <ComponentType name="derivatives">
    <Constant name="a" value="1.0"/>
    <Constant name="b" value="0.5"/>
    <DerivedParameter name="k" value="2 * a"/>
    <Exposure name="kx" dimension="k * x"/>
    <Dynamics>
      <StateVariable name="x" dimension="0, 1" exposure="0, inf"/>
      <StateVariable name="y" dimension="0, 1" exposure="-inf, 1"/>
      <TimeDerivative variable="dx" value="-a * x + b * y + c_pop0"/>
      <TimeDerivative variable="dy" value="-a * y"/>
    </Dynamics>
  </ComponentType>
  <ComponentType name="coupling_x">
    <Parameter name="x_j" dimension="0"/>
    <DerivedParameter name="c_pop0" value="2 * global_coupling"/>
    <Dynamics>
      <DerivedVariable name="post" value="tanh(pre)"/>
    </Dynamics>
  </ComponentType>
  <ComponentType name="noise">
    <DerivedParameter name="nsig" value="0.1 * a"/>
  </ComponentType>
</Lems>
"""
