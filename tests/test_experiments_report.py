"""The sweep report: the answer first, pictures a reader can use, nothing recomputed."""

from __future__ import annotations

import re
import textwrap

import pytest
from sweeps import golden_checkpoint_file

from memsim.experiments.aggregation import SweepResults
from memsim.experiments.report import ReportDevices
from memsim.experiments.runner import run_experiment
from memsim.spec.experiment import load_experiment

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepResults:
    tmp = tmp_path_factory.mktemp("report")
    a = golden_checkpoint_file(tmp / "a.pt")
    b = golden_checkpoint_file(tmp / "b.pt", seed=5)
    config = tmp / "exp.yaml"
    config.write_text(textwrap.dedent(f"""\
        schema_version: 1
        name: report-test
        seed: 3
        data: {{name: digits, test_images: 60}}
        models:
          - {{name: a, checkpoint: {a}}}
          - {{name: b, checkpoint: {b}}}
        devices:
          - device: sram-14nm
            sweep: {{v_rel: [1.0, 0.9, 0.8]}}
          - device: dram-ddr3-refresh
            sweep: {{refresh_ms: [64, 4096]}}
          - device: fefet-slc-100
        scenarios:
          - name: typical
          - name: hot
            knobs: {{temperature_c: 85}}
        chips: 3
        deployment: always-on
        reference: {{device: sram-14nm}}
        """), encoding="utf-8")
    return run_experiment(load_experiment(config), tmp / "out", executor="inprocess",
                          progress=False, command="memsim run exp.yaml")


def test_the_report_opens_with_the_answer(sweep: SweepResults) -> None:
    text = (sweep.out_dir / "report.md").read_text()
    lines = text.splitlines()
    first_table = next(i for i, line in enumerate(lines) if line.startswith("|"))
    head = "\n".join(lines[:first_table])
    # the deployment and the reference are stated before any number
    assert "## The answer" in head
    assert "**Deployment**: the **always-on** preset" in head
    assert "programmed once per 1e+06 inferences" in head and "over 1 s per inference" in head
    assert "**Reference**: energies are compared with sram-14nm at nominal (array scope)" in head
    assert "judged by the low end of each point's 95 % accuracy interval" in head
    # then one line per model, scenario and chosen point
    table = []
    for line in lines[first_table:]:
        if not line.startswith("|"):
            break
        table.append(line)
    assert table[0].startswith("| model | scenario | budget | device | knobs | storage |")
    rows = table[2:]
    assert {r.split(" | ")[0].strip("| ") for r in rows} == {"a", "b"}
    assert all(re.search(r"≤ [0-9, ]+ points", r) for r in rows)
    assert len(rows) <= 2 * 2 * 2  # models x scenarios x budgets at most
    # the whole report stays short: no table of every cell
    assert len(lines) < 140
    assert "`results.csv`: every cell" in text


def test_the_report_shows_savings_methods_and_trades(sweep: SweepResults) -> None:
    text = (sweep.out_dir / "report.md").read_text()
    assert "## What each device saves" in text
    assert re.search(r"\| sram-14nm \| [0-9.]+× / [0-9.]+× \| [0-9.]+× / [0-9.]+× \|", text)
    # a and b have the same architecture: compared as training methods
    assert "## Training methods at equal accuracy" in text and "**b versus a**" in text
    assert "## The answer under other deployments" in text
    assert "| streamed |" in text and "| **always-on** (this report) |" in text
    assert "- **dram-ddr3-refresh**, refresh_ms 64 to 4096: changes refresh" in text


def test_every_device_gets_a_readable_accuracy_picture(sweep: SweepResults) -> None:
    out = sweep.out_dir
    names = {p.name for p in sweep.outputs}
    assert {"pareto.png", "savings.png", "ber_vs_knob.png", "report.md",
            "accuracy_vs_knob_sram-14nm.png", "accuracy_vs_knob_dram-ddr3-refresh.png",
            "accuracy_vs_knob_fefet-slc-100.png"} <= names
    for p in sweep.outputs:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    devices = ReportDevices(sweep)
    fefet = [c for c in sweep.cells if c.device == "fefet-slc-100"]
    # a device without a control knob is drawn against what its scenarios change
    assert devices.x_knob("fefet-slc-100", fefet) == "temperature_c"
    sram = [c for c in sweep.cells if c.device == "sram-14nm"]
    assert devices.x_knob("sram-14nm", sram) == "v_rel"
    assert "versus None" not in (out / "report.md").read_text()
