/* A job's page: live status, failed frames paged from the API, and the review panel (frames of
   the job, each drawn with its shapes as an SVG overlay over the image). */
"use strict";
(() => {
  const {api, el, setProgress, setBadge, duration, poll, isLive, FINISHED} = Prelabel;
  const $ = id => document.getElementById(id);
  const data = JSON.parse($("page-data").textContent);
  const labels = data.labels || {};
  let job = data.job;
  const JOB = encodeURIComponent(job.id), DATASET = encodeURIComponent(job.dataset);
  const [START, STOP, STEP] = job.frames;
  const TOTAL = job.frames_total;
  const failedSeen = new Set();
  let unprocessed = data.unprocessed || [];  // [start, stop) spans of chunks with no outcome yet
  const processed = n => !unprocessed.some(([a, b]) => a <= n && n < b);

  // ---- live status ---------------------------------------------------------------------------
  function show(j) {
    setBadge($("state"), j);
    setProgress(document.querySelector("#summary .progress"), j);
    $("n-done").textContent = j.frames_done;
    $("n-failed").textContent = j.frames_failed;
    $("n-total").textContent = j.frames_total;
    $("fps").textContent = j.fps.toFixed(1);
    $("elapsed").textContent = j.started_at ? duration(j.elapsed_s) : "–";
    $("eta").textContent = duration(j.eta_s);
    $("warning").hidden = !j.warning;
    $("warning").textContent = j.warning || "";
    $("job-error").hidden = !j.error;
    $("job-error").textContent = j.error || "";
    $("cancel").hidden = FINISHED.includes(j.state);
    $("failed-count").textContent = j.frames_failed;
  }

  async function refresh() {
    const before = job;
    job = await api(`/api/jobs/${JOB}`);
    show(job);
    if (job.frames_failed !== before.frames_failed) loadFailed();
    if (job.frames_done + job.frames_failed !== before.frames_done + before.frames_failed
        || job.state !== before.state) {
      unprocessed = (await api(`/jobs/${JOB}/unprocessed`)).spans;
      review.retryPending();
    }
    return isLive(job);  // after a cancel, until the chunks still running have finished
  }
  let poller = null;
  function follow() {
    if (!isLive(job)) return;
    if (poller) poller.wake(); else poller = poll(refresh, 1500);
  }

  $("cancel").addEventListener("click", async () => {
    if (!confirm("Cancel this job? Frames already annotated are kept.")) return;
    $("cancel").disabled = true;
    try { show(job = await api(`/api/jobs/${JOB}/cancel`, {method: "POST"})); review.retryPending(); follow(); }
    catch (e) { alert(e.message); }
    finally { $("cancel").disabled = false; }
  });

  // ---- failed frames, paged ------------------------------------------------------------------
  const FAILED_PAGE = data.failed_page || 50;
  let failedPage = 0;

  let failedAll = null;  // every failed frame, in frame order (the API lists them in the order chunks finished)

  async function loadFailed(reload = true) {
    if (reload || failedAll === null) {
      const all = [];
      for (let start = 0; ; start += 10000) {
        const part = await api(`/api/jobs/${JOB}/failed?start=${start}&limit=10000`);
        all.push(...part);
        if (part.length < 10000) break;
      }
      failedAll = all.sort((a, b) => a.frame - b.frame);
    }
    const count = failedAll.length;
    const pages = Math.max(1, Math.ceil(count / FAILED_PAGE));
    failedPage = Math.min(failedPage, pages - 1);
    const rows = failedAll.slice(failedPage * FAILED_PAGE, (failedPage + 1) * FAILED_PAGE);
    const tbody = document.querySelector("#failed tbody");
    tbody.replaceChildren(...(rows.length ? rows.map(failedRow)
      : [el("tr", {class: "empty"}, el("td", {colspan: 3, text: "No frame has failed."}))]));
    failedAll.forEach(f => { failedSeen.add(f.frame); review.markFailed(f.frame); });
    const pager = $("failed-pager");
    pager.hidden = count <= FAILED_PAGE;
    pager.querySelector(".where").textContent =
      `${failedPage * FAILED_PAGE + 1}–${failedPage * FAILED_PAGE + rows.length} of ${count}`;
    pager.querySelector('[data-go="-1"]').disabled = failedPage === 0;
    pager.querySelector('[data-go="1"]').disabled = failedPage >= pages - 1;
  }

  function failedRow(f) {
    return el("tr", {class: "clickable", "data-frame": f.frame, title: "Show this frame below"},
      el("td", {class: "num", text: f.frame}), el("td", {text: f.name}), el("td", {class: "reason", text: f.reason}));
  }

  $("failed-pager").addEventListener("click", e => {
    const go = e.target.closest("button[data-go]");
    if (!go) return;
    failedPage = Math.max(0, failedPage + Number(go.dataset.go));
    loadFailed(false);
  });
  document.querySelector("#failed tbody").addEventListener("click", e => {
    const row = e.target.closest("tr[data-frame]");
    if (!row) return;
    review.select(Number(row.dataset.frame));
    $("review").scrollIntoView({behavior: "smooth"});
  });
  document.querySelectorAll("#failed tbody tr[data-frame]").forEach(r => failedSeen.add(Number(r.dataset.frame)));

  // ---- review panel --------------------------------------------------------------------------
  const PALETTE = ["#ff3b30", "#34c759", "#0a84ff", "#ff9f0a", "#bf5af2", "#64d2ff", "#ffd60a", "#ff375f",
                   "#30d158", "#5e5ce6"];
  const labelName = id => labels[id] ?? `label ${id}`;
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
      case "rectangle": return `${r(p[2] - p[0])}×${r(p[3] - p[1])} at (${r(p[0])}, ${r(p[1])})`;
      case "mask": return p.length === 4 ? `within ${r(p[2] - p[0])}×${r(p[3] - p[1])} at (${r(p[0])}, ${r(p[1])})` : "";
      case "tag": return "whole frame";
      default: return `${Math.floor(p.length / 2)} points`;
    }
  }

  function shapeNode(s, i, radius) {
    const c = color(s.label), p = s.points || [];
    const common = {class: `shape shape-${s.type}`, "data-index": i, "data-label": s.label, stroke: c, fill: c};
    const title = el("title", {text: `${labelName(s.label)} · ${s.type}` + (s.score == null ? "" : ` · ${s.score.toFixed(2)}`)});
    switch (s.type) {
      case "rectangle":
        return el("rect", {...common, x: Math.min(p[0], p[2]), y: Math.min(p[1], p[3]),
                           width: Math.abs(p[2] - p[0]), height: Math.abs(p[3] - p[1])}, title);
      case "polygon": return el("polygon", {...common, points: pairs(p)}, title);
      case "polyline": return el("polyline", {...common, points: pairs(p)}, title);
      case "points": {
        const g = el("g", {...common, "fill-opacity": 0.9}, title);
        for (let k = 0; k + 1 < p.length; k += 2) g.append(el("circle", {class: "point", cx: p[k], cy: p[k + 1], r: radius}));
        return g;
      }
      case "mask":
        if (s.rle && s.rle.size) {
          const [h, w] = s.rle.size;
          return el("image", {class: "mask", "data-index": i, "data-label": s.label, x: 0, y: 0, width: w, height: h,
                              preserveAspectRatio: "none", href: maskUrl(s.rle, c)}, title);
        }
        return null;
      default: return null;  // tags have no geometry: they are listed as chips
    }
  }

  const review = (() => {
    const list = $("frame-list"), viewer = $("viewer"), status = $("frame-status");
    const PER = Math.max(1, Math.min(50, Math.floor(999 / STEP) + 1));  // one API call a page, <= 1000 frames read
    const PAGES = Math.max(1, Math.ceil(TOTAL / PER));
    let page = -1, records = new Map(), current = null, pending = false, ticket = 0, loads = 0;
    let wanted = null;  // the frame last asked for: arrow keys step from it while its page still loads

    const inJob = n => Number.isInteger(n) && n >= START && n < STOP && (n - START) % STEP === 0;
    const pageOf = n => Math.floor((n - START) / STEP / PER);

    async function loadPage(p) {
      p = Math.min(Math.max(0, p), PAGES - 1);
      const seq = ++loads;
      const first = START + p * PER * STEP;
      const limit = Math.min((PER - 1) * STEP + 1, STOP - first);
      const frames = (await api(`/api/datasets/${DATASET}/frames?start=${first}&limit=${limit}`))
        .filter(f => inJob(f.frame));
      if (seq !== loads) return;  // a later page was asked for meanwhile: it wins
      page = p;
      records = new Map(frames.map(f => [f.frame, f]));
      list.replaceChildren(...frames.map(f => el("li", {"data-frame": f.frame, class: failedSeen.has(f.frame) ? "failed" : null},
        el("button", {type: "button", title: f.name, "aria-current": f.frame === current ? "true" : "false",
                      onclick: () => select(f.frame)},
          el("span", {class: "n", text: `#${f.frame}`}), el("span", {class: "name", text: f.name})))));
      const pager = $("frame-pager");
      pager.querySelector(".where").textContent = `page ${p + 1} of ${PAGES}`;
      pager.querySelector('[data-go="-1"]').disabled = p === 0;
      pager.querySelector('[data-go="1"]').disabled = p >= PAGES - 1;
    }

    function markFailed(n) {
      list.querySelector(`li[data-frame="${n}"]`)?.classList.add("failed");
    }

    async function select(n, {keepHash = false} = {}) {
      if (!inJob(n)) {
        status.replaceChildren(el("span", {class: "error",
          text: `Frame ${n} is not in this job (frames ${START}–${STOP - 1}, every ${STEP}).`}));
        return;
      }
      const mine = ++ticket;
      wanted = n;
      if (pageOf(n) !== page) await loadPage(pageOf(n));
      if (mine !== ticket) return;
      current = n;
      for (const b of list.querySelectorAll("li button")) {
        const on = Number(b.parentElement.dataset.frame) === n;
        b.setAttribute("aria-current", on ? "true" : "false");
        if (on) b.scrollIntoView({block: "nearest"});
      }
      if (!keepHash) history.replaceState(null, "", `#frame=${n}`);
      $("prev-frame").disabled = n - STEP < START;
      $("next-frame").disabled = n + STEP >= STOP;
      const rec = records.get(n) || {frame: n, name: "", width: 0, height: 0};
      let ann = null, problem = null;
      if (!processed(n)) {  // not asked for: its chunk has no outcome yet
        problem = {status: 404, message: "not processed yet"};
      } else {
        try {
          ann = await api(`/api/jobs/${JOB}/frames/${n}/annotations`);
        } catch (e) {
          problem = e;
        }
      }
      if (mine !== ticket) return;
      pending = !!problem && problem.status === 404 && !FINISHED.includes(job.state);
      draw(rec, ann, problem);
    }

    function draw(rec, ann, problem) {
      const w = (ann && ann.width) || rec.width, h = (ann && ann.height) || rec.height;
      const name = (ann && ann.name) || rec.name;
      $("viewer-title").textContent = `#${rec.frame} · ${name}` + (w && h ? ` · ${w}×${h}` : "");
      $("viewer-title").title = name;
      const shapes = (ann && ann.shapes) || [];

      const box = viewer.getBoundingClientRect();
      const maxW = Math.max(200, box.width - 2), maxH = Math.max(240, window.innerHeight * 0.7);
      const scale = w && h ? Math.min(maxW / w, maxH / h) : 1;
      const img = el("img", {id: "frame-image", alt: name, src: `/api/datasets/${DATASET}/frames/${rec.frame}/image`,
                             width: Math.round(w * scale) || null, height: Math.round(h * scale) || null});
      if (scale > 2) img.style.imageRendering = "pixelated";
      img.addEventListener("error", () => status.prepend(el("span", {class: "error", text: "The image cannot be loaded. "})));
      const svg = el("svg", {id: "overlay", viewBox: `0 0 ${w || 1} ${h || 1}`, preserveAspectRatio: "none",
                             "data-frame": rec.frame, role: "img", "aria-label": `${shapes.length} shapes`});
      const masks = el("g", {class: "masks"}), drawn = el("g", {class: "shapes"});
      shapes.forEach((s, i) => {
        const node = shapeNode(s, i, 4 / scale);
        if (node) (s.type === "mask" ? masks : drawn).append(node);
      });
      svg.append(masks, drawn);
      svg.classList.toggle("no-shapes", !$("show-shapes").checked);
      svg.classList.toggle("no-masks", !$("show-masks").checked);
      viewer.replaceChildren(el("div", {class: "stage"}, img, svg));

      // What the frame is: its shapes, why it failed, or that it is not done yet.
      if (problem) {
        let text = problem.message;
        if (pending) text = "Not annotated yet: this frame's chunk has not been processed. It appears here when it is.";
        else if (problem.status === 404 && job.state === "cancelled") text = "Not annotated: the job was cancelled first.";
        status.replaceChildren(el("span", {class: pending ? "muted" : "error", text}));
      } else if (ann.failed) {
        status.replaceChildren(el("span", {class: "error-box", id: "frame-failed", text: `This frame failed: ${ann.failed}`}));
        failedSeen.add(rec.frame);
        markFailed(rec.frame);
      } else {
        const counts = shapes.length === 1 ? "1 shape" : `${shapes.length} shapes`;
        status.replaceChildren(el("span", {class: "muted", text: shapes.length ? counts : "No shapes on this frame."}));
      }
      const perLabel = new Map();
      shapes.forEach(s => perLabel.set(s.label, (perLabel.get(s.label) || 0) + 1));
      $("legend").replaceChildren(...[...perLabel].map(([label, n]) => el("span", {class: "chip"},
        el("span", {class: "swatch", style: `background:${color(label)}`}), `${labelName(label)} × ${n}`)));
      const table = $("shapes-table");
      table.hidden = shapes.length === 0;
      table.tBodies[0].replaceChildren(...shapes.map((s, i) => el("tr", {"data-index": i},
        el("td", {text: i + 1}),
        el("td", {}, el("span", {class: "swatch", style: `background:${color(s.label)}`}), " ", labelName(s.label)),
        el("td", {text: s.type}),
        el("td", {class: "num", text: s.score == null ? "–" : s.score.toFixed(2)}),
        el("td", {text: geometry(s)}))));
    }

    function retryPending() {
      if (current !== null && pending) select(current, {keepHash: true});
    }

    function step(delta) {
      const from = wanted ?? current;
      if (from === null) return;
      const n = from + delta * STEP;
      if (inJob(n)) select(n);
    }

    // hovering a row of the table lights up its shape
    $("shapes-table").addEventListener("mouseover", e => {
      const row = e.target.closest("tr[data-index]");
      document.querySelectorAll("#overlay .hot").forEach(n => n.classList.remove("hot"));
      if (row) document.querySelectorAll(`#overlay [data-index="${row.dataset.index}"]`).forEach(n => n.classList.add("hot"));
    });
    $("shapes-table").addEventListener("mouseleave",
      () => document.querySelectorAll("#overlay .hot").forEach(n => n.classList.remove("hot")));
    $("show-shapes").addEventListener("change", e => $("overlay")?.classList.toggle("no-shapes", !e.target.checked));
    $("show-masks").addEventListener("change", e => $("overlay")?.classList.toggle("no-masks", !e.target.checked));
    $("prev-frame").addEventListener("click", () => step(-1));
    $("next-frame").addEventListener("click", () => step(1));
    $("frame-pager").addEventListener("click", async e => {
      const go = e.target.closest("button[data-go]");
      if (go) await loadPage(page + Number(go.dataset.go));
    });
    $("goto-frame").addEventListener("keydown", e => {
      if (e.key === "Enter" && e.target.value.trim() !== "") { e.preventDefault(); select(Number(e.target.value)); }
    });
    document.addEventListener("keydown", e => {
      if (e.target.closest("input:not([type=checkbox]), select, textarea") || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
      if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
    });
    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => { if (current !== null) select(current, {keepHash: true}); }, 200);
    });

    function start() {
      if (!TOTAL) {
        viewer.replaceChildren(el("span", {class: "placeholder", text: "This job has no frames."}));
        return;
      }
      const m = /^#frame=(\d+)$/.exec(location.hash);
      const wanted = m ? Number(m[1]) : START;
      select(inJob(wanted) ? wanted : START, {keepHash: !m});
    }
    return {select, markFailed, retryPending, start};
  })();

  review.start();
  if (job.frames_failed > FAILED_PAGE) loadFailed();  // shows the pager
  follow();
})();
