"""GPU benchmark of the CUDA backend against JAX on the same card.

Montbrió–Pazó–Roxin and Kuramoto on the bundled 76-region connectome (1,424 edges), dt 0.1 ms,
4,000 steps (delays up to 641 steps: a 1,024-row history), P = 1,024 / 32,768 / 1,048,576
parameter sets, float32, temporal average over 100 ms. For each model and P it prints:

- parameter-set-steps per second of ``neuralmass.backends.cuda`` end to end (compiled kernel
  cached; host set-up, batches, launches and copies back included) and of the kernel (GPU time
  from the first to the last launch of each chunk, by CUDA events);
- the effective bandwidth of the delayed reads, sets × steps × nnz × n_cvar × 4 B / kernel
  time (n_cvar: the coupled variables the kernel reads — Montbrió's default cv = 0 leaves r
  only), against the card's copy bandwidth (a 2 GiB device-to-device copy, bytes read plus
  written) and the floor that bandwidth implies;
- JAX on the same GPU for the same run (second call, after compilation), skipped where its
  history (B × all coupled variables × N × P) would not fit.

Runs only where CuPy and a GPU exist::

    uv run python benchmarks/cuda_sweep.py --quick          # ~2 minutes on an H200
    uv run python benchmarks/cuda_sweep.py --unroll 0 8 16  # compare edge-loop unrolling

Results go to ``benchmarks/RESULTS.md`` by hand, with the card, date and command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

# a benchmark script, not the library: let JAX and CuPy share the card
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # noqa: E402

import neuralmass as nm  # noqa: E402
from neuralmass.backends import cuda  # noqa: E402
from neuralmass.backends.cuda._driver import run_on  # noqa: E402
from neuralmass.errors import BackendUnavailableError  # noqa: E402
from neuralmass.plan import make_plan  # noqa: E402

MONITOR = "temporal_average:100.0"


def copy_bandwidth(cp, nbytes: int = 2 << 30, repeats: int = 10) -> float:
    """Bytes per second of a device-to-device copy, counting bytes read plus written."""
    source = cp.ones(nbytes // 4, dtype=cp.float32)
    target = cp.empty_like(source)
    target[...] = source
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(repeats):
        target[...] = source
    stop.record()
    stop.synchronize()
    seconds = cp.cuda.get_elapsed_time(start, stop) / 1e3 / repeats
    del source, target
    cp.get_default_memory_pool().free_all_blocks()
    return 2 * nbytes / seconds


def make_run(model: str, n_sets: int, n_steps: int, connectivity):
    rng = np.random.default_rng(0)
    n = connectivity.n_regions
    if model == "montbrio":
        params = {"eta": np.linspace(-5.0, -4.0, n_sets)}
        state = np.stack([0.1 + 0.05 * rng.uniform(-1, 1, n), -2.0 + 0.1 * rng.uniform(-1, 1, n)])
    else:
        params = {"global_coupling": np.linspace(0.0, 1.0, n_sets)}
        state = rng.uniform(0, 2 * np.pi, (1, n))
    return make_plan(nm.load_model(model), connectivity, params, dt=0.1, n_steps=n_steps,
                     integrator="heun", monitors=MONITOR, dtype="float32", initial_state=state)


def time_cuda(plan, unroll, repeats, edges="auto"):
    """(end-to-end seconds, kernel seconds, kernel) of the best of ``repeats`` runs."""
    from neuralmass.backends.cuda._cupy import CuPyDevice

    spec = cuda.build_kernel(plan, unroll=unroll or None, edges=edges)
    best = None
    for _ in range(repeats):
        device = CuPyDevice()
        start = time.perf_counter()
        states, _ = run_on(device, plan, spec=spec)
        wall = time.perf_counter() - start
        if not np.isfinite(states).all():
            raise RuntimeError("the CUDA run produced non-finite values")
        if best is None or wall < best[0]:
            best = (wall, device.kernel_seconds)
    return best[0], best[1], spec


def jax_history_bytes(plan) -> int:
    length = 1 << int(plan.max_delay).bit_length()
    return length * len(plan.model.coupled_variables) * plan.n_nodes * plan.n_sets * 4


def time_jax(plan, free_bytes):
    """Seconds of the second JAX run, or the reason it was skipped."""
    need = jax_history_bytes(plan)
    if 2 * need > free_bytes:  # the scan carries the history (and XLA may double it)
        return f"skipped: its history alone needs {need / 1e9:.0f} GB"
    import jax

    from neuralmass.backends import jax as jax_backend

    if jax.default_backend() != "gpu":
        return f"skipped: JAX runs on {jax.default_backend()}, not the GPU"
    try:
        jax_backend.run(plan)  # compile
        start = time.perf_counter()
        states, _ = jax_backend.run(plan)
        seconds = time.perf_counter() - start
    except Exception as error:  # XlaRuntimeError: RESOURCE_EXHAUSTED
        return f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
    finally:
        jax.clear_caches()
    if not np.isfinite(states).all():
        return "failed: non-finite values"
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one timed run per case (default: best of 3)")
    parser.add_argument("--models", nargs="+", default=["montbrio", "kuramoto"])
    parser.add_argument("--sets", nargs="+", type=int, default=[1024, 32768, 1048576])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--unroll", nargs="+", type=int, default=[0],
                        help="#pragma unroll factors of the edge loop to compare (0: none)")
    parser.add_argument("--edges", nargs="+", default=["auto"],
                        help="where the edge list lives: auto, constant, global (to compare)")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--jax-max-sets", type=int, default=None,
                        help="run JAX only up to this P (default: 1,024 with --quick, else "
                             "all; on an H200 JAX compiled P = 32,768 for 2 min 44 s and then "
                             "ran out of memory)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)

    try:
        from neuralmass.backends.cuda._cupy import require_cupy

        cp = require_cupy()
    except BackendUnavailableError as error:
        print(f"cuda_sweep: {error}", file=sys.stderr)
        return 1
    properties = cp.cuda.runtime.getDeviceProperties(0)
    card = properties["name"].decode() if isinstance(properties["name"], bytes) \
        else properties["name"]
    bandwidth = copy_bandwidth(cp)
    connectivity = nm.Connectivity.default()
    nnz = int(connectivity.edges()[0].size)
    repeats = 1 if args.quick else 3
    print(f"card: {card}, {properties['totalGlobalMem'] / 2**30:.0f} GiB, "
          f"{properties['multiProcessorCount']} SMs; copy bandwidth {bandwidth / 1e9:.0f} GB/s "
          f"(read + write); CuPy {cp.__version__}; {platform.node()}")
    print(f"connectome: {connectivity.n_regions} regions, {nnz} edges; dt 0.1 ms, "
          f"{args.steps} steps, heun, float32, {MONITOR}")

    results = []
    for model in args.models:
        warm = make_run(model, 128, 1000, connectivity)
        variants = [(edges, unroll) for edges in args.edges for unroll in args.unroll]
        for edges, unroll in variants:
            time_cuda(warm, unroll, 1, edges)  # compile once (cached by source hash)
        for n_sets in args.sets:
            plan = make_run(model, n_sets, args.steps, connectivity)
            set_steps = n_sets * plan.monitor.n_steps_simulated
            for edges, unroll in variants:
                wall, kernel, spec = time_cuda(plan, unroll, repeats, edges)
                moved = set_steps * nnz * spec.n_history * 4
                floor = bandwidth / (nnz * spec.n_history * 4)
                row = dict(model=model, n_sets=n_sets, steps=args.steps, unroll=unroll,
                           edges=spec.constants and "constant" or "global",
                           n_cvar=spec.n_history, wall_s=wall, kernel_s=kernel,
                           set_steps_per_s=set_steps / wall,
                           kernel_set_steps_per_s=set_steps / kernel,
                           effective_gb_s=moved / kernel / 1e9,
                           floor_set_steps_per_s=floor)
                results.append(row)
                print(f"{model:9s} P={n_sets:>8,d} {row['edges']:8s} unroll={unroll or '-':>2}  "
                      f"cuda "
                      f"{row['set_steps_per_s']:.3g} set-steps/s end to end ({wall:.2f} s), "
                      f"kernel {row['kernel_set_steps_per_s']:.3g} "
                      f"({row['effective_gb_s']:.0f} GB/s = "
                      f"{row['effective_gb_s'] * 1e9 / bandwidth:.0%} of copy; floor "
                      f"{floor:.3g})", flush=True)
        if not args.no_jax:
            cp.get_default_memory_pool().free_all_blocks()
            limit = args.jax_max_sets or (1024 if args.quick else max(args.sets))
            for n_sets in args.sets:
                plan = make_run(model, n_sets, args.steps, connectivity)
                free, _ = cp.cuda.runtime.memGetInfo()
                outcome = time_jax(plan, free) if n_sets <= limit else \
                    f"not run (P > --jax-max-sets {limit})"
                set_steps = n_sets * plan.monitor.n_steps_simulated
                for row in results:
                    if row["model"] == model and row["n_sets"] == n_sets:
                        row["jax"] = outcome if isinstance(outcome, str) else set_steps / outcome
                text = outcome if isinstance(outcome, str) else \
                    f"{set_steps / outcome:.3g} set-steps/s ({outcome:.2f} s)"
                print(f"{model:9s} P={n_sets:>8,d}             jax  {text}", flush=True)

    print("\n| model | P | CUDA set-steps/s (end to end) | kernel | effective GB/s | "
          "of copy bw | JAX set-steps/s | CUDA / JAX |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        jax_value = row.get("jax", "not run")
        ratio = f"{row['set_steps_per_s'] / jax_value:.0f}×" \
            if isinstance(jax_value, float) else "—"
        jax_text = f"{jax_value:.3g}" if isinstance(jax_value, float) else jax_value
        label = f"{row['model']}" + (f" (unroll {row['unroll']})" if row["unroll"] else "")
        if len(args.edges) > 1:
            label += f" ({row['edges']} edges)"
        print(f"| {label} | {row['n_sets']:,} | {row['set_steps_per_s']:.3g} | "
              f"{row['kernel_set_steps_per_s']:.3g} | {row['effective_gb_s']:.0f} | "
              f"{row['effective_gb_s'] * 1e9 / bandwidth:.0%} | {jax_text} | {ratio} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(card=card, copy_bandwidth=bandwidth, nnz=nnz, results=results,
                           date=time.strftime("%Y-%m-%d"), argv=sys.argv), handle, indent=1,
                      default=lambda v: v if not isinstance(v, float) or math.isfinite(v)
                      else str(v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
