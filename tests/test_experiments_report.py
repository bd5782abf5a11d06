"""The sweep report: pictures and report.md from aggregate rows."""

from __future__ import annotations

from pathlib import Path

import memsim
from memsim.experiments.report import ReportRow, write_report


def rows() -> list[ReportRow]:
    out = []
    for model, clean in (("bnn-ce", 0.95), ("bnn-mcel", 0.96)):
        for v, acc, energy in ((1.0, 0.95, 100.0), (0.9, 0.945, 81.0), (0.85, 0.93, 72.0),
                               (0.8, 0.70, 64.0)):
            out.append(ReportRow(model, "nominal", "sram-14nm", {"v_rel": v}, acc - 0.01,
                                 acc - 0.02, acc, clean, energy, energy / 100.0, True,
                                 memsim.load_device("sram-14nm").at(v_rel=v).ber, 4, 8))
        for t, acc, energy in ((64.0, 0.95, 90.0), (1024.0, 0.949, 70.0)):
            out.append(ReportRow(model, "nominal", "dram-ddr3-refresh", {"refresh_ms": t}, acc,
                                 acc - 0.01, acc + 0.01, clean, energy, energy / 90.0, False,
                                 1e-9, 4, 8))
    return out


def test_report_writes_pictures_and_tables(tmp_path: Path) -> None:
    devices = {n: memsim.load_device(n) for n in ("sram-14nm", "dram-ddr3-refresh")}
    written = write_report(tmp_path, rows(), devices, title="test sweep",
                           command="memsim run x.yaml", elapsed_s=12.0)
    names = {p.name for p in written}
    assert {"pareto.png", "ber_vs_knob.png", "report.md", "accuracy_vs_knob_sram-14nm.png",
            "accuracy_vs_knob_dram-ddr3-refresh.png"} <= names
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    text = (tmp_path / "report.md").read_text()
    # bnn-ce: clean 95 %; within 1 point the cheapest is DRAM at 1024 ms (94.9 %, 70 pJ);
    # within 2 points SRAM at 0.85 (92 %) is out, 0.9 (93.5 %) is out too: DRAM again
    assert "| bnn-ce | nominal | ≤ 1 points | dram-ddr3-refresh | refresh_ms=1024 |" in text
    assert "## Devices and their provenance" in text and "chandramoorthy2019" in text
    assert "72*" in text  # assumed energies are starred
