"""A validated, backend-independent description of one call of :func:`neuralmass.simulate`.

:func:`make_plan` checks every argument once (so each backend receives clean input and every
error reads the same whatever the backend) and resolves defaults: parameter values per set,
delays, the initial state and history, the noise and the monitor.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import sympy

from .connectivity import Connectivity
from .errors import ParameterError
from .model import Model, symbol
from .monitors import MonitorPlan, plan_monitors, steps_simulated
from .params import resolve_parameters
from .scheme import Integrator, get_integrator, history_horizon

__all__ = ["RunPlan", "make_plan", "DTYPES"]

DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything a backend needs to run a simulation.

    Attributes:
        model, connectivity: what to simulate.
        dt: time step in ms; n_steps: steps requested.
        integrator: the Runge–Kutta scheme; noise_std: per-state per-step σ expressions (of
            parameters and ``dt``), or ``None`` when deterministic.
        params: every model parameter → a float (same in all sets) or a (P,) array.
        n_sets: P, the number of parameter sets.
        speeds: (S,) distinct conduction speeds in mm/ms; speed_index: (P,) int32 index into
            ``speeds`` for each set (all zeros when the speed is the same everywhere).
        max_delay: the largest integer delay over all sets; the history spans
            ``scheme.history_horizon(max_delay)`` = max_delay + 1 rows.
        initial_state: (n_state, N) or (n_state, N, P), the state at t = 0.
        initial_history: ``None`` for a history constant in time and equal to the initial
            state, or (max_delay + 1, n_cvar, N[, P]) with row max_delay being t = 0.
        monitors: what to record, one :class:`~neuralmass.monitors.MonitorPlan` per monitor
            in the order given (``monitor`` is the first); seed: for noise (and nothing else
            once planned).
        dtype: np.float32 or np.float64.
        set_offset: the global index of this run's first set in the noise stream (a shard
            of a sweep over sets ``set_offset …``: its noise equals the whole sweep's).
    """

    model: Model
    connectivity: Connectivity
    dt: float
    n_steps: int
    integrator: Integrator
    noise_std: tuple[sympy.Expr, ...] | None
    params: dict[str, object]
    n_sets: int
    speeds: np.ndarray
    speed_index: np.ndarray
    max_delay: int
    initial_state: np.ndarray
    initial_history: np.ndarray | None
    monitors: tuple[MonitorPlan, ...]
    seed: int
    dtype: type
    set_offset: int = 0

    @property
    def monitor(self) -> MonitorPlan:
        """The first monitor (the only one of a single-monitor run)."""
        return self.monitors[0]

    @property
    def n_steps_simulated(self) -> int:
        """Steps the backends run: up to the last sample of any monitor."""
        return steps_simulated(self.monitors)

    @property
    def n_nodes(self) -> int:
        return self.connectivity.n_regions

    @property
    def swept(self) -> tuple[str, ...]:
        """Names whose value is given per set (arrays), in the model's parameter order."""
        return tuple(n for n, v in self.params.items() if np.ndim(v) == 1)

    @property
    def fixed_substitutions(self) -> dict[sympy.Symbol, sympy.Float]:
        """``dt``, ``n_node`` and every parameter that is the same in all sets, as numbers."""
        values = {symbol("dt"): sympy.Float(self.dt), symbol("n_node"): sympy.Integer(self.n_nodes)}
        for name, value in self.params.items():
            if isinstance(value, float):
                values[symbol(name)] = sympy.Float(value)
        return values

    def delays(self) -> np.ndarray:
        """(S, nnz) int32 delays of the connectivity's non-zero edges for each distinct speed."""
        return np.stack([self.connectivity.edge_delay_steps(self.dt, s).astype(np.int32)
                         for s in self.speeds])


def _as_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ParameterError(f"{name} must be an integer >= {minimum}, but got {value!r}")
    if value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, but got {value!r}")
    return int(value)


def _noise_std(model: Model, noise, dt: float) -> tuple[sympy.Expr, ...] | None:
    n_state = len(model.state_variables)
    if noise is None:
        if model.noise_amplitude is None:
            return None
        sigma = model.resolve(model.noise_amplitude)
        return (sigma,) * n_state
    try:
        diffusion = np.broadcast_to(np.asarray(noise, dtype=np.float64), (n_state,))
    except (TypeError, ValueError):
        raise ParameterError(
            f"noise must be a diffusion coefficient D >= 0 (TVB's nsig): a number or one per "
            f"state variable, shape ({n_state},) for {', '.join(model.state_names)}, "
            f"but got {noise!r}"
        ) from None
    if not np.all(np.isfinite(diffusion)) or np.any(diffusion < 0):
        raise ParameterError(f"noise D must be finite and >= 0, but got {noise!r}")
    if not np.any(diffusion):
        return None
    return tuple(sympy.Float(math.sqrt(2.0 * d * dt)) for d in diffusion)


def _check_array(name: str, value, shapes: list[tuple[int, ...]], described: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a numeric array {described}") from None
    if array.shape not in shapes:
        raise ParameterError(f"{name} must have shape {described}, but got {array.shape}")
    if not np.all(np.isfinite(array)):
        index = tuple(int(i) for i in
                      np.unravel_index(np.flatnonzero(~np.isfinite(array))[0], array.shape))
        raise ParameterError(f"{name} must be finite, but {name}{list(index)} is "
                             f"{array[index]}")
    return array


def _clip_to_bounds(model: Model, array: np.ndarray, axis: int, names) -> np.ndarray:
    array = array.copy()
    for index, name in enumerate(names):
        bounds = model.state_variables[model.state_names.index(name)].bounds
        if bounds:
            view = np.take(array, index, axis=axis)
            np.clip(view, bounds[0], bounds[1], out=view)
            slicer = [slice(None)] * array.ndim
            slicer[axis] = index
            array[tuple(slicer)] = view
    return array


def _initial_conditions(model, n_nodes, n_sets, max_delay, initial_state, initial_history,
                        seed):
    n_state = len(model.state_variables)
    cvars = model.coupled_variables
    horizon = history_horizon(max_delay)
    state_shapes = [(n_state, n_nodes), (n_state, n_nodes, n_sets)]
    described_state = f"({n_state}, {n_nodes}) or ({n_state}, {n_nodes}, {n_sets}) " \
                      f"(state variable {', '.join(model.state_names)}; region; set)"
    state = None
    if initial_state is not None:
        state = _clip_to_bounds(model, _check_array("initial_state", initial_state,
                                                    state_shapes, described_state),
                                0, model.state_names)
    history = None
    if initial_history is not None:
        raw = np.asarray(initial_history, dtype=np.float64) \
            if not isinstance(initial_history, np.ndarray) else initial_history
        rows = raw.shape[0] if raw.ndim >= 1 else 0
        n_var = raw.shape[1] if raw.ndim >= 2 else 0
        if n_var not in (len(cvars), n_state) or raw.ndim not in (3, 4):
            raise ParameterError(
                f"initial_history must have shape (H, n_var, {n_nodes}[, {n_sets}]) with n_var "
                f"the {len(cvars)} coupled variables ({', '.join(cvars)}) or all {n_state} "
                f"state variables, but got {raw.shape}"
            )
        if rows < horizon:
            raise ParameterError(
                f"initial_history needs at least H = max delay + 1 = {horizon} rows (row H-1 "
                f"is t = 0), but got {rows}"
            )
        shapes = [(rows, n_var, n_nodes), (rows, n_var, n_nodes, n_sets)]
        described = f"({rows}, {n_var}, {n_nodes}) or ({rows}, {n_var}, {n_nodes}, {n_sets})"
        raw = _check_array("initial_history", raw, shapes, described)
        raw = raw[rows - horizon:]
        names = model.state_names if n_var == n_state else cvars
        raw = _clip_to_bounds(model, raw, 1, names)
        if n_var == n_state:
            if state is None:
                state = raw[-1]
            history = raw[:, [model.state_names.index(c) for c in cvars]]
        else:
            if state is None and set(cvars) != set(model.state_names):
                raise ParameterError(
                    f"initial_history holds only the coupled variables ({', '.join(cvars)}): "
                    "give initial_state too for the others, or a history of all "
                    f"{n_state} state variables"
                )
            history = raw
            if state is None:
                state = np.stack([raw[-1, cvars.index(n)] for n in model.state_names])
    if state is None:
        rng = np.random.default_rng(seed)
        lo = np.array([sv.initial_range[0] for sv in model.state_variables])[:, None]
        hi = np.array([sv.initial_range[1] for sv in model.state_variables])[:, None]
        state = _clip_to_bounds(model, lo + (hi - lo) * rng.random((n_state, n_nodes)), 0,
                                model.state_names)
    if history is not None:
        # the t = 0 row is the initial state
        current = state[[model.state_names.index(c) for c in cvars]]
        if history.ndim == 4 or current.ndim == 3:
            # a trailing set axis: (..., N) -> (..., N, P)
            history = np.broadcast_to(history[..., None], history.shape + (n_sets,)).copy() \
                if history.ndim == 3 else history.copy()
            current = np.broadcast_to(current[..., None], current.shape + (n_sets,)) \
                if current.ndim == 2 else current
        else:
            history = history.copy()
        history[-1] = current
    return state, history


def _sets_in_initial_conditions(initial_state, initial_history) -> int:
    """P of an (n_state, N, P) initial_state or (H, n_var, N, P) initial_history, else 1."""
    for value, ndim in ((initial_state, 3), (initial_history, 4)):
        try:
            shape = np.shape(value) if value is not None else ()
        except ValueError:  # ragged: _initial_conditions reports it
            shape = ()
        if len(shape) == ndim and shape[-1] > 1:
            return int(shape[-1])
    return 1


def make_plan(
    model: Model,
    connectivity: Connectivity,
    params=None,
    *,
    dt: float = 0.1,
    n_steps: int = 4000,
    integrator: str = "heun",
    noise=None,
    seed: int = 0,
    initial_state=None,
    initial_history=None,
    monitors=("raw",),
    dtype: str = "float64",
    set_offset: int = 0,
) -> RunPlan:
    """Validate the arguments of :func:`neuralmass.simulate` and resolve their defaults."""
    if not isinstance(model, Model):
        raise ParameterError(f"model must be a neuralmass Model (see load_model), got {model!r}")
    if not isinstance(connectivity, Connectivity):
        raise ParameterError(
            f"connectivity must be a neuralmass Connectivity, got {type(connectivity).__name__}"
        )
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise ParameterError(f"dt must be a positive number of ms, but got {dt!r}") from None
    if not (dt > 0 and math.isfinite(dt)):
        raise ParameterError(f"dt must be a positive number of ms, but got {dt!r}")
    n_steps = _as_int("n_steps", n_steps, 1)
    seed = _as_int("seed", seed, 0)
    set_offset = _as_int("set_offset", set_offset, 0)
    if dtype not in DTYPES and np.dtype(dtype).name not in DTYPES:
        raise ParameterError(f"dtype must be 'float32' or 'float64', but got {dtype!r}")
    np_dtype = DTYPES[np.dtype(dtype).name]

    noise_std = _noise_std(model, noise, dt)
    chosen = get_integrator(integrator, stochastic=noise_std is not None)
    monitor_plans = plan_monitors(monitors, dt, n_steps, model)
    values, n_sets = resolve_parameters(model, params, default_speed=connectivity.speed)
    if not any(np.ndim(v) == 1 for v in values.values()):
        # no parameter arrays: P may come from per-set initial conditions (as in Simulator)
        n_sets = _sets_in_initial_conditions(initial_state, initial_history)

    speed = values["global_speed"]
    if hasattr(speed, "shape") and not isinstance(speed, np.ndarray):
        try:
            speed = np.asarray(speed, dtype=np.float64)
        except Exception:  # a JAX tracer: delays must be known before the run
            raise ParameterError(
                "global_speed cannot be traced (it sets the integer delays before the run); "
                "pass it as a NumPy value, or use neuralmass.backends.jax.make_simulator"
            ) from None
    speed_array = np.broadcast_to(np.asarray(speed, dtype=np.float64), (n_sets,))
    if np.any(speed_array <= 0) or np.any(np.isnan(speed_array)):
        raise ParameterError(f"global_speed must be > 0 mm/ms, but got {speed!r}")
    speeds, speed_index = np.unique(speed_array, return_inverse=True)
    edge_delays = connectivity.edge_delay_steps(dt, float(speeds.min()))
    max_delay = int(edge_delays.max()) if edge_delays.size else 0

    state, history = _initial_conditions(model, connectivity.n_regions, n_sets, max_delay,
                                         initial_state, initial_history, seed)
    return RunPlan(
        model=model,
        connectivity=connectivity,
        dt=dt,
        n_steps=n_steps,
        integrator=chosen,
        noise_std=noise_std,
        params=values,
        n_sets=n_sets,
        speeds=speeds,
        speed_index=speed_index.astype(np.int32).reshape(n_sets),
        max_delay=max_delay,
        initial_state=state,
        initial_history=history,
        monitors=monitor_plans,
        seed=seed,
        dtype=np_dtype,
        set_offset=set_offset,
    )
