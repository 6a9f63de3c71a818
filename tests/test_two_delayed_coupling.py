"""A coupling term whose ``pre`` reads several delayed state variables (issue 12: TVB's
SigmoidalJansenRit reads ``y1_j - y2_j``).

1. The dialect: one ``<Parameter name="<var>_j" dimension="<index>"/>`` per delayed variable in
   one coupling ComponentType; the IR keeps them in declaration order (``CouplingTerm.sources``,
   ``.delayed``), the history follows; the errors for a malformed second variable.
2. Every backend against a NumPy reference written out here (a ring of past states, Heun,
   the coupling summed edge by edge): JAX, Numba and the CUDA kernel compiled for the host
   (``neuralmass.backends.cuda.emulate``), for the three ways a backend may lower such a
   ``pre`` — one history channel of both variables (a sigmoid of ``x_j - y_j``), one channel
   per variable (``sin(x_j) - 0.5 cos(y_j) + ...``) and ``pre`` per edge (it mixes local and
   delayed values inside ``tanh``; the delayed variables declared in the other order).
   Float64 to 1e-10 relative: the codes differ only in the order of floating-point operations
   (measured 3e-16 to 1.4e-14) over 1,000 contracting steps.
3. TVB's SigmoidalJansenRit as tvb-library computes it: ``pre`` and ``post`` against
   ``tvb.simulator.coupling.SigmoidalJansenRit`` on random values, and the whole-run check of
   ``test_catalogue_tvb.py`` shown to be sensitive to each delayed variable: reading ``y1`` or
   ``y2`` at the target node instead of delayed moves the run away from tvb-library's by far
   more than the 1e-6 tolerance.
4. The CUDA kernels of ``jansen_rit`` and ``zetterberg_jansen`` compile with nvcc and their host
   emulation matches Numba in float64 (1e-9) and float32 (1e-4 of each variable's largest
   magnitude, float32 rounding over 1,000 steps; measured 1e-15 and 1.4e-6 to 2.6e-6), 5
   parameter sets in blocks of 4.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import sympy
from helpers import available_backends, max_relative_error_per_variable

import neuralmass as nm
import neuralmass.lems as lems
from neuralmass.backends import cuda
from neuralmass.errors import ExpressionError, ModelError
from neuralmass.model import symbol
from neuralmass.plan import make_plan
from neuralmass.scheme import coupling_program

NUMBA = "numba" in available_backends()
needs_numba = pytest.mark.skipif(not NUMBA, reason="the Numba backend cannot run here")

TEMPLATE = """<Lems description="two delayed variables">
  <ComponentType name="derivatives">
    <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.5"/>
    <Constant name="omega" value="0.8"/>
    <Dynamics>
      <StateVariable name="x" dimension="-1, 1"/>
      <StateVariable name="y" dimension="-1, 1"/>
      <StateVariable name="z" dimension="-1, 1"/>
      <TimeDerivative variable="dx" value="-omega * y - 0.5 * x + c_pop0"/>
      <TimeDerivative variable="dy" value="omega * x - 0.5 * y"/>
      <TimeDerivative variable="dz" value="-z + 0.5 * x"/>
    </Dynamics>
  </ComponentType>
  <ComponentType name="coupling_x_y">
    @DELAYED@
    <DerivedParameter name="c_pop0" value="global_coupling"/>
    @FUNCTIONS@
  </ComponentType>
</Lems>
"""
X_AND_Y = '<Parameter name="x_j" dimension="0"/>\n    <Parameter name="y_j" dimension="1"/>'


def model_text(delayed: str = X_AND_Y, pre: str | None = "x_j - y_j",
               post: str | None = None) -> str:
    functions = "".join(f'<DerivedVariable name="{name}" value="{value}"/>'
                        for name, value in (("pre", pre), ("post", post)) if value is not None)
    return (TEMPLATE.replace("@DELAYED@", delayed)
            .replace("@FUNCTIONS@", f"<Dynamics>{functions}</Dynamics>" if functions else ""))


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def fails(text: str, line: int, match: str, error=ModelError):
    with pytest.raises(error, match=f"model\\.xml:{line}: {match}"):
        lems.loads(text, filename="model.xml")


# =========================================================================== the dialect


def test_one_term_reads_two_delayed_variables():
    model = lems.loads(model_text(pre="tanh(x_j - y_j) * x"), filename="model.xml")
    (term,) = model.coupling_terms
    x, y, x_j, y_j = (symbol(n) for n in ("x", "y", "x_j", "y_j"))
    assert term.sources == ("x", "y") and term.delayed == (x_j, y_j)
    assert term.pre == sympy.tanh(x_j - y_j) * x
    assert model.coupled_variables == ("x", "y")
    assert "(x_j = x[j](t - d_ij), y_j = y[j](t - d_ij))" in str(model)
    (rule,) = coupling_program(model).rules
    assert rule.sources == ("x", "y") and rule.delayed == (x_j, y_j) and rule.local == (x,)
    assert coupling_program(model).history_index(rule) == (0, 1)


def test_the_history_follows_the_declaration_order():
    delayed = '<Parameter name="y_j" dimension="1"/>\n    <Parameter name="x_j" dimension="0"/>'
    model = lems.loads(model_text(delayed=delayed), filename="model.xml")
    (term,) = model.coupling_terms
    assert term.sources == ("y", "x") and model.coupled_variables == ("y", "x")
    program = coupling_program(model)
    assert program.history == ("y", "x") and program.history_index(program.rules[0]) == (0, 1)


def test_a_variable_read_twice_is_an_error():
    text = model_text(delayed='<Parameter name="x_j" dimension="0"/>\n    '
                              '<Parameter name="x_again" dimension="0"/>', pre="x_j - x_again")
    fails(text, line_of(text, "x_again"),
          r"'x_again' reads state variable 'x' \(index 0\), as 'x_j' on line "
          rf"{line_of(text, 'x_j')} already does; a coupling term reads each state variable "
          "once")
    text = model_text(delayed=X_AND_Y + '\n    <Parameter name="x_j" dimension="0"/>')
    fails(text, line_of(text, "x_j") + 2, rf"duplicate name 'x_j' \(first declared on line "
                                          rf"{line_of(text, 'x_j')}\)")


def test_a_malformed_second_variable_is_an_error():
    second = '<Parameter name="x_j" dimension="0"/>\n    <Parameter name="y_j" dimension="{}"/>'
    text = model_text(delayed=second.format(3))
    fails(text, line_of(text, "y_j"), r"coupling index 3 of 'y_j' is out of range: the model "
                                      r"has 3 state variables \(0=x, 1=y, 2=z\)")
    text = model_text(delayed=second.format("one"))
    fails(text, line_of(text, "y_j"), "state index of 'y_j' must be an integer, got 'one'")
    text = model_text(delayed=second.format(2))
    fails(text, line_of(text, "y_j"), "'y_j' names state variable 'y' but its index 2 is 'z'")


def test_several_delayed_variables_need_a_pre_that_reads_each():
    text = model_text(pre=None)
    fails(text, line_of(text, "coupling_x_y"),
          r"<ComponentType name='coupling_x_y'> reads 2 delayed variables \(x_j, y_j\) and "
          r"needs a 'pre' that combines them, e.g. <DerivedVariable name='pre' "
          r"value='x_j - y_j'/>")
    text = model_text(pre="sin(x_j) + y")
    fails(text, line_of(text, "y_j"),
          r"<ComponentType name='coupling_x_y'> declares the delayed variable 'y_j' but its "
          r"'pre' does not read it; remove the Parameter or use 'y_j' in 'pre'")


def test_delayed_variables_belong_to_pre_only():
    text = model_text(post="pre * y_j")
    fails(text, line_of(text, '"post"'),
          rf"coupling 'post': 'y_j' is the delayed coupling variable on line "
          rf"{line_of(text, 'y_j')}, which cannot be used here", ExpressionError)


def test_jansen_rit_declares_tvb_sigmoidal_coupling():
    model = nm.load_model("JansenRit")
    (term,) = model.coupling_terms
    assert term.sources == ("y1", "y2") and model.coupled_variables == ("y1", "y2")
    cmin, cmax, midpoint, r = (symbol(n) for n in ("cmin", "cmax", "midpoint", "r_coupling"))
    y1_j, y2_j = term.delayed
    assert sympy.simplify(term.pre - (cmin + (cmax - cmin)
                                      / (1 + sympy.exp(r * (midpoint - (y1_j - y2_j)))))) == 0
    assert term.post_of_sum == term.summed and term.scale == symbol("global_coupling")
    # TVB's coupling[0] enters dy4 only
    c = term.symbol
    assert [c in sv.derivative.free_symbols for sv in model.state_variables] == [
        False, False, False, False, True, False]


# =========================================================================== backends

#: pre -> how Numba lowers it: one history channel of both variables, a channel (and its
#: weighted sum) per variable, or pre per edge from the two variables' histories.
PRES = {
    "one channel": (model_text(pre="1 / (1 + exp(-2 * (x_j - y_j)))"),
                    lambda x, x_j, y_j: 1 / (1 + np.exp(-2 * (x_j - y_j)))),
    "a channel each": (model_text(pre="sin(x_j) - 0.5 * cos(y_j) + 0.25 * x"),
                       lambda x, x_j, y_j: np.sin(x_j) - 0.5 * np.cos(y_j) + 0.25 * x),
    "per edge": (model_text(pre="tanh(x_j - y_j + x)",
                            delayed='<Parameter name="y_j" dimension="1"/>\n    '
                                    '<Parameter name="x_j" dimension="0"/>'),
                 lambda x, x_j, y_j: np.tanh(x_j - y_j + x)),
}
DT, N_STEPS, SPEED = 0.1, 1000, 2.0
COUPLINGS = (0.2, 0.5, 0.9)  # global_coupling of the parameter sets


def small_network():
    """8 regions, random sparse weights (zero diagonal) and tract lengths 0 - 40 mm: delays of
    0 - 200 steps at 2 mm/ms, dt = 0.1 ms; one history of all state variables with rows that
    differ, so the delayed values are not the current ones."""
    rng = np.random.default_rng(12)
    n = 8
    weights = rng.uniform(0.1, 1.0, (n, n)) * (rng.uniform(size=(n, n)) < 0.6)
    np.fill_diagonal(weights, 0.0)
    lengths = rng.uniform(0.0, 40.0, (n, n))
    conn = nm.Connectivity(weights, lengths, speed=SPEED)
    rows = int(np.rint(lengths / SPEED / DT).max()) + 1
    history = rng.uniform(-1.0, 1.0, (rows, 3, n))
    return conn, history


def numpy_reference(pre, weights, lengths, history, coupling_scale):
    """Heun with TVB's delayed coupling, written out: (N_STEPS, 3, N) states at dt .. n dt.
    ``past[k]`` is the state at step k - (H - 1); an edge j -> i reads x and y of node j at
    t - d_ij, d_ij = rint(L_ij / speed / dt)."""
    delays = np.rint(lengths / SPEED / DT).astype(int)
    past = list(history)
    rows = len(history)
    i, j = np.nonzero(weights)
    omega = 0.8

    def drift(s, c):
        x, y, z = s
        return np.array([-omega * y - 0.5 * x + c, omega * x - 0.5 * y, -z + 0.5 * x])

    out = []
    for k in range(N_STEPS):
        state = past[-1]
        delayed = np.array([past[rows - 1 + k - d] for d in delays[i, j]])  # (edges, 3, N)
        x_j = delayed[np.arange(len(i)), 0, j]
        y_j = delayed[np.arange(len(i)), 1, j]
        per_edge = weights[i, j] * pre(state[0, i], x_j, y_j)
        c = coupling_scale * np.bincount(i, per_edge, minlength=len(weights))
        f1 = drift(state, c)
        f2 = drift(state + DT * f1, c)
        past.append(state + DT / 2 * (f1 + f2))
        out.append(past[-1])
    return np.array(out)


@pytest.fixture(scope="module")
def network():
    return small_network()


@pytest.mark.parametrize("backend", ["jax", pytest.param("numba", marks=needs_numba),
                                     "cuda-emulated"])
@pytest.mark.parametrize("form", PRES)
def test_backends_match_the_numpy_reference(network, form, backend):
    text, pre = PRES[form]
    model = lems.loads(text, filename="model.xml")
    conn, history = network
    params = {"global_coupling": np.array(COUPLINGS)}
    options = dict(dt=DT, n_steps=N_STEPS, integrator="heun", initial_history=history)
    if backend == "cuda-emulated":
        states, _ = cuda.emulate(make_plan(model, conn, params, **options), block=2)
    else:
        states = nm.simulate(model, conn, params, backend=backend, **options).data
    for p, g in enumerate(COUPLINGS):
        expected = numpy_reference(pre, conn.weights, conn.tract_lengths, history, g)
        error = max_relative_error_per_variable(np.asarray(states)[..., p], expected)
        assert error <= 1e-10, f"{form}/{backend}/G={g}: max relative error {error:.2e}"


# =========================================================================== tvb-library


@pytest.mark.tvb
def test_pre_and_post_are_tvb_sigmoidal_jansen_rit():
    """Our pre and post against tvb-library's own methods on random (y1_j, y2_j) and random
    coupling parameters, to 1e-14 relative (float64)."""
    coupling = pytest.importorskip("tvb.simulator.coupling",
                                   reason="tvb-library is not installed (the 'tvb' extra)")
    model = nm.load_model("jansen_rit")
    (term,) = model.coupling_terms
    rng = np.random.default_rng(4)
    for _ in range(5):
        values = {"cmin": rng.uniform(-0.01, 0.01), "cmax": rng.uniform(0.0, 0.02),
                  "midpoint": rng.uniform(0.0, 10.0), "r_coupling": rng.uniform(0.1, 1.0),
                  "global_coupling": rng.uniform(0.1, 5.0)}
        tvb = coupling.SigmoidalJansenRit(
            cmin=np.array([values["cmin"]]), cmax=np.array([values["cmax"]]),
            midpoint=np.array([values["midpoint"]]), r=np.array([values["r_coupling"]]),
            a=np.array([values["global_coupling"]]))
        x_j = rng.uniform(-20.0, 30.0, (6, 2, 7, 1))  # (to, cvar = y1 y2, from, mode)
        expected = tvb.pre(None, x_j)[:, 0, :, 0]
        numbers = {symbol(k): v for k, v in values.items()}
        pre = sympy.lambdify(term.delayed, term.pre.xreplace(numbers), "numpy")
        np.testing.assert_allclose(pre(x_j[:, 0, :, 0], x_j[:, 1, :, 0]), expected,
                                   rtol=1e-14)
        total = rng.uniform(-1.0, 1.0, 3)
        post = sympy.lambdify(term.summed, term.node_input(term.summed).xreplace(numbers))
        np.testing.assert_allclose([post(t) for t in total], tvb.post(total), rtol=1e-14)


JR_DT, JR_STEPS = 2.0**-4, 1000
JR_CENTRE = np.array([0.08, 15.0, 10.0, 0.0, 0.0, 0.0])
JR_SPREAD = np.array([0.05, 5.0, 5.0, 0.5, 2.0, 2.0])


@pytest.mark.tvb
def test_the_tvb_check_sees_each_delayed_variable():
    """jansen_rit matches tvb-library to 1e-6 (as in ``test_catalogue_tvb.py``), and the same
    model with ``y1`` or ``y2`` read at the target node instead of delayed does not: it is
    more than 1e3 times the tolerance away, so the check would catch a backend that read
    either variable at the wrong time."""
    pytest.importorskip("tvb.simulator", reason="tvb-library is not installed (the 'tvb' extra)")
    pytest.importorskip("tvb_data", reason="tvb-data is not installed (the 'tvb' extra)")
    from tvb_reference import connectivity_76, run_tvb, tvb_horizon

    weights, lengths = connectivity_76()
    rows = tvb_horizon(lengths, 3.0, JR_DT)
    rng = np.random.default_rng(99)
    history = JR_CENTRE[None, :, None] + JR_SPREAD[None, :, None] * rng.uniform(
        -1.0, 1.0, (rows, 6, len(weights)))
    _, expected = run_tvb("jansen_rit", weights, lengths, speed=3.0, dt=JR_DT,
                          n_steps=JR_STEPS, integrator="heun", initial_history=history,
                          params={"global_coupling": 1.0})
    with open(nm.models.path("jansen_rit"), encoding="utf-8") as handle:
        text = handle.read()
    conn = nm.Connectivity(weights, lengths, speed=3.0)

    def error(xml: str) -> float:
        res = nm.simulate(lems.loads(xml, filename="variant.xml"), conn,
                          {"global_coupling": 1.0}, backend="jax", dt=JR_DT,
                          n_steps=JR_STEPS, integrator="heun", initial_history=history)
        return max_relative_error_per_variable(res.data[..., 0], expected)

    assert error(text) <= 1e-6
    local_y2 = text.replace("(y1_j - y2_j)", "(y1_j - y2)").replace(
        '<Parameter name="y2_j" dimension="2"/>', "")
    local_y1 = text.replace("(y1_j - y2_j)", "(y1 - y2_j)").replace(
        '<Parameter name="y1_j" dimension="1"/>', "")
    assert local_y2 != text and local_y1 != text
    assert error(local_y2) > 1e-3
    assert error(local_y1) > 1e-3


# =========================================================================== CUDA

CUDA_MODELS = {
    # cmax swept: a coupling constant read inside pre, per set
    "jansen_rit": dict(params={"global_coupling": np.linspace(0.0, 2.0, 5),
                               "cmax": np.linspace(0.004, 0.006, 5)},
                       centre=JR_CENTRE, spread=JR_SPREAD),
    "zetterberg_jansen": dict(
        params={"global_coupling": np.linspace(0.0, 2.0, 5)},
        centre=np.array([4.0, 0.0, 8.0, 0.0, 10.0, 0.0, 4.0, 0.0, 1.0, 0.0, 2.0, 3.0]),
        spread=np.array([2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 1.0, 2.0, 2.0])),
}


def cuda_plan(model: str, *, dtype="float64", noise=None, n_steps=N_STEPS):
    case = CUDA_MODELS[model]
    conn = nm.Connectivity.default()
    rng = np.random.default_rng(21)
    state = case["centre"][:, None] + case["spread"][:, None] * rng.uniform(
        -1.0, 1.0, (len(case["centre"]), conn.n_regions))
    return make_plan(nm.load_model(model), conn, case["params"], dt=JR_DT, n_steps=n_steps,
                     integrator="heun", noise=noise, initial_state=state, dtype=dtype)


def test_jansen_rit_kernel_reads_both_delayed_variables():
    source = cuda.generated_source(cuda_plan("jansen_rit", n_steps=10))
    assert "y1_j" in source and "y2_j" in source
    assert cuda.build_kernel(cuda_plan("jansen_rit", n_steps=10)).n_history == 2


@pytest.mark.nvcc
@pytest.mark.parametrize("noise", [None, 1e-5], ids=["heun", "stochastic-heun"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", CUDA_MODELS)
def test_kernel_compiles_with_nvcc(tmp_path, model, dtype, noise):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on the PATH (install the CUDA toolkit to check the kernels)")
    path = os.path.join(tmp_path, "kernel.cu")
    with open(path, "w") as handle:
        handle.write(cuda.generated_source(cuda_plan(model, dtype=dtype, noise=noise,
                                                     n_steps=10)))
    for flags in (["-ptx", "-arch=sm_80"], ["-cubin", "-arch=sm_90"]):
        result = subprocess.run(["nvcc", *flags, "-std=c++17", path, "-o",
                                 os.path.join(tmp_path, "kernel.out")],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stderr, result.stderr


@needs_numba
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", CUDA_MODELS)
def test_emulated_kernel_matches_numba(model, dtype):
    from neuralmass.backends import numba as numba_backend

    expected = numba_backend.run(cuda_plan(model))
    got = cuda.emulate(cuda_plan(model, dtype=dtype), block=4)
    tolerance = 1e-9 if dtype == "float64" else 1e-4
    for actual, want in zip(got, expected, strict=True):
        assert actual.shape == want.shape and np.isfinite(actual).all()
        if want.size:
            error = max_relative_error_per_variable(actual, want)
            assert error <= tolerance, f"{model}/{dtype}: max relative error {error:.2e}"
