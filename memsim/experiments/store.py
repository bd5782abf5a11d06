"""A resumable results store: one SQLite row per finished evaluation, keyed by its inputs.

An evaluation is deterministic in its inputs, so its key is `key_of(inputs)`, the SHA-256 of
the inputs' canonical JSON, and it is recorded once (in a sweep a row is one chip of one cell
with all its trials, `memsim.experiments.plan`). A rerun skips every key the store already
holds, so a killed run resumes where it stopped, and the same inputs never hold two different
outputs (`ResultStore.put` refuses them).

Durability: WAL journal with `synchronous=FULL`, so a commit is on disk when `put` or
`put_many` returns; a SIGKILL at any moment loses no committed row and leaves the database
consistent (SQLite rolls back the unfinished transaction on the next open). Several processes
may write to one store. A sweep commits its rows in batches (`put_many`, about one a second):
a kill loses at most the batch not yet committed, which a rerun evaluates again.

Canonical values: `1` and `1.0` are different JSON and hash differently (seeds must stay exact
integers, so ints are never turned into floats): pass knob values as floats. NumPy scalars are
converted to the Python int, float or bool they hold; tuples become lists.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from memsim.errors import MemsimError
from memsim.files import atomic_write_text

__all__ = [
    "SCHEMA_VERSION",
    "STORE_FILENAME",
    "ResultStore",
    "StoreError",
    "StoredRow",
    "canonical_json",
    "flatten",
    "key_of",
    "write_csv",
]

SCHEMA_VERSION = 1
STORE_FILENAME = "results.sqlite"
_BUSY_TIMEOUT_S = 60.0  # several worker processes may write to one store


class StoreError(MemsimError):
    """A results store that cannot be opened, a value that cannot be stored, or a conflict."""


# -- canonical JSON -------------------------------------------------------------------------

def _plain(value: Any, where: str) -> Any:
    """`value` as plain JSON types, checked; `where` names the field in error messages."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        if not math.isfinite(f):
            raise StoreError(f"{where}: {f!r} cannot be stored (use null for a missing value)")
        return f
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoreError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise StoreError(f"{where}: {type(value).__name__} is not a JSON value ({value!r})")


def canonical_json(value: Any, where: str = "value") -> str:
    """Canonical JSON text of `value`: sorted keys, no whitespace, floats as `repr`; NaN, inf,
    non-string keys and non-JSON types are a `StoreError` (`where` names the value in it)."""
    # json writes floats with float.__repr__: the shortest text that reads back exactly.
    return json.dumps(_plain(value, where), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def key_of(inputs: Mapping[str, Any]) -> str:
    """The key of an evaluation: SHA-256 (64 hex digits) of its inputs' canonical JSON."""
    if not isinstance(inputs, Mapping):
        raise StoreError(f"inputs must be a mapping, got {type(inputs).__name__}")
    return hashlib.sha256(canonical_json(inputs, "inputs").encode("utf-8")).hexdigest()


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level with dotted names: ``{"knobs": {"v": 1}}`` → ``knobs.v``.
    Lists stay values."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


# -- the store ------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredRow:
    """One finished evaluation: its key, inputs and outputs (as stored, plain JSON types)."""

    key: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]

    def columns(self) -> dict[str, Any]:
        """`key` plus the flattened inputs and outputs (a name in both is an error)."""
        ins, outs = flatten(self.inputs), flatten(self.outputs)
        both = sorted((set(ins) | {"key"}) & set(outs))
        if both:
            raise StoreError(f"row {self.key[:12]}: column {both[0]!r} is both an input and an "
                             "output")
        return {"key": self.key, **ins, **outs}


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS memsim_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, inputs TEXT NOT NULL, "
    "outputs TEXT NOT NULL) WITHOUT ROWID",
)


PAGE_SIZE = 16384
"""SQLite page size of new stores (bytes; see `benchmarks/bench_store.py`)."""


class ResultStore:
    """Finished evaluations in an SQLite file, opened or created at `path`; a context manager
    (`close` on exit). See the module docstring for keys and durability.

    `read_only` opens it immutable (see `for_reading`); `page_size` is the SQLite page size of
    a store created here (an existing one keeps its own)."""

    def __init__(self, path: str | Path, *, read_only: bool = False,
                 page_size: int = PAGE_SIZE) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._page_size = int(page_size)
        wal = self.path.with_name(self.path.name + "-wal")
        if read_only and wal.is_file() and wal.stat().st_size > 0:
            # an immutable read would not see the rows still in the log
            raise StoreError(f"{self.path}: its write-ahead log holds rows not yet in the store "
                             "and the folder cannot be written; copy the sweep somewhere "
                             "writable")
        try:
            if read_only:
                # immutable: no write-ahead-log files are made, so a store in a folder that
                # cannot be written (an archive) still reads; nothing may write it meanwhile
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1",
                                           uri=True, isolation_level=None)
            else:
                self._db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S,
                                           isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open the results store ({e})") from None
        try:
            if read_only:
                self._check_schema()
            else:
                self._init_schema()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise StoreError(f"{self.path}: not a readable memsim results store ({e})") from None
        except StoreError:
            self._db.close()
            raise

    @classmethod
    def for_reading(cls, path: str | Path) -> ResultStore:
        """A store to read: opened as usual, or read-only where its folder or file cannot be
        written (an archived sweep)."""
        p = Path(path)
        if p.is_file() and not (os.access(p, os.W_OK) and os.access(p.parent, os.W_OK)):
            return cls(p, read_only=True)
        return cls(p)

    @classmethod
    def in_dir(cls, out_dir: str | Path) -> ResultStore:
        """The store of an output directory (created if needed): `out_dir/results.sqlite`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return cls(out / STORE_FILENAME)

    def _init_schema(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        # A new store's pages (an existing one keeps its own): a row of a WITHOUT ROWID table
        # beyond ~1000 bytes on a 4 KiB page spills into an overflow page of its own, and a
        # demo row is ~1150 bytes (4.1 KB a row on disk); 16 KiB pages hold rows to ~4 KB.
        db.execute(f"PRAGMA page_size = {self._page_size}")
        # The first statement to read the file: a non-SQLite file fails here.
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: cannot use a write-ahead log here (journal mode "
                             f"{mode}); put the output directory on a local file system")
        db.execute("PRAGMA synchronous = FULL")
        with self._transaction():
            tables = self._tables()
            if tables and "memsim_meta" not in tables:
                raise StoreError(f"{self.path}: an SQLite file but not a memsim results store "
                                 f"(tables: {', '.join(sorted(tables))})")
            for statement in _SCHEMA:
                db.execute(statement)
            version = self._stored_version()
            if version is None:
                db.execute("INSERT INTO memsim_meta VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
            elif version != str(SCHEMA_VERSION):
                raise self._other_version(version)

    def _check_schema(self) -> None:
        """`_init_schema`'s checks, for a store opened read-only (nothing created)."""
        tables = self._tables()
        if "memsim_meta" not in tables or "results" not in tables:
            raise StoreError(f"{self.path}: not a memsim results store (tables: "
                             f"{', '.join(sorted(tables)) or 'none'})")
        version = self._stored_version()
        if version != str(SCHEMA_VERSION):
            raise self._other_version(version or "missing")

    def _tables(self) -> set[str]:
        return {r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _stored_version(self) -> str | None:
        row = self._db.execute("SELECT value FROM memsim_meta WHERE name = 'schema_version'"
                               ).fetchone()
        return None if row is None else str(row[0])

    def _other_version(self, found: str) -> StoreError:
        return StoreError(f"{self.path}: results store schema version {found}, this memsim "
                          f"reads version {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite failures after opening (a file damaged under us, a full disk) as one line."""
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: results store: {e}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock first, so the check-then-insert of `put` is atomic
        # across processes.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------
    def put(self, key: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> bool:
        """Record a finished evaluation in one committed transaction; True if it was new.

        `key` must be `key_of(inputs)`. Putting the same row again changes nothing (the first
        stays); different outputs (or inputs) under an existing key raise `StoreError`, since
        an evaluation is deterministic in its inputs and a difference means a bug or a stale
        store.
        """
        return self.put_many([(key, inputs, outputs)]) == 1

    def put_many(self, rows: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any]]]
                 ) -> int:
        """Record several evaluations (key, inputs, outputs) in one committed transaction, as
        `put` would one by one; the number that were new. A conflicting row commits none of
        them: the caller still holds them all."""
        encoded = []
        for key, inputs, outputs in rows:
            if not isinstance(inputs, Mapping):
                raise StoreError(f"inputs must be a mapping, got {type(inputs).__name__}")
            ins = canonical_json(inputs, "inputs")  # once: `key_of` hashes this same text
            expected = hashlib.sha256(ins.encode("utf-8")).hexdigest()
            if key != expected:
                raise StoreError(f"key {key!r} is not key_of(inputs) ({expected})")
            if not isinstance(outputs, Mapping):
                raise StoreError(f"outputs must be a mapping, got {type(outputs).__name__}")
            encoded.append((key, ins, canonical_json(outputs, "outputs")))
        new = 0
        with self._errors(), self._transaction():
            for key, ins, outs in encoded:
                row = self._db.execute("SELECT inputs, outputs FROM results WHERE key = ?",
                                       (key,)).fetchone()
                if row is None:
                    self._db.execute("INSERT INTO results VALUES (?, ?, ?)", (key, ins, outs))
                    new += 1
                elif row[0] != ins:
                    raise StoreError(f"{self.path}: key {key[:12]} holds different inputs")
                elif row[1] != outs:
                    raise StoreError(f"{self.path}: evaluation {key[:12]} is already stored "
                                     f"with different outputs ({_short(row[1])} vs "
                                     f"{_short(outs)})")
        return new

    # -- reading ---------------------------------------------------------------------------
    def _query(self, sql: str, args: tuple[str, ...] = ()) -> list[Any]:
        with self._errors():
            return self._db.execute(sql, args).fetchall()

    def has(self, key: str) -> bool:
        """Whether the evaluation under `key` is stored."""
        return bool(self._query("SELECT 1 FROM results WHERE key = ?", (key,)))

    def get(self, key: str) -> StoredRow | None:
        """The row under `key`, or None."""
        rows = self._query("SELECT key, inputs, outputs FROM results WHERE key = ?", (key,))
        return _row(rows[0]) if rows else None

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM results")[0][0])

    def keys(self) -> list[str]:
        """Every stored key, sorted (one query: what a resuming run skips)."""
        return [r[0] for r in self._query("SELECT key FROM results ORDER BY key")]

    def rows(self, sort_by: Sequence[str] | None = None) -> list[StoredRow]:
        """Every row, ordered by key or, with `sort_by`, by those flattened columns (missing
        values first, then numbers, then text), ties by key."""
        rows = [_row(r) for r in self._query(
            "SELECT key, inputs, outputs FROM results ORDER BY key")]
        if sort_by:
            names = list(sort_by)

            def order(row: StoredRow) -> tuple[tuple[int, Any], ...]:
                cols = row.columns()
                return tuple(_sort_value(cols.get(n)) for n in names)

            rows.sort(key=order)  # stable: ties keep key order
        return rows

    def export_csv(self, path: str | Path, columns: Sequence[str] | None = None,
                   sort_by: Sequence[str] | None = None) -> Path:
        """Write the rows as CSV, atomically (temporary file, then `os.replace`).

        `columns`: flattened names (`key`, `knobs.v_rel`, `accuracy`, ...) in this order; by
        default `key`, then every input column, then every output column, each sorted by name.
        A row without a column gets an empty cell. Floats are written as `repr` (exact), bools
        as true/false, lists and mappings as canonical JSON; lines end with `\\n`.
        """
        rows = self.rows(sort_by)
        table = [r.columns() for r in rows]
        if columns is None:
            ins = sorted({c for r in rows for c in flatten(r.inputs)})
            outs = sorted({c for r in rows for c in flatten(r.outputs)})
            columns = ["key", *ins, *outs]
        header = list(columns)
        if len(set(header)) != len(header):
            raise StoreError(f"export_csv: repeated column in {header}")
        return write_csv(path, header, [[cols.get(c) for c in header] for cols in table])

    # -- life cycle ------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _row(r: tuple[str, str, str]) -> StoredRow:
    try:
        inputs, outputs = json.loads(r[1]), json.loads(r[2])
    except (TypeError, ValueError):
        inputs = outputs = None
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        raise StoreError(f"row {_short(str(r[0]), 16)} is not JSON objects: the store is "
                         "corrupted (move it away and run the sweep again)")
    return StoredRow(r[0], inputs, outputs)


def _sort_value(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, int | float):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    return (3, canonical_json(v))


def csv_cell(v: Any) -> str:
    """A value as a CSV cell, the same way in every file: empty for None, true/false, floats
    with repr (round-trips exactly), anything else as canonical JSON."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int | str):
        return str(v)
    if isinstance(v, tuple):
        v = list(v)
    return canonical_json(v)


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV atomically, every value through `csv_cell`, lines ending with `\\n`: the
    one writer of every CSV a sweep leaves."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    out = Path(path)
    atomic_write_text(out, text.getvalue())
    return out
