"""SymPy's C99 printer, adapted to CUDA C++, and the few statement and expression tokens that
``sympy.codegen.ast`` lacks.

The printed source compiles with NVRTC (CuPy), with ``nvcc`` and — through the host shim
``cuda_shim.h`` — with a host C++ compiler, so it uses only what all three accept:

- ``float``/``double`` chosen by the kernel's precision: :data:`sympy.codegen.ast.real` is an
  alias of ``float32`` or ``float64``, which gives ``expf``/``exp`` and the ``F`` literal suffix;
- ``int``, ``unsigned int`` and ``long long`` (NVRTC has no ``<stdint.h>``);
- ``__restrict__`` (nvcc rejects C99 ``restrict``) and no ``M_PI``-style macros: π and e are
  printed as literals;
- small integer powers as products (``x*x*x``, not ``powf(x, 3)``).
"""

from __future__ import annotations

import sympy
from sympy.codegen import ast
from sympy.codegen.cnodes import restrict
from sympy.printing.c import C99CodePrinter

from ...errors import ModelError

__all__ = [
    "ArrayDeclaration",
    "CUDACodePrinter",
    "If",
    "Pragma",
    "bit_and",
    "bit_xor",
    "isfinite",
    "umulhi",
    "INT",
    "UINT",
    "INT64",
]

INT = ast.intc
UINT = ast.uint32
INT64 = ast.int64

# Identifiers the generated code must not shadow: C++ keywords, CUDA built-ins and the math
# functions the printer emits. A model symbol with such a name is printed with a trailing "_"
# (model names never start with "nm_", which the XML reader reserves for generated names).
_RESERVED = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t
class compl const constexpr const_cast continue decltype default delete do double dynamic_cast
else enum explicit export extern false float for friend goto if inline int long mutable
namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
reinterpret_cast restrict return short signed sizeof static static_assert static_cast struct
switch template this thread_local throw true try typedef typeid typename union unsigned using
virtual void volatile wchar_t while xor xor_eq
blockIdx threadIdx blockDim gridDim warpSize dim3 main printf assert
abs fabs fabsf exp expf exp2 exp2f expm1 expm1f log logf log2 log2f log10 log10f log1p log1pf
pow powf sqrt sqrtf cbrt cbrtf hypot hypotf sin sinf cos cosf tan tanf asin asinf acos acosf
atan atanf atan2 atan2f sinh sinhf cosh coshf tanh tanhf asinh asinhf acosh acoshf atanh atanhf
erf erff erfc erfcf tgamma tgammaf lgamma lgammaf ceil ceilf floor floorf fmax fmaxf fmin fminf
fmod fmodf fma fmaf round roundf trunc truncf copysign copysignf isnan isinf isfinite
NAN INFINITY HUGE_VAL HUGE_VALF
""".split())

class bit_and(sympy.Function):  # noqa: N801 - printed as the C operator, named like one
    """``a & b`` on integers (ring-buffer rows: ``(k - d) & (B - 1)``)."""

    is_integer = True


class bit_xor(sympy.Function):  # noqa: N801
    """``a ^ b ^ ...`` on unsigned integers (Philox rounds)."""

    is_integer = True


class umulhi(sympy.Function):  # noqa: N801
    """The high 32 bits of the 64-bit product of two unsigned ints: CUDA's ``__umulhi``."""

    is_integer = True


class isfinite(sympy.Function):  # noqa: N801 - printed as the C++/CUDA function
    """``isfinite(x)``: false for NaN and ±inf (the kernel's divergence check)."""


class If(ast.Token):
    """``if (condition) { body }`` — the statement ``sympy.codegen.ast`` does not have."""

    __slots__ = _fields = ("condition", "body")
    _construct_condition = staticmethod(sympy.sympify)

    @staticmethod
    def _construct_body(body):
        return body if isinstance(body, ast.CodeBlock) else ast.CodeBlock(*body)


class Pragma(ast.Token):
    """A ``#pragma`` line (``#pragma unroll 4`` before a loop); the host shim ignores it."""

    __slots__ = _fields = ("text",)
    _construct_text = ast.String


class CUDACodePrinter(C99CodePrinter):
    """C99CodePrinter for CUDA C++ (see the module docstring).

    ``precision`` is ``"float32"`` or ``"float64"``: the type of :data:`sympy.codegen.ast.real`.
    """

    printmethod = "_cudacode"
    language = "CUDA"

    def __init__(self, precision: str = "float32", settings=None):
        real_type = {"float32": ast.float32, "float64": ast.float64}[precision]
        settings = dict(settings or {})
        settings.setdefault("type_aliases", {ast.real: real_type})
        settings.setdefault("type_mappings", {
            ast.float32: "float",
            ast.float64: "double",
            ast.intc: "int",
            ast.int32: "int",
            ast.uint32: "unsigned int",
            ast.int64: "long long",
            ast.real: "float" if precision == "float32" else "double",
        })
        settings.setdefault("math_macros", {})
        settings.setdefault("contract", False)  # arrays are flat: no implicit loops
        super().__init__(settings)
        self.real_type = real_type
        self.precision = precision

    # ----------------------------------------------------------------- expressions
    def _print_Symbol(self, expr):
        name = super()._print_Symbol(expr)
        return name + "_" if name in _RESERVED else name

    def _print_NumberSymbol(self, expr):
        return self._print_Float(sympy.Float(expr.evalf(20), 20))

    _print_Pi = _print_Exp1 = _print_GoldenRatio = _print_EulerGamma = _print_NumberSymbol
    _print_Catalan = _print_NumberSymbol

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_Pow(self, expr):
        base, exponent = expr.args
        if exponent.is_Integer and 2 <= abs(int(exponent)) <= 6:
            factor = self.parenthesize(base, 50)  # PRECEDENCE["Mul"]
            product = "*".join([factor] * abs(int(exponent)))
            if exponent > 0:
                return product
            return f"{self._print_Float(sympy.Float(1.0))}/({product})"
        return super()._print_Pow(expr)

    def _print_Piecewise(self, expr):
        if expr.args[-1].cond != True:  # noqa: E712 - SymPy's true
            raise ModelError(f"a conditional expression needs an otherwise branch (condition "
                             f"True) to be printed as C, but got {expr}")
        result = self._print(expr.args[-1].expr)
        for value, condition in reversed(expr.args[:-1]):
            result = f"(({self._print(condition)}) ? ({self._print(value)}) : ({result}))"
        return result

    def _print_Indexed(self, expr):
        # arrays are flat; the kernel writes the flattened index itself
        indices = ", ".join(self._print(i) for i in expr.indices)
        return f"{self._print(expr.base.label)}[{indices}]"

    def _print_Heaviside(self, expr):
        return self._print(expr.rewrite(sympy.Piecewise))

    def _operand(self, expr):
        text = self._print(expr)
        return text if expr.is_Atom or isinstance(expr, sympy.Function) else f"({text})"

    def _print_bit_and(self, expr):
        return "(" + " & ".join(self._operand(a) for a in expr.args) + ")"

    def _print_bit_xor(self, expr):
        return "(" + " ^ ".join(self._operand(a) for a in expr.args) + ")"

    def _print_isfinite(self, expr):
        return f"isfinite({self._print(expr.args[0])})"

    def _print_umulhi(self, expr):
        return "__umulhi({}, {})".format(*(self._print(a) for a in expr.args))

    # ----------------------------------------------------------------- statements
    def _print_Declaration(self, decl):
        text = super()._print_Declaration(decl)
        # nvcc rejects C99's `restrict`; CUDA, g++ and clang all accept `__restrict__`
        return text.replace("restrict ", "__restrict__ ") if restrict in decl.variable.attrs \
            else text

    def _print_For(self, expr):
        target = self._print(expr.target)
        start, stop, step = expr.iterable.args
        increment = f"{target} += {self._print(step)}" if step != 1 else f"++{target}"
        body = self._print(expr.body)
        return (f"for ({target} = {self._print(start)}; {target} < {self._print(stop)}; "
                f"{increment}) {{\n{body}\n}}")

    def _print_If(self, expr):
        return f"if ({self._print(expr.condition)}) {{\n{self._print(expr.body)}\n}}"

    def _print_Pragma(self, expr):
        return f"#pragma {expr.text.text}"

    def _print_CodeBlock(self, expr):
        lines = []
        for statement in expr.args:
            text = self._print(statement)
            if isinstance(statement, Pragma | If | ast.For | ast.Comment) or text.endswith("}"):
                lines.append(text)
            else:
                lines.append(self._get_statement(text))
        return "\n".join(lines)

    def _print_Comment(self, expr):
        return f"// {expr.text}"

    def _print_FunctionPrototype(self, expr):
        attributes = " ".join(a.name.text for a in expr.attrs)
        parameters = ",\n    ".join(self._print(ast.Declaration(p)) for p in expr.parameters)
        head = f"{attributes} " if attributes else ""
        return f"{head}{self._print(expr.return_type)} {self._print(expr.name)}(\n    {parameters})"

    def _print_FunctionDefinition(self, expr):
        return f"{self._print_FunctionPrototype(expr)}\n{{\n{self._print_CodeBlock(expr.body)}\n}}"

    def _print_ArrayDeclaration(self, expr):
        attributes = "".join(f"{a.name.text} " for a in expr.attrs)
        return f"{attributes}{self._print(expr.type)} {expr.name.text}[{int(expr.size)}]"

    def _print_Variable(self, expr):
        return self._print(expr.symbol)

    def indent_code(self, code):
        if isinstance(code, str):
            return "".join(self.indent_code(code.splitlines(True)))
        # C99CodePrinter's indenter counts every parenthesis; here braces nest, and so does a
        # parameter list that opens a line with "(" and closes it with ")"
        lines, level = [], 0
        for line in code:
            stripped = line.lstrip(" \t")
            if stripped in ("", "\n"):
                lines.append(stripped)
                continue
            text = stripped.rstrip()
            if text.startswith("}"):
                level -= 1
            lines.append("    " * level + stripped)
            if text.endswith(("{", "(")):
                level += 1
            elif text.endswith(")") and text.count(")") > text.count("("):
                level -= 1
        return lines


class ArrayDeclaration(ast.Token):
    """A file-scope array, ``__constant__ int nm_edge_source[1424];``."""

    __slots__ = _fields = ("type", "name", "size", "attrs")
    _construct_name = ast.String
    _construct_size = staticmethod(sympy.Integer)

    @staticmethod
    def _construct_type(value):
        return ast.Type(value)

    @staticmethod
    def _construct_attrs(value):
        return ast.Tuple(*value)
