"""Linear stability of a homogeneous equilibrium of the delay-free network.

Node i obeys ``dx_i/dt = f(x_i, c_i)`` with, for each coupling term k (design.md §2),
``c_i^k = s_k post_k(Σ_j w_ij pre_k(x_i, x_j))`` — here **without delays**: x_j is taken at
time t, so the result is the stability of the ODE network, not of the delay equations a
simulation integrates (delays can destabilise an equilibrium that is stable here, or the
reverse).

A homogeneous equilibrium ``x_i = x*`` needs the same input at every node: the sum
``S_i = ρ_i pre_k(x*, x*)`` (ρ_i: row sums of W) must not depend on i. That holds exactly when

- every row of W sums to the same ρ: then x* solves ``f(x, s post(ρ pre(x, x))) = 0`` and
  moves with ``global_coupling`` and ρ (linear coupling of x gives the input G ρ x*); or
- ``pre_k(x*, x*) = 0`` for every term (difference couplings such as ``x_j - x_i`` or
  ``sin(θ_j - θ_i)``, or linear coupling of a variable that is 0 at x*): then
  ``c* = s post(0)`` whatever the row sums.

Linearising, ``δc_i^k = s_k post_k'(S*) [ρ_i ∇_loc pre_k · δx_i + ∂_del pre_k δx_j^(src)]``, so
the Jacobian of the network is ``I ⊗ P + M ⊗ Q`` with Q (n_state × n_state) the coupling's
Jacobian towards the coupled (source) variables, and

- equal row sums: ``M = W`` and P the local Jacobian including ``ρ ∇_loc pre`` terms;
- otherwise: ``∇_loc pre_k`` must be ``α ∂_del pre_k e_src`` with one α for every term
  (α = 0: pre reads only x_j; α = -1: differences), and ``M = W + α diag(ρ)``
  (α = -1: the graph Laplacian), P the uncoupled local Jacobian.

Any other case has no exact Kronecker form and is refused with an explanation. By a Schur
decomposition of M, the eigenvalues of ``I ⊗ P + M ⊗ Q`` are exactly the union over the
eigenvalues μ of M of ``eig(P + μ Q)`` (M need not be symmetric or diagonalisable).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import sympy

from ..connectivity import Connectivity
from ..errors import ParameterError
from ..model import Model, symbol
from ._fixed_points import equilibria
from ._system import NUMERIC_MODULES, NodeSystem, parameter_values

__all__ = ["NetworkStability", "network_stability"]

_G = "global_coupling"


@dataclasses.dataclass(frozen=True)
class NetworkStability:
    """Stability of the homogeneous equilibrium ``state`` of the delay-free network.

    Attributes:
        state: (n_state,) x*, the same at every node.
        global_coupling: the G at which the spectrum below was computed.
        coupling_matrix: which M the modes are eigenvalues of (``"weights"`` or
            ``"weights + α·diag(row sums)"`` with α's value).
        modes: (N,) complex eigenvalues μ of M.
        local_jacobian: (n_state, n_state) P.
        coupling_jacobian: (n_state, n_state) Q (it includes the coupling's scale: G·B for
            ``c_pop<k> = global_coupling`` with B the Jacobian of the coupling input).
        eigenvalues: (N, n_state) eig(P + μ_m Q) for each mode m, largest real part first,
            in 1/(model time unit).
        most_unstable_mode: index m of the mode with the largest real part.
        critical_coupling: the global_coupling nearest to the given one, inside the scanned
            range, at which the equilibrium (followed as G changes) changes stability or
            ceases to exist; ``None`` when neither happens there.
        critical_kind: ``"eigenvalue crossing"``, ``"equilibrium lost"`` or ``None``.
        coupling_range: the scanned (lo, hi) range of global_coupling.
        delays_ignored: always ``True``: the spectrum is that of the network without delays.
    """

    state: np.ndarray
    global_coupling: float
    coupling_matrix: str
    modes: np.ndarray
    local_jacobian: np.ndarray
    coupling_jacobian: np.ndarray
    eigenvalues: np.ndarray
    most_unstable_mode: int
    critical_coupling: float | None
    critical_kind: str | None
    coupling_range: tuple[float, float]
    delays_ignored: bool = True

    @property
    def max_real(self) -> float:
        """The largest real part of the network's eigenvalues."""
        return float(self.eigenvalues.real.max())

    @property
    def stable(self) -> bool:
        """Linearly stable (delay-free): every eigenvalue has a negative real part."""
        return self.max_real < 0


class _Linearisation:
    """x* of the synchronous node and P(x, G), Q(x, G) as NumPy functions."""

    def __init__(self, model: Model, params: Mapping[str, float] | None, rho: float):
        values = parameter_values(model, params, free=_G)
        states = list(model.state_symbols)
        g = symbol(_G)
        terms = model.coupling_terms
        at_sync = {d: symbol(s) for t in terms  # x_j = x_i = x
                   for d, s in zip(t.delayed, t.sources, strict=True)}
        pre_sync = [model.resolve(t.pre).xreplace(at_sync) for t in terms]
        to_sync = {t.symbol: model.resolve(t.node_input(rho * pre))
                   for t, pre in zip(terms, pre_sync, strict=True)}
        drift = sympy.Matrix(model.drift)
        self.system = NodeSystem(model, [e.xreplace(to_sync).xreplace(values) for e in drift],
                                 free=_G)

        n = len(states)
        df_dc = drift.jacobian(list(model.coupling_symbols)) if terms else sympy.zeros(n, 0)
        local = sympy.zeros(n, n)    # ρ ∇_loc pre terms (equal row sums)
        coupled = sympy.zeros(n, n)  # Q
        gradients = []               # per term: ∇_loc pre, then ∂_del pre e_src (α check)
        total = sympy.Symbol("nm_total", real=True)
        for k, term in enumerate(terms):
            pre = model.resolve(term.pre)
            slope = sympy.diff(term.node_input(total), total)  # s_k post_k'
            slope = model.resolve(slope).xreplace({total: rho * pre_sync[k]})
            grad_local = sympy.Matrix([[sympy.diff(pre, x) for x in states]]).xreplace(at_sync)
            column = df_dc[:, k] * slope
            local += column * grad_local * rho
            row = sympy.zeros(1, n)
            for delayed, source in zip(term.delayed, term.sources, strict=True):
                row[states.index(symbol(source))] = sympy.diff(pre, delayed).xreplace(at_sync)
            coupled += column * row
            gradients.append([*grad_local, *row])
        subs = {**values, **to_sync}
        args = [*states, g]
        self._a = sympy.lambdify(args, drift.jacobian(states).xreplace(subs),
                                 modules=NUMERIC_MODULES)
        self._local = sympy.lambdify(args, local.xreplace(subs), modules=NUMERIC_MODULES)
        self._q = sympy.lambdify(args, coupled.xreplace(subs), modules=NUMERIC_MODULES)
        self._pre = sympy.lambdify(args, [p.xreplace(values) for p in pre_sync],
                                   modules=NUMERIC_MODULES)
        self._grads = sympy.lambdify(
            args, [[e.xreplace(subs) for e in row] for row in gradients], modules=NUMERIC_MODULES)
        self.n = n

    def _matrix(self, fn, x, g) -> np.ndarray:
        return np.asarray(fn(*x, g), dtype=np.float64).reshape(self.n, self.n)

    def blocks(self, x: np.ndarray, g: float, with_local: bool) -> tuple[np.ndarray, np.ndarray]:
        """(P, Q) at (x, G)."""
        p = self._matrix(self._a, x, g)
        if with_local:
            p = p + self._matrix(self._local, x, g)
        return p, self._matrix(self._q, x, g)

    def pre_at_sync(self, x: np.ndarray, g: float) -> np.ndarray:
        return np.atleast_1d(np.asarray(self._pre(*x, g), dtype=np.float64))

    def alpha(self, x: np.ndarray, g: float) -> float | None:
        """α with ∇_loc pre_k = α ∂_del pre_k e_src for every term, or ``None``."""
        alphas = []
        for both in self._grads(*x, g):
            grad_local, row = np.split(np.asarray(both, dtype=float), 2)
            scale = max(np.abs(row).max(), np.abs(grad_local).max(), 1e-300)
            if np.abs(grad_local).max() <= 1e-12 * scale:
                alphas.append(0.0)
                continue
            src = int(np.argmax(np.abs(row)))
            if row[src] == 0:
                return None
            a = grad_local[src] / row[src]
            if np.abs(grad_local - a * row).max() > 1e-9 * scale:
                return None
            alphas.append(a)
        if alphas and np.ptp(alphas) > 1e-9 * max(1.0, np.abs(alphas).max()):
            return None
        return float(alphas[0]) if alphas else 0.0


def network_stability(
    model: Model,
    conn: Connectivity,
    params: Mapping[str, float] | None = None,
    *,
    state: Sequence[float] | None = None,
    coupling_range: tuple[float, float] | None = None,
    n_coupling: int = 200,
    n_starts: int = 64,
    seed: int = 0,
) -> NetworkStability:
    """Linear stability of a homogeneous equilibrium of the network **without delays**.

    Args:
        model: the IR; its coupling terms (pre, post, scale) define the network input.
        conn: the weights W (``conn.weights[i, j]``, to i from j); tract lengths and speed
            are ignored: the analysis is of the delay-free network.
        params: parameter values (default: the model's), ``global_coupling`` = G included.
        state: a guess of the equilibrium to analyse; default: of the homogeneous equilibria
            found (multi-start Newton on the synchronous node), the one with the smallest
            largest real part (the most stable).
        coupling_range: (lo, hi) of global_coupling scanned for the critical coupling;
            default: the model's declared range of global_coupling, else (0, 1), widened to
            contain G.
        n_coupling: grid points of that scan (each crossing is then refined by bisection).

    Returns:
        A :class:`NetworkStability` (``delays_ignored`` is ``True``); the module docstring
        derives the Kronecker form and the cases in which it is exact.

    Raises:
        ParameterError: no homogeneous equilibrium exists (row sums differ and ``pre`` does
            not vanish at x_i = x_j), or the coupling has no exact Kronecker form.
    """
    weights = np.asarray(conn.weights, dtype=np.float64)
    rows = weights.sum(axis=1)
    equal_rows = bool(np.ptp(rows) <= 1e-12 * max(1.0, float(np.abs(rows).max())))
    rho = float(rows[0]) if equal_rows else 0.0
    values = {**model.defaults, **(params or {})}
    g0 = float(values[_G])
    lin = _Linearisation(model, params, rho)
    system = lin.system

    def homogeneous(x: np.ndarray | None, g: float) -> bool:
        return x is not None and (equal_rows or bool(
            np.all(np.abs(lin.pre_at_sync(x, g)) <= 1e-9 * np.maximum(1.0, system.scale.max()))))

    if state is not None:
        x = system.newton(np.asarray(state, dtype=float), g0)
        candidates = [x] if homogeneous(x, g0) else []
    else:
        candidates = [fp.state for fp in equilibria(system, g0, n_starts=n_starts, seed=seed)
                      if homogeneous(fp.state, g0)]
    if not candidates:
        why = "" if equal_rows else (
            f"; the row sums of the weights differ ({rows.min():.6g} to {rows.max():.6g}), so a "
            "homogeneous equilibrium needs every coupling's pre to vanish at x_i = x_j "
            "(normalise the weights to equal row sums for other couplings)")
        raise ParameterError(
            f"model {model.name!r}: no homogeneous equilibrium of the network found at "
            f"global_coupling={g0:g}{'' if state is None else f' from state={state!r}'}{why}")
    if equal_rows:
        matrix, with_local, label = weights, True, "weights"
    else:
        alpha = lin.alpha(candidates[0], g0)
        if alpha is None:
            raise ParameterError(
                f"model {model.name!r}: the row sums of the weights differ "
                f"({rows.min():.6g} to {rows.max():.6g}) and the coupling's pre is neither a "
                "function of x_j alone nor of x_j - x_i, so the network Jacobian has no exact "
                "Kronecker form; normalise the weights to equal row sums")
        matrix = weights + alpha * np.diag(rows)
        with_local = False
        sign = "+" if alpha > 0 else "-"
        label = "weights" if alpha == 0 else f"weights {sign} {abs(alpha):g}·diag(row sums)"
    modes = np.linalg.eigvals(matrix)

    def spectrum(x: np.ndarray, g: float) -> np.ndarray:
        p, q = lin.blocks(x, g, with_local)
        lam = np.linalg.eigvals(p[None] + modes[:, None, None] * q[None])
        order = np.argsort(-lam.real, axis=1, kind="stable")
        return np.take_along_axis(lam, order, axis=1)

    x = min(candidates, key=lambda c: spectrum(c, g0).real.max())
    lam = spectrum(x, g0)
    p, q = lin.blocks(x, g0, with_local)
    lo, hi = coupling_range or model.parameter(_G).range or (0.0, 1.0)
    lo, hi = min(lo, g0), max(hi, g0)
    critical, kind = _critical_coupling(system, spectrum, x, g0, lo, hi, n_coupling)
    return NetworkStability(
        state=x, global_coupling=g0, coupling_matrix=label, modes=modes,
        local_jacobian=p, coupling_jacobian=q, eigenvalues=lam,
        most_unstable_mode=int(np.argmax(lam.real.max(axis=1))),
        critical_coupling=critical, critical_kind=kind, coupling_range=(lo, hi))


def _critical_coupling(system, spectrum, x0, g0, lo, hi, n):
    """Follow x* from g0 towards lo and towards hi (Newton from the previous point, steps
    that move it by more than 0.1 of a state's range count as losing it); the nearest change
    of stability or loss of the equilibrium, refined by bisection (60 halvings)."""

    def unstable(x, g):
        return bool(spectrum(x, g).real.max() >= 0)

    def follow(x, g):  # Newton from the previous point; a jump to another branch is a loss
        x_new = system.newton(x, g)
        return x_new if x_new is not None and system.same(x_new, x, tol=0.1) else None

    found = []
    for end in (lo, hi):
        grid = np.linspace(g0, end, max(2, int(n * abs(end - g0) / max(hi - lo, 1e-300))))
        x, state0 = x0, unstable(x0, g0)
        for g_prev, g in zip(grid[:-1], grid[1:], strict=True):
            x_new = follow(x, g)
            if x_new is None or unstable(x_new, g) != state0:
                kind = "equilibrium lost" if x_new is None else "eigenvalue crossing"
                a, b, xa = g_prev, g, x
                for _ in range(60):
                    mid = 0.5 * (a + b)
                    x_mid = follow(xa, mid)
                    if x_mid is not None and (kind == "equilibrium lost" or
                                              unstable(x_mid, mid) == state0):
                        a, xa = mid, x_mid
                    else:
                        b = mid
                found.append((abs(a - g0), 0.5 * (a + b), kind))
                break
            x = x_new
    if not found:
        return None, None
    _, g, kind = min(found)
    return float(g), kind
