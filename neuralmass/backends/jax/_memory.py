"""The JAX backend's memory: what a call of the simulator allocates, estimated before it runs,
and how many parameter sets fit at once.

Per lane (a set, or a copy of one padding a group: :func:`~._simulator.speed_groups`), in
:mod:`._loop`'s layout: the history ring (B, n_cvar, N) twice (a block writes a
new ring from the old one); the carries (state, the monitors' running totals, BOLD rings and
Balloon states) and one block's new rows
(L, n_cvar, N); each step's delayed reads, local values and ``pre`` (nnz per history term) and
the integrator's stages; the scan's outputs padded to whole chunks, then sliced. Under
tracing (``jax.grad`` may follow; the tracer does not say) also the residuals of the
checkpointed scan: the carry (ring, state, running totals) at each chunk's start, one chunk's
per-step residuals (delayed reads, integrator stages) while it is differentiated, and the
ring's cotangent. Estimates, not exact: XLA may fuse or alias some of these.
"""

from __future__ import annotations

import jax

from .._memory import MemoryEstimate, available_bytes, refuse
from ._monitors import sizes as monitor_sizes

__all__ = ["available_memory", "estimate", "lanes_per_batch"]


def available_memory() -> tuple[int | None, str]:
    """(bytes available, where) on JAX's default device: the host's memory for the CPU, the
    device's free memory (``memory_stats``) for a GPU; None when unknown."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return available_bytes(), ""
    stats = device.memory_stats() or {}
    if "bytes_limit" not in stats:
        return None, ""
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f" on {device}"


def estimate(sim, n_sets: int, traced: bool, shape, groups=None,
             batched: bool = False) -> MemoryEstimate:
    """The bytes a call of ``sim`` (a :class:`~._simulator.Simulator`) on ``n_sets`` sets
    allocates at once, its loop being ``shape`` (:class:`~._loop.LoopShape`) and its lanes
    ``groups`` (:class:`~._simulator.SpeedGroups`; ``None``: one group of the ``n_sets``
    sets). ``batched``: its outputs are concatenated from batches (twice the outputs), then
    put back in the caller's order when there are several groups (three times). ``traced``:
    count the gradient's residuals."""
    from ...scheme import history_length

    lanes = n_sets if groups is None else groups.n_lanes
    n_groups = 1 if groups is None else int(groups.lanes.shape[0])
    itemsize = 8 if sim.dtype == "float64" else 4
    n_nodes, n_state, n_cvar = sim.n_nodes, sim.n_state, len(sim.history_state_indices)
    n_var = n_state + sim.n_exposures
    nnz = int(sim.targets.shape[0])
    n_delayed = sum(len(term.history_index) for term in sim.lowered.couplings)
    n_stages = sim.lowered.n_stages
    rows, kept = (sum(r) for r in zip(*(monitor_sizes(m, n_var) for m in sim.monitors)))
    copies = 1 if not batched else 3 if n_groups > 1 else 2
    outputs = sim.n_samples * rows * n_nodes * n_sets * itemsize * copies
    ring = history_length(sim.max_delay) * n_cvar * n_nodes
    history = 2 * ring * lanes * itemsize
    carries = (n_state + kept) * n_nodes
    per_step = nnz * (n_delayed + 2) + (n_stages + 1) * n_state * n_nodes
    padded = shape.n_chunks * shape.chunk_samples * rows * n_nodes
    work = ((carries + shape.block * n_cvar * n_nodes + per_step + padded) * lanes * itemsize
            + nnz * (12 + 2 * itemsize) + nnz * 4 * n_groups)  # edges; delays (nnz, G)
    residuals = 0
    if traced:
        per_chunk_step = nnz * n_delayed + (n_stages + 2) * n_state * n_nodes
        residuals = (shape.n_chunks * (ring + carries) + ring
                     + shape.chunk_steps * per_chunk_step) * lanes * itemsize
    return MemoryEstimate(outputs, history, work, (sim.n_samples, rows, n_nodes, n_sets),
                          itemsize, residuals)


def lanes_per_batch(sim, n_sets: int, groups, traced: bool, shape) -> int:
    """How many lanes of ``groups`` (:class:`~._simulator.SpeedGroups` of the ``n_sets``
    sets) to run at once, the loop being ``shape``, so that the call fits in the available
    memory: all of them when they fit, else the most that fit next to all the outputs.

    Raises:
        ParameterError: not even one lane fits (the message gives the figures).
    """
    available, where = available_memory()
    whole = estimate(sim, n_sets, traced, shape, groups)
    if available is None or whole.total <= available:
        return groups.n_lanes
    outputs = estimate(sim, n_sets, traced, shape, groups, batched=True).outputs
    one = estimate(sim, 1, traced, shape)
    per_lane = one.total - one.outputs
    fit = (available - outputs) // per_lane if available > outputs else 0
    if fit < 1:
        refuse(whole, available, where)
    return int(fit)
