/* The job page's frame viewer: one frame's image with its shapes drawn over it in SVG (image pixels
   are the SVG's user units, so a shape stays on its pixels at every zoom), and the review tools that
   change what is shown but never the data: per-label toggles (the legend), the shapes' opacity, a
   minimum score, zoom and pan. The editor (editor.js) draws its handles in the same SVG. */
"use strict";
const PrelabelViewer = (() => {
  const {el} = Prelabel;
  const PALETTE = ["#ff3b30", "#34c759", "#0a84ff", "#ff9f0a", "#bf5af2", "#64d2ff", "#ffd60a", "#ff375f",
                   "#30d158", "#5e5ce6"];

  function color(label) {
    const n = Number.parseInt(label, 10);
    if (Number.isFinite(n)) return PALETTE[Math.abs(n) % PALETTE.length];
    let h = 0;
    for (const ch of String(label)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }
  const pairs = pts => { const out = []; for (let i = 0; i + 1 < pts.length; i += 2) out.push(`${pts[i]},${pts[i + 1]}`); return out.join(" "); };

  /** A COCO uncompressed RLE (column-major, starting with a run of 0s) as a transparent PNG URL. */
  function maskUrl(rle, hex) {
    const [h, w] = rle.size;
    const canvas = document.createElement("canvas");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(w, h), d = img.data;
    const r = parseInt(hex.slice(1, 3), 16), g = parseInt(hex.slice(3, 5), 16), b = parseInt(hex.slice(5, 7), 16);
    let pos = 0, on = false;
    for (const run of rle.counts) {
      if (on) {
        for (let i = pos, end = Math.min(pos + run, w * h); i < end; i++) {
          const x = (i / h) | 0, y = i - x * h, o = (y * w + x) * 4;
          d[o] = r; d[o + 1] = g; d[o + 2] = b; d[o + 3] = 105;
        }
      }
      pos += run; on = !on;
    }
    ctx.putImageData(img, 0, 0);
    return canvas.toDataURL();
  }

  /** A shape's geometry in words, for the table under the viewer. */
  function geometry(s) {
    const p = s.points || [], r = v => Math.round(v);
    switch (s.type) {
      case "rectangle": return `${r(Math.abs(p[2] - p[0]))}×${r(Math.abs(p[3] - p[1]))} at (${r(Math.min(p[0], p[2]))}, ${r(Math.min(p[1], p[3]))})`;
      case "mask": return p.length === 4 ? `within ${r(p[2] - p[0])}×${r(p[3] - p[1])} at (${r(p[0])}, ${r(p[1])})` : "";
      case "tag": return "whole frame";
      default: return `${Math.floor(p.length / 2)} points`;
    }
  }

  /** Sets a drawn shape's geometry from its points (used while a vertex is dragged, without redrawing). */
  function place(node, s, radius) {
    const p = s.points || [];
    switch (s.type) {
      case "rectangle":
        node.setAttribute("x", Math.min(p[0], p[2])); node.setAttribute("y", Math.min(p[1], p[3]));
        node.setAttribute("width", Math.abs(p[2] - p[0])); node.setAttribute("height", Math.abs(p[3] - p[1]));
        break;
      case "polygon": case "polyline": node.setAttribute("points", pairs(p)); break;
      case "points": {
        node.querySelectorAll("circle").forEach(c => c.remove());
        for (let k = 0; k + 1 < p.length; k += 2) node.append(el("circle", {class: "point", cx: p[k], cy: p[k + 1], r: radius}));
        break;
      }
      default: break;
    }
  }

  function shapeNode(s, i, radius, name) {
    const c = color(s.label);
    const score = s.score == null ? "" : ` · ${s.score.toFixed(2)}`;
    const common = {class: `shape shape-${s.type}`, "data-index": i, "data-label": s.label, stroke: c, fill: c};
    const title = el("title", {text: `${name} · ${s.type}${score}`});
    let node = null;
    switch (s.type) {
      case "rectangle": node = el("rect", common, title); break;
      case "polygon": node = el("polygon", common, title); break;
      case "polyline": node = el("polyline", common, title); break;
      case "points": node = el("g", {...common, "fill-opacity": 0.9}, title); break;
      case "mask":
        if (s.rle && s.rle.size) {
          const [h, w] = s.rle.size;
          return el("image", {class: "mask", "data-index": i, "data-label": s.label, x: 0, y: 0, width: w, height: h,
                              preserveAspectRatio: "none", href: maskUrl(s.rle, c)}, title);
        }
        return null;
      default: return null;  // tags have no geometry: they are listed as chips
    }
    place(node, s, radius);
    return node;
  }

  /** The viewer in `box` (the #viewer element). `labelName(id)` names a label; `onLegend()` is called
      when what is shown changes; `hooks.pointerDown(e)` may take a pointer press (returns true), and
      `hooks.click(e)` receives a press that did not pan. */
  function create(box, {labelName, hooks = {}}) {
    const st = {w: 0, h: 0, fit: 1, zoom: 1, tx: 0, ty: 0, shapes: [], hidden: new Set(), minScore: 0};
    let stage = null, svg = null, masks = null, drawn = null, over = null;
    const listeners = [];

    const shown = s => !st.hidden.has(String(s.label)) && (s.score == null || s.score >= st.minScore);
    /** Screen pixels per image pixel. */
    const pixel = () => st.fit * st.zoom;
    const maxZoom = () => Math.max(8, 32 / (st.fit || 1));

    function setFrame({frame, name, width, height, src, shapes}) {
      st.w = width; st.h = height;
      const rect = box.getBoundingClientRect();
      const maxW = Math.max(200, rect.width - 2), maxH = Math.max(240, window.innerHeight * 0.7);
      st.fit = width && height ? Math.min(maxW / width, maxH / height) : 1;
      const img = el("img", {id: "frame-image", alt: name, src, draggable: "false",
                             width: Math.round(width * st.fit) || null, height: Math.round(height * st.fit) || null});
      img.addEventListener("error", () => listeners.forEach(f => f("image-error")));
      svg = el("svg", {id: "overlay", viewBox: `0 0 ${width || 1} ${height || 1}`, preserveAspectRatio: "none",
                       "data-frame": frame, role: "img"});
      masks = el("g", {class: "masks"}); drawn = el("g", {class: "shapes"}); over = el("g", {class: "over"});
      svg.append(masks, drawn, over);
      stage = el("div", {class: "stage"}, img, svg);
      box.replaceChildren(stage);
      setShapes(shapes);
      transform();
    }

    function setShapes(shapes) {
      st.shapes = shapes;
      if (!svg) return;
      const r = 4 / pixel();
      masks.replaceChildren(); drawn.replaceChildren();
      shapes.forEach((s, i) => {
        const node = shapeNode(s, i, r, labelName(s.label));
        if (node) (s.type === "mask" ? masks : drawn).append(node);
      });
      svg.setAttribute("aria-label", shapes.length === 1 ? "1 shape" : `${shapes.length} shapes`);
      filter();
    }

    /** Hides the shapes of hidden labels and those scored below the minimum (a shape without a score is
        always shown), here and in the rows of the shapes table. */
    function filter() {
      const hiddenCount = st.shapes.filter(s => !shown(s)).length;
      for (const node of document.querySelectorAll("#overlay [data-index], #shapes-table tr[data-index]")) {
        const s = st.shapes[Number(node.dataset.index)];
        if (s) node.classList.toggle("off", !shown(s));
      }
      box.dataset.hiddenShapes = hiddenCount;
      listeners.forEach(f => f("filter", hiddenCount));
    }

    function toggleLabel(label, on) {
      label = String(label);
      if (on === undefined) on = st.hidden.has(label);
      if (on) st.hidden.delete(label); else st.hidden.add(label);
      filter();
    }
    function setMinScore(v) { st.minScore = v; filter(); }
    function setOpacity(v) { box.style.setProperty("--shape-opacity", String(v)); }

    // ---- zoom and pan: one CSS transform on the stage moves the image and its shapes together -----
    function clampPan() {
      const sw = (stage ? stage.offsetWidth : 0) * st.zoom, sh = (stage ? stage.offsetHeight : 0) * st.zoom;
      const mx = Math.max(0, (sw - box.clientWidth) / 2), my = Math.max(0, (sh - box.clientHeight) / 2);
      st.tx = Math.min(mx, Math.max(-mx, st.tx));
      st.ty = Math.min(my, Math.max(-my, st.ty));
    }
    function transform() {
      if (!stage) return;
      clampPan();
      stage.style.transform = `translate(${st.tx}px, ${st.ty}px) scale(${st.zoom})`;
      svg.style.setProperty("--z", String(st.zoom));  // strokes keep their width on the screen (review.css)
      stage.querySelector("img").style.imageRendering = pixel() > 2 ? "pixelated" : "";
      const r = 4 / pixel();
      svg.querySelectorAll("circle.point").forEach(c => c.setAttribute("r", r));
      box.classList.toggle("zoomed", st.zoom > 1.001);
      box.dataset.zoom = st.zoom.toFixed(3);
      listeners.forEach(f => f("zoom", st.zoom));
    }
    /** Zooms to `z` keeping the image point under (clientX, clientY) in place (the centre by default). */
    function zoomTo(z, clientX, clientY) {
      z = Math.min(maxZoom(), Math.max(1, z));
      const rect = box.getBoundingClientRect();
      const sx = clientX === undefined ? 0 : clientX - (rect.left + rect.width / 2);
      const sy = clientY === undefined ? 0 : clientY - (rect.top + rect.height / 2);
      st.tx = sx - (z / st.zoom) * (sx - st.tx);
      st.ty = sy - (z / st.zoom) * (sy - st.ty);
      st.zoom = z;
      transform();
    }
    const zoomBy = (f, x, y) => zoomTo(st.zoom * f, x, y);
    function fit() { st.zoom = 1; st.tx = 0; st.ty = 0; transform(); }
    function panBy(dx, dy) { st.tx += dx; st.ty += dy; transform(); }

    /** Image coordinates of a point on the screen. */
    function toImage(clientX, clientY) {
      const m = svg.getScreenCTM().inverse();
      const p = new DOMPoint(clientX, clientY).matrixTransform(m);
      return [p.x, p.y];
    }

    box.addEventListener("wheel", e => {
      if (!stage) return;
      const z = Math.min(maxZoom(), Math.max(1, st.zoom * Math.exp(-e.deltaY * (e.ctrlKey ? 0.01 : 0.0015))));
      if (Math.abs(z - st.zoom) < 1e-6) return;  // nothing to zoom (out at fit, in at the most): the page scrolls
      e.preventDefault();
      zoomTo(z, e.clientX, e.clientY);
    }, {passive: false});

    // one pointer pans (once zoomed), two pinch; a press that does not move is a click
    const pointers = new Map();
    let press = null, pinch = null;
    box.addEventListener("pointerdown", e => {
      if (!stage || e.button > 0) return;
      if (hooks.pointerDown && hooks.pointerDown(e)) return;
      pointers.set(e.pointerId, [e.clientX, e.clientY]);
      if (pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        pinch = {d: Math.hypot(a[0] - b[0], a[1] - b[1]), zoom: st.zoom};
        press = null;
        for (const id of pointers.keys()) box.setPointerCapture(id);
      } else {
        press = {x: e.clientX, y: e.clientY, tx: st.tx, ty: st.ty, moved: false, target: e.target};
      }
    });
    box.addEventListener("pointermove", e => {
      if (!pointers.has(e.pointerId)) return;
      pointers.set(e.pointerId, [e.clientX, e.clientY]);
      if (pinch && pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        zoomTo(pinch.zoom * Math.hypot(a[0] - b[0], a[1] - b[1]) / (pinch.d || 1), (a[0] + b[0]) / 2, (a[1] + b[1]) / 2);
      } else if (press) {
        const dx = e.clientX - press.x, dy = e.clientY - press.y;
        if (!press.moved && Math.hypot(dx, dy) > 4 && st.zoom > 1.001) { press.moved = true; box.classList.add("panning"); box.setPointerCapture(e.pointerId); }
        if (press.moved) { st.tx = press.tx + dx; st.ty = press.ty + dy; transform(); }
      }
    });
    function release(e) {
      if (!pointers.delete(e.pointerId)) return;
      box.classList.remove("panning");
      if (press && !press.moved && e.type === "pointerup" && hooks.click) hooks.click(press.target, e);
      press = null;
      if (pointers.size < 2) pinch = null;
    }
    box.addEventListener("pointerup", release);
    box.addEventListener("pointercancel", release);

    // the viewer itself, focused: arrow keys pan once zoomed (otherwise they step through frames)
    box.addEventListener("keydown", e => {
      if (e.target !== box || st.zoom <= 1.001 || e.altKey || e.ctrlKey || e.metaKey) return;
      const d = e.shiftKey ? 120 : 40;
      const move = {ArrowLeft: [d, 0], ArrowRight: [-d, 0], ArrowUp: [0, d], ArrowDown: [0, -d]}[e.key];
      if (move) { panBy(...move); e.preventDefault(); }
    });

    return {
      setFrame, setShapes, filter, toggleLabel, setMinScore, setOpacity, zoomTo, zoomBy, fit, panBy, toImage,
      pixel, shown, place, svg: () => svg, over: () => over, size: () => [st.w, st.h], zoom: () => st.zoom,
      hidden: label => st.hidden.has(String(label)), on: f => listeners.push(f),
    };
  }

  return {create, color, geometry, shapeNode, place, pairs, PALETTE};
})();
