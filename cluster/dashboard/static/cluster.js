/* The cluster page: drawn from the state embedded in the page (the same answer as GET /api/cluster),
   then kept live by asking the API every few seconds while the tab is visible (none while hidden).
   Rows are keyed and cells rewritten only when their value changed, so keyboard focus, selection and
   scroll survive the updates. */
"use strict";
(() => {
  const {api, el, duration} = Prelabel;
  const root = document.getElementById("cluster");
  const POLL_MS = Number(root.dataset.pollMs) || 2000;
  const JOB_URL = root.dataset.jobUrl || "/jobs/JOB_ID";
  const status = document.getElementById("live-status");
  const updated = document.getElementById("updated");

  const KINDS = {
    chunk_retry: "chunk failed, retrying",
    chunk_failed: "chunk failed for good",
    chunk_parked: "chunk parked",
    frames_failed: "frames failed",
  };

  // -- formatting ------------------------------------------------------------------------------
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  }
  const num = (v, digits = 0) => (v === null || v === undefined) ? "–" : Number(v).toFixed(digits);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function clock(epoch) {
    const d = new Date(epoch * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString(undefined, {dateStyle: "short", timeStyle: "medium"});
  }

  function jobLink(job, text) {
    return el("a", {href: JOB_URL.replace("JOB_ID", encodeURIComponent(job))}, text || job);
  }

  // -- keyed rows, cells rewritten only when their value changed ---------------------------------
  const FOCUSABLE = "a, button, input, select, textarea, [tabindex]";

  function setCell(td, cell) {
    td.dataset.label = cell.label;
    td.className = cell.cls || "";
    const sig = JSON.stringify(cell.value === undefined ? null : cell.value);
    if (td.dataset.sig === sig) return;
    const before = [...td.querySelectorAll(FOCUSABLE)].indexOf(document.activeElement);
    const made = cell.render ? cell.render(cell.value) : (cell.value === null || cell.value === undefined ? "–" : String(cell.value));
    const parts = [].concat(made).filter(x => x !== null && x !== undefined);
    // One child: on a phone a cell is a flex row of its label and this value (prelabel.css, table.stack).
    td.replaceChildren(parts.length === 1 && !(parts[0] instanceof Node) ? parts[0] : el("div", {class: "v"}, ...parts));
    td.dataset.sig = sig;
    if (before >= 0) {  // the focused link was in this cell: focus its counterpart
      const again = td.querySelectorAll(FOCUSABLE)[before] || td.querySelector(FOCUSABLE);
      if (again) again.focus({preventScroll: true});
    }
  }

  /** Make tbody's rows match items, in order: rows found by key are updated in place, new ones
      built, gone ones removed. cellsOf(item) -> [{label, cls, value, render}] */
  function syncRows(tbody, items, keyOf, cellsOf) {
    const existing = new Map();
    for (const row of tbody.rows) if (row.dataset.key) existing.set(row.dataset.key, row);
    let previous = null;
    for (const item of items) {
      const key = keyOf(item);
      let row = existing.get(key);
      if (row) existing.delete(key);
      else row = el("tr", {"data-key": key});
      const cells = cellsOf(item);
      while (row.cells.length > cells.length) row.deleteCell(-1);
      cells.forEach((cell, i) => setCell(row.cells[i] || row.appendChild(el("td")), cell));
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (row !== wanted) {
        const focused = row.contains(document.activeElement) ? document.activeElement : null;
        tbody.insertBefore(row, wanted);
        if (focused) focused.focus({preventScroll: true});
      }
      previous = row;
    }
    for (const row of existing.values()) {
      if (row.contains(document.activeElement)) tbody.closest("table").focus({preventScroll: true});
      row.remove();
    }
  }

  // -- the sections ----------------------------------------------------------------------------
  function drawHealth(health) {
    const list = document.getElementById("health");
    const items = Object.entries(health || {}).map(([name, check]) => ({name, check}));
    const labels = {redis: "Redis", s3: "S3"};
    // One <li> per service, kept: text only changes.
    items.forEach(({name, check}) => {
      let li = list.querySelector(`li[data-key="${name}"]`);
      if (!li) {
        li = el("li", {"data-key": name}, el("span", {class: "badge"}), " ", el("strong", {}, labels[name] || name),
                " ", el("span", {class: "detail"}));
        list.append(li);
      }
      const badge = li.querySelector(".badge");
      badge.textContent = check.ok ? "up" : "down";
      badge.className = "badge " + (check.ok ? "ok" : "down");
      li.querySelector(".detail").textContent = check.ok ? `answers in ${num(check.latency_ms, 1)} ms` : (check.error || "");
    });
  }

  function doing(w) {
    const running = w.running || [];
    if (!running.length) return el("span", {class: "idle"}, w.state === undefined ? "–" : "idle");
    return el("ul", {class: "doing"}, ...running.map(r => el("li", {},
      r.job ? jobLink(r.job, `job ${r.job}`) : el("span", {class: "muted"}, "another user's job"),
      r.chunk !== null && r.chunk !== undefined ? ` · chunk ${r.chunk}` : "",
      el("span", {class: "muted"}, ` · ${plural(r.frames || 0, "frame")}` +
        (r.since ? `, for ${duration(Math.max(0, Date.now() / 1000 - r.since))}` : "")),
    )));
  }

  function models(w) {
    const names = (w.models || []).map(m => m.name || m.id);
    const hidden = w.models_hidden || 0;
    if (!names.length && !hidden) return el("span", {class: "muted"}, w.models ? "none yet" : "–");
    const parts = [...names];
    if (hidden) parts.push(`${hidden} of other users`);
    return parts.join(", ");
  }

  function workerCells(w) {
    const since = w.started_at ? `up ${duration(Math.max(0, Date.now() / 1000 - w.started_at))}` : "";
    return [
      {label: "Worker", cls: "who", value: [w.id, w.host, w.pid, since],
       render: () => [el("span", {class: "id"}, w.id),
                      el("div", {class: "hint"}, [w.host, w.pid ? `pid ${w.pid}` : null, since].filter(Boolean).join(" · "))]},
      {label: "Device", value: w.device},
      // While busy, the value carries the time too: "for 12s" moves on at every update.
      {label: "Doing", cls: "doing-cell", value: [w.state, w.running, (w.running || []).length ? Date.now() : 0],
       render: () => doing(w)},
      {label: "Frames/s", cls: "num fps", value: w.fps === undefined ? null : num(w.fps, 1)},
      {label: "Frames done", cls: "num frames", value: w.frames_done === undefined ? null : w.frames_done,
       render: v => v === null ? "–" : [String(v), w.frames_failed ? el("div", {class: "hint"}, `${w.frames_failed} failed`) : null]},
      {label: "Heartbeat", cls: "num beat", value: `${num(w.heartbeat_age_s)} s ago`},
      {label: "Models loaded", cls: "models", value: [w.models, w.models_hidden], render: () => models(w)},
      {label: "CPU", cls: "num cpu", value: w.cpu_percent === undefined || w.cpu_percent === null ? null : `${num(w.cpu_percent)}%`},
      {label: "Memory", cls: "num mem", value: bytes(w.rss_bytes)},
    ];
  }

  function queueCells(q) {
    const n = (label, cls, v) => ({label, cls: "num " + cls + (v ? " nonzero" : ""), value: v || 0});
    return [
      {label: "Device", cls: "queue", value: [q.device, q.queue],
       render: () => [el("strong", {}, q.device), el("div", {class: "hint"}, q.queue)]},
      {label: "Workers", cls: "num workers" + (q.workers ? "" : " none"), value: q.workers || 0},
      n("Waiting", "waiting", q.waiting), n("In flight", "unacked", q.unacked), n("Delayed", "delayed", q.delayed),
      n("Parked", "parked", q.parked), n("Dead", "dead", q.dead),
    ];
  }

  function errorCells(e) {
    const what = KINDS[e.kind] || e.kind;
    const frames = !(e.frames && e.frames.length) ? null
      : e.count > e.frames.length ? `${e.count} frames, e.g. ${e.frames.join(", ")}`
      : `frame${e.frames.length === 1 ? "" : "s"} ${e.frames.join(", ")}`;
    return [
      {label: "When", cls: "when", value: e.at,
       render: () => el("time", {datetime: new Date(e.at * 1000).toISOString(), title: new Date(e.at * 1000).toLocaleString()},
                        clock(e.at))},
      {label: "Job", cls: "job", value: [e.job, e.owner],
       render: () => [jobLink(e.job), e.owner ? el("div", {class: "hint"}, e.owner) : null]},
      {label: "What", cls: "what", value: [e.kind, e.chunk, e.frames, e.count, e.device],
       render: () => [what, el("div", {class: "hint"},
         [e.chunk !== null && e.chunk !== undefined ? `chunk ${e.chunk}` : null, frames, e.device].filter(Boolean).join(" · "))]},
      {label: "Reason", cls: "reason", value: e.reason},
    ];
  }

  function draw(state) {
    drawHealth(state.health);
    const workers = state.workers || [];
    document.getElementById("workers-count").textContent =
      `${plural(workers.length, "live worker")} (a heartbeat within ${num(state.live_within_s)} s)`;
    document.getElementById("no-workers").hidden = workers.length > 0;
    syncRows(document.querySelector("#workers tbody"), workers, w => w.id, workerCells);

    syncRows(document.querySelector("#queues tbody"), state.queues || [], q => q.queue, queueCells);
    const unserved = state.unserved || [];
    document.getElementById("unserved-box").hidden = unserved.length === 0;
    const list = document.getElementById("unserved");
    const seen = new Set();
    unserved.forEach(u => {
      seen.add(u.device);
      let li = [...list.children].find(x => x.dataset.key === u.device);
      if (!li) {
        li = el("li", {"data-key": u.device}, el("strong", {}, u.device), ": ", el("span", {class: "why"}),
                el("span", {class: "depth"}));
        list.append(li);
      }
      li.querySelector(".why").textContent = u.why;
      li.querySelector(".depth").textContent = u.depth ? ` (${plural(u.depth, "chunk message")} waiting)` : "";
    });
    [...list.children].forEach(li => { if (!seen.has(li.dataset.key)) li.remove(); });

    const errors = state.errors || [];
    document.getElementById("errors-count").textContent = errors.length ? `newest first, ${errors.length} shown` : "";
    document.getElementById("no-errors").hidden = errors.length > 0;
    document.getElementById("errors").hidden = errors.length === 0;
    syncRows(document.querySelector("#errors tbody"), errors,
             e => `${e.at}|${e.kind}|${e.job}|${e.chunk}|${e.reason}`, errorCells);

    updated.textContent = `· updated ${new Date().toLocaleTimeString()}`;
  }

  // -- live ------------------------------------------------------------------------------------
  const PAUSED = "paused while the tab is hidden";
  let timer = null, inFlight = false;

  function say(text, error = false) {
    if (status.textContent !== text) status.textContent = text;  // announced only when it changes
    status.classList.toggle("error", error);
  }

  async function refresh() {
    timer = null;
    if (document.hidden || inFlight) return;
    inFlight = true;
    try {
      draw(await api("/api/cluster"));
      say(document.hidden ? PAUSED : `live, every ${POLL_MS / 1000} s`);  // hidden while it was asked
    } catch (e) {
      say(e.status === 503 ? `the server cannot reach Redis or S3 (${e.message}); retrying`
                           : "cannot reach the server; retrying", true);
    } finally {
      inFlight = false;
    }
    schedule();
  }

  function schedule() {
    if (timer === null && !document.hidden) timer = setTimeout(refresh, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {  // no requests while nobody looks
      if (timer !== null) { clearTimeout(timer); timer = null; }
      say(PAUSED);
    } else if (timer === null && !inFlight) {
      refresh();  // catch up at once, then every POLL_MS
    }
  });

  draw(JSON.parse(document.getElementById("cluster-state").textContent));
  say(document.hidden ? PAUSED : `live, every ${POLL_MS / 1000} s`);
  schedule();
  root.dataset.ready = "1";
})();
