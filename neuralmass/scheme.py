"""The numerical scheme, described once for every backend.

One step advances the state ``x`` of every node from time ``t`` to ``t + dt``:

1. Coupling, once per step, for each coupling term k (see :class:`~neuralmass.model.CouplingTerm`)::

       c_k[i] = scale_k * post_k( Σ_j w[i, j] * pre_k(x_i(t), x_j(t - d[i, j] * dt)) )

   ``c`` is then held fixed across the stages of the integrator, as in tvb-library.
2. An explicit Runge–Kutta scheme given by its tableau ``(a, b)``::

       k_1 = f(x, c)
       x_s = bound(x + dt * Σ_{m<s} a[s][m] * k_m + ξ)      s = 2 .. n_stages
       k_s = f(x_s, c)
       x(t + dt) = bound(x + dt * Σ_s b[s] * k_s + ξ)

   ``bound`` clamps each state variable to its bounds after every stage. ``ξ = σ * z`` is the
   additive noise, ``z ~ N(0, 1)`` drawn once per step, node and state variable and used in
   every stage (TVB's stochastic Heun), with ``σ = sqrt(2 * D * dt)`` for a diffusion
   coefficient ``D`` (TVB's ``nsig``), or the model's own per-step ``nsig``.

:func:`step_program` writes that step as a list of SymPy assignments for one node, which each
backend lowers (JAX, Numba, CUDA) — only the loops around it differ between backends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sympy

from .errors import ParameterError
from .model import Model, symbol

__all__ = [
    "INTEGRATORS",
    "Integrator",
    "StepProgram",
    "get_integrator",
    "step_program",
]


@dataclasses.dataclass(frozen=True)
class Integrator:
    """An explicit Runge–Kutta scheme: ``a`` (strictly lower-triangular rows) and weights ``b``."""

    name: str
    a: tuple[tuple[sympy.Rational, ...], ...]
    b: tuple[sympy.Rational, ...]
    allows_noise: bool

    @property
    def n_stages(self) -> int:
        return len(self.b)


_R = sympy.Rational
INTEGRATORS: dict[str, Integrator] = {
    "euler": Integrator("euler", ((),), (_R(1),), True),
    "heun": Integrator("heun", ((), (_R(1),)), (_R(1, 2), _R(1, 2)), True),
    "rk4": Integrator(
        "rk4",
        ((), (_R(1, 2),), (_R(0), _R(1, 2)), (_R(0), _R(0), _R(1))),
        (_R(1, 6), _R(1, 3), _R(1, 3), _R(1, 6)),
        False,
    ),
}


def get_integrator(name: str, *, stochastic: bool = False) -> Integrator:
    """The integrator called ``name``; a clear error for unknown names or rk4 with noise."""
    key = name.lower() if isinstance(name, str) else name
    if key not in INTEGRATORS:
        raise ParameterError(
            f"unknown integrator {name!r}; valid integrators are {', '.join(INTEGRATORS)}"
        )
    integrator = INTEGRATORS[key]
    if stochastic and not integrator.allows_noise:
        raise ParameterError(
            f"integrator {name!r} is deterministic only; with noise use 'euler' "
            "(Euler–Maruyama) or 'heun' (stochastic Heun)"
        )
    return integrator


def _clamp(value: sympy.Expr, bounds) -> sympy.Expr:
    if not bounds:
        return value
    lo, hi = bounds
    if lo is not None:
        value = sympy.Max(value, sympy.Float(lo))
    if hi is not None:
        value = sympy.Min(value, sympy.Float(hi))
    return value


@dataclasses.dataclass(frozen=True)
class StepProgram:
    """One integration step for one node, as blocks of SymPy assignments.

    Attributes:
        state: symbols of the state at time t (one per state variable).
        coupling: the ``c_pop<k>`` symbols, held fixed during the step.
        noise: symbols of standard normal samples, one per state variable (empty when
            deterministic).
        parameters: the model's parameter symbols (``model.parameter_symbols``).
        blocks: groups of ``(symbol, expression)`` assignments, evaluated block after block;
            an expression uses the inputs above, ``dt``, ``n_node`` and symbols assigned in
            earlier blocks only, so each block can be simplified on its own (``sympy.cse``).
            Internal names start with ``nm_``, a prefix the XML reader reserves.
        outputs: the state at time t + dt, one expression per state variable.
    """

    state: tuple[sympy.Symbol, ...]
    coupling: tuple[sympy.Symbol, ...]
    noise: tuple[sympy.Symbol, ...]
    parameters: tuple[sympy.Symbol, ...]
    blocks: tuple[tuple[tuple[sympy.Symbol, sympy.Expr], ...], ...]
    outputs: tuple[sympy.Expr, ...]

    def substitute(self, values: dict[sympy.Symbol, sympy.Expr]) -> StepProgram:
        """The same program with some symbols (``dt``, ``n_node``, fixed parameters) replaced."""
        return dataclasses.replace(
            self,
            blocks=tuple(tuple((s, e.xreplace(values)) for s, e in block)
                         for block in self.blocks),
            outputs=tuple(e.xreplace(values) for e in self.outputs),
        )


def step_program(
    model: Model,
    integrator: Integrator,
    noise_std: Sequence[sympy.Expr] | None = None,
) -> StepProgram:
    """Write one step of ``integrator`` for ``model`` as SymPy assignments.

    Args:
        model: the model IR.
        integrator: from :func:`get_integrator`.
        noise_std: per-step noise standard deviation σ for each state variable (expressions of
            parameters and ``dt``), or ``None`` for a deterministic step.
    """
    state = model.state_symbols
    drift = model.drift
    bounds = [sv.bounds for sv in model.state_variables]
    dt = symbol("dt")
    blocks: list[tuple[tuple[sympy.Symbol, sympy.Expr], ...]] = []

    noise_symbols: tuple[sympy.Symbol, ...] = ()
    increments: list[sympy.Expr] = [sympy.Integer(0)] * len(state)
    if noise_std is not None:
        if not integrator.allows_noise:
            raise ParameterError(f"integrator {integrator.name!r} does not support noise")
        noise_symbols = tuple(symbol(f"nm_z_{s.name}") for s in state)
        increments = [symbol(f"nm_xi_{s.name}") for s in state]
        blocks.append(tuple(
            (xi, sympy.sympify(sigma) * z)
            for xi, z, sigma in zip(increments, noise_symbols, noise_std, strict=True)
        ))

    def combine(weights, slopes, i):
        return sum((w * k[i] for w, k in zip(weights, slopes, strict=False) if w != 0),
                   sympy.Integer(0))

    slopes: list[list[sympy.Symbol]] = []
    for stage in range(integrator.n_stages):
        point = list(state)
        if stage:
            point = [symbol(f"nm_{x.name}_stage{stage + 1}") for x in state]
            blocks.append(tuple(
                (name, _clamp(x + dt * combine(integrator.a[stage], slopes, i) + xi, bounds[i]))
                for i, (name, x, xi) in enumerate(zip(point, state, increments, strict=True))
            ))
        at_point = dict(zip(state, point, strict=True))
        stage_slopes = [symbol(f"nm_k{stage + 1}_{x.name}") for x in state]
        blocks.append(tuple(
            (name, f.xreplace(at_point)) for name, f in zip(stage_slopes, drift, strict=True)
        ))
        slopes.append(stage_slopes)

    outputs = tuple(
        _clamp(x + dt * combine(integrator.b, slopes, i) + xi, bounds[i])
        for i, (x, xi) in enumerate(zip(state, increments, strict=True))
    )
    return StepProgram(
        state=state,
        coupling=model.coupling_symbols,
        noise=noise_symbols,
        parameters=model.parameter_symbols,
        blocks=tuple(blocks),
        outputs=outputs,
    )
