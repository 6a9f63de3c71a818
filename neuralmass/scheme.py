"""The numerical scheme, described once for every backend.

One step advances the state ``x`` of every node from time ``t`` to ``t + dt``:

1. Coupling, once per step, for each coupling term k (see :class:`~neuralmass.model.CouplingTerm`)::

       c_k[i] = scale_k * post_k( Σ_j w[i, j] * pre_k(x_i(t), x_j(t - d[i, j] * dt)) )

   ``c`` is then held fixed across the stages of the integrator, as in tvb-library. The
   delayed values come from a ring buffer of the coupled state variables: a step can read
   :func:`history_horizon` rows (``t - max_delay … t``) and the ring has
   :func:`history_length` rows.
2. An explicit Runge–Kutta scheme given by its tableau ``(a, b)``::

       k_1 = f(x, c)
       x_s = bound(x + dt * Σ_{m<s} a[s][m] * k_m + ξ)      s = 2 .. n_stages
       k_s = f(x_s, c)
       x(t + dt) = bound(x + dt * Σ_s b[s] * k_s + ξ)

   ``bound`` clamps each state variable to its bounds after every stage. ``ξ = σ * z`` is the
   additive noise, ``z ~ N(0, 1)`` drawn once per step, node and state variable and used in
   every stage (TVB's stochastic Heun), with ``σ = sqrt(2 * D * dt)`` for a diffusion
   coefficient ``D`` (TVB's ``nsig``), or the model's own per-step ``nsig``.

:func:`step_program` writes that step as a list of SymPy assignments for one node, and
:func:`coupling_program` the coupling as per-edge and per-node SymPy expressions; each backend
lowers both (JAX, Numba, CUDA) — only the loops around them differ between backends.
:func:`channel_coupling` rewrites the coupling so that the history holds *channels*
(``sin θ`` and ``cos θ`` for Kuramoto's ``sin(θ_j - θ_i)``) and a step only sums them per edge;
the Numba backend lowers that form (JAX keeps the coupled variables: two channels would double
its history, measured slower in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

import sympy

from .errors import ParameterError
from .model import Model, symbol

__all__ = [
    "INTEGRATORS",
    "MAX_CHANNELS_PER_TERM",
    "ROWSUM",
    "ChannelCoupling",
    "CouplingProgram",
    "CouplingRule",
    "Integrator",
    "StepProgram",
    "channel_coupling",
    "channel_form",
    "coupling_program",
    "delayed_symbol",
    "get_integrator",
    "history_horizon",
    "history_length",
    "step_program",
    "sum_symbol",
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

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        """Every symbol the assignments and outputs read (inputs and assigned names)."""
        return set().union(*(e.free_symbols for block in self.blocks for _, e in block),
                           *(e.free_symbols for e in self.outputs))


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


# ---------------------------------------------------------------------------- coupling
@dataclasses.dataclass(frozen=True)
class CouplingRule:
    """How one coupling term is computed at node i, from its incoming edges j::

        output[i] = post( Σ_j w[i, j] * pre(x_i(t), x_j(t - d[i, j])) )

    Attributes:
        output: the ``c_pop<k>`` symbol the step program reads.
        sources: the state variables read delayed at the source node j, as kept in the
            history (one or more: TVB's SigmoidalJansenRit reads two, ``y1_j - y2_j``).
        delayed: the symbols that stand in ``pre`` for ``source_j(t - d_ij)``, one per source.
        local: the state symbols ``pre`` reads at the target node i (at time t), model order.
        pre: the per-edge expression of ``delayed``, ``local``, parameters, ``dt``, ``n_node``
            (derived parameters substituted).
        summed: the symbol that stands in ``post`` for the weighted sum of ``pre``.
        post: the per-node expression of ``summed`` and parameters, the scale included
            (``scale * post``, a ``post`` without the sum being a multiplier of it).
    """

    output: sympy.Symbol
    sources: tuple[str, ...]
    delayed: tuple[sympy.Symbol, ...]
    local: tuple[sympy.Symbol, ...]
    pre: sympy.Expr
    summed: sympy.Symbol
    post: sympy.Expr

    def substitute(self, values: Mapping[sympy.Symbol, sympy.Expr]) -> CouplingRule:
        """The same rule with some symbols (``dt``, ``n_node``, fixed parameters) replaced;
        ``local`` keeps the state variables the substituted ``pre`` still reads."""
        pre = self.pre.xreplace(values)
        return dataclasses.replace(
            self, pre=pre, post=self.post.xreplace(values),
            local=tuple(s for s in self.local if s in pre.free_symbols))

    def at_source(self, expr: sympy.Expr) -> sympy.Expr:
        """``expr`` of the delayed symbols as the same function of the source node's state
        variables (the value a history of ``expr`` would hold)."""
        return expr.xreplace({d: symbol(s) for d, s in zip(self.delayed, self.sources,
                                                            strict=True)})

    def separations(self) -> Iterator[tuple[tuple[sympy.Expr, sympy.Expr], ...]]:
        """Ways to write ``pre`` as a sum of products, ``pre = Σ_m a_m * b_m`` with ``a_m``
        free of the delayed symbols and ``b_m`` of the local state (``sin(θ_j - θ_i)`` as
        ``sin θ_j cos θ_i - cos θ_j sin θ_i``), so that

            Σ_j w_ij pre = Σ_m a_m(x_i) Σ_j w_ij b_m(x_j(t - d_ij)).

        Yields the pairs ``(a_m, b_m)`` of each way found (``b_m = 1``: ``Σ_j w_ij`` alone),
        plain expansion first, then with trigonometric sums expanded; nothing when ``pre``
        does not separate."""
        delayed, local = set(self.delayed), set(self.local)
        candidates = [lambda: sympy.expand(self.pre)]
        if self.pre.has(sympy.sin, sympy.cos):
            candidates.append(lambda: sympy.expand(sympy.expand_trig(self.pre)))
        for candidate in candidates:
            pairs = []
            for term in sympy.Add.make_args(candidate()):
                a, b = sympy.Integer(1), sympy.Integer(1)
                for factor in sympy.Mul.make_args(term):
                    if factor.free_symbols & delayed:
                        if factor.free_symbols & local:
                            break
                        b *= factor
                    else:
                        a *= factor
                else:
                    coefficient, b = b.as_coeff_Mul()
                    pairs.append((a * coefficient, b))
                    continue
                break
            else:
                yield tuple(pairs)


@dataclasses.dataclass(frozen=True)
class CouplingProgram:
    """The coupling of one step (see the module docstring), as SymPy expressions per edge and
    per node that each backend lowers.

    Attributes:
        rules: one :class:`CouplingRule` per coupling term that is computed, model order.
        dead: the ``c_pop<k>`` symbols of the terms that are not computed because the step
            does not read them (see :meth:`prune`); a backend that still prints them sets
            them to 0.
        coupled: the model's coupled variables (``Model.coupled_variables``: the layout of
            ``initial_history``).
    """

    rules: tuple[CouplingRule, ...]
    dead: tuple[sympy.Symbol, ...]
    coupled: tuple[str, ...]

    @property
    def history(self) -> tuple[str, ...]:
        """The state variables the rules read delayed, in the order of ``coupled``: what a
        backend keeps in its history."""
        read = {s for rule in self.rules for s in rule.sources}
        return tuple(name for name in self.coupled if name in read)

    def history_index(self, rule: CouplingRule) -> tuple[int, ...]:
        """Where each of ``rule.sources`` sits in :attr:`history`."""
        return tuple(self.history.index(s) for s in rule.sources)

    def substitute(self, values: Mapping[sympy.Symbol, sympy.Expr]) -> CouplingProgram:
        """The same program with some symbols replaced in every rule."""
        return dataclasses.replace(self, rules=tuple(r.substitute(values) for r in self.rules))

    def prune(self, step: StepProgram) -> CouplingProgram:
        """Only the rules whose output ``step`` reads: once fixed parameters are substituted
        a term can drop out (Montbrió's ``cv * c_pop1`` with ``cv = 0``); the others are
        :attr:`dead`, and the history keeps only what the remaining rules read."""
        read = step.free_symbols
        return dataclasses.replace(
            self, rules=tuple(r for r in self.rules if r.output in read),
            dead=self.dead + tuple(r.output for r in self.rules if r.output not in read))


def coupling_program(model: Model) -> CouplingProgram:
    """The coupling of ``model`` (its :class:`~neuralmass.model.CouplingTerm` s) as a
    :class:`CouplingProgram`, derived parameters substituted."""
    state = model.state_symbols
    rules = []
    for term in model.coupling_terms:
        pre = model.resolve(term.pre)
        rules.append(CouplingRule(
            output=term.symbol,
            sources=term.sources,
            delayed=term.delayed,
            local=tuple(s for s in state if s in pre.free_symbols),
            pre=pre,
            summed=term.summed,
            post=model.resolve(term.scale) * model.resolve(term.post_of_sum),
        ))
    return CouplingProgram(rules=tuple(rules), dead=(), coupled=model.coupled_variables)


# ---------------------------------------------------------------------------- channels
#: a ``pre`` that splits into more channels than this is evaluated per edge instead
MAX_CHANNELS_PER_TERM = 4

#: ``Σ_j w_ij``, the row sum of the weights at node i (the sum of a channel ``b = 1``)
ROWSUM = sympy.Symbol("nm_rowsum", real=True)


def sum_symbol(s: int) -> sympy.Symbol:
    """``nm_sum<s>``: the weighted sum over node i's edges of :attr:`ChannelCoupling.sums` [s]."""
    return sympy.Symbol(f"nm_sum{s}", real=True)


def delayed_symbol(m: int) -> sympy.Symbol:
    """``nm_h<m>``: channel m of the source node, read ``d_ij`` steps in the past."""
    return sympy.Symbol(f"nm_h{m}", real=True)


@dataclasses.dataclass
class ChannelCoupling:
    """The coupling in channel form: with ``pre = Σ_m a_m(x_i) b_m(x_j)`` where it separates
    (:meth:`CouplingRule.separations`),

        Σ_j w_ij pre(x_i, x_j(t - d_ij)) = Σ_m a_m(x_i) Σ_j w_ij b_m(x_j)(t - d_ij),

    so the history stores the channels ``b_m(x)`` and a step reads ``nnz × n_channels`` delayed
    values with no function of them per edge (``b = 1`` needs no history: :data:`ROWSUM`). A
    ``pre`` that does not split (or would need many channels) is evaluated per edge on delayed
    channels that are the raw coupled variables.

    Attributes:
        channels: what the history stores, expressions of the (source) state symbols and
            parameters.
        sums: the per-edge value of each sum (``nm_sum<s>`` = Σ_j w_ij sums[s]), an
            expression of the :func:`delayed_symbol` s, the local (target) state, parameters.
        values: each computed ``c_pop<k>`` (model order) as an expression of the
            :func:`sum_symbol` s, :data:`ROWSUM`, the local state and parameters.
    """

    channels: list[sympy.Expr]
    sums: list[sympy.Expr]
    values: dict[sympy.Symbol, sympy.Expr]

    @property
    def plain_sums(self) -> bool:
        """Every sum is a plain weighted sum of one channel, in channel order."""
        return self.sums == [delayed_symbol(m) for m in range(len(self.channels))]


def channel_form(rule: CouplingRule):
    """The separation of ``rule.pre`` into ``[(a, b), ...]`` that the history stores as
    channels ``b``, or ``None`` to evaluate ``pre`` per edge: one channel, or a few when ``pre``
    calls functions (a polynomial per edge costs less than several channel sums)."""
    for pairs in rule.separations():
        distinct = {b for _, b in pairs if b != 1}
        if len(distinct) <= 1 or (rule.pre.atoms(sympy.Function) and
                                  len(distinct) <= MAX_CHANNELS_PER_TERM):
            return pairs
    return None


def channel_coupling(coupling: CouplingProgram) -> ChannelCoupling:
    """The rules of ``coupling`` as history channels, per-edge sums and per-node values."""
    result = ChannelCoupling([], [], {})

    def channel(expr):
        if expr not in result.channels:
            result.channels.append(expr)
        return result.channels.index(expr)

    def channel_sum(m):
        value = delayed_symbol(m)
        if value not in result.sums:
            result.sums.append(value)
        return sum_symbol(result.sums.index(value))

    for rule in coupling.rules:
        pairs = channel_form(rule)
        if pairs is not None:
            summed = sympy.Integer(0)
            for a, b in pairs:
                if b == 1:
                    summed += a * ROWSUM
                else:
                    summed += a * channel_sum(channel(rule.at_source(b)))
        else:
            delayed = {d: delayed_symbol(channel(symbol(source)))
                       for d, source in zip(rule.delayed, rule.sources, strict=True)}
            result.sums.append(rule.pre.xreplace(delayed))
            summed = sum_symbol(len(result.sums) - 1)
        result.values[rule.output] = rule.post.xreplace({rule.summed: summed})
    return result


# ---------------------------------------------------------------------------- history
def history_horizon(max_delay: int) -> int:
    """H = max_delay + 1: the rows of the past a step reads, ``t - max_delay … t`` (TVB's
    horizon; the length of ``initial_history``, row H - 1 being t = 0)."""
    return int(max_delay) + 1


def history_length(max_delay: int) -> int:
    """B: the rows of a backend's ring buffer, the smallest power of two ≥ H + 1 (H from
    :func:`history_horizon`). Time τ lives in row ``τ & (B - 1)``; step k reads rows
    ``(k - d) & (B - 1)`` and writes row ``(k + 1) & (B - 1)``, which no delay reaches during
    step k, so a step may write while other nodes still read."""
    return 1 << history_horizon(max_delay).bit_length()
