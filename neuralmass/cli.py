"""The ``neuralmass`` command line: list, show, run and print the generated code of models."""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from . import models as bundled
from .connectivity import Connectivity
from .errors import DivergenceWarning, NeuralmassError
from .model import Model
from .params import grid as make_grid

app = typer.Typer(
    help="Whole-brain network simulation from LEMS/RateML neural mass models.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


def _load(model: str) -> Model:
    try:
        return bundled.load_model(model)
    except NeuralmassError as err:
        raise _fail(str(err)) from None


def _connectivity(spec: str, speed: float | None) -> Connectivity:
    try:
        if spec == "default":
            conn = Connectivity.default()
        elif spec.startswith("tvb-data:"):
            conn = Connectivity.from_tvb_data(int(spec.split(":", 1)[1])).normalized()
        else:
            conn = Connectivity.from_tvb_zip(spec)
    except (NeuralmassError, ValueError) as err:
        raise _fail(str(err)) from None
    return conn if speed is None else conn.with_speed(speed)


def parse_grid(model: Model, specs: list[str], grid_all: int | None) -> dict[str, np.ndarray]:
    """``name=lo:hi:n`` (n points from lo to hi) or ``name=n`` (n points over the range the
    model declares); ``grid_all`` sweeps every declared Parameter at that resolution.
    The Cartesian product keeps the order given, first slowest."""
    axes: dict[str, np.ndarray] = {}
    if grid_all is not None:
        declared = _declared_ranges(model)
        if not declared:
            raise _fail(f"model {model.name!r} declares no Parameter with a range to sweep")
        for p in declared:
            axes[p.name] = np.linspace(p.range[0], p.range[1], grid_all)
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or name not in model.parameter_names:
            valid = ", ".join(model.parameter_names)
            raise _fail(f"--grid {spec!r}: expected NAME=LO:HI:N or NAME=N with NAME one of "
                        f"{valid}")
        parts = value.split(":")
        try:
            if len(parts) == 3:
                lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            elif len(parts) == 1:
                n = int(parts[0])
                declared_range = model.parameter(name).range
                if declared_range is None:
                    raise _fail(f"--grid {spec!r}: {name!r} declares no range in the model; "
                                "give NAME=LO:HI:N")
                lo, hi = declared_range
            else:
                raise ValueError
        except ValueError:
            raise _fail(f"--grid {spec!r}: expected NAME=LO:HI:N or NAME=N") from None
        if n < 1:
            raise _fail(f"--grid {spec!r}: the number of points must be >= 1")
        axes[name] = np.linspace(lo, hi, n)
    return make_grid(**axes) if axes else {}


def _declared_ranges(model: Model):
    """The Parameters ``--grid-all`` sweeps: those the model declares with a range."""
    return [p for p in model.parameters if p.kind == "parameter" and p.range]


def check_conflicts(model: Model, grid: list[str], grid_all: int | None, param: list[str],
                    speed: float | None) -> None:
    """Each name is set by one option: the same name in two of --grid, --grid-all, --param
    (or global_speed and --speed) is a usage error, not a silent choice of one of them."""
    sources = ([(f"--grid-all {grid_all}", p.name) for p in _declared_ranges(model)]
               if grid_all is not None else [])
    sources += [(f"--grid {spec!r}", spec.partition("=")[0].strip()) for spec in grid]
    sources += [(f"--param {spec!r}", spec.partition("=")[0].strip()) for spec in param]
    if speed is not None:
        sources.append((f"--speed {speed:g}", "global_speed"))
    seen: dict[str, str] = {}
    for option, name in sources:
        if name in seen:
            raise _fail(f"{seen[name]} and {option} both set {name!r}; give each name once")
        seen[name] = option


@app.command("models")
def list_models() -> None:
    """List the bundled models."""
    table = Table("name", "state variables", "description")
    for name in bundled.available():
        model = bundled.load_model(name)
        table.add_row(name, ", ".join(model.state_names), model.description)
    console.print(table)


@app.command()
def show(model: Annotated[str, typer.Argument(help="bundled model name or XML path")]) -> None:
    """Print a model's equations."""
    # Plain text: rich's line splitting is quadratic in the number of lines (issue 8, §7).
    typer.echo(str(_load(model)))


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="bundled model name or XML path")],
    conn: Annotated[str, typer.Option(
        help="'default' (bundled synthetic 76 regions), 'tvb-data:76' or a TVB zip path")] =
        "default",
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", help="NAME=LO:HI:N or NAME=N (over the model's declared range); repeat")] =
        None,
    grid_all: Annotated[int | None, typer.Option(
        help="sweep every declared Parameter at this resolution")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="NAME=VALUE, the same in every set; repeat")] = None,
    steps: Annotated[int, typer.Option(help="number of steps")] = 4000,
    dt: Annotated[float, typer.Option(help="time step in ms")] = 0.1,
    speed: Annotated[float | None, typer.Option(help="conduction speed in mm/ms")] = None,
    backend: Annotated[str, typer.Option(help="jax, numba or cuda")] = "numba",
    integrator: Annotated[str, typer.Option(help="euler, heun or rk4")] = "heun",
    noise: Annotated[float | None, typer.Option(help="diffusion coefficient D")] = None,
    monitor: Annotated[str, typer.Option(
        help="raw, subsample:PERIOD or temporal_average:PERIOD (ms)")] = "temporal_average:1.0",
    dtype: Annotated[str | None, typer.Option(
        help="float64 or float32 (default: float32 on cuda, float64 otherwise)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the initial state and the noise")] = 0,
    output: Annotated[str | None, typer.Option("-o", "--output", help="write an .npz")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = False,
) -> None:
    """Simulate MODEL on a connectome for a grid of parameter sets."""
    from ._simulate import simulate

    the_model = _load(model)
    check_conflicts(the_model, grid or [], grid_all, param or [], speed)
    connectivity = _connectivity(conn, speed)
    params: dict[str, object] = dict(parse_grid(the_model, grid or [], grid_all))
    for spec in param or []:
        name, sep, value = spec.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise _fail(f"--param {spec!r}: expected NAME=VALUE") from None
        if not sep:
            raise _fail(f"--param {spec!r}: expected NAME=VALUE")
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DivergenceWarning)
            result = simulate(the_model, connectivity, params, backend=backend, dt=dt,
                              n_steps=steps, integrator=integrator, noise=noise, seed=seed,
                              monitors=monitor, dtype=dtype, progress=progress)
    except NeuralmassError as err:
        raise _fail(str(err)) from None
    wall = time.perf_counter() - start
    for warning in caught:  # the diverged sets are reported, the others passed on
        if issubclass(warning.category, DivergenceWarning):
            _report_divergence(result, warning.message)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    if output:
        result.save(output)
    _summary(the_model, connectivity, result, steps, backend, wall, output)


def _report_divergence(result, message, shown: int = 8) -> None:
    """The warning's text and the first ``shown`` diverged sets with their first steps."""
    sets = np.flatnonzero(np.asarray(result.diverged))
    steps = np.asarray(result.first_nonfinite_step)[sets]
    listed = ", ".join(f"{p} (step {n})" for p, n in zip(sets[:shown], steps[:shown],
                                                        strict=True))
    Console(stderr=True).print(
        f"[bold yellow]warning:[/] {message}\ndiverged sets (first non-finite step): {listed}"
        + (", ..." if sets.size > shown else ""), highlight=False)


def _summary(model, connectivity, result, steps, backend, wall, output) -> None:
    n_sets = result.n_sets
    console.print(
        f"[bold]{model.name}[/] on {connectivity.n_regions} regions "
        f"({len(connectivity.edges()[0])} edges), {n_sets} parameter sets × {steps} steps, "
        f"backend {backend}: {wall:.2f} s, {n_sets * steps / wall:.3g} set-steps/s",
        highlight=False,
    )
    swept = {k: np.asarray(v) for k, v in result.params.items() if np.ptp(np.asarray(v)) > 0}
    table = Table(*swept.keys(), *(f"mean {n}" for n in result.exposure_names),
                  *(f"std {n}" for n in result.exposure_names), title=(
        f"time/region mean and std of the exposures ({result.monitor}); first and last sets"))
    exposures = np.asarray(result.exposures)
    means = exposures.mean(axis=(0, 2))
    stds = exposures.std(axis=0).mean(axis=1)
    shown = sorted({0, 1, 2, n_sets - 3, n_sets - 2, n_sets - 1} & set(range(n_sets)))
    for i in shown:
        table.add_row(*(f"{v[i]:.4g}" for v in swept.values()),
                      *(f"{m:.4g}" for m in means[:, i]), *(f"{s:.4g}" for s in stds[:, i]))
    console.print(table)
    if output:
        size = os.path.getsize(output) / 1e6
        console.print(f"wrote {output} ({size:.1f} MB): time {result.time.shape}, "
                      f"data {tuple(result.data.shape)} (time, variable, region, set)",
                      highlight=False)


@app.command()
def codegen(
    model: Annotated[str, typer.Argument(help="bundled model name or XML path")],
    target: Annotated[str, typer.Option(help="jax, numba or cuda")] = "cuda",
    integrator: Annotated[str, typer.Option(help="euler, heun or rk4")] = "heun",
    dt: Annotated[float, typer.Option(help="time step in ms")] = 0.1,
    dtype: Annotated[str, typer.Option(help="float32 or float64")] = "float32",
    sweep: Annotated[list[str] | None, typer.Option(
        help="parameters that vary per set (stay kernel arguments); default global_coupling")]
        = None,
) -> None:
    """Print the source generated for MODEL: users want to read what runs."""
    from .backends import get_backend
    from .plan import make_plan

    the_model = _load(model)
    names = sweep or ["global_coupling"]
    try:
        params = {name: np.array([the_model.parameter(name).default or 1.0] * 2)
                  for name in names}
    except KeyError as err:
        raise _fail(f"--sweep: unknown parameter {err.args[0]!r}") from None
    try:
        plan = make_plan(the_model, Connectivity.default(), params, dt=dt, n_steps=1,
                         integrator=integrator, dtype=dtype)
        source = get_backend(target).generated_source(plan)
    except NeuralmassError as err:
        raise _fail(str(err)) from None
    sys.stdout.write(source)


from .cli_fit import fit_command  # noqa: E402  (its own module, registered here)

app.command("fit")(fit_command)


def main() -> None:  # pragma: no cover - console entry point
    app()

