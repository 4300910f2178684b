/*
 * QuickBG web page: the "API keys" panel. Create a key (its secret shown once, with a copy
 * button), list your keys, revoke one. Uses app.js's authenticated call (window.QuickBG.api)
 * over /api/v1/api-keys; all data reaches the DOM through textContent / attributes.
 */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  function showError(message) {
    $("apikeys-error").textContent = message;
    $("apikeys-error").hidden = !message;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "never";
  }

  function row(key) {
    const tr = document.createElement("tr");
    tr.dataset.keyId = key.id;
    for (const text of [key.name, key.prefix, when(key.created_at), when(key.last_used_at)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    const actions = document.createElement("td");
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.className = "btn btn-small";
    revoke.textContent = "Revoke";
    revoke.setAttribute("aria-label", `Revoke key ${key.name}`);
    revoke.addEventListener("click", () => revokeKey(key, revoke));
    actions.appendChild(revoke);
    tr.appendChild(actions);
    return tr;
  }

  async function loadKeys() {
    try {
      const body = await window.QuickBG.api("/api-keys?page_size=100");
      const keys = Array.isArray(body) ? body : body.results || [];
      $("apikeys-body").replaceChildren(...keys.map(row));
      $("apikeys-table").hidden = keys.length === 0;
      $("apikeys-empty").hidden = keys.length > 0;
      showError("");
    } catch (err) {
      showError(err.message || "Could not load your API keys.");
    }
  }

  async function createKey(event) {
    event.preventDefault();
    const name = $("apikey-name").value.trim();
    if (!name) {
      showError("Give the key a name.");
      return;
    }
    $("apikey-create").disabled = true;
    try {
      const created = await window.QuickBG.api("/api-keys", { method: "POST", json: { name } });
      $("apikey-secret").value = created.key;
      $("apikey-copied").textContent = "";
      $("apikey-new").hidden = false;
      $("apikey-name").value = "";
      await loadKeys();
    } catch (err) {
      showError(err.message || "Could not create the key.");
    } finally {
      $("apikey-create").disabled = false;
    }
  }

  async function copyKey() {
    const field = $("apikey-secret");
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (_) {
      field.select();
      document.execCommand("copy");
    }
    $("apikey-copied").textContent = "Copied.";
  }

  async function revokeKey(key, button) {
    if (!window.confirm(`Revoke the key "${key.name}"? Programs using it stop working.`)) return;
    button.disabled = true;
    try {
      await window.QuickBG.api(`/api-keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
      await loadKeys();
    } catch (err) {
      button.disabled = false;
      showError(err.message || "Could not revoke the key.");
    }
  }

  document.addEventListener("quickbg:signed-in", () => {
    $("apikey-new").hidden = true;
    $("apikey-secret").value = "";
    loadKeys();
  });
  document.addEventListener("DOMContentLoaded", () => {
    $("apikey-form").addEventListener("submit", createKey);
    $("apikey-copy").addEventListener("click", copyKey);
  });
})();
