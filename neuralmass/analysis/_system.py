"""One node's right-hand side as NumPy functions, Newton's method, exact SymPy roots.

Everything here starts from the SymPy drift of the IR (``Model.drift``): numeric parameter
values and a constant coupling input are substituted, then ``f(x, p)``, ``∂f/∂x`` and
``∂f/∂p`` (``p``: at most one parameter left free, for continuation) are lambdified to NumPy.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import sympy

from ..errors import ModelError, ParameterError
from ..model import Model, symbol
from ..params import _unknown

__all__ = [
    "NUMERIC_MODULES",
    "NodeSystem",
    "coupling_values",
    "exact_equilibria",
    "parameter_values",
]

#: What ``sympy.lambdify`` lowers to: SciPy first, so that ``erf``/``erfc`` take arrays.
NUMERIC_MODULES = ["scipy", "numpy"]

#: Names a caller may set besides the model's parameters (implicit scalars of the IR).
_IMPLICIT = ("dt", "n_node")


def parameter_values(model: Model, params: Mapping[str, float] | None,
                     free: str | None = None) -> dict[sympy.Symbol, sympy.Float]:
    """Numeric values of every parameter of ``model`` (defaults, then ``params``), except
    ``free`` and parameters without a value (``global_speed``, taken from a connectivity)."""
    values: dict[str, float | None] = dict(model.defaults)
    valid = [*model.parameter_names, *_IMPLICIT]
    for name, value in (params or {}).items():
        if name not in valid:
            raise _unknown(name, valid)
        array = np.asarray(value, dtype=np.float64)
        if array.ndim != 0:
            raise ParameterError(
                f"parameter {name!r} must be a single number for the analysis of one "
                f"equilibrium, but got shape {array.shape}"
            )
        values[name] = float(array)
    if free is not None and free not in model.parameter_names:
        raise _unknown(free, list(model.parameter_names))
    return {symbol(name): sympy.Float(value) for name, value in values.items()
            if value is not None and name != free}


def coupling_values(model: Model, coupling: float | Sequence[float]) -> dict:
    """``{c_pop<k>: value}``: one value for every coupling term, or one per term."""
    symbols = model.coupling_symbols
    values = np.atleast_1d(np.asarray(coupling, dtype=np.float64))
    if values.ndim != 1 or (symbols and values.size not in (1, len(symbols))):
        raise ParameterError(
            f"coupling must be a number or one number per coupling term "
            f"({len(symbols)} for model {model.name!r}: "
            f"{', '.join(s.name for s in symbols)}), but got {coupling!r}"
        )
    values = np.broadcast_to(values, (len(symbols),))
    return {s: sympy.Float(float(v)) for s, v in zip(symbols, values, strict=True)}


def _check_free_symbols(model: Model, exprs, allowed) -> None:
    left = set().union(*(e.free_symbols for e in exprs)) - set(allowed)
    if left:
        names = ", ".join(sorted(s.name for s in left))
        raise ModelError(
            f"model {model.name!r}: the right-hand side still uses {names} after substituting "
            "the parameters and the coupling; give a value in params"
        )


class NodeSystem:
    """``dx/dt = f(x, p)`` for one node, ``x`` of shape (n_state,), ``p`` a scalar.

    Args:
        model: the IR (state names, ranges and bounds come from it).
        drift: one SymPy expression per state variable, in states and ``free`` only.
        free: the name of the parameter left symbolic (``None``: none; then ``p`` is ignored).
    """

    def __init__(self, model: Model, drift: Sequence[sympy.Expr], free: str | None = None):
        self.model = model
        self.states = model.state_symbols
        self.free = free
        p = symbol(free) if free is not None else sympy.Symbol("nm_unused_parameter")
        _check_free_symbols(model, drift, (*self.states, p))
        self.drift = tuple(drift)
        args = [*self.states, p]
        matrix = sympy.Matrix(self.drift)
        self._f = sympy.lambdify(args, list(self.drift), modules=NUMERIC_MODULES)
        self._jx = sympy.lambdify(args, matrix.jacobian(list(self.states)), modules=NUMERIC_MODULES)
        self._jp = sympy.lambdify(args, list(matrix.diff(p)), modules=NUMERIC_MODULES)
        self.ranges = np.array([sv.initial_range for sv in model.state_variables], dtype=float)
        lo = [(sv.bounds or (None, None))[0] for sv in model.state_variables]
        hi = [(sv.bounds or (None, None))[1] for sv in model.state_variables]
        self.lower = np.array([-np.inf if v is None else v for v in lo], dtype=float)
        self.upper = np.array([np.inf if v is None else v for v in hi], dtype=float)
        #: per-state scale used to compare states (width of the initial range, at least 1e-3)
        self.scale = np.maximum(self.ranges[:, 1] - self.ranges[:, 0], 1e-3)

    @classmethod
    def for_node(cls, model: Model, params: Mapping[str, float] | None = None,
                 coupling: float | Sequence[float] = 0.0, free: str | None = None
                 ) -> NodeSystem:
        """One node of ``model`` with parameters ``params`` and a constant coupling input."""
        values = {**parameter_values(model, params, free), **coupling_values(model, coupling)}
        return cls(model, [e.xreplace(values) for e in model.drift], free)

    # ------------------------------------------------------------------ evaluations
    def f(self, x: np.ndarray, p: float = 0.0) -> np.ndarray:
        """f(x, p), shape (n_state,)."""
        return np.asarray(self._f(*x, p), dtype=np.float64).reshape(len(self.states))

    def jacobian(self, x: np.ndarray, p: float = 0.0) -> np.ndarray:
        """∂f/∂x at (x, p), shape (n_state, n_state)."""
        n = len(self.states)
        return np.asarray(self._jx(*x, p), dtype=np.float64).reshape(n, n)

    def parameter_derivative(self, x: np.ndarray, p: float = 0.0) -> np.ndarray:
        """∂f/∂p at (x, p), shape (n_state,)."""
        return np.asarray(self._jp(*x, p), dtype=np.float64).reshape(len(self.states))

    def within_bounds(self, x: np.ndarray) -> bool:
        slack = 1e-9 * self.scale
        return bool(np.all(x >= self.lower - slack) and np.all(x <= self.upper + slack))

    # ------------------------------------------------------------------ Newton
    def newton(self, x0: np.ndarray, p: float = 0.0, *, max_iter: int = 60) -> np.ndarray | None:
        """A root of f(·, p) from ``x0`` by damped Newton (backtracking on |f|), or ``None``.

        Converged when a full step is below 1e-11 of the state's scale and
        |f| ≤ 1e-9 · max(1, |f(x0)|) (both max-norms)."""
        x = np.array(x0, dtype=np.float64)
        with np.errstate(all="ignore"):
            fx = self.f(x, p)
            if not np.all(np.isfinite(fx)):
                return None
            f_tol = 1e-9 * max(1.0, float(np.abs(fx).max()))
            for _ in range(max_iter):
                try:
                    step = np.linalg.solve(self.jacobian(x, p), -fx)
                except np.linalg.LinAlgError:
                    step = np.linalg.lstsq(self.jacobian(x, p), -fx, rcond=None)[0]
                if not np.all(np.isfinite(step)):
                    return None
                size, norm = 1.0, float(np.abs(fx).max())
                while size > 1e-6:
                    trial = x + size * step
                    f_trial = self.f(trial, p)
                    if np.all(np.isfinite(f_trial)) and np.abs(f_trial).max() < norm or (
                            np.abs(f_trial).max() <= f_tol):
                        break
                    size /= 2
                else:
                    return None
                x, fx = trial, f_trial
                if size == 1.0 and np.all(np.abs(step) <= 1e-11 * self.scale) and (
                        np.abs(fx).max() <= f_tol):
                    return x
        return None

    def starts(self, n: int, seed: int = 0) -> np.ndarray:
        """(n, n_state) starting points drawn uniformly in the state ranges (seeded)."""
        rng = np.random.default_rng(seed)
        return self.ranges[:, 0] + (self.ranges[:, 1] - self.ranges[:, 0]) * rng.uniform(
            size=(n, len(self.states)))

    def same(self, a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
        """Whether two states are one equilibrium (scaled max-norm distance ≤ tol)."""
        return bool(np.all(np.abs(a - b) <= tol * self.scale))


# ---------------------------------------------------------------------- exact solutions

class _Timeout(Exception):
    pass


def exact_equilibria(drift: Sequence[sympy.Expr], states: Sequence[sympy.Symbol],
                     timeout: float) -> list[np.ndarray]:
    """Real isolated roots of a polynomial drift by elimination, within ``timeout`` seconds.

    The drift (parameters already numbers, turned into rationals) is put in a lexicographic
    Gröbner basis (``sympy.groebner``), which is triangular for isolated roots; the last
    variable's univariate polynomial is rooted to 30 digits (``Poly.nroots``), substituted
    back, and so on. (``sympy.solve`` works too but takes seconds even for MPR's quartic.)
    Non-polynomial right-hand sides, curves of equilibria and runs past the time bound give
    ``[]``. The bound is a ``SIGALRM`` timer, so this happens in the main thread only (SymPy
    cannot be interrupted otherwise)."""
    exprs = [sympy.nsimplify(e, rational=True) for e in drift]
    if timeout <= 0 or not all(e.is_polynomial(*states) for e in exprs):
        return []
    if threading.current_thread() is not threading.main_thread():
        return []

    def expire(signum, frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        basis = sympy.groebner(exprs, *states, order="lex")
        solutions = _back_substitute(list(basis.exprs), list(states)) \
            if basis.is_zero_dimensional else []
    except (_Timeout, sympy.PolynomialError, NotImplementedError):
        solutions = []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    roots = []
    for solution in solutions:
        value = np.array([complex(solution[s]) for s in states])
        if np.all(np.abs(value.imag) <= 1e-9 * np.maximum(1.0, np.abs(value.real))):
            roots.append(value.real)
    return roots


def _back_substitute(basis: list[sympy.Expr], states: list[sympy.Symbol]) -> list[dict]:
    """Every root of a triangular (lex Gröbner) basis, last variable first."""
    solutions: list[dict] = [{}]
    for k in reversed(range(len(states))):
        x, later = states[k], set(states[k:])
        level = [g for g in basis if x in g.free_symbols and g.free_symbols <= later]
        extended = []
        for known in solutions:
            polys = [sympy.Poly(g.xreplace(known), x) for g in level]
            polys = [p for p in polys if p.degree() > 0]
            if not polys:
                return []  # x is not determined: not an isolated root
            for root in min(polys, key=lambda p: p.degree()).nroots(n=30):
                if all(_vanishes(p, root) for p in polys):
                    extended.append({**known, x: root})
        solutions = extended
    return solutions


def _vanishes(poly: sympy.Poly, root) -> bool:
    """|poly(root)| ≤ 1e-12 · (1 + Σ|coefficients|)."""
    size = 1 + sum(abs(complex(c)) for c in poly.all_coeffs())
    return abs(complex(poly.eval(root))) <= 1e-12 * size
