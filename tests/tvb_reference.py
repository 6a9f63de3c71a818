"""Run tvb-library itself, as the reference that neuralmass's conformance tests compare against.

Independent of neuralmass's numerics (only the names of the TVB classes come from the model
file's ``tvb_model`` / ``tvb_coupling`` attributes): this only builds and runs a stock
``tvb.simulator.Simulator`` (see ``/work/shared/tvb-conventions.md``), with one documented
change: the history buffer and the coupling are computed in float64 instead of tvb-library's
float32 (patched for the duration of the call and restored afterwards). tvb-library is
imported lazily, so importing this module works without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile

import numpy as np

_INTEGRATORS = {"heun": "HeunDeterministic", "euler": "EulerDeterministic"}


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


def run_tvb(model: str, weights, tract_lengths, *, speed: float, dt: float, n_steps: int,
            integrator: str, initial_history, params: dict[str, float]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Run tvb-library and return (time (n_steps,), data (n_steps, n_state, N)) of the raw
    monitor with ALL state variables, in the model's state-variable order.

    ``initial_history`` (H, n_state, N): row H-1 is t = 0, H = tvb_horizon(...). ``params``:
    TVB parameter names plus ``global_coupling`` (the coupling's ``a``; Linear's ``b`` stays 0).
    Time is relative to the start: ``dt * (1 .. n_steps)``. Coupling runs in float64.
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

    params = dict(params)
    cfun = getattr(coupling, coupling_name)(a=np.array([float(params.pop("global_coupling"))]))
    for name, value in params.items():
        attr = getattr(type(tvb_model), name, None)
        if getattr(attr, "dtype", None) is None:
            raise KeyError(f"{model_name} has no parameter {name!r}")
        setattr(tvb_model, name, np.array([value]).astype(attr.dtype))
    tvb_model.variables_of_interest = tuple(tvb_model.state_variables)

    conn = Connectivity(weights=weights, tract_lengths=tract_lengths,
                        region_labels=np.array([f"r{i}" for i in range(n_node)]),
                        centres=np.zeros((n_node, 3)), speed=np.array([float(speed)]))
    sim = simulator.Simulator(
        model=tvb_model, connectivity=conn, coupling=cfun,
        integrator=getattr(integrators, _INTEGRATORS[integrator])(dt=dt),
        monitors=[monitors.Raw()], initial_conditions=hist[..., np.newaxis],
        simulation_length=n_steps * dt)
    with _float64_history():
        sim.configure()
        assert sim.connectivity.horizon == n_hist
        assert sim.history.buffer.dtype == np.float64
        assert sim.history.nnz_weights.dtype == np.float64
        # ceil((n*dt)/dt) is n or, by rounding, n + 1 steps: keep the first n
        (time, data), = sim.run(simulation_length=n_steps * dt)
    if len(time) < n_steps:
        raise RuntimeError(f"tvb returned {len(time)} samples, expected {n_steps}")
    time = time[:n_steps] - (n_hist - 1) * dt
    data = data[:n_steps, :, :, 0]
    assert data.shape == (n_steps, n_state, n_node)
    np.testing.assert_allclose(time, dt * np.arange(1, n_steps + 1), rtol=1e-12, atol=1e-12 * dt)
    return time, data
