"""The attributes of a model file's root ``<Lems>`` element, read without building the model."""

from __future__ import annotations

import os

from lxml import etree

from ..errors import ModelError

__all__ = ["header"]


def header(path: str | os.PathLike) -> dict[str, str]:
    """The attributes of the root ``<Lems>`` element of ``path`` (e.g. ``description``,
    ``tvb_model``, ``tvb_coupling``), parsing only the start of the file."""
    path = os.fspath(path)
    try:
        for _, element in etree.iterparse(path, events=("start",), resolve_entities=False,
                                          no_network=True):
            return dict(element.attrib)
    except (OSError, etree.XMLSyntaxError) as err:
        raise ModelError(f"{os.path.basename(path)}: cannot read the <Lems> element: {err}") \
            from None
    raise ModelError(f"{os.path.basename(path)}: empty XML document")
