"""The ``neuralmass`` command line: list, show, run and print the generated code of models,
and time the backends (``bench``).

Only Typer and rich are imported here: NumPy, SymPy, JAX, Numba, Dask, xarray and matplotlib
are imported inside the commands that use them, so ``neuralmass --help`` (and every
subcommand's ``--help``) returns at once (issue 11, §5).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._cli_fit import fit_command
from ._cli_plot import plot_command
from ._cli_sweep import sweep_command
from .errors import DivergenceWarning, NeuralmassError
from .io import check_output_path

if TYPE_CHECKING:
    import numpy as np

    from .connectivity import Connectivity
    from .model import Model

app = typer.Typer(
    help="Whole-brain network simulation from LEMS/RateML neural mass models.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


def _fail(message: str) -> typer.Exit:
    # escaped: a message such as "install neuralmass[cuda]" is not rich markup
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code=2)


def _load(model: str) -> Model:
    from .models import load_model

    try:
        return load_model(model)
    except NeuralmassError as err:
        raise _fail(str(err)) from None


def _connectivity(spec: str, speed: float | None) -> Connectivity:
    from .connectivity import Connectivity

    try:
        if spec == "default":
            conn = Connectivity.default()
        elif spec.startswith("tvb-data:"):
            conn = Connectivity.from_tvb_data(int(spec.split(":", 1)[1])).normalized()
        else:
            conn = Connectivity.from_tvb_zip(spec)
        return conn if speed is None else conn.with_speed(speed)
    except (NeuralmassError, ValueError) as err:
        raise _fail(str(err)) from None


def parse_grid(model: Model, specs: list[str], grid_all: int | None) -> dict[str, np.ndarray]:
    """``name=lo:hi:n`` (n points from lo to hi) or ``name=n`` (n points over the range the
    model declares); ``grid_all`` sweeps every declared Parameter at that resolution.
    The Cartesian product keeps the order given, first slowest."""
    import numpy as np

    from .params import grid as make_grid

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


def parse_params(model: Model, grid: list[str], grid_all: int | None, param: list[str],
                 speed: float | None) -> dict[str, object]:
    """The parameter sets of ``--grid``/``--grid-all`` (see :func:`parse_grid`) with the
    ``--param NAME=VALUE`` values that are the same in every set, after
    :func:`check_conflicts`."""
    check_conflicts(model, grid, grid_all, param, speed)
    params: dict[str, object] = dict(parse_grid(model, grid, grid_all))
    for spec in param:
        name, sep, value = spec.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            raise _fail(f"--param {spec!r}: expected NAME=VALUE") from None
        if not sep:
            raise _fail(f"--param {spec!r}: expected NAME=VALUE")
    return params


@app.command("models")
def list_models() -> None:
    """List the bundled models."""
    from . import models as bundled

    table = Table()
    for header in ("name", "TVB model", "state variables", "coupled variables", "coupling"):
        table.add_column(header, no_wrap=header in ("name", "TVB model"))
    for name in bundled.available():
        model = bundled.load_model(name)
        tvb_model, tvb_coupling = bundled.tvb_names(name)
        table.add_row(name, tvb_model or "", ", ".join(model.state_names),
                      ", ".join(model.coupled_variables), tvb_coupling or "")
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
    monitor: Annotated[list[str] | None, typer.Option(
        "--monitor", help="raw, subsample:PERIOD, temporal_average:PERIOD, bold:PERIOD or "
        "balloon:PERIOD (ms); repeat for several in one run, each written to its own file "
        "(OUT.<kind>.nc)")] = None,
    dtype: Annotated[str | None, typer.Option(
        help="float64 or float32 (default: float32 on cuda, float64 otherwise)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the initial state and the noise")] = 0,
    output: Annotated[str | None, typer.Option(
        "-o", "--output", help="write .nc, .zarr or .npz (the suffix picks)")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = False,
) -> None:
    """Simulate MODEL on a connectome for a grid of parameter sets."""
    from ._simulate import simulate

    the_model = _load(model)
    params = parse_params(the_model, grid or [], grid_all, param or [], speed)
    connectivity = _connectivity(conn, speed)
    specs = monitor or ["temporal_average:1.0"]
    try:
        outputs = monitor_paths(output, specs) if output else [None] * len(specs)
        for path in filter(None, outputs):
            check_output_path(path)
    except NeuralmassError as err:
        raise _fail(str(err)) from None
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DivergenceWarning)
            result = simulate(the_model, connectivity, params, backend=backend, dt=dt,
                              n_steps=steps, integrator=integrator, noise=noise, seed=seed,
                              monitors=specs[0] if len(specs) == 1 else tuple(specs),
                              dtype=dtype, progress=progress)
    except NeuralmassError as err:
        raise _fail(str(err)) from None
    wall = time.perf_counter() - start
    results = result if isinstance(result, tuple) else (result,)
    for warning in caught:  # the diverged sets are reported, the others passed on
        if issubclass(warning.category, DivergenceWarning):
            _report_divergence(results[0], warning.message)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    for one, path in zip(results, outputs, strict=True):
        if path:
            one.save(path)
    _run_line(the_model, connectivity, results[0], steps, backend, wall)
    for one, spec, path in zip(results, specs, outputs, strict=True):
        _summary(the_model, one, path, spec if len(specs) > 1 else None)


def monitor_paths(output: str, monitors: list[str]) -> list[str]:
    """The file of each monitor: ``output`` itself for one monitor, else ``output`` with the
    monitor's label (:func:`neuralmass.monitors.monitor_labels`) before its suffix:
    ``out.nc`` → ``out.temporal_average.nc``, ``out.bold.nc`` (``out.bold-0.nc``,
    ``out.bold-1.nc`` for two BOLD monitors)."""
    from pathlib import Path

    from .monitors import monitor_labels

    labels = monitor_labels(monitors)
    if len(labels) == 1:
        return [output]
    path = Path(output)
    return [str(path.with_suffix(f".{label}{path.suffix}")) for label in labels]


def _report_divergence(result, message, shown: int = 8) -> None:
    """The warning's text and the first ``shown`` diverged sets with their first steps."""
    import numpy as np

    sets = np.flatnonzero(np.asarray(result.diverged))
    steps = np.asarray(result.first_nonfinite_step)[sets]
    listed = ", ".join(f"{p} (step {n})" for p, n in zip(sets[:shown], steps[:shown],
                                                        strict=True))
    Console(stderr=True).print(
        f"[bold yellow]warning:[/] {message}\ndiverged sets (first non-finite step): {listed}"
        + (", ..." if sets.size > shown else ""), highlight=False)


def _run_line(model, connectivity, result, steps, backend, wall) -> None:
    """The run's line, with the number of diverged sets."""
    import numpy as np

    n_sets = result.n_sets
    diverged = (0 if result.diverged is None
                else int(np.count_nonzero(np.asarray(result.diverged))))
    console.print(
        f"[bold]{model.name}[/] on {connectivity.n_regions} regions "
        f"({len(connectivity.edges()[0])} edges), {n_sets} parameter sets × {steps} steps, "
        f"backend {backend}: {wall:.2f} s, {n_sets * steps / wall:.3g} set-steps/s; "
        f"{diverged} of {n_sets} sets diverged",
        highlight=False,
    )


def _summary(model, result, output, spec) -> None:
    """A table of the first and last sets of one monitor's ``result``: each exposure's mean
    and std over time (see :mod:`neuralmass.summary`; a phase such as Kuramoto's theta by its
    order parameter R); and the file it was written to. ``spec``: the monitor as given, named
    in the file's line when the run had several."""
    import numpy as np

    from .summary import set_statistic

    n_sets = result.n_sets
    swept = {k: np.asarray(v) for k, v in result.params.items() if np.ptp(np.asarray(v)) > 0}
    alias = dict(result.plain_exposures)
    phases_kept = result.monitor not in ("bold", "balloon")  # a BOLD signal is not a phase
    periodic = {n for n in result.exposure_names
                if phases_kept and alias.get(n) in model.periodic_names}
    columns = {}
    for statistic in ("mean", "std"):
        for i, name in enumerate(result.exposure_names):
            label = f"{statistic} R({name})" if name in periodic else f"{statistic} {name}"
            columns[label] = set_statistic(result.exposures[:, i], statistic, name in periodic)
    phases = "; R: Kuramoto order parameter of a phase" if periodic else ""
    table = Table(*swept.keys(), *columns, title=(
        f"exposures over time ({result.monitor}; mean over regions{phases}); first and last "
        f"sets"))
    shown = sorted({0, 1, 2, n_sets - 3, n_sets - 2, n_sets - 1} & set(range(n_sets)))
    for i in shown:
        table.add_row(*(f"{v[i]:.4g}" for v in swept.values()),
                      *(f"{c[i]:.4g}" for c in columns.values()))
    console.print(table)
    if output:
        size = _size(output) / 1e6
        holds = f"monitor {spec}, " if spec else ""
        console.print(f"wrote {output} ({size:.1f} MB): {holds}time {result.time.shape}, "
                      f"data {tuple(result.data.shape)} (time, variable, region, set)",
                      highlight=False, markup=False, soft_wrap=True)  # paths unbroken


def _size(path: str) -> int:
    """Bytes of a file, or of every file under a directory (a .zarr store)."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, f))
               for folder, _, files in os.walk(path) for f in files)


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
    import numpy as np

    from .backends import get_backend
    from .connectivity import Connectivity
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


# --------------------------------------------------------------------- analyze (issue 12)
@app.command()
def analyze(
    model: Annotated[str, typer.Argument(help="bundled model name or XML path")],
    param: Annotated[str | None, typer.Option(
        "--param", help="NAME=LO:HI:N: follow the equilibria as NAME goes from LO to HI "
        "(steps of at most (HI-LO)/N)")] = None,
    plot: Annotated[str | None, typer.Option(
        help="with --param: write the bifurcation diagram to this image file")] = None,
    variable: Annotated[str | None, typer.Option(
        help="state variable on the diagram's vertical axis (default: the first)")] = None,
    coupling: Annotated[float, typer.Option(
        help="constant coupling input c_pop<k> the node receives")] = 0.0,
) -> None:
    """Equilibria of one node of MODEL and their stability; with --param, their branches,
    saddle-node and Hopf points (and with --plot, the bifurcation diagram)."""
    from . import analysis

    the_model = _load(model)
    if plot and not param:
        raise _fail("--plot draws a continuation: give --param NAME=LO:HI:N too")
    try:
        points = analysis.fixed_points(the_model, coupling=coupling)
    except NeuralmassError as err:
        raise _fail(str(err)) from None
    table = Table(*the_model.state_names, "eigenvalues", "stability",
                  title=f"equilibria of one {the_model.name} node (coupling input {coupling:g})")
    for point in points:
        eigenvalues = ", ".join(f"{lam.real:.4g}{lam.imag:+.4g}j" if lam.imag else
                                f"{lam.real:.4g}" for lam in point.eigenvalues)
        table.add_row(*(f"{v:.6g}" for v in point.state), eigenvalues, point.stability)
    console.print(table)
    if not points:
        console.print("no equilibrium found", highlight=False)
    if not param:
        return
    name, _, value = param.partition("=")
    try:
        lo, hi, n = value.split(":")
        bounds, steps = (float(lo), float(hi)), int(n)
    except ValueError:
        raise _fail(f"--param {param!r}: expected NAME=LO:HI:N") from None
    try:
        result = analysis.continuation(the_model, name.strip(), bounds, steps,
                                       coupling=coupling)
        if plot:
            analysis.plot_bifurcation(result, plot, variable)
    except NeuralmassError as err:
        raise _fail(str(err)) from None
    console.print(result.summary(), highlight=False)
    if plot:
        console.print(f"wrote {plot}", highlight=False)


@app.command()
def bench(
    backend: Annotated[str, typer.Option(help="comma-separated: numba, jax, cuda, or all")] =
        "all",
    model: Annotated[str, typer.Option(help="comma-separated bundled models")] =
        "kuramoto,montbrio,epileptor",
    sets: Annotated[int, typer.Option(help="parameter sets (fixed size and --scan steps)")] =
        1024,
    steps: Annotated[int, typer.Option(help="integration steps (fixed size and --scan sets)")]
        = 4000,
    scan: Annotated[str | None, typer.Option(
        help="'sets' (2^6 … 2^15 sets, panel C) or 'steps' (4,000 … 100,000, panel D)")] = None,
    dtype: Annotated[str, typer.Option(help="comma-separated: float32, float64")] = "float32",
    repeat: Annotated[int, typer.Option(help="timed runs after the warm-up (median)")] = 3,
    peers: Annotated[bool, typer.Option(help="also time tvb-library and vbjax")] = False,
    conn: Annotated[str, typer.Option(
        help="'default' (bundled synthetic 76 regions), 'tvb-data:76' or a TVB zip path")] =
        "default",
    copy_mib: Annotated[int, typer.Option(help="MiB copied to measure the copy bandwidth")] =
        1024,
    max_run_s: Annotated[float | None, typer.Option(
        help="stop a scan before a size whose run would take longer than this many seconds "
             "(predicted from the previous size)")] = None,
    json_path: Annotated[str | None, typer.Option("--json", help=(
        "write every figure here (rewritten after each measurement)"))] = None,
    plot: Annotated[str | None, typer.Option(help="draw the four panels to this PNG")] = None,
) -> None:
    """Time the backends here: compile, set-steps/s, effective vs copy bandwidth, peers."""
    from . import bench as measuring
    from . import models as bundled
    from .backends import BACKENDS

    backends = list(BACKENDS) if backend == "all" else [b.strip() for b in backend.split(",")]
    names = [m.strip() for m in model.split(",")]
    dtypes = [d.strip() for d in dtype.split(",")]
    for value, valid, option in ((backends, BACKENDS, "--backend"),
                                 (names, bundled.available(), "--model"),
                                 (dtypes, ("float32", "float64"), "--dtype")):
        wrong = [v for v in value if v not in valid]
        if wrong:
            raise _fail(f"{option}: unknown {', '.join(map(repr, wrong))}; expected a "
                        f"comma-separated list of {', '.join(valid)}")
    if repeat < 1:
        raise _fail(f"--repeat must be >= 1, but got {repeat}")
    if max_run_s is not None and not max_run_s > 0:
        raise _fail(f"--max-run-s must be > 0 seconds, but got {max_run_s}")
    connectivity = _connectivity(conn, None)
    try:
        runs = measuring.sizes(scan, sets, steps)
        report = measuring.run_bench(backends, names, dtypes, runs, repeat=repeat, peers=peers,
                                     conn=connectivity, conn_name=conn,
                                     copy_bytes=copy_mib << 20, max_run_s=max_run_s,
                                     checkpoint=(lambda partial: measuring.write_json(
                                         partial, json_path)) if json_path else None,
                                     log=lambda line: console.print(line, highlight=False,
                                                                    markup=False))
    except NeuralmassError as err:
        raise _fail(str(err)) from None
    measuring.print_report(report, console)
    if json_path:
        measuring.write_json(report, json_path)
        console.print(f"wrote {json_path}", highlight=False)
    if plot:
        measuring.plot_report(report, plot)
        console.print(f"wrote {plot}", highlight=False)


app.command("sweep")(sweep_command)
app.command("fit")(fit_command)
app.command("plot")(plot_command)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover - python -m neuralmass.cli
    main()
