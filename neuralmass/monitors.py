"""Monitors: what a simulation records, reduced inside the time loop.

- :class:`Raw`: the state after every step, at times ``dt, 2 dt, ..., n_steps dt``.
- :class:`Subsample`: the state every ``period`` ms (every ``m = period / dt`` steps), at times
  ``m dt, 2 m dt, ...`` (TVB's SubSample).
- :class:`TemporalAverage`: the mean of the ``m`` states of each window of ``period`` ms,
  stamped at the window's end minus half a period, ``(k m - m / 2) dt`` (TVB's
  TemporalAverage).
- :class:`Bold`: tvb-library's ``monitors.Bold``: the signal averaged over 4-ms bins, a ring
  buffer of the last 5000 bins (20 s) per node, set and variable, convolved with an HRF kernel
  every ``period`` ms (:mod:`neuralmass.hemodynamics`; the same numbers as the offline
  :func:`neuralmass.metrics.bold_hrf`), at times ``period, 2 period, ...``.
- :class:`Balloon`: the Balloon–Windkessel ODE stepped (Heun) with the signal at every time
  step, 4 values per node, set and variable; its BOLD every ``period`` ms (the numbers of
  :func:`neuralmass.metrics.bold_balloon`).

Monitors can be given as objects or as strings: ``"raw"``, ``"subsample:1.0"``,
``"temporal_average:1.0"`` (also ``"tavg:1.0"``), ``"bold:2000"``, ``"balloon:720"``; the number
is the period in ms. Several monitors (a tuple) are all reduced in one run and give a tuple of
Results, one per monitor, in the order given (TVB's convention).

What BOLD is computed from: ``variables=None`` every state variable (as TVB's monitor, whose
variables of interest are the model's), or the state variables and exposures named. Its Result
holds the BOLD of each (state variables in ``data``, exposures in ``exposures``; an exposure
that is just a monitored state variable is copied).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import hemodynamics as hd
from .errors import ParameterError

__all__ = ["Monitor", "Raw", "Subsample", "TemporalAverage", "Bold", "Balloon", "MonitorPlan",
           "monitor_labels", "period_steps", "plan_monitors", "steps_simulated"]


@dataclasses.dataclass(frozen=True)
class Raw:
    """Every step."""


@dataclasses.dataclass(frozen=True)
class Subsample:
    """Every ``period`` ms (a multiple of dt)."""

    period: float


@dataclasses.dataclass(frozen=True)
class TemporalAverage:
    """Mean over consecutive windows of ``period`` ms (a multiple of dt)."""

    period: float = 0.9765625  # TVB's default (1024 Hz)


@dataclasses.dataclass(frozen=True)
class Bold:
    """tvb-library's HRF BOLD monitor every ``period`` ms (a multiple of dt; 4 ms must be a
    multiple of dt too). ``kernel``: a name of :data:`neuralmass.hemodynamics.HRF_KERNELS` or
    a kernel object; ``variables``: names of state variables or exposures (default: every
    state variable)."""

    period: float = 2000.0
    kernel: object = "first_order_volterra"
    variables: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Balloon:
    """Balloon–Windkessel BOLD every ``period`` ms (a multiple of dt). ``preset``: a name of
    :data:`neuralmass.hemodynamics.BALLOON_PRESETS` or a ``BalloonConstants``;
    ``variables`` as for :class:`Bold`."""

    period: float = 2000.0
    preset: object = "friston2003"
    variables: tuple[str, ...] | None = None


Monitor = Raw | Subsample | TemporalAverage | Bold | Balloon

_NAMES = {"raw": Raw, "subsample": Subsample, "temporal_average": TemporalAverage,
          "tavg": TemporalAverage, "bold": Bold, "balloon": Balloon}
_KINDS = {Raw: "raw", Subsample: "subsample", TemporalAverage: "temporal_average",
          Bold: "bold", Balloon: "balloon"}


@dataclasses.dataclass(frozen=True, eq=False)
class MonitorPlan:
    """A monitor resolved against dt, n_steps and the model.

    Attributes:
        name: ``"raw"``, ``"subsample"``, ``"temporal_average"``, ``"bold"`` or ``"balloon"``.
        every: steps per recorded sample (m).
        average: True to record the window mean (temporal average), else the last state.
        n_samples: number of samples recorded (``n_steps // every``).
        time: (n_samples,) sample times in ms.
        variables: for ``bold``/``balloon``, the record indices BOLD is computed from
            (``v < n_state``: state variable v; else exposure ``v - n_state``); ``None`` for
            the others (every state variable and exposure).
        state_names, exposure_names: the names of the Result's ``data`` and ``exposures``
            rows; ``copies``: (exposure row, data row) of exposures that are a monitored
            state variable (copied after the run).
        per_bin: (``bold``) steps per 4-ms bin; weights: (5000,) the kernel's lag weights
            (:func:`neuralmass.hemodynamics.hrf_lag_weights`); offset, scale: TVB's output
            scaling. constants: (``balloon``) the ``BalloonConstants``; dt_s: dt in s.
    """

    name: str
    every: int
    average: bool
    n_samples: int
    time: np.ndarray
    variables: tuple[int, ...] | None = None
    state_names: tuple[str, ...] | None = None
    exposure_names: tuple[str, ...] | None = None
    copies: tuple[tuple[int, int], ...] = ()
    per_bin: int = 0
    weights: np.ndarray | None = None
    offset: float = 0.0
    scale: float = 1.0
    constants: hd.BalloonConstants | None = None
    dt_s: float = 0.0

    @property
    def n_steps_simulated(self) -> int:
        """Steps actually run: the trailing steps after the last sample are not needed."""
        return self.n_samples * self.every

    @property
    def hemodynamic(self) -> bool:
        return self.name in ("bold", "balloon")

    @property
    def n_out(self) -> int:
        """Rows per sample of a hemodynamic monitor's output (its variables)."""
        return len(self.variables or ())


def _parse(spec: object) -> Monitor:
    if isinstance(spec, Raw | Subsample | TemporalAverage | Bold | Balloon):
        return spec
    if isinstance(spec, str):
        name, _, period = spec.partition(":")
        cls = _NAMES.get(name.strip().lower())
        if cls is not None:
            if cls is Raw:
                if period:
                    raise ParameterError(f"monitor 'raw' takes no period, got {spec!r}")
                return Raw()
            try:
                return cls(float(period)) if period else cls()
            except (TypeError, ValueError):
                pass
    raise ParameterError(
        f"unknown monitor {spec!r}; use 'raw', 'subsample:PERIOD', 'temporal_average:PERIOD', "
        "'bold:PERIOD', 'balloon:PERIOD' (PERIOD in ms) or a neuralmass.monitors object "
        "(Raw, Subsample, TemporalAverage, Bold, Balloon)"
    )


def monitor_labels(monitors: object) -> list[str]:
    """A short unique name per monitor, in order, for the files and store groups that hold
    each one's output: its kind (``"raw"``, ``"subsample"``, ``"temporal_average"``,
    ``"bold"``, ``"balloon"``), and where a kind repeats ``<kind>-<i>`` with i its index
    among the monitors of that kind (``bold-0``, ``bold-1``).

    ``monitors``: as for :func:`plan_monitors` (one monitor or a tuple or list of them:
    strings, monitor objects or :class:`MonitorPlan` objects).
    """
    specs = tuple(monitors) if isinstance(monitors, list | tuple) else (monitors,)
    kinds = [s.name if isinstance(s, MonitorPlan) else _KINDS[type(_parse(s))] for s in specs]
    seen = dict.fromkeys(kinds, 0)
    labels = []
    for kind in kinds:
        labels.append(kind if kinds.count(kind) == 1 else f"{kind}-{seen[kind]}")
        seen[kind] += 1
    return labels


def period_steps(what: str, period: object, dt: float) -> int:
    """``period / dt`` as a positive integer, or a ParameterError naming ``what``."""
    try:
        period = float(period)
    except (TypeError, ValueError):
        period = float("nan")
    ratio = period / dt if period > 0 and math.isfinite(period) else float("nan")
    every = round(ratio) if math.isfinite(ratio) else 0
    if every < 1 or abs(ratio - every) > 1e-6 * max(1.0, ratio):
        raise ParameterError(f"the {what} must be a positive multiple of dt={dt:g} ms, "
                             f"but got {period!r} ms")
    return every


def _variables(monitor, model) -> tuple[tuple[int, ...], tuple, tuple, tuple]:
    """(record indices, state names, exposure names, copies) of a hemodynamic monitor."""
    states = tuple(model.state_names) if model is not None else ()
    exposures = tuple(model.exposure_names) if model is not None else ()
    names = monitor.variables
    if names is None:
        names = states
    elif isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ParameterError(f"{_KINDS[type(monitor)]} variables must name at least one state "
                             "variable or exposure, but got ()")
    plain = {}
    if model is not None:
        by_symbol = dict(zip(model.state_symbols, states, strict=True))
        plain = {e.name: by_symbol[e.expression] for e in model.exposures
                 if e.expression in by_symbol}
    chosen_states, chosen_exposures = [], []
    for name in names:
        if name in states:
            chosen_states.append(name)
        elif name in exposures:
            chosen_exposures.append(name)
        else:
            raise ParameterError(
                f"{_KINDS[type(monitor)]} variable {name!r} is neither a state variable "
                f"({', '.join(states)}) nor an exposure ({', '.join(exposures)})")
        if len(set(chosen_states + chosen_exposures)) != len(chosen_states + chosen_exposures):
            raise ParameterError(f"{_KINDS[type(monitor)]} variables name {name!r} twice")
    # an exposure that is a chosen state variable is a copy, not computed again
    copies, computed_exposures = [], []
    for name in chosen_exposures:
        if plain.get(name) in chosen_states:
            copies.append(name)
        else:
            computed_exposures.append(name)
    if monitor.variables is None:
        copies += [e for e, s in plain.items() if s in chosen_states and e not in copies]
    exposure_names = tuple(e for e in exposures if e in computed_exposures or e in copies)
    record = tuple(states.index(s) for s in chosen_states) + tuple(
        len(states) + exposures.index(e) for e in exposure_names if e in computed_exposures)
    copy_rows = tuple((exposure_names.index(e), chosen_states.index(plain[e])) for e in copies)
    return record, tuple(chosen_states), exposure_names, copy_rows


def _plan_one(monitor: Monitor, dt: float, n_steps: int, model) -> MonitorPlan:
    name = _KINDS[type(monitor)]
    every = 1 if isinstance(monitor, Raw) else period_steps(f"{name} period", monitor.period, dt)
    extra = {}
    if isinstance(monitor, Bold | Balloon):  # the monitor's own fields first, then n_steps
        variables, state_names, exposure_names, copies = _variables(monitor, model)
        extra = dict(variables=variables, state_names=state_names,
                     exposure_names=exposure_names, copies=copies)
        if isinstance(monitor, Bold):
            kernel = hd.hrf_kernel(monitor.kernel)
            per_bin = period_steps("4-ms BOLD bin (tvb-library's interim period)",
                             hd.INTERIM_PERIOD_MS, dt)
            extra.update(per_bin=per_bin, weights=hd.hrf_lag_weights(kernel),
                         offset=float(kernel.offset), scale=float(kernel.scale))
        else:
            extra.update(constants=hd.balloon_constants(monitor.preset), dt_s=dt / 1000.0)
    n_samples = n_steps // every
    if n_samples < 1:
        raise ParameterError(
            f"n_steps={n_steps} is shorter than one {name} period ({every} steps of {dt:g} ms)"
        )
    steps = np.arange(1, n_samples + 1) * every
    average = name == "temporal_average"
    time = ((steps - every / 2.0) * dt if average else steps * dt).astype(np.float64)
    return MonitorPlan(name, every, average, n_samples, time, **extra)


def plan_monitors(monitors: object, dt: float, n_steps: int, model=None
                  ) -> tuple[MonitorPlan, ...]:
    """Resolve the ``monitors`` argument of :func:`neuralmass.simulate` (one monitor, or a
    tuple or list of them) into one :class:`MonitorPlan` per monitor, in order. ``model``
    resolves the variables of ``bold``/``balloon`` monitors."""
    specs = tuple(monitors) if isinstance(monitors, list | tuple) else (monitors,)
    if not specs:
        raise ParameterError("monitors must name at least one monitor, but got ()")
    return tuple(_plan_one(_parse(spec), dt, n_steps, model) for spec in specs)


def steps_simulated(plans: tuple[MonitorPlan, ...]) -> int:
    """Steps a run of these monitors needs: up to the last sample of any of them."""
    return max(m.n_steps_simulated for m in plans)
