"""The bifurcation diagram of a :class:`Continuation`, drawn with matplotlib's Agg canvas."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ParameterError
from ._continuation import Continuation

__all__ = ["plot_bifurcation"]

_MARKERS = {"saddle-node": ("o", "tab:red"), "hopf": ("s", "tab:green"),
            "branch point": ("^", "tab:purple")}


def plot_bifurcation(result: Continuation, path: str | os.PathLike,
                     variable: str | None = None) -> None:
    """Write the bifurcation diagram of ``result`` to ``path`` (format from its suffix).

    One state variable (``variable``, default the first) against the continued parameter:
    solid where the equilibrium is stable, dashed where it is not, special points marked.
    Uses ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot, no global
    backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    name = variable or result.state_names[0]
    if name not in result.state_names:
        raise ParameterError(f"variable {name!r} is not a state variable; state variables are "
                             f"{', '.join(result.state_names)}")
    k = result.state_names.index(name)
    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for branch in result.branches:
        stable = branch.stable
        unstable = ~stable  # widened by one point so that the two styles join
        unstable[1:] |= ~stable[:-1]
        unstable[:-1] |= ~stable[1:]
        for mask, style in ((stable, "-"), (unstable, "--")):
            y = np.where(mask, branch.states[:, k], np.nan)
            axes.plot(branch.parameter, y, style, color="black", linewidth=1.2)
    for kind, (marker, colour) in _MARKERS.items():
        chosen = [p for p in result.points if p.kind == kind]
        if chosen:
            axes.plot([p.parameter for p in chosen], [p.state[k] for p in chosen], marker,
                      color=colour, linestyle="none", label=kind)
    axes.set_xlabel(result.parameter)
    axes.set_ylabel(name)
    axes.set_xlim(*result.bounds)
    axes.set_title("equilibria: stable (solid), unstable (dashed)")
    if result.points:
        axes.legend()
    figure.savefig(os.fspath(path), dpi=120)
