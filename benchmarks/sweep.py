"""CPU benchmark of the Numba backend against tvb-library and vbjax (issue #3): a preset of
``neuralmass bench``, whose measuring code lives in :mod:`neuralmass.bench`.

Montbrió–Pazó–Roxin and Kuramoto on tvb-data's 76-region connectome (the bundled one when
tvb-data is absent), 1,024 sets (32 couplings × 32 speeds from 1 to 10 mm/ms) × 4,000 steps,
float32 and float64, with the peers (a few tvb-library sets and one vbjax batch of 64 sets
timed, extrapolated linearly to 1,024)::

    uv run python benchmarks/sweep.py                  # ~10 minutes on 2 cores
    uv run python benchmarks/sweep.py --quick          # 1,000 steps
    uv run python benchmarks/sweep.py --json out.json  # any other `neuralmass bench` option
"""

from __future__ import annotations

import importlib.util
import sys

from neuralmass.cli import app


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    steps = "1000" if "--quick" in argv else "4000"
    conn = "tvb-data:76" if importlib.util.find_spec("tvb_data") else "default"
    app(["bench", "--backend", "numba", "--model", "montbrio,kuramoto",
         "--dtype", "float32,float64", "--sets", "1024", "--steps", steps, "--peers",
         "--conn", conn, *(a for a in argv if a != "--quick")])  # later options win


if __name__ == "__main__":
    main()
