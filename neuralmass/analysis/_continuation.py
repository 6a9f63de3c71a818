"""Branches of equilibria against one parameter, by pseudo-arclength continuation.

Curves ``f(x, p) = 0`` are followed in the scaled coordinates ``u = (x / s_x, (p - lo) /
(hi - lo))`` (``s_x``: width of each state's initial range), with a tangent predictor and a
Newton corrector on the hyperplane orthogonal to the tangent (Keller's method; e.g. Kuznetsov,
*Elements of Applied Bifurcation Theory*, 3rd ed., §10.2), so branches go round folds.
Special points are the sign changes of test functions between consecutive points, refined by
bisection along the curve:

- saddle-node (fold): the p-component of the tangent changes sign;
- branch point: det ∂f/∂x changes sign without a fold (transcritical, pitchfork);
- Hopf: ∏_{i<j} (λ_i + λ_j) changes sign and a complex pair ±iω sits on the imaginary axis
  (a real pair ±λ, a neutral saddle, is no Hopf point and is skipped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ParameterError
from ..model import Model
from ._fixed_points import classify, equilibria
from ._system import NodeSystem

__all__ = ["Branch", "Continuation", "SpecialPoint", "continuation"]


@dataclasses.dataclass(frozen=True)
class Branch:
    """A curve of equilibria.

    Attributes:
        parameter: (m,) values of the continued parameter along the curve.
        states: (m, n_state) the equilibria.
        eigenvalues: (m, n_state) complex eigenvalues of ∂f/∂x, largest real part first.
    """

    parameter: np.ndarray
    states: np.ndarray
    eigenvalues: np.ndarray

    @property
    def stable(self) -> np.ndarray:
        """(m,) bool: every eigenvalue has a negative real part."""
        return np.all(self.eigenvalues.real < 0, axis=1)

    @property
    def stability(self) -> list[str]:
        """(m,) labels, see :func:`~neuralmass.analysis.classify`."""
        return [classify(lam) for lam in self.eigenvalues]


@dataclasses.dataclass(frozen=True)
class SpecialPoint:
    """A bifurcation point on a branch.

    Attributes:
        kind: ``"saddle-node"``, ``"hopf"`` or ``"branch point"``.
        parameter: the parameter value there.
        state: (n_state,) the equilibrium there.
        branch: index of the branch in :attr:`Continuation.branches`.
        omega: at a Hopf point, the angular frequency |Im λ| in rad per model time unit
            (rad/ms for the bundled models); ``None`` otherwise.
    """

    kind: str
    parameter: float
    state: np.ndarray
    branch: int
    omega: float | None = None

    @property
    def frequency_hz(self) -> float | None:
        """ω / 2π in Hz, taking the model's time unit to be the millisecond."""
        return None if self.omega is None else self.omega / (2 * np.pi) * 1e3


@dataclasses.dataclass(frozen=True)
class Continuation:
    """Equilibria of one node against ``parameter`` over ``bounds``."""

    parameter: str
    bounds: tuple[float, float]
    state_names: tuple[str, ...]
    branches: tuple[Branch, ...]
    points: tuple[SpecialPoint, ...]

    def summary(self) -> str:
        """A few lines: the branches and every special point."""
        lo, hi = self.bounds
        lines = [f"continuation in {self.parameter} over [{lo:g}, {hi:g}]: "
                 f"{len(self.branches)} branch(es), {len(self.points)} special point(s)"]
        for k, branch in enumerate(self.branches):
            lines.append(f"  branch {k}: {len(branch.parameter)} points, {self.parameter} in "
                         f"[{branch.parameter.min():.6g}, {branch.parameter.max():.6g}], "
                         f"stable at {int(branch.stable.sum())} of them")
        for point in self.points:
            state = ", ".join(f"{n}={v:.6g}" for n, v in zip(self.state_names, point.state,
                                                             strict=True))
            extra = (f", omega={point.omega:.6g} rad/time unit ({point.frequency_hz:.4g} Hz "
                     "if time is in ms)") if point.omega is not None else ""
            lines.append(f"  {point.kind} at {self.parameter}={point.parameter:.8g} "
                         f"(branch {point.branch}): {state}{extra}")
        return "\n".join(lines)


class _Tracer:
    """Pseudo-arclength continuation of ``system`` in its free parameter over [lo, hi]."""

    def __init__(self, system: NodeSystem, lo: float, hi: float, n: int):
        self.system, self.lo, self.hi = system, lo, hi
        self.sx, self.sp = system.scale, hi - lo
        self.ds_max = 1.0 / n
        self.max_points = 50 * n

    def unscale(self, u: np.ndarray) -> tuple[np.ndarray, float]:
        return u[:-1] * self.sx, self.lo + u[-1] * self.sp

    def scale(self, x: np.ndarray, p: float) -> np.ndarray:
        return np.append(x / self.sx, (p - self.lo) / self.sp)

    def jacobian(self, u: np.ndarray) -> np.ndarray:
        x, p = self.unscale(u)
        jx = self.system.jacobian(x, p) * self.sx
        jp = self.system.parameter_derivative(x, p) * self.sp
        return np.column_stack([jx, jp])

    def tangent(self, u: np.ndarray, previous: np.ndarray) -> np.ndarray:
        t = np.linalg.svd(self.jacobian(u))[2][-1]
        return t if t @ previous >= 0 else -t

    def correct(self, guess: np.ndarray, t: np.ndarray, anchor: np.ndarray) -> np.ndarray | None:
        """Newton on f(u) = 0, t · (u - anchor) = 0, from ``guess``."""
        u = guess.copy()
        with np.errstate(all="ignore"):
            for _ in range(20):
                x, p = self.unscale(u)
                residual = np.append(self.system.f(x, p), t @ (u - anchor))
                matrix = np.vstack([self.jacobian(u), t])
                if not (np.all(np.isfinite(residual)) and np.all(np.isfinite(matrix))):
                    return None
                try:
                    step = np.linalg.solve(matrix, -residual)
                except np.linalg.LinAlgError:
                    return None
                u = u + step
                if np.abs(step).max() <= 1e-12 * (1 + np.abs(u).max()):
                    return u
        return None

    def eigenvalues(self, u: np.ndarray) -> np.ndarray:
        lam = np.linalg.eigvals(self.system.jacobian(*self.unscale(u)))
        return lam[np.lexsort((-lam.imag, -lam.real))]

    def trace(self, start: np.ndarray, direction: float) -> list[np.ndarray]:
        """Points of the curve through ``start`` (scaled), moving first towards p·direction."""
        e_p = np.zeros(len(start))
        e_p[-1] = direction
        u, t = start, self.tangent(start, e_p)
        points, ds = [start], self.ds_max
        while len(points) < self.max_points:
            new = self.correct(u + ds * t, t, u + ds * t)
            if new is None or np.linalg.norm(new - u) > 2 * ds:
                ds /= 2
                if ds < 1e-6 * self.ds_max:
                    break
                continue
            x, p = self.unscale(new)
            if not (0.0 <= new[-1] <= 1.0):
                boundary = self.lo if new[-1] < 0 else self.hi
                if abs(self.unscale(u)[1] - boundary) > 1e-12 * self.sp:
                    x_edge = self.system.newton(x, boundary)
                    if x_edge is not None:
                        points.append(self.scale(x_edge, boundary))
                break
            if not self.system.within_bounds(x) or np.abs(new[:-1]).max() > 1e4:
                break
            points.append(new)
            if len(points) > 10 and np.linalg.norm(new - start) < 0.5 * ds:
                break  # a closed curve
            t = self.tangent(new, t)
            u, ds = new, min(1.5 * ds, self.ds_max)
        return points

    # ------------------------------------------------------------------ special points
    def tests(self, u: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(fold, det, hopf) test functions at ``u`` with tangent ``t``."""
        lam = self.eigenvalues(u)
        i, j = np.triu_indices(len(lam), 1)
        return np.array([t[-1], np.prod(lam).real, np.prod(lam[i] + lam[j]).real])

    def refine(self, a: np.ndarray, b: np.ndarray, which: int) -> np.ndarray:
        """The point between curve points ``a`` and ``b`` where test ``which`` vanishes, by
        bisection along the chord (each trial point corrected back onto the curve)."""
        chord = (b - a) / np.linalg.norm(b - a)
        length = np.linalg.norm(b - a)
        t_a = self.tangent(a, chord)
        sign_a = np.sign(self.tests(a, t_a)[which])
        lo, hi, best = 0.0, length, b
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            u = self.correct(a + mid * chord, chord, a + mid * chord)
            if u is None:
                break
            best = u
            if np.sign(self.tests(u, self.tangent(u, chord))[which]) == sign_a:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-14:
                break
        return best


def continuation(
    model: Model,
    parameter: str,
    bounds: tuple[float, float],
    n: int = 200,
    *,
    params: Mapping[str, float] | None = None,
    coupling: float | Sequence[float] = 0.0,
    n_starts: int = 32,
    seed: int = 0,
) -> Continuation:
    """Branches of equilibria of one node of ``model`` as ``parameter`` goes over ``bounds``.

    The node receives a constant coupling input ``coupling`` (as in
    :func:`~neuralmass.analysis.fixed_points`); the other parameters are ``params`` or the
    model's defaults. Branches start from the equilibria found (multi-start Newton) at both
    ends and the middle of ``bounds`` and are followed by pseudo-arclength continuation with
    steps of at most 1/n of the scaled parameter range, through folds, until they leave the
    range or the state bounds. Stability comes from the eigenvalues at every point;
    saddle-node, branch and Hopf points from the sign changes of their test functions.

    Returns:
        A :class:`Continuation` with the branches and the special points, sorted by parameter.
    """
    lo, hi = (float(v) for v in bounds)
    if not lo < hi or n < 2:
        raise ParameterError(
            f"continuation needs bounds (lo, hi) with lo < hi and n >= 2, but got "
            f"bounds {bounds!r} and n={n!r}"
        )
    system = NodeSystem.for_node(model, params, coupling, free=parameter)
    tracer = _Tracer(system, lo, hi, n)
    curves: list[np.ndarray] = []
    for p0 in (lo, hi, 0.5 * (lo + hi)):
        for point in equilibria(system, p0, n_starts=n_starts, seed=seed):
            start = tracer.scale(point.state, p0)
            if any(np.min(np.linalg.norm(c - start, axis=1)) < tracer.ds_max for c in curves):
                continue
            backward = tracer.trace(start, -1.0)[::-1]
            curves.append(np.array(backward[:-1] + tracer.trace(start, 1.0)))

    branches, points = [], []
    # a continuum of equilibria at one parameter value (Kuramoto with ω = 0) is no branch
    curves = [c for c in curves if len(c) > 1 and np.ptp(c[:, -1]) > 1e-9]
    for k, curve in enumerate(curves):
        chords = np.diff(curve, axis=0)
        tangents = [tracer.tangent(u, chord) for u, chord in
                    zip(curve, [*chords, chords[-1]], strict=True)]
        tests = np.array([tracer.tests(u, t) for u, t in zip(curve, tangents, strict=True)])
        for m in range(len(curve) - 1):
            changed = np.sign(tests[m]) != np.sign(tests[m + 1])
            if changed[0]:
                points.append(_special(tracer, "saddle-node", curve[m], curve[m + 1], 0, k))
            elif changed[1]:
                points.append(_special(tracer, "branch point", curve[m], curve[m + 1], 1, k))
            if changed[2]:
                hopf = _special(tracer, "hopf", curve[m], curve[m + 1], 2, k)
                if hopf.omega is not None:
                    points.append(hopf)
        x, p = zip(*(tracer.unscale(u) for u in curve), strict=True)
        branches.append(Branch(np.array(p), np.array(x),
                               np.array([tracer.eigenvalues(u) for u in curve])))
    return Continuation(parameter, (lo, hi), model.state_names, tuple(branches),
                        tuple(sorted(points, key=lambda s: s.parameter)))


def _special(tracer: _Tracer, kind: str, a: np.ndarray, b: np.ndarray, which: int,
             branch: int) -> SpecialPoint:
    u = tracer.refine(a, b, which)
    x, p = tracer.unscale(u)
    omega = None
    if kind == "hopf":
        lam = tracer.eigenvalues(u)
        nearest = lam[np.argmin(np.abs(lam.real))]
        tol = 1e-6 * max(1.0, float(np.abs(lam).max()))
        if abs(nearest.imag) > tol and abs(nearest.real) <= 1e-6 * abs(nearest.imag) + tol:
            omega = float(abs(nearest.imag))
    return SpecialPoint(kind, float(p), x, branch, omega)
