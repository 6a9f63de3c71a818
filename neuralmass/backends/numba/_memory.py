"""How much memory a run needs, checked against what the machine has before it starts."""

from __future__ import annotations

import dataclasses

from ...errors import ParameterError

__all__ = ["MemoryEstimate", "available_bytes", "check_memory"]

_GIB = 2.0**30


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of the arrays a run allocates."""

    outputs: int
    history: int
    work: int  # tile states, running totals, parameter tables, edge lists
    output_shape: tuple[int, int, int, int]  # (samples, variables, regions, sets)
    itemsize: int

    @property
    def total(self) -> int:
        return self.outputs + self.history + self.work


def available_bytes() -> int | None:
    """Memory available to a new allocation (psutil, else /proc/meminfo), or None if
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


def check_memory(estimate: MemoryEstimate, available: int | None = None) -> None:
    """Raise :class:`ParameterError` when ``estimate`` does not fit in available memory."""
    available = available_bytes() if available is None else available
    if available is None or estimate.total <= available:
        return
    samples, variables, regions, sets = estimate.output_shape
    raise ParameterError(
        f"this run needs ~{estimate.total / _GIB:.3g} GiB (outputs "
        f"{estimate.outputs / _GIB:.3g} GiB: {samples} samples × {variables} variables × "
        f"{regions} regions × {sets} sets × {estimate.itemsize} bytes; delay history "
        f"{estimate.history / _GIB:.3g} GiB), but only {available / _GIB:.3g} GiB are "
        "available; use monitors='temporal_average:PERIOD' (or 'subsample:PERIOD') to record "
        "fewer samples, or fewer sets"
    )
