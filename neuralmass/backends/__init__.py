"""Backends lower the model IR and run a :class:`~neuralmass.plan.RunPlan`.

Each backend package exposes ``run(plan, *, progress=False) -> (states, exposures)`` with
shapes (T, n_state, N, P) and (T, n_exposure, N, P), and ``generated_source(plan) -> str``.
``run(..., return_first_nonfinite=True)`` also returns the (P,) first non-finite step of each
set, or ``None`` when the values are traced (see :mod:`neuralmass.divergence`).
Backends are imported on first use, so a missing optional dependency only matters to the
backend that needs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import ParameterError

__all__ = ["BACKENDS", "DEFAULT_DTYPES", "get_backend"]

BACKENDS = ("jax", "numba", "cuda")
# float32 is the default on the GPU, float64 on the CPU (design.md §4).
DEFAULT_DTYPES = {"jax": "float64", "numba": "float64", "cuda": "float32"}


def get_backend(name: str) -> ModuleType:
    """The backend module called ``name`` (one of :data:`BACKENDS`)."""
    if name not in BACKENDS:
        raise ParameterError(f"unknown backend {name!r}; valid backends are {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name}")
