/* The models page: register a model from files (POST /api/models), add one from the zoo (POST
   /api/zoo, built on the server: a busy state meanwhile), delete one (after a confirm), and for admins
   mark a script trusted or not (PATCH /api/models/<id>). An error the API ties to a script line
   (details.line) is shown at that line of the script's listing. */
"use strict";
(() => {
  const {el} = Prelabel;
  const table = document.getElementById("models");
  const tbody = table.tBodies[0];
  const isAdmin = table.dataset.admin === "true";
  const me = table.dataset.user;
  const defaultThreshold = table.dataset.defaultThreshold;
  const listError = document.getElementById("list-error");
  const listStatus = document.getElementById("list-status");

  /** A call to the API that keeps the whole error body (details.line among it). */
  async function call(path, options = {}) {
    const method = (options.method || "GET").toUpperCase();
    const headers = {"Accept": "application/json", ...(options.headers || {})};
    if (method !== "GET") headers["X-CSRF-Token"] = Prelabel.csrfToken();
    let r;
    try {
      r = await fetch(path, {credentials: "same-origin", ...options, headers});
    } catch (e) {
      throw Object.assign(new Error("the server could not be reached"), {details: {}});
    }
    if (r.status === 401) {
      location.assign("/login?next=" + encodeURIComponent(location.pathname));
      throw Object.assign(new Error("not logged in"), {details: {}});
    }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const message = (body && body.message) || (r.status === 413 ? "the files are larger than the server accepts"
                                                                   : `the server answered ${r.status}`);
      throw Object.assign(new Error(message), {status: r.status, details: (body && body.details) || {}});
    }
    return body;
  }

  function show(box, message) {
    box.textContent = message || "";
    box.hidden = !message;
  }

  function setCount() {
    const n = tbody.querySelectorAll("tr[data-model]").length;
    document.getElementById("models-count").textContent = `${n} model${n === 1 ? "" : "s"}`;
  }

  // -- the table ----------------------------------------------------------------------------------
  function trustButton(model) {
    const label = model.trusted ? `Mark the script of ${model.name} untrusted` : `Mark the script of ${model.name} trusted`;
    return el("button", {type: "button", class: "trust-toggle", "data-trusted": model.trusted ? "true" : "false",
                         "aria-label": label}, model.trusted ? "Mark untrusted" : "Mark trusted");
  }

  /** A row like the page's own (models.html, model_row) for a model just added. */
  function modelRow(m) {
    const labels = Object.values(m.labels || {}).join(", ");
    const created = m.created_at ? new Date(m.created_at * 1000).toISOString() : "";
    const trust = el("span", {class: "trust-cell"}, el("span", {class: "trust-state"}, m.trusted ? "yes" : "no"));
    if (isAdmin) trust.append(" ", trustButton(m));
    const actions = el("td", {"data-label": "Actions"});
    if (isAdmin || m.owner === me) {
      actions.append(el("button", {type: "button", class: "danger delete-model", "aria-label": `Delete model ${m.name}`}, "Delete"));
    }
    return el("tr", {"data-model": m.id, "data-name": m.name},
      el("td", {"data-label": "Name", class: "name"}, m.name),
      el("td", {"data-label": "Format", class: "format"}, (m.source_format || "xml").toUpperCase()),
      el("td", {"data-label": "Labels", class: "labels"}, labels),
      el("td", {"data-label": "Threshold", class: "num threshold"},
         m.threshold === null || m.threshold === undefined ? defaultThreshold : String(m.threshold)),
      el("td", {"data-label": "Trusted", class: "trusted"}, trust),
      el("td", {"data-label": "Owner", class: "owner"}, m.owner),
      el("td", {"data-label": "Created"}, el("time", {datetime: created}, created)),
      actions);
  }

  function addRow(model) {
    const empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    const row = modelRow(model);
    tbody.prepend(row);
    Prelabel.localizeTimes(row);
    setCount();
  }

  function lineText(error) {
    const line = error.details && error.details.line;
    return line && !error.message.includes(`line ${line}`) ? ` (script line ${line})` : "";
  }

  tbody.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const row = button.closest("tr");
    const {model: id, name} = row.dataset;
    if (button.classList.contains("delete-model")) {
      if (!window.confirm(`Delete model ${name} and its files? This cannot be undone.`)) return;
      button.disabled = true;
      show(listError, "");
      try {
        await call(`/api/models/${encodeURIComponent(id)}`, {method: "DELETE"});
        row.remove();
        listStatus.textContent = `Deleted model ${name}.`;
        setCount();
      } catch (e) {
        show(listError, `Model ${name} was not deleted: ${e.message}`);
        button.disabled = false;
      }
    } else if (button.classList.contains("trust-toggle")) {
      const trusted = button.dataset.trusted !== "true";
      button.disabled = true;
      button.classList.add("busy");
      row.setAttribute("aria-busy", "true");
      show(listError, "");
      listStatus.textContent = `Checking the script of ${name} ${trusted ? "as trusted" : "in the sandbox"}…`;
      try {
        const model = await call(`/api/models/${encodeURIComponent(id)}`, {
          method: "PATCH", headers: {"Content-Type": "application/json"}, body: JSON.stringify({trusted})});
        row.querySelector(".trust-state").textContent = model.trusted ? "yes" : "no";
        button.replaceWith(trustButton(model));
        row.querySelector(".trust-toggle").focus();
        listStatus.textContent = `The script of ${name} is now ${model.trusted ? "trusted: it runs as full Python" : "untrusted: it runs in the sandbox"}.`;
      } catch (e) {
        listStatus.textContent = "";
        show(listError, `The script of ${name} was left ${trusted ? "untrusted" : "trusted"}: ${e.message}${lineText(e)}`);
        button.disabled = false;
        button.classList.remove("busy");
      } finally {
        row.removeAttribute("aria-busy");
      }
    }
  });

  // -- the zoo --------------------------------------------------------------------------------------
  for (const form of document.querySelectorAll("form.zoo-add")) {
    const item = form.closest("li");
    const entry = item.dataset.zoo;
    const outcome = item.querySelector(".outcome");
    const button = form.querySelector("button[type=submit]");
    const label = button.textContent;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const as = form.elements.as.value.trim();
      button.disabled = true;
      button.classList.add("busy");
      button.textContent = "Building…";
      item.setAttribute("aria-busy", "true");
      outcome.classList.remove("error");
      outcome.textContent = `Building ${entry} and checking it on a test image: this can take a minute.`;
      try {
        const model = await call("/api/zoo", {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify(as ? {name: entry, as} : {name: entry})});
        addRow(model);
        outcome.textContent = `Added model ${model.name}.`;
        form.elements.as.value = "";
      } catch (e) {
        outcome.classList.add("error");
        outcome.textContent = `${entry} was not added: ${e.message}`;
      } finally {
        button.disabled = false;
        button.classList.remove("busy");
        button.textContent = label;
        item.removeAttribute("aria-busy");
      }
    });
  }

  // -- registering ----------------------------------------------------------------------------------
  const form = document.getElementById("register-form");
  const status = document.getElementById("register-status");
  const errorBox = document.getElementById("register-error");
  const listing = document.getElementById("script-listing");
  const labelsError = document.getElementById("labels-error");
  const submit = document.getElementById("register-submit");

  /** The label map's JSON checked here first: its parse error (with where) before anything is sent. */
  async function labelsProblem() {
    const file = form.elements.labels.files[0];
    if (!file) return "";
    let text;
    try { text = await file.text(); } catch (e) { return `${file.name} cannot be read: ${e.message}`; }
    if (/\.ya?ml$/i.test(file.name)) return "";  // a CVAT function.yaml: the server reads its spec
    try {
      const value = JSON.parse(text);
      if (value === null || typeof value !== "object") {
        return `${file.name} must hold {"label_map": {"1": "person"}} or [{"id": 1, "name": "person"}]`;
      }
    } catch (e) {
      return `${file.name} is not valid JSON: ${e.message}`;
    }
    return "";
  }

  form.elements.labels.addEventListener("change", async () => show(labelsError, await labelsProblem()));

  function preprocessing() {
    const prep = {};
    const size = document.getElementById("p-size").value.trim();
    if (size) {
      const m = /^(\d+)\s*[xX×]\s*(\d+)$/.exec(size);
      if (!m) throw new Error(`input size takes WIDTHxHEIGHT, like 256x256, not ${size}`);
      prep.width = Number(m[1]);
      prep.height = Number(m[2]);
    }
    for (const key of ["layout", "color", "resize"]) {
      const value = document.getElementById(`p-${key}`).value;
      if (value) prep[key] = value;
    }
    for (const key of ["mean", "scale"]) {
      const value = document.getElementById(`p-${key}`).value.trim();
      if (!value) continue;
      const numbers = value.split(",").map((v) => Number(v.trim()));
      if (numbers.some((n) => !isFinite(n))) throw new Error(`${key} takes numbers separated by commas, not ${value}`);
      prep[key] = numbers;
    }
    return prep;
  }

  /** The script's source with line ``line`` marked and its message under it; the line gets focus. */
  async function showAtLine(line, message) {
    listing.replaceChildren();
    listing.hidden = true;
    const file = form.elements.script.files[0];
    if (!file || !line) return null;
    const lines = (await file.text()).split(/\r\n|\r|\n/);
    if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();  // the newline that ends the file
    if (line > lines.length) return null;
    const ol = el("ol", {"aria-label": `${file.name}, line ${line} marked`});
    lines.forEach((text, i) => {
      const n = i + 1;
      const li = el("li", {id: `script-line-${n}`}, text || " ");
      if (n === line) {
        li.classList.add("bad");
        li.setAttribute("tabindex", "-1");
        li.append(el("span", {class: "line-error"}, `line ${n}: ${message}`));
      }
      ol.append(li);
    });
    listing.append(ol);
    listing.hidden = false;
    return document.getElementById(`script-line-${line}`);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    show(errorBox, "");
    listing.hidden = true;
    const missing = [["name", "a name"], ["model", "the network file"], ["labels", "the label map"], ["script", "the script"]]
      .filter(([field]) => form.elements[field].type === "file" ? !form.elements[field].files.length
                                                                : !form.elements[field].value.trim())
      .map(([, what]) => what);
    if (missing.length) {
      show(errorBox, `Give ${missing.join(", ")}.`);
      errorBox.focus();
      return;
    }
    const problem = await labelsProblem();
    show(labelsError, problem);
    if (problem) {
      show(errorBox, problem);
      errorBox.focus();
      return;
    }
    const data = new FormData();
    data.append("name", form.elements.name.value.trim());
    for (const field of ["model", "weights", "labels", "script"]) {
      const file = form.elements[field].files[0];
      if (file) data.append(field, file, file.name);
    }
    const threshold = form.elements.threshold.value.trim();
    if (threshold) data.append("threshold", threshold);
    try {
      data.append("preprocessing", JSON.stringify(preprocessing()));
    } catch (e) {
      show(errorBox, e.message);
      errorBox.focus();
      return;
    }
    if (form.elements.trusted && form.elements.trusted.checked) data.append("trusted", "true");

    submit.disabled = true;
    submit.classList.add("busy");
    form.setAttribute("aria-busy", "true");
    status.textContent = "Checking the model: reading it, running it and its script on a test image…";
    try {
      const model = await call("/api/models", {method: "POST", body: data});
      addRow(model);
      status.textContent = `Registered model ${model.name}.`;
      form.reset();
    } catch (e) {
      status.textContent = "";
      const line = Number(e.details && e.details.line) || 0;
      errorBox.replaceChildren(el("strong", {}, "Not registered: "), e.message);
      errorBox.hidden = false;
      const marked = await showAtLine(line, e.message);
      if (marked) {
        errorBox.append(" ", el("a", {href: `#script-line-${line}`, class: "to-line"}, `Go to line ${line} of the script`));
        marked.scrollIntoView({block: "center"});
      }
      errorBox.focus();
    } finally {
      submit.disabled = false;
      submit.classList.remove("busy");
      form.removeAttribute("aria-busy");
    }
  });
})();
