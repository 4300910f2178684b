/*
 * QuickBG web page: batches. Choosing or dropping several images, or one zip, makes a batch
 * (POST /api/v1/batches) — there is no separate mode; a single image still goes through
 * app.js's single-upload flow unchanged.
 *
 * - The drop / file-input / submit events are caught on the document in the capture phase, so
 *   app.js's handlers only ever see single images.
 * - The batch is polled (GET batches/{id}) and drawn as a grid: each member's thumbnail (the
 *   local file until its result is ready, then the result), status and progress; an overall
 *   progress bar; "Download all (zip)" fetches batches/{id}/download with the token.
 * Uses app.js's exports (window.QuickBG): the authenticated call (which refreshes the token),
 * the output options exactly as a single upload sends them, and the small DOM helpers.
 * All data reaches the DOM through textContent / attributes, never innerHTML.
 */
"use strict";

(() => {
  const POLL_MS = 1000;
  const FINAL = new Set(["completed", "partial", "failed"]);
  const $ = (id) => document.getElementById(id);
  const { api, outputOptions, showError, el, formatBytes } = window.QuickBG;

  const refreshTaskList = () => $("refresh-tasks").click();
  // app.js signs the page out itself when the session is gone; no message then.
  const signedIn = () => !$("app-section").hidden;
  let pending = null; // the files of the next batch, or null for a single upload
  let current = null; // {id, previews: Map(task_id -> objectURL)}
  let pollTimer = null;

  const isZip = (file) => /\.zip$/i.test(file.name) || /zip/.test(file.type);
  const makesBatch = (files) => files.length > 1 || (files.length === 1 && isZip(files[0]));

  function choose(files) {
    pending = files;
    const total = files.reduce((n, f) => n + f.size, 0);
    $("file-name").textContent = files.length === 1
      ? `${files[0].name} · ${formatBytes(total)} · a batch`
      : `${files.length} images · ${formatBytes(total)} · one batch`;
    $("upload-submit").disabled = false;
    showError($("upload-error"), "");
  }

  function intercept() {
    // Capture phase on the document: runs before app.js's listeners on the zone and input.
    document.addEventListener("drop", (event) => {
      if (!$("dropzone") || !$("dropzone").contains(event.target)) return;
      const files = Array.from((event.dataTransfer && event.dataTransfer.files) || []);
      if (!makesBatch(files)) {
        pending = null;
        return;
      }
      event.preventDefault();
      event.stopPropagation();
      $("dropzone").classList.remove("dragover");
      choose(files);
    }, true);
    document.addEventListener("change", (event) => {
      if (event.target !== $("file")) return;
      const files = Array.from(event.target.files || []);
      if (!makesBatch(files)) {
        pending = null;
        return;
      }
      event.stopPropagation();
      choose(files);
    }, true);
    document.addEventListener("submit", (event) => {
      if (event.target !== $("upload-form") || !pending) return;
      event.preventDefault();
      event.stopPropagation();
      send(pending);
    }, true);
  }

  async function send(files) {
    const button = $("upload-submit");
    button.disabled = true;
    showError($("upload-error"), "");
    const form = new FormData();
    if (files.length === 1 && isZip(files[0])) {
      form.append("archive", files[0], files[0].name);
    } else {
      for (const file of files) form.append("files", file, file.name);
    }
    for (const [name, value] of Object.entries(outputOptions())) form.append(name, value);
    try {
      const accepted = await api("/batches", { method: "POST", body: form });
      start(accepted, files);
      refreshTaskList();
    } catch (err) {
      if (signedIn()) showError($("upload-error"), err.message);
    } finally {
      button.disabled = false;
    }
  }

  function start(accepted, files) {
    clearTimeout(pollTimer);
    if (current) for (const url of current.previews.values()) URL.revokeObjectURL(url);
    // Local previews: accepted files keep their order in task_ids (rejected ones are skipped).
    const previews = new Map();
    const rejectedNames = accepted.rejected.map((r) => r.name);
    const images = files.filter((f) => !isZip(f));
    let t = 0;
    for (const file of images) {
      const at = rejectedNames.indexOf(file.name);
      if (at >= 0) {
        rejectedNames.splice(at, 1);
        continue;
      }
      if (t < accepted.task_ids.length) previews.set(accepted.task_ids[t++], URL.createObjectURL(file));
    }
    current = { id: accepted.batch_id, previews, items: new Map() };
    $("job-section").hidden = true;
    $("batch-section").hidden = false;
    $("batch-grid").textContent = "";
    $("batch-download").disabled = true;
    $("batch-section").dataset.batchId = accepted.batch_id;
    showError($("batch-error"), "");
    const list = $("batch-rejected");
    list.textContent = "";
    for (const r of accepted.rejected) list.appendChild(el("li", {}, `${r.name}: ${r.detail}`));
    list.hidden = accepted.rejected.length === 0;
    poll();
  }

  async function poll() {
    const batchId = current && current.id;
    if (!batchId) return;
    try {
      const batch = await api(`/batches/${batchId}?page_size=100`);
      if (!current || current.id !== batchId) return;
      render(batch);
      if (FINAL.has(batch.status)) {
        refreshTaskList(); // the recent-tasks table shows the members' final states
        return;
      }
    } catch (err) {
      if (!signedIn()) return;
      showError($("batch-error"), err.message);
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }

  function render(batch) {
    $("batch-status").textContent = batch.status.toUpperCase();
    $("batch-status").dataset.status = batch.status;
    $("batch-progress").value = batch.progress;
    const c = batch.counts;
    $("batch-progress-text").textContent =
      `${batch.progress}% · ${c.completed} done, ${c.failed} failed, ${c.processing} running, ${c.queued} waiting`;
    $("batch-meta").textContent = `${batch.count} images`;
    $("batch-download").disabled = c.completed === 0;
    for (const task of batch.tasks.results) renderItem(task);
    $("batch-section").dataset.status = batch.status;
  }

  function renderItem(task) {
    let item = current.items.get(task.task_id);
    if (!item) {
      const li = el("li", { class: "batch-item", "data-task": task.task_id });
      const frame = el("div", { class: "frame checkerboard" });
      const img = el("img", { alt: "" });
      const local = current.previews.get(task.task_id);
      if (local) img.src = local; else img.hidden = true;
      frame.appendChild(img);
      const badge = el("span", { class: "badge" });
      const bar = el("progress", { max: "100", value: "0" });
      const name = el("span", { class: "name" });
      const error = el("span", { class: "item-error" });
      li.append(frame, name, badge, bar, error);
      $("batch-grid").appendChild(li);
      item = { li, img, badge, bar, name, error, shown: null };
      current.items.set(task.task_id, item);
    }
    item.li.dataset.status = task.status;
    item.badge.textContent = task.status;
    item.badge.dataset.status = task.status;
    item.bar.value = task.status === "completed" || task.status === "failed" ? 100 : task.progress;
    item.name.textContent = task.filename || `image ${task.task_id.slice(0, 8)}`;
    item.name.title = item.name.textContent;
    item.error.textContent = task.error_message || "";
    // Once: the link is signed afresh on every poll, and loading it again would download the
    // same result every second.
    if (task.status === "completed" && task.presigned_url && !item.shown) {
      item.shown = task.presigned_url;
      item.img.alt = `${item.name.textContent} without its background`;
      item.img.src = task.presigned_url;
      item.img.hidden = false;
    }
  }

  async function downloadAll() {
    if (!current) return;
    const button = $("batch-download");
    button.disabled = true;
    try {
      // The zip is binary: fetched directly, with the access token app.js keeps in this tab's
      // sessionStorage, fresh for at least 20 s after any api() call (which refreshes it).
      await api(`/batches/${current.id}?page_size=1`);
      const token = window.sessionStorage.getItem("quickbg.access");
      const res = await fetch(`/api/v1/batches/${current.id}/download`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      if (!res.ok) throw new Error(`The server answered ${res.status} ${res.statusText}`.trim());
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: `batch-${current.id}.zip` });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      button.dataset.downloadedBytes = String(blob.size);
    } catch (err) {
      if (signedIn()) showError($("batch-error"), err.message);
    } finally {
      button.disabled = false;
    }
  }

  intercept();
  document.addEventListener("DOMContentLoaded", () => {
    $("batch-download").addEventListener("click", downloadAll);
  });
})();
