"""Peak memory of ``nm.sweep`` with ``reduce`` against the number of parameter sets (issue 11).

Each size runs in its own child process (a fresh interpreter, so the peaks do not mix): a
Kuramoto sweep over ``global_coupling`` × ``global_speed`` (10 speeds from 1 to 10 mm/ms) on
a small seeded connectome, few steps, ``reduce=["mean", "fc_corr"]`` against a fixed target
FC, in-process (``client=None``), shards of 1,024 sets, into a fresh Zarr store. The child
first runs one set to load the compiled kernel (Numba's disk cache), records its peak RSS
(``resource.getrusage``: the interpreter, NumPy, Numba, xarray, Dask, Zarr), then runs the
sweep and records the peak RSS again and the wall time. With the store and the driver holding
O(1) per shard, the peak after the sweep must not grow with the number of sets (beyond the
store's per-set coordinates, 8 bytes per set and parameter)::

    uv run python benchmarks/sweep_memory.py                    # 10^4 and 10^5 sets
    uv run python benchmarks/sweep_memory.py --sets 1000 100000 --steps 50 --regions 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _connectome(n_regions: int):
    import numpy as np

    import neuralmass as nm

    rng = np.random.default_rng(11)
    weights = rng.uniform(0, 1, (n_regions, n_regions)) * (1 - np.eye(n_regions))
    lengths = rng.uniform(10, 100, (n_regions, n_regions))
    return nm.Connectivity(weights, (lengths + lengths.T) / 2)


def child(n_sets: int, n_steps: int, n_regions: int, shard_size: int) -> dict:
    """One measurement: runs in a fresh interpreter, returns the figures."""
    import numpy as np

    import neuralmass as nm

    conn = _connectome(n_regions)
    kwargs = dict(backend="numba", n_steps=n_steps, dt=0.1, monitors="raw", noise=1e-3)
    nm.simulate("kuramoto", conn, {"global_coupling": np.array([0.5])},
                on_divergence="ignore", **kwargs)  # loads the kernel from the disk cache
    baseline = _peak_mib()
    n_speeds = 10
    params = nm.grid(global_coupling=np.linspace(0, 1, n_sets // n_speeds),
                     global_speed=np.linspace(1, 10, n_speeds))
    target = np.corrcoef(np.random.default_rng(5).normal(size=(n_regions, 200)))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        ds = nm.sweep("kuramoto", conn, params, store=os.path.join(folder, "s.zarr"),
                      shard_size=shard_size, reduce=["mean", "fc_corr"], target=target,
                      progress=False, **kwargs)
        wall = time.perf_counter() - start
        done = int(ds["shard_done"].sum())
        n_shards = ds.sizes["shard"]
        finite = int(np.isfinite(ds["fc_corr"].values).sum())
        store_mib = sum(os.path.getsize(os.path.join(d, f))
                        for d, _, files in os.walk(folder) for f in files) / 2**20
    return {"sets": n_sets, "steps": n_steps, "regions": n_regions, "shard_size": shard_size,
            "shards": n_shards, "shards_done": done, "finite_fc_corr": finite,
            "peak_rss_before_sweep_mib": round(baseline, 1),
            "peak_rss_mib": round(_peak_mib(), 1), "wall_s": round(wall, 2),
            "set_steps_per_s": round(n_sets * n_steps / wall), "store_mib": round(store_mib, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--shard-size", type=int, default=1024)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.sets[0], args.steps, args.regions, args.shard_size)))
        return
    rows = []
    for n_sets in args.sets:
        out = subprocess.run([sys.executable, __file__, "--child", "--sets", str(n_sets),
                              "--steps", str(args.steps), "--regions", str(args.regions),
                              "--shard-size", str(args.shard_size)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"the child for {n_sets} sets failed:\n{out.stderr}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| sets | shards | peak RSS before sweep MiB | peak RSS MiB | wall s | "
          "set-steps/s | store MiB |\n|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sets']:,} | {r['shards']} | {r['peak_rss_before_sweep_mib']} | "
              f"{r['peak_rss_mib']} | {r['wall_s']} | {r['set_steps_per_s']:.3g} | "
              f"{r['store_mib']} |")


if __name__ == "__main__":
    main()
