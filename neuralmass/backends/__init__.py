"""Backends lower the model IR and run a :class:`~neuralmass.plan.RunPlan`.

Each backend package exposes ``run(plan, *, progress=False) -> (states, exposures)`` with
shapes (T, n_state, N, P) and (T, n_exposure, N, P), and ``generated_source(plan) -> str``.
``run(..., return_first_nonfinite=True)`` also returns the (P,) first non-finite step of each
set, or ``None`` when the values are traced (see :mod:`neuralmass.divergence`).
Backends are imported on first use, so a missing optional dependency only matters to the
backend that needs it. ``backend="auto"`` is resolved by :func:`choose_backend`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from types import ModuleType

from ..errors import ParameterError

__all__ = ["BACKENDS", "DEFAULT_DTYPES", "choose_backend", "get_backend", "gpu_available"]

BACKENDS = ("jax", "numba", "cuda")
# float32 is the default on the GPU, float64 on the CPU (design.md §4).
DEFAULT_DTYPES = {"jax": "float64", "numba": "float64", "cuda": "float32"}


def choose_backend(values: Iterable[object]) -> str:
    """The backend ``backend="auto"`` runs: ``"jax"`` when any of ``values`` (parameter values,
    initial conditions) is a JAX tracer (inside ``jax.grad``/``jit``/``vmap``), else ``"cuda"``
    when CuPy and an NVIDIA GPU are present, else ``"numba"``."""
    jax = sys.modules.get("jax")  # nothing can be traced unless JAX was imported
    if jax is not None and any(isinstance(v, jax.core.Tracer) for v in values):
        return "jax"
    return "cuda" if gpu_available() else "numba"


def gpu_available() -> bool:
    """True when CuPy is installed and sees at least one GPU; never raises."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # an ImportError of a broken install, CUDARuntimeError without a driver
        return False


def get_backend(name: str) -> ModuleType:
    """The backend module called ``name`` (one of :data:`BACKENDS`)."""
    if name not in BACKENDS:
        raise ParameterError(f"unknown backend {name!r}; valid backends are auto, "
                             f"{', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name}")
