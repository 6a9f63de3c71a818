"""Peak memory of a gradient through the JAX backend, against n_steps.

Usage: ``uv run python benchmarks/jax_grad_memory.py [--sets 16] [--steps 500,2000,8000]``.

``jax.grad`` of the mean of the last 10 raw samples of Montbrió's r (bundled 76-region
connectome, float64, Heun) with respect to P global couplings. Each n_steps runs in its own
process and reports: XLA's memory analysis of the compiled gradient (``temp_size_in_bytes``:
the buffers the program allocates besides its arguments and outputs), the process's peak RSS
after one gradient, the loop's checkpointing (:class:`neuralmass.backends.jax._loop.LoopShape`)
and the backend's own estimate of the gradient's residuals (``_memory.estimate``). With
chunks of ~√T samples under ``jax.checkpoint`` the residuals grow like √T (the ring and state
at each chunk's start plus one chunk's per-step values), not like T; the raw output itself
(T × 2 × 76 × P) grows like T.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import numpy as np


def measure_one(n_steps: int, n_sets: int) -> dict:
    import jax
    import jax.numpy as jnp

    import neuralmass as nm
    from neuralmass.backends.jax import _memory, make_simulator

    jax.config.update("jax_enable_x64", True)
    conn = nm.Connectivity.default()
    sim = make_simulator(nm.load_model("montbrio"), conn, n_steps=n_steps)
    rng = np.random.default_rng(0)
    x0 = np.stack([rng.uniform(0.0, 0.1, conn.n_regions),
                   rng.uniform(-2.0, -1.5, conn.n_regions)])

    def loss(g):
        states, _ = sim({"global_coupling": g}, x0)
        return jnp.mean(states[-10:, 0])

    g = jnp.linspace(0.0, 0.4, n_sets)
    grad = jax.jit(jax.grad(loss))
    analysis = grad.lower(g).compile().memory_analysis()
    value = np.asarray(grad(g))
    shape = sim.loop_shape(sim._delay_table(None, n_sets)[0])
    estimate = _memory.estimate(sim, n_sets, True, shape)
    return {"n_steps": n_steps, "sets": n_sets, "finite": bool(np.all(np.isfinite(value))),
            "xla_temp_mib": analysis.temp_size_in_bytes / 2**20,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
            "estimate_residuals_mib": estimate.residuals / 2**20,
            "estimate_total_mib": estimate.total / 2**20,
            "outputs_mib": estimate.outputs / 2**20,
            "chunks": shape.n_chunks, "chunk_steps": shape.chunk_steps,
            "block": shape.block}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=16)
    parser.add_argument("--steps", default="500,2000,8000")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(*args.one)))
        return
    print("| n_steps | P | chunks × steps | XLA temp MiB | peak RSS MiB | estimated residuals "
          "MiB | estimated total MiB | raw outputs MiB |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for n_steps in map(int, args.steps.split(",")):
        done = subprocess.run([sys.executable, __file__, "--one", str(n_steps),
                               str(args.sets)], capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        assert r["finite"], r
        print(f"| {n_steps} | {r['sets']} | {r['chunks']} × {r['chunk_steps']} | "
              f"{r['xla_temp_mib']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['estimate_residuals_mib']:.1f} | {r['estimate_total_mib']:.1f} | "
              f"{r['outputs_mib']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
