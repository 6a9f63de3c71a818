"""Monitors: what a simulation records, reduced inside the time loop.

- :class:`Raw`: the state after every step, at times ``dt, 2 dt, ..., n_steps dt``.
- :class:`Subsample`: the state every ``period`` ms (every ``m = period / dt`` steps), at times
  ``m dt, 2 m dt, ...`` (TVB's SubSample).
- :class:`TemporalAverage`: the mean of the ``m`` states of each window of ``period`` ms,
  stamped at the window's end minus half a period, ``(k m - m / 2) dt`` (TVB's
  TemporalAverage).

Monitors can be given as objects or as strings: ``"raw"``, ``"subsample:1.0"``,
``"temporal_average:1.0"`` (also ``"tavg:1.0"``); the number is the period in ms.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .errors import ParameterError

__all__ = ["Monitor", "Raw", "Subsample", "TemporalAverage", "MonitorPlan", "plan_monitor"]


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


Monitor = Raw | Subsample | TemporalAverage

_NAMES = {"raw": Raw, "subsample": Subsample, "temporal_average": TemporalAverage,
          "tavg": TemporalAverage}


@dataclasses.dataclass(frozen=True)
class MonitorPlan:
    """A monitor resolved against dt and n_steps.

    Attributes:
        name: ``"raw"``, ``"subsample"`` or ``"temporal_average"``.
        every: steps per recorded sample (m).
        average: True to record the window mean, False to record its last state.
        n_samples: number of samples recorded (``n_steps // every``).
        time: (n_samples,) sample times in ms.
    """

    name: str
    every: int
    average: bool
    n_samples: int
    time: np.ndarray

    @property
    def n_steps_simulated(self) -> int:
        """Steps actually run: the trailing steps after the last sample are not needed."""
        return self.n_samples * self.every


def _parse(spec: object) -> Monitor:
    if isinstance(spec, Raw | Subsample | TemporalAverage):
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
        f"unknown monitor {spec!r}; use 'raw', 'subsample:PERIOD', 'temporal_average:PERIOD' "
        "(PERIOD in ms) or neuralmass.monitors.Raw/Subsample/TemporalAverage"
    )


def plan_monitor(monitors: object, dt: float, n_steps: int) -> MonitorPlan:
    """Resolve the ``monitors`` argument of :func:`neuralmass.simulate` (one monitor, or a
    tuple holding one) into a :class:`MonitorPlan`."""
    if isinstance(monitors, list | tuple):
        if len(monitors) != 1:
            raise ParameterError(
                f"give exactly one monitor (e.g. monitors=('raw',)), got {len(monitors)}: "
                f"{monitors!r}; run once per monitor"
            )
        monitors = monitors[0]
    monitor = _parse(monitors)
    if isinstance(monitor, Raw):
        every, name = 1, "raw"
    else:
        name = "subsample" if isinstance(monitor, Subsample) else "temporal_average"
        period = monitor.period
        ratio = period / dt if period > 0 and math.isfinite(period) else float("nan")
        every = round(ratio) if math.isfinite(ratio) else 0
        if every < 1 or abs(ratio - every) > 1e-6 * max(1.0, ratio):
            raise ParameterError(
                f"the {name} period must be a positive multiple of dt={dt:g} ms, "
                f"but got {period!r} ms"
            )
    n_samples = n_steps // every
    if n_samples < 1:
        raise ParameterError(
            f"n_steps={n_steps} is shorter than one {name} period ({every} steps of {dt:g} ms)"
        )
    steps = np.arange(1, n_samples + 1) * every
    average = name == "temporal_average"
    time = (steps - every / 2.0) * dt if average else steps * dt
    return MonitorPlan(name, every, average, n_samples, time.astype(np.float64))
