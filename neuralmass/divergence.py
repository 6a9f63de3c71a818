"""Parameter sets that diverge: how a run finds them and what ``simulate`` does with them.

A parameter set *diverges* when its state holds NaN or inf after some step. Sets never share
values (each has its own state and history; no backend reduces across sets), so a diverged
set carries NaN on its own while the others run on unchanged.

``first_nonfinite_step`` (P,) counts steps from 1, as the raw monitor's times do: ``n`` means
that the state at ``t = n * dt`` is the first non-finite one; -1 means finite throughout.
Every backend tracks it as it runs, so it is exact for every monitor: the Numba loops and the
JAX scan check the new state of each step, the CUDA kernel each thread's new state.

``simulate(..., on_divergence=...)`` then (:func:`resolve`):

- ``"warn"`` (default): every diverged set is NaN from the sample that holds its first
  non-finite step on; the finite sets are returned as computed; a
  :class:`~neuralmass.errors.DivergenceWarning` says how many sets diverged and names the
  first (step, region, state variable, parameter values).
- ``"ignore"``: the same, silently.
- ``"raise"``: :class:`~neuralmass.errors.SimulationError` naming the first.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import DivergenceWarning, ParameterError, SimulationError
from .plan import RunPlan

__all__ = ["ON_DIVERGENCE", "check_on_divergence", "resolve"]

ON_DIVERGENCE = ("warn", "raise", "ignore")


def check_on_divergence(on_divergence: object) -> str:
    """``on_divergence`` if it is one of :data:`ON_DIVERGENCE`, else a ParameterError."""
    if on_divergence not in ON_DIVERGENCE:
        raise ParameterError(f"on_divergence must be one of {', '.join(map(repr, ON_DIVERGENCE))}"
                             f", but got {on_divergence!r}")
    return on_divergence


def resolve(states: np.ndarray, exposures: np.ndarray, first_step: np.ndarray,
            plan: RunPlan, on_divergence: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``on_divergence`` (see the module docstring) to a run's output: returns
    ``(states, exposures, diverged)``, diverged sets NaN from their first non-finite sample
    on (the arrays are modified in place when writable, else copied)."""
    diverged = np.asarray(first_step) >= 0
    if not diverged.any():
        return states, exposures, diverged
    # the earliest step, the lowest set index among equals
    first_set = int(np.argmin(np.where(diverged, first_step, np.iinfo(np.int64).max)))
    where = _describe(states, plan, first_set, int(first_step[first_set]))
    hint = f"; try a smaller dt (now {plan.dt:g} ms) or check the parameters"
    if on_divergence == "raise":
        raise SimulationError(f"simulation diverged: {where}{hint}")
    states, exposures = (a if a.flags.writeable else a.copy() for a in (states, exposures))
    every = plan.monitor.every
    for p in np.flatnonzero(diverged):
        sample = (int(first_step[p]) - 1) // every
        states[sample:, ..., p] = np.nan
        exposures[sample:, ..., p] = np.nan
    if on_divergence == "warn":
        warnings.warn(DivergenceWarning(
            f"{int(diverged.sum())} of {diverged.size} parameter sets diverged and are NaN from "
            "their first non-finite sample on (Result.diverged, Result.first_nonfinite_step); "
            f"the first: {where}{hint}"), stacklevel=3)
    return states, exposures, diverged


def _describe(states: np.ndarray, plan: RunPlan, set_index: int, step: int) -> str:
    """Where set ``set_index`` first diverged: its value, step (or sample window), state
    variable, region and parameter values."""
    every = plan.monitor.every
    sample = (step - 1) // every
    if every == 1:
        when = f"step {step} (t = {step * plan.dt:g} ms)"
    else:
        when = (f"sample {sample} ({plan.monitor.name}, steps {sample * every + 1}-"
                f"{(sample + 1) * every}, t ≤ {(sample + 1) * every * plan.dt:g} ms)")
    bad = np.argwhere(~np.isfinite(states[sample, ..., set_index]))
    if bad.size:
        variable, region = (int(i) for i in bad[0])
        value = states[sample, variable, region, set_index]
        what = (f"first non-finite value ({value}) at {when}, state variable "
                f"{plan.model.state_names[variable]!r}, region {region} "
                f"({plan.connectivity.labels[region]})")
    else:  # non-finite within the window, finite again at its recorded sample
        what = f"first non-finite value at {when} (finite again when recorded)"
    swept = ", ".join(f"{n}={np.asarray(plan.params[n])[set_index]:g}" for n in plan.swept)
    return f"{what}, parameter set {set_index}" + (f" ({swept})" if swept else "")
