"""Pictures of a result file or a sweep store: a few regions' time series, the FC matrix and,
for a sweep over two parameters, a heatmap of one summary over the grid.

The data and the drawing are separate: :func:`open_dataset` reads any file neuralmass writes
into the one layout of :mod:`neuralmass._xarray` (a result file through
:func:`neuralmass.load_result`, a store of :func:`neuralmass.sweep` as it is, with or without
``reduce``); :func:`set_summary` and :func:`grid_summary` compute what the heatmap shows;
:func:`plot` draws with matplotlib's Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .errors import ParameterError
from .summary import STATISTICS, observed, periodic_names, set_statistic, statistic_key

__all__ = ["SUMMARIES", "GridSummary", "open_dataset", "set_summary", "grid_summary", "plot"]

SUMMARIES = (*STATISTICS, "fc_corr")
_SET_COORDS = ("set", "grid_index")  # along ``set`` but not parameters


def open_dataset(path: str | os.PathLike):
    """The ``xarray.Dataset`` of a ``.nc``/``.npz``/``.zarr`` result file or of a sweep store
    (a ``.zarr`` store whose attributes hold ``sweep_fingerprint``)."""
    import xarray as xr

    from .io import load_result

    path = Path(path)
    if path.suffix == ".zarr" and path.is_dir():
        try:
            ds = xr.open_zarr(path)
        except (OSError, ValueError, KeyError) as err:  # zarr's "no group found", ...
            raise ParameterError(f"{str(path)!r} is not a Zarr store neuralmass wrote: "
                                 f"{type(err).__name__}: {err}") from err
        if "sweep_fingerprint" in ds.attrs:
            return ds
    return load_result(path).to_xarray()


def _state_names(ds) -> tuple[str, ...]:
    text = str(ds.attrs.get("state_names", ""))
    return tuple(text.split(",")) if text else ()


def _variable(ds, variable: str | None) -> str:
    names = _state_names(ds)
    if variable is None:
        if not names:
            raise ParameterError("the file names no state variables (attribute state_names)")
        return names[0]
    if variable not in names:
        raise ParameterError(f"variable {variable!r} is not a state variable of this file; "
                             f"state variables are {', '.join(names)}")
    return variable


def _series(ds, name: str):
    """(T, N, P) time series of ``name``, or None when the file holds no time series of it."""
    if name in ds and ds[name].dims == ("time", "region", "set"):
        return np.asarray(ds[name].values, dtype=np.float64)
    if name in ds and "time" in ds[name].dims:
        return np.asarray(ds[name].transpose("time", "region", "set").values, np.float64)
    return None


def set_summary(ds, summary: str = "mean", variable: str | None = None,
                target=None) -> tuple[str, np.ndarray]:
    """(label, (P,) values in the order of ``ds.set``) of one summary per parameter set.

    - ``"mean"``/``"std"``: of ``variable`` (default the first state variable) over time,
      averaged over regions; a phase (``periodic="true"``) by its order parameter R
      (:func:`neuralmass.summary.set_statistic`). Computed from the time series, or read
      from a ``reduce=["mean"|"std"]`` store's ``<var>_<summary>`` (``<var>_order_<summary>``).
    - ``"fc_corr"``: the stored ``fc_corr`` of a ``reduce="fc_corr"`` store (FC of the first
      state variable against the sweep's target), or with ``target`` (N, N) the fit of the FC
      of ``variable``'s time series (of sin(theta) for a phase; or of a stored ``fc``) to it.

    NaN where a set diverged or a shard is not done yet.
    """
    if summary not in SUMMARIES:
        raise ParameterError(f"summary must be one of {', '.join(SUMMARIES)}, "
                             f"but got {summary!r}")
    name = _variable(ds, variable)
    series = _series(ds, name)
    if summary in STATISTICS:
        periodic = name in periodic_names(ds.attrs)
        label = f"{summary} R({name})" if periodic else f"{summary} {name}"
        if series is not None:
            return label, set_statistic(series, summary, periodic)
        key, dims = statistic_key(name, summary, periodic)
        if key not in ds:
            raise ParameterError(f"this file holds neither the time series of {name!r} nor "
                                 f"{key!r} (a sweep with reduce={summary!r} stores it); it "
                                 f"holds {', '.join(map(str, ds.data_vars))}")
        values = np.asarray(ds[key].transpose(*dims).values, dtype=np.float64)
        return label, values if dims == ("set",) else values.mean(axis=0)
    from . import metrics

    if target is None:
        if "fc_corr" in ds:
            return "FC fit (r)", np.asarray(ds["fc_corr"].values, dtype=np.float64)
        raise ParameterError("summary 'fc_corr' needs a target FC (--target fc.npy) unless "
                             "the sweep stored fc_corr (reduce='fc_corr')")
    target = np.asarray(target, dtype=np.float64)
    periodic = name in periodic_names(ds.attrs)
    if series is not None:
        fc = np.asarray(metrics.fc(observed(series, periodic)))
    elif "fc" in ds:
        fc = np.asarray(ds["fc"].transpose("region", "region_j", "set").values, np.float64)
    else:
        raise ParameterError(f"summary 'fc_corr' with a target needs the time series of "
                             f"{name!r} or a stored fc (reduce='fc'); this file holds "
                             f"{', '.join(map(str, ds.data_vars))}")
    if target.shape != fc.shape[:2]:
        raise ParameterError(f"target FC must be {fc.shape[:2]} (regions x regions), "
                             f"but got shape {target.shape}")
    signal = f"sin({name})" if periodic and series is not None else name
    return f"FC fit (r) of {signal}", np.asarray(metrics.fc_corr(fc, target))


def swept_parameters(ds) -> tuple[str, ...]:
    """The parameters that vary along ``set``, the grid's first (slowest) axis first: the
    one that changes least often in the user's order (``grid_index`` in a sweep store)."""
    order = (np.argsort(ds["grid_index"].values, kind="stable") if "grid_index" in ds.coords
             else np.arange(ds.sizes["set"]))
    changes = {}
    for name, coord in ds.coords.items():
        if coord.dims == ("set",) and name not in _SET_COORDS:
            values = np.asarray(coord.values)[order]
            if values.size and np.ptp(values) > 0:
                changes[name] = int(np.count_nonzero(np.diff(values)))
    return tuple(sorted(changes, key=changes.get))


@dataclasses.dataclass(frozen=True)
class GridSummary:
    """A summary over a grid of two parameters: ``values[j, i]`` at ``x[i]``, ``y[j]``
    (NaN where the grid has no set)."""

    x_name: str
    x: np.ndarray
    y_name: str
    y: np.ndarray
    values: np.ndarray
    label: str


def grid_summary(ds, summary: str = "mean", variable: str | None = None,
                 target=None) -> GridSummary:
    """:func:`set_summary` placed on the grid of the two swept parameters (x the first axis
    of the grid, y the second), whatever the order of the sets in ``ds``."""
    swept = swept_parameters(ds)
    if len(swept) != 2:
        raise ParameterError(f"a heatmap needs a sweep over exactly two parameters, but this "
                             f"file varies {len(swept)}: {', '.join(swept) or 'none'}")
    label, per_set = set_summary(ds, summary, variable, target)
    x_name, y_name = swept
    xs, ys = (np.asarray(ds[n].values, dtype=np.float64) for n in swept)
    x, ix = np.unique(xs, return_inverse=True)
    y, iy = np.unique(ys, return_inverse=True)
    if len(set(zip(ix.tolist(), iy.tolist(), strict=True))) != xs.size:
        raise ParameterError(f"the sets are not a grid of {x_name} x {y_name}: some pair of "
                             f"values occurs twice")
    values = np.full((y.size, x.size), np.nan)
    values[iy, ix] = per_set
    return GridSummary(x_name, x, y_name, y, values, label)


def plot(path: str | os.PathLike, output: str | os.PathLike, *, regions=(0, 1, 2),
         set_index: int = 0, summary: str = "mean", variable: str | None = None,
         target=None) -> tuple[str, ...]:
    """Draw the file or store at ``path`` to ``output`` (PNG; format from the suffix) and
    return the names of the panels drawn.

    Panels: ``"time series"`` of ``regions`` for set ``set_index`` (a phase as sin(theta)),
    ``"fc"`` the FC matrix of that set (from the time series, of sin(theta) for a phase, or
    a stored ``fc``), and
    ``"heatmap"`` of :func:`grid_summary` for a sweep over two parameters (``"line"``: the
    summary against the parameter of a one-parameter sweep); a panel whose data the file
    does not hold is left out.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from . import metrics

    ds = open_dataset(path)
    name = _variable(ds, variable)
    n_sets, n_regions = ds.sizes["set"], ds.sizes["region"]
    if not 0 <= set_index < n_sets:
        raise ParameterError(f"set index must be in 0..{n_sets - 1}, but got {set_index}")
    regions = tuple(regions)
    bad = [r for r in regions if not 0 <= r < n_regions]
    if bad or not regions:
        raise ParameterError(f"regions must be indices in 0..{n_regions - 1}, but got "
                             f"{', '.join(map(str, bad)) or 'none'}")
    series = _series(ds, name)
    periodic = name in periodic_names(ds.attrs)
    swept = swept_parameters(ds)
    panels = []
    if series is not None:
        panels += ["time series", "fc"]
    elif "fc" in ds:
        panels.append("fc")
    if len(swept) in (1, 2):
        panels.append("heatmap" if len(swept) == 2 else "line")
    if not panels:
        raise ParameterError(f"nothing to draw: the file holds no time series of {name!r}, "
                             f"no fc, and varies {len(swept)} parameters (a heatmap needs 2)")
    figure = Figure(figsize=(5.0 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = dict(zip(panels, figure.subplots(1, len(panels), squeeze=False)[0], strict=True))
    where = ", ".join(f"{p}={float(ds[p].values[set_index]):.4g}" for p in swept)
    if "time series" in axes:
        ax, t = axes["time series"], np.asarray(ds["time"].values)
        labels = [str(label) for label in ds["region"].values]
        for r in regions:
            y = series[:, r, set_index]
            ax.plot(t, np.sin(y) if periodic else y, linewidth=0.8, label=labels[r])
        ax.set_xlabel("time (ms)")
        ax.set_ylabel(f"sin({name})" if periodic else name)
        ax.set_title(f"set {set_index}" + (f" ({where})" if where else ""), fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    if "fc" in axes:
        fc = (np.asarray(metrics.fc(observed(series[:, :, set_index], periodic)))
              if series is not None else
              np.asarray(ds["fc"].transpose("region", "region_j", "set").values[..., set_index]))
        image = axes["fc"].imshow(fc, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        figure.colorbar(image, ax=axes["fc"], label="Pearson r")
        signal = f"sin({name})" if periodic and series is not None else name
        axes["fc"].set_title(f"FC of {signal}, set {set_index}", fontsize=9)
        axes["fc"].set_xlabel("region j")
        axes["fc"].set_ylabel("region i")
    if "heatmap" in axes:
        grid = grid_summary(ds, summary, name, target)
        image = axes["heatmap"].pcolormesh(_edges(grid.x), _edges(grid.y), grid.values,
                                           shading="flat", cmap="viridis")
        figure.colorbar(image, ax=axes["heatmap"], label=grid.label)
        axes["heatmap"].set_xlabel(grid.x_name)
        axes["heatmap"].set_ylabel(grid.y_name)
        axes["heatmap"].set_title(f"{grid.label} over the grid", fontsize=9)
    if "line" in axes:
        label, values = set_summary(ds, summary, name, target)
        x = np.asarray(ds[swept[0]].values)
        order = np.argsort(x, kind="stable")
        axes["line"].plot(x[order], values[order], ".-")
        axes["line"].set_xlabel(swept[0])
        axes["line"].set_ylabel(label)
    model = ds.attrs.get("model", "")
    figure.suptitle(f"{model} — {Path(path).name}", fontsize=10)
    figure.savefig(os.fspath(output), dpi=100)
    return tuple(panels)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted cell centres (midpoints; a lone centre gets width 1)."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])
