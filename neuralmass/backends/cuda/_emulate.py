"""Run the printed CUDA kernel on the CPU: the same source compiled as host C++.

The generated source is compiled with ``g++`` after ``cuda_shim.h``, which defines the CUDA
keywords and built-ins the kernels use (``__global__``, ``__constant__``, ``blockIdx``,
``threadIdx``, ``blockDim``, ``__umulhi``) and a launcher that runs a 2-D grid: blocks in
parallel (OpenMP), the threads of a block one after the other — exact, since the threads of a
launch share nothing (a step reads only rows that earlier launches wrote). The shared library is
loaded with ``ctypes`` and driven by the same host loop as the GPU (:func:`._driver.run_on`), so
continuous integration checks the numbers of the kernel that runs on a GPU without one."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile
from importlib import resources

import numpy as np

from ...errors import BackendUnavailableError
from ...plan import RunPlan
from .._cache import cache_directory
from ._driver import run_on
from ._kernel import KernelSpec

__all__ = ["EmulatedDevice", "compile_emulation", "emulate"]

_SHIM = "cuda_shim.h"


def _compiler() -> str:
    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if name and shutil.which(name):
            return name
    raise BackendUnavailableError("emulating the CUDA backend needs a C++ compiler (g++ or "
                                  "clang++) on the PATH")


def _flags(compiler: str) -> list[str]:
    flags = ["-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off",
             "-Wno-unknown-pragmas"]
    probe = subprocess.run([compiler, "-fopenmp", "-x", "c++", "-E", "-", "-o", os.devnull],
                           input=b"", capture_output=True)
    return flags + (["-fopenmp"] if probe.returncode == 0 else [])


@functools.cache
def _compile_library(source: str, name: str) -> str:
    compiler = _compiler()
    flags = _flags(compiler)
    shim = resources.files(__package__) / _SHIM
    shim_text = shim.read_text()
    key = hashlib.sha256("\0".join([source, shim_text, compiler, *flags]).encode()).hexdigest()
    library = cache_directory("cuda-emulation") / f"{key[:32]}.so"
    if library.exists():
        return str(library)
    with tempfile.TemporaryDirectory(dir=library.parent) as folder:
        folder = pathlib.Path(folder)
        (folder / _SHIM).write_text(shim_text)
        (folder / "kernel.cu").write_text(source)
        # the translation unit: the shim, the printed kernel unchanged, the exported launcher
        (folder / "emulate.cpp").write_text(
            f'#include "{_SHIM}"\n#include "kernel.cu"\nNM_EMULATE({name})\n')
        built = folder / "kernel.so"
        result = subprocess.run([compiler, *flags, "-o", str(built), str(folder / "emulate.cpp")],
                                capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"compiling the emulated CUDA kernel failed:\n{result.stderr}")
        os.replace(built, library)  # atomic: concurrent compilations agree
    return str(library)


def compile_emulation(spec: KernelSpec) -> ctypes.CDLL:
    """Compile ``spec.source`` as host C++ with the shim (cached on disk by a hash of the source,
    the shim and the compiler flags) and load it."""
    return ctypes.CDLL(_compile_library(spec.source, spec.name))


_C_TYPES = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.uint32): ctypes.c_uint32,
            np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}


class EmulatedDevice:
    """The :class:`._driver.Device` of the host emulation: device arrays are NumPy arrays."""

    def __init__(self, *, free_bytes: int = 1 << 40):
        self._free = free_bytes
        self._library = None
        self._spec = None

    def load(self, spec: KernelSpec) -> None:
        self._library = compile_emulation(spec)
        self._spec = spec
        self._launch = getattr(self._library, f"{spec.name}_launch")
        self._launch.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                                 ctypes.POINTER(ctypes.c_void_p)]
        self._launch.restype = None

    def set_constants(self, arrays: dict[str, np.ndarray]) -> None:
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            if array.size:
                target = (_C_TYPES[array.dtype] * array.size).in_dll(self._library, name)
                ctypes.memmove(target, array.ctypes.data, array.nbytes)

    def upload(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array).copy()

    def ring(self, shape, past: np.ndarray, rows) -> np.ndarray:
        history = np.zeros(shape, dtype=past.dtype)
        if rows is None:
            history[:] = past
        else:
            history[rows] = past
        return history

    def empty(self, shape, dtype) -> np.ndarray:
        # poisoned, so that a value the kernel fails to write shows up as NaN
        return np.full(shape, np.nan, dtype=dtype)

    def launch(self, grid, block: int, launches: list) -> None:
        grid_x, grid_y = (grid, 1) if isinstance(grid, int) else grid
        for arguments in launches:
            keep = []  # the ctypes values must outlive the call
            pointers = (ctypes.c_void_p * len(arguments))()
            for index, argument in enumerate(arguments):
                if isinstance(argument, np.ndarray):
                    value = ctypes.c_void_p(argument.ctypes.data)
                else:
                    value = _C_TYPES[np.dtype(type(argument))](argument)
                keep.append(value)
                pointers[index] = ctypes.cast(ctypes.pointer(value), ctypes.c_void_p)
            self._launch(grid_x, grid_y, block, pointers)

    def download(self, array: np.ndarray, out: np.ndarray) -> None:
        out[...] = array[: out.shape[0]]

    def finish(self) -> None:
        pass

    def free_bytes(self) -> int:
        return self._free

    def multiprocessors(self) -> int:
        return os.cpu_count() or 1


def emulate(plan: RunPlan, *, edges: str = "auto", unroll: int | None = None, block: int = 32,
            batch_sets: int | None = None, chunk_samples: int | None = None,
            free_bytes: int = 1 << 40, progress: bool = False,
            return_first_nonfinite: bool = False) -> tuple[np.ndarray, ...]:
    """Run ``plan`` with the CUDA kernel compiled for the CPU: ``(states, exposures)`` (and
    with ``return_first_nonfinite`` the first non-finite steps) as
    :func:`neuralmass.backends.cuda.run` returns them.

    For testing and for reading what the GPU would compute; it is not fast. ``block``,
    ``batch_sets``, ``chunk_samples`` and ``free_bytes`` (the device memory the batches must
    fit) set the launch geometry, so that tests can cover partial blocks, several batches and
    several chunks.
    """
    return run_on(EmulatedDevice(free_bytes=free_bytes), plan, edges=edges, unroll=unroll,
                  block=block, batch_sets=batch_sets, chunk_samples=chunk_samples,
                  progress=progress, label="cuda (emulated)",
                  return_first_nonfinite=return_first_nonfinite)
