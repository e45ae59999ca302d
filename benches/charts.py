"""Charts and tables of the benchmarks that write their figures as JSON (issue 15).

    python3 benches/charts.py batching        # benches/results/batching/results.json
    python3 benches/charts.py operator-scale  # benches/results/operator-scale/results.json
    python3 benches/charts.py cold-ci         # benches/results/cold-ci/results.json
    python3 benches/charts.py cold-ci --steps STEPS --timings cargo-timing.html  # collect first

Each writes `table.md` and `<name>.png` beside its `results.json`. The Rust benches write the
JSON (`cargo bench --workspace --bench batching`, `--bench models`); the cold-CI figures are
collected from a timed cold run's step log (lines `<seconds> <step>`) and cargo's `--timings`
report. `benches/charts.sh` runs this with matplotlib from a venv under ~/.cache/leitwerk.
"""

import argparse
import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        print("matplotlib is missing: no chart (benches/charts.sh installs it)", file=sys.stderr)
        return None
    return pyplot


def batching(results, out):
    modes = ["no batching", "adaptive 32", "window 32/2ms"]
    lines = [
        f"Batching, {results['date']}, {results['cpus']} CPUs: {results['what']}; "
        f"{results['seconds_per_run']} s per run, median of {results['rounds']}.",
        "",
        "| case | connections | mode | req/s | p50 µs | p99 µs | req/s vs no batching |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, cells in results["cases"].items():
        for c in cells:
            lines.append(
                f"| {case} | {c['connections']} | {c['mode']} | {c['rps']:,.0f} | "
                f"{c['p50_us']:,.0f} | {c['p99_us']:,.0f} | {c['vs_no_batching']:.2f}× |"
            )
    pyplot = plt()
    if pyplot:
        cases = list(results["cases"].items())
        fig, axes = pyplot.subplots(1, len(cases), figsize=(4.2 * len(cases), 4), squeeze=False)
        for ax, (case, cells) in zip(axes[0], cases):
            conns = sorted({c["connections"] for c in cells})
            width = 0.8 / len(modes)
            for k, mode in enumerate(modes):
                values = [
                    next((c["vs_no_batching"] for c in cells
                          if c["mode"] == mode and c["connections"] == n), 0)
                    for n in conns
                ]
                ax.bar([i + k * width for i in range(len(conns))], values, width, label=mode)
            ax.axhline(1.0, color="grey", linewidth=0.8)
            # The goal for an expensive model at 16 connections.
            ax.axhline(3.0, color="red", linestyle="--", linewidth=0.8,
                       label="goal, expensive model at 16 conn.: 3×")
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(conns))],
                          [f"{n} conn." for n in conns])
            ax.set_title(case, fontsize=8)
            ax.set_ylabel("throughput vs no batching")
        axes[0][0].legend(fontsize=7)
        fig.suptitle("Adaptive batching against none and a fixed window (same run)")
        fig.tight_layout()
        fig.savefig(out / "batching.png", dpi=100)
    return lines


def operator_scale(results, out):
    goals = results["goals"]
    sizes = sorted(results["sizes"].items(), key=lambda kv: int(kv[0]))
    lines = [
        f"The operator at scale, {results['date']}, {results['cpus']} CPUs: {results['what']}.",
        "",
        "| figure | " + " | ".join(f"{int(n):,} units" for n, _ in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    rows = [
        ("objects", "objects", "{:,.0f}"),
        ("objects created (s)", "created_s", "{:.1f}"),
        (f"every Model Ready (s; goal ≤ {goals['models_ready_s_at_1000']} s at 1,000)",
         "models_ready_s", "{:.1f}"),
        ("every FeatureSet Ready (s)", "feature_sets_ready_s", "{:.1f}"),
        ("reconciles", "reconciles", "{:,.0f}"),
        ("API requests (watches apart)", "requests", "{:,.0f}"),
        ("operator CPU until settled (s)", "operator_cpu_s", "{:.1f}"),
        (f"resident memory, settled (MiB; goal ≤ {goals['rss_mib_at_5000_objects']} at 5,000 objects)",
         "rss_settled_mib", "{:.1f}"),
        ("requests in a settled minute (goal 0)", "settled_minute_requests", "{:.0f}"),
        ("lists in a forced relist", "relist_lists", "{:,.0f}"),
        ("resident memory after the relist (MiB)", "rss_after_relist_mib", "{:.1f}"),
    ]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(s[key]) for _, s in sizes) + " |")
    for n, s in sizes:
        beside = ", ".join(f"{k} {v:.1f} s" for k, v in s["cpu_beside_s"].items())
        lines.append("")
        lines.append(f"CPU beside the operator until settled at {int(n):,} units: {beside}.")
    pyplot = plt()
    if pyplot:
        fig, (ready, cpu, mem) = pyplot.subplots(1, 3, figsize=(13, 4))
        labels = [f"{int(n):,}" for n, _ in sizes]
        ready.bar(labels, [s["models_ready_s"] for _, s in sizes], label="every Model Ready")
        ready.axhline(goals["models_ready_s_at_1000"], color="red", linestyle="--",
                      label=f"goal at 1,000: {goals['models_ready_s_at_1000']} s")
        ready.set_ylabel("seconds from the first create")
        ready.set_xlabel("units (Model + FeatureSet + Experiment)")
        ready.legend(fontsize=7)
        # Whose CPU the time to Ready is: the API server's, on the same two cores.
        parts = sorted({k for _, s in sizes for k in s["cpu_beside_s"]})
        bottom = [s["operator_cpu_s"] for _, s in sizes]
        cpu.bar(labels, bottom, label="operator")
        for part in parts:
            values = [s["cpu_beside_s"].get(part, 0) for _, s in sizes]
            cpu.bar(labels, values, bottom=bottom, label=part)
            bottom = [b + v for b, v in zip(bottom, values)]
        cpu.set_ylabel("CPU-seconds until settled")
        cpu.set_xlabel("units")
        cpu.legend(fontsize=7)
        mem.bar(labels, [s["rss_settled_mib"] for _, s in sizes], label="settled")
        mem.scatter(labels, [s["rss_relist_peak_mib"] for _, s in sizes], color="black",
                    zorder=3, label="peak in a forced relist")
        mem.axhline(goals["rss_mib_at_5000_objects"], color="red", linestyle="--",
                    label=f"goal at 5,000 objects (1,667 units): "
                          f"{goals['rss_mib_at_5000_objects']} MiB")
        mem.set_ylabel("operator resident memory (MiB)")
        mem.set_xlabel("units")
        mem.legend(fontsize=7)
        fig.suptitle("The operator at scale on a local control plane (one run per size)")
        fig.tight_layout()
        fig.savefig(out / "operator-scale.png", dpi=100)
    return lines


def collect_cold_ci(steps_path, timings_path):
    """The steps of a timed cold run (`<seconds> <name>` per line) and cargo's per-unit times."""
    steps = []
    for line in Path(steps_path).read_text().splitlines():
        seconds, _, name = line.strip().partition(" ")
        if seconds:
            steps.append({"step": name, "seconds": float(seconds)})
    html = Path(timings_path).read_text()
    match = re.search(r"const UNIT_DATA = (\[.*?\]);", html, re.S)
    if not match:
        raise SystemExit(f"{timings_path}: no UNIT_DATA (not a cargo --timings report?)")
    units = json.loads(match.group(1))
    groups = {}
    for u in units:
        name = u["name"]
        group = ("polars" if name.startswith("polars") else
                 "candle" if name.startswith("candle") else
                 "kube and k8s-openapi" if name.startswith(("kube", "k8s-openapi")) else
                 "LightGBM's C++ (lightgbm3-sys)" if name == "lightgbm3-sys" else
                 "the workspace's own crates" if name.startswith("leitwerk") else
                 "everything else")
        groups[group] = groups.get(group, 0.0) + u["duration"]
    # A crate builds several units (its library, test binaries, a build script's run).
    crates = sorted((((u["name"] + " " + u["target"].strip()).strip(), u["duration"])
                     for u in units), key=lambda t: -t[1])[:15]
    return {
        "steps": steps,
        "units": len(units),
        "unit_seconds_by_group": groups,
        "slowest_units": [{"name": n, "seconds": d} for n, d in crates],
    }


def cold_ci(results, out):
    total = sum(s["seconds"] for s in results["steps"])
    lines = [
        f"A cold CI run's steps, {results['date']}, {results['cpus']} CPUs: {results['what']}.",
        "",
        "| step | wall-clock | share |",
        "|---|---|---|",
    ]
    for s in results["steps"]:
        lines.append(f"| {s['step']} | {s['seconds'] / 60:.1f} min | "
                     f"{100 * s['seconds'] / total:.0f} % |")
    lines.append(f"| **all** | **{total / 60:.1f} min** | |")
    lines += ["", f"The workspace build's {results['units']} units, by time spent compiling each "
              "(two at once, so the sum exceeds the wall-clock):", "",
              "| units | seconds |", "|---|---|"]
    groups = sorted(results["unit_seconds_by_group"].items(), key=lambda kv: -kv[1])
    lines += [f"| {g} | {v:,.0f} |" for g, v in groups]
    lines += ["", "Slowest units: " + ", ".join(
        f"{u['name']} {u['seconds']:.0f} s" for u in results["slowest_units"]) + "."]
    pyplot = plt()
    if pyplot:
        fig, (steps, units) = pyplot.subplots(1, 2, figsize=(12, 4))
        names = [s["step"] for s in results["steps"]]
        steps.barh(names, [s["seconds"] / 60 for s in results["steps"]])
        steps.axvline(60, color="red", linestyle="--", label="goal: the whole run ≤ 60 min")
        steps.set_xlabel(f"minutes (all: {total / 60:.1f})")
        steps.invert_yaxis()
        steps.legend(fontsize=7)
        units.barh([g for g, _ in groups], [v / 60 for _, v in groups])
        units.set_xlabel("compile minutes of the workspace build (2 units at once)")
        units.invert_yaxis()
        fig.suptitle("A cold CI run from an empty ~/.cache, where the time goes")
        fig.tight_layout()
        fig.savefig(out / "cold-ci.png", dpi=100)
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("name", choices=["batching", "operator-scale", "cold-ci"])
    p.add_argument("--steps", help="cold-ci: the step log to collect (`<seconds> <step>` lines)")
    p.add_argument("--timings", help="cold-ci: cargo's --timings HTML report of the build")
    p.add_argument("--what", default="the steps of .ci/run from an empty ~/.cache")
    args = p.parse_args()
    out = RESULTS / args.name
    path = out / "results.json"
    if args.name == "cold-ci" and args.steps and args.timings:
        import datetime
        import os

        collected = collect_cold_ci(args.steps, args.timings)
        collected.update(what=args.what, date=datetime.date.today().isoformat(),
                         cpus=os.cpu_count())
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(collected, indent=1) + "\n")
    if not path.exists():
        raise SystemExit(f"{path} is missing: run the benchmark first (see the docstring)")
    results = json.loads(path.read_text())
    draw = {"batching": batching, "operator-scale": operator_scale, "cold-ci": cold_ci}
    lines = draw[args.name](results, out)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
