"""The functions the expression language gained for tvb-library's catalogue (``erf``, ``erfc``
for the Zerlaut transfer functions, ``atan2`` for EpileptorCodim3's cube roots, ``asin``,
``acos``, ``atan``), lowered by every backend and compared with NumPy/SciPy.

One model evaluates each function of swept parameters: ``d f/dt = f(a, b, u)`` from
``f = 0``, one Euler step of 1 ms, so the state after the step is the function's value, one
parameter set per point (the whole path: parsing, the scheme, each backend's printer and
loops). Points: ``a`` in [-6, 6] (erfc down to 2e-17), ``b`` in [-3, 3] with zeros
(``atan2`` in all four quadrants and on both axes), ``u`` in [-1, 1] ends included.

Tolerances: float64 1e-14 relative (libm, XLA and SciPy agree to a few ulp; JAX's erfc is
within 2.1e-15, measured); float32 2e-5 relative to the float64 value at the float32-rounded
point, plus 1e-7 absolute where the value is 0 (erfc's condition number 2 a² is 72 at a = 6,
times float32's 6e-8 rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import neuralmass as nm
from neuralmass.lems import FUNCTIONS
from neuralmass.plan import make_plan

P = 401
REFERENCES = {  # state variable: (expression, NumPy/SciPy of (a, b, u))
    "f_erf": ("erf(a)", lambda a, b, u: scipy.special.erf(a)),
    "f_erfc": ("erfc(a)", lambda a, b, u: scipy.special.erfc(a)),
    "f_erfc_minus": ("erfc(-a)", lambda a, b, u: scipy.special.erfc(-a)),
    "f_atan": ("atan(a)", lambda a, b, u: np.arctan(a)),
    "f_atan2": ("atan2(b, a)", lambda a, b, u: np.arctan2(b, a)),
    "f_asin": ("asin(u)", lambda a, b, u: np.arcsin(u)),
    "f_acos": ("acos(u)", lambda a, b, u: np.arccos(u)),
    "f_acos_minus": ("acos(-u)", lambda a, b, u: np.arccos(-u)),
}
NEW_FUNCTIONS = {"erf", "erfc", "atan", "atan2", "asin", "acos"}

XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="the catalogue's functions of swept parameters">
    <ComponentType name="derivatives">
        <Parameter name="a" dimension="-6.0, 6.0"/>
        <Parameter name="b" dimension="-3.0, 3.0"/>
        <Parameter name="u" dimension="-1.0, 1.0"/>
        <Dynamics>
""" + "".join(f"""            <StateVariable name="{name}" dimension="0.0, 0.0"/>
            <TimeDerivative variable="d{name}" value="{expression}"/>
""" for name, (expression, _) in REFERENCES.items()) + """        </Dynamics>
    </ComponentType>
</Lems>
"""


def _points() -> dict[str, np.ndarray]:
    a = np.linspace(-6.0, 6.0, P)  # includes 0
    b = np.resize([-2.5, -1.0, 0.0, 0.7, 3.0], P)  # zero with a of both signs
    u = np.linspace(-1.0, 1.0, P)
    return {"a": a, "b": b, "u": u}


def _run(backend: str, dtype: str) -> np.ndarray:
    """The functions' values (n_function, P) computed by ``backend`` in ``dtype``."""
    model = nm.lems.loads(XML, filename="functions.xml")
    conn = nm.Connectivity(np.zeros((1, 1)), np.zeros((1, 1)))
    plan = make_plan(model, conn, _points(), dt=1.0, n_steps=1, integrator="euler",
                     initial_state=np.zeros((len(REFERENCES), 1)), dtype=dtype)
    if backend == "cuda":
        from neuralmass.backends import cuda

        states = cuda.emulate(plan, block=32)[0]
    else:
        import importlib

        states = importlib.import_module(f"neuralmass.backends.{backend}").run(plan)[0]
    states = np.asarray(states)
    assert states.shape == (1, len(REFERENCES), 1, P)
    return states[0, :, 0, :]


def test_every_new_function_is_covered():
    assert NEW_FUNCTIONS <= set(FUNCTIONS)
    assert {expression.split("(")[0] for expression, _ in REFERENCES.values()} == NEW_FUNCTIONS


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["jax", "numba", "cuda"])
def test_functions_on_every_backend_match_numpy_and_scipy(backend, dtype, request):
    if backend == "jax" and dtype == "float64":
        request.getfixturevalue("jax_x64")
    got = _run(backend, dtype)
    points = {k: v.astype(dtype).astype(np.float64) for k, v in _points().items()}
    rtol, atol = (1e-14, 0.0) if dtype == "float64" else (2e-5, 1e-7)
    for row, (name, (_, reference)) in zip(got, REFERENCES.items(), strict=True):
        expected = reference(**points)
        error = np.abs(row - expected)
        worst = int(np.argmax(error / (atol + rtol * np.abs(expected) + 1e-300)))
        assert np.all(error <= atol + rtol * np.abs(expected)), (
            f"{backend}/{dtype} {name} at {({k: v[worst] for k, v in points.items()})}: "
            f"{row[worst]!r}, expected {expected[worst]!r}")


def test_erfc_and_acos_of_a_negated_argument_are_not_rewritten():
    """SymPy's own erfc(-x) is 2 - erfc(x) and acos(-x) is pi - acos(x): no digit survives
    where the value is tiny (erfc(-a) at a = -6 is 2e-17; 2 - erfc(-6) is 0 in float64)."""
    from neuralmass.lems import parse_expression
    from neuralmass.model import symbol

    x = symbol("x")
    for text in ("erfc(-x)", "acos(-x)", "erfc(1 - x)"):
        expr = parse_expression(text, {"x": x}, where="test")
        assert not expr.is_Add, f"{text} became {expr}"
    expr = parse_expression("erfc(-x)", {"x": x}, where="test")
    assert float(expr.subs(x, 6.0).evalf(30)) == pytest.approx(scipy.special.erfc(-6.0),
                                                               rel=1e-14)
