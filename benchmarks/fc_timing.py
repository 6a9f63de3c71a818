"""Wall and CPU time of ``nm.metrics.fc`` on a batched NumPy signal, against the einsum it
replaced (issue 10; ``benchmarks/RESULTS.md``).

    uv run python benchmarks/fc_timing.py [--sets 1024] [--samples 360] [--regions 76]

Prints the best of ``--repeat`` runs of each, wall and CPU seconds; both take the same
(T, N, P) float64 random walk, and their results are checked to agree to 1e-12.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import neuralmass as nm


def einsum_fc(x):
    """The previous ``metrics.fc``: centred covariances by einsum over the trailing set axis."""
    xc = x - x.mean(axis=0, keepdims=True)
    cov = np.einsum("tip,tjp->ijp", xc, xc)
    sd = np.sqrt(np.einsum("iip->ip", cov))
    return cov / (sd[:, None, :] * sd[None, :, :])


def best_of(fn, x, repeat):
    """(min wall s, min CPU s, result) over ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(x)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=360)
    parser.add_argument("--regions", type=int, default=76)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, args.regions, args.sets)).cumsum(axis=0)
    print(f"FC of (T, N, P) = {x.shape} float64, best of {args.repeat}")
    reference = None
    for name, fn in (("metrics.fc (matmul, a chunk per core)", nm.metrics.fc),
                     ("einsum (previous metrics.fc)", einsum_fc)):
        wall, cpu, out = best_of(fn, x, args.repeat)
        if reference is None:
            reference = out
        np.testing.assert_allclose(out, reference, rtol=0, atol=1e-12)
        print(f"{name:38s} wall {wall:6.3f} s   CPU {cpu:6.3f} s")


if __name__ == "__main__":
    main()
