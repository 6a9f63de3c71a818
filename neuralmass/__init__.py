"""neuralmass: whole-brain network simulation from LEMS/RateML neural mass models.

    import neuralmass as nm
    model = nm.load_model("kuramoto")
    conn = nm.Connectivity.default()
    res = nm.simulate(model, conn, {"global_coupling": np.linspace(0, 1, 1024)})

The public names are imported on first use (PEP 562), so ``import neuralmass`` (and the
``neuralmass`` command's ``--help``) does not load SymPy, JAX, Numba, Dask or xarray; ``nm.X``,
``from neuralmass import X`` and ``dir(nm)`` work as with eager imports.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> (module relative to this package, attribute; None for the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "analysis": (".analysis", None),
    "errors": (".errors", None),
    "hemodynamics": (".hemodynamics", None),
    "lems": (".lems", None),
    "metrics": (".metrics", None),
    "models": (".models", None),
    "monitors": (".monitors", None),
    "simulate": ("._simulate", "simulate"),
    "Connectivity": (".connectivity", "Connectivity"),
    "fit": (".fit", "fit"),
    "load_result": (".io", "load_result"),
    "Model": (".model", "Model"),
    "load_model": (".models", "load_model"),
    "grid": (".params", "grid"),
    "Result": (".result", "Result"),
    "sweep": (".sweep", "sweep"),
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from . import analysis as analysis
    from . import errors as errors
    from . import hemodynamics as hemodynamics
    from . import lems as lems
    from . import metrics as metrics
    from . import models as models
    from . import monitors as monitors
    from ._simulate import simulate as simulate
    from .connectivity import Connectivity as Connectivity
    from .fit import fit as fit
    from .io import load_result as load_result
    from .model import Model as Model
    from .models import load_model as load_model
    from .params import grid as grid
    from .result import Result as Result
    from .sweep import sweep as sweep


def __getattr__(name: str):
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """This package's module type: importing the submodule ``neuralmass.sweep`` (or
    ``neuralmass.fit``) binds the function of that name, not the submodule, as the package
    attribute, as the eager ``from .sweep import sweep as sweep`` did; otherwise the import
    system's ``setattr(package, "sweep", submodule)`` would hide ``nm.sweep`` the function."""

    def __setattr__(self, name: str, value) -> None:
        export = _EXPORTS.get(name)
        if (isinstance(value, types.ModuleType) and export is not None
                and export[1] == name and value.__name__ == f"{__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
