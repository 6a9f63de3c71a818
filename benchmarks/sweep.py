"""CPU benchmark of the Numba backend against tvb-library and vbjax (issue #3).

The sweep: Montbrió–Pazó–Roxin (linear coupling) and Kuramoto (a sine per edge) on tvb-data's
76-region connectome (the bundled one when tvb-data is absent), dt 0.1 ms, Heun, 1,024
parameter sets (32 global couplings × 32 conduction speeds from 1 to 10 mm/ms, so delays of
up to 1,385 steps) × 4,000 steps, temporal average over 1 ms, float32 and float64. Then a
single simulation (one set, 10,000 steps, raw monitor) of each model. For each it prints:

- parameter-set-steps per second of ``neuralmass.backends.numba`` (the stepping, after the
  arrays are allocated and initialised; see "cold" below), and the effective bandwidth of the
  delayed reads, ``sets × steps × nnz × C × bytes / time`` with ``C`` the history channels the
  kernel reads per edge (Montbrió: r only — the coupling through V is multiplied by cv = 0
  and not computed; Kuramoto: sin θ and cos θ, since sin(θj − θi) is expanded);
- the machine's copy bandwidth measured in the same run (``np.copyto`` of 1 GiB, best of 5,
  counting the bytes read plus written), compile time (empty cache), the start of a second
  process with the disk cache, and the peak RSS;
- the same workload with tvb-library (a Python loop of ``Simulator`` runs: a few sets, timed
  and extrapolated linearly to 1,024) and with vbjax (``make_delay_helper``, ``delay_apply``,
  ``mpr_dfun``, ``make_sdde`` under ``jax.jit(jax.vmap(...))``: one batch of 64 sets timed
  after compilation and extrapolated linearly to 1,024), when they are installed, and the
  ratios.

    uv run python benchmarks/sweep.py            # ~10 minutes on 2 cores
    uv run python benchmarks/sweep.py --quick    # ~2 minutes: fewer steps

"Cold" numbers: the first run of a process also pays for first-touch page faults of its
output and history arrays (on a small VM these cost up to a second per 50 MB); the timed
runs reuse memory a warm-up run touched, which is what a long sweep sees.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

import neuralmass as nm
from neuralmass.plan import make_plan

MODELS = ("montbrio", "kuramoto")
DTYPES = ("float32", "float64")
DT = 0.1
N_COUPLINGS = N_SPEEDS = 32
COUPLING_RANGE = {"montbrio": (0.0, 0.05), "kuramoto": (0.0, 1.0)}
SPEED_RANGE = (1.0, 10.0)
MONITOR = "temporal_average:1.0"
#: history channels read per edge by the Numba kernel (see the module docstring)
CHANNELS = {"montbrio": 1, "kuramoto": 2}
#: vbjax: sets in the one vmap batch that is timed (its buffer holds every time step of every
#: set, so all 1,024 at once need ~7 GB; the time per set-step hardly depends on the batch)
VBJAX_BATCH = 64


# --------------------------------------------------------------------------- machine
def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
            if key.strip() in ("L2 cache", "L3 cache"):
                info[key.strip()] = value.strip()
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            total = int(meminfo.readline().split()[1])
        info["ram_gib"] = round(total / 2**20, 1)
    except (OSError, ValueError):
        pass
    info["load"] = os.getloadavg()[0]
    return info


def copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second of ``np.copyto`` between two touched 1 GiB arrays, counting the
    bytes read plus written (2 × size / time), best of ``repeats``."""
    source = np.ones(nbytes // 8)
    target = np.zeros_like(source)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(target, source)
        best = max(best, 2 * nbytes / (time.perf_counter() - started))
    return best


# --------------------------------------------------------------------------- workloads
def connectivity() -> tuple[nm.Connectivity, str]:
    try:
        return nm.Connectivity.from_tvb_data(76), "tvb-data connectivity_76"
    except Exception:  # tvb-data absent
        return nm.Connectivity.default(), "bundled 76-region connectome"


def sweep_params(model: str) -> dict:
    return nm.grid(global_coupling=np.linspace(*COUPLING_RANGE[model], N_COUPLINGS),
                   global_speed=np.linspace(*SPEED_RANGE, N_SPEEDS))


def initial_state(model: str, n_nodes: int) -> np.ndarray:
    if model == "montbrio":
        return np.stack([np.full(n_nodes, 0.1), np.full(n_nodes, -2.0)])
    return np.random.default_rng(0).uniform(0, 2 * np.pi, (1, n_nodes))


def sweep_plan(model, conn, dtype, n_steps, params=None):
    return make_plan(nm.load_model(model), conn, sweep_params(model) if params is None else params,
                     dt=DT, n_steps=n_steps, integrator="heun", monitors=MONITOR, dtype=dtype,
                     initial_state=initial_state(model, conn.n_regions))


def single_plan(model, conn, dtype, n_steps):
    return make_plan(nm.load_model(model), conn, {}, dt=DT, n_steps=n_steps,
                     integrator="heun", monitors="raw", dtype=dtype,
                     initial_state=initial_state(model, conn.n_regions))


# --------------------------------------------------------------------------- neuralmass
def time_numba(plan, repeats: int = 2) -> dict:
    """Compile (timed, into the current cache), warm up, then time ``repeats`` runs."""
    from neuralmass.backends.numba import prepare

    n_steps = plan.monitor.n_steps_simulated
    started = time.perf_counter()
    prepared = prepare(plan)
    first_prepare = time.perf_counter() - started
    started = time.perf_counter()
    prepared.execute(n_steps)
    cold = time.perf_counter() - started
    best = float("inf")
    for _ in range(repeats):
        del prepared
        prepared = prepare(plan)  # fresh arrays, on memory the warm-up touched
        started = time.perf_counter()
        prepared.execute(n_steps)
        best = min(best, time.perf_counter() - started)
    finite = bool(np.isfinite(prepared.out_states).all())
    return {"seconds": best, "cold_seconds": cold, "prepare_seconds": first_prepare,
            "lanes": prepared.tiles.lanes, "tiles": prepared.tiles.n_tiles, "finite": finite}


SECOND_PROCESS = textwrap.dedent("""
    import json, time
    started = time.perf_counter()
    import numpy as np
    import neuralmass as nm
    from neuralmass.backends.numba import prepare
    sys_path_benchmark = {benchmark!r}
    import importlib.util
    spec = importlib.util.spec_from_file_location("sweep", sys_path_benchmark)
    sweep = importlib.util.module_from_spec(spec); spec.loader.exec_module(sweep)
    imported = time.perf_counter()
    conn, _ = sweep.connectivity()
    plan = sweep.sweep_plan("montbrio", conn, "float32", {n_steps})
    planned = time.perf_counter()
    prepared = prepare(plan)
    ready = time.perf_counter()
    print(json.dumps({{"import": imported - started, "plan": planned - imported,
                      "prepare": ready - planned}}))
""")


def second_process_start(cache: str, n_steps: int) -> dict:
    """A new process with the disk cache filled: seconds to import, plan and prepare (lower,
    load the compiled code, allocate, initialise). Run twice with Python's bytecode cache on
    (in a private ``PYTHONPYCACHEPREFIX``, since ``PYTHONDONTWRITEBYTECODE`` may be set) and
    the second run reported, as after any installation."""
    code = SECOND_PROCESS.format(benchmark=os.path.abspath(__file__), n_steps=n_steps)
    environment = dict(os.environ, NEURALMASS_CACHE_DIR=cache,
                       PYTHONPYCACHEPREFIX=os.path.join(cache, "pycache"))
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    for _ in range(2):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], env=environment,
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["process"] = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- tvb-library
def tvb_available() -> bool:
    try:
        import tvb.simulator.lab  # noqa: F401
    except Exception:
        return False
    return True


def tvb_simulator(model, conn, speed, coupling, dtype_monitor, n_steps):
    import logging

    from tvb.datatypes.connectivity import Connectivity
    from tvb.simulator import coupling as tvb_coupling
    from tvb.simulator import integrators, models, monitors, simulator

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("tvb"):
            logging.getLogger(name).setLevel(logging.ERROR)
    n = conn.n_regions
    tvb_conn = Connectivity(weights=np.array(conn.weights), tract_lengths=np.array(
        conn.tract_lengths), region_labels=np.array([f"r{i}" for i in range(n)]),
        centres=np.zeros((n, 3)), speed=np.array([float(speed)]))
    if model == "montbrio":
        tvb_model, cfun = models.MontbrioPazoRoxin(), tvb_coupling.Linear(a=np.array([coupling]))
    else:
        tvb_model, cfun = models.Kuramoto(), tvb_coupling.Kuramoto(a=np.array([coupling]))
    horizon = int(np.rint(np.asarray(conn.tract_lengths) / speed / DT).max()) + 1
    state = initial_state(model, n)
    history = np.broadcast_to(state[None, :, :, None], (horizon, len(state), n, 1)).copy()
    monitor = monitors.TemporalAverage(period=1.0) if dtype_monitor == "tavg" else monitors.Raw()
    sim = simulator.Simulator(model=tvb_model, connectivity=tvb_conn, coupling=cfun,
                              integrator=integrators.HeunDeterministic(dt=DT),
                              monitors=[monitor], initial_conditions=history,
                              simulation_length=n_steps * DT)
    return sim


def time_tvb_sweep(model, conn, n_steps, n_sets) -> dict:
    """A Python loop of tvb-library simulators (configure + run) over ``n_sets`` sets spread
    over the speeds: seconds per set-step, to extrapolate linearly."""
    params = sweep_params(model)
    picks = np.linspace(0, len(params["global_speed"]) - 1, n_sets).astype(int)
    started = time.perf_counter()
    for p in picks:
        sim = tvb_simulator(model, conn, params["global_speed"][p],
                            params["global_coupling"][p], "tavg", n_steps)
        sim.configure()
        sim.run()
    seconds = time.perf_counter() - started
    return {"rate": n_sets * n_steps / seconds, "sets": n_sets, "steps": n_steps}


def time_tvb_single(model, conn, n_steps) -> float:
    sim = tvb_simulator(model, conn, conn.speed, 0.01 if model == "montbrio" else 1.0, "raw",
                        n_steps)
    sim.configure()
    started = time.perf_counter()
    sim.run()
    return n_steps / (time.perf_counter() - started)


def time_tvb_numba_mpr(conn, n_steps) -> float | None:
    """tvb-library's hand-written Numba backend for MPR (needs HeunStochastic; zero noise).
    Each ``run_sim`` renders its template and compiles anew, so the rate is taken from the
    difference of two run lengths (the fixed cost cancels)."""
    try:
        from tvb.simulator import integrators, noise
        from tvb.simulator.backend.nb_mpr import NbMPRBackend
    except Exception:
        return None
    sim = tvb_simulator("montbrio", conn, conn.speed, 0.01, "raw", n_steps)
    sim.integrator = integrators.HeunStochastic(dt=DT, noise=noise.Additive(nsig=np.r_[0.0]))
    try:
        sim.configure()
        backend = NbMPRBackend()
        seconds = []
        for steps in (n_steps // 10, n_steps):
            started = time.perf_counter()
            backend.run_sim(sim, nstep=steps)
            seconds.append(time.perf_counter() - started)
        return (n_steps - n_steps // 10) / max(seconds[1] - seconds[0], 1e-9)
    except Exception as error:  # an optional extra; report and go on
        print(f"  (tvb-library's Numba MPR backend did not run: {error})")
        return None


# --------------------------------------------------------------------------- vbjax
VBJAX_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    config = json.loads(sys.argv[1])
    import jax
    if config["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import vbjax as vb
    weights = jnp.asarray(np.array(config["weights"]), dtype=config["dtype"])
    lengths = np.array(config["lengths"])
    dt, n_steps, model = config["dt"], config["n_steps"], config["model"]
    speeds = np.array(config["speeds"]); couplings = np.array(config["couplings"])
    n = weights.shape[0]
    # vbjax's delay helper (lags floor(L / v / dt)), one lag matrix per set
    base = vb.make_delay_helper(weights, jnp.asarray(lengths), dt=dt, v_c=float(speeds.min()))
    lags = np.floor(lengths[None] / speeds[:, None, None] / dt).astype("i")
    nh = int(lags.max()) + 1
    n_svar = 2 if model == "montbrio" else 1

    def dfun(buf, x, t, p):
        k, lag = p
        helper = base._replace(lags=lag)
        if model == "montbrio":
            return vb.mpr_dfun(x, k * vb.delay_apply(helper, t, buf), vb.mpr_default_theta)
        delayed = buf[t - lag, 0, helper.ix_lag_from]  # (n_to, n_from)
        c = k * (weights * jnp.sin(delayed - x[0][:, None])).sum(axis=1)
        return (1.0 + c)[None]

    _, loop = vb.make_sdde(dt, nh, dfun, 0.0)
    every = int(round(1.0 / dt))

    def run(k, lag):
        x0 = jnp.asarray(config["x0"], dtype=config["dtype"])
        buf = jnp.zeros((nh + n_steps + 1, n_svar, n), dtype=config["dtype"]) + x0
        buf, xs = loop(buf, (k, lag))
        return xs.reshape((n_steps // every, every, n_svar, n)).mean(axis=1)

    batched = jax.jit(jax.vmap(run))
    k = jnp.asarray(couplings, dtype=config["dtype"]); lag = jnp.asarray(lags)
    batched(k, lag).block_until_ready()  # compile
    started = time.perf_counter()
    batched(k, lag).block_until_ready()
    seconds = time.perf_counter() - started
    print(json.dumps({"rate": len(couplings) * n_steps / seconds}))
""")


def vbjax_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vbjax") is not None


def time_vbjax(model, conn, dtype, n_steps, n_sets) -> dict | None:
    """vbjax (make_sdde, vmap over ``n_sets`` sets in one batch, jit) in a separate process
    (importing vbjax sets XLA_FLAGS): set-steps per second of the second call."""
    params = sweep_params(model)
    picks = np.linspace(0, len(params["global_speed"]) - 1, n_sets).astype(int)
    config = dict(model=model, dtype=dtype, dt=DT, n_steps=n_steps,
                  weights=np.asarray(conn.weights).tolist(),
                  lengths=np.asarray(conn.tract_lengths).tolist(),
                  speeds=params["global_speed"][picks].tolist(),
                  couplings=params["global_coupling"][picks].tolist(),
                  x0=initial_state(model, conn.n_regions).tolist())
    out = subprocess.run([sys.executable, "-c", VBJAX_SCRIPT, json.dumps(config)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  (vbjax {model} {dtype} failed: {out.stderr.strip().splitlines()[-1:]})")
        return None
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(sets=n_sets, steps=n_steps)
    return result


# --------------------------------------------------------------------------- report
def fmt(value, digits=3):
    return "—" if value is None else f"{value:.{digits}g}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 steps instead of 4,000")
    parser.add_argument("--no-tvb", action="store_true")
    parser.add_argument("--no-vbjax", action="store_true")
    args = parser.parse_args(argv)
    n_steps = 1000 if args.quick else 4000
    single_steps = 10_000
    tvb = tvb_available() and not args.no_tvb
    vbjax = vbjax_available() and not args.no_vbjax

    info = machine()
    conn, conn_name = connectivity()
    nnz = conn.edges()[0].size
    print(f"# neuralmass Numba backend benchmark — {datetime.date.today()}")
    print(f"machine: {info.get('cpu')}, {info.get('cores')} cores, {info.get('ram_gib')} GiB "
          f"RAM, L2 {info.get('L2 cache')}, L3 {info.get('L3 cache')}; load average "
          f"{info['load']:.2f} at start")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"connectome: {conn_name}, {conn.n_regions} regions, {nnz} edges; dt {DT} ms, Heun, "
          f"{N_COUPLINGS * N_SPEEDS} sets ({N_COUPLINGS} couplings × {N_SPEEDS} speeds "
          f"{SPEED_RANGE[0]:g}–{SPEED_RANGE[1]:g} mm/ms) × {n_steps} steps, {MONITOR}")
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s (np.copyto of 1 GiB, best of 5, "
          "bytes read + written)")

    cache = tempfile.mkdtemp(prefix="neuralmass-bench-cache-")
    os.environ["NEURALMASS_CACHE_DIR"] = cache
    rows = []
    for model in MODELS:
        for dtype in DTYPES:
            plan = sweep_plan(model, conn, dtype, n_steps)
            result = time_numba(plan)
            rate = plan.n_sets * n_steps / result["seconds"]
            itemsize = np.dtype(dtype).itemsize
            traffic = plan.n_sets * n_steps * nnz * CHANNELS[model] * itemsize
            rows.append(dict(model=model, dtype=dtype, rate=rate,
                             cold=plan.n_sets * n_steps / result["cold_seconds"],
                             gbps=traffic / result["seconds"] / 1e9,
                             compile=result["prepare_seconds"], lanes=result["lanes"],
                             tiles=result["tiles"], finite=result["finite"]))
            print(f"  numba {model} {dtype}: {rate:.3g} set-steps/s (cold {rows[-1]['cold']:.3g}),"
                  f" {rows[-1]['gbps']:.1f} GB/s, compile+prepare {result['prepare_seconds']:.1f}"
                  f" s, {result['lanes']} lanes × {result['tiles']} tiles"
                  + ("" if result["finite"] else " (NON-FINITE values in the output)"))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = second_process_start(cache, n_steps)
    print(f"  second process with the disk cache: import {start['import']:.2f} s, plan "
          f"{start['plan']:.2f} s, prepare (lower + load compiled code + allocate + "
          f"initialise) {start['prepare']:.2f} s; whole process {start['process']:.2f} s")

    singles = []
    for model in MODELS:
        for dtype in ("float64", "float32"):
            plan = single_plan(model, conn, dtype, single_steps)
            result = time_numba(plan)
            singles.append(dict(model=model, dtype=dtype,
                                rate=single_steps / result["seconds"]))
            print(f"  numba single {model} {dtype}: {singles[-1]['rate']:.3g} steps/s")

    tvb_sweep, tvb_single, tvb_numba = {}, {}, None
    if tvb:
        tvb_sets = 2 if args.quick else 4
        for model in MODELS:
            tvb_sweep[model] = time_tvb_sweep(model, conn, n_steps, tvb_sets)
            tvb_single[model] = time_tvb_single(model, conn, 2000 if args.quick else
                                                single_steps)
            print(f"  tvb-library {model}: sweep {tvb_sweep[model]['rate']:.3g} set-steps/s "
                  f"({tvb_sets} sets × {n_steps} steps, extrapolated linearly to 1,024 sets); "
                  f"single {tvb_single[model]:.3g} steps/s")
        tvb_numba = time_tvb_numba_mpr(conn, 5 * single_steps)
        if tvb_numba:
            print(f"  tvb-library Numba MPR backend, single: {tvb_numba:.3g} steps/s")
    vb_sweep = {}
    if vbjax:
        for model in MODELS:
            for dtype in DTYPES:
                result = time_vbjax(model, conn, dtype, n_steps, VBJAX_BATCH)
                if result:
                    vb_sweep[model, dtype] = result["rate"]
                    print(f"  vbjax {model} {dtype}: {result['rate']:.3g} set-steps/s (one vmap "
                          f"batch of {VBJAX_BATCH} sets × {n_steps} steps timed, extrapolated "
                          "linearly to 1,024 sets)")

    print()
    print(f"| sweep (1,024 sets × {n_steps} steps) | neuralmass numba set-steps/s | effective "
          "GB/s (% of copy bw) | compile s | tvb-library | vbjax | × tvb | × vbjax |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        tvb_rate = tvb_sweep.get(row["model"], {}).get("rate")
        vb_rate = vb_sweep.get((row["model"], row["dtype"]))
        print(f"| {row['model']} {row['dtype']} | {row['rate']:.3g} | {row['gbps']:.1f} "
              f"({100 * row['gbps'] * 1e9 / bandwidth:.0f} %) | {row['compile']:.1f} | "
              f"{fmt(tvb_rate)} | {fmt(vb_rate)} | "
              f"{fmt(row['rate'] / tvb_rate if tvb_rate else None, 4)} | "
              f"{fmt(row['rate'] / vb_rate if vb_rate else None, 4)} |")
    print()
    print("| single simulation (1 set × 10,000 steps) | neuralmass numba steps/s | tvb-library "
          "| × tvb | tvb-library Numba MPR backend | × it |")
    print("|---|---|---|---|---|---|")
    for single in singles:
        tvb_rate = tvb_single.get(single["model"])
        nb_rate = tvb_numba if single["model"] == "montbrio" else None
        print(f"| {single['model']} {single['dtype']} | {single['rate']:.3g} | {fmt(tvb_rate)} "
              f"| {fmt(single['rate'] / tvb_rate if tvb_rate else None, 4)} | {fmt(nb_rate)} "
              f"| {fmt(single['rate'] / nb_rate if nb_rate else None, 4)} |")
    print(f"\ncopy bandwidth {bandwidth / 1e9:.1f} GB/s; effective GB/s = sets × steps × nnz "
          f"({nnz}) × C × bytes / time, C = history channels read per edge "
          f"({', '.join(f'{m} {c}' for m, c in CHANNELS.items())}); peak RSS "
          f"{peak_rss:.2f} GiB (after the neuralmass runs); second-process start "
          f"{start['prepare']:.2f} s after import ({start['import']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
