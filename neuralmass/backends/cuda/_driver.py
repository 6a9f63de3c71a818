"""The host side of the CUDA backend: lay out the arrays, split the sets into batches that fit
the device, launch the kernel in chunks of steps and collect the monitor's samples.

The loop is written once against a small device interface (:class:`Device`), implemented by
CuPy on a GPU (:mod:`._cupy`) and by the host emulation (:mod:`._emulate`), so the tests that
run the emulation exercise this code too.
"""

from __future__ import annotations

import dataclasses
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
_SCALARS = ("n_sets", "set_offset", "step", "sample", "substep", "seed_lo", "seed_hi")


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
    """How a run is split: sets in batches of ``batch_sets``, samples in chunks of
    ``chunk_samples`` (``chunk_samples * every`` launches, one per step, then a copy back);
    ``block`` threads per block."""

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
    parameters and two output buffers of ``chunk_samples`` samples; a batch takes at most
    80 % of the free memory.
    """
    itemsize = np.dtype(spec.dtype).itemsize
    n = spec.n_nodes
    persistent = itemsize * (spec.history_length * spec.n_history * n + spec.n_state * n
                             + len(spec.swept)) + 4
    sample = itemsize * (spec.n_state + spec.n_exposure) * n
    if batch_sets is None:
        usable = int(0.8 * free_bytes) - 2 * _OUTPUT_BUDGET
        batch_sets = max(1, usable // (persistent + 2 * sample))
    # the kernel indexes within one (n_var, N, P) block with int
    widest = max(spec.n_state, spec.n_history, spec.n_exposure, 1)
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
    n_samples, every = plan.monitor.n_samples, spec.every
    if plan.monitor.n_steps_simulated >= _INT32_MAX:
        raise ParameterError(f"the CUDA backend counts steps with int: n_steps must be < 2**31, "
                         f"but got {plan.monitor.n_steps_simulated}")
    plan_ = schedule(spec, n_sets, n_samples, device.free_bytes(), block=block or 128,
                     batch_sets=batch_sets, chunk_samples=chunk_samples)
    if block is None:
        plan_ = dataclasses.replace(plan_, block=auto_block(plan_.batch_sets, n_nodes,
                                                            device.multiprocessors()))

    edge = spec.edge_arrays(plan)
    device.set_constants({name: edge[role] for name, role in spec.constants})
    on_device = {role: device.upload(edge[role]) for _, role in spec.arguments
                 if role.startswith("edge_")}

    states = np.empty((n_samples, spec.n_state, n_nodes, n_sets), dtype=spec.dtype)
    computed = np.empty((n_samples, spec.n_exposure, n_nodes, n_sets), dtype=spec.dtype)
    first_nonfinite = np.empty(n_sets, dtype=np.int32)
    with progress_bar(progress, n_sets * n_samples * every, label) as advance:
        _run_batches(device, plan, spec, plan_, on_device, states, computed, first_nonfinite,
                     advance)
    if all(kind == "kernel" for kind, _ in spec.exposure_map):
        exposures = computed
    else:
        exposures = np.empty((n_samples, len(spec.exposure_map), n_nodes, n_sets),
                             dtype=spec.dtype)
        for row, (kind, index) in enumerate(spec.exposure_map):
            exposures[:, row] = states[:, index] if kind == "state" else computed[:, index]
    if return_first_nonfinite:
        return states, exposures, first_nonfinite.astype(np.int64)
    return states, exposures


def _run_batches(device, plan, spec, plan_, on_device, states, exposures, first_nonfinite,
                 advance):
    """Each batch of sets: upload its initial arrays, launch the chunks, collect the samples
    and the first non-finite steps."""
    n_sets, n_nodes, n_samples = plan.n_sets, plan.n_nodes, plan.monitor.n_samples
    every, dtype, seed = spec.every, spec.dtype, int(plan.seed)
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
        chunk = plan_.chunk_samples
        buffers = [(device.empty((chunk, spec.n_state, n_nodes, size), dtype),
                    device.empty((chunk, max(1, spec.n_exposure), n_nodes, size), dtype))
                   for _ in range(2 if n_samples > chunk else 1)]
        base = [None if role in _SCALARS else on_device.get(role) for _, role in spec.arguments]
        where = {role: index for index, (_, role) in enumerate(spec.arguments)}
        fixed = {"n_sets": np.int32(size), "set_offset": np.int32(plan.set_offset + batch.start),
                 "seed_lo": np.uint32(seed & 0xFFFFFFFF),
                 "seed_hi": np.uint32((seed >> 32) & 0xFFFFFFFF)}
        for role, value in fixed.items():
            if role in where:
                base[where[role]] = value
        grid = (-(-size // plan_.block), n_nodes)
        for index, first in enumerate(range(0, n_samples, chunk)):
            count = min(chunk, n_samples - first)
            out_state, out_exposure = buffers[index % len(buffers)]
            base[where["out_state"]] = out_state
            if spec.n_exposure:
                base[where["out_exposure"]] = out_exposure
            launches = []
            for sample in range(count):
                for substep in range(every):
                    arguments = list(base)
                    arguments[where["step"]] = np.int32((first + sample) * every + substep)
                    arguments[where["sample"]] = np.int32(sample)
                    arguments[where["substep"]] = np.int32(substep)
                    launches.append(arguments)
            device.launch(grid, plan_.block, launches)
            device.download(out_state, states[first:first + count, :, :, batch])
            if spec.n_exposure:
                device.download(out_exposure, exposures[first:first + count, :, :, batch])
            advance(size * count * every)
            del launches, arguments
        device.download(on_device["first_nonfinite"], first_nonfinite[batch])
        device.finish()
        # release this batch's arrays before the next batch allocates its own
        for role in ("state", "parameters", "speed_index", "history", "out_state",
                     "out_exposure", "first_nonfinite"):
            on_device.pop(role, None)
        del buffers, out_state, out_exposure, base
