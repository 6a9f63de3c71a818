"""JAX backend on the CPU: set-steps/s against Numba on the same sweep, compile time, peak
RSS, and the program's size against n_steps and P.

Usage: ``uv run python benchmarks/jax_cpu.py [--sets 1024] [--steps 4000] [--repeats 3]
[--speeds 1] [--skip-compile]``.

Sweep: P global couplings in [0, 0.4] at the connectome's speed, or with ``--speeds S`` the
grid of P / S couplings × S speeds in [1, 10] mm/ms (``nm.grid``, speed the fast axis: the
README's mixed-speed sweep is ``--sets 1024 --speeds 32``), on the bundled 76-region
connectome, Heun, dt 0.1 ms, temporal average over 1 ms, deterministic; Montbrió and
Kuramoto, float32 and float64. Each (backend, model, dtype) runs in its own process (so its
peak RSS is its own): one first call (compile + run), then ``--repeats`` timed calls;
set-steps/s is P × n_steps over the best time, compile time the first call's minus the best.
Numba runs in the same script right before JAX, so that both see the same machine load; the
ratio is JAX / Numba.

The program-size table: the jaxpr's line count (equations) and the first call's compile time
for several n_steps and P (the loops are scans, not unrolled: neither may grow).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

MODELS = ("montbrio", "kuramoto")
DTYPES = ("float32", "float64")


def initial_state(model: str, n_regions: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    if model == "kuramoto":
        return rng.uniform(0.0, 2 * np.pi, (1, n_regions))
    return np.stack([rng.uniform(0.0, 0.1, n_regions), rng.uniform(-2.0, -1.5, n_regions)])


def sweep_params(n_sets: int, n_speeds: int) -> dict:
    """The sweep's parameter sets: P couplings at the connectome's speed (``n_speeds`` 1), or
    the grid of P / S couplings × S speeds."""
    import neuralmass as nm

    if n_speeds == 1:
        return {"global_coupling": np.linspace(0.0, 0.4, n_sets)}
    return nm.grid(global_coupling=np.linspace(0.0, 0.4, n_sets // n_speeds),
                   global_speed=np.linspace(1.0, 10.0, n_speeds))


def measure_one(backend: str, model: str, dtype: str, n_sets: int, n_steps: int,
                repeats: int, n_speeds: int = 1) -> dict:
    """Run in this process: times of a first and ``repeats`` later calls, and peak RSS."""
    import jax

    import neuralmass as nm

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    conn = nm.Connectivity.default()
    params = sweep_params(n_sets, n_speeds)
    n_sets = len(next(iter(params.values())))
    x0 = initial_state(model, conn.n_regions)

    def run():
        started = time.perf_counter()
        nm.simulate(model, conn, params, backend=backend, n_steps=n_steps, dtype=dtype,
                    initial_state=x0, monitors="temporal_average:1.0")
        return time.perf_counter() - started

    first = run()
    times = [run() for _ in range(repeats)]
    return {"backend": backend, "model": model, "dtype": dtype, "first": first,
            "times": times, "set_steps_per_s": n_sets * n_steps / min(times),
            "compile": first - min(times),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def in_subprocess(*args) -> dict:
    command = [sys.executable, __file__, "--one", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput(n_sets: int, n_steps: int, repeats: int, n_speeds: int = 1) -> None:
    print(f"| sweep ({n_sets} sets × {n_steps} steps, {n_speeds} speeds) | numba set-steps/s | "
          "jax set-steps/s | jax / numba | compile s numba / jax | peak RSS GiB numba / jax | "
          "times s numba; jax |")
    print("|---|---:|---:|---:|---|---|---|")
    for model in MODELS:
        for dtype in DTYPES:
            numba, jax = (in_subprocess(b, model, dtype, n_sets, n_steps, repeats, n_speeds)
                          for b in ("numba", "jax"))
            ratio = jax["set_steps_per_s"] / numba["set_steps_per_s"]
            times = "; ".join(", ".join(f"{t:.2f}" for t in r["times"]) for r in (numba, jax))
            print(f"| {model} {dtype} | {numba['set_steps_per_s']:.3g} | "
                  f"{jax['set_steps_per_s']:.3g} | {ratio:.2f} | {numba['compile']:.1f} / "
                  f"{jax['compile']:.1f} | {numba['peak_rss_gib']:.2f} / "
                  f"{jax['peak_rss_gib']:.2f} | {times} |", flush=True)


def compile_figures() -> None:
    import jax

    import neuralmass as nm
    from neuralmass.backends.jax import make_simulator

    jax.config.update("jax_enable_x64", True)
    conn = nm.Connectivity.default()
    model = nm.load_model("montbrio")
    x0 = initial_state("montbrio", conn.n_regions)
    print("| n_steps | P | jaxpr lines | first call s | later call s | compile s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n_steps, n_sets in ((100, 4), (1000, 4), (4000, 4), (1000, 64), (1000, 256)):
        sim = make_simulator(model, conn, n_steps=n_steps)
        coupling = np.linspace(0.0, 0.4, n_sets)
        jaxpr = jax.make_jaxpr(lambda g, sim=sim: sim({"global_coupling": g}, x0)[0])(coupling)
        run = jax.jit(lambda g, sim=sim: sim({"global_coupling": g}, x0)[0])
        times = []
        for _ in range(3):
            started = time.perf_counter()
            run(coupling).block_until_ready()
            times.append(time.perf_counter() - started)
        first, later = times[0], min(times[1:])
        print(f"| {n_steps} | {n_sets} | {str(jaxpr).count(chr(10))} | {first:.2f} | "
              f"{later:.2f} | {first - later:.2f} |", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--speeds", type=int, default=1,
                        help="distinct global speeds of the sweep (1: the connectome's)")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--one", nargs=7, metavar=("BACKEND", "MODEL", "DTYPE", "SETS",
                                                   "STEPS", "REPEATS", "SPEEDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        backend, model, dtype, n_sets, n_steps, repeats, n_speeds = args.one
        print(json.dumps(measure_one(backend, model, dtype, int(n_sets), int(n_steps),
                                     int(repeats), int(n_speeds))))
        return
    if not args.skip_compile:
        compile_figures()
    throughput(args.sets, args.steps, args.repeats, args.speeds)


if __name__ == "__main__":
    main()
