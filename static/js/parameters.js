// The parameter panel: swap in the new model's fields when the model changes, and
// filter the model browser as you type. Without this file, "Save parameters" shows
// the new model's panel and the browser lists every model.
"use strict";

function panelForm() {
  return document.getElementById("chat-form");
}

async function refreshPanel() {
  const form = panelForm();
  const panel = document.getElementById("parameter-panel");
  if (!form || !panel) return;
  const sent = new FormData(form);
  const response = await fetch(panel.dataset.panelUrl, {
    method: "POST",
    body: sent,
    headers: { "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value },
    credentials: "same-origin",
  });
  if (!response.ok) return;
  const template = document.createElement("template");
  template.innerHTML = await response.text();  // rendered and escaped by the server
  const replacement = template.content.getElementById("parameter-panel");
  if (!replacement) return;
  keepEditsMadeWhileWaiting(panel, replacement, sent);
  panel.replaceWith(replacement);
  setUpPanel(replacement);
}

// Whatever the user typed while the new panel was on its way wins over the copy the
// server rendered from the earlier values.
function keepEditsMadeWhileWaiting(panel, replacement, sent) {
  for (const field of panel.querySelectorAll("input[name], select[name], textarea[name]")) {
    if (field.type === "submit" || field.value === (sent.get(field.name) ?? "")) continue;
    const twin = replacement.querySelector(`[name="${CSS.escape(field.name)}"]`);
    if (twin && twin.type !== "submit") twin.value = field.value;
  }
}

function setUpModelFilter(panel) {
  const filter = panel.querySelector("input.model-filter");
  if (!filter) return;
  filter.hidden = false;
  filter.addEventListener("input", () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const group of panel.querySelectorAll(".model-group")) {
      let shown = 0;
      for (const row of group.querySelectorAll("li[data-search]")) {
        const match = words.every((word) => row.dataset.search.includes(word));
        row.hidden = !match;
        if (match) shown += 1;
      }
      group.hidden = shown === 0;
    }
  });
}

function setUpPanel(panel) {
  const model = panel.querySelector("input[name=model]");
  let last = model.value;
  model.addEventListener("change", () => {
    if (model.value.trim() && model.value !== last) {
      last = model.value;
      refreshPanel();
    }
  });
  for (const button of panel.querySelectorAll(".model-browser button[name=model]")) {
    button.addEventListener("click", (event) => {
      event.preventDefault();
      model.value = button.value;
      last = model.value;
      refreshPanel();
    });
  }
  setUpModelFilter(panel);
}

document.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("parameter-panel");
  if (panel) setUpPanel(panel);
});
