"""The CuPy device: NVRTC compilation (cached by source hash), streams, double-buffered copies."""

from __future__ import annotations

import numpy as np

from ...errors import BackendUnavailableError
from ._kernel import KernelSpec

__all__ = ["CuPyDevice", "require_cupy"]

_UNAVAILABLE = "backend='cuda' needs CuPy and an NVIDIA GPU; install neuralmass[cuda]"
_MODULES: dict[str, object] = {}  # sha256 of the source → cupy.RawModule (CuPy caches on disk)


def require_cupy():
    """The ``cupy`` module, or :class:`BackendUnavailableError` without CuPy or a GPU."""
    try:
        import cupy
    except ImportError as error:
        raise BackendUnavailableError(_UNAVAILABLE) from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError when the driver finds no device
        raise BackendUnavailableError(f"{_UNAVAILABLE} ({error})") from error
    if count < 1:
        raise BackendUnavailableError(_UNAVAILABLE)
    return cupy


class CuPyDevice:
    """:class:`._driver.Device` on the current CuPy device.

    Kernels run on one stream; each chunk's output is copied to pinned host memory on a second
    stream while the next chunk runs, and from there into the result. A device buffer is not
    written again before its copy is done (events order the two streams).
    """

    def __init__(self, *, options: tuple[str, ...] = ()):
        cp = self.cupy = require_cupy()
        self.options = ("--std=c++17", *options)
        self.compute = cp.cuda.Stream(non_blocking=True)
        self.copy = cp.cuda.Stream(non_blocking=True)
        self._pending: list[tuple[object, object, np.ndarray, np.ndarray]] = []
        self._copy_done: dict[int, object] = {}  # id(device array) → event of its last copy
        self._timings: list[tuple[object, object]] = []
        self.kernel_seconds = 0.0  # time spent in the kernel, summed over launches

    # ------------------------------------------------------------------ compilation
    def load(self, spec: KernelSpec) -> None:
        module = _MODULES.get(spec.digest)
        if module is None:
            module = self.cupy.RawModule(code=spec.source, options=self.options)
            module.get_function(spec.name)  # compiles (NVRTC), raising with the log if it fails
            _MODULES[spec.digest] = module
        self.module = module
        self.kernel = module.get_function(spec.name)

    def set_constants(self, arrays: dict[str, np.ndarray]) -> None:
        cp = self.cupy
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            if array.size:
                view = cp.ndarray(array.shape, array.dtype, self.module.get_global(name))
                view.set(array, stream=self.compute)

    # ------------------------------------------------------------------ memory
    def upload(self, array: np.ndarray):
        with self.compute:
            return self.cupy.asarray(np.ascontiguousarray(array))

    def ring(self, shape, past: np.ndarray, rows):
        cp = self.cupy
        with self.compute:
            history = cp.zeros(shape, dtype=past.dtype)
            if rows is None:
                history[...] = cp.asarray(past)
            else:
                history[cp.asarray(rows)] = cp.asarray(past)
        return history

    def empty(self, shape, dtype):
        with self.compute:
            return self.cupy.empty(shape, dtype=dtype)

    def free_bytes(self) -> int:
        cp = self.cupy
        self.finish()
        cp.get_default_memory_pool().free_all_blocks()
        free, _ = cp.cuda.runtime.memGetInfo()
        return int(free)

    def multiprocessors(self) -> int:
        return int(self.cupy.cuda.Device().attributes["MultiProcessorCount"])

    # ------------------------------------------------------------------ launches and copies
    def launch(self, grid, block: int, launches: list) -> None:
        for argument in launches[0]:  # do not overwrite a buffer whose copy is in flight
            event = self._copy_done.pop(id(argument), None)
            if event is not None:
                self.compute.wait_event(event)
        grid = (grid, 1) if isinstance(grid, int) else tuple(grid)
        start = self.compute.record()
        with self.compute:  # RawKernel launches on the current stream
            for arguments in launches:
                self.kernel(grid, (block,), tuple(arguments))
        self._launched = self.compute.record()
        self._timings.append((start, self._launched))

    def download(self, array, out: np.ndarray) -> None:
        cp = self.cupy
        count = out.shape[0]
        pinned = cp.cuda.alloc_pinned_memory(array[:count].nbytes)
        host = np.frombuffer(pinned, array.dtype, array[:count].size).reshape(out.shape)
        self.copy.wait_event(self._launched)
        array[:count].get(stream=self.copy, out=host, blocking=False)
        done = self.copy.record()
        self._copy_done[id(array)] = done
        self._pending.append((done, pinned, host, out))
        self._drain(keep=2)

    def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            done, _pinned, host, out = self._pending.pop(0)
            done.synchronize()
            out[...] = host

    def finish(self) -> None:
        self.compute.synchronize()
        self._drain(keep=0)
        self.copy.synchronize()
        self._copy_done.clear()
        get_time = self.cupy.cuda.get_elapsed_time
        self.kernel_seconds += sum(get_time(a, b) for a, b in self._timings) / 1e3
        self._timings.clear()
