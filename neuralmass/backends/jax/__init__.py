"""The JAX backend: differentiable, vmapped over parameter sets, CPU or GPU.

``simulate(..., backend="jax")`` is traceable in the parameter values (``jax.grad``,
``jax.jit``, ``jax.vmap``); :func:`make_simulator` gives the underlying equinox Module.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

from ...errors import ParameterError
from ...plan import RunPlan
from ._lower import lower as lower
from ._simulator import Simulator as Simulator
from ._simulator import build_simulator
from ._simulator import make_simulator as make_simulator

__all__ = ["Simulator", "generated_source", "make_simulator", "run", "lower"]


def generated_source(plan: RunPlan) -> str:
    """The Python/``jax.numpy`` source printed from SymPy for ``plan``'s model."""
    lowered = lower(plan.model, plan.integrator, plan.noise_std, plan.dt, plan.n_nodes)
    return "\n".join(f"# {name}\n{source}" for name, source in lowered.sources.items())


def run(plan: RunPlan, *, progress: bool = False, return_first_nonfinite: bool = False):
    """Run ``plan``; returns ``(states, exposures)`` of shapes (T, n_state, N, P) and
    (T, n_exposure, N, P): NumPy arrays, or JAX arrays when a parameter is traced.

    The run is one compiled XLA program, so ``progress`` shows nothing here.
    ``return_first_nonfinite``: also return each set's first non-finite step (P,), tracked
    in the loop (exact for every monitor), or ``None`` when traced."""
    traced = any(isinstance(v, jax.core.Tracer) for v in plan.params.values())
    float64 = plan.dtype == np.float64
    if traced and float64 and not jax.config.x64_enabled:
        raise ParameterError(
            "dtype='float64' under jax tracing needs JAX's 64-bit mode: call "
            "jax.config.update('jax_enable_x64', True) first, or pass dtype='float32'")
    switch = float64 and not jax.config.x64_enabled
    with jax.enable_x64(True) if switch else contextlib.nullcontext():
        simulator = build_simulator(
            plan.model, plan.connectivity, dt=plan.dt, integrator=plan.integrator,
            noise_std=plan.noise_std, monitors=plan.monitors, dtype=np.dtype(plan.dtype).name,
            max_delay=plan.max_delay,
        )
        states, exposures, first = simulator(plan.params, plan.initial_state,
                                             plan.initial_history, seed=plan.seed,
                                             set_offset=plan.set_offset,
                                             return_first_nonfinite=True)
        if not traced:
            states, exposures = jax.tree.map(np.asarray, (states, exposures))
            first = np.asarray(first, dtype=np.int64)
    if not return_first_nonfinite:
        return states, exposures
    return states, exposures, None if traced else first
