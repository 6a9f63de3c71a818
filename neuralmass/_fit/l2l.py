"""``L2LOptimizee``: L2L's ``Optimizee`` interface (``create_individual``, ``bounding_func``,
``simulate(traj)``; L2L = ``l2lforhpc``, Meta-optimization/L2L) on top of a fit's objective,
so that an L2L optimizer can drive neuralmass.

L2L calls ``simulate(traj)`` once per individual, so each call is one simulation (P = 1);
:meth:`simulate_generation` evaluates a list of individuals in one batched ``simulate``.
"""

from __future__ import annotations

import numpy as np

from ..connectivity import Connectivity
from ..model import Model
from ..models import load_model
from .objective import make_objective, make_target
from .problem import Problem, parse_free

__all__ = ["L2LOptimizee"]


class L2LOptimizee:
    """An L2L optimizee for the fit of ``free`` parameters to ``target``.

    Args: as :func:`neuralmass.fit` (``model``, ``connectivity``, ``target``, ``free``,
    ``objective``, ``backend``, ``seed``, ``params``, ``signal``, ``transient``, ``fcd_window``,
    ``fcd_step``, ``**simulate_kwargs``). ``traj``: an L2L trajectory; when given, the
    parameter group ``individual`` is added to it (as L2L's base ``Optimizee`` does).

    Fitness: a 1-tuple, the objective (maximised; use fitness weight +1 in L2L), the
    objective's worst value for a diverged simulation.
    """

    def __init__(self, model, connectivity=None, target=None, free=None, *, traj=None,
                 objective="fc_corr", backend="numba", seed=0, params=None, signal=None,
                 transient=0,
                 fcd_window=30, fcd_step=5, **simulate_kwargs):
        if traj is not None:
            traj.f_add_parameter_group("individual", "Contains parameters of the optimizee")
        model = model if isinstance(model, Model) else load_model(model)
        connectivity = Connectivity.default() if connectivity is None else connectivity
        names, lower, upper = parse_free(free)
        target = make_target(target, fcd_window, fcd_step)
        self.problem = Problem(model, connectivity, names, lower, upper,
                               make_objective(objective, target, fcd_window, fcd_step), signal,
                               transient, backend, seed, dict(params or {}), simulate_kwargs)
        self._rng = np.random.default_rng(seed)

    def create_individual(self) -> dict:
        """``{name: value}`` drawn uniformly within the bounds."""
        p = self.problem
        unit = self._rng.uniform(size=len(p.names))
        return {n: float(v) for n, v in zip(p.names, p.lower + unit * (p.upper - p.lower))}

    def bounding_func(self, individual: dict) -> dict:
        """The individual with every free parameter clipped to its bounds."""
        p = self.problem
        return {n: float(np.clip(individual[n], lo, hi))
                for n, lo, hi in zip(p.names, p.lower, p.upper)}

    def _unit(self, individuals) -> np.ndarray:
        p = self.problem
        theta = np.array([[float(ind[n]) for n in p.names] for ind in individuals])
        return (theta - p.lower) / (p.upper - p.lower)

    def simulate_generation(self, individuals) -> np.ndarray:
        """(P,) objective of a list of individuals (dicts), one batched simulation."""
        values, _ = self.problem.evaluate(self._unit(individuals))
        return values

    def simulate(self, traj) -> tuple[float]:
        """The fitness of ``traj.individual`` (attributes named after the free parameters)."""
        individual = {n: getattr(traj.individual, n) for n in self.problem.names}
        return (float(self.simulate_generation([individual])[0]),)

    # L2L's worker script (l2l/utils/runner.py, l2lforhpc 2.0) calls ``simulate_``: the base
    # Optimizee's multi-optimizer hook, which defaults to ``simulate``.
    simulate_ = simulate
