"""The expression language of model files, and hostile input to it.

``parse_expression`` turns RateML/LEMS expression strings into SymPy through a whitelist of
Python AST nodes; it must never evaluate the text. Results are checked numerically (numbers
substituted, floats compared), not by their printed form.
"""

from __future__ import annotations

import builtins
import contextlib
import math
import os
import re
import subprocess
import sys
from unittest import mock

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuralmass.errors import ExpressionError, ModelError
from neuralmass.lems import FUNCTIONS, parse_expression
from neuralmass.model import symbol

WHERE = "model.xml:3: TimeDerivative 'dx'"
NAMES = ("x", "y", "omega", "tau")


def parse(text: str, *names: str, boolean: bool = False) -> sympy.Basic:
    names = names or NAMES
    return parse_expression(text, {n: symbol(n) for n in names}, where=WHERE, boolean=boolean)


def value(expr: sympy.Basic, **numbers: float) -> float:
    """``expr`` with ``numbers`` substituted, as a float (or bool for a condition)."""
    result = expr.xreplace({symbol(k): sympy.Float(v) for k, v in numbers.items()})
    if isinstance(result, sympy.logic.boolalg.BooleanAtom):
        return bool(result)
    return float(result)


def fails(text: str, match: str, *names: str) -> None:
    """``text`` raises an ExpressionError whose message starts with WHERE and matches."""
    with pytest.raises(ExpressionError, match=re.escape(WHERE) + ": " + match):
        parse(text, *names)


# --------------------------------------------------------------------------- the language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{x^2}", 9.0),
        ("x^2", 9.0),
        ("x**2", 9.0),
        ("{x^y}", 81.0),
        ("2 * {(x - 1)^3}", 16.0),
        ("2e-3*x^3", 2e-3 * 27.0),  # a power of x, not (2e-3*x)**3
        ("-x^2", -9.0),  # -(x**2), as in Python
        ("x^y^0.5", 3.0 ** (4.0**0.5)),  # right-associative
        ("(x + y) / 2 - tau * omega", 3.5 - 2.0 * 0.5),
        ("+x - -y", 7.0),
        ("x / y / 2", 3.0 / 4.0 / 2.0),
        ("1 / 2 * x", 1.5),
    ],
)
def test_arithmetic_and_powers(text, expected):
    assert value(parse(text), x=3.0, y=4.0, omega=0.5, tau=2.0) == pytest.approx(expected)


def test_small_integer_exponents_stay_exact():
    # x**2 must stay an integer power (printers turn it into x*x); 2**x is a float power.
    assert parse("{x^2}") == symbol("x") ** 2
    assert isinstance(parse("x^3").exp, sympy.Integer)
    assert isinstance(parse("x**-1").exp, sympy.Integer)
    assert value(parse("2**x"), x=0.5) == pytest.approx(2**0.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.0f", 1.0),
        (".5f", 0.5),
        ("2f", 2.0),
        ("1.f", 1.0),
        ("1e-3f", 1e-3),
        ("2.5E+2F", 250.0),
        ("1.0f * x + .5f", 3.5),
        ("expf(0.0f)", 1.0),
    ],
)
def test_c_float_literals(text, expected):
    assert value(parse(text), x=3.0) == pytest.approx(expected)


def test_c_suffix_does_not_touch_names():
    expr = parse("x1f + 2.0f * x1f", "x1f")
    assert expr.free_symbols == {symbol("x1f")}
    assert value(expr, x1f=2.0) == pytest.approx(6.0)


def test_pi_and_inf():
    assert value(parse("pi")) == pytest.approx(math.pi)
    assert value(parse("2 * pi * x"), x=0.5) == pytest.approx(math.pi)
    assert value(parse("{pi^2}")) == pytest.approx(math.pi**2)
    assert parse("inf") == sympy.oo
    assert parse("-inf") == -sympy.oo
    assert value(parse("M_PI")) == pytest.approx(math.pi)


@pytest.mark.parametrize(
    ("text", "truth"),  # truth at x = 1, 2, 3
    [
        ("x < 2", (True, False, False)),
        ("x <= 2", (True, True, False)),
        ("x > 2", (False, False, True)),
        ("x >= 2", (False, True, True)),
        ("x == 2", (False, True, False)),
        ("x != 2", (True, False, True)),
        ("1 < x < 3", (False, True, False)),
        ("x .lt. 2", (True, False, False)),
        ("x .leq. 2", (True, True, False)),
        ("x .gt. 2", (False, False, True)),
        ("x .geq. 2", (False, True, True)),
        ("x .eq. 2", (False, True, False)),
        ("x .neq. 2", (True, False, True)),
        ("x .GT. 2", (False, False, True)),
        ("x > 1 and x < 3", (False, True, False)),
        ("x < 2 or x > 2", (True, False, True)),
        ("not x > 2", (True, True, False)),
        ("x .gt. 1 .and. x .lt. 3", (False, True, False)),
        ("x .lt. 2 .or. x .gt. 2", (True, False, True)),
        ("x > 1 && x < 3", (False, True, False)),
        ("x < 2 || x > 2", (True, False, True)),
        ("x - 2", (True, False, True)),  # a bare number as a condition means != 0
        ("not (x - 2)", (False, True, False)),
    ],
)
def test_conditions(text, truth):
    condition = parse(text, boolean=True)
    assert tuple(value(condition, x=v) for v in (1.0, 2.0, 3.0)) == truth


def test_condition_used_as_a_number_is_one_or_zero():
    expr = parse("x > 2")
    assert (value(expr, x=1.0), value(expr, x=3.0)) == (0.0, 1.0)


def test_if_else_is_piecewise():
    expr = parse("x * 2 if x > 0 else -x")
    assert isinstance(expr, sympy.Piecewise)
    assert value(expr, x=3.0) == 6.0
    assert value(expr, x=-3.0) == 3.0
    nested = parse("1 if x < 0 else (2 if x < 1 else 3)")
    assert [value(nested, x=v) for v in (-1.0, 0.5, 5.0)] == [1.0, 2.0, 3.0]


# Every function of the language: (name, arguments, the value Python computes).
FUNCTION_CASES = [
    ("exp", (0.7,), math.exp(0.7)),
    ("log", (0.7,), math.log(0.7)),
    ("sqrt", (0.7,), math.sqrt(0.7)),
    ("sin", (0.7,), math.sin(0.7)),
    ("cos", (0.7,), math.cos(0.7)),
    ("tan", (0.7,), math.tan(0.7)),
    ("sinh", (0.7,), math.sinh(0.7)),
    ("cosh", (0.7,), math.cosh(0.7)),
    ("tanh", (0.7,), math.tanh(0.7)),
    ("asin", (0.7,), math.asin(0.7)),
    ("acos", (0.7,), math.acos(0.7)),
    ("atan", (0.7,), math.atan(0.7)),
    ("atan2", (-0.7, -0.2), math.atan2(-0.7, -0.2)),
    ("erf", (0.7,), math.erf(0.7)),
    ("erfc", (0.7,), math.erfc(0.7)),
    ("erfc", (-0.7,), math.erfc(-0.7)),
    ("abs", (-0.7,), 0.7),
    ("fabs", (-0.7,), 0.7),
    ("ceil", (0.7,), 1.0),
    ("floor", (0.7,), 0.0),
    ("pow", (0.7, 3.0), 0.7**3),
    ("min", (0.7, -0.2), -0.2),
    ("max", (0.7, -0.2), 0.7),
    ("min", (0.7, -0.2, 0.1), -0.2),
    ("max", (0.7, -0.2, 0.9), 0.9),
    ("fmin", (0.7, -0.2), -0.2),
    ("fmax", (0.7, -0.2), 0.7),
    ("heaviside", (0.7,), 1.0),
    ("heaviside", (-0.7,), 0.0),
    ("heaviside", (0.0,), 0.5),
    ("heaviside", (0.0, 1.0), 1.0),
]


def test_function_cases_cover_every_function():
    assert {name for name, _, _ in FUNCTION_CASES} == set(FUNCTIONS)


@pytest.mark.parametrize(("name", "args", "expected"), FUNCTION_CASES)
def test_functions_of_symbols(name, args, expected):
    # Arguments are symbols, so SymPy builds the function; then numbers are substituted.
    names = [f"a{i}" for i in range(len(args))]
    expr = parse(f"{name}({', '.join(names)})", *names)
    assert expr.free_symbols == {symbol(n) for n in names}
    got = value(expr, **dict(zip(names, args, strict=True)))
    assert got == pytest.approx(expected, rel=1e-14, abs=1e-15)


@pytest.mark.parametrize(("name", "args", "expected"), FUNCTION_CASES)
def test_functions_of_constants(name, args, expected):
    expr = parse(f"{name}({', '.join(repr(a) for a in args)})")
    assert expr.is_number
    assert float(expr) == pytest.approx(expected, rel=1e-14, abs=1e-15)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "cos", "tan", "sinh", "cosh",
                                  "tanh", "fabs", "ceil", "floor", "asin", "acos", "atan",
                                  "erf", "erfc"])
def test_c_spellings_of_functions(name):
    assert parse(f"{name}f(x)") == parse(f"{name}(x)")


def test_c_spellings_with_two_arguments():
    assert parse("powf(x, y)") == parse("pow(x, y)") == parse("x^y")
    assert parse("fminf(x, y)") == parse("min(x, y)")
    assert parse("fmaxf(x, y)") == parse("max(x, y)")
    assert parse("atan2f(x, y)") == parse("atan2(x, y)")


def test_min_and_max_keep_their_arguments_as_written():
    """SymPy's own Max/Min simplify their arguments whenever they are built (max(x, x + 1) is
    x + 1), which took minutes for a long argument; the parser's are built as written, are
    still Max/Min (for every printer and isinstance check) and give numbers of numbers."""
    from sympy.functions.elementary.miscellaneous import MinMaxBase

    x, y = symbol("x"), symbol("y")
    refuse = mock.patch.object(MinMaxBase, "_collapse_arguments",
                               side_effect=AssertionError("Max/Min simplified its arguments"))
    with refuse:
        for text, kind in [("max(x, x + 1)", sympy.Max), ("fmax(x, x + 1)", sympy.Max),
                           ("min(x, x + 1, y)", sympy.Min), ("fmin(x, x + 1)", sympy.Min)]:
            expr = parse(text)
            assert isinstance(expr, kind) and type(expr).__name__ == kind.__name__
            assert expr.args[:2] == (x, x + 1)
            rebuilt = expr.xreplace({y: 2 * y})  # a substitution does not simplify either
            assert isinstance(rebuilt, kind)
    assert value(parse("max(x, x + 1)"), x=0.5) == 1.5
    assert value(parse("min(x, x + 1, y)"), x=0.5, y=-3.0) == -3.0
    assert parse("max(x, y)").xreplace({x: sympy.Float(2.0), y: sympy.Float(-1.0)}) == 2.0
    # derivatives as SymPy's: Heaviside of the difference
    assert sympy.diff(parse("max(x, y)"), x) == sympy.diff(sympy.Max(x, y), x)


@pytest.mark.parametrize("text", ["max(x, y)", "min(tau, x, y)", "fmax(omega, x)"])
def test_min_and_max_print_as_sympys_on_every_backend(text):
    """Each backend prints the parser's Max/Min exactly as SymPy's (the arguments in SymPy's
    order here): JAX's maximum, Numba's NaN-propagating nm_max, CUDA C's fmax, lambdify's."""
    from sympy.printing.numpy import NumPyPrinter

    from neuralmass.backends._python_source import JaxSourcePrinter
    from neuralmass.backends.cuda import CUDACodePrinter
    from neuralmass.backends.numba._lower import NumbaPrinter, _inert

    expr = parse(text)
    sympys = (sympy.Max if text.startswith(("max", "fmax")) else sympy.Min)(*expr.args)
    assert type(expr) is not type(sympys) and expr.args == sympys.args
    for printer in (JaxSourcePrinter(), CUDACodePrinter("float64"), CUDACodePrinter("float32"),
                    NumPyPrinter()):
        assert printer.doprint(expr) == printer.doprint(sympys)
    assert NumbaPrinter().doprint(_inert(expr)) == NumbaPrinter().doprint(_inert(sympys))


def test_min_and_max_pickle():
    """Models are pickled to Dask and L2L workers: the parser's Max/Min survive."""
    import pickle

    for text in ("max(x, y + 1)", "min(x, y, 0.5)"):
        expr = parse(text)
        again = pickle.loads(pickle.dumps(expr))
        assert again == expr and type(again) is type(expr)


@pytest.mark.parametrize("name", ["beta", "gamma", "I", "E", "S", "N", "Q", "O", "zeta", "Max",
                                  "sin_", "exp_"])
def test_names_sympify_would_misread_are_plain_real_symbols(name):
    expr = parse(f"2 * {name} + {name}^2", name)
    assert expr.free_symbols == {symbol(name)}
    assert all(s.is_real for s in expr.free_symbols)
    assert value(expr, **{name: 3.0}) == pytest.approx(15.0)


def test_imaginary_unit_and_euler_are_not_sneaked_in():
    expr = parse("I * E", "I", "E")
    assert not expr.has(sympy.I) and not expr.has(sympy.E)
    assert value(expr, I=2.0, E=5.0) == 10.0


def test_long_sums_and_products_parse():
    # Left-deep chains are built in a loop, not by recursion.
    assert value(parse(" + ".join(["x"] * 600)), x=1.0) == 600.0
    assert value(parse(" - ".join(["x"] * 600)), x=1.0) == -598.0
    assert value(parse("*".join(["x"] * 300)), x=1.0) == 1.0
    assert value(parse("(" * 150 + "x" + ")" * 150), x=2.0) == 2.0


def test_unavailable_names_say_why():
    with pytest.raises(ExpressionError, match=re.escape(WHERE) + ": 'V' is the StateVariable"
                       r" on line 9, which cannot be used here in '2 \* V'"):
        parse_expression("2 * V", {"x": symbol("x")}, where=WHERE,
                         unavailable={"V": "is the StateVariable on line 9, which cannot be "
                                           "used here"})


# --------------------------------------------------------------------------- errors


def test_unknown_symbol_suggests_a_close_name():
    fails("omgea + c_pop0", r"unknown symbol 'omgea' in 'omgea \+ c_pop0'; did you mean "
          r"'omega'\?", "omega", "c_pop0")


def test_unknown_symbol_lists_the_known_ones():
    fails("zzz * 2", r"unknown symbol 'zzz' in 'zzz \* 2' \(known: omega, x\)", "x", "omega")


def test_unknown_function_suggests_a_close_one():
    fails("exq(x)", r"unknown function 'exq' in 'exq\(x\)'; did you mean 'exp'\?")
    fails("tanhh(x)", r"unknown function 'tanhh' in 'tanhh\(x\)'; did you mean 'tanh'\?")
    fails("frobnicate(x)", r"unknown function 'frobnicate' in 'frobnicate\(x\)'")


def test_calling_a_symbol_is_an_unknown_function():
    fails("x(2)", r"unknown function 'x'")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("x +* y", r"syntax error at column \d+ in 'x \+\* y': invalid syntax"),
        ("(x + y", r"syntax error .* in '\(x \+ y'"),
        ("x y", r"syntax error .*: invalid syntax"),
        ("x = 1", r"syntax error"),
        ("x; y", r"syntax error"),
    ],
)
def test_syntax_errors(text, match):
    fails(text, match)


def test_empty_expression():
    fails("", "empty expression")
    fails("   ", "empty expression")


def test_arity_is_checked():
    fails("exp(x, y)", r"exp\(\) takes 1 argument\(s\) but got 2")
    fails("pow(x)", r"pow\(\) takes 2 argument\(s\) but got 1")
    fails("max(x)", r"max\(\) takes 2 or 3 or 4 or 5 or 6 argument\(s\) but got 1")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("x % 2", "the modulo operator % is not supported"),
        ("x // 2", r"use floor\(a / b\) instead of //"),
        ("x & y", "use 'and' for a logical and"),
        ("x | y", "use 'or' for a logical or"),
        ("~x", r"bitwise not \(~\) is not supported; use 'not'"),
        ("x @ y", "matrix products are not supported"),
        ("x << 2", "bit shifts are not supported"),
        ("x is y", "comparison Is is not supported"),
        ("x in y", "comparison In is not supported"),
        ("(x > 1) + 1", "a condition cannot be used as a number"),
        ("'abc'", "literal 'abc' is not a number"),
        ("None", "literal None is not a number"),
        ("True", "literal True is not a number"),
        ("(x, y)", "Tuple is not allowed in an expression"),
        ("{1: 2}", r"syntax error"),  # braces are RateML's grouping: (1: 2)
    ],
)
def test_unsupported_syntax_says_what_to_use(text, match):
    fails(text, match)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 / 0", r"division by zero \(1 / 0\)"),
        ("x / 0", "division by zero"),
        ("log(0)", r"log\(0\) is not a real number"),
        ("sqrt(-1)", r"sqrt\(-1\) is not a real number"),
        ("(-8)^(1/3)", r"\(-8\) \*\* 0.333333 is not a real number"),
        ("inf - inf", r"inf - inf is not a number \(NaN\)"),
        ("exp(1000)", r"exp\(1000\) overflows a 64-bit float"),
        ("1e308 * 10", r"1e\+308 \* 10 overflows a 64-bit float"),
        ("9" * 400, r"integer literal '9999.* overflows a 64-bit float"),
    ],
)
def test_undefined_constants(text, match):
    fails(text, match)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        parse("omgea")
    assert issubclass(ExpressionError, ModelError)


# --------------------------------------------------------------------------- hostile input


@pytest.fixture
def canary(tmp_path):
    """A path that injected code would create; the test asserts it never exists."""
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "an expression executed code"


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("__import__('os').system('touch {canary}')",
         r"only calls of named functions are allowed"),
        ("__import__('os')", r"unknown function '__import__'"),
        ("exec(\"open('{canary}', 'w')\")", r"unknown function 'exec'"),
        ("eval('1')", r"unknown function 'eval'"),
        ("open('{canary}', 'w')", r"unknown function 'open'"),
        ("().__class__.__base__.__subclasses__()", "only calls of named functions are allowed"),
        ("x.__class__", "attribute access is not allowed"),
        ("x.real", "attribute access is not allowed"),
        ("x[0]", "subscripts are not allowed"),
        ("[x][0]", "subscripts are not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("(lambda: __import__('os'))()", "only calls of named functions are allowed"),
        ("exp(i for i in [1])", "comprehensions are not allowed"),
        ("[i for i in [1]]", "comprehensions are not allowed"),
        ("{{i: i for i in [1]}}", "syntax error"),  # braces are parentheses in RateML
        ("f'{{x}}'", "strings are not allowed"),
        ("(y := 1)", "assignment expressions are not allowed"),
        ("max(*x, 1)", "starred arguments are not allowed"),
        ("exp(x=1)", r"keyword arguments are not allowed in exp\(\)"),
        ("exp(**x)", r"keyword arguments are not allowed in exp\(\)"),
        ("__builtins__", r"unknown symbol '__builtins__'"),
        ("getattr(x, '__class__')", r"unknown function 'getattr'"),
        ("x if __import__('os').system('touch {canary}') else y",
         "only calls of named functions are allowed"),
        ("'a' * 10**8", "literal 'a' is not a number"),
        ("x\x00", "(syntax error|cannot parse).*null bytes"),
        ("breakpoint()", r"unknown function 'breakpoint'"),
    ],
)
def test_hostile_expressions_are_rejected(template, match, canary):
    text = template.replace("{canary}", str(canary)).replace("{{", "{").replace("}}", "}")
    fails(text, match)


def test_towering_power_is_refused_without_evaluating_it():
    """Each is refused by its magnitude, not computed (computing 9**9**9**9 would not end);
    how long the checks take is timed in benchmarks/parser_limits.py, not asserted here."""
    fails("9**9**9**9", r"9 \*\* 3.8742e\+08 overflows a 64-bit float")
    fails("pow(9, pow(9, pow(9, 9)))", r"9 \*\* 3.8742e\+08 overflows a 64-bit float")
    fails("sqrt(2)^(64*64*64*64*64)", r"1.41421 \*\* 1.07374e\+09 overflows a 64-bit")
    fails("exp(exp(exp(exp(100))))", r"exp\(2.68812e\+43\) overflows a 64-bit float")
    fails("sin(exp(exp(100)))", r"exp\(2.68812e\+43\) overflows a 64-bit float")
    assert value(parse("(1/2)**(64*64*64*64*64)")) == 0.0
    # Exact coefficients cannot grow without bound either.
    for text in ["((((64*x)**64)**64)**64)**64", "x" + "*64" * 150,
                 "(2*x)**(64*64*64*64*64)", "(x + 64)" + "*64" * 150]:
        expr = parse(text)
        assert all(abs(r.p) < 2**64 and r.q < 2**64 for r in expr.atoms(sympy.Rational))
        str(expr)  # printable: no integer beyond Python's 4300-digit str limit
    # The numbers of a product are folded in float64, as a backend would: 64**2000 overflows.
    fails("x" + "*64" * 2000, r"1.12356e\+307 \* 64 overflows a 64-bit float")


def test_deep_nesting_is_an_error_not_a_crash():
    fails("(" * 10_000 + "x" + ")" * 10_000, "expression longer than 10000 characters")
    fails("(" * 4000 + "x" + ")" * 4000, "syntax error .*too many nested parentheses")
    fails("-" * 5000 + "x", "(cannot parse '-----.*: maximum recursion depth|expression "
                            "'-----.* is nested too deeply)")
    fails("not " * 900 + "x", "expression 'not not .* ... .*not x' is nested too deeply")
    fails("x**" * 900 + "x", r"expression 'x\*\*x.* is nested too deeply")
    fails("sin(" * 1500 + "x" + ")" * 1500, "syntax error .*too many nested parentheses")


def test_huge_input_is_rejected_before_parsing():
    """Refused by its length before Python's parser sees it (timed in
    benchmarks/parser_limits.py)."""
    with mock.patch("ast.parse", side_effect=AssertionError("parsed")):
        fails("x + " * 25_000 + "x", "expression longer than 10000 characters")
        fails("'" + "a" * 100_000 + "'", "expression longer than 10000 characters")


def test_messages_shorten_long_expressions():
    text = "zzz + " + " + ".join(["x"] * 2000)
    with pytest.raises(ExpressionError) as info:
        parse(text)
    assert len(str(info.value)) < 400
    assert " ... " in str(info.value)


# A grammar of tokens, hostile ones included, for random expressions.
TOKENS = [
    "x", "y", "omega", "tau", "1", "2.5", "1e3", "1.0f", ".5f", "0", "64", "9", "pi", "inf",
    "+", "-", "*", "/", "**", "^", "<", ">", "<=", "==", "!=", ".gt.", ".and.", "&&", "||",
    "and", "or", "not", "if", "else", "(", ")", "(", ")", "{", "}", "[", "]", ",", ".", ":",
    ":=", "'", '"', "f'", "lambda", "for", "in", "is", "__import__", "__class__", "__base__",
    "__subclasses__", "__builtins__", "os", "system", "eval", "exec", "open", "exp", "pow",
    "max", "heaviside", "sqrt", "log", "expf", "getattr", "=", ";", "\\", "#", "%", "@", "~",
    "*", "**", " ", " ", "\n", "0x1f", "x1f", "1f", "_", "lamda", "True", "None", "...",
]
CALLS = ["exp", "log", "sqrt", "sin", "tanh", "abs", "pow", "max", "min", "heaviside", "powf",
         "expf", "__import__", "eval", "open", "getattr", "exq"]


def expressions():
    """Mostly well-formed expressions, with hostile leaves and calls mixed in."""
    leaves = st.sampled_from(["x", "y", "omega", "1", "2.5", "0", "1e-3f", "pi", "inf", "64",
                              "'os'", "__class__", "x.real", "x[0]", "(lambda: 1)", "9"])

    def extend(children):
        binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "**", "^", "<", ">=",
                                                      " and ", " or ", " .gt. ", "%", "."]),
                           children).map("".join)
        call = st.tuples(st.sampled_from(CALLS), st.lists(children, min_size=1, max_size=3)
                         ).map(lambda t: f"{t[0]}({', '.join(t[1])})")
        conditional = st.tuples(children, children, children).map(
            lambda t: f"({t[0]} if {t[1]} else {t[2]})")
        return st.one_of(binary, call, conditional, children.map(lambda c: f"({c})"),
                         children.map(lambda c: f"-{c}"), children.map(lambda c: "{" + c + "}"))

    return st.recursive(leaves, extend, max_leaves=12)


@contextlib.contextmanager
def tripwires(fired: list[str]):
    """Record (and block) any eval/exec, compile beyond AST-only, or process spawning."""
    real_compile = builtins.compile

    def guarded_compile(source, filename, mode, flags=0, *args, **kwargs):
        if not flags & 0x400:  # ast.PyCF_ONLY_AST: what ast.parse asks for
            fired.append(f"compile({source!r})")
            raise AssertionError("compile called")
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    def trip(name):
        def tripped(*args, **kwargs):
            fired.append(f"{name}{args!r}")
            raise AssertionError(f"{name} called")
        return tripped

    real_import = builtins.__import__

    def guarded_import(name, *args, **kwargs):
        # SymPy imports lazily inside functions: allow what is loaded already, except the
        # modules an injection would want.
        level = args[3] if len(args) > 3 else kwargs.get("level", 0)
        if level > 0 or (name in sys.modules
                         and name.split(".")[0] not in ("os", "subprocess", "shutil")):
            return real_import(name, *args, **kwargs)
        fired.append(f"import {name}")
        raise AssertionError(f"import {name}")

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(builtins, "compile", guarded_compile))
        stack.enter_context(mock.patch.object(builtins, "__import__", guarded_import))
        for name in ("eval", "exec"):
            stack.enter_context(mock.patch.object(builtins, name, trip(name)))
        stack.enter_context(mock.patch.object(os, "system", trip("os.system")))
        stack.enter_context(mock.patch.object(subprocess, "Popen", trip("Popen")))
        yield


def check_never_executes(text: str, canary) -> None:
    fired: list[str] = []
    with tripwires(fired):
        try:
            result = parse(text)
        except ExpressionError as err:
            assert str(err).startswith(WHERE + ": ")
        else:
            assert isinstance(result, sympy.Basic)
    assert fired == [], f"{text!r} reached {fired}"
    assert not canary.exists()


def test_random_token_soup_never_executes(tmp_path):
    canary = tmp_path / "pwned"

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.sampled_from(TOKENS), max_size=25).map("".join))
    def run(text):
        check_never_executes(text, canary)

    # Warm SymPy's lazy imports first: the tripwires block __import__ while parsing.
    parse("max(x, y) + heaviside(x) + (x if x > 1 and y < 2 else y) + exp(x)**2 + pi")
    run()


def test_random_expressions_parse_or_fail_cleanly(tmp_path):
    canary = tmp_path / "pwned"

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(expressions())
    def run(text):
        check_never_executes(text, canary)

    parse("max(x, y) + heaviside(x) + (x if x > 1 and y < 2 else y) + exp(x)**2 + pi")
    run()
