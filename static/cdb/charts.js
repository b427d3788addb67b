// Tiny SVG line charts for the dashboard: no library, nothing from the network.
(function (global) {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 220, PAD = {left: 64, right: 10, top: 10, bottom: 22};

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function labeller(v0, v1) {
    const step = Math.abs(v1 - v0) / 4;
    const decimals = step > 0 ? Math.min(8, Math.max(0, Math.ceil(-Math.log10(step)) + 1)) : 2;
    return (n) => n.toFixed(decimals);
  }

  function clocker(t0, t1) {
    const iso = (ms) => new Date(ms).toISOString();
    if (t1 - t0 < 86400000) return (ms) => iso(ms).slice(11, 16);
    return (ms) => iso(ms).slice(0, 10) + " " + iso(ms).slice(11, 16);
  }

  // points: [{t, v}], markers: [{t, v, kind: "entry" | "exit", title}]
  function line(svg, points, options) {
    options = options || {};
    const markers = options.markers || [];
    svg.replaceChildren();
    if (!points.length) {
      svg.append(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty"}, options.empty || "no data yet"));
      return;
    }
    const ts = points.map((p) => p.t).concat(markers.map((m) => m.t));
    const vs = points.map((p) => p.v).concat(markers.map((m) => m.v));
    let t0 = Math.min(...ts), t1 = Math.max(...ts), v0 = Math.min(...vs), v1 = Math.max(...vs);
    if (t1 === t0) { t0 -= 1; t1 += 1; }
    if (v1 === v0) { const d = Math.abs(v0) * 0.01 || 1; v0 -= d; v1 += d; }
    const pad = (v1 - v0) * 0.08; v0 -= pad; v1 += pad;
    const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
    const y = (v) => PAD.top + (1 - (v - v0) / (v1 - v0)) * (H - PAD.top - PAD.bottom);

    const label = labeller(v0, v1), clock = clocker(t0, t1);
    for (let i = 0; i <= 4; i++) {
      const v = v0 + ((v1 - v0) * i) / 4;
      svg.append(el("line", {x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid-line"}));
      svg.append(el("text", {x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end", class: "axis"}, label(v)));
    }
    svg.append(el("text", {x: PAD.left, y: H - 6, class: "axis"}, clock(t0)));
    svg.append(el("text", {x: W - PAD.right, y: H - 6, "text-anchor": "end", class: "axis"}, clock(t1)));
    const path = points.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(" ");
    svg.append(el("path", {d: path, class: "series " + (options.cls || "")}));
    for (const m of markers) {
      const cx = x(m.t), cy = y(m.v), s = 7;
      const d = m.kind === "exit"
        ? `M${cx - s},${cy - s - 2} L${cx + s},${cy - s - 2} L${cx},${cy - 2} Z`
        : `M${cx - s},${cy + s + 2} L${cx + s},${cy + s + 2} L${cx},${cy + 2} Z`;
      const marker = el("path", {d: d, class: "marker " + m.kind});
      if (m.title) marker.append(el("title", {}, m.title));
      svg.append(marker);
    }
    svg.dataset.points = String(points.length);
    svg.dataset.markers = String(markers.length);
  }

  global.CdbCharts = {line: line};
})(window);
