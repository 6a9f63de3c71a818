"""How fast neuralmass refuses input that could cost time: the timings the unit tests used to
assert (``tests/test_expression.py``, ``tests/test_numba_backend.py``) and now only check
without a clock, measured here instead (a loaded CI machine makes a timed test flaky).

- towering powers and exponentials refused by magnitude (``9**9**9**9``, ``exp(exp(...))``);
- expressions longer than the 10,000-character limit refused before parsing;
- a run whose outputs exceed the available memory refused before compiling (Numba backend).

    uv run python benchmarks/parser_limits.py

Prints one line per case: the best of 5 wall times in ms.
"""

from __future__ import annotations

import time

import numpy as np

import neuralmass as nm
from neuralmass.errors import ExpressionError, ParameterError
from neuralmass.lems import parse_expression
from neuralmass.model import symbol
from neuralmass.plan import make_plan

SYMBOLS = {"x": symbol("x")}

EXPRESSIONS = {
    "9**9**9**9": "9**9**9**9",
    "pow tower": "pow(9, pow(9, pow(9, 9)))",
    "exp tower": "exp(exp(exp(exp(100))))",
    "sqrt(2)^(64^5)": "sqrt(2)^(64*64*64*64*64)",
    "100,001 characters": "x + " * 25_000 + "x",
}


def _best_ms(action, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return 1e3 * best


def _refused(action, error: type[Exception]):
    def run():
        try:
            action()
        except error:
            return
        raise AssertionError("not refused")
    return run


def main() -> None:
    for name, text in EXPRESSIONS.items():
        ms = _best_ms(_refused(lambda text=text: parse_expression(text, SYMBOLS, where="bench"),
                               ExpressionError))
        print(f"expression {name:<22} refused in {ms:8.2f} ms")
    plan = make_plan(nm.load_model("montbrio"), nm.Connectivity.default(),
                     {"global_coupling": np.linspace(0, 1, 10_000)}, n_steps=100_000,
                     monitors="raw")
    from neuralmass.backends import numba as numba_backend

    ms = _best_ms(_refused(lambda: numba_backend.run(plan), ParameterError), repeats=1)
    print(f"numba run needing {plan.n_sets} sets x 100000 raw samples refused in {ms:8.2f} ms")


if __name__ == "__main__":
    main()
