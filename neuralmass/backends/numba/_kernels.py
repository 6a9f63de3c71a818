"""The loops of the Numba backend, written once for every model.

These are plain Python functions. :mod:`._compile` compiles them once per generated model
module (:mod:`._lower`), with that module as their globals: the ``NM_*`` sizes become
compile-time constants and the ``nm_*`` functions are inlined, so each model gets loops
specialised to it without any loop source being generated. The names below are placeholders
that binding replaces.

Data layout (all arrays flat per tile, lane fastest; ``L = NM_LANES`` parameter sets a tile):

- ``state[t]``: (N, n_state, L), the state of every node of tile t.
- ``history``: one flat array; tile t owns ``B_t`` rows from ``history_start[t]``, a ring
  buffer of power-of-two length ``B_t = history_mask[t] + 1 ≥ max delay + 2``: time τ lives
  in row ``τ & mask``; a row is (N, n_channels, L). Step k reads rows ``(k - d) & mask`` and
  writes row ``(k + 1) & mask`` (never read during step k, since ``B_t ≥ max delay + 2``).
- ``params[t]``: (n_swept, L) swept parameter values; ``tile_sets[t, p]`` the user's index of
  the set in lane p (lanes ≥ ``tile_valid[t]`` repeat a set and are not recorded).
- ``sums[t]``: (N, n_state + n_exposures, L) running totals of the temporal average.
- ``delays[s]``: integer delay of each edge (CSR order) at speed s; ``source_offset[e]`` is
  the source node of edge e times the channel block ``n_channels * L``.

Each tile advances ``k_stop - k_start`` steps on its own (``prange`` over tiles), so its
history stays in cache while it runs; the caller runs the steps in chunks (progress,
Ctrl-C).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...random import normals4
from ._lanes import load_block, store_block

__all__ = ["advance", "initialize", "KERNELS"]

# ---- bound per model by _compile (placeholders, see the module docstring) -----------------
NM_NODES = NM_LANES = NM_STATE = NM_CHANNELS = NM_SUMS = NM_EXPOSURES = 0
NM_STATE_BLOCK = NM_CHANNEL_BLOCK = NM_SWEPT_BLOCK = NM_EXPOSURE_BLOCK = 1
NM_CHANNEL_VALUES = NM_EXPOSURE_VALUES = 0
NM_COUPLED = 0
NM_COUPLED_STATES = (0,)
NM_STOCHASTIC = False
nm_zeros = nm_edge = nm_node = nm_channels = nm_exposures = None


def advance(k_start, k_stop, state, history, history_start, history_mask, tile_speed, delays,
            source_offset, indptr, weights, rowsum, params, tile_sets, tile_valid, key,
            every, window, sums, out_states, out_exposures):
    """Advance every tile through steps ``k_start … k_stop - 1`` and record the monitor.

    ``every``: steps per sample; ``window``: (1,) array holding ``every`` in the working
    dtype when the monitor averages, else 0; samples go to ``out_states`` (T, n_state, N, P)
    and ``out_exposures`` (T, n_exposure, N, P). ``key``: the Philox key (2,) of the seed.
    """
    n_tiles = state.shape[0]
    row_size = NM_NODES * NM_CHANNEL_BLOCK
    record_size = NM_STATE_BLOCK + NM_EXPOSURE_BLOCK
    average = window[0] != 0
    for t in prange(n_tiles):
        x = state[t]
        totals = sums[t]
        sets = tile_sets[t]
        n_valid = tile_valid[t]
        base = history_start[t]
        mask = history_mask[t]
        delay = delays[tile_speed[t]]
        q = load_block(params[t], 0, NM_SWEPT_BLOCK)
        noise = np.zeros(NM_STATE_BLOCK, state.dtype)
        for k in range(k_start, k_stop):
            write = base + ((k + 1) & mask) * row_size
            sample_due = (k + 1) % every == 0
            sample = (k + 1) // every - 1
            for i in range(NM_NODES):
                xv = load_block(x, i * NM_STATE_BLOCK, NM_STATE_BLOCK)
                acc = nm_zeros()
                if NM_SUMS > 0:
                    for e in range(indptr[i], indptr[i + 1]):
                        offset = base + ((k - delay[e]) & mask) * row_size + source_offset[e]
                        acc = nm_edge(acc, load_block(history, offset, NM_CHANNEL_BLOCK),
                                      weights[e], xv, q)
                z = xv
                if NM_STOCHASTIC:
                    for p in range(NM_LANES):
                        for block in range((NM_STATE + 3) // 4):
                            z4 = normals4(key[0], key[1], k, i, sets[p], block)
                            for m in range(min(4, NM_STATE - 4 * block)):
                                noise[(4 * block + m) * NM_LANES + p] = z4[m]
                    z = load_block(noise, 0, NM_STATE_BLOCK)
                out = nm_node(xv, acc, z, q, rowsum[i])
                store_block(x, i * NM_STATE_BLOCK, out, 0, NM_STATE_BLOCK)
                if NM_CHANNELS > 0:
                    store_block(history, write + i * NM_CHANNEL_BLOCK, out, NM_STATE_BLOCK,
                                NM_CHANNEL_VALUES)
                record = i * record_size
                if average:
                    exposures = nm_exposures(out, q)
                    for m in range(NM_STATE_BLOCK):
                        totals[record + m] += out[m]
                    for m in range(NM_EXPOSURE_VALUES):
                        totals[record + NM_STATE_BLOCK + m] += exposures[m]
                if sample_due:
                    if average:
                        for v in range(NM_STATE):
                            for p in range(n_valid):
                                m = record + v * NM_LANES + p
                                out_states[sample, v, i, sets[p]] = totals[m] / window[0]
                        for v in range(NM_EXPOSURES):
                            for p in range(n_valid):
                                m = record + NM_STATE_BLOCK + v * NM_LANES + p
                                out_exposures[sample, v, i, sets[p]] = totals[m] / window[0]
                        for m in range(record_size):
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


def initialize(state, history, history_start, history_mask, history_rows, params, tile_sets,
               initial_state, initial_history):
    """Fill each tile's state and history rows ``-max delay … 0`` from the plan.

    ``initial_state``: (n_state, N, P0) with P0 = 1 (the same in every set) or P;
    ``initial_history``: (H, n_coupled, N, P1), row H-1 being t = 0, or H = 0 for a history
    constant in time and equal to the initial state.
    """
    n_tiles = state.shape[0]
    row_size = NM_NODES * NM_CHANNEL_BLOCK
    n_rows_given = initial_history.shape[0]
    state_sets = initial_state.shape[2]
    history_sets = initial_history.shape[3]
    for t in prange(n_tiles):
        x = state[t]
        sets = tile_sets[t]
        q = load_block(params[t], 0, NM_SWEPT_BLOCK)
        scratch = np.empty(NM_STATE_BLOCK, state.dtype)
        for i in range(NM_NODES):
            for v in range(NM_STATE):
                for p in range(NM_LANES):
                    column = sets[p] if state_sets > 1 else 0
                    x[i * NM_STATE_BLOCK + v * NM_LANES + p] = initial_state[v, i, column]
        if NM_CHANNELS == 0:
            continue
        rows = history_rows[t]
        for r in range(rows):
            start = history_start[t] + ((r - (rows - 1)) & history_mask[t]) * row_size
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
                store_block(history, start + i * NM_CHANNEL_BLOCK, channels, 0,
                            NM_CHANNEL_VALUES)


KERNELS = (advance, initialize)
