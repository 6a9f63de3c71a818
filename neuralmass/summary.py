"""Per-set summaries of a simulated variable over time, aware of phase variables.

An ordinary variable x (T, N, P) is summarised per region by its mean or its standard deviation
(ddof 0) over time. The mean of a phase (a state variable declared ``periodic="true"``, such
as Kuramoto's theta, integrated unwrapped) grows with t and says nothing; a phase is summarised
instead by the Kuramoto order parameter over regions R(t) = |mean_j exp(i theta_j(t))|
(:func:`neuralmass.metrics.kuramoto_order`): its time mean (synchrony) and its standard
deviation over time (metastability), one value per set.

Correlations (FC) of a phase are those of sin(theta) (:func:`observed`), the signal
Kuramoto-network studies correlate (Cabral et al. 2011); an unwrapped angle's FC is ~1 for
every pair, as each angle grows nearly linearly in time.

Used by ``neuralmass run``'s table, ``nm.sweep(reduce="mean"/"std")`` and ``neuralmass plot``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import ParameterError

__all__ = ["STATISTICS", "periodic_names", "statistic_key", "time_statistic",
           "set_statistic", "observed"]

STATISTICS = ("mean", "std")


def periodic_names(attrs: Mapping) -> tuple[str, ...]:
    """The phase variables recorded in a run's metadata or a file's attributes (the
    ``"periodic"`` entry, comma-joined; absent in files written before it existed)."""
    text = str(attrs.get("periodic", "") or "")
    return tuple(text.split(",")) if text else ()


def statistic_key(name: str, statistic: str, periodic: bool) -> tuple[str, tuple[str, ...]]:
    """(data-variable name, dims) under which :func:`time_statistic` of ``name`` is stored:
    ``"<name>_<statistic>"`` over ``("region", "set")``, or for a phase
    ``"<name>_order_<statistic>"`` over ``("set",)``."""
    if statistic not in STATISTICS:
        raise ParameterError(f"statistic must be one of {', '.join(STATISTICS)}, "
                         f"but got {statistic!r}")
    if periodic:
        return f"{name}_order_{statistic}", ("set",)
    return f"{name}_{statistic}", ("region", "set")


def time_statistic(x, statistic: str, periodic: bool) -> np.ndarray:
    """``statistic`` ("mean" or "std") over time of x (T, N, P): (N, P), one value per region
    and set; for a phase, of the order parameter R(t): (P,). NaN stays NaN (a diverged set)."""
    x = np.asarray(x, dtype=np.float64)
    if periodic:
        from .metrics import kuramoto_order

        x = np.asarray(kuramoto_order(x))  # (T, P)
    return np.mean(x, axis=0) if statistic == "mean" else np.std(x, axis=0)


def set_statistic(x, statistic: str, periodic: bool) -> np.ndarray:
    """One value per set (P,): :func:`time_statistic` averaged over regions (an ordinary
    variable's mean over time and regions, or its std over time averaged over regions)."""
    value = time_statistic(x, statistic, periodic)
    return value if periodic else value.mean(axis=0)


def observed(x, periodic: bool):
    """The signal whose FC is computed: x itself, or sin(x) for a phase (same shape)."""
    return np.sin(x) if periodic else x
