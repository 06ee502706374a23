/* The jobs page: the rows of live jobs follow their job, one small request per live job, and the
   polling stops once every job on the page has finished (a finished page costs no requests). */
"use strict";
(() => {
  const {api, setProgress, setBadge, duration, poll, isLive, say: sayIn} = Prelabel;
  const tbody = document.querySelector("#jobs tbody");
  const status = document.getElementById("live-status");

  function fill(row, j) {
    setBadge(row.querySelector(".state"), j);
    setProgress(row.querySelector(".progress"), j);
    row.querySelector(".counts").textContent = `${j.frames_done} / ${j.frames_failed} / ${j.frames_total}`;
    row.querySelector(".fps").textContent = j.fps ? j.fps.toFixed(1) : "–";
    row.querySelector(".eta").textContent = j.eta_s === null ? "–" : duration(j.eta_s);
    const waiting = row.querySelector(".waiting");
    waiting.textContent = j.warning || "";  // no worker for the device, chunks retrying, or parked
    waiting.title = j.warning || "";
    row.dataset.live = isLive(j) ? "1" : "0";
  }

  const liveRows = () => [...tbody.querySelectorAll('tr[data-job][data-live="1"]')];

  function say() {
    const n = liveRows().length;
    status.classList.remove("error");
    status.dataset.polling = n ? "1" : "0";
    sayIn(status, n ? `· following ${n} live job${n === 1 ? "" : "s"}` : "· every job on this page has finished");
  }

  async function refresh() {
    const rows = liveRows();
    const answers = await Promise.allSettled(rows.map(r => api("/api/jobs/" + encodeURIComponent(r.dataset.job))));
    let unreachable = false;
    answers.forEach((a, i) => {
      if (a.status === "fulfilled") fill(rows[i], a.value);
      else if (a.reason && a.reason.status === 404) {  // deleted meanwhile: nothing more to follow
        rows[i].dataset.live = "0";
        rows[i].querySelector(".state").textContent = "deleted";
      } else unreachable = true;
    });
    if (unreachable) {
      sayIn(status, "· cannot reach the server, retrying…");
      status.classList.add("error");
      return true;
    }
    say();
    return liveRows().length > 0;
  }

  // The threshold box shows the chosen model's default, which an empty box uses.
  const model = document.getElementById("f-model"), threshold = document.getElementById("f-threshold");
  function showDefault() {
    const chosen = model.selectedOptions[0];
    threshold.placeholder = chosen && chosen.dataset.threshold ? `model default: ${chosen.dataset.threshold}`
      : "the model's default";
  }
  if (model && threshold) { model.addEventListener("change", showDefault); showDefault(); }

  say();
  if (liveRows().length) poll(refresh, 1500);
})();
