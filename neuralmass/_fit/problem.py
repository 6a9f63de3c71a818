"""A fitting problem: free parameters in the unit cube → one batched ``simulate`` → (P,)
objective values, worst value for diverged sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .._simulate import simulate
from ..errors import ParameterError
from .objective import Objective

__all__ = ["Problem", "select_signal"]


def select_signal(results, name: str | None):
    """(T, N, P) ``name`` (an exposure, else a state variable; default the first exposure)
    of the last monitor's :class:`Result` (``results`` is a Result or a tuple of them)."""
    res = results[-1] if isinstance(results, tuple) else results
    if name is None:
        return res.exposures[:, 0] if res.exposure_names else res.data[:, 0]
    if name in res.exposure_names:
        return res.exposure(name)
    if name in res.state_names:
        return res.state(name)
    raise ParameterError(f"signal {name!r} is neither an exposure ({', '.join(res.exposure_names)}"
                         f") nor a state variable ({', '.join(res.state_names)})")


def parse_free(free: Mapping) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """``{name: (lo, hi)}`` → names, lower and upper bounds (each (d,))."""
    if not isinstance(free, Mapping) or not free:
        raise ParameterError(f"free must map parameter names to (lo, hi) bounds, e.g. "
                             f"{{'global_coupling': (0.0, 1.0)}}, but got {free!r}")
    lo, hi = [], []
    for name, bounds in free.items():
        try:
            a, b = (float(v) for v in bounds)
        except (TypeError, ValueError):
            raise ParameterError(f"free[{name!r}] must be (lo, hi), but got {bounds!r}") from None
        if not a < b:
            raise ParameterError(f"free[{name!r}] = {bounds!r}: lo must be below hi")
        lo.append(a)
        hi.append(b)
    return tuple(free), np.array(lo), np.array(hi)


@dataclass
class Problem:
    """Everything one generation needs: ``fixed`` parameters (scalars) go into every
    simulation's params, ``simulate_kwargs`` to :func:`simulate` as is."""

    model: object
    connectivity: object
    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    objective: Objective
    signal: str | None
    transient: int
    backend: str
    seed: int
    fixed: dict = field(default_factory=dict)
    simulate_kwargs: dict = field(default_factory=dict)

    def params(self, unit, xp=np):
        """(P, d) points of the unit cube → ``{name: (P,) values}`` and the fixed
        parameters."""
        theta = xp.asarray(self.lower) + unit * xp.asarray(self.upper - self.lower)
        return {**self.fixed, **{name: theta[:, i] for i, name in enumerate(self.names)}}

    def simulate(self, params, **overrides):
        kwargs = {"backend": self.backend, "seed": self.seed, **self.simulate_kwargs,
                  **overrides}
        return simulate(self.model, self.connectivity, params, **kwargs)

    def values(self, results, xp=np):
        """(P,) objective of a batched run (NaN where undefined)."""
        signal = select_signal(results, self.signal)[self.transient:]
        return xp.asarray(self.objective(signal, results))

    def evaluate(self, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One batched simulation of the (P, d) unit points → (values (P,), diverged (P,)),
        the objective's worst value where a set diverged or its objective is undefined."""
        results = self.simulate(self.params(np.asarray(unit)), on_divergence="ignore")
        last = results[-1] if isinstance(results, tuple) else results
        diverged = np.asarray(last.diverged if last.diverged is not None
                              else np.zeros(len(unit), bool))
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.asarray(self.values(results), dtype=float).reshape(len(unit))
        bad = diverged | ~np.isfinite(values)
        return np.where(bad, self.objective.worst, values), diverged
