// The parameter panel: show the new model's fields when the model changes, filter the
// model browser as you type, add function slots to the tools editor and offer the
// functions typed there in tool_choice. Without this file, "Save parameters" shows the
// new model's panel (and the functions saved), the browser lists every model, and the
// tools editor has one blank slot per save.
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
  setUpToolsEditors(panel);
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
  setUpToolsEditors(panel);
  panel.addEventListener("click", (event) => {
    const button = event.target.closest("[data-tools-editor] button.add-function");
    if (button) addFunctionSlot(button.closest("[data-tools-editor]"), button);
  });
  const followTools = (event) => {
    if (event.target.closest("[data-tools-editor]")) offerDefinedFunctions(panel);
  };
  panel.addEventListener("input", followTools);
  panel.addEventListener("change", followTools);
}

// --- The tools editor -----------------------------------------------------------

const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const CALL_PREFIX = "function:";

function setUpToolsEditors(panel) {
  for (const button of panel.querySelectorAll("[data-tools-editor] button.add-function")) {
    button.hidden = false;
  }
  // The functions offered that the editor does not hold come from the free JSON: kept.
  const select = toolChoiceSelect(panel);
  if (select) {
    const typed = new Set(editorFunctionNames(panel));
    select.dataset.otherNames = JSON.stringify(
      offeredNames(select).filter((name) => !typed.has(name)),
    );
  }
}

// A copy of the last blank slot, numbered after the others (the server reads the slots
// in the order of their numbers, and names errors by position: "Function 3: ...").
function addFunctionSlot(editor, button) {
  const field = editor.dataset.toolsEditor;
  const slots = editor.querySelectorAll(".tool-slot");
  const model = [...slots].reverse().find((slot) => slot.classList.contains("blank"));
  if (!model) return;
  const marker = new RegExp(`${escapeRegExp(field)}_(\\d+)_`);
  const found = model.querySelector("[name]")?.name.match(marker);
  if (!found) return;
  const from = `${field}_${found[1]}_`;
  const next = Math.max(
    ...[...slots].map((slot) => Number(slot.querySelector("[name]")?.name.match(marker)?.[1] ?? -1)),
  ) + 1;
  const to = `${field}_${next}_`;
  const fresh = model.cloneNode(true);
  for (const element of fresh.querySelectorAll("[name], [id], [for], [aria-describedby]")) {
    for (const attribute of ["name", "id", "for", "aria-describedby"]) {
      const value = element.getAttribute(attribute);
      if (value) element.setAttribute(attribute, value.split(from).join(to));
    }
  }
  for (const input of fresh.querySelectorAll("input, textarea")) {
    if (input.type === "checkbox") input.checked = false;
    else input.value = "";
    input.removeAttribute("aria-invalid");
  }
  for (const error of fresh.querySelectorAll(".field-error")) error.remove();
  for (const part of fresh.querySelectorAll(".has-error")) part.classList.remove("has-error");
  fresh.classList.remove("has-error");
  const legend = fresh.querySelector("legend");
  if (legend) legend.textContent = `Function ${slots.length + 1} (new)`;
  button.before(fresh);
  fresh.querySelector("input[type=text]")?.focus();
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function toolChoiceSelect(panel) {
  return panel.querySelector("#schema-block select[data-calls-functions]");
}

function editorFunctionNames(panel) {
  const names = [];
  for (const slot of panel.querySelectorAll("[data-tools-editor] .tool-slot")) {
    const name = slot.querySelector('input[name$="_name"]')?.value.trim() ?? "";
    const removed = slot.querySelector('input[name$="_remove"]')?.checked;
    if (!removed && FUNCTION_NAME.test(name) && !names.includes(name)) names.push(name);
  }
  return names;
}

function offeredNames(select) {
  return [...select.querySelectorAll("option")]
    .map((option) => option.value)
    .filter((value) => value.startsWith(CALL_PREFIX))
    .map((value) => value.slice(CALL_PREFIX.length));
}

// tool_choice offers the functions as typed, and keeps the one chosen even when it is
// gone (the server then says it names no function that is sent).
function offerDefinedFunctions(panel) {
  const select = toolChoiceSelect(panel);
  if (!select) return;
  const chosen = select.value;
  const names = [...editorFunctionNames(panel), ...JSON.parse(select.dataset.otherNames || "[]")];
  if (chosen.startsWith(CALL_PREFIX)) names.push(chosen.slice(CALL_PREFIX.length));
  let group = select.querySelector("optgroup");
  if (!group) {
    group = document.createElement("optgroup");
    group.label = "Call this function";
    select.append(group);
  }
  group.replaceChildren(
    ...[...new Set(names)].map((name) => new Option(name, CALL_PREFIX + name)),
  );
  group.hidden = names.length === 0;
  select.value = chosen;
}

document.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("parameter-panel");
  if (panel) setUpPanel(panel);
});
