// Lathe web UI: progressive enhancement only; every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Sliders show their value.
  for (const range of document.querySelectorAll('input[type="range"]')) {
    const output = document.getElementById(range.id + "-value");
    if (output) range.addEventListener("input", () => { output.textContent = range.value; });
  }

  // Destructive buttons ask first.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // The run form: the browser's checks (from the schema's constraints) plus JSON fields,
  // messages shown beside the fields, as the server's 422 messages are.
  for (const form of document.querySelectorAll("form[data-validate]")) {
    form.addEventListener("submit", (event) => {
      let firstInvalid = null;
      for (const field of form.querySelectorAll("[data-field]")) {
        const control = field.querySelector("input, select, textarea");
        const message = field.querySelector(".field-error");
        if (!control || !message) continue;
        let problem = "";
        if (control.hasAttribute("data-json") && control.value.trim() !== "") {
          try { JSON.parse(control.value); } catch (e) { problem = "must be valid JSON"; }
        }
        if (!problem && !control.checkValidity()) problem = control.validationMessage;
        message.textContent = problem;
        field.classList.toggle("invalid", problem !== "");
        control.setAttribute("aria-invalid", problem !== "" ? "true" : "false");
        if (problem && !firstInvalid) firstInvalid = control;
      }
      if (firstInvalid) {
        event.preventDefault();
        firstInvalid.focus();
        return;
      }
      const button = form.querySelector('button[type="submit"]');
      if (button) { button.disabled = true; button.textContent = "Starting…"; }
    });
  }

  // A running prediction: output and logs arrive over server-sent events; the page reloads
  // once it has finished, to render outputs by type.
  const prediction = document.querySelector(".prediction[data-stream]");
  if (prediction && !["succeeded", "failed", "canceled"].includes(prediction.dataset.status)) {
    const status = document.getElementById("status");
    const logs = document.getElementById("logs");
    const output = document.getElementById("output-text");
    const concatenate = prediction.dataset.concatenate === "true";
    let received = 0;
    const source = new EventSource(prediction.dataset.stream);
    source.addEventListener("output", (event) => {
      status.textContent = "processing";
      if (!output) return;
      received += 1;
      output.textContent += (concatenate || received === 1 ? "" : "\n") + event.data;
    });
    source.addEventListener("logs", (event) => {
      status.textContent = "processing";
      logs.textContent += event.data;
    });
    source.addEventListener("done", () => {
      source.close();
      window.location.reload();
    });
    source.onerror = () => {
      // The stream ended or failed: poll until the prediction is finished.
      source.close();
      const poll = () => fetch(window.location.href, { headers: { Accept: "text/html" } }).then((response) => {
        return response.text();
      }).then((html) => {
        if (/data-status="(succeeded|failed|canceled)"/.test(html)) window.location.reload();
        else setTimeout(poll, 1000);
      }).catch(() => setTimeout(poll, 2000));
      setTimeout(poll, 500);
    };
  }
});
