"""Print SymPy assignments as the source of one Python function (shared by the JAX and Numba
lowerings; each passes its own SymPy printer: ``JaxPrinter`` or ``PythonCodePrinter``).

The printed function is straight-line code: per block, ``sympy.cse`` temporaries, then the
block's assignments, then ``return (outputs...)``. Floats print with 17 significant digits
(``repr``), so values survive the round trip exactly. Symbol names are the model's
identifiers, renamed where they would shadow a Python keyword or a name the code uses.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Sequence

import sympy
from sympy.printing.numpy import JaxPrinter
from sympy.printing.pycode import PythonCodePrinter

__all__ = ["function_source", "JaxSourcePrinter", "MathSourcePrinter"]

_TAKEN = set(keyword.kwlist) | set(dir(builtins)) | {"math", "jax", "numpy", "functools"}


def safe_name(name: str) -> str:
    """A Python identifier for a model symbol that shadows nothing the generated code uses."""
    return name + "_" if name in _TAKEN else name


class _ExactFloats:
    def _print_Float(self, expr: sympy.Float) -> str:
        return repr(float(expr))

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return safe_name(expr.name)


class JaxSourcePrinter(_ExactFloats, JaxPrinter):
    """SymPy → ``jax.numpy`` source; ``erf``/``erfc`` from ``jax.scipy.special`` (SymPy's
    JaxPrinter prints them as ``math.erf``, which takes no arrays)."""

    def _print_erf(self, expr: sympy.Expr) -> str:
        return f"jax.scipy.special.erf({self._print(expr.args[0])})"

    def _print_erfc(self, expr: sympy.Expr) -> str:
        return f"jax.scipy.special.erfc({self._print(expr.args[0])})"


class MathSourcePrinter(_ExactFloats, PythonCodePrinter):
    """SymPy → scalar Python source using ``math`` (compiles under Numba)."""


def function_source(
    name: str,
    arguments: Sequence[sympy.Symbol],
    blocks: Sequence[Sequence[tuple[sympy.Symbol, sympy.Expr]]],
    outputs: Sequence[sympy.Expr],
    printer: PythonCodePrinter,
) -> str:
    """The source of ``def name(*arguments): ...; return (*outputs,)``.

    ``blocks`` are evaluated in order; each is simplified with ``sympy.cse`` on its own (an
    expression may only use arguments and symbols of earlier blocks).
    """
    lines = [f"def {name}({', '.join(printer.doprint(a) for a in arguments)}):"]
    counter = 0
    for block in [*blocks, [(None, e) for e in outputs]]:
        temporaries = sympy.numbered_symbols(f"nm_t{counter}_")
        counter += 1
        replacements, reduced = sympy.cse([expr for _, expr in block], symbols=temporaries,
                                          order="none")
        for temporary, expr in replacements:
            lines.append(f"    {printer.doprint(temporary)} = {printer.doprint(expr)}")
        if block and block[0][0] is None:
            returned = ", ".join(printer.doprint(e) for e in reduced)
            lines.append(f"    return ({returned}{',' if len(reduced) == 1 else ''})")
        else:
            for (target, _), expr in zip(block, reduced, strict=True):
                lines.append(f"    {printer.doprint(target)} = {printer.doprint(expr)}")
    return "\n".join(lines) + "\n"
