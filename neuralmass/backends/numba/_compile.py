"""Compile a generated model module with the loops of :mod:`._kernels`, cached on disk.

Each generated module is written to ``<cache>/numba/<sha256 of its source>.py`` and imported
from there; the loops are compiled with ``numba.njit(cache=True)`` *as functions of that
file* (their code object is re-homed to it and their globals are the module's), so Numba's
own cache sits next to it in ``<cache>/numba/__pycache__`` and a second process loads the
machine code instead of compiling. The source carries a fingerprint of the loop code, so a
change to the loops gives a new file.

``<cache>`` is :func:`neuralmass.backends._cache.cache_root` (``$NEURALMASS_CACHE_DIR``, else
the user's cache folder); when it is not writable, a directory under the system's temporary
directory is used.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import types
from pathlib import Path

import numba
import numpy as np
from numba.core import config as numba_config

from ... import hemodynamics as _hemodynamics
from ... import random as _random
from .._cache import cache_directory
from . import _kernels, _lanes, _math

__all__ = ["loop_fingerprint", "write_module", "load_module", "compile_kernels"]

_MODEL_FUNCTIONS = ("nm_zeros", "nm_edge", "nm_node", "nm_channels", "nm_exposures",
                    "nm_record")


@functools.lru_cache(maxsize=1)
def loop_fingerprint() -> str:
    """A hash of everything the compiled loops depend on besides the generated source."""
    digest = hashlib.sha256()
    for module in (_kernels, _lanes, _math, _random, _hemodynamics):
        digest.update(inspect.getsource(module).encode())
    digest.update(f"numba {numba.__version__} numpy {np.__version__}".encode())
    return digest.hexdigest()[:16]


def write_module(source: str) -> Path:
    """``<cache>/numba/<sha256 of source>.py``, written if missing (write-then-rename, so
    that a concurrent process never imports half a file)."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    directory = cache_directory("numba")
    path = directory / f"{digest}.py"
    if not path.exists() or path.read_text() != source:
        temporary = directory / f".{digest}.{os.getpid()}.tmp"
        temporary.write_text(source)
        os.replace(temporary, path)
    return path


def load_module(source: str) -> types.ModuleType:
    """Import ``source`` from ``<cache>/numba/<sha256>.py``, writing the file if needed."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    name = f"neuralmass_numba_{digest[:24]}"
    if name in sys.modules:
        return sys.modules[name]
    path = write_module(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


@contextlib.contextmanager
def slp_vectorization():
    """Let LLVM's SLP vectoriser run while our kernels compile (Numba leaves it off by
    default: ``NUMBA_SLP_VECTORIZE``); it turns the side-by-side lanes of the generated
    functions into SIMD instructions. Restored afterwards."""
    saved = numba_config.SLP_VECTORIZE
    numba_config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba_config.SLP_VECTORIZE = saved


def _rebind(function: types.FunctionType, module: types.ModuleType) -> types.FunctionType:
    """``function`` with ``module`` as its globals and its file, so Numba caches it there."""
    code = function.__code__.replace(co_filename=module.__file__)
    rebound = types.FunctionType(code, module.__dict__, function.__name__,
                                 function.__defaults__)
    rebound.__qualname__ = function.__qualname__
    rebound.__module__ = module.__name__
    rebound.__doc__ = function.__doc__
    return rebound


def _with_globals(function: types.FunctionType, names: dict) -> types.FunctionType:
    """``function`` reading ``names`` as globals (a compiled helper in place of a Python one)."""
    return types.FunctionType(function.__code__, {**function.__globals__, **names},
                              function.__name__, function.__defaults__)


#: the Balloon–Windkessel constants as Numba sees them (the fields of BalloonConstants that
#: the right-hand side reads)
BalloonValues = collections.namedtuple(
    "BalloonValues", ["kappa", "gamma", "tau_o", "alpha", "E0", "V0", "k1", "k2", "k3"])
_MONITOR_KINDS = ("MONITOR_LAST", "MONITOR_AVERAGE", "MONITOR_BOLD", "MONITOR_BALLOON")

_BINDING = threading.Lock()


def compile_kernels(module: types.ModuleType) -> dict[str, object]:
    """The loops of :mod:`._kernels`, specialised to ``module`` (lazily compiled, cached)."""
    with _BINDING:
        return _bind_kernels(module)


def _bind_kernels(module: types.ModuleType) -> dict[str, object]:
    namespace = module.__dict__
    if "nm_kernels" in namespace:
        return namespace["nm_kernels"]
    for name in _MODEL_FUNCTIONS:
        namespace[name] = numba.njit(inline="always")(namespace[name])
    namespace.update(np=np, load_block=_lanes.load_block,
                     store_block=_lanes.store_block, channel_sums=_lanes.channel_sums,
                     block_channel_sums=_lanes.block_channel_sums,
                     normals4=_random.normals4, nm_sin=_math.sine, nm_cos=_math.cosine,
                     nm_max=numba.njit(inline="always")(_math.nan_maximum),
                     nm_min=numba.njit(inline="always")(_math.nan_minimum),
                     BalloonValues=BalloonValues, HRF_BINS=_hemodynamics.kernel_time().size,
                     nm_balloon_dfun=numba.njit(error_model="numpy")(
                         _hemodynamics.balloon_dfun),
                     **{name: getattr(_kernels, name) for name in _MONITOR_KINDS})
    # the hemodynamics functions call balloon_dfun by name: compile them against it
    namespace["nm_balloon_step"] = numba.njit(error_model="numpy")(_with_globals(
        _hemodynamics.balloon_heun_step, {"balloon_dfun": namespace["nm_balloon_dfun"]}))
    namespace["nm_balloon_bold"] = numba.njit(error_model="numpy")(_hemodynamics.balloon_bold)
    for function in _kernels.CALLED:
        namespace[function.__name__] = numba.njit(nogil=True)(_rebind(function, module))
    for function in _kernels.HELPERS:
        namespace[function.__name__] = numba.njit(inline="always")(_rebind(function, module))
    kernels = {
        function.__name__: numba.njit(cache=True, nogil=True)(_rebind(function, module))
        for function in _kernels.KERNELS
    }
    namespace["nm_kernels"] = kernels
    return kernels
