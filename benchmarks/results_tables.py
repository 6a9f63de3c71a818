"""Markdown tables for RESULTS.md from the JSON files ``neuralmass bench --json`` writes.

    uv run python benchmarks/results_tables.py B.json C.json D.json > tables.md

Panel B (a fixed size): one row per backend, model and dtype, with run times, set-steps/s,
effective and copy bandwidth, compile time and peak RSS, then the peers and their ratios.
Panels C and D (``--scan sets`` / ``--scan steps``): set-steps/s per size, one row per
backend, model and dtype, then the sizes each scan stopped before and why. Nothing is
computed here that the JSON does not hold; figures are rounded to three digits.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def _g(value) -> str:
    return "—" if value is None else f"{value:.3g}"


def machine_line(report: dict) -> str:
    m, w = report["machine"], report["workload"]
    gpu = m["gpu"]["name"] if m.get("gpu") else "no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v != "not installed")
    argv = " ".join(["neuralmass", *report["argv"][1:]])
    return (f"- `{argv}` ({report['date']}): {m['cpu']}, {m['cores']} cores,"
            f" {m['ram_gib']} GiB, {gpu}, load {m['load']:.2f} at the start; {versions}. "
            f"Workload: {w['connectivity']} connectome ({w['n_regions']} regions, {w['nnz']:,}"
            f" edges), dt {w['dt_ms']} ms, {w['integrator']}, {w['monitor']}; copy bandwidth "
            f"{_g(report['copy_bandwidth_gb_s']['host'])} GB/s (host).")


def panel_b(report: dict) -> list[str]:
    lines = ["| backend | model | dtype | sets × steps | set-steps/s | run s min / median / max "
             "| effective GB/s (C) | % of copy | compile s cold / cached | peak RSS GiB |",
             "|---|---|---|---|---:|---|---|---:|---|---:|"]
    for r in report["results"]:
        run, compile_s = r["run_s"], r["compile_s"]
        lines.append(
            f"| {r['backend']} | {r['model']} | {r['dtype']} | {r['sets']:,} × {r['steps']:,} | "
            f"{_g(r['set_steps_per_s'])} | {_g(run['min'])} / {_g(run['median'])} / "
            f"{_g(run['max'])} | {_g(r['effective_gb_s'])} ({r['channels']}) | "
            f"{100 * r['fraction_of_copy']:.0f} % | {_g(compile_s['cold'])} / "
            f"{_g(compile_s['cached'])} | {_g(r['peak_rss_gib'])} |")
    return lines


def peers(report: dict) -> list[str]:
    lines = ["| peer | model | dtype | sets × steps | set-steps/s | measured | neuralmass × |",
             "|---|---|---|---|---:|---|---|"]
    for p in report["peers"]:
        if p.get("status") != "ok":
            lines.append(f"| {p['peer']} | {p.get('model', '—')} | {p.get('dtype', '—')} | — | "
                         f"{p['status']} | — | — |")
            continue
        ratios = ", ".join(f"{k} {v:,.0f}×" for k, v in p["ratio"].items())
        measured = f"{p['measured_sets']} sets" + (", extrapolated" if p["extrapolated"] else "")
        lines.append(f"| {p['peer']} | {p['model']} | {p['dtype']} | {p['sets']:,} × "
                     f"{p['steps']:,} | {_g(p['set_steps_per_s'])} | {measured} | {ratios} |")
    return lines


def scan(report: dict, axis: str) -> list[str]:
    """set-steps/s against ``axis`` ("sets" or "steps")."""
    rows, sizes = defaultdict(dict), set()
    for r in report["results"]:
        rows[r["backend"], r["model"], r["dtype"]][r[axis]] = r["set_steps_per_s"]
        sizes.add(r[axis])
    sizes = sorted(sizes)
    lines = ["| backend | model | dtype | " + " | ".join(f"{s:,}" for s in sizes) + " |",
             "|---|---|---|" + "---:|" * len(sizes)]
    for (backend, model, dtype), rates in rows.items():
        lines.append(f"| {backend} | {model} | {dtype} | "
                     + " | ".join(_g(rates.get(s)) for s in sizes) + " |")
    lines += [f"- stopped {s['backend']} {s['model']} {s['dtype']} at {s['sets']:,} sets × "
              f"{s['steps']:,} steps: {s['reason']}" for s in report["stopped"]]
    return lines


def tables(report: dict) -> str:
    panels = {r["panel"] for r in report["results"]}
    lines = [machine_line(report), ""]
    if panels == {"B"}:
        lines += panel_b(report)
        if report["peers"]:
            lines += ["", *peers(report)]
    else:
        lines += scan(report, "sets" if panels == {"C"} else "steps")
    lines += [f"- skipped {s['backend']}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="files written by neuralmass bench --json")
    for path in parser.parse_args().json:
        with open(path) as file:
            print(tables(json.load(file)) + "\n")


if __name__ == "__main__":
    main()
