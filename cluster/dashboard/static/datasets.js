/* The datasets pages: delete a dataset (after a confirm; the API's refusal shown as it is), and on a
   dataset's page upload files, a folder, zips and videos to POST /api/datasets/<id>/files with a
   progress bar per upload. A selection is sent in batches that each stay under the upload limit,
   and each batch's report (added, duplicate, rejected with the reason) is folded into the upload's. */
"use strict";
(() => {
  const {el, api} = Prelabel;

  function megabytes(bytes) {
    if (bytes < 1024 * 1024) return `${Math.max(1, Math.round(bytes / 1024))} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function showError(box, message) {
    box.textContent = message;
    box.hidden = !message;
  }

  /** Delete a dataset after asking; the API's answer (a 409 while a job uses it) shown in errorBox. */
  async function deleteDataset(id, name, errorBox) {
    if (!window.confirm(`Delete dataset ${name} and all its frames? This cannot be undone.`)) return false;
    showError(errorBox, "");
    try {
      await api(`/api/datasets/${encodeURIComponent(id)}`, {method: "DELETE"});
      return true;
    } catch (e) {
      showError(errorBox, `Dataset ${name} was not deleted: ${e.message}`);
      return false;
    }
  }

  // -- the list ---------------------------------------------------------------------------------
  const table = document.getElementById("datasets");
  if (table) {
    const errorBox = document.getElementById("list-error");
    for (const button of table.querySelectorAll(".delete-dataset")) {
      button.addEventListener("click", async () => {
        const row = button.closest("tr");
        button.disabled = true;
        if (await deleteDataset(row.dataset.dataset, row.dataset.name, errorBox)) row.remove();
        else button.disabled = false;
      });
    }
  }

  // -- one dataset ------------------------------------------------------------------------------
  const deleteButton = document.getElementById("delete-dataset");
  if (deleteButton) {
    deleteButton.addEventListener("click", async () => {
      deleteButton.disabled = true;
      if (await deleteDataset(deleteButton.dataset.dataset, deleteButton.dataset.name,
                              document.getElementById("delete-error"))) {
        location.assign("/datasets");
      } else {
        deleteButton.disabled = false;
      }
    });
  }

  const section = document.getElementById("upload");
  if (!section) return;
  const datasetId = section.dataset.dataset;
  const maxBytes = Number(section.dataset.maxBytes);
  const form = document.getElementById("upload-form");
  const pickFiles = document.getElementById("pick-files");
  const pickFolder = document.getElementById("pick-folder");
  const start = document.getElementById("upload-start");
  const picked = document.getElementById("picked");
  const list = document.getElementById("uploads");
  const PART_OVERHEAD = 512;  // multipart headers per file, generously; plus its name

  /** The chosen files as [{file, name}]: a folder's files keep their path inside it as their name. */
  function chosen() {
    const out = [];
    for (const file of pickFiles.files) out.push({file, name: file.name});
    for (const file of pickFolder.files) out.push({file, name: file.webkitRelativePath || file.name});
    return out;
  }

  function updatePicked() {
    const files = chosen();
    const bytes = files.reduce((sum, f) => sum + f.file.size, 0);
    picked.textContent = files.length ? `${files.length} file${files.length === 1 ? "" : "s"} chosen, ${megabytes(bytes)}` : "";
    start.disabled = !files.length;
  }
  pickFiles.addEventListener("change", updatePicked);
  pickFolder.addEventListener("change", updatePicked);

  /** Split files into batches of at most batchFiles files and batchBytes bytes of request (a file
      larger than that goes alone, and the API refuses it if it is past the limit itself). */
  function batches(files) {
    const batchBytes = Number(section.dataset.batchBytes), batchFiles = Number(section.dataset.batchFiles);
    const out = [];
    let current = [], size = 1024;
    for (const f of files) {
      const cost = f.file.size + PART_OVERHEAD + 3 * f.name.length;
      if (current.length && (current.length >= batchFiles || size + cost > batchBytes)) {
        out.push(current);
        current = [];
        size = 1024;
      }
      current.push(f);
      size += cost;
    }
    if (current.length) out.push(current);
    return out;
  }

  /** One request: resolves with the report, rejects with an Error carrying the API's message. */
  function send(batch, onProgress) {
    return new Promise((resolve, reject) => {
      const data = new FormData();
      for (const f of batch) data.append("file", f.file, f.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/api/datasets/${encodeURIComponent(datasetId)}/files`);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRF-Token", Prelabel.csrfToken());
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
      xhr.upload.addEventListener("load", () => onProgress(1));
      xhr.addEventListener("load", () => {
        const body = xhr.response;
        if (xhr.status === 401) {
          location.assign("/login?next=" + encodeURIComponent(location.pathname));
          reject(new Error("not logged in"));
        } else if (xhr.status >= 200 && xhr.status < 300 && body) {
          resolve(body);
        } else if (xhr.status === 413) {
          reject(new Error(`the request is larger than the server's limit of ${megabytes(maxBytes)}`));
        } else {
          reject(new Error((body && body.message) || `the server answered ${xhr.status} ${xhr.statusText}`));
        }
      });
      xhr.addEventListener("error", () => reject(new Error("the server could not be reached")));
      xhr.addEventListener("abort", () => reject(new Error("the upload was stopped")));
      xhr.send(data);
    });
  }

  /** The list item that shows one upload: a title, a bar, a status line, counts and rejections. */
  function uploadItem(files, bytes) {
    const n = list.children.length + 1;
    const title = files.length <= 3 ? files.map((f) => f.name).join(", ") : `${files.length} files (${files[0].name}, …)`;
    const id = `upload-${n}`;
    const bar = el("div", {class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                           "aria-valuenow": "0", "aria-labelledby": `${id}-title`},
                   el("div", {class: "done", style: "width: 0%"}));
    const pct = el("span", {class: "pct"}, "0%");
    const status = el("p", {class: "status", role: "status"}, "Starting…");
    const rejected = el("ul", {class: "rejected", "aria-label": `Files refused in upload ${n}`, hidden: true});
    const errors = el("ul", {class: "errors", hidden: true});
    const item = el("li", {class: "upload", id},
      el("div", {class: "upload-title"}, el("strong", {id: `${id}-title`}, `Upload ${n}: ${title}`),
         el("span", {class: "muted"}, ` ${megabytes(bytes)}`)),
      el("div", {class: "progress"}, bar, pct), status, errors, rejected);
    list.prepend(item);
    return {
      item, status, rejected, errors,
      progress(fraction) {
        const value = Math.max(0, Math.min(100, fraction * 100));
        bar.firstChild.style.width = value.toFixed(1) + "%";
        bar.setAttribute("aria-valuenow", value.toFixed(0));
        pct.textContent = value.toFixed(0) + "%";
      },
    };
  }

  async function upload(files) {
    const total = files.reduce((sum, f) => sum + f.file.size, 0);
    const parts = batches(files);
    const view = uploadItem(files, total);
    const counts = {added: 0, duplicate: 0, rejected: 0};
    let sentBytes = 0, failedBatches = 0;
    for (const [i, batch] of parts.entries()) {
      const size = batch.reduce((sum, f) => sum + f.file.size, 0);
      const where = parts.length > 1 ? ` (batch ${i + 1} of ${parts.length})` : "";
      view.status.textContent = `Sending${where}…`;
      try {
        const report = await send(batch, (fraction) => {
          // bytes on the wire; held under 100% until the last report is in
          view.progress(Math.min(0.99, total ? (sentBytes + fraction * size) / total : fraction));
          if (fraction >= 1) view.status.textContent = `Reading the frames on the server${where}…`;
        });
        counts.added += report.added.length;
        counts.duplicate += report.duplicate.length;
        counts.rejected += report.rejected.length;
        for (const r of report.rejected) {
          view.rejected.append(el("li", {}, el("span", {class: "name"}, r.name), ": ", el("span", {class: "reason"}, r.reason)));
        }
        view.rejected.hidden = !view.rejected.children.length;
        for (const node of document.querySelectorAll("#frame-count, #frame-count-2")) node.textContent = report.frame_count;
      } catch (e) {
        failedBatches += 1;
        const names = batch.length === 1 ? batch[0].name : `${batch.length} files from ${batch[0].name}`;
        view.errors.append(el("li", {class: "error"}, `${names} not uploaded: ${e.message}`));
        view.errors.hidden = false;
      }
      sentBytes += size;
      view.progress(Math.min(0.99, total ? sentBytes / total : 1));
    }
    view.progress(1);
    const summary = `${counts.added} frame${counts.added === 1 ? "" : "s"} added, ${counts.duplicate} duplicate, ` +
                    `${counts.rejected} rejected`;
    view.status.textContent = failedBatches
      ? `Finished with errors: ${summary}; ${failedBatches} of ${parts.length} request${parts.length === 1 ? "" : "s"} failed.`
      : `Done: ${summary}.`;
    view.item.classList.add(failedBatches ? "has-errors" : "is-done");
    if (counts.rejected) view.item.classList.add("has-rejected");
    if (counts.added) await refreshFrames().catch((e) => console.warn(e));
  }

  /** The first frames' thumbnails again, after an upload added some. */
  async function refreshFrames() {
    const box = document.getElementById("frames");
    const frames = await api(`/api/datasets/${encodeURIComponent(datasetId)}/frames?limit=${box.dataset.limit}`);
    const thumbs = document.getElementById("thumbs");
    thumbs.replaceChildren(...frames.map((f) => el("li", {},
      el("img", {src: `/api/datasets/${encodeURIComponent(datasetId)}/frames/${f.frame}/image`, loading: "lazy",
                 alt: `frame ${f.frame}: ${f.name}`, width: f.width, height: f.height}),
      el("span", {class: "name", title: f.name}, f.name))));
    thumbs.hidden = !frames.length;
    document.getElementById("no-frames").hidden = !!frames.length;
    document.getElementById("frames-shown").textContent = frames.length;
  }

  let busy = Promise.resolve();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const files = chosen();
    if (!files.length) return;
    pickFiles.value = "";
    pickFolder.value = "";
    updatePicked();
    busy = busy.then(() => upload(files)).catch((e) => console.warn(e));  // one upload at a time, in order
  });
})();
