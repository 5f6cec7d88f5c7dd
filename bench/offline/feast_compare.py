"""Latest-value training sets: Tributary's point-in-time engine vs Feast.

Generates source rows and a spine, builds the same three latest-value
features with Feast's file offline store (get_historical_features) and with
services/offline's engine (internal/feastbench, event-time semantics, which
are Feast's), checks that every value is identical and prints both timings.
Feast is a benchmark dependency only, installed by feast_compare.sh.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd


def generate(work: Path, users: int, events: int, spine_rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    start = 1_700_000_000_000
    span = 30 * 24 * 3_600_000
    # Distinct event times: no ties for "latest" to break.
    ts = start + rng.choice(span, size=events, replace=False)
    ev = pd.DataFrame(
        {
            "user_id": [f"u{u:06d}" for u in rng.integers(0, users, size=events)],
            "event_timestamp": pd.to_datetime(ts, unit="ms", utc=True),
            "amount": np.round(rng.uniform(0, 1000, size=events), 2),
            "merchant": [f"m{m:04d}" for m in rng.integers(0, 5000, size=events)],
            "score": rng.normal(size=events),
        }
    )
    ev.to_parquet(work / "events.parquet", index=False)
    sts = start - 3_600_000 + rng.integers(0, span + 7_200_000, size=spine_rows)
    sp = pd.DataFrame(
        {
            "row_id": np.arange(spine_rows, dtype=np.int64),
            "user_id": [f"u{u:06d}" for u in rng.integers(0, users + users // 20, size=spine_rows)],
            "event_timestamp": pd.to_datetime(sts, unit="ms", utc=True),
            "label": rng.integers(0, 2, size=spine_rows),
        }
    )
    sp.to_parquet(work / "spine.parquet", index=False)


def run_feast(work: Path) -> tuple[float, float, pd.DataFrame]:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
    from feast.types import Float64, String

    repo = work / "feast_repo"
    repo.mkdir(exist_ok=True)
    config = RepoConfig(
        project="bench",
        registry=str(repo / "registry.db"),
        provider="local",
        offline_store={"type": "file"},
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    user = Entity(name="user", join_keys=["user_id"])
    source = FileSource(path=str(work / "events.parquet"), timestamp_field="event_timestamp")
    view = FeatureView(
        name="txn",
        entities=[user],
        ttl=timedelta(days=3650),
        schema=[Field(name="amount", dtype=Float64), Field(name="merchant", dtype=String), Field(name="score", dtype=Float64)],
        source=source,
    )
    store.apply([user, view])
    t0, c0 = time.perf_counter(), time.process_time()
    spine = pd.read_parquet(work / "spine.parquet")
    df = store.get_historical_features(entity_df=spine, features=["txn:amount", "txn:merchant", "txn:score"]).to_df()
    return time.perf_counter() - t0, time.process_time() - c0, df


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_ours(work: Path, binary: Path) -> tuple[float, float, dict[str, float], pd.DataFrame]:
    t0, c0 = time.perf_counter(), children_cpu()
    out = subprocess.run(
        [str(binary), "-events", str(work / "events.parquet"), "-spine", str(work / "spine.parquet"), "-out", str(work / "ours.parquet")],
        check=True,
        capture_output=True,
        text=True,
    )
    took, cpu = time.perf_counter() - t0, children_cpu() - c0
    return took, cpu, json.loads(out.stdout), pd.read_parquet(work / "ours.parquet")


def same(a: object, b: object) -> bool:
    a_missing = a is None or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or (isinstance(b, float) and math.isnan(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    return a == b


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--binary", type=Path, required=True)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--spine", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    generate(args.work, args.users, args.events, args.spine, args.seed)
    ours_s, ours_cpu, ours_timing, ours = run_ours(args.work, args.binary)
    feast_s, feast_cpu, feast = run_feast(args.work)

    ours = ours.set_index("row_id").sort_index()
    feast = feast.set_index("row_id").sort_index()
    # Feast's file store leaves out spine rows whose entity has no source
    # row at all; ours keeps every spine row (NOT_FOUND). Those rows must be
    # NOT_FOUND on our side; the rest are compared value by value.
    missing = ours.index.difference(feast.index)
    if not feast.index.isin(ours.index).all():
        print("feast returned rows that are not in the spine")
        return 1
    dropped = ours.loc[missing]
    if (dropped[[f"txn__{n}__status" for n in ("amount", "merchant", "score")]] != "NOT_FOUND").any().any():
        print("spine rows feast left out have values on our side")
        return 1
    ours = ours.loc[feast.index]
    diffs = 0
    present = 0
    for name in ("amount", "merchant", "score"):
        a = ours[f"txn__{name}"].tolist()
        b = feast[name].tolist()
        for rid, x, y in zip(ours.index, a, b):
            if not same(x, y):
                diffs += 1
                if diffs <= 10:
                    print(f"row {rid} {name}: ours {x!r}, feast {y!r}")
            elif x is not None and not (isinstance(x, float) and math.isnan(x)):
                present += 1
    n = len(ours) * 3
    print(f"{len(ours)} spine rows x 3 latest-value features over {args.events} source rows ({args.users} users)")
    print(
        f"  values identical: {n - diffs}/{n} ({present} present); feast left out {len(missing)} rows of unknown entities (NOT_FOUND in ours)"
    )
    print(
        f"  tributary (feastbench, end to end incl. reading and writing Parquet): {ours_s:.2f} s wall, {ours_cpu:.2f} s CPU  {ours_timing}"
    )
    print(f"  feast {FEAST_VERSION} get_historical_features(...).to_df(), file offline store: {feast_s:.2f} s wall, {feast_cpu:.2f} s CPU")
    print(f"  speed-up: {feast_s / ours_s:.1f}x wall, {feast_cpu / ours_cpu:.1f}x CPU")
    return 1 if diffs else 0


FEAST_VERSION = "0.67.0"

if __name__ == "__main__":
    sys.exit(main())
