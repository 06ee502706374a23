/* The jobs page: every row follows its job live, and jobs started elsewhere appear on their own. */
"use strict";
(() => {
  const {api, el, setProgress, setBadge, duration, poll, localizeTimes} = Prelabel;
  const tbody = document.querySelector("#jobs tbody");
  const status = document.getElementById("live-status");

  function newRow(j) {
    return el("tr", {"data-job": j.id},
      el("td", {}, el("a", {class: "job-link", href: "/jobs/" + encodeURIComponent(j.id), text: j.id}),
        el("div", {class: "hint"}, el("time", {class: "created", datetime: new Date(j.created_at * 1000).toISOString()}))),
      el("td", {class: "dataset", text: j.dataset_name}), el("td", {class: "model", text: j.model_name}),
      el("td", {class: "device", text: j.device}),
      el("td", {}, el("span", {class: "badge state"}), el("div", {class: "hint waiting"})),
      el("td", {}, el("div", {class: "progress"},
        el("div", {class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100},
          el("div", {class: "done"}), el("div", {class: "bad"})),
        el("span", {class: "pct"}))),
      el("td", {class: "num counts"}), el("td", {class: "num fps"}), el("td", {class: "num eta"}));
  }

  function fill(row, j) {
    setBadge(row.querySelector(".state"), j.state);
    setProgress(row.querySelector(".progress"), j);
    row.querySelector(".counts").textContent = `${j.frames_done} / ${j.frames_failed} / ${j.frames_total}`;
    row.querySelector(".fps").textContent = j.fps ? j.fps.toFixed(1) : "–";
    row.querySelector(".eta").textContent = j.eta_s === null ? "–" : duration(j.eta_s);
    const waiting = row.querySelector(".waiting");
    waiting.textContent = j.warning || "";  // no worker for the device, chunks retrying, or parked
    waiting.title = j.warning || "";
  }

  async function refresh() {
    let jobs;
    try {
      jobs = await api("/api/jobs");
    } catch (e) {
      status.textContent = "· cannot reach the server, retrying…";
      status.classList.add("error");
      return true;
    }
    status.classList.remove("error");
    status.textContent = "· live";
    const rows = new Map([...tbody.querySelectorAll("tr[data-job]")].map(r => [r.dataset.job, r]));
    // The API lists newest first; a job we have not seen goes above the older ones.
    let previous = null;
    for (const j of jobs) {
      let row = rows.get(j.id);
      if (!row) {
        row = newRow(j);
        if (previous) previous.after(row); else tbody.prepend(row);
        localizeTimes(row);
        tbody.querySelector("tr.empty")?.remove();
      }
      fill(row, j);
      previous = row;
    }
    return true;
  }

  poll(refresh, 1500);
  refresh();
})();
