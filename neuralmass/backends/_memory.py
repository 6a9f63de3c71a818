"""How much memory a run needs, checked against what the machine has before it starts.

Shared by the backends: each estimates its own arrays (:class:`MemoryEstimate`);
:func:`check_memory` refuses a run that cannot fit with a :class:`ParameterError` that gives
the figures and what to change.
"""

from __future__ import annotations

import dataclasses

from ..errors import ParameterError

__all__ = ["MemoryEstimate", "available_bytes", "check_memory", "refuse"]

_GIB = 2.0**30


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of the arrays a run allocates.

    ``residuals``: what ``jax.grad`` keeps for the backward pass (checkpointed states and
    per-step residuals), 0 for a run that is not differentiated."""

    outputs: int
    history: int
    work: int  # tile states, running totals, parameter tables, edge lists
    output_shape: tuple[int, int, int, int]  # (samples, variables, regions, sets)
    itemsize: int
    residuals: int = 0

    @property
    def total(self) -> int:
        return self.outputs + self.history + self.work + self.residuals


def available_bytes() -> int | None:
    """Host memory available to a new allocation (psutil, else /proc/meminfo), or None if
    unknown."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(estimate: MemoryEstimate, available: int | None = None,
                 where: str = "") -> None:
    """Raise :class:`ParameterError` when ``estimate`` does not fit in ``available`` bytes
    (default: the host's, :func:`available_bytes`); ``where`` names the memory (" on cuda:0")."""
    available = available_bytes() if available is None else available
    if available is not None and estimate.total > available:
        refuse(estimate, available, where)


def refuse(estimate: MemoryEstimate, available: int, where: str = "") -> None:
    """Raise the :class:`ParameterError` saying that ``estimate`` needs more than
    ``available`` bytes, which parts, and what to change."""
    samples, variables, regions, sets = estimate.output_shape
    residuals = (f"; gradient checkpoints {estimate.residuals / _GIB:.3g} GiB"
                 if estimate.residuals else "")
    delays = (", or a larger global_speed (the history holds the longest delay)"
              if estimate.history > estimate.outputs else "")
    raise ParameterError(
        f"this run needs ~{estimate.total / _GIB:.3g} GiB (outputs "
        f"{estimate.outputs / _GIB:.3g} GiB: {samples} samples × {variables} variables × "
        f"{regions} regions × {sets} sets × {estimate.itemsize} bytes; delay history "
        f"{estimate.history / _GIB:.3g} GiB{residuals}), but only {available / _GIB:.3g} GiB "
        f"are available{where}; use monitors='temporal_average:PERIOD' (or "
        f"'subsample:PERIOD') to record fewer samples, or fewer sets{delays}"
    )
