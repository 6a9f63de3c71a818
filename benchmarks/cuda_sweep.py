"""GPU benchmark of the CUDA backend against JAX on the same card: a preset of
``neuralmass bench``, whose measuring code lives in :mod:`neuralmass.bench`.

Montbrió–Pazó–Roxin and Kuramoto on the bundled 76-region connectome, float32, 2^6 … 2^15
parameter sets × 4,000 steps (panel C: 1,024 and 32,768 sets among them), CUDA (end to end;
the kernel time by CUDA events is in the JSON's ``kernel_s``) and JAX, the effective
bandwidth of the delayed reads against a device-to-device copy measured in the same run.
Without CuPy or a GPU the CUDA backend is listed as skipped::

    uv run python benchmarks/cuda_sweep.py                  # best of 3
    uv run python benchmarks/cuda_sweep.py --quick          # one timed run per case
    uv run python benchmarks/cuda_sweep.py --json out.json  # any other `neuralmass bench` option
"""

from __future__ import annotations

import os
import sys

# a benchmark, not the library: let JAX and CuPy share the card
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from neuralmass.cli import app  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    repeat = "1" if "--quick" in argv else "3"
    app(["bench", "--backend", "cuda,jax", "--model", "montbrio,kuramoto", "--dtype",
         "float32", "--scan", "sets", "--steps", "4000", "--repeat", repeat,
         *(a for a in argv if a != "--quick")])  # later options win


if __name__ == "__main__":
    main()
