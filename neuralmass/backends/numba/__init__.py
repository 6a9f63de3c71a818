"""The Numba backend: compiled CPU sweeps, parameter sets as SIMD lanes, tiles over cores.

The model's maths is printed by SymPy as a small Python module (:mod:`._lower`), cached on
disk by the hash of its source, and compiled together with loops written once for every model
(:mod:`._kernels`). ``simulate(..., backend="numba")`` calls :func:`run`;
:func:`generated_source` shows the printed module (``neuralmass codegen MODEL --target
numba``).
"""

from __future__ import annotations

from .._cache import cache_root as cache_root
from ._run import generated_source as generated_source
from ._run import prepare as prepare
from ._run import run as run

__all__ = ["run", "generated_source", "prepare", "cache_root"]
