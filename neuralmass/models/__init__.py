"""The bundled models: RateML-dialect LEMS XML written from tvb-library's ``dfun`` with The
Virtual Brain's names and default parameters.

Each file names its tvb-library class and coupling function on its root element
(``<Lems tvb_model="SupHopf" tvb_coupling="Difference">``); a model is found by its file name,
by that class name (case-insensitive) or by the class name in snake_case.
"""

from __future__ import annotations

import functools
import os
import re
from importlib import resources

from ..errors import ModelError
from ..lems import header, load
from ..model import Model

__all__ = ["available", "load_model", "path", "snake_case", "tvb_names"]

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z][a-z])|(?<=[a-z])(?=[A-Z])"
                            r"|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(class_name: str) -> str:
    """``"ReducedWongWangExcInh"`` -> ``"reduced_wong_wang_exc_inh"``, ``"KIonEx"`` ->
    ``"k_ion_ex"``, ``"CoombesByrne2D"`` -> ``"coombes_byrne2d"``."""
    return _WORD_BOUNDARY.sub("_", class_name).lower()


def available() -> tuple[str, ...]:
    """Names of the bundled models (their file names), e.g. ``("epileptor", "generic2d", ...)``."""
    return tuple(sorted(
        entry.name[:-4] for entry in resources.files(__package__).iterdir()
        if entry.name.endswith(".xml")
    ))


def _file(name: str) -> str:
    return str(resources.files(__package__) / f"{name}.xml")


@functools.cache
def tvb_names(name: str) -> tuple[str | None, str | None]:
    """(tvb-library model class, tvb-library coupling class) of a bundled model, as its file
    declares them (``None`` where it does not)."""
    attributes = header(_file(name))
    return attributes.get("tvb_model"), attributes.get("tvb_coupling")


@functools.cache
def _name_table() -> dict[str, str]:
    """lower-case alias -> bundled file name: the file name, the TVB class name and its
    snake_case form."""
    table: dict[str, str] = {}
    for name in available():
        tvb_model, _ = tvb_names(name)
        aliases = {name} | ({tvb_model.lower(), snake_case(tvb_model)} if tvb_model else set())
        for alias in aliases:
            if table.setdefault(alias, name) != name:
                raise ModelError(f"{name}.xml: model name {alias!r} is also "
                                 f"{table[alias]}.xml's")
    return table


def path(name: str) -> str:
    """The path of a bundled model's XML file, by file name, TVB class name (any case) or its
    snake_case form."""
    found = _name_table().get(name.lower())
    if found is None:
        raise ModelError(
            f"unknown model {name!r}; bundled models are {', '.join(available())} "
            "(or their TVB class names, or give the path of an XML file)"
        )
    return _file(found)


def load_model(name_or_path: str | os.PathLike) -> Model:
    """A bundled model by name (see :func:`path`), or a model from an XML file path."""
    text = os.fspath(name_or_path)
    if text.lower() in _name_table():
        return load(path(text))
    if text.endswith(".xml") or os.sep in text or os.path.exists(text):
        return load(text)
    return load(path(text))  # raises the 'unknown model' error
