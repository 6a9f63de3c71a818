"""Run tvb-library itself, as the reference that neuralmass's conformance tests compare against.

Independent of neuralmass's numerics (only the names of the TVB classes come from the model
file's ``tvb_model`` / ``tvb_coupling`` attributes): this only builds and runs a stock
``tvb.simulator.Simulator`` (see ``/work/shared/tvb-conventions.md``), with one documented
change unless asked for stock behaviour: the history buffer and the coupling are computed in
float64 instead of tvb-library's float32 (patched for the duration of the call and restored
afterwards). tvb-library is imported lazily, so importing this module works without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile

import numpy as np

_INTEGRATORS = {"heun": "HeunDeterministic", "euler": "EulerDeterministic",
                "rk4": "RungeKutta4thOrderDeterministic"}
_MONITORS = {"raw": "Raw", "subsample": "SubSample", "temporal_average": "TemporalAverage"}


@contextlib.contextmanager
def _float64_history():
    """Make tvb-library's history (buffer, weights, delayed states) float64 instead of float32.

    Sets ``.dtype = 'd'`` on every float ``NDArray`` descriptor declared on ``BaseHistory``,
    ``DenseHistory`` and ``SparseHistory``; arrays are created with the descriptor's dtype on
    first use, so a Simulator configured inside this block keeps float64 history afterwards.
    The original dtypes are restored on exit, also after an exception.
    """
    from tvb.simulator import history

    saved = []
    for cls in (history.BaseHistory, history.DenseHistory, history.SparseHistory):
        for desc in vars(cls).values():
            if isinstance(desc, history.NDArray) and np.dtype(desc.dtype).kind == "f":
                saved.append((desc, desc.dtype))
    try:
        for desc, _ in saved:
            desc.dtype = "d"
        yield
    finally:
        for desc, dtype in saved:
            desc.dtype = dtype


def tvb_horizon(tract_lengths, speed: float, dt: float) -> int:
    """History length H exactly as tvb-library computes it: ``rint((L / speed) / dt).max() + 1``."""
    return int(np.rint(np.asarray(tract_lengths, float) / speed / dt).max()) + 1


def connectivity_76() -> tuple[np.ndarray, np.ndarray]:
    """tvb-data's 76-region connectome (GPL-3.0, used only through the optional dependency).

    Returns (weights normalised to max 1 as TVB's demos do, tract lengths in mm).
    """
    import tvb_data

    path = os.path.join(os.path.dirname(tvb_data.__file__), "connectivity", "connectivity_76.zip")
    with zipfile.ZipFile(path) as zf:
        weights = np.loadtxt(zf.open("weights.txt"))
        lengths = np.loadtxt(zf.open("tract_lengths.txt"))
    return weights / weights.max(), lengths


def _quiet_tvb_logging() -> None:
    for name in list(logging.root.manager.loggerDict):
        if name == "tvb" or name.startswith("tvb."):
            logging.getLogger(name).setLevel(logging.ERROR)


def _observe_all_state_variables(tvb_model) -> None:
    """Make the model's observer (``model.observe``, built from ``variables_of_interest`` when
    the Simulator is configured) return every state variable, in their order.

    Set through the trait, which validates the names against its ``choices``. A few models'
    traits leave state variables out of the choices (EpileptorCodim3SlowMod: uA, uB); for
    those the validated assignment would raise, so the tuple is written to this one instance's
    ``__dict__`` (where neotraits keeps the value), leaving the class and other models as they
    are. The observer then selects all state variables (checked in ``run_tvb``'s shape assert).
    """
    names = tuple(tvb_model.state_variables)
    choices = getattr(type(tvb_model).variables_of_interest, "element_choices", None)
    if choices is None or set(names) <= set(choices):
        tvb_model.variables_of_interest = names
    else:
        tvb_model.__dict__["variables_of_interest"] = names
    assert tuple(tvb_model.variables_of_interest) == names


def run_tvb(model: str, weights, tract_lengths, *, speed: float, dt: float, n_steps: int,
            integrator: str, initial_history, params: dict[str, float],
            monitor: str = "raw", period: float | None = None, stock_float32: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """Run tvb-library and return (time (T,), data (T, n_state, N)) of one monitor with ALL
    state variables, in the model's state-variable order.

    ``initial_history`` (H, n_state, N): row H-1 is t = 0, H = tvb_horizon(...). ``params``:
    TVB parameter names plus ``global_coupling`` (the coupling's ``a``; Linear's ``b`` stays 0).
    ``integrator``: ``"heun"``, ``"euler"`` or ``"rk4"``. ``monitor``: ``"raw"`` (T = n_steps,
    every step), or ``"subsample"`` / ``"temporal_average"`` with ``period`` ms (a multiple m of
    dt; T = n_steps // m samples). Time is relative to the start: ``dt * (1 .. n_steps)`` for
    Raw. TVB's clock starts at (H-1) dt and its monitors sample when the global step is a
    multiple of m, so ``m`` must divide H-1 for the windows to start at t = 0 (checked).
    ``stock_float32``: keep tvb-library's float32 history and coupling sum (its stock
    behaviour); by default they are patched to float64.
    """
    from tvb.datatypes.connectivity import Connectivity
    from tvb.simulator import coupling, integrators, models, monitors, simulator

    _quiet_tvb_logging()
    from neuralmass.models import tvb_names  # which classes: the XML's root attributes

    model_name, coupling_name = tvb_names(model)
    weights = np.array(weights, dtype=float)
    tract_lengths = np.array(tract_lengths, dtype=float)
    n_node = weights.shape[0]
    hist = np.array(initial_history, dtype=float)
    n_hist = tvb_horizon(tract_lengths, speed, dt)
    tvb_model = getattr(models, model_name)()
    n_state = len(tvb_model.state_variables)
    if hist.shape != (n_hist, n_state, n_node):
        raise ValueError(f"initial_history has shape {hist.shape}, "
                         f"tvb needs exactly {(n_hist, n_state, n_node)}")
    every = 1 if monitor == "raw" else int(round(period / dt))
    if monitor != "raw" and (abs(every * dt - period) > 1e-9 * period or (n_hist - 1) % every):
        raise ValueError(f"period={period!r} ms must be m dt with m dividing H-1 = {n_hist - 1} "
                         f"(dt={dt}) so that TVB's windows start at t = 0")

    params = dict(params)
    cfun = getattr(coupling, coupling_name)(a=np.array([float(params.pop("global_coupling"))]))
    for name, value in params.items():
        attr = getattr(type(tvb_model), name, None)
        if getattr(attr, "dtype", None) is None:
            raise KeyError(f"{model_name} has no parameter {name!r}")
        setattr(tvb_model, name, np.array([value]).astype(attr.dtype))
    _observe_all_state_variables(tvb_model)

    conn = Connectivity(weights=weights, tract_lengths=tract_lengths,
                        region_labels=np.array([f"r{i}" for i in range(n_node)]),
                        centres=np.zeros((n_node, 3)), speed=np.array([float(speed)]))
    tvb_monitor = getattr(monitors, _MONITORS[monitor])(
        **({} if monitor == "raw" else {"period": float(period)}))
    sim = simulator.Simulator(
        model=tvb_model, connectivity=conn, coupling=cfun,
        integrator=getattr(integrators, _INTEGRATORS[integrator])(dt=dt),
        monitors=[tvb_monitor], initial_conditions=hist[..., np.newaxis],
        simulation_length=n_steps * dt)
    history_dtype = contextlib.nullcontext() if stock_float32 else _float64_history()
    with history_dtype:
        sim.configure()
        assert sim.connectivity.horizon == n_hist
        assert sim.history.buffer.dtype == (np.float32 if stock_float32 else np.float64)
        assert sim.history.nnz_weights.dtype == sim.history.buffer.dtype
        # ceil((n*dt)/dt) is n or, by rounding, n + 1 steps: keep the first n
        (time, data), = sim.run(simulation_length=n_steps * dt)
    n_samples = n_steps // every
    if len(time) < n_samples:
        raise RuntimeError(f"tvb returned {len(time)} samples, expected {n_samples}")
    time = time[:n_samples] - (n_hist - 1) * dt
    data = data[:n_samples, :, :, 0]
    assert data.shape == (n_samples, n_state, n_node)
    steps = every * np.arange(1, n_samples + 1)
    if monitor == "temporal_average":
        steps = steps - every / 2
    np.testing.assert_allclose(time, dt * steps, rtol=1e-12, atol=1e-12 * dt)
    return time, data
