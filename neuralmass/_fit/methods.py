"""The optimisers, each a ``step(problem) -> (unit points (P, d), values (P,), diverged (P,))``
per generation with a picklable ``state()`` / ``restore(state)`` for the store.

Points live in the unit cube [0, 1]^d (0 = lower bound, 1 = upper bound of each free
parameter). CMA-ES is pycma's, bounds by its ``BoundTransform``; adam and L-BFGS are optax's
on an unbounded ``z`` with ``unit = sigmoid(z)``.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import ParameterError

__all__ = ["make_method", "METHODS"]


class CMAES:
    """pycma's CMA-ES, one ``ask``/``tell`` (one batched simulate) per generation."""

    def __init__(self, d, *, population, seed, sigma0=0.3, x0=None, options=None):
        import cma

        # pycma reads seed 0 as "seed from the clock": shift by one to stay reproducible.
        opts = {"popsize": population, "bounds": [0.0, 1.0], "seed": seed + 1,
                "verbose": -9, "BoundaryHandler": cma.BoundTransform}
        if d == 1:  # pycma 4.5 capping the std at 1/3 of the range fails in 1-D (ValueError)
            opts["maxstd_boundrange"] = np.inf
        opts.update(options or {})
        x0 = np.full(d, 0.5) if x0 is None else np.asarray(x0, dtype=float)
        self.es = cma.CMAEvolutionStrategy(x0, sigma0, opts)

    def step(self, problem):
        points = np.asarray(self.es.ask())
        values, diverged = problem.evaluate(points)
        cost = -values
        if not np.all(np.isfinite(cost)):  # a callable's worst (-inf): worse than any seen
            finite = cost[np.isfinite(cost)]
            cost = np.where(np.isfinite(cost), cost, finite.max() + 1.0 if finite.size else 1.0)
        self.es.tell(list(points), list(cost))
        return points, values, diverged

    @property
    def done(self):
        return bool(self.es.stop())

    def state(self):
        return self.es

    def restore(self, state):
        self.es = state


class Grid:
    """The Cartesian grid of ``resolution`` points per axis (bounds included), in batches of
    ``population`` sets, first parameter slowest."""

    def __init__(self, d, *, population, resolution=16):
        axes = [np.linspace(0.0, 1.0, resolution)] * d
        self.points = np.array(list(itertools.product(*axes)))
        self.batch, self.next = population, 0

    def step(self, problem):
        points = self.points[self.next:self.next + self.batch]
        self.next += len(points)
        values, diverged = problem.evaluate(points)
        return points, values, diverged

    @property
    def done(self):
        return self.next >= len(self.points)

    def state(self):
        return self.next

    def restore(self, state):
        self.next = state

    @property
    def generations(self):
        return -(-len(self.points) // self.batch)


class Gradient:
    """optax (``adam`` or ``lbfgs``) on ``jax.value_and_grad`` through ``simulate`` (JAX
    backend), ``population`` starts batched as parameter sets. The loss is minus the sum of
    the starts' objectives (the starts are independent, so each gets its own gradient); a
    set whose value or gradient is not finite contributes zero gradient."""

    def __init__(self, d, *, population, seed, method, learning_rate=0.05, x0=None, options=None):
        import jax.numpy as jnp
        import optax

        rng = np.random.default_rng(seed)
        unit = (rng.uniform(0.1, 0.9, (population, d)) if x0 is None
                else np.broadcast_to(np.asarray(x0, dtype=float), (population, d)))
        unit = np.clip(unit, 1e-6, 1 - 1e-6)
        self.z = jnp.asarray(np.log(unit) - np.log1p(-unit))
        self.optimizer = (optax.adam(learning_rate, **(options or {})) if method == "adam"
                          else optax.lbfgs(**(options or {})))
        self.lbfgs = method == "lbfgs"
        self.opt_state = self.optimizer.init(self.z)
        self._update = None

    def _compile(self, problem):
        """One jitted step: value and gradient, then the optimiser's update (L-BFGS's line
        search calls the loss again inside the same compiled function)."""
        import jax
        import jax.numpy as jnp
        import optax

        def loss(z):
            unit = jax.nn.sigmoid(z)
            values = problem.values(problem.simulate(problem.params(unit, jnp)), jnp)
            ok = jnp.isfinite(values)
            return -jnp.sum(jnp.where(ok, values, 0.0)), values

        def update(z, opt_state):
            (value, values), grad = jax.value_and_grad(loss, has_aux=True)(z)
            grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
            extra = ({"value": value, "grad": grad, "value_fn": lambda z: loss(z)[0]}
                     if self.lbfgs else {})
            updates, opt_state = self.optimizer.update(grad, opt_state, z, **extra)
            return optax.apply_updates(z, updates), opt_state, values

        self._update = jax.jit(update)

    def step(self, problem):
        import jax

        if problem.backend != "jax":
            raise ParameterError(f"method adam/lbfgs differentiates through the JAX backend; "
                                 f"pass backend='jax', not {problem.backend!r}")
        if self._update is None:
            self._compile(problem)
        points = np.asarray(jax.nn.sigmoid(self.z))
        self.z, self.opt_state, values = self._update(self.z, self.opt_state)
        values = np.asarray(values, dtype=float)
        bad = ~np.isfinite(values)
        return points, np.where(bad, problem.objective.worst, values), bad

    done = False

    def state(self):
        import jax

        return jax.tree.map(np.asarray, (self.z, self.opt_state))

    def restore(self, state):
        import jax
        import jax.numpy as jnp

        self.z, self.opt_state = jax.tree.map(jnp.asarray, state)


METHODS = ("cmaes", "grid", "adam", "lbfgs")


def make_method(method: str, d: int, *, population: int, seed: int, options: dict):
    """The optimiser called ``method`` for ``d`` free parameters; ``options`` are its own
    keyword arguments (cmaes: sigma0, x0, options; grid: resolution; adam/lbfgs:
    learning_rate, x0, options)."""
    if method == "cmaes":
        return CMAES(d, population=population, seed=seed, **options)
    if method == "grid":
        return Grid(d, population=population, **options)
    if method in ("adam", "lbfgs"):
        return Gradient(d, population=population, seed=seed, method=method, **options)
    raise ParameterError(f"method must be one of {', '.join(METHODS)}, but got {method!r}")
