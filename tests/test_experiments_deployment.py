"""Deployments: parsing, hand-checked energies under every preset, repricing a sweep without
evaluating a chip, the write-knob trade appearing and disappearing, energy scopes kept apart."""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
from pathlib import Path

import pytest
from sweeps import golden_checkpoint_file, sweep_config

import memsim
from memsim.errors import MemsimError, SpecError
from memsim.experiments.aggregation import (
    ENERGY_TIE,
    CellResult,
    SweepResults,
    _cheapest,
    _cheapest_while,
    _fronts,
    aggregate,
)
from memsim.experiments.commands import add_commands
from memsim.experiments.energy import BITS_PER_MIB
from memsim.experiments.models import RunnerError
from memsim.experiments.pareto import budget_floor
from memsim.experiments.runner import run_experiment
from memsim.experiments.store import STORE_FILENAME, ResultStore
from memsim.spec.deployment import DEPLOYMENT_PRESETS, Deployment, WeightResidence
from memsim.spec.experiment import load_experiment, parse_experiment
from memsim.spec.loader import resolve_device_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _doc(deployment: object) -> dict[str, object]:
    return {"schema_version": 1, "models": [{"name": "m", "checkpoint": __file__}],
            "devices": [{"device": "sram-14nm"}], "chips": 1, "deployment": deployment}


def test_presets_and_their_writes_per_inference() -> None:
    always_on = parse_experiment(_doc("always-on")).deployment
    assert always_on == DEPLOYMENT_PRESETS["always-on"]
    assert always_on.weights is WeightResidence.RESIDENT
    assert always_on.seconds_per_inference == 1.0
    assert always_on.writes_per_inference == pytest.approx(1e-6)
    streamed = parse_experiment(_doc({"preset": "streamed"})).deployment
    assert streamed.writes_per_inference == 1.0
    hourly = parse_experiment(_doc("reprogrammed-hourly")).deployment
    assert hourly.writes_per_inference == pytest.approx(1.0 / 3600.0)
    tuned = parse_experiment(_doc({"preset": "always-on", "inference_rate_hz": 10,
                                   "inferences_per_write": 100})).deployment
    assert (tuned.preset, tuned.seconds_per_inference, tuned.writes_per_inference) == \
        ("always-on", 0.1, 0.01)
    custom = parse_experiment(_doc({"preset": "custom", "weights": "streamed",
                                    "inference_rate_hz": 50, "capacity_mib": 2})).deployment
    assert custom == Deployment("custom", WeightResidence.STREAMED, 50.0, capacity_mib=2.0)
    # the summary names everything that is charged
    text = DEPLOYMENT_PRESETS["always-on"].summary()
    assert "programmed once per 1e+06 inferences" in text and "over 1 s" in text


@pytest.mark.parametrize(("deployment", "message"), [
    ("allways-on", "deployment.preset: expected one of always-on, throughput, streamed, "
                   "reprogrammed-hourly, custom, got 'allways-on' (did you mean 'always-on'?)"),
    ({"preset": "custom", "weights": "resident", "inference_rate_hz": 1},
     "deployment.inferences_per_write: resident weights need it"),
    ({"preset": "custom", "inference_rate_hz": 1, "inferences_per_write": 10},
     "deployment.weights: required field is missing"),
    ({"preset": "streamed", "inferences_per_write": 10},
     "deployment.inferences_per_write: only resident weights have it"),
    ({"preset": "always-on", "weights": "reprogrammed"},
     "deployment.reprogram_interval_s: reprogrammed weights need it"),
    ({"preset": "always-on", "inference_rate_hz": 0},
     "deployment.inference_rate_hz: expected a number in (0, inf], got 0"),
    ({"preset": "always-on", "wheights": "streamed"},
     "deployment.wheights: unknown field (did you mean 'weights'?)"),
])
def test_bad_deployments_are_one_line_each(deployment: object, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_experiment(_doc(deployment))
    lines = [str(p) for p in info.value.problems]
    assert any(line.startswith(f"<config>: {message}") for line in lines), lines


def test_a_config_must_name_its_deployment() -> None:
    doc = _doc("always-on")
    del doc["deployment"]
    with pytest.raises(SpecError, match="deployment: required field is missing"):
        parse_experiment(doc)
    doc["energy"] = {"inference_time_s": 1e-6}
    with pytest.raises(SpecError, match="the energy section is now `deployment:`"):
        parse_experiment(doc)


# -- a sweep priced under every preset ------------------------------------------------------

@pytest.fixture(scope="module")
def sweep(small_sweep: tuple[Path, Path, SweepResults]) -> tuple[Path, Path, SweepResults]:
    return small_sweep


def _by_hand(device: str, knobs: dict[str, float], bits: int, d: Deployment) -> float:
    """E = r·bits·E_read + (P_static + P_refresh)·(bits / 2^23 MiB)·(1/rate)·1e9
    + (writes per inference)·bits·E_write, with the catalogue's figures at the knobs."""
    at = memsim.load_device(device).at(**knobs)
    e = at.energy
    mib = bits / BITS_PER_MIB
    return (d.reads_per_inference * bits * e.read_energy_pj_per_bit
            + (e.static_power_mw_per_mib + e.refresh_power_mw_per_mib) * mib
            * (1.0 / d.inference_rate_hz) * 1e9
            + d.writes_per_inference * bits * e.write_energy_pj_per_bit)


@pytest.mark.parametrize("preset", sorted(DEPLOYMENT_PRESETS))
def test_energies_by_hand_under_every_preset(sweep: tuple[Path, Path, SweepResults],
                                             preset: str) -> None:
    _, out, _ = sweep
    results = aggregate(out, [f"deployment={preset}"])
    d = DEPLOYMENT_PRESETS[preset]
    assert results.deployment == d
    names = {"sram-14nm": "sram-14nm", "dram-ddr3-refresh": "dram-ddr3-refresh",
             "stt-mram-22nm": "stt-mram-22nm", "pcm-mlc": "pcm-mlc"}
    checked = set()
    for c in results.cells:
        bits = c.stored_bits
        want = _by_hand(names[c.device], dict(c.knobs), bits, d)
        assert c.energy_pj == pytest.approx(want, rel=1e-12), (preset, c.device, c.knobs)
        if c.device == "dram-ddr3-refresh":
            at = memsim.load_device("dram-ddr3-refresh").at(**c.knobs)
            refresh = at.energy.refresh_power_mw_per_mib * bits / BITS_PER_MIB \
                / d.inference_rate_hz * 1e9
            assert c.energy_refresh_pj == pytest.approx(refresh, rel=1e-12)
            assert refresh > 0
        write = d.writes_per_inference * bits * \
            memsim.load_device(names[c.device]).at(**c.knobs).write_energy_pj_per_bit
        assert c.energy_write_pj == pytest.approx(write, rel=1e-12)
        # the reference: SRAM at nominal holding the same bits (array scope only)
        if c.energy_scope == "array":
            assert c.reference_energy_pj == pytest.approx(
                _by_hand("sram-14nm", {"v_rel": 1.0}, bits, d), rel=1e-12)
        else:
            assert c.reference_energy_pj is None and c.relative_energy is None
        checked.add(c.device)
    assert checked == set(names)


def _ratio(results: SweepResults, device: str, knob: str, low: float, high: float) -> float:
    by = {c.control_knobs[knob]: c.energy_pj for c in results.cells if c.device == device}
    return by[low] / by[high]


def test_the_write_knob_trades_only_when_the_weights_are_written(
        sweep: tuple[Path, Path, SweepResults]) -> None:
    _, out, resident = sweep
    streamed = aggregate(out, ["deployment=streamed"])
    # resident, programmed once per million inferences: a shorter pulse saves nothing visible
    assert _ratio(resident, "stt-mram-22nm", "write_pulse_ns", 4, 10) == pytest.approx(1, abs=1e-4)
    # streamed: every inference writes every bit, and the 4 ns pulse costs 0.4x the 10 ns one
    assert _ratio(streamed, "stt-mram-22nm", "write_pulse_ns", 4, 10) < 0.6
    trade = {(t.device, t.knob): t for t in resident.knob_trades}
    stt = trade[("stt-mram-22nm", "write_pulse_ns")]
    assert stt.varies == ("write",) and stt.charged == ()
    assert {t.knob: t.charged for t in streamed.knob_trades}["write_pulse_ns"] == ("write",)
    # the report says so, for the same results
    text = (out / "report.md").read_text()
    assert "**stt-mram-22nm**, write_pulse_ns 4 to 10: changes write; at best 1.00× the " \
        "energy at nominal. **The knob trades nothing here**: this deployment programs the " \
        "weights once per 1e+06 inferences." in text
    # relaxed refresh is visible at one inference a second, invisible at 10 000
    # (refresh is 6 % of the DDR3 background power at 64 ms, so 4 s refresh saves about 5 %)
    assert _ratio(resident, "dram-ddr3-refresh", "refresh_ms", 4096, 64) < 0.97
    throughput = aggregate(out, ["deployment=throughput"])
    assert _ratio(throughput, "dram-ddr3-refresh", "refresh_ms", 4096, 64) > 0.999


def test_repricing_evaluates_nothing(sweep: tuple[Path, Path, SweepResults],
                                     tmp_path: Path) -> None:
    config, out, _ = sweep
    with ResultStore(out / STORE_FILENAME) as s:
        rows = len(s)
    # memsim run with another deployment finds every row stored
    lines: list[str] = []
    spec = load_experiment(config, ["deployment=streamed"])
    results = run_experiment(spec, tmp_path / "copy", executor="inprocess", progress=False)
    assert results.deployment.preset == "streamed"  # (a fresh dir evaluates, of course)
    import shutil

    again = tmp_path / "again"
    shutil.copytree(out, again)
    run_experiment(spec, again, executor="inprocess", progress=False, log=lines.append)
    assert any(line.startswith("0 evaluations") for line in lines), lines
    # memsim pareto DIR --set ... --out DIR2: new files, the store untouched
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["pareto", str(out), "--set", "deployment=streamed",
                              "--set", "deployment.inference_rate_hz=100",
                              "--out", str(tmp_path / "streamed")])
    assert args.func(args) == 0
    with ResultStore(out / STORE_FILENAME) as s:
        assert len(s) == rows
    budgets = list(csv.DictReader(io.StringIO((tmp_path / "streamed" / "budgets.csv")
                                              .read_text())))
    assert "relative_energy" in budgets[0]
    report = (tmp_path / "streamed" / "report.md").read_text()
    assert "the **streamed** preset" in report and "100 inferences/s" in report
    assert "--set deployment=streamed --set deployment.inference_rate_hz=100" in report
    # only repricing sections may change after a sweep
    with pytest.raises(RunnerError, match="--set chips=4: only deployment, reference, pareto"):
        aggregate(out, ["chips=4"])


def test_scopes_never_share_a_front(sweep: tuple[Path, Path, SweepResults]) -> None:
    _, out, results = sweep
    scopes = {scope for (_, _, scope) in results.fronts}
    assert scopes == {"array", "cell"}
    for (_, _, scope), front in results.fronts.items():
        assert {results.cells[i].energy_scope for i in front} == {scope}
        assert all((results.cells[i].device == "pcm-mlc") == (scope == "cell") for i in front)
    assert {b.scope for b in results.budgets} == {"array", "cell"}
    text = (out / "report.md").read_text()
    assert "**Cell-scope energies** (pcm-mlc): the cell alone, no periphery" in text
    assert math.isfinite(results.cells[0].energy_pj)


# -- the budget rule on cells built by hand ---------------------------------------------------


def _cell(energy: float, low: float, *, write: float = 0.0, ber: float = 0.0,
          accuracy: float | None = None, high: float | None = None) -> CellResult:
    acc = accuracy if accuracy is not None else low + 0.005
    return CellResult(
        model="m", scenario="s", device="d", placement="all", protection="none",
        control_knobs={"k": energy}, environment_knobs={}, chips=4, trials=1, complete=True,
        clean_accuracy=0.95, accuracy=acc, accuracy_low=low,
        accuracy_high=high if high is not None else acc + 0.005,
        accuracy_half_width=0.005, mlm=None, mlm_normalised=None, bit_errors=None,
        under_test_ber=None, residual_bit_errors=None, corrected_words=None,
        uncorrectable_words=None, device_ber=ber, data_bits=8, stored_bits=8,
        reliable_bits=0, energy_scope="array", energy_pj=energy, energy_read_pj=energy,
        energy_reliable_read_pj=0.0, energy_static_pj=0.0, energy_refresh_pj=0.0,
        energy_write_pj=write, energy_nominal_pj=energy, reference_energy_pj=energy,
        energy_assumed=False, energy_assumed_figures=(), energy_under_test_nominal_pj=1.0,
        on_front=False, write_pj_per_programming=write * 1000.0, chip_accuracy=())


def test_the_cheapest_qualifying_point_is_judged_by_its_low_end() -> None:
    cells = [_cell(10.0, 0.94), _cell(5.0, 0.93, accuracy=0.945, high=0.96), _cell(8.0, 0.941)]
    # within 1 point of 0.95: low ends >= 0.94 qualify (5.0's mean would, its low end not)
    assert _cheapest(cells, [0, 1, 2], 0.95, 1.0, "accuracy_low") == 2
    assert _cheapest(cells, [0, 1, 2], 0.95, 1.0, "accuracy_high") == 1
    assert _cheapest(cells, [0, 1, 2], 0.95, 0.5, "accuracy_low") is None


def test_energies_within_the_tie_go_to_the_fewest_errors() -> None:
    cells = [_cell(100.0, 0.945, ber=1e-3), _cell(100.0 * (1 + ENERGY_TIE / 2), 0.945, ber=1e-9),
             _cell(100.0 * (1 + 2 * ENERGY_TIE), 0.945, ber=0.0)]
    assert _cheapest(cells, [0, 1, 2], 0.95, 1.0, "accuracy_low") == 1


def test_the_range_of_inferences_per_write_over_which_a_choice_stays_cheapest() -> None:
    d = DEPLOYMENT_PRESETS["always-on"]  # N = 1e6 now
    n = d.amortised_inferences_per_write
    # p: rest 10, one programming 1000 pJ; q: rest 12, programming 100 pJ (cheaper writes);
    # r: rest 9.99, programming 1e7 pJ (cheaper rest, dearer writes)
    p = _cell(10.0 + 1000.0 / n, 0.945)
    q = _cell(12.0 + 100.0 / n, 0.945)
    r = _cell(9.99 + 1e7 / n, 0.945)
    for c, w in ((p, 1000.0), (q, 100.0), (r, 1e7)):
        object.__setattr__(c, "write_pj_per_programming", w)
    cells = [p, q, r]
    low, high = _cheapest_while(cells, [0, 1, 2], 0, budget_floor(0.95, 1.0), d)
    # q wins when 12 + 100/N < 10 + 1000/N, i.e. N < 450; r wins when N > 1e7 - 1000 / 0.01
    assert low == pytest.approx(450.0)
    assert high == pytest.approx((1e7 - 1000.0) / 0.01)
    streamed = DEPLOYMENT_PRESETS["streamed"]
    assert _cheapest_while(cells, [0, 1, 2], 0, budget_floor(0.95, 1.0), streamed) is None


def test_placements_mixing_scopes_are_left_out_and_said_so(tmp_path: Path) -> None:
    checkpoint = golden_checkpoint_file(tmp_path / "golden.pt")
    config = sweep_config(tmp_path, checkpoint, """\
        devices:
          - device: pcm-mlc
            sweep: {pv_iterations: [3.0, 2.2]}
        placements:
          - name: all
          - name: edges-in-sram
            fixed:
              - {name: sram, device: sram-14nm, layers: [first, last]}
        chips: 2
        deployment: throughput
        """)
    results = run_experiment(load_experiment(config), tmp_path / "out", executor="inprocess",
                             progress=False)
    scopes = {c.placement: c.energy_scope for c in results.cells}
    assert scopes == {"all": "cell", "edges-in-sram": "mixed"}
    on_fronts = {results.cells[i].placement for f in results.fronts.values() for i in f}
    assert on_fronts == {"all"}
    assert {results.cells[b.cell].placement for b in results.budgets if b.cell is not None} \
        == {"all"}
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Left out of fronts and budgets: placements whose memories mix energy scopes " \
        "(with pcm-mlc under test)" in text


def test_a_sweep_from_before_deployments_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / STORE_FILENAME).write_bytes(b"")
    (tmp_path / "manifest.json").write_text('{"format": 1, "cells": []}')
    with pytest.raises(RunnerError, match=r"written by an older memsim \(manifest format 1\); "
                                          r"rerun `memsim run CONFIG --out"):
        aggregate(tmp_path)


def test_the_range_follows_the_tie_rule_and_allows_fewer_than_one_inference() -> None:
    d = DEPLOYMENT_PRESETS["always-on"]
    n = d.amortised_inferences_per_write
    # p and q read alike; q's programming is cheaper but it has more bit errors: within the
    # 0.1 % tie p is chosen (fewer errors), below N = 899.9 / 0.01 q is cheaper beyond the tie
    p = _cell(10.0 + 1000.0 / n, 0.945, ber=1e-9)
    q = _cell(10.0 + 100.0 / n, 0.945, ber=1e-3)
    object.__setattr__(p, "write_pj_per_programming", 1000.0)
    object.__setattr__(q, "write_pj_per_programming", 100.0)
    cells = [p, q]
    assert _cheapest(cells, [0, 1], 0.95, 1.0, "accuracy_low") == 0
    low, high = _cheapest_while(cells, [0, 1], 0, budget_floor(0.95, 1.0), d)
    assert low == pytest.approx(89990.0, rel=1e-6) and high == math.inf
    # reprogrammed weights can serve less than one inference per programming
    rare = parse_experiment(_doc({"preset": "reprogrammed-hourly",
                                  "inference_rate_hz": 1e-4})).deployment
    assert rare.amortised_inferences_per_write == pytest.approx(0.36)
    a = _cell(10.0 + 1000.0 / 0.36, 0.945)
    object.__setattr__(a, "write_pj_per_programming", 1000.0)
    low, high = _cheapest_while([a], [0], 0, budget_floor(0.95, 1.0), rare)
    assert (low, high) == (0.0, math.inf)


def test_the_reference_is_priced_as_swept(tmp_path: Path) -> None:
    """A reference device file changed or removed after the sweep changes nothing."""
    reference = tmp_path / "my-sram.yaml"
    reference.write_text(Path(resolve_device_path("sram-14nm")).read_text()
                         .replace("name: sram-14nm", "name: my-sram", 1))
    checkpoint = golden_checkpoint_file(tmp_path / "golden.pt")
    config = sweep_config(tmp_path, checkpoint, f"""\
        devices:
          - device: dram-ddr3-refresh
            sweep: {{refresh_ms: [64, 1024]}}
        chips: 2
        deployment: always-on
        reference: {{device: {reference}}}
        """)
    results = run_experiment(load_experiment(config), tmp_path / "out", executor="inprocess",
                             progress=False)
    before = [c.reference_energy_pj for c in results.cells]
    assert all(e is not None and e > 0 for e in before)
    reference.write_text(reference.read_text().replace("28.0", "56.0"))
    assert [c.reference_energy_pj for c in aggregate(tmp_path / "out").cells] == before
    reference.unlink()
    assert [c.reference_energy_pj for c in aggregate(tmp_path / "out").cells] == before
    # naming another reference reads that one
    other = aggregate(tmp_path / "out", ["reference.device=dram-ddr3-refresh"])
    # (the first cell is DRAM at nominal: its own reference)
    assert other.cells[0].relative_energy == pytest.approx(1.0)


def test_overridden_presets_say_so_and_bad_values_are_one_line(
        sweep: tuple[Path, Path, SweepResults]) -> None:
    _, out, _ = sweep
    tuned = aggregate(out, ["deployment.inference_rate_hz=0.001"])
    assert tuned.deployment.label == "always-on with inference_rate_hz changed"
    assert tuned.deployment.description == ""
    for bad, message in (
            ("pareto.budgets_points=0.5", "pareto.budgets_points: expected a list"),
            ("pareto.budgets_points=[]", "expected a list of at least 1 item"),
            ("deployment.inference_rate_hz=1e-320", "expected a rate whose inverse is finite"),
            ("deployment.capacity_mib=0.0001", "deployment (or a fixed memory's capacity_mib)")):
        with pytest.raises(MemsimError, match=re.escape(message)):
            aggregate(out, [bad])


def test_the_front_treats_energies_within_the_tie_as_equal() -> None:
    # a: cheapest by a hair but with more errors; b: 0.05 % dearer, fewer errors, as accurate
    # as clean; c: twice the energy, no better: the front is b alone
    a = _cell(100.0, 0.90, accuracy=0.905, high=0.91, ber=1e-2)
    b = _cell(100.05, 0.948, accuracy=0.95, high=0.952, ber=1e-6)
    c = _cell(200.0, 0.948, accuracy=0.95, high=0.952)
    assert _fronts([a, b, c]) == {("m", "s", "array"): (1,)}
    # outside the tie the cheaper point stays first, and b beats it beyond noise
    far = _cell(99.0, 0.90, accuracy=0.905, high=0.91, ber=1e-2)
    # within the tie, noise does not decide: a noisy score above b's on more errors comes
    # after b and is no better beyond noise
    lucky = _cell(100.0, 0.945, accuracy=0.951, high=0.957, ber=1e-2)
    assert _fronts([lucky, b, c]) == {("m", "s", "array"): (1,)}
    assert _fronts([far, b, c]) == {("m", "s", "array"): (0, 1)}
