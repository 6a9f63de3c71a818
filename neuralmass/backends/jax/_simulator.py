"""The JAX simulator: an equinox Module mapping parameter values to trajectories.

One parameter set is simulated by a ``lax.scan`` over steps; sets are batched with
``jax.vmap``. The history of the coupled variables is a ring buffer of power-of-two length
``B`` (time τ lives in row ``τ & (B - 1)``); coupling reads the delayed rows of the non-zero
edges, applies ``pre`` per edge and sums per target node (``segment_sum``). Samples are grouped
in chunks under ``jax.checkpoint`` so that ``jax.grad`` stores O(√T) states, not T. A call
whose arrays would not fit in memory (:mod:`._memory`) runs its sets in batches, or is refused
before anything is allocated. The noise
is :mod:`neuralmass.random`'s Philox stream, drawn in ``jax.numpy`` (the same numbers as the
Numba and CUDA backends); it does not depend on the parameters, so gradients flow through the
state as in a deterministic run.
"""

from __future__ import annotations

import math
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
from ...random import philox_normals, seed_key
from ...scheme import get_integrator, history_length
from ._compilation_cache import enable_compilation_cache
from ._lower import LoweredModel, lower
from ._memory import sets_per_batch
from ._monitors import JaxMonitor, block_steps, collect
from ._monitors import emit as monitor_emit
from ._monitors import init as monitor_init
from ._monitors import update as monitor_update

__all__ = ["Simulator", "make_simulator"]


def _philox_key(seed) -> jax.Array:
    """The Philox key (2,) uint32 of ``seed`` (:func:`neuralmass.random.seed_key`): a Python
    integer of any size, or a traced integer array (its low word, and its high word when it is
    64-bit)."""
    if not isinstance(seed, jax.core.Tracer):
        return jnp.array(seed_key(seed), dtype=jnp.uint32)
    high = seed >> 32 if jnp.dtype(seed.dtype).itemsize == 8 else jnp.zeros_like(seed)
    return jnp.stack([seed.astype(jnp.uint32), high.astype(jnp.uint32)])


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
        values, axes = [], []
        for name, default in zip(self.parameter_names, self.defaults, strict=True):
            value = jnp.asarray(params.get(name, default), dtype=dtype)
            values.append(value)
            axes.append(0 if value.ndim == 1 else None)
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
        table, speed_index = self._delay_table(params.get("global_speed"), n_sets)
        traced = any(isinstance(v, jax.core.Tracer) for v in (*values, state, history))
        batch = sets_per_batch(self, n_sets, traced)
        parts = []
        for start in range(0, n_sets, batch):
            sets = slice(start, min(start + batch, n_sets))
            parts.append(_run_batch(
                self, tuple(v[sets] if axis == 0 else v for v, axis in zip(values, axes)),
                tuple(axes), state[..., sets] if state.ndim == 3 else state,
                history[..., sets] if history is not None and history.ndim == 4 else history,
                key, table, speed_index[sets], jnp.int32(set_offset + start)))
        outputs, first = jax.tree.map(lambda *p: jnp.concatenate(p, axis=-1), *parts) \
            if len(parts) > 1 else parts[0]
        pairs = tuple((out, None) if m.name in ("bold", "balloon")
                      else (out[:, :self.n_state], out[:, self.n_state:])
                      for m, out in zip(self.monitors, outputs, strict=True))
        states, exposures = pairs[0] if len(pairs) == 1 else tuple(zip(*pairs))
        return (states, exposures, first) if return_first_nonfinite else (states, exposures)

    @property
    def every(self) -> int:
        """Steps per block of the loop (the monitors' periods' greatest common divisor)."""
        return block_steps(self.monitors)

    @property
    def n_samples(self) -> int:
        """Blocks the loop runs: up to the last sample of any monitor."""
        return max(m.n_samples * m.every for m in self.monitors) // self.every

    @property
    def chunking(self) -> tuple[int, int]:
        """(samples per checkpointed chunk ≈ √T, number of chunks)."""
        chunk = max(1, math.isqrt(self.n_samples))
        return chunk, -(-self.n_samples // chunk)

    def _delay_table(self, speed, n_sets):
        """Integer delays computed in float64 NumPy (exactly as the other backends) when the
        speed is a concrete value: ((S, nnz) table, (P,) index); (None, zeros) if traced."""
        if speed is None:
            speed = self.defaults[self.parameter_names.index("global_speed")]
        try:
            speed = np.broadcast_to(np.asarray(speed, dtype=np.float64), (n_sets,))
        except (TypeError, jax.errors.TracerArrayConversionError):
            return None, jnp.zeros(n_sets, jnp.int32)
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
        return jnp.asarray(table), jnp.asarray(index.reshape(n_sets), jnp.int32)

    # ------------------------------------------------------------------ one parameter set
    def _noise(self, key, step, set_index, dtype):
        """(n_state, N) standard normals of ``step`` for set ``set_index`` (global index):
        counter (step, node, set, v // 4) under ``key``, as :mod:`neuralmass.random` says."""
        n_blocks = -(-self.n_state // 4)
        nodes = jnp.arange(self.n_nodes, dtype=jnp.uint32)[None, :]
        blocks = jnp.arange(n_blocks, dtype=jnp.uint32)[:, None]
        z = philox_normals(jnp, (key[0], key[1]), jnp.asarray(step).astype(jnp.uint32), nodes,
                           jnp.asarray(set_index).astype(jnp.uint32), blocks, dtype)
        # (4, n_blocks, N) -> variable v = 4 * block + m
        return jnp.stack(z, axis=1).reshape(4 * n_blocks, self.n_nodes)[: self.n_state]

    def _run_one(self, values, state, history, key, set_index, delays):
        lowered = self.lowered
        n_nodes = self.n_nodes
        if delays is None:  # a traced speed: delays in the working precision
            speed = values[self.parameter_names.index("global_speed")]
            delays = jnp.rint(self.lengths / speed / self.dt).astype(jnp.int32)
            delays = eqx.error_if(
                delays, jnp.any(delays > self.max_delay),
                "global_speed gives delays longer than the history this simulator was built "
                "for; build it with make_simulator(..., min_speed=...)",
            )
        length = history_length(self.max_delay)
        mask = length - 1
        cvar = jnp.array(self.history_state_indices, dtype=jnp.int32)
        if history is None:
            buffer = jnp.broadcast_to(state[cvar], (length, cvar.size, n_nodes))
        else:
            horizon = history.shape[0]
            rows = (jnp.arange(horizon) - (horizon - 1)) & mask
            buffer = jnp.zeros((length, cvar.size, n_nodes), state.dtype).at[rows].set(history)

        def full(value):
            return jnp.broadcast_to(value, (n_nodes,)).astype(state.dtype)

        def step(x, buffer, k):
            coupling = []
            rows = (k - delays) & mask
            for term in lowered.couplings:
                delayed = [buffer[rows, h, self.sources] for h in term.history_index]
                local = [x[i][self.targets] for i in term.local]
                pre = jnp.broadcast_to(term.pre(*local, *delayed, *values)[0], rows.shape)
                summed = jax.ops.segment_sum(self.weights * pre, self.targets,
                                             num_segments=n_nodes, indices_are_sorted=True)
                coupling.append(full(term.post(summed, *values)[0]))
            noise = []
            if self.stochastic:
                noise = list(self._noise(key, k, set_index, state.dtype))
            new = lowered.step(*x, *coupling, *noise, *values)
            x = jnp.stack([full(v) for v in new])
            buffer = buffer.at[(k + 1) & mask].set(x[cvar])
            return x, buffer

        def exposures(x):
            return jnp.stack([jnp.broadcast_to(v, x.shape[1:]).astype(x.dtype)
                              for v in lowered.exposures(*x, *values)])

        n_steps = self.n_samples * self.every  # the padding of the last chunk is not recorded
        monitors = self.monitors

        def record(x):
            """The state variables then the exposures, (n_state + n_exposure, N)."""
            return jnp.concatenate([x, exposures(x)]) if self.n_exposures else x

        def sample(carry, index):
            def advance(inner, j):
                x, buffer, reduced, first = inner
                k = index * self.every + j
                x, buffer = step(x, buffer, k)
                # the first step whose state is not finite (neuralmass.divergence)
                first = jnp.where((first < 0) & (k < n_steps) & ~jnp.all(jnp.isfinite(x)),
                                  (k + 1).astype(first.dtype), first)
                now = record(x)
                reduced = tuple(monitor_update(m, c, now, k)
                                for m, c in zip(monitors, reduced, strict=True))
                return (x, buffer, reduced, first), None

            x, buffer, reduced, first = carry
            (x, buffer, reduced, first), _ = jax.lax.scan(
                advance, (x, buffer, reduced, first), jnp.arange(self.every))
            last = index * self.every + self.every - 1
            now = record(x)
            emitted = tuple(monitor_emit(m, c, now, last)
                            for m, c in zip(monitors, reduced, strict=True))
            return (x, buffer, tuple(c for c, _ in emitted), first), \
                tuple(y for _, y in emitted)

        chunk, n_chunks = self.chunking

        @jax.checkpoint
        def run_chunk(carry, c):
            return jax.lax.scan(sample, carry, c * chunk + jnp.arange(chunk))

        reduced = tuple(monitor_init(m, record(state)) for m in monitors)
        (_, _, _, first), outputs = jax.lax.scan(
            run_chunk, (state, buffer, reduced, jnp.int32(-1)), jnp.arange(n_chunks))
        outputs = tuple(
            collect(m, y.reshape((n_chunks * chunk,) + y.shape[2:])[: self.n_samples],
                    self.every) for m, y in zip(monitors, outputs, strict=True))
        return outputs, first


@eqx.filter_jit
def _run_batch(simulator, values, axes, state, history, key, table, speed_index, first_set):
    """The sets of one batch, vmapped; ``first_set``: the global index of its first set (the
    noise's counter)."""

    def one_set(values, state, history, set_index, speed_index):
        delays = None if table is None else table[speed_index]
        return simulator._run_one(values, state, history, key, set_index, delays)

    batched = jax.vmap(
        one_set,
        in_axes=(
            axes,
            2 if state.ndim == 3 else None,
            None if history is None or history.ndim == 3 else 3,
            0,
            0,
        ),
        out_axes=-1,
    )
    n_sets = speed_index.shape[0]
    return batched(values, state, history, first_set + jnp.arange(n_sets), speed_index)


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
