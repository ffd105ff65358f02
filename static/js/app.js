// Enhancements only: every page works without this file.
"use strict";

function flash(button, text) {
  const original = button.textContent;
  button.textContent = text;
  setTimeout(() => { button.textContent = original; }, 1500);
}

async function copyFrom(button) {
  let text;
  if (button.dataset.copyUrl) {
    const response = await fetch(button.dataset.copyUrl, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    text = await response.text();
  } else {
    text = document.querySelector(button.dataset.copyTarget).textContent;
  }
  await navigator.clipboard.writeText(text);
}

function setUpCopyButtons() {
  for (const button of document.querySelectorAll("button.copy")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      copyFrom(button).then(() => flash(button, "Copied"), () => flash(button, "Copy failed"));
    });
  }
}

function setUpChatForm() {
  const form = document.getElementById("chat-form");
  if (!form) return;
  const message = form.querySelector("textarea[name=content]");
  // One submit, one generation: the server also checks the idempotency key.
  form.addEventListener("submit", (event) => {
    if (form.dataset.submitting) {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "true";
    const button = event.submitter;
    if (button && button.dataset.busyLabel) button.textContent = button.dataset.busyLabel;
  });
  // A page restored from the back/forward cache must not stay "Sending…".
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) window.location.reload();
  });
  if (message) {
    message.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit(form.querySelector("button.primary"));
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpCopyButtons();
  setUpChatForm();
});
