"""report.html: self-contained, the same answer as report.md, the same values as results.csv,
safe with hostile device names, and the same bytes for the same results (no browser here; the
page's behaviour is tested in test_report_browser.py)."""

from __future__ import annotations

import csv
import fnmatch
import json
import re
import tomllib
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from memsim.experiments.aggregation import SweepResults, aggregate
from memsim.experiments.html_report import HTML_REPORT, _inline, render_html, write_html_report
from memsim.experiments.store import csv_cell

ROOT = Path(__file__).resolve().parents[1]
_DATA = re.compile(r'<script type="application/json" id="memsim-data">(.*?)</script>', re.S)


def _page(small_sweep: tuple[Path, Path, Any]) -> str:
    return (small_sweep[1] / HTML_REPORT).read_text(encoding="utf-8")


def _data(page: str) -> dict[str, Any]:
    found = _DATA.findall(page)
    assert len(found) == 1
    data: dict[str, Any] = json.loads(found[0])
    return data


class _Tables(HTMLParser):
    """The text of every table cell in the element with `id`, table by table."""

    def __init__(self, id_: str) -> None:
        super().__init__()
        self.id, self.depth, self.tables = id_, 0, []  # type: list[list[list[str]]]
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth or ("id", self.id) in attrs:
            self.depth += 1
        if not self.depth:
            return
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        self.depth -= 1
        if tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.append("".join(self.cell))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[-1].append(self.row)
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def _html_tables(page: str, id_: str) -> list[list[list[str]]]:
    parser = _Tables(id_)
    parser.feed(page)
    return parser.tables


def _md_tables(lines: list[str]) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    previous = ""
    for line in lines:
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            if not re.fullmatch(r"\|(---\|)+", line):
                tables[-1].append([c.strip() for c in line[1:-1].split("|")])
        previous = line
    return tables


def test_every_sweep_writes_report_html(small_sweep: tuple[Path, Path, Any]) -> None:
    _, out, results = small_sweep
    assert out / HTML_REPORT in results.outputs
    page = _page(small_sweep)
    assert page.startswith("<!DOCTYPE html>")
    assert f"<title>memsim sweep: {results.name}</title>" in page
    for needed in ('id="pareto-view"', 'id="knob-view"', 'id="ber-view"', 'id="filters"',
                   'id="tooltip"', "always-on", "noise-aware"):
        assert needed in page


def test_the_page_is_self_contained(small_sweep: tuple[Path, Path, Any]) -> None:
    page = _page(small_sweep)
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link\b", page, re.I)
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(https?:)?//""", page, re.I)
    assert "@import" not in page
    # the style and the script are inlined, the data are one JSON block
    assert page.count("<style>") == 1 and page.count("<script") == 2


def test_the_data_are_results_csv(small_sweep: tuple[Path, Path, Any]) -> None:
    _, out, results = small_sweep
    data = _data(_page(small_sweep))
    with (out / "results.csv").open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert data["columns"] == header
    assert len(data["rows"]) == len(rows) == len(results.cells)
    # every value reads as results.csv writes it (floats exactly, inf as "inf")
    assert [[csv_cell(v) for v in row] for row in data["rows"]] == rows
    accuracy, energy = header.index("accuracy"), header.index("energy_pj")
    for row, cell in zip(data["rows"], results.cells, strict=True):
        assert row[accuracy] == cell.accuracy and row[energy] == cell.energy_pj
    assert data["priced"] == [int(c.priced) for c in results.cells]
    assert {d["label"] for d in data["devices"]} == set(results.devices)


def test_the_fronts_and_budgets_are_the_aggregations(small_sweep: tuple[Path, Path, Any]) -> None:
    _, _, results = small_sweep
    data = _data(_page(small_sweep))
    assert data["fronts"] == [[m, s, scope, list(members)]
                              for (m, s, scope), members in results.fronts.items()]
    assert any(members for *_, members in data["fronts"])
    assert data["budgets"] == [[b.model, b.scenario, b.scope, b.budget_points, b.cell]
                               for b in results.budgets]
    on_front = data["columns"].index("on_front")
    members = {i for *_, front in data["fronts"] for i in front}
    assert {i for i, row in enumerate(data["rows"]) if row[on_front]} == members


def test_the_headline_is_report_mds(small_sweep: tuple[Path, Path, Any]) -> None:
    _, out, _ = small_sweep
    page = _page(small_sweep)
    md = (out / "report.md").read_text(encoding="utf-8").splitlines()
    answer = md[md.index("## The answer"):md.index("![savings per device](savings.png)")]
    expected = _md_tables(answer)
    assert len(expected) >= 2  # at least one headline table and one savings table
    assert _html_tables(page, "answer") == expected
    # the rows naming a chosen point link to it
    assert re.search(r'<tr class="pick" data-cells="\d+( \d+)*"', page)
    assert "<strong>Deployment</strong>: the <strong>always-on</strong> preset" in page


def test_a_hostile_device_name_is_escaped(small_sweep: tuple[Path, Path, Any]) -> None:
    _, _, results = small_sweep
    evil = 'sram</script><b>x" onmouseover="alert(1)'
    old = "sram-14nm"

    def rename(label: str) -> str:
        return evil if label == old else label

    hostile: SweepResults = replace(
        results, cells=tuple(replace(c, device=rename(c.device)) for c in results.cells),
        devices={rename(k): v for k, v in results.devices.items()},
        device_models={rename(k): v for k, v in results.device_models.items()})
    page = render_html(hostile, command="memsim run </script><script>alert(1)</script>")
    assert "<b>x" not in page and "<script>alert" not in page
    assert 'onmouseover="alert' not in page
    assert page.count("</script>") == 2  # the data block's and the script's own
    assert "sram&lt;/script&gt;&lt;b&gt;x&quot; onmouseover=&quot;alert(1)" in page
    data = _data(page)
    assert evil in {d["label"] for d in data["devices"]}
    assert evil in {row[data["columns"].index("device")] for row in data["rows"]}


def test_the_same_results_give_the_same_bytes(small_sweep: tuple[Path, Path, Any],
                                              tmp_path: Path) -> None:
    _, out, results = small_sweep
    first = write_html_report(tmp_path / "a", results).read_bytes()
    second = write_html_report(tmp_path / "b", results).read_bytes()
    assert first == second
    # aggregated again from the store (as `memsim pareto DIR` does): the sweep's own file
    again = render_html(aggregate(out)).encode("utf-8")
    assert again == (out / HTML_REPORT).read_bytes() == first


def test_inline_markdown_is_escaped_first() -> None:
    assert _inline("**a** `<b>*x*</b>` *c* x<y & z") == (
        "<strong>a</strong> <code>&lt;b&gt;*x*&lt;/b&gt;</code> <em>c</em> x&lt;y &amp; z")
    assert _inline("1.62e+03* and 2*3") == "1.62e+03* and 2*3"


def test_the_assets_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["memsim.experiments"]
    assets = ROOT / "memsim" / "experiments" / "report_assets"
    files = sorted(p.relative_to(assets.parent).as_posix() for p in assets.iterdir())
    assert files and all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files)


@pytest.mark.parametrize("name", ["report.css", "report.js"])
def test_the_assets_request_nothing(name: str) -> None:
    text = (ROOT / "memsim" / "experiments" / "report_assets" / name).read_text()
    assert "innerHTML" not in text and "fetch(" not in text and "XMLHttpRequest" not in text
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", text)
