"""The JAX simulator: an equinox Module mapping parameter values to trajectories.

All P parameter sets of a call advance together in one ``lax.scan``, the sets being the
trailing, contiguous axis of every array (:mod:`._loop`): the delayed reads of one step are an
(nnz, P) gather from the history ring and the coupling a ``segment_sum`` of it over the edges.
Delays are computed once per distinct speed (a (S, nnz) table), and the sets are run grouped by
speed (:func:`speed_groups`): G groups of equal size, laid out group-major, read G slices of
contiguous sets per edge with an (nnz, G) delay table instead of P scattered values (XLA's CPU
gather costs per slice); the caller's order is restored at the end. Samples are grouped in
chunks under ``jax.checkpoint`` so that ``jax.grad`` stores O(√T) states, not T. A call
whose arrays would not fit in memory (:mod:`._memory`) runs its lanes in batches, or is
refused before anything is allocated; on the CPU narrow speed groups run in batches of
:data:`CPU_BATCH_LANES` lanes anyway (faster there). The noise is :mod:`neuralmass.random`'s Philox
stream, drawn in ``jax.numpy`` (the same numbers as the Numba and CUDA backends); it does not
depend on the parameters, so gradients flow through the state as in a deterministic run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ...connectivity import Connectivity
from ...errors import ParameterError
from ...model import Model
from ...monitors import plan_monitors
from ...plan import DTYPES, _noise_std
from ...random import seed_key
from ...scheme import get_integrator
from ._compilation_cache import enable_compilation_cache
from ._loop import MAX_BLOCK, LoopShape, loop_shape, run_loop
from ._lower import LoweredModel, lower
from ._memory import lanes_per_batch
from ._monitors import JaxMonitor, block_steps

__all__ = ["CPU_BATCH_LANES", "Simulator", "SpeedGroups", "make_simulator", "speed_groups"]

#: On the CPU, a call that is not traced runs its speed groups in batches of whole groups of at
#: most this many lanes (one group when a group is wider): XLA's CPU gather costs per slice,
#: more so the more groups one gather spans. Measured (1,024 sets at 32 speeds, groups of 32,
#: × 1,000 steps, 2-core EPYC): Montbrió float32 1.3e5 set-steps/s in one batch, 3.2e5 in
#: batches of 64 lanes (2.7e5 at 32, 1.8e5 at 128); Kuramoto 8.6e4 and 1.3e5; float64 Montbrió
#: 4.7e4 and 9.9e4. One speed (one group of 1,024) gains nothing from splitting. A traced call
#: keeps one batch (a program that does not grow with the sets).
CPU_BATCH_LANES = 64


def _philox_key(seed) -> jax.Array:
    """The Philox key (2,) uint32 of ``seed`` (:func:`neuralmass.random.seed_key`): a Python
    integer of any size, or a traced integer array (its low word, and its high word when it is
    64-bit)."""
    if not isinstance(seed, jax.core.Tracer):
        return jnp.array(seed_key(seed), dtype=jnp.uint32)
    high = seed >> 32 if jnp.dtype(seed.dtype).itemsize == 8 else jnp.zeros_like(seed)
    return jnp.stack([seed.astype(jnp.uint32), high.astype(jnp.uint32)])


@dataclasses.dataclass(frozen=True)
class SpeedGroups:
    """The lanes of a run: its P sets grouped by speed, G groups of Q lanes, group-major.

    Sets with equal ``global_speed`` have identical integer delays, so a group reads one
    delay per edge and its Q sets are one contiguous slice of the history (:mod:`._loop`).
    ``lanes`` (G, Q): the caller's set in each lane; a group of fewer than Q sets is padded
    with copies of its first set (lanes ``q ≥ counts[g]``, computed and dropped), so that
    one compiled program serves every group. ``rows`` (G,): each group's row of the delay
    table; ``counts`` (G,): its sets. NumPy integer arrays."""

    lanes: np.ndarray
    rows: np.ndarray
    counts: np.ndarray

    @property
    def n_lanes(self) -> int:
        """G × Q, padding included."""
        return int(self.lanes.size)

    def batches(self, max_lanes: int) -> list[tuple[slice, slice]]:
        """(groups, lanes) rectangles of at most ``max_lanes`` lanes that cover every set,
        group-major: whole groups when one fits, else pieces of one group (a piece of padding
        only is left out)."""
        n_groups, width = self.lanes.shape
        if max_lanes >= width:
            step = max_lanes // width
            return [(slice(g, min(g + step, n_groups)), slice(0, width))
                    for g in range(0, n_groups, step)]
        return [(slice(g, g + 1), slice(q, min(q + max_lanes, width)))
                for g in range(n_groups) for q in range(0, int(self.counts[g]), max_lanes)]

    def kept(self, groups: slice, lanes: slice) -> tuple[np.ndarray, np.ndarray | None]:
        """For the batch ``lanes[groups, lanes]``: (the caller's sets it computes, in
        increasing order; where each is among the batch's flat lanes, or ``None`` when that
        is every lane in order)."""
        flat = self.lanes[groups, lanes].ravel()
        real = (np.arange(self.lanes.shape[1])[lanes][None, :]
                < self.counts[groups, None]).ravel()
        where = np.flatnonzero(real)
        where = where[np.argsort(flat[where], kind="stable")]
        in_order = where.size == flat.size and np.array_equal(where, np.arange(flat.size))
        return flat[where], None if in_order else where


def speed_groups(speed_index: np.ndarray) -> SpeedGroups:
    """The :class:`SpeedGroups` of P sets whose delays are row ``speed_index`` (P,) of the
    delay table: one group per distinct row (in increasing order), each holding its sets in
    the caller's order and padded to the largest group's size."""
    rows, group, counts = np.unique(speed_index, return_inverse=True, return_counts=True)
    by_group = np.argsort(group.reshape(-1), kind="stable")  # the sets, group-major
    starts = np.cumsum(counts) - counts
    lane = np.arange(counts.max())[None, :]
    lanes = by_group[starts[:, None] + np.where(lane < counts[:, None], lane, 0)]
    return SpeedGroups(lanes=lanes, rows=rows, counts=counts)


class Simulator(eqx.Module):
    """Maps parameter values to trajectories; build it with :func:`make_simulator`.

    Call it as ``sim(params, initial_state, initial_history=None, seed=0)``:

    - ``params``: name → scalar or (P,) array for any of ``sim.parameter_names`` (others take
      the model's defaults); traced values are fine (``jax.grad``, ``jax.jit``, ``jax.vmap``).
    - ``initial_state``: (n_state, N) or (n_state, N, P).
    - ``initial_history``: ``None`` (constant history equal to the initial state) or
      (max_delay + 1, n_cvar, N[, P]), row max_delay being t = 0.
    - ``seed``: the noise seed (an integer ≥ 0, or a traced integer): the Philox stream of
      :mod:`neuralmass.random`, the same on every backend.

    Returns ``(states, exposures)`` of shapes (T, n_state, N, P) and (T, n_exposure, N, P);
    with ``return_first_nonfinite=True`` also each set's first non-finite step (P,) int32
    (the state at t = n dt held NaN or inf; -1 while finite), tracked in the loop. With
    several monitors ``states`` and ``exposures`` are tuples, one entry per monitor; a BOLD
    or Balloon monitor's are its (T, n_variables, N, P) BOLD and ``None``.
    """

    targets: jax.Array
    sources: jax.Array
    weights: jax.Array
    lengths: jax.Array
    edge_lengths: tuple[float, ...] = eqx.field(static=True)  # mm, float64, for exact delays
    lowered: LoweredModel = eqx.field(static=True)
    parameter_names: tuple[str, ...] = eqx.field(static=True)
    defaults: tuple[float, ...] = eqx.field(static=True)
    history_state_indices: tuple[int, ...] = eqx.field(static=True)
    n_nodes: int = eqx.field(static=True)
    n_state: int = eqx.field(static=True)
    n_exposures: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    monitors: tuple[JaxMonitor, ...] = eqx.field(static=True)
    stochastic: bool = eqx.field(static=True)
    max_delay: int = eqx.field(static=True)
    dtype: str = eqx.field(static=True)

    # ------------------------------------------------------------------ public call
    def __call__(self, params: Mapping[str, object] | None = None, initial_state=None,
                 initial_history=None, seed: int = 0, *, set_offset: int = 0,
                 return_first_nonfinite: bool = False):
        params = dict(params or {})
        unknown = set(params) - set(self.parameter_names)
        if unknown:
            raise ParameterError(f"unknown parameter {sorted(unknown)[0]!r}; valid parameters "
                                 f"are {', '.join(self.parameter_names)}")
        if initial_state is None:
            raise ParameterError("initial_state (n_state, N[, P]) is required")
        dtype = jnp.dtype(self.dtype)
        values = [jnp.asarray(params.get(name, default), dtype=dtype)
                  for name, default in zip(self.parameter_names, self.defaults, strict=True)]
        state = jnp.asarray(initial_state, dtype=dtype)
        history = None if initial_history is None else jnp.asarray(initial_history, dtype=dtype)
        key = _philox_key(seed)

        sizes = {v.shape[0] for v in values if v.ndim == 1}
        if state.ndim == 3:
            sizes.add(state.shape[2])
        if history is not None and history.ndim == 4:
            sizes.add(history.shape[3])
        if len(sizes) > 1:
            raise ParameterError(f"parameter arrays and initial conditions disagree on the "
                                 f"number of parameter sets: {sorted(sizes)}")
        n_sets = sizes.pop() if sizes else 1
        state = jnp.broadcast_to(state if state.ndim == 3 else state[..., None],
                                 state.shape[:2] + (n_sets,))
        if history is not None:
            history = jnp.broadcast_to(history if history.ndim == 4 else history[..., None],
                                       history.shape[:3] + (n_sets,))
        table, speed_index = self._delay_table(params.get("global_speed"), n_sets)
        groups = speed_groups(speed_index)
        traced = any(isinstance(v, jax.core.Tracer) for v in (*values, state, history))
        shape = self.loop_shape(table)  # one loop for every batch: one compile
        per_batch = lanes_per_batch(self, n_sets, groups, traced, shape)
        if not traced and jax.default_backend() == "cpu":
            per_batch = min(per_batch, max(CPU_BATCH_LANES, groups.lanes.shape[1]))
        parts, computed = [], []
        for group_slice, lane_slice in groups.batches(per_batch):
            lanes = groups.lanes[group_slice, lane_slice].ravel()
            sets, keep = groups.kept(group_slice, lane_slice)
            delays = None if table is None else jnp.asarray(table[groups.rows[group_slice]].T)
            parts.append(_run_batch(
                self, shape,
                tuple(v[lanes] if v.ndim == 1 else v for v in values), state[..., lanes],
                None if history is None else history[..., lanes], key, delays,
                jnp.asarray(set_offset + lanes, dtype=jnp.int32),
                None if keep is None else jnp.asarray(keep, dtype=jnp.int32)))
            computed.append(sets)
        outputs, first = jax.tree.map(lambda *p: jnp.concatenate(p, axis=-1), *parts) \
            if len(parts) > 1 else parts[0]
        computed = np.concatenate(computed)
        if not np.array_equal(computed, np.arange(n_sets)):  # batches: the caller's order
            outputs, first = jax.tree.map(lambda y: y[..., np.argsort(computed)],
                                          (outputs, first))
        pairs = tuple((out, None) if m.name in ("bold", "balloon")
                      else (out[:, :self.n_state], out[:, self.n_state:])
                      for m, out in zip(self.monitors, outputs, strict=True))
        states, exposures = pairs[0] if len(pairs) == 1 else tuple(zip(*pairs))
        return (states, exposures, first) if return_first_nonfinite else (states, exposures)

    @property
    def every(self) -> int:
        """Steps per sample of the loop (the monitors' periods' greatest common divisor)."""
        return block_steps(self.monitors)

    @property
    def n_samples(self) -> int:
        """Loop samples run: up to the last sample of any monitor."""
        return max(m.n_samples * m.every for m in self.monitors) // self.every

    def loop_shape(self, table=None) -> LoopShape:
        """The loop's structure (:func:`._loop.loop_shape`) for the delays of ``table`` (S,
        nnz); ``table=None``: a traced speed."""
        if table is None:
            return loop_shape(self.n_samples, self.every, None)
        return loop_shape(self.n_samples, self.every,
                          int(table.min()) if table.size else MAX_BLOCK)

    def _delay_table(self, speed, n_sets):
        """Integer delays computed in float64 NumPy (exactly as the other backends) when the
        speed is a concrete value: ((S, nnz) int32 table, (P,) index into it), NumPy arrays.
        A traced speed: ``None`` and each set its own index (a (P,) speed) or all the same
        index (a scalar speed): the groups of :func:`speed_groups` are then the delays' own
        columns, computed in the loop."""
        if speed is None:
            speed = self.defaults[self.parameter_names.index("global_speed")]
        try:
            speed = np.broadcast_to(np.asarray(speed, dtype=np.float64), (n_sets,))
        except (TypeError, jax.errors.TracerArrayConversionError):
            return None, np.arange(n_sets) if jnp.ndim(speed) == 1 else np.zeros(n_sets, int)
        if np.any(~(speed > 0)):
            raise ParameterError(f"global_speed must be > 0 mm/ms, but got {speed}")
        speeds, index = np.unique(speed, return_inverse=True)
        lengths = np.asarray(self.edge_lengths, dtype=np.float64)
        table = np.rint(lengths[None, :] / speeds[:, None] / self.dt).astype(np.int32)
        if table.size and table.max() > self.max_delay:
            raise ParameterError(
                f"global_speed {speeds[0]:g} mm/ms gives delays of up to {table.max()} steps, "
                f"longer than the history this simulator was built for ({self.max_delay}); "
                "build it with make_simulator(..., min_speed=...)")
        return table, index.reshape(n_sets).astype(np.int32)


@eqx.filter_jit
def _run_batch(simulator, shape, values, state, history, key, delays, set_index, keep):
    """The P lanes of one batch, G groups of P / G (sets last, group-major: :mod:`._loop`);
    ``delays``: (nnz, G) integer steps, or ``None`` when the speed is traced (computed here,
    in the working precision: (nnz, 1) from a scalar speed, (nnz, P) from one per lane);
    ``set_index``: (P,) global index of each lane's set (the noise's counter); ``keep``: the
    lanes whose outputs are returned, in that order, or ``None`` for all of them."""
    if delays is None:
        speed = values[simulator.parameter_names.index("global_speed")]
        delays = jnp.rint(simulator.lengths[:, None] / speed / simulator.dt).astype(jnp.int32)
        delays = eqx.error_if(
            delays, jnp.any(delays > simulator.max_delay),
            "global_speed gives delays longer than the history this simulator was built "
            "for; build it with make_simulator(..., min_speed=...)",
        )
    outputs = run_loop(simulator, shape, values, state, history, key, delays, set_index)
    return outputs if keep is None else jax.tree.map(lambda y: y[..., keep], outputs)


def make_simulator(
    model: Model,
    connectivity: Connectivity,
    *,
    dt: float = 0.1,
    n_steps: int = 4000,
    integrator: str = "heun",
    noise=None,
    monitors=("raw",),
    dtype: str = "float64",
    min_speed: float | None = None,
) -> Simulator:
    """An equinox Module (a pytree) that maps parameter values to trajectories.

    Arguments mean what they mean in :func:`neuralmass.simulate`. The history must hold the
    longest delay any call will use: ``min_speed`` (mm/ms) is the slowest ``global_speed``
    you will pass (default: the connectivity's speed). Compose it with your own JAX code:
    ``jax.jit(sim)``, ``jax.grad`` through ``sim(params, x0)``. ``dtype="float64"`` needs
    ``jax.config.update("jax_enable_x64", True)``.
    """
    if dtype not in DTYPES:
        raise ParameterError(f"dtype must be 'float32' or 'float64', but got {dtype!r}")
    if dtype == "float64" and not jax.config.x64_enabled:
        raise ParameterError(
            "dtype='float64' needs JAX's 64-bit mode: jax.config.update('jax_enable_x64', True) "
            "(or use 'with jax.enable_x64(True):'), or pass dtype='float32'")
    if not dt > 0:
        raise ParameterError(f"dt must be a positive number of ms, but got {dt!r}")
    noise_std = _noise_std(model, noise, dt)
    speed = connectivity.speed if min_speed is None else float(min_speed)
    if not speed > 0:
        raise ParameterError(f"min_speed must be > 0 mm/ms, but got {min_speed!r}")
    delays = connectivity.edge_delay_steps(dt, speed)
    return build_simulator(
        model, connectivity, dt=float(dt),
        integrator=get_integrator(integrator, stochastic=noise_std is not None),
        noise_std=noise_std, monitors=plan_monitors(monitors, dt, n_steps, model), dtype=dtype,
        max_delay=int(delays.max()) if delays.size else 0,
    )


def build_simulator(model, connectivity, *, dt, integrator, noise_std, monitors, dtype,
                    max_delay) -> Simulator:
    """The :class:`Simulator` for already validated arguments (see :func:`make_simulator`)."""
    enable_compilation_cache()
    targets, sources, weights, lengths = connectivity.edges()
    defaults = tuple(connectivity.speed if p.default is None else float(p.default)
                     for p in model.parameters)
    return Simulator(
        targets=jnp.asarray(targets, dtype=jnp.int32),
        sources=jnp.asarray(sources, dtype=jnp.int32),
        weights=jnp.asarray(weights, dtype=DTYPES[dtype]),
        lengths=jnp.asarray(lengths, dtype=DTYPES[dtype]),
        edge_lengths=tuple(float(v) for v in lengths),
        lowered=lower(model, integrator, noise_std, dt, connectivity.n_regions),
        parameter_names=model.parameter_names,
        defaults=defaults,
        history_state_indices=tuple(model.state_names.index(c)
                                    for c in model.coupled_variables),
        n_nodes=connectivity.n_regions,
        n_state=len(model.state_variables),
        n_exposures=len(model.exposure_names),
        dt=dt,
        monitors=tuple(JaxMonitor.from_plan(m) for m in monitors),
        stochastic=noise_std is not None,
        max_delay=int(max_delay),
        dtype=dtype,
    )
