/*
 * QuickBG web page: the "Webhooks" panel. Register and delete standing endpoints
 * (POST/GET/DELETE /api/v1/webhooks), show, copy and rotate the signing secret
 * (GET/POST /api/v1/webhooks/secret). The panel is a <details>; it loads when opened.
 * Uses window.QuickBG (exposed by app.js): api, el, showError.
 * All data reaches the DOM through textContent / attributes, never innerHTML.
 */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  async function call(path, options) {
    const Q = window.QuickBG;
    try {
      return await Q.api(path, options);
    } catch (err) {
      if (!(err instanceof Q.SignedOut)) Q.showError($("webhooks-error"), err.message);
      throw err;
    }
  }

  async function loadEndpoints() {
    const Q = window.QuickBG;
    const endpoints = await call("/webhooks");
    const list = $("webhooks-list");
    list.replaceChildren();
    for (const endpoint of endpoints) {
      const item = Q.el("li", { "data-id": endpoint.id });
      item.appendChild(Q.el("code", {}, endpoint.url));
      const remove = Q.el("button", { type: "button", class: "btn btn-small btn-quiet" }, "Delete");
      remove.setAttribute("aria-label", `Delete webhook ${endpoint.url}`);
      remove.addEventListener("click", async () => {
        await call(`/webhooks/${endpoint.id}`, { method: "DELETE" });
        await loadEndpoints();
      });
      item.appendChild(remove);
      list.appendChild(item);
    }
    $("webhooks-empty").hidden = endpoints.length > 0;
  }

  function showSecret(body) {
    $("webhooks-secret").value = body.secret;
  }

  async function add(event) {
    event.preventDefault();
    const Q = window.QuickBG;
    Q.showError($("webhooks-error"), "");
    const url = $("webhook-url").value.trim();
    if (!url) return Q.showError($("webhooks-error"), "Enter the URL that should receive events.");
    await call("/webhooks", { method: "POST", json: { url } });
    $("webhook-url").value = "";
    await loadEndpoints();
  }

  async function load() {
    window.QuickBG.showError($("webhooks-error"), "");
    await loadEndpoints();
    showSecret(await call("/webhooks/secret"));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const panel = $("webhooks-panel");
    if (!panel) return;
    const quiet = (promise) => promise.catch(() => {}); // errors are shown in the panel
    panel.addEventListener("toggle", () => { if (panel.open) quiet(load()); });
    $("webhook-form").addEventListener("submit", (event) => quiet(add(event)));
    $("webhooks-rotate").addEventListener("click", () => quiet((async () => {
      showSecret(await call("/webhooks/secret", { method: "POST" }));
      $("webhooks-status").textContent = "New secret. The old one also signs for 24 hours.";
    })()));
    $("webhooks-copy").addEventListener("click", () => quiet((async () => {
      await navigator.clipboard.writeText($("webhooks-secret").value);
      $("webhooks-status").textContent = "Copied.";
    })()));
  });
})();
