"""Equilibria of one node with a constant coupling input, and their stability labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from ..model import Model, symbol
from ._system import NodeSystem, exact_equilibria

__all__ = ["FixedPoint", "classify", "equilibria", "fixed_point_at", "fixed_points"]



def classify(eigenvalues: np.ndarray) -> str:
    """The stability label of an equilibrium from its Jacobian's eigenvalues.

    ``"stable node"`` / ``"stable focus"`` (every Re λ < 0, without / with a complex pair),
    ``"unstable node"`` / ``"unstable focus"`` (every Re λ > 0), ``"saddle"`` /
    ``"saddle-focus"`` (both signs), ``"non-hyperbolic"`` (some |Re λ| ≤ 1e-9 · max(1, |λ|):
    a centre, a fold, a Hopf point; linear stability does not decide)."""
    lam = np.asarray(eigenvalues, dtype=complex)
    tol = 1e-9 * max(1.0, float(np.abs(lam).max(initial=0.0)))
    if np.any(np.abs(lam.real) <= tol):
        return "non-hyperbolic"
    complex_pair = bool(np.any(np.abs(lam.imag) > tol))
    if np.all(lam.real < 0):
        return "stable focus" if complex_pair else "stable node"
    if np.all(lam.real > 0):
        return "unstable focus" if complex_pair else "unstable node"
    return "saddle-focus" if complex_pair else "saddle"


@dataclasses.dataclass(frozen=True)
class FixedPoint:
    """An equilibrium of one node.

    Attributes:
        state: (n_state,) the state, in the model's order and units.
        eigenvalues: (n_state,) complex eigenvalues of ∂f/∂x there, in 1/(model time unit)
            (1/ms for the bundled models), largest real part first.
        stability: label from :func:`classify`.
        exact: found by ``sympy.solve`` (then polished by Newton) rather than by Newton alone.
    """

    state: np.ndarray
    eigenvalues: np.ndarray
    stability: str
    exact: bool = False

    @property
    def stable(self) -> bool:
        """Linearly asymptotically stable: every eigenvalue has a negative real part."""
        return self.stability.startswith("stable")


def fixed_point_at(system: NodeSystem, state: np.ndarray, p: float = 0.0,
                   exact: bool = False) -> FixedPoint:
    """The :class:`FixedPoint` at an equilibrium ``state`` of ``system``."""
    eigenvalues = np.linalg.eigvals(system.jacobian(state, p))
    eigenvalues = eigenvalues[np.lexsort((-eigenvalues.imag, -eigenvalues.real))]
    return FixedPoint(np.asarray(state, dtype=float), eigenvalues, classify(eigenvalues), exact)


def equilibria(system: NodeSystem, p: float = 0.0, *, n_starts: int = 64, seed: int = 0,
               extra_starts: Sequence[np.ndarray] = (), exact_timeout: float = 0.0
               ) -> list[FixedPoint]:
    """Every equilibrium found from ``n_starts`` Newton starts in the state ranges, from
    ``extra_starts``, and (``exact_timeout`` > 0) from ``sympy.solve``; duplicates merged,
    points outside the state bounds dropped; sorted by the first state variable."""
    found: list[FixedPoint] = []

    def add(x: np.ndarray | None, exact: bool) -> None:
        if x is None or not system.within_bounds(x):
            return
        x = np.clip(x, system.lower, system.upper)
        for k, point in enumerate(found):
            if system.same(point.state, x):
                if exact and not point.exact:
                    found[k] = fixed_point_at(system, x, p, exact=True)
                return
        found.append(fixed_point_at(system, x, p, exact))

    if exact_timeout > 0:
        drift = [e.xreplace({symbol(system.free): p}) for e in system.drift] if system.free \
            else system.drift
        for root in exact_equilibria(drift, system.states, exact_timeout):
            polished = system.newton(root, p)
            add(root if polished is None else polished, True)
    for x0 in [*extra_starts, *system.starts(n_starts, seed)]:
        add(system.newton(np.asarray(x0, dtype=float), p), False)
    return sorted(found, key=lambda point: tuple(point.state))


def fixed_points(
    model: Model,
    params: Mapping[str, float] | None = None,
    coupling: float | Sequence[float] = 0.0,
    *,
    n_starts: int = 64,
    seed: int = 0,
    exact_timeout: float = 2.0,
) -> list[FixedPoint]:
    """The equilibria of one node of ``model`` receiving a constant coupling input.

    The right-hand side is the IR's SymPy drift with ``params`` (else the model's defaults)
    substituted and every ``c_pop<k>`` set to ``coupling`` (one number for every term, or
    one per term). Roots come from damped Newton iterations (Jacobian by SymPy, lambdified
    to NumPy) from ``n_starts`` points drawn uniformly in the state variables' initial ranges
    (seeded by ``seed``), and from ``sympy.solve`` when the drift is polynomial and it
    finishes within ``exact_timeout`` seconds (main thread only; 0 disables it). Duplicates
    are merged; equilibria outside the state bounds are dropped.

    Returns:
        The :class:`FixedPoint` s, sorted by state; ``[]`` when none was found (a node that
        always moves, such as an uncoupled Kuramoto oscillator with ω ≠ 0).
    """
    system = NodeSystem.for_node(model, params, coupling)
    return equilibria(system, n_starts=n_starts, seed=seed, exact_timeout=exact_timeout)
