(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("atlas-data").textContent);
  const problems = [];
  window.addEventListener("error", function (e) { problems.push("script error: " + e.message); });
  const figures = [];

  function jet(t) {
    const r = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 3)));
    const g = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 2)));
    const b = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 1)));
    return [Math.round(255 * r), Math.round(255 * g), Math.round(255 * b)];
  }
  // Like the training figures (imshow), a map is scaled from its minimum to its maximum.
  function scaler(w) {
    let lo = Infinity, hi = -Infinity;
    for (const v of w) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return function (v) { return hi > lo ? (v - lo) / (hi - lo) : 1; };
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function drawOverlay(fig, weights) {
    const p = fig.panel, ctx = fig.canvas.getContext("2d");
    const W = fig.canvas.width, H = fig.canvas.height;
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, W, H);
    ctx.drawImage(fig.image, 0, 0, W, H);
    const sum = new Float32Array(p.width * p.height), cover = new Float32Array(p.width * p.height);
    p.cells.forEach(function (c, i) {
      for (let y = Math.max(0, c[0]); y < Math.min(p.height, c[0] + c[2]); y++)
        for (let x = Math.max(0, c[1]); x < Math.min(p.width, c[1] + c[3]); x++) {
          sum[y * p.width + x] += weights[i]; cover[y * p.width + x] += 1;
        }
    });
    const covered = [];
    for (let i = 0; i < sum.length; i++) if (cover[i]) { sum[i] /= cover[i]; covered.push(sum[i]); }
    const t = scaler(covered);
    const heat = document.createElement("canvas");
    heat.width = p.width; heat.height = p.height;
    const hctx = heat.getContext("2d"), img = hctx.createImageData(p.width, p.height);
    for (let i = 0; i < sum.length; i++) {
      const v = t(sum[i]), c = jet(v);
      img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2];
      img.data[4 * i + 3] = cover[i] ? Math.round(50 + 150 * v) : 0;
    }
    hctx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(heat, 0, 0, W, H);
  }

  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

  function drawSeries(fig, weights) {
    const p = fig.panel, ctx = fig.canvas.getContext("2d");
    const W = fig.canvas.width, H = fig.canvas.height, pad = 24;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    p.lines.forEach(function (l) {
      x0 = Math.min(x0, l.x0); x1 = Math.max(x1, l.x0 + l.y.length - 1);
      l.y.forEach(function (v) { y0 = Math.min(y0, v); y1 = Math.max(y1, v); });
    });
    p.spans.forEach(function (s) { x0 = Math.min(x0, s[0]); x1 = Math.max(x1, s[1]); });
    if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
    const X = function (x) { return pad + (x - x0) / Math.max(1e-9, x1 - x0) * (W - 2 * pad); };
    const Y = function (y) { return H - pad - (y - y0) / (y1 - y0) * (H - 2 * pad); };
    const t = scaler(weights);
    p.spans.forEach(function (s, i) {
      ctx.fillStyle = "rgba(230,60,30," + (0.05 + 0.7 * t(weights[i])).toFixed(3) + ")";
      ctx.fillRect(X(s[0]), pad / 2, Math.max(1, X(s[1]) - X(s[0])), H - 1.5 * pad);
    });
    ctx.strokeStyle = "#bbb"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(X(0), pad / 2); ctx.lineTo(X(0), H - pad); ctx.stroke();
    let legendY = 12;
    p.lines.forEach(function (l, i) {
      const color = l.color || PALETTE[i % PALETTE.length];
      const w = l.token === null || l.token === undefined ? null : t(weights[l.token]);
      ctx.globalAlpha = w === null ? 1 : 0.2 + 0.8 * w;
      ctx.strokeStyle = color; ctx.lineWidth = w === null ? 1.2 : 0.8 + 2.5 * w;
      ctx.beginPath();
      l.y.forEach(function (v, k) { const x = X(l.x0 + k), y = Y(v); if (k) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      ctx.stroke();
      ctx.globalAlpha = 1; ctx.fillStyle = color; ctx.font = "10px sans-serif";
      const label = w === null ? l.name : l.name + " " + weights[l.token].toFixed(3);
      ctx.fillText(label, W - pad - ctx.measureText(label).width, legendY); legendY += 11;
    });
    ctx.fillStyle = "#555"; ctx.font = "10px sans-serif";
    ctx.fillText(String(Math.round(x0)), X(x0), H - 8);
    ctx.fillText("0", X(0) - 3, H - 8);
    ctx.fillText(String(Math.round(x1)), X(x1) - 14, H - 8);
  }

  function drawTokens(fig, weights) {
    const p = fig.panel, ctx = fig.canvas.getContext("2d");
    const W = fig.canvas.width, H = fig.canvas.height;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    const t = scaler(weights), cw = fig.cellW, ch = 34, per = fig.perRow;
    ctx.font = "10px sans-serif"; ctx.textAlign = "center";
    p.tokens.forEach(function (label, i) {
      const x = (i % per) * cw, y = Math.floor(i / per) * (ch + 4) + 2, v = t(weights[i]);
      ctx.fillStyle = "rgba(" + jet(v).join(",") + "," + (0.15 + 0.7 * v).toFixed(3) + ")";
      ctx.fillRect(x + 1, y, cw - 2, ch);
      ctx.fillStyle = "#000";
      ctx.fillText(label.length > 9 ? label.slice(0, 8) + "\u2026" : label, x + cw / 2, y + 14);
      ctx.fillText(weights[i].toFixed(3), x + cw / 2, y + 28);
    });
    ctx.textAlign = "start";
  }

  const DRAW = { overlay: drawOverlay, series: drawSeries, tokens: drawTokens };

  function currentView(fig) {
    const want = fig.selects.map(function (s) { return s.value; });
    return fig.panel.views.find(function (v) { return v.key.every(function (k, i) { return k === want[i]; }); });
  }

  function redraw(fig) {
    const view = currentView(fig);
    DRAW[fig.panel.kind](fig, view.w);
    fig.element.setAttribute("data-view", view.key.join(" / "));
  }

  function onSelect(fig, axis) {
    // Keep the choices on earlier selectors; on later ones keep what exists, else the first.
    const want = fig.selects.map(function (s) { return s.value; });
    const candidates = fig.panel.views.filter(function (v) {
      return v.key.slice(0, axis + 1).every(function (k, i) { return k === want[i]; });
    });
    const view =
      candidates.find(function (v) { return v.key.every(function (k, i) { return k === want[i]; }); }) ||
      candidates.find(function (v) { return v.key.slice(axis + 1).every(function (k) { return k === "mean"; }); }) ||
      candidates[0];
    for (let i = axis + 1; i < fig.selects.length; i++) fillOptions(fig, i, view.key);
    fig.selects.forEach(function (s, i) { s.value = view.key[i]; });
    redraw(fig);
  }

  function fillOptions(fig, axis, key) {
    const select = fig.selects[axis], seen = [];
    fig.panel.views.forEach(function (v) {
      if (v.key.slice(0, axis).every(function (k, i) { return k === key[i]; }) && seen.indexOf(v.key[axis]) < 0)
        seen.push(v.key[axis]);
    });
    select.innerHTML = "";
    seen.forEach(function (value) { select.appendChild(el("option", { value: value }, value)); });
  }

  function build(panel, container, r, i) {
    const figure = el("figure", { class: "panel", id: "r" + r + "p" + i, "data-kind": panel.kind });
    figure.appendChild(el("h3", {}, panel.title));
    const controls = el("div", { class: "controls" });
    figure.appendChild(controls);
    const canvas = el("canvas", { class: "figure" });
    canvas.getContext("2d", { willReadFrequently: true });  // the self-check reads pixels back
    const fig = { panel: panel, element: figure, canvas: canvas, selects: [] };
    if (panel.kind === "overlay") {
      const scale = Math.max(1, Math.floor(220 / Math.max(panel.width, panel.height)));
      const s = Math.max(scale, 220 / Math.max(panel.width, panel.height));
      canvas.width = Math.round(panel.width * s); canvas.height = Math.round(panel.height * s);
    } else if (panel.kind === "series") {
      canvas.width = 440; canvas.height = 190;
    } else {
      fig.cellW = 54; fig.perRow = Math.max(1, Math.min(panel.tokens.length, 8));
      canvas.width = fig.cellW * fig.perRow;
      canvas.height = Math.ceil(panel.tokens.length / fig.perRow) * 38 + 4;
    }
    figure.appendChild(canvas);
    if (panel.note) figure.appendChild(el("p", { class: "note" }, panel.note));
    panel.selectors.forEach(function (name, axis) {
      const label = el("label", {}, name + " ");
      const select = el("select", { "data-axis": String(axis) });
      label.appendChild(select); controls.appendChild(label);
      fig.selects.push(select);
      select.addEventListener("change", function () { onSelect(fig, axis); });
    });
    const first = panel.views[panel.shown || 0].key;
    panel.selectors.forEach(function (_, axis) { fillOptions(fig, axis, first); });
    fig.selects.forEach(function (s, i) { s.value = first[i]; });
    container.appendChild(figure);
    figures.push(fig);
    return fig;
  }

  function loadImage(src) {
    return new Promise(function (resolve, reject) {
      const img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = function () { reject(new Error("an embedded image failed to load")); };
      img.src = src;
    });
  }

  function signature(canvas) {
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let h = 0, opaque = 0, distinct = false;
    for (let i = 0; i < d.length; i += 4) {
      h = (h * 31 + d[i] * 3 + d[i + 1] * 5 + d[i + 2] * 7 + d[i + 3]) % 2147483647;
      if (d[i + 3]) opaque++;
      if (!distinct && (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2])) distinct = true;
    }
    return { hash: h, drawn: opaque > 0 && distinct };
  }

  function selfCheck() {
    let visible = 0, switched = 0, selectable = 0;
    figures.forEach(function (fig) {
      const id = fig.element.id, rect = fig.canvas.getBoundingClientRect();
      const before = signature(fig.canvas);
      if (rect.width > 0 && rect.height > 0 && before.drawn) visible++;
      else problems.push(id + " is not visible or not drawn");
      if (fig.panel.views.length < 2) return;
      selectable++;
      const select = fig.selects[0], original = fig.selects.map(function (s) { return s.value; });
      const other = Array.from(select.options).find(function (o) { return o.value !== select.value; });
      const s0 = other ? select : fig.selects[fig.selects.length - 1];
      const alt = other || Array.from(s0.options).find(function (o) { return o.value !== s0.value; });
      if (!alt) { problems.push(id + ": no other view to select"); return; }
      const viewBefore = fig.element.getAttribute("data-view");
      s0.value = alt.value;
      s0.dispatchEvent(new Event("change"));
      const after = signature(fig.canvas);
      if (fig.element.getAttribute("data-view") !== viewBefore && after.drawn && after.hash !== before.hash) switched++;
      else problems.push(id + ": selecting " + alt.value + " did not redraw");
      original.forEach(function (value, i) { fig.selects[i].value = value; onSelect(fig, i); });
    });
    document.querySelectorAll("img").forEach(function (img) {
      if (!(img.naturalWidth > 0)) problems.push("an image did not load");
    });
    const body = document.body;
    body.setAttribute("data-figures", String(figures.length));
    body.setAttribute("data-visible", String(visible));
    body.setAttribute("data-selectable", String(selectable));
    body.setAttribute("data-switched", String(switched));
    body.setAttribute("data-atlas-check", problems.length ? "fail: " + problems.join("; ") : "ok");
  }

  async function main() {
    const jobs = [];
    DATA.runs.forEach(function (run, r) {
      const container = document.querySelector("#run" + r + " .panels");
      run.panels.forEach(function (panel, i) {
        const fig = build(panel, container, r, i);
        if (panel.kind === "overlay") jobs.push(loadImage(panel.image).then(function (img) { fig.image = img; }));
      });
    });
    await Promise.all(jobs);
    figures.forEach(redraw);
    selfCheck();
  }
  main().catch(function (e) {
    problems.push("atlas failed: " + e.message);
    document.body.setAttribute("data-atlas-check", "fail: " + problems.join("; "));
  });
})();
