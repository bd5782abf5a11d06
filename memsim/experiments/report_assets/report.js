// memsim report.html: the linked views, drawn as SVG from the page's JSON block.
// Every text from the data goes in through textContent (device names come from user files).
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("memsim-data").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const DEVICE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const MODEL_COLORS = ["#0b5cad", "#c4501a", "#1a7f37", "#8250df", "#b08800", "#cf222e",
    "#1b7c83", "#6e7781"];
  const DASHES = ["", "6 3", "2 3", "8 3 2 3"];
  const MARKERS = ["circle", "square", "triangle", "diamond", "triangle-down", "plus", "cross"];
  const SCOPE_DASH = { array: "", cell: "6 3", mixed: "2 3" };

  // -- the cells ---------------------------------------------------------------------------
  const col = {};
  DATA.columns.forEach((name, i) => { col[name] = i; });
  const knobColumns = DATA.columns.filter((n) => n.startsWith("knob."));
  function num(v) {
    if (v === null || v === undefined) return null;
    if (typeof v === "string") return Number(v.replace("inf", "Infinity"));
    return v;
  }
  const devices = {};
  DATA.devices.forEach((d) => { devices[d.label] = d; });
  const cells = DATA.rows.map((row, i) => {
    const knobs = {};
    knobColumns.forEach((k) => {
      if (row[col[k]] !== null) knobs[k.slice(5)] = num(row[col[k]]);
    });
    return {
      i, row, knobs, priced: DATA.priced[i] === 1,
      model: row[col.model], scenario: row[col.scenario], device: row[col.device],
      placement: row[col.placement], protection: row[col.protection],
      variant: row[col.placement] + " / " + row[col.protection],
    };
  });
  const val = (c, name) => num(c.row[col[name]]);
  const frontOf = new Map();
  DATA.fronts.forEach(([, , scope, members]) => members.forEach((i) => {
    if (!frontOf.has(i)) frontOf.set(i, []);
    frontOf.get(i).push(scope);
  }));
  const budgetsOf = new Map();
  DATA.budgets.forEach(([, , scope, points, cell]) => {
    if (cell === null) return;
    if (!budgetsOf.has(cell)) budgetsOf.set(cell, []);
    budgetsOf.get(cell).push("≤ " + g(points) + " points (" + scope + " scope)");
  });
  const unique = (xs) => Array.from(new Set(xs));
  const ORDER = {
    device: DATA.devices.map((d) => d.label).filter((l) => cells.some((c) => c.device === l)),
    model: unique(cells.map((c) => c.model)),
    scenario: unique(cells.map((c) => c.scenario)),
    variant: unique(cells.map((c) => c.variant)),
  };
  const sortedDevices = ORDER.device.slice().sort();
  const deviceColor = (label) => DEVICE_COLORS[sortedDevices.indexOf(label) % DEVICE_COLORS.length];
  const modelColor = (m) => MODEL_COLORS[ORDER.model.indexOf(m) % MODEL_COLORS.length];
  const variantMarker = (v) => MARKERS[ORDER.variant.indexOf(v) % MARKERS.length];

  const state = {
    hidden: { device: new Set(), model: new Set(), scenario: new Set(), variant: new Set() },
    selected: null, pinned: false, xAxis: "energy_pj", fullRange: false, knobDevice: null,
  };
  const visible = (c) => !state.hidden.device.has(c.device) && !state.hidden.model.has(c.model)
    && !state.hidden.scenario.has(c.scenario) && !state.hidden.variant.has(c.variant);

  // -- formatting --------------------------------------------------------------------------
  // Python's "%g" (six significant digits), so numbers read as in report.md and results.csv
  function g(v, precision) {
    const p = precision || 6;
    if (v === null || v === undefined) return "–";
    if (!isFinite(v)) return v > 0 ? "inf" : v < 0 ? "-inf" : "nan";
    if (v === 0) return "0";
    const [mant, ex] = v.toExponential(p - 1).split("e");
    const exp = parseInt(ex, 10);
    const strip = (s) => (s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s);
    if (exp < -4 || exp >= p) {
      return strip(mant) + "e" + (exp < 0 ? "-" : "+") + String(Math.abs(exp)).padStart(2, "0");
    }
    return strip(v.toFixed(Math.max(0, p - 1 - exp)));
  }
  const sig3 = (v) => g(v, 3);  // report.md's energies: "%.3g"
  const pct = (v, digits) => (v === null ? "–" : (100 * v).toFixed(digits === undefined ? 2 : digits));

  // -- DOM helpers -------------------------------------------------------------------------
  function svgEl(tag, attrs, parent) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function htmlEl(tag, attrs, text, parent) {
    const e = document.createElement(tag);
    for (const k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
    if (text !== null && text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function svgText(parent, x, y, text, attrs) {
    const t = svgEl("text", Object.assign({ x, y }, attrs || {}), parent);
    t.textContent = text;
    return t;
  }
  function markerPath(kind, x, y, r) {
    const f = (n) => n.toFixed(2);
    switch (kind) {
      case "square": { const s = r * 0.9; return `M${f(x - s)},${f(y - s)}h${f(2 * s)}v${f(2 * s)}h${f(-2 * s)}Z`; }
      case "triangle": { const s = r * 1.2; return `M${f(x)},${f(y - s)}L${f(x + s)},${f(y + s * 0.8)}L${f(x - s)},${f(y + s * 0.8)}Z`; }
      case "triangle-down": { const s = r * 1.2; return `M${f(x)},${f(y + s)}L${f(x + s)},${f(y - s * 0.8)}L${f(x - s)},${f(y - s * 0.8)}Z`; }
      case "diamond": { const s = r * 1.25; return `M${f(x)},${f(y - s)}L${f(x + s)},${f(y)}L${f(x)},${f(y + s)}L${f(x - s)},${f(y)}Z`; }
      case "plus": { const s = r * 1.1, w = r * 0.4; return `M${f(x - w)},${f(y - s)}h${f(2 * w)}v${f(s - w)}h${f(s - w)}v${f(2 * w)}h${f(w - s)}v${f(s - w)}h${f(-2 * w)}v${f(w - s)}h${f(w - s)}v${f(-2 * w)}h${f(s - w)}Z`; }
      case "cross": { const s = r * 0.9, w = r * 0.35; return `M${f(x - s)},${f(y - s + w)}L${f(x - w)},${f(y)}L${f(x - s)},${f(y + s - w)}L${f(x - s + w)},${f(y + s)}L${f(x)},${f(y + w)}L${f(x + s - w)},${f(y + s)}L${f(x + s)},${f(y + s - w)}L${f(x + w)},${f(y)}L${f(x + s)},${f(y - s + w)}L${f(x + s - w)},${f(y - s)}L${f(x)},${f(y - w)}L${f(x - s + w)},${f(y - s)}Z`; }
      default: return `M${f(x - r)},${f(y)}a${f(r)},${f(r)} 0 1,0 ${f(2 * r)},0a${f(r)},${f(r)} 0 1,0 ${f(-2 * r)},0Z`;
    }
  }
  function markerIcon(kind, color, hollow) {
    const s = svgEl("svg", { width: 14, height: 14, viewBox: "0 0 14 14", "aria-hidden": "true" });
    svgEl("path", { d: markerPath(kind, 7, 7, 4.2), fill: hollow ? "#fff" : color, stroke: color, "stroke-width": 1.3 }, s);
    return s;
  }
  function lineIcon(color, dash, width) {
    const s = svgEl("svg", { width: 28, height: 10, "aria-hidden": "true" });
    svgEl("line", { x1: 1, y1: 5, x2: 27, y2: 5, stroke: color, "stroke-width": width || 1.6, "stroke-dasharray": dash || null }, s);
    return s;
  }

  // -- scales and axes ---------------------------------------------------------------------
  function scale(d0, d1, r0, r1, log) {
    const t = log ? Math.log10 : (v) => v;
    const a = t(d0), b = t(d1);
    const f = (v) => r0 + ((t(v) - a) / ((b - a) || 1)) * (r1 - r0);
    f.d0 = d0; f.d1 = d1; f.log = log;
    return f;
  }
  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const m = raw / p;
    return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
  }
  function linearTicks(d0, d1, count) {
    const step = niceStep(d1 - d0, count);
    const out = [];
    for (let v = Math.ceil(d0 / step - 1e-9) * step; v <= d1 + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return { major: out, minor: [] };
  }
  function logTicks(d0, d1) {
    const lo = Math.floor(Math.log10(d0)), hi = Math.ceil(Math.log10(d1));
    const major = [], minor = [];
    const every = Math.max(1, Math.ceil((hi - lo) / 9));
    for (let e = lo; e <= hi; e++) {
      const v = Math.pow(10, e);
      if (v >= d0 * 0.999 && v <= d1 * 1.001 && (e - lo) % every === 0) major.push(v);
      if (every === 1) for (let m = 2; m < 10; m++) { const w = m * v; if (w > d0 && w < d1) minor.push(w); }
    }
    if (major.length < 3) for (let e = lo; e <= hi; e++) for (const m of [2, 5]) {
      const w = m * Math.pow(10, e); if (w > d0 && w < d1) major.push(w);
    }
    major.sort((a, b) => a - b);
    return { major, minor };
  }
  function tickLabel(parent, x, y, v, log, anchor) {
    const e = Math.round(Math.log10(v));
    if (log && Math.abs(v - Math.pow(10, e)) < 1e-9 * Math.pow(10, e) && (e < -2 || e > 3)) {
      const t = svgEl("text", { x, y, class: "tick", "text-anchor": anchor }, parent);
      t.appendChild(document.createTextNode("10"));
      const sup = svgEl("tspan", { dy: -5, "font-size": 9 }, t);
      sup.textContent = String(e).replace("-", "−");
      return t;
    }
    return svgText(parent, x, y, g(v), { class: "tick", "text-anchor": anchor });
  }
  // frame, grid, ticks and labels of a plot area {l, t, w, h}
  function drawAxes(svg, box, xs, ys, xlabel, ylabel) {
    const grid = svgEl("g", {}, svg);
    const xt = xs.log ? logTicks(xs.d0, xs.d1) : linearTicks(xs.d0, xs.d1, Math.max(3, Math.floor(box.w / 90)));
    const yt = ys.log ? logTicks(ys.d0, ys.d1) : linearTicks(ys.d0, ys.d1, Math.max(3, Math.floor(box.h / 45)));
    xt.minor.forEach((v) => svgEl("line", { x1: xs(v), x2: xs(v), y1: box.t, y2: box.t + box.h, class: "gridline minor" }, grid));
    yt.minor.forEach((v) => svgEl("line", { x1: box.l, x2: box.l + box.w, y1: ys(v), y2: ys(v), class: "gridline minor" }, grid));
    let lastRight = -Infinity;
    xt.major.forEach((v) => {
      const x = xs(v);
      svgEl("line", { x1: x, x2: x, y1: box.t, y2: box.t + box.h, class: "gridline" }, grid);
      svgEl("line", { x1: x, x2: x, y1: box.t + box.h, y2: box.t + box.h + 4, stroke: "#8c959f" }, grid);
      const label = tickLabel(grid, x, box.t + box.h + 16, v, xs.log, "middle");
      const w = label.getComputedTextLength ? label.getComputedTextLength() : 30;
      if (x - w / 2 < lastRight + 4) label.remove(); else lastRight = x + w / 2;
    });
    yt.major.forEach((v) => {
      const y = ys(v);
      svgEl("line", { x1: box.l, x2: box.l + box.w, y1: y, y2: y, class: "gridline" }, grid);
      svgEl("line", { x1: box.l - 4, x2: box.l, y1: y, y2: y, stroke: "#8c959f" }, grid);
      tickLabel(grid, box.l - 7, y + 4, v, ys.log, "end");
    });
    svgEl("rect", { x: box.l, y: box.t, width: box.w, height: box.h, class: "frame" }, svg);
    svgText(svg, box.l + box.w / 2, box.t + box.h + 34, xlabel, { class: "axis-label", "text-anchor": "middle" });
    const yl = svgText(svg, 0, 0, ylabel, { class: "axis-label", "text-anchor": "middle" });
    yl.setAttribute("transform", `translate(14,${box.t + box.h / 2}) rotate(-90)`);
  }
  let panelCount = 0;
  function panel(parent, width, height, title, id) {
    const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "panel", id: id || null }, parent);
    if (title) svgText(svg, width / 2, 17, title, { class: "title", "text-anchor": "middle" });
    const clipId = "clip-" + (++panelCount);
    return { svg, clipId };
  }
  function clip(svg, clipId, box) {
    const defs = svgEl("defs", {}, svg);
    const cp = svgEl("clipPath", { id: clipId }, defs);
    svgEl("rect", { x: box.l - 8, y: box.t - 8, width: box.w + 16, height: box.h + 16 }, cp);
    return svgEl("g", { "clip-path": `url(#${clipId})` }, svg);
  }
  function columns(container, minWidth) {
    const width = Math.max(360, container.clientWidth || 1300);
    const cols = Math.max(1, Math.min(2, Math.floor((width + 12) / (minWidth + 12))));
    return { cols, width: Math.floor((width - 12 * (cols - 1)) / cols) };
  }
  function accuracyFloor(list) {
    if (state.fullRange) return 0;
    const clean = list.map((c) => val(c, "clean_accuracy"));
    return Math.max(0, 100 * Math.min(...clean) - DATA.below_points);
  }
  // A panel of accuracy (y, from the floor of `cells`) against x in [x0, x1]: its size, plot
  // box and scales, shared by the energy and the knob views.
  function accuracyFrame(view, height, x0, x1, logX, cells) {
    const floor = accuracyFloor(cells);
    const { width } = columns(view, 560);
    const box = { l: 58, t: 28, w: width - 58 - 14, h: height - 28 - 58 };
    const xs = scale(x0, x1, box.l, box.l + box.w, logX);
    const ys = scale(floor, 100.5, box.t + box.h, box.t, false);
    return { floor, width, box, xs, ys };
  }
  function point(parent, c, x, y, kind, fill, stroke, r, cls) {
    return svgEl("path", {
      d: markerPath(kind, x, y, r), fill, stroke, class: "pt" + (cls ? " " + cls : ""), "data-cell": c.i,
    }, parent);
  }
  function intervalBar(parent, c, x, ys, floor, color) {
    const lo = val(c, "accuracy_low"), hi = val(c, "accuracy_high");
    if (lo === null || hi === null || hi <= lo) return;
    const top = Math.min(100.5, 100 * hi), bottom = Math.max(floor, 100 * lo);
    if (top <= bottom) return;
    svgEl("line", { x1: x, x2: x, y1: ys(top), y2: ys(bottom), stroke: color, class: "bar", "data-cell": c.i }, parent);
  }

  // -- filters -----------------------------------------------------------------------------
  const FILTER_NAMES = { device: "devices", model: "models", scenario: "scenarios", variant: "storage (placement / protection)" };
  const usedIds = new Set();
  function filterId(kind, value) {
    const base = "filter-" + kind + "-" + value.replace(/[^A-Za-z0-9_.-]+/g, "_");
    let id = base, n = 2;
    while (usedIds.has(id)) id = base + "-" + n++;
    usedIds.add(id);
    return id;
  }
  function buildFilters() {
    const box = document.getElementById("filters");
    ["device", "model", "scenario", "variant"].forEach((kind) => {
      const fs = htmlEl("fieldset", { "data-kind": kind }, null, box);
      const lg = htmlEl("legend", {}, FILTER_NAMES[kind], fs);
      const inputs = [];
      ORDER[kind].forEach((value) => {
        const id = filterId(kind, value);
        const label = htmlEl("label", { for: id }, null, fs);
        const input = htmlEl("input", { type: "checkbox", id, "data-kind": kind }, null, label);
        input.checked = true;
        input.dataset.value = value;
        inputs.push(input);
        if (kind === "device") htmlEl("span", { class: "swatch", style: "background:" + deviceColor(value) }, null, label);
        if (kind === "variant") label.appendChild(markerIcon(variantMarker(value), "#333", false));
        htmlEl("span", {}, value, label);
        input.addEventListener("change", () => {
          if (input.checked) state.hidden[kind].delete(value); else state.hidden[kind].add(value);
          render();
        });
      });
      [["all", true], ["none", false]].forEach(([name, on]) => {
        const b = htmlEl("button", { type: "button" }, name, lg);
        b.addEventListener("click", () => {
          inputs.forEach((input) => {
            input.checked = on;
            if (on) state.hidden[kind].delete(input.dataset.value); else state.hidden[kind].add(input.dataset.value);
          });
          render();
        });
      });
    });
  }

  // -- the Pareto view ---------------------------------------------------------------------
  const X_LABELS = {
    energy_pj: "energy per inference, weight memories (pJ, log scale)",
    relative_energy: "energy ÷ the reference's for the same bits (log scale)",
    relative_to_nominal: "energy ÷ the device's at nominal knobs (log scale)",
  };
  function renderPareto() {
    const view = document.getElementById("pareto-view");
    view.textContent = "";
    const shown = cells.filter((c) => c.priced && visible(c));
    const xOf = (c) => val(c, state.xAxis);
    const drawable = shown.filter((c) => { const x = xOf(c); return x !== null && isFinite(x) && x > 0; });
    if (!drawable.length) {
      htmlEl("p", { class: "empty" }, shown.length ? "No point has this energy (no comparable reference)."
        : "No priced point matches the filters.", view);
      return;
    }
    const groups = new Map();
    drawable.forEach((c) => {
      const key = c.model + "\u0000" + c.scenario;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(c);
    });
    let x0 = Math.min(...drawable.map(xOf)), x1 = Math.max(...drawable.map(xOf));
    const pad = Math.max(0.08, (Math.log10(x1) - Math.log10(x0)) * 0.04);
    x0 = x0 / Math.pow(10, pad); x1 = x1 * Math.pow(10, pad);
    const height = 350;
    const { floor, width, box, xs, ys } = accuracyFrame(view, height, x0, x1, true, drawable);
    const skipped = shown.length - drawable.length;
    groups.forEach((members, key) => {
      const [model, scenario] = key.split("\u0000");
      const { svg, clipId } = panel(view, width, height, model + ", " + scenario, null);
      svg.dataset.model = model;
      svg.dataset.scenario = scenario;
      drawAxes(svg, box, xs, ys, X_LABELS[state.xAxis], "accuracy (%), 95 % interval");
      const g0 = clip(svg, clipId, box);
      const clean = DATA.clean[model];
      if (clean !== undefined) svgEl("line", { x1: box.l, x2: box.l + box.w, y1: ys(100 * clean), y2: ys(100 * clean), class: "clean" }, g0);
      members.forEach((c) => intervalBar(g0, c, xs(xOf(c)), ys, floor, deviceColor(c.device)));
      let below = 0;
      const drawPoint = (c, cls) => {
        const color = deviceColor(c.device);
        const acc = 100 * val(c, "accuracy");
        const under = acc < floor;
        if (under) below++;
        const hollow = c.row[col.energy_assumed] === true;
        if (frontOf.has(c.i)) {
          svgEl("path", { d: markerPath(under ? "triangle-down" : variantMarker(c.variant), xs(xOf(c)), ys(under ? floor : acc), 7),
            class: "front-ring" }, g0);
        }
        return point(g0, c, xs(xOf(c)), ys(under ? floor : acc), under ? "triangle-down" : variantMarker(c.variant),
          hollow ? "#fff" : color, color, frontOf.has(c.i) ? 4.6 : 3.6, (cls || "") + (under ? " below" : ""));
      };
      const onFront = members.filter((c) => frontOf.has(c.i));
      members.filter((c) => !frontOf.has(c.i)).forEach((c) => drawPoint(c, ""));
      DATA.fronts.forEach(([m, s, scope, idx]) => {
        if (m !== model || s !== scenario) return;
        const pts = idx.map((i) => cells[i]).filter((c) => visible(c) && xOf(c) !== null && isFinite(xOf(c)) && xOf(c) > 0)
          .sort((a, b) => xOf(a) - xOf(b));
        if (!pts.length) return;
        let d = "";
        pts.forEach((c, k) => {
          const x = xs(xOf(c)), y = ys(Math.max(floor, 100 * val(c, "accuracy")));
          d += k === 0 ? `M${x.toFixed(1)},${y.toFixed(1)}` : `H${x.toFixed(1)}V${y.toFixed(1)}`;
        });
        svgEl("path", { d, class: "front-line", "stroke-dasharray": SCOPE_DASH[scope] || null, "data-scope": scope }, g0);
      });
      onFront.forEach((c) => drawPoint(c, "front"));
      // front labels: device and swept knob values, skipped where they would overlap
      const placed = [];
      onFront.slice().sort((a, b) => xOf(a) - xOf(b)).forEach((c) => {
        const dev = devices[c.device];
        const knobs = (dev ? dev.swept : []).filter((k) => k in c.knobs).map((k) => g(c.knobs[k])).join(",");
        const text = c.device + " " + (knobs || "nom.");
        const x = xs(xOf(c)) + 6, y = ys(Math.max(floor, 100 * val(c, "accuracy"))) + 13;
        const w = text.length * 5.6, h = 11;
        if (x + w > box.l + box.w || y > box.t + box.h - 2) return;
        if (placed.some((p) => x < p.x + p.w && p.x < x + w && y - h < p.y && p.y - h < y)) return;
        placed.push({ x, y, w });
        svgText(g0, x, y, text, { class: "front-label" });
      });
      const notes = [];
      if (below) notes.push(`▼ ${below} below ${floor.toFixed(0)} %, on the axis`);
      if (skipped) notes.push(`${skipped} without this energy, not drawn`);
      if (notes.length) svgText(svg, box.l, box.t + box.h + 50, notes.join("; "), { class: "note-text" });
    });
  }
  function renderParetoLegend() {
    const box = document.getElementById("pareto-legend");
    box.textContent = "";
    const item = (icon, text) => {
      const s = htmlEl("span", { class: "item" }, null, box);
      s.appendChild(icon);
      htmlEl("span", {}, text, s);
    };
    item(markerIcon("circle", "#555", true), "hollow: the energy rests on an assumed figure");
    const ring = markerIcon("circle", "#555", false);
    svgEl("path", { d: markerPath("circle", 7, 7, 6.3), class: "front-ring" }, ring);
    item(ring, "ringed: on the noise-aware front");
    unique(DATA.fronts.map((f) => f[2])).forEach((scope) => item(lineIcon("#111", SCOPE_DASH[scope]), `front, ${scope}-scope energies`));
    item(lineIcon("#8c959f", "2 3", 1.2), "clean accuracy");
    item(markerIcon("triangle-down", "#555", false), "below the axis");
  }

  // -- accuracy against the knob -----------------------------------------------------------
  function knobDevices() {
    return ORDER.device.filter((l) => !state.hidden.device.has(l)
      && cells.some((c) => c.device === l && visible(c) && val(c, "accuracy") !== null));
  }
  function renderKnobSelect() {
    const select = document.getElementById("knob-device");
    const options = knobDevices();
    if (!options.includes(state.knobDevice)) state.knobDevice = options.length ? options[0] : null;
    select.textContent = "";
    options.forEach((l) => {
      const o = htmlEl("option", {}, l, select);
      o.value = l;
    });
    if (state.knobDevice !== null) select.value = state.knobDevice;
  }
  function knobValue(c, knob) {
    if (knob === null) return 0;
    return knob in c.knobs ? c.knobs[knob] : null;
  }
  function renderKnob() {
    renderKnobSelect();
    const view = document.getElementById("knob-view");
    const legend = document.getElementById("knob-legend");
    view.textContent = "";
    legend.textContent = "";
    const label = state.knobDevice;
    if (label === null) {
      htmlEl("p", { class: "empty" }, "No measured point matches the filters.", view);
      return;
    }
    const dev = devices[label];
    const knob = dev.x_knob;
    const spec = knob === null ? null : dev.knobs[knob];
    const alongEnv = knob !== null && !dev.swept.includes(knob);
    const mine = cells.filter((c) => c.device === label && visible(c) && val(c, "accuracy") !== null
      && knobValue(c, knob) !== null);
    const variants = ORDER.variant.filter((v) => mine.some((c) => c.variant === v));
    const values = mine.map((c) => knobValue(c, knob));
    let x0, x1, log = false;
    if (spec === null) { x0 = -1; x1 = 1; } else {
      log = spec.log && Math.min(...values) > 0;
      x0 = Math.min(...values); x1 = Math.max(...values);
      if (x0 === x1) { x0 -= 1; x1 += 1; }
      if (log) { const p = Math.pow(x1 / x0, 0.04); x0 /= p; x1 *= p; } else { const p = (x1 - x0) * 0.04; x0 -= p; x1 += p; }
    }
    const height = 310;
    const { floor, width, box, xs, ys } = accuracyFrame(view, height, x0, x1, log, mine);
    const xlabel = spec === null ? "the device's only operating point (no knob varies)"
      : `${knob} (${spec.unit}), ${spec.role} knob; nominal ${g(spec.nominal)}` + (log ? ", log scale" : "");
    const lines = [];
    ORDER.model.forEach((m) => {
      if (alongEnv) lines.push([m, null]);
      else ORDER.scenario.forEach((s) => lines.push([m, s]));
    });
    const scenarioDash = (s) => (s === null ? "" : DASHES[ORDER.scenario.indexOf(s) % DASHES.length]);
    variants.forEach((variant) => {
      const { svg, clipId } = panel(view, width, height, `${label}: ${variant}`, null);
      svg.dataset.variant = variant;
      drawAxes(svg, box, xs, ys, xlabel, "accuracy (%), 95 % interval");
      const g0 = clip(svg, clipId, box);
      ORDER.model.forEach((m) => {
        const clean = DATA.clean[m];
        if (clean !== undefined && mine.some((c) => c.model === m)) {
          svgEl("line", { x1: box.l, x2: box.l + box.w, y1: ys(100 * clean), y2: ys(100 * clean), class: "clean", stroke: modelColor(m) }, g0);
        }
      });
      const x = (c) => (spec === null ? (box.l + box.w / 2) : xs(knobValue(c, knob)));
      let below = 0;
      lines.forEach(([m, s]) => {
        const group = mine.filter((c) => c.variant === variant && c.model === m && (s === null || c.scenario === s))
          .sort((a, b) => knobValue(a, knob) - knobValue(b, knob));
        if (!group.length) return;
        const color = modelColor(m);
        const yOf = (c) => ys(Math.max(floor, 100 * val(c, "accuracy")));
        svgEl("path", { d: group.map((c, k) => (k ? "L" : "M") + x(c).toFixed(1) + "," + yOf(c).toFixed(1)).join(""),
          class: "series", stroke: color, "stroke-dasharray": scenarioDash(s) || null }, g0);
        group.forEach((c) => intervalBar(g0, c, x(c), ys, floor, color));
        group.forEach((c) => {
          const under = 100 * val(c, "accuracy") < floor;
          if (under) below++;
          point(g0, c, x(c), yOf(c), under ? "triangle-down" : "circle", color, "#fff", 3.4, under ? "below" : "");
        });
      });
      if (below) svgText(svg, box.l, box.t + box.h + 50, `▼ ${below} below ${floor.toFixed(0)} %, on the axis`, { class: "note-text" });
    });
    const item = (icon, text) => {
      const s = htmlEl("span", { class: "item" }, null, legend);
      s.appendChild(icon);
      htmlEl("span", {}, text, s);
    };
    ORDER.model.filter((m) => mine.some((c) => c.model === m)).forEach((m) => item(lineIcon(modelColor(m), ""), m));
    if (!alongEnv) {
      ORDER.scenario.filter((s) => mine.some((c) => c.scenario === s)).forEach((s) => item(lineIcon("#555", scenarioDash(s)), s));
    } else {
      item(lineIcon("#555", ""), `${knob} is the scenarios' environment knob`);
    }
    item(lineIcon("#8c959f", "2 3", 1.2), "clean accuracy (model colour)");
  }

  // -- bit error rate against the knob -----------------------------------------------------
  function position(curve, v) {
    const span = curve.log ? Math.log(curve.high / curve.low) : curve.high - curve.low;
    if (span <= 0) return 0;
    return curve.log ? Math.log(v / curve.low) / span : (v - curve.low) / span;
  }
  function renderBer() {
    const view = document.getElementById("ber-view");
    const legend = document.getElementById("ber-legend");
    view.textContent = "";
    legend.textContent = "";
    const swept = DATA.devices.filter((d) => d.ber !== null && !state.hidden.device.has(d.label));
    if (!swept.length) {
      htmlEl("p", { class: "empty" }, "No device with a swept knob matches the filters.", view);
      return;
    }
    const width = Math.max(360, view.clientWidth || 1300);
    const height = 380;
    const box = { l: 62, t: 28, w: width - 62 - 16, h: height - 28 - 48 };
    const floor = DATA.ber_floor;
    const xs = scale(-0.03, 1.03, box.l, box.l + box.w, false);
    const ys = scale(floor / 3, 1, box.t + box.h, box.t, true);
    const { svg, clipId } = panel(view, width, height,
      "Bit error rate of the swept devices (lines: at nominal environment; points: each cell, its scenario included)", "ber-panel");
    drawAxes(svg, box, xs, ys, "swept knob, position in its range (0 = low end, 1 = high end; log knobs by their logarithm)",
      "bit error rate on random data");
    const g0 = clip(svg, clipId, box);
    const selDevice = state.selected === null ? null : cells[state.selected].device;
    swept.forEach((d) => {
      const pts = d.ber.x.map((x, k) => [xs(x), ys(Math.max(floor, num(d.ber.y[k])))]);
      svgEl("path", { d: pts.map((p, k) => (k ? "L" : "M") + p[0].toFixed(1) + "," + p[1].toFixed(1)).join(""),
        class: "curve" + (selDevice !== null && selDevice !== d.label ? " dim" : ""), stroke: deviceColor(d.label), "data-device": d.label }, g0);
    });
    swept.forEach((d) => {
      cells.filter((c) => c.device === d.label && visible(c) && d.ber.knob in c.knobs).forEach((c) => {
        const ber = val(c, "device_ber");
        if (ber === null) return;
        point(g0, c, xs(position(d.ber, c.knobs[d.ber.knob])), ys(Math.max(floor, ber)), variantMarker(c.variant),
          deviceColor(d.label), "#fff", 3.6, "");
      });
    });
    swept.forEach((d) => {
      const s = htmlEl("span", { class: "item" }, null, legend);
      s.appendChild(lineIcon(deviceColor(d.label), "", 2));
      const floored = cells.some((c) => c.device === d.label && val(c, "device_ber") !== null && val(c, "device_ber") < floor);
      htmlEl("span", {}, `${d.label} (${d.ber.knob}: ${g(d.ber.low)}..${g(d.ber.high)} ${d.knobs[d.ber.knob].unit}${d.ber.log ? ", log" : ""})${floored ? " *" : ""}`, s);
    });
    htmlEl("span", { class: "item note" }, `*: some points below ${g(floor)}, drawn at it; marker: storage variant`, legend);
  }

  // -- the tooltip and the selection -------------------------------------------------------
  const tip = document.getElementById("tooltip");
  function tipRow(table, key, lines, cls) {
    const tr = htmlEl("tr", {}, null, table);
    htmlEl("th", {}, key, tr);
    const td = htmlEl("td", { class: cls || null }, null, tr);
    (Array.isArray(lines) ? lines : [lines]).forEach((l) => htmlEl("div", {}, l, td));
  }
  function fillTip(c) {
    tip.textContent = "";
    const dev = devices[c.device] || { knobs: {}, sources: [], swept: [] };
    const head = htmlEl("div", { class: "tt-head" }, null, tip);
    htmlEl("span", { class: "swatch", style: "background:" + deviceColor(c.device) }, null, head);
    htmlEl("strong", {}, c.device, head);
    htmlEl("span", {}, "· " + c.model + " · " + c.scenario, head);
    const t = htmlEl("table", {}, null, tip);
    const knobLines = Object.keys(c.knobs).map((k) => {
      const spec = dev.knobs[k];
      return `${k} = ${g(c.knobs[k])}` + (spec ? ` ${spec.unit} (${spec.role})` : "");
    });
    tipRow(t, "knobs", knobLines.length ? knobLines : ["none"]);
    tipRow(t, "storage", `placement ${c.placement}, protection ${c.protection}`);
    const acc = val(c, "accuracy");
    tipRow(t, "accuracy", acc === null ? "not measured"
      : `${pct(acc)} % [${pct(val(c, "accuracy_low"))}, ${pct(val(c, "accuracy_high"))}] (clean ${pct(val(c, "clean_accuracy"))} %)`);
    tipRow(t, "chips, trials", `${val(c, "chips")} chips × ${val(c, "trials")} trials` + (c.row[col.complete] === false ? " (incomplete)" : ""));
    const rel = val(c, "relative_energy"), ref = val(c, "reference_energy_pj");
    tipRow(t, "energy", [
      `${sig3(val(c, "energy_pj"))} pJ per inference (${c.row[col.energy_scope]} scope)`,
      rel === null ? "vs reference: – (not comparable)" : `vs reference: ${sig3(rel)}× (${sig3(ref)} pJ)`,
      `vs nominal knobs: ${sig3(val(c, "relative_to_nominal"))}× (${sig3(val(c, "energy_nominal_pj"))} pJ)`]);
    tipRow(t, "energy terms", DATA.energy_terms.map((n) => `${n.replace(/^energy_|_pj$/g, "").replace(/_/g, " ")}: ${sig3(val(c, n))} pJ`));
    const fronts = frontOf.get(c.i);
    tipRow(t, "front", fronts ? `on the ${fronts.join(", ")}-scope front` : "not on a front", fronts ? "good" : null);
    const chosen = budgetsOf.get(c.i);
    if (chosen) tipRow(t, "chosen", chosen.map((b) => "cheapest within " + b), "good");
    tipRow(t, "bit errors", [`device BER ${g(val(c, "device_ber"))}`, `read BER ${g(val(c, "under_test_ber"))}`]);
    const figures = c.row[col.energy_assumed_figures] || [];
    const prov = [`${dev.name || c.device} (${dev.technology || "?"}, ${dev.scope || "?"}-scope energy)`];
    if (dev.file) prov.push(dev.file);
    if (dev.sources && dev.sources.length) prov.push("sources: " + dev.sources.join(", "));
    tipRow(t, "device", prov);
    if (c.row[col.energy_assumed] === true) {
      tipRow(t, "assumed", figures.length ? figures : ["yes"], "flag");
    }
    htmlEl("div", { class: "tt-foot" }, `cell ${c.i} (row ${c.i + 2} of results.csv)` + (state.pinned ? " · pinned: Esc or a click elsewhere releases it" : " · click to pin"), tip);
  }
  function placeTip(clientX, clientY) {
    tip.hidden = false;
    const r = tip.getBoundingClientRect();
    const W = window.innerWidth, H = window.innerHeight;
    let x = clientX + 16, y = clientY + 14;
    if (x + r.width > W - 8) x = Math.max(8, clientX - r.width - 16);
    if (y + r.height > H - 8) y = Math.max(8, H - r.height - 8);
    // page coordinates: a pinned tooltip stays by its point when the page scrolls
    tip.style.left = x + window.scrollX + "px";
    tip.style.top = y + window.scrollY + "px";
  }
  function showTip(i, clientX, clientY) {
    fillTip(cells[i]);
    tip.classList.toggle("pinned", state.pinned);
    placeTip(clientX, clientY);
  }
  function hideTip() { tip.hidden = true; tip.classList.remove("pinned"); }
  function applySelection() {
    document.querySelectorAll(".pt.sel").forEach((e) => e.classList.remove("sel"));
    document.querySelectorAll(".sel-ring").forEach((e) => e.remove());
    document.querySelectorAll("tr.pick.sel").forEach((e) => e.classList.remove("sel"));
    if (state.selected === null) return;
    document.querySelectorAll(`.pt[data-cell="${state.selected}"]`).forEach((e) => {
      e.classList.add("sel");
      e.parentNode.appendChild(e);  // on top of its neighbours
      const b = e.getBBox();
      svgEl("circle", { cx: b.x + b.width / 2, cy: b.y + b.height / 2, r: Math.max(b.width, b.height) / 2 + 4, class: "sel-ring" }, e.parentNode);
    });
    document.querySelectorAll("tr.pick").forEach((tr) => {
      if (tr.dataset.cells.split(" ").includes(String(state.selected))) tr.classList.add("sel");
    });
  }
  function select(i, clientX, clientY) {
    state.selected = i;
    state.pinned = i !== null;
    if (i !== null && cells[i].device !== state.knobDevice && knobDevices().includes(cells[i].device)) {
      state.knobDevice = cells[i].device;
      renderKnob();
    }
    renderBer();
    applySelection();
    if (i === null) hideTip(); else showTip(i, clientX, clientY);
  }
  function bindView(id) {
    const view = document.getElementById(id);
    view.addEventListener("mouseover", (ev) => {
      const p = ev.target.closest(".pt");
      if (p && !state.pinned) showTip(Number(p.dataset.cell), ev.clientX, ev.clientY);
    });
    view.addEventListener("mousemove", (ev) => {
      if (!state.pinned && ev.target.closest(".pt")) placeTip(ev.clientX, ev.clientY);
    });
    view.addEventListener("mouseout", (ev) => {
      const to = ev.relatedTarget;
      if (!state.pinned && ev.target.closest(".pt") && !(to && to.closest && to.closest(".pt"))) hideTip();
    });
    view.addEventListener("click", (ev) => {
      const p = ev.target.closest(".pt");
      if (p) {
        const i = Number(p.dataset.cell);
        if (state.pinned && state.selected === i) select(null); else select(i, ev.clientX, ev.clientY);
      } else if (ev.target.closest("svg")) {
        select(null);
      }
    });
  }

  // -- the page ----------------------------------------------------------------------------
  function render() {
    if (state.selected !== null && !visible(cells[state.selected])) select(null);
    renderPareto();
    renderKnob();
    renderBer();
    applySelection();
  }
  buildFilters();
  renderParetoLegend();
  ["pareto-view", "knob-view", "ber-view"].forEach(bindView);
  document.getElementById("x-axis").addEventListener("change", (ev) => { state.xAxis = ev.target.value; render(); });
  document.getElementById("full-range").addEventListener("change", (ev) => { state.fullRange = ev.target.checked; render(); });
  document.getElementById("knob-device").addEventListener("change", (ev) => {
    state.knobDevice = ev.target.value;
    renderKnob();
    applySelection();
  });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") select(null); });
  document.querySelectorAll("tr.pick").forEach((tr) => {
    const pick = () => {
      const i = Number(tr.dataset.cells.split(" ")[0]);
      const c = cells[i];
      ["device", "model", "scenario", "variant"].forEach((kind) => {
        if (state.hidden[kind].has(c[kind])) {
          state.hidden[kind].delete(c[kind]);
          document.querySelectorAll(`#filters input[data-kind="${kind}"]`).forEach((input) => {
            if (input.dataset.value === c[kind]) input.checked = true;
          });
        }
      });
      render();
      const el = document.querySelector(`#pareto-view .pt[data-cell="${i}"]`) || document.querySelector(`.pt[data-cell="${i}"]`);
      if (el) {
        el.scrollIntoView({ block: "center" });
        const r = el.getBoundingClientRect();
        select(i, r.left + r.width / 2, r.top + r.height / 2);
      } else {
        select(i, 40, 40);
      }
    };
    tr.addEventListener("click", pick);
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") pick(); });
  });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(render, 150);
  });
  render();
})();
