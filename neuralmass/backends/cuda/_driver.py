"""The host side of the CUDA backend: lay out the arrays, split the sets into batches that fit
the device, launch the kernel in chunks of steps and collect the monitor's samples.

The loop is written once against a small device interface (:class:`Device`), implemented by
CuPy on a GPU (:mod:`._cupy`) and by the host emulation (:mod:`._emulate`), so the tests that
run the emulation exercise this code too.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

import numpy as np

from ...errors import ParameterError
from ...plan import RunPlan
from .._progress import progress_bar
from ._kernel import KernelSpec, build_kernel

__all__ = ["Device", "Schedule", "auto_block", "run_on", "schedule"]

# Device bytes for one chunk of monitor output (each of the two buffers).
_OUTPUT_BUDGET = 256 << 20
_INT32_MAX = 2**31 - 1
_SCALARS = ("n_sets", "set_offset", "step", "seed_lo", "seed_hi", "bin_slot", "newest_slot")


class Device(Protocol):
    """What :func:`run_on` needs from a device."""

    def load(self, spec: KernelSpec) -> None:
        """Compile (or fetch from the cache) and load the kernel."""

    def set_constants(self, arrays: dict[str, np.ndarray]) -> None:
        """Fill the kernel's ``__constant__`` arrays."""

    def upload(self, array: np.ndarray) -> Any:
        """A device copy of a contiguous host array."""

    def empty(self, shape: tuple[int, ...], dtype) -> Any:
        """An uninitialised device array."""

    def ring(self, shape: tuple[int, ...], past: np.ndarray, rows: np.ndarray | None) -> Any:
        """A device array of ``shape`` (B rows) holding ``past`` in ``rows`` (zeros
        elsewhere), or ``past`` (one row) in every row when ``rows`` is None."""

    def launch(self, grid: tuple[int, int], block: int, launches: list[list]) -> None:
        """Launch the kernel once per argument list, in order (one step each) on a
        ``grid`` of (blocks of sets, nodes); arguments mix device arrays and NumPy scalars."""

    def download(self, array: Any, out: np.ndarray) -> None:
        """Copy the leading ``out.shape[0]`` samples of ``array`` into ``out`` (a view of the
        result); asynchronously if the device can: it must be done by :meth:`finish`, and
        before a later launch writes ``array`` again."""

    def finish(self) -> None:
        """Wait for every launch and copy."""

    def free_bytes(self) -> int:
        """Device memory available for one batch."""

    def multiprocessors(self) -> int:
        """Streaming multiprocessors (for the choice of the block size)."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run is split: sets in batches of ``batch_sets``, steps in chunks of
    ``chunk_samples`` samples of the first monitor (``chunk_samples * every`` launches, one per
    step, then a copy back of every monitor's samples); ``block`` threads per block."""

    batch_sets: int
    chunk_samples: int
    block: int


def auto_block(n_sets: int, n_nodes: int, multiprocessors: int) -> int:
    """Threads per block (of one node's consecutive sets): 128, or the multiple of 32 that
    covers fewer sets, or fewer when that would leave multiprocessors with under 4 blocks."""
    block = min(128, 32 * -(-n_sets // 32))
    while block > 32 and -(-n_sets // block) * n_nodes < 4 * multiprocessors:
        block -= 32
    return block


def schedule(spec: KernelSpec, n_sets: int, n_samples: int, free_bytes: int, *,
             block: int = 128, batch_sets: int | None = None,
             chunk_samples: int | None = None) -> Schedule:
    """Choose batch and chunk sizes so that a batch fits in ``free_bytes``.

    Per set the device holds the history (B × n_hist × N values), the state, the swept
    parameters, the monitors' kept values and two output buffers of ``chunk_samples`` samples
    (of the first monitor; ``sample`` counts every monitor's bytes per such period); a batch
    takes at most 80 % of the free memory.
    """
    itemsize = np.dtype(spec.dtype).itemsize
    n = spec.n_nodes
    kept = sum(m.n_planes for m in spec.monitors)
    persistent = itemsize * (spec.history_length * spec.n_history * n + spec.n_state * n
                             + kept * n + len(spec.swept)) + 4
    period = spec.monitors[0].every
    sample = itemsize * n * sum(m.n_rows * (period / m.every + 1) for m in spec.monitors)
    sample = int(math.ceil(sample))
    if batch_sets is None:
        usable = int(0.8 * free_bytes) - 2 * _OUTPUT_BUDGET
        batch_sets = max(1, usable // (persistent + 2 * sample))
    # the kernel indexes within one (n_var, N, P) block with int
    widest = max(spec.n_state, spec.n_history, spec.n_exposure, 1,
                 *(max(m.n_rows, 1) for m in spec.monitors))
    batch_sets = max(1, min(int(batch_sets), n_sets, _INT32_MAX // (n * widest)))
    if batch_sets < n_sets:  # equal batches rather than a full one and a small one
        count = -(-n_sets // batch_sets)
        batch_sets = -(-n_sets // count)
    if chunk_samples is None:
        chunk_samples = max(1, _OUTPUT_BUDGET // max(1, sample * batch_sets))
        # a few launches per batch, so that copies overlap the next chunk
        chunk_samples = min(chunk_samples, max(1, -(-n_samples // 4)))
    chunk_samples = max(1, min(int(chunk_samples), n_samples))
    return Schedule(batch_sets, chunk_samples, int(block))


def _per_set(value, n_sets: int, batch: slice, dtype) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.float64),
                                                (n_sets,))[batch], dtype=dtype)


def initial_arrays(plan: RunPlan, spec: KernelSpec, batch: slice) -> dict[str, np.ndarray]:
    """The initial arrays of the sets in ``batch``, in the kernel's layout and dtype: state
    (n_state, N, Pb), swept parameters (n_swept, Pb), speed index (Pb), and the known rows of
    the history: ``past`` (H, n_hist, N, Pb) for ring rows ``past_rows`` — H = 1 and
    ``past_rows = None`` (every row) for a history constant in time. The ring itself
    (B rows) is only ever built on the device."""
    dtype = spec.dtype
    n_sets = plan.n_sets
    state = np.asarray(plan.initial_state, dtype=np.float64)
    if state.ndim == 2:
        state = np.broadcast_to(state[..., None], state.shape + (n_sets,))
    state = np.ascontiguousarray(state[..., batch], dtype=dtype)

    length = spec.history_length
    if plan.initial_history is None or not spec.n_history:
        past = np.ascontiguousarray(state[list(spec.history_variables)][None])
        past_rows = None
    else:
        names = plan.model.coupled_variables
        live = [names.index(plan.model.state_names[v]) for v in spec.history_variables]
        past = np.asarray(plan.initial_history, dtype=np.float64)[:, live]
        if past.ndim == 3:
            past = np.broadcast_to(past[..., None], past.shape + (n_sets,))
        past = np.ascontiguousarray(past[..., batch], dtype=dtype)
        horizon = past.shape[0]
        past_rows = ((np.arange(horizon) - (horizon - 1)) & (length - 1)).astype(np.int64)

    parameters = np.stack([_per_set(plan.params[name], n_sets, batch, dtype)
                           for name in spec.swept]) if spec.swept else np.zeros(1, dtype)
    speed_index = np.ascontiguousarray(plan.speed_index[batch], dtype=np.int32)
    return {"state": state, "past": past, "past_rows": past_rows, "parameters": parameters,
            "speed_index": speed_index}


def run_on(device: Device, plan: RunPlan, *, edges: str = "auto", unroll: int | None = None,
           block: int | None = None, batch_sets: int | None = None,
           chunk_samples: int | None = None, spec: KernelSpec | None = None, progress: bool = False,
           label: str = "cuda", return_first_nonfinite: bool = False) -> tuple[np.ndarray, ...]:
    """Run ``plan`` on ``device``: ``(states, exposures)`` of shapes (T, n_state, N, P) and
    (T, n_exposure, N, P); with ``return_first_nonfinite``, also each set's first non-finite
    step (P,), tracked by the kernel (exact for every monitor).

    ``batch_sets``, ``chunk_samples`` override the :func:`schedule`; ``block`` is the number
    of threads per block (default :func:`auto_block`); ``edges`` and ``unroll`` are passed to
    :func:`build_kernel`; ``progress`` shows a progress bar (set-steps launched) labelled ``label``.
    """
    spec = spec or build_kernel(plan, edges=edges, unroll=unroll)
    device.load(spec)
    n_sets, n_nodes = plan.n_sets, plan.n_nodes
    n_steps = plan.n_steps_simulated
    if n_steps >= _INT32_MAX:
        raise ParameterError(f"the CUDA backend counts steps with int: n_steps must be < 2**31, "
                             f"but got {n_steps}")
    first = spec.monitors[0]
    plan_ = schedule(spec, n_sets, -(-n_steps // first.every), device.free_bytes(),
                     block=block or 128, batch_sets=batch_sets, chunk_samples=chunk_samples)
    if block is None:
        plan_ = dataclasses.replace(plan_, block=auto_block(plan_.batch_sets, n_nodes,
                                                            device.multiprocessors()))

    edge = spec.edge_arrays(plan)
    device.set_constants({name: edge[role] for name, role in spec.constants})
    on_device = {role: device.upload(edge[role]) for _, role in spec.arguments
                 if role.startswith("edge_")}
    for j, m in enumerate(spec.monitors):
        if m.weights is not None:
            on_device[f"weights{j}"] = device.upload(np.asarray(m.weights, dtype=spec.dtype))

    outputs = [np.empty((p.n_samples, m.n_rows, n_nodes, n_sets), dtype=spec.dtype)
               for p, m in zip(plan.monitors, spec.monitors, strict=True)]
    first_nonfinite = np.empty(n_sets, dtype=np.int32)
    with progress_bar(progress, n_sets * n_steps, label) as advance:
        _run_batches(device, plan, spec, plan_, on_device, outputs, first_nonfinite, advance)
    pairs = tuple((out, None) if p.hemodynamic else _states_exposures(spec, out)
                  for p, out in zip(plan.monitors, outputs, strict=True))
    states, exposures = pairs[0] if len(pairs) == 1 else tuple(zip(*pairs))
    if return_first_nonfinite:
        return states, exposures, first_nonfinite.astype(np.int64)
    return states, exposures


def _states_exposures(spec: KernelSpec, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A plain monitor's (states, exposures) from its kernel rows (state variables, then the
    exposures the kernel computes); exposures that are state variables are copied."""
    states, computed = out[:, :spec.n_state], out[:, spec.n_state:]
    if all(kind == "kernel" for kind, _ in spec.exposure_map):
        return states, computed
    exposures = np.empty((out.shape[0], len(spec.exposure_map)) + out.shape[2:], out.dtype)
    for row, (kind, index) in enumerate(spec.exposure_map):
        exposures[:, row] = states[:, index] if kind == "state" else computed[:, index]
    return states, exposures


def _launch_scalars(spec: KernelSpec, plan: RunPlan, step: int, chunk_start: int) -> dict:
    """The per-step scalars: each monitor's row in this chunk's buffer (-1 when no sample is
    due at ``step``) and BOLD's ring rows."""
    values = {"step": np.int32(step)}
    for j, (p, m) in enumerate(zip(plan.monitors, spec.monitors, strict=True)):
        sample = (step + 1) // m.every - 1
        due = (step + 1) % m.every == 0 and sample < p.n_samples
        values[f"row{j}"] = np.int32(sample - chunk_start // m.every if due else -1)
    bold = [m for m in plan.monitors if m.name == "bold"]
    if bold:
        per_bin, n_bins = bold[0].per_bin, len(bold[0].weights)
        newest = (step + 1) // per_bin
        values["bin_slot"] = np.int32(newest % n_bins if (step + 1) % per_bin == 0 else -1)
        values["newest_slot"] = np.int32(newest % n_bins)
    return values


def _run_batches(device, plan, spec, plan_, on_device, outputs, first_nonfinite, advance):
    """Each batch of sets: upload its initial arrays, launch the chunks, collect every
    monitor's samples and the first non-finite steps."""
    n_sets, n_nodes, n_steps = plan.n_sets, plan.n_nodes, plan.n_steps_simulated
    dtype, seed = spec.dtype, int(plan.seed)
    chunk_steps = plan_.chunk_samples * spec.monitors[0].every
    for start in range(0, n_sets, plan_.batch_sets):
        batch = slice(start, min(n_sets, start + plan_.batch_sets))
        size = batch.stop - batch.start
        host = initial_arrays(plan, spec, batch)
        for role in ("state", "parameters", "speed_index"):
            on_device[role] = device.upload(host[role])
        on_device["first_nonfinite"] = device.upload(np.full(size, -1, dtype=np.int32))
        on_device["history"] = device.ring(
            (spec.history_length, spec.n_history, n_nodes, size), host["past"],
            host["past_rows"])
        for j, m in enumerate(spec.monitors):
            if m.n_planes:
                rest = np.asarray(m.rest or (0.0,) * m.n_planes, dtype=dtype)
                on_device[f"monitor{j}"] = device.upload(np.ascontiguousarray(
                    np.broadcast_to(rest[:, None, None], (m.n_planes, n_nodes, size))))
        rows = [min(p.n_samples, chunk_steps // m.every + 1)
                for p, m in zip(plan.monitors, spec.monitors, strict=True)]
        n_chunks = -(-n_steps // chunk_steps)
        buffers = [[device.empty((r, m.n_rows, n_nodes, size), dtype)
                    for r, m in zip(rows, spec.monitors, strict=True)]
                   for _ in range(2 if n_chunks > 1 else 1)]
        base = [None if role in _SCALARS or role.startswith("row") else on_device.get(role)
                for _, role in spec.arguments]
        where = {role: index for index, (_, role) in enumerate(spec.arguments)}
        fixed = {"n_sets": np.int32(size), "set_offset": np.int32(plan.set_offset + batch.start),
                 "seed_lo": np.uint32(seed & 0xFFFFFFFF),
                 "seed_hi": np.uint32((seed >> 32) & 0xFFFFFFFF)}
        for role, value in fixed.items():
            if role in where:
                base[where[role]] = value
        grid = (-(-size // plan_.block), n_nodes)
        for index, first in enumerate(range(0, n_steps, chunk_steps)):
            stop = min(n_steps, first + chunk_steps)
            buffer = buffers[index % len(buffers)]
            for j, out in enumerate(buffer):
                base[where[f"out{j}"]] = out
            launches = []
            for step in range(first, stop):
                arguments = list(base)
                for role, value in _launch_scalars(spec, plan, step, first).items():
                    arguments[where[role]] = value
                launches.append(arguments)
            device.launch(grid, plan_.block, launches)
            for j, (p, m) in enumerate(zip(plan.monitors, spec.monitors, strict=True)):
                done, now = min(p.n_samples, first // m.every), min(p.n_samples, stop // m.every)
                if now > done:
                    device.download(buffer[j], outputs[j][done:now, :, :, batch])
            advance(size * (stop - first))
            del launches, arguments
        device.download(on_device["first_nonfinite"], first_nonfinite[batch])
        device.finish()
        # release this batch's arrays before the next batch allocates its own
        for role in ("state", "parameters", "speed_index", "history", "first_nonfinite",
                     *(f"monitor{j}" for j in range(len(spec.monitors)))):
            on_device.pop(role, None)
        del buffers, buffer, base
