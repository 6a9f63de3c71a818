"""``simulate``: the front door."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping

import numpy as np

from ._array import namespace
from .backends import DEFAULT_DTYPES, choose_backend, get_backend
from .connectivity import Connectivity
from .divergence import check_on_divergence, resolve
from .model import Model
from .models import load_model
from .monitors import MonitorPlan
from .plan import make_plan
from .result import Result

__all__ = ["simulate"]


def simulate(
    model: Model | str | os.PathLike,
    connectivity: Connectivity | None = None,
    params=None,
    *,
    backend: str = "auto",
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
    on_divergence: str = "warn",
    set_offset: int = 0,
) -> Result | tuple[Result, ...]:
    """Simulate ``model`` on ``connectivity`` for every parameter set in ``params``.

    Args:
        model: a :class:`~neuralmass.model.Model`, a bundled model name or an XML path.
        connectivity: weights and tract lengths; default :meth:`Connectivity.default`.
        params: name → scalar or (P,) array, one simulation per index (see :func:`grid`);
            any model parameter or constant, ``global_coupling``, ``global_speed`` (mm/ms).
        backend: ``"auto"`` (JAX when a parameter or initial condition is a JAX tracer, else
            CUDA when CuPy and a GPU are present, else Numba), ``"jax"``, ``"numba"`` or
            ``"cuda"``; ``res.backend`` says which one ran.
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
        monitors: ``"raw"``, ``"subsample:PERIOD"``, ``"temporal_average:PERIOD"``,
            ``"bold:PERIOD"``, ``"balloon:PERIOD"`` (ms) or a :mod:`neuralmass.monitors`
            object, alone or in a tuple: all are reduced in the same run, and a tuple of
            several gives a tuple of Results, one per monitor, in the order given.
        dtype: ``"float64"`` or ``"float32"``; default float32 on the GPU (``"cuda"``) and
            float64 on the CPU backends, as in design.md §4.
        progress: show a progress bar (backends that run in chunks of steps: numba, cuda).
        on_divergence: what to do when parameter sets diverge (NaN or inf), see
            :mod:`neuralmass.divergence`: ``"warn"`` (a
            :class:`~neuralmass.errors.DivergenceWarning`; the diverged sets are NaN from
            their first non-finite sample on, the others as computed), ``"ignore"`` (the
            same, silently) or ``"raise"``. Not checked when the parameters are traced (JAX).
        set_offset: the global index of the first set in the noise stream (the noise of set
            p is drawn as that of set ``set_offset + p``): a slice of a sweep run alone with
            its offset reproduces the whole run's numbers (:func:`neuralmass.sweep`).

    Returns:
        A :class:`Result` (a tuple of them for several monitors); ``res.data`` is (time,
        state variable, region, parameter set);
        ``res.diverged`` and ``res.first_nonfinite_step`` (P,) say which sets diverged, when.

    Raises:
        ParameterError: wrong arguments (the message lists what is valid).
        SimulationError: with ``on_divergence="raise"``, a non-finite value appeared (first
            step, region, state variable and set named).
    """
    check_on_divergence(on_divergence)
    if not isinstance(model, Model):
        model = load_model(model)
    if connectivity is None:
        connectivity = Connectivity.default()
    if backend == "auto":
        values = params.values() if isinstance(params, Mapping) else ()
        backend = choose_backend([*values, initial_state, initial_history])
    if dtype is None:
        dtype = DEFAULT_DTYPES.get(backend, "float64")
    plan = make_plan(
        model, connectivity, params, dt=dt, n_steps=n_steps, integrator=integrator,
        noise=noise, seed=seed, initial_state=initial_state, initial_history=initial_history,
        monitors=monitors, dtype=dtype, set_offset=set_offset,
    )
    states, exposures, first_step = get_backend(backend).run(
        plan, progress=progress, return_first_nonfinite=True)
    outputs = tuple(zip(states, exposures, strict=True)) if len(plan.monitors) > 1 \
        else ((states, exposures),)
    params_out = {name: _per_set(value, plan.n_sets) for name, value in plan.params.items()}
    metadata = run_metadata(plan, backend, noise)
    # one warning (or error) for the run, describing the first monitor that records every
    # state variable
    describer = next((i for i, m in enumerate(plan.monitors) if not m.hemodynamic), 0)
    results = []
    for index, (monitor, (data, exposure_data)) in enumerate(zip(plan.monitors, outputs,
                                                                strict=True)):
        data, exposure_data = monitor_output(monitor, data, exposure_data)
        diverged = None
        if first_step is not None:  # None: traced values, nothing to check
            data, exposure_data, diverged = resolve(
                data, exposure_data, first_step, dataclasses.replace(plan, monitors=(monitor,)),
                on_divergence if index == describer else "ignore")
        state_names, exposure_names, plain = monitor_names(monitor, model)
        results.append(Result(
            time=monitor.time,
            data=data,
            exposures=exposure_data,
            params=params_out,
            state_names=state_names,
            exposure_names=exposure_names,
            region_labels=tuple(connectivity.labels),
            monitor=monitor.name,
            diverged=diverged,
            first_nonfinite_step=first_step,
            backend=backend,
            plain_exposures=plain,
            metadata=metadata + monitor_metadata(monitor),
        ))
    return results[0] if len(results) == 1 else tuple(results)


def monitor_output(monitor: MonitorPlan, states, exposures):
    """A backend's output of ``monitor`` as the Result's ``(data, exposures)``: unchanged for
    raw, subsample and temporal average; for BOLD and Balloon (``states`` the
    (T, n_variables, N, P) BOLD, ``exposures`` None) split into state variables and
    exposures, the exposures that are a monitored state variable copied."""
    if not monitor.hemodynamic:
        return states, exposures
    xp = namespace(states)
    n_states = len(monitor.state_names)
    computed = states[:, n_states:]
    copies = dict(monitor.copies)
    rows, next_computed = [], 0
    for row in range(len(monitor.exposure_names)):
        if row in copies:
            rows.append(states[:, copies[row]])
        else:
            rows.append(computed[:, next_computed])
            next_computed += 1
    data = states[:, :n_states]
    exposure_data = xp.stack(rows, axis=1) if rows else \
        xp.zeros(data.shape[:1] + (0,) + data.shape[2:], data.dtype)
    return data, exposure_data


def monitor_names(monitor: MonitorPlan, model: Model) -> tuple[tuple, tuple, tuple]:
    """``(state_names, exposure_names, plain_exposures)`` of ``monitor``'s Result: the
    model's for raw, subsample and temporal average; for BOLD and Balloon the variables it
    was computed from, its copied exposures being the plain ones."""
    if not monitor.hemodynamic:
        return model.state_names, model.exposure_names, plain_exposures(model)
    return monitor.state_names, monitor.exposure_names, tuple(
        (monitor.exposure_names[e], monitor.state_names[v]) for e, v in monitor.copies)


def monitor_metadata(monitor: MonitorPlan) -> tuple[tuple[str, object], ...]:
    """The monitor's own description, stored with its Result."""
    if monitor.name == "bold":
        return (("monitor_period_ms", float(monitor.time[0])),
                ("bold_offset", monitor.offset), ("bold_scale", monitor.scale))
    if monitor.name == "balloon":
        return (("monitor_period_ms", float(monitor.time[0])),
                ("balloon_constants", repr(monitor.constants)))
    return ()


def model_hash(model: Model) -> str:
    """16 hex digits of SHA-256 over the model's IR (its file path left out)."""
    text = repr(dataclasses.replace(model, source=None))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plain_exposures(model: Model) -> tuple[tuple[str, str], ...]:
    """(exposure, state variable) for each exposure that is just a state variable."""
    states = dict(zip(model.state_symbols, model.state_names, strict=True))
    return tuple((e.name, states[e.expression]) for e in model.exposures
                 if e.expression in states)


def run_metadata(plan, backend: str, noise) -> tuple[tuple[str, object], ...]:
    """The (key, value) pairs that describe a run, as stored in result files."""
    from . import __version__

    return (("model", plan.model.name), ("model_hash", model_hash(plan.model)),
            ("dt", plan.dt), ("n_steps", plan.n_steps), ("integrator", plan.integrator.name),
            ("noise", "model default" if noise is None else repr(noise)),
            ("stochastic", int(plan.noise_std is not None)),
            ("seed", plan.seed), ("backend", backend),
            ("dtype", np.dtype(plan.dtype).name), ("set_offset", plan.set_offset),
            ("neuralmass_version", __version__), ("time_units", "ms"),
            ("periodic", ",".join(plan.model.periodic_names)))  # phases: see summary.py


def _per_set(value, n_sets: int):
    """A parameter's (P,) values: arrays as they are, scalars repeated P times."""
    if np.ndim(value) == 1:
        return value
    if isinstance(value, float | int | np.number | np.ndarray):
        return np.full(n_sets, value)
    return value + np.zeros(n_sets)  # a traced JAX scalar: stays traceable
