"""The numerical scheme (``neuralmass.scheme``): each integrator's step program against its
Butcher tableau written out by hand, clamping to bounds after every stage, and additive noise
with one sample per step shared by all stages; the coupling program against each bundled
model's coupling written out in NumPy, its multiplier rule, dead terms and separations; the
history lengths. Backend-free: programs are evaluated with SymPy; the last test checks that
the JAX lowering computes the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from helpers import linear_model

import neuralmass as nm
from neuralmass.errors import ParameterError
from neuralmass.model import symbol
from neuralmass.scheme import (
    INTEGRATORS,
    CouplingProgram,
    CouplingRule,
    coupling_program,
    get_integrator,
    history_horizon,
    history_length,
    step_program,
)

DT = symbol("dt")


def compose(program, values: dict | None = None) -> list[sympy.Expr]:
    """The program's outputs with every block substituted in order; with ``values`` (symbol
    → number) the result is numeric."""
    env = dict(values or {})
    for block in program.blocks:
        for target, expression in block:
            env[target] = expression.xreplace(env)
    return [output.xreplace(env) for output in program.outputs]


# =========================================================================== tableaux


def test_tableaux_are_consistent():
    """Σ b = 1 (first order at least) and explicit (a strictly lower triangular)."""
    for name, integrator in INTEGRATORS.items():
        assert sum(integrator.b) == 1, name
        assert len(integrator.a) == integrator.n_stages
        assert all(len(row) == stage for stage, row in enumerate(integrator.a)), name
    assert [INTEGRATORS[n].n_stages for n in ("euler", "heun", "rk4")] == [1, 2, 4]


def _linear_symbols():
    model = linear_model()
    x, c, a = symbol("x"), symbol("c_pop0"), symbol("a")
    return model, x, c, a, (lambda y: -a * y + c)


@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
def test_step_program_reproduces_the_tableau(name):
    """dx/dt = f(x) = -a x + c, symbolically: the composed program equals the scheme written
    out by hand (TVB's Heun predictor–corrector; classic RK4), as polynomials in dt, x, a, c."""
    model, x, c, a, f = _linear_symbols()
    program = step_program(model, get_integrator(name))
    assert program.state == (x,) and program.coupling == (c,) and program.noise == ()
    (output,) = compose(program)
    if name == "euler":
        expected = x + DT * f(x)
    elif name == "heun":
        predictor = x + DT * f(x)
        expected = x + DT / 2 * (f(x) + f(predictor))
    else:
        k1 = f(x)
        k2 = f(x + DT / 2 * k1)
        k3 = f(x + DT / 2 * k2)
        k4 = f(x + DT * k3)
        expected = x + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert sympy.expand(output - expected) == 0


@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
def test_step_program_matches_exponential_to_its_order(name):
    """For c = 0 the step multiplies x by the stability polynomial Σ_{k≤p} (-a dt)^k / k!
    (p = 1, 2, 4): the Taylor series of exp(-a dt) to the scheme's order."""
    model, x, c, a, _ = _linear_symbols()
    (output,) = compose(step_program(model, get_integrator(name)), {c: 0})
    order = {"euler": 1, "heun": 2, "rk4": 4}[name]
    z = -a * DT
    assert sympy.expand(output - x * sum(z**k / math.factorial(k) for k in range(order + 1))) == 0


# =========================================================================== bounds

MPR = nm.load_model("montbrio")
R, V = symbol("r"), symbol("V")


def _mpr_values(r: float, v: float, dt: float, **noise) -> dict:
    values = {symbol(p.name): p.default for p in MPR.parameters if p.default is not None}
    values.update({R: r, V: v, DT: dt, symbol("c_pop0"): 0.0, symbol("c_pop1"): 0.0,
                   symbol("global_speed"): 3.0})
    values.update({symbol(k): z for k, z in noise.items()})
    return {k: sympy.Float(val) for k, val in values.items()}


def _mpr_drift(r: float, v: float) -> np.ndarray:
    """TVB's MontbrioPazoRoxin with default parameters and no coupling."""
    tau, delta, eta, j = 1.0, 1.0, -5.0, 15.0
    return np.array([(delta / (np.pi * tau) + 2 * v * r) / tau,
                     (v**2 - np.pi**2 * tau**2 * r**2 + eta + j * tau * r) / tau])


def _clamp(state):
    return np.array([max(state[0], 0.0), state[1]])  # MPR: r >= 0


def _by_hand(name: str, x: np.ndarray, dt: float, xi=(0.0, 0.0), clamp=_clamp) -> np.ndarray:
    """One step of the tableau, clamping every stage point and the result, with the noise
    increment ξ added to every stage point and to the result."""
    xi = np.asarray(xi)
    integrator = INTEGRATORS[name]
    slopes = []
    for stage in range(integrator.n_stages):
        point = x if stage == 0 else clamp(
            x + dt * sum(float(w) * k for w, k in zip(integrator.a[stage], slopes)) + xi)
        slopes.append(_mpr_drift(*point))
    return clamp(x + dt * sum(float(w) * k for w, k in zip(integrator.b, slopes)) + xi)


@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
def test_bounds_clamp_after_every_stage(name):
    """MPR at r = 0.1, V = -50: dr/dt ≈ -9.7, so x + dt·k crosses r = 0 within the step and
    the stage points (and for Euler and Heun the result) are clamped to r = 0. The program
    equals the tableau with clamping after every stage to 1e-12, and differs from clamping
    only at the end."""
    x, dt = np.array([0.1, -50.0]), 0.1
    assert x[0] + dt * _mpr_drift(*x)[0] < 0  # the first stage point crosses the bound
    out = np.array([float(e) for e in compose(step_program(MPR, get_integrator(name)),
                                              _mpr_values(*x, dt))])
    expected = _by_hand(name, x, dt)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    if name != "rk4":  # (RK4's later stages see V² ≈ 2500 and overshoot upwards instead)
        assert out[0] == 0.0
    if name != "euler":  # a scheme with inner stages: clamping them matters
        only_at_end = _clamp(_by_hand(name, x, dt, clamp=lambda s: s))
        assert np.abs(only_at_end - expected).max() > 1e-3


def test_bounds_appear_as_max_in_every_stage():
    program = step_program(MPR, get_integrator("rk4"))
    stage_points = [e for block in program.blocks for s, e in block if "stage" in s.name]
    r_points = [e for e in stage_points if e.has(R) and e.func is sympy.Max]
    assert len(r_points) == 3  # stages 2, 3, 4 of r; V is unbounded
    assert program.outputs[0].func is sympy.Max and program.outputs[1].func is not sympy.Max


# =========================================================================== noise


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_noise_enters_every_stage_with_the_same_sample(name):
    """Additive noise ξ = σ z with one z per state variable and step (``program.noise``),
    added to the predictor and to the result (TVB's stochastic Heun), with r clamped."""
    sigma = (sympy.Float(0.3), sympy.Float(0.2))
    program = step_program(MPR, get_integrator(name, stochastic=True), sigma)
    assert [z.name for z in program.noise] == ["nm_z_r", "nm_z_V"]
    x, dt, z = np.array([0.2, -1.5]), 0.1, np.array([-0.8, 1.3])
    values = _mpr_values(*x, dt, nm_z_r=z[0], nm_z_V=z[1])
    out = np.array([float(e) for e in compose(program, values)])
    xi = np.array([0.3, 0.2]) * z
    np.testing.assert_allclose(out, _by_hand(name, x, dt, xi), rtol=1e-12)
    # a scheme drawing separate samples per stage would differ: the noise reaches f in stage 2
    if name == "heun":
        without_stage_noise = _by_hand(name, x, dt, xi) - dt / 2 * (
            _mpr_drift(*_clamp(x + dt * _mpr_drift(*x) + xi))
            - _mpr_drift(*_clamp(x + dt * _mpr_drift(*x))))
        assert np.abs(out - without_stage_noise).max() > 1e-4


def test_noise_with_rk4_is_rejected():
    with pytest.raises(ParameterError, match="integrator 'rk4' is deterministic only"):
        get_integrator("rk4", stochastic=True)
    with pytest.raises(ParameterError, match="integrator 'rk4' does not support noise"):
        step_program(MPR, INTEGRATORS["rk4"], (sympy.Float(0.1),) * 2)


def test_unknown_integrator():
    with pytest.raises(ParameterError, match=r"unknown integrator 'midpoint'; valid integrators "
                                             r"are euler, heun, rk4"):
        get_integrator("midpoint")
    assert get_integrator("HEUN") is INTEGRATORS["heun"]


# =========================================================================== coupling

# the coupling of each bundled model written out by hand: (n_node, n_node) arrays of the
# target's state ``local[name][i, j] = x_i`` and the delayed source ``delayed[name][i, j] =
# x_j(t - d_ij)``; G = global_coupling
COUPLINGS = {
    "kuramoto": lambda w, local, delayed, g: [
        g * (w * np.sin(delayed["theta"] - local["theta"])).sum(axis=1)],
    "montbrio": lambda w, local, delayed, g: [
        g * (w * delayed["r"]).sum(axis=1), g * (w * delayed["V"]).sum(axis=1)],
    "epileptor": lambda w, local, delayed, g: [
        g * (w * (delayed["x1"] - local["x1"])).sum(axis=1),
        g * (w * (delayed["x2"] - local["x2"])).sum(axis=1)],
    "generic2d": lambda w, local, delayed, g: [g * (w * delayed["V"]).sum(axis=1)],
    "rwongwang": lambda w, local, delayed, g: [g * (w * delayed["S_e"]).sum(axis=1)],
}


def evaluate_coupling(program: CouplingProgram, weights, local, delayed, params) -> list:
    """Each rule's output per node: ``post(Σ_j w_ij pre)`` with ``pre`` evaluated per edge by
    ``sympy.lambdify`` (NumPy, float64)."""
    outputs = []
    for rule in program.rules:
        inputs = [*rule.local, *rule.delayed, *params]
        values = [local[s.name] for s in rule.local]
        values += [delayed[source] for source in rule.sources]
        values += list(params.values())
        pre = np.broadcast_to(sympy.lambdify(inputs, rule.pre, "numpy")(*values), weights.shape)
        summed = (weights * pre).sum(axis=1)
        post = sympy.lambdify([rule.summed, *params], rule.post, "numpy")
        outputs.append(np.broadcast_to(post(summed, *params.values()), summed.shape))
    return outputs


@pytest.mark.parametrize("name", sorted(COUPLINGS))
def test_coupling_program_matches_the_model_coupling(name):
    """On a random 5-node network with zero and non-zero weights, random states and random
    delayed values per edge, every rule gives the coupling written out in NumPy, to 1e-12
    relative (float64, only the summation order differs)."""
    model = nm.load_model(name)
    program = coupling_program(model)
    assert [r.output for r in program.rules] == list(model.coupling_symbols)
    assert program.history == model.coupled_variables and program.dead == ()
    rng = np.random.default_rng(3)
    n = 5
    weights = rng.uniform(0, 1, (n, n)) * (rng.uniform(size=(n, n)) < 0.6)
    local = {s: np.broadcast_to(rng.uniform(-1, 1, (n, 1)), (n, n)) for s in model.state_names}
    delayed = {s: rng.uniform(-1, 1, (n, n)) for s in model.state_names}
    params = {symbol(p.name): (3.0 if p.default is None else p.default) for p in model.parameters}
    params[symbol("global_coupling")] = 0.7
    params.update({symbol("dt"): 0.1, symbol("n_node"): float(n)})
    got = evaluate_coupling(program, weights, local, delayed, params)
    expected = COUPLINGS[name](weights, local, delayed, 0.7)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-15)


def test_post_without_the_sum_is_a_multiplier():
    """RateML: a ``post`` that does not use the sum multiplies it (Kuramoto's ``post = 1``, a
    coupling with no ``post``), one that uses it is applied to it; the scale multiplies both."""
    g = symbol("global_coupling")
    (kuramoto,) = coupling_program(nm.load_model("kuramoto")).rules
    assert kuramoto.post == g * kuramoto.summed
    (linear,) = coupling_program(linear_model()).rules  # no post, c_pop0 = global_coupling
    assert linear.post == g * linear.summed
    tanh = nm.lems.loads(LINEAR_TANH)
    (rule,) = coupling_program(tanh).rules
    assert rule.post == 2 * g * sympy.tanh(rule.summed)
    assert tanh.coupling_terms[0].post_of_sum == sympy.tanh(rule.summed)


LINEAR_TANH = """<Lems description="tanh of the sum">
  <ComponentType name="derivatives">
    <Parameter name="global_coupling" dimension="0.0, 1.0" default="1.0"/>
    <Dynamics>
      <StateVariable name="x" dimension="0, 1"/>
      <TimeDerivative variable="dx" value="-x + c_pop0"/>
    </Dynamics>
  </ComponentType>
  <ComponentType name="coupling_x">
    <Parameter name="x_j" dimension="0"/>
    <DerivedParameter name="c_pop0" value="2 * global_coupling"/>
    <Dynamics>
      <DerivedVariable name="post" value="tanh(pre)"/>
    </Dynamics>
  </ComponentType>
</Lems>
"""


def test_prune_keeps_the_terms_the_step_reads():
    """Montbrió with cv = 0: ``cv * c_pop1`` vanishes from the step once cv is substituted, so
    the coupling through V is dead and only r is kept in the history; with cv free both stay."""
    step = step_program(MPR, get_integrator("heun"))
    program = coupling_program(MPR)
    both = program.prune(step)
    assert [r.output for r in both.rules] == [symbol("c_pop0"), symbol("c_pop1")]
    assert both.history == ("r", "V") and both.dead == ()
    fixed = {symbol("cv"): sympy.Float(0.0)}
    pruned = program.substitute(fixed).prune(step.substitute(fixed))
    assert [r.output for r in pruned.rules] == [symbol("c_pop0")]
    assert pruned.dead == (symbol("c_pop1"),) and pruned.history == ("r",)
    assert pruned.history_index(pruned.rules[0]) == (0,)


def test_substitute_drops_local_state_no_longer_read():
    (rule,) = coupling_program(linear_model()).rules
    a, x, x_j = symbol("a"), symbol("x"), symbol("x_j")
    rule = CouplingRule(rule.output, ("x",), (x_j,), (x,), x_j - a * x, rule.summed, rule.post)
    assert rule.substitute({a: sympy.Float(1.0)}).local == (x,)
    assert rule.substitute({a: sympy.Integer(0)}).local == ()


def test_separations():
    """Kuramoto's ``sin(θ_j - θ)`` separates only once expanded: into pairs (a, b) with
    Σ a b = pre, a free of θ_j and b free of θ. Epileptor's ``x1_j - x1`` separates as it
    is (b = 1 is the row sum of the weights); ``exp(x_j x)`` does not separate."""
    theta, theta_j = symbol("theta"), symbol("theta_j")
    (kuramoto,) = coupling_program(nm.load_model("kuramoto")).rules
    (pairs,) = list(kuramoto.separations())
    assert sympy.simplify(sum(a * b for a, b in pairs) - kuramoto.pre) == 0
    assert all(theta_j not in a.free_symbols and theta not in b.free_symbols for a, b in pairs)
    assert {b for _, b in pairs} == {sympy.sin(theta_j), sympy.cos(theta_j)}
    assert kuramoto.at_source(sympy.sin(theta_j)) == sympy.sin(theta)

    x1 = symbol("x1")
    first, _ = coupling_program(nm.load_model("epileptor")).rules
    assert set(next(first.separations())) == {(sympy.Integer(1), symbol("x1_j")),
                                              (-x1, sympy.Integer(1))}
    x, x_j = symbol("x"), symbol("x_j")
    (rule,) = coupling_program(linear_model()).rules
    rule = CouplingRule(rule.output, ("x",), (x_j,), (x,), sympy.exp(x_j * x), rule.summed,
                        rule.post)
    assert list(rule.separations()) == []


def test_a_rule_may_read_two_delayed_variables():
    """The structure does not assume one delayed variable per term: a ``pre`` of two (TVB's
    SigmoidalJansenRit reads ``y1_j - y2_j``) has a history of both, indexed per source, and
    separates into one channel per variable."""
    y1, y2, y1_j, y2_j = (symbol(n) for n in ("y1", "y2", "y1_j", "y2_j"))
    summed = symbol("pre")
    rule = CouplingRule(symbol("c_pop0"), ("y1", "y2"), (y1_j, y2_j), (), y1_j - y2_j, summed,
                        symbol("global_coupling") * summed)
    program = CouplingProgram(rules=(rule,), dead=(), coupled=("y1", "y2"))
    assert program.history == ("y1", "y2") and program.history_index(rule) == (0, 1)
    (pairs,) = list(rule.separations())
    assert {rule.at_source(b) for _, b in pairs} == {y1, y2}
    weights = np.array([[0.0, 0.5], [2.0, 0.0]])
    delayed = {"y1": np.array([[1.0, 3.0], [5.0, 0.0]]), "y2": np.array([[0.0, 1.0], [2.0, 0.0]])}
    (got,) = evaluate_coupling(program, weights, {}, delayed, {symbol("global_coupling"): 0.5})
    np.testing.assert_allclose(got, [0.5 * 0.5 * (3.0 - 1.0), 0.5 * 2.0 * (5.0 - 2.0)])


def test_history_lengths():
    """H = max delay + 1 rows are read; the ring has B rows, the smallest power of two above
    H, so the row a step writes is never one it reads (brute force over delays 0 … 300)."""
    for d in range(301):
        assert history_horizon(d) == d + 1
        b = history_length(d)
        assert b & (b - 1) == 0 and b >= d + 2 and (b == 2 or b // 2 < d + 2)
        k = 1000
        assert all((k + 1) % b != (k - delay) % b for delay in range(d + 1))


# =========================================================================== lowering


@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
def test_jax_lowering_computes_the_program(name, jax_x64):
    """The JAX step function printed from the program gives the SymPy program's numbers
    (both in float64; 1e-13 relative allows for a different operation order after cse)."""
    from neuralmass.backends.jax import lower

    stochastic = name != "rk4"
    sigma = (sympy.Float(0.3), sympy.Float(0.2)) if stochastic else None
    integrator = get_integrator(name, stochastic=stochastic)
    lowered = lower(MPR, integrator, sigma, 0.1, 1)
    x, z = (0.1, -50.0), ((-0.8, 1.3) if stochastic else ())
    noise = dict(zip(("nm_z_r", "nm_z_V"), z, strict=False))
    expected = [float(e) for e in compose(step_program(MPR, integrator, sigma),
                                          _mpr_values(*x, 0.1, **noise))]
    params = [p.default if p.default is not None else 3.0 for p in MPR.parameters]
    got = [float(v) for v in lowered.step(*x, 0.0, 0.0, *z, *params)]
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
