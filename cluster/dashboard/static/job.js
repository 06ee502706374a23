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
    if (FINISHED.includes(j.state)) exportsComplete();
    $("failed-count").textContent = j.frames_failed;
  }

  /** A job that finished while its page was open: its export links ask for the whole job, no longer a
      partial export (which the page offered while it ran). */
  function exportsComplete() {
    $("export-partial").hidden = true;
    for (const a of document.querySelectorAll('a[href*="/export?"][href*="&partial=1"]')) {
      a.setAttribute("href", a.getAttribute("href").replace("&partial=1", ""));
    }
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
    if (reload) review.failedChanged();
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
  const {color, geometry} = PrelabelViewer;
  const labelName = id => labels[id] ?? `label ${id}`;

  const review = (() => {
    const list = $("frame-list"), status = $("frame-status");
    const PER = Math.max(1, Math.min(50, Math.floor(999 / STEP) + 1));  // one API call a page, <= 1000 frames read
    const PAGES = Math.max(1, Math.ceil(TOTAL / PER));
    let page = -1, records = new Map(), current = null, pending = false, ticket = 0, loads = 0;
    let wanted = null;  // the frame last asked for: arrow keys step from it while its page still loads
    let shown = null;   // what the viewer shows: {rec, ann, problem}
    let grid = false, failedOnly = false, original = false;
    const corrected = new Map();  // frame -> head revision, for the frames corrected by someone

    const inJob = n => Number.isInteger(n) && n >= START && n < STOP && (n - START) % STEP === 0;
    const failedList = () => (failedAll || []).filter(f => inJob(f.frame));

    // Where the list's frames come from: every frame of the job, or only its failed frames.
    const everyFrame = {
      pages: () => PAGES,
      pageOf: n => Math.floor((n - START) / STEP / PER),
      async frames(p) {
        const first = START + p * PER * STEP;
        const limit = Math.min((PER - 1) * STEP + 1, STOP - first);
        return (await api(`/api/datasets/${DATASET}/frames?start=${first}&limit=${limit}`)).filter(f => inJob(f.frame));
      },
      next(from, delta) { const n = from + delta * STEP; return inJob(n) ? n : null; },
    };
    const failedFrames = {
      pages: () => Math.max(1, Math.ceil(failedList().length / PER)),
      pageOf: n => { const i = failedList().findIndex(f => f.frame === n); return i < 0 ? -1 : Math.floor(i / PER); },
      async frames(p) { return failedList().slice(p * PER, (p + 1) * PER); },
      next(from, delta) {
        const all = failedList().map(f => f.frame);
        const n = delta > 0 ? all.find(f => f > from) : all.filter(f => f < from).pop();
        return n === undefined ? null : n;
      },
    };
    const source = () => failedOnly ? failedFrames : everyFrame;

    const viewer = PrelabelViewer.create($("viewer"), {labelName, hooks: {
      pointerDown: e => editor.pointerDown(e), click: (target, e) => editor.click(target, e)}});
    const editor = PrelabelEditor.create({viewer, labels, labelName, job: JOB,
      frame: () => shown, answer: ann => show(ann), reload: () => select(current, {keepHash: true})});
    viewer.on((what, value) => {
      if (what === "zoom") $("zoom-level").textContent = `${Math.round(value * 100)}%`;
      if (what === "image-error") status.prepend(el("span", {class: "error", text: "The image cannot be loaded. "}));
    });

    function item(f) {
      const flags = [];
      if (failedSeen.has(f.frame)) flags.push(el("span", {class: "flag bad", text: "failed"}));
      if (corrected.get(f.frame)) flags.push(el("span", {class: "flag fixed", text: "corrected"}));
      const thumb = grid ? el("img", {class: "thumb", alt: "", loading: "lazy", decoding: "async", width: 112, height: 84,
                                      src: `/api/datasets/${DATASET}/frames/${f.frame}/image`}) : null;
      return el("li", {"data-frame": f.frame, class: failedSeen.has(f.frame) ? "failed" : null},
        el("button", {type: "button", title: f.name, "aria-current": f.frame === current ? "true" : "false",
                      onclick: () => select(f.frame)},
          thumb, el("span", {class: "n", text: `#${f.frame}`}), el("span", {class: "name", text: f.name}), ...flags));
    }

    async function loadPage(p) {
      const src = source();
      p = Math.min(Math.max(0, p), src.pages() - 1);
      const seq = ++loads;
      const frames = await src.frames(p);
      if (seq !== loads) return;  // a later page was asked for meanwhile: it wins
      page = p;
      records = new Map(frames.map(f => [f.frame, f]));
      list.classList.toggle("grid", grid);
      list.replaceChildren(...frames.map(item));
      if (!frames.length) list.append(el("li", {class: "none", text: failedOnly ? "No frame has failed." : "No frames."}));
      const pager = $("frame-pager"), back = pager.querySelector('[data-go="-1"]'), on = pager.querySelector('[data-go="1"]');
      pager.querySelector(".where").textContent = `page ${p + 1} of ${src.pages()}`;
      const had = document.activeElement;
      back.disabled = p === 0;
      on.disabled = p >= src.pages() - 1;
      // a pager button disabled at the first or last page would drop the focus: the other one takes it
      if ((had === back || had === on) && had.disabled) (had === on ? back : on).focus();
    }
    const relist = () => { const p = current === null ? 0 : source().pageOf(current); return loadPage(p < 0 ? 0 : p); };

    function markFailed(n) {
      const li = list.querySelector(`li[data-frame="${n}"]`);
      if (li && !li.classList.contains("failed")) li.replaceWith(item(records.get(n) || {frame: n, name: ""}));
    }

    async function select(n, {keepHash = false} = {}) {
      if (!inJob(n)) {
        status.replaceChildren(el("span", {class: "error",
          text: `Frame ${n} is not in this job (frames ${START}–${STOP - 1}, every ${STEP}).`}));
        return;
      }
      editor.flush();  // a move from the keyboard not sent yet is sent for the frame it was made on
      const mine = ++ticket;
      wanted = n;
      const p = source().pageOf(n);
      if (p >= 0 && p !== page) await loadPage(p);
      if (mine !== ticket) return;
      current = n;
      for (const b of list.querySelectorAll("li button")) {
        const on = Number(b.parentElement.dataset.frame) === n;
        b.setAttribute("aria-current", on ? "true" : "false");
        if (on) b.scrollIntoView({block: "nearest"});
      }
      if (!keepHash) history.replaceState(null, "", `#frame=${n}`);
      const had = document.activeElement;
      $("prev-frame").disabled = source().next(n, -1) === null;
      $("next-frame").disabled = source().next(n, 1) === null;
      if ((had === $("prev-frame") || had === $("next-frame")) && had.disabled) $(had.id === "next-frame" ? "prev-frame" : "next-frame").focus();
      const rec = records.get(n) || {frame: n, name: "", width: 0, height: 0};
      let ann = null, problem = null;
      if (!processed(n)) {  // not asked for: its chunk has no outcome yet
        problem = {status: 404, message: "not processed yet"};
      } else {
        const saves = editor.saves();
        try {
          ann = await api(`/api/jobs/${JOB}/frames/${n}/annotations${original ? "?revision=0" : ""}`);
        } catch (e) {
          problem = e;
        }
        // A change saved while this answer was on its way (a poll's reload racing an edit): the answer
        // shows the revision before it, and a next change based on it would be refused as stale.
        if (mine === ticket && editor.saves() !== saves) return select(n, {keepHash: true});
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
      shown = {rec, ann, problem};
      viewer.setFrame({frame: rec.frame, name, width: w, height: h, shapes: (ann && ann.shapes) || [],
                       src: `/api/datasets/${DATASET}/frames/${rec.frame}/image`});
      show(ann, {fresh: true});
    }

    /** The frame's shapes (drawn, counted, listed) and its revision; after an edit, only these change. */
    function show(ann, {fresh = false} = {}) {
      const {rec, problem} = shown;
      shown.ann = ann;
      const shapes = (ann && ann.shapes) || [];
      if (!fresh) viewer.setShapes(shapes);
      $("overlay").classList.toggle("no-shapes", !$("show-shapes").checked);
      $("overlay").classList.toggle("no-masks", !$("show-masks").checked);

      // What the frame is: its shapes, why it failed, or that it is not done yet.
      if (problem) {
        let text = problem.message;
        if (pending) text = "Not annotated yet: this frame's chunk has not been processed. It appears here when it is.";
        else if (problem.status === 404 && job.state === "cancelled") text = "Not annotated: the job was cancelled first.";
        status.replaceChildren(el("span", {class: pending ? "muted" : "error", text}));
      } else if (ann.failed) {
        status.replaceChildren(el("span", {class: "error-box", id: "frame-failed", text: `This frame failed: ${ann.failed}`}));
        if (!failedSeen.has(rec.frame)) { failedSeen.add(rec.frame); markFailed(rec.frame); }
      } else {
        const counts = shapes.length === 1 ? "1 shape" : `${shapes.length} shapes`;
        status.replaceChildren(el("span", {class: "muted", text: shapes.length ? counts : "No shapes on this frame."}));
      }
      legend(shapes);
      const table = $("shapes-table");
      table.hidden = shapes.length === 0;
      table.tBodies[0].replaceChildren(...shapes.map((s, i) => el("tr", {"data-index": i},
        el("td", {}, editor.rowButton(i, s)),
        el("td", {}, el("span", {class: "swatch", style: `background:${color(s.label)}`}), " ", labelName(s.label)),
        el("td", {text: s.type}),
        el("td", {class: "num", text: s.score == null ? "–" : s.score.toFixed(2)}),
        el("td", {text: geometry(s)}))));
      viewer.filter();
      revision(ann);
      editor.setFrame(ann && !problem && !ann.failed ? ann : null, {original});
      if (ann && !ann.failed) {
        const head = ann.head ?? ann.revision ?? 0;
        if ((corrected.get(rec.frame) || 0) !== head) {
          corrected.set(rec.frame, head);
          const li = list.querySelector(`li[data-frame="${rec.frame}"]`);
          if (li) li.replaceWith(item(records.get(rec.frame) || {frame: rec.frame, name: rec.name}));
        }
      }
    }

    function revision(ann) {
      const head = ann ? ann.head ?? ann.revision ?? 0 : 0;
      $("revision").textContent = !ann || ann.failed ? ""
        : original ? "The model's original (revision 0), read-only"
        : head ? `Corrected, revision ${head}` : "Model output";
      $("revision").classList.toggle("fixed", !!head && !original);
      $("history").hidden = !ann || !!ann.failed || !ann.revisions;
      showHistory();
      const button = $("view-original");
      button.hidden = !original && !head;
      button.setAttribute("aria-pressed", original ? "true" : "false");
      button.textContent = original ? "Back to the corrected shapes" : "Show the model's original";
    }

    /** The frame's kept revisions, oldest first, with who made each and when (read when the History is open). */
    async function showHistory() {
      if (!$("history").open || $("history").hidden || !shown || !shown.ann) return;
      const frame = shown.rec.frame, list = $("history-list");
      let revisions;
      try { revisions = await api(`/api/jobs/${JOB}/frames/${frame}/annotations/revisions`); }
      catch (e) { list.replaceChildren(el("li", {class: "error", text: e.message})); return; }
      if (!shown || shown.rec.frame !== frame) return;
      const head = shown.ann.head ?? shown.ann.revision ?? 0;
      list.replaceChildren(...revisions.map(r => el("li", {class: r.undone ? "undone" : null,
                                                           "aria-current": r.revision === head ? "true" : null},
        r.revision ? `Revision ${r.revision}: ${r.change}` : "Model output",
        r.author ? ` by ${r.author}` : "", r.time ? ` · ${Prelabel.ago(r.time)}` : "",
        r.undone ? " (undone)" : r.revision === head ? " (current)" : "")));
    }
    $("history").addEventListener("toggle", showHistory);

    /** The legend: one toggle a label, in its colour, with its count on this frame. */
    function legend(shapes) {
      const perLabel = new Map();
      shapes.forEach(s => perLabel.set(s.label, (perLabel.get(s.label) || 0) + 1));
      $("legend").replaceChildren(...[...perLabel].map(([label, n]) => {
        const on = !viewer.hidden(label);
        return el("button", {type: "button", class: "chip", "data-label": label, "aria-pressed": on ? "true" : "false",
                             title: `${on ? "Hide" : "Show"} the ${labelName(label)} shapes`,
                             onclick: e => {
                               viewer.toggleLabel(label);
                               const now = !viewer.hidden(label);
                               e.currentTarget.setAttribute("aria-pressed", now ? "true" : "false");
                               e.currentTarget.title = `${now ? "Hide" : "Show"} the ${labelName(label)} shapes`;
                             }},
          el("span", {class: "swatch", style: `background:${color(label)}`}), `${labelName(label)} × ${n}`);
      }));
    }

    function retryPending() {
      if (current !== null && pending) select(current, {keepHash: true});
    }

    function step(delta) {
      const from = wanted ?? current;
      if (from === null) return;
      const n = source().next(from, delta);
      if (n !== null) select(n);
    }

    let listing = false;  // setFailedOnly draws the list itself
    async function setFailedOnly(on) {
      failedOnly = on;
      $("failed-only").checked = on;
      if (on) {
        listing = true;
        try { await loadFailed(failedAll === null); } finally { listing = false; }
        const failed = failedList();
        if (failed.length && !failed.some(f => f.frame === current)) {
          page = -1;
          await select(failed[0].frame);
          return;
        }
      }
      await relist();
      if (current !== null) select(current, {keepHash: true});
    }

    // the review tools
    const pressed = (id, on) => $(id).setAttribute("aria-pressed", on ? "true" : "false");
    $("view-list").addEventListener("click", () => { grid = false; pressed("view-list", true); pressed("view-grid", false); relist(); });
    $("view-grid").addEventListener("click", () => { grid = true; pressed("view-list", false); pressed("view-grid", true); relist(); });
    $("failed-only").addEventListener("change", e => setFailedOnly(e.target.checked));
    $("opacity").addEventListener("input", e => {
      viewer.setOpacity(e.target.value);
      $("opacity-value").textContent = `${Math.round(e.target.value * 100)}%`;
    });
    $("min-score").addEventListener("input", e => {
      viewer.setMinScore(Number(e.target.value));
      $("min-score-value").textContent = Number(e.target.value).toFixed(2);
    });
    $("zoom-in").addEventListener("click", () => viewer.zoomBy(1.5));
    $("zoom-out").addEventListener("click", () => viewer.zoomBy(1 / 1.5));
    $("zoom-fit").addEventListener("click", () => viewer.fit());
    $("view-original").addEventListener("click", () => { original = !original; select(current, {keepHash: true}); });

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
      if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.target.closest("input:not([type=checkbox]), select, textarea")) return;
      const key = {ArrowRight: () => step(1), ArrowLeft: () => step(-1), "+": () => viewer.zoomBy(1.5),
                   "=": () => viewer.zoomBy(1.5), "-": () => viewer.zoomBy(1 / 1.5), "0": () => viewer.fit()}[e.key];
      if (key) { key(); e.preventDefault(); }
    });
    let resizing = null, width = window.innerWidth;
    window.addEventListener("resize", () => {
      if (window.innerWidth === width) return;  // a phone's toolbar showing or hiding: nothing to fit again
      width = window.innerWidth;
      clearTimeout(resizing);
      resizing = setTimeout(() => { if (current !== null) select(current, {keepHash: true}); }, 200);
    });

    async function loadCorrections() {
      try {
        const answer = await api(`/api/jobs/${JOB}/corrections`);
        for (const [frame, head] of Object.entries(answer.frames || {})) corrected.set(Number(frame), head);
        if (corrected.size) relist();
      } catch (e) { /* an older dashboard without corrections: no badges */ }
    }

    function start() {
      if (!TOTAL) {
        $("viewer").replaceChildren(el("span", {class: "placeholder", text: "This job has no frames."}));
        return;
      }
      const m = /^#frame=(\d+)$/.exec(location.hash);
      const first = m ? Number(m[1]) : START;
      select(inJob(first) ? first : START, {keepHash: !m});
      if (job.frames_done) loadCorrections();  // frames are corrected once annotated
    }
    /** Frames failed since the list was drawn: in "failed frames only", they join it. */
    function failedChanged() { if (failedOnly && !listing) relist(); }

    return {select, markFailed, retryPending, start, failedChanged};
  })();

  review.start();
  if (job.frames_failed > FAILED_PAGE) loadFailed();  // shows the pager
  follow();
})();
