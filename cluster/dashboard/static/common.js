/* Helpers shared by the dashboard's pages. Data from the API only ever reaches the page through
   textContent and attribute setters, never as HTML. */
"use strict";
const Prelabel = (() => {
  const FINISHED = ["completed", "failed", "cancelled"];

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  /** The session's CSRF token (a meta tag of every logged-in page); sent with every change. */
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  async function api(path, options = {}) {
    const method = (options.method || "GET").toUpperCase();
    const headers = {"Accept": "application/json", ...(options.headers || {})};
    if (!["GET", "HEAD", "OPTIONS"].includes(method)) headers["X-CSRF-Token"] = csrfToken();
    const r = await fetch(path, {credentials: "same-origin", ...options, headers});
    if (r.status === 401) {  // the session ended: log in again and come back here
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search + location.hash));
      throw new ApiError(401, "not logged in");
    }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new ApiError(r.status, (body && body.message) || `${r.status} ${r.statusText}`);
    return body;
  }

  /** An element: attrs are set as attributes (or properties for on*), children are nodes or text. */
  function el(tag, attrs = {}, ...children) {
    const svg = ["svg", "g", "rect", "polygon", "polyline", "circle", "image", "title", "line"].includes(tag);
    const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    let s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    return h ? `${h}h ${m}m` : `${m}m ${s}s`;
  }

  function ago(epochSeconds) {
    if (!epochSeconds) return "";
    const d = Date.now() / 1000 - epochSeconds;
    if (d < 45) return "just now";
    if (d < 3600) return `${Math.round(d / 60)} min ago`;
    if (d < 86400) return `${Math.round(d / 3600)} h ago`;
    return new Date(epochSeconds * 1000).toLocaleDateString();
  }

  /** <time datetime="ISO"> elements: local time as a tooltip, and relative ("5 min ago") or local text. */
  function localizeTimes(root = document) {
    for (const t of root.querySelectorAll("time[datetime]")) {
      const when = Date.parse(t.getAttribute("datetime"));
      if (isNaN(when)) continue;
      t.title = new Date(when).toLocaleString();
      t.textContent = t.classList.contains("absolute")
        ? new Date(when).toLocaleString(undefined, {dateStyle: "medium", timeStyle: "short"}) : ago(when / 1000);
    }
  }

  function pct(job) { return (job.progress * 100).toFixed(1) + "%"; }

  /** What a screen reader says of a progress bar: the frames, not only a percentage (see _macros.html). */
  function progressText(job) {
    const failed = job.frames_failed ? `, ${job.frames_failed} failed` : "";
    return `${pct(job)}: ${job.frames_done} of ${job.frames_total || 0} frames done${failed}`;
  }

  /** Set a live region's text only when it changes: the same words again would be read out again. */
  function say(region, text) {
    if (region.textContent !== text) region.textContent = text;
  }

  /** Fill a progress widget (see _macros.html) from a job status. */
  function setProgress(widget, job) {
    const total = job.frames_total || 0;
    const done = total ? job.frames_done / total * 100 : (job.progress >= 1 ? 100 : 0);
    const bad = total ? job.frames_failed / total * 100 : 0;
    widget.querySelector(".done").style.width = done.toFixed(2) + "%";
    widget.querySelector(".bad").style.width = bad.toFixed(2) + "%";
    const bar = widget.querySelector(".bar");
    bar.setAttribute("aria-valuenow", (job.progress * 100).toFixed(1));
    bar.setAttribute("aria-valuetext", progressText(job));
    widget.querySelector(".pct").textContent = pct(job);
    widget.classList.toggle("is-completed", job.state === "completed");
  }

  /** A job's state in words: a completed job with failed frames says how many (see _macros.html). */
  function stateText(job) {
    return job.state === "completed" && job.frames_failed ? `completed, ${job.frames_failed} failed` : job.state;
  }

  /** Whether a page follows the job: unfinished, or cancelled with chunks still running to their end. */
  function isLive(job) {
    return !FINISHED.includes(job.state) || !!(job.chunks && job.chunks.running);
  }

  /** A state badge from a job status (or a bare state name). */
  function setBadge(badge, job) {
    if (typeof job === "string") job = {state: job, frames_failed: 0};
    badge.textContent = stateText(job);
    badge.className = badge.className.replace(/\bstate-\S+/g, "").trim() + " state-" + job.state;
    badge.classList.toggle("state-completed-failed", job.state === "completed" && job.frames_failed > 0);
  }

  /** Call fn every ms milliseconds (not while the tab is hidden) until it returns false. The returned
      object stops it (stop()), starts it again if it had ended (wake()), and tells if it runs (running()). */
  function poll(fn, ms) {
    let stopped = false, scheduled = false;
    async function tick() {
      scheduled = false;
      if (stopped) return;
      let again = true;
      if (!document.hidden) {
        try { again = (await fn()) !== false; } catch (e) { console.warn(e); }
      }
      if (again && !stopped && !scheduled) { scheduled = true; setTimeout(tick, ms); }
    }
    scheduled = true;
    setTimeout(tick, ms);
    return {
      stop() { stopped = true; },
      wake() { stopped = false; if (!scheduled) { scheduled = true; setTimeout(tick, ms); } },
      running() { return scheduled && !stopped; },
    };
  }

  document.addEventListener("DOMContentLoaded", () => localizeTimes());
  return {FINISHED, ApiError, api, csrfToken, el, duration, ago, localizeTimes, pct, progressText, say, setProgress,
          setBadge, stateText, isLive, poll};
})();
