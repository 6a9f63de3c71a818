"""The monitors of a run in the flat arrays the Numba loops read
(:func:`._kernels.record_monitors`), and the per-monitor outputs cut back out of them."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...hemodynamics import kernel_time
from ...plan import RunPlan
from ._kernels import MONITOR_AVERAGE, MONITOR_BALLOON, MONITOR_BOLD, MONITOR_LAST

__all__ = ["MonitorLayout", "monitor_kind", "monitor_layout"]

_BALLOON_FIELDS = ("kappa", "gamma", "tau_o", "alpha", "E0", "V0", "k1", "k2", "k3")


@dataclasses.dataclass(frozen=True)
class MonitorLayout:
    """``table`` (n_monitors, 9) int64, ``variables`` int64, ``values`` (working dtype):
    the arguments of :func:`._kernels.record_monitors`; ``initial``: a tile's monitor
    values at the start (zeros; the Balloon–Windkessel rest state); ``out_size``: length of
    the flat output; ``shapes``/``offsets``: each monitor's (T, rows, N, P) output in it."""

    table: np.ndarray
    variables: np.ndarray
    values: np.ndarray
    initial: np.ndarray
    out_size: int
    shapes: tuple[tuple[int, int, int, int], ...]
    offsets: tuple[int, ...]

    def outputs(self, plan: RunPlan, out: np.ndarray, n_state: int) -> tuple:
        """Per monitor ``(states, exposures)`` views of the flat output ``out``; a BOLD or
        Balloon monitor's are ``(bold, None)``, (T, n_variables, N, P)."""
        result = []
        for monitor, shape, offset in zip(plan.monitors, self.shapes, self.offsets,
                                          strict=True):
            block = out[offset:offset + int(np.prod(shape))].reshape(shape)
            result.append((block, None) if monitor.hemodynamic
                          else (block[:, :n_state], block[:, n_state:]))
        return tuple(result)


def monitor_kind(monitor) -> int:
    """The ``MONITOR_*`` kind of a :class:`~neuralmass.monitors.MonitorPlan` (column 0 of the
    loops' monitor table, and ``NM_MONITOR_KINDS``: the loops are compiled for the kinds)."""
    if monitor.name == "bold":
        return MONITOR_BOLD
    if monitor.name == "balloon":
        return MONITOR_BALLOON
    return MONITOR_AVERAGE if monitor.average else MONITOR_LAST


def monitor_layout(plan: RunPlan, n_state: int, n_exposures: int, lanes: int,
                   record_block: int, dtype) -> MonitorLayout:
    """Lay out ``plan.monitors`` for tiles of ``lanes`` sets (``record_block``: the loops'
    NM_RECORD_BLOCK, the running totals of one node)."""
    n_bins = kernel_time().size
    N, P = plan.n_nodes, plan.n_sets
    rows, variables, values, shapes, offsets, initial = [], [], [], [], [], []
    state_at = out_at = 0
    for monitor in plan.monitors:
        n_var = monitor.n_out if monitor.hemodynamic else n_state + n_exposures
        constants = len(values)
        kind = monitor_kind(monitor)
        if kind == MONITOR_BOLD:
            size = N * n_var * lanes * (1 + n_bins)
            initial.append(np.zeros(size))
            values += [*monitor.weights, monitor.offset, monitor.scale]
        elif kind == MONITOR_BALLOON:
            size = N * n_var * 4 * lanes
            rest = np.ones((N, n_var, 4, lanes))
            rest[:, :, 0] = 0.0  # s = 0, f = v = q = 1 (hemodynamics.balloon_rest)
            initial.append(rest.reshape(-1))
            values += [getattr(monitor.constants, f) for f in _BALLOON_FIELDS]
            values.append(monitor.dt_s)
        elif kind == MONITOR_AVERAGE:
            size = N * record_block
            initial.append(np.zeros(size))
            values.append(float(monitor.every))
        else:
            size = 0
        rows.append([kind, monitor.every, out_at, state_at, n_var, len(variables),
                     monitor.per_bin, constants, P])
        variables += list(monitor.variables or ())
        shape = (monitor.n_samples, n_var, N, P)
        shapes.append(shape)
        offsets.append(out_at)
        state_at += size
        out_at += int(np.prod(shape))
    return MonitorLayout(
        table=np.array(rows, dtype=np.int64).reshape(-1, 9),
        variables=np.array(variables or [0], dtype=np.int64),
        values=np.array(values or [0.0], dtype=dtype),
        initial=np.concatenate(initial or [np.zeros(1)]).astype(dtype),
        out_size=max(1, out_at), shapes=tuple(shapes), offsets=tuple(offsets))
