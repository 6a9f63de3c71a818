"""Tiles: how the parameter sets of a plan are grouped for the CPU.

Sets are grouped by conduction speed (a tile shares one delay table) and cut into tiles of
``L`` lanes, ``L`` a power of two up to one SIMD register (64 bytes: 16 float32 or 8
float64). The last tile of a group repeats its last set in the unused lanes. Each tile owns a
ring buffer sized for its own speed, so fast-speed tiles keep a short history.
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np

from ...plan import RunPlan
from ...scheme import history_horizon, history_length

__all__ = ["Tiles", "choose_lanes", "make_tiles"]

_SIMD_BYTES = 64


@dataclasses.dataclass(frozen=True)
class Tiles:
    lanes: int
    sets: np.ndarray  # (n_tiles, L) int64: the user's index of the set in each lane
    valid: np.ndarray  # (n_tiles,) int64: lanes holding distinct sets
    speed: np.ndarray  # (n_tiles,) int64: index into plan.speeds
    history_rows: np.ndarray  # (n_tiles,) int64: history_horizon of the tile's max delay
    history_mask: np.ndarray  # (n_tiles,) int64: history_length - 1
    max_delays: np.ndarray  # (S,) per speed

    @property
    def n_tiles(self) -> int:
        return len(self.valid)

    def history_starts(self, row_size: int) -> tuple[np.ndarray, int]:
        """Offset of each tile's buffer in the flat history and its total length."""
        sizes = (self.history_mask + 2) * row_size  # + 1 padding row per node
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return starts, int(sizes.sum())


def choose_lanes(plan: RunPlan, threads: int | None = None) -> int:
    """Lanes per tile: one SIMD register of sets, fewer when a speed group is smaller, and
    halved while that leaves a thread without a tile."""
    threads = numba.get_num_threads() if threads is None else threads
    groups = np.bincount(plan.speed_index, minlength=len(plan.speeds))
    lanes = _SIMD_BYTES // np.dtype(plan.dtype).itemsize
    while lanes > 1 and lanes // 2 >= groups.max():
        lanes //= 2
    while lanes > 1 and int(np.sum(-(-groups // lanes))) < threads:
        lanes //= 2
    return lanes


def make_tiles(plan: RunPlan, lanes: int) -> Tiles:
    delays = plan.delays()
    max_delays = delays.max(axis=1) if delays.shape[1] else np.zeros(len(plan.speeds), int)
    sets, valid, speed = [], [], []
    for s in range(len(plan.speeds)):
        members = np.flatnonzero(plan.speed_index == s)
        for start in range(0, len(members), lanes):
            chunk = members[start:start + lanes]
            sets.append(np.concatenate([chunk, np.full(lanes - len(chunk), chunk[-1])]))
            valid.append(len(chunk))
            speed.append(s)
    speed = np.asarray(speed, dtype=np.int64)
    rows = np.array([history_horizon(d) for d in max_delays[speed]], dtype=np.int64)
    mask = np.array([history_length(d) - 1 for d in max_delays[speed]], dtype=np.int64)
    return Tiles(lanes=lanes, sets=np.asarray(sets, dtype=np.int64),
                 valid=np.asarray(valid, dtype=np.int64), speed=speed, history_rows=rows,
                 history_mask=mask, max_delays=max_delays)
