"""Bytes per stored row of a sweep's results store, today's page size against 4 KiB pages.

    python benchmarks/bench_store.py DIR [--json]

DIR is a sweep folder (`memsim run ... --out DIR`, `memsim demo`). Its rows are copied, in one
run, into two fresh stores made as `ResultStore` makes them: one with SQLite's default 4 KiB
pages (what every store had before `PAGE_SIZE`), one with `PAGE_SIZE`; each is closed (its
write-ahead log checkpointed) and its file size divided by the rows. Also printed: the JSON
bytes of a row (key, inputs and outputs) and DIR's own store file per row.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from memsim.experiments.store import (
    PAGE_SIZE,
    STORE_FILENAME,
    ResultStore,
    StoredRow,
    canonical_json,
)


def _copy(rows: list[StoredRow], path: Path, page_size: int) -> int:
    """Write `rows` into a new store at `path` made with `page_size`; its size in bytes."""
    with ResultStore(path, page_size=page_size) as store:
        store.put_many([(r.key, r.inputs, r.outputs) for r in rows])
    return path.stat().st_size


def measure(sweep_dir: Path) -> dict[str, float]:
    source = sweep_dir / STORE_FILENAME
    if not source.is_file():
        raise SystemExit(f"error: {source}: no such store")
    size = source.stat().st_size
    with ResultStore.for_reading(source) as store:  # closing it leaves no side files
        rows = store.rows()
    if not rows:
        raise SystemExit(f"error: {source}: no rows")
    n = len(rows)
    json_bytes = sum(len(r.key) + len(canonical_json(r.inputs, "inputs"))
                     + len(canonical_json(r.outputs, "outputs")) for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        before = _copy(rows, Path(tmp) / "before.sqlite", 4096)
        now = _copy(rows, Path(tmp) / "now.sqlite", PAGE_SIZE)
    return {"rows": n, "json_bytes_per_row": json_bytes / n, "store_bytes_per_row": size / n,
            "before_bytes_per_row": before / n, "now_bytes_per_row": now / n,
            "page_size": PAGE_SIZE}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="a sweep folder")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    m = measure(args.dir)
    if args.json:
        print(json.dumps(m))
        return 0
    print(f"{m['rows']:.0f} rows; JSON {m['json_bytes_per_row']:.0f} bytes a row")
    print(f"{args.dir / STORE_FILENAME}: {m['store_bytes_per_row']:.0f} bytes a row")
    print(f"rebuilt with 4 KiB pages: {m['before_bytes_per_row']:.0f} bytes a row")
    print(f"rebuilt with {m['page_size'] // 1024} KiB pages (now): "
          f"{m['now_bytes_per_row']:.0f} bytes a row, "
          f"{m['before_bytes_per_row'] / m['now_bytes_per_row']:.2f}x smaller")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
