"""Structural connectivity: coupling weights and tract lengths between N brain regions.

Conventions are The Virtual Brain's, so results compare with tvb-library:

- ``weights[i, j]`` (N, N) is the connection **to** region ``i`` **from** region ``j``
  (dimensionless; negative values are allowed, the diagonal may be non-zero);
- ``tract_lengths[i, j]`` (N, N) in mm, ``speed`` in mm/ms, ``dt`` in ms;
- integer delays ``d_ij = rint(tract_lengths[i, j] / speed / dt)``, NumPy's round half to
  even, divided in that order as tvb-library's ``Connectivity.set_idelays`` does (dividing by
  ``speed * dt`` instead rounds a few tvb-data 66 entries the other way); ``speed = inf``
  gives zero delays.
"""

from __future__ import annotations

import bz2
import dataclasses
import io
import math
import os
import re
import zipfile
from collections.abc import Sequence
from importlib import resources

import numpy as np

from .errors import ConnectivityError

__all__ = ["Connectivity"]


@dataclasses.dataclass(frozen=True, eq=False, init=False, repr=False)
class Connectivity:
    """Weights and tract lengths between N regions, with a conduction speed.

    Arguments:
        weights: (N, N) coupling weights, ``weights[i, j]`` from region j to region i.
        tract_lengths: (N, N) lengths in mm, >= 0.
        speed: conduction speed in mm/ms, > 0; ``math.inf`` for no delays.
        labels: N region names; ``("r0", "r1", ...)`` when omitted.
        centres: (N, 3) region centres in mm, or ``None``.

    The arrays are stored as read-only float64 copies; :class:`ConnectivityError` says which
    argument is wrong and what was expected.
    """

    weights: np.ndarray
    tract_lengths: np.ndarray
    speed: float
    labels: tuple[str, ...]
    centres: np.ndarray | None

    def __init__(
        self,
        weights: np.ndarray | Sequence[Sequence[float]],
        tract_lengths: np.ndarray | Sequence[Sequence[float]],
        speed: float = 3.0,
        labels: Sequence[str] | None = None,
        centres: np.ndarray | Sequence[Sequence[float]] | None = None,
    ) -> None:
        w = _real_array("weights", weights)
        if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] == 0:
            raise ConnectivityError(
                f"weights must be a square 2-D array (N, N) with N >= 1, but got shape {w.shape}"
            )
        n = w.shape[0]
        lengths = _real_array("tract_lengths", tract_lengths)
        if lengths.shape != w.shape:
            raise ConnectivityError(
                f"tract_lengths must have shape {w.shape} like weights, but got {lengths.shape}"
            )
        if np.any(lengths < 0):
            index = tuple(int(k) for k in np.argwhere(lengths < 0)[0])
            raise ConnectivityError(
                f"tract_lengths must be >= 0 mm, but tract_lengths{list(index)} is "
                f"{lengths[index]}"
            )
        if labels is None:
            labels = tuple(f"r{k}" for k in range(n))
        elif isinstance(labels, str) or len(labels) != n:
            got = repr(labels) if isinstance(labels, str) else f"{len(labels)} labels"
            raise ConnectivityError(
                f"labels must be a sequence of one name per region ({n}), but got {got}"
            )
        if centres is not None:
            centres = _real_array("centres", centres)
            if centres.shape != (n, 3):
                raise ConnectivityError(
                    f"centres must have shape ({n}, 3), but got {centres.shape}"
                )
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "tract_lengths", lengths)
        object.__setattr__(self, "speed", _check_speed(speed))
        object.__setattr__(self, "labels", tuple(str(label) for label in labels))
        object.__setattr__(self, "centres", centres)

    def __repr__(self) -> str:
        n_edges = np.count_nonzero(self.weights)
        return f"Connectivity(n_regions={self.n_regions}, n_edges={n_edges}, speed={self.speed})"

    @property
    def n_regions(self) -> int:
        """N, the number of regions."""
        return self.weights.shape[0]

    def delay_steps(self, dt: float, speed: float | None = None) -> np.ndarray:
        """(N, N) int64 delays in steps of ``dt`` ms: ``rint(tract_lengths / speed / dt)``.

        ``speed`` (mm/ms) defaults to :attr:`speed`; ``inf`` gives all zeros.
        """
        return _delay_steps(self.tract_lengths, dt, self.speed if speed is None else speed)

    def max_delay_steps(self, dt: float, speed: float | None = None) -> int:
        """The largest of :meth:`delay_steps` over all pairs, including those with zero weight
        (tvb-library's horizon is this + 1)."""
        return int(self.delay_steps(dt, speed).max())

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The non-zero weights as a CSR-ordered edge list (sorted by target, then source).

        Returns 1-D arrays of equal length: ``target`` i and ``source`` j (int64),
        ``weights[i, j]`` and ``tract_lengths[i, j]`` (mm).
        """
        target, source = np.nonzero(self.weights)
        target, source = target.astype(np.int64), source.astype(np.int64)
        return target, source, self.weights[target, source], self.tract_lengths[target, source]

    def edge_delay_steps(self, dt: float, speed: float | None = None) -> np.ndarray:
        """The :meth:`delay_steps` of the :meth:`edges`, in the same order (1-D int64)."""
        lengths = self.edges()[3]
        return _delay_steps(lengths, dt, self.speed if speed is None else speed)

    def normalized(self) -> Connectivity:
        """A copy with ``weights / weights.max()``, as TVB's demos scale a connectome."""
        largest = self.weights.max()
        if largest <= 0:
            raise ConnectivityError(
                f"cannot normalise weights by their maximum: it must be > 0, but it is {largest}"
            )
        return dataclasses.replace(self, weights=self.weights / largest)

    def with_speed(self, speed: float) -> Connectivity:
        """A copy with another conduction speed (mm/ms)."""
        return dataclasses.replace(self, speed=speed)

    @classmethod
    def default(cls, *, speed: float = 3.0) -> Connectivity:
        """The bundled synthetic 76-region connectome (``neuralmass/data/README.md``).

        Symmetric, ~25 % dense, weights with maximum 1, tract lengths in [10, 250] mm. Not a
        real brain: see ``neuralmass/data/make_default_connectome.py`` for the recipe.
        """
        resource = resources.files("neuralmass.data").joinpath("default_connectivity.npz")
        with resource.open("rb") as file, np.load(file) as data:
            return cls(
                data["weights"],
                data["tract_lengths"],
                speed,
                labels=tuple(data["labels"]),
                centres=data["centres"],
            )

    @classmethod
    def from_tvb_zip(cls, path: str | os.PathLike, *, speed: float = 3.0) -> Connectivity:
        """Read a TVB connectivity zip.

        The zip holds ``weights.txt`` and ``tract_lengths.txt`` (N rows of N numbers) and
        ``centres.txt`` or ``centers.txt`` (N lines ``label x y z``; extra columns ignored),
        possibly in a sub-folder and possibly bz2-compressed (``weights.txt.bz2``). Other
        members are ignored. The zip holds no speed: pass ``speed`` (mm/ms).
        """
        name = os.fspath(path)
        try:
            with zipfile.ZipFile(name) as archive:
                w_member, weights = _load_matrix(archive, name, ("weights.txt",))
                l_member, lengths = _load_matrix(archive, name, ("tract_lengths.txt",))
                c_member, text = _read_member(archive, name, ("centres.txt", "centers.txt"))
        except (OSError, zipfile.BadZipFile) as error:
            raise ConnectivityError(f"cannot read TVB connectivity zip {name}: {error}") from error
        try:
            table = np.loadtxt(io.StringIO(text), dtype=str, usecols=(0, 1, 2, 3), ndmin=2)
            centres = table[:, 1:].astype(np.float64)
        except ValueError as error:
            raise ConnectivityError(
                f"{name}:{c_member}: expected lines 'label x y z': {error}"
            ) from error
        if len(table) != len(weights):
            raise ConnectivityError(
                f"{name}:{c_member} must have one line per region ({len(weights)} like "
                f"{w_member}), but has {len(table)}"
            )
        try:
            return cls(weights, lengths, speed, labels=tuple(table[:, 0]), centres=centres)
        except ConnectivityError as error:
            raise ConnectivityError(f"{name} ({w_member}, {l_member}): {error}") from error

    @classmethod
    def from_tvb_data(cls, n_regions: int, *, speed: float = 3.0) -> Connectivity:
        """``connectivity_{n_regions}.zip`` from the optional tvb-data package (GPL-3.0, not
        bundled), e.g. 66, 68, 76, 96 or 192 regions. Raw weights: TVB's demos normalise them
        (see :meth:`normalized`)."""
        try:
            import tvb_data
        except ImportError as error:
            raise ConnectivityError(
                f"Connectivity.from_tvb_data({n_regions}) needs the optional tvb-data "
                "package: pip install 'neuralmass[tvb]'"
            ) from error
        folder = os.path.join(os.path.dirname(tvb_data.__file__), "connectivity")
        sizes = sorted(
            int(match[1]) for entry in os.listdir(folder)
            if (match := re.fullmatch(r"connectivity_(\d+)\.zip", entry))
        )
        if n_regions not in sizes:
            raise ConnectivityError(
                f"tvb-data has no connectivity with {n_regions!r} regions; available sizes are "
                f"{', '.join(map(str, sizes))}"
            )
        return cls.from_tvb_zip(os.path.join(folder, f"connectivity_{n_regions}.zip"), speed=speed)


def _real_array(name: str, value: object) -> np.ndarray:
    """``value`` as a read-only float64 copy; it must be real-valued and finite."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ConnectivityError(
            f"{name} must be an array of real numbers, but got dtype {array.dtype}"
        )
    array = array.astype(np.float64)  # always a copy
    if not np.all(np.isfinite(array)):
        index = tuple(int(k) for k in np.argwhere(~np.isfinite(array))[0])
        raise ConnectivityError(
            f"{name} must be finite, but {name}{list(index)} is {array[index]}"
        )
    array.flags.writeable = False
    return array


def _check_speed(speed: object) -> float:
    """``speed`` as a float > 0 (mm/ms; inf allowed)."""
    return _positive("speed", speed, "a number of mm/ms > 0 (inf for no delays)")


def _positive(name: str, value: object, requirement: str, *, finite: bool = False) -> float:
    """``value`` as a float > 0 (and < inf if ``finite``), else an error quoting it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (number > 0 and (number < math.inf or not finite)):
        raise ConnectivityError(f"{name} must be {requirement}, but got {value!r}")
    return number


def _delay_steps(lengths: np.ndarray, dt: float, speed: float) -> np.ndarray:
    """``rint(lengths / speed / dt)`` as int64, tvb-library's order of operations."""
    speed = _check_speed(speed)
    dt = _positive("dt", dt, "a finite number of ms > 0", finite=True)
    return np.rint(lengths / speed / dt).astype(np.int64)


def _read_member(
    archive: zipfile.ZipFile, zip_name: str, names: tuple[str, ...]
) -> tuple[str, str]:
    """(member path, text) of the one member whose file name is in ``names`` (or ``name.bz2``),
    in any folder of the zip."""
    wanted = set(names) | {f"{name}.bz2" for name in names}
    found = [
        member for member in archive.namelist()
        if member.rsplit("/", 1)[-1] in wanted and not member.startswith("__MACOSX/")
    ]
    if len(found) != 1:
        problem = "no" if not found else f"several ({', '.join(found)})"
        raise ConnectivityError(
            f"{zip_name} must hold one {' or '.join(names)}, but it has {problem}"
        )
    data = archive.read(found[0])
    try:
        return found[0], (bz2.decompress(data) if found[0].endswith(".bz2") else data).decode()
    except (OSError, ValueError) as error:  # bad bz2 data, not UTF-8
        raise ConnectivityError(f"{zip_name}:{found[0]}: cannot read it: {error}") from error


def _load_matrix(
    archive: zipfile.ZipFile, zip_name: str, names: tuple[str, ...]
) -> tuple[str, np.ndarray]:
    """(member path, numeric 2-D table) of the member ``names`` of the zip."""
    member, text = _read_member(archive, zip_name, names)
    try:
        return member, np.loadtxt(io.StringIO(text), ndmin=2)
    except ValueError as error:
        raise ConnectivityError(
            f"{zip_name}:{member}: expected rows of numbers: {error}"
        ) from error
