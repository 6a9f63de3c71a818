"""Result files: the output path check, writing by suffix and :func:`load_result`.

Formats (one layout, :mod:`neuralmass._xarray`): ``.nc`` NetCDF-4 via h5netcdf, ``.zarr`` a
Zarr store (a directory), ``.npz`` NumPy's archive of the same variables, coordinates and
attributes (``attrs`` as JSON). ``xarray.open_dataset`` opens the ``.nc`` files,
``xarray.open_zarr`` the stores.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from .errors import ParameterError

__all__ = ["SUFFIXES", "check_output_path", "save_result", "load_result"]

SUFFIXES = (".nc", ".zarr", ".npz")


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path after checking its suffix and that its folder exists (before a run,
    so that a typo does not cost a simulation)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ParameterError(f"output file {str(path)!r} must end in one of "
                             f"{', '.join(SUFFIXES)} (it chooses the format), but it ends in "
                             f"{path.suffix or 'no suffix'!r}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ParameterError(f"output folder {str(folder)!r} of {str(path)!r} does not exist")
    return path


def save_result(result, path: str | os.PathLike) -> None:
    """Write ``result`` to ``path`` in the format of its suffix."""
    path = check_output_path(path)
    if path.suffix == ".nc":
        result.to_netcdf(path)
    elif path.suffix == ".zarr":
        result.to_zarr(path)
    else:
        _write_npz(result.to_xarray(), path)


def load_result(path: str | os.PathLike):
    """Read a ``.nc``, ``.zarr`` or ``.npz`` result file back into a
    :class:`~neuralmass.result.Result`."""
    import xarray as xr

    from ._xarray import from_dataset

    path = Path(path)
    if not path.exists():
        raise ParameterError(f"result file {str(path)!r} does not exist")
    if path.suffix not in SUFFIXES:
        raise ParameterError(f"result file {str(path)!r} must end in one of "
                             f"{', '.join(SUFFIXES)}")
    try:
        if path.suffix == ".nc":
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                return from_dataset(ds.load())
        if path.suffix == ".zarr":
            return from_dataset(xr.open_zarr(path).load())
        return from_dataset(_read_npz(path))
    except ParameterError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        # not a file neuralmass wrote (or a damaged one): named, not a traceback
        raise ParameterError(f"{str(path)!r} is not a neuralmass result file: "
                             f"{type(err).__name__}: {err}") from err


def _write_npz(ds, path: Path) -> None:
    """``ds`` as ``.npz``: ``var:<name>`` and ``coord:<name>`` arrays, ``dims:<name>`` their
    dims (comma-joined), ``attrs`` as JSON."""
    import numpy as np

    arrays = {"attrs": np.array(json.dumps(ds.attrs))}
    for kind, items in (("var", ds.data_vars.items()), ("coord", ds.coords.items())):
        for name, item in items:
            arrays[f"{kind}:{name}"] = np.asarray(item.values)
            arrays[f"dims:{name}"] = np.array(",".join(item.dims))
    np.savez_compressed(path, **arrays)


def _read_npz(path: Path):
    import numpy as np
    import xarray as xr

    with np.load(path, allow_pickle=False) as archive:
        if "attrs" not in archive.files:
            raise ParameterError(f"{path}: not a neuralmass result file (no 'attrs' entry)")
        entries = {}
        for key in archive.files:
            kind, _, name = key.partition(":")
            if kind in ("var", "coord"):
                dims = tuple(str(archive[f"dims:{name}"]).split(","))
                entries.setdefault(kind, {})[name] = (dims, archive[key])
        attrs = json.loads(str(archive["attrs"]))
    return xr.Dataset(entries.get("var", {}), coords=entries.get("coord", {}), attrs=attrs)
