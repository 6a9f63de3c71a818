"""The loops of the Numba backend, written once for every model.

These are plain Python functions. :mod:`._compile` compiles them once per generated model
module (:mod:`._lower`), with that module as their globals: the ``NM_*`` sizes become
compile-time constants and the ``nm_*`` functions are inlined, so each model gets loops
specialised to it without any loop source being generated. The names below are placeholders
that binding replaces.

Data layout (flat arrays, lane fastest; ``L = NM_LANES`` parameter sets per tile, ``W =
NM_CHANNEL_BLOCK`` = channels × L values per node and time):

- ``state[t]``: (N, n_state, L), the state of every node of tile t.
- ``history``: one flat array; tile t owns ``N × B_t × W`` values from ``history_start[t]``,
  node-major: node j's ring buffer of ``B_t = history_mask[t] + 1 ≥ max delay + 2`` rows,
  followed by one unused row (a power-of-two node stride would map the same row of every
  node to the same cache set).
  Time τ lives in row ``τ & mask``. Step k reads rows ``(k - d) & mask`` and writes row
  ``(k + 1) & mask``, which no delay reaches during step k since ``B_t ≥ max delay + 2``.
- ``params[t]``: (n_swept, L) swept parameter values; ``tile_sets[t, p]`` the user's index of
  the set in lane p (lanes ≥ ``tile_valid[t]`` repeat a set and are not recorded).
- ``totals[t]``: (N, n_state + n_exposures, L) running sums of the temporal average.
- ``first_nonfinite[t]``: (L,) the first step n (state at t = n dt) whose state held NaN or
  inf in each lane, -1 while finite (:mod:`neuralmass.divergence`): each step adds
  ``0 × value`` of every new state value to a per-lane sum, NaN once any value is not
  finite, and checks it once per step.
- Edges per speed s (CSR by target, ``indptr``): ``delays[s]``, ``sources[s]``,
  ``weights[s]``, ordered within each target so that the *near* edges (delay <
  ``NM_BLOCK``) come first, up to ``near_end[s, i]``. The *far* edges again, ordered by
  source and delay: ``far_start[s]`` (N + 1 pointers), ``far_delay[s]``, ``far_target[s]``,
  ``far_weight[s]`` (padded to the longest list over speeds).

Steps run in blocks of ``NM_BLOCK``. When every coupling sum is a plain weighted sum of
history channels (``NM_CHANNEL_SUMS``), a block starts by summing the *far* edges for all
its steps (their rows are older than the block; :func:`block_channel_sums` reads them source
by source, so that they stream and overlapping windows are reused from cache);
each step then adds its near edges, whose rows are recent and in cache. A tile advances many
steps per call, so its history stays in cache while it runs; the caller (:mod:`._run`) runs
tiles on a pool of threads (the kernels release the GIL) in chunks of steps (progress,
Ctrl-C).
"""

from __future__ import annotations

import numpy as np

from ...random import normals4
from ._lanes import block_channel_sums, channel_sums, load_block, store_block

__all__ = ["advance_tile", "initialize_tile", "KERNELS"]

# ---- bound per model by _compile (placeholders, see the module docstring) -----------------
NM_NODES = NM_LANES = NM_STATE = NM_CHANNELS = NM_SUMS = NM_EXPOSURES = NM_COUPLED = 0
NM_STATE_BLOCK = NM_CHANNEL_BLOCK = NM_SUM_BLOCK = NM_SWEPT_BLOCK = NM_EXPOSURE_BLOCK = 1
NM_CHANNEL_VALUES = NM_EXPOSURE_VALUES = 0
NM_RECORD_BLOCK = 2
NM_BLOCK = 1
NM_COUPLED_STATES = (0,)
NM_STOCHASTIC = NM_CHANNEL_SUMS = False
nm_zeros = nm_edge = nm_node = nm_channels = nm_exposures = nm_record = None


def advance_tile(k_start, k_stop, x, history, base, mask, delay, source, weight, near_end,
                 indptr, far_start, far_delay, far_target, far_weight, rowsum, params, sets,
                 set_offset, n_valid, key, every, window, totals, out_states, out_exposures,
                 first_nonfinite):
    """Advance one tile through steps ``k_start … k_stop - 1`` and record the monitor.

    Arguments are the tile's own parts of the arrays of the module docstring (``x``,
    ``params``, ``sets``, ``totals``; ``base`` and ``mask`` of its history; the edge arrays of
    its speed) and the shared ones. ``every``: steps per sample; ``window``: ``every`` in the
    working dtype when the monitor averages, else 0; samples go to ``out_states`` (T,
    n_state, N, P) and ``out_exposures`` (T, n_exposure, N, P). ``key``: the Philox key (2,)
    of the seed. ``indptr`` and ``near_end`` are uint64 (no negative-index checks).
    """
    q = load_block(params, 0, NM_SWEPT_BLOCK)
    node_stride = (mask + 2) * NM_CHANNEL_BLOCK  # one padding row, see the module docstring
    average = window != 0
    noise = np.zeros(NM_STATE_BLOCK, x.dtype)
    health = np.zeros(NM_LANES, np.float64)  # NaN in a lane once a value is not finite
    far = np.zeros(NM_NODES * NM_BLOCK * NM_SUM_BLOCK if NM_CHANNEL_SUMS else NM_SUM_BLOCK,
                   x.dtype)
    block_start = k_start
    while block_start < k_stop:
        block_steps = min(NM_BLOCK, k_stop - block_start)
        if NM_CHANNEL_SUMS:
            block_channel_sums(history, base, mask, node_stride, block_start, block_steps,
                               far_start, far_delay, far_target, far_weight, far,
                               NM_SUM_BLOCK, NM_BLOCK)
        for k in range(block_start, block_start + block_steps):
            write = base + ((k + 1) & mask) * NM_CHANNEL_BLOCK
            sample_due = (k + 1) % every == 0
            sample = (k + 1) // every - 1
            for i in range(NM_NODES):
                xv = load_block(x, i * NM_STATE_BLOCK, NM_STATE_BLOCK)
                acc = nm_zeros()
                if NM_CHANNEL_SUMS:
                    acc = channel_sums(
                        history, base, mask, node_stride, k, delay, source, weight, indptr[i],
                        near_end[i], far,
                        (i * NM_BLOCK + k - block_start) * NM_SUM_BLOCK, NM_SUM_BLOCK)
                elif NM_SUMS > 0:
                    for e in range(indptr[i], indptr[i + 1]):
                        offset = base + source[e] * node_stride + \
                            ((k - delay[e]) & mask) * NM_CHANNEL_BLOCK
                        acc = nm_edge(acc, load_block(history, offset, NM_CHANNEL_BLOCK),
                                      weight[e], xv, q)
                z = xv
                if NM_STOCHASTIC:
                    for p in range(NM_LANES):
                        for block in range((NM_STATE + 3) // 4):
                            z4 = normals4(key[0], key[1], k, i, sets[p] + set_offset, block,
                                          x.dtype.type)
                            for m in range(min(4, NM_STATE - 4 * block)):
                                noise[(4 * block + m) * NM_LANES + p] = z4[m]
                    z = load_block(noise, 0, NM_STATE_BLOCK)
                out = nm_node(xv, acc, z, q, rowsum[i])
                for v in range(NM_STATE):
                    for p in range(NM_LANES):
                        health[p] += out[v * NM_LANES + p] * 0.0
                store_block(x, i * NM_STATE_BLOCK, out, 0, NM_STATE_BLOCK)
                if NM_CHANNELS > 0:
                    store_block(history, write + i * node_stride, out, NM_STATE_BLOCK,
                                NM_CHANNEL_VALUES)
                record = i * NM_RECORD_BLOCK
                if average:
                    total = nm_record(load_block(totals, record, NM_RECORD_BLOCK), out, q)
                    store_block(totals, record, total, 0, NM_RECORD_BLOCK)
                if sample_due:
                    if average:
                        for v in range(NM_STATE):
                            for p in range(n_valid):
                                m = record + v * NM_LANES + p
                                out_states[sample, v, i, sets[p]] = totals[m] / window
                        for v in range(NM_EXPOSURES):
                            for p in range(n_valid):
                                m = record + NM_STATE_BLOCK + v * NM_LANES + p
                                out_exposures[sample, v, i, sets[p]] = totals[m] / window
                        for m in range(NM_RECORD_BLOCK):
                            totals[record + m] = 0
                    else:
                        exposures = nm_exposures(out, q)
                        for v in range(NM_STATE):
                            for p in range(n_valid):
                                out_states[sample, v, i, sets[p]] = out[v * NM_LANES + p]
                        for v in range(NM_EXPOSURES):
                            for p in range(n_valid):
                                out_exposures[sample, v, i, sets[p]] = \
                                    exposures[v * NM_LANES + p]
            for p in range(NM_LANES):
                if first_nonfinite[p] < 0 and health[p] != health[p]:
                    first_nonfinite[p] = k + 1
        block_start += block_steps


def initialize_tile(x, history, base, mask, rows, params, sets, initial_state,
                    initial_history):
    """Fill one tile's state and its history rows ``-(rows - 1) … 0`` from the plan.

    ``initial_state``: (n_state, N, P0) with P0 = 1 (the same in every set) or P;
    ``initial_history``: (H, n_coupled, N, P1), row H-1 being t = 0, or H = 0 for a history
    constant in time and equal to the initial state.
    """
    n_rows_given = initial_history.shape[0]
    state_sets = initial_state.shape[2]
    history_sets = initial_history.shape[3]
    q = load_block(params, 0, NM_SWEPT_BLOCK)
    scratch = np.empty(NM_STATE_BLOCK, x.dtype)
    for i in range(NM_NODES):
        for v in range(NM_STATE):
            for p in range(NM_LANES):
                column = sets[p] if state_sets > 1 else 0
                x[i * NM_STATE_BLOCK + v * NM_LANES + p] = initial_state[v, i, column]
    if NM_CHANNELS > 0:
        node_stride = (mask + 2) * NM_CHANNEL_BLOCK
        for r in range(rows):
            start = base + ((r - (rows - 1)) & mask) * NM_CHANNEL_BLOCK
            for i in range(NM_NODES):
                for m in range(NM_STATE_BLOCK):
                    scratch[m] = x[i * NM_STATE_BLOCK + m]
                if n_rows_given > 0:
                    source_row = n_rows_given - rows + r
                    for c in range(NM_COUPLED):
                        v = NM_COUPLED_STATES[c]
                        for p in range(NM_LANES):
                            column = sets[p] if history_sets > 1 else 0
                            scratch[v * NM_LANES + p] = initial_history[source_row, c, i, column]
                channels = nm_channels(load_block(scratch, 0, NM_STATE_BLOCK), q)
                store_block(history, start + i * node_stride, channels, 0,
                            NM_CHANNEL_VALUES)


KERNELS = (advance_tile, initialize_tile)
