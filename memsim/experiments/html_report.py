"""`report.html`: the sweep's answer and every cell in one self-contained, interactive page.

The page states what `report.md` states (the headline and the device savings come from the
same `report.answer_blocks` and `report.savings_blocks`, read from `SweepResults`; nothing is
recomputed) and draws every cell in three linked views: energy against accuracy per model and
scenario with the noise-aware fronts, accuracy against each device's knob, and the devices'
bit error rates against their knobs. Hovering a point shows the cell (knobs, storage variant,
accuracy interval, energy terms, front membership, provenance); clicking pins it and
highlights it in every view; filters by device, model, scenario and storage variant redraw
every view.

Hand-written SVG, CSS and JavaScript (`report_assets/`), inlined with the data as one JSON
block: no dependency beyond the default install, no request of any kind (it opens offline
from file://), a few hundred KB, and the same bytes for the same results (no time stamps: a
resumed or differently executed sweep writes the same file).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from memsim.experiments.aggregation import SweepResults
from memsim.experiments.outputs import result_rows
from memsim.experiments.pareto import ENERGY_TIE
from memsim.experiments.records import CellResult
from memsim.experiments.report import (
    BELOW_POINTS,
    BER_FLOOR,
    AnswerBlock,
    AnswerTable,
    ReportDevices,
    answer_blocks,
    ber_curves,
    savings_blocks,
)
from memsim.files import atomic_write_text

__all__ = ["HTML_REPORT", "write_html_report"]

HTML_REPORT = "report.html"

_ASSETS = ("report_assets/report.css", "report_assets/report.js")


def _asset(name: str) -> str:
    return resources.files("memsim.experiments").joinpath(name).read_text(encoding="utf-8")


def _json_value(v: Any) -> Any:
    """JSON has no infinities: non-finite floats are written as `results.csv` writes them."""
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    if isinstance(v, tuple | list):
        return [_json_value(x) for x in v]
    return v


def _script_json(data: Any) -> str:
    """JSON safe inside <script>: no `<`, `>` or `&` (so no `</script>` or `<!--`) and no
    line separators a JavaScript parser would trip on."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


# -- the answer, as report.md words it ---------------------------------------------------------

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)([^*]+?)(?<!\s)\*(?![\w*])")


def _inline(text: str) -> str:
    """report.md's inline Markdown (code, bold, italic) as HTML, everything else escaped."""
    out = []
    for i, part in enumerate(_CODE.split(text)):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            part = _BOLD.sub(r"<strong>\1</strong>", html.escape(part))
            out.append(_ITALIC.sub(r"<em>\1</em>", part))
    return "".join(out)


def _table(table: AnswerTable) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = []
    for i, row in enumerate(table.rows):
        cells = table.cells[i] if i < len(table.cells) else ()
        attrs = (f' class="pick" data-cells="{" ".join(map(str, cells))}" tabindex="0" '
                 'title="show this point in the views below"' if cells else "")
        rows.append(f"<tr{attrs}>" + "".join(f"<td>{html.escape(v)}</td>" for v in row)
                    + "</tr>")
    return (f'<div class="table-wrap"><table class="answer"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _blocks_html(blocks: Sequence[AnswerBlock]) -> list[str]:
    out = []
    for b in blocks:
        if isinstance(b, AnswerTable):
            out.append(_table(b))
        elif b.startswith("## "):
            out.append(f"<h2>{_inline(b[3:])}</h2>")
        elif b:
            out.append(f"<p>{_inline(b)}</p>")
    return out


def _front_rule() -> str:
    return (
        "**Fronts** are noise-aware, one per model, scenario and energy scope: a point stays on "
        "its front only if it is significantly more accurate than every cheaper point (the low "
        "end of its 95 % interval above the other's high end; points on the same chips are "
        "compared by the paired interval of their difference), accuracies above clean count "
        f"as clean, and energies within {100 * ENERGY_TIE:g} % of a cheaper one count as equal.")


# -- the data the views draw -------------------------------------------------------------------


def _knob_json(results: SweepResults, label: str) -> dict[str, Any]:
    spec = results.device_models[label].spec
    return {k.name: {"unit": k.unit, "role": k.role.value, "nominal": k.nominal.value,
                     "low": k.low, "high": k.high,
                     "log": k.scale.value == "log" and k.low > 0,
                     "description": k.description or ""} for k in spec.knobs}


def _data(results: SweepResults, devices: ReportDevices) -> dict[str, Any]:
    cells = results.cells
    columns, rows = result_rows(cells)
    curves = {c.label: c for c in ber_curves(results, devices)}
    device_rows = []
    for label, info in results.devices.items():
        spec = results.device_models[label].spec
        mine = [c for c in cells if c.device == label and c.accuracy is not None]
        curve = curves.get(label)
        device_rows.append({
            "label": label, "name": info.get("name", spec.name), "file": info.get("file", ""),
            "spec_hash": info.get("spec_hash", ""), "technology": str(spec.technology),
            "scope": spec.energy.scope.value, "swept": list(devices.swept(label)),
            "x_knob": devices.x_knob(label, mine), "knobs": _knob_json(results, label),
            "sources": [s.id for s in spec.sources],
            "ber": None if curve is None else {
                "knob": curve.knob.name,
                "x": [curve.position(v) for v in curve.grid],
                "y": [_json_value(float(b)) for b in curve.ber],
                "low": curve.knob.low, "high": curve.knob.high, "log": curve.log}})
    energy_terms = [n for n in CellResult.columns() if n.startswith("energy_")
                    and n.endswith("_pj") and n not in ("energy_pj", "energy_nominal_pj")]
    return {
        "name": results.name,
        "deployment": results.deployment.label,
        "reference": results.reference,
        "columns": columns,
        "rows": [_json_value(row) for row in rows],
        "priced": [1 if c.priced else 0 for c in cells],
        "fronts": [[m, s, scope, list(members)]
                   for (m, s, scope), members in results.fronts.items()],
        "budgets": [[b.model, b.scenario, b.scope, b.budget_points, b.cell]
                    for b in results.budgets],
        "energy_terms": energy_terms,
        "clean": {m: r.accuracy for m, r in results.clean.items()},
        "devices": device_rows,
        "below_points": BELOW_POINTS,
        "ber_floor": BER_FLOOR,
    }


# -- the page ----------------------------------------------------------------------------------


def _devices_html(results: SweepResults) -> list[str]:
    rows = []
    for label, info in results.devices.items():
        spec = results.device_models[label].spec
        sources = "".join(f"<li><strong>{html.escape(s.id)}</strong>: "
                          f"{html.escape(s.citation)}</li>" for s in spec.sources)
        rows.append(f"<tr><td><strong>{html.escape(label)}</strong></td>"
                    f"<td>{html.escape(str(spec.technology))}</td>"
                    f"<td>{html.escape(spec.energy.scope.value)}</td>"
                    f"<td class=\"path\">{html.escape(str(info.get('file', '')))}</td>"
                    f"<td>{html.escape(spec.description.strip())}<ul>{sources}</ul></td></tr>")
    return ['<section id="devices"><h2>Devices</h2>',
            '<div class="table-wrap"><table class="devices"><thead><tr><th>device</th>'
            "<th>technology</th><th>energy scope</th><th>file</th><th>description and sources"
            f"</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"]


def render_html(results: SweepResults, *, command: str = "") -> str:
    """The page's text (`write_html_report` writes it)."""
    devices = ReportDevices(results)
    title = f"memsim sweep: {results.name}" + (" (dry run)" if results.dry_run else "")
    head = [f"<h1>{html.escape(title)}</h1>"]
    facts = [f"{len(results.cells)} cells", f"{len(results.devices)} devices",
             f"{len(results.clean)} models",
             f"{len({c.scenario for c in results.cells})} scenarios",
             f"{len({(c.placement, c.protection) for c in results.cells})} storage variants"]
    head.append(f'<p class="facts">{html.escape(" · ".join(facts))}</p>')
    if command:
        head.append(f"<p>Made with <code>{html.escape(command)}</code>.</p>")
    head.append('<nav><a href="#answer">the answer</a> · <a href="#explore">every point</a> · '
                '<a href="#devices">devices</a></nav>')
    blocks = answer_blocks(results, devices)
    # the front rule right after the budget rule (report.md leaves it to docs/experiments.md)
    at = next((i + 1 for i, b in enumerate(blocks)
               if isinstance(b, str) and b.startswith("**Reference**")), len(blocks))
    answer = _blocks_html([*blocks[:at], _front_rule(), *blocks[at:]])
    explore = [
        '<section id="explore"><h2>Every point</h2>',
        '<p class="hint">Hover a point for its cell; click it to pin the details and highlight '
        "it in every view (Esc or a click on empty space releases it). A row of the answer "
        "above selects its point. Filters redraw every view.</p>",
        '<div id="filters" class="filters"></div>',
        '<h3>Energy and accuracy</h3>',
        '<div class="controls"><label>x axis <select id="x-axis">'
        '<option value="energy_pj">energy per inference (pJ)</option>'
        '<option value="relative_energy">energy relative to the reference</option>'
        '<option value="relative_to_nominal">energy relative to the device at nominal knobs'
        "</option></select></label>"
        '<label><input type="checkbox" id="full-range"> accuracy axis from 0 %</label></div>',
        '<div id="pareto-legend" class="legend"></div>',
        '<div id="pareto-view" class="view grid"></div>',
        '<h3>Accuracy against the knob</h3>',
        '<div class="controls"><label>device <select id="knob-device"></select></label>'
        '<span class="note">the device of a selected point is shown</span></div>',
        '<div id="knob-legend" class="legend"></div>',
        '<div id="knob-view" class="view grid"></div>',
        '<h3>Bit error rate against the knob</h3>',
        '<div id="ber-view" class="view"></div>',
        '<div id="ber-legend" class="legend"></div>',
        "</section>"]
    data = _script_json(_data(results, devices))
    body = [
        '<header id="top">', *head, "</header>",
        '<section id="answer">', *answer, *_blocks_html(savings_blocks(results)), "</section>",
        *explore, *_devices_html(results),
        '<div id="tooltip" role="tooltip" hidden></div>',
        "<noscript><p>The views need JavaScript; the answer above does not.</p></noscript>",
        f'<script type="application/json" id="memsim-data">{data}</script>',
        f"<script>\n{_asset(_ASSETS[1])}</script>"]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>\n{_asset(_ASSETS[0])}</style>",
        "</head>", "<body>", '<main id="page">', *body, "</main>", "</body>", "</html>", ""])


def write_html_report(out_dir: Path, results: SweepResults, *, command: str = "") -> Path:
    """Write `report.html` into `out_dir` (atomically) and return its path."""
    return atomic_write_text(Path(out_dir) / HTML_REPORT, render_html(results, command=command))
