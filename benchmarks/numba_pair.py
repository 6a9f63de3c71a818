"""Numba set-steps/s of one sweep (1,024 sets x 2,000 steps, bundled connectome, temporal
average): run it in two checkouts alternately to compare them.

Usage: ``uv run python benchmarks/numba_pair.py MODEL DTYPE`` (e.g. ``montbrio float32``).
"""
import sys
import time

import numpy as np

import neuralmass as nm

model, dtype = sys.argv[1], sys.argv[2]
conn = nm.Connectivity.default()
P, T = 1024, 2000
params = nm.grid(global_coupling=np.linspace(0, 0.4, 32), global_speed=np.linspace(1, 10, 32))
kw = dict(backend="numba", n_steps=T, dtype=dtype, monitors="temporal_average:1.0", progress=False)
nm.simulate(model, conn, params, **{**kw, "n_steps": 100})
ts = []
for _ in range(3):
    started = time.perf_counter()
    nm.simulate(model, conn, params, **kw)
    ts.append(time.perf_counter() - started)
print(f"{model} {dtype} {P*T/min(ts):.3e} set-steps/s (wall, min of 3: {min(ts):.2f} s)")
