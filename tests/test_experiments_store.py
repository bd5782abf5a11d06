"""The results store: keys, idempotent puts, deterministic export, survival of SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memsim.errors import MemsimError
from memsim.experiments.store import (
    STORE_FILENAME,
    ResultStore,
    StoreError,
    canonical_json,
    key_of,
)

INPUTS = {"model": "vgg3", "device": "sram-14nm", "knobs": {"v_rel": 0.85},
          "chip_seed": 2**63 + 5, "trial_seed": 7, "protection": "none"}
OUTPUTS = {"accuracy": 0.8731, "mlm": 12.5, "flips": 31, "energy_pj": 1.0e-3 / 3}


# -- keys ---------------------------------------------------------------------------------

def test_key_is_sha256_of_sorted_compact_json() -> None:
    import hashlib

    text = ('{"chip_seed":9223372036854775813,"device":"sram-14nm","knobs":{"v_rel":0.85},'
            '"model":"vgg3","protection":"none","trial_seed":7}')
    assert canonical_json(INPUTS) == text
    assert key_of(INPUTS) == hashlib.sha256(text.encode()).hexdigest()
    reordered = dict(reversed(list(INPUTS.items())))
    assert key_of(reordered) == key_of(INPUTS)


def test_key_distinguishes_values_and_keeps_floats_exact() -> None:
    base = key_of({"v": 0.1})
    assert key_of({"v": 0.1 + 1e-18}) == base  # the same double
    assert key_of({"v": np.nextafter(0.1, 1.0)}) != base
    assert key_of({"v": 1}) != key_of({"v": 1.0})
    assert key_of({"v": np.float64(0.1)}) == base
    assert key_of({"s": np.int64(3)}) == key_of({"s": 3})
    assert key_of({"t": (1, 2)}) == key_of({"t": [1, 2]})
    assert canonical_json({"v": 1e-300}) == '{"v":1e-300}'


@pytest.mark.parametrize(("value", "fragment"), [
    ({"knobs": {"v": float("nan")}}, "inputs.knobs.v: nan"),
    ({"v": float("inf")}, "inputs.v: inf"),
    ({"v": {1, 2}}, "inputs.v: set is not a JSON value"),
    ({"v": b"x"}, "inputs.v: bytes"),
    ({"v": {3: 1}}, "inputs.v: keys must be strings"),
    ({"v": [0.5, object()]}, "inputs.v[1]: object"),
])
def test_key_rejects_what_json_cannot_hold_exactly(value: dict[str, object],
                                                     fragment: str) -> None:
    with pytest.raises(StoreError, match=None) as info:
        key_of(value)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


# -- puts and reads -----------------------------------------------------------------------

def test_put_is_idempotent_and_conflicts_raise(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        key = key_of(INPUTS)
        assert not store.has(key) and store.get(key) is None
        assert store.put(key, INPUTS, OUTPUTS) is True
        assert store.put(key, INPUTS, dict(OUTPUTS)) is False
        assert len(store) == 1
        row = store.get(key)
        assert row is not None and row.key == key
        assert row.inputs == INPUTS and row.outputs == OUTPUTS
        with pytest.raises(StoreError, match="different outputs"):
            store.put(key, INPUTS, {**OUTPUTS, "accuracy": 0.5})
        with pytest.raises(StoreError, match="is not key_of"):
            store.put("0" * 64, INPUTS, OUTPUTS)
        with pytest.raises(StoreError, match=r"outputs\.mlm: nan"):
            store.put(key_of({"x": 1}), {"x": 1}, {"mlm": float("nan")})
        assert len(store) == 1  # nothing half-written
        assert store.get(key).outputs["accuracy"] == 0.8731  # type: ignore[union-attr]


def test_put_many_commits_together_and_a_conflict_commits_none(tmp_path: Path) -> None:
    rows = [(key_of({"i": i}), {"i": i}, {"accuracy": i / 10}) for i in range(5)]
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert store.put_many(rows[:2]) == 2
        # again, plus new ones, plus one repeated inside the batch: only the new count
        assert store.put_many([*rows, rows[4]]) == 3
        assert len(store) == 5
        extra = [(key_of({"i": 9}), {"i": 9}, {"accuracy": 0.9})]
        with pytest.raises(StoreError, match="different outputs"):
            store.put_many([*extra, (rows[0][0], rows[0][1], {"accuracy": 0.5})])
        assert len(store) == 5 and not store.has(extra[0][0])  # the batch rolled back
        assert store.put_many([]) == 0
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert [store.get(k).outputs for k, _, _ in rows] == [  # type: ignore[union-attr]
            o for _, _, o in rows]


def test_store_reopens_with_its_rows_and_checks_its_schema(tmp_path: Path) -> None:
    with ResultStore.in_dir(tmp_path / "out") as store:
        store.put(key_of(INPUTS), INPUTS, OUTPUTS)
    path = tmp_path / "out" / STORE_FILENAME
    with ResultStore(path) as again:
        assert again.keys() == [key_of(INPUTS)]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("UPDATE memsim_meta SET value = '99' WHERE name = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        ResultStore(path)


def test_a_file_that_is_not_a_store_gives_one_line_naming_it(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database, just some text\n" * 200)
    with pytest.raises(MemsimError) as info:
        ResultStore(garbage)
    msg = str(info.value)
    assert str(garbage) in msg and "\n" not in msg

    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"other\.sqlite: an SQLite file but not a memsim"):
        ResultStore(other)

    # A store whose file was cut short (a copy interrupted half way) is refused too.
    good = tmp_path / "good.sqlite"
    with ResultStore(good) as store:
        for i in range(60):
            inputs = {"i": i, "pad": "x" * 200}
            store.put(key_of(inputs), inputs, {"a": 0.5})
    assert good.stat().st_size > 4 * 8192
    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(good.read_bytes()[:8192])
    with pytest.raises(MemsimError, match=r"cut\.sqlite"):
        ResultStore(cut)


# -- export -------------------------------------------------------------------------------

def _fill(store: ResultStore, order: list[int]) -> None:
    for i in order:
        inputs = {"chip_seed": i % 3, "knobs": {"v_rel": 1.0 - i / 40}, "trial": i}
        outputs = {"accuracy": 1 / (i + 3), "flips": i * i, "ok": i % 2 == 0,
                   "note": None if i % 4 else f"row, {i}"}
        store.put(key_of(inputs), inputs, outputs)


def test_export_is_deterministic_whatever_the_insertion_order(tmp_path: Path) -> None:
    a, b = ResultStore(tmp_path / "a.sqlite"), ResultStore(tmp_path / "b.sqlite")
    _fill(a, list(range(12)))
    _fill(b, list(reversed(range(12))))
    a.export_csv(tmp_path / "a.csv")
    b.export_csv(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()

    cols = ["trial", "knobs.v_rel", "accuracy", "ok", "note", "missing"]
    a.export_csv(tmp_path / "s.csv", cols, sort_by=["trial"])
    lines = (tmp_path / "s.csv").read_text().split("\n")
    assert lines[0] == "trial,knobs.v_rel,accuracy,ok,note,missing"
    assert lines[1] == f"0,1.0,{1 / 3!r},true,\"row, 0\","
    assert lines[2] == f"1,{1 - 1 / 40!r},0.25,false,,"
    assert lines[-1] == "" and len(lines) == 14
    assert [r.inputs["trial"] for r in a.rows(["chip_seed", "trial"])] == \
        [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    assert [r.key for r in a.rows()] == sorted(r.key for r in a.rows())
    a.close()
    b.close()


def test_export_replaces_the_file_atomically(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        _fill(store, [0, 1])
        out = tmp_path / "results.csv"
        out.write_text("old contents\n")
        store.export_csv(out)
        assert out.read_text().startswith("key,")
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "r.sqlite", "r.sqlite-shm", "r.sqlite-wal", "results.csv"]
        with pytest.raises(StoreError, match="repeated column"):
            store.export_csv(out, ["key", "key"])
        assert out.read_text().startswith("key,")


# -- SIGKILL ------------------------------------------------------------------------------

N_ROWS = 80
WRITER = textwrap.dedent("""\
    import time
    from memsim.experiments.store import ResultStore, key_of

    def write(path, pause, n):
        \"\"\"Put rows 0..n-1 that the store lacks, printing each index once committed.\"\"\"
        with ResultStore(path) as store:
            for i in range(n):
                inputs = {"chip_seed": i, "knobs": {"v_rel": 0.7 + i / 1000}, "model": "m"}
                key = key_of(inputs)
                if store.has(key):
                    continue
                store.put(key, inputs, {"accuracy": (i * 7919 % 1000) / 1000, "flips": i * 3})
                print(i, flush=True)
                time.sleep(pause)
    """)


def _write_in_process(path: Path, capsys: pytest.CaptureFixture[str]) -> list[int]:
    namespace: dict[str, Any] = {}
    exec(WRITER, namespace)
    capsys.readouterr()
    namespace["write"](path, 0.0, N_ROWS)
    return [int(x) for x in capsys.readouterr().out.split()]


def test_sigkill_loses_no_committed_row_and_the_rerun_matches(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean.sqlite"
    assert _write_in_process(clean, capsys) == list(range(N_ROWS))
    with ResultStore(clean) as store:
        store.export_csv(tmp_path / "clean.csv")

    killed = tmp_path / "killed.sqlite"
    script = WRITER + f"write({str(killed)!r}, 0.005, {N_ROWS})\n"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = [int(proc.stdout.readline()) for _ in range(20)]
    os.kill(proc.pid, signal.SIGKILL)  # while it keeps writing: lands at a random moment
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    db = sqlite3.connect(killed)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with ResultStore(killed) as store:
        rows = len(store)
        for i in committed:  # every row reported committed is there
            inputs = {"chip_seed": i, "knobs": {"v_rel": 0.7 + i / 1000}, "model": "m"}
            assert store.has(key_of(inputs))
    assert 20 <= rows < N_ROWS  # killed part-way

    resumed = _write_in_process(killed, capsys)
    assert len(resumed) == N_ROWS - rows and min(resumed) >= 20  # only the missing rows
    with ResultStore(killed) as store:
        store.export_csv(tmp_path / "resumed.csv")
    assert (tmp_path / "resumed.csv").read_bytes() == (tmp_path / "clean.csv").read_bytes()


def test_a_store_that_cannot_be_written_is_read_immutable(
        small_sweep: tuple[Path, Path, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An archived sweep (a folder without write access: as root here, simulated) reads
    through an immutable connection, which makes no -wal/-shm files, and aggregates the same."""
    from memsim.experiments.aggregation import aggregate

    out = tmp_path / "archived"
    shutil.copytree(small_sweep[1], out)
    store_file = out / "results.sqlite"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) in (
        store_file, out) and mode == os.W_OK else real_access(p, mode))
    with ResultStore.for_reading(store_file) as store:
        assert store.read_only and len(store) > 0
        with pytest.raises(StoreError, match="readonly"):
            store.put(key_of({"x": 1}), {"x": 1}, {"y": 2})
    assert sorted(p.name for p in out.glob("results.sqlite*")) == ["results.sqlite"]
    again = aggregate(out)
    assert [c.accuracy for c in again.cells] == [c.accuracy for c in small_sweep[2].cells]
    (out / "results.sqlite-wal").write_bytes(b"\x00" * 32)  # rows the store does not hold yet
    with pytest.raises(StoreError, match="write-ahead log holds rows"):
        ResultStore.for_reading(store_file)


def test_new_stores_use_large_pages_and_old_ones_still_open(tmp_path: Path) -> None:
    from memsim.experiments.store import PAGE_SIZE

    with ResultStore(tmp_path / "new.sqlite") as store:
        store.put(key_of(INPUTS), INPUTS, OUTPUTS)
    with sqlite3.connect(tmp_path / "new.sqlite") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 16384
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:  # a store as made before: 4 KiB pages
        db.execute("PRAGMA page_size = 4096")
        db.execute("PRAGMA journal_mode = WAL")
    with ResultStore(old) as store:
        store.put(key_of(INPUTS), INPUTS, OUTPUTS)
        assert store.get(key_of(INPUTS)) is not None
    with sqlite3.connect(old) as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 4096  # kept: nothing rewritten
