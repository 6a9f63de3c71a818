"""``neuralmass.fit``: fit free parameters to empirical FC/FCD with one batched
``simulate`` per generation.

    fit = nm.fit(model, conn, fc_emp, free={"global_coupling": (0.0, 1.0)},
                 objective="+fc_corr -fc_distance", method="cmaes", population=64,
                 generations=20, backend="numba", n_steps=4000, noise=1e-3)
    fit.best, fit.best_value, fit.history, fit.best_result, fit.plot("fit.png")

``nm.fit`` is the function; this module also holds :class:`FitResult` and
:class:`L2LOptimizee` (reachable as ``neuralmass.fit.L2LOptimizee`` too).
"""

from __future__ import annotations

import numpy as np

from . import metrics
from ._fit.l2l import L2LOptimizee
from ._fit.methods import Grid, make_method
from ._fit.objective import make_objective, make_target, parse_terms
from ._fit.problem import Problem, parse_free, select_signal
from ._fit.result import FitResult
from ._fit.store import history_dataset, load, save
from .connectivity import Connectivity
from .model import Model
from .models import load_model

__all__ = ["FitResult", "L2LOptimizee", "fit", "parse_terms"]


def fit(model, connectivity=None, target=None, free=None, *, objective="fc_corr",
        method: str = "cmaes", population: int = 64, generations: int = 30,
        backend: str = "numba", seed: int = 0, params: dict | None = None,
        signal: str | None = None, transient: int = 0,
        fcd_window: int = 30, fcd_step: int = 5, store=None, progress: bool = True,
        method_options: dict | None = None, callback=None, **simulate_kwargs) -> FitResult:
    """Fit the ``free`` parameters of ``model`` so that its simulated FC/FCD matches ``target``.

    **The objective is maximised.** ``"fc_corr"`` (Pearson's r of the off-diagonal FC
    triangles) enters with ``+``; ``"fc_distance"`` (RMS difference of the triangles) and
    ``"fcd_ks"`` (KS statistic of the FCD value distributions) with ``-``, written as cuBNM
    does: ``"+fc_corr -fcd_ks"``. For noise-driven oscillators ``fc_corr`` alone keeps rising
    past the true coupling (FC's signal-to-noise ratio grows with coupling) while a distance
    term is smallest at the truth: prefer ``"+fc_corr -fc_distance"`` to recover a coupling.

    Args:
        model, connectivity: as :func:`~neuralmass.simulate`.
        target: an empirical (N, N) FC, or a dict with any of ``"fc"`` (N, N), ``"fcd"``
            (W, W) and ``"bold"`` (N, T; FC and FCD are computed from it when absent).
        free: ``{name: (lo, hi)}`` bounds of each free parameter (any ``simulate`` param).
        params: fixed parameters (name → scalar) for every simulation.
        objective: a signed sum of ``fc_corr``, ``fc_distance``, ``fcd_ks``, or a
            ``callable(results) -> (P,)`` to maximise (its worst value is ``-inf``).
        method: ``"cmaes"`` (pycma, bounds by ``BoundTransform``), ``"grid"`` (the Cartesian
            grid, ``method_options={"resolution": n}`` points per axis, in batches of
            ``population``; ``generations`` is ignored), ``"adam"`` / ``"lbfgs"`` (optax
            through ``jax.value_and_grad`` of ``simulate``; ``backend="jax"``; ``population``
            starts batched as sets, ``generations`` steps).
        population: individuals per generation (one batched simulate of that many sets).
        generations: number of generations (CMA-ES may stop earlier on its own criteria).
        backend: ``"numba"``, ``"jax"`` or ``"cuda"``.
        seed: seeds the optimiser and the simulations (the same noise for every generation).
        signal: the exposure or state variable FC is computed from (of the last monitor);
            default the model's first exposure.
        transient: leading samples of the signal dropped before computing the metrics.
        fcd_window, fcd_step: FCD window and step, in samples of the signal.
        store: a ``.nc`` path: the history (netCDF) and the optimiser state
            (``store + ".state.pkl"``) are written after every generation, and a call with
            the same store resumes after the last finished generation.
        progress: a progress bar per generation with the best objective so far.
        method_options: the optimiser's own options (see :func:`neuralmass._fit.methods.
            make_method`), e.g. ``{"sigma0": 0.2}`` or ``{"learning_rate": 0.02}``.
        callback: ``callback(generation, points, values)`` after each generation.
        **simulate_kwargs: ``dt``, ``n_steps``, ``monitors``, ``noise``, ``integrator``, ...

    Returns:
        A :class:`FitResult`. Diverged individuals get the objective's worst value and are
        flagged in ``history["diverged"]``.
    """
    if not isinstance(model, Model):
        model = load_model(model)
    connectivity = Connectivity.default() if connectivity is None else connectivity
    names, lower, upper = parse_free(free)
    target = make_target(target, fcd_window, fcd_step)
    problem = Problem(model, connectivity, names, lower, upper,
                      make_objective(objective, target, fcd_window, fcd_step), signal,
                      transient, backend, seed, dict(params or {}), simulate_kwargs)
    optimiser = make_method(method, len(names), population=population, seed=seed,
                            options=dict(method_options or {}))
    if isinstance(optimiser, Grid):
        generations = optimiser.generations
    attrs = {"method": method, "objective": problem.objective.text,
             "free": repr({n: (lo, hi) for n, lo, hi in zip(names, lower, upper)})}
    rows = []
    if store is not None and (stored := load(store, names, attrs)) is not None:
        rows, state = stored
        optimiser.restore(state)
    _run(problem, optimiser, rows, generations, store, attrs, progress, callback)

    history = history_dataset(rows, names, attrs)
    i = int(np.argmax(history["objective"].values))
    best = {name: float(history[name].values[i]) for name in names}
    best_result = problem.simulate({k: np.array([v]) for k, v in best.items()},
                                   on_divergence="ignore")
    best_fc = np.asarray(metrics.fc(select_signal(best_result, signal)[transient:, :, 0]))
    return FitResult(best, float(history["objective"].values[i]), history, best_result,
                     target.fc, best_fc)


def _run(problem, optimiser, rows, generations, store, attrs, progress, callback):
    """Generations ``len(rows) .. generations - 1``, appending to ``rows``."""
    from rich.progress import Progress

    best = max((float(np.max(r["objective"])) for r in rows), default=-np.inf)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("fit", total=generations, completed=len(rows))
        for generation in range(len(rows), generations):
            if optimiser.done:
                break
            points, values, diverged = optimiser.step(problem)
            params = {n: v for n, v in problem.params(points).items() if n in problem.names}
            rows.append({**params, "objective": values, "diverged": diverged,
                         "generation": np.full(len(values), generation)})
            best = max(best, float(np.max(values)))
            if store is not None:
                save(store, history_dataset(rows, problem.names, attrs), optimiser.state())
            if callback is not None:
                callback(generation, params, values)
            n_div = int(np.sum(diverged))
            bar.update(task, advance=1, description=f"best {best:.4f}"
                       + (f" ({n_div} diverged)" if n_div else ""))


fit.FitResult = FitResult
fit.parse_terms = parse_terms
fit.L2LOptimizee = L2LOptimizee
