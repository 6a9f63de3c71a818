"""JAX backend on the CPU: compile time and program size against n_steps and P, and
set-steps/s against Numba on the same sweep.

Usage: ``uv run python benchmarks/jax_cpu.py [--sets 256] [--steps 1000] [--repeats 3]``.
Montbrió on the bundled 76-region connectome, float64, Heun, raw monitor. Compile time is
the first call's time minus the best later call's; the program size is the length of the
jaxpr's text (it must not grow with n_steps or P: the loops are scans, not unrolled).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import neuralmass as nm
from neuralmass.backends.jax import make_simulator

jax.config.update("jax_enable_x64", True)


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def compile_figures(conn, model, x0):
    print("| n_steps | P | jaxpr chars | first call s | later call s | compile s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n_steps, n_sets in ((100, 4), (1000, 4), (4000, 4), (1000, 64), (1000, 256)):
        sim = make_simulator(model, conn, n_steps=n_steps)
        coupling = np.linspace(0.0, 0.4, n_sets)
        jaxpr = jax.make_jaxpr(lambda g, sim=sim: sim({"global_coupling": g}, x0)[0])(coupling)
        run = jax.jit(lambda g, sim=sim: sim({"global_coupling": g}, x0)[0])
        first, *later = timed(lambda run=run, g=coupling: run(g).block_until_ready(), 3)
        print(f"| {n_steps} | {n_sets} | {len(str(jaxpr))} | {first:.2f} | {min(later):.2f} "
              f"| {first - min(later):.2f} |")


def throughput(conn, model, x0, n_sets, n_steps, repeats):
    params = {"global_coupling": np.linspace(0.0, 0.4, n_sets)}
    print(f"| backend | set-steps/s (min time of {repeats}) | times s |")
    print("|---|---:|---|")
    for backend in ("numba", "jax"):
        def run(backend=backend):
            nm.simulate(model, conn, params, backend=backend, n_steps=n_steps,
                        initial_state=x0, monitors="temporal_average:1.0")
        run()  # compile
        times = timed(run, repeats)
        print(f"| {backend} | {n_sets * n_steps / min(times):.3g} | "
              f"{', '.join(f'{t:.2f}' for t in times)} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    conn = nm.Connectivity.default()
    model = nm.load_model("montbrio")
    rng = np.random.default_rng(0)
    x0 = np.stack([rng.uniform(0.0, 0.1, conn.n_regions), rng.uniform(-2.0, -1.5, conn.n_regions)])
    if not args.skip_compile:
        compile_figures(conn, model, x0)
    throughput(conn, model, x0, args.sets, args.steps, args.repeats)


if __name__ == "__main__":
    main()
