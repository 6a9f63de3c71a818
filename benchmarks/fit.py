"""The seed's experiment (issue 10): CMA-ES on an FC target, 30 generations × 1,024
individuals × 4,000 steps on the 76-region connectome, one batched ``simulate`` per
generation (Numba by default, ``--backend cuda`` on a GPU).

The target FC is simulated from Montbrió–Pazó–Roxin with global_coupling = 0.5 and noise
seed 1; the fit (seed 2) frees global_coupling in [0, 1] with objective
"+fc_corr -fc_distance". Prints, per generation: wall time, the share spent outside
``simulate`` (goal <= 5 %), the best objective; writes the convergence/FC figure.

    uv run python benchmarks/fit.py                      # full size (long: run it alone)
    uv run python benchmarks/fit.py --population 8 --generations 2 --steps 200   # smoke
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import neuralmass as nm
import neuralmass._fit.problem as problem_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=1024)
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--plot", default="fit_benchmark.png")
    args = parser.parse_args()

    conn = nm.Connectivity.default()
    sim = dict(dt=0.1, n_steps=args.steps, noise=1e-3, monitors="temporal_average:1")
    transient = args.steps // 20
    target_run = nm.simulate("montbrio", conn, {"global_coupling": 0.5}, seed=1,
                             backend=args.backend, **sim)
    target = nm.metrics.fc(target_run.exposure("r")[transient:, :, 0])

    inside = []
    real_simulate = problem_module.simulate

    def timed_simulate(*a, **k):  # the time spent inside simulate, per call
        start = time.perf_counter()
        out = real_simulate(*a, **k)
        inside.append(time.perf_counter() - start)
        return out

    problem_module.simulate = timed_simulate
    marks = [time.perf_counter()]
    best = []

    def report(generation, params, values):
        marks.append(time.perf_counter())
        wall = marks[-1] - marks[-2]
        best.append(float(np.max(values)))
        outside = 1.0 - inside[-1] / wall
        print(f"generation {generation:3d}: {wall:8.2f} s, outside simulate {outside:6.1%}, "
              f"best {best[-1]:.4f}", flush=True)

    fit = nm.fit("montbrio", conn, target, free={"global_coupling": (0.0, 1.0)},
                 objective="+fc_corr -fc_distance", method="cmaes",
                 population=args.population, generations=args.generations,
                 backend=args.backend, seed=2, transient=transient, progress=False,
                 callback=report, **sim)
    walls = np.diff(marks)
    print(f"best {fit.best} value {fit.best_value:.4f}; mean per generation (after the "
          f"first) {walls[1:].mean() if len(walls) > 1 else walls[0]:.2f} s; total "
          f"{walls.sum():.1f} s")
    fit.plot(args.plot)
    print(f"figure: {args.plot}")


if __name__ == "__main__":
    main()
