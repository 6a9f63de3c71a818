"""nm.sweep: shards equal one simulate bit for bit (noise included), resume, argument check."""

from __future__ import annotations

import os

import numpy as np
import pytest

import neuralmass as nm
from neuralmass.errors import ParameterError

KW = dict(backend="numba", n_steps=60, noise=0.01, seed=3)
PARAMS = nm.grid(global_coupling=np.linspace(0, 1, 6))


def _conn():
    return nm.Connectivity(np.ones((4, 4)) - np.eye(4), np.full((4, 4), 10.0))


def _reference():
    return nm.simulate("kuramoto", _conn(), PARAMS, **KW)


def test_inprocess_sweep_equals_one_simulate(tmp_path):
    ds = nm.sweep("kuramoto", _conn(), PARAMS, store=tmp_path / "s.zarr", shard_size=2,
                  progress=False, **KW)
    # exact: the same kernel, and set_offset gives each shard the whole run's noise
    np.testing.assert_array_equal(ds["theta"].values, _reference().state("theta"))
    assert ds["shard_done"].values.tolist() == [1, 1, 1]
    np.testing.assert_array_equal(ds["global_coupling"].values, PARAMS["global_coupling"])


def _counting(path):
    def reduce(result):
        with open(path, "a") as f:
            f.write("x\n")
        return {"theta_last": np.asarray(result.data[-1, 0, 0])}
    return reduce


def test_resume_runs_only_missing_shards_and_other_arguments_fail(tmp_path):
    store, log = tmp_path / "s.zarr", tmp_path / "runs.txt"
    reduce = _counting(log)
    ds = nm.sweep("kuramoto", _conn(), PARAMS, store=store, shard_size=2, reduce=reduce,
                  progress=False, **KW)
    first = ds["theta_last"].values.copy()
    runs = len(log.read_text().split())  # probe + 3 shards
    import zarr

    group = zarr.open_group(store)
    group["shard_done"][1] = 0  # as if the driver had died before shard 1 was marked
    ds = nm.sweep("kuramoto", _conn(), PARAMS, store=store, shard_size=2, reduce=reduce,
                  progress=False, **KW)
    assert len(log.read_text().split()) == runs + 1  # only shard 1 ran again
    np.testing.assert_array_equal(ds["theta_last"].values, first)
    np.testing.assert_array_equal(first, _reference().state("theta")[-1, 0])
    with pytest.raises(ParameterError, match="other arguments"):
        nm.sweep("kuramoto", _conn(), PARAMS, store=store, shard_size=3, reduce=reduce,
                 progress=False, **KW)


MONITORS = ("temporal_average:1", "bold:20")  # bold:20 is 200 steps of dt 0.1 ms


def test_several_monitors_one_group_each_equal_to_one_simulate_and_resume(tmp_path):
    """A group per monitor (named by monitor_labels), each equal to simulate's Result of that
    monitor in a run of both (exact: the same kernel); a shard unmarked in one group runs
    again (the reducer sees it once per monitor) and leaves the values unchanged."""
    import xarray as xr
    import zarr

    kw = {**KW, "n_steps": 400, "monitors": MONITORS}
    store = tmp_path / "s.zarr"
    tavg, bold = nm.sweep("kuramoto", _conn(), PARAMS, store=store, shard_size=2,
                          progress=False, **kw)
    ref = nm.simulate("kuramoto", _conn(), PARAMS, **kw)
    for ds, res in zip((tavg, bold), ref, strict=True):
        np.testing.assert_array_equal(ds["theta"].transpose("time", "region", "set").values,
                                      res.state("theta"))
        np.testing.assert_array_equal(ds["time"].values, res.time)
        assert ds.attrs["monitor"] == res.monitor
        assert ds["shard_done"].values.tolist() == [1, 1, 1]
    assert zarr.open_group(store, mode="r").attrs["monitors"] == ["temporal_average", "bold"]
    np.testing.assert_array_equal(xr.open_zarr(store, group="bold")["theta"].values,
                                  bold["theta"].values)

    reduced, log = tmp_path / "r.zarr", tmp_path / "runs.txt"
    reduce = _counting(log)
    first = nm.sweep("kuramoto", _conn(), PARAMS, store=reduced, shard_size=2, reduce=reduce,
                     progress=False, **kw)
    runs = len(log.read_text().split())
    assert runs == 2 * (1 + 3)  # the probe and 3 shards, each once per monitor
    zarr.open_group(reduced, path="bold")["shard_done"][1] = 0
    again = nm.sweep("kuramoto", _conn(), PARAMS, store=reduced, shard_size=2, reduce=reduce,
                     progress=False, **kw)
    assert len(log.read_text().split()) == runs + 2  # only shard 1 ran again
    for ds_first, ds_again, res in zip(first, again, ref, strict=True):
        np.testing.assert_array_equal(ds_again["theta_last"].values,
                                      ds_first["theta_last"].values)
        np.testing.assert_array_equal(ds_again["theta_last"].values, res.state("theta")[-1, 0])
        assert ds_again["shard_done"].values.tolist() == [1, 1, 1]


def _exit_once(flag):
    """Kills the Dask worker that first runs it (the driver's probe is left alone)."""
    def reduce(result):
        from dask.distributed import get_worker

        try:
            get_worker()
        except ValueError:  # not on a worker: the driver's probe of the first set
            pass
        else:
            if not os.path.exists(flag):
                open(flag, "w").close()
                os._exit(1)
        return {"theta_last": np.asarray(result.data[-1, 0, 0])}
    return reduce


@pytest.mark.xdist_group("subprocesses")  # with the other tests that start processes
def test_local_cluster_with_a_killed_worker_equals_one_simulate(tmp_path):
    from dask.distributed import Client, LocalCluster

    flag = str(tmp_path / "killed")
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        ds = nm.sweep("kuramoto", _conn(), PARAMS, store=tmp_path / "s.zarr", shard_size=2,
                      client=client, reduce=_exit_once(flag), progress=False, **KW)
        series = nm.sweep("kuramoto", _conn(), PARAMS, store=tmp_path / "t.zarr",
                          shard_size=2, client=client, progress=False, **KW)
        # exact: the time series of 3 shards on 2 worker processes, noise included
        np.testing.assert_array_equal(series["theta"].values, _reference().state("theta"))
    assert os.path.exists(flag)  # a worker died mid-shard
    # exact: the rescheduled shard recomputes the same numbers
    np.testing.assert_array_equal(ds["theta_last"].values, _reference().state("theta")[-1, 0])


def test_store_read_mid_run_shows_done_shards_and_nan_elsewhere(tmp_path):
    """A reader during shard 1 sees shard 0 complete and marked, shard 1..2 NaN, unmarked."""
    import xarray as xr

    store, seen = tmp_path / "s.zarr", {}

    def reduce(result):
        if store.exists() and xr.open_zarr(store)["shard_done"].values[0] == 1:
            seen.setdefault("ds", xr.open_zarr(store).load())
        return {"theta_last": np.asarray(result.data[-1, 0, 0])}

    nm.sweep("kuramoto", _conn(), PARAMS, store=store, shard_size=2, reduce=reduce,
             progress=False, **KW)
    ds = seen["ds"]
    assert ds["shard_done"].values.tolist() == [1, 0, 0]
    assert np.isfinite(ds["theta_last"].values[:2]).all()
    assert np.isnan(ds["theta_last"].values[2:]).all()


def test_cli_sweep_resumes_and_slurm_script(tmp_path):
    from typer.testing import CliRunner

    from neuralmass.cli import app

    runner = CliRunner()
    args = ["sweep", "kuramoto", "--store", str(tmp_path / "s.zarr"), "--grid",
            "global_coupling=0:1:4", "--steps", "20", "--shard-size", "2", "--reduce", "mean"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "4 sets, 2/2 shards done" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "2 of 2 shards already done" in again.output
    other = runner.invoke(app, args[:-1] + ["std"])
    assert other.exit_code != 0 and "other arguments" in other.output
    assert "Traceback" not in other.output
    both = runner.invoke(app, ["sweep", "kuramoto", "--store", str(tmp_path / "m.zarr"),
                               "--grid", "global_coupling=0:1:4", "--steps", "200",
                               "--shard-size", "2", "--reduce", "mean", "--monitor", "tavg:1",
                               "--monitor", "bold:20"])
    assert both.exit_code == 0, both.output
    assert "4 sets, 2/2 shards done" in both.output
    assert "group 'temporal_average': monitor tavg:1" in both.output
    assert "group 'bold': monitor bold:20" in both.output
    script = runner.invoke(app, ["sweep", "kuramoto", "--slurm", "--cores", "8", "--memory",
                                 "32GB", "--walltime", "02:00:00", "--queue", "gpu",
                                 "--account", "proj1"])
    assert script.exit_code == 0, script.output
    for line in ("#SBATCH -p gpu", "#SBATCH -A proj1", "#SBATCH -n 1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH -t 02:00:00"):
        assert line in script.output


@pytest.mark.xdist_group("subprocesses")
def test_killed_driver_resumes_only_missing_shards(tmp_path):
    """The CLI killed (SIGKILL) once a shard is done; the rerun runs only the rest (it says
    how many were done) and the store equals an uninterrupted in-process sweep."""
    import signal
    import subprocess
    import sys
    import time

    import xarray as xr

    store = tmp_path / "s.zarr"
    grid = np.linspace(0, 1, 8)
    args = [sys.executable, "-m", "neuralmass.cli", "sweep", "kuramoto", "--store", str(store),
            "--grid", "global_coupling=0:1:8", "--steps", "400", "--shard-size", "1",
            "--reduce", "mean", "--noise", "0.01", "--monitor", "raw"]
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and driver.poll() is None:
        if store.exists():
            try:
                done = int(xr.open_zarr(store)["shard_done"].sum())
            except Exception:  # noqa: BLE001 - the store is being created
                done = 0
            if done >= 1:
                driver.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    driver.wait()
    before = int(xr.open_zarr(store)["shard_done"].sum())
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    if before < 8:  # killed mid-sweep: the rerun ran only the missing shards
        assert f"{before} of 8 shards already done" in rerun.stderr
    reference = nm.sweep("kuramoto", None, {"global_coupling": grid}, store=tmp_path / "r.zarr",
                         shard_size=1, reduce="mean", noise=0.01, n_steps=400, monitors="raw",
                         progress=False)
    # exact: the same shards, the same noise whichever process ran them
    np.testing.assert_array_equal(xr.open_zarr(store)["theta_order_mean"].values,
                                  reference["theta_order_mean"].values)
