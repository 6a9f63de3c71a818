"""``neuralmass sweep``: :func:`neuralmass.sweep` from the command line, and the SLURM recipe.

Rerunning the same command resumes (only shards not done run). ``--slurm`` prints the
dask-jobqueue ``SLURMCluster`` job script for the given resources; with ``--submit`` it
submits ``--jobs`` such jobs and runs the sweep on them.
"""

from __future__ import annotations

from typing import Annotated

import typer


def slurm_cluster(cores: int, memory: str, walltime: str, queue: str | None,
                  account: str | None):
    """A dask-jobqueue ``SLURMCluster``: one worker process per job, ``cores`` threads."""
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(cores=cores, processes=1, memory=memory, walltime=walltime,
                        queue=queue, account=account, scheduler_options={"dashboard_address": None})


def sweep_command(
    model: Annotated[str, typer.Argument(help="bundled model name or XML path")],
    store: Annotated[str, typer.Option(help="the Zarr store (.zarr); rerun to resume")] =
        "sweep.zarr",
    conn: Annotated[str, typer.Option(help="'default', 'tvb-data:76' or a TVB zip path")] =
        "default",
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", help="NAME=LO:HI:N or NAME=N; repeat")] = None,
    grid_all: Annotated[int | None, typer.Option(help="every declared Parameter at N")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE; repeat")] =
        None,
    steps: Annotated[int, typer.Option(help="number of steps")] = 4000,
    dt: Annotated[float, typer.Option(help="time step in ms")] = 0.1,
    speed: Annotated[float | None, typer.Option(help="conduction speed in mm/ms")] = None,
    backend: Annotated[str, typer.Option(help="jax, numba or cuda")] = "numba",
    integrator: Annotated[str, typer.Option(help="euler, heun or rk4")] = "heun",
    noise: Annotated[float | None, typer.Option(help="diffusion coefficient D")] = None,
    monitor: Annotated[list[str] | None, typer.Option(
        "--monitor", help="raw, subsample:P, temporal_average:P, bold:P or balloon:P; repeat "
        "for several (one store group each)")] = None,
    dtype: Annotated[str | None, typer.Option(help="float64 or float32")] = None,
    seed: Annotated[int, typer.Option(help="seed of the initial state and the noise")] = 0,
    shard_size: Annotated[int | None, typer.Option(help="sets per shard")] = None,
    workers: Annotated[int | None, typer.Option(help="a LocalCluster of K processes")] = None,
    scheduler: Annotated[str | None, typer.Option(help="a Dask scheduler address")] = None,
    reduce: Annotated[list[str] | None, typer.Option(
        "--reduce", help="mean, std, fc or fc_corr; repeat")] = None,
    target: Annotated[str | None, typer.Option(help="target FC (.npy) for fc_corr")] = None,
    slurm: Annotated[bool, typer.Option(help="print the SLURM job script")] = False,
    submit: Annotated[bool, typer.Option(help="with --slurm: submit and run on it")] = False,
    cores: Annotated[int, typer.Option(help="SLURM: cores per job")] = 4,
    memory: Annotated[str, typer.Option(help="SLURM: memory per job")] = "16GB",
    walltime: Annotated[str, typer.Option(help="SLURM: walltime per job")] = "01:00:00",
    queue: Annotated[str | None, typer.Option(help="SLURM: partition")] = None,
    account: Annotated[str | None, typer.Option(help="SLURM: account")] = None,
    jobs: Annotated[int, typer.Option(help="SLURM: number of worker jobs")] = 1,
) -> None:
    """Sweep MODEL over a grid in shards into a resumable Zarr store (see nm.sweep)."""
    from .cli import _connectivity, _fail, _load, parse_params
    from .errors import NeuralmassError

    if workers is not None and scheduler is not None:
        raise _fail("--workers and --scheduler exclude each other: give one")
    if slurm:
        cluster = slurm_cluster(cores, memory, walltime, queue, account)
        typer.echo(cluster.job_script())
        if not submit:
            cluster.close()
            return
        cluster.scale(jobs=jobs)
    the_model = _load(model)
    params = parse_params(the_model, grid or [], grid_all, param or [], speed)
    client = None
    if slurm:
        from dask.distributed import Client

        client = Client(cluster)
    elif workers is not None:
        from dask.distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=workers, processes=True, threads_per_worker=1,
                                     dashboard_address=None))
    elif scheduler is not None:
        client = scheduler
    try:
        import numpy as np

        from .sweep import sweep

        target_fc = None if target is None else np.load(target)
        specs = monitor or ["temporal_average:1.0"]
        datasets = sweep(the_model, _connectivity(conn, speed), params, store=store,
                   shard_size=shard_size, client=client, reduce=reduce or None,
                   target=target_fc, backend=backend, dt=dt, n_steps=steps,
                   integrator=integrator, noise=noise, seed=seed,
                   monitors=specs[0] if len(specs) == 1 else tuple(specs), dtype=dtype)
    except (NeuralmassError, OSError) as err:
        raise _fail(str(err)) from None
    ds = datasets[0] if isinstance(datasets, tuple) else datasets
    done = int(ds["shard_done"].sum())
    diverged = int((ds["diverged"] == 1).sum())  # stored whatever --reduce is
    typer.echo(f"{store}: {ds.sizes['set']} sets, {done}/{ds.sizes['shard']} shards done, "
               f"{diverged} diverged")
    if isinstance(datasets, tuple):
        from .monitors import monitor_labels

        for label, spec in zip(monitor_labels(specs), specs, strict=True):
            typer.echo(f"  group {label!r}: monitor {spec}")
