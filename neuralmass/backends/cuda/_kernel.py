"""Build the CUDA kernel of a run plan: a ``sympy.codegen.ast`` tree printed by
:class:`CUDACodePrinter`.

One launch advances every parameter set by one step (the host launches the steps of a chunk
one after the other, then copies the chunk's samples back). Thread ``(p, i)`` —
``p = blockIdx.x * blockDim.x + threadIdx.x`` the parameter set, ``i = blockIdx.y`` the node —
steps node ``i`` of set ``p``. Every array has the set index innermost, so the 32 threads of a
warp (same node, consecutive sets) read 32 consecutive values (coalesced) and the same edges
(a broadcast):

- ``state``: (n_state, N, P), the state at the current time, read and written in place (a
  thread reads and writes only its own node);
- ``history``: (B, n_hist, N, P), the ring buffer of the coupled variables, time τ in row
  ``τ & (B - 1)``. B is a power of two ≥ max delay + 2, so the row a step writes,
  ``(k + 1) & (B - 1)``, is never a row it reads, ``(k - d) & (B - 1)``: the nodes of a step
  need no synchronisation, and consecutive launches order the steps;
- ``out<j>``: (rows, n_rows, N, P), one chunk of monitor j's samples, and ``monitor<j>``:
  (n_planes, N, P), what it keeps from step to step (:class:`MonitorSpec`; exposures that are
  plain state variables are left to the host);
- ``parameters``: (n_swept, P), the parameters that vary between sets; all others are literals;
- ``first_nonfinite``: (P,) int, the first step n (state at t = n dt) whose new state held NaN
  or inf, -1 while finite (:mod:`neuralmass.divergence`): a thread that computes a non-finite
  state writes ``step + 1`` if the set has none yet (the nodes of one step all write the same
  value, so they need no atomics).

Why a thread per (set, node) and a launch per step rather than one thread looping over the
steps and nodes of its set: a step costs nnz delayed loads per set, each behind a dependent
edge lookup, and P threads cannot hide that latency. On an H200 (Montbrió, 76 regions, float32)
one thread per set gave 9e7 set-steps/s at P = 32,768 and 4.8e6 at P = 1,024; one thread per
(set, node) gives 3.8e8 and 1.2e8 (kernel time), and a launch (a few µs) is short next to a
step's traffic.

Indices within one (n_var, N, P) block are ``int`` (the host keeps n_var × N × P < 2³¹ per
batch); the offsets of history rows and output samples are ``long long``.

The edge list (CSR by target: ``edge_start`` (N + 1), ``edge_source``, ``edge_weight`` and the
integer delays ``edge_delay`` (S, nnz) per distinct speed) sits in ``__constant__`` memory when
it fits and the speed is the same for every set (every thread of a warp then reads the same
edge: a broadcast); otherwise the kernel takes them as pointers and each set reads the delay row
of its speed, ``speed_index[p]``.

Per thread: load the node's state, sum the coupling over its incoming edges from the history,
draw the noise (Philox4x32-10, counter (step, node, set, v // 4), key = seed; Box–Muller), run
the blocks of :func:`neuralmass.scheme.step_program` (each simplified with ``sympy.cse`` on its
own), write the new state and its coupled variables, and update the monitor.

Coupling terms whose ``c_pop<k>`` no longer appears once the fixed parameters are substituted
(Montbrió's ``cv = 0`` removes ``c_pop1``) are not computed, and coupled variables that no live
term reads are not stored in the history.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import sympy
from sympy.codegen import ast
from sympy.codegen.cnodes import restrict

from ... import hemodynamics as hd
from ...errors import ParameterError
from ...model import symbol
from ...plan import RunPlan
from ...random import PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0, PHILOX_W1
from ...scheme import CouplingProgram, StepProgram, coupling_program, history_length, step_program
from ._printer import (
    INT,
    INT64,
    UINT,
    ArrayDeclaration,
    CUDACodePrinter,
    If,
    Pragma,
    bit_and,
    bit_xor,
    isfinite,
    umulhi,
)

__all__ = ["KernelSpec", "build_kernel", "KERNEL_NAME"]

KERNEL_NAME = "nm_simulate"
# __constant__ memory is 64 KiB; leave room for what the compiler puts there itself
_CONSTANT_BUDGET = 60 * 1024



@dataclasses.dataclass(frozen=True)
class KernelSpec:
    """A printed kernel and what its host driver needs to know to launch it.

    Attributes:
        source: the CUDA C++ source; digest: its sha256 (the compilation cache key).
        arguments: ``(name, role)`` of each kernel parameter in order; roles are ``state``,
            ``history``, ``out<j>``, ``monitor<j>``, ``weights<j>`` (monitor j's chunk of
            samples, its kept values and BOLD weights, :class:`MonitorSpec`),
            ``first_nonfinite``, ``parameters``, ``speed_index``, ``edge_start``,
            ``edge_source``, ``edge_weight``, ``edge_delay`` (device arrays) and ``n_sets``,
            ``set_offset``, ``step`` (the global step k), ``row<j>`` (the row of monitor j's
            chunk a sample due at k goes to, else -1), ``bin_slot``, ``newest_slot`` (BOLD's
            ring rows, see :func:`_monitor_statements`) (int), ``seed_lo``, ``seed_hi``
            (unsigned int).
        constants: ``(name, role)`` of the ``__constant__`` arrays the host fills before a
            launch (edge roles as above).
        dtype: float32 or float64. history_length: B. history_variables: indices of the state
            variables held in the history, in history order. swept: names of the per-set
            parameters, in the order of the ``parameters`` rows.
        monitors: one :class:`MonitorSpec` per monitor of the plan, in order.
        n_state, n_exposure (computed by the kernel), n_nodes, n_edges, n_speeds: sizes.
        exposure_map: for each of the model's exposures, ``("state", v)`` when it is state
            variable v (the host copies it) or ``("kernel", k)``, row k of ``out_exposure``.
    """

    source: str
    digest: str
    arguments: tuple[tuple[str, str], ...]
    constants: tuple[tuple[str, str], ...]
    dtype: type
    history_length: int
    history_variables: tuple[int, ...]
    swept: tuple[str, ...]
    monitors: tuple[MonitorSpec, ...]
    n_state: int
    n_exposure: int
    exposure_map: tuple[tuple[str, int], ...]
    n_nodes: int
    n_edges: int
    n_speeds: int
    name: str = KERNEL_NAME

    @property
    def n_history(self) -> int:
        return len(self.history_variables)

    def edge_arrays(self, plan: RunPlan) -> dict[str, np.ndarray]:
        """The edge list in the kernel's types: role → contiguous array."""
        targets, sources, weights, _ = plan.connectivity.edges()
        start = np.searchsorted(targets, np.arange(self.n_nodes + 1)).astype(np.int32)
        return {
            "edge_start": start,
            "edge_source": np.ascontiguousarray(sources, dtype=np.int32),
            "edge_weight": np.ascontiguousarray(weights, dtype=self.dtype),
            "edge_delay": np.ascontiguousarray(plan.delays(), dtype=np.int32).reshape(-1),
        }


def _int(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True)


def _real(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


def _declare(name_or_symbol, value, type_=ast.real, *, const: bool = True) -> ast.Declaration:
    attrs = {ast.value_const} if const else set()
    return ast.Declaration(ast.Variable(name_or_symbol, type=type_, value=value, attrs=attrs))


_INTEGER_ARRAYS = ("nm_edge_start", "nm_edge_source", "nm_edge_delay", "nm_speed_index",
                   "nm_first_nonfinite")


def _load(array: str, index) -> sympy.Indexed:
    """``array[index]`` on a flat array, as a SymPy expression (also an assignment target)."""
    kind = {"integer": True} if array in _INTEGER_ARRAYS else {"real": True}
    # a symbolic shape: Assignment asks for one; the printer ignores it
    return sympy.IndexedBase(array, shape=(_int("nm_size"),), **kind)[index]


def _value_type(expr) -> ast.Type:
    return ast.bool_ if isinstance(expr, sympy.logic.boolalg.Boolean) else ast.real


def _unclamp(expr):
    """``(inner, lo, hi)`` for ``expr = Min(Max(inner, lo), hi)`` and its variants (``lo``,
    ``hi`` numbers or ``None``)."""
    lo = hi = None
    while isinstance(expr, sympy.Max | sympy.Min) and len(expr.args) == 2:
        numbers = [a for a in expr.args if a.is_Number]
        if len(numbers) != 1:
            break
        other = next(a for a in expr.args if not a.is_Number)
        if isinstance(expr, sympy.Max) and lo is None:
            lo = numbers[0]
        elif isinstance(expr, sympy.Min) and hi is None:
            hi = numbers[0]
        else:
            break
        expr = other
    return expr, lo, hi


def _clamped(value: sympy.Symbol, lo, hi) -> sympy.Expr:
    """``value`` clamped to [lo, hi] as comparisons, so that NaN propagates (as in the other
    backends) where ``fmax``/``fmin`` would replace it by the bound."""
    pieces = []
    if lo is not None:
        pieces.append((lo, sympy.StrictLessThan(value, lo)))
    if hi is not None:
        pieces.append((hi, sympy.StrictGreaterThan(value, hi)))
    return sympy.Piecewise(*pieces, (value, True)) if pieces else value


def _assignments(pairs, prefix: str) -> list:
    """``const`` declarations of ``pairs`` ((symbol, expression)) after ``sympy.cse``; a state
    clamped to its bounds is declared unclamped first (``nm_raw_<name>``), then clamped."""
    if not pairs:
        return []
    unclamped = [_unclamp(e) for _, e in pairs]
    replacements, reduced = sympy.cse([inner for inner, _, _ in unclamped],
                                      symbols=sympy.numbered_symbols(prefix, real=True),
                                      order="none")
    statements = [_declare(t, e, _value_type(e)) for t, e in replacements]
    for (target, _), (_, lo, hi), e in zip(pairs, unclamped, reduced, strict=True):
        if lo is None and hi is None:
            statements.append(_declare(target, e))
        else:
            raw = _real(f"nm_raw_{target.name.removeprefix('nm_')}")
            statements.append(_declare(raw, e))
            statements.append(_declare(target, _clamped(raw, lo, hi)))
    return statements


def _prune(declarations: list, needed: set) -> list:
    """The declarations (straight-line code) that ``needed`` depends on, in order: a stage
    value that no slope reads (Kuramoto's drift ignores θ) is not computed."""
    needed = set(needed)
    kept = []
    for declaration in reversed(declarations):
        variable = declaration.variable
        if variable.symbol in needed:
            kept.append(declaration)
            needed |= sympy.sympify(variable.value).free_symbols
    return kept[::-1]


def _cse_values(expressions, prefix: str):
    """(declarations of the ``sympy.cse`` temporaries, reduced expressions)."""
    if not expressions:
        return [], []
    replacements, reduced = sympy.cse(list(expressions),
                                      symbols=sympy.numbered_symbols(prefix, real=True),
                                      order="none")
    return [_declare(t, e, _value_type(e)) for t, e in replacements], reduced


def philox_statements(counter, key, tag: str) -> tuple[list, tuple[sympy.Symbol, ...]]:
    """Philox4x32-10 of ``counter`` (4 unsigned expressions) under ``key`` (2): the statements
    and the symbols of the 4 output words.

    One round: ``(c0, c1, c2, c3) ← (hi(M1·c2) ^ c1 ^ k0, lo(M1·c2), hi(M0·c0) ^ c3 ^ k1,
    lo(M0·c0))`` then ``k += (W0, W1)``. The products are 32 × 32 → 64 bits: ``__umulhi``
    gives the high word and the wrapping ``unsigned int`` product the low word.
    """
    c = [_int(f"nm_{tag}_c{i}") for i in range(4)]
    k = [_int(f"nm_{tag}_k{i}") for i in range(2)]
    hi = [_int(f"nm_{tag}_hi{i}") for i in range(2)]
    lo = [_int(f"nm_{tag}_lo{i}") for i in range(2)]
    m0, m1, w0, w1 = (_int(f"nm_philox_{n}") for n in ("m0", "m1", "w0", "w1"))
    statements = [_declare(ci, vi, UINT, const=False) for ci, vi in zip(c, counter, strict=True)]
    statements += [_declare(ki, vi, UINT, const=False) for ki, vi in zip(k, key, strict=True)]
    statements += [_declare(s, None, UINT, const=False) for s in (*hi, *lo)]
    round_ = _int("nm_round")
    body = [
        ast.Assignment(hi[0], umulhi(m0, c[0])),
        ast.Assignment(lo[0], m0 * c[0]),
        ast.Assignment(hi[1], umulhi(m1, c[2])),
        ast.Assignment(lo[1], m1 * c[2]),
        ast.Assignment(c[0], bit_xor(hi[1], c[1], k[0])),
        ast.Assignment(c[2], bit_xor(hi[0], c[3], k[1])),
        ast.Assignment(c[1], lo[1]),
        ast.Assignment(c[3], lo[0]),
        ast.aug_assign(k[0], "+", w0),
        ast.aug_assign(k[1], "+", w1),
    ]
    statements.append(ast.For(round_, sympy.Range(0, PHILOX_ROUNDS), body))
    return statements, tuple(c)


def philox_constants() -> list:
    names = {"m0": PHILOX_M0, "m1": PHILOX_M1, "w0": PHILOX_W0, "w1": PHILOX_W1}
    return [_declare(_int(f"nm_philox_{n}"), sympy.Integer(v), UINT) for n, v in names.items()]


def normal_statements(words, count: int, tag: str, targets) -> list:
    """Box–Muller: the first ``count`` (≤ 4) standard normal samples from 4 random words,
    ``z0, z1 = √(-2 ln u0) (cos, sin)(2π u1)``, ``z2, z3`` likewise from ``u2, u3``, with
    ``u = (x + 1/2) 2⁻³²`` in the kernel's precision."""
    statements = []
    n_uniform = 2 if count <= 2 else 4
    uniforms = [_real(f"nm_{tag}_u{i}") for i in range(n_uniform)]
    for u, word in zip(uniforms, words, strict=False):
        as_real = _real(u.name.replace("_u", "_x"))
        statements.append(_declare(as_real, word))  # unsigned int → float/double
        statements.append(_declare(u, sympy.Mul(as_real + sympy.Float(0.5), sympy.Float(2.0**-32),
                                                evaluate=False)))
    for pair in range(n_uniform // 2):
        u_radius, u_angle = uniforms[2 * pair], uniforms[2 * pair + 1]
        radius = _real(f"nm_{tag}_radius{pair}")
        statements.append(_declare(radius, sympy.Pow(-2 * sympy.log(u_radius), sympy.S.Half,
                                                     evaluate=False)))
        angle = _real(f"nm_{tag}_angle{pair}")
        statements.append(_declare(angle, sympy.Float(2 * math.pi) * u_angle))
        for which, function in enumerate((sympy.cos, sympy.sin)):
            index = 2 * pair + which
            if index < count:
                statements.append(_declare(targets[index], radius * function(angle)))
    return statements


def _choose_placement(n_nodes: int, n_edges: int, n_speeds: int, itemsize: int,
                      placement: str) -> str:
    if placement not in ("auto", "constant", "global"):
        raise ParameterError(f"edges must be 'auto', 'constant' or 'global', but got "
                             f"{placement!r}")
    fits = n_speeds == 1 and 4 * (n_nodes + 1) + n_edges * (8 + itemsize) <= _CONSTANT_BUDGET
    if placement == "constant" and not fits:
        raise ParameterError("the edge list does not fit in __constant__ memory (or the speed "
                         "varies between sets); use edges='global'")
    if placement == "auto":
        return "constant" if fits else "global"
    return placement


class _K:
    """The kernel's own symbols (``nm_`` names, which the XML reader reserves for generated
    code): thread and set indices, strides, ring rows, the edge loop and the launch scalars."""

    p, n_sets, set_offset = _int("nm_p"), _int("nm_n_sets"), _int("nm_set_offset")
    seed_lo, seed_hi = _int("nm_seed_lo"), _int("nm_seed_hi")
    stride_p, stride_np = _int("nm_P"), _int("nm_NP")
    stride_history = _int("nm_history_row")
    node, edge = _int("nm_node"), _int("nm_edge")
    step, write_row = _int("nm_step"), _int("nm_write_row")
    edge_begin, edge_end, source, read_row = (_int(f"nm_{n}") for n in
                                               ("edge_begin", "edge_end", "source", "read_row"))
    speed = _int("nm_speed")
    weight = _real("nm_weight")
    where = node * stride_p + p  # (node, set) within one (N, P) plane


def _state_at(v: int) -> sympy.Indexed:
    return _load("nm_state", v * _K.stride_np + _K.where)


@dataclasses.dataclass(frozen=True)
class _Kernel:
    """What :func:`build_kernel` decides before printing: the plan's programs and sizes."""

    plan: RunPlan
    program: StepProgram  # not substituted: fixed values are declared as literals
    coupling: CouplingProgram  # the live rules (those the step reads with fixed values)
    history_variables: tuple[int, ...]  # state indices kept in the history
    exposures: tuple[sympy.Expr, ...]  # the exposures the kernel computes
    exposure_map: tuple[tuple[str, int], ...]
    placement: str
    length: int  # B
    several_speeds: bool
    used_names: frozenset  # every symbol the printed expressions read

    @property
    def n_state(self) -> int:
        return len(self.program.state)

    @property
    def n_hist(self) -> int:
        return len(self.history_variables)

    @property
    def n_edges(self) -> int:
        return int(self.plan.connectivity.edges()[0].size)

    @property
    def n_speeds(self) -> int:
        return int(len(self.plan.speeds))

    @property
    def stochastic(self) -> bool:
        return bool(self.program.noise)


def _analyse(plan: RunPlan, edges: str) -> _Kernel:
    """The live coupling and the history it needs, the exposures the kernel computes, the
    edge placement and the symbols the printed expressions read."""
    model = plan.model
    program = step_program(model, plan.integrator, plan.noise_std)
    coupling = coupling_program(model).prune(program.substitute(plan.fixed_substitutions))
    # an exposure that is a state variable is copied from the states by the host: the kernel
    # computes (and the device stores) only the others
    exposure_map, exposures = [], []
    for expression in model.exposure_expressions:
        if expression in program.state:
            exposure_map.append(("state", program.state.index(expression)))
        else:
            exposure_map.append(("kernel", len(exposures)))
            exposures.append(expression)
    printed = [e for _, e in sum(program.blocks, ())] + list(program.outputs) + exposures
    printed += [e for rule in coupling.rules for e in (rule.pre, rule.post)]
    n_edges = int(plan.connectivity.edges()[0].size)
    return _Kernel(
        plan=plan,
        program=program,
        coupling=coupling,
        history_variables=tuple(model.state_names.index(n) for n in coupling.history),
        exposures=tuple(exposures),
        exposure_map=tuple(exposure_map),
        placement=_choose_placement(plan.n_nodes, n_edges, len(plan.speeds),
                                    np.dtype(plan.dtype).itemsize, edges),
        length=history_length(plan.max_delay),
        several_speeds=len(plan.speeds) > 1 and bool(coupling.rules),
        used_names=frozenset().union(*(sympy.sympify(e).free_symbols for e in printed)),
    )


def _signature(kernel: _Kernel):
    """The kernel's parameters, their ``(name, role)`` and the file-scope ``__constant__``
    arrays with theirs. It reads the history and the edge list only with live coupling terms
    and the speed index only with several speeds."""
    arguments: list[tuple[str, str]] = []
    parameters: list = []

    def pointer(name, role, type_, *, const):
        attrs = {restrict, ast.value_const} if const else {restrict}
        parameters.append(ast.Pointer(name, type=type_, attrs=attrs))
        arguments.append((name, role))

    def scalar(symbol_, role, type_):
        parameters.append(ast.Variable(symbol_, type=type_, attrs={ast.value_const}))
        arguments.append((symbol_.name, role))

    pointer("nm_state", "state", ast.real, const=False)
    if kernel.n_hist:
        pointer("nm_history", "history", ast.real, const=False)
    for j, spec in enumerate(_monitor_specs(kernel)):
        pointer(f"nm_out{j}", f"out{j}", ast.real, const=False)
        if spec.n_planes:
            pointer(f"nm_monitor{j}", f"monitor{j}", ast.real, const=False)
        if spec.weights is not None:
            pointer(f"nm_weights{j}", f"weights{j}", ast.real, const=True)
    pointer("nm_first_nonfinite", "first_nonfinite", INT, const=False)
    if kernel.plan.swept:
        pointer("nm_parameters", "parameters", ast.real, const=True)
    if kernel.several_speeds:
        pointer("nm_speed_index", "speed_index", INT, const=True)
    n_nodes, n_edges = kernel.plan.n_nodes, kernel.n_edges
    edge_types = {"edge_start": INT, "edge_source": INT, "edge_weight": ast.real,
                  "edge_delay": INT}
    edge_sizes = {"edge_start": n_nodes + 1, "edge_source": n_edges, "edge_weight": n_edges,
                  "edge_delay": kernel.n_speeds * n_edges}
    file_scope, constants = [], []
    for role, type_ in edge_types.items() if kernel.coupling.rules else ():
        name = f"nm_{role}"
        if kernel.placement == "constant":
            file_scope.append(ArrayDeclaration(type_, name, max(1, edge_sizes[role]),
                                               [ast.Attribute("__constant__")]))
            constants.append((name, role))
        else:
            pointer(name, role, type_, const=True)
    scalar(_K.n_sets, "n_sets", INT)
    scalar(_K.set_offset, "set_offset", INT)
    scalar(_K.step, "step", INT)
    for j in range(len(kernel.plan.monitors)):
        scalar(_int(f"nm_row{j}"), f"row{j}", INT)
    if any(m.name == "bold" for m in kernel.plan.monitors):
        scalar(_int("nm_bin_slot"), "bin_slot", INT)
        scalar(_int("nm_newest_slot"), "newest_slot", INT)
    if kernel.stochastic:
        scalar(_K.seed_lo, "seed_lo", UINT)
        scalar(_K.seed_hi, "seed_hi", UINT)
    return parameters, arguments, file_scope, constants


def _coupling_statements(kernel: _Kernel, unroll: int | None) -> list:
    """Each live rule: its sum over the node's incoming edges (``pre`` per edge, the delayed
    values read from the history), then its ``post``, declared as ``c_pop<k>``."""
    coupling = kernel.coupling
    if not coupling.rules:
        return []
    statements: list = [ast.Comment("coupling: sum over the incoming edges, delays from the "
                                    "history")]
    sums = [_real(f"nm_sum_{rule.output.name}") for rule in coupling.rules]
    statements += [_declare(s, sympy.Integer(0), const=False) for s in sums]
    statements += [_declare(_K.edge_begin, _load("nm_edge_start", _K.node), INT),
                   _declare(_K.edge_end, _load("nm_edge_start", _K.node + 1), INT)]
    delay_index = _K.edge + (_K.speed * kernel.n_edges if kernel.several_speeds else 0)
    loop = [
        _declare(_K.source, _load("nm_edge_source", _K.edge), INT),
        _declare(_K.read_row, bit_and(_K.step - _load("nm_edge_delay", delay_index),
                                      kernel.length - 1), INT64),
    ]
    loaded = set()
    for rule in coupling.rules:
        for delayed, h in zip(rule.delayed, coupling.history_index(rule), strict=True):
            if delayed not in loaded:
                loop.append(_declare(delayed, _load(
                    "nm_history", _K.read_row * _K.stride_history + h * _K.stride_np
                    + _K.source * _K.stride_p + _K.p)))
                loaded.add(delayed)
    loop.append(_declare(_K.weight, _load("nm_edge_weight", _K.edge)))
    loop += [ast.aug_assign(total, "+", _K.weight * rule.pre)
             for rule, total in zip(coupling.rules, sums, strict=True)]
    if unroll:
        statements.append(Pragma(f"unroll {int(unroll)}"))
    statements.append(ast.For(_K.edge, sympy.Range(_K.edge_begin, _K.edge_end), loop))
    statements += [_declare(rule.output, rule.post.xreplace({rule.summed: total}))
                   for rule, total in zip(coupling.rules, sums, strict=True)]
    return statements


def _noise_statements(kernel: _Kernel) -> list:
    """The standard normal samples of the step: Philox4x32-10 of (step, node, set, v // 4)
    keyed by the seed, then Box–Muller."""
    if not kernel.stochastic:
        return []
    program, n_state = kernel.program, kernel.n_state
    statements: list = [ast.Comment("noise: Philox4x32-10 of (step, node, set, v / 4) keyed "
                                    "by the seed, Box-Muller")]
    for group in range(-(-n_state // 4)):
        count = min(4, n_state - 4 * group)
        tag = f"rng{group}"
        philox, words = philox_statements(
            (_K.step, _K.node, _K.set_offset + _K.p, sympy.Integer(group)),
            (_K.seed_lo, _K.seed_hi), tag)
        statements += philox
        statements += normal_statements(words, count, tag,
                                        program.noise[4 * group: 4 * group + count])
    return statements


def _step_statements(kernel: _Kernel) -> tuple[list, list[sympy.Symbol]]:
    """The blocks of the step program (each simplified on its own), pruned to what the new
    state needs; the new state written back and into the history. Also returns the symbols
    of the new state."""
    program = kernel.program
    statements: list = [ast.Comment(f"one {kernel.plan.integrator.name} step")]
    stepping = []
    for index, block in enumerate(program.blocks):
        stepping += _assignments(block, f"nm_t{index}_")
    next_state = [_real(f"nm_next_{s.name}") for s in program.state]
    stepping += _assignments(list(zip(next_state, program.outputs, strict=True)),
                             f"nm_t{len(program.blocks)}_")
    statements += _prune(stepping, set(next_state))
    statements += [ast.Assignment(_state_at(v), x) for v, x in enumerate(next_state)]
    first_nonfinite = _load("nm_first_nonfinite", _K.p)
    statements.append(If(sympy.And(sympy.Or(*(sympy.Eq(isfinite(x), 0) for x in next_state)),
                                   sympy.StrictLessThan(first_nonfinite, 0)),
                         [ast.Assignment(first_nonfinite, _K.step + 1)]))
    statements += [ast.Assignment(_load("nm_history", _K.write_row * _K.stride_history
                                        + h * _K.stride_np + _K.where), next_state[v])
                   for h, v in enumerate(kernel.history_variables)]
    return statements, next_state


@dataclasses.dataclass(frozen=True)
class MonitorSpec:
    """One monitor as the kernel records it and the host drives it.

    Attributes:
        name: the monitor's name; every: steps per sample.
        n_rows: rows per sample of its output ``nm_out<j>`` ((rows, N, P) per sample): the
            state variables then the kernel's exposures (raw, subsample, temporal average),
            or its variables (BOLD, Balloon).
        n_planes: (N, P) planes of its values kept across launches ``nm_monitor<j>``:
            running totals (temporal average); the 4-ms bin's sum then a ring of
            ``HRF_BINS`` bins, bin K in ring row K % HRF_BINS (BOLD); s, f, v, q per
            variable (Balloon); 0 when it keeps none.
        rest: the value of each of those planes at the start (Balloon: s = 0, f = v = q =
            1), or ``()`` for zeros.
        weights: (BOLD) the HRF lag weights, uploaded as ``nm_weights<j>``.
    """

    name: str
    every: int
    n_rows: int
    n_planes: int
    rest: tuple[float, ...] = ()
    weights: tuple[float, ...] | None = None


#: 4-ms bins in the BOLD ring (a 20-s kernel, tvb-library's Bold)
HRF_BINS = hd.kernel_time().size


def _monitor_specs(kernel: _Kernel) -> tuple[MonitorSpec, ...]:
    specs = []
    for m in kernel.plan.monitors:
        if m.name == "bold":
            specs.append(MonitorSpec(m.name, m.every, m.n_out, m.n_out * (1 + HRF_BINS),
                                     weights=tuple(float(w) for w in m.weights)))
        elif m.name == "balloon":
            specs.append(MonitorSpec(m.name, m.every, m.n_out, 4 * m.n_out,
                                     rest=(0.0, 1.0, 1.0, 1.0) * m.n_out))
        else:
            n_rows = kernel.n_state + len(kernel.exposures)
            specs.append(MonitorSpec(m.name, m.every, n_rows, n_rows if m.average else 0))
    return tuple(specs)


def _monitor_statements(kernel: _Kernel, next_state: list[sympy.Symbol]) -> list:
    """Every monitor's update with the new state (see :class:`MonitorSpec`). The host passes
    ``nm_row<j>``, the row of monitor j's chunk buffer that a sample due at this step goes to
    (-1 when none is due), and for BOLD ``nm_bin_slot`` (the ring row of the 4-ms bin that
    ends at this step, -1 when none does) and ``nm_newest_slot`` (the ring row of the newest
    finished bin)."""
    plan = kernel.plan
    to_next = dict(zip(kernel.program.state, next_state, strict=True))
    temporaries, exposure_values = _cse_values([e.xreplace(to_next) for e in kernel.exposures],
                                               "nm_exposure_t")
    record = list(next_state) + list(exposure_values)  # the rows of a plain monitor
    # the value of each model record index (state v, then exposure v - n_state)
    by_index = list(next_state) + [next_state[i] if kind == "state" else exposure_values[i]
                                   for kind, i in kernel.exposure_map]
    plane = _int("nm_plane64")
    statements: list = [ast.Comment("monitors"), *temporaries]
    for j, (m, spec) in enumerate(zip(plan.monitors, _monitor_specs(kernel), strict=True)):
        row = _int(f"nm_row{j}")
        out_row = _int(f"nm_out_row{j}")
        due = sympy.GreaterThan(row, 0)

        def out(r, j=j, out_row=out_row, n_rows=spec.n_rows):
            return _load(f"nm_out{j}", (out_row * n_rows + r) * plane + _K.where)

        def kept(r, j=j):
            return _load(f"nm_monitor{j}", r * plane + _K.where)

        statements.append(_declare(out_row, row, INT64))
        if m.name == "bold":
            interim, lag = _real(f"nm_bold{j}_total"), _int(f"nm_bold{j}_lag")
            weight = _load(f"nm_weights{j}", lag)
            body = [ast.Comment(f"BOLD every {m.every} steps: 4-ms bins ({m.per_bin} steps) in "
                                f"a ring of {HRF_BINS}, weighed with the HRF lag weights")]
            body.append(_declare(lag, None, INT, const=False))
            body.append(_declare(interim, None, const=False))
            bin_slot, newest = _int("nm_bin_slot"), _int("nm_newest_slot")
            for v, r in enumerate(m.variables):
                def ring(slot, v=v, n_var=m.n_out):
                    return kept((1 + slot) * n_var + v)

                body.append(ast.aug_assign(kept(v), "+", by_index[r]))
                body.append(If(sympy.GreaterThan(bin_slot, 0), [
                    ast.Assignment(ring(bin_slot), kept(v) / sympy.Integer(m.per_bin)),
                    ast.Assignment(kept(v), sympy.Float(0.0))]))
                weigh = [
                    ast.Assignment(interim, sympy.Float(0.0)),
                    # lag m reads bin K - m: rows newest - m, then (wrapped) newest - m + HRF_BINS
                    ast.For(lag, sympy.Range(0, newest + 1), [
                        ast.aug_assign(interim, "+", weight * ring(newest - lag))]),
                    ast.For(lag, sympy.Range(newest + 1, HRF_BINS), [
                        ast.aug_assign(interim, "+", weight * ring(newest - lag + HRF_BINS))]),
                    ast.Assignment(out(v), (interim - sympy.Float(m.offset))
                                   * sympy.Float(m.scale)),
                ]
                body.append(If(due, weigh))
            statements += body
        elif m.name == "balloon":
            c = m.constants
            body = [ast.Comment(f"Balloon-Windkessel ({c.source.split(':')[0]}), one Heun "
                                f"step of dt; BOLD every {m.every} steps")]
            for v, r in enumerate(m.variables):
                old = [_real(f"nm_balloon{j}_{v}_{n}") for n in "sfvq"]
                body += [_declare(u, kept(4 * v + i)) for i, u in enumerate(old)]
                new = hd.balloon_heun_step(tuple(old), by_index[r], m.dt_s, c)
                new_symbols = [_real(f"nm_balloon{j}_{v}_new_{n}") for n in "sfvq"]
                body += _assignments(list(zip(new_symbols, new, strict=True)),
                                     f"nm_balloon{j}_{v}_t")
                body += [ast.Assignment(kept(4 * v + i), u) for i, u in enumerate(new_symbols)]
                body.append(If(due, [ast.Assignment(
                    out(v), hd.balloon_bold(tuple(new_symbols), c))]))
            statements += body
        elif m.average:
            statements.append(ast.Comment(f"temporal average over {m.every} steps: running "
                                          "totals, divided when a window ends"))
            statements += [ast.aug_assign(kept(r), "+", x) for r, x in enumerate(record)]
            statements.append(If(due, [
                *[ast.Assignment(out(r), kept(r) / sympy.Integer(m.every))
                  for r in range(len(record))],
                *[ast.Assignment(kept(r), sympy.Float(0.0)) for r in range(len(record))]]))
        else:
            statements.append(ast.Comment(f"{m.name}: the state at the sample's last step"))
            statements.append(If(due, [ast.Assignment(out(r), x)
                                       for r, x in enumerate(record)]))
    return statements


def _thread_statements(kernel: _Kernel) -> list:
    """What a thread declares before its node's step: strides, ring rows, literals, swept
    parameters, the speed index, Philox constants and loop counters."""
    plan, used_names = kernel.plan, kernel.used_names
    n_hist = kernel.n_hist
    statements: list = [
        _declare(_K.stride_p, _K.n_sets, INT),
        _declare(_K.stride_np, plan.n_nodes * _K.stride_p, INT),
        *([_declare(_K.stride_history, n_hist * _K.stride_np, INT)] if n_hist else []),
        _declare(_int("nm_plane64"), _K.stride_np, INT64),
    ]
    if n_hist:
        statements.append(_declare(_K.write_row, bit_and(_K.step + 1, kernel.length - 1), INT64))
    # parameters that are the same in every set, dt and n_node: literals. Declared rather than
    # substituted, so that SymPy does not refold the expressions around the numbers (which
    # would separate, e.g., the two occurrences of x in x / (1 - exp(-d x)) and lose accuracy)
    statements += [_declare(s_, v) for s_, v in plan.fixed_substitutions.items()
                   if s_ in used_names]
    statements += [_declare(c, sympy.Float(0.0)) for c in kernel.coupling.dead
                   if c in used_names]
    for row, name in enumerate(plan.swept):
        if symbol(name) in used_names:
            statements.append(_declare(symbol(name),
                                       _load("nm_parameters", row * _K.stride_p + _K.p)))
    if kernel.several_speeds:
        statements.append(_declare(_K.speed, _load("nm_speed_index", _K.p), INT))
    if kernel.stochastic:
        statements += philox_constants()
    counters = ([_K.edge] if kernel.coupling.rules else []) + \
        ([_int("nm_round")] if kernel.stochastic else [])
    statements += [_declare(c, None, INT, const=False) for c in counters]
    return statements


def _source(kernel: _Kernel, parameters: list, file_scope: list, thread: list) -> str:
    """The printed translation unit: a header comment, the ``__constant__`` arrays, the
    kernel (one thread per parameter set and node)."""
    plan = kernel.plan
    dtype = np.dtype(plan.dtype)
    printer = CUDACodePrinter("float32" if dtype == np.float32 else "float64")
    block_index, block_size, thread_index, node_index = (
        sympy.Symbol(n, integer=True) for n in ("blockIdx.x", "blockDim.x", "threadIdx.x",
                                                "blockIdx.y"))
    body = [
        ast.Comment("one thread per parameter set and node; one launch per step"),
        _declare(_K.p, block_index * block_size + thread_index, INT),
        _declare(_K.node, node_index, INT),
        If(sympy.StrictLessThan(_K.p, _K.n_sets), thread),
    ]
    function = ast.FunctionDefinition(
        ast.Type("void"), KERNEL_NAME, parameters, body,
        attrs=[ast.Attribute('extern "C"'), ast.Attribute("__global__")],
    )
    header = [
        ast.Comment(f"neuralmass CUDA kernel: model {plan.model.name!r}, {plan.integrator.name}"
                    f"{' (stochastic)' if kernel.stochastic else ''}, {dtype.name}, "
                    f"dt = {plan.dt!r} ms, {plan.n_nodes} nodes, {kernel.n_edges} edges, "
                    f"history {kernel.length} x {kernel.n_hist}, "
                    "monitors " + ", ".join(f"{m.name} every {m.every} steps"
                                            for m in plan.monitors)),
        ast.Comment("swept per set: " + (", ".join(plan.swept) if plan.swept else "none")
                    + f"; edges in {kernel.placement} memory"),
    ]
    pieces = [printer.doprint(ast.CodeBlock(*header))]
    pieces += [printer.doprint(ast.CodeBlock(d)) for d in file_scope]
    pieces.append(printer.doprint(function))
    return "\n".join(pieces) + "\n"


def build_kernel(plan: RunPlan, *, edges: str = "auto", unroll: int | None = None) -> KernelSpec:
    """Print the kernel that runs ``plan`` (see the module docstring).

    ``edges``: ``"constant"``, ``"global"`` or ``"auto"`` (constant memory when it fits and
    all sets share one speed). ``unroll``: a ``#pragma unroll`` factor for the loop over a
    node's edges (more loads in flight per thread); ``None`` leaves it to the compiler.
    """
    kernel = _analyse(plan, edges)
    parameters, arguments, file_scope, constants = _signature(kernel)
    per_node: list = [ast.Comment("the state of this node at t = step * dt")]
    per_node += [_declare(s, _state_at(v)) for v, s in enumerate(kernel.program.state)]
    per_node += _coupling_statements(kernel, unroll)
    per_node += _noise_statements(kernel)
    stepping, next_state = _step_statements(kernel)
    per_node += stepping
    per_node += _monitor_statements(kernel, next_state)
    source = _source(kernel, parameters, file_scope, _thread_statements(kernel) + per_node)
    return KernelSpec(
        source=source,
        digest=hashlib.sha256(source.encode()).hexdigest(),
        arguments=tuple(arguments),
        constants=tuple(constants),
        dtype=np.dtype(plan.dtype).type,
        history_length=kernel.length,
        history_variables=kernel.history_variables,
        swept=plan.swept,
        monitors=_monitor_specs(kernel),
        n_state=kernel.n_state,
        n_exposure=len(kernel.exposures),
        exposure_map=kernel.exposure_map,
        n_nodes=plan.n_nodes,
        n_edges=kernel.n_edges,
        n_speeds=kernel.n_speeds if kernel.several_speeds else 1,
    )
