"""Lower the model IR, the step program and the coupling program to ``jax.numpy`` functions.

Every function is printed from SymPy by :class:`JaxSourcePrinter` and works elementwise, so it
applies to one node or to arrays of nodes or edges alike.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.scipy.special  # noqa: F401 - the printed source calls jax.scipy.special.erf(c)
import sympy

from ...model import Model, symbol
from ...scheme import Integrator, coupling_program, step_program
from .._python_source import JaxSourcePrinter, function_source

__all__ = ["LoweredModel", "lower"]


@dataclasses.dataclass(frozen=True)
class LoweredCoupling:
    """A :class:`~neuralmass.scheme.CouplingRule` lowered: ``pre(*local_states, *delayed,
    *params)`` per edge; ``post(summed, *params)`` per node, scale included. ``local`` are the
    indices of the state variables ``pre`` reads at the target node; ``history_index`` where
    each delayed source variable sits in the history (``model.coupled_variables``)."""

    pre: Callable
    post: Callable
    local: tuple[int, ...]
    history_index: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LoweredModel:
    step: Callable  # (*state, *coupling, *noise, *params) -> tuple of next state
    couplings: tuple[LoweredCoupling, ...]
    exposures: Callable  # (*state, *params) -> tuple of exposures
    sources: dict[str, str]  # printed source of each function, for `neuralmass codegen`
    n_stages: int  # the integrator's stages (for the memory estimate)


def _compile(name: str, source: str) -> Callable:
    namespace = {"jax": jax, "functools": functools, "math": math}
    # The source is printed by SymPy from the whitelisted expression graph; model names are
    # validated identifiers, so nothing from the XML is executed.
    exec(compile(source, f"<neuralmass-jax {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


@functools.lru_cache(maxsize=64)
def lower(
    model: Model,
    integrator: Integrator,
    noise_std: tuple[sympy.Expr, ...] | None,
    dt: float,
    n_node: int,
) -> LoweredModel:
    """JAX functions for ``model`` with ``dt`` and ``n_node`` substituted (cached)."""
    printer = JaxSourcePrinter()
    fixed = {symbol("dt"): sympy.Float(dt), symbol("n_node"): sympy.Integer(n_node)}
    params = model.parameter_symbols
    sources = {}

    program = step_program(model, integrator, noise_std).substitute(fixed)
    arguments = [*program.state, *program.coupling, *program.noise, *params]
    sources["step"] = function_source("step", arguments, program.blocks, program.outputs,
                                      printer)
    step = _compile("step", sources["step"])

    coupling = coupling_program(model).substitute(fixed)
    couplings = []
    for rule in coupling.rules:
        pre_name, post_name = f"pre_{rule.output.name}", f"post_{rule.output.name}"
        sources[pre_name] = function_source(pre_name, [*rule.local, *rule.delayed, *params], [],
                                            [rule.pre], printer)
        sources[post_name] = function_source(post_name, [rule.summed, *params], [], [rule.post],
                                             printer)
        couplings.append(LoweredCoupling(
            pre=_compile(pre_name, sources[pre_name]),
            post=_compile(post_name, sources[post_name]),
            local=tuple(model.state_symbols.index(s) for s in rule.local),
            history_index=coupling.history_index(rule),
        ))

    exposures = [e.xreplace(fixed) for e in model.exposure_expressions]
    sources["exposures"] = function_source("exposures", [*model.state_symbols, *params], [],
                                           exposures, printer)
    return LoweredModel(step, tuple(couplings), _compile("exposures", sources["exposures"]),
                        sources, integrator.n_stages)
