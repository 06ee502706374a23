/* The quality report on a job's page (templates/_evaluation.html): the last report, and a form that
   sends a ground truth (COCO JSON or CVAT XML) to POST /api/jobs/<id>/evaluation. Every figure reaches
   the page as text (Prelabel.el), never as HTML. */
"use strict";
(() => {
  const section = document.getElementById("evaluation");
  if (!section) return;
  const {api, el} = Prelabel;
  const job = section.dataset.job;
  const path = `/api/jobs/${encodeURIComponent(job)}/evaluation`;
  const form = document.getElementById("evaluation-form");
  const input = document.getElementById("ground-truth");
  const button = document.getElementById("evaluate");
  const status = document.getElementById("evaluation-status");
  const errorBox = document.getElementById("evaluation-error");
  const target = document.getElementById("evaluation-report");

  const figure = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));

  function scrollTable(label, head, rows) {
    const thead = el("thead", {}, el("tr", {}, ...head.map(([text, num]) => el("th", {class: num ? "num" : null, scope: "col"}, text))));
    const tbody = el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map((cell, i) => el("td", {class: head[i][1] ? "num" : null}, cell)))));
    return el("div", {class: "table-scroll", tabindex: "0", role: "region", "aria-label": label},
      el("table", {class: "evaluation-table"}, thead, tbody));
  }

  function labelsTable(kind, figures) {
    const head = [["Label", false], ["AP", true], ["AP50", true], ["Precision", true], ["Recall", true], ["TP", true], ["FP", true], ["FN", true]];
    const rows = figures.labels.map((r) => [r.label, figure(r.ap), figure(r.ap50), figure(r.precision), figure(r.recall), r.tp, r.fp, r.fn]);
    rows.push(["all (mAP)", figure(figures.map), figure(figures.ap50), "", "", "", "", ""]);
    return scrollTable(`${kind} figures per label`, head, rows);
  }

  function render(report) {
    const truth = report.ground_truth;
    const when = new Date(report.created_at * 1000).toLocaleString();
    const parts = [
      el("p", {id: "evaluation-summary"},
        `${truth.matched} of ${truth.images} ground-truth frames matched (${truth.format.toUpperCase()}, ${truth.shapes} shapes), `,
        `made ${when}. Precision and recall at IoU ${report.iou_threshold} count the shapes scoring at least ${report.threshold}.`),
    ];
    if (truth.unmatched_names && truth.unmatched_names.length) {
      const more = truth.unmatched - truth.unmatched_names.length;
      parts.push(el("p", {class: "muted"}, `Not in the job: ${truth.unmatched_names.join(", ")}${more > 0 ? ` and ${more} more` : ""}.`));
    }
    for (const [side, what] of [["only_in_ground_truth", "ground truth"], ["only_in_model", "model"]]) {
      const extra = report.labels[side] || [];
      if (extra.length) {
        parts.push(el("p", {class: "muted"}, `Labels only in the ${what} (not counted): `
          + extra.map((e) => `${e.label} (${e.shapes} shapes)`).join(", ") + "."));
      }
    }
    for (const [kind, title] of [["box", "Boxes"], ["mask", "Masks"]]) {
      parts.push(el("h3", {}, `${title}: mAP ${figure(report[kind].map)}, AP50 ${figure(report[kind].ap50)}`), labelsTable(title, report[kind]));
    }
    parts.push(el("h3", {}, "Frames where the model disagrees most"));
    if (report.worst_frames.length) {
      parts.push(scrollTable("Frames where the model disagrees most",
        [["Frame", true], ["Name", false], ["F1", true], ["TP", true], ["FP", true], ["FN", true]],
        report.worst_frames.map((w) => [w.frame, w.name, w.f1.toFixed(2), w.tp, w.fp, w.fn])));
    } else {
      parts.push(el("p", {class: "muted"}, "None: every matched frame agrees at IoU 0.5."));
    }
    target.replaceChildren(...parts);
  }

  /** The last report came with the page (null: none yet, and the page already says so). */
  function load() {
    const data = document.getElementById("evaluation-data");
    const report = data ? JSON.parse(data.textContent) : null;
    if (report) render(report);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const file = input.files[0];
    if (!file) {
      errorBox.textContent = "Choose a ground-truth file first (COCO JSON or CVAT XML).";
      errorBox.hidden = false;
      errorBox.focus();
      return;
    }
    const data = new FormData();
    data.append("ground_truth", file, file.name);
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    status.textContent = "Evaluating…";
    try {
      render(await api(path, {method: "POST", body: data}));
      status.textContent = "Report updated.";
    } catch (e) {
      status.textContent = "";
      errorBox.replaceChildren(el("strong", {}, "Not evaluated: "), e.message);
      errorBox.hidden = false;
      errorBox.focus();
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });

  load();
})();
