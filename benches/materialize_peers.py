"""Materialization against Feast and hand-written polars (issue 15, point 4).

The same point-in-time-correct training set — leads × 26 weekly cutoffs × windowed
aggregations of their events, and a label from the 30 days after each cutoff — built three
ways on the same generated events:

* `leitwerk-trainer materialize`, the FeatureSet Job, as a process (it also writes the
  snapshot's statistics and manifest, as the Job does);
* Feast's offline store (`feast` with its file source and the dask offline store,
  `get_historical_features`). Feast leaves windowed aggregations to the user
  (`feast.aggregation.Aggregation`: "Feast-handled aggregations are not yet supported" in
  offline retrieval), so the Feast side is what a Feast user writes: running totals per lead
  (one cumulative sum per event, in polars), which Feast joins point in time at each cutoff
  and at each window's start; the window's value is the difference;
* hand-written polars in Python, the engine's own limit: the best plan we know for it
  (the same running totals, joined with `join_asof`).

Each runs as its own process; the driver reports wall time and peak resident memory
(`wait4`), checks that the three tables are equal row for row, and writes `table.md`,
`results.json` and `materialize_peers.png`. `benches/materialize_peers.sh` sets it up.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

DAY_MS = 86_400_000
START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
SPAN_DAYS = 365
EVENTS_PER_LEAD = 40
CUTOFFS = 26
EVERY_DAYS = 7
HORIZON_DAYS = 30
KEY = "lead_id"

# The FeatureSet: what each side computes. (name, aggregation, column, filter, windows)
FEATURES = [
    ("page_views", "Count", None, "page_view", ["7d", "30d", "90d"]),
    ("email_opens", "Count", None, "email_open", ["30d"]),
    ("session_minutes", "Mean", "duration_min", None, ["30d"]),
    ("minutes_viewed", "Sum", "duration_min", "page_view", ["7d", "90d"]),
    ("last_session_minutes", "Last", "duration_min", "page_view", ["90d"]),
]
LABEL = "converted_30d"


def days(window):
    return int(window.rstrip("d"))


def columns():
    return [f"{n}_{w}" for n, _, _, _, ws in FEATURES for w in ws]


# ---------------------------------------------------------------------------- data


def generate(rows, seed, path):
    """Events of rows/40 leads over a year: each lead arrives in the first 60 % of the year
    and has about 40 events after that (one each, the rest spread uniformly over the leads),
    with unique timestamps per lead (so "last" is well defined). A page view has a duration; other events have none (null)."""
    rng = np.random.default_rng(seed)
    leads = max(rows // EVENTS_PER_LEAD, 1)
    counts = rng.multinomial(rows - leads, np.full(leads, 1.0 / leads)) + 1
    lead = np.repeat(np.arange(leads), counts)
    arrival = rng.integers(0, int(SPAN_DAYS * 0.6) * DAY_MS, leads)
    span = SPAN_DAYS * DAY_MS - arrival
    offset = (rng.random(rows) * span[lead]).astype(np.int64)
    ts = START_MS + arrival[lead] + offset
    # Unique per lead: sort within the lead and add the rank in milliseconds.
    order = np.lexsort((ts, lead))
    lead, ts = lead[order], ts[order]
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    ts = ts + (np.arange(rows) - starts)
    kind = rng.choice(3, rows, p=[0.62, 0.3, 0.08])
    types = np.array(["page_view", "email_open", "conversion"])[kind]
    duration = np.round(rng.lognormal(1.0, 0.8, rows), 2)
    frame = pl.DataFrame(
        {
            KEY: np.char.add("L", np.char.zfill(lead.astype(str), 7)),
            "ts": pl.Series(ts).cast(pl.Datetime("ms")),
            "event_type": types,
            "duration_min": pl.Series(duration).set(pl.Series(kind != 0), None),
        }
    )
    frame.write_parquet(path)
    return leads


def spec(events):
    """The FeatureSet spec `leitwerk-trainer materialize` reads."""
    feats = []
    for name, agg, column, flt, windows in FEATURES:
        f = {"name": name, "source": "events", "aggregation": agg, "windows": windows}
        if column:
            f["column"] = column
        if flt:
            f["filter"] = f"event_type == '{flt}'"
        feats.append(f)
    return {
        "sources": [{"name": "events", "format": "Parquet", "file": {"path": str(events)}}],
        "entityKey": KEY,
        "eventTimestamp": "ts",
        "label": {
            "name": LABEL,
            "source": "events",
            "kind": "EventOccurs",
            "filter": "event_type == 'conversion'",
            "horizon": f"{HORIZON_DAYS}d",
        },
        "features": feats,
        "cutoffs": {"every": f"{EVERY_DAYS}d", "count": CUTOFFS},
    }


# ----------------------------------------------------------------- shared by the peers


def cutoff_list(events):
    """As the FeatureSet computes them: the newest midnight whose horizon is observed, and
    25 more a week apart."""
    until = events.select(pl.col("ts").cast(pl.Int64).max()).item()
    last = (until - HORIZON_DAYS * DAY_MS) // DAY_MS * DAY_MS
    return [last - k * EVERY_DAYS * DAY_MS for k in reversed(range(CUTOFFS))]


def spine(events, cutoffs):
    """(lead, cutoff) for every lead whose first event is before the cutoff."""
    first = events.group_by(KEY).agg(pl.col("ts").cast(pl.Int64).min().alias("first"))
    cut = pl.DataFrame({"cutoff": cutoffs})
    return first.join(cut, how="cross").filter(pl.col("first") < pl.col("cutoff")).drop("first")


def running_totals(events):
    """Per event, the lead's running totals up to and including it, one frame per filter."""
    ev = events.with_columns(pl.col("ts").cast(pl.Int64)).sort(KEY, "ts")
    page = ev.filter(pl.col("event_type") == "page_view").select(
        KEY,
        "ts",
        pl.int_range(1, pl.len() + 1).over(KEY).alias("n_page"),
        pl.col("duration_min").fill_null(0).cum_sum().over(KEY).alias("sum_page"),
        pl.col("duration_min").alias("last_page"),
    )
    email = ev.filter(pl.col("event_type") == "email_open").select(
        KEY, "ts", pl.int_range(1, pl.len() + 1).over(KEY).alias("n_email")
    )
    every = ev.select(
        KEY,
        "ts",
        pl.col("duration_min").is_not_null().cum_sum().over(KEY).alias("n_dur"),
        pl.col("duration_min").fill_null(0).cum_sum().over(KEY).alias("sum_dur"),
    )
    conv = ev.filter(pl.col("event_type") == "conversion").select(
        KEY, "ts", pl.int_range(1, pl.len() + 1).over(KEY).alias("n_conv")
    )
    return {"page": page, "email": email, "every": every, "conv": conv}


def assemble(at, frame):
    """The training table from the running totals looked up at each point in time.
    `at(view, offset_ms)` gives the view's columns (and `ts`) as of cutoff + offset − 1 ms,
    null where the lead has no earlier row."""
    d = DAY_MS
    zero = pl.lit(0)

    def diff(view, column, w):
        now, then = at(view, 0), at(view, -w * d)
        return (now[column].fill_null(0) - then[column].fill_null(0)).cast(pl.Float64)

    out = frame.select(KEY, pl.col("cutoff").cast(pl.Datetime("ms")))
    cols = {}
    for w in (7, 30, 90):
        cols[f"page_views_{w}d"] = diff("page", "n_page", w)
    cols["email_opens_30d"] = diff("email", "n_email", 30)
    n = diff("every", "n_dur", 30)
    s = diff("every", "sum_dur", 30)
    cols["session_minutes_30d"] = pl.Series((s / n).to_numpy()).set(n == 0, None)
    for w in (7, 90):
        cols[f"minutes_viewed_{w}d"] = diff("page", "sum_page", w)
    now = at("page", 0)
    fresh = now["ts"].fill_null(-(2**62)) >= frame["cutoff"] - 90 * d
    cols["last_session_minutes_90d"] = now["last_page"].cast(pl.Float64).set(~fresh, None)
    conv = (at("conv", HORIZON_DAYS * d)["n_conv"].fill_null(0) - at("conv", 0)["n_conv"].fill_null(0)) > zero
    out = out.with_columns(**{c: cols[c] for c in columns()}, **{LABEL: conv})
    return out.sort("cutoff", KEY)


# --------------------------------------------------------------------------- peers


def run_polars(events_path, out_path):
    events = pl.read_parquet(events_path)
    cutoffs = cutoff_list(events)
    frame = spine(events, cutoffs).sort("cutoff")
    views = running_totals(events)
    cache = {}

    def at(view, offset):
        if (view, offset) not in cache:
            left = frame.with_columns((pl.col("cutoff") + offset - 1).alias("__at"))
            right = views[view].sort("ts")
            joined = left.join_asof(
                right, left_on="__at", right_on="ts", by=KEY, strategy="backward"
            )
            # join_asof keeps the left order, so the rows line up with `frame`.
            cache[(view, offset)] = joined
        return cache[(view, offset)]

    assemble(at, frame).write_parquet(out_path)


def run_feast(events_path, out_path, work):
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64

    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    events = pl.read_parquet(events_path)
    cutoffs = cutoff_list(events)
    frame = spine(events, cutoffs).sort("cutoff", KEY)
    views = running_totals(events)
    schemas = {
        "page": [("n_page", Int64), ("sum_page", Float64), ("last_page", Float64)],
        "email": [("n_email", Int64)],
        "every": [("n_dur", Int64), ("sum_dur", Float64)],
        "conv": [("n_conv", Int64)],
    }
    # The dask offline store drops an entity row when the view has no row of that lead at or
    # before its timestamp (its TTL filter runs after a left merge); a row of zeros per lead
    # at the epoch keeps every row, as a Feast user has to.
    leads = frame.select(KEY).unique()
    for name, view in views.items():
        zeros = leads.with_columns(
            pl.lit(0, pl.Int64).alias("ts"),
            *[pl.lit(None if c == "last_page" else 0).cast(view.schema[c]).alias(c)
              for c in view.columns if c not in (KEY, "ts")],
        )
        pl.concat([zeros, view]).with_columns(
            pl.col("ts").cast(pl.Datetime("ms", "UTC"))
        ).write_parquet(work / f"{name}.parquet")
    timings["prepare_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    config = RepoConfig(
        project="bench",
        registry=str(work / "registry.db"),
        provider="local",
        offline_store=DaskOfflineStoreConfig(),
        online_store={"type": "sqlite", "path": str(work / "online.db")},
        entity_key_serialization_version=3,
        repo_path=str(work),
    )
    store = FeatureStore(config=config)
    lead = Entity(name="lead", join_keys=[KEY], value_type=ValueType.STRING)
    fvs = [
        FeatureView(
            name=name,
            entities=[lead],
            ttl=timedelta(0),
            schema=[Field(name=c, dtype=t) for c, t in schema],
            source=FileSource(path=str(work / f"{name}.parquet"), timestamp_field="ts"),
        )
        for name, schema in schemas.items()
    ]
    store.apply([lead, *fvs])
    cache = {}
    wanted = {0: ["page", "email", "every", "conv"], -7: ["page"], -30: ["page", "email", "every"],
              -90: ["page"], HORIZON_DAYS: ["conv"]}
    for off_days, names in wanted.items():
        entity_df = frame.select(
            KEY,
            (pl.col("cutoff") + off_days * DAY_MS - 1)
            .cast(pl.Datetime("ms", "UTC"))
            .alias("event_timestamp"),
            pl.int_range(pl.len()).alias("row"),
        ).to_pandas()
        refs = [f"{n}:{c}" for n in names for c, _ in schemas[n]]
        got = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
        got = pl.from_pandas(got).sort("row")
        if got.height != frame.height:
            raise SystemExit(f"feast returned {got.height} rows for {frame.height} entity rows")
        for n in names:
            cache[(n, off_days * DAY_MS)] = got.select(c for c, _ in schemas[n])
    timings["feast_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    # `last` needs the time of the page view found at the cutoff: the n-th page view of the lead.
    page = views["page"].select(KEY, "n_page", "ts")
    found = frame.select(KEY).with_columns(cache[("page", 0)]["n_page"]).join(
        page, on=[KEY, "n_page"], how="left", maintain_order="left"
    )

    def at(view, offset):
        got = cache[(view, offset)]
        if view == "page" and offset == 0:
            got = got.with_columns(found["ts"])
        return got

    assemble(at, frame).write_parquet(out_path)
    timings["assemble_s"] = time.perf_counter() - t2
    print(json.dumps(timings))


# --------------------------------------------------------------------------- driver


def rss_of(cmd):
    """Wall seconds, peak RSS (MiB, measured by GNU time) and stdout of cmd."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "__rss_kib=%M", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    err = p.stderr
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} {cmd[1]} failed ({p.returncode}):\n{err[-3000:]}")
    kib = int(err.rsplit("__rss_kib=", 1)[1].split()[0])
    return seconds, kib / 1024, p.stdout


def compare(ours, theirs, who):
    """Row-for-row equality: same keys, cutoffs and labels; features within 1e-9 relative."""
    a = pl.read_parquet(ours).sort("cutoff", KEY)
    b = pl.read_parquet(theirs).sort("cutoff", KEY)
    if a.height != b.height:
        raise SystemExit(f"{who}: {b.height} rows, Leitwerk {a.height}")
    for c in [KEY, "cutoff", LABEL]:
        if not a[c].cast(b[c].dtype).equals(b[c]):
            raise SystemExit(f"{who}: column {c} differs")
    worst = 0.0
    for c in columns():
        x, y = a[c].cast(pl.Float64), b[c].cast(pl.Float64)
        if not x.is_null().equals(y.is_null()):
            raise SystemExit(f"{who}: column {c} has nulls in other rows")
        d = ((x - y).abs() / (x.abs().clip(lower_bound=1.0))).max()
        worst = max(worst, d or 0.0)
    if worst > 1e-9:
        raise SystemExit(f"{who}: a feature differs by {worst:.3g} (relative)")
    return worst


def drive(args):
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, os.path.abspath(__file__)]
    results = []
    for rows in args.rows:
        events = work / f"events-{rows}.parquet"
        leads = generate(rows, args.seed, events)
        (work / "spec.json").write_text(json.dumps(spec(events)))
        store = work / "store"
        lw_s, lw_mib, lw_out = rss_of(
            [args.trainer, "materialize", "--spec", f"@{work / 'spec.json'}", "--namespace",
             "bench", "--name", f"events-{rows}", "--artifact-store", f"file://{store}",
             "--termination-log", str(work / "termination-log"), "--work-dir", str(work)]
        )
        summary = json.loads(lw_out.strip().splitlines()[-1])
        ours = Path(summary["location"].removeprefix("file://")) / "features.parquet"
        pl_s, pl_mib, _ = rss_of([*me, "polars", str(events), str(work / "polars.parquet")])
        pl_diff = compare(ours, work / "polars.parquet", "polars")
        row = {
            "rows": rows, "leads": leads, "table_rows": summary["rows"],
            "leitwerk_s": lw_s, "leitwerk_mib": lw_mib,
            "polars_s": pl_s, "polars_mib": pl_mib, "polars_max_rel_diff": pl_diff,
        }
        if rows <= args.feast_max_rows:
            fe_s, fe_mib, fe_out = rss_of(
                [*me, "feast", str(events), str(work / "feast.parquet"), str(work / "feast")]
            )
            row.update(feast_s=fe_s, feast_mib=fe_mib, feast_parts=json.loads(fe_out.strip().splitlines()[-1]),
                       feast_max_rel_diff=compare(ours, work / "feast.parquet", "feast"))
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| events | table rows | Leitwerk | polars (Python) | Feast 0.67 | Leitwerk / polars | Feast / Leitwerk |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        feast = f"{r['feast_s']:.1f} s, {r['feast_mib']:.0f} MiB" if "feast_s" in r else "not run"
        ratio = f"{r['feast_s'] / r['leitwerk_s']:.1f}×" if "feast_s" in r else "—"
        print(f"| {r['rows']:,} | {r['table_rows']:,} | {r['leitwerk_s']:.2f} s, {r['leitwerk_mib']:.0f} MiB"
              f" | {r['polars_s']:.2f} s, {r['polars_mib']:.0f} MiB | {feast}"
              f" | {r['leitwerk_s'] / r['polars_s']:.2f}× | {ratio} |")
    chart(results, out / "materialize_peers.png")


def chart(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no chart", file=sys.stderr)
        return
    fig, (t, m) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"{r['rows']:,} events" for r in results]
    x = np.arange(len(results))
    for i, (who, key) in enumerate([("Leitwerk", "leitwerk"), ("polars (Python)", "polars"), ("Feast 0.67", "feast")]):
        t.bar(x + (i - 1) * 0.27, [r.get(f"{key}_s", 0) for r in results], 0.27, label=who)
        m.bar(x + (i - 1) * 0.27, [r.get(f"{key}_mib", 0) for r in results], 0.27, label=who)
        for j, r in enumerate(results):
            if f"{key}_s" not in r:
                for ax in (t, m):
                    ax.annotate("not run:\nneeds ~50 GB", (x[j] + (i - 1) * 0.27, 0.02),
                                xycoords=("data", "axes fraction"), ha="center", fontsize=7)
    for ax, title in [(t, "time (s, log)"), (m, "peak memory (MiB, log)")]:
        ax.set_xticks(x, labels)
        ax.set_yscale("log")
        ax.set_title(title)
    t.legend()
    fig.suptitle("The same training set: 26 weekly cutoffs × 8 windowed features + label")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("run")
    d.add_argument("--trainer", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    # Feast's dask offline store merges every entity row with every row of its lead before
    # filtering (about 5 GB at 1 M events), so 10 M events need some 50 GB: more than this
    # machine has. Larger sizes run Leitwerk and polars only.
    d.add_argument("--feast-max-rows", type=int, default=1_000_000)
    d.add_argument("--seed", type=int, default=20261207)
    q = sub.add_parser("polars")
    q.add_argument("events")
    q.add_argument("out")
    f = sub.add_parser("feast")
    f.add_argument("events")
    f.add_argument("out")
    f.add_argument("work")
    a = p.parse_args()
    if a.cmd == "run":
        drive(a)
    elif a.cmd == "polars":
        run_polars(a.events, a.out)
    else:
        run_feast(a.events, a.out, Path(a.work))


if __name__ == "__main__":
    main()
