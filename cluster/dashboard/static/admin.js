/* The administration page: accounts and the import allowlist, changed through the API.
   Every table is drawn from the API's answers (the first one embedded in the page), with
   Prelabel.el only: names and module names never reach the page as HTML. */
"use strict";
(() => {
  const {api, el} = Prelabel;
  const data = JSON.parse(document.getElementById("admin-data").textContent);
  const $ = (id) => document.getElementById(id);

  function when(epoch) {
    if (!epoch) return "–";
    const d = new Date(epoch * 1000);
    return el("time", {datetime: d.toISOString(), title: d.toLocaleString()},
              d.toLocaleDateString(undefined, {dateStyle: "medium"}));
  }

  /** Show an API failure (or clear it with null) in one of the page's error boxes. */
  function showError(box, error) {
    box.hidden = !error;
    box.textContent = error ? (error.message || String(error)) : "";
  }

  /** Run an action with its button disabled; its failure goes to ``box``. */
  async function act(button, box, status, fn) {
    if (button) button.disabled = true;
    showError(box, null);
    status.textContent = "";
    try {
      await fn();
    } catch (e) {
      if (e.status !== 401) showError(box, e);
    } finally {
      if (button && button.isConnected) button.disabled = false;
    }
  }

  // -- users ----------------------------------------------------------------------------------------
  const usersBody = document.querySelector("#users tbody");
  const usersError = $("users-error"), usersStatus = $("users-status");

  function userRow(u) {
    const you = u.name === data.me;
    const name = el("td", {"data-label": "Name"},
                    el("span", {}, el("span", {class: "user-name", text: u.name}),
                       you ? el("span", {class: "hint"}, " (you)") : null));
    const role = el("td", {"data-label": "Role"},
                    el("span", {class: "badge " + (u.admin ? "role-admin" : "role-user")}, u.admin ? "admin" : "user"));
    const access = el("td", {"data-label": "Access"},
                      el("span", {class: "badge " + (u.disabled ? "access-disabled" : "access-enabled")},
                         u.disabled ? "disabled" : "enabled"));
    const actions = el("div", {class: "actions"},
      el("button", {type: "button", class: "act-admin", "aria-label": `${u.admin ? "Revoke admin from" : "Make admin"} ${u.name}`,
                    onclick: (ev) => change(ev.currentTarget, u, {admin: !u.admin})},
         u.admin ? "Revoke admin" : "Make admin"),
      el("button", {type: "button", class: "act-disable" + (u.disabled ? "" : " danger"),
                    "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.name}`,
                    onclick: (ev) => change(ev.currentTarget, u, {disabled: !u.disabled})},
         u.disabled ? "Enable" : "Disable"),
      el("button", {type: "button", class: "act-token", "aria-label": `Reissue the API token of ${u.name}`,
                    onclick: (ev) => reissue(ev.currentTarget, u)}, "Reissue token"));
    return el("tr", {"data-user": u.name, class: u.disabled ? "is-disabled" : null},
              name, role, access,
              el("td", {"data-label": "Jobs", class: "num"}, u.jobs === undefined ? "–" : String(u.jobs)),
              el("td", {"data-label": "Created"}, when(u.created_at)),
              el("td", {"data-label": "Actions"}, actions));
  }

  function drawUsers(users) {
    data.users = users;
    usersBody.replaceChildren(...(users.length ? users.map(userRow)
      : [el("tr", {class: "empty"}, el("td", {colspan: 6}, "No users."))]));
    Prelabel.localizeTimes(usersBody);
    const admins = users.filter((u) => u.admin && !u.disabled).length;
    $("users-count").textContent = `${users.length} account${users.length === 1 ? "" : "s"}, ` +
                                   `${admins} enabled admin${admins === 1 ? "" : "s"}`;
  }

  async function reloadUsers() { drawUsers(await api("/api/users")); }

  async function change(button, user, body) {
    await act(button, usersError, usersStatus, async () => {
      const updated = await api(`/api/users/${encodeURIComponent(user.name)}`, {
        method: "PATCH", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
      if (updated.name === data.me && updated.admin === false) {  // this page is no longer theirs
        location.assign("/");
        return;
      }
      const what = "admin" in body ? (updated.admin ? "is now an admin" : "is no longer an admin")
        : (updated.disabled ? "is disabled: their token and sessions are refused" : "is enabled again");
      await reloadUsers();
      usersStatus.textContent = `${updated.name} ${what}.`;
      focusRowButton(updated.name, "admin" in body ? ".act-admin" : ".act-disable");
    });
  }

  /** After a table is redrawn, keep keyboard focus on the same action of the same row. */
  function focusRowButton(name, selector) {
    for (const row of usersBody.querySelectorAll("tr[data-user]")) {
      if (row.dataset.user === name) { const b = row.querySelector(selector); if (b) b.focus(); }
    }
  }

  function showToken(name, token) {
    $("token-user").textContent = name;
    $("token-value").value = token;
    $("token-copied").textContent = "";
    const box = $("token-box");
    box.hidden = false;
    $("token-value").focus();
    $("token-value").select();
  }

  async function reissue(button, user) {
    const ok = window.confirm(`Issue a new API token for ${user.name}? Their current token and dashboard ` +
                              "sessions stop working at once.");
    if (!ok) return;
    await act(button, usersError, usersStatus, async () => {
      const answer = await api(`/api/users/${encodeURIComponent(user.name)}/token`, {method: "POST"});
      showToken(answer.name, answer.token);
      usersStatus.textContent = `${answer.name} has a new token; the old one no longer works.`;
    });
  }

  $("new-user").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("new-user-name");
    const name = input.value.trim();
    const button = ev.currentTarget.querySelector("button[type=submit]");
    if (!name) { showError(usersError, new Error("Give the new user a name.")); input.focus(); return; }
    await act(button, usersError, usersStatus, async () => {
      const created = await api("/api/users", {method: "POST", headers: {"Content-Type": "application/json"},
                                               body: JSON.stringify({name, admin: $("new-user-admin").checked})});
      input.value = "";
      $("new-user-admin").checked = false;
      await reloadUsers();
      showToken(created.name, created.token);
      usersStatus.textContent = `Created ${created.admin ? "admin " : ""}${created.name}.`;
    });
  });

  $("token-copy").addEventListener("click", async () => {
    const input = $("token-value");
    let copied = false;
    try {
      await navigator.clipboard.writeText(input.value);
      copied = true;
    } catch (e) {
      input.select();
      copied = document.execCommand && document.execCommand("copy");
    }
    $("token-copied").textContent = copied ? "Copied to the clipboard." : "Select the token and copy it (Ctrl+C).";
  });

  $("token-done").addEventListener("click", () => {
    $("token-value").value = "";  // gone from the page: it was shown once
    $("token-box").hidden = true;
    $("new-user-name").focus();
  });

  // -- the import allowlist -------------------------------------------------------------------------
  const modulesBody = document.querySelector("#allowlist tbody");
  const listError = $("allowlist-error"), listStatus = $("allowlist-status");
  function moduleRow(m) {
    return el("tr", {"data-module": m.module},
              el("td", {"data-label": "Module"}, el("code", {text: m.module})),
              el("td", {"data-label": "Added by"}, m.added_by || "–"),
              el("td", {"data-label": "Added"}, when(m.added_at)),
              el("td", {"data-label": "Actions"},
                 el("button", {type: "button", class: "act-remove danger", "aria-label": `Remove ${m.module}`,
                               onclick: (ev) => removeModule(ev.currentTarget, m.module)}, "Remove")));
  }

  function names(list) {
    return list.length ? list.flatMap((n, i) => [i ? ", " : "", el("code", {text: n})]) : ["none"];
  }

  function drawAllowlist(listing) {
    data.allowlist = listing;
    const by = (source) => listing.modules.filter((m) => m.source === source);
    const added = by("admin");
    modulesBody.replaceChildren(...(added.length ? added.map(moduleRow)
      : [el("tr", {class: "empty"}, el("td", {colspan: 4}, "No modules added by admins yet."))]));
    Prelabel.localizeTimes(modulesBody);
    $("allowlist-count").textContent = `${listing.effective.length} modules allowed, ${added.length} added by admins`;
    $("builtin-list").replaceChildren(...names(by("default").map((m) => m.module)));
    const fromSettings = by("settings").map((m) => m.module);
    $("settings-modules").hidden = !fromSettings.length;
    $("settings-list").replaceChildren(...names(fromSettings));
    $("denied-list").replaceChildren(...names(listing.denied));
  }

  async function removeModule(button, module) {
    await act(button, listError, listStatus, async () => {
      drawAllowlist(await api(`/api/admin/allowlist/${encodeURIComponent(module)}`, {method: "DELETE"}));
      listStatus.textContent = `Removed ${module}: scripts importing it are refused from their next check.`;
      $("new-module-name").focus();
    });
  }

  $("new-module").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("new-module-name");
    const modules = input.value.split(/[\s,]+/).filter(Boolean);
    const button = ev.currentTarget.querySelector("button[type=submit]");
    if (!modules.length) { showError(listError, new Error("Name a module to allow.")); input.focus(); return; }
    await act(button, listError, listStatus, async () => {
      const answer = await api("/api/admin/allowlist", {method: "POST", headers: {"Content-Type": "application/json"},
                                                        body: JSON.stringify({modules})});
      drawAllowlist(answer);
      input.value = "";
      const already = modules.filter((m) => !answer.added.includes(m));
      listStatus.textContent = (answer.added.length ? `Allowed ${answer.added.join(", ")}; workers see it within seconds.` : "")
        + (already.length ? ` Already allowed: ${already.join(", ")}.` : "");
    });
  });

  drawUsers(data.users);
  drawAllowlist(data.allowlist);
})();
