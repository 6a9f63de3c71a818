"""The model IR: a frozen, backend-free description of a neural mass model in SymPy.

A :class:`Model` holds what a LEMS/RateML file declares — state variables, parameters,
constants, derived parameters and variables, time derivatives, coupling terms, exposures and
noise — as SymPy expressions over real symbols. Backends lower it; nothing here knows about
JAX, Numba or CUDA.

Names in expressions:

- state variables, parameters, constants, derived parameters and derived variables by name;
- ``c_pop<k>``: the value of coupling term ``k`` at this node (see :class:`CouplingTerm`);
- the implicit scalars ``dt`` (ms), ``n_node``, ``global_coupling``, ``global_speed`` (mm/ms)
  and ``rec_speed_dt`` (= 1 / (global_speed * dt), unless the model defines it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from functools import cached_property

import sympy

from .errors import ModelError

__all__ = [
    "CouplingTerm",
    "DerivedQuantity",
    "Exposure",
    "Model",
    "Parameter",
    "StateVariable",
    "symbol",
    "IMPLICIT_SCALARS",
    "SWEEP_ONLY",
]

# Scalars every model may use without declaring them.
IMPLICIT_SCALARS = ("dt", "n_node", "global_coupling", "global_speed", "rec_speed_dt")
# Parameters that always exist (with these defaults when a model does not declare them).
SWEEP_ONLY = {"global_coupling": 1.0, "global_speed": None}


def symbol(name: str) -> sympy.Symbol:
    """The SymPy symbol neuralmass uses for ``name`` (always ``real=True``)."""
    return sympy.Symbol(name, real=True)


@dataclasses.dataclass(frozen=True)
class StateVariable:
    """One state variable of a node.

    Attributes:
        name: as in the model (and in TVB), e.g. ``"x1"``.
        derivative: d(name)/dt as written, in ms⁻¹ units of the model; may use derived
            variables, ``c_pop<k>``, parameters.
        initial_range: (lo, hi) from which random initial states are drawn uniformly.
        bounds: (lo, hi) clamp bounds applied after every integrator stage; either side may be
            ``None`` (unbounded); ``None`` altogether for no bounds.
        line: source line of the declaration, for messages.
        periodic: True for a phase (an angle in rad, meaningful modulo 2 pi, such as
            Kuramoto's theta): it is integrated unwrapped, and summaries report the Kuramoto
            order parameter over regions instead of the angle's mean and std.
    """

    name: str
    derivative: sympy.Expr
    initial_range: tuple[float, float]
    bounds: tuple[float | None, float | None] | None = None
    line: int | None = None
    periodic: bool = False


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A named value a simulation can set per parameter set.

    ``kind`` is ``"parameter"`` (RateML ``Parameter``: declares a sweep ``range``) or
    ``"constant"`` (RateML ``Constant``: a value with an optional ``range``/``step`` domain).
    Both can be varied per parameter set.
    """

    name: str
    default: float
    range: tuple[float, float] | None = None
    kind: str = "parameter"
    step: float | None = None
    description: str = ""
    line: int | None = None


@dataclasses.dataclass(frozen=True)
class DerivedQuantity:
    """``name = expression``: a derived parameter (no state) or a derived variable."""

    name: str
    expression: sympy.Expr
    line: int | None = None


@dataclasses.dataclass(frozen=True)
class CouplingTerm:
    """Long-range coupling term ``k``, held fixed across the stages of a step.

    For node i, with weights ``w[i, j]`` (to i from j) and integer delays ``d[i, j]``::

        c_pop<k>[i] = scale * post( Σ_j w[i, j] * pre(x_i(t), sources_j(t - d[i, j])) )

    Attributes:
        index: k, as in ``c_pop<k>``.
        sources: the names of the coupled (delayed, presynaptic) state variables, one or more
            (TVB's SigmoidalJansenRit reads two: ``y1_j - y2_j``), in declaration order.
        delayed: the symbols standing for ``source_j(t - d_ij)`` in ``pre``, one per source
            (e.g. ``(x1_j,)``).
        pre: per-edge function of ``delayed``, the local state variables and parameters.
        post: function of ``summed`` (the weighted sum of ``pre``) and parameters; a ``post``
            without ``summed`` is a plain multiplier.
        summed: the symbol that stands for the weighted sum inside ``post``.
        scale: the ``c_pop<k>`` DerivedParameter, e.g. ``global_coupling``.
    """

    index: int
    sources: tuple[str, ...]
    delayed: tuple[sympy.Symbol, ...]
    pre: sympy.Expr
    post: sympy.Expr
    summed: sympy.Symbol
    scale: sympy.Expr
    line: int | None = None

    @property
    def symbol(self) -> sympy.Symbol:
        """The ``c_pop<k>`` symbol used by the derivatives."""
        return symbol(f"c_pop{self.index}")

    @property
    def post_of_sum(self) -> sympy.Expr:
        """``post`` as a function of ``summed``: a ``post`` that does not use the sum
        multiplies it (RateML's per-afferent form is then the same)."""
        return self.post if self.summed in self.post.free_symbols else self.post * self.summed

    def node_input(self, total: sympy.Expr) -> sympy.Expr:
        """``scale * post(total)``: the value of ``c_pop<k>`` when ``Σ_j w[i, j] * pre`` is
        ``total`` (:attr:`post_of_sum` with the sum replaced)."""
        return self.scale * self.post_of_sum.xreplace({self.summed: total})


@dataclasses.dataclass(frozen=True)
class Exposure:
    """An observable: a named expression of state variables and parameters."""

    name: str
    expression: sympy.Expr
    line: int | None = None


@dataclasses.dataclass(frozen=True)
class Model:
    """A neural mass model, ready to be lowered by a backend.

    Build one with :func:`neuralmass.load_model` or :func:`neuralmass.lems.load`.
    ``derived_parameters`` and ``derived_variables`` are topologically ordered.
    ``noise_amplitude`` is the per-step standard deviation of the additive noise the model
    declares (RateML's ``nsig``), or ``None`` when it declares no ``noise`` component.
    """

    name: str
    state_variables: tuple[StateVariable, ...]
    parameters: tuple[Parameter, ...]
    derived_parameters: tuple[DerivedQuantity, ...] = ()
    derived_variables: tuple[DerivedQuantity, ...] = ()
    coupling_terms: tuple[CouplingTerm, ...] = ()
    exposures: tuple[Exposure, ...] = ()
    noise_amplitude: sympy.Expr | None = None
    description: str = ""
    source: str | None = None

    # ----------------------------------------------------------------- names and symbols
    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(sv.name for sv in self.state_variables)

    @property
    def periodic_names(self) -> tuple[str, ...]:
        """The state variables that are phases (``periodic="true"`` in the XML)."""
        return tuple(sv.name for sv in self.state_variables if sv.periodic)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Every name a simulation may set: parameters, constants, global_coupling/speed."""
        return tuple(p.name for p in self.parameters)

    @property
    def exposure_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.exposures)

    @property
    def coupled_variables(self) -> tuple[str, ...]:
        """State variables kept in the delay history, in order of first use by a coupling."""
        names: list[str] = []
        for term in self.coupling_terms:
            names += [source for source in term.sources if source not in names]
        return tuple(names)

    @property
    def defaults(self) -> dict[str, float | None]:
        return {p.name: p.default for p in self.parameters}

    def parameter(self, name: str) -> Parameter:
        return self._parameters_by_name[name]

    @cached_property
    def _parameters_by_name(self) -> dict[str, Parameter]:
        # A dict, not a search: simulate() looks every parameter up (issue 8, section 7).
        return {p.name: p for p in self.parameters}

    @property
    def state_symbols(self) -> tuple[sympy.Symbol, ...]:
        return tuple(symbol(n) for n in self.state_names)

    @property
    def parameter_symbols(self) -> tuple[sympy.Symbol, ...]:
        return tuple(symbol(n) for n in self.parameter_names)

    @property
    def coupling_symbols(self) -> tuple[sympy.Symbol, ...]:
        return tuple(t.symbol for t in self.coupling_terms)

    # ----------------------------------------------------------------- resolved expressions
    @cached_property
    def _parameter_substitutions(self) -> dict[sympy.Symbol, sympy.Expr]:
        subs: dict[sympy.Symbol, sympy.Expr] = {}
        if "rec_speed_dt" not in self.parameter_names:  # a Parameter or Constant wins
            subs[symbol("rec_speed_dt")] = 1 / (symbol("global_speed") * symbol("dt"))
        for derived in self.derived_parameters:
            subs[symbol(derived.name)] = derived.expression.xreplace(subs)
        return subs

    def resolve(self, expression: sympy.Expr) -> sympy.Expr:
        """Substitute derived parameters (and ``rec_speed_dt``) in ``expression``."""
        return expression.xreplace(self._parameter_substitutions)

    @cached_property
    def drift(self) -> tuple[sympy.Expr, ...]:
        """d(state)/dt, one expression per state variable, with every derived quantity
        substituted: free symbols are states, ``c_pop<k>``, parameters, ``dt``, ``n_node``."""
        subs = dict(self._parameter_substitutions)
        for derived in self.derived_variables:
            subs[symbol(derived.name)] = derived.expression.xreplace(subs)
        return tuple(sv.derivative.xreplace(subs) for sv in self.state_variables)

    @cached_property
    def exposure_expressions(self) -> tuple[sympy.Expr, ...]:
        return tuple(self.resolve(e.expression) for e in self.exposures)

    def jacobian(self) -> sympy.Matrix:
        """The Jacobian ∂drift/∂state (n_state × n_state), coupling held fixed."""
        return sympy.Matrix(self.drift).jacobian(list(self.state_symbols))

    def with_defaults(self, **defaults: float) -> Model:
        """A copy with other default values, e.g. ``model.with_defaults(eta=-4.6)``."""
        unknown = set(defaults) - set(self.parameter_names)
        if unknown:
            raise ModelError(
                f"model {self.name!r} has no parameter {sorted(unknown)[0]!r}; "
                f"parameters are {', '.join(self.parameter_names)}"
            )
        params = tuple(
            dataclasses.replace(p, default=float(defaults[p.name])) if p.name in defaults else p
            for p in self.parameters
        )
        return dataclasses.replace(self, parameters=params)

    # ----------------------------------------------------------------- printing
    def __str__(self) -> str:
        lines = [f"Model {self.name!r}" + (f": {self.description}" if self.description else "")]
        lines.append("  parameters:")
        for p in self.parameters:
            rng = f"  range [{p.range[0]:g}, {p.range[1]:g}]" if p.range else ""
            default = "(from connectivity)" if p.default is None else f"{p.default:g}"
            lines.append(f"    {p.name} = {default}{rng}")
        if self.derived_parameters:
            lines.append("  derived parameters:")
            lines += [f"    {d.name} = {sympy.sstr(d.expression)}" for d in self.derived_parameters]
        if self.coupling_terms:
            lines.append("  coupling:")
            for t in self.coupling_terms:
                total = sympy.Symbol(f"Σ_j w_ij·({sympy.sstr(t.pre)})")
                post = t.post_of_sum.xreplace({t.summed: total})
                delayed = ", ".join(f"{d} = {s}[j](t - d_ij)"
                                    for d, s in zip(t.delayed, t.sources, strict=True))
                lines.append(f"    c_pop{t.index} = {sympy.sstr(t.scale)} * {sympy.sstr(post)}"
                             f"   ({delayed})")
        if self.derived_variables:
            lines.append("  derived variables:")
            lines += [f"    {d.name} = {sympy.sstr(d.expression)}" for d in self.derived_variables]
        lines.append("  dynamics:")
        for sv in self.state_variables:
            bounds = ""
            if sv.bounds:
                lo, hi = sv.bounds
                bounds = f"   bounds [{'-inf' if lo is None else f'{lo:g}'}, " \
                         f"{'inf' if hi is None else f'{hi:g}'}]"
            lines.append(f"    d{sv.name}/dt = {sympy.sstr(sv.derivative)}{bounds}")
        if self.exposures:
            lines.append("  exposures:")
            lines += [f"    {e.name} = {sympy.sstr(e.expression)}" for e in self.exposures]
        if self.noise_amplitude is not None:
            nsig = sympy.sstr(self.noise_amplitude)
            lines.append(f"  noise: additive, per-step std nsig = {nsig}")
        return "\n".join(lines)


def topological_order(
    items: Iterable[tuple[str, sympy.Expr, int | None]],
    *,
    where: Mapping[str, str],
    kind: str,
) -> list[str]:
    """Order ``name = expr`` definitions so each comes after what it uses.

    A depth-first search with an explicit stack, linear in the definitions and their uses
    (a long chain ``a1 = a0 + 1, a2 = a1 + 1, ...`` must not exhaust Python's recursion).
    Raises ModelError naming the cycle (``a -> b -> a``) and the line of its first member.
    """
    items = list(items)
    defined = {name for name, _, _ in items}
    uses = {name: sorted({s.name for s in expr.free_symbols} & defined)
            for name, expr, _ in items}
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root, _, _ in items:
        if root in state:
            continue
        path, pending = [root], [iter(uses[root])]
        state[root] = 1
        while pending:
            for used in pending[-1]:
                if state.get(used) == 2:
                    continue
                if state.get(used) == 1:
                    cycle = path[path.index(used):] + [used]
                    raise ModelError(
                        f"{where[cycle[0]]}: cycle among {kind}: {' -> '.join(cycle)}")
                state[used] = 1
                path.append(used)
                pending.append(iter(uses[used]))
                break
            else:
                pending.pop()
                done = path.pop()
                state[done] = 2
                order.append(done)
    return order
