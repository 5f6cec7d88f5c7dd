"""Reads an offline archive with DuckDB and with pyarrow, as a user would,
and checks it against the records the Go test produced.

usage: read_archive.py ROOT EXPECTED_JSON

EXPECTED_JSON maps each topic to its records:
[{"partition": int, "offset": int, "key": str, "value": str | null,
  "event_ms": int | null}, ...]. Prints one line per topic and reader; exits
non-zero with a message at the first difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds

Record = tuple[int, int, str, str | None, int | None]


def expected(path: Path) -> dict[str, list[Record]]:
    raw: dict[str, list[dict[str, Any]]] = json.loads(path.read_text())
    return {
        topic: sorted((r["partition"], r["offset"], r["key"], r["value"], r["event_ms"]) for r in recs)
        for topic, recs in raw.items()
    }


def text(b: bytes | None) -> str | None:
    return None if b is None else b.decode()


def with_duckdb(root: Path, topic: str) -> list[Record]:
    glob = str(root / topic / "*" / "*.parquet")
    rows = duckdb.sql(
        'SELECT partition, "offset", key, value, event_ms, date '
        f"FROM read_parquet('{glob}', hive_partitioning = true) "
        'ORDER BY partition, "offset"'
    ).fetchall()
    for r in rows:
        if len(str(r[5])) != 10:
            raise SystemExit(f"duckdb {topic}: date partition {r[5]!r} is not YYYY-MM-DD")
    return [(p, o, text(k) or "", text(v), e) for p, o, k, v, e, _ in rows]


def with_pyarrow(root: Path, topic: str) -> list[Record]:
    table = ds.dataset(root / topic, format="parquet", partitioning="hive").to_table()
    cols = {name: table.column(name).to_pylist() for name in ("partition", "offset", "key", "value", "event_ms")}
    out = [
        (p, o, text(k) or "", text(v), e)
        for p, o, k, v, e in zip(
            cols["partition"], cols["offset"], cols["key"], cols["value"], cols["event_ms"], strict=True
        )
    ]
    return sorted(out, key=lambda r: (r[0], r[1]))


def main() -> None:
    root, exp_path = Path(sys.argv[1]), Path(sys.argv[2])
    for topic, want in expected(exp_path).items():
        for reader, read in (("duckdb", with_duckdb), ("pyarrow", with_pyarrow)):
            got = read(root, topic)
            if len(got) != len(want):
                raise SystemExit(f"{reader} {topic}: {len(got)} rows, {len(want)} were produced")
            for g, w in zip(got, want, strict=True):
                if g != w:
                    raise SystemExit(f"{reader} {topic}: row {g} differs from the produced {w}")
            print(f"{reader} {topic}: {len(got)} rows match")


if __name__ == "__main__":
    main()
