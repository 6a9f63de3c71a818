"""Expression strings of a model → SymPy, through a whitelist of Python AST nodes.

Nothing is evaluated: the text is parsed with :func:`ast.parse` and every node is turned into
a SymPy object by hand. Names must be declared (or be one of the few implicit ones), calls must
name a known function, and attribute access, subscripts, lambdas, comprehensions, strings and
everything else Python allows are rejected. ``sympify``/``parse_expr`` are never used: they
execute injected code and read model names such as ``beta``, ``I`` or ``E`` as SymPy objects.

The accepted language is RateML's: ``+ - * / ** ^``, ``{a^b}`` for powers, comparisons,
``and``/``or``/``not``, the LEMS operators ``.gt. .lt. .geq. .leq. .eq. .neq. .and. .or.``,
C literals such as ``1.0f``, ``pi`` and ``inf``, ``a if c else b``, and the functions listed
in :data:`FUNCTIONS` (``expf``-style C spellings are accepted too).

Constant sub-expressions are evaluated in float64, as a backend would, and exact coefficients
are kept small: a short hostile input such as ``9**9**9**9`` is an overflow error at once
rather than a gigantic exact integer.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import warnings
from collections.abc import Callable, Mapping

import sympy

from ..errors import ExpressionError

__all__ = ["FUNCTIONS", "parse_expression"]

_MAX_LENGTH = 10_000
# Integer literals stay exact (so x**2 prints as x*x) only when small; anything else is a
# Float, so that an expression like 9**9**9 cannot make SymPy compute a gigantic integer.
_MAX_EXACT_INTEGER = 64
# Exact results of integer arithmetic are kept up to this size, then become Floats: SymPy
# multiplies exact coefficients without bound ((64*x)**64, x*64*64*...*64).
_MAX_EXACT_RESULT = 2**53
_MAX_ECHO = 120  # characters of an expression echoed in a message


def _heaviside(x: sympy.Expr, at_zero: sympy.Expr = sympy.Float(0.5)) -> sympy.Expr:
    # Written as a Piecewise of Floats: every backend prints it, and Numba needs the branch
    # values to share one type (see codegen notes).
    if at_zero.is_number:
        at_zero = sympy.Float(at_zero)  # heaviside(x, p) with a parameter p is fine too
    return sympy.Piecewise(
        (sympy.Float(0.0), x < 0), (at_zero, sympy.Eq(x, 0)), (sympy.Float(1.0), True)
    )


def _as_written(function: type[sympy.Function]) -> type[sympy.Function]:
    """``function`` kept as the model writes it: SymPy never rewrites it (its own ``erfc(-x)``
    becomes ``2 - erfc(x)`` and ``acos(-x)`` becomes ``pi - acos(x)``, which lose every digit
    where the value is tiny); of Float arguments SymPy still evaluates it, numerically. A
    subclass with the same name, so every printer and ``lambdify`` print the function itself."""

    @classmethod
    def eval(cls, *args):
        return None

    return type(function.__name__, (function,), {"eval": eval, "__module__": __name__})


def _unsimplified(lattice: type[sympy.Max] | type[sympy.Min]) -> type[sympy.Expr]:
    """``Max``/``Min`` of the arguments as written: SymPy's own simplifies its arguments every
    time it is built (``factor_terms``, and a search for arguments that cannot win, which
    compares them pairwise), and every substitution builds it anew; planning
    EpileptorCodim3SlowMod, whose ``max(D, 0.0)`` has a long ``D``, took minutes. Of numbers
    only, it is SymPy's (so a substitution of numbers gives a number). A subclass with the
    same name, so that every printer (JAX, Numba, CUDA C, ``lambdify``), ``isinstance`` check
    and derivative treats it as SymPy's: each backend prints the same NaN-propagating
    max/min as before."""

    def __new__(cls, *args, **options):
        args = tuple(sympy.sympify(arg) for arg in args)
        if len(args) == 1:
            return args[0]
        if all(arg.is_number for arg in args):
            return lattice(*args)
        built = sympy.Expr.__new__(cls, *args)
        built._argset = frozenset(args)
        return built

    return type(lattice.__name__, (lattice,), {"__new__": __new__, "__module__": __name__})


# module attributes named as the classes, so that models holding them pickle (Dask, L2L)
Max, Min = _unsimplified(sympy.Max), _unsimplified(sympy.Min)
erf, erfc = _as_written(sympy.erf), _as_written(sympy.erfc)
asin, acos = _as_written(sympy.asin), _as_written(sympy.acos)
atan, atan2 = _as_written(sympy.atan), _as_written(sympy.atan2)

FUNCTIONS: dict[str, tuple[Callable[..., sympy.Expr], tuple[int, ...]]] = {
    "exp": (sympy.exp, (1,)),
    "log": (sympy.log, (1,)),
    "sqrt": (sympy.sqrt, (1,)),
    "sin": (sympy.sin, (1,)),
    "cos": (sympy.cos, (1,)),
    "tan": (sympy.tan, (1,)),
    "sinh": (sympy.sinh, (1,)),
    "cosh": (sympy.cosh, (1,)),
    "tanh": (sympy.tanh, (1,)),
    "asin": (asin, (1,)),
    "acos": (acos, (1,)),
    "atan": (atan, (1,)),
    "atan2": (atan2, (2,)),
    "erf": (erf, (1,)),
    "erfc": (erfc, (1,)),
    "abs": (sympy.Abs, (1,)),
    "fabs": (sympy.Abs, (1,)),
    "ceil": (sympy.ceiling, (1,)),
    "floor": (sympy.floor, (1,)),
    "pow": (lambda a, b: a**b, (2,)),
    "min": (Min, (2, 3, 4, 5, 6)),
    "max": (Max, (2, 3, 4, 5, 6)),
    "fmin": (Min, (2,)),
    "fmax": (Max, (2,)),
    "heaviside": (_heaviside, (1, 2)),
}
# Constant sub-expressions are evaluated in float64, as a backend would: SymPy's exact
# arithmetic would build gigantic numbers from a short input (pow(9, pow(9, pow(9, 9)))).
_FLOAT_FUNCTIONS: dict[str, Callable[..., float]] = {
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "erf": math.erf,
    "erfc": math.erfc,
    "abs": abs,
    "fabs": abs,
    "ceil": lambda v: float(math.ceil(v)) if math.isfinite(v) else v,
    "floor": lambda v: float(math.floor(v)) if math.isfinite(v) else v,
    "pow": math.pow,
    "min": min,
    "max": max,
    "fmin": min,
    "fmax": max,
}
# C single-precision spellings (expf, powf, ...) mean the same function.
_C_ALIASES = {name + "f": name for name in FUNCTIONS if name not in ("abs", "heaviside")}

_NAMED_CONSTANTS = {"pi": sympy.pi, "inf": sympy.oo, "M_PI": sympy.pi, "M_PI_F": sympy.pi}

_LEMS_OPERATORS = {
    ".gt.": " > ",
    ".lt.": " < ",
    ".geq.": " >= ",
    ".leq.": " <= ",
    ".eq.": " == ",
    ".neq.": " != ",
    ".ne.": " != ",
    ".and.": " and ",
    ".or.": " or ",
}
_LEMS_OPERATOR_RE = re.compile(
    "|".join(re.escape(op) for op in sorted(_LEMS_OPERATORS, key=len, reverse=True)), re.I
)
# 1.0f, .5f, 2f, 1e-3f — but not identifiers such as x1f or 0x1f.
_C_FLOAT_RE = re.compile(r"(?<![\w.])((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[fF](?!\w)")

_SUM = (ast.Add, ast.Sub)
_PRODUCT = (ast.Mult, ast.Div)
_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_FLOAT_OPERATORS: dict[type, tuple[str, Callable[[float, float], float]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", lambda a, b: a / b),
    ast.Pow: ("**", math.pow),
}
_COMPARE = {
    ast.Lt: sympy.Lt,
    ast.LtE: sympy.Le,
    ast.Gt: sympy.Gt,
    ast.GtE: sympy.Ge,
    ast.Eq: sympy.Eq,
    ast.NotEq: sympy.Ne,
}
_FORBIDDEN_HINTS = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.Starred: "starred arguments are not allowed",
    ast.NamedExpr: "assignment expressions are not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}
_OPERATOR_HINTS = {
    ast.BitXor: "use ** (or {a^b}) for powers",
    ast.BitAnd: "use 'and' for a logical and",
    ast.BitOr: "use 'or' for a logical or",
    ast.Mod: "the modulo operator % is not supported",
    ast.FloorDiv: "use floor(a / b) instead of //",
    ast.MatMult: "matrix products are not supported",
    ast.LShift: "bit shifts are not supported",
    ast.RShift: "bit shifts are not supported",
    ast.Invert: "bitwise not (~) is not supported; use 'not'",
}


def _is_condition(value: sympy.Basic) -> bool:
    # A Symbol is also a SymPy Boolean; conditions are relations, logic and true/false.
    return isinstance(value, sympy.core.relational.Relational | sympy.logic.boolalg.BooleanFunction
                      | sympy.logic.boolalg.BooleanAtom)


def _echo(text: str) -> str:
    """``text`` quoted for a message, shortened in the middle when long."""
    if len(text) > _MAX_ECHO:
        text = text[: _MAX_ECHO - 30] + " ... " + text[-25:]
    return repr(text)


def _real_value(value: sympy.Basic) -> float | None:
    """The float value of a real constant (``2``, ``pi/2``, ``inf``), else ``None``."""
    if not isinstance(value, sympy.Expr) or not value.is_number:
        return None
    try:
        return float(value)
    except TypeError:  # complex
        return None


def _too_big(number: sympy.Rational) -> bool:
    return abs(number.p) > _MAX_EXACT_RESULT or number.q > _MAX_EXACT_RESULT


def _cap_exact(expr: sympy.Basic) -> sympy.Basic:
    """Turn exact coefficients beyond ``_MAX_EXACT_RESULT`` into Floats, so that repeated
    products and powers cannot grow them without bound."""
    if isinstance(expr, sympy.Rational):
        return sympy.Float(expr, 15) if _too_big(expr) else expr
    if isinstance(expr, sympy.Mul):
        coefficient, rest = expr.as_coeff_Mul()
        if isinstance(coefficient, sympy.Rational) and _too_big(coefficient):
            return sympy.Float(coefficient, 15) * rest
        return expr
    if isinstance(expr, sympy.Add):
        terms = [_cap_exact(term) for term in expr.args]
        if any(new is not old for new, old in zip(terms, expr.args, strict=True)):
            return sympy.Add(*terms)
    return expr


def _some(names: list[str], most: int = 30) -> str:
    """``names`` for a message, the first ``most`` of them when there are many."""
    if not names:
        return "none"
    more = f", ... ({len(names) - most} more)" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _format(value: float) -> str:
    return f"({value:g})" if value < 0 else f"{value:g}"


def preprocess(text: str) -> str:
    """Rewrite RateML/LEMS/C spellings into the Python expression syntax parsed here."""
    text = _LEMS_OPERATOR_RE.sub(lambda m: _LEMS_OPERATORS[m.group(0).lower()], text)
    text = text.replace("&&", " and ").replace("||", " or ")
    text = text.replace("{", "(").replace("}", ")").replace("^", "**")
    return _C_FLOAT_RE.sub(r"\1", text)


def parse_expression(
    text: str,
    symbols: Mapping[str, sympy.Symbol],
    *,
    where: str,
    boolean: bool = False,
    unavailable: Mapping[str, str] | None = None,
) -> sympy.Basic:
    """Parse one expression string into SymPy.

    Args:
        text: the expression as written in the model (RateML/LEMS syntax).
        symbols: every name the expression may use, mapped to its SymPy symbol.
        where: the location for error messages, e.g. ``"model.xml:14: TimeDerivative 'dV'"``.
        boolean: parse a condition; a bare number or name ``c`` means ``c != 0``.
        unavailable: names that exist elsewhere but may not be used here, each with the
            reason, e.g. ``{"V": "is the StateVariable on line 9, which cannot be used here"}``.

    Returns:
        A SymPy expression (or a SymPy boolean when ``boolean``).

    Raises:
        ExpressionError: naming ``where``, the text, and what is wrong.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(f"{where}: empty expression")
    if len(text) > _MAX_LENGTH:
        raise ExpressionError(f"{where}: expression longer than {_MAX_LENGTH} characters")
    source = preprocess(text).strip()
    try:
        with warnings.catch_warnings():  # e.g. "invalid decimal literal" for '1if'
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        column = f" at column {err.offset}" if err.offset else ""
        raise ExpressionError(
            f"{where}: syntax error{column} in {_echo(text)}: {err.msg}"
        ) from None
    except (ValueError, MemoryError, RecursionError) as err:
        raise ExpressionError(f"{where}: cannot parse {_echo(text)}: {err}") from None
    builder = _Builder(text, symbols, where, {} if unavailable is None else unavailable)
    try:
        result = builder.build(tree.body)
    except RecursionError:
        raise ExpressionError(
            f"{where}: expression {_echo(text)} is nested too deeply"
        ) from None
    except ExpressionError:
        raise
    except (TypeError, ValueError, ArithmeticError, AttributeError) as err:
        raise ExpressionError(f"{where}: invalid expression {_echo(text)}: {err}") from err
    if result.has(sympy.I, sympy.zoo, sympy.nan):
        raise ExpressionError(
            f"{where}: {_echo(text)} evaluates to a complex or undefined number"
        )
    if boolean:
        if not _is_condition(result):
            result = sympy.Ne(result, 0)
    elif _is_condition(result):
        result = sympy.Piecewise((sympy.Float(1.0), result), (sympy.Float(0.0), True))
    return result


class _Builder:
    def __init__(self, text: str, symbols: Mapping[str, sympy.Symbol], where: str,
                 unavailable: Mapping[str, str]):
        self.text = text
        self.symbols = symbols
        self.where = where
        self.unavailable = unavailable

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"{self.where}: {message} in {_echo(self.text)}")

    def build(self, node: ast.AST) -> sympy.Basic:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            hint = _FORBIDDEN_HINTS.get(type(node))
            if hint is None:
                hint = _OPERATOR_HINTS.get(type(getattr(node, "op", None)))
            raise self.fail(hint or f"{type(node).__name__} is not allowed in an expression")
        return method(node)

    def number(self, node: ast.AST) -> sympy.Expr:
        value = self.build(node)
        if _is_condition(value):
            raise self.fail("a condition cannot be used as a number")
        return value

    def fold(self, description: str, function: Callable[..., float], *values: float):
        """Evaluate a constant sub-expression in float64, as a backend would."""
        try:
            result = float(function(*values))
        except ZeroDivisionError:
            raise self.fail(f"division by zero ({description})") from None
        except OverflowError:
            raise self.fail(f"{description} overflows a 64-bit float") from None
        except ValueError:
            raise self.fail(f"{description} is not a real number") from None
        if math.isnan(result):
            raise self.fail(f"{description} is not a number (NaN)")
        if math.isinf(result) and all(math.isfinite(v) for v in values):
            raise self.fail(f"{description} overflows a 64-bit float")
        return sympy.Float(result)

    def _Constant(self, node: ast.Constant) -> sympy.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"literal {value!r} is not a number")
        if isinstance(value, int) and abs(value) <= _MAX_EXACT_INTEGER:
            return sympy.Integer(value)
        try:
            return sympy.Float(float(value))  # 1e999 is inf, and Float(inf) is oo
        except OverflowError:
            raise self.fail(f"integer literal {_echo(str(value))} overflows a 64-bit float") \
                from None

    def _Name(self, node: ast.Name) -> sympy.Basic:
        name = node.id
        if name in self.symbols:
            return self.symbols[name]
        if name in _NAMED_CONSTANTS:
            return _NAMED_CONSTANTS[name]
        if name in self.unavailable:
            raise self.fail(f"{name!r} {self.unavailable[name]}")
        close = difflib.get_close_matches(name, list(self.symbols), n=1)
        hint = (f"; did you mean {close[0]!r}?" if close
                else f" (known: {_some(sorted(self.symbols))})")
        raise ExpressionError(
            f"{self.where}: unknown symbol {name!r} in {_echo(self.text)}{hint}"
        )

    def _BinOp(self, node: ast.BinOp) -> sympy.Expr:
        if isinstance(node.op, ast.Pow):  # right-associative
            return self.binary(node.op, self.number(node.left), self.number(node.right))
        # a + b - c * d ... is a left-deep tree: walk it in a loop rather than by recursion,
        # so that long sums do not exhaust the recursion limit.
        chain = []
        while isinstance(node, ast.BinOp) and not isinstance(node.op, ast.Pow):
            chain.append(node)
            node = node.left
        links = chain[::-1]
        value = self.number(node)
        start = 0
        while start < len(links):
            group = next((g for g in (_SUM, _PRODUCT) if isinstance(links[start].op, g)), None)
            if group is None:  # an operator binary() rejects with a hint
                return self.binary(links[start].op, value, self.number(links[start].right))
            end = start
            while end < len(links) and isinstance(links[end].op, group):
                end += 1
            value = self.combine(group, value, links[start:end])
            start = end
        return value

    def combine(self, group: tuple[type, type], first: sympy.Expr,
                links: list[ast.BinOp]) -> sympy.Expr:
        """``first`` followed by a run of ``+``/``-`` (or ``*``/``/``) links, as one
        ``sympy.Add`` (or ``sympy.Mul``): built pairwise, SymPy re-flattens the whole sum at
        every link, which made a 10,000-character sum take seconds (issue 8, section 7).
        Numbers are folded with :meth:`binary`, in order, as they would be pairwise."""
        plus, minus = group  # Add, Sub or Mult, Div
        constant: sympy.Expr | None = None
        terms: list[sympy.Expr] = []
        for op, operand in [(plus(), first)] + [(link.op, self.number(link.right))
                                                 for link in links]:
            if _real_value(operand) is None:
                if isinstance(op, minus):
                    operand = -operand if plus is ast.Add else 1 / operand
                terms.append(operand)
            elif constant is not None:
                constant = self.binary(op, constant, operand)
            elif isinstance(op, minus):
                if plus is ast.Mult and operand == 0:
                    raise self.fail("division by zero")
                constant = self.binary(op, sympy.Integer(0 if plus is ast.Add else 1), operand)
            else:
                constant = operand
        if constant is not None:
            terms.append(constant)
        return _cap_exact(sympy.Add(*terms) if plus is ast.Add else sympy.Mul(*terms))

    def binary(self, op: ast.operator, left: sympy.Expr, right: sympy.Expr) -> sympy.Expr:
        kind = type(op)
        if kind not in _BINARY:
            raise self.fail(_OPERATOR_HINTS.get(kind, "unsupported operator"))
        a, b = _real_value(left), _real_value(right)
        if a is not None and b is not None:
            exact = isinstance(left, sympy.Integer) and isinstance(right, sympy.Integer)
            if exact and kind in (ast.Add, ast.Sub, ast.Mult):
                result = _BINARY[kind](left, right)
                if abs(result) <= _MAX_EXACT_RESULT:
                    return result
            if exact and kind is ast.Div and right != 0:
                return sympy.Rational(left, right)
            symbol, function = _FLOAT_OPERATORS[kind]
            return self.fold(f"{_format(a)} {symbol} {_format(b)}", function, a, b)
        if kind is ast.Div and b == 0:
            raise self.fail("division by zero")
        if kind is ast.Pow:
            if isinstance(left, sympy.Rational):
                left = sympy.Float(left)  # 2**x
            if b is not None and not (isinstance(right, sympy.Rational)
                                      and abs(right.p) <= _MAX_EXACT_INTEGER
                                      and right.q <= _MAX_EXACT_INTEGER):
                right = sympy.Float(b)  # x**2 stays exact, x**1e6 does not
        return _cap_exact(_BINARY[kind](left, right))

    def _UnaryOp(self, node: ast.UnaryOp) -> sympy.Basic:
        if isinstance(node.op, ast.Not):
            operand = self.build(node.operand)
            if not _is_condition(operand):
                operand = sympy.Ne(operand, 0)
            return sympy.Not(operand)
        if isinstance(node.op, ast.USub):
            return -self.number(node.operand)
        if isinstance(node.op, ast.UAdd):
            return self.number(node.operand)
        raise self.fail(_OPERATOR_HINTS.get(type(node.op), "unsupported unary operator"))

    def _Compare(self, node: ast.Compare) -> sympy.Basic:
        operands = [self.number(node.left)] + [self.number(c) for c in node.comparators]
        parts = []
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            relation = _COMPARE.get(type(op))
            if relation is None:
                raise self.fail(f"comparison {type(op).__name__} is not supported")
            parts.append(relation(left, right))
        return sympy.And(*parts)

    def _BoolOp(self, node: ast.BoolOp) -> sympy.Basic:
        values = []
        for value in node.values:
            built = self.build(value)
            if not _is_condition(built):
                built = sympy.Ne(built, 0)
            values.append(built)
        return sympy.And(*values) if isinstance(node.op, ast.And) else sympy.Or(*values)

    def _IfExp(self, node: ast.IfExp) -> sympy.Expr:
        condition = self.build(node.test)
        if not _is_condition(condition):
            condition = sympy.Ne(condition, 0)
        return sympy.Piecewise(
            (self.number(node.body), condition), (self.number(node.orelse), True)
        )

    def _Call(self, node: ast.Call) -> sympy.Expr:
        if not isinstance(node.func, ast.Name):
            raise self.fail("only calls of named functions are allowed")
        if node.keywords:
            raise self.fail(f"keyword arguments are not allowed in {node.func.id}()")
        name = _C_ALIASES.get(node.func.id, node.func.id)
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(node.func.id, list(FUNCTIONS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ExpressionError(f"{self.where}: unknown function {node.func.id!r} in "
                                  f"{_echo(self.text)}{hint}")
        function, arities = FUNCTIONS[name]
        if len(node.args) not in arities:
            expected = " or ".join(str(a) for a in arities)
            raise self.fail(
                f"{node.func.id}() takes {expected} argument(s) but got {len(node.args)}"
            )
        args = [self.number(arg) for arg in node.args]
        if name == "pow":
            return self.binary(ast.Pow(), *args)
        values = [_real_value(arg) for arg in args]
        if name in _FLOAT_FUNCTIONS and all(v is not None for v in values):
            description = f"{node.func.id}({', '.join(f'{v:g}' for v in values)})"
            return self.fold(description, _FLOAT_FUNCTIONS[name], *values)
        return _cap_exact(function(*args))
