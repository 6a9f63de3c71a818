"""Where the JAX backend's time goes on the CPU: XLA's operations per step, from a profile.

Usage: ``uv run python benchmarks/jax_profile.py [--model montbrio] [--sets 1024]
[--steps 1000] [--speeds 32] [--dtype float32] [--top 15]``.

Runs the bench's workload (``neuralmass.bench.sweep_params``: couplings × ``--speeds``
conduction speeds in [1, 10] mm/ms; ``--speeds 1``: every set at 10 mm/ms) through
``make_simulator`` once to compile, once timed, and once under ``jax.profiler`` (a Perfetto
trace in a temporary directory). Prints ms per step of the timed call and, per XLA operation
(fusion, gather, scatter, copy, ...), its total ms, calls and ms per step, largest first.
Operation names are XLA's (``multiply_bitcast_fusion`` is the delayed gather fused with the
weights, ``wrapped_scatter`` the ``segment_sum`` over edges): read them with the optimised HLO
(``jax.jit(...).lower(...).compile().as_text()``).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import tempfile
import time

import jax
import numpy as np

import neuralmass as nm
from neuralmass import bench
from neuralmass.backends.jax import make_simulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="montbrio")
    parser.add_argument("--sets", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--speeds", type=int, default=32)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", args.dtype == "float64")

    conn = nm.Connectivity.default()
    params = bench.sweep_params(args.model, args.sets)
    speeds = np.linspace(*bench.SPEED_RANGE, args.speeds) if args.speeds > 1 else \
        np.array([bench.SPEED_RANGE[1]])
    params["global_speed"] = np.resize(speeds, args.sets)
    sim = make_simulator(nm.load_model(args.model), conn, n_steps=args.steps,
                         monitors=(bench.MONITOR,), dtype=args.dtype,
                         min_speed=float(speeds.min()))
    x0 = bench.workload(args.model, conn, args.sets, args.steps, args.dtype).initial_state

    def call():
        return jax.block_until_ready(sim(params, x0))

    call()  # compile
    started = time.perf_counter()
    call()
    seconds = time.perf_counter() - started
    print(f"{args.model} {args.dtype}, {args.sets} sets ({len(np.unique(speeds))} speeds) × "
          f"{args.steps} steps: {1e3 * seconds / args.steps:.3f} ms/step, "
          f"{args.sets * args.steps / seconds:.3g} set-steps/s")

    with tempfile.TemporaryDirectory() as trace:
        jax.profiler.start_trace(trace, create_perfetto_trace=True)
        call()
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{trace}/**/*.trace.json.gz", recursive=True)
        with gzip.open(path) as trace_file:
            events = json.load(trace_file)["traceEvents"]
    total, calls = collections.Counter(), collections.Counter()
    for event in events:
        name = event.get("name", "")
        if event.get("ph") == "X" and not name.startswith(("ThunkExecutor", "$")):
            total[name] += event.get("dur", 0) / 1e3
            calls[name] += 1
    print(f"{'ms':>9} {'calls':>7} {'ms/step':>8}  XLA operation")
    for name, ms in total.most_common(args.top):
        print(f"{ms:9.1f} {calls[name]:7d} {ms / args.steps:8.3f}  {name}")


if __name__ == "__main__":
    main()
