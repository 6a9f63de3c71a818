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
- ``monitor_state[t]``: what each monitor keeps from step to step (running totals, BOLD's
  ring of 4-ms bins, the Balloon–Windkessel state), and ``monitor_out`` every monitor's
  samples, laid out by :mod:`._monitor_layout` (see :func:`record_monitors`).
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
nm_balloon_step = nm_balloon_bold = BalloonValues = None
HRF_BINS = 1
NM_MONITORS = 1
NM_MONITOR_KINDS = (0,)


def advance_tile(k_start, k_stop, x, history, base, mask, delay, source, weight, near_end,
                 indptr, far_start, far_delay, far_target, far_weight, rowsum, params, sets,
                 set_offset, n_valid, key, monitors, variables, monitor_values, monitor_state,
                 monitor_out, first_nonfinite):
    """Advance one tile through steps ``k_start … k_stop - 1`` and record the monitor.

    Arguments are the tile's own parts of the arrays of the module docstring (``x``,
    ``params``, ``sets``, ``totals``; ``base`` and ``mask`` of its history; the edge arrays of
    its speed) and the shared ones. ``monitors``, ``variables``, ``monitor_values``,
    ``monitor_state`` (the tile's) and ``monitor_out``: the monitors, see
    :func:`record_monitors`. ``key``: the Philox key (2,) of the seed. ``indptr`` and
    ``near_end`` are uint64 (no negative-index checks).
    """
    q = load_block(params, 0, NM_SWEPT_BLOCK)
    node_stride = (mask + 2) * NM_CHANNEL_BLOCK  # one padding row, see the module docstring
    noise = np.zeros(NM_STATE_BLOCK, x.dtype)
    due = np.empty(NM_MONITORS, np.int64)
    exposures = np.zeros(NM_EXPOSURE_BLOCK, x.dtype)
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
            for j in range(NM_MONITORS):  # each monitor's sample due after step k, else -1
                every = monitors[j, 1]
                due[j] = (k + 1) // every - 1 if (k + 1) % every == 0 else -1
            write = base + ((k + 1) & mask) * NM_CHANNEL_BLOCK
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
                record_monitors(k, i, x, q, out, sets, n_valid, monitors, variables,
                                monitor_values, monitor_state, monitor_out, exposures, due)
            for p in range(NM_LANES):
                if first_nonfinite[p] < 0 and health[p] != health[p]:
                    first_nonfinite[p] = k + 1
        block_start += block_steps


# kinds of monitor (column 0 of ``monitors``)
MONITOR_LAST, MONITOR_AVERAGE, MONITOR_BOLD, MONITOR_BALLOON = 0, 1, 2, 3


def record_monitors(k, i, x, q, out, sets, n_valid, monitors, variables, monitor_values,
                    monitor_state, monitor_out, exposures, due):
    """Update every monitor with node ``i``'s new state ``out`` after step ``k`` (the state
    at t = (k + 1) dt) and write the samples that are due.

    ``monitors`` (n_monitors, 9) int64, one row per monitor: kind (``MONITOR_*``), steps per
    sample, offset of its output in the flat ``monitor_out``, offset of its per-tile values
    in ``monitor_state``, its number of variables, their offset in ``variables`` (record
    indices: state v < NM_STATE, else exposure v - NM_STATE), steps per 4-ms bin (BOLD), the
    offset of its constants in ``monitor_values`` (temporal average: the window length in
    steps; BOLD: the HRF_BINS = 5000 lag weights, offset, scale;
    Balloon: kappa, gamma, tau_o, alpha, E0, V0, k1, k2, k3, dt in s), and P.

    Outputs: (T, n_state + n_exposure, N, P) for the raw, subsample and temporal-average
    monitors, (T, n_variables, N, P) for BOLD and Balloon. Per-tile values, per node: the
    running totals (NM_RECORD_BLOCK, temporal average); the 4-ms bin's running sum then a ring
    of HRF_BINS bins, bin K in slot K % HRF_BINS (BOLD), each (n_variables, L); the
    Balloon–Windkessel state (n_variables, 4, L).
    """
    have_exposures = False
    n_sets = monitors[0, 8]
    n_record = NM_STATE + NM_EXPOSURES
    for j in range(NM_MONITORS):
        kind = NM_MONITOR_KINDS[j]  # a compile-time constant once LLVM unrolls the loop
        out_at, at, sample = monitors[j, 2], monitors[j, 3], due[j]
        if kind == MONITOR_AVERAGE:
            record = at + i * NM_RECORD_BLOCK
            total = nm_record(load_block(monitor_state, record, NM_RECORD_BLOCK), out, q)
            store_block(monitor_state, record, total, 0, NM_RECORD_BLOCK)
            if sample >= 0:
                row = out_at + sample * n_record * NM_NODES * n_sets
                divisor = monitor_values[monitors[j, 7]]
                write_rows(monitor_state, record, 0, n_record, divisor, monitor_out, row, i,
                           sets, n_valid, n_sets)
                for m in range(NM_RECORD_BLOCK):
                    monitor_state[record + m] = 0
            continue
        if kind == MONITOR_LAST:
            if sample >= 0:
                if NM_EXPOSURES > 0 and not have_exposures:
                    store_block(exposures, 0, nm_exposures(out, q), 0, NM_EXPOSURE_BLOCK)
                    have_exposures = True
                row = out_at + sample * n_record * NM_NODES * n_sets
                write_rows(x, i * NM_STATE_BLOCK, 0, NM_STATE, 1, monitor_out, row, i, sets,
                           n_valid, n_sets)
                write_rows(exposures, 0, NM_STATE, NM_EXPOSURES, 1, monitor_out, row, i, sets,
                           n_valid, n_sets)
            continue
        if NM_EXPOSURES > 0 and not have_exposures:
            for v in range(monitors[j, 4]):
                if variables[monitors[j, 5] + v] >= NM_STATE:
                    store_block(exposures, 0, nm_exposures(out, q), 0, NM_EXPOSURE_BLOCK)
                    have_exposures = True
                    break
        hemodynamic_monitor(j, k, i, x, sets, n_valid, monitors, variables, monitor_values,
                            monitor_state, monitor_out, exposures, sample, n_sets)


def hemodynamic_monitor(j, k, i, x, sets, n_valid, monitors, variables, monitor_values,
                        monitor_state, monitor_out, exposures, sample, n_sets):
    """BOLD or Balloon monitor ``j`` after step ``k`` at node ``i`` (see
    :func:`record_monitors`; ``sample``: the sample due, else -1); a call of its own, so
    that the loops of the other monitors stay small."""
    kind, out_at, at = monitors[j, 0], monitors[j, 2], monitors[j, 3]
    due = sample >= 0
    n_var, first_var = monitors[j, 4], monitors[j, 5]
    constants = monitors[j, 7]
    if kind == MONITOR_BOLD:
        per_bin = monitors[j, 6]
        base = at + i * n_var * NM_LANES * (1 + HRF_BINS)
        bin_due = (k + 1) % per_bin == 0
        newest = (k + 1) // per_bin
        slot = base + n_var * NM_LANES * (1 + newest % HRF_BINS)
        for v in range(n_var):
            r = variables[first_var + v]
            for p in range(NM_LANES):
                value = x[i * NM_STATE_BLOCK + r * NM_LANES + p] if r < NM_STATE else \
                    exposures[(r - NM_STATE) * NM_LANES + p]
                monitor_state[base + v * NM_LANES + p] += value
                if bin_due:
                    monitor_state[slot + v * NM_LANES + p] = \
                        monitor_state[base + v * NM_LANES + p] / per_bin
                    monitor_state[base + v * NM_LANES + p] = 0
            if due:
                offset = monitor_values[constants + HRF_BINS]
                scale = monitor_values[constants + HRF_BINS + 1]
                for p in range(n_valid):
                    total = 0.0
                    for m in range(HRF_BINS):
                        ring = base + n_var * NM_LANES * (1 + (newest - m) % HRF_BINS)
                        total += monitor_values[constants + m] * \
                            monitor_state[ring + v * NM_LANES + p]
                    monitor_out[out_at + ((sample * n_var + v) * NM_NODES + i) * n_sets
                                + sets[p]] = (total - offset) * scale
    else:
        c = BalloonValues(monitor_values[constants], monitor_values[constants + 1],
                          monitor_values[constants + 2], monitor_values[constants + 3],
                          monitor_values[constants + 4], monitor_values[constants + 5],
                          monitor_values[constants + 6], monitor_values[constants + 7],
                          monitor_values[constants + 8])
        dt_s = monitor_values[constants + 9]
        base = at + i * n_var * 4 * NM_LANES
        for v in range(n_var):
            r = variables[first_var + v]
            for p in range(NM_LANES):
                value = x[i * NM_STATE_BLOCK + r * NM_LANES + p] if r < NM_STATE else \
                    exposures[(r - NM_STATE) * NM_LANES + p]
                at_v = base + v * 4 * NM_LANES + p
                state = (monitor_state[at_v], monitor_state[at_v + NM_LANES],
                         monitor_state[at_v + 2 * NM_LANES],
                         monitor_state[at_v + 3 * NM_LANES])
                state = nm_balloon_step(state, value, dt_s, c)
                for m in range(4):
                    monitor_state[at_v + m * NM_LANES] = state[m]
                if due and p < n_valid:
                    monitor_out[out_at + ((sample * n_var + v) * NM_NODES + i) * n_sets
                                + sets[p]] = nm_balloon_bold(state, c)


def write_rows(source, start, first_row, n_rows, divisor, monitor_out, row, i, sets, n_valid,
               n_sets):
    """``monitor_out[row + ((first_row + v) N + i) P + sets[p]] = source[start + v L + p] /
    divisor`` for the ``n_rows`` variables v and the valid lanes p."""
    for v in range(n_rows):
        for p in range(n_valid):
            monitor_out[row + ((first_row + v) * NM_NODES + i) * n_sets + sets[p]] = \
                source[start + v * NM_LANES + p] / divisor


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
#: compiled with the kernels (same globals) and called from them
HELPERS = (record_monitors, write_rows)
#: compiled with the kernels and called (not inlined) from them
CALLED = (hemodynamic_monitor,)
