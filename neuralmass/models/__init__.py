"""The bundled models: RateML-dialect LEMS XML written from the published equations with
The Virtual Brain's default parameters and names."""

from __future__ import annotations

import os
from importlib import resources

from ..errors import ModelError
from ..lems import load
from ..model import Model

__all__ = ["available", "load_model", "path"]


def available() -> tuple[str, ...]:
    """Names of the bundled models, e.g. ``("epileptor", "generic2d", "kuramoto", ...)``."""
    return tuple(sorted(
        entry.name[:-4] for entry in resources.files(__package__).iterdir()
        if entry.name.endswith(".xml")
    ))


def path(name: str) -> str:
    """The path of a bundled model's XML file."""
    if name not in available():
        raise ModelError(
            f"unknown model {name!r}; bundled models are {', '.join(available())} "
            "(or give the path of an XML file)"
        )
    return str(resources.files(__package__) / f"{name}.xml")


def load_model(name_or_path: str | os.PathLike) -> Model:
    """A bundled model by name (see :func:`available`), or a model from an XML file path."""
    text = os.fspath(name_or_path)
    if text in available():
        return load(path(text))
    if text.endswith(".xml") or os.sep in text or os.path.exists(text):
        return load(text)
    return load(path(text))  # raises the 'unknown model' error
