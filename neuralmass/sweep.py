"""``sweep``: a parameter sweep in shards, on Dask, into one resumable Zarr store.

The P sets are ordered so that sets sharing a conduction speed are adjacent (a stable sort
by ``global_speed``) and cut into contiguous shards of ``shard_size`` sets. Position ``s`` in
that order is the store's ``set`` coordinate and the set's index in the noise stream (each
shard runs :func:`neuralmass.simulate` with ``set_offset`` = its first position), so the
store equals one ``simulate`` over the reordered sets bit for bit, whoever runs which
shard; ``grid_index`` along ``set`` is each set's index in the user's ``params``.

The store is created up front (coordinates, attributes, a ``shard_done`` flag per shard);
a shard writes its region of ``set`` and only then sets its flag, so a reader never sees
half-written data marked done, and calling :func:`sweep` again runs the shards not done.

Several monitors (``monitors=("temporal_average:1", "bold:720")``) are recorded by the same
runs and stored one Zarr group per monitor, named by
:func:`neuralmass.monitors.monitor_labels` (``temporal_average``, ``bold``); each group is
laid out as a one-monitor store, with its own ``shard_done`` flags (set once every group holds
the shard), and the root group's attributes hold the fingerprint and the group names. One
monitor keeps the store's root as its dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ._simulate import model_hash, monitor_metadata, monitor_names, run_metadata, simulate
from .connectivity import Connectivity
from .errors import ParameterError, SimulationError
from .model import Model
from .models import load_model
from .monitors import monitor_labels
from .params import resolve_parameters
from .plan import make_plan
from .summary import STATISTICS, statistic_key

__all__ = ["sweep", "METRICS"]

METRICS = ("mean", "std", "fc", "fc_corr")
_SETS_PER_SHARD = {"numba": 1024, "jax": 1024, "cuda": 32768}
_SHARD_BYTES = 256 * 2**20  # a shard's output in memory at most (shard_size=None)


def sweep(model: Model | str | os.PathLike, connectivity: Connectivity | None = None,
          params=None, *, store: str | os.PathLike = "sweep.zarr", shard_size: int | None = None,
          client=None, reduce=None, target=None, backend: str = "numba", progress: bool = True,
          retries: int = 2, **simulate_kwargs):
    """Run ``simulate`` over every set of ``params`` in shards and store the results.

    Args:
        model, connectivity, params: as for :func:`neuralmass.simulate` (typically
            :func:`neuralmass.grid`).
        store: the Zarr store (a directory). An existing store made with the same arguments
            is resumed (only shards not done run); one made with others is an error.
        shard_size: sets per shard; ``None`` picks one from the backend (1,024 on CPU,
            32,768 on CUDA) and caps a shard's output at 256 MiB (the choice is printed).
        client: ``None`` runs in this process; ``"local"`` starts a
            ``dask.distributed.LocalCluster`` of processes; a ``dask.distributed.Client``
            or a scheduler address (``"tcp://host:8786"``) uses that cluster.
        reduce: ``None`` stores the monitored time series (the layout of
            :meth:`Result.to_xarray`); metric names from :data:`METRICS` (one or a list:
            ``"mean"``/``"std"`` over time per state variable and region as ``<var>_mean``
            (region, set), or for a phase (``periodic="true"``, Kuramoto's theta) of its
            order parameter R(t) as ``<var>_order_mean`` (set) (:mod:`neuralmass.summary`);
            ``"fc"`` the FC matrix and ``"fc_corr"`` its fit to ``target`` (N, N), both of
            the first state variable (of its sine for a phase)); or a callable
            ``f(result) -> {name: (P,) array}`` run per shard. ``diverged`` and
            ``first_nonfinite_step`` are stored in every case.
        backend: as for ``simulate`` (default ``"numba"``).
        progress: a progress bar over shards with the sweep's set-steps/s.
        retries: times a shard that raised is run again before it is reported.
        **simulate_kwargs: dt, n_steps, integrator, noise, seed, monitors, dtype, ...

    Returns:
        The store opened with ``xarray.open_zarr``; for several monitors a tuple of their
        groups so opened, in monitor order.

    Raises:
        ParameterError: bad arguments, or a store made with other arguments.
        SimulationError: shards still failing after ``retries``, named by index with their
            error (the others are stored and done; run again to retry only those).
    """
    import xarray as xr

    if not isinstance(model, Model):
        model = load_model(model)
    if connectivity is None:
        connectivity = Connectivity.default()
    for bad in ("set_offset", "progress", "on_divergence"):
        if bad in simulate_kwargs:
            raise ParameterError(f"sweep sets {bad} itself; do not pass it")
    reducer = _reducer(reduce, target)
    values, n_sets = resolve_parameters(model, params, default_speed=connectivity.speed)
    per_set = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n_sets,))
               for k, v in values.items()}
    order = np.argsort(per_set["global_speed"], kind="stable")
    swept = {k: v[order] for k, v in per_set.items() if np.ndim(values[k]) == 1}
    fixed = {k: float(v) for k, v in values.items() if np.ndim(v) != 1}
    plan = make_plan(model, connectivity, {**fixed, **{k: v[:1] for k, v in swept.items()}},
                     **{k: v for k, v in simulate_kwargs.items()
                        if k in ("dt", "n_steps", "integrator", "noise", "seed", "monitors")})
    groups = [None] if len(plan.monitors) == 1 else monitor_labels(plan.monitors)
    shard_size = _shard_size(shard_size, backend, plan, n_sets, reduce, progress)
    bounds = [(a, min(a + shard_size, n_sets)) for a in range(0, n_sets, shard_size)]
    spec = _ShardSpec(model=model, fixed=fixed, swept=swept, backend=backend,
                      kwargs=simulate_kwargs, store=str(store), bounds=bounds,
                      reducer=reducer, retries=retries, groups=groups)
    fingerprint = _fingerprint(model, connectivity, per_set, bounds, reduce, target, backend,
                               simulate_kwargs)
    _create_store(Path(store), fingerprint, plan, per_set, order, bounds, reducer, groups,
                  probe=lambda: run_shard(0, spec, connectivity, write=False))
    done = np.min([xr.open_zarr(store, group=g)["shard_done"].values for g in groups], axis=0)
    todo = [k for k in range(len(bounds)) if not done[k]]
    if progress and len(todo) < len(bounds):
        print(f"neuralmass.sweep: resuming {str(store)!r}: {len(bounds) - len(todo)} of "
              f"{len(bounds)} shards already done", file=sys.stderr)
    failures = _run(spec, connectivity, todo, client, progress, plan.n_steps)
    if failures:
        listed = "; ".join(f"shard {k} (sets {bounds[k][0]}:{bounds[k][1]}): {e}"
                           for k, e in sorted(failures.items()))
        raise SimulationError(f"{len(failures)} shard(s) failed after {retries} retries: "
                              f"{listed}. The others are stored in {str(store)!r}; run the "
                              f"same sweep again to retry only these.")
    datasets = tuple(xr.open_zarr(store, group=g) for g in groups)
    return datasets[0] if len(datasets) == 1 else datasets


class _ShardSpec:
    """What every shard needs besides the connectome (small: sent with each task)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _reducer(reduce, target):
    """``None``, a callable, or a tuple of metric names (checked)."""
    if reduce is None or callable(reduce):
        return reduce
    names = (reduce,) if isinstance(reduce, str) else tuple(reduce)
    for name in names:
        if name not in METRICS:
            raise ParameterError(f"reduce must be None, a callable or metric names from "
                                 f"{', '.join(METRICS)}, but got {name!r}")
    if "fc_corr" in names and target is None:
        raise ParameterError("reduce='fc_corr' needs target=, the (N, N) FC to fit")
    return _MetricReducer(names, None if target is None else np.asarray(target, np.float64))


class _MetricReducer:
    """Metrics per set of a shard's Result: {name: (dims, array with set last)}."""

    def __init__(self, names, target):
        self.names, self.target = names, target

    def __call__(self, result):
        from . import metrics
        from .summary import observed, periodic_names, statistic_key, time_statistic

        periodic = periodic_names(dict(result.metadata))
        out = {}
        for name in self.names:
            if name in STATISTICS:
                for i, var in enumerate(result.state_names):
                    key, dims = statistic_key(var, name, var in periodic)
                    out[key] = (dims, time_statistic(result.data[:, i], name, var in periodic))
        first = observed(np.asarray(result.data[:, 0]), result.state_names[0] in periodic)
        if "fc" in self.names or "fc_corr" in self.names:
            fc = np.asarray(metrics.fc(first))
            if "fc" in self.names:
                out["fc"] = (("region", "region_j", "set"), fc)
            if "fc_corr" in self.names:
                out["fc_corr"] = (("set",), np.asarray(metrics.fc_corr(fc, self.target)))
        return out

    def __repr__(self):
        return f"metrics{self.names}"


def _shard_size(shard_size, backend, plan, n_sets, reduce, progress) -> int:
    if shard_size is not None:
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ParameterError(f"shard_size must be an integer >= 1, but got {shard_size!r}")
        return shard_size
    per_set = 8 * plan.n_nodes * sum(
        m.n_samples * sum(map(len, monitor_names(m, plan.model)[:2])) for m in plan.monitors)
    by_memory = max(1, _SHARD_BYTES // per_set) if reduce is None else n_sets
    chosen = max(1, min(n_sets, _SETS_PER_SHARD.get(backend, 1024), by_memory))
    if progress:
        print(f"neuralmass.sweep: shard_size={chosen} ({backend}; "
              f"{per_set * chosen / 2**20:.0f} MiB of output per shard in memory)",
              file=sys.stderr)
    return chosen


def _fingerprint(model, connectivity, per_set, bounds, reduce, target, backend, kwargs) -> str:
    digest = hashlib.sha256()
    digest.update(model_hash(model).encode())
    for array in (connectivity.weights, connectivity.tract_lengths, target):
        if array is not None:
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    for name in sorted(per_set):
        digest.update(name.encode() + per_set[name].tobytes())
    reduce_name = getattr(reduce, "__qualname__", None) if callable(reduce) else reduce
    digest.update(json.dumps([bounds, repr(reduce_name), backend, sorted(
        (k, repr(v)) for k, v in kwargs.items())]).encode())
    return digest.hexdigest()[:32]


def _create_store(path: Path, fingerprint, plan, per_set, order, bounds, reducer, groups,
                  probe) -> None:
    """Create the store with the whole grid's coordinates (a group per monitor for several),
    or check an existing one."""
    import zarr

    if path.exists():
        try:
            found = zarr.open_group(path, mode="r").attrs.get("sweep_fingerprint")
        except Exception as err:  # noqa: BLE001 - any unreadable store is reported the same
            raise ParameterError(f"store {str(path)!r} exists but is not a sweep store "
                                 f"({err}); choose another path") from None
        if found != fingerprint:
            raise ParameterError(
                f"store {str(path)!r} holds a sweep with other arguments (fingerprint {found}, "
                f"these give {fingerprint}); use another store or delete it to start over")
        return
    probed = None  # a callable reducer's names: from the Result(s) of the first set alone
    if reducer is not None and not isinstance(reducer, _MetricReducer):
        probed = probe()
        probed = probed if isinstance(probed, tuple) else (probed,)
    for i, (monitor, group) in enumerate(zip(plan.monitors, groups, strict=True)):
        _create_group(path, group, fingerprint, plan, monitor, per_set, order, bounds, reducer,
                      None if probed is None else probed[i])
    if groups != [None]:  # last: a store cut short while created is not taken for this sweep
        zarr.open_group(path, mode="r+").attrs.update(sweep_fingerprint=fingerprint,
                                                      monitors=groups)


def _create_group(path: Path, group, fingerprint, plan, monitor, per_set, order, bounds,
                  reducer, probed) -> None:
    """Write the layout of ``monitor``'s dataset (NaN-filled, no data computed) to ``group``
    of the store (``None``: its root)."""
    import dask.array as da
    import xarray as xr

    n_sets, shard = len(order), bounds[0][1] - bounds[0][0]
    sizes = {"time": monitor.n_samples, "region": plan.n_nodes, "set": n_sets}
    variables = {}
    for name, dims, dtype, fill in _layout(plan, monitor, reducer, probed):
        shape = tuple(sizes.get(d, plan.n_nodes) for d in dims)
        chunks = tuple(shard if d == "set" else s for d, s in zip(dims, shape, strict=True))
        variables[name] = (dims, da.full(shape, fill, dtype=dtype, chunks=chunks))
    variables["shard_done"] = ("shard", np.zeros(len(bounds), np.int8))
    coords = {"set": np.arange(n_sets), "grid_index": ("set", order),
              **{k: ("set", v[order]) for k, v in per_set.items()}}
    if reducer is None:
        coords["time"] = ("time", monitor.time, {"units": "ms"})
    coords["region"] = list(plan.connectivity.labels)
    state_names, exposure_names, plain = monitor_names(monitor, plan.model)
    attrs = dict(run_metadata(plan, "", None) + monitor_metadata(monitor))
    attrs.update(sweep_fingerprint=fingerprint, shard_size=shard,
                 state_names=",".join(state_names), exposure_names=",".join(exposure_names),
                 plain_exposures=",".join(f"{e}={s}" for e, s in plain),
                 monitor=monitor.name, reduce=repr(reducer))
    ds = xr.Dataset(variables, coords=coords, attrs=attrs)
    encoding = {"shard_done": {"chunks": (1,)}}
    ds.to_zarr(path, group=group, mode="w-", compute=False, encoding=encoding)


def _layout(plan, monitor, reducer, probed=None):
    """(name, dims, dtype, fill) of each data variable a shard writes for ``monitor``;
    ``diverged`` (-1: not run yet) and ``first_nonfinite_step`` are stored whatever
    ``reduce`` is. ``probed``: the monitor's Result of the first set (a callable reducer)."""
    divergence = [("diverged", ("set",), np.int8, -1),
                  ("first_nonfinite_step", ("set",), np.int64, -2)]
    state_names, exposure_names, plain = monitor_names(monitor, plan.model)
    if reducer is None:
        from ._xarray import exposure_key

        plain = dict(plain)
        names = list(state_names) + [exposure_key(e, state_names) for e in exposure_names
                                     if e not in plain]
        return [(n, ("time", "region", "set"), plan.dtype, np.nan) for n in names] + divergence
    if isinstance(reducer, _MetricReducer):
        out = []
        for name in reducer.names:
            if name in STATISTICS:
                periodic = plan.model.periodic_names
                out += [(*statistic_key(v, name, v in periodic), np.float64, np.nan)
                        for v in state_names]
            elif name == "fc":
                out.append(("fc", ("region", "region_j", "set"), np.float64, np.nan))
            else:
                out.append(("fc_corr", ("set",), np.float64, np.nan))
        return out + divergence
    # a callable: its names are those it returns for the first set alone
    return [(name, ("set",), np.float64, np.nan) for name in reducer(probed)] + divergence


def run_shard(k: int, spec: _ShardSpec, connectivity: Connectivity, write: bool = True):
    """Simulate shard ``k``, write its region of the store (of every monitor's group), then
    mark it done; returns the number of set-steps it ran (``write=False``: only the
    Result(s) of its first set)."""
    import xarray as xr

    a, b = spec.bounds[k]
    if not write:
        b = a + 1
    params = {**spec.fixed, **{name: v[a:b] for name, v in spec.swept.items()}}
    result = simulate(spec.model, connectivity, params, backend=spec.backend, set_offset=a,
                      on_divergence="ignore", **spec.kwargs)
    if not write:
        return result
    results = result if isinstance(result, tuple) else (result,)
    for one, group in zip(results, spec.groups, strict=True):
        _shard_dataset(one, spec.reducer).to_zarr(spec.store, group=group,
                                                  region={"set": slice(a, b)})
    for group in spec.groups:
        xr.Dataset({"shard_done": ("shard", np.ones(1, np.int8))}).to_zarr(
            spec.store, group=group, region={"shard": slice(k, k + 1)})
    return (b - a) * results[0].time.shape[0]


def _shard_dataset(result, reducer):
    """One monitor's Result of a shard as the Dataset of its region of the store."""
    import xarray as xr

    from ._xarray import to_dataset

    if reducer is None:
        ds = to_dataset(result)
        ds["diverged"] = ds["diverged"].astype(np.int8)
    else:
        reduced = reducer(result)
        ds = xr.Dataset({name: value if isinstance(value, tuple) else (("set",), value)
                         for name, value in reduced.items()})
        ds["diverged"] = ("set", np.asarray(result.diverged).astype(np.int8))
        ds["first_nonfinite_step"] = ("set", np.asarray(result.first_nonfinite_step))
    return ds.drop_vars([c for c in ds.coords], errors="ignore")


def _run(spec, connectivity, todo, client, progress, n_steps) -> dict[int, str]:
    """Run the shards ``todo``; {shard: error} of those that failed every attempt."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    failures = {}
    columns = (TextColumn("sweep"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("sweep", total=len(todo), rate="")
        start, set_steps = time.perf_counter(), 0

        def advance(k):
            nonlocal set_steps
            a, b = spec.bounds[k]
            set_steps += (b - a) * n_steps
            rate = set_steps / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:.3g} set-steps/s")

        if client is None:
            for k in todo:
                for attempt in range(spec.retries + 1):
                    try:
                        run_shard(k, spec, connectivity)
                    except Exception as err:  # noqa: BLE001 - reported per shard
                        failures[k] = f"{type(err).__name__}: {err}"
                        continue
                    failures.pop(k, None)
                    advance(k)
                    break
            return failures
        client, owned = _client(client)
        try:
            from dask.distributed import as_completed

            conn = client.scatter(connectivity, broadcast=True)
            futures = {client.submit(run_shard, k, spec, conn, retries=spec.retries,
                                     pure=False, key=f"neuralmass-shard-{k}-{time.time_ns()}"): k
                       for k in todo}
            for future in as_completed(futures):
                k = futures[future]
                if future.status == "finished":
                    advance(k)
                else:
                    err = future.exception()
                    failures[k] = f"{type(err).__name__}: {err}"
        finally:
            if owned:
                cluster = getattr(client, "cluster", None)
                client.close()
                if cluster is not None:
                    cluster.close()
    return failures


def _client(client):
    """(Client, whether we made it) for ``"local"``, an address or a Client."""
    from dask.distributed import Client, LocalCluster

    if isinstance(client, Client):
        return client, False
    if client == "local":
        cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None)
        return Client(cluster), True
    if isinstance(client, str):
        return Client(client), True
    raise ParameterError(f"client must be None, 'local', a scheduler address or a "
                         f"dask.distributed.Client, but got {client!r}")
