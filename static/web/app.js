/*
 * QuickBG web page: plain JavaScript over the REST API (/api/v1/), no build step.
 *
 * - Sign-in: POST auth/token; the JWT pair lives in this tab's sessionStorage.
 *   Sign-out: POST auth/logout revokes the refresh token.
 *   The access token is refreshed (POST auth/token/refresh) shortly before it expires and
 *   again after any 401. Refresh tokens rotate, so one refresh at a time is shared by all calls.
 * - Output options: GET options (the server's contract, no sign-in needed) gives each option's
 *   choices, default and help; the page fills its laid-out controls from it and adds one for
 *   every other option under "More options". The form sends each enabled control with a value.
 * - Upload: POST uploads (multipart `file` + output options), then poll GET tasks/{id}.
 * - Recent tasks: GET tasks, page by page (cursor pagination: "Show more" follows `next`).
 * - Errors: the API's `detail` message is shown as it is.
 * All data reaches the DOM through textContent / attributes, never innerHTML.
 */
"use strict";

(() => {
  const API = "/api/v1";
  const POLL_MS = 750;
  const KEYS = { access: "quickbg.access", refresh: "quickbg.refresh", user: "quickbg.username" };
  const store = window.sessionStorage;
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(message, status, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }
  class SignedOut extends Error {}

  // --- Tokens -------------------------------------------------------------------------------

  function tokenExpiry(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)).exp * 1000;
    } catch (_) {
      return 0;
    }
  }

  let refreshing = null;

  function refreshAccess() {
    if (!refreshing) {
      refreshing = (async () => {
        const refresh = store.getItem(KEYS.refresh);
        if (!refresh) throw new SignedOut();
        const res = await fetch(`${API}/auth/token/refresh`, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ refresh }),
        });
        if (!res.ok) throw new SignedOut();
        const body = await res.json();
        store.setItem(KEYS.access, body.access);
        if (body.refresh) store.setItem(KEYS.refresh, body.refresh);
        return body.access;
      })().finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  async function accessToken() {
    const access = store.getItem(KEYS.access);
    if (access && tokenExpiry(access) - Date.now() > 20000) return access;
    return refreshAccess();
  }

  // --- API calls ----------------------------------------------------------------------------

  async function readBody(res) {
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!res.ok) {
      const detail = data && typeof data.detail === "string"
        ? data.detail
        : `The server answered ${res.status} ${res.statusText}`.trim();
      throw new ApiError(detail, res.status, data);
    }
    return data;
  }

  async function api(path, options = {}, retried = false) {
    let token;
    try {
      token = await accessToken();
    } catch (err) {
      signOut("Your session has expired. Please sign in again.");
      throw err instanceof SignedOut ? err : new SignedOut();
    }
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    let body = options.body;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    let res;
    try {
      res = await fetch(API + path, { method: options.method || "GET", headers, body });
    } catch (err) {
      throw new ApiError(`Could not reach the server (${err.message}).`, 0, null);
    }
    if (res.status === 401 && !retried) {
      // Force a refresh (unless a parallel call already got a new token), then try once more.
      if (store.getItem(KEYS.access) === token) store.removeItem(KEYS.access);
      return api(path, options, true);
    }
    return readBody(res);
  }

  // --- Small DOM helpers ----------------------------------------------------------------------

  function showError(el, message) {
    el.textContent = message;
    el.hidden = !message;
  }

  function formatBytes(n) {
    if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MB`;
    if (n >= 1024) return `${Math.round(n / 1024)} KB`;
    return `${n} B`;
  }

  function formatSeconds(s) {
    return typeof s === "number" ? `${s.toFixed(1)} s` : "—";
  }

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  }

  // --- Sign in / out --------------------------------------------------------------------------

  function showSignedIn(signedIn) {
    $("login-section").hidden = signedIn;
    $("app-section").hidden = !signedIn;
    $("account").hidden = !signedIn;
    $("account-name").textContent = signedIn ? store.getItem(KEYS.user) || "" : "";
    if (signedIn) document.dispatchEvent(new CustomEvent("quickbg:signed-in"));
  }

  // "Sign out" revokes the refresh token on the server (POST auth/logout), so a copy of it
  // left anywhere is useless; the page does not wait for the answer.
  function revokeSession() {
    const refresh = store.getItem(KEYS.refresh);
    if (!refresh) return;
    fetch(`${API}/auth/logout`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ refresh }),
      keepalive: true,
    }).catch(() => {});
  }

  function signOut(message = "") {
    stopPolling();
    for (const key of Object.values(KEYS)) store.removeItem(key);
    showSignedIn(false);
    showError($("login-error"), message);
    $("password").value = "";
  }

  async function signIn(event) {
    event.preventDefault();
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username || !password) {
      showError($("login-error"), "Enter your username and password.");
      return;
    }
    const button = $("login-submit");
    button.disabled = true;
    showError($("login-error"), "");
    try {
      const res = await fetch(`${API}/auth/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ username, password }),
      });
      const tokens = await readBody(res);
      store.setItem(KEYS.access, tokens.access);
      store.setItem(KEYS.refresh, tokens.refresh);
      store.setItem(KEYS.user, username);
      $("password").value = "";
      showSignedIn(true);
      loadTasks();
      $("upload-title").focus?.();
    } catch (err) {
      showError($("login-error"), err.message || "Sign-in failed.");
    } finally {
      button.disabled = false;
    }
  }

  // --- File choice, drag and drop -------------------------------------------------------------

  let chosenFile = null;
  let beforeUrl = null;

  function chooseFile(file) {
    chosenFile = file || null;
    $("file-name").textContent = file ? `${file.name} · ${formatBytes(file.size)}` : "";
    $("upload-submit").disabled = !file;
    showError($("upload-error"), "");
  }

  function wireDropzone() {
    const zone = $("dropzone");
    const input = $("file");
    input.addEventListener("change", () => chooseFile(input.files[0]));
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (event) => {
        event.preventDefault();
        zone.classList.add("dragover");
      });
    }
    for (const type of ["dragleave", "dragend"]) {
      zone.addEventListener(type, () => zone.classList.remove("dragover"));
    }
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragover");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) chooseFile(file);
    });
    // A file dropped outside the zone must not navigate away from the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
  }

  // --- Output options -------------------------------------------------------------------------

  /** The controls from the contract (GET options): the laid-out ones filled, the rest added. */
  async function loadOptions() {
    const res = await fetch(`${API}/options`, { headers: { Accept: "application/json" } });
    const laidOut = new Map(
      [...document.querySelectorAll("[data-option]")].map((node) => [node.dataset.option, node]));
    for (const option of (await readBody(res)).options) {
      const control = laidOut.get(option.name);
      if (control) fillControl(control, option);
      else $("more-options-grid").appendChild(moreOption(option));
    }
  }

  function fillControl(control, option) {
    control.title = option.help;
    if (control.tagName === "SELECT") {
      for (const choice of option.choices) control.appendChild(el("option", { value: choice }, choice));
      control.value = option.default;
    } else if (control.type === "checkbox") {
      control.checked = option.default === true;
    } else if (control.type !== "color" && option.default !== null) {
      control.value = String(option.default);
    }
  }

  /** A control for an option the page does not lay out: empty (not sent) means the default. */
  function moreOption(option) {
    const id = `opt-${option.name.replace(/_/g, "-")}`;
    const attrs = { id, name: option.name, "data-option": option.name, title: option.help };
    const field = el("div", { class: "field" });
    field.appendChild(el("label", { for: id }, option.name.replace(/_/g, " ")));
    let control;
    if (option.type === "choice" || option.type === "boolean") {
      control = el("select", attrs);
      control.appendChild(el("option", { value: "" }, `default (${option.default})`));
      for (const choice of option.choices || ["true", "false"]) {
        control.appendChild(el("option", { value: choice }, choice));
      }
    } else if (option.type === "integer") {
      control = el("input", {
        ...attrs, type: "number", min: option.minimum, max: option.maximum,
        placeholder: option.default,
      });
    } else {
      control = el("input", { ...attrs, placeholder: option.default ?? "" });
    }
    field.appendChild(control);
    return field;
  }

  // A control with data-enabled-by is usable (and sent) only while that checkbox is checked.
  function wireOptions() {
    for (const control of document.querySelectorAll("[data-enabled-by]")) {
      const toggle = $(control.dataset.enabledBy);
      const sync = () => {
        control.disabled = !toggle.checked;
      };
      toggle.addEventListener("change", sync);
      sync();
    }
  }

  /** The options as the API takes them: each enabled control with a value, by its name. */
  function outputOptions() {
    const options = {};
    for (const control of $("upload-form").querySelectorAll("[data-option]")) {
      if (control.disabled) continue;
      let value = control.type === "checkbox" ? String(control.checked) : control.value.trim();
      if (control.type === "color") value = value.replace(/^#/, "");
      if (value !== "") options[control.dataset.option] = value;
    }
    return options;
  }

  // --- Upload and the current task ----------------------------------------------------------

  async function upload(event) {
    event.preventDefault();
    if (!chosenFile) return;
    const button = $("upload-submit");
    button.disabled = true;
    showError($("upload-error"), "");
    const form = new FormData();
    form.append("file", chosenFile, chosenFile.name);
    for (const [name, value] of Object.entries(outputOptions())) form.append(name, value);

    if (beforeUrl) URL.revokeObjectURL(beforeUrl);
    beforeUrl = URL.createObjectURL(chosenFile);
    try {
      resetJob(beforeUrl);
      renderProgress({ status: "uploading", progress: null });
      const accepted = await api("/uploads", { method: "POST", body: form });
      watchTask(accepted.task_id);
      loadTasks();
    } catch (err) {
      if (err instanceof SignedOut) return;
      $("job-section").hidden = true;
      showError($("upload-error"), err.message);
    } finally {
      button.disabled = !chosenFile;
    }
  }

  let pollTimer = null;
  let watchedTask = null;

  function stopPolling() {
    clearTimeout(pollTimer);
    pollTimer = null;
    watchedTask = null;
  }

  function resetJob(originalUrl) {
    stopPolling();
    $("job-section").hidden = false;
    showError($("job-error"), "");
    $("download").hidden = true;
    $("retry").hidden = true;
    $("job-meta").textContent = "";
    const before = $("before-img");
    if (originalUrl) {
      before.src = originalUrl;
      before.hidden = false;
      $("before-missing").hidden = true;
    } else {
      before.removeAttribute("src");
      before.hidden = true;
      $("before-missing").hidden = false;
    }
    const result = $("result-img");
    result.removeAttribute("src");
    result.hidden = true;
    $("result-waiting").hidden = false;
    $("result-no-preview").hidden = true;
  }

  // A result the browser cannot show (format=zip): no broken image; Download still works.
  function noPreview() {
    if (!$("result-img").getAttribute("src")) return;
    $("result-img").hidden = true;
    $("result-no-preview").hidden = false;
  }

  const STATUS_TEXT = {
    uploading: "Uploading…",
    queued: "Queued — waiting for a worker…",
    processing: "Processing…",
    completed: "Done",
    failed: "Failed",
  };

  function renderProgress(task) {
    const bar = $("progress");
    const badge = $("job-status");
    badge.textContent = task.status;
    badge.dataset.status = task.status;
    if (task.progress === null || task.progress === undefined) {
      bar.removeAttribute("value"); // indeterminate while uploading
    } else {
      bar.value = task.progress;
    }
    let text = STATUS_TEXT[task.status] || task.status;
    if (task.status === "processing") text = `Processing… ${task.progress}%`;
    $("progress-text").textContent = text;
  }

  function renderTask(task) {
    renderProgress(task);
    $("job-meta").textContent = "";
    if (task.status === "completed" && task.presigned_url) {
      const result = $("result-img");
      if (result.getAttribute("src") !== task.presigned_url) result.src = task.presigned_url;
      result.hidden = false;
      $("result-waiting").hidden = true;
      const download = $("download");
      download.href = task.presigned_url;
      download.hidden = false;
      $("job-meta").textContent = `Processed in ${formatSeconds(task.processing_time)}`;
    }
    if (task.status === "failed") {
      showError($("job-error"), task.error_message || "Processing failed.");
      $("retry").hidden = false;
      $("retry").dataset.taskId = task.task_id;
    } else {
      showError($("job-error"), "");
      $("retry").hidden = true;
    }
  }

  function watchTask(taskId) {
    stopPolling();
    watchedTask = taskId;
    let failures = 0;
    const poll = async () => {
      if (watchedTask !== taskId) return;
      try {
        const task = await api(`/tasks/${taskId}`);
        if (watchedTask !== taskId) return;
        failures = 0;
        renderTask(task);
        if (task.status === "completed" || task.status === "failed") {
          watchedTask = null;
          loadTasks();
          return;
        }
      } catch (err) {
        if (err instanceof SignedOut || watchedTask !== taskId) return;
        failures += 1;
        if (err.status === 404 || failures >= 5) {
          showError($("job-error"), err.message);
          watchedTask = null;
          return;
        }
      }
      pollTimer = setTimeout(poll, POLL_MS);
    };
    poll();
  }

  async function retry() {
    const taskId = $("retry").dataset.taskId;
    if (!taskId) return;
    $("retry").disabled = true;
    try {
      const task = await api(`/tasks/${taskId}/retry`, { method: "POST" });
      renderTask(task);
      watchTask(taskId);
    } catch (err) {
      if (!(err instanceof SignedOut)) showError($("job-error"), err.message);
    } finally {
      $("retry").disabled = false;
    }
  }

  // --- Recent tasks ---------------------------------------------------------------------------

  // The list is the API's cursor pagination: page 1 on load and on Refresh, then "Show more"
  // follows the page's `next` link (same origin, so only its path and query are used).
  let nextTasks = null;

  async function loadTasks(more = false) {
    showError($("tasks-error"), "");
    let page;
    try {
      page = await (more && nextTasks ? api(nextTasks) : api("/tasks"));
    } catch (err) {
      if (!(err instanceof SignedOut)) showError($("tasks-error"), err.message);
      return;
    }
    nextTasks = page.next ? apiPath(page.next) : null;
    const body = $("tasks-body");
    if (!more) body.replaceChildren();
    for (const task of page.results) body.appendChild(taskRow(task, task.filename));
    const shown = body.children.length;
    $("tasks-empty").hidden = shown > 0;
    $("tasks-table").hidden = shown === 0;
    $("more-tasks").hidden = !nextTasks;
  }

  function apiPath(link) {
    const url = new URL(link, window.location.href);
    return url.pathname.slice(API.length) + url.search;
  }

  function taskRow(task, filename) {
    const row = el("tr", { "data-task-id": task.task_id });
    const name = filename || `upload ${task.upload_id.slice(0, 8)}`;
    row.appendChild(el("td", { class: "name", title: name }, name));
    row.appendChild(el("td", { class: "hide-sm" }, new Date(task.created_at).toLocaleString()));
    const status = el("td");
    const badge = el("span", { class: "badge", "data-status": task.status }, task.status);
    status.appendChild(badge);
    if (task.status === "processing") status.append(` ${task.progress}%`);
    row.appendChild(status);
    row.appendChild(el("td", { class: "hide-sm" }, formatSeconds(task.processing_time)));
    const actions = el("td");
    const view = el("button", { type: "button", class: "btn btn-small btn-quiet" }, "View");
    view.setAttribute("aria-label", `View ${name}`);
    view.addEventListener("click", () => {
      resetJob(null);
      renderTask(task);
      if (task.status === "queued" || task.status === "processing") watchTask(task.task_id);
      $("job-section").scrollIntoView({ behavior: "smooth", block: "start" });
    });
    actions.appendChild(view);
    if (task.status === "completed" && task.presigned_url) {
      const link = el("a", { class: "btn btn-small", href: task.presigned_url, download: "" },
        "Download");
      link.setAttribute("aria-label", `Download ${name}`);
      actions.appendChild(link);
    }
    row.appendChild(actions);
    return row;
  }

  // Shared with the page's other scripts (apikeys.js, webhooks.js, batches.js): the
  // authenticated API call, the token helper, the output options and the small DOM helpers;
  // and the event "quickbg:signed-in" on document each time the signed-in view is shown.
  window.QuickBG = Object.freeze({
    api, accessToken, outputOptions, showError, el, formatBytes, loadTasks, SignedOut, ApiError,
  });

  // --- Start ----------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => {
      revokeSession();
      signOut("");
    });
    $("upload-form").addEventListener("submit", upload);
    $("retry").addEventListener("click", retry);
    $("result-img").addEventListener("error", noPreview);
    $("refresh-tasks").addEventListener("click", () => loadTasks(false));
    $("more-tasks").addEventListener("click", () => loadTasks(true));
    wireDropzone();
    if (store.getItem(KEYS.refresh)) {
      showSignedIn(true);
      loadTasks();
    } else {
      showSignedIn(false);
    }
    // Ready once the option controls are drawn (or the reason they are not is shown).
    loadOptions()
      .catch((err) => showError($("upload-error"), `Output options: ${err.message}`))
      .finally(() => {
        wireOptions();
        document.body.dataset.ready = "true";
      });
  });
})();
