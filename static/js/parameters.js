// The parameter panel: show the new model's fields when the model changes, and filter
// the model browser as you type. Without this file, "Save parameters" shows the new
// model's panel and the browser lists every model.
"use strict";

// The fields every model has: they stay in place (focus and typing are never lost);
// only their help text and range follow the model.
const COMMON_FIELDS = ["temperature", "top_p", "max_tokens", "stop"];

async function refreshPanel(panel) {
  const form = document.getElementById("chat-form");
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
  const fresh = template.content.getElementById("parameter-panel");
  if (!fresh) return;
  for (const name of COMMON_FIELDS) followModel(panel, fresh, name);
  const block = panel.querySelector("#schema-block");
  const freshBlock = fresh.querySelector("#schema-block");
  keepEditsMadeWhileWaiting(block, freshBlock, sent);
  block.replaceWith(freshBlock);
}

function followModel(panel, fresh, name) {
  const input = panel.querySelector(`[name="${name}"]`);
  const twin = fresh.querySelector(`[name="${name}"]`);
  if (!input || !twin) return;
  for (const attribute of ["min", "max", "step"]) {
    if (twin.hasAttribute(attribute)) input.setAttribute(attribute, twin.getAttribute(attribute));
    else input.removeAttribute(attribute);
  }
  const help = input.closest(".field")?.querySelector("small");
  const freshHelp = twin.closest(".field")?.querySelector("small");
  if (help && freshHelp) help.textContent = freshHelp.textContent;
}

// Whatever the user typed in the old model's fields while the new ones were on their way
// wins over the copy the server rendered from the earlier values.
function keepEditsMadeWhileWaiting(block, freshBlock, sent) {
  for (const field of block.querySelectorAll("input[name], select[name], textarea[name]")) {
    if (field.value === (sent.get(field.name) ?? "")) continue;
    const twin = freshBlock.querySelector(`[name="${CSS.escape(field.name)}"]`);
    if (twin) twin.value = field.value;
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
  const follow = () => {
    if (model.value.trim() && model.value !== last) {
      last = model.value;
      refreshPanel(panel);
    }
  };
  model.addEventListener("change", follow);
  for (const button of panel.querySelectorAll(".model-browser button[name=model]")) {
    button.addEventListener("click", (event) => {
      event.preventDefault();
      model.value = button.value;
      follow();
    });
  }
  setUpModelFilter(panel);
}

document.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("parameter-panel");
  if (panel) setUpPanel(panel);
});
