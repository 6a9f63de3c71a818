"""``neuralmass fit``: the command-line front of :func:`neuralmass.fit`."""

from __future__ import annotations

from typing import Annotated

import typer

from .errors import NeuralmassError

__all__ = ["fit_command", "parse_free_specs"]


def parse_free_specs(specs: list[str]) -> dict[str, tuple[float, float]]:
    """``["global_coupling=0:1", "eta=-10:0"]`` → ``{name: (lo, hi)}``."""
    free = {}
    for spec in specs:
        name, sep, bounds = spec.partition("=")
        parts = bounds.rsplit(":", 1) if sep else []
        try:
            free[name.strip()] = (float(parts[0]), float(parts[1]))
        except (IndexError, ValueError):
            raise typer.BadParameter(f"--free {spec!r}: expected NAME=LO:HI, e.g. "
                                     "global_coupling=0:1") from None
    return free


def fit_command(
    model: Annotated[str, typer.Argument(help="bundled model name or XML path")],
    target: Annotated[str, typer.Option(help="target FC, an (N, N) .npy file")],
    free: Annotated[list[str], typer.Option("--free", help="NAME=LO:HI; repeat")],
    conn: Annotated[str, typer.Option(
        help="'default', 'tvb-data:76' or a TVB zip path")] = "default",
    objective: Annotated[str, typer.Option(
        help="signed sum of fc_corr, fc_distance, fcd_ks (maximised)")] = "fc_corr",
    method: Annotated[str, typer.Option(help="cmaes, grid, adam or lbfgs")] = "cmaes",
    population: Annotated[int, typer.Option(help="individuals per generation")] = 64,
    generations: Annotated[int, typer.Option(help="number of generations")] = 30,
    backend: Annotated[str, typer.Option(help="numba, jax or cuda")] = "numba",
    steps: Annotated[int, typer.Option(help="number of steps per simulation")] = 4000,
    dt: Annotated[float, typer.Option(help="time step in ms")] = 0.1,
    noise: Annotated[float | None, typer.Option(help="diffusion coefficient D")] = None,
    monitor: Annotated[str, typer.Option(help="the monitor FC is computed from")] =
        "temporal_average:1.0",
    signal: Annotated[str | None, typer.Option(help="exposure or state variable")] = None,
    seed: Annotated[int, typer.Option(help="seed of the optimiser and the noise")] = 0,
    output: Annotated[str | None, typer.Option(
        "-o", "--output", help="store (.nc): history and optimiser state; resumes")] = None,
    plot: Annotated[str | None, typer.Option(help="write the convergence/FC figure")] = None,
) -> None:
    """Fit free parameters of MODEL to a target FC (one batched simulate per generation)."""
    import numpy as np

    from .cli import _connectivity, _fail, console
    from .fit import fit

    try:
        fc = np.load(target)
        result = fit(model, _connectivity(conn, None), fc, free=parse_free_specs(free),
                     objective=objective, method=method, population=population,
                     generations=generations, backend=backend, seed=seed, signal=signal,
                     store=output, progress=True, n_steps=steps, dt=dt, noise=noise,
                     monitors=monitor)
    except (NeuralmassError, OSError) as err:
        raise _fail(str(err)) from None
    best = ", ".join(f"{k}={v:.6g}" for k, v in result.best.items())
    n_div = int(result.history["diverged"].values.sum())
    console.print(f"best objective {result.best_value:.6g} at {best}; "
                  f"{result.history.sizes['individual']} individuals, {n_div} diverged")
    if plot:
        result.plot(plot)
