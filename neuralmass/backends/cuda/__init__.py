"""The CUDA backend: kernels printed from the SymPy IR, compiled with NVRTC and launched with
CuPy; one GPU thread per parameter set and node, one launch per step.

- :func:`run` runs a :class:`~neuralmass.plan.RunPlan` on the GPU (``simulate(...,
  backend="cuda")``); :func:`emulate` runs the same kernel compiled for the CPU (tests, and
  reading what the GPU computes, without one).
- :func:`generated_source` is the kernel source of a plan; :func:`kernel_source` that of a
  model with :func:`~neuralmass.simulate`'s arguments (``neuralmass codegen MODEL --target
  cuda``).

The kernel layout, the noise and the memory plan are described in :mod:`._kernel` and
:mod:`._driver`.
"""

from __future__ import annotations

import numpy as np

from ...connectivity import Connectivity
from ...model import Model
from ...plan import RunPlan, make_plan
from ._driver import run_on
from ._emulate import emulate as emulate
from ._kernel import KernelSpec as KernelSpec
from ._kernel import build_kernel as build_kernel
from ._printer import CUDACodePrinter as CUDACodePrinter

__all__ = ["CUDACodePrinter", "KernelSpec", "build_kernel", "emulate", "generated_source",
           "kernel_source", "run"]


def run(plan: RunPlan, *, block: int | None = None, edges: str = "auto", unroll: int | None = None,
        batch_sets: int | None = None, chunk_samples: int | None = None,
        options: tuple[str, ...] = (), progress: bool = False,
        return_first_nonfinite: bool = False) -> tuple[np.ndarray, ...]:
    """Run ``plan`` on the current CUDA device; returns ``(states, exposures)``, NumPy arrays
    of shapes (T, n_state, N, P) and (T, n_exposure, N, P).

    Thread (p, i) advances node i of parameter set p by one step per launch; a block holds
    ``block`` consecutive sets of one node (by default 128, or fewer when there are few sets,
    see :func:`._driver.auto_block`). The kernel is compiled by NVRTC through ``cupy.RawModule``
    and cached by the sha256 of its source (CuPy also caches on disk). The device holds, per
    set, the history of the coupled variables (B × n_hist × N values, B the power of two ≥ max
    delay + 2: ~311 kB per coupled variable for 76 regions, dt = 0.1 ms, speed 3 mm/ms in
    float32), the state and two chunks of monitor output; when P sets do not fit in 80 % of the
    free device memory they run in equal batches one after the other. Each batch runs in chunks
    of steps (one launch per step), and the samples of a chunk are copied back (pinned memory, a
    second stream) while the next chunk runs. ``batch_sets`` and ``chunk_samples`` override
    those sizes; ``edges`` and ``unroll`` are passed to :func:`build_kernel`; ``options`` are
    extra NVRTC options (e.g. ``("--use_fast_math",)``); ``progress`` shows a progress bar;
    ``return_first_nonfinite`` also returns each set's first non-finite step (P,), tracked by
    the kernel (exact for every monitor).

    Raises:
        BackendUnavailableError: without CuPy or a GPU.
    """
    from ._cupy import CuPyDevice

    return run_on(CuPyDevice(options=options), plan, edges=edges, unroll=unroll, block=block,
                  batch_sets=batch_sets, chunk_samples=chunk_samples, progress=progress,
                  return_first_nonfinite=return_first_nonfinite)


def generated_source(plan: RunPlan) -> str:
    """The CUDA C++ source of the kernel that runs ``plan``."""
    return build_kernel(plan).source


def kernel_source(model: Model | str, connectivity: Connectivity | None = None, params=None,
                  **options) -> str:
    """The kernel :func:`neuralmass.simulate` would run with ``backend="cuda"`` and these
    arguments (``dtype`` defaults to ``"float32"`` here, the GPU's usual precision)."""
    from ...models import load_model

    if not isinstance(model, Model):
        model = load_model(model)
    options.setdefault("dtype", "float32")
    options.setdefault("n_steps", 4000)  # the source does not depend on it
    plan = make_plan(model, connectivity or Connectivity.default(), params, **options)
    return generated_source(plan)
