"""``simulate``: the front door."""

from __future__ import annotations

import os

import numpy as np

from .backends import DEFAULT_DTYPES, get_backend
from .connectivity import Connectivity
from .errors import SimulationError
from .model import Model
from .models import load_model
from .plan import RunPlan, make_plan
from .result import Result

__all__ = ["simulate"]


def simulate(
    model: Model | str | os.PathLike,
    connectivity: Connectivity | None = None,
    params=None,
    *,
    backend: str = "jax",
    dt: float = 0.1,
    n_steps: int = 4000,
    integrator: str = "heun",
    noise=None,
    seed: int = 0,
    initial_state=None,
    initial_history=None,
    monitors=("raw",),
    dtype: str | None = None,
    progress: bool = False,
) -> Result:
    """Simulate ``model`` on ``connectivity`` for every parameter set in ``params``.

    Args:
        model: a :class:`~neuralmass.model.Model`, a bundled model name or an XML path.
        connectivity: weights and tract lengths; default :meth:`Connectivity.default`.
        params: name → scalar or (P,) array, one simulation per index (see :func:`grid`);
            any model parameter or constant, ``global_coupling``, ``global_speed`` (mm/ms).
        backend: ``"jax"``, ``"numba"`` or ``"cuda"``.
        dt: time step in ms. n_steps: number of steps.
        integrator: ``"euler"``, ``"heun"`` or ``"rk4"``.
        noise: additive noise diffusion coefficient D (TVB's ``nsig``), a number or one per
            state variable: σ = sqrt(2 D dt) per step; with ``"euler"``/``"heun"`` only.
            ``None``: the model's own ``noise`` component if it has one, else deterministic.
        seed: seeds the noise and the random initial state.
        initial_state: (n_state, N) or (n_state, N, P) state at t = 0 (history constant).
        initial_history: (H, n_cvar or n_state, N[, P]) past, row H-1 being t = 0, with
            H ≥ max delay + 1 (extra leading rows are ignored). When ``params`` holds no
            arrays, P is taken from the initial conditions (an ensemble of initial states).
        monitors: ``"raw"``, ``"subsample:PERIOD"``, ``"temporal_average:PERIOD"`` (ms) or a
            monitor object, alone or in a 1-tuple.
        dtype: ``"float64"`` or ``"float32"``; default float32 on the GPU (``"cuda"``) and
            float64 on the CPU backends, as in design.md §4.
        progress: show a progress bar (backends that run in chunks of steps: numba, cuda).

    Returns:
        A :class:`Result`; ``res.data`` is (time, state variable, region, parameter set).

    Raises:
        ParameterError: wrong arguments (the message lists what is valid).
        SimulationError: a non-finite value appeared (first step, region and set named).
    """
    if not isinstance(model, Model):
        model = load_model(model)
    if connectivity is None:
        connectivity = Connectivity.default()
    if dtype is None:
        dtype = DEFAULT_DTYPES.get(backend, "float64")
    plan = make_plan(
        model, connectivity, params, dt=dt, n_steps=n_steps, integrator=integrator,
        noise=noise, seed=seed, initial_state=initial_state, initial_history=initial_history,
        monitors=monitors, dtype=dtype,
    )
    states, exposures = get_backend(backend).run(plan, progress=progress)
    if isinstance(states, np.ndarray):
        check_finite(states, plan)
    params_out = {name: _per_set(value, plan.n_sets) for name, value in plan.params.items()}
    return Result(
        time=plan.monitor.time,
        data=states,
        exposures=exposures,
        params=params_out,
        state_names=model.state_names,
        exposure_names=model.exposure_names,
        region_labels=tuple(connectivity.labels),
        monitor=plan.monitor.name,
    )


def _per_set(value, n_sets: int):
    """A parameter's (P,) values: arrays as they are, scalars repeated P times."""
    if np.ndim(value) == 1:
        return value
    if isinstance(value, float | int | np.number | np.ndarray):
        return np.full(n_sets, value)
    return value + np.zeros(n_sets)  # a traced JAX scalar: stays traceable


def check_finite(states: np.ndarray, plan: RunPlan) -> None:
    """Raise :class:`SimulationError` at the first sample holding NaN or inf."""
    finite = np.isfinite(states)
    if finite.all():
        return
    bad_samples = np.flatnonzero(~finite.reshape(finite.shape[0], -1).all(axis=1))
    sample = int(bad_samples[0])
    variable, region, set_index = (int(i[0]) for i in np.nonzero(~finite[sample]))
    every = plan.monitor.every
    if every == 1:
        when = f"step {sample + 1} (t = {(sample + 1) * plan.dt:g} ms)"
    else:
        when = (f"sample {sample} ({plan.monitor.name}, steps {sample * every + 1}-"
                f"{(sample + 1) * every}, t ≤ {(sample + 1) * every * plan.dt:g} ms)")
    swept = ", ".join(f"{n}={np.asarray(plan.params[n])[set_index]:g}" for n in plan.swept)
    value = states[sample, variable, region, set_index]
    raise SimulationError(
        f"simulation diverged: first non-finite value ({value}) at {when}, state variable "
        f"{plan.model.state_names[variable]!r}, region {region} "
        f"({plan.connectivity.labels[region]}), parameter set {set_index}"
        + (f" ({swept})" if swept else "")
        + f"; try a smaller dt (now {plan.dt:g} ms) or check the parameters"
    )
