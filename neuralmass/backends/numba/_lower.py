"""Lower a :class:`~neuralmass.plan.RunPlan` to the source of a small Python module for Numba.

The module holds the model's maths only, printed by SymPy for one *tile* of ``L`` parameter
sets ("lanes") at once; the loops around it live in :mod:`._kernels`. Every function takes
and returns flat tuples (which Numba keeps in registers), lane fastest: the value of state
variable ``v`` in lane ``p`` is ``nm_x[v * L + p]``. Printing the ``L`` lanes side by side as
straight-line code lets LLVM's SLP vectoriser turn them into SIMD instructions.

Coupling. The coupling is lowered in channel form
(:func:`~neuralmass.scheme.channel_coupling`): the history stores *channels* ``b_m(x)``
(``sin θ`` and ``cos θ`` for ``sin(θ_j - θ_i)``), a step reads ``nnz × n_channels`` delayed
values and multiplies and adds, with no function of them per edge; a ``pre`` that does not
split is evaluated per edge on the delayed coupled variables. Coupling terms whose
``c_pop<k>`` the step does not use once fixed parameters are substituted (e.g. Montbrió's
``cv * c_pop1`` with ``cv = 0``, :meth:`~neuralmass.scheme.CouplingProgram.prune`) are not
computed at all.

Functions of the module (``L`` lanes; sizes below are tuple lengths):

- ``nm_zeros()``: ``n_sums * L`` zeros, the start of the edge sums.
- ``nm_edge(nm_acc, nm_delayed, nm_weight, nm_x, nm_q)``: ``nm_acc`` plus ``nm_weight`` times
  each sum's per-edge value; ``nm_delayed`` holds the ``n_channels * L`` delayed channels of
  the source node, ``nm_x`` the local state, ``nm_q`` the swept parameters.
- ``nm_node(nm_x, nm_acc, nm_z, nm_q, nm_rowsum)``: one integration step of a node (coupling
  from the sums, then the :func:`~neuralmass.scheme.step_program`); returns the new state
  (``n_state * L``) followed by its channels (``n_channels * L``).
- ``nm_channels(nm_x, nm_q)``, ``nm_exposures(nm_x, nm_q)``.
- ``nm_record(nm_total, nm_x, nm_q)``: running totals of the temporal average, state then
  exposures (``(n_state + n_exposures) * L``).

Tuples that would be empty hold one unused zero (Numba cannot index empty tuples).
"""

from __future__ import annotations

import ast
import dataclasses
import math

import numpy as np
import sympy
from sympy.printing.precedence import precedence

from ...model import symbol
from ...plan import RunPlan
from ...scheme import (
    ROWSUM,
    ChannelCoupling,
    StepProgram,
    channel_coupling,
    coupling_program,
    delayed_symbol,
    step_program,
    sum_symbol,
)
from .._python_source import MathSourcePrinter, function_source
from ._monitor_layout import monitor_kind

__all__ = ["Lowering", "lower", "plan_fingerprint", "NumbaPrinter"]

# integer powers up to this are printed as products (x*x*x), as JAX's integer_pow does
_MAX_EXPANDED_POWER = 16


class _AsDtype(sympy.Function):
    """Marks a returned value: printed as a cast to the working dtype, so that every tuple
    a function returns has one element type."""


class _Maximum(sympy.Function):
    """``Max`` that SymPy does not evaluate (rebuilding ``Max`` for every lane asks SymPy to
    compare its arguments, which dominates the printing time); printed as ``nm_max``, which
    propagates NaN (:func:`._math.nan_maximum`; Python's ``max(0.0, nan)`` is 0.0)."""


class _Minimum(sympy.Function):
    """``Min``, likewise; printed as ``nm_min``."""


def _inert(expr: sympy.Expr) -> sympy.Expr:
    return expr.replace(sympy.Max, _Maximum).replace(sympy.Min, _Minimum)


class _TupleArgument:
    """A tuple argument of a generated function: ``t[m]`` is the real symbol named
    ``"name[m]"``, which prints as the Python subscript (plain real symbols keep SymPy fast,
    where ``Indexed`` objects make it query assumptions at every rebuild)."""

    def __init__(self, name: str):
        self.symbol = sympy.Symbol(name)

    def __getitem__(self, m: int) -> sympy.Symbol:
        return sympy.Symbol(f"{self.symbol.name}[{int(m)}]", real=True)


class NumbaPrinter(MathSourcePrinter):
    """SymPy → scalar Python for Numba in one working precision.

    In float32 every number is printed as ``numpy.float32(...)`` (a bare ``2`` or ``math.pi``
    would promote the arithmetic to float64); small integer powers become products; ``sin``
    and ``cos`` call ``nm_sin``/``nm_cos`` (:mod:`._math`: branch-free, so the lanes
    vectorise, within 2 ulp), ``Max``/``Min`` (the bound clamps) ``nm_max``/``nm_min``
    (NaN-propagating), everything else ``math``.
    """

    def __init__(self, dtype=np.float64):
        super().__init__()
        self._single = np.dtype(dtype) == np.float32

    def _number(self, value: float) -> str:
        text = repr(float(value)) if math.isfinite(value) else \
            {math.inf: "math.inf", -math.inf: "-math.inf"}.get(value, "math.nan")
        return f"numpy.float32({text})" if self._single else text

    def _print_Float(self, expr):
        return self._number(float(expr))

    _print_Integer = _print_Rational = _print_Half = _print_Zero = _print_One = _print_Float
    _print_NegativeOne = _print_NumberSymbol = _print_Pi = _print_Exp1 = _print_Float
    _print_Infinity = _print_NegativeInfinity = _print_NaN = _print_Float

    def _print__Maximum(self, expr):
        return self._nested("nm_max", expr.args)

    def _print__Minimum(self, expr):
        return self._nested("nm_min", expr.args)

    def _nested(self, function: str, args) -> str:
        """``f(a, f(b, c))`` for the two-argument ``nm_max``/``nm_min``."""
        text = self._print(args[-1])
        for arg in reversed(args[:-1]):
            text = f"{function}({self._print(arg)}, {text})"
        return text

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.as_base_exp()
        one = self._number(1.0)
        if exponent == sympy.S.Half:
            return f"math.sqrt({self._print(base)})"
        if exponent == -sympy.S.Half:
            return f"({one}/math.sqrt({self._print(base)}))"
        if exponent.is_Integer and 0 < abs(int(exponent)) <= _MAX_EXPANDED_POWER:
            factor = self.parenthesize(base, precedence(sympy.Mul(2, 3, evaluate=False)))
            product = "*".join([factor] * abs(int(exponent)))
            return f"({product})" if exponent > 0 else f"({one}/({product}))"
        return (f"{self.parenthesize(base, precedence(expr), strict=True)}"
                f"**{self.parenthesize(exponent, precedence(expr), strict=True)}")

    def _print_sin(self, expr):
        return f"nm_sin({self._print(expr.args[0])})"

    def _print_cos(self, expr):
        return f"nm_cos({self._print(expr.args[0])})"

    def _print_floor(self, expr):
        return f"numpy.floor({self._print(expr.args[0])})"

    def _print_ceiling(self, expr):
        return f"numpy.ceil({self._print(expr.args[0])})"

    def _print__AsDtype(self, expr):
        kind = "numpy.float32" if self._single else "float"
        return f"{kind}({self._print(expr.args[0])})"


@dataclasses.dataclass(frozen=True)
class Lowering:
    """The generated module's source and the sizes the loops need.

    ``swept``: parameters given per set, in the order of ``nm_q``; ``channels``: the history
    channels as expressions of the state variables (printed by ``sympy.sstr``);
    ``coupled_states``: the state index of
    each of ``model.coupled_variables`` (the layout of ``plan.initial_history``).
    """

    source: str
    lanes: int
    block: int
    n_nodes: int
    n_state: int
    n_channels: int
    n_sums: int
    n_swept: int
    n_exposures: int
    stochastic: bool
    swept: tuple[str, ...]
    channels: tuple[str, ...]
    coupled_states: tuple[int, ...]


# ---------------------------------------------------------------------------- coupling
def _inert_coupling(coupling: ChannelCoupling) -> ChannelCoupling:
    """The same with ``Max``/``Min`` inert (see :class:`_Maximum`), for printing."""
    return ChannelCoupling(channels=[_inert(e) for e in coupling.channels],
                           sums=[_inert(e) for e in coupling.sums],
                           values={c: _inert(v) for c, v in coupling.values.items()})


# ---------------------------------------------------------------------------- fingerprint
def plan_fingerprint(plan: RunPlan, lanes: int, **options) -> str:
    """A text that determines :func:`lower`'s result for ``plan``: the model's maths (as
    ``sympy.srepr``), the scheme, the fixed values, the swept names and the options. Cheap
    next to printing, so a second process can find the printed module without SymPy work."""
    model = plan.model
    terms = [(t.index, t.sources, t.delayed, t.pre, t.post, t.summed, t.scale)
             for t in model.coupling_terms]
    parts = [
        model.state_names, [sv.bounds for sv in model.state_variables], model.parameter_names,
        sympy.srepr(model.drift), sympy.srepr(terms), sympy.srepr(model.exposure_expressions),
        sympy.srepr(model.noise_amplitude), sympy.srepr(model._parameter_substitutions),
        plan.integrator, sympy.srepr(plan.noise_std), plan.swept, plan.n_nodes,
        sorted((str(k), repr(float(v))) for k, v in plan.fixed_substitutions.items()),
        np.dtype(plan.dtype).name, int(lanes), sorted(options.items()),
        [monitor_kind(m) for m in plan.monitors],
    ]
    return repr(parts)


# ---------------------------------------------------------------------------- printing
def _glue(constants: dict[str, object]) -> str:
    """Imports and constants of the module, printed from a Python AST."""
    body: list[ast.stmt] = [ast.Import(names=[ast.alias("math")]),
                            ast.Import(names=[ast.alias("numpy")])]
    for name, value in constants.items():
        body.append(ast.Assign(targets=[ast.Name(name, ast.Store())],
                               value=ast.Constant(value) if not isinstance(value, tuple) else
                               ast.Tuple([ast.Constant(v) for v in value], ast.Load())))
    return ast.unparse(ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))) + "\n"


def _padded(values: list) -> list:
    return values if values else [sympy.Float(0.0)]


_X, _Q, _ACC = _TupleArgument("nm_x"), _TupleArgument("nm_q"), _TupleArgument("nm_acc")
_DELAYED, _NOISE = _TupleArgument("nm_delayed"), _TupleArgument("nm_z")
_TOTAL = _TupleArgument("nm_total")
_WEIGHT = sympy.Symbol("nm_weight", real=True)


@dataclasses.dataclass(frozen=True)
class _Lanes:
    """The ``L`` lanes of a tile: ``inputs(p)`` maps the model's symbols to lane p's values."""

    L: int
    state: tuple[sympy.Symbol, ...]
    swept: tuple[str, ...]

    def inputs(self, p: int, values=None) -> dict:
        """Symbols of lane p: state (from nm_x, or ``values``), swept parameters."""
        L = self.L
        subs = {s: (_X[v * L + p] if values is None else values[v])
                for v, s in enumerate(self.state)}
        subs.update({symbol(name): _Q[n * L + p] for n, name in enumerate(self.swept)})
        return subs


def _programs(plan: RunPlan) -> tuple[StepProgram, ChannelCoupling]:
    """The step program, ``Max``/``Min`` inert for printing (see :class:`_Maximum`), and the
    live coupling in channel form, both with the fixed values substituted."""
    fixed = dict(plan.fixed_substitutions)
    program = step_program(plan.model, plan.integrator, plan.noise_std).substitute(fixed)
    coupling = channel_coupling(coupling_program(plan.model).substitute(fixed).prune(program))
    program = dataclasses.replace(
        program, blocks=tuple(tuple((t, _inert(e)) for t, e in block) for block in program.blocks),
        outputs=tuple(_inert(e) for e in program.outputs))
    return program, coupling


def _edge_function(coupling: ChannelCoupling, lanes: _Lanes, printer) -> str:
    """``nm_edge``: the sums plus the weight times each sum's per-edge value, every lane."""
    L = lanes.L
    outputs = []
    for s, per_edge in enumerate(coupling.sums):
        for p in range(L):
            subs = lanes.inputs(p)
            subs.update({delayed_symbol(m): _DELAYED[m * L + p]
                         for m in range(len(coupling.channels))})
            outputs.append(_AsDtype(_ACC[s * L + p] + _WEIGHT * per_edge.xreplace(subs)))
    return function_source(
        "nm_edge", [_ACC.symbol, _DELAYED.symbol, _WEIGHT, _X.symbol, _Q.symbol], [],
        _padded(outputs), printer)


def _node_function(program: StepProgram, coupling: ChannelCoupling, lanes: _Lanes, printer) -> str:
    """``nm_node``: per lane, the coupling values from the sums, the step program, then the
    new state's channels; returns the new state then the channels, lane fastest."""
    L, state = lanes.L, lanes.state
    blocks, new_states, new_channels = [], [], []
    internal = {t for block in program.blocks for t, _ in block}
    for p in range(L):
        renamed = {t: sympy.Symbol(f"{t.name}_l{p}", real=True) for t in internal}
        renamed.update({c: sympy.Symbol(f"{c.name}_l{p}", real=True) for c in coupling.values})
        renamed.update({z: _NOISE[v * L + p] for v, z in enumerate(program.noise)})
        subs = lanes.inputs(p)
        lane_sums = {sum_symbol(s): _ACC[s * L + p] for s in range(len(coupling.sums))}
        blocks.append(tuple((renamed[c], value.xreplace({**subs, **lane_sums}))
                            for c, value in coupling.values.items()))
        subs.update(renamed)
        for block in program.blocks:
            blocks.append(tuple((renamed[t], e.xreplace(subs)) for t, e in block))
        new = [sympy.Symbol(f"nm_new_{s.name}_l{p}", real=True) for s in state]
        blocks.append(tuple(zip(new, (e.xreplace(subs) for e in program.outputs), strict=True)))
        new_states.append(new)
        channel_symbols = [sympy.Symbol(f"nm_channel{m}_l{p}", real=True)
                           for m in range(len(coupling.channels))]
        lane_new = lanes.inputs(p, values=new)
        blocks.append(tuple((c, e.xreplace(lane_new))
                            for c, e in zip(channel_symbols, coupling.channels, strict=True)))
        new_channels.append(channel_symbols)
    outputs = [_AsDtype(new_states[p][v]) for v in range(len(state)) for p in range(L)]
    outputs += [_AsDtype(new_channels[p][m]) for m in range(len(coupling.channels))
                for p in range(L)]
    return function_source(
        "nm_node", [_X.symbol, _ACC.symbol, _NOISE.symbol, _Q.symbol, ROWSUM], blocks, outputs,
        printer)


def _record_function(exposure_outputs: list, lanes: _Lanes, printer) -> str:
    """``nm_record``: the running totals of the temporal average, state then exposures."""
    n_state = len(lanes.state)
    record = [_AsDtype(_TOTAL[m] + _X[m]) for m in range(n_state * lanes.L)]
    record += [_AsDtype(_TOTAL[n_state * lanes.L + m] + value.args[0])
               for m, value in enumerate(exposure_outputs)]
    if not exposure_outputs:  # the padding slot of the exposure block
        record.append(_AsDtype(_TOTAL[n_state * lanes.L]))
    return function_source("nm_record", [_TOTAL.symbol, _X.symbol, _Q.symbol], [], record,
                           printer)


def _functions(plan: RunPlan, program: StepProgram, coupling: ChannelCoupling,
               lanes: _Lanes) -> list:
    """The sources of the module's functions (see the module docstring)."""
    printer = NumbaPrinter(plan.dtype)
    L = lanes.L
    zeros = [sympy.Float(0.0)] * (len(coupling.sums) * L)
    channel_outputs = [_AsDtype(e.xreplace(lanes.inputs(p))) for e in coupling.channels
                       for p in range(L)]
    fixed = plan.fixed_substitutions
    exposures = [_inert(e.xreplace(fixed)) for e in plan.model.exposure_expressions]
    exposure_outputs = [_AsDtype(e.xreplace(lanes.inputs(p))) for e in exposures
                        for p in range(L)]
    return [
        function_source("nm_zeros", [], [], _padded(zeros), printer),
        _edge_function(coupling, lanes, printer),
        _node_function(program, coupling, lanes, printer),
        function_source("nm_channels", [_X.symbol, _Q.symbol], [], _padded(channel_outputs),
                        printer),
        function_source("nm_exposures", [_X.symbol, _Q.symbol], [], _padded(exposure_outputs),
                        printer),
        _record_function(exposure_outputs, lanes, printer),
    ]


def _constants(plan: RunPlan, coupling: ChannelCoupling, lanes: _Lanes, block_steps: int,
               coupled_states: tuple[int, ...]) -> dict[str, object]:
    """The module's ``NM_*`` sizes and flags, which the loops read as compile-time constants."""
    L = lanes.L
    n_state, n_channels, n_sums = len(lanes.state), len(coupling.channels), len(coupling.sums)
    n_exposures, n_swept = len(plan.model.exposures), len(lanes.swept)
    return {
        "NM_NODES": plan.n_nodes,
        "NM_LANES": L,
        "NM_STATE": n_state,
        "NM_CHANNELS": n_channels,
        "NM_SUMS": n_sums,
        "NM_SWEPT": n_swept,
        "NM_EXPOSURES": n_exposures,
        "NM_STOCHASTIC": plan.noise_std is not None,
        # every sum is a plain weighted sum of one history channel, in channel order
        "NM_CHANNEL_SUMS": coupling.plain_sums,
        "NM_COUPLED": len(coupled_states),
        "NM_COUPLED_STATES": coupled_states or (0,),
        # tuple lengths (at least 1, see the module docstring)
        "NM_STATE_BLOCK": n_state * L,
        "NM_CHANNEL_VALUES": n_channels * L,
        "NM_EXPOSURE_VALUES": n_exposures * L,
        "NM_CHANNEL_BLOCK": max(1, n_channels * L),
        "NM_SUM_BLOCK": max(1, n_sums * L),
        "NM_SWEPT_BLOCK": max(1, n_swept * L),
        "NM_EXPOSURE_BLOCK": max(1, n_exposures * L),
        "NM_RECORD_BLOCK": n_state * L + max(1, n_exposures * L),
        "NM_BLOCK": block_steps,
        # the monitors' kinds (_kernels.MONITOR_*), so each run's loops hold only its own
        "NM_MONITORS": len(plan.monitors),
        "NM_MONITOR_KINDS": tuple(monitor_kind(m) for m in plan.monitors),
    }


def lower(plan: RunPlan, lanes: int, *, header: str = "", block: int = 32) -> Lowering:
    """Print the model functions of ``plan`` for tiles of ``lanes`` parameter sets;
    ``block``: steps per block of the far-edge sums (see :mod:`._kernels`)."""
    model = plan.model
    tile = _Lanes(int(lanes), model.state_symbols, plan.swept)
    program, coupling = _programs(plan)
    coupled_states = tuple(model.state_names.index(c) for c in model.coupled_variables)
    constants = _constants(plan, coupling, tile, int(block), coupled_states)
    description = [f"# model {model.name!r}, {plan.integrator.name}"
                   + (", stochastic" if plan.noise_std is not None else "")
                   + f", {np.dtype(plan.dtype).name}, {tile.L} lane(s) per tile",
                   f"# swept parameters (nm_q): {', '.join(tile.swept) or 'none'}",
                   "# history channels: " + (", ".join(sympy.sstr(c) for c in coupling.channels)
                                             or "none")]
    source = "\n".join([header.rstrip("\n"), *description, _glue(constants)]).lstrip("\n")
    source += "\n\n" + "\n\n".join(_functions(plan, program, _inert_coupling(coupling), tile))
    return Lowering(
        source=source,
        lanes=tile.L,
        block=int(block),
        n_nodes=plan.n_nodes,
        n_state=len(tile.state),
        n_channels=len(coupling.channels),
        n_sums=len(coupling.sums),
        n_swept=len(tile.swept),
        n_exposures=len(model.exposures),
        stochastic=plan.noise_std is not None,
        swept=tile.swept,
        channels=tuple(sympy.sstr(c) for c in coupling.channels),
        coupled_states=coupled_states,
    )
