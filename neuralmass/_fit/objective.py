"""Fit objectives: the target, the signed sum of metric terms, and its worst value.

Convention: **the objective is maximised**. ``fc_corr`` enters with a plus sign, the
distances ``fc_distance`` and ``fcd_ks`` with a minus sign (cuBNM writes its goodness of fit
the same way: ``"+fc_corr -fcd_ks"``). For noise-driven oscillators near a bifurcation
``fc_corr`` alone keeps rising past the true coupling (FC's signal-to-noise ratio grows with
coupling), whereas a distance term is smallest at the truth: ``"+fc_corr -fc_distance"``
pins the level of FC as well as its pattern.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .. import metrics
from ..errors import ParameterError

__all__ = ["Objective", "Target", "make_objective", "make_target"]

# name -> (sign it must carry, value for a diverged or undefined set)
TERMS = {"fc_corr": ("+", -1.0), "fc_distance": ("-", 2.0), "fcd_ks": ("-", 1.0)}
_TERM = re.compile(r"\s*([+-]?)\s*([A-Za-z_]\w*)\s*")


@dataclass(frozen=True)
class Target:
    """Empirical data: ``fc`` (N, N) and/or ``fcd`` (W, W) or 1-D FCD values."""

    fc: np.ndarray | None
    fcd: np.ndarray | None


def make_target(target, fcd_window: int, fcd_step: int) -> Target:
    """A :class:`Target` from an (N, N) FC or a dict with any of ``"fc"``, ``"fcd"`` and
    ``"bold"`` ((N, T) empirical time series, from which FC and FCD are computed when not
    given, FCD with ``fcd_window``/``fcd_step`` samples)."""
    if not isinstance(target, Mapping):
        target = {"fc": target}
    unknown = set(target) - {"fc", "fcd", "bold"}
    if unknown:
        raise ParameterError(f"target keys must be among 'fc', 'fcd', 'bold', but got "
                             f"{sorted(unknown)}")
    fc = None if target.get("fc") is None else np.asarray(target["fc"], dtype=float)
    fcd = None if target.get("fcd") is None else np.asarray(target["fcd"], dtype=float)
    if target.get("bold") is not None:
        bold = np.asarray(target["bold"], dtype=float)
        if bold.ndim != 2:
            raise ParameterError(f"target['bold'] must be (N, T), but got shape {bold.shape}")
        fc = metrics.fc(bold.T) if fc is None else fc
        fcd = metrics.fcd(bold.T, fcd_window, fcd_step) if fcd is None else fcd
    if fc is not None and (fc.ndim != 2 or fc.shape[0] != fc.shape[1]):
        raise ParameterError(f"target FC must be (N, N), but got shape {fc.shape}")
    return Target(fc=fc, fcd=fcd)


@dataclass(frozen=True)
class Objective:
    """``value(signal) -> (P,)``, to maximise; ``worst`` replaces diverged/NaN sets."""

    text: str
    evaluate: Callable
    worst: float

    def __call__(self, signal, results):
        return self.evaluate(signal, results)


def parse_terms(text: str) -> list[tuple[float, str]]:
    """``"+fc_corr -fcd_ks"`` → ``[(1.0, "fc_corr"), (-1.0, "fcd_ks")]``; a term without a
    sign takes its natural one (+ for fc_corr, - for the distances)."""
    terms, pos = [], 0
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos:
            raise ParameterError(f"objective {text!r}: cannot read a term at character {pos} "
                                 f"({text[pos:]!r}); expected e.g. '+fc_corr -fcd_ks'")
        sign, name = m.groups()
        if name not in TERMS:
            raise ParameterError(f"objective {text!r}: unknown term {name!r}; expected one of "
                                 f"{', '.join(TERMS)} (or a callable)")
        natural = TERMS[name][0]
        if sign and sign != natural:
            raise ParameterError(
                f"objective {text!r}: {sign}{name} would reward a "
                f"{'worse' if natural == '+' else 'larger distance'}; the objective is "
                f"maximised, so write {natural}{name}")
        terms.append((1.0 if natural == "+" else -1.0, name))
        pos = m.end()
    if not terms:
        raise ParameterError("objective is empty; expected e.g. 'fc_corr' or '+fc_corr -fcd_ks'")
    return terms


def make_objective(objective, target: Target, fcd_window: int, fcd_step: int) -> Objective:
    """An :class:`Objective` from a string or a ``callable(results) -> (P,)`` (maximised;
    its worst value is ``-inf``)."""
    if callable(objective):
        return Objective(getattr(objective, "__name__", "callable"), _Callable(objective),
                         -np.inf)
    if not isinstance(objective, str):
        raise ParameterError(f"objective must be a string such as '+fc_corr -fcd_ks' or a "
                             f"callable(results) -> (P,), but got {objective!r}")
    terms = parse_terms(objective)
    names = {name for _, name in terms}
    if names & {"fc_corr", "fc_distance"} and target.fc is None:
        raise ParameterError(f"objective {objective!r} needs an FC target: pass an (N, N) "
                             "array or a dict with 'fc' or 'bold'")
    if "fcd_ks" in names and target.fcd is None:
        raise ParameterError(f"objective {objective!r} needs an FCD target: pass a dict with "
                             "'fcd' or 'bold'")
    worst = sum(w * TERMS[name][1] for w, name in terms)
    return Objective(objective, _Terms(tuple(terms), target, fcd_window, fcd_step), worst)


# The evaluators are classes, not closures, so that an objective pickles (L2L's runner
# pickles the optimizee into each worker process).

@dataclass(frozen=True)
class _Callable:
    """A user's ``function(results) -> (P,)``."""

    function: Callable

    def __call__(self, signal, results):
        return self.function(results)


@dataclass(frozen=True)
class _Terms:
    """The signed sum of metric ``terms`` ((weight, name) pairs) against ``target``."""

    terms: tuple
    target: Target
    fcd_window: int
    fcd_step: int

    def __call__(self, signal, results):
        """signal: (T, N, P) → (P,)."""
        names = {name for _, name in self.terms}
        sim_fc = metrics.fc(signal) if names & {"fc_corr", "fc_distance"} else None
        total = 0.0
        for weight, name in self.terms:
            if name == "fcd_ks":
                value = metrics.fcd_ks(metrics.fcd(signal, self.fcd_window, self.fcd_step),
                                       self.target.fcd)
            else:
                value = getattr(metrics, name)(sim_fc, self.target.fc)
            total = total + weight * value
        return total
