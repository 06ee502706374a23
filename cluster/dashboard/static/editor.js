/* Correcting a frame's shapes in the job page's viewer: select a shape (click, Tab or the shapes
   table), drag its vertices or move them (or the whole shape) with the arrow keys, add and delete
   vertices, change its label, delete it, draw or add a box, undo. Every change is one call to the
   corrections API (docs/api.md) naming the revision it was made on; the answer (the frame's new head
   revision) is drawn again. A 409 means someone else changed the frame first: it is reloaded. */
"use strict";
const PrelabelEditor = (() => {
  const {api, el} = Prelabel;
  const $ = id => document.getElementById(id);
  const MIN_VERTICES = {polygon: 3, polyline: 2, points: 1};  // kinds whose vertices can be added and deleted
  const KEY_MOVES = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
  const round = v => Math.round(v * 100) / 100;
  /** The revision in force (what a change's base_revision must be), also when an older one is shown. */
  const headOf = a => (a ? a.head ?? a.revision ?? 0 : 0);

  /** A shape's vertices as [x, y] pairs: a rectangle's four corners (clockwise from top left). */
  function vertices(s) {
    const p = s.points || [];
    if (s.type === "rectangle") return [[p[0], p[1]], [p[2], p[1]], [p[2], p[3]], [p[0], p[3]]];
    const out = [];
    for (let i = 0; i + 1 < p.length; i += 2) out.push([p[i], p[i + 1]]);
    return out;
  }
  /** The points with vertex k at (x, y). */
  function withVertex(s, k, x, y) {
    const p = [...s.points];
    if (s.type === "rectangle") {
      p[k === 0 || k === 3 ? 0 : 2] = x;
      p[k < 2 ? 1 : 3] = y;
    } else { p[2 * k] = x; p[2 * k + 1] = y; }
    return p;
  }
  /** Points as sent: rounded, a rectangle's corners ordered [xtl, ytl, xbr, ybr]. */
  function tidy(s, points) {
    const p = points.map(round);
    return s.type === "rectangle" ? [Math.min(p[0], p[2]), Math.min(p[1], p[3]), Math.max(p[0], p[2]), Math.max(p[1], p[3])] : p;
  }

  function create({viewer, labels, labelName, job, frame, answer, reload}) {
    const box = $("viewer"), status = $("edit-status"), select = $("edit-label");
    let on = false, drawing = false, original = false;
    let saves = 0;  // changes the server took: an answer asked for before the last of them is stale
    let cur = null;  // the frame being corrected: {frame, ann}; edits queued for it keep it even if another frame is shown
    let sel = null, vertex = null;
    let draft = null, timer = null;  // a move not sent yet: {ctx, index, points}
    let queue = Promise.resolve();
    let newLabel = Object.keys(labels)[0] ?? null;

    const ann = () => cur && cur.ann;
    const editable = () => !!ann() && !original;
    const shape = () => (sel !== null && ann() ? ann().shapes[sel] : null) || null;
    const say = (text, kind = "") => { status.textContent = text; status.className = `edit-status ${kind}`; };
    const svg = () => viewer.svg();
    const nodeOf = i => svg() && svg().querySelector(`.shapes > [data-index="${i}"], .masks > [data-index="${i}"]`);
    const shown = s => draft && cur && draft.ctx === cur && draft.index === sel && s === shape() ? {...s, points: draft.points} : s;

    for (const [id, name] of Object.entries(labels).sort((a, b) => Number(a[0]) - Number(b[0]) || a[0].localeCompare(b[0]))) {
      select.append(el("option", {value: id, text: name}));
    }
    function ensureOption(label) {
      if (label != null && ![...select.options].some(o => o.value === String(label))) {
        select.append(el("option", {value: label, text: labelName(label)}));
      }
    }

    // ---- sending a change --------------------------------------------------------------------
    /** Queues one change of the frame `ctx` (the frame shown by default) and draws the answer. */
    function send(method, tail, body, done, after) {
      const ctx = cur;
      if (!ctx || !ctx.ann) return queue;
      queue = queue.then(async () => {
        const base = headOf(ctx.ann);
        let url = `/api/jobs/${job}/frames/${ctx.frame}/annotations${tail}`;
        const options = {method};
        if (method === "DELETE") url += `?base_revision=${base}`;
        else { options.headers = {"Content-Type": "application/json"}; options.body = JSON.stringify({...body, base_revision: base}); }
        say("Saving…", "busy");
        const focus = describeFocus();
        try {
          const next = await api(url, options);
          ctx.ann = next;
          saves += 1;
          if (ctx !== cur) return;
          if (after) after(next);
          answer(next);
          restoreFocus(focus);
          say(headOf(next) ? `${done}: saved as revision ${headOf(next)}.` : `${done}: back to the model's output.`, "ok");
        } catch (e) {
          if (e.status === 409) {
            say(`Not saved: ${e.message}. This frame was changed elsewhere and has been reloaded; make your change again if it is still needed.`, "error");
            if (ctx === cur) { draft = null; await reload(); }
          } else {
            say(`Not saved: ${e.message}`, "error");
            if (ctx === cur) { draft = null; answer(ctx.ann); restoreFocus(focus); }
          }
        }
      });
      return queue;
    }

    function describeFocus() {
      const a = document.activeElement;
      if (!a || !box.contains(a) && !a.closest("#shapes-table, #edit-tools, #edit-bar")) return null;
      if (a.classList && a.classList.contains("handle")) return {vertex: Number(a.dataset.vertex)};
      if (a.dataset && a.dataset.index !== undefined && box.contains(a)) return {shape: Number(a.dataset.index)};
      if (a.classList && a.classList.contains("row-select")) return {row: Number(a.dataset.row)};
      return {other: a};
    }
    /** After a redraw: the focus back on what had it (or its successor), unless it has moved on meanwhile. */
    function restoreFocus(f) {
      const a = document.activeElement;
      if (!f || a && a !== document.body && document.contains(a)) return;
      let target = null;
      if (f.vertex !== undefined) {
        const hs = svg() ? svg().querySelectorAll(".handle") : [];
        target = hs[Math.min(f.vertex, hs.length - 1)] || nodeOf(sel);
      } else if (f.shape !== undefined) target = nodeOf(sel ?? f.shape);
      else if (f.row !== undefined) target = document.querySelector(`.row-select[data-row="${sel ?? f.row}"]`);
      else if (f.other && document.contains(f.other) && !f.other.disabled && !f.other.hidden) target = f.other;
      (target || box).focus({preventScroll: true});
    }

    function commitDraft() {
      clearTimeout(timer); timer = null;
      if (!draft) return;
      const {ctx, index, points} = draft;
      const s = ctx.ann && ctx.ann.shapes[index];
      draft = null;
      if (!s) return;
      const keep = cur; cur = ctx;  // sent for the frame it was made on
      send("PATCH", `/shapes/${index}`, {points: tidy(s, points)}, "Moved");
      cur = keep;
    }
    const later = () => { clearTimeout(timer); timer = setTimeout(commitDraft, 700); };

    // ---- what is drawn ------------------------------------------------------------------------
    function setFrame(a, {original: o = false} = {}) {
      const n = frame().rec.frame;
      original = o;
      if (!cur || cur.frame !== n) { cur = {frame: n, ann: a}; sel = null; vertex = null; drawing = false; }
      else cur.ann = a;
      if (sel !== null && !shape()) { sel = null; vertex = null; }
      decorate();
    }

    function decorate() {
      const s = svg(), editing = on && editable();
      if (!s) return;
      s.classList.toggle("editing", editing);
      s.setAttribute("role", editing ? "group" : "img");
      if (editing) s.setAttribute("aria-label", "Shapes: Tab to one to select it");
      box.classList.toggle("drawing", editing && drawing);
      for (const node of s.querySelectorAll(".shapes > [data-index], .masks > [data-index]")) {
        const i = Number(node.dataset.index);
        if (editing) {
          const sh = ann().shapes[i];
          const score = sh.score == null ? "" : `, score ${sh.score.toFixed(2)}`;
          node.setAttribute("tabindex", "0");
          node.setAttribute("role", "button");
          node.setAttribute("aria-label", `Shape ${i + 1}: ${labelName(sh.label)} ${sh.type}${score}`);
          node.setAttribute("aria-pressed", i === sel ? "true" : "false");
          node.classList.toggle("selected", i === sel);
        } else {
          for (const a of ["tabindex", "role", "aria-label", "aria-pressed"]) node.removeAttribute(a);
          node.classList.remove("selected");
        }
      }
      document.querySelectorAll(".row-select").forEach(b => b.setAttribute("aria-pressed", Number(b.dataset.row) === sel ? "true" : "false"));
      handles();
      controls();
    }

    function handles() {
      const s = svg();
      s.querySelectorAll(".handles").forEach(g => g.remove());
      const sh = shape();
      if (!on || !editable() || !sh || !(sh.type === "rectangle" || MIN_VERTICES[sh.type])) return;
      const node = nodeOf(sel), drawnShape = shown(sh);
      if (drawnShape !== sh) viewer.place(node, drawnShape, 4 / viewer.pixel());
      const vs = vertices(drawnShape), r = 6 / viewer.pixel();
      const removable = MIN_VERTICES[sh.type] && vs.length > MIN_VERTICES[sh.type];
      const g = el("g", {class: "handles"}, ...vs.map(([x, y], k) => el("circle", {
        class: `handle${k === vertex ? " current" : ""}`, "data-vertex": k, cx: x, cy: y, r, tabindex: 0, role: "button",
        "aria-label": `Vertex ${k + 1} of ${vs.length} at (${Math.round(x)}, ${Math.round(y)}): arrow keys move it` +
                      (removable ? ", Delete removes it" : "")})));
      node.after(g);
    }

    /** Moves the drawing of the selected shape (and its handles) to the draft's points, sending nothing. */
    function redrawDraft() {
      const sh = shape(), node = nodeOf(sel);
      if (!sh || !node || !draft) return;
      const moved = {...sh, points: draft.points};
      viewer.place(node, moved, 4 / viewer.pixel());
      const hs = svg().querySelectorAll(".handle");
      vertices(moved).forEach(([x, y], k) => { if (hs[k]) { hs[k].setAttribute("cx", x); hs[k].setAttribute("cy", y); } });
    }

    function controls() {
      const editing = on && editable(), sh = shape(), a = ann();
      $("edit-toggle").disabled = !editable();
      $("edit-toggle").setAttribute("aria-pressed", editing ? "true" : "false");
      $("edit-toggle").title = editable() ? "" : original ? "The model's original is read-only" : "Only an annotated frame can be corrected";
      $("edit-tools").hidden = !editing;
      $("undo").hidden = !editing;
      $("undo").disabled = !(headOf(a) > 0);
      $("edit-label-text").textContent = sh ? `Label of shape ${sel + 1}` : "Label for new boxes";
      const label = sh ? sh.label : newLabel;
      ensureOption(label);
      if (label != null) select.value = String(label);
      const vs = sh ? vertices(sh).length : 0;
      $("add-vertex").disabled = !(sh && MIN_VERTICES[sh.type]);
      $("delete-vertex").disabled = !(sh && MIN_VERTICES[sh.type] && vertex !== null && vs > MIN_VERTICES[sh.type]);
      $("delete-shape").disabled = !sh;
      $("draw-box").setAttribute("aria-pressed", drawing ? "true" : "false");
      $("draw-box").disabled = $("add-box").disabled = select.options.length === 0;
    }

    function choose(i, {focus = false} = {}) {
      if (i !== sel) { commitDraft(); vertex = null; }
      sel = i;
      if (i !== null && drawing) drawing = false;
      decorate();
      if (focus && i !== null) (nodeOf(i) || document.querySelector(`.row-select[data-row="${i}"]`))?.focus({preventScroll: true});
    }

    /** The first cell of a row of the shapes table: a button that selects the shape, in edit mode. */
    function rowButton(i, s) {
      if (!(on && editable())) return String(i + 1);
      return el("button", {type: "button", class: "row-select", "data-row": i, "aria-pressed": i === sel ? "true" : "false",
                           "aria-label": `Select shape ${i + 1}: ${labelName(s.label)} ${s.type}`,
                           onclick: () => choose(i, {focus: true})}, String(i + 1));
    }

    // ---- changes ----------------------------------------------------------------------------
    const clampX = x => Math.min(viewer.size()[0], Math.max(0, x));
    const clampY = y => Math.min(viewer.size()[1], Math.max(0, y));

    function moveBy(dx, dy) {
      const sh = shape();
      if (!sh) return;
      if (sh.type === "mask" || sh.type === "tag") { say(`A ${sh.type} takes a label change or deletion only.`); return; }
      const p = draft && draft.index === sel && draft.ctx === cur ? draft.points : [...sh.points];
      if (vertex !== null && document.activeElement && document.activeElement.classList.contains("handle")) {
        const [x, y] = vertices({...sh, points: p})[vertex];
        draft = {ctx: cur, index: sel, points: withVertex({...sh, points: p}, vertex, clampX(x + dx), clampY(y + dy))};
      } else {  // the whole shape, kept inside the frame
        const xs = p.filter((_, k) => k % 2 === 0), ys = p.filter((_, k) => k % 2 === 1);
        const [w, h] = viewer.size();
        dx = Math.min(w - Math.max(...xs), Math.max(-Math.min(...xs), dx));
        dy = Math.min(h - Math.max(...ys), Math.max(-Math.min(...ys), dy));
        draft = {ctx: cur, index: sel, points: p.map((v, k) => v + (k % 2 ? dy : dx))};
      }
      redrawDraft();
      later();
    }

    function addVertex(at) {
      const sh = shape();
      if (!sh || !MIN_VERTICES[sh.type]) return;
      const vs = vertices(sh), closed = sh.type === "polygon";
      let insert, point;
      if (at && sh.type !== "points") {  // on the nearest edge, where it was double-clicked
        let best = Infinity;
        const edges = closed ? vs.length : vs.length - 1;
        for (let k = 0; k < edges; k++) {
          const [ax, ay] = vs[k], [bx, by] = vs[(k + 1) % vs.length];
          const len = (bx - ax) ** 2 + (by - ay) ** 2 || 1;
          const t = Math.max(0, Math.min(1, ((at[0] - ax) * (bx - ax) + (at[1] - ay) * (by - ay)) / len));
          const q = [ax + t * (bx - ax), ay + t * (by - ay)], d = Math.hypot(q[0] - at[0], q[1] - at[1]);
          if (d < best) { best = d; insert = k + 1; point = q; }
        }
      } else if (at) { insert = vs.length; point = at; }
      else {  // after the current vertex (the last one if none), half-way to the next
        const k = vertex ?? vs.length - 1;
        const next = vs[k + 1] || (closed ? vs[0] : null);
        point = next ? [(vs[k][0] + next[0]) / 2, (vs[k][1] + next[1]) / 2]
          : [clampX(vs[k][0] + 10 / viewer.pixel() * 2), clampY(vs[k][1] + 10 / viewer.pixel() * 2)];
        if (!next && sh.type === "polyline") { const prev = vs[k - 1]; point = [(vs[k][0] + prev[0]) / 2, (vs[k][1] + prev[1]) / 2]; insert = k; }
        else insert = k + 1;
      }
      const p = [...sh.points];
      p.splice(2 * insert, 0, clampX(point[0]), clampY(point[1]));
      vertex = insert;
      send("PATCH", `/shapes/${sel}`, {points: tidy(sh, p)}, "Vertex added");
    }

    function deleteVertex(k = vertex) {
      const sh = shape();
      if (!sh || k === null || !MIN_VERTICES[sh.type]) return;
      if (vertices(sh).length <= MIN_VERTICES[sh.type]) { say(`A ${sh.type} keeps at least ${MIN_VERTICES[sh.type]} vertices.`, "error"); return; }
      const p = [...sh.points];
      p.splice(2 * k, 2);
      vertex = Math.max(0, k - 1);
      send("PATCH", `/shapes/${sel}`, {points: tidy(sh, p)}, "Vertex deleted");
    }

    function deleteShape() {
      if (sel === null) return;
      const i = sel;
      commitDraft();
      send("DELETE", `/shapes/${i}`, null, `Shape ${i + 1} deleted`, () => { sel = null; vertex = null; });
    }

    function addBox(points) {
      const label = select.value;
      return send("POST", "/shapes", {shape: {type: "rectangle", label, points: tidy({type: "rectangle"}, points), score: null, attributes: {}}},
           "Box added", next => { sel = next.shapes.length - 1; vertex = 0; drawing = false; });
    }

    /** A box in the middle of what the viewer shows, a quarter of it wide and high: moved from the keyboard. */
    function addBoxInView() {
      const r = box.getBoundingClientRect(), [w, h] = viewer.size();
      const [cx, cy] = viewer.toImage(r.left + r.width / 2, r.top + r.height / 2);
      const bw = w / 4 / viewer.zoom(), bh = h / 4 / viewer.zoom();
      const x0 = Math.max(0, Math.min(w - bw, cx - bw / 2)), y0 = Math.max(0, Math.min(h - bh, cy - bh / 2));
      const before = describeFocus();
      addBox([x0, y0, x0 + bw, y0 + bh]).then(() => { if (before) svg()?.querySelector(".handle")?.focus({preventScroll: true}); });
    }

    // ---- pointer ------------------------------------------------------------------------------
    let drag = null;
    function pointerDown(e) {
      if (!on || !editable()) return false;
      const h = e.target.closest && e.target.closest(".handle");
      if (h) {
        vertex = Number(h.dataset.vertex);
        drag = {kind: "vertex", moved: false, id: e.pointerId};
        h.focus({preventScroll: true});
        svg().querySelectorAll(".handle").forEach(c => c.classList.toggle("current", c === h));
        controls();
      } else if (drawing) {
        const start = viewer.toImage(e.clientX, e.clientY).map((v, k) => k ? clampY(v) : clampX(v));
        const rect = el("rect", {class: "rubber", x: start[0], y: start[1], width: 0, height: 0});
        viewer.over().append(rect);
        drag = {kind: "box", start, end: start, rect, id: e.pointerId};
      } else return false;
      e.preventDefault();
      window.addEventListener("pointermove", dragMove);
      window.addEventListener("pointerup", dragEnd);
      window.addEventListener("pointercancel", dragEnd);
      return true;
    }
    function dragMove(e) {
      if (!drag || e.pointerId !== drag.id) return;
      const [x, y] = viewer.toImage(e.clientX, e.clientY);
      const at = [clampX(x), clampY(y)];
      if (drag.kind === "vertex") {
        const sh = shape();
        if (!sh) return;
        const base = draft && draft.index === sel && draft.ctx === cur ? draft.points : sh.points;
        draft = {ctx: cur, index: sel, points: withVertex({...sh, points: base}, vertex, ...at)};
        drag.moved = true;
        redrawDraft();
      } else {
        drag.end = at;
        const [a, b] = [drag.start, at];
        for (const [k, v] of Object.entries({x: Math.min(a[0], b[0]), y: Math.min(a[1], b[1]),
                                              width: Math.abs(b[0] - a[0]), height: Math.abs(b[1] - a[1])})) drag.rect.setAttribute(k, v);
      }
    }
    function dragEnd(e) {
      if (!drag || e.pointerId !== drag.id) return;
      window.removeEventListener("pointermove", dragMove);
      window.removeEventListener("pointerup", dragEnd);
      window.removeEventListener("pointercancel", dragEnd);
      const d = drag;
      drag = null;
      if (d.kind === "vertex") { if (d.moved && e.type === "pointerup") commitDraft(); else { draft = null; redrawDraft(); decorate(); } return; }
      d.rect.remove();
      const [a, b] = [d.start, d.end];
      if (e.type === "pointerup" && Math.abs(b[0] - a[0]) * viewer.pixel() >= 3 && Math.abs(b[1] - a[1]) * viewer.pixel() >= 3) {
        addBox([a[0], a[1], b[0], b[1]]);
      }
    }
    function click(target) {
      if (!on || !editable()) return;
      const node = target.closest && target.closest("[data-index]");
      choose(node && box.contains(node) ? Number(node.dataset.index) : null);
    }
    box.addEventListener("dblclick", e => {
      if (!on || !editable() || !shape()) return;
      e.preventDefault();
      addVertex(viewer.toImage(e.clientX, e.clientY));
    });

    // ---- keyboard ---------------------------------------------------------------------------
    // focus is not selection: Tab walks through the shapes; Enter, Space, an arrow key or Delete acts on the focused one
    box.addEventListener("focusin", e => {
      if (!on || !editable() || !e.target.classList.contains("handle")) return;
      vertex = Number(e.target.dataset.vertex);
      svg().querySelectorAll(".handle").forEach(c => c.classList.toggle("current", c === e.target));
      controls();
    });
    box.addEventListener("focusout", e => { if (!box.contains(e.relatedTarget)) commitDraft(); });
    box.addEventListener("keydown", e => {
      if (!on || !editable() || e.altKey || e.ctrlKey || e.metaKey) return;
      const onHandle = e.target.classList.contains("handle"), onShape = e.target.dataset && e.target.dataset.index !== undefined;
      if (!onHandle && !onShape) {
        if (e.key === "Enter" && drawing) { addBoxInView(); e.preventDefault(); }
        if (e.key === "Escape" && drawing) { drawing = false; decorate(); say(""); e.preventDefault(); }
        return;
      }
      const move = KEY_MOVES[e.key];
      const n = e.shiftKey ? 10 : 1;
      if (onShape && (move || ["Delete", "Backspace", "Enter", " "].includes(e.key)) && Number(e.target.dataset.index) !== sel) {
        choose(Number(e.target.dataset.index));
      }
      if (move) moveBy(move[0] * n, move[1] * n);
      else if (e.key === "Delete" || e.key === "Backspace") { if (onHandle) deleteVertex(Number(e.target.dataset.vertex)); else deleteShape(); }
      else if (e.key === "Escape") { if (onHandle) nodeOf(sel)?.focus(); else { choose(null); box.focus(); } }
      else if (onShape && (e.key === "Enter" || e.key === " ")) svg().querySelector(".handle")?.focus();
      else return;
      e.preventDefault();
    });
    document.addEventListener("keydown", e => {
      if (!on || !editable() || e.target.closest("input, select, textarea")) return;
      if ((e.ctrlKey || e.metaKey) && !e.shiftKey && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
    });

    function undo() {
      commitDraft();
      if (!(headOf(ann()) > 0)) return;
      send("POST", "/undo", {}, "Undone");
    }

    // ---- the buttons --------------------------------------------------------------------------
    $("edit-toggle").addEventListener("click", () => {
      commitDraft();
      on = !on;
      if (!on) { sel = null; vertex = null; drawing = false; say(""); }
      answer(ann());
    });
    $("undo").addEventListener("click", undo);
    $("draw-box").addEventListener("click", () => { drawing = !drawing; if (drawing) choose(null); else decorate();
      say(drawing ? "Drag a rectangle on the frame to draw a box (or press Enter on the viewer to place one; Escape stops drawing)." : ""); });
    $("add-box").addEventListener("click", addBoxInView);
    $("add-vertex").addEventListener("click", () => addVertex(null));
    $("delete-vertex").addEventListener("click", () => deleteVertex());
    $("delete-shape").addEventListener("click", deleteShape);
    select.addEventListener("change", () => {
      const sh = shape();
      if (!sh) { newLabel = select.value; return; }
      if (select.value !== String(sh.label)) send("PATCH", `/shapes/${sel}`, {label: select.value}, `Label changed to ${labelName(select.value)}`);
    });
    viewer.on(what => {
      if (what !== "zoom" || !svg()) return;
      svg().querySelectorAll(".handle").forEach(c => c.setAttribute("r", 6 / viewer.pixel()));
    });

    return {setFrame, rowButton, pointerDown, click, flush: commitDraft, editing: () => on && editable(),
            saves: () => saves};
  }

  return {create, vertices, withVertex};
})();
