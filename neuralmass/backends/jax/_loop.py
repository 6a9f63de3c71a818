"""The JAX backend's time loop, with the parameter sets as the trailing, contiguous axis.

Layout, P sets last: the state (n_state, N, P); the history ring (B, n_cvar, N, P), time τ in
row ``τ & (B - 1)`` (:func:`~neuralmass.scheme.history_length`); the delayed reads of one
coupling term (nnz, P); their weighted sum per target node (N, P) by ``segment_sum`` over the
edges, which are sorted by target. Parameters are scalars or (P,) arrays, broadcast against
(N, P) and (nnz, P). The P sets are G groups of Q = P / G that share their delays (nnz, G),
group-major (:func:`~._simulator.speed_groups`): the ring is (B, n_cvar, N, G, Q) as well, and
a delayed read gathers one slice of Q contiguous values per edge and group.

**Blocks.** XLA on the CPU copies a loop-carried array that the loop body both reads and
updates (measured with jax 0.10: a one-row update of a (1024, 76, 256) ring costs a copy of the
whole ring each step). So steps run in blocks of ``L ≤ d_min + 1`` steps, ``d_min`` the
shortest delay: every delayed read of a block hits a row written before the block started, so
the block reads a fixed ring and writes its L new rows at the end, one copy per block. Delays
computed from a traced speed are unknown when compiling: then L = 1.

**Units and chunks.** A unit is either one block of ``m = L // every`` whole samples (when
``every ≤ L``), or one sample of ``every`` steps run as blocks of L steps and a shorter last
block. Units are grouped in ~√(units) chunks under ``jax.checkpoint``: ``jax.grad`` keeps the
carry (state, ring) at each chunk's start and recomputes one chunk at a time. The last chunk
is padded; the padding's samples are dropped and its steps are not counted as non-finite.

**Monitors.** A loop sample is ``every`` steps, the greatest common divisor of the monitors'
periods. Each monitor is a carry of the loop (:mod:`._monitors`: ``update`` after each step,
``emit`` at each loop sample's end, ``collect`` keeps the samples that are due), so several
monitors are reduced in one run and BOLD rings or Balloon states persist across samples.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from ...random import philox_normals
from ...scheme import history_length
from . import _monitors

__all__ = ["LoopShape", "loop_shape", "run_loop"]

#: The longest block: its rows (L, n_cvar, N, P) are an array of the loop.
MAX_BLOCK = 64


@dataclasses.dataclass(frozen=True)
class LoopShape:
    """The static structure of a run's loop (see the module docstring).

    ``block``: L, the steps between two writes of the ring; ``unit_samples``: samples per unit
    (m, or 1 when a sample spans several blocks); ``chunk_units``, ``n_chunks``: units per
    checkpointed chunk and the number of chunks."""

    every: int
    block: int
    unit_samples: int
    chunk_units: int
    n_chunks: int

    @property
    def unit_steps(self) -> int:
        return self.unit_samples * self.every

    @property
    def chunk_samples(self) -> int:
        return self.chunk_units * self.unit_samples

    @property
    def chunk_steps(self) -> int:
        return self.chunk_units * self.unit_steps


def loop_shape(n_samples: int, every: int, shortest_delay: int | None) -> LoopShape:
    """The loop of ``n_samples`` samples of ``every`` steps when no delay is shorter than
    ``shortest_delay`` steps (``None``: unknown when compiling, a traced speed)."""
    block = 1 if shortest_delay is None else max(1, min(shortest_delay + 1, MAX_BLOCK))
    unit_samples = block // every if every <= block else 1
    n_units = -(-n_samples // unit_samples)
    n_chunks = -(-n_units // max(1, math.isqrt(n_units)))
    return LoopShape(every=every, block=block, unit_samples=unit_samples,
                     chunk_units=-(-n_units // n_chunks), n_chunks=n_chunks)


def run_loop(sim, shape: LoopShape, values, state, history, key, delays, set_index):
    """The samples of one batch of P sets.

    Args:
        sim: the :class:`~._simulator.Simulator`.
        shape: from :func:`loop_shape`, for the delays given.
        values: each parameter as a scalar or a (P,) array, ``sim.parameter_names`` order.
        state: (n_state, N, P) at t = 0; history: ``None`` or (H, n_cvar, N, P).
        key: the Philox key (2,) uint32; set_index: (P,) global index of each set (noise).
        delays: (nnz, G) integer steps, G dividing P: one column per group of P / G
            consecutive sets.

    Returns (outputs, first): one array per monitor of ``sim.monitors`` (T_m, n_rows, N, P)
    (the state variables then the exposures, or a BOLD monitor's variables), and (P,) int32
    each set's first non-finite step, -1 while finite.
    """
    lowered, n_nodes = sim.lowered, sim.n_nodes
    n_sets = state.shape[-1]
    mask = history_length(sim.max_delay) - 1
    cvar = jnp.array(sim.history_state_indices, dtype=jnp.int32)
    n_steps = sim.n_samples * sim.every  # steps past it (padding) are not recorded
    weights = sim.weights[:, None]
    n_groups = delays.shape[1]
    group_size = n_sets // n_groups
    n_edges = sim.sources.shape[0]

    def full(value):
        return jnp.broadcast_to(value, (n_nodes, n_sets)).astype(state.dtype)

    def exposures(x):
        return jnp.stack([full(v) for v in lowered.exposures(*x, *values)])

    monitors = sim.monitors

    def record(x):
        """The state variables then the exposures, (n_state + n_exposure, N, P)."""
        return jnp.concatenate([x, exposures(x)]) if sim.n_exposures else x

    def update(reduced, x, k):
        now = record(x)
        return tuple(_monitors.update(m, c, now, k)
                     for m, c in zip(monitors, reduced, strict=True))

    def emit(reduced, x, k):
        """(the carries for the next loop sample, the outputs) at the end of step k."""
        now = record(x)
        emitted = tuple(_monitors.emit(m, c, now, k)
                        for m, c in zip(monitors, reduced, strict=True))
        return tuple(c for c, _ in emitted), tuple(y for _, y in emitted)

    # The ring as slices of Q sets, (B · n_cvar · N · G, Q): (nnz, G) where each edge's
    # source, history variable 0, group g sits in ring row 0, and the slices of a ring row.
    source_slices = sim.sources[:, None] * n_groups + jnp.arange(n_groups, dtype=jnp.int32)
    row_slices = len(sim.history_state_indices) * n_nodes * n_groups
    flat = (mask + 1) * row_slices < 2**31  # a flat int32 index reaches every slice

    def delayed(ring, rows, h):
        """(nnz, P): history variable ``h`` of each edge's source at its ring row ``rows``
        (nnz, G), one gathered slice of Q sets per edge and group. One flat index per slice
        (measured: 2.6× faster on the CPU than a (row, slice) pair, which serves rings of
        2^31 slices or more); indices are in bounds by construction."""
        at = source_slices + h * n_nodes * n_groups
        if flat:
            reads = ring.reshape(-1, group_size).at[rows * row_slices + at]
        else:
            reads = ring.reshape(mask + 1, row_slices, group_size).at[rows, at]
        return reads.get(mode="promise_in_bounds").reshape(n_edges, n_sets)

    def noise(k):
        """(n_state, N, P) standard normals of step k: counter (step, node, set, v // 4)."""
        n_blocks = -(-sim.n_state // 4)
        z = philox_normals(
            jnp, (key[0], key[1]), jnp.asarray(k).astype(jnp.uint32),
            jnp.arange(n_nodes, dtype=jnp.uint32)[None, :, None],
            set_index.astype(jnp.uint32)[None, None, :],
            jnp.arange(n_blocks, dtype=jnp.uint32)[:, None, None], state.dtype)
        # (n_blocks, 4, N, P) -> variable v = 4 * block + m
        return jnp.stack(z, axis=1).reshape(4 * n_blocks, n_nodes, n_sets)[: sim.n_state]

    def step(x, ring, k):
        """The state after step k (time k to k + 1), reading the ring (rows ≤ k)."""
        rows = (k - delays) & mask
        coupling = []
        for term in lowered.couplings:
            reads = [delayed(ring, rows, h) for h in term.history_index]
            local = [x[i][sim.targets] for i in term.local]
            pre = jnp.broadcast_to(term.pre(*local, *reads, *values)[0],
                                   (sim.targets.shape[0], n_sets))
            summed = jax.ops.segment_sum(weights * pre, sim.targets, num_segments=n_nodes,
                                         indices_are_sorted=True)
            coupling.append(full(term.post(summed, *values)[0]))
        z = list(noise(k)) if sim.stochastic else []
        return jnp.stack([full(v) for v in lowered.step(*x, *coupling, *z, *values)])

    def run_steps(carry, ring, first_step, n):
        """n steps from ``first_step`` on a fixed ring: (carry, rows (n, n_cvar, N, P))."""

        def one(carry, j):
            x, reduced, first = carry
            k = first_step + j
            x = step(x, ring, k)
            # the first step whose state is not finite (neuralmass.divergence)
            diverged = (first < 0) & (k < n_steps) & ~jnp.all(jnp.isfinite(x), axis=(0, 1))
            first = jnp.where(diverged, (k + 1).astype(first.dtype), first)
            return (x, update(reduced, x, k), first), x[cvar]

        return jax.lax.scan(one, carry, jnp.arange(n))

    def write(ring, first_step, rows):
        """The ring with ``rows`` (n, n_cvar, N, P), times first_step + 1 …, written."""
        where = (first_step + 1 + jnp.arange(rows.shape[0])) & mask
        return ring.at[where].set(rows, unique_indices=True)

    if shape.every <= shape.block:
        def unit(carry, u):  # one block of m samples
            x, ring, reduced, first = carry
            start = u * shape.unit_steps

            def sample(carry, s):
                first_step = start + s * shape.every
                (x, reduced, first), rows = run_steps(carry, ring, first_step, shape.every)
                reduced, outputs = emit(reduced, x, first_step + shape.every - 1)
                return (x, reduced, first), (outputs, rows)

            (x, reduced, first), (samples, rows) = jax.lax.scan(
                sample, (x, reduced, first), jnp.arange(shape.unit_samples))
            ring = write(ring, start, rows.reshape((shape.unit_steps,) + rows.shape[2:]))
            return (x, ring, reduced, first), samples
    else:
        n_blocks, rest = divmod(shape.every, shape.block)

        def unit(carry, u):  # one sample of several blocks
            x, ring, reduced, first = carry
            start = u * shape.every

            def block(carry, b):
                x, ring, reduced, first = carry
                (x, reduced, first), rows = run_steps((x, reduced, first), ring,
                                                      start + b * shape.block, shape.block)
                return (x, write(ring, start + b * shape.block, rows), reduced, first), None

            (x, ring, reduced, first), _ = jax.lax.scan(
                block, (x, ring, reduced, first), jnp.arange(n_blocks))
            if rest:
                last = start + n_blocks * shape.block
                (x, reduced, first), rows = run_steps((x, reduced, first), ring, last, rest)
                ring = write(ring, last, rows)
            reduced, outputs = emit(reduced, x, start + shape.every - 1)
            return (x, ring, reduced, first), jax.tree_util.tree_map(lambda v: v[None], outputs)

    @jax.checkpoint
    def chunk(carry, c):
        return jax.lax.scan(unit, carry, c * shape.chunk_units + jnp.arange(shape.chunk_units))

    ring = _initial_ring(state, history, cvar, mask)
    reduced = tuple(_monitors.init(m, record(state)) for m in monitors)
    (_, _, _, first), outputs = jax.lax.scan(
        chunk, (state, ring, reduced, jnp.full(n_sets, -1, jnp.int32)),
        jnp.arange(shape.n_chunks))

    def samples(m, values):  # (n_chunks, chunk_units, unit_samples, ...) -> (T_m, ...)
        return _monitors.collect(m, values.reshape((-1,) + values.shape[3:])[: sim.n_samples],
                                 sim.every)

    return tuple(samples(m, y) for m, y in zip(monitors, outputs, strict=True)), first


def _initial_ring(state, history, cvar, mask):
    """(B, n_cvar, N, P): constant in time and equal to the state's coupled variables, or
    ``history`` (H, n_cvar, N, P), row H - 1 being t = 0."""
    length = mask + 1
    if history is None:
        return jnp.broadcast_to(state[cvar], (length,) + state[cvar].shape)
    horizon = history.shape[0]
    rows = (jnp.arange(horizon) - (horizon - 1)) & mask
    return jnp.zeros((length,) + history.shape[1:], state.dtype).at[rows].set(history)
