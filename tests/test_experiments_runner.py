"""The experiment runner: golden aggregates, executor equivalence (in-process, pool, Ray),
kill-and-resume, energy arithmetic, placement, adaptive chips, Pareto outputs, dry run, CLI."""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import io
import math
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from sweeps import STORAGE_VARIANTS, golden_checkpoint_file, sweep_config

import memsim
from memsim.cli import main
from memsim.errors import MemsimError
from memsim.experiments.aggregation import SweepResults
from memsim.experiments.commands import add_commands
from memsim.experiments.energy import BITS_PER_MIB
from memsim.experiments.executors import make_executor
from memsim.experiments.models import RunnerError
from memsim.experiments.outputs import PAIRED_CSV, RESULTS_CSV
from memsim.experiments.runner import run_experiment
from memsim.experiments.store import STORE_FILENAME, ResultStore
from memsim.memory.protection import Protection, protect
from memsim.spec.experiment import load_experiment
from memsim.workloads.bridge import ModelImage
from memsim.workloads.training import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def golden_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return golden_checkpoint_file(tmp_path_factory.mktemp("golden") / "golden.pt")



_config = sweep_config


GOLDEN_BODY = """\
devices:
  - device: symmetric-bitflip
    sweep: {ber: [0.0, 0.05]}
  - device: sram-14nm
    sweep: {v_rel: [1.0, 0.8]}
""" + STORAGE_VARIANTS + """\
chips: 2
trials: 2
deployment: {preset: custom, weights: resident, inference_rate_hz: 1.0e6,
             inferences_per_write: 1.0e12, reads_per_inference: 2}
"""

GOLDEN_CSV = """\
model,scenario,device,placement,protection,knob.ber,knob.v_rel,chips,trials,complete,clean_accuracy,accuracy,accuracy_low,accuracy_high,accuracy_half_width,mlm,mlm_normalised,device_ber,under_test_ber,bit_errors,residual_bit_errors,corrected_words,uncorrectable_words,data_bits,stored_bits,reliable_bits,energy_scope,energy_pj,energy_read_pj,energy_reliable_read_pj,energy_static_pj,energy_refresh_pj,energy_write_pj,energy_nominal_pj,relative_to_nominal,reference_energy_pj,relative_energy,energy_assumed,energy_assumed_figures,on_front
a,nominal,symmetric-bitflip,all,none,0.0,,2,2,true,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.0,2.2666666666666666,0.588879482699708,0.0,0.0,0.0,0.0,0.0,0.0,1440,1440,0,cell,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,0.0,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib (not given: 0)""]",false
a,nominal,symmetric-bitflip,all,none,0.05,,2,2,true,0.23333333333333334,0.125,0.125,0.125,0.0,2.15,0.5606084821174468,0.05,0.05260416666666667,75.75,75.75,0.0,0.0,1440,1440,0,cell,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,0.0,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib (not given: 0)""]",false
a,nominal,symmetric-bitflip,all,ecc,0.0,,2,2,true,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.0,2.2666666666666666,0.588879482699708,0.0,0.0,0.0,0.0,0.0,0.0,1440,1656,0,cell,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,0.0,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib (not given: 0)""]",false
a,nominal,symmetric-bitflip,all,ecc,0.05,,2,2,true,0.23333333333333334,0.0625,0.0,0.3272125986703062,0.2647125986703062,2.0833333333333335,0.5459344310115382,0.05,0.05283816425120773,87.5,79.75,8.25,14.25,1440,1656,0,cell,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,0.0,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib (not given: 0)""]",false
a,nominal,symmetric-bitflip,edges,none,0.0,,2,2,true,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.0,2.2666666666666666,0.588879482699708,0.0,0.0,0.0,0.0,0.0,0.0,256,256,0,mixed,40.95202636750015,37.0,0.0,3.9520263671875,0.0,3.1264999999999995e-10,40.95202636750015,1.0,40.95202636750015,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib (not given: 0)"",""sram: read_energy_pj_per_bit"",""sram: write_energy_pj_per_bit"",""sram: static_power_mw_per_mib""]",false
a,nominal,symmetric-bitflip,edges,none,0.05,,2,2,true,0.23333333333333334,0.175,0.0,0.49265511840436743,0.31765511840436744,2.2333333333333334,0.5785794981432942,0.05,0.0498046875,12.75,12.75,0.0,0.0,256,256,0,mixed,40.95202636750015,37.0,0.0,3.9520263671875,0.0,3.1264999999999995e-10,40.95202636750015,1.0,40.95202636750015,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib (not given: 0)"",""sram: read_energy_pj_per_bit"",""sram: write_energy_pj_per_bit"",""sram: static_power_mw_per_mib""]",false
a,nominal,symmetric-bitflip,edges,ecc,0.0,,2,2,true,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.0,2.2666666666666666,0.588879482699708,0.0,0.0,0.0,0.0,0.0,0.0,256,288,0,mixed,40.95202636750015,37.0,0.0,3.9520263671875,0.0,3.1264999999999995e-10,40.95202636750015,1.0,40.95202636750015,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib (not given: 0)"",""sram: read_energy_pj_per_bit"",""sram: write_energy_pj_per_bit"",""sram: static_power_mw_per_mib""]",false
a,nominal,symmetric-bitflip,edges,ecc,0.05,,2,2,true,0.23333333333333334,0.17916666666666667,0.12622414693260528,0.23210918640072806,0.05294251973406139,2.083333333333333,0.5313210121129417,0.05,0.051215277777777776,14.75,13.5,2.0,2.0,256,288,0,mixed,40.95202636750015,37.0,0.0,3.9520263671875,0.0,3.1264999999999995e-10,40.95202636750015,1.0,40.95202636750015,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib (not given: 0)"",""sram: read_energy_pj_per_bit"",""sram: write_energy_pj_per_bit"",""sram: static_power_mw_per_mib""]",false
a,nominal,sram-14nm,all,none,,1.0,2,2,true,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.0,2.2666666666666666,0.588879482699708,9.38851930202493e-09,0.0,0.0,0.0,0.0,0.0,1440,1440,0,array,49.80651855506775,45.0,0.0,4.8065185546875,0.0,3.8024999999999995e-10,49.80651855506775,1.0,49.80651855506775,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib""]",false
a,nominal,sram-14nm,all,none,,0.8,2,2,true,0.23333333333333334,0.11666666666666667,0.0,0.32843674560291153,0.21177007893624486,2.15,0.6097140187403334,0.03127401277135812,0.030555555555555555,44.0,44.0,0.0,0.0,1440,1440,0,array,31.260937500243365,28.800000000000004,0.0,2.4609375000000004,0.0,2.4336000000000003e-10,49.80651855506775,0.6276475129591769,49.80651855506775,0.6276475129591769,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib""]",true
a,nominal,sram-14nm,all,ecc,,1.0,2,2,true,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.0,2.2666666666666666,0.588879482699708,9.38851930202493e-09,0.0,0.0,0.0,0.0,0.0,1440,1656,0,array,57.277496338327914,51.75,0.0,5.527496337890625,0.0,4.372875e-10,57.277496338327914,1.0,57.277496338327914,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib""]",false
a,nominal,sram-14nm,all,ecc,,0.8,2,2,true,0.23333333333333334,0.125,0.0,0.8661952762768571,0.7411952762768571,2.3166666666666664,0.6250053586273179,0.03127401277135812,0.03321256038647343,55.0,48.0,9.0,12.0,1440,1656,0,array,35.950078125279866,33.120000000000005,0.0,2.8300781250000004,0.0,2.7986400000000004e-10,57.277496338327914,0.6276475129591768,57.277496338327914,0.6276475129591768,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib""]",false
a,nominal,sram-14nm,edges,none,,1.0,2,2,true,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.0,2.2666666666666666,0.588879482699708,9.38851930202493e-09,0.0,0.0,0.0,0.0,0.0,256,256,0,array,49.80651855506775,45.0,0.0,4.8065185546875,0.0,3.8024999999999995e-10,49.80651855506775,1.0,49.80651855506775,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib"",""sram: read_energy_pj_per_bit"",""sram: write_energy_pj_per_bit"",""sram: static_power_mw_per_mib""]",false
a,nominal,sram-14nm,edges,none,,0.8,2,2,true,0.23333333333333334,0.16666666666666666,0.0,0.3784367456029115,0.21177007893624486,2.15,0.5672422899889717,0.03127401277135812,0.02734375,7.0,7.0,0.0,0.0,256,256,0,array,46.509526367543415,42.120000000000005,0.0,4.3895263671875,0.0,3.5591399999999995e-10,49.80651855506775,0.9338040023038537,49.80651855506775,0.9338040023038537,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib"",""sram: read_energy_pj_per_bit"",""sram: write_energy_pj_per_bit"",""sram: static_power_mw_per_mib""]",false
a,nominal,sram-14nm,edges,ecc,,1.0,2,2,true,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.23333333333333334,0.0,2.2666666666666666,0.588879482699708,9.38851930202493e-09,0.0,0.0,0.0,0.0,0.0,256,288,0,array,50.9133300785137,46.0,0.0,4.913330078125,0.0,3.8869999999999996e-10,50.9133300785137,1.0,50.9133300785137,1.0,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib"",""sram: read_energy_pj_per_bit"",""sram: write_energy_pj_per_bit"",""sram: static_power_mw_per_mib""]",false
a,nominal,sram-14nm,edges,ecc,,0.8,2,2,true,0.23333333333333334,0.19166666666666665,0.0,0.5093217850710341,0.31765511840436744,2.2,0.5772153038649632,0.03127401277135812,0.029513888888888888,8.5,7.0,3.0,0.5,256,288,0,array,47.20421386754882,42.760000000000005,0.0,4.4442138671875,0.0,3.6132199999999996e-10,50.9133300785137,0.9271484264485346,50.9133300785137,0.9271484264485346,true,"[""under-test: read_energy_pj_per_bit"",""under-test: write_energy_pj_per_bit"",""under-test: static_power_mw_per_mib"",""sram: read_energy_pj_per_bit"",""sram: write_energy_pj_per_bit"",""sram: static_power_mw_per_mib""]",false
"""  # noqa: E501


def _run(path: Path, out: Path, executor: str = "inprocess", **kwargs: Any) -> SweepResults:
    return run_experiment(load_experiment(path), out, executor=executor, progress=False,
                          **kwargs)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _same_numbers(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a == b
    return x == y or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory: pytest.TempPathFactory, golden_checkpoint: Path
               ) -> tuple[SweepResults, Path]:
    tmp = tmp_path_factory.mktemp("golden-run")
    return _run(_config(tmp, golden_checkpoint, GOLDEN_BODY), tmp / "out"), tmp / "out"


def test_golden_aggregates_of_a_tiny_fixed_seed_run(golden_run: tuple[SweepResults, Path]
                                                    ) -> None:
    results, out = golden_run
    text = (out / RESULTS_CSV).read_text()
    got, want = _rows(text), _rows(GOLDEN_CSV)
    assert text.splitlines()[0] == GOLDEN_CSV.splitlines()[0]
    assert len(got) == len(want) == len(results.cells) == 16
    for g, w in zip(got, want, strict=True):
        for column in w:
            # exact up to the last bits of library floating point (exp, erf, t quantiles)
            assert _same_numbers(g[column], w[column]), (column, g, w)


# Digest of the golden run's sorted task keys. Changed on purpose twice: when energy left the
# keys (row format 2: energy is priced at aggregation, so another deployment reuses every row;
# before, as computed by the code of 3bd6af8, 041f7754...7dda), and when chips began to draw
# their faults independently of the bound and the knob box left the keys (row format 3: rows
# of format 2 hold other faults; before, d7342352...c024). A change to what identifies a task
# (a model's repr, a repricing setting) must not make existing stores re-evaluate everything.
GOLDEN_KEYS_SHA256 = "a0696c8def7788d53e44f4f40c5941dbfb4a8f750d756c0298a3eaab6756a117"


def test_task_keys_of_existing_stores_stay_valid(golden_run: tuple[SweepResults, Path]) -> None:
    _, out = golden_run
    keys = sorted(ResultStore.in_dir(out).keys())
    assert len(keys) == 33
    assert hashlib.sha256("\n".join(keys).encode()).hexdigest() == GOLDEN_KEYS_SHA256


# -- executors, kill and resume -------------------------------------------------------------

SWEEP_BODY = """\
devices:
  - device: sram-14nm
    sweep: {v_rel: [1.0, 0.86, 0.8, 0.76]}
  - device: dram-ddr3-refresh
    sweep: {refresh_ms: [64, 16384]}
scenarios:
  - name: typical
  - name: hot
    knobs: {temperature_c: 85}
placements:
  - name: all
  - name: edges
    fixed:
      - {name: sram, device: sram-14nm, layers: [first], knobs: {v_rel: 0.9}}
chips: {batch: 2, min: 4, max: 12, target_half_width: 0.01}
trials: 2
deployment: {preset: throughput, inference_rate_hz: 1.0e6}
"""


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory, golden_checkpoint: Path
                  ) -> tuple[Path, SweepResults]:
    """An uninterrupted in-process run of the sweep config."""
    tmp = tmp_path_factory.mktemp("reference")
    path = _config(tmp, golden_checkpoint, SWEEP_BODY)
    return path, _run(path, tmp / "out")


@pytest.fixture(scope="module")
def reference(reference_run: tuple[Path, SweepResults]) -> tuple[Path, bytes]:
    """(config, results.csv bytes) of the uninterrupted run."""
    path, results = reference_run
    return path, (results.out_dir / RESULTS_CSV).read_bytes()


def test_the_pool_gives_the_same_bytes(tmp_path: Path, reference: tuple[Path, bytes]) -> None:
    path, expected = reference
    results = _run(path, tmp_path / "pool", executor="pool", workers=2)
    assert results.complete
    assert (tmp_path / "pool" / RESULTS_CSV).read_bytes() == expected


def test_ray_gives_the_same_bytes(tmp_path: Path, reference: tuple[Path, bytes]) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'memsim[ray]')")
    path, expected = reference
    _run(path, tmp_path / "ray", executor="ray", workers=2)
    assert (tmp_path / "ray" / RESULTS_CSV).read_bytes() == expected


def _committed_rows(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1.0)
        try:
            return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_a_sigkill_loses_nothing_and_the_rerun_gives_the_same_bytes(
        tmp_path: Path, reference: tuple[Path, bytes]) -> None:
    path, expected = reference
    out = tmp_path / "killed"
    script = ("from memsim.spec.experiment import load_experiment\n"
              "from memsim.experiments.runner import run_experiment\n"
              f"run_experiment(load_experiment({str(path)!r}), {str(out)!r}, "
              "executor='inprocess', progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    store = out / STORE_FILENAME
    deadline = time.monotonic() + 120
    try:
        while _committed_rows(store) < 40 and proc.poll() is None:
            assert time.monotonic() < deadline, "the sweep never got going"
            time.sleep(0.005)
        assert proc.poll() is None, f"finished before the kill: {proc.stderr.read()!r}"  # type: ignore[union-attr]
        proc.kill()  # SIGKILL: no handler runs, whatever SQLite was doing
    finally:
        proc.wait()
    killed_at = _committed_rows(store)
    assert killed_at >= 40
    assert not (out / RESULTS_CSV).exists()
    with ResultStore(store) as s:  # readable, consistent
        assert len(s) == killed_at
    results = _run(path, out)
    assert results.complete
    assert (out / RESULTS_CSV).read_bytes() == expected
    with ResultStore(store) as s:
        assert len(s) > killed_at
    # a second rerun evaluates nothing and changes nothing
    lines: list[str] = []
    _run(path, out, log=lines.append)
    assert any(line.startswith("0 evaluations") for line in lines)
    assert (out / RESULTS_CSV).read_bytes() == expected


# -- what the numbers mean -------------------------------------------------------------------


def test_adaptive_chips_stop_by_the_rule(reference_run: tuple[Path, SweepResults]) -> None:
    _, results = reference_run
    counts = {c.chips for c in results.cells}
    assert counts <= {4, 6, 8, 10, 12} and len(counts) > 1
    for c in results.cells:
        assert c.complete
        if c.chips < 12:  # stopped early: the target was met
            assert c.accuracy_half_width is not None and c.accuracy_half_width <= 0.01
    # fault-free cells stop at the minimum
    clean = [c for c in results.cells if c.device == "sram-14nm" and
             c.control_knobs == {"v_rel": 1.0} and c.placement == "all"]
    assert clean and all(c.chips == 4 and c.accuracy_half_width == 0.0 for c in clean)


def test_energy_per_inference_by_hand(tmp_path: Path, golden_checkpoint: Path) -> None:
    path = _config(tmp_path, golden_checkpoint, """\
        devices:
          - device: sram-14nm
            sweep: {v_rel: [1.0, 0.85]}
        placements:
          - name: all
          - name: edges
            fixed:
              - {name: sram2, device: sram-14nm, layers: [last], knobs: {v_rel: 0.9},
                 capacity_mib: 0.5}
        protections:
          - name: none
          - name: ecc
            ecc: secded-72-64
            protected_msbs: 1
        chips: 1
        deployment: {preset: custom, weights: resident, inference_rate_hz: 5.0e5,
                     reads_per_inference: 3, capacity_mib: 0.25, inferences_per_write: 1000}
        """)
    results = _run(path, tmp_path / "out")
    model = load_checkpoint(golden_checkpoint).model
    layers = ["body.1", "body.4", "body.7"]
    sram = memsim.load_device("sram-14nm")
    t, r, w = 2.0e-6, 3.0, 1e-3

    def memory_pj(bits_layers: list[str], protection: Protection, v: float, capacity: float,
                  reliable_v: float) -> float:
        o = protect(ModelImage.of(model, layers=bits_layers).image, protection).overhead
        at, rel = sram.at(v_rel=v), sram.at(v_rel=reliable_v)
        return (r * o.stored_bits * at.read_energy_pj_per_bit
                + r * o.reliable_bits * rel.read_energy_pj_per_bit
                + t * 1e9 * at.energy.static_power_mw_per_mib * capacity
                + t * 1e9 * rel.energy.static_power_mw_per_mib * o.reliable_bits / BITS_PER_MIB
                + w * o.stored_bits * at.write_energy_pj_per_bit
                + w * o.reliable_bits * rel.write_energy_pj_per_bit)

    ecc = Protection(ecc="secded-72-64", protected_msbs=1)
    cells = {(c.placement, c.protection, c.control_knobs["v_rel"]): c for c in results.cells}
    for v in (1.0, 0.85):
        for prot_name, prot in (("none", Protection()), ("ecc", ecc)):
            c = cells[("all", prot_name, v)]
            want = memory_pj(layers, prot, v, 0.25, 1.0)
            nominal = memory_pj(layers, prot, 1.0, 0.25, 1.0)
            assert c.energy_pj == pytest.approx(want, rel=1e-12)
            assert c.energy_nominal_pj == pytest.approx(nominal, rel=1e-12)
            assert c.relative_to_nominal == pytest.approx(want / nominal, rel=1e-12)
            assert c.relative_energy == pytest.approx(want / nominal, rel=1e-12)
            assert c.energy_assumed  # the SRAM energies rest on assumed figures
            assert c.energy_write_pj > 0.0
            c = cells[("edges", prot_name, v)]
            fixed = memory_pj(["body.7"], Protection(), 0.9, 0.5, 0.9)
            assert c.energy_pj == pytest.approx(
                memory_pj(layers[:2], prot, v, 0.25, 1.0) + fixed, rel=1e-12)
            assert c.energy_nominal_pj == pytest.approx(
                memory_pj(layers[:2], prot, 1.0, 0.25, 1.0) + fixed, rel=1e-12)
    # ECC stores 8 check bits per 64 data bits, and the protected sign bits sit elsewhere
    c = cells[("all", "ecc", 1.0)]
    data = sum(int(p.numel()) for n, p in model.named_parameters() if n.endswith(".weight")
               and p.dim() == 2)
    assert c.data_bits == data and c.reliable_bits == data
    assert c.stored_bits == 0  # 1-bit weights: the protected MSB is the whole weight


def test_placement_keeps_fixed_layers_out_of_the_device_under_test(
        tmp_path: Path, golden_checkpoint: Path) -> None:
    path = _config(tmp_path, golden_checkpoint, """\
        devices:
          - device: symmetric-bitflip
            sweep: {ber: [0.2]}
        placements:
          - name: all
          - name: middle-only
            fixed:
              - {name: safe, device: symmetric-bitflip, layers: [first, last],
                 knobs: {ber: 0.0}}
        chips: 2
        trials: 2
        deployment: throughput
        """)
    results = _run(path, tmp_path / "out")
    model = load_checkpoint(golden_checkpoint).model
    bits = {n: int(p.numel()) for n, p in model.named_parameters()
            if n.endswith(".weight") and p.dim() == 2}
    all_in, middle = sorted(results.cells, key=lambda c: c.placement)
    assert all_in.placement == "all" and all_in.data_bits == sum(bits.values())
    assert middle.data_bits == bits["body.4.weight"]
    for c in (all_in, middle):
        # every flip is in the memory under test: its observed rate is the device's
        assert c.bit_errors is not None and c.under_test_ber is not None
        assert c.bit_errors == pytest.approx(c.under_test_ber * c.stored_bits, rel=1e-12)
        assert abs(c.under_test_ber - 0.2) < 6 * math.sqrt(0.2 * 0.8 / (4 * c.stored_bits))
    with ResultStore(tmp_path / "out" / STORE_FILENAME) as store:
        layouts = {tuple(tuple(m["layers"]) for m in row.inputs["memories"])
                   for row in store.rows() if "memories" in row.inputs}
    assert layouts == {(("body.1", "body.4", "body.7"),), (("body.4",), ("body.1", "body.7"))}

    bad = _config(tmp_path, golden_checkpoint, """\
        devices: [{device: sram-14nm}]
        placements:
          - name: nothing-left
            fixed: [{device: sram-14nm, layers: [first, body.4, last]}]
        chips: 1
        deployment: throughput
        """, "bad.yaml")
    with pytest.raises(RunnerError, match="placement nothing-left leaves no layer of model a"):
        _run(bad, tmp_path / "bad")
    bad.write_text(bad.read_text().replace("body.4", "body.9"))
    with pytest.raises(RunnerError, match=r"model a has no quantised layer 'body.9'; its "
                                          r"layers: body.1, body.4, body.7"):
        _run(bad, tmp_path / "bad")


def test_models_are_compared_chip_by_chip(tmp_path: Path, golden_checkpoint: Path) -> None:
    state = torch.load(golden_checkpoint, weights_only=True)
    twin = tmp_path / "twin.pt"
    torch.save(state, twin)
    state["model_state"]["body.7.weight"] = -state["model_state"]["body.7.weight"]
    flipped = tmp_path / "flipped.pt"
    torch.save(state, flipped)
    path = _config(tmp_path, golden_checkpoint, """\
        devices:
          - device: symmetric-bitflip
            sweep: {ber: [0.0, 0.05]}
        chips: 3
        trials: 2
        deployment: throughput
        """)
    text = path.read_text().replace(
        "models:\n", f"models:\n  - {{name: b, checkpoint: {flipped}}}\n"
                     f"  - {{name: twin, checkpoint: {twin}}}\n")
    path.write_text(text)
    results = _run(path, tmp_path / "out")
    cells = {(c.model, c.control_knobs["ber"]): c for c in results.cells}
    pairs = {(d.model, d.versus, d.control_knobs["ber"]): d for d in results.paired}
    # config order b, twin, a: every later model against every earlier one, in both cells
    assert set(pairs) == {(m, v, ber) for m, v in (("twin", "b"), ("a", "b"), ("a", "twin"))
                          for ber in (0.0, 0.05)}
    for (model, versus, ber), d in pairs.items():
        assert d.chips == 3
        assert d.difference == pytest.approx(
            cells[model, ber].accuracy - cells[versus, ber].accuracy, abs=1e-12)
        assert d.low is not None and d.high is not None and d.low <= d.difference <= d.high
    same = pairs["a", "twin", 0.05]  # the same weights on the same chips: no difference at all
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    assert pairs["a", "b", 0.0].difference != 0.0  # the flipped output layer differs
    rows = _rows((tmp_path / "out" / PAIRED_CSV).read_text())
    assert len(rows) == 6 and rows[0]["versus"] in {"b", "twin"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Models compared on the same chips" in report
    assert "| a | twin | nominal | +0.00 points | +0.00 points | 2 | 0 | 0 |" in report
    for d in results.paired:
        assert d.clean_difference == pytest.approx(
            results.clean[d.model].accuracy - results.clean[d.versus].accuracy, abs=1e-12)
    # without errors the chips change nothing: the difference is the clean one, exactly
    assert pairs["a", "b", 0.0].difference == pytest.approx(
        pairs["a", "b", 0.0].clean_difference, abs=1e-12)


def test_pareto_outputs_hold_the_noise_aware_fronts_and_budgets(
        golden_run: tuple[SweepResults, Path]) -> None:
    results, out = golden_run
    cells = results.cells
    # symmetric-bitflip has no energy model: in results.csv, on no front and in no budget
    assert {c.device for c in cells} == {"symmetric-bitflip", "sram-14nm"}
    on_front = {i for f in results.fronts.values() for i in f}
    assert {cells[i].device for i in on_front} == {"sram-14nm"}
    assert {i for i, c in enumerate(cells) if c.on_front} == on_front
    for (model, scenario, scope), front in results.fronts.items():
        energies = [cells[i].energy_pj for i in front]
        assert energies == sorted(energies) and scope == "array"
        # a point stays only if it beats every cheaper point beyond noise (here: none does,
        # the accuracy at 0.8 V being worse and 1.0 V costlier)
        members = [i for i, c in enumerate(cells) if (c.model, c.scenario) == (model, scenario)
                   and c.device == "sram-14nm"]
        cheapest = min(members, key=lambda i: (cells[i].energy_pj, i))
        assert front[0] == cheapest
    front_rows = _rows((out / "pareto.csv").read_text())
    assert len(front_rows) == len(on_front)
    assert {r["device"] for r in front_rows} == {"sram-14nm"}
    budgets = _rows((out / "budgets.csv").read_text())
    assert {(b["budget_points"], b["judged_by"]) for b in budgets} == {
        ("1.0", "accuracy_low"), ("2.0", "accuracy_low")}
    for b in budgets:
        if b["device"]:
            floor = float(b["clean_accuracy"]) - float(b["budget_points"]) / 100
            assert float(b["accuracy_low"]) >= floor - 1e-12
            assert float(b["relative_energy"]) > 0
    # `memsim pareto DIR` rewrites the same files from the store
    before = {n: (out / n).read_bytes() for n in (RESULTS_CSV, "pareto.csv", "budgets.csv")}
    assert _cli(["pareto", str(out)]) == 0
    assert before == {n: (out / n).read_bytes() for n in before}
    assert (out / "report.md").is_file()


# -- models from every source, dry run, command line -----------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="memsim")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


USER_MODULE = """\
from torch import nn


class LazyActivation(nn.Module):
    def forward(self, x):
        import usermodels_helper_for_memsim_test as helper  # imported at evaluation time

        return helper.activation(x)


def make_net(hidden=8, classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), LazyActivation(),
                         nn.Linear(hidden, classes))
"""
USER_HELPER = """\
def activation(x):
    return x.clamp(min=0.0)
"""


def test_training_and_user_models_in_one_sweep(tmp_path: Path) -> None:
    (tmp_path / "usermodels_for_memsim_test.py").write_text(USER_MODULE)
    (tmp_path / "usermodels_helper_for_memsim_test.py").write_text(USER_HELPER)
    sys.path.insert(0, str(tmp_path))
    try:
        um = importlib.import_module("usermodels_for_memsim_test")
        torch.manual_seed(0)
        torch.save(um.make_net(hidden=8).state_dict(), tmp_path / "net.pt")
    finally:
        sys.path.remove(str(tmp_path))
    sys.modules.pop("usermodels_helper_for_memsim_test", None)  # must import during the run
    config = tmp_path / "exp.yaml"
    config.write_text(textwrap.dedent("""\
        schema_version: 1
        data: {name: digits, test_images: 50}
        models:
          - name: trained
            train:
              model: {name: mlp, weight_bits: 2, options: {width_multiplier: 0.125}}
              optimizer: {kind: adam, lr: 0.01}
              epochs: 2
          - name: mine
            torch_model:
              builder: usermodels_for_memsim_test:make_net
              args: {hidden: 8}
              weights: net.pt
            ptq: {weight_bits: 4}
        devices: [{device: sram-14nm, sweep: {v_rel: [0.8]}}]
        chips: 1
        deployment: throughput
        """))
    out = tmp_path / "out"
    results = _run(config, out, allow_code=True)
    assert str(tmp_path) not in sys.path  # the user's folder was on it for the import only
    assert (out / "models" / "trained" / "checkpoint.pt").is_file()
    assert {c.model for c in results.cells} == {"trained", "mine"}
    assert results.clean["mine"].accuracy < 0.5  # an untrained user model, quantised
    assert results.clean["trained"].accuracy > 0.6
    lines: list[str] = []
    _run(config, out, log=lines.append, allow_code=True)  # nothing left to do
    assert not any(line.startswith("trained") for line in lines)
    assert any(line.startswith("0 evaluations") for line in lines)


def test_a_builder_runs_only_with_allow_code(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "marker"
    torch.save({}, tmp_path / "net.pt")
    config = tmp_path / "exp.yaml"
    config.write_text(textwrap.dedent(f"""\
        schema_version: 1
        data: {{name: digits, test_images: 50}}
        models:
          - name: shell
            torch_model:
              builder: os:system
              args: {{command: "touch {marker}"}}
              weights: net.pt
            ptq: {{weight_bits: 4}}
        devices: [{{device: sram-14nm, sweep: {{v_rel: [0.8]}}}}]
        chips: 1
        deployment: throughput
        """))
    for extra in ([], ["--dry-run"]):
        argv = ["run", str(config), "--out", str(tmp_path / "out"), "--executor", "inprocess",
                *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == ("error: model shell: torch_model imports and calls os:system from "
                       f"{tmp_path}, code named by the config; pass --allow-code "
                       "(allow_code=True) if you trust it\n")
        assert not marker.exists() and not (tmp_path / "out").exists()
    # on request it runs, and what it returns is then refused: not an nn.Module
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--executor",
                 "inprocess", "--allow-code"]) == 2
    assert marker.exists()
    assert "os:system returned int, not a torch.nn.Module" in capsys.readouterr().err


def test_bad_input_is_a_one_line_memsim_error(tmp_path: Path) -> None:
    with pytest.raises(MemsimError, match="no sweep here"):
        _cli(["pareto", str(tmp_path)])
    with pytest.raises(MemsimError, match="unknown experiment config"):
        _cli(["run", "quickstrat", "--out", str(tmp_path / "x")])
    with pytest.raises(MemsimError, match="fashion-mnist: needs a data directory"):
        _cli(["run", "fashionmnist-vgg3", "--out", str(tmp_path / "x"), "--dry-run",
              "--executor", "inprocess", "--no-progress"])
    with pytest.raises(MemsimError, match="--address is for --executor ray"):
        make_executor("pool", address="h:1")
    with pytest.raises(MemsimError, match="workers must be an integer >= 1"):
        make_executor("pool", workers=0)


def test_cli_registers_run_pareto_and_demo() -> None:
    parser = argparse.ArgumentParser(prog="memsim")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo"])
    assert args.out == "memsim-demo" and args.executor == "pool" and args.workers is None
    args = parser.parse_args(["run", "x.yaml", "--out", "d", "--executor", "ray", "--address",
                              "10.0.0.1:6379", "--threads-per-worker", "2"])
    assert (args.executor, args.address, args.threads_per_worker) == ("ray", "10.0.0.1:6379", 2)
    assert callable(args.func)


def test_an_interrupt_keeps_the_rows_finished_before_it(
        small_sweep: tuple[Path, Path, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows wait for a batched commit; an interrupt (or any failure) still commits them."""
    import memsim.experiments.runner as runner_module

    config = small_sweep[0]
    real = runner_module.make_executor
    yielded: list[int] = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        executor = real(*args, **kwargs)
        inner = executor.map_unordered

        def map_unordered(tasks: Any) -> Any:
            for i, rows in enumerate(inner(tasks)):
                if i == 3:
                    raise KeyboardInterrupt
                yielded.append(len(rows))
                yield rows

        executor.map_unordered = map_unordered
        return executor

    monkeypatch.setattr(runner_module, "make_executor", interrupted)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_experiment(config), out, executor="inprocess", progress=False)
    with ResultStore(out / STORE_FILENAME) as store:
        # the models' clean rows, then every row of the three chip tasks that finished
        assert len(store) == 1 + sum(yielded) and len(yielded) == 3
    monkeypatch.setattr(runner_module, "make_executor", real)
    _run(config, out)
    assert (out / RESULTS_CSV).read_bytes() == (small_sweep[1] / RESULTS_CSV).read_bytes()
