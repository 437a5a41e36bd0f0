// acmehub console: the little a server-rendered page cannot do alone.
// No inline handlers (the Content-Security-Policy forbids them).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Result dialogs drawn by the server open as modal dialogs.
  for (const d of document.querySelectorAll("dialog[data-open]")) {
    if (!d.open) d.showModal();
  }
  // Copy buttons.
  for (const b of document.querySelectorAll("button.copy[data-copy]")) {
    b.addEventListener("click", async () => {
      const text = b.dataset.copy;
      try {
        await navigator.clipboard.writeText(text);
      } catch {
        const area = document.createElement("textarea");
        area.value = text;
        document.body.append(area);
        area.select();
        document.execCommand("copy");
        area.remove();
      }
      const label = b.textContent;
      b.textContent = "Copied";
      setTimeout(() => { b.textContent = label; }, 1500);
    });
  }
  // Destructive forms ask first.
  for (const f of document.querySelectorAll("form[data-confirm]")) {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  }
  // Rows with a live status (delegations) are checked again as the page
  // opens; the form token is the page's own.
  const token = document.querySelector('input[name="csrf"]');
  for (const row of document.querySelectorAll("tr[data-live-check]")) {
    if (!token) break;
    const body = new URLSearchParams({ csrf: token.value, live: "1" });
    fetch(row.dataset.liveCheck, { method: "POST", body, credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((s) => {
        const status = row.querySelector(".live .status");
        status.textContent = s.status;
        status.className = `status status-${s.status}`;
        row.querySelector(".live .detail").textContent = s.detail || "";
        row.querySelector(".live .checked").textContent = s.checked_at ? `checked ${s.checked_at} (live)` : "";
      })
      .catch(() => {});
  }
  // A select that chooses which form to show submits itself.
  for (const s of document.querySelectorAll("select[data-autosubmit]")) {
    s.addEventListener("change", () => s.form.submit());
  }
});
