"""``FitResult``: what :func:`neuralmass.fit` returns."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["FitResult"]


@dataclass(frozen=True)
class FitResult:
    """The outcome of a fit.

    Attributes:
        best: ``{name: value}`` of the best individual seen (over the whole history, not
            the optimiser's final mean).
        best_value: its objective (maximised).
        history: ``xarray.Dataset`` over dim ``individual`` (every individual of every
            generation, in order): one variable per free parameter, ``objective``,
            ``diverged`` (bool) and ``generation``; attrs record method and objective.
        best_result: the :class:`~neuralmass.Result` (or tuple, one per monitor) of the best
            individual, simulated once more on its own.
        target_fc: (N, N) target FC or None; best_fc: the best individual's FC (N, N).
    """

    best: dict
    best_value: float
    history: object
    best_result: object
    target_fc: np.ndarray | None
    best_fc: np.ndarray

    def best_per_generation(self) -> np.ndarray:
        """(G,) the best objective within each generation."""
        h = self.history
        return h["objective"].groupby(h["generation"]).max().values

    def plot(self, path: str | os.PathLike | None = None):
        """Convergence (best per generation and best so far) and simulated vs target FC side
        by side, with matplotlib's Agg backend. Returns the Figure, or writes ``path``."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(12, 3.8), layout="constrained")
        ax, ax_sim, ax_emp = fig.subplots(1, 3)
        per_gen = self.best_per_generation()
        ax.plot(per_gen, "o-", label="best of generation")
        ax.plot(np.maximum.accumulate(per_gen), "k--", label="best so far")
        ax.set(xlabel="generation", ylabel="objective (maximised)", title="convergence")
        ax.legend()
        for axis, matrix, title in ((ax_sim, self.best_fc, "simulated FC (best)"),
                                    (ax_emp, self.target_fc, "target FC")):
            if matrix is None:
                axis.set_axis_off()
                continue
            image = axis.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
            axis.set(title=title, xlabel="region", ylabel="region")
        fig.colorbar(image, ax=[ax_sim, ax_emp], shrink=0.8, label="r")
        if path is None:
            return fig
        fig.savefig(path, dpi=100)
        return None
